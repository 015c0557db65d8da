"""Result objects: one `NodeRF` per tensor node, gathered in an `Analysis`.

Reports, the CLI, the probe comparison and the zoo read only these objects.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field, fields, replace
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Iterator, Optional, Sequence

from .algebra import PAMap
from .errors import NodeNotFoundError

if TYPE_CHECKING:  # pragma: no cover
    import torch.fx

__all__ = ["NodeRF", "Analysis", "SOURCES"]

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
    lo: tuple[Optional[PAMap], ...] = field(repr=False, compare=False, default=())
    hi: tuple[Optional[PAMap], ...] = field(repr=False, compare=False, default=())
    aligned: bool = True
    max_center_shift: Fraction = Fraction(0)
    global_context: bool = False
    source: str = "symbolic"
    reason: Optional[str] = None
    inputs: tuple[str, ...] = ()
    fx_name: str = ""

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

    def box(self, unit: Sequence[int]) -> tuple[tuple[int, int], ...]:
        """Unclipped input box ``((lo, hi), ...)`` seen by output unit ``unit`` (one index per axis)."""
        if len(unit) != self.ndim:
            raise ValueError(f"unit needs {self.ndim} indices, got {tuple(unit)}")
        out = []
        for axis, u in enumerate(unit):
            lo, hi = self.lo[axis], self.hi[axis]
            if lo is None:
                raise ValueError(f"node {self.name!r} is not local along axis {axis}")
            out.append((lo(u), hi(u)))
        return tuple(out)

    def with_changes(self, **changes: Any) -> NodeRF:
        return replace(self, **changes)

    def _repr_html_(self) -> str:
        """A small table for notebooks (stdlib only, like all of this module)."""
        return _html_node(self)


_FIELD_NAMES = tuple(f.name for f in fields(NodeRF))


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
        except NodeNotFoundError:
            return False
        return True

    def __getitem__(self, name: str) -> NodeRF:
        return self._records[self.resolve(name)]

    def resolve(self, name: str) -> str:
        """The node name that ``name`` (node, fx node or module name) refers to."""
        if name in self._records:
            return name
        if name in self._fx_alias:
            return self._fx_alias[name]
        # A module name: the last node whose qualified name lies inside it.
        pattern = re.compile(rf"^{re.escape(name)}(\.|$)")
        found = None
        for node_name in self._records:
            if pattern.match(node_name):
                found = node_name
        if found is None:
            raise NodeNotFoundError(name, list(self._records) + self.module_names())
        return found

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

    # -- reports (thin wrappers over rfgraph.report, imported lazily) ---------------

    def to_dict(self, nodes: Optional[Sequence[str]] = None) -> dict[str, Any]:
        """Plain JSON-safe data with a ``schema_version`` (see `rfgraph.report`)."""
        from . import report

        return report.to_dict(self, nodes)

    def to_json(self, nodes: Optional[Sequence[str]] = None) -> str:
        from . import report

        return report.to_json(self, nodes)

    def to_yaml(self, nodes: Optional[Sequence[str]] = None) -> str:
        from . import report

        return report.to_yaml(self, nodes)

    def to_csv(self, nodes: Optional[Sequence[str]] = None) -> str:
        from . import report

        return report.to_csv(self, nodes)

    def to_markdown(self, nodes: Optional[Sequence[str]] = None) -> str:
        from . import report

        return report.to_markdown(self, nodes)

    def to_networkx(self) -> Any:
        """A `networkx.DiGraph` of the tensor nodes carrying their RF attributes."""
        from . import report

        return report.to_networkx(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Analysis:
        from . import report

        return report.from_dict(data)

    @classmethod
    def from_json(cls, text: str) -> Analysis:
        """Read `to_json` output back (window maps included, so `NodeRF.box` works)."""
        from . import report

        return report.from_json(text)

    @classmethod
    def from_yaml(cls, text: str) -> Analysis:
        """Read `to_yaml` output back with ``yaml.safe_load``."""
        from . import report

        return report.from_yaml(text)

    def validate(self, nodes: Optional[Sequence[str]] = None, **kwargs: Any):
        """Probe ``nodes`` numerically (default: a handful over the depth plus the last spatial node)
        and compare with these symbolic results; returns a `rfgraph.probing.ValidationReport`."""
        from .probing import validate_analysis

        return validate_analysis(self, nodes, **kwargs)

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}={v}" for k, v in self.counts().items() if v)
        return f"<Analysis {self.model_name or 'model'} input={self.input_shape} nodes={len(self)} ({counts})>"

    def _repr_html_(self) -> str:
        """Notebook display: counts by source, warnings, and the stage and flagged nodes as a table."""
        return _html_analysis(self)


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
