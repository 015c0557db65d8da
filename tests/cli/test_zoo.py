"""``rfgraph zoo`` (`rfgraph.cli.zoo`); the sweep itself is tested in tests/test_zoo.py."""

from __future__ import annotations

import textwrap

import pytest

from rfgraph import cli
from rfgraph.cli import zoo as zoo_cli

TINY = textwrap.dedent(
    """
    import torch.nn as nn


    def tiny():
        return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2))
    """
)


@pytest.fixture()
def spec(tmp_path):
    (tmp_path / "factories.py").write_text(TINY)
    return f"{tmp_path / 'factories.py'}:tiny"


def test_families_match_the_feature_module():
    """The parser repeats `rfgraph.zoo.FAMILIES` so that ``zoo --help`` needs no torch: the two must agree."""
    from rfgraph import zoo

    assert zoo_cli.FAMILIES == tuple(zoo.FAMILIES)


def test_cli(spec, tmp_path, capsys):
    out = tmp_path / "z.md"
    assert cli.main(["zoo", "--models", spec, "-o", str(out), "--no-progress"]) == 0
    assert "| 2 | 5 | 2 | 0 |" not in out.read_text()  # cells are model, input, node, rf, stride, start ...
    assert "`2` | 5 | 2 | 0 |" in out.read_text()
    assert "rfgraph: zoo: 1 models (0 failed, 0 resumed)" in capsys.readouterr().err
    assert cli.main(["zoo", "--models", spec, "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[-1].startswith("rfgraph: error: resume needs an output file")
