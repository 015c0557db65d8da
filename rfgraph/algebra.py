"""Exact periodic-affine integer maps: the algebra of receptive fields.

Every spatial op we know reads, for output index ``u`` along one dimension, a
window ``[L(u), H(u)]`` of its input, with ``L`` and ``H`` non-decreasing
integer functions.  All the window maps of conv, pooling, dilation, transposed
conv, upsampling, padding and adaptive pooling, and all their compositions, are
*periodic-affine*: there are an integer period ``T >= 1`` and an integer
``M`` (the advance per period) with ``f(u + T) = f(u) + M``.  Such a map is
stored exactly as ``(T, M, (f(0), ..., f(T-1)))``; its slope ``M / T`` is the
effective stride.

Composition ``f o g`` (apply ``g`` first).  After ``k`` periods of ``g`` the
argument of ``f`` has advanced by ``k * M_g``; ``f`` repeats when that advance
is a multiple of ``T_f``, i.e. for ``k = T_f / gcd(M_g, T_f)`` (``k = 1`` when
``M_g = 0``).  So ``f o g`` has period ``k * T_g`` and advances by
``M_f * (k * M_g / T_f)`` per period; its table is evaluated directly.

Pointwise ``min`` / ``max`` of two maps repeat over the least common multiple
of their periods whenever their slopes are equal; merges of tensors carrying
the same input axis always have equal slopes (a residual add of two paths with
different strides would not even have matching shapes), and a merge of
unequal slopes is refused rather than approximated.

Nothing here touches a float.

>>> conv = PAMap.affine(2, -1)          # L(u) = 2u - 1 (stride 2, padding 1)
>>> conv(0), conv(3)
(-1, 5)
>>> up = PAMap.floor_div(2)            # nearest x2 upsample: floor(u / 2)
>>> conv.compose(up)                   # conv after upsample: 2*floor(u/2) - 1
PAMap(period=2, advance=2, table=(-1, -1))
>>> conv.compose(up).slope
Fraction(1, 1)
"""

from __future__ import annotations

from fractions import Fraction
from math import gcd, lcm
from typing import Iterable, Optional, Sequence

__all__ = ["PAMap", "Field", "SlopeMismatch", "GLOBAL"]


class SlopeMismatch(ValueError):
    """Raised when min/max of two maps with different slopes is requested."""


class PAMap:
    """A periodic-affine map ``Z -> Z``: ``f(u + period) = f(u) + advance``.

    Immutable and hashable; the period is always the smallest one, so equal
    maps compare equal.
    """

    __slots__ = ("period", "advance", "table", "_hash")

    period: int
    advance: int
    table: tuple[int, ...]

    def __new__(cls, period: int, advance: int, table: Iterable[int]) -> PAMap:
        table = tuple(int(v) for v in table)
        period, advance = int(period), int(advance)
        if period < 1 or len(table) != period:
            raise ValueError(f"PAMap needs period >= 1 and a table of that length, got {period}, {table}")
        return cls._from_trusted(*_reduce_period(period, advance, table))

    @classmethod
    def _from_trusted(cls, period: int, advance: int, table: tuple[int, ...]) -> PAMap:
        self = object.__new__(cls)
        object.__setattr__(self, "period", period)
        object.__setattr__(self, "advance", advance)
        object.__setattr__(self, "table", table)
        object.__setattr__(self, "_hash", None)
        return self

    # -- constructors -------------------------------------------------------

    @classmethod
    def affine(cls, slope: int, offset: int) -> PAMap:
        """``u -> slope * u + offset`` (slope 0 gives a constant)."""
        return cls._from_trusted(1, int(slope), (int(offset),))

    @classmethod
    def identity(cls) -> PAMap:
        """``u -> u``."""
        return _IDENTITY

    @classmethod
    def constant(cls, value: int) -> PAMap:
        """``u -> value``."""
        return cls._from_trusted(1, 0, (int(value),))

    @classmethod
    def floor_div(cls, divisor: int, offset: int = 0, numerator: int = 1) -> PAMap:
        """``u -> floor((numerator * u + offset) / divisor)``."""
        if divisor < 1:
            raise ValueError(f"divisor must be >= 1, got {divisor}")
        return cls(divisor, numerator, ((numerator * u + offset) // divisor for u in range(divisor)))

    @classmethod
    def ceil_div(cls, divisor: int, offset: int = 0, numerator: int = 1) -> PAMap:
        """``u -> ceil((numerator * u + offset) / divisor)``."""
        if divisor < 1:
            raise ValueError(f"divisor must be >= 1, got {divisor}")
        return cls(divisor, numerator, (-((-(numerator * u + offset)) // divisor) for u in range(divisor)))

    @classmethod
    def from_values(cls, values: Sequence[int], advance: int) -> PAMap:
        """The map whose first period is ``values`` and which advances by ``advance``."""
        return cls(len(values), advance, values)

    # -- evaluation ---------------------------------------------------------

    def __call__(self, u: int) -> int:
        q, r = divmod(u, self.period)
        return self.table[r] + q * self.advance

    @property
    def slope(self) -> Fraction:
        """Average advance per unit step of ``u``: the effective stride."""
        return Fraction(self.advance, self.period)

    def is_monotone(self) -> bool:
        """True when the map is non-decreasing."""
        values = self.table + (self.table[0] + self.advance,)
        return all(a <= b for a, b in zip(values, values[1:]))

    # -- algebra ------------------------------------------------------------

    def compose(self, inner: PAMap) -> PAMap:
        """``self o inner``: ``u -> self(inner(u))``."""
        if self.period == 1 and inner.period == 1:
            return PAMap._from_trusted(
                1, self.advance * inner.advance, (self.table[0] + self.advance * inner.table[0],)
            )
        if inner.advance == 0:
            k = 1
        else:
            k = self.period // gcd(inner.advance, self.period)
        period = k * inner.period
        advance = self.advance * (k * inner.advance // self.period)
        table = tuple(self(inner(u)) for u in range(period))
        return PAMap._from_trusted(*_reduce_period(period, advance, table))

    def shift(self, delta: int) -> PAMap:
        """``u -> self(u) + delta``."""
        if delta == 0:
            return self
        return PAMap._from_trusted(self.period, self.advance, tuple(v + delta for v in self.table))

    def minimum(self, other: PAMap) -> PAMap:
        """Pointwise minimum (both maps must have the same slope)."""
        return self._pointwise(other, min)

    def maximum(self, other: PAMap) -> PAMap:
        """Pointwise maximum (both maps must have the same slope)."""
        return self._pointwise(other, max)

    def _pointwise(self, other: PAMap, op) -> PAMap:
        if self == other:
            return self
        if self.advance * other.period != other.advance * self.period:
            raise SlopeMismatch(f"cannot merge maps of slopes {self.slope} and {other.slope}")
        period = lcm(self.period, other.period)
        advance = self.advance * (period // self.period)
        table = tuple(op(self(u), other(u)) for u in range(period))
        return PAMap._from_trusted(*_reduce_period(period, advance, table))

    def values(self, n: int, start: int = 0) -> list[int]:
        """``[f(start), ..., f(start + n - 1)]``."""
        return [self(u) for u in range(start, start + n)]

    # -- protocol -----------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PAMap):
            return NotImplemented
        return (self.period, self.advance, self.table) == (other.period, other.advance, other.table)

    def __hash__(self) -> int:
        h = self._hash
        if h is None:
            h = hash((self.period, self.advance, self.table))
            object.__setattr__(self, "_hash", h)
        return h

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("PAMap is immutable")

    def __reduce__(self):
        return (PAMap, (self.period, self.advance, self.table))

    def __repr__(self) -> str:
        return f"PAMap(period={self.period}, advance={self.advance}, table={self.table})"

    def __str__(self) -> str:
        if self.period == 1:
            return _affine_str(self.advance, self.table[0])
        return f"[{', '.join(map(str, self.table))}] + {self.advance}*(u//{self.period})"


def _affine_str(slope: int, offset: int) -> str:
    if slope == 0:
        return str(offset)
    head = "u" if slope == 1 else f"{slope}u"
    if offset == 0:
        return head
    return f"{head} {'+' if offset > 0 else '-'} {abs(offset)}"


def _reduce_period(period: int, advance: int, table: tuple[int, ...]) -> tuple[int, int, tuple[int, ...]]:
    """Shrink ``(period, advance, table)`` to its smallest period."""
    if period == 1:
        return period, advance, table
    for p in _divisors(period):
        if p == period:
            break
        if (advance * p) % period:
            continue
        step = advance * p // period
        if all(table[u + p] == table[u] + step for u in range(period - p)):
            return p, step, table[:p]
    return period, advance, table


def _divisors(n: int) -> list[int]:
    small, large = [], []
    d = 1
    while d * d <= n:
        if n % d == 0:
            small.append(d)
            if d * d != n:
                large.append(n // d)
        d += 1
    return small + large[::-1]


_IDENTITY = PAMap._from_trusted(1, 1, (0,))


class Field:
    """The receptive field of one tensor dimension with respect to one input axis.

    ``lo(u)`` and ``hi(u)`` are the first and last input coordinates that can
    change output index ``u`` (unclipped: as if the input were infinite).
    ``path_lo`` / ``path_hi`` follow one path only, the one with the smallest
    field (at each merge the operand with the smaller RF is kept), which is what
    a residual shortcut lets through.  ``lo is None`` means *global*: the
    dimension depends on the whole input along this axis.
    """

    __slots__ = ("lo", "hi", "path_lo", "path_hi")

    lo: Optional[PAMap]
    hi: Optional[PAMap]

    def __init__(self, lo: Optional[PAMap], hi: Optional[PAMap], path_lo=None, path_hi=None):
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)
        object.__setattr__(self, "path_lo", lo if path_lo is None else path_lo)
        object.__setattr__(self, "path_hi", hi if path_hi is None else path_hi)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Field is immutable")

    @classmethod
    def identity(cls) -> Field:
        """The field of an input tensor: unit ``u`` sees exactly pixel ``u``."""
        return _IDENTITY_FIELD

    @property
    def is_global(self) -> bool:
        return self.lo is None

    def through(self, low: PAMap, high: PAMap, step: int = 1) -> Field:
        """The field after an op reading positions ``low(u), low(u) + step, ..., high(u)`` of this tensor."""
        if self.lo is None:
            return self
        return Field(
            _range_extreme(self.lo, low, high, min, step),
            _range_extreme(self.hi, low, high, max, step),
            _range_extreme(self.path_lo, low, high, min, step),
            _range_extreme(self.path_hi, low, high, max, step),
        )

    def merge(self, other: Field) -> Field:
        """Union of two fields over the same output positions (add, mul, concat, ...)."""
        if self is other:
            return self
        if self.lo is None:
            return self
        if other.lo is None:
            return other
        lo = self.lo.minimum(other.lo)
        hi = self.hi.maximum(other.hi)
        if _max_width(self.path_lo, self.path_hi) <= _max_width(other.path_lo, other.path_hi):
            return Field(lo, hi, self.path_lo, self.path_hi)
        return Field(lo, hi, other.path_lo, other.path_hi)

    # -- summaries ------------------------------------------------------------

    @property
    def rf(self) -> Optional[int]:
        """Largest RF over output positions."""
        return None if self.lo is None else _max_width(self.lo, self.hi)

    @property
    def rf_min(self) -> Optional[int]:
        """Smallest RF over output positions."""
        if self.lo is None:
            return None
        period = lcm(self.lo.period, self.hi.period)
        return max(0, min(self.hi(u) - self.lo(u) + 1 for u in range(period)))

    @property
    def rf_path_min(self) -> Optional[int]:
        return None if self.lo is None else _max_width(self.path_lo, self.path_hi)

    @property
    def stride(self) -> Optional[Fraction]:
        return None if self.lo is None else self.lo.slope

    @property
    def start(self) -> Optional[Fraction]:
        return None if self.lo is None else Fraction(self.lo(0))

    def center(self, u: int = 0) -> Optional[Fraction]:
        if self.lo is None:
            return None
        return Fraction(self.lo(u) + self.hi(u), 2)

    def max_center_shift(self, other: Field) -> Fraction:
        """Largest ``|center_self(u) - center_other(u)|`` over a common period."""
        if self.lo is None or other.lo is None:
            return Fraction(0)
        period = lcm(self.lo.period, self.hi.period, other.lo.period, other.hi.period)
        return max(abs(self.center(u) - other.center(u)) for u in range(period))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Field):
            return NotImplemented
        return (self.lo, self.hi, self.path_lo, self.path_hi) == (other.lo, other.hi, other.path_lo, other.path_hi)

    def __hash__(self) -> int:
        return hash((self.lo, self.hi, self.path_lo, self.path_hi))

    def __repr__(self) -> str:
        if self.lo is None:
            return "Field(GLOBAL)"
        return f"Field(lo={self.lo}, hi={self.hi})"


def _range_extreme(f: PAMap, low: PAMap, high: PAMap, op, step: int = 1) -> PAMap:
    """``u -> op(f(v) for v = low(u), low(u) + step, ..., high(u))``: ``f o low`` (min) or ``f o high``
    (max) when ``f`` is non-decreasing.  A transposed convolution whose taps land out of order (e.g.
    stride 3, dilation 2) leaves a field that is not, and its extreme over a window is then taken point
    by point over the read positions (``step`` is the reader's dilation), over the period after which
    both ends have advanced by whole periods of ``f``.  An empty window (``low > high``) keeps the end
    composition."""
    end = f.compose(low if op is min else high)
    if (f.period == 1 and f.advance >= 0) or f.is_monotone():
        return end
    if low.advance * high.period != high.advance * low.period:
        return end
    base = lcm(low.period, high.period)
    moved = low.advance * (base // low.period)  # both ends move by this much over `base`
    k = f.period // gcd(moved, f.period) if moved else 1
    table = []
    for u in range(k * base):
        a, b = low(u), high(u)
        table.append(op(f(v) for v in range(a, b + 1, step)) if a <= b else end(u))
    return PAMap(k * base, f.advance * (k * moved // f.period), table)


def _max_width(lo: PAMap, hi: PAMap) -> int:
    period = lcm(lo.period, hi.period)
    return max(0, max(hi(u) - lo(u) + 1 for u in range(period)))


_IDENTITY_FIELD = Field(_IDENTITY, _IDENTITY)
GLOBAL = Field(None, None)
