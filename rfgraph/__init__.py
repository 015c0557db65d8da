"""rfgraph: exact receptive fields of every tensor of a PyTorch model.

>>> import torch.nn as nn, rfgraph
>>> net = nn.Sequential(*[nn.Conv1d(1, 1, k) for k in (9, 3, 3, 3, 9, 3, 3, 7, 3)])
>>> rfgraph.analyze(net, (1, 1, 100))["8"].rf
(35,)

The public names are imported on first use (PEP 562), so that ``import rfgraph``
and ``rfgraph --help`` do not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

#: public name -> the module that defines it
_LAZY = {
    "analyze": ".passes",
    "Analysis": ".results",
    "NodeRF": ".results",
    "probe": ".probing",
    "validate": ".probing",
    "ProbeResult": ".probing",
    "ValidationReport": ".probing",
    "erf": ".effective",
    "ERFResult": ".effective",
    "PAMap": ".algebra",
    "FiniteMap": ".algebra",
    "Field": ".algebra",
    "RuleSet": ".rules",
    "OpCall": ".rules",
    "DEFAULT_RULES": ".rules",
    "SymTensor": ".values",
    "RFGraphError": ".errors",
    "TraceError": ".errors",
    "InputShapeError": ".errors",
    "InputTooSmallError": ".errors",
    "NodeNotFoundError": ".errors",
    "NodeNameError": ".errors",
    "NotAModuleError": ".errors",
    "RuleError": ".errors",
    "ProbeError": ".errors",
}
_SUBMODULES = ("zoo",)

__all__ = [
    "analyze",
    "Analysis",
    "NodeRF",
    "probe",
    "validate",
    "ProbeResult",
    "ValidationReport",
    "erf",
    "ERFResult",
    "zoo",
    "PAMap",
    "FiniteMap",
    "Field",
    "RuleSet",
    "OpCall",
    "DEFAULT_RULES",
    "SymTensor",
    "RFGraphError",
    "TraceError",
    "InputShapeError",
    "InputTooSmallError",
    "NodeNotFoundError",
    "NodeNameError",
    "NotAModuleError",
    "RuleError",
    "ProbeError",
    "__version__",
]

if TYPE_CHECKING:  # pragma: no cover - static analysers see the eager imports
    from . import zoo
    from .algebra import Field, FiniteMap, PAMap
    from .effective import ERFResult, erf
    from .errors import (
        InputShapeError,
        InputTooSmallError,
        NodeNameError,
        NodeNotFoundError,
        NotAModuleError,
        ProbeError,
        RFGraphError,
        RuleError,
        TraceError,
    )
    from .passes import analyze
    from .probing import ProbeResult, ValidationReport, probe, validate
    from .results import Analysis, NodeRF
    from .rules import DEFAULT_RULES, OpCall, RuleSet
    from .values import SymTensor


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
