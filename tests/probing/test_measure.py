"""`rfgraph.probing.measure`: argument checks of `rfgraph.probe` (its measurements are tested in
tests/test_probe.py and by the symbolic-vs-numeric tests)."""

from __future__ import annotations

import pytest
from torch import nn

import rfgraph


def test_node_given_in_the_shape_place_is_a_clear_type_error():
    """``probe(model, shape, node)`` (arguments swapped) says what it expected instead of failing deep inside
    name resolution."""
    net = nn.Sequential(nn.Conv1d(1, 1, 3))
    with pytest.raises(TypeError, match=r"node must be a node or module name \(a str\), not tuple \(1, 1, 32\)"):
        rfgraph.probe(net, (1, 1, 32), "0")
