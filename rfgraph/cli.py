"""The ``rfgraph`` command line.

``rfgraph MODEL [options]`` (short for ``rfgraph analyze MODEL``) prints the
receptive field of every node of a model::

    rfgraph torchvision:resnet50 --stages
    rfgraph timm:convnext_tiny --input-size 288 --format markdown -o rf.md
    rfgraph path/to/net.py:build --input-shape 1,1,16000 --nodes encoder.3,decoder
    rfgraph torchvision:resnet50 --plot depth.png --overlay cat.jpg --nodes layer3 --unit 5,7

Other commands come from feature modules: each module listed in
`SUBCOMMAND_MODULES` that imports and defines ``add_cli(subparsers)`` adds its
own subcommand (``rfgraph zoo ...``, ``rfgraph box ...``).  The first argument
decides: a known command name runs that command, anything else is a model spec.

Errors are one line on stderr and a non-zero exit code (1: the request
failed, 2: bad command line, 3: an internal error); set ``RFGRAPH_DEBUG=1``
to see tracebacks.  Nothing heavy is imported until it is needed, so that
``--help`` is instant and a whole analysis costs little more than importing
torch.

``file.py:factory`` and ``package.module:factory`` specs *execute that code*:
only point them at files you trust.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import gc
import importlib
import os
import re
import sys
import time
from typing import Any, Callable, Iterator, Optional, Sequence

__all__ = ["main", "build_parser", "SUBCOMMAND_MODULES", "CLIError", "parse_ints"]

#: Modules that may contribute subcommands through ``add_cli(subparsers)``.
#: A module that is not installed (or not written yet) is skipped silently.
SUBCOMMAND_MODULES = ["rfgraph.zoo", "rfgraph.queries", "rfgraph.effective", "rfgraph.probing"]

_BUILTIN_COMMANDS = ("analyze",)
_FORMATS = ("table", "markdown", "json", "yaml", "csv")
_SUFFIX_FORMATS = {".md": "markdown", ".markdown": "markdown", ".json": "json", ".yaml": "yaml", ".yml": "yaml",
                   ".csv": "csv", ".txt": "table"}

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3


class CLIError(Exception):
    """A user-facing command-line error: printed as one line, exit code ``code``."""

    def __init__(self, message: str, code: int = EXIT_FAILED):
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    """An `ArgumentParser` whose errors are one line (no usage dump)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise CLIError(f"{message} (see `{self.prog} --help`)", EXIT_USAGE)


# -- argument parsing helpers ----------------------------------------------------------


def parse_ints(text: str, what: str) -> tuple[int, ...]:
    """``"1,3,224,224"`` (also ``1x3x224x224`` or spaces) as a tuple of ints, or a one-line `CLIError`."""
    parts = re.split(r"\s*[,xX]\s*|\s+", text.strip().strip("()[]").strip())
    try:
        return tuple(int(p) for p in parts)
    except ValueError:
        raise CLIError(f"{what} must be comma-separated integers like 1,3,224,224, got {text!r}", EXIT_USAGE) from None


def _split_names(text: Optional[str]) -> list[str]:
    if not text:
        return []
    return [n.strip() for n in text.split(",") if n.strip()]


def add_analyze_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``rfgraph MODEL`` / ``rfgraph analyze MODEL``."""
    p.add_argument(
        "model",
        metavar="MODEL",
        help="torchvision:NAME, timm:NAME, path/to/file.py:factory or package.module:factory "
        "(built without pretrained weights; file and module specs execute that code)",
    )
    size = p.add_mutually_exclusive_group()
    size.add_argument(
        "--input-size", metavar="N[,M]", help="spatial input size, one value for all axes or one per axis (e.g. 224)"
    )
    size.add_argument("--input-shape", metavar="N,C,...", help="full input shape, e.g. 1,3,224,224")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--nodes", metavar="A,B", help="node or module names, comma-separated (e.g. layer1,layer4)")
    which.add_argument("--stages", action="store_true", help="only the output of each module-level block")
    p.add_argument("--format", "-f", choices=_FORMATS, help="report format (default: table, or from -o's suffix)")
    p.add_argument("-o", "--output", metavar="FILE", help="write the report to FILE instead of the terminal")
    p.add_argument(
        "--validate", action="store_true", help="cross-check the chosen nodes with the numeric probe (real weights)"
    )
    p.add_argument("--plot", metavar="FILE", help="draw RF size and stride along the depth to FILE.png or FILE.svg")
    p.add_argument(
        "--overlay",
        metavar="IMAGE",
        help="draw the RF box of one unit on IMAGE (or 'blank' for an input-sized canvas)",
    )
    p.add_argument(
        "--node", metavar="NAME", help="node or module for --overlay (default: the first of --nodes, else the last "
        "spatial node)"
    )
    p.add_argument("--unit", metavar="I,J", help="output unit for --overlay, one index per axis (default: the centre)")
    p.add_argument(
        "--overlay-output", metavar="FILE", help="where --overlay writes (default: IMAGE-stem_rf.png, or rf_overlay.png)"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress messages on stderr")
    p.set_defaults(handler=run_analyze)


def build_parser(discover: bool = True) -> argparse.ArgumentParser:
    """The full parser; ``discover`` imports `SUBCOMMAND_MODULES` to add their subcommands."""
    from . import __version__

    parser = _Parser(
        prog="rfgraph",
        description="Exact receptive fields of every tensor of a PyTorch model.",
        epilog="Run `rfgraph MODEL --help` for the analysis options; `rfgraph COMMAND --help` for a command.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.usage = "rfgraph [-h] [--version] MODEL [options]  |  rfgraph COMMAND ..."
    parser.add_argument("--version", action="version", version=f"rfgraph {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    analyze = sub.add_parser(
        "analyze",
        help="receptive field of every node of a model (the default: `rfgraph MODEL` means `rfgraph analyze MODEL`)",
        description="Receptive field, stride and start of every node of a model.",
    )
    analyze.prog = "rfgraph [analyze]"
    add_analyze_arguments(analyze)
    if discover:
        for name in SUBCOMMAND_MODULES:
            _add_module_commands(name, sub)
    return parser


def _add_module_commands(name: str, sub: Any) -> None:
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (exc.name == name or name.startswith(exc.name + ".")):
            return  # not written / not installed: nothing to add
        _warn(f"commands of {name} are unavailable: {exc}")
        return
    except Exception as exc:  # a broken feature module must not break the whole CLI
        _warn(f"commands of {name} are unavailable: {type(exc).__name__}: {exc}")
        return
    add_cli = getattr(module, "add_cli", None)
    if callable(add_cli):
        try:
            add_cli(sub)
        except Exception as exc:
            _warn(f"commands of {name} are unavailable: {type(exc).__name__}: {exc}")


def _warn(message: str) -> None:
    print(f"rfgraph: warning: {message}", file=sys.stderr)


def _command_names(parser: argparse.ArgumentParser) -> list[str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return list(action.choices)
    return []


# -- progress ------------------------------------------------------------------------------------


class _Progress:
    """Status messages on stderr while long steps run (a spinner on a terminal, silent otherwise)."""

    def __init__(self, quiet: bool):
        self.enabled = not quiet and sys.stderr.isatty()
        self._console = None
        if self.enabled:
            from rich.console import Console

            self._console = Console(stderr=True)

    @contextlib.contextmanager
    def step(self, message: str) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        t0 = time.perf_counter()
        with self._console.status(message):
            yield
        self._console.print(f"[dim]{message}: {time.perf_counter() - t0:.2f} s[/dim]", highlight=False)


# -- the analyse command ------------------------------------------------------------------------------


def _spec_hint(spec: str) -> str:
    """A hint for a model spec without ``kind:``: a close command name or torchvision model."""
    hints = []
    close_cmd = difflib.get_close_matches(spec, _command_names(build_parser(discover=True)), n=3, cutoff=0.6)
    if close_cmd:
        hints.append(f"command {', '.join(close_cmd)}")
    try:
        import torchvision.models as tvm

        names = tvm.list_models()
        if spec in names:
            hints.insert(0, f"torchvision:{spec}")
        else:
            hints += [f"torchvision:{n}" for n in difflib.get_close_matches(spec, names, n=3)]
    except Exception:  # pragma: no cover - torchvision is a dependency
        pass
    text = f"{spec!r} is neither a command nor a model spec (torchvision:NAME, timm:NAME, file.py:factory, module:factory)"
    return text + (f". Did you mean: {', '.join(hints)}?" if hints else "")


def _input_shape(args: argparse.Namespace, model: Any, default: tuple[int, ...]) -> tuple[int, ...]:
    if args.input_shape:
        shape = parse_ints(args.input_shape, "--input-shape")
        if not 3 <= len(shape) <= 5:
            raise CLIError(
                f"--input-shape {args.input_shape} has {len(shape)} dims; expected N,C,L or N,C,H,W or N,C,D,H,W",
                EXIT_USAGE,
            )
    elif args.input_size:
        size = parse_ints(args.input_size, "--input-size")
        spatial = len(default) - 2
        if len(size) == 1:
            size = size * spatial
        if len(size) != spatial:
            raise CLIError(
                f"--input-size {args.input_size} gives {len(size)} sizes but the model takes {spatial} spatial "
                f"axes (default input shape {','.join(map(str, default))}); use --input-shape to change the rank",
                EXIT_USAGE,
            )
        shape = tuple(default[:2]) + size
    else:
        shape = tuple(default)
    if any(s <= 0 for s in shape):
        raise CLIError(f"input shape {','.join(map(str, shape))} has a non-positive size", EXIT_USAGE)
    if args.model.startswith(("torchvision:", "timm:")) and len(shape) != len(default):
        # torch accepts unbatched inputs, so a wrong rank would not fail: it would analyse the wrong axes.
        raise CLIError(
            f"{args.model} takes {len(default)}-D inputs like {','.join(map(str, default))}; "
            f"got {','.join(map(str, shape))}",
            EXIT_USAGE,
        )
    return shape


def _selected(args: argparse.Namespace, analysis: Any) -> Optional[list[Any]]:
    if args.stages:
        from .report import module_outputs

        return module_outputs(analysis)
    names = _split_names(args.nodes)
    if not names:
        return None
    return [analysis[n] for n in names]  # NodeNotFoundError names close matches


def _output_format(args: argparse.Namespace) -> str:
    if args.format:
        return args.format
    if args.output:
        suffix = os.path.splitext(args.output)[1].lower()
        if suffix in (".png", ".svg", ".pdf", ".jpg", ".jpeg"):
            raise CLIError(f"-o writes a report, not a picture: use --plot {args.output} (or --overlay-output)", EXIT_USAGE)
        return _SUFFIX_FORMATS.get(suffix, "table")
    return "table"


def run_analyze(args: argparse.Namespace) -> int:
    """Handler of ``rfgraph MODEL``: load, analyse, report, and optionally validate / plot."""
    spec = args.model
    progress = _Progress(args.quiet)
    if ":" not in spec:
        raise CLIError(_spec_hint(spec), EXIT_USAGE)
    needs_weights = args.validate
    if args.validate:
        _require_validate()
    overlay_image = None
    if args.overlay and args.overlay != "blank":
        if not os.path.exists(args.overlay):
            raise CLIError(f"--overlay image {args.overlay!r} does not exist", EXIT_USAGE)
        overlay_image = args.overlay
    if (args.unit or args.node or args.overlay_output) and not args.overlay:
        raise CLIError("--unit, --node and --overlay-output are only used with --overlay", EXIT_USAGE)

    fmt = _output_format(args)
    with progress.step(f"building {spec}"):
        import torch  # noqa: F401  (the bulk of the start-up time)

        from .models import default_input_shape, load_model

        model = load_model(spec, device="cpu" if needs_weights else "meta")
        default = default_input_shape(spec, model)
    if overlay_image and not (args.input_size or args.input_shape):
        # The boxes are drawn in image pixels: analyse at the image's size.
        from .report.plots import image_size

        h, w = image_size(overlay_image)
        if len(default) != 4:
            raise CLIError(f"--overlay needs a 2-D image model; {spec} takes inputs of shape {default}", EXIT_USAGE)
        shape = (default[0], default[1], h, w)
    else:
        shape = _input_shape(args, model, default)

    with progress.step(f"analysing {spec} at input {','.join(map(str, shape))}"):
        from .errors import InputShapeError
        from .passes import analyze

        try:
            analysis = analyze(model, shape)
        except InputShapeError as exc:
            if tuple(shape) == tuple(default):
                raise
            raise CLIError(f"{_one_line(exc)} (the default input of {spec} is {','.join(map(str, default))})") from exc
        analysis.model_name = spec
    selected = _selected(args, analysis)

    from .report import render

    if args.output:
        text = render(analysis, fmt, selected, model_label=spec)
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(text)
        if not args.quiet:
            print(f"rfgraph: wrote {args.output} ({fmt})", file=sys.stderr)
    elif fmt == "table" and sys.stdout.isatty():
        from rich.console import Console

        from .report import rich_table

        Console(highlight=False).print(rich_table(analysis, selected, model_label=spec))
    else:
        sys.stdout.write(render(analysis, fmt, selected, model_label=spec))

    status = EXIT_OK
    if args.plot:
        with progress.step(f"drawing {args.plot}"):
            from .report.plots import plot_depth

            plot_depth(analysis, args.plot, title=spec)
        if not args.quiet:
            print(f"rfgraph: wrote {args.plot}", file=sys.stderr)
    if args.overlay:
        _overlay(args, analysis, selected, overlay_image, spec, progress)
    if args.validate:
        status = _validate(analysis, selected, progress)
    return status


def _overlay(args, analysis, selected, image, spec: str, progress: _Progress) -> None:
    from .report.plots import plot_overlay

    if args.node:
        record = analysis[args.node]
    elif args.nodes:
        record = selected[0]
        if len(selected) > 1 and not args.quiet:
            _warn(f"--overlay draws one node: {record.name} (choose it with --node)")
    else:
        record = analysis.last_spatial()
        if record is None:
            raise CLIError(f"{spec} has no node with a local receptive field to draw")
    unit = parse_ints(args.unit, "--unit") if args.unit else None
    out = args.overlay_output
    if not out:
        out = "rf_overlay.png" if image is None else os.path.splitext(os.path.basename(image))[0] + "_rf.png"
    with progress.step(f"drawing {out}"):
        plot_overlay(analysis, record.name, unit, image=image, path=out, title=spec)
    if not args.quiet:
        print(f"rfgraph: wrote {out} (node {record.name})", file=sys.stderr)


def _require_validate() -> None:
    """Fail before any work when the numeric probe is not installed."""
    try:
        importlib.import_module("rfgraph.probing")
    except ModuleNotFoundError:
        raise CLIError("--validate needs the numeric probe (rfgraph.probing), which this installation lacks") from None


def _validate(analysis: Any, selected: Optional[list[Any]], progress: _Progress) -> int:
    from .probing import validate_analysis

    nodes = None if selected is None else [r.name for r in selected]
    with progress.step("probing (numeric cross-check)"):
        result = validate_analysis(analysis, nodes)
    sys.stdout.write(str(result).rstrip("\n") + "\n")
    failed = bool(getattr(result, "disagreements", None)) or bool(getattr(result, "errors", None))
    if not failed and hasattr(result, "ok") and not hasattr(result, "disagreements"):
        failed = not result.ok
    return EXIT_FAILED if failed else EXIT_OK


# -- entry point ---------------------------------------------------------------------------------------


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # By now torch may be imported (the package imports it): move its millions of
    # objects out of the collector's reach, or each full collection of this
    # short-lived process costs a tenth of a second or more.
    gc.freeze()
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("rfgraph: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `rfgraph ... | head`
        with contextlib.suppress(Exception):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return EXIT_OK


def _main(argv: list[str]) -> int:
    if not argv:
        build_parser(discover=True).print_help(sys.stderr)
        return EXIT_USAGE
    first = argv[0]
    try:
        if first in ("-h", "--help", "--version"):
            parser = build_parser(discover=True)
        elif first in _BUILTIN_COMMANDS:
            parser = build_parser(discover=False)
        elif ":" in first or first.startswith("-"):
            # A model spec (or options first): the default command, no feature module imported.
            parser = build_parser(discover=False)
            argv = ["analyze", *argv]
        else:
            parser = build_parser(discover=True)
            if first not in _command_names(parser):
                argv = ["analyze", *argv]
        args = parser.parse_args(argv)
        handler: Optional[Callable[[argparse.Namespace], int]] = getattr(args, "handler", None)
        if handler is None:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        return int(handler(args) or 0)
    except CLIError as exc:
        _error(str(exc))
        return exc.code
    except Exception as exc:
        return _report_exception(exc)


def _report_exception(exc: BaseException) -> int:
    from .errors import RFGraphError

    if os.environ.get("RFGRAPH_DEBUG"):
        import traceback

        traceback.print_exception(type(exc), exc, exc.__traceback__)
    if isinstance(exc, RFGraphError):
        _error(str(exc))
        return EXIT_FAILED
    if isinstance(exc, (OSError, ImportError)):
        _error(f"{type(exc).__name__}: {exc}")
        return EXIT_FAILED
    _error(f"internal error: {type(exc).__name__}: {exc} (set RFGRAPH_DEBUG=1 for the traceback, and please report it)")
    return EXIT_INTERNAL


#: Where torch.fx appends its own context to an exception message (not useful to a CLI user).
_NOISE_MARKERS = ("While executing %", "Original traceback:", "Use tlparse to see")


def _one_line(message: Any) -> str:
    """The message on one line, without the context torch.fx appends to exceptions."""
    text = str(message)
    for marker in _NOISE_MARKERS:
        cut = text.find(marker)
        if cut > 0:
            text = text[:cut]
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def _error(message: str) -> None:
    line = _one_line(message)
    print(f"rfgraph: error: {line}", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
