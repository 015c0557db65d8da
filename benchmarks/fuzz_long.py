"""Long fuzzing run: N random networks, symbolic pass vs numeric measurement.

    .venv/bin/python benchmarks/fuzz_long.py --examples 10000 [--seed 0] [--jobs 1] [--out fuzz.jsonl]
        [--family dag|unet]

Generates networks with the hypothesis strategies of tests/strategies.py and,
unlike the pytest run (``make fuzz-long``), does not stop at the first
disagreement: every disagreeing (or crashing) network is written to ``--out``
(one JSON line with the spec, the axis and the disagreements) and counted, so
one run gives the exact number of networks checked, the time, and every
failure.  ``--jobs`` splits the examples over processes with different seeds
(one torch thread each).  Each network is checked along one spatial axis
(drawn with the network; the pytest run checks every axis), every node, on
every unit that the reference network itself finds reading nothing out of
range (docs/design.md, "Testing: the fuzzing").  ``--family dag`` draws 1-3 d
DAGs (conv, transposed conv, pooling, pads, upsampling, adaptive pooling,
crops, add / mul / cat); ``--family unet`` 2-D U-Net-like networks
(`strategies.unet_specs`: resampling by integer and fractional factors,
``align_corners`` both ways, transposed convs with holes, output padding and
dilation, pixel (un)shuffle, crops, merges by add / mul / max / cat / stack).

The statistics: ``compared`` / ``last_node_compared`` count the networks with
some node / the last node compared; ``nodes`` all nodes, ``nodes_checked``
those compared on some unit, ``nodes_full_period`` those whose rf, stride and
start were compared over a full period, ``units`` the unit windows compared;
``axes_too_big`` axes whose measurement would exceed the element budget;
``thin_retries`` axes measured again with thicker other axes;
``features`` how many networks contain each generated feature.

Figures on this machine (2 shared cores, ``--jobs 1``, seed 0, 10 000 networks each):

    family  compared (last node)  nodes checked      units      unknown  failures  too big  wall
    unet    9996 / 10000          128213 / 128286    3658507    0        0         4        2477 s
    unet    9996 / 10000          128137 / 128210    3649366    0        0         4        453 s (--jobs 2, main 65b7de8, quiet)
    dag     9963 / 10000          33301 / 33444      600934     0        0         37       470 s

U-Net features in that run (networks containing each): fractional resize 4479,
integer resize 5100, align_corners True 1353 / False 2983, transposed convs
2854 (with holes 1772, output padding 1465, dilation 945), pixel shuffle 3472,
unshuffle 3815, crops 5332, merges add 4257 / mul 3322 / max 2962 / cat 2787 /
stack 2426; 19 axes were measured again with thicker other axes (a crop keeping only
transposed-conv holes there).  DAGs: 3349 1-d, 3538 2-d, 3113 3-d networks;
37 axes would have exceeded the 4M-element budget (`strategies.BUDGET`).  The
U-Net run shared the machine with test-suite runs for about 25 of its 41 minutes.
Before the clean-unit measurement, 61 of 100 U-Nets were not
compared at all (their axis too large for the margin-based input size).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
# this checkout's rfgraph (not whichever one the interpreter has installed) and its tests/strategies.py
sys.path[:0] = [os.path.join(HERE, ".."), os.path.join(HERE, "..", "tests")]


def features(spec) -> list[str]:
    """The generated features a network contains (counted per network in the run's statistics)."""
    out = set()
    for op in spec.ops:
        if op.kind == "resize":
            mode, num, den, align = op.params
            out.add("resize_fractional" if den != 1 else "resize_integer")
            out.add(f"resize_{mode}")
            if mode != "nearest":
                out.add(f"align_corners_{bool(align)}")
        elif op.kind == "up":
            out.add("resize_integer")
            out.add(f"resize_{op.params[0]}")
            if op.params[0] != "nearest":
                out.add("align_corners_False")
        elif op.kind == "convT":
            k, s, d, p, op_pad = op.params
            out.add("convT")
            if len({d * j % s for j in range(k)}) < s:
                out.add("convT_holes")  # some output residue gets no tap: units that read nothing
            if op_pad:
                out.add("convT_output_padding")
            if d > 1:
                out.add("convT_dilation")
        elif op.kind == "conv" and op.params[2] > 1:
            out.add("conv_dilation")
        elif op.kind == "conv" and op.params[1] > 1:
            out.add("conv_strided")
        elif op.kind in ("shuffle", "unshuffle", "crop", "maxpool", "avgpool", "pad", "adapt"):
            out.add(op.kind)
        elif op.kind in ("add", "mul", "max", "cat", "stack"):
            out.add(f"merge_{op.kind}")
    return sorted(out)


def _run(seed: int, examples: int, out: str, family: str = "dag") -> dict:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hseed
    from hypothesis import strategies as st
    from strategies import UNET_BUDGET, UNET_THIN, check, net_specs, unet_specs

    specs = unet_specs() if family == "unet" else net_specs()

    # compared: networks where at least one node was compared; last_node_compared: where the last one was
    # (the rest: the drawn axis was too big to measure within the budget, or nodes were unknown); nodes:
    # all nodes of all networks, nodes_checked: those compared on some unit
    import torch

    torch.set_num_threads(1)  # one core per job
    stats = {"networks": 0, "compared": 0, "last_node_compared": 0, "failures": 0, "nodes": 0,
             "nodes_checked": 0, "nodes_full_period": 0, "units": 0, "nodes_unknown": 0, "networks_unknown": 0,
             "axes_too_big": 0, "thin_retries": 0, "by_nd": {1: 0, 2: 0, 3: 0}, "features": {}}

    @hseed(seed)
    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(specs, st.integers(0, 2))
    def one(spec, axis):
        # one spatial axis per network (drawn): the generated ops treat the axes alike
        try:
            if family == "unet":
                report = check(spec, axes=[axis % spec.nd], budget=UNET_BUDGET, min_thin=UNET_THIN)
            else:
                report = check(spec, axes=[axis % spec.nd])
        except Exception as exc:  # an rfgraph crash is a failure too; keep going, keep the spec
            stats["networks"] += 1
            stats["failures"] += 1
            stats["errors"] = stats.get("errors", 0) + 1
            with open(out, "a") as fh:
                fh.write(json.dumps({"spec": str(spec), "axis": axis % spec.nd,
                                     "error": f"{type(exc).__name__}: {exc}"[:2000]}) + "\n")
            return
        stats["networks"] += 1
        stats["compared"] += report.nodes_checked > 0
        stats["last_node_compared"] += report.last_checked > 0
        stats["nodes"] += len(spec.ops)
        for f in features(spec):
            stats["features"][f] = stats["features"].get(f, 0) + 1
        stats["by_nd"][spec.nd] += 1
        stats["nodes_checked"] += report.nodes_checked
        stats["nodes_full_period"] += report.nodes_full_period
        stats["units"] += report.checked_units
        stats["nodes_unknown"] += report.nodes_unknown
        stats["networks_unknown"] = stats.get("networks_unknown", 0) + (report.nodes_unknown > 0)
        stats["axes_too_big"] += report.too_big
        stats["thin_retries"] += report.thin_retries
        if report.disagreements:
            stats["failures"] += 1
            with open(out, "a") as fh:
                fh.write(json.dumps({"spec": str(spec), "axis": axis % spec.nd,
                                     "disagreements": [str(d) for d in report.disagreements[:20]]}) + "\n")
        if stats["networks"] % 250 == 0:
            print(f"[seed {seed}] {stats['networks']} networks, {stats['failures']} failing", flush=True)

    one()
    return stats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--out", default="fuzz_failures.jsonl")
    parser.add_argument("--family", choices=["dag", "unet"], default="dag",
                        help="random DAGs of 1-3 d ops (default) or 2-D U-Net-like networks")
    args = parser.parse_args()
    t0 = time.time()
    per_job = [args.examples // args.jobs + (1 if i < args.examples % args.jobs else 0) for i in range(args.jobs)]
    if args.jobs == 1:
        results = [_run(args.seed, per_job[0], args.out, args.family)]
    else:
        with ProcessPoolExecutor(args.jobs) as pool:
            futures = [pool.submit(_run, args.seed + i, n, args.out, args.family) for i, n in enumerate(per_job)]
            results = [f.result() for f in futures]
    total: dict = {}
    for r in results:
        for k, v in r.items():
            if isinstance(v, dict):
                total.setdefault(k, {})
                for kk, vv in v.items():
                    total[k][kk] = total[k].get(kk, 0) + vv
            else:
                total[k] = total.get(k, 0) + v
    total["seconds"] = round(time.time() - t0, 1)
    print(json.dumps(total, indent=1))
    return 1 if total["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
