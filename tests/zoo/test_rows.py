"""Tests of `rfgraph.zoo.rows`: the output formats of a sweep."""

from __future__ import annotations

import json

import pytest

from rfgraph import zoo

from .helpers import stable


def test_output_formats(factories, tmp_path):
    result = zoo.run([factories("tiny"), factories("broken")], progress=False)
    for suffix in (".md", ".csv", ".json", ".jsonl"):
        zoo.write_rows(result, tmp_path / f"t{suffix}")
    data = json.loads((tmp_path / "t.json").read_text())
    assert data["summary"]["models"] == 2 and data["summary"]["failed"] == 1
    assert stable(data["rows"]) == stable(result.rows)
    csv_lines = (tmp_path / "t.csv").read_text().splitlines()
    assert csv_lines[0].split(",") == list(zoo.ROW_KEYS)
    assert ",5x5,2x2,0x0," in csv_lines[2]
    with pytest.raises(ValueError, match=r"\.md, \.csv"):
        zoo.write_rows(result, tmp_path / "t.txt")
