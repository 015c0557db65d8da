"""Reports that read `rfgraph.results` only: text tables, Markdown, CSV, networkx, plots and the HTML explorer."""

from .formats import *  # noqa: F401,F403
from .formats import __all__ as _formats_all
from .html import explorer, to_html, write_html

__all__ = [*_formats_all, "to_html", "write_html", "explorer"]
