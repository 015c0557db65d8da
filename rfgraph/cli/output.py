"""What the command line writes to stderr: one-line errors, warnings and notes, and progress."""

from __future__ import annotations

import contextlib
import sys
import time
from typing import Any, Iterator

__all__ = ["error", "warn", "note", "one_line", "Progress"]

#: Where torch.fx appends its own context to an exception message (not useful to a CLI user).
_NOISE_MARKERS = ("While executing %", "Original traceback:", "Use tlparse to see")


def one_line(message: Any) -> str:
    """The message on one line, without the context torch.fx appends to exceptions."""
    text = str(message)
    for marker in _NOISE_MARKERS:
        cut = text.find(marker)
        if cut > 0:
            text = text[:cut]
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def error(message: Any) -> None:
    """``rfgraph: error: <one line>`` on stderr: the only way the CLI reports a failure."""
    print(f"rfgraph: error: {one_line(message)}", file=sys.stderr)


def warn(message: Any) -> None:
    print(f"rfgraph: warning: {one_line(message)}", file=sys.stderr)


def note(message: str) -> None:
    """A status line on stderr (``rfgraph: wrote FILE``), kept out of the report on stdout."""
    print(f"rfgraph: {message}", file=sys.stderr)


class Progress:
    """Status messages on stderr while long steps run (a spinner on a terminal, silent otherwise)."""

    def __init__(self, quiet: bool):
        self.enabled = not quiet and sys.stderr.isatty()
        self._console = None
        if self.enabled:
            from rich.console import Console

            self._console = Console(stderr=True)

    @contextlib.contextmanager
    def step(self, message: str) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        from rich.markup import escape

        t0 = time.perf_counter()
        with self._console.status(escape(message)):
            yield
        self._console.print(f"[dim]{escape(message)}: {time.perf_counter() - t0:.2f} s[/dim]", highlight=False)
