"""Validation: the symbolic results of an analysis against the numeric probe, every disagreement listed."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Optional, Sequence

import torch
from torch import nn

from ..errors import ProbeError, RFGraphError
from ..locking import serialized
from ..passes import analyze
from .measure import (
    MAX_SIZE,
    PROBE_THREADS,
    AxisProbe,
    Budget,
    NotIsolableError,
    Prober,
    ProbeResult,
    format_value,
    inert_nodes,
    probe,
    tensor_node,
)

if TYPE_CHECKING:  # pragma: no cover
    from ..results import Analysis, NodeRF


#: Default seconds per validated node.
NODE_BUDGET = 60.0

__all__ = ["validate", "validate_analysis", "ValidationReport", "ValidationRow", "Disagreement", "default_nodes", "compare"]


# ---------------------------------------------------------------------------
# validation: symbolic vs numeric
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Disagreement:
    """One quantity on which the symbolic pass and the probe differ."""

    node: str
    axis: int
    quantity: str
    symbolic: Any
    numeric: Any

    def __str__(self) -> str:
        return (f"{self.node} axis {self.axis}: {self.quantity} symbolic {format_value(self.symbolic)} "
                f"!= numeric {format_value(self.numeric)}")


@dataclass
class ValidationRow:
    """Symbolic and numeric results of one node."""

    node: str
    symbolic: "NodeRF"
    numeric: Optional[ProbeResult]
    disagreements: list[Disagreement] = field(default_factory=list)
    error: Optional[str] = None
    #: a default-chosen node the probe cannot measure (why); not counted against `ValidationReport.ok`
    skipped: Optional[str] = None

    @property
    def status(self) -> str:
        if self.skipped:
            return "skipped"
        if self.error:
            return "error"
        if self.disagreements:
            return "DISAGREE"
        if self.numeric is not None and not self.numeric.exact:
            return "clipped"
        return "ok"


class ValidationReport:
    """Symbolic vs numeric receptive fields of the probed nodes; ``str()`` gives a table."""

    def __init__(self, rows: Sequence[ValidationRow], model_name: str = "", input_shape: tuple[int, ...] = ()):
        self.rows = list(rows)
        self.model_name = model_name
        self.input_shape = tuple(input_shape)

    @property
    def disagreements(self) -> list[Disagreement]:
        return [d for r in self.rows for d in r.disagreements]

    @property
    def errors(self) -> list[tuple[str, str]]:
        return [(r.node, r.error) for r in self.rows if r.error and not r.skipped]

    @property
    def ok(self) -> bool:
        """True when every probed node agrees exactly and was measured unclipped."""
        return all(r.status in ("ok", "skipped") for r in self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def to_dict(self) -> dict[str, Any]:
        def axis_values(values):
            return [None if v is None else (str(v) if isinstance(v, Fraction) else v) for v in values]

        return {
            "model": self.model_name,
            "input_shape": list(self.input_shape),
            "ok": self.ok,
            "rows": [
                {
                    "node": r.node,
                    "status": r.status,
                    "symbolic": {"rf": axis_values(r.symbolic.rf), "stride": axis_values(r.symbolic.stride),
                                 "start": axis_values(r.symbolic.start), "global": list(r.symbolic.is_global)},
                    "numeric": None if r.numeric is None else {
                        "rf": axis_values(r.numeric.rf), "stride": axis_values(r.numeric.stride),
                        "start": axis_values(r.numeric.start), "global": list(r.numeric.is_global),
                        "exact": r.numeric.exact,
                    },
                    "error": r.error,
                }
                for r in self.rows
            ],
            "disagreements": [
                {"node": d.node, "axis": d.axis, "quantity": d.quantity, "symbolic": format_value(d.symbolic),
                 "numeric": format_value(d.numeric)}
                for d in self.disagreements
            ],
        }

    def __str__(self) -> str:
        header = ("node", "rf sym", "rf num", "stride sym", "stride num", "start sym", "start num", "status")
        lines = []
        for r in self.rows:
            num = r.numeric
            lines.append((
                r.node,
                _axes(r.symbolic.rf, r.symbolic.is_global),
                "-" if num is None else _axes(num.rf, num.is_global),
                _axes(r.symbolic.stride, r.symbolic.is_global),
                "-" if num is None else _axes(num.stride, num.is_global),
                _axes(r.symbolic.start, r.symbolic.is_global),
                "-" if num is None else _axes(num.start, num.is_global),
                r.status,
            ))
        widths = [max(len(h), *(len(str(line[i])) for line in lines)) if lines else len(h)
                  for i, h in enumerate(header)]
        out = [f"validation of {self.model_name or 'model'} {self.input_shape}: symbolic vs numeric probe"]
        out.append("  ".join(h.ljust(w) for h, w in zip(header, widths)))
        out.append("  ".join("-" * w for w in widths))
        for line in lines:
            out.append("  ".join(str(v).ljust(w) for v, w in zip(line, widths)))
        dis = self.disagreements
        if dis:
            out.append(f"{len(dis)} disagreement(s):")
            out.extend(f"  {d}" for d in dis)
        for r in self.rows:
            if r.skipped:
                out.append(f"skipped {r.node}: {r.skipped}")
        for node, err in self.errors:
            out.append(f"could not probe {node}: {err}")
        if not dis and not self.errors:
            out.append("all probed nodes agree" + ("" if self.ok else " (some measurements clipped)"))
        return "\n".join(out)

    def __repr__(self) -> str:
        return f"<ValidationReport {self.model_name} nodes={len(self.rows)} disagreements={len(self.disagreements)}>"


def _axes(values: Sequence[Any], is_global: Sequence[bool]) -> str:
    parts = ["global" if g else format_value(v) for v, g in zip(values, is_global)]
    if len(set(parts)) == 1:
        return parts[0]
    return "x".join(parts)


#: Ops whose output is several tensors: never chosen by default (the probe measures one tensor).
_MULTI_OUTPUT_OPS = {"unbind", "split", "chunk", "split_with_sizes", "tensor_split", "unflatten_tuple", "meshgrid"}


def _probeable(r: "NodeRF", rank: int) -> bool:
    """One tensor of the input's rank, every non-global axis carried by a dim (not flattened or windowed)."""
    if not r.is_spatial or r.name == "output" or all(r.is_global) or r.shape is None or len(r.shape) != rank:
        return False
    if r.op in _MULTI_OUTPUT_OPS or r.source not in ("symbolic", "probed"):
        return False
    dims = tuple(r.dims)
    local = [d for d, g in zip(dims, r.is_global) if not g]
    # (two axes on one dim: flattened tokens, e.g. a ViT's queries (B, heads, N, d) of the input's rank)
    return len(dims) == len(r.is_global) and None not in local and len(set(local)) == len(local)


def default_nodes(analysis: "Analysis", count: int = 4) -> list[str]:
    """A handful of nodes spread over the depth, plus the last spatial node (with the input's rank).

    Only single tensors of the input's rank whose axes are each carried by one dim (`NodeRF.dims`):
    never a multi-output op (``unbind``), a flattened or window-partitioned tensor.
    """
    rank = len(analysis.input_shape)
    spatial = [r.name for r in analysis if _probeable(r, rank)]
    if not spatial:
        return []
    picks = []
    for i in range(1, count + 1):
        picks.append(spatial[min(len(spatial) - 1, (i * len(spatial)) // (count + 1))])
    picks.append(spatial[-1])  # the last spatial node (the output node itself may hold several tensors)
    return list(dict.fromkeys(picks))


def _compare_finite(node: str, sym: "NodeRF", a: AxisProbe) -> list[Disagreement]:
    """A node with finite window maps, probed at the analysed length ``n``: every measured unit's window
    against the symbolic one clipped to ``[0, n)`` (``None``: reads nothing); ``rf`` against the largest
    symbolic window among units whose window lies strictly inside (as measured); ``start`` clipped."""
    out = []
    axis = a.axis
    n = a.input_shape[2 + axis]
    lo, hi = sym.lo[axis], sym.hi[axis]
    inner = []
    for u, mlo, mhi in zip(a.units, a.lo, a.hi):
        s_lo, s_hi = lo(u), hi(u)
        want = None if s_lo is None or max(s_lo, 0) > min(s_hi, n - 1) else (max(s_lo, 0), min(s_hi, n - 1))
        got = None if mlo is None else (mlo, mhi)
        if want != got:
            out.append(Disagreement(node, axis, f"unit {u} window", want, got))
        elif s_lo is not None and s_lo > 0 and s_hi < n - 1:
            inner.append(s_hi - s_lo + 1)
    if inner and max(inner) != a.rf:
        out.append(Disagreement(node, axis, "rf (units inside the input)", max(inner), a.rf))
    return out


def compare(node: str, sym: "NodeRF", num: ProbeResult) -> list[Disagreement]:
    """Every quantity on which ``sym`` and ``num`` differ (rf, stride, start; global-ness).

    An axis measured clipped (the field did not fit in an input the model accepts) is compared window by
    window instead: each measured unit's window against the symbolic one clipped to the probing input.
    A node whose maps are finite tables is compared unit by unit at the analysed length (`AxisProbe.finite`).
    """
    out = []
    for a in num.axes:
        axis = a.axis
        if sym.is_global[axis] or a.is_global:
            if sym.is_global[axis] != a.is_global:
                out.append(Disagreement(node, axis, "global", sym.is_global[axis], a.is_global))
            continue
        if sym.rf[axis] is None:
            out.append(Disagreement(node, axis, "rf", None, a.rf))
            continue
        if a.finite:
            out.extend(_compare_finite(node, sym, a))
            continue
        if not a.exact and axis < len(sym.lo) and sym.lo[axis] is not None and sym.hi[axis] is not None:
            bad = _clipped_window_disagreement(node, axis, sym, a)
            if bad is not None:
                out.append(bad)
            continue
        for q, s, v in (("rf", sym.rf[axis], a.rf), ("stride", sym.stride[axis], a.stride),
                        ("start", sym.start[axis], a.start)):
            if s != v:
                out.append(Disagreement(node, axis, q, s, v))
        if axis < len(sym.lo) and sym.lo[axis] is not None and sym.hi[axis] is not None:
            for u, lo, hi in zip(a.units, a.lo, a.hi):  # each measured window, exactly
                want = (sym.lo[axis](u), sym.hi[axis](u))
                if lo is not None and (lo, hi) != want:
                    out.append(Disagreement(node, axis, f"window of unit {u}", want, (lo, hi)))
                    break
    return out


def _clipped_window_disagreement(node: str, axis: int, sym: "NodeRF", a) -> Optional[Disagreement]:
    """The first measured unit whose window disagrees with the symbolic window clipped to the input.

    A measured window must lie inside the clipped symbolic one, and equal it on each side the input does
    not clip (on a clipped side, dilation or padding upstream may leave the first input pixels unread).
    """
    n = a.input_shape[2 + axis]
    for u, lo, hi in zip(a.units, a.lo, a.hi):
        L, H = sym.lo[axis](u), sym.hi[axis](u)
        expected = None if max(L, 0) > min(H, n - 1) else (max(L, 0), min(H, n - 1))
        got = None if lo is None else (lo, hi)
        if expected is None or got is None:
            ok = expected == got
        else:
            ok = expected[0] <= lo and hi <= expected[1] and (L < 0 or lo == L) and (H > n - 1 or hi == H)
        if not ok:
            return Disagreement(node, axis, f"window of unit {u} (input length {n}, clipped)", expected, got)
    return None


@serialized
def validate_analysis(
    analysis: "Analysis",
    nodes: Optional[Sequence[str]] = None,
    *,
    dtype: Optional[torch.dtype] = None,
    seed: int = 0,
    max_size: int = MAX_SIZE,
    budget: Optional[float] = NODE_BUDGET,
    max_elements: int = Budget.max_elements,
    threads: Optional[int] = PROBE_THREADS,
) -> ValidationReport:
    """Probe ``nodes`` (default: `default_nodes`) and compare with the symbolic results of ``analysis``.

    Each node gets ``budget`` seconds and probing inputs of at most ``max_elements`` positions; a node
    over budget, or failing in any way, is a row with its error (never an exception).  ``dtype`` ``None``:
    float32 where the ops keep the gradient's support exact in it, else float64 (see `probe`).
    """
    if analysis.model is None or analysis.graph_module is None:
        raise ProbeError("this analysis holds no model / graph to probe; run rfgraph.analyze() on a model")
    names = default_nodes(analysis) if nodes is None else [analysis.resolve(n) for n in nodes]
    rows = []
    shared = None  # one sanitized copy for all nodes
    try:
        fx_names = [tensor_node(analysis.graph_module, analysis[n].fx_name or n, n) for n in names
                    if analysis[n].source in ("symbolic", "probed")]
        if fx_names:
            shared = Prober(analysis.graph_module, fx_names, dtype, seed, inert_nodes(analysis))
    except Exception:  # noqa: BLE001 - each node then fails (or not) on its own row
        shared = None
    for name in names:
        sym = analysis[name]
        if sym.source not in ("symbolic", "probed"):
            rows.append(ValidationRow(name, sym, None, error=f"symbolic result is {sym.source}: {sym.reason}"))
            continue
        try:
            num = probe(analysis.model, name, analysis=analysis, dtype=dtype, seed=seed, max_size=max_size,
                        budget=budget, max_elements=max_elements, threads=threads, _prober=shared)
        except NotIsolableError as exc:
            rows.append(ValidationRow(name, sym, None, error=str(exc), skipped=str(exc) if nodes is None else None))
            continue
        except RFGraphError as exc:
            rows.append(ValidationRow(name, sym, None, error=str(exc)))
            continue
        except Exception as exc:  # noqa: BLE001 - a failure is a row with its error, never a crash
            rows.append(ValidationRow(name, sym, None, error=f"{type(exc).__name__}: {exc}"))
            continue
        rows.append(ValidationRow(name, sym, num, compare(name, sym, num)))
    return ValidationReport(rows, analysis.model_name, analysis.input_shape)


@serialized
def validate(
    model: nn.Module,
    input_shape: Sequence[int],
    nodes: Optional[Sequence[str]] = None,
    *,
    dtype: Optional[torch.dtype] = None,
    seed: int = 0,
    budget: Optional[float] = NODE_BUDGET,
    **analyze_kwargs: Any,
) -> ValidationReport:
    """Analyse ``model`` symbolically, probe ``nodes`` numerically, and report every disagreement.

    >>> import torch.nn as nn
    >>> net = nn.Sequential(nn.Conv2d(1, 2, 3, stride=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(2, 1, 3))
    >>> validate(net, (1, 1, 32, 32)).ok
    True
    """
    analysis = analyze(model, input_shape, **analyze_kwargs)
    return validate_analysis(analysis, nodes, dtype=dtype, seed=seed, budget=budget)
