"""Design queries: the questions asked after "what is the receptive field?".

Pure functions over an `Analysis` (and, where input sizes matter, over
re-runs of `rfgraph.analyze` at other sizes through a `Resizer`):

- `unit_box` / `units_seeing`: the input box a unit sees (clipped and
  unclipped) and, inversely, the units of a node that see an input pixel or box
  (the monotone window maps are inverted by bisection, never scanned);
- `minimal_input_size`, `size_classes` (sizes ``n ≡ r (mod m)`` for which
  every strided layer divides evenly, or for which every feature grid is
  centred on the input), `coverage` (the largest input a node still sees whole);
- `alignment_report`: every merge, each incoming path's stride and centre, the
  likely cause of a misalignment and the input sizes that would align it;
- `declared_strides` / `lint`: strides that model libraries declare (timm's
  ``feature_info``, torchvision SSD's ``steps``) against the computed ones;
- `time_summary`: RF, stride, past and lookahead of 1-D sequence models in
  samples and milliseconds, and whether the model is causal;
- `target_rf`: how far each stage is from a target RF, and the fewest kernel
  or dilation changes that reach it.

All numbers are exact (``int`` / ``Fraction``).

>>> import torch.nn as nn, rfgraph
>>> net = nn.Sequential(nn.Conv1d(1, 1, 3), nn.Conv1d(1, 1, 3, stride=2), nn.Conv1d(1, 1, 3))
>>> a = rfgraph.analyze(net, (1, 1, 20))
>>> unit_box(a, "2", 1).box
((2, 10),)
>>> units_seeing(a, "2", (9,))
((range(1, 5),),)
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from fractions import Fraction
from math import lcm
from typing import Any, Iterable, Optional, Sequence, Union

import torch.fx as fx
from torch import nn

from .algebra import Field, PAMap
from .errors import InputShapeError, InputTooSmallError, NodeNotFoundError, RFGraphError
from .passes import analyze
from .results import Analysis, NodeRF
from .tracing import Traced, ancestors
from .values import collect
from .windows import META_KEY

__all__ = [
    "Resizer",
    "UnitBox",
    "unit_box",
    "units_seeing",
    "minimal_input_size",
    "SizeClasses",
    "size_classes",
    "Coverage",
    "coverage",
    "PathInfo",
    "MergeReport",
    "alignment_report",
    "Declared",
    "LintRow",
    "declared_strides",
    "lint",
    "TimeSummary",
    "time_summary",
    "LayerChange",
    "TargetPlan",
    "target_rf",
]

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
        self.traced = _traced_of(analysis, analysis.graph_module)
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


def _traced_of(analysis: Analysis, gm) -> Traced:
    by_fx = {r.fx_name: r.name for r in analysis.records if r.fx_name}
    return Traced(gm, {n: by_fx.get(n.name, n.name) for n in gm.graph.nodes})


def _resizer(analysis: Analysis, resizer: Optional[Resizer]) -> Resizer:
    if resizer is not None:
        return resizer
    cached = analysis.meta.get("_resizer")
    if cached is None:
        cached = Resizer(analysis)
        analysis.meta["_resizer"] = cached
    return cached


def _node(analysis: Analysis, node: str) -> NodeRF:
    """``analysis[node]``; the model's ``output`` node stands for the one tensor it returns."""
    r = analysis[node]
    if r.shape is None and len(r.inputs) == 1 and r.inputs[0] in analysis.nodes:
        return analysis[r.inputs[0]]
    return r


def _local(record: NodeRF, axis: int) -> bool:
    return record.source in ("symbolic", "probed") and record.lo and record.lo[axis] is not None


def _positional(record: NodeRF, axis: int) -> bool:
    """Local along ``axis`` and held by a tensor dim of its own (not flattened together with another axis)."""
    dim = record.dims[axis] if record.dims else None
    return bool(_local(record, axis)) and dim is not None and record.dims.count(dim) == 1


def _require_local(record: NodeRF) -> None:
    for axis in range(record.ndim):
        if not _local(record, axis):
            why = "global" if record.is_global[axis] else (record.reason or record.source)
            raise RFGraphError(
                f"node {record.name!r} ({record.op}) has no local receptive field along input axis {axis} ({why}). "
                "Hint: pick a node before the global pooling / flatten."
            )


def _length(record: NodeRF, axis: int) -> int:
    """Number of units of ``record`` along input axis ``axis``."""
    dim = record.dims[axis]
    if dim is None or record.shape is None:
        return 1
    return record.shape[dim]


def _per_axis(value: Union[int, Sequence[Any]], ndim: int, what: str) -> tuple:
    if isinstance(value, int):
        return (value,) * ndim
    value = tuple(value)
    if len(value) != ndim:
        raise ValueError(f"{what} needs {ndim} entries (one per input spatial axis), got {value}")
    return value


def _first_at_least(f: PAMap, target: int, lo: int, hi: int) -> int:
    """Smallest ``u`` in ``[lo, hi)`` with ``f(u) >= target`` (``hi`` if none); ``f`` non-decreasing."""
    while lo < hi:
        mid = (lo + hi) // 2
        if f(mid) >= target:
            hi = mid
        else:
            lo = mid + 1
    return lo


# ---------------------------------------------------------------------------
# unit boxes
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class UnitBox:
    """The input box seen by one unit of a node.

    ``box`` is unclipped (coordinates outside ``[0, n)`` lie in padding);
    ``clipped`` is its intersection with the input (``None`` on an axis where
    the unit sees only padding).
    """

    node: str
    unit: tuple[int, ...]
    box: Box
    clipped: tuple[Optional[tuple[int, int]], ...]
    input_size: tuple[int, ...]

    @property
    def size(self) -> tuple[int, ...]:
        return tuple(hi - lo + 1 for lo, hi in self.box)

    @property
    def clipped_size(self) -> tuple[int, ...]:
        return tuple(0 if c is None else c[1] - c[0] + 1 for c in self.clipped)


def unit_box(analysis: Analysis, node: str, unit: Union[int, Sequence[int]]) -> UnitBox:
    """Input box of unit ``unit`` of ``node`` (one index per input spatial axis; an int for all).

    >>> import torch.nn as nn, rfgraph
    >>> a = rfgraph.analyze(nn.Conv2d(1, 1, 3, stride=2, padding=1), (1, 1, 8, 8))
    >>> b = unit_box(a, "output", (0, 3))
    >>> b.box, b.clipped
    (((-1, 1), (5, 7)), ((0, 1), (5, 7)))
    """
    record = _node(analysis, node)
    _require_local(record)
    unit = tuple(int(u) for u in _per_axis(unit, record.ndim, "unit"))
    for axis, u in enumerate(unit):
        n = _length(record, axis)
        if not 0 <= u < n:
            raise RFGraphError(
                f"unit {unit} is outside node {record.name!r}: axis {axis} has {n} units (0..{n - 1}) "
                f"at input size {analysis.input_shape[2:]}"
            )
    box = record.box(unit)
    sizes = tuple(analysis.input_shape[2:])
    clipped = tuple(
        (max(lo, 0), min(hi, n - 1)) if max(lo, 0) <= min(hi, n - 1) else None for (lo, hi), n in zip(box, sizes)
    )
    return UnitBox(record.name, unit, box, clipped, sizes)


def units_seeing(
    analysis: Analysis, node: str, where: Union[Sequence[int], Sequence[Sequence[int]]]
) -> tuple[tuple[range, ...], ...]:
    """Units of ``node`` whose receptive field meets an input pixel or box.

    ``where`` is a pixel ``(y, x)`` or a box ``((y0, y1), (x0, x1))`` (inclusive).
    Returns, per input axis, the units as maximal runs of ``range`` objects
    (one run unless some units read nothing, as after a transposed conv).
    Unit ``u`` sees ``[a, b]`` when ``hi(u) >= a`` and ``lo(u) <= b``; both maps
    are non-decreasing, so the run is found by two bisections.
    """
    record = _node(analysis, node)
    _require_local(record)
    where = tuple(where)
    if len(where) != record.ndim:
        raise ValueError(f"need one coordinate or (lo, hi) pair per input axis ({record.ndim}), got {where}")
    out = []
    for axis, w in enumerate(where):
        a, b = (int(w), int(w)) if isinstance(w, int) else (int(w[0]), int(w[1]))
        if a > b:
            raise ValueError(f"empty interval ({a}, {b}) on axis {axis}")
        lo, hi = record.lo[axis], record.hi[axis]
        n = _length(record, axis)
        first = _first_at_least(hi, a, 0, n)
        last = _first_at_least(lo, b + 1, 0, n) - 1
        out.append(_runs(lo, hi, first, last))
    return tuple(out)


def _runs(lo: PAMap, hi: PAMap, first: int, last: int) -> tuple[range, ...]:
    if first > last:
        return ()
    period = lcm(lo.period, hi.period)
    if all(lo(u) <= hi(u) for u in range(period)):
        return (range(first, last + 1),)
    runs: list[range] = []
    start = None
    for u in range(first, last + 2):
        ok = u <= last and lo(u) <= hi(u)
        if ok and start is None:
            start = u
        elif not ok and start is not None:
            runs.append(range(start, u))
            start = None
    return tuple(runs)


# ---------------------------------------------------------------------------
# input sizes
# ---------------------------------------------------------------------------


def minimal_input_size(
    analysis: Analysis, axis: Optional[int] = None, resizer: Optional[Resizer] = None
) -> Union[int, tuple[int, ...]]:
    """Smallest input size for which no layer's output becomes empty.

    Per axis, the other axes kept at the analysed size (``axis=None``: a tuple
    over all axes).  Output lengths of windowed ops never shrink when the input
    grows, so "some output is empty" is monotone and the size is found by
    bisection between 1 and the analysed size.  Sizes above it may still fail
    for other reasons (merged paths of different lengths at odd sizes):
    `size_classes` lists the sizes that work.
    """
    rs = _resizer(analysis, resizer)
    base = list(analysis.input_shape[2:])
    axes = range(analysis.ndim) if axis is None else [axis]
    found = []
    for k in axes:
        def ok(n: int, k: int = k) -> bool:
            sizes = list(base)
            sizes[k] = n
            return not rs.too_small(sizes)

        lo, hi = 1, base[k]
        while lo < hi:
            mid = (lo + hi) // 2
            if ok(mid):
                hi = mid
            else:
                lo = mid + 1
        found.append(lo)
    return found[0] if axis is not None else tuple(found)


@dataclass(frozen=True)
class SizeClasses:
    """Input sizes ``n >= minimum`` with ``n % modulus in residues`` (per axis, square inputs).

    ``kind`` is ``"divisible"`` (every strided node has exactly ``n_in / s``
    units) or ``"centered"`` (every node's grid of unit centres is symmetric in
    the input: first centre + last centre = n - 1, the ``32k+1`` sizes of
    DeepLab).  ``periodic`` is False when the checked sizes did not repeat with
    ``modulus`` (size-dependent ops); ``sizes`` then lists the sizes that passed.
    """

    kind: str
    modulus: int
    residues: tuple[int, ...]
    minimum: int
    periodic: bool = True
    sizes: tuple[int, ...] = ()
    failing: dict[str, int] = field(default_factory=dict, compare=False)

    def __contains__(self, n: object) -> bool:
        return isinstance(n, int) and n >= self.minimum and n % self.modulus in self.residues

    def examples(self, around: int, count: int = 3) -> list[int]:
        """The ``count`` sizes of the class closest to ``around``."""
        if not self.residues:
            return []
        lo = max(self.minimum, around - count * self.modulus)
        cands = [n for n in range(lo, around + count * self.modulus + 1) if n in self]
        return sorted(cands, key=lambda n: (abs(n - around), n))[:count]

    def __str__(self) -> str:
        if not self.residues:
            return f"no input size (checked {self.minimum}..{self.minimum + 2 * self.modulus - 1})"
        cls = " or ".join(f"n ≡ {r} (mod {self.modulus})" for r in self.residues)
        return f"{cls}, n >= {self.minimum}" + ("" if self.periodic else " (not periodic: see sizes)")


def _period(analysis: Analysis) -> int:
    m = 1
    for r in analysis.records:
        for axis in range(r.ndim):
            if _local(r, axis) and r.stride[axis] is not None:
                m = lcm(m, r.stride[axis].numerator)
    return m


def _size_failures(a: Analysis, kind: str) -> dict[str, int]:
    """``{node: axis}`` for the nodes that break ``kind`` at the analysed size."""
    records = {r.name: r for r in a.records}
    sizes = a.input_shape[2:]
    bad: dict[str, int] = {}
    for r in a.records:
        for axis in range(r.ndim):
            if not _positional(r, axis):
                continue
            n_out = _length(r, axis)
            if kind == "centered":
                lo, hi = r.lo[axis], r.hi[axis]
                if lo(0) + hi(0) + lo(n_out - 1) + hi(n_out - 1) != 2 * (sizes[axis] - 1):
                    bad.setdefault(r.name, axis)
                continue
            for name in r.inputs:
                src = records.get(name)
                if src is None or not _positional(src, axis):
                    continue
                s = r.stride[axis] / src.stride[axis]
                if s != 1 and _length(src, axis) != s * n_out:
                    bad.setdefault(r.name, axis)
    return bad


def size_classes(
    analysis: Analysis, kind: str = "divisible", resizer: Optional[Resizer] = None, periods: int = 2
) -> SizeClasses:
    """Input sizes for which every strided layer divides evenly (``kind="divisible"``) or every grid is centred.

    Derivation: let ``P`` be the lcm of the nodes' effective strides.  When
    ``n`` passes, ``n + P`` passes too, because every node's input grows by
    ``P / S`` units (``S`` its input's stride), a multiple of the node's own
    stride, and its output by ``P / S'``: the conditions only depend on
    ``n mod P``.  The sizes ``minimum .. minimum + periods*P - 1`` (square
    inputs) are checked by re-running the analysis; ``periodic`` records
    whether they really repeat (they may not after size-dependent ops).
    """
    if kind not in ("divisible", "centered"):
        raise ValueError(f"kind must be 'divisible' or 'centered', got {kind!r}")
    rs = _resizer(analysis, resizer)
    base_min = max(minimal_input_size(analysis, resizer=rs))
    m = _period(analysis)
    passed: list[int] = []
    failing: dict[str, int] = {}
    for n in range(base_min, base_min + periods * m):
        try:
            bad = _size_failures(rs(n), kind)
        except RFGraphError:
            continue
        if not bad:
            passed.append(n)
        for name in bad:
            failing[name] = failing.get(name, 0) + 1
    first = {n % m for n in passed if n < base_min + m}
    periodic = all((n % m in first) == (n in passed) for n in range(base_min, base_min + periods * m))
    return SizeClasses(kind, m, tuple(sorted(first)), base_min, periodic, tuple(passed), failing)


@dataclass(frozen=True)
class Coverage:
    """Largest input sizes (square) for which a node still sees the whole input.

    ``some_unit``: some unit's RF covers ``[0, n-1]``; ``every_unit``: all do.
    ``None`` when the node is global (it always does).
    """

    node: str
    some_unit: Optional[int]
    every_unit: Optional[int]


def _covers(a: Analysis, node: str, every: bool) -> bool:
    r = _node(a, node)
    for axis in range(r.ndim):
        if r.is_global[axis]:
            continue
        if not _positional(r, axis):
            return False
        n, lo, hi, count = a.input_shape[2 + axis], r.lo[axis], r.hi[axis], _length(r, axis)
        if every:
            if not (lo(count - 1) <= 0 and hi(0) >= n - 1):
                return False
        else:
            # the largest unit whose window still starts at or before pixel 0 has the largest hi
            u = min(_first_at_least(lo, 1, 0, count) - 1, count - 1)
            if u < 0 or hi(u) < n - 1:
                return False
    return True


def coverage(analysis: Analysis, node: str, resizer: Optional[Resizer] = None) -> Coverage:
    """Largest input size at which some unit (and every unit) of ``node`` sees the whole input.

    Bisection over square sizes between the minimal size and the node's RF
    (no unit can cover more pixels than its RF); coverage shrinks as the input
    grows, so the predicate is monotone.
    """
    record = _node(analysis, node)
    if all(record.is_global):
        return Coverage(record.name, None, None)
    _require_local(record)
    rs = _resizer(analysis, resizer)
    lo_n = max(minimal_input_size(analysis, resizer=rs))
    top = max(r for r, g in zip(record.rf, record.is_global) if not g) + 1

    def largest(every: bool) -> Optional[int]:
        def ok(n: int) -> bool:
            try:
                return _covers(rs(n), record.name, every)
            except RFGraphError:
                return False

        if not ok(lo_n):
            return None
        lo, hi = lo_n, top
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if ok(mid):
                lo = mid
            else:
                hi = mid - 1
        return lo

    return Coverage(record.name, largest(False), largest(True))


def first_covering(analysis: Analysis, every: bool = False) -> Optional[str]:
    """First node (graph order) whose RF covers the whole input at the analysed size."""
    for r in analysis.records:
        if r.is_spatial and _covers(analysis, r.name, every):
            return r.name
    return None


__all__.append("first_covering")


# ---------------------------------------------------------------------------
# alignment
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PathInfo:
    """One operand of a merge: its stride and the centre of unit 0 per axis, and its shift from path 0."""

    input: str
    stride: tuple[Optional[Fraction], ...]
    center: tuple[Optional[Fraction], ...]
    shift: tuple[Fraction, ...]
    causes: tuple[str, ...] = ()


@dataclass(frozen=True)
class MergeReport:
    """A node where several spatial paths meet."""

    node: str
    op: str
    aligned: bool
    max_center_shift: Fraction
    paths: tuple[PathInfo, ...]
    causes: tuple[str, ...] = ()
    #: square input sizes at which this merge is aligned (``None``: not computed)
    aligned_sizes: Optional[SizeClasses] = None


def _path_causes(analysis: Analysis, nodes: Iterable[Any], sizes: Sequence[int]) -> list[str]:
    gm = analysis.graph_module
    records = {r.fx_name: r for r in analysis.records}
    causes: list[str] = []
    for n in nodes:
        r = records.get(n.name)
        label = r.name if r is not None else n.name
        module = gm.get_submodule(n.target) if n.op == "call_module" else None
        # the original model keeps the classes (an exported graph flattens them)
        enclosing = _enclosing_modules(analysis.model if isinstance(analysis.model, nn.Module) else gm, n)
        same = next((m for m in [module, *enclosing] if m is not None and "same" in type(m).__name__.lower()), None)
        if same is not None:
            where = n.target if module is same else (n.meta.get("rf_module") or label)
            causes.append(f"size-dependent 'same' padding ({type(same).__name__}) in {where}")
            continue
        params = n.meta.get(META_KEY)  # recorded by the windowed rule that ran on this node
        if params is None:
            continue
        if params.kind in ("adaptive", "interpolate"):
            if params.kind == "adaptive" or params.size is not None:
                causes.append(f"size-dependent resampling at {label}")
            continue
        if params.kind not in ("conv", "pool", "pad"):
            continue
        kind, nd = params.kind, params.nd
        k, s, d = params.kernel or (1,) * nd, params.stride or (1,) * nd, params.dilation or (1,) * nd
        pl, pr, ceil = params.padding_left, params.padding_right, params.ceil_mode
        n_in = _input_length(analysis, n, records)
        for i in range(nd):
            ext = d[i] * (k[i] - 1)
            if ext % 2:
                causes.append(f"even kernel {k[i]} at {label}")
            elif pl[i] != pr[i]:
                causes.append(f"asymmetric padding ({pl[i]}, {pr[i]}) at {label}")
            elif pl[i] * 2 != ext and kind != "pad":
                causes.append(f"off-centre padding {pl[i]} for kernel extent {ext + 1} at {label}")
            if kind == "pad" and pl[i] != pr[i]:
                causes.append(f"asymmetric padding ({pl[i]}, {pr[i]}) at {label}")
            if n_in is not None and s[i] > 1:
                span = n_in[i] + pl[i] + pr[i] - ext - 1
                if ceil and span % s[i]:
                    causes.append(f"ceil_mode at {label} (length {n_in[i]}, stride {s[i]})")
                elif n_in[i] % s[i]:
                    causes.append(f"size {n_in[i]} not divisible by stride {s[i]} at {label}")
            break  # one axis is enough to name the op (square kernels)
    return list(dict.fromkeys(causes))


def _enclosing_modules(root: nn.Module, n) -> list[nn.Module]:
    qual = n.meta.get("rf_module") or ""
    out = []
    parts = qual.split(".") if qual else []
    for i in range(len(parts), 0, -1):
        try:
            out.append(root.get_submodule(".".join(parts[:i])))
        except AttributeError:
            continue
    return out


def _input_length(analysis: Analysis, n, records) -> Optional[tuple[int, ...]]:
    src = next((a for a in n.all_input_nodes if a.name in records), None)
    if src is None:
        return None
    r = records[src.name]
    if r.shape is None:
        return None
    return tuple(r.shape[-analysis.ndim:])


def _merges(analysis: Analysis) -> list[tuple[NodeRF, list[NodeRF]]]:
    records = {r.name: r for r in analysis.records}
    out = []
    for r in analysis.records:
        if not r.is_spatial:
            continue
        ins = []
        for name in dict.fromkeys(r.inputs):
            src = records.get(name)
            if src is None or not src.is_spatial:
                continue
            if any(_positional(src, k) and _positional(r, k)
                   and _length(src, k) == _length(r, k) and src.stride[k] == r.stride[k]
                   for k in range(r.ndim)) or not r.aligned:
                ins.append(src)
        if len(ins) >= 2:
            out.append((r, ins))
    return out


def alignment_report(
    analysis: Analysis,
    sizes: bool = True,
    resizer: Optional[Resizer] = None,
    only_misaligned: bool = False,
) -> list[MergeReport]:
    """Every merge of spatial paths: each operand's stride and centre, and what misaligns it.

    Causes are looked for among the ops that lie on one operand's branch only
    (ancestors of that operand that are not ancestors of every operand): even
    kernels, asymmetric or off-centre padding, ``ceil_mode``, size-dependent
    "same" padding, size-dependent resampling, strided layers whose input length
    the stride does not divide.  With ``sizes=True`` the square input sizes at
    which each misaligned merge would be aligned are found by re-running the
    analysis over two periods of the largest stride.
    """
    gm = analysis.graph_module
    by_fx = {n.name: n for n in gm.graph.nodes} if gm is not None else {}
    merges = _merges(analysis)
    reports = []
    misaligned_names = []
    for r, ins in merges:
        paths = []
        base = ins[0]
        for src in ins:
            shift = []
            for k in range(r.ndim):
                if _local(src, k) and _local(base, k) and src.stride[k] == base.stride[k]:
                    shift.append(Field(base.lo[k], base.hi[k]).max_center_shift(Field(src.lo[k], src.hi[k])))
                else:
                    shift.append(Fraction(0))
            paths.append(PathInfo(src.name, src.stride, src.center, tuple(shift)))
        causes: list[str] = []
        if not r.aligned and by_fx:
            fx_ins = [by_fx[s.fx_name] for s in ins]
            closures = [ancestors(x) for x in fx_ins]
            common = set.intersection(*closures)
            new_paths = []
            for p, closure in zip(paths, closures):
                branch = [x for x in gm.graph.nodes if x in closure and x not in common]
                pc = tuple(_path_causes(analysis, branch, analysis.input_shape[2:]))
                new_paths.append(PathInfo(p.input, p.stride, p.center, p.shift, pc))
                causes.extend(pc)
            paths = new_paths
            misaligned_names.append(r.name)
        if only_misaligned and r.aligned:
            continue
        reports.append(MergeReport(r.name, r.op, r.aligned, r.max_center_shift, tuple(paths),
                                   tuple(dict.fromkeys(causes))))
    if sizes and misaligned_names:
        classes = _aligned_sizes(analysis, misaligned_names, _resizer(analysis, resizer))
        reports = [
            MergeReport(m.node, m.op, m.aligned, m.max_center_shift, m.paths, m.causes, classes.get(m.node))
            if m.node in classes else m
            for m in reports
        ]
    return reports


def _aligned_sizes(analysis: Analysis, names: list[str], rs: Resizer, periods: int = 2) -> dict[str, SizeClasses]:
    m = _period(analysis)
    n0 = analysis.input_shape[2]
    start = max(1, n0 - n0 % m)
    if not rs.valid(start):
        start = n0
    if analysis.meta.get("trace", "fx") != "fx":
        periods = 1  # every size is traced again (torch.export): keep the search short
    passed: dict[str, list[int]] = {name: [] for name in names}
    for n in range(start, start + periods * m):
        try:
            a = rs(n)
        except RFGraphError:
            continue
        for name in names:
            try:
                if a[name].aligned:
                    passed[name].append(n)
            except NodeNotFoundError:
                pass
    out = {}
    for name, ok in passed.items():
        first = {n % m for n in ok if n < start + m}
        periodic = all((n % m in first) == (n in ok) for n in range(start, start + periods * m))
        out[name] = SizeClasses("aligned", m, tuple(sorted(first)), start, periodic, tuple(ok))
    return out


# ---------------------------------------------------------------------------
# stride lint
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Declared:
    """A stride that a model library declares for one feature node."""

    label: str
    node: str
    stride: Fraction
    source: str
    #: the declaring module's name, tried when ``node`` cannot be resolved (e.g. timm's FeatureHookNet
    #: collects its outputs with forward hooks, which a traced graph does not see)
    module: Optional[str] = None


@dataclass(frozen=True)
class LintRow:
    """One declared stride checked against the computed one."""

    label: str
    node: str
    declared: Fraction
    computed: tuple[Optional[Fraction], ...]
    source: str
    error: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.error is None and all(c == self.declared for c in self.computed)

    @property
    def status(self) -> str:
        """``ok``, ``mismatch`` (both strides known and different) or ``unchecked`` (no computed stride)."""
        if self.error is not None:
            return "unchecked"
        return "ok" if self.ok else "mismatch"


def declared_strides(model: nn.Module) -> list[Declared]:
    """Strides declared by the model's library.

    - timm: ``model.feature_info`` (a list of dicts or a ``FeatureInfo``) gives
      each feature module's ``reduction``; on a ``features_only=True`` model the
      ``i``-th declared entry is matched with the ``i``-th returned tensor
      (``output[i]``), which avoids module names that the classification model
      does not have (HRNet's ``stem``, an ``Identity`` ``final_conv``);
    - torchvision SSD: ``model.anchor_generator.steps`` gives the stride of each
      output of ``model.backbone`` (analyse the backbone, see `lint`).
    """
    out: list[Declared] = []
    info = getattr(model, "feature_info", None)
    if info is not None:
        # a features_only wrapper returns one tensor per selected entry: match by position, not by name
        wrapper = hasattr(info, "get_dicts") and _is_timm_features(model)
        entries = info.get_dicts() if wrapper else getattr(info, "info", info)
        for i, e in enumerate(entries):
            if isinstance(e, dict) and "reduction" in e and "module" in e:
                node = f"output[{i}]" if wrapper else str(e["module"])
                out.append(Declared(f"feature_info[{i}] {e['module']}" if wrapper else f"feature_info[{i}]", node,
                                    Fraction(e["reduction"]), "timm feature_info", str(e["module"])))
    gen = getattr(model, "anchor_generator", None)
    steps = getattr(gen, "steps", None)
    if steps is not None and hasattr(model, "backbone"):
        for i, s in enumerate(steps):
            out.append(Declared(f"anchor_generator.steps[{i}]", f"backbone:output[{i}]", Fraction(s),
                                "torchvision SSD steps"))
    return out


def _is_timm_features(model: nn.Module) -> bool:
    """timm's ``features_only`` wrappers (FeatureListNet, FeatureHookNet, HighResolutionNetFeatures, ...)."""
    name = type(model).__name__
    return name.startswith("Feature") or name.endswith("Features") or hasattr(model, "out_indices")


def _output_nodes(analysis: Analysis) -> list[str]:
    gm = analysis.graph_module
    records = {r.fx_name: r.name for r in analysis.records}
    out_node = next(n for n in gm.graph.nodes if n.op == "output")
    return [records[n.name] for n in collect(out_node.args[0], fx.Node) if n.name in records]


def lint(analysis: Analysis, declared: Optional[Sequence[Declared]] = None) -> list[LintRow]:
    """Check each declared stride against the computed one (one row per declaration).

    ``declared`` defaults to `declared_strides` of the analysed model.  A node
    ``"output[i]"`` (or ``"backbone:output[i]"``) is the ``i``-th tensor the
    analysed model returns.
    """
    if declared is None:
        declared = declared_strides(analysis.model)
    rows = []
    outputs: Optional[list[str]] = None
    for d in declared:
        node = d.node.split(":", 1)[1] if d.node.startswith("backbone:") else d.node
        if node.startswith("output["):
            if outputs is None:
                outputs = _output_nodes(analysis)
            idx = int(node[len("output["):-1])
            candidates = [outputs[idx]] if idx < len(outputs) else []
        else:
            candidates = [node]
        if d.module:
            # timm's feature wrappers flatten the first level: "blocks.12" becomes "blocks_12"
            candidates += [d.module, d.module.replace(".", "_", 1)]
        r = None
        for cand in candidates:
            try:
                r = analysis[cand]
                break
            except NodeNotFoundError:
                continue
        if r is None:
            why = f"none of {', '.join(map(repr, dict.fromkeys(candidates)))} is a node" if candidates else (
                f"the traced model returns {len(outputs or [])} tensors")
            rows.append(LintRow(d.label, d.node, d.stride, (), d.source, f"cannot resolve node: {why}"))
            continue
        if r.source not in ("symbolic", "probed") or any(s is None for s in r.stride):
            rows.append(LintRow(d.label, r.name, d.stride, r.stride, d.source,
                                f"no local stride ({r.reason or r.source})"))
            continue
        rows.append(LintRow(d.label, r.name, d.stride, r.stride, d.source))
    return rows


# ---------------------------------------------------------------------------
# time and physical units
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TimeSummary:
    """Receptive field of a 1-D node in samples and milliseconds.

    Unit ``u`` is anchored at input sample ``stride * u`` (the position its
    index maps to on the input grid).  ``past`` is the most samples before the
    anchor it reads (``max(stride*u - lo(u))``), ``lookahead`` the most after
    (``max(hi(u) - stride*u)``); the node is causal when ``lookahead <= 0``.
    """

    node: str
    sample_rate: Fraction
    rf: int
    stride: Fraction
    past: Fraction
    lookahead: Fraction

    @property
    def causal(self) -> bool:
        return self.lookahead <= 0

    def ms(self, samples: Union[int, Fraction]) -> Fraction:
        """Samples to milliseconds, exactly."""
        return Fraction(samples) * 1000 / self.sample_rate

    @property
    def rf_ms(self) -> Fraction:
        return self.ms(self.rf)

    @property
    def stride_ms(self) -> Fraction:
        return self.ms(self.stride)

    @property
    def past_ms(self) -> Fraction:
        return self.ms(self.past)

    @property
    def lookahead_ms(self) -> Fraction:
        return self.ms(self.lookahead)


def time_summary(analysis: Analysis, node: str, sample_rate: Union[int, Fraction]) -> TimeSummary:
    """RF, stride, past context and lookahead of ``node`` of a 1-D model, in samples (and ms)."""
    if analysis.ndim != 1:
        raise InputShapeError(
            f"time units need a 1-D model input (N, C, L); this analysis has input shape {analysis.input_shape}"
        )
    sample_rate = Fraction(sample_rate)
    if sample_rate <= 0:
        raise ValueError(f"sample rate must be positive, got {sample_rate}")
    r = _node(analysis, node)
    _require_local(r)
    lo, hi, s = r.lo[0], r.hi[0], r.stride[0]
    period = lcm(lo.period, hi.period, s.denominator)
    past = max(s * u - lo(u) for u in range(period))
    ahead = max(hi(u) - s * u for u in range(period))
    return TimeSummary(r.name, sample_rate, r.rf[0], s, Fraction(past), Fraction(ahead))


# ---------------------------------------------------------------------------
# target RF
# ---------------------------------------------------------------------------

TARGET_ASSUMPTIONS = (
    "RF = max over paths of 1 + sum(extent_l * J_l), extent = dilation*(kernel-1), J_l = effective stride at "
    "layer l's input; changing one layer's extent by D raises every path through it by D*J_l, so the node's RF "
    "rises by that when the layer lies on a longest path. Kernels grow by 2 (odd kernels) and padding grows by "
    "D/2 so that every size, and every merge, is kept. Extents are capped at the layer's input length (beyond it "
    "a unit reads only padding). Several changes are assumed additive (true on one longest path); every proposed "
    "change set is checked by re-running the analysis, and only verified ones are reported."
)


@dataclass(frozen=True)
class LayerChange:
    """One proposed change of a conv / pool layer."""

    layer: str
    what: str  # "kernel" or "dilation"
    old: int
    new: int
    gain: int  # RF gain predicted by the assumption (in input pixels, axis 0)


@dataclass(frozen=True)
class TargetPlan:
    """Distance of each stage to a target RF, and change sets that reach it."""

    node: str
    target: int
    rf: int
    stages: tuple[tuple[str, int, int], ...]  # (node, rf, rf - target) along axis 0
    #: change sets that reach the target, fewest changes first, each with its verified RF
    solutions: tuple[tuple[tuple[LayerChange, ...], int], ...]
    assumptions: str = TARGET_ASSUMPTIONS

    @property
    def fewest_changes(self) -> Optional[int]:
        return len(self.solutions[0][0]) if self.solutions else (0 if self.rf >= self.target else None)


def _candidate_layers(analysis: Analysis, node: str) -> list[tuple[str, nn.Module, int, int]]:
    """``(module name, module, J, n_in)`` of the conv / pool modules upstream of ``node`` (axis 0)."""
    gm = analysis.graph_module
    records = {r.fx_name: r for r in analysis.records}
    target = next(n for n in gm.graph.nodes if n.name == _node(analysis, node).fx_name)
    upstream = ancestors(target)
    out = []
    for n in gm.graph.nodes:
        if n not in upstream or n.op != "call_module":
            continue
        m = gm.get_submodule(n.target)
        is_conv = isinstance(m, nn.modules.conv._ConvNd) and not isinstance(m, nn.modules.conv._ConvTransposeNd)
        is_pool = isinstance(m, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d))
        if not (is_conv or is_pool) or isinstance(getattr(m, "padding", 0), str):
            continue
        src = next((records[a.name] for a in n.all_input_nodes if a.name in records), None)
        if src is None or not _local(src, 0) or src.stride[0] is None or src.stride[0].denominator != 1:
            continue
        out.append((n.target, m, int(src.stride[0]), _length(src, 0)))
    return out


def _kd(m: nn.Module) -> tuple[int, int]:
    k = m.kernel_size[0] if isinstance(m.kernel_size, tuple) else m.kernel_size
    d = getattr(m, "dilation", 1)
    d = d[0] if isinstance(d, tuple) else d
    return int(k), int(d)


def _options(m: nn.Module, j: int, n_in: int, need: Optional[int]) -> list[LayerChange]:
    """Smallest kernel and dilation change of ``m`` giving at least ``need`` (``None``: the largest allowed)."""
    k, d = _kd(m)
    ext = d * (k - 1)
    out = []
    if k % 2 == 1:
        # kernel k + 2t: extent + 2*t*d
        t_max = (n_in - 1 - ext) // (2 * d)
        t = t_max if need is None else max(1, -(-need // (2 * d * j)))
        if 1 <= t <= t_max:
            out.append(LayerChange("", "kernel", k, k + 2 * t, 2 * t * d * j))
    if k >= 2 and not isinstance(m, (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)):
        step = 1 if (k - 1) % 2 == 0 else 2  # padding must grow by an integer
        e_max = (n_in - 1 - ext) // ((k - 1) * step)
        e = e_max if need is None else max(1, -(-need // ((k - 1) * step * j)))
        if 1 <= e <= e_max:
            out.append(LayerChange("", "dilation", d, d + e * step, e * step * (k - 1) * j))
    return out


def _new_extent(gm, c: LayerChange) -> int:
    k, d = _kd(gm.get_submodule(c.layer))
    return (c.new - 1) * d + 1 if c.what == "kernel" else c.new * (k - 1) + 1


def _apply_changes(gm, changes: Sequence[LayerChange]) -> list[tuple[nn.Module, dict]]:
    saved = []
    for c in changes:
        m = gm.get_submodule(c.layer)
        nd = len(m.kernel_size) if isinstance(m.kernel_size, tuple) else None
        old = {a: getattr(m, a) for a in ("kernel_size", "dilation", "padding") if hasattr(m, a)}
        saved.append((m, old))
        k, d = _kd(m)
        grow = (c.new - k) * d // 2 if c.what == "kernel" else (c.new - d) * (k - 1) // 2
        pad = m.padding
        pad = tuple(p + grow for p in pad) if isinstance(pad, tuple) else pad + grow
        new = (c.new,) * nd if nd else c.new
        if c.what == "kernel":
            m.kernel_size = new
        else:
            m.dilation = new
        m.padding = pad
    return saved


def target_rf(
    analysis: Analysis, node: str, target: int, verify: int = 8, resizer: Optional[Resizer] = None
) -> TargetPlan:
    """How far each stage is from RF ``target`` (axis 0), and the fewest layer changes that reach it.

    See `TARGET_ASSUMPTIONS`.  Single changes are tried first (the ``verify``
    cheapest ones, by new extent, are checked); if none suffices, the layers are
    taken in order of their largest allowed gain until the predicted gains
    cover the gap, and that set is checked.
    """
    record = _node(analysis, node)
    _require_local(record)
    rf = record.rf[0]
    stages = tuple(
        (s.name, s.rf[0], s.rf[0] - target)
        for s in analysis.stages()
        if s.rf[0] is not None and s.op != "placeholder"
    )
    if rf >= target:
        return TargetPlan(record.name, target, rf, stages, ())
    need = target - rf
    work_gm = copy.deepcopy(analysis.graph_module)
    traced = _traced_of(analysis, work_gm)
    layers = _candidate_layers(analysis, node)

    def check(changes: Sequence[LayerChange]) -> Optional[int]:
        saved = _apply_changes(work_gm, changes)
        try:
            a = analyze(work_gm, analysis.input_shape, traced=traced)
            return a[record.name].rf[0]
        except RFGraphError:
            return None
        finally:
            for m, old in saved:
                for attr, v in old.items():
                    setattr(m, attr, v)

    singles = []
    for name, m, j, n_in in layers:
        for opt in _options(m, j, n_in, need):
            singles.append(LayerChange(name, opt.what, opt.old, opt.new, opt.gain))
    # the smallest new dilated kernel first (the most plausible edit), then the smallest overshoot
    singles.sort(key=lambda c: (_new_extent(work_gm, c), c.gain, c.layer))
    solutions = []
    for c in singles[:verify]:
        got = check([c])
        if got is not None and got >= target:
            solutions.append(((c,), got))
    if not solutions:
        best = []
        for name, m, j, n_in in layers:
            opts = _options(m, j, n_in, None)
            if opts:
                o = max(opts, key=lambda o: o.gain)
                best.append(LayerChange(name, o.what, o.old, o.new, o.gain))
        best.sort(key=lambda c: -c.gain)
        chosen, total = [], 0
        for c in best:
            if total >= need:
                break
            chosen.append(c)
            total += c.gain
        if total >= need:
            got = check(chosen)
            if got is not None and got >= target:
                solutions.append((tuple(chosen), got))
    return TargetPlan(record.name, target, rf, stages, tuple(solutions))
