"""The ``rfgraph`` command line: the top-level parser, the command table and the one error path.

``rfgraph MODEL [options]`` is short for ``rfgraph analyze MODEL``; ``rfgraph COMMAND ...`` runs
one of `COMMANDS` (``zoo``, ``erf``, ``probe``, ``box``, ``sizes``, ``align``, ``lint``, ``time``,
``target``).  The first argument decides: a command name runs that command, anything else is a
model spec.  Each subcommand lives in its own module of `rfgraph.cli`, which defines its
arguments (``COMMANDS``: name -> function adding its parser, which sets ``run``) and imports
the feature modules only inside ``run``: building the parsers, ``--help`` and ``--version``
never import torch.

Errors are one line on stderr, ``rfgraph: error: <message>``, whatever raised them: a bad
command line, an `RFGraphError`, an `OSError`, a model factory calling ``sys.exit``.
Set ``RFGRAPH_DEBUG=1`` to see tracebacks.

Exit codes:

- 0 (`EXIT_OK`): done; for ``--validate``, ``probe``, ``lint``: every check passed.
- 1 (`EXIT_FAILED`): the request could not be done (unknown model, untraceable model, unknown
  node, unreadable file), or a check failed (probe disagreement, lint mismatch, no verified
  ``target`` change set).
- 2 (`EXIT_USAGE`): bad command line: unknown option, bad value (non-integer, non-positive or
  absurd sizes, empty names), wrong input rank, bad combination of options.
- 3 (`EXIT_INTERNAL`): a bug in rfgraph (an unexpected exception); please report it.
- 130 (`EXIT_INTERRUPTED`): interrupted (Ctrl-C).

``file.py:factory`` and ``package.module:factory`` specs *execute that code*: only point
them at files you trust.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from types import ModuleType
from typing import Optional, Sequence

from .._version import __version__
from . import analyze, erf, probe, queries, zoo
from .options import EXIT_FAILED, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, CLIError
from .output import error

__all__ = ["main", "build_parser", "COMMANDS"]

_MODULES: tuple[ModuleType, ...] = (analyze, zoo, erf, probe, queries)

#: subcommand name -> the `rfgraph.cli` module that defines it
COMMANDS: dict[str, ModuleType] = {name: module for module in _MODULES for name in module.COMMANDS}


class _Parser(argparse.ArgumentParser):
    """An `ArgumentParser` whose errors are one line (no usage dump)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise CLIError(f"{message} (see `{self.prog} --help`)", EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command; imports no feature module (and so no torch)."""
    parser = _Parser(
        prog="rfgraph",
        description="Exact receptive fields of every tensor of a PyTorch model.",
        epilog="Run `rfgraph MODEL --help` for the analysis options; `rfgraph COMMAND --help` for a command.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.usage = "rfgraph [-h] [--version] MODEL [options]  |  rfgraph COMMAND ..."
    parser.add_argument("--version", action="version", version=f"rfgraph {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, module in COMMANDS.items():
        module.COMMANDS[name](sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it).

    ``--help`` and ``--version`` exit through argparse's ``SystemExit(0)``.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("rfgraph: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `rfgraph ... | head`
        with contextlib.suppress(Exception):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return EXIT_OK


def _main(argv: list[str]) -> int:
    parser = build_parser()
    if not argv:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    if argv[0] not in COMMANDS and argv[0] not in ("-h", "--help", "--version"):
        argv = ["analyze", *argv]
    try:
        args = parser.parse_args(argv)
        if getattr(args, "run", None) is None:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        spec = getattr(args, "model", None)
        if spec is not None and ":" not in spec:
            raise CLIError(_spec_hint(spec), EXIT_USAGE)
        try:
            return int(args.run(args) or 0)
        except SystemExit as exc:  # user code (a model's forward, a factory) must not end rfgraph silently
            raise CLIError(f"{args.model if spec else 'the command'} called sys.exit({exc.code!r}) while rfgraph "
                           "was running it") from None
    except CLIError as exc:
        _debug(exc)
        error(exc)
        return exc.code
    except Exception as exc:
        return _report_exception(exc)


def _spec_hint(spec: str) -> str:
    """A message for a model spec without ``kind:``, naming a close command or torchvision model."""
    import difflib  # deferred: only this error path needs it, and `--help` should start fast

    hints = [f"command {c}" for c in difflib.get_close_matches(spec, list(COMMANDS), n=3, cutoff=0.6)]
    try:
        import torchvision.models as tvm  # deferred: only on this error path

        names = tvm.list_models()
        if spec in names:
            hints.insert(0, f"torchvision:{spec}")
        else:
            hints += [f"torchvision:{n}" for n in difflib.get_close_matches(spec, names, n=3)]
    except Exception:  # pragma: no cover - torchvision is a dependency
        pass
    text = f"{spec!r} is neither a command nor a model spec (torchvision:NAME, timm:NAME, file.py:factory, module:factory)"
    return text + (f". Did you mean: {', '.join(hints)}?" if hints else "")


def _debug(exc: BaseException) -> None:
    if os.environ.get("RFGRAPH_DEBUG"):
        import traceback

        traceback.print_exception(type(exc), exc, exc.__traceback__)


def _report_exception(exc: Exception) -> int:
    from ..errors import RFGraphError

    _debug(exc)
    if isinstance(exc, RFGraphError):
        error(exc)
        return EXIT_FAILED
    if isinstance(exc, (OSError, ImportError)):
        error(f"{type(exc).__name__}: {exc}")
        return EXIT_FAILED
    error(f"internal error: {type(exc).__name__}: {exc} (set RFGRAPH_DEBUG=1 for the traceback, and please report it)")
    return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
