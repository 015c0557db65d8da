"""Reports of an `Analysis`: terminal table, Markdown, JSON, YAML, CSV and networkx.

Every report reads only the `NodeRF` records of an `Analysis`; nothing is
computed a second time.  Exact values stay exact: a `Fraction` is written as
its string (``"1/2"``, ``"32"``, ``"-213"``) and parsed back with
``Fraction(text)``.

The JSON / YAML schema and its readers live in `rfgraph.results` (they are
the results' own file format); they are re-exported here.
"""

from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING, Any, Optional, Sequence

from ..results import (
    SCHEMA_VERSION,
    Analysis,
    NodeRF,
    NodeSelection,
    axis_names,
    from_dict,
    from_json,
    from_yaml,
    select_records,
    to_dict,
    to_json,
    to_yaml,
)

if TYPE_CHECKING:  # pragma: no cover
    import networkx
    import rich.table

__all__ = [
    "SCHEMA_VERSION",
    "FORMATS",
    "axis_names",
    "module_outputs",
    "format_axes",
    "flags",
    "to_dict",
    "from_dict",
    "to_json",
    "from_json",
    "to_yaml",
    "from_yaml",
    "to_csv",
    "csv_columns",
    "to_markdown",
    "rich_table",
    "render_table",
    "to_networkx",
    "render",
]

#: Output formats understood by `render`.
FORMATS = ("table", "markdown", "json", "yaml", "csv")



# -- small helpers -------------------------------------------------------------------


def module_outputs(analysis: Analysis) -> list[NodeRF]:
    """The output node of each module-level block, in graph order (what ``rfgraph --stages`` lists).

    Nodes are grouped by their top-level module (``conv1``, ``layer1``, ...;
    a node outside any module is its own group) and the last node of each run
    of a group is kept, as ``analysis["layer1"]`` resolves it.  A module that
    holds more than half of all nodes (``features`` of VGG or MobileNet, the
    encoder of a ViT) is split into its children, recursively.  The input
    placeholder and the ``output`` node are left out.
    """
    records = [r for r in analysis if r.op not in ("placeholder", "output")]
    limit = len(records) / 2
    counts: dict[str, int] = {}
    for r in records:
        parts = (r.module or "").split(".") if r.module else []
        for i in range(1, len(parts) + 1):
            key = ".".join(parts[:i])
            counts[key] = counts.get(key, 0) + 1

    def group(r: NodeRF) -> str:
        if not r.module:
            return "\0" + r.name
        parts = r.module.split(".")
        for i in range(1, len(parts) + 1):
            key = ".".join(parts[:i])
            if counts[key] <= limit or i == len(parts):
                return key
        return r.module  # pragma: no cover - the loop always returns

    out: list[NodeRF] = []
    keys = [group(r) for r in records]
    for i, r in enumerate(records):
        if i + 1 == len(records) or keys[i + 1] != keys[i]:
            out.append(r)
    return out


def _cell(record: NodeRF, axis: int, value: Any, attr: str = "") -> str:
    """One axis' value for a human-readable cell (an irregular stride, the mean slope, as ``~85/21``)."""
    if value is not None:
        if attr == "stride" and not record.is_regular(axis):
            return f"~{value}"
        return str(value)
    if record.is_unknown:
        return "?"
    if record.is_global[axis]:
        return "global"
    return "-"


def format_axes(record: NodeRF, attr: str) -> str:
    """``record.<attr>`` for a table cell: one value when all axes agree, else ``"11 x 7"``.

    ``global`` where the node depends on the whole input along an axis, ``?``
    where the value is unknown, ``-`` where the node carries no such axis.
    A stride that is not a single number (finite window maps) is its exact
    mean slope marked ``~``.
    """
    values = getattr(record, attr)
    cells = [_cell(record, i, v, attr) for i, v in enumerate(values)]
    if not cells:
        return "-"
    if all(c == cells[0] for c in cells):
        return cells[0]
    return " x ".join(cells)


def flags(record: NodeRF) -> list[str]:
    """Short flags worth a reader's attention: unknown, probed, global context, misalignment, irregular stride."""
    out: list[str] = []
    if record.is_unknown:
        out.append(f"unknown: {record.reason}" if record.reason else "unknown")
    if record.source == "probed":
        out.append("probed")
    if record.source == "nonspatial":
        out.append("nonspatial")
    if record.global_context:
        out.append("global-context")
    if not record.aligned:
        out.append(f"misaligned (center shift {record.max_center_shift})")
    if record.irregular:
        out.append("irregular stride (exact per-unit table)")
    return out


def _shape_text(shape: Optional[Sequence[int]]) -> str:
    return "-" if shape is None else "x".join(map(str, shape)) or "scalar"


# -- CSV -------------------------------------------------------------------------------

_CSV_AXIS_FIELDS = ("rf", "rf_min", "rf_path_min", "stride", "stride_regular", "start", "center", "global", "dim")


def csv_columns(ndim: int) -> list[str]:
    """Column names of `to_csv`: per-axis columns are suffixed with the axis name (``rf_h``)."""
    cols = ["node", "fx_name", "op", "module", "shape", "source"]
    for a in axis_names(ndim):
        cols += [f"{f}_{a}" for f in _CSV_AXIS_FIELDS]
    cols += ["aligned", "max_center_shift", "global_context", "reason", "inputs"]
    return cols


def to_csv(analysis: Analysis, nodes: NodeSelection = None) -> str:
    """One row per node; empty cells for undefined values; fractions as ``"1/2"``; inputs space-separated."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    names = axis_names(analysis.ndim)
    writer.writerow(csv_columns(analysis.ndim))

    def txt(v: Any) -> str:
        return "" if v is None else str(v)

    for r in select_records(analysis, nodes):
        row = [r.name, r.fx_name, r.op, r.module or "", _shape_text(r.shape) if r.shape is not None else "", r.source]
        for i in range(len(names)):
            row += [
                txt(r.rf[i]),
                txt(r.rf_min[i]),
                txt(r.rf_path_min[i]),
                txt(r.stride[i]),
                str(r.is_regular(i)).lower(),
                txt(r.start[i]),
                txt(r.center[i]),
                str(bool(r.is_global[i])).lower(),
                txt(r.dims[i]),
            ]
        row += [
            str(bool(r.aligned)).lower(),
            str(r.max_center_shift),
            str(bool(r.global_context)).lower(),
            r.reason or "",
            " ".join(r.inputs),
        ]
        writer.writerow(row)
    return buf.getvalue()


# -- human-readable tables ----------------------------------------------------------------

_TABLE_COLUMNS = ("node", "op", "shape", "rf", "stride", "start", "flags")


def _row(r: NodeRF) -> list[str]:
    return [
        r.name,
        r.op,
        _shape_text(r.shape),
        format_axes(r, "rf"),
        format_axes(r, "stride"),
        format_axes(r, "start"),
        ", ".join(flags(r)),
    ]


def _summary(analysis: Analysis) -> str:
    counts = ", ".join(f"{k} {v}" for k, v in analysis.counts().items() if v)
    text = f"{len(analysis)} nodes: {counts}"
    ops = analysis.meta.get("unknown_ops") or {}
    if ops:
        text += "; no rule for " + ", ".join(f"{op} (x{n})" for op, n in ops.items())
    return text


def _title(analysis: Analysis, model_label: Optional[str]) -> str:
    name = model_label or analysis.model_name or "model"
    return f"{name}, input {'x'.join(map(str, analysis.input_shape))}"


def to_markdown(analysis: Analysis, nodes: NodeSelection = None, model_label: Optional[str] = None) -> str:
    """A Markdown table (node, op, shape, rf, stride, start, flags) with a one-line heading and summary.

    ``start`` is the input coordinate of the first pixel seen by unit 0; the
    effective padding is ``-start``.  Values are written once when all axes
    agree, else per axis as ``"11 x 7"``.
    """

    def esc(s: str) -> str:
        return s.replace("|", "\\|")

    lines = [
        f"**{esc(_title(analysis, model_label))}** ({esc(_summary(analysis))})",
        "",
        "| " + " | ".join(_TABLE_COLUMNS) + " |",
        "|" + "|".join("---" for _ in _TABLE_COLUMNS) + "|",
    ]
    for r in select_records(analysis, nodes):
        lines.append("| " + " | ".join(esc(c) if c else " " for c in _row(r)) + " |")
    return "\n".join(lines) + "\n"


def rich_table(analysis: Analysis, nodes: NodeSelection = None, model_label: Optional[str] = None) -> rich.table.Table:
    """A `rich` table of the selected nodes, with a title and a summary caption."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    # Names come from the model (or a report file): Text, never markup, so "[red]x[/red]" prints as is.
    table = Table(
        title=Text(_title(analysis, model_label), style="table.title"),
        caption=Text(_summary(analysis) + "\nstart: first input pixel seen by unit 0 (padding = -start)", style="table.caption"),
        box=box.SIMPLE_HEAD,
        title_justify="left",
        caption_justify="left",
        header_style="bold",
    )
    table.add_column("node", style="cyan", no_wrap=True)
    table.add_column("op")
    table.add_column("shape", no_wrap=True)
    table.add_column("rf", justify="right", style="bold", no_wrap=True)
    table.add_column("stride", justify="right", no_wrap=True)
    table.add_column("start", justify="right", no_wrap=True)
    table.add_column("flags")
    for r in select_records(analysis, nodes):
        style = None
        if r.is_unknown:
            style = "red"
        elif not r.aligned:
            style = "yellow"
        elif r.rf and all(r.is_global):
            style = "dim"
        table.add_row(*(Text(str(cell)) for cell in _row(r)), style=style)
    return table


def render_table(
    analysis: Analysis,
    nodes: NodeSelection = None,
    width: int = 200,
    color: bool = False,
    model_label: Optional[str] = None,
) -> str:
    """The `rich_table` as text (no colour codes unless ``color``); the table takes its natural width."""
    from rich.console import Console

    buf = io.StringIO()
    console = Console(file=buf, width=width, force_terminal=color, no_color=not color, highlight=False)
    console.print(rich_table(analysis, nodes, model_label=model_label))
    return "\n".join(line.rstrip() for line in buf.getvalue().splitlines()) + "\n"


# -- networkx -----------------------------------------------------------------------------


def to_networkx(analysis: Analysis) -> networkx.DiGraph:
    """A `networkx.DiGraph` of the tensor nodes.

    Each node is keyed by its name and carries every `NodeRF` field as an
    attribute (``rf``, ``stride``, ``start``, ``lo``, ``hi``, ``source`` ...,
    plus ``padding``).  An edge ``a -> b`` means that tensor node ``a`` is a
    direct input of ``b`` in the traced graph; inputs that are not tensors
    (sizes, constants) carry no receptive field and are left out.  The graph's
    own attributes hold ``model``, ``input_shape`` and ``schema_version``.
    """
    from dataclasses import fields

    import networkx as nx

    g = nx.DiGraph(model=analysis.model_name, input_shape=analysis.input_shape, schema_version=SCHEMA_VERSION)
    names = [f.name for f in fields(NodeRF) if f.name != "name"]
    for r in analysis:
        attrs = {k: getattr(r, k) for k in names}
        attrs["padding"] = r.padding
        g.add_node(r.name, **attrs)
    for r in analysis:
        for src in r.inputs:
            if src in g and src != r.name:
                g.add_edge(src, r.name)
    return g


# -- dispatch -------------------------------------------------------------------------------


def render(
    analysis: Analysis,
    fmt: str = "table",
    nodes: NodeSelection = None,
    width: int = 200,
    color: bool = False,
    model_label: Optional[str] = None,
) -> str:
    """The report of ``analysis`` in format ``fmt`` (one of `FORMATS`) as text."""
    if fmt == "table":
        return render_table(analysis, nodes, width=width, color=color, model_label=model_label)
    if fmt == "markdown":
        return to_markdown(analysis, nodes, model_label=model_label)
    if fmt == "json":
        return to_json(analysis, nodes)
    if fmt == "yaml":
        return to_yaml(analysis, nodes)
    if fmt == "csv":
        return to_csv(analysis, nodes)
    raise ValueError(f"unknown report format {fmt!r}; choose one of {', '.join(FORMATS)}")
