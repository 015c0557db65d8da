"""``rfgraph MODEL [options]`` (also ``rfgraph analyze MODEL``): the RF table of every node.

::

    rfgraph torchvision:resnet50 --stages
    rfgraph timm:convnext_tiny --input-size 288 --format markdown -o rf.md
    rfgraph path/to/net.py:build --input-shape 1,1,16000 --nodes encoder.3,decoder
    rfgraph torchvision:resnet50 --plot depth.png --overlay cat.jpg --nodes layer3 --unit 5,7
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from typing import Any, Optional

from .load import default_input_shape, load
from .options import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    CLIError,
    add_model_argument,
    add_shape_arguments,
    int_type,
    ints_type,
    names_type,
    resolve_shape,
)
from .output import Progress, note, one_line, warn

__all__ = ["COMMANDS", "add_parser", "run", "FORMATS"]

FORMATS = ("table", "markdown", "json", "yaml", "csv")
_SUFFIX_FORMATS = {".md": "markdown", ".markdown": "markdown", ".json": "json", ".yaml": "yaml", ".yml": "yaml",
                   ".csv": "csv", ".txt": "table"}
_PICTURES = (".png", ".svg", ".pdf", ".jpg", ".jpeg")


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "analyze",
        help="receptive field of every node of a model (the default: `rfgraph MODEL` means `rfgraph analyze MODEL`)",
        description="Receptive field, stride and start of every node of a model.",
    )
    p.prog = "rfgraph [analyze]"
    add_model_argument(p)
    add_shape_arguments(p)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--nodes", metavar="A,B", type=names_type(),
                       help="node or module names, comma-separated (e.g. layer1,layer4)")
    which.add_argument("--stages", action="store_true", help="only the output of each module-level block")
    p.add_argument("--format", "-f", choices=FORMATS, help="report format (default: table, or from -o's suffix)")
    p.add_argument("-o", "--output", metavar="FILE", help="write the report to FILE instead of the terminal")
    p.add_argument("--validate", action="store_true",
                   help="cross-check the chosen nodes with the numeric probe (real weights)")
    p.add_argument("--plot", metavar="FILE", help="draw RF size and stride along the depth to FILE.png or FILE.svg")
    p.add_argument("--overlay", metavar="IMAGE",
                   help="draw the RF box of one unit on IMAGE (or 'blank' for an input-sized canvas)")
    p.add_argument("--node", metavar="NAME",
                   help="node or module for --overlay (default: the first of --nodes, else the last spatial node)")
    p.add_argument("--unit", metavar="I,J", type=ints_type("--unit", minimum=0),
                   help="output unit for --overlay, one index per axis (default: the centre)")
    p.add_argument("--overlay-output", metavar="FILE",
                   help="where --overlay writes (default: IMAGE-stem_rf.png, or rf_overlay.png)")
    p.add_argument("--html", metavar="FILE", help="write the interactive explorer to FILE (one offline HTML page)")
    p.add_argument("--image", metavar="FILE", help="picture for --html's input plane (stretched over the input size)")
    p.add_argument("--erf", type=int_type("--erf"), metavar="N",
                   help="with --html: ERF of the --nodes (default: the last spatial node) over N noise inputs, "
                   "measured on the CPU with random-init weights (as the model spec builds it)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress messages on stderr")
    p.set_defaults(run=run)
    return p


def _output_format(args: argparse.Namespace) -> str:
    if args.format:
        return args.format
    if args.output:
        suffix = os.path.splitext(args.output)[1].lower()
        if suffix in _PICTURES:
            raise CLIError(f"-o writes a report, not a picture: use --plot {args.output} (or --overlay-output)",
                           EXIT_USAGE)
        return _SUFFIX_FORMATS.get(suffix, "table")
    return "table"


def run(args: argparse.Namespace) -> int:
    """Load, analyse, report, and optionally validate / plot."""
    spec = args.model
    progress = Progress(args.quiet)
    overlay_image = None
    if args.overlay and args.overlay != "blank":
        if not os.path.exists(args.overlay):
            raise CLIError(f"--overlay image {args.overlay!r} does not exist", EXIT_USAGE)
        overlay_image = args.overlay
    if (args.unit or args.node or args.overlay_output) and not args.overlay:
        raise CLIError("--unit, --node and --overlay-output are only used with --overlay", EXIT_USAGE)
    if (args.image or args.erf) and not args.html:
        raise CLIError("--image and --erf are only used with --html", EXIT_USAGE)
    if args.image and not os.path.exists(args.image):
        raise CLIError(f"--image {args.image!r} does not exist", EXIT_USAGE)
    fmt = _output_format(args)

    with progress.step(f"building {spec}"):
        model = load(spec, device="cpu" if args.validate else "meta")
        default = default_input_shape(spec, model)
    if overlay_image and not (args.input_size or args.input_shape):
        # The boxes are drawn in image pixels: analyse at the image's size.
        from ..report.plots import image_size  # deferred: matplotlib / PIL

        h, w = image_size(overlay_image)
        if len(default) != 4:
            raise CLIError(f"--overlay needs a 2-D image model; {spec} takes inputs of shape {default}", EXIT_USAGE)
        shape = (default[0], default[1], h, w)
    else:
        shape = resolve_shape(spec, default, args.input_shape, args.input_size)

    with progress.step(f"analysing {spec} at input {','.join(map(str, shape))}"):
        from ..errors import InputShapeError
        from ..passes import analyze  # deferred: imports torch

        try:
            analysis = analyze(model, shape)
        except InputShapeError as exc:
            if tuple(shape) == tuple(default):
                raise
            raise CLIError(f"{one_line(exc)} (the default input of {spec} is {','.join(map(str, default))})") from exc
        analysis.model_name = spec
    selected = _selected(args, analysis)
    _write_report(args, analysis, selected, fmt)

    if args.plot:
        with progress.step(f"drawing {args.plot}"):
            from ..report.plots import plot_depth  # deferred: matplotlib

            plot_depth(analysis, args.plot, title=spec)
        if not args.quiet:
            note(f"wrote {args.plot}")
    if args.overlay:
        _overlay(args, analysis, selected, overlay_image, spec, progress)
    if args.html:
        _html(args, analysis, selected, spec, progress)
    if args.validate:
        return _validate(analysis, selected, progress)
    return EXIT_OK


def _selected(args: argparse.Namespace, analysis: Any) -> Optional[list[Any]]:
    if args.stages:
        from ..report import module_outputs

        return module_outputs(analysis)
    if not args.nodes:
        return None
    return [analysis[n] for n in args.nodes]  # NodeNotFoundError names close matches


def table_text(analysis: Any, selected: Optional[list[Any]], spec: str, width: int = 200) -> str:
    """The rich table as plain text; node names and ops are printed as they are, never read as rich markup."""
    from rich.console import Console

    from ..report import rich_table

    buf = io.StringIO()
    Console(file=buf, width=width, no_color=True, highlight=False, markup=False).print(
        rich_table(analysis, selected, model_label=spec))
    return "\n".join(line.rstrip() for line in buf.getvalue().splitlines()) + "\n"


def _write_report(args: argparse.Namespace, analysis: Any, selected: Optional[list[Any]], fmt: str) -> None:
    from ..report import render, rich_table

    spec = args.model
    if fmt == "table" and not args.output and sys.stdout.isatty():
        from rich.console import Console

        Console(highlight=False, markup=False).print(rich_table(analysis, selected, model_label=spec))
        return
    text = table_text(analysis, selected, spec) if fmt == "table" else render(analysis, fmt, selected,
                                                                                 model_label=spec)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(text)
        if not args.quiet:
            note(f"wrote {args.output} ({fmt})")
    else:
        sys.stdout.write(text)


def _overlay(args, analysis, selected, image, spec: str, progress: Progress) -> None:
    from ..report.plots import plot_overlay  # deferred: matplotlib

    if args.node:
        record = analysis[args.node]
    elif args.nodes:
        record = selected[0]
        if len(selected) > 1 and not args.quiet:
            warn(f"--overlay draws one node: {record.name} (choose it with --node)")
    else:
        record = analysis.last_spatial()
        if record is None:
            raise CLIError(f"{spec} has no node with a local receptive field to draw")
    out = args.overlay_output
    if not out:
        out = "rf_overlay.png" if image is None else os.path.splitext(os.path.basename(image))[0] + "_rf.png"
    with progress.step(f"drawing {out}"):
        plot_overlay(analysis, record.name, args.unit, image=image, path=out, title=spec)
    if not args.quiet:
        note(f"wrote {out} (node {record.name})")


def _html(args, analysis, selected, spec: str, progress: Progress) -> None:
    from ..report import write_html  # deferred with the rest of the report layer

    erf = None
    if args.erf:
        from ..effective import erf as measure_erf  # deferred: imports torch

        last = analysis.last_spatial()
        nodes = [r.name for r in (selected or ([last] if last else [])) if r.is_spatial]
        if not nodes:
            raise CLIError("--erf needs a node that is local along some axis (choose one with --nodes)", EXIT_USAGE)
        count = args.erf
        with progress.step(f"measuring the ERF of {', '.join(nodes)} over {count} noise inputs"):
            model = load(spec, device="cpu")
            erf = measure_erf(model, nodes, count, input_shape=analysis.input_shape, progress=not args.quiet)
    with progress.step(f"writing {args.html}"):
        first = selected[0].name if args.nodes and selected else None  # the page opens on the first --nodes
        write_html(args.html, analysis, image=args.image, erf=erf, node=first, model_label=spec)
    if not args.quiet:
        note(f"wrote {args.html}")


def _validate(analysis: Any, selected: Optional[list[Any]], progress: Progress) -> int:
    from ..probing import validate_analysis  # deferred: the probe is only needed with --validate

    nodes = None if selected is None else [r.name for r in selected]
    with progress.step("probing (numeric cross-check)"):
        result = validate_analysis(analysis, nodes)
    sys.stdout.write(str(result).rstrip("\n") + "\n")
    return EXIT_OK if result.ok else EXIT_FAILED


#: subcommand -> the function adding its parser
COMMANDS = {"analyze": add_parser}
