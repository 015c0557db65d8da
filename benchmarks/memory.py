"""Peak memory and time of analyses and probes whose input is huge: memory must follow the work, not the input.

Usage: ``.venv/bin/python benchmarks/memory.py [--cases a,b,...] [--cap-gb 8] [--timeout 900] [--json]``

Each case runs in a fresh subprocess (``--case NAME``), so its peak resident memory (``ru_maxrss``) is its
own.  "over import" is the peak above what importing torch / torchvision / rfgraph and building the model
already took.  The model is torchvision's ResNet-18 built on the CPU with random weights (``weights=None``),
the case of issue 15 ("+4.6 GB and 16.5 s at 20000x20000 on a CPU model"); the same model on the meta device
needs no weights at all.

Rows (target for each: within 100 MB of the same work at 224x224):

* ``analyze 224`` / ``analyze 20000`` / ``analyze 100000``: ``rfgraph.analyze(resnet18(), (1, 3, n, n))``.
* ``validate 224`` / ``validate 30000``: ``rfgraph torchvision:resnet18 --stages --validate --input-size N``
  (the numeric probe on the CPU model; 11.5 GB at 30000 before issue 15).  The peak is the CLI process's own,
  which imports and builds more than the ``analyze`` rows' process, so a validate row is compared with
  ``validate 224``, not with ``analyze 224``.
* ``conv+flip 224`` / ``conv+flip 8000``: ``analyze`` of ``Conv2d(3, 8, 3)`` followed by ``torch.flip`` along W:
  the flip has no rule, so the fallback probes it (279 s and 4.15 GB at 8000x8000 before issue 15).  A flip
  moves each position across the whole axis, so the probe's crop holds a whole row: this row's work grows with W.

The probe rows belong to the probe's own work (its crop sized by the RF); they are here so that its numbers
sit next to the analysis ones.  A child is limited to ``--cap-gb`` of address space (a row that needs more
fails with a MemoryError instead of starving a shared machine) and ``--timeout`` seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

CASES = ["analyze 224", "analyze 20000", "analyze 100000", "validate 224", "validate 30000", "conv+flip 224",
         "conv+flip 8000"]


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_case(case: str) -> dict:
    import torch
    import torchvision
    from torch import nn

    import rfgraph

    kind, size = case.split()
    n = int(size)
    out: dict = {"case": case}
    if kind == "analyze":
        model = torchvision.models.resnet18(weights=None)
        base = _peak_mb()
        t0 = time.perf_counter()
        a = rfgraph.analyze(model, (1, 3, n, n))
        out.update(seconds=time.perf_counter() - t0, result=f"layer4 rf {a['layer4'].rf[0]}")
    elif kind == "validate":
        base = _peak_mb()
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "rfgraph", "torchvision:resnet18", "--stages", "--validate",
                               "--input-size", str(n), "-q"], capture_output=True, text=True)
        out.update(seconds=time.perf_counter() - t0, exit_code=proc.returncode,
                   result=(proc.stdout.strip().splitlines() or proc.stderr.strip().splitlines() or [""])[-1][:120])
        child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        out.update(peak_rss_mb=child, peak_rss_over_import_mb=None)
        return out
    elif kind == "conv+flip":

        class ConvFlip(nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = nn.Conv2d(3, 8, 3)

            def forward(self, x):
                return torch.flip(self.conv(x), dims=(-1,))

        model = ConvFlip()
        base = _peak_mb()
        t0 = time.perf_counter()
        a = rfgraph.analyze(model, (1, 3, n, n))
        rec = a["output"]
        out.update(seconds=time.perf_counter() - t0, result=f"output {rec.source} rf {rec.rf}")
    else:
        raise SystemExit(f"unknown case {case!r}")
    peak = _peak_mb()
    out.update(peak_rss_mb=peak, peak_rss_over_import_mb=peak - base)
    return out


def _child(case: str, cap_gb: float, timeout: float) -> dict:
    def limit() -> None:
        if cap_gb > 0:
            cap = int(cap_gb * 2**30)
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")]))
    try:
        proc = subprocess.run([sys.executable, __file__, "--case", case], capture_output=True, text=True,
                              timeout=timeout, preexec_fn=limit, env=env)
    except subprocess.TimeoutExpired:
        return {"case": case, "error": f"timeout after {timeout:.0f} s"}
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return {"case": case, "error": last[:160]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated subset of: " + ", ".join(CASES))
    parser.add_argument("--cap-gb", type=float, default=8.0, help="address-space limit per case (0: none)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per case")
    parser.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case)))
        return 0
    rows = [_child(c.strip(), args.cap_gb, args.timeout) for c in args.cases.split(",") if c.strip()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    refs = {r["case"].split()[0]: r.get("peak_rss_mb") for r in rows if r["case"].endswith(" 224")}
    print("| case | time (s) | peak RSS (MB) | over import (MB) | vs the same at 224 (MB) | result |")
    print("|---|---:|---:|---:|---:|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['case']} | - | - | - | - | failed: {r['error']} |")
            continue
        ref = refs.get(r["case"].split()[0])
        delta = None if ref is None else r["peak_rss_mb"] - ref
        print(f"| {r['case']} | {_fmt(r.get('seconds'), '.2f')} | {_fmt(r['peak_rss_mb'], '.0f')} | "
              f"{_fmt(r.get('peak_rss_over_import_mb'), '.0f')} | {_fmt(delta, '+.0f')} | {r.get('result', '')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
