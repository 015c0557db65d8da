"""``rfgraph probe MODEL [--nodes a,b]``: symbolic vs numeric receptive fields (`rfgraph.probing`)."""

from __future__ import annotations

import argparse
from typing import Any

from .load import default_input_shape, load
from .options import EXIT_FAILED, EXIT_OK, add_model_argument, ints_type, names_type, resolve_shape

__all__ = ["COMMANDS", "add_parser", "run"]


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "probe",
        help="measure receptive fields numerically (gradient probe) and compare with the symbolic pass",
        description="Probe the chosen nodes (default: a handful over the depth plus the last spatial node) on a "
        "sanitized copy of the model (random positive weights; no weights are downloaded) and print symbolic "
        "vs numeric rf / stride / start.  Exit code 1 when any node disagrees or cannot be probed.",
    )
    add_model_argument(p)
    p.add_argument("--nodes", type=names_type(), help="comma-separated node or module names, e.g. layer3,layer4")
    p.add_argument("--input-shape", metavar="N,C,...", type=ints_type("--input-shape"),
                   help="input shape of the symbolic analysis, e.g. 1,3,299,299")
    p.add_argument("--float32", action="store_true", help="probe in float32 (default: float32 where the model's ops keep the "
                   "gradient's non-zero pattern exact in it, else float64)")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    # deferred (as is json): torch and the probe are imported only when the command runs
    import json

    import torch

    from ..passes import analyze
    from ..probing import validate_analysis

    model = load(args.model, device="meta")
    shape = resolve_shape(args.model, default_input_shape(args.model, model), args.input_shape)
    analysis = analyze(model, shape)
    report = validate_analysis(analysis, args.nodes, dtype=torch.float32 if args.float32 else None)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report)
    return EXIT_OK if report.ok else EXIT_FAILED


#: subcommand -> the function adding its parser
COMMANDS = {"probe": add_parser}
