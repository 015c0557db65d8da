"""The exception hierarchy: every message names the node, the op, the values and a hint."""

from __future__ import annotations

import difflib
from typing import Iterable

__all__ = [
    "RFGraphError",
    "TraceError",
    "NotAModuleError",
    "InputShapeError",
    "InputTooSmallError",
    "NodeNotFoundError",
    "NodeNameError",
    "RuleError",
    "ProbeError",
]


class RFGraphError(Exception):
    """Base class of every error raised on purpose by rfgraph."""


class TraceError(RFGraphError):
    """The model could not be turned into a graph."""


class NotAModuleError(RFGraphError, TypeError):
    """What was passed as the model is not a ``torch.nn.Module``."""


class InputShapeError(RFGraphError, ValueError):
    """The input shape does not suit the model (wrong rank, non-positive size, ...)."""


class InputTooSmallError(InputShapeError):
    """Some layer's output becomes empty for this input size."""

    def __init__(self, message: str, node: str | None = None, minimal_size: int | None = None):
        super().__init__(message)
        self.node = node
        self.minimal_size = minimal_size


class NodeNotFoundError(RFGraphError, KeyError):
    """A node or module name that the analysed graph does not have."""

    def __init__(self, name: str, known: Iterable[str]):
        self.name = name
        self.suggestions = difflib.get_close_matches(name, list(dict.fromkeys(known)), n=5, cutoff=0.5)
        hint = f" Did you mean: {', '.join(self.suggestions)}?" if self.suggestions else ""
        super().__init__(
            f"node {name!r} is not present in the analysed graph.{hint} "
            "Hint: `analysis.nodes` lists every node name."
        )

    def __str__(self) -> str:  # KeyError would quote the message
        return self.args[0]


class NodeNameError(RFGraphError, TypeError):
    """A node was named by something that is not a string (``analysis[None]``, ``analysis[0]``)."""


class RuleError(RFGraphError):
    """A rule met arguments it cannot handle exactly."""


class ProbeError(RFGraphError):
    """The numeric probe could not measure what it was asked to."""
