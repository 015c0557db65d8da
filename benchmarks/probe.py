"""Time and peak memory of the numeric probe on ResNet-50 `layer4` and DenseNet-121 `features`.

Usage: ``.venv/bin/python benchmarks/probe.py [--dtype float64|float32] [--repeat N] [--threads N]``

Each case runs in a fresh subprocess, so that its peak resident memory (``ru_maxrss``) is its own
("of which probe": the peak above what importing torch / torchvision / rfgraph already takes);
the symbolic analysis (used only to choose the probing input sizes) is timed separately.  Models are
built on the meta device (``weights=None``): the probe materialises its own sanitized copy.
Target: under 2 s for ResNet-50 ``layer4`` on a quiet 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

CASES = [("resnet50", "layer4", 224), ("densenet121", "features", 224)]


def run_case(name: str, node: str, size: int, dtype: str, repeat: int, threads: int = 0) -> dict:
    import torch
    import torchvision

    import rfgraph

    if threads:
        torch.set_num_threads(threads)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with torch.device("meta"):
        model = getattr(torchvision.models, name)(weights=None)
    t0 = time.perf_counter()
    analysis = rfgraph.analyze(model, (1, 3, size, size))
    t_sym = time.perf_counter() - t0
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = rfgraph.probe(model, node, analysis=analysis, dtype=getattr(torch, dtype))
        times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rec = analysis[node]
    return {
        "model": name, "node": rec.name, "dtype": dtype, "symbolic_s": t_sym, "probe_s": min(times),
        "peak_rss_mb": peak / 1024, "peak_rss_over_import_mb": (peak - base) / 1024,
        "rf": list(result.rf), "stride": [str(s) for s in result.stride], "start": [str(s) for s in result.start],
        "agrees": result.rf == rec.rf and result.stride == rec.stride and result.start == rec.start and result.exact,
        "inputs": [list(a.input_shape) for a in result.axes],
        "threads": torch.get_num_threads(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads (default: torch's own; 1 is steadier on a loaded machine)")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        name, node, size = args.case.split(":")
        print(json.dumps(run_case(name, node, int(size), args.dtype, args.repeat, args.threads)))
        return 0
    print(f"numeric probe benchmark (dtype {args.dtype}; each case in its own process)")
    print(f"{'model':14} {'node':18} {'probe s':>8} {'symbolic s':>10} {'peak RSS MB':>11} {'of which probe':>14}"
          "  rf / stride / start")
    status = 0
    for name, node, size in CASES:
        out = subprocess.run(
            [sys.executable, __file__, "--case", f"{name}:{node}:{size}", "--dtype", args.dtype,
             "--repeat", str(args.repeat), "--threads", str(args.threads)],
            capture_output=True, text=True,
        )
        if out.returncode != 0:
            print(f"{name} {node}: failed\n{out.stderr.strip()}")
            status = 1
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        flag = "" if r["agrees"] else "  DISAGREES WITH SYMBOLIC"
        print(f"{r['model']:14} {r['node']:18} {r['probe_s']:8.2f} {r['symbolic_s']:10.2f} {r['peak_rss_mb']:11.0f}"
              f" {r['peak_rss_over_import_mb']:14.0f}"
              f"  {r['rf'][0]} / {r['stride'][0]} / {r['start'][0]}  (inputs {r['inputs']}, "
              f"{r['threads']} threads){flag}")
        status |= not r["agrees"]
    return status


if __name__ == "__main__":
    sys.exit(main())
