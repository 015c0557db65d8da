"""Run ``python -m rfgraph`` as a user would, and check one-line errors."""

from __future__ import annotations

import subprocess
import sys

PY = [sys.executable, "-m", "rfgraph"]


def run(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([*PY, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def assert_one_line_error(proc: subprocess.CompletedProcess, code: int, *fragments: str) -> None:
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("rfgraph: error: ")
    for fragment in fragments:
        assert fragment in lines[0]
