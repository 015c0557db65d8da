"""The design-query subcommands (`rfgraph.cli.queries`): output format and error paths.

The answers themselves are tested in tests/test_queries.py (also through the CLI).
"""

from __future__ import annotations

from fractions import Fraction

from rfgraph import cli
from rfgraph.cli.queries import fmt

NO_STRIDES = """
from torch import nn


def build():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
"""


def test_fmt():
    assert fmt(Fraction(5, 4)) == "1.25" and fmt(Fraction(-1, 8)) == "-0.125" and fmt(Fraction(2, 3)) == "0.666667"
    assert fmt((Fraction(2), Fraction(3))) == "2x3" and fmt((Fraction(2), Fraction(2))) == "2"
    assert fmt(None) == "-" and fmt(7) == "7"


def test_lint_error_has_the_prefix(tmp_path, one_line_error):
    """A model that declares no strides: one line with the ``rfgraph: error:`` prefix (it had none), exit 2."""
    (tmp_path / "plain.py").write_text(NO_STRIDES)
    one_line_error(cli.main(["lint", f"{tmp_path / 'plain.py'}:build", "--input-shape", "1,3,16,16"]), 2,
                   "declares no strides (no timm feature_info, no SSD steps)")


def test_target_rejects_a_negative_rf_before_loading(one_line_error):
    one_line_error(cli.main(["target", "torchvision:resnet18", "--node", "layer3", "--rf=-5"]), 2,
                   "--rf '-5': '-5' is a non-positive value")


def test_unit_outside_the_node(one_line_error):
    """The query's own error (an `RFGraphError`): one line, exit 1."""
    one_line_error(cli.main(["box", "torchvision:resnet18", "--node", "layer3", "--unit", "50,0"]), 1,
                   "outside node 'layer3.1.relu_1': axis 0 has 14 units")


def test_unknown_node_is_a_failure(one_line_error):
    one_line_error(cli.main(["box", "torchvision:resnet18", "--node", "layer9", "--unit", "0,0"]), 1,
                   "node 'layer9' is not present")
