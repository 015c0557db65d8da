"""Time and peak memory of the ERF of ResNet-50 ``layer4`` over random inputs at 1024x1024.

    .venv/bin/python benchmarks/erf.py                  # 32 inputs, 1024x1024, batch 1
    .venv/bin/python benchmarks/erf.py --inputs 4 --batch-size 1

Random-init torchvision ResNet-50 (no weights are downloaded), eval mode,
float32, standard-normal inputs; the model is truncated at ``layer4`` (one
forward and one backward per batch).  Peak memory is the process's maximum
resident set size (``getrusage``), also shown above the RSS measured once the
model is built.  Timings taken while other jobs share the CPU are inflated:
the load average is printed before and after.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time

import psutil
import torch
import torchvision

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import rfgraph  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=32)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--node", default="layer4")
    parser.add_argument("--float64", action="store_true")
    args = parser.parse_args()

    proc = psutil.Process()
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    torch.manual_seed(0)
    model = torchvision.models.resnet50(weights=None).eval()
    build = time.perf_counter() - t0
    rss_model = proc.memory_info().rss

    t0 = time.perf_counter()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    res = rfgraph.erf(
        model, args.node, args.inputs, size=args.size, batch_size=args.batch_size,
        dtype=torch.float64 if args.float64 else torch.float32, progress=True,
    )
    elapsed = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime - cpu0.ru_utime - cpu0.ru_stime
    peak = usage.ru_maxrss * 1024  # Linux: KiB
    load_after = os.getloadavg()

    gib = 1024**3
    print(f"model            torchvision resnet50 (random init), node {args.node} = {res.node}")
    print(f"inputs           {args.inputs} x 3 x {args.size} x {args.size}, batch {args.batch_size}, {res.dtype}")
    print(f"torch threads    {torch.get_num_threads()} (cpu count {os.cpu_count()})")
    print(f"theoretical RF   {res.rf}, box {res.box}, fits {res.fits}")
    print("area ratios      " + ", ".join(f"{int(t * 100)}%: {v:.4f}" for t, v in res.area_ratios.items()))
    print(f"sigma            {tuple(round(s, 2) for s in res.sigma)}, ERF/RF {tuple(round(r, 3) for r in res.rf_ratio)}")
    print(f"NaN / inf        {res.nan_count} / {res.inf_count}")
    print(f"model build      {build:.2f} s")
    print(f"ERF time         {elapsed:.1f} s wall ({elapsed / args.inputs:.2f} s per input), {cpu:.1f} s CPU")
    print(f"peak RSS         {peak / gib:.2f} GiB (model built: {rss_model / gib:.2f} GiB, "
          f"increase {(peak - rss_model) / gib:.2f} GiB)")
    print(f"load average     before {load_before[0]:.2f}, after {load_after[0]:.2f} (2 cores shared: inflated "
          "when above ~2)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
