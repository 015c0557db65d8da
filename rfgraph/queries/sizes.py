"""Input sizes: `minimal_input_size`, `size_classes` (sizes for which every strided layer divides evenly or every
feature grid is centred), `coverage` (the largest input a node still sees whole)."""

from __future__ import annotations

from dataclasses import dataclass, field
from math import lcm
from typing import Optional, Union

from ..algebra import FiniteMap
from ..errors import RFGraphError
from ..results import Analysis
from .common import (
    Resizer,
    axis_length,
    first_at_least,
    is_local,
    is_positional,
    node_record,
    require_local,
    resizer_for,
)

__all__ = ["minimal_input_size", "SizeClasses", "size_classes", "input_period", "Coverage", "coverage", "first_covering"]

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
    rs = resizer_for(analysis, resizer)
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


def input_period(analysis: Analysis) -> int:
    m = 1
    for r in analysis.records:
        for axis in range(r.ndim):
            if is_local(r, axis) and r.stride[axis] is not None and r.is_regular(axis):
                m = lcm(m, r.stride[axis].numerator)
    return m


def _size_failures(a: Analysis, kind: str) -> dict[str, int]:
    """``{node: axis}`` for the nodes that break ``kind`` at the analysed size."""
    records = {r.name: r for r in a.records}
    sizes = a.input_shape[2:]
    bad: dict[str, int] = {}
    for r in a.records:
        for axis in range(r.ndim):
            if not is_positional(r, axis):
                continue
            n_out = axis_length(r, axis)
            if kind == "centered":
                lo, hi = r.lo[axis], r.hi[axis]
                ends = (lo(0), hi(0), lo(n_out - 1), hi(n_out - 1))
                if None in ends or sum(ends) != 2 * (sizes[axis] - 1):
                    bad.setdefault(r.name, axis)
                continue
            for name in r.inputs:
                src = records.get(name)
                if src is None or not is_positional(src, axis):
                    continue
                if not (r.is_regular(axis) and src.is_regular(axis)) or not src.stride[axis]:
                    continue  # a finite map's mean slope divides no length
                s = r.stride[axis] / src.stride[axis]
                if s != 1 and axis_length(src, axis) != s * n_out:
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
    rs = resizer_for(analysis, resizer)
    base_min = max(minimal_input_size(analysis, resizer=rs))
    m = input_period(analysis)
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
    r = node_record(a, node)
    for axis in range(r.ndim):
        if r.is_global[axis]:
            continue
        if not is_positional(r, axis):
            return False
        n, lo, hi, count = a.input_shape[2 + axis], r.lo[axis], r.hi[axis], axis_length(r, axis)
        if isinstance(lo, FiniteMap) or isinstance(hi, FiniteMap):
            covering = [lo(u) is not None and lo(u) <= 0 and hi(u) >= n - 1 for u in range(count)
                        if not every or lo(u) is not None]
            if not covering or not (all(covering) if every else any(covering)):
                return False
            continue
        if every:
            if not (lo(count - 1) <= 0 and hi(0) >= n - 1):
                return False
        else:
            # the largest unit whose window still starts at or before pixel 0 has the largest hi
            u = min(first_at_least(lo, 1, 0, count) - 1, count - 1)
            if u < 0 or hi(u) < n - 1:
                return False
    return True


def coverage(analysis: Analysis, node: str, resizer: Optional[Resizer] = None) -> Coverage:
    """Largest input size at which some unit (and every unit) of ``node`` sees the whole input.

    Bisection over square sizes between the minimal size and the node's RF
    (no unit can cover more pixels than its RF); coverage shrinks as the input
    grows, so the predicate is monotone.
    """
    record = node_record(analysis, node)
    if all(record.is_global):
        return Coverage(record.name, None, None)
    require_local(record)
    rs = resizer_for(analysis, resizer)
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


