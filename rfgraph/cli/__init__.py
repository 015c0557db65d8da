"""The ``rfgraph`` command line, the only part of rfgraph that parses arguments or prints.

``main`` (in `rfgraph.cli.main`) holds the top-level parser, the command table and the error path;
`rfgraph.cli.options` the argument types shared by every subcommand; one module per subcommand
(`analyze`, `zoo`, `queries`, `erf`, `probe`).  Importing this package imports no torch.
"""

from .main import main

__all__ = ["main"]
