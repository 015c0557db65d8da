"""``rfgraph zoo``: receptive fields of every stage of many models, in one table (`rfgraph.zoo.run`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .options import EXIT_FAILED, EXIT_OK, EXIT_USAGE, CLIError, int_type, names_type
from .output import note, one_line

__all__ = ["COMMANDS", "add_parser", "run"]

#: `rfgraph.zoo.FAMILIES`, repeated so that building this parser does not import torch
#: (tests/cli/test_zoo.py checks that the two agree).
FAMILIES = ("classification", "segmentation", "detection", "video", "timm",
            "timm-all", "smp", "monai", "transformers", "torchaudio", "ultralytics", "open_clip")


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "zoo",
        help="receptive fields of every stage of many models, in one table",
        description="Sweep model families (no weights; meta device) and tabulate rf, stride and start per stage node.",
    )
    p.add_argument("--family", choices=FAMILIES + ("all",), help="model family (default: classification)")
    p.add_argument("--models", type=names_type("--models"),
                   help="comma-separated names or specs, e.g. resnet50,timm:convnext_nano,timm:resnet*,"
                        "smp:Unet:resnet34; with --family: only those models of the family")
    p.add_argument("--nodes", type=names_type(),
                   help="comma-separated nodes or module names to report instead of the automatic stages")
    p.add_argument("--validate", action="store_true", help="check every stage node with the numeric probe (slow)")
    p.add_argument("--jobs", type=int_type("--jobs"), default=1, metavar="N", help="local worker processes (default 1)")
    p.add_argument("--dask-scheduler", metavar="ADDR", help="run the tasks on a dask.distributed cluster")
    p.add_argument("--timeout", type=float, default=900.0, metavar="S",
                   help="seconds per model before its worker process is stopped (default 900)")
    p.add_argument("--in-process", action="store_true",
                   help="run the models in this process instead of one worker process each (no timeout)")
    p.add_argument("--resume", action="store_true",
                   help="keep the complete models of the output's .jsonl log (made with the same options)")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="write .md, .csv, .json or .jsonl (default: Markdown on stdout)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    from .. import zoo  # deferred: imports torch

    if args.timeout is not None and not args.timeout > 0:
        raise CLIError(f"--timeout must be a positive number of seconds, got {args.timeout}", EXIT_USAGE)
    if args.family:  # --models then picks models of that family
        selection, only = [args.family], args.models
    else:
        selection, only = args.models or ["classification"], None
    try:
        result = zoo.run(
            selection,
            only=only,
            isolate=not args.in_process,
            timeout=args.timeout,
            out=args.output,
            validate=args.validate,
            jobs=args.jobs,
            dask_scheduler=args.dask_scheduler,
            resume=args.resume,
            nodes=args.nodes,
            progress=not args.no_progress and sys.stderr.isatty(),
        )
    except ValueError as exc:  # a bad combination of options
        raise CLIError(str(exc), EXIT_USAGE) from exc
    except (ImportError, OSError, zoo.NoWorkerError) as exc:  # dask missing or without workers, output not writable
        raise CLIError(one_line(exc), EXIT_FAILED) from exc
    if args.output is None:
        sys.stdout.write(result.to_markdown())
    s = result.summary()
    note(f"zoo: {s['models']} models ({s['failed']} failed, {result.resumed} resumed), {s['rows']} rows, "
         f"{s['wall_s']} s" + (f" -> {args.output}" if args.output else ""))
    return EXIT_OK


#: subcommand -> the function adding its parser
COMMANDS = {"zoo": add_parser}
