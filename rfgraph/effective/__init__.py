"""The effective receptive field (Luo et al. 2016) measured with the model's own weights.

``measure`` holds `erf` (the measurement), ``result`` the `ERFResult` and its plot,
``sources`` the inputs (noise, tensors, image folders, batches).  The package root
re-exports `erf` as ``rfgraph.erf`` (a function); this package is ``rfgraph.effective``.
"""

from .measure import default_nodes, erf, fitting_input_size, fx_trace_or_none
from .result import (
    DEFAULT_SHARES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ERFError,
    ERFResult,
    ERFSupportError,
    ERFWarning,
    plot_erf,
)

__all__ = [
    "erf",
    "ERFResult",
    "ERFError",
    "ERFSupportError",
    "ERFWarning",
    "DEFAULT_SHARES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "fitting_input_size",
    "fx_trace_or_none",
    "plot_erf",
    "default_nodes",
]
