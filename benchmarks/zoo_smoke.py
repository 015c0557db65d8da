"""Analyse every torchvision classification model (weights=None, meta device) and count
per model how many nodes are symbolic / probed / global / unknown / nonspatial.

    .venv/bin/python benchmarks/zoo_smoke.py [--markdown] [names...]
"""

from __future__ import annotations

import argparse
import time

import torch
import torchvision

import rfgraph
from rfgraph.models import default_input_shape, load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args()
    names = args.names or torchvision.models.list_models(module=torchvision.models)
    cols = ("symbolic", "probed", "global", "unknown", "nonspatial")
    sep = " | " if args.markdown else "  "
    header = ["model", "input", *cols, "time_s", "unknown ops"]
    print(sep.join(header))
    if args.markdown:
        print("|".join(["---"] * len(header)))
    total = time.perf_counter()
    for name in names:
        spec = f"torchvision:{name}"
        model = load_model(spec, device="meta")
        shape = default_input_shape(spec, model)
        t0 = time.perf_counter()
        try:
            analysis = rfgraph.analyze(model, shape)
        except rfgraph.RFGraphError as exc:
            print(sep.join([name, "x".join(map(str, shape[2:])), "ERROR", str(exc)[:200]]))
            continue
        dt = time.perf_counter() - t0
        counts = analysis.counts()
        ops = sorted({r.reason for r in analysis.unknown() if r.reason})
        print(sep.join([name, "x".join(map(str, shape[2:])), *(str(counts[c]) for c in cols), f"{dt:.3f}",
                        "; ".join(ops)[:300]]))
    print(f"total {time.perf_counter() - total:.1f} s for {len(names)} models")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
