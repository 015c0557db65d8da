"""Reports of an `Analysis`: terminal table, Markdown, JSON, YAML, CSV and networkx.

Every report reads only the `NodeRF` records of an `Analysis`; nothing is
computed a second time.  Exact values stay exact: a `Fraction` is written as
its string (``"1/2"``, ``"32"``, ``"-213"``) and parsed back with
``Fraction(text)``.

The JSON / YAML schema (``schema_version`` 1)::

    schema_version: 1
    generator: "rfgraph 0.1.0"
    model: "ResNet"                  # Analysis.model_name
    input_shape: [1, 3, 224, 224]
    axes: ["h", "w"]                 # names of the input spatial axes
    counts: {symbolic: 170, ...}     # Analysis.counts(), informative only
    meta: {...}                      # Analysis.meta, JSON-safe values only
    nodes:
      - name: "layer4.2.relu_2"      # torchvision-style node name
        fx_name: "layer4_2_relu_2"
        op: "ReLU"
        module: "layer4.2.relu"      # or null
        shape: [1, 2048, 7, 7]       # or null
        source: "symbolic"           # symbolic | probed | unknown | nonspatial
        reason: null                 # why a node is unknown
        inputs: ["layer4.2.add"]     # input nodes, as in the traced graph
        aligned: true
        max_center_shift: "0"        # Fraction as a string
        global_context: false
        axes:                        # one entry per input spatial axis
          - axis: 0
            dim: 2                   # tensor dim carrying this axis, or null
            rf: 427                  # int or null (global / unknown / none)
            rf_min: 427
            rf_path_min: 11
            stride: "32"             # Fraction strings, or null
            start: "-213"
            padding: "213"           # -start (informative; not read back)
            center: "0"
            global: false
            lo: {period: 1, advance: 32, table: [-213]}   # exact window map, or null
            hi: {period: 1, advance: 32, table: [213]}

`from_dict` (and `from_json` / `from_yaml`, which read with ``json.loads`` /
``yaml.safe_load`` only) rebuilds an `Analysis` whose records compare equal to
the original ones, window maps included, so ``record.box(unit)`` still works.
The graph module and the model are not serialized.
"""

from __future__ import annotations

import csv
import io
import json
import re
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Iterable, Optional, Sequence, Union

from ..algebra import PAMap
from ..errors import RFGraphError
from ..results import Analysis, NodeRF

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

#: Version of the JSON / YAML layout; bumped on any incompatible change.
SCHEMA_VERSION = 1

#: Output formats understood by `render`.
FORMATS = ("table", "markdown", "json", "yaml", "csv")

NodeSelection = Optional[Iterable[Union[str, NodeRF]]]


# -- small helpers -------------------------------------------------------------------


def axis_names(ndim: int) -> tuple[str, ...]:
    """Short names of the input spatial axes: ``("l",)``, ``("h", "w")``, ``("d", "h", "w")``."""
    named = {1: ("l",), 2: ("h", "w"), 3: ("d", "h", "w")}
    return named.get(ndim, tuple(f"a{i}" for i in range(ndim)))


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


def _select(analysis: Analysis, nodes: NodeSelection) -> list[NodeRF]:
    if nodes is None:
        return analysis.records
    return [n if isinstance(n, NodeRF) else analysis[n] for n in nodes]


def _frac(value: Optional[Fraction]) -> Optional[str]:
    return None if value is None else str(value)


def _unfrac(text: Optional[str]) -> Optional[Fraction]:
    return None if text is None else Fraction(str(text))


def _cell(record: NodeRF, axis: int, value: Any) -> str:
    """One axis' value for a human-readable cell."""
    if value is not None:
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
    """
    values = getattr(record, attr)
    cells = [_cell(record, i, v) for i, v in enumerate(values)]
    if not cells:
        return "-"
    if all(c == cells[0] for c in cells):
        return cells[0]
    return " x ".join(cells)


def flags(record: NodeRF) -> list[str]:
    """Short flags worth a reader's attention: unknown, probed, global context, misalignment."""
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
    return out


def _shape_text(shape: Optional[Sequence[int]]) -> str:
    return "-" if shape is None else "x".join(map(str, shape)) or "scalar"


def _json_safe(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Fraction):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return str(value)


# -- dict / JSON / YAML --------------------------------------------------------------


def _pamap_dict(m: Optional[PAMap]) -> Optional[dict[str, Any]]:
    if m is None:
        return None
    return {"period": m.period, "advance": m.advance, "table": list(m.table)}


def _pamap_from(d: Optional[dict[str, Any]]) -> Optional[PAMap]:
    if d is None:
        return None
    return PAMap(int(d["period"]), int(d["advance"]), [int(v) for v in d["table"]])


def _node_dict(r: NodeRF) -> dict[str, Any]:
    axes = []
    for i in range(r.ndim):
        axes.append(
            {
                "axis": i,
                "dim": r.dims[i] if i < len(r.dims) else None,
                "rf": r.rf[i],
                "rf_min": r.rf_min[i],
                "rf_path_min": r.rf_path_min[i],
                "stride": _frac(r.stride[i]),
                "start": _frac(r.start[i]),
                "padding": _frac(r.padding[i]),
                "center": _frac(r.center[i]),
                "global": bool(r.is_global[i]),
                "lo": _pamap_dict(r.lo[i] if i < len(r.lo) else None),
                "hi": _pamap_dict(r.hi[i] if i < len(r.hi) else None),
            }
        )
    return {
        "name": r.name,
        "fx_name": r.fx_name,
        "op": r.op,
        "module": r.module,
        "shape": None if r.shape is None else list(r.shape),
        "source": r.source,
        "reason": r.reason,
        "inputs": list(r.inputs),
        "aligned": bool(r.aligned),
        "max_center_shift": _frac(r.max_center_shift),
        "global_context": bool(r.global_context),
        "axes": axes,
    }


def _node_from(d: dict[str, Any]) -> NodeRF:
    axes = sorted(d.get("axes") or [], key=lambda a: a["axis"])

    def per_axis(key: str, convert=lambda v: v) -> tuple:
        return tuple(None if a.get(key) is None else convert(a[key]) for a in axes)

    shape = d.get("shape")
    return NodeRF(
        name=d["name"],
        op=d["op"],
        module=d.get("module"),
        shape=None if shape is None else tuple(int(s) for s in shape),
        dims=per_axis("dim", int),
        rf=per_axis("rf", int),
        rf_min=per_axis("rf_min", int),
        rf_path_min=per_axis("rf_path_min", int),
        stride=per_axis("stride", _unfrac),
        start=per_axis("start", _unfrac),
        center=per_axis("center", _unfrac),
        is_global=tuple(bool(a.get("global", False)) for a in axes),
        lo=tuple(_pamap_from(a.get("lo")) for a in axes),
        hi=tuple(_pamap_from(a.get("hi")) for a in axes),
        aligned=bool(d.get("aligned", True)),
        max_center_shift=_unfrac(d.get("max_center_shift")) or Fraction(0),
        global_context=bool(d.get("global_context", False)),
        source=d.get("source", "symbolic"),
        reason=d.get("reason"),
        inputs=tuple(d.get("inputs") or ()),
        fx_name=d.get("fx_name") or "",
    )


def to_dict(analysis: Analysis, nodes: NodeSelection = None) -> dict[str, Any]:
    """The analysis as plain JSON-safe data (see the module docstring for the schema)."""
    from .. import __version__

    return {
        "schema_version": SCHEMA_VERSION,
        "generator": f"rfgraph {__version__}",
        "model": analysis.model_name,
        "input_shape": list(analysis.input_shape),
        "axes": list(axis_names(analysis.ndim)),
        "counts": analysis.counts(),
        "meta": _json_safe(analysis.meta),
        "nodes": [_node_dict(r) for r in _select(analysis, nodes)],
    }


def from_dict(data: Any) -> Analysis:
    """Rebuild an `Analysis` from `to_dict` output (no graph module, no model)."""
    if not isinstance(data, dict) or "schema_version" not in data:
        raise RFGraphError("not an rfgraph report: the top level has no 'schema_version' field")
    version = data["schema_version"]
    if version != SCHEMA_VERSION:
        raise RFGraphError(
            f"unsupported rfgraph report schema_version {version!r}; this rfgraph reads version {SCHEMA_VERSION}"
        )
    try:
        records = [_node_from(d) for d in data.get("nodes") or []]
        shape = tuple(int(s) for s in data["input_shape"])
    except (KeyError, TypeError, ValueError) as exc:
        raise RFGraphError(f"malformed rfgraph report: {type(exc).__name__}: {exc}") from exc
    return Analysis(records, shape, model_name=data.get("model") or "", meta=data.get("meta") or {})


_SCALAR_ARRAY = re.compile(r"\[[^\[\]{}]*\]")


def _compact_arrays(text: str) -> str:
    """Put each array of scalars on one line (``[1, 3, 224, 224]``) in indented JSON."""

    def one_line(m: re.Match) -> str:
        try:
            return json.dumps(json.loads(m.group(0)))
        except ValueError:  # a bracket inside a string: leave it alone
            return m.group(0)

    return _SCALAR_ARRAY.sub(one_line, text)


def to_json(analysis: Analysis, nodes: NodeSelection = None, indent: Optional[int] = 2) -> str:
    """JSON text of `to_dict` (arrays of numbers or names on one line)."""
    text = json.dumps(to_dict(analysis, nodes), indent=indent)
    return (_compact_arrays(text) if indent else text) + "\n"


def from_json(text: str) -> Analysis:
    """Parse `to_json` output back into an `Analysis`."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RFGraphError(f"not valid JSON: {exc}") from exc
    return from_dict(data)


def to_yaml(analysis: Analysis, nodes: NodeSelection = None) -> str:
    """YAML text of `to_dict` (read it back with `from_yaml`, which uses ``yaml.safe_load``)."""
    import yaml

    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # the C emitter when libyaml is there: same output
    return yaml.dump(to_dict(analysis, nodes), Dumper=dumper, sort_keys=False, default_flow_style=None, width=120)


def from_yaml(text: str) -> Analysis:
    """Parse `to_yaml` output back into an `Analysis` (``yaml.safe_load`` only)."""
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RFGraphError(f"not valid YAML: {exc}") from exc
    return from_dict(data)


# -- CSV -------------------------------------------------------------------------------

_CSV_AXIS_FIELDS = ("rf", "rf_min", "rf_path_min", "stride", "start", "center", "global", "dim")


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

    for r in _select(analysis, nodes):
        row = [r.name, r.fx_name, r.op, r.module or "", _shape_text(r.shape) if r.shape is not None else "", r.source]
        for i in range(len(names)):
            row += [
                txt(r.rf[i]),
                txt(r.rf_min[i]),
                txt(r.rf_path_min[i]),
                txt(r.stride[i]),
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
    for r in _select(analysis, nodes):
        lines.append("| " + " | ".join(esc(c) if c else " " for c in _row(r)) + " |")
    return "\n".join(lines) + "\n"


def rich_table(analysis: Analysis, nodes: NodeSelection = None, model_label: Optional[str] = None) -> rich.table.Table:
    """A `rich` table of the selected nodes, with a title and a summary caption."""
    from rich import box
    from rich.table import Table

    table = Table(
        title=_title(analysis, model_label),
        caption=_summary(analysis) + "\nstart: first input pixel seen by unit 0 (padding = -start)",
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
    for r in _select(analysis, nodes):
        style = None
        if r.is_unknown:
            style = "red"
        elif not r.aligned:
            style = "yellow"
        elif r.rf and all(r.is_global):
            style = "dim"
        table.add_row(*_row(r), style=style)
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
