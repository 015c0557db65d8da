"""The effective receptive field (Luo et al. 2016) measured with the model's own weights.

The entry point is re-exported at the package root as ``rfgraph.erf`` (a function);
this package is ``rfgraph.effective``.
"""

from .measure import *  # noqa: F401,F403
from .measure import __all__ as __all__
