"""Argument types and checks shared by every subcommand: one input-shape parser, one ``--nodes`` splitter.

Every check fails with a `CLIError` of code `EXIT_USAGE`, which `rfgraph.cli.main`
prints as one line ``rfgraph: error: ...``.  The type factories raise `CLIError`
themselves (argparse lets it through) so that a value gives the same message
whether argparse or a handler parses it.

>>> parse_ints("1,3,224,224", "--input-shape")
(1, 3, 224, 224)
>>> parse_ints("384x512", "--size")
(384, 512)
>>> parse_ints("1.5", "--size")
Traceback (most recent call last):
...
rfgraph.cli.options.CLIError: --size must be comma-separated integers like 1,3,224,224, got '1.5' ('1.5' is not an integer)
>>> split_names(" layer1, layer4 ")
['layer1', 'layer4']
"""

from __future__ import annotations

import argparse
import re
from typing import Callable, Optional, Sequence

__all__ = [
    "EXIT_OK",
    "EXIT_FAILED",
    "EXIT_USAGE",
    "EXIT_INTERNAL",
    "EXIT_INTERRUPTED",
    "CLIError",
    "MAX_SIZE",
    "parse_ints",
    "ints_type",
    "int_type",
    "floats_type",
    "split_names",
    "names_type",
    "resolve_shape",
    "add_model_argument",
    "add_shape_arguments",
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

#: Larger sizes are typing mistakes, not inputs (and would overflow int32 index arithmetic in torch).
MAX_SIZE = 2**31


class CLIError(Exception):
    """A user-facing command-line error: printed as one line, exit code ``code``."""

    def __init__(self, message: str, code: int = EXIT_FAILED):
        super().__init__(message)
        self.code = code


#: commas, whitespace, or an ``x`` between two digits (``224x224``; ``1,3,x`` stays a bad item)
_SEPARATORS = re.compile(r"\s*,\s*|(?<=\d)\s*[xX]\s*(?=\d)|\s+")
_INTEGER = re.compile(r"[+-]?\d+")


def _show(text: str, limit: int = 40) -> str:
    """``repr(text)``, cut to ``limit`` characters: an error message stays one readable line."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} characters)"


def parse_ints(text: str, what: str, minimum: int = 1, noun: str = "size") -> tuple[int, ...]:
    """``"1,3,224,224"`` (also ``1x3x224x224`` or spaces) as a tuple of ints ``>= minimum`` and ``<= MAX_SIZE``.

    Anything else (floats, empty items, out-of-range values) is a one-line `CLIError` (exit code 2).
    """
    stripped = text.strip().strip("()[]").strip()
    if not stripped:
        raise CLIError(f"{what} is empty; give comma-separated integers like 1,3,224,224", EXIT_USAGE)
    values = []
    for item in _SEPARATORS.split(stripped):
        if not item:
            raise CLIError(f"{what} {_show(text)} has an empty item; give comma-separated integers like 1,3,224,224",
                           EXIT_USAGE)
        if not _INTEGER.fullmatch(item):
            raise CLIError(f"{what} must be comma-separated integers like 1,3,224,224, got {_show(text)} "
                           f"({_show(item)} is not an integer)", EXIT_USAGE)
        # int() refuses strings of more than 4300 digits: anything that long is out of range anyway
        value = int(item) if len(item) <= 40 else (minimum - 1 if item.startswith("-") else MAX_SIZE + 1)
        if value < minimum:
            kind = f"a non-positive {noun}" if minimum == 1 else f"below {minimum}"
            raise CLIError(f"{what} {_show(text)}: {_show(item, 20)} is {kind}; every value must be at least "
                           f"{minimum}", EXIT_USAGE)
        if value > MAX_SIZE:
            raise CLIError(f"{what} {_show(text)}: {_show(item, 20)} is too large (at most 2**31)", EXIT_USAGE)
        values.append(value)
    return tuple(values)


def ints_type(what: str, minimum: int = 1) -> Callable[[str], tuple[int, ...]]:
    """An argparse ``type=`` for comma-separated integers, checked as `parse_ints` does."""

    def parse(text: str) -> tuple[int, ...]:
        return parse_ints(text, what, minimum)

    parse.__name__ = what  # argparse names the type in some messages
    return parse


def int_type(what: str, minimum: int = 1) -> Callable[[str], int]:
    """An argparse ``type=`` for one integer ``>= minimum`` (``--rf``, ``--jobs``, ``--noise`` ...)."""

    def parse(text: str) -> int:
        values = parse_ints(text, what, minimum, noun="value")
        if len(values) != 1:
            raise CLIError(f"{what} takes one integer, got {_show(text)}", EXIT_USAGE)
        return values[0]

    parse.__name__ = what
    return parse


def floats_type(what: str) -> Callable[[str], tuple[float, ...]]:
    """An argparse ``type=`` for comma-separated finite numbers (``--mean 0.5,0.5,0.5``)."""

    def parse(text: str) -> tuple[float, ...]:
        try:
            values = tuple(float(v) for v in text.split(","))
        except ValueError:
            raise CLIError(f"{what} must be comma-separated numbers, got {_show(text)}", EXIT_USAGE) from None
        if not all(v == v and abs(v) != float("inf") for v in values):
            raise CLIError(f"{what} must be finite numbers, got {_show(text)}", EXIT_USAGE)
        return values

    parse.__name__ = what
    return parse


def split_names(text: Optional[str], what: str = "--nodes") -> list[str]:
    """``"a, b"`` as ``["a", "b"]``; ``None`` or ``""`` as ``[]``; an empty item (``a,,b``, ``,,,``) is an error."""
    if text is None or not text.strip():
        return []
    names = [n.strip() for n in text.split(",")]
    if not all(names):
        raise CLIError(f"{what} {_show(text)} has an empty name; give comma-separated names like layer1,layer4",
                       EXIT_USAGE)
    return names


def names_type(what: str = "--nodes") -> Callable[[str], list[str]]:
    """An argparse ``type=`` splitting names with `split_names`."""

    def parse(text: str) -> list[str]:
        names = split_names(text, what)
        if not names:
            raise CLIError(f"{what} is empty; give comma-separated names like layer1,layer4", EXIT_USAGE)
        return names

    parse.__name__ = what
    return parse


def _fmt_shape(shape: Sequence[int]) -> str:
    return ",".join(map(str, shape))


def resolve_shape(
    spec: str,
    default: Sequence[int],
    input_shape: Optional[Sequence[int]] = None,
    input_size: Optional[Sequence[int]] = None,
) -> tuple[int, ...]:
    """The input shape from ``--input-shape`` (full) or ``--input-size`` (spatial), else ``default``.

    ``input_shape`` / ``input_size`` are already parsed (by `ints_type`); this checks the rank:
    3 to 5 dims, one size per spatial axis of ``default`` (or one for all), and for torchvision / timm
    specs the rank of the model's usual input, since torch accepts unbatched inputs and a wrong rank
    would analyse the wrong axes instead of failing.
    """
    default = tuple(default)
    if input_shape is not None:
        shape = tuple(input_shape)
        if not 3 <= len(shape) <= 5:
            raise CLIError(f"--input-shape {_fmt_shape(shape)} has {len(shape)} dims; expected N,C,L or N,C,H,W "
                           "or N,C,D,H,W", EXIT_USAGE)
    elif input_size is not None:
        size = tuple(input_size)
        spatial = len(default) - 2
        if len(size) == 1:
            size = size * spatial
        if len(size) != spatial:
            raise CLIError(
                f"--input-size {_fmt_shape(input_size)} gives {len(size)} sizes but the model takes {spatial} "
                f"spatial axes (default input shape {_fmt_shape(default)}); use --input-shape to change the rank",
                EXIT_USAGE,
            )
        shape = default[:2] + size
    else:
        shape = default
    if spec.startswith(("torchvision:", "timm:")) and len(shape) != len(default):
        raise CLIError(f"{spec} takes {len(default)}-D inputs like {_fmt_shape(default)}; got {_fmt_shape(shape)}",
                       EXIT_USAGE)
    return shape


def add_model_argument(p: argparse.ArgumentParser) -> None:
    """The positional ``MODEL`` of every subcommand."""
    p.add_argument(
        "model",
        metavar="MODEL",
        help="torchvision:NAME, timm:NAME, path/to/file.py:factory or package.module:factory "
        "(built without pretrained weights; file and module specs execute that code)",
    )


def add_shape_arguments(p: argparse.ArgumentParser, size_help: str = "spatial input size, one value for all axes "
                        "or one per axis (e.g. 224)") -> None:
    """``--input-size N[,M]`` / ``--input-shape N,C,...`` (mutually exclusive), parsed by `ints_type`."""
    size = p.add_mutually_exclusive_group()
    size.add_argument("--input-size", metavar="N[,M]", type=ints_type("--input-size"), help=size_help)
    size.add_argument("--input-shape", metavar="N,C,...", type=ints_type("--input-shape"),
                      help="full input shape, e.g. 1,3,224,224")
