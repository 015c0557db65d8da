"""Time of `rfgraph.probing.validate_analysis` on every segmentation_models_pytorch architecture (issue 14).

Usage: ``.venv/bin/python benchmarks/validate_smp.py [--encoder resnet34] [--archs Unet,FPN,...]
[--nodes zoo|default] [--timeout 900] [--threads N] [--profile ARCH]``

Each architecture is built with ``encoder_weights=None`` on the meta device (the probe materialises its own
sanitized copy), analysed at its usual input size (256 x 256; DPT, which takes only ViT encoders, at 224 x 224
with ``tu-vit_small_patch16_224``) and validated at the nodes the zoo validates (``--nodes zoo``: the trunk's
stage nodes plus ``encoder`` and ``decoder``, `rfgraph.zoo._stage_nodes`) or at `default_nodes` (``--nodes
default``, what ``rfgraph MODEL --validate`` picks).  Every architecture runs in its own process.  The table:
model, nodes validated, validation seconds (the analysis is not included), agree / disagree / error counts.
Target (issue 14): under 60 s per architecture with the resnet34 encoder on this machine.

``--profile ARCH`` runs that one architecture under cProfile in this process and prints the top functions.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # this checkout's rfgraph


def _archs() -> list[str]:
    import segmentation_models_pytorch as smp

    return [cls.__name__ for cls in smp.MODEL_ARCHITECTURES_MAPPING.values()]


def _setup(arch: str, encoder: str, nodes: str):
    import torch

    import rfgraph
    from rfgraph.models import load_model, offline_env
    from rfgraph.zoo import families
    from rfgraph.zoo import task as zoo_task

    offline_env()
    if arch == "DPT":
        encoder, shape = families.SMP_DPT_ENCODER, (1, 3, 224, 224)
    else:
        shape = (1, 3, 256, 256)
    spec = f"smp:{arch}:{encoder}"
    model = load_model(spec, device="meta")
    with torch.no_grad():
        analysis = rfgraph.analyze(model, shape)
    if nodes == "default":
        names = rfgraph.probing.default_nodes(analysis)
    else:
        task = families.ZooModel(spec, spec, "smp", input_shape=shape, extra_nodes=("encoder", "decoder"))
        names = [n for _, n in zoo_task._stage_nodes(analysis, task, None) if n]
    return spec, analysis, names


def run_case(arch: str, encoder: str, nodes: str, threads: int) -> dict:
    import torch

    from rfgraph.probing import validate_analysis

    if threads:
        torch.set_num_threads(threads)
    spec, analysis, names = _setup(arch, encoder, nodes)
    t0 = time.perf_counter()
    report = validate_analysis(analysis, names)
    seconds = time.perf_counter() - t0
    status = [r.status for r in report.rows]
    return {
        "model": spec, "nodes": len(names), "seconds": round(seconds, 1),
        "agree": sum(s in ("ok", "clipped") for s in status), "disagree": status.count("DISAGREE"),
        "error": status.count("error"), "skipped": status.count("skipped"),
        "notes": [f"{r.node}: {r.status}: {r.error or '; '.join(map(str, r.disagreements))}"[:300]
                  for r in report.rows if r.status not in ("ok", "clipped")],
    }


def profile(arch: str, encoder: str, nodes: str, top: int = 40) -> None:
    import cProfile
    import pstats

    from rfgraph.probing import validate_analysis

    _, analysis, names = _setup(arch, encoder, nodes)
    prof = cProfile.Profile()
    prof.enable()
    report = validate_analysis(analysis, names)
    prof.disable()
    print(report)
    stats = pstats.Stats(prof).sort_stats("cumulative")
    stats.print_stats(top)
    stats.sort_stats("tottime").print_stats(top)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="resnet34")
    parser.add_argument("--archs", help="comma-separated architectures (default: all of smp's)")
    parser.add_argument("--nodes", default="zoo", choices=["zoo", "default"])
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="one JSON line per architecture instead of the table")
    parser.add_argument("--profile", metavar="ARCH")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.encoder, args.nodes, args.threads)))
        return 0
    if args.profile:
        profile(args.profile, args.encoder, args.nodes)
        return 0
    archs = args.archs.split(",") if args.archs else _archs()
    print(f"validate_analysis on smp architectures, encoder {args.encoder}, nodes {args.nodes!r} "
          "(each in its own process; seconds of validation only)")
    print(f"{'model':34} {'nodes':>5} {'seconds':>8} {'agree':>5} {'disagree':>8} {'error':>5} {'skipped':>7}")
    status = 0
    for arch in archs:
        cmd = [sys.executable, __file__, "--case", arch, "--encoder", args.encoder, "--nodes", args.nodes,
               "--threads", str(args.threads)]
        t0 = time.perf_counter()
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            print(f"{arch:34} timed out after {args.timeout:g} s", flush=True)
            status = 1
            continue
        if out.returncode != 0:
            print(f"{arch:34} failed after {time.perf_counter() - t0:.0f} s: "
                  f"{(out.stderr.strip().splitlines() or [''])[-1][:200]}", flush=True)
            status = 1
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        if args.json:
            print(json.dumps(r), flush=True)
        else:
            print(f"{r['model']:34} {r['nodes']:5d} {r['seconds']:8.1f} {r['agree']:5d} {r['disagree']:8d} "
                  f"{r['error']:5d} {r['skipped']:7d}", flush=True)
            for note in r["notes"]:
                print(f"    {note}", flush=True)
        status |= bool(r["disagree"] or r["error"] or r["seconds"] > 60)
    return status


if __name__ == "__main__":
    sys.exit(main())
