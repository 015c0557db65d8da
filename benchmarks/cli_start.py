"""Cold start of ``rfgraph --help`` (and ``--version``, ``zoo --help``) beside ``python -c pass``.

Each figure is the median wall time of ``--repeat`` fresh processes (default 5) of the same
interpreter; the target of issue 12 is ``rfgraph --help`` within 3x of ``python -c pass``,
which holds only while the help path imports no torch.  "Cold" means a new process each time:
the OS file cache is warm after the first run, as it is for a user typing commands, and the
bytecode cache is written by that first run even when ``PYTHONDONTWRITEBYTECODE`` is set (an
installed package has its ``.pyc`` files; compiling rfgraph's sources on every start would
double the figure).

    .venv/bin/python benchmarks/cli_start.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

#: the console script next to this interpreter (``pip install -e .``), else ``python -m rfgraph``
_SCRIPT = os.path.join(os.path.dirname(sys.executable), "rfgraph")
RFGRAPH = [_SCRIPT] if os.path.exists(_SCRIPT) else [sys.executable, "-m", "rfgraph"]

COMMANDS = [
    ("python -c pass", [sys.executable, "-c", "pass"]),
    ("python -c 'import rfgraph'", [sys.executable, "-c", "import rfgraph"]),
    ("rfgraph --help", [*RFGRAPH, "--help"]),
    ("rfgraph --version", [*RFGRAPH, "--version"]),
    ("rfgraph zoo --help", [*RFGRAPH, "zoo", "--help"]),
    ("python -m rfgraph --help", [sys.executable, "-m", "rfgraph", "--help"]),
    ("python -c 'import torch'", [sys.executable, "-c", "import torch"]),
]


#: the environment of every measured process: bytecode caches allowed, as in an installed package
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def median_wall(argv: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="fresh processes per command (median)")
    args = parser.parse_args()
    for _, argv in COMMANDS:  # warm-up: bytecode written, files cached
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=ENV)
    rows = [(label, median_wall(argv, args.repeat)) for label, argv in COMMANDS]
    base = rows[0][1]
    print(f"{'command':28} {'median s':>9} {'x python':>9}")
    for label, t in rows:
        print(f"{label:28} {t:9.3f} {t / base:9.2f}")
    ratio = dict(rows)["rfgraph --help"] / base
    print(f"\nrfgraph --help: {ratio:.2f}x python -c pass (target: within 3x) -> {'ok' if ratio <= 3 else 'TOO SLOW'}")


if __name__ == "__main__":
    main()
