"""The sweep's JSON-lines log: one write per finished model (rows, then a completion marker), read back
by ``resume``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from .families import ROW_KEYS


def log_path(out: Union[str, os.PathLike]) -> Path:
    """The JSON-lines log kept next to ``out`` (``zoo.md`` -> ``zoo.jsonl``)."""
    return Path(out).with_suffix(".jsonl")


#: Key of the log's first line, which records the sweep's options (``{"rfgraph_zoo_log": 2, "options": {...}}``).
LOG_HEADER = "rfgraph_zoo_log"
#: Key of the line written after a model's rows: ``{"done": MODEL, "rows": N}``.  A model whose marker is
#: missing, or whose rows are fewer than the marker says, is incomplete and runs again on resume.
DONE_MARK = "done"


def read_rows(path: Union[str, os.PathLike]) -> list[dict[str, Any]]:
    """Rows of a JSON-lines log (header and completion markers left out); a line cut short is skipped."""
    return [r for rs in read_log(Path(path))[1].values() for r in rs] if Path(path).exists() else []


def read_log(path: Path) -> tuple[Optional[dict[str, Any]], dict[str, list[dict[str, Any]]], dict[str, int]]:
    """``(options or None, rows by model, completed models -> their row count)`` of a log."""
    options = None
    rows: dict[str, list[dict[str, Any]]] = {}
    done: dict[str, int] = {}
    if not path.exists():
        return options, rows, done
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(entry, dict):
            continue
        if LOG_HEADER in entry and options is None:
            options = entry.get("options") or {}
        elif DONE_MARK in entry and isinstance(entry.get("rows"), int):
            done[str(entry[DONE_MARK])] = entry["rows"]
        elif "model" in entry:
            rows.setdefault(entry["model"], []).append({k: entry.get(k) for k in ROW_KEYS})
    return options, rows, done


def log_lines(model: str, rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows) + json.dumps({DONE_MARK: model, "rows": len(rows)}) + "\n"


def append_model(path: Optional[Path], model: str, rows: list[dict[str, Any]]) -> None:
    if path is None:
        return
    # One write per model, rows then its completion marker, flushed: an interruption loses at most this model.
    with open(path, "a") as fh:
        fh.write(log_lines(model, rows))
        fh.flush()
        os.fsync(fh.fileno())


def sweep_options(validate: bool, nodes: Optional[Sequence[str]]) -> dict[str, Any]:
    """The options that change a sweep's rows: recorded in its log, and compared by ``resume``."""
    return {"validate": bool(validate), "nodes": list(nodes) if nodes is not None else None}


class ZooLogError(ValueError):
    """``resume`` was asked to continue a log written by a sweep with other options."""
