"""The rows of a sweep as tables: `ZooResult` (rows, wall time, summary), markdown, CSV, JSON."""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

from .families import ROW_KEYS


@dataclass
class ZooResult:
    """Rows of a sweep (in the order of the models asked for), its wall time and worker count."""

    rows: list[dict[str, Any]]
    wall_s: float = 0.0
    workers: int = 1
    resumed: int = 0  # models taken from the log instead of run again
    cpu_s: float = 0.0  # CPU time of this process during the sweep (little with workers elsewhere)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def models(self) -> list[str]:
        return list(dict.fromkeys(r["model"] for r in self.rows))

    def errors(self) -> list[dict[str, Any]]:
        """One row per failed model (load, trace or analysis error)."""
        return [r for r in self.rows if r["error"] and not r["node"]]

    def disagreements(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["probe"] == "DISAGREE"]

    def summary(self) -> dict[str, Any]:
        per_model: dict[str, dict[str, Any]] = {}
        for r in self.rows:
            per_model.setdefault(r["model"], r)
        times = [(m, (r["build_s"] or 0) + (r["analysis_s"] or 0)) for m, r in per_model.items()]
        rss = [(m, r["peak_rss_mb"]) for m, r in per_model.items() if r["peak_rss_mb"] is not None]
        return {
            "models": len(per_model),
            "failed": len(self.errors()),
            "rows": len(self.rows),
            "wall_s": round(self.wall_s, 2),
            "cpu_s": round(self.cpu_s, 2),
            "workers": self.workers,
            "build_s": round(sum(r["build_s"] or 0 for r in per_model.values()), 2),
            "analysis_s": round(sum(r["analysis_s"] or 0 for r in per_model.values()), 2),
            "slowest": sorted(times, key=lambda kv: -kv[1])[:5],
            "peak_rss_mb": max(rss, key=lambda kv: kv[1]) if rss else None,
            "unknown_models": sorted({r["model"] for r in self.rows if r["unknown_nodes"]}),
            "disagreements": len(self.disagreements()),
        }

    def to_markdown(self, summary: bool = True) -> str:
        return to_markdown(self.rows, self.summary() if summary else None)


def axes_cell(values: Any, glob: Any = None) -> str:
    """Per-axis values as one cell: ``427`` when all axes agree, else ``11×23×23``; global axes as ``global``."""
    if values is None:
        return ""
    cells = []
    for i, v in enumerate(values):
        if v is None:
            cells.append("global" if glob and glob[i] else "?")
        else:
            cells.append(str(v))
    return cells[0] if len(set(cells)) == 1 else "×".join(cells)


def _flags(row: dict[str, Any]) -> str:
    flags = []
    if row["source"] and row["source"] != "symbolic":
        flags.append(row["source"])
    if row["global"] and any(row["global"]):
        flags.append("global")
    if row["global_context"]:
        flags.append("context")
    if row["aligned"] is False:
        flags.append(f"misaligned ({row['max_center_shift']} px)")
    return ", ".join(flags)


def md_escape(text: Any) -> str:
    return str(text if text is not None else "").replace("|", "\\|").replace("\n", " ")


_MD_COLUMNS = ("model", "input", "node", "rf", "stride", "start", "flags", "time s", "RSS MB", "probe", "error")


def to_markdown(
    rows: Sequence[dict[str, Any]],
    summary: Optional[dict[str, Any]] = None,
    extra_columns: Optional[dict[str, Any]] = None,
) -> str:
    """A Markdown table (one line per stage node; model-level cells only on a model's first line).

    ``extra_columns`` maps a column title to ``fn(row) -> str``, placed before the error column.
    """
    lines = []
    if summary:
        lines += _summary_lines(summary) + [""]
    validated = any(r["probe"] for r in rows)
    extra_columns = dict(extra_columns or {})
    columns = [c for c in _MD_COLUMNS if c != "probe" or validated]
    columns[-1:-1] = list(extra_columns)
    lines.append("| " + " | ".join(columns) + " |")
    lines.append("|" + "|".join("---" for _ in columns) + "|")
    previous = None
    for r in rows:
        first = r["model"] != previous
        previous = r["model"]
        node = r["node"] or r["label"] or ""
        if r["label"] and r["node"] and r["label"] != r["node"]:
            node = f"{r['label']} ({r['node']})"
        elif r["target"] and node:
            node = f"{r['target']}.{node}"
        seconds = (r["build_s"] or 0) + (r["analysis_s"] or 0)
        probe = r["probe"] or ""
        if probe == "DISAGREE":
            probe = f"DISAGREE: probe {probe_cells(r)}"
        elif probe == "error":
            probe = f"error: {r['probe_note']}"
        cells = {
            "model": r["model"] if first else "",
            "input": "×".join(map(str, r["input"][2:])) if first and r["input"] else "",
            "node": f"`{node}`" if node else "",
            "rf": axes_cell(r["rf"], r["global"]),
            "stride": axes_cell(r["stride"], r["global"]),
            "start": axes_cell(r["start"], r["global"]),
            "flags": _flags(r) if r["node"] else "",
            "time s": f"{seconds:.3f}" if first and r["analysis_s"] is not None else "",
            "RSS MB": f"{r['peak_rss_mb']:.0f}" if first and r["peak_rss_mb"] is not None else "",
            "probe": probe,
            "error": (r["error"] or "")[:300],
        }
        cells.update({title: fn(r) for title, fn in extra_columns.items()})
        lines.append("| " + " | ".join(md_escape(cells[c]) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def probe_cells(r: dict[str, Any]) -> str:
    """The probe's rf / stride / start as cells (an axis the probe found global shows ``global``)."""
    glob = [v is None for v in r["probe_rf"] or []]
    return " / ".join(axes_cell(r[k], glob) for k in ("probe_rf", "probe_stride", "probe_start"))


def _summary_lines(s: dict[str, Any]) -> list[str]:
    out = [
        f"- models: {s['models']} ({s['failed']} failed), stage rows: {s['rows']}",
        f"- wall time: {s['wall_s']} s with {s['workers'] or 'dask'} worker(s) ({s['cpu_s']} s CPU in this process); "
        f"summed per model: build {s['build_s']} s, analysis {s['analysis_s']} s",
    ]
    if s["slowest"]:
        out.append("- slowest (build + analysis): " + ", ".join(f"{m} {t:.2f} s" for m, t in s["slowest"]))
    if s["peak_rss_mb"]:
        m, mb = s["peak_rss_mb"]
        out.append(f"- largest peak RSS: {mb:.0f} MB ({m})")
    if s["unknown_models"]:
        out.append(f"- models with unknown nodes: {', '.join(s['unknown_models'])}")
    if s["disagreements"]:
        out.append(f"- probe disagreements: {s['disagreements']} rows")
    return out


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, list):
        return "x".join("" if x is None else str(x) for x in v)
    return str(v)


def to_csv(rows: Sequence[dict[str, Any]]) -> str:
    """CSV with every row key; per-axis lists joined with ``x``."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(ROW_KEYS)
    for r in rows:
        writer.writerow([_cell(r.get(k)) for k in ROW_KEYS])
    return buf.getvalue()


def _write_md(result: ZooResult, path: Path) -> None:
    path.write_text("# rfgraph zoo\n\n" + result.to_markdown())


def _write_csv(result: ZooResult, path: Path) -> None:
    path.write_text(to_csv(result.rows))


def _write_json(result: ZooResult, path: Path) -> None:
    path.write_text(json.dumps({"summary": result.summary(), "rows": result.rows}, indent=1) + "\n")


def _write_jsonl(result: ZooResult, path: Path) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in result.rows))


WRITERS = {".md": _write_md, ".csv": _write_csv, ".json": _write_json, ".jsonl": _write_jsonl}


def write_rows(result: Union[ZooResult, Sequence[dict[str, Any]]], path: Union[str, os.PathLike]) -> None:
    """Write a sweep's table; the format follows the suffix (``.md``, ``.csv``, ``.json``, ``.jsonl``)."""
    if not isinstance(result, ZooResult):
        result = ZooResult(list(result))
    p = Path(path)
    if p.suffix not in WRITERS:
        raise ValueError(f"cannot write {str(path)!r}: use a .md, .csv, .json or .jsonl file")
    p.parent.mkdir(parents=True, exist_ok=True)
    WRITERS[p.suffix](result, p)
