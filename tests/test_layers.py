"""The package's import structure: one-way layers (the import-linter contract in pyproject.toml), no cycles."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp
import networkx as nx

ROOT = Path(__file__).resolve().parents[1]


def test_layer_contract_holds():
    """`lint-imports` with the contracts of pyproject.toml: every import points down, no feature module imports
    the CLI.  Run as a subprocess, as `make lint` does."""
    done = subprocess.run([str(Path(sys.executable).with_name("lint-imports"))], cwd=ROOT, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "broken" in done.stdout and ", 0 broken" in done.stdout


def test_no_import_cycle_among_rfgraph_modules():
    graph = grimp.build_graph("rfgraph")
    edges = nx.DiGraph((m, d) for m in graph.modules for d in graph.find_modules_directly_imported_by(m))
    assert nx.is_directed_acyclic_graph(edges), list(nx.simple_cycles(edges))[:5]
