"""The input box a unit sees (`unit_box`) and, inversely, the units of a node that see an input box (`units_seeing`)."""

from __future__ import annotations

from dataclasses import dataclass
from math import lcm
from typing import Optional, Sequence, Union

from ..algebra import FiniteMap, Map, PAMap
from ..errors import RFGraphError
from ..results import Analysis
from .common import Box, axis_length, first_at_least, node_record, per_axis, require_local

__all__ = ["UnitBox", "unit_box", "units_seeing"]

# ---------------------------------------------------------------------------
# unit boxes
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class UnitBox:
    """The input box seen by one unit of a node.

    ``box`` is unclipped (coordinates outside ``[0, n)`` lie in padding);
    ``clipped`` is its intersection with the input (``None`` on an axis where
    the unit sees only padding).  A unit that reads nothing (an output of a
    transposed conv that no tap reaches) has ``box`` ``None``.
    """

    node: str
    unit: tuple[int, ...]
    box: Optional[Box]
    clipped: tuple[Optional[tuple[int, int]], ...]
    input_size: tuple[int, ...]

    @property
    def size(self) -> tuple[int, ...]:
        if self.box is None:
            return (0,) * len(self.input_size)
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
    record = node_record(analysis, node)
    require_local(record)
    unit = tuple(int(u) for u in per_axis(unit, record.ndim, "unit"))
    for axis, u in enumerate(unit):
        n = axis_length(record, axis)
        if not 0 <= u < n:
            raise RFGraphError(
                f"unit {unit} is outside node {record.name!r}: axis {axis} has {n} units (0..{n - 1}) "
                f"at input size {analysis.input_shape[2:]}"
            )
    box = record.box(unit)
    sizes = tuple(analysis.input_shape[2:])
    if box is None:
        return UnitBox(record.name, unit, None, (None,) * len(sizes), sizes)
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
    record = node_record(analysis, node)
    require_local(record)
    where = tuple(where)
    if len(where) != record.ndim:
        raise ValueError(f"need one coordinate or (lo, hi) pair per input axis ({record.ndim}), got {where}")
    out = []
    for axis, w in enumerate(where):
        a, b = (int(w), int(w)) if isinstance(w, int) else (int(w[0]), int(w[1]))
        if a > b:
            raise ValueError(f"empty interval ({a}, {b}) on axis {axis}")
        lo, hi = record.lo[axis], record.hi[axis]
        n = axis_length(record, axis)
        if isinstance(lo, FiniteMap) or isinstance(hi, FiniteMap):
            out.append(_runs(lo, hi, 0, n - 1, lambda u, lo=lo, hi=hi, a=a, b=b: lo(u) is not None
                             and a <= hi(u) and lo(u) <= b))
            continue
        first = first_at_least(hi, a, 0, n)
        last = first_at_least(lo, b + 1, 0, n) - 1
        out.append(_runs(lo, hi, first, last))
    return tuple(out)


def _runs(lo: Map, hi: Map, first: int, last: int, sees=None) -> tuple[range, ...]:
    if first > last:
        return ()
    if sees is None:
        assert isinstance(lo, PAMap) and isinstance(hi, PAMap)
        period = lcm(lo.period, hi.period)
        if all(lo(u) <= hi(u) for u in range(period)):
            return (range(first, last + 1),)

        def sees(u):
            return lo(u) <= hi(u)
    runs: list[range] = []
    start = None
    for u in range(first, last + 2):
        ok = u <= last and sees(u)
        if ok and start is None:
            start = u
        elif not ok and start is not None:
            runs.append(range(start, u))
            start = None
    return tuple(runs)
