"""Tests of `rfgraph.zoo.log`: resuming a sweep from its JSONL log."""

from __future__ import annotations

import json

import pytest

from rfgraph import zoo

from .helpers import stable


def test_resume_keeps_logged_rows_and_runs_the_rest(factories, tmp_path, monkeypatch):
    """An interrupted sweep: the log holds model 1 and half a line of model 2; resume runs 2 and 3 only."""
    out = tmp_path / "zoo.csv"
    first = zoo.run([factories("tiny")], out=out, progress=False)
    log = zoo.log_path(out)
    assert log == tmp_path / "zoo.jsonl"
    assert stable(zoo.read_rows(log)) == stable(first.rows)
    assert len(log.read_text().splitlines()) == 1 + 2 + 1  # options, 2 rows, completion marker
    with open(log, "a") as fh:
        fh.write('{"model": "tiny2", "node": "0", "rf": [5')  # cut short by the interruption

    ran = []
    real = zoo.run_task

    def counting(task, *args, **kwargs):
        ran.append(task.name)
        return real(task, *args, **kwargs)

    monkeypatch.setattr(zoo.sweep, "run_task", counting)
    models = [factories("tiny"), factories("tiny2"), factories("broken")]
    result = zoo.run(models, out=out, resume=True, progress=False, isolate=False)
    assert ran == ["tiny2", "broken"]
    assert result.resumed == 1
    assert [r["model"] for r in result] == ["tiny", "tiny", "tiny2", "broken"]
    assert result.rows[:2] == first.rows  # kept verbatim, timings included
    logged = zoo.read_rows(log)
    assert stable(logged) == stable(result.rows)
    # options + 4 rows + 3 markers: the broken line is gone
    assert len(log.read_text().splitlines()) == 1 + 4 + 3
    assert out.read_text().count("\n") == 5  # header + 4 rows

    # Resuming a finished sweep runs nothing (a failed model stays failed: it is a result).
    ran.clear()
    again = zoo.run(models, out=out, resume=True, progress=False, isolate=False)
    assert ran == [] and stable(again.rows) == stable(result.rows)


def test_resume_retries_rows_of_dead_workers(factories, tmp_path):
    out = tmp_path / "zoo.jsonl"
    row = zoo.task.error_row(factories("tiny"), RuntimeError("worker died"), zoo.RETRY_MARK)
    header = {zoo.LOG_HEADER: 2, "options": zoo.sweep_options(False, None)}
    out.write_text(json.dumps(header) + "\n" + json.dumps(row) + "\n" + json.dumps({"done": "tiny", "rows": 1}) + "\n")
    result = zoo.run([factories("tiny")], out=out, resume=True, progress=False)
    assert [r["node"] for r in result] == ["1", "2"] and result.resumed == 0


def log_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_resume_redoes_models_whose_rows_are_incomplete(factories, tmp_path):
    """issue 15: after a partial write, resume kept 2 of a model's 5 rows and reported 0 failed.  Here a write
    cut after 1 of tiny's 2 rows (no completion marker), and a model whose marker promises more rows than the
    log holds: resume runs both again, and keeps the complete model."""
    out = tmp_path / "zoo.jsonl"
    models = [factories("tiny"), factories("deep"), factories("broken")]
    full = zoo.run(models, out=out, progress=False, isolate=False)
    lines = log_lines(out)
    assert lines[0] == {zoo.LOG_HEADER: 2, "options": {"validate": False, "nodes": None}}
    assert [ln for ln in lines if "done" in ln] == [{"done": "tiny", "rows": 2}, {"done": "deep", "rows": 3},
                                                   {"done": "broken", "rows": 1}]
    tiny = [ln for ln in lines if ln.get("model") == "tiny"]
    deep = [ln for ln in lines if ln.get("model") == "deep"]
    broken = [ln for ln in lines if ln.get("model") == "broken" or ln.get("done") == "broken"]
    # deep: its last row lost, marker kept; broken: intact; tiny: first row only, its marker lost
    cut = [lines[0], *deep[:2], {"done": "deep", "rows": 3}, *broken, tiny[0]]
    out.write_text("".join(json.dumps(ln) + "\n" for ln in cut))
    assert len(zoo.read_rows(out)) == 4  # what the old resume kept

    ran = []
    real = zoo.run_task

    def counting(task, *args, **kwargs):
        ran.append(task.name)
        return real(task, *args, **kwargs)

    import unittest.mock

    with unittest.mock.patch.object(zoo.sweep, "run_task", counting):
        again = zoo.run(models, out=out, resume=True, progress=False, isolate=False)
    assert sorted(ran) == ["deep", "tiny"]
    assert again.resumed == 1
    assert stable(again.rows) == stable(full.rows)
    assert [r["model"] for r in again] == ["tiny"] * 2 + ["deep"] * 3 + ["broken"]
    assert sorted(map(json.dumps, stable(zoo.read_rows(out)))) == sorted(map(json.dumps, stable(full.rows)))


def test_resume_refuses_a_log_made_with_other_options(factories, tmp_path):
    out = tmp_path / "zoo.md"
    zoo.run([factories("tiny")], out=out, nodes=["2"], progress=False, isolate=False)
    with pytest.raises(zoo.ZooLogError, match=r"nodes: log \['2'\], now None"):
        zoo.run([factories("tiny")], out=out, resume=True, progress=False, isolate=False)
    with pytest.raises(zoo.ZooLogError, match="validate: log False, now True"):
        zoo.run([factories("tiny")], out=out, nodes=["2"], validate=True, resume=True, progress=False, isolate=False)
    # the same options resume (nothing to run), and a log without options is refused
    again = zoo.run([factories("tiny")], out=out, nodes=["2"], resume=True, progress=False, isolate=False)
    assert again.resumed == 1 and [r["node"] for r in again] == ["2"]
    log = zoo.log_path(out)
    log.write_text("".join(line + "\n" for line in log.read_text().splitlines()[1:]))
    with pytest.raises(zoo.ZooLogError, match="records no sweep options"):
        zoo.run([factories("tiny")], out=out, nodes=["2"], resume=True, progress=False, isolate=False)
