"""Reports that read `rfgraph.results` only: text tables, Markdown, CSV, networkx and plots."""

from .formats import *  # noqa: F401,F403
from .formats import __all__ as __all__
