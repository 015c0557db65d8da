"""Time of a full rfgraph analysis (trace + shapes + symbolic pass, all nodes) beside a
bare ``torch.fx.symbolic_trace`` of the same model, measured in the same run.

Model construction (meta device) is excluded; each figure is the median of several runs, rfgraph's
merge caches cleared before each (`rfgraph.values.clear_merge_caches`).

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
from rfgraph.values import clear_merge_caches

MODELS = [
    ("torchvision:resnet50", (1, 3, 224, 224)),
    ("torchvision:inception_v3", (1, 3, 299, 299)),
    ("torchvision:densenet121", (1, 3, 224, 224)),
    ("torchvision:convnext_tiny", (1, 3, 224, 224)),
    # attention: window attention, a plain ViT, timm hybrids (conv stages + attention)
    ("torchvision:swin_t", (1, 3, 224, 224)),
    ("torchvision:vit_b_16", (1, 3, 224, 224)),
    ("timm:levit_128s", (1, 3, 224, 224)),
    ("timm:coatnet_0_rw_224", (1, 3, 224, 224)),
]


def median_time(fn, repeat: int) -> float:
    fn()  # warm-up: imports, torch's caches
    times = []
    for _ in range(repeat):
        clear_merge_caches()  # each analysis timed as the first one of the process would run
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--models", default="", help="comma-separated specs (default: all of MODELS)")
    args = parser.parse_args()
    chosen = [m for m in MODELS if not args.models or m[0] in args.models.split(",")]
    print(f"{'model':<28}{'nodes':>7}{'fx trace [s]':>14}{'rfgraph [s]':>14}{'ratio':>8}")
    for name, shape in chosen:
        model = load_model(name, device="meta")
        bare = median_time(lambda m=model: torch.fx.symbolic_trace(m), args.repeat)
        full = median_time(lambda m=model, s=shape: rfgraph.analyze(m, s), args.repeat)
        nodes = len(rfgraph.analyze(model, shape))
        print(f"{name:<28}{nodes:>7}{bare:>14.4f}{full:>14.4f}{full / bare:>8.2f}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
