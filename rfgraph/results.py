"""Result objects: one `NodeRF` per tensor node, gathered in an `Analysis`.

Reports, the CLI, the probe comparison and the zoo read only these objects.

The JSON / YAML schema (``schema_version`` 2; version 1 files are read too)::

    schema_version: 2
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
            stride: "32"             # Fraction strings, or null (the exact mean slope when irregular)
            stride_regular: true     # false: the stride is not one number (finite maps); new in version 2
            start: "-213"
            padding: "213"           # -start (informative; not read back)
            center: "0"
            global: false
            lo: {period: 1, advance: 32, table: [-213]}   # exact window map, or null
            hi: {period: 1, advance: 32, table: [213]}
            # a map that is not periodic-affine is its table over the node's length along the axis,
            # null where the unit reads nothing (version 2):  lo: {finite: [-5, -3, null, 0, ...]}

`from_dict` (and `from_json` / `from_yaml`, which read with ``json.loads`` /
``yaml.safe_load`` only) rebuilds an `Analysis` whose records compare equal to
the original ones, window maps included, so ``record.box(unit)`` still works.
The graph module and the model are not serialized.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Optional, Sequence, Union

from ._version import __version__
from .algebra import FiniteMap, Map, PAMap
from .errors import NodeNameError, NodeNotFoundError, RFGraphError

if TYPE_CHECKING:  # pragma: no cover
    import torch.fx

__all__ = [
    "NodeRF",
    "Analysis",
    "SOURCES",
    "SCHEMA_VERSION",
    "READABLE_VERSIONS",
    "axis_names",
    "select_records",
    "NodeSelection",
    "to_dict",
    "from_dict",
    "to_json",
    "from_json",
    "to_yaml",
    "from_yaml",
]

#: Where a node's numbers come from.
#: ``symbolic``: composed window maps; ``probed``: a window map fitted by the
#: numeric probe on one op (and composed symbolically from there on);
#: ``unknown``: no rule and no probe could decide it (``reason`` says why);
#: ``nonspatial``: a tensor that carries no input spatial axis (e.g. a constant).
SOURCES = ("symbolic", "probed", "unknown", "nonspatial")


@dataclass(frozen=True)
class NodeRF:
    """The receptive field of one traced node, one entry per input spatial axis.

    Axis ``i`` is the ``i``-th spatial dimension of the model input (for a 2-D
    image ``(N, C, H, W)``: 0 is H, 1 is W).  ``None`` in ``rf``, ``stride`` ...
    means the value is not defined on that axis: global, or unknown.
    """

    name: str
    op: str
    module: Optional[str]
    shape: Optional[tuple[int, ...]]
    #: tensor dim of this node carrying each input axis (``None``: no dim does)
    dims: tuple[Optional[int], ...]
    rf: tuple[Optional[int], ...]
    rf_min: tuple[Optional[int], ...]
    rf_path_min: tuple[Optional[int], ...]
    stride: tuple[Optional[Fraction], ...]
    start: tuple[Optional[Fraction], ...]
    center: tuple[Optional[Fraction], ...]
    is_global: tuple[bool, ...]
    #: window maps per axis: `PAMap` (periodic-affine) or `FiniteMap` (a table over the node's length)
    lo: tuple[Optional[Map], ...] = field(repr=False, compare=False, default=())
    hi: tuple[Optional[Map], ...] = field(repr=False, compare=False, default=())
    aligned: bool = True
    max_center_shift: Fraction = Fraction(0)
    global_context: bool = False
    source: str = "symbolic"
    reason: Optional[str] = None
    inputs: tuple[str, ...] = ()
    fx_name: str = ""
    #: per axis: False when the stride is not a single number (the window maps are finite tables,
    #: e.g. after a merge of paths of slightly different slopes); ``stride`` is then the exact mean
    #: slope of ``lo`` and ``rf`` / ``rf_min`` are still exact over the node's positions.
    #: Left out, every axis is regular.
    stride_regular: tuple[bool, ...] = ()

    def __post_init__(self) -> None:
        if len(self.stride_regular) != len(self.rf):
            object.__setattr__(self, "stride_regular", tuple(self.is_regular(i) for i in range(len(self.rf))))

    def is_regular(self, axis: int) -> bool:
        """Whether the stride along ``axis`` is a single number (see ``stride_regular``)."""
        return axis >= len(self.stride_regular) or bool(self.stride_regular[axis])

    @property
    def irregular(self) -> bool:
        """True when some axis' stride is not a single number."""
        return not all(self.stride_regular)

    @property
    def ndim(self) -> int:
        """Number of input spatial axes."""
        return len(self.rf)

    @property
    def padding(self) -> tuple[Optional[Fraction], ...]:
        """Effective padding ``-start`` (the Distill convention)."""
        return tuple(None if s is None else -s for s in self.start)

    @property
    def is_unknown(self) -> bool:
        return self.source == "unknown"

    @property
    def is_spatial(self) -> bool:
        """True when some input axis is still local (finite RF) at this node."""
        return self.source in ("symbolic", "probed") and any(r is not None for r in self.rf)

    def box(self, unit: Sequence[int]) -> Optional[tuple[tuple[int, int], ...]]:
        """Unclipped input box ``((lo, hi), ...)`` seen by output unit ``unit`` (one index per axis).

        ``None`` when the unit reads nothing (an empty window along some axis, e.g. an output of a
        transposed conv that no tap reaches).  With finite window maps (``stride_regular`` False) the
        unit must lie inside the node's length along that axis."""
        if len(unit) != self.ndim:
            raise ValueError(f"unit needs {self.ndim} indices, got {tuple(unit)}")
        out = []
        empty = False
        for axis, u in enumerate(unit):
            lo, hi = self.lo[axis], self.hi[axis]
            if lo is None:
                raise ValueError(f"node {self.name!r} is not local along axis {axis}")
            size = next((m.size for m in (lo, hi) if isinstance(m, FiniteMap)), None)
            if size is not None and not 0 <= u < size:
                raise ValueError(f"unit {u} lies outside node {self.name!r}'s {size} positions along axis {axis}")
            a, b = lo(u), hi(u)
            if a is None or b is None:
                empty = True
            out.append((a, b))
        return None if empty else tuple(out)

    def _repr_html_(self) -> str:
        """A small table for notebooks (stdlib only, like all of this module)."""
        return _html_node(self)


class Analysis:
    """Receptive fields of every tensor node of a traced model.

    ``analysis[name]`` accepts a node name (torchvision feature-extraction
    style, e.g. ``"layer1.0.relu_2"``), an fx node name (``"layer1_0_relu_2"``)
    or a module's qualified name (``"layer4"``), which resolves to the last
    node produced inside that module, as ``create_feature_extractor`` does.
    """

    def __init__(
        self,
        records: Sequence[NodeRF],
        input_shape: tuple[int, ...],
        model_name: str = "",
        graph_module: Optional["torch.fx.GraphModule"] = None,
        model: Any = None,
        meta: Optional[dict[str, Any]] = None,
    ):
        self._records: dict[str, NodeRF] = {r.name: r for r in records}
        self.input_shape = tuple(input_shape)
        self.model_name = model_name
        self.graph_module = graph_module
        self.model = model
        self.meta: dict[str, Any] = dict(meta or {})
        self._fx_alias = {r.fx_name: r.name for r in records if r.fx_name and r.fx_name != r.name}
        self._module_last: Optional[dict[str, str]] = None

    # -- access ----------------------------------------------------------------

    @property
    def nodes(self) -> list[str]:
        """Names of all tensor nodes, in graph order."""
        return list(self._records)

    @property
    def records(self) -> list[NodeRF]:
        return list(self._records.values())

    @property
    def ndim(self) -> int:
        return len(self.input_shape) - 2

    def __iter__(self) -> Iterator[NodeRF]:
        return iter(self._records.values())

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, name: object) -> bool:
        try:
            self.resolve(name)  # type: ignore[arg-type]
        except (NodeNotFoundError, NodeNameError):
            return False
        return True

    def __getitem__(self, name: str) -> NodeRF:
        return self._records[self.resolve(name)]

    def resolve(self, name: str) -> str:
        """The node name that ``name`` (node, fx node or module name) refers to."""
        if isinstance(name, NodeRF):
            name = name.name
        if not isinstance(name, str):
            hint = f"; analysis.records[{name}] is the node at that position" if isinstance(name, int) else ""
            raise NodeNameError(
                f"nodes are named by strings (node, fx node or module names), got {name!r} "
                f"({type(name).__name__}){hint}. Hint: `analysis.nodes` lists every node name."
            )
        if name in self._records:
            return name
        if name in self._fx_alias:
            return self._fx_alias[name]
        found = self.module_last_nodes().get(name)
        if found is None:
            raise NodeNotFoundError(name, list(self._records) + self.module_names())
        return found

    def module_last_nodes(self) -> dict[str, str]:
        """Every dotted prefix -> the node a module name of that path resolves to (one pass, cached).

        The last node produced inside that module, by the module it was traced in (torchvision-style node
        names drop a module's own numeric suffix: ViT's ``ln_2`` runs as node ``ln_1``), else the last node
        whose name lies inside it.
        """
        if self._module_last is None:
            by_module: dict[str, str] = {}
            by_name: dict[str, str] = {}
            for r in self._records.values():
                for path, into in ((r.module, by_module), (r.name, by_name)):
                    parts = path.split(".") if path else []
                    for i in range(1, len(parts) + 1):
                        into[".".join(parts[:i])] = r.name
            self._module_last = {**by_name, **by_module}
        return self._module_last

    def module_names(self) -> list[str]:
        """Qualified module names that some node lies inside."""
        names: dict[str, None] = {}
        for r in self._records.values():
            if r.module:
                parts = r.module.split(".")
                for i in range(1, len(parts) + 1):
                    names[".".join(parts[:i])] = None
        return list(names)

    # -- summaries -------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """How many nodes are symbolic / probed / global / unknown / nonspatial."""
        out = {"symbolic": 0, "probed": 0, "global": 0, "unknown": 0, "nonspatial": 0}
        for r in self._records.values():
            if r.source in ("symbolic", "probed") and r.rf and all(r.is_global):
                out["global"] += 1
            else:
                out[r.source] += 1
        return out

    def unknown(self) -> list[NodeRF]:
        return [r for r in self._records.values() if r.is_unknown]

    def misaligned(self) -> list[NodeRF]:
        return [r for r in self._records.values() if not r.aligned]

    def last_spatial(self) -> Optional[NodeRF]:
        """The last node that is still local along some axis."""
        found = None
        for r in self._records.values():
            if r.is_spatial:
                found = r
        return found

    def stages(self) -> list[NodeRF]:
        """Nodes where the effective stride changes (the last node at each stride), plus the last spatial node."""
        out: list[NodeRF] = []
        spatial = [r for r in self._records.values() if r.is_spatial and r.name != "output"]
        for r, nxt in zip(spatial, spatial[1:] + [None]):
            if nxt is None or nxt.stride != r.stride:
                out.append(r)
        return out

    # -- the file format (defined below in this module) ------------------------

    def to_dict(self, nodes: Optional[Sequence[str]] = None) -> dict[str, Any]:
        """Plain JSON-safe data with a ``schema_version`` (see the module docstring)."""
        return to_dict(self, nodes)

    def to_json(self, nodes: Optional[Sequence[str]] = None) -> str:
        return to_json(self, nodes)

    def to_yaml(self, nodes: Optional[Sequence[str]] = None) -> str:
        return to_yaml(self, nodes)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Analysis:
        return from_dict(data)

    @classmethod
    def from_json(cls, text: str) -> Analysis:
        """Read `to_json` output back (window maps included, so `NodeRF.box` works)."""
        return from_json(text)

    @classmethod
    def from_yaml(cls, text: str) -> Analysis:
        """Read `to_yaml` output back with ``yaml.safe_load``."""
        return from_yaml(text)

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}={v}" for k, v in self.counts().items() if v)
        return f"<Analysis {self.model_name or 'model'} input={self.input_shape} nodes={len(self)} ({counts})>"

    def _repr_html_(self) -> str:
        """Notebook display: counts by source, warnings, and the stage and flagged nodes as a table."""
        return _html_analysis(self)


# -- the file format: dict / JSON / YAML -------------------------------------------

#: Version of the JSON / YAML layout; bumped on any incompatible change.
#: 2: finite window maps (``{"finite": [...]}``) and ``stride_regular`` per axis.
SCHEMA_VERSION = 2
#: Versions `from_dict` reads (a version 1 file has periodic-affine maps only: every stride regular).
READABLE_VERSIONS = (1, 2)

NodeSelection = Optional[Iterable[Union[str, NodeRF]]]

def axis_names(ndim: int) -> tuple[str, ...]:
    """Short names of the input spatial axes: ``("l",)``, ``("h", "w")``, ``("d", "h", "w")``."""
    named = {1: ("l",), 2: ("h", "w"), 3: ("d", "h", "w")}
    return named.get(ndim, tuple(f"a{i}" for i in range(ndim)))


def select_records(analysis: Analysis, nodes: NodeSelection) -> list[NodeRF]:
    """The records named by ``nodes`` (names or records), or all of them when ``nodes`` is None."""
    if nodes is None:
        return analysis.records
    return [n if isinstance(n, NodeRF) else analysis[n] for n in nodes]


def _frac(value: Optional[Fraction]) -> Optional[str]:
    return None if value is None else str(value)


def _unfrac(text: Optional[str]) -> Optional[Fraction]:
    return None if text is None else Fraction(str(text))


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


def _pamap_dict(m: Optional[Map]) -> Optional[dict[str, Any]]:
    if m is None:
        return None
    if isinstance(m, FiniteMap):
        return {"finite": list(m.table)}
    return {"period": m.period, "advance": m.advance, "table": list(m.table)}


def _pamap_from(d: Optional[dict[str, Any]]) -> Optional[Map]:
    if d is None:
        return None
    if "finite" in d:
        return FiniteMap(None if v is None else int(v) for v in d["finite"])
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
                "stride_regular": r.is_regular(i),
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
        stride_regular=tuple(bool(a.get("stride_regular", True)) for a in axes),
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
    return {
        "schema_version": SCHEMA_VERSION,
        "generator": f"rfgraph {__version__}",
        "model": analysis.model_name,
        "input_shape": list(analysis.input_shape),
        "axes": list(axis_names(analysis.ndim)),
        "counts": analysis.counts(),
        "meta": _json_safe(analysis.meta),
        "nodes": [_node_dict(r) for r in select_records(analysis, nodes)],
    }


_INT = {"type": "integer"}
_INT_OR_NULL = {"type": ["integer", "null"]}
_STR_OR_NULL = {"type": ["string", "null"]}
#: An exact fraction: ``"-213"``, ``"1/2"`` (a non-zero denominator), or an integer.
_FRACTION = {
    "anyOf": [
        {"type": "string", "pattern": r"^-?[0-9]{1,400}(/0*[1-9][0-9]{0,400})?$"},
        {"type": "integer"},
        {"type": "null"},
    ]
}
_PAMAP = {
    "anyOf": [
        {"type": "null"},
        {
            "type": "object",
            "required": ["period", "advance", "table"],
            "properties": {
                "period": {"type": "integer", "minimum": 1},
                "advance": _INT,
                "table": {"type": "array", "items": _INT, "minItems": 1},
            },
        },
        {  # a finite map (version 2): its table over the node's length, null where a unit reads nothing
            "type": "object",
            "required": ["finite"],
            "properties": {"finite": {"type": "array", "items": _INT_OR_NULL, "minItems": 1}},
        },
    ]
}
_AXIS = {
    "type": "object",
    "required": ["axis"],
    "properties": {
        "axis": {"type": "integer", "minimum": 0},
        "dim": {"type": ["integer", "null"], "minimum": 0},
        "rf": _INT_OR_NULL, "rf_min": _INT_OR_NULL, "rf_path_min": _INT_OR_NULL,
        "stride": _FRACTION, "start": _FRACTION, "padding": _FRACTION, "center": _FRACTION,
        "global": {"type": "boolean"},
        "stride_regular": {"type": "boolean"},
        "lo": _PAMAP, "hi": _PAMAP,
    },
}
_NODE = {
    "type": "object",
    "required": ["name", "op"],
    "properties": {
        "name": {"type": "string"},
        "fx_name": _STR_OR_NULL,
        "op": {"type": "string"},
        "module": _STR_OR_NULL,
        "shape": {"anyOf": [{"type": "null"}, {"type": "array", "items": {"type": "integer", "minimum": 0}}]},
        "source": {"enum": list(SOURCES)},
        "reason": _STR_OR_NULL,
        "inputs": {"type": "array", "items": {"type": "string"}},
        "aligned": {"type": "boolean"},
        "max_center_shift": _FRACTION,
        "global_context": {"type": "boolean"},
        "axes": {"type": ["array", "null"], "items": _AXIS},
    },
}
#: JSON Schema of a report (``schema_version`` 1 or 2), checked by `from_dict` with the ``jsonschema`` package.
REPORT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "rfgraph report",
    "type": "object",
    "required": ["schema_version", "input_shape"],
    "properties": {
        "schema_version": {"enum": list(READABLE_VERSIONS)},
        "generator": {"type": "string"},
        "model": _STR_OR_NULL,
        "input_shape": {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 2},
        "axes": {"type": "array", "items": {"type": "string"}},
        "counts": {"type": "object"},
        "meta": {"type": ["object", "null"]},
        "nodes": {"type": ["array", "null"], "items": _NODE},
    },
}

#: Deepest nesting of lists and dicts a report may have (real reports: 6).
MAX_DEPTH = 32


def _too_deep(data: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether ``data`` nests lists / dicts deeper than ``limit`` (iterative: no recursion to overflow)."""
    stack = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (list, dict)):
            if depth >= limit:
                return True
            items = value.values() if isinstance(value, dict) else value
            stack.extend((v, depth + 1) for v in items)
    return False


def validate_report(data: Any) -> None:
    """Raise `RFGraphError` unless ``data`` is a report of this schema version (see `REPORT_SCHEMA`)."""
    import jsonschema  # deferred: only reading reports needs it

    if not isinstance(data, dict) or "schema_version" not in data:
        raise RFGraphError("not an rfgraph report: the top level has no 'schema_version' field")
    version = data["schema_version"]
    if version not in READABLE_VERSIONS or isinstance(version, bool):
        raise RFGraphError(
            f"unsupported rfgraph report schema_version {version!r}; this rfgraph reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}"
        )
    if _too_deep(data):
        raise RFGraphError(f"malformed rfgraph report: nested deeper than {MAX_DEPTH} levels")
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(REPORT_SCHEMA).iter_errors(data))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "top level"
        message = error.message if len(error.message) <= 300 else error.message[:297] + "..."
        raise RFGraphError(f"malformed rfgraph report at {where}: {message}")


def from_dict(data: Any) -> Analysis:
    """Rebuild an `Analysis` from `to_dict` output (no graph module, no model).

    ``data`` is first checked against `REPORT_SCHEMA`; anything wrong in it
    raises `RFGraphError` naming the place, never another exception.
    """
    validate_report(data)
    try:
        records = [_node_from(d) for d in data.get("nodes") or []]
        shape = tuple(int(s) for s in data["input_shape"])
        ndim = len(shape) - 2
        for d in data.get("nodes") or []:
            axes = sorted(a["axis"] for a in d.get("axes") or [])
            if axes and axes != list(range(ndim)):
                raise ValueError(f"node {d['name']!r} has axes {axes}; the input has {ndim} spatial axes")
        for r in records:
            for m in (*r.lo, *r.hi):
                if isinstance(m, PAMap) and len(m.table) != m.period:
                    raise ValueError(f"node {r.name!r}: a window map has period {m.period} but a table of "
                                     f"{len(m.table)} values")
        return Analysis(records, shape, model_name=data.get("model") or "", meta=data.get("meta") or {})
    except RFGraphError:
        raise
    except Exception as exc:  # the schema passed but the values do not fit together
        raise RFGraphError(f"malformed rfgraph report: {type(exc).__name__}: {exc}") from exc


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
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, too many digits, too deep
        raise RFGraphError(f"not valid JSON: {type(exc).__name__}: {str(exc)[:300]}") from exc
    return from_dict(data)


def to_yaml(analysis: Analysis, nodes: NodeSelection = None) -> str:
    """YAML text of `to_dict` (read it back with `from_yaml`, which uses ``yaml.safe_load``)."""
    import yaml  # deferred: only the YAML format needs it

    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # the C emitter when libyaml is there: same output
    return yaml.dump(to_dict(analysis, nodes), Dumper=dumper, sort_keys=False, default_flow_style=None, width=120)


def from_yaml(text: str) -> Analysis:
    """Parse `to_yaml` output back into an `Analysis` (``yaml.safe_load`` only)."""
    import yaml  # deferred: only the YAML format needs it

    try:
        data = yaml.safe_load(text)
    except (yaml.YAMLError, ValueError, RecursionError) as exc:  # python tags are refused: a YAMLError
        raise RFGraphError(f"not valid YAML: {type(exc).__name__}: {str(exc)[:300]}") from exc
    return from_dict(data)


# -- notebook display (stdlib only; the interactive page is rfgraph.report.explorer) ------------------

_HTML_STYLE = (
    "<style>.rfg table{border-collapse:collapse;font-size:12px}.rfg td,.rfg th{padding:1px 8px;text-align:left;"
    "border-bottom:1px solid #eee}.rfg .num{text-align:right}.rfg .flag{color:#a14d00}.rfg .bad{color:#c62828}"
    ".rfg .muted{color:#777}</style>"
)


def _html_cells(r: NodeRF, values: Sequence[Any]) -> str:
    cells = [str(v) if v is not None else "?" if r.is_unknown else "global" if r.is_global[i] else "-"
             for i, v in enumerate(values)]
    return (cells[0] if all(c == cells[0] for c in cells) else " x ".join(cells)) if cells else "-"


def _html_flags(r: NodeRF) -> str:
    out = [f"unknown: {r.reason}" if r.reason else "unknown"] if r.is_unknown else []
    out += [r.source] if r.source in ("probed", "nonspatial") else []
    out += ["global-context"] if r.global_context else []
    out += [f"misaligned (center shift {r.max_center_shift})"] if not r.aligned else []
    return ", ".join(out)


def _html_row(r: NodeRF) -> str:
    cls = "bad" if r.is_unknown else "flag"
    shape = "x".join(map(str, r.shape)) if r.shape is not None else "-"
    cells = [r.name, r.op, shape, _html_cells(r, r.rf), _html_cells(r, r.stride), _html_cells(r, r.start)]
    tds = "".join(f'<td{" class=num" if i >= 3 else ""}>{html.escape(str(c))}</td>' for i, c in enumerate(cells))
    return f'<tr>{tds}<td class="{cls}">{html.escape(_html_flags(r))}</td></tr>'


_HTML_HEAD = "<tr><th>node</th><th>op</th><th>shape</th><th>rf</th><th>stride</th><th>start</th><th>flags</th></tr>"


def _html_node(r: NodeRF) -> str:
    return f'{_HTML_STYLE}<div class="rfg"><table>{_HTML_HEAD}{_html_row(r)}</table></div>'


def _html_analysis(a: Analysis) -> str:
    counts = ", ".join(f"{k} {v}" for k, v in a.counts().items() if v)
    title = html.escape(f"{a.model_name or 'model'}, input {'x'.join(map(str, a.input_shape))}")
    warn = [f"{len(a.unknown())} unknown", f"{len(a.misaligned())} misaligned",
            f"{sum(r.global_context for r in a)} with global context"]
    warn = [w for w in warn if not w.startswith("0 ")]
    stages = {r.name for r in a.stages()}
    rows = [r for r in a if r.name in stages or _html_flags(r)]
    body = "".join(_html_row(r) for r in rows[:60])
    more = f"<tr><td colspan=7 class=muted>... {len(rows) - 60} more</td></tr>" if len(rows) > 60 else ""
    return (
        f'{_HTML_STYLE}<div class="rfg"><b>{title}</b> <span class="muted">({len(a)} nodes: {counts})</span>'
        + (f'<div class="flag">{html.escape("; ".join(warn))}</div>' if warn else "")
        + f"<table>{_HTML_HEAD}{body}{more}</table>"
        + '<div class="muted">stage nodes (the stride changes after them) and flagged nodes</div></div>'
    )
