"""rfgraph: exact receptive fields of every tensor of a PyTorch model.

>>> import torch.nn as nn, rfgraph
>>> net = nn.Sequential(*[nn.Conv1d(1, 1, k) for k in (9, 3, 3, 3, 9, 3, 3, 7, 3)])
>>> rfgraph.analyze(net, (1, 1, 100))["8"].rf
(35,)
"""

from . import zoo
from .algebra import Field, PAMap
from .effective import ERFResult, erf
from .errors import (
    InputShapeError,
    InputTooSmallError,
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

__all__ = [
    "analyze",
    "erf",
    "ERFResult",
    "probe",
    "validate",
    "ProbeResult",
    "ValidationReport",
    "Analysis",
    "NodeRF",
    "PAMap",
    "Field",
    "RuleSet",
    "OpCall",
    "DEFAULT_RULES",
    "RFGraphError",
    "TraceError",
    "InputShapeError",
    "InputTooSmallError",
    "NodeNotFoundError",
    "NotAModuleError",
    "RuleError",
    "ProbeError",
    "zoo",
]

__version__ = "0.1.0"
