"""The numeric probe: gradient measurement of receptive fields on a sanitized copy, and validation.

The public entry points are re-exported at the package root as ``rfgraph.probe``
(a function) and ``rfgraph.validate``; this package is ``rfgraph.probing``.
"""

from .measure import *  # noqa: F401,F403
from .measure import __all__
