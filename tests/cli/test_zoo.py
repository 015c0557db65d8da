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


def test_family_with_models_runs_exactly_those(tmp_path, capsys):
    """issue 15: ``--family classification --models resnet18,resnet50`` ran all 80 models of the family."""
    import json

    out = tmp_path / "z.jsonl"
    assert cli.main(["zoo", "--family", "classification", "--models", "resnet18,resnet50", "--nodes", "layer4",
                     "-o", str(out), "--no-progress"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["model"] for r in rows if "model" in r] == ["resnet18", "resnet50"]
    assert "2 models (0 failed" in capsys.readouterr().err
    assert cli.main(["zoo", "--family", "classification", "--models", "resnet18", "--nodes", "layer3",
                     "-o", str(out), "--resume", "--no-progress"]) == 2
    assert "other options (nodes: log ['layer4'], now ['layer3'])" in capsys.readouterr().err
    assert cli.main(["zoo", "--family", "classification", "--models", "nope", "--no-progress"]) == 2
    assert "not in the chosen family: nope" in capsys.readouterr().err
