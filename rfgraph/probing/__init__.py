"""The numeric probe: receptive fields measured by back-propagation on a sanitized copy, and validation.

``measure`` holds `probe` (one node, every axis), ``runner`` runs the graph cut
at the probed nodes (an `fx.Interpreter`), ``validate`` compares an analysis with
the probe.  The package root re-exports the public names as ``rfgraph.probe``
(the function) and ``rfgraph.validate``; this package itself is ``rfgraph.probing``.
"""

from ..fallback import fallback
from ..sanitize import sanitized_copy
from .measure import AxisProbe, NotIsolableError, ProbeResult, probe
from .validate import (
    Disagreement,
    ValidationReport,
    ValidationRow,
    compare,
    default_nodes,
    validate,
    validate_analysis,
)

__all__ = [
    "probe",
    "ProbeResult",
    "AxisProbe",
    "validate",
    "validate_analysis",
    "ValidationReport",
    "Disagreement",
    "ValidationRow",
    "NotIsolableError",
    "default_nodes",
    "compare",
    "fallback",
    "sanitized_copy",
]
