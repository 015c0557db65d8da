"""``rfgraph erf MODEL --node NODE ...``: the effective receptive field (`rfgraph.erf`) from the command line."""

from __future__ import annotations

import argparse
import warnings
from typing import Any, Sequence

from .load import default_input_shape, load
from .options import (
    EXIT_OK,
    EXIT_USAGE,
    CLIError,
    add_model_argument,
    floats_type,
    int_type,
    ints_type,
    split_names,
)
from .output import note, warn

__all__ = ["COMMANDS", "add_parser", "run", "table"]


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "erf",
        help="effective receptive field (gradient map) of a node, with the model's real weights",
        description="Accumulate |d out / d input| for the centre unit of NODE over noise or images, "
        "with the model in eval mode (random init for torchvision/timm specs: no weights are downloaded).",
    )
    add_model_argument(p)
    p.add_argument("--node", help="node or module name (as in `rfgraph MODEL` tables), e.g. layer4")
    p.add_argument("--nodes", help="comma-separated node names measured in one forward pass, or 'stages'")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--images", metavar="DIR", help="folder of images (resized to --size, normalized)")
    src.add_argument("--noise", metavar="N", type=int_type("--noise"),
                     help="number of standard-normal inputs (default 16)")
    p.add_argument("--size", type=ints_type("--size"), help="spatial input size, e.g. 512 or 384x512 (default: the "
                   "smallest size at which the theoretical RF of the centre unit fits)")
    p.add_argument("--input-shape", type=ints_type("--input-shape"), metavar="N,C,...",
                   help="input template, e.g. 1,1,16000 for a 1-D model: channels and rank, and the smallest "
                   "automatic size (default: the model's usual input, 1,3,224,224 for images)")
    p.add_argument("--channel", type=int_type("--channel", minimum=0),
                   help="seed one output channel instead of the sum over channels")
    p.add_argument("--mean", type=floats_type("--mean"), help="per-channel mean for --images (default ImageNet for RGB)")
    p.add_argument("--std", type=floats_type("--std"), help="per-channel std for --images (default ImageNet for RGB)")
    p.add_argument("--plot", metavar="PNG", help="write a heatmap with the theoretical RF box")
    p.add_argument("--scale", choices=("log", "linear"), default="log", help="colour scale of --plot")
    p.add_argument("--dpi", type=int_type("--dpi"), default=100, help="resolution of --plot (default 100)")
    p.add_argument("--npy", metavar="FILE", help="save the map as .npy (one file per node: FILE_<node>.npy)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--float64", action="store_true", help="run a float64 copy of the model")
    p.add_argument("--batch-size", type=int_type("--batch-size"), default=8,
                   help="inputs per forward pass (default 8)")
    p.add_argument("--seed", type=int_type("--seed", minimum=0), default=0,
                   help="seed of the random-init weights and of the noise inputs")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    # deferred (as is json): torch and the ERF machinery are imported only when the command runs
    import json

    import torch

    from ..effective import ERFWarning, default_nodes, erf, fx_trace_or_none, plot_erf

    stages = bool(args.nodes) and args.nodes.strip() == "stages"
    named = [] if stages else split_names(args.nodes)
    torch.manual_seed(args.seed)  # random-init weights: the same seed gives the same model and numbers
    model = load(args.model, device="cpu")
    template = tuple(args.input_shape) if args.input_shape else default_input_shape(args.model, model)
    if not 3 <= len(template) <= 5:
        raise CLIError(f"--input-shape needs N,C and 1 to 3 spatial sizes, got {','.join(map(str, template))}",
                       EXIT_USAGE)
    ndim = len(template) - 2
    traced = fx_trace_or_none(model)  # None: traced per size with torch.export, as analyze does
    nodes = default_nodes(model, template, "stages", traced=traced) if stages else named
    if args.node:
        nodes = [args.node] + [n for n in nodes if n != args.node]
    if not nodes:
        nodes = default_nodes(model, template, "last", traced=traced)
    size = args.size
    if size is not None and len(size) == 1:
        size = size * ndim
    inputs: Any = args.images if args.images else (args.noise if args.noise is not None else 16)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ERFWarning)
        results = erf(
            model, nodes, inputs, size=size, input_shape=template, channel=args.channel,
            dtype=torch.float64 if args.float64 else None, batch_size=args.batch_size,
            mean=args.mean, std=args.std, seed=args.seed, progress=not args.no_progress, traced=traced,
        )
    for w in caught:
        if issubclass(w.category, ERFWarning):
            warn(w.message)
    res_list = list(results.values())
    if args.npy:
        base = args.npy[:-4] if args.npy.endswith(".npy") else args.npy
        for r in res_list:
            target = args.npy if len(res_list) == 1 else f"{base}_{r.requested.replace('/', '_')}.npy"
            r.save_npy(target)
            if not args.json:
                note(f"saved {target}")
    if args.plot:
        first = res_list[0]
        title = (f"ERF of {args.model} ({first.n_samples} {'images' if args.images else 'noise inputs'}, "
                 f"input {'x'.join(map(str, first.input_shape[2:]))})")
        plot_erf(res_list, args.plot, scale=args.scale, dpi=args.dpi, title=title)
        if not args.json:
            note(f"saved {args.plot}")
    if args.json:
        print(json.dumps([r.to_dict() for r in res_list], indent=2))
    else:
        print(table(res_list))
    return EXIT_OK


def table(results: Sequence[Any]) -> str:
    """One row per `ERFResult`: input size, RF, area ratios, r50, sigma, ERF/RF, non-finite counts; notes below."""
    from ..effective import DEFAULT_SHARES

    head = ["node", "input", "RF", "20%", "30%", "50%", "99%", "r50", "sigma", "ERF/RF", "NaN", "inf"]
    rows = []
    for r in results:
        ar = r.area_ratios
        rows.append([
            r.requested if r.requested == r.node else f"{r.requested} ({r.node})",
            "x".join(map(str, r.input_shape[2:])),
            "x".join("-" if v is None else str(v) for v in r.rf),
            *(f"{ar[t]:.4f}" for t in DEFAULT_SHARES),
            f"{r.radius(0.5):.1f}",
            "/".join(f"{s:.1f}" for s in r.sigma),
            "/".join(f"{v:.3f}" for v in r.rf_ratio),
            str(r.nan_count),
            str(r.inf_count),
        ])
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    notes = [f"note: {r.requested}: {r.note}" for r in results if r.note]
    return "\n".join(lines + notes)


#: subcommand -> the function adding its parser
COMMANDS = {"erf": add_parser}
