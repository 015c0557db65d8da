"""Model loading for every subcommand: spec checks, and a factory's ``sys.exit`` turned into an error."""

from __future__ import annotations

import gc
import os
from typing import Any

from .options import EXIT_USAGE, CLIError

__all__ = ["load", "check_spec", "default_input_shape"]


def check_spec(spec: str) -> None:
    """Fail early, with a clear message, on a ``path:factory`` spec whose path is a directory."""
    target, _, attr = spec.rpartition(":")
    if target and os.path.isdir(target):
        raise CLIError(f"model spec {spec!r}: {target!r} is a directory; give a Python file as "
                       f"path/to/file.py:{attr or 'factory'} or a module as package.module:{attr or 'factory'}",
                       EXIT_USAGE)


def load(spec: str, **kwargs: Any) -> Any:
    """`rfgraph.models.load_model`, where ``SystemExit`` raised by the user's code is a `CLIError`.

    A factory (or a module-level ``argparse`` in the user's file) that calls ``sys.exit(0)`` would
    otherwise end rfgraph with exit code 0 and no output.
    """
    check_spec(spec)
    from ..models import load_model  # deferred: imports torch, which `--help` must not

    try:
        model = load_model(spec, **kwargs)
    except SystemExit as exc:
        raise CLIError(f"loading {spec!r} called sys.exit({exc.code!r}); a model factory must return a "
                       "torch.nn.Module") from None
    # torch's millions of objects are loaded by now: move them out of the collector's reach, or each
    # full collection of this short-lived process costs a tenth of a second or more.
    gc.freeze()
    return model


def default_input_shape(spec: str, model: Any) -> tuple[int, ...]:
    from ..models import default_input_shape as default  # deferred: imports torch

    return tuple(default(spec, model))
