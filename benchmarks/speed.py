"""Time of a full rfgraph analysis (trace + shapes + symbolic pass, all nodes) beside a
bare ``torch.fx.symbolic_trace`` of the same model, measured in the same run.

Model construction (meta device) is excluded; each figure is the median of several runs.

    .venv/bin/python benchmarks/speed.py [--repeat 15]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.fx

import rfgraph
from rfgraph.models import load_model

MODELS = [
    ("resnet50", (1, 3, 224, 224)),
    ("inception_v3", (1, 3, 299, 299)),
    ("densenet121", (1, 3, 224, 224)),
    ("convnext_tiny", (1, 3, 224, 224)),
]


def median_time(fn, repeat: int) -> float:
    fn()  # warm-up: imports, caches
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    print(f"{'model':<16}{'nodes':>7}{'fx trace [s]':>14}{'rfgraph [s]':>14}{'ratio':>8}")
    for name, shape in MODELS:
        model = load_model(f"torchvision:{name}", device="meta")
        bare = median_time(lambda m=model: torch.fx.symbolic_trace(m), args.repeat)
        full = median_time(lambda m=model, s=shape: rfgraph.analyze(m, s), args.repeat)
        nodes = len(rfgraph.analyze(model, shape))
        print(f"{name:<16}{nodes:>7}{bare:>14.4f}{full:>14.4f}{full / bare:>8.2f}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
