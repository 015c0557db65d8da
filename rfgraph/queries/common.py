"""What the queries share: re-running an analysis at other sizes (`Resizer`) and small per-axis helpers."""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union

from ..algebra import FiniteMap, Map
from ..errors import InputShapeError, InputTooSmallError, RFGraphError
from ..passes import analyze
from ..results import Analysis, NodeRF
from ..tracing import Traced

__all__ = ["Box", "Resizer", "traced_of", "resizer_for", "node_record", "is_local", "is_positional", "require_local", "axis_length", "per_axis", "first_at_least"]

Box = tuple[tuple[int, int], ...]


# ---------------------------------------------------------------------------
# re-running the analysis at other sizes
# ---------------------------------------------------------------------------


class Resizer:
    """Re-run the analysis of ``analysis``'s model at other spatial sizes.

    The graph traced for ``analysis`` is reused (so leaf modules chosen for it
    stay leaves) when it was traced symbolically by ``torch.fx``; a graph
    exported at one size (``analysis.meta["trace"] != "fx"``) is traced again
    at each size.  Results are cached per shape.  Extra keyword arguments
    (``rules=``, ``fallback=``) go to `rfgraph.analyze`.  Calling it returns
    the `Analysis` at that size, or raises the `RFGraphError` the pass raised.
    """

    def __init__(self, analysis: Analysis, **analyze_kwargs: Any):
        if analysis.graph_module is None:
            raise RFGraphError("this Analysis carries no traced graph; re-run rfgraph.analyze to get one")
        self.base = analysis
        self.kwargs = analyze_kwargs
        self.traced = traced_of(analysis, analysis.graph_module)
        self._cache: dict[tuple[int, ...], Union[Analysis, RFGraphError]] = {analysis.input_shape: analysis}

    def shape(self, sizes: Union[int, Sequence[int]]) -> tuple[int, ...]:
        """The full input shape with spatial sizes ``sizes`` (one int: every spatial axis)."""
        nd = self.base.ndim
        sizes = (sizes,) * nd if isinstance(sizes, int) else tuple(sizes)
        if len(sizes) != nd:
            raise InputShapeError(f"expected {nd} spatial sizes, got {sizes}")
        return tuple(self.base.input_shape[:2]) + tuple(int(s) for s in sizes)

    def __call__(self, sizes: Union[int, Sequence[int]]) -> Analysis:
        shape = self.shape(sizes)
        if shape not in self._cache:
            try:
                if self.base.meta.get("trace", "fx") == "fx" or self.base.model is None:
                    self._cache[shape] = analyze(self.traced.graph_module, shape, traced=self.traced, **self.kwargs)
                else:  # an exported graph holds the sizes of its input: trace again
                    self._cache[shape] = analyze(self.base.model, shape, **self.kwargs)
            except RFGraphError as exc:
                self._cache[shape] = exc
        out = self._cache[shape]
        if isinstance(out, RFGraphError):
            raise out
        return out

    def valid(self, sizes: Union[int, Sequence[int]]) -> bool:
        """True when the analysis at ``sizes`` succeeds."""
        try:
            self(sizes)
        except RFGraphError:
            return False
        return True

    def too_small(self, sizes: Union[int, Sequence[int]]) -> bool:
        """True when some layer's output is empty at ``sizes`` (other failures, e.g. operands of a merge
        whose lengths differ at this size, do not count: they are not monotone in the size)."""
        try:
            self(sizes)
        except InputTooSmallError:
            return True
        except RFGraphError:
            return False
        return False


def traced_of(analysis: Analysis, gm) -> Traced:
    by_fx = {r.fx_name: r.name for r in analysis.records if r.fx_name}
    return Traced(gm, {n: by_fx.get(n.name, n.name) for n in gm.graph.nodes})


def resizer_for(analysis: Analysis, resizer: Optional[Resizer]) -> Resizer:
    if resizer is not None:
        return resizer
    cached = analysis.meta.get("resizer_for")
    if cached is None:
        cached = Resizer(analysis)
        analysis.meta["resizer_for"] = cached
    return cached


def node_record(analysis: Analysis, node: str) -> NodeRF:
    """``analysis[node]``; the model's ``output`` node stands for the one tensor it returns."""
    r = analysis[node]
    if r.shape is None and len(r.inputs) == 1 and r.inputs[0] in analysis.nodes:
        return analysis[r.inputs[0]]
    return r


def is_local(record: NodeRF, axis: int) -> bool:
    return record.source in ("symbolic", "probed") and record.lo and record.lo[axis] is not None


def is_positional(record: NodeRF, axis: int) -> bool:
    """Local along ``axis`` and held by a tensor dim of its own (not flattened together with another axis)."""
    dim = record.dims[axis] if record.dims else None
    return bool(is_local(record, axis)) and dim is not None and record.dims.count(dim) == 1


def require_local(record: NodeRF) -> None:
    for axis in range(record.ndim):
        if not is_local(record, axis):
            why = "global" if record.is_global[axis] else (record.reason or record.source)
            raise RFGraphError(
                f"node {record.name!r} ({record.op}) has no local receptive field along input axis {axis} ({why}). "
                "Hint: pick a node before the global pooling / flatten."
            )


def axis_length(record: NodeRF, axis: int) -> int:
    """Number of units of ``record`` along input axis ``axis``."""
    dim = record.dims[axis]
    if dim is None or record.shape is None:
        return 1
    return record.shape[dim]


def per_axis(value: Union[int, Sequence[Any]], ndim: int, what: str) -> tuple:
    if isinstance(value, int):
        return (value,) * ndim
    value = tuple(value)
    if len(value) != ndim:
        raise ValueError(f"{what} needs {ndim} entries (one per input spatial axis), got {value}")
    return value


def first_at_least(f: Map, target: int, lo: int, hi: int) -> int:
    """Smallest ``u`` in ``[lo, hi)`` with ``f(u) >= target`` (``hi`` if none); ``f`` non-decreasing
    (units that read nothing, ``None`` in a `FiniteMap`, are skipped: a linear scan then)."""
    if isinstance(f, FiniteMap):
        return next((u for u in range(lo, hi) if f(u) is not None and f(u) >= target), hi)
    while lo < hi:
        mid = (lo + hi) // 2
        if f(mid) >= target:
            hi = mid
        else:
            lo = mid + 1
    return lo
