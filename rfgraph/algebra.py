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
of their periods whenever their slopes are equal.  Slopes can differ slightly
between paths of equal shape (``align_corners=True`` resampling has slope
``(n_in - 1) / (n_out - 1)``); the min of two such maps is not periodic, but
every tensor has a finite length ``n``, so it is stored exactly as its table
over ``[0, n)``: a `FiniteMap`.  Finite maps also carry *holes*, units that
read nothing (a transposed conv whose kernel is smaller than its stride): the
empty window, the neutral element of a union.  Periodic-affine maps stay the
fast path; a finite table appears only where no periodic-affine map is exact.
Without the length (``size``), a merge of unequal slopes is refused
(`SlopeMismatch`) rather than approximated.

Nothing here touches a float.

>>> conv = PAMap.affine(2, -1)          # L(u) = 2u - 1 (stride 2, padding 1)
>>> conv(0), conv(3)
(-1, 5)
>>> up = PAMap.floor_div(2)            # nearest x2 upsample: floor(u / 2)
>>> conv.compose(up)                   # conv after upsample: 2*floor(u/2) - 1
PAMap(period=2, advance=2, table=(-1, -1))
>>> conv.compose(up).slope
Fraction(1, 1)
>>> a, b = PAMap.affine(2, 1), PAMap.floor_div(3, 0, 7)   # slopes 2 and 7/3
>>> a.minimum(b, size=8)                                   # exact over [0, 8): b, then a
FiniteMap((0, 2, 4, 7, 9, 11, 13, 15))
>>> a.maximum(b, size=8).slope                             # the exact mean slope
Fraction(15, 7)
"""

from __future__ import annotations

from fractions import Fraction
from math import gcd, lcm
from typing import Callable, Iterable, Optional, Sequence, Union

__all__ = ["PAMap", "FiniteMap", "Map", "Field", "SlopeMismatch", "DomainMismatch", "GLOBAL"]


class SlopeMismatch(ValueError):
    """Raised when min/max of two maps with different slopes is requested without a length to tabulate over."""


class DomainMismatch(SlopeMismatch):
    """Raised when two finite maps over different lengths are combined pointwise."""


class PAMap:
    """A periodic-affine map ``Z -> Z``: ``f(u + period) = f(u) + advance``.

    Immutable and hashable; the period is always the smallest one, so equal
    maps compare equal.
    """

    __slots__ = ("period", "advance", "table", "_hash", "_mono")

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
        object.__setattr__(self, "_mono", None)
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
        mono = self._mono
        if mono is None:
            values = self.table + (self.table[0] + self.advance,)
            mono = all(a <= b for a, b in zip(values, values[1:]))
            object.__setattr__(self, "_mono", mono)
        return mono

    @property
    def is_constant(self) -> bool:
        return self.period == 1 and self.advance == 0

    # -- algebra ------------------------------------------------------------

    def compose(self, inner: Map, size: Optional[int] = None) -> Map:
        """``self o inner``: ``u -> self(inner(u))`` (a `FiniteMap` when ``inner`` is one)."""
        if isinstance(inner, FiniteMap):
            return FiniteMap(None if v is None else self(v) for v in inner.table)
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

    def minimum(self, other: Map, size: Optional[int] = None) -> Map:
        """Pointwise minimum.  Equal slopes give a `PAMap`; different slopes (or a `FiniteMap` operand)
        give the exact table over ``[0, size)`` (or over the finite operand's domain), or the operand that
        equals it there; without a length, different slopes raise `SlopeMismatch`."""
        return self._pointwise(other, min, size)

    def maximum(self, other: Map, size: Optional[int] = None) -> Map:
        """Pointwise maximum (see `minimum`)."""
        return self._pointwise(other, max, size)

    def _pointwise(self, other: Map, op, size: Optional[int] = None) -> Map:
        if isinstance(other, FiniteMap):
            return other._pointwise(self, op, size)
        if self == other:
            return self
        if self.advance * other.period != other.advance * self.period:
            if size is None:
                raise SlopeMismatch(f"cannot merge maps of slopes {self.slope} and {other.slope}")
            return _tabulated_pointwise(self, other, op, size)
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


class FiniteMap:
    """A window map over a finite domain ``[0, size)``, stored as its table; exact where no
    periodic-affine map is (merges of unequal slopes, outputs that read nothing).

    ``table[u]`` is ``f(u)``, or ``None`` when unit ``u`` reads nothing (an
    empty window: it contributes nothing to a union).  Outside ``[0, size)``
    the map is ``None`` too: a tensor that exists only at this length has no
    positions there, so a later window reading its padding reads nothing
    (unlike a `PAMap`, whose periodic extension stands for the unclipped field
    of an infinite input).  Immutable, hashable, exact, like `fractions.Fraction`.

    >>> f = FiniteMap([3, 5, None, 6])
    >>> f(1), f(2), f(7), f.size, f.slope          # mean slope from the first to the last defined unit
    (5, None, None, 4, Fraction(1, 1))
    >>> f.compose(PAMap.affine(1, 1), size=3)      # f(u + 1) over [0, 3)
    FiniteMap((5, None, 6))
    >>> PAMap.affine(2, 0).compose(f)
    FiniteMap((6, 10, None, 12))
    >>> f.maximum(PAMap.affine(1, 0))              # a hole is the empty window: the other operand's value
    FiniteMap((3, 5, 2, 6))
    >>> f.minimum(PAMap.affine(2, 0))              # a merge with a finite operand stays finite
    FiniteMap((0, 2, 4, 6))
    """

    __slots__ = ("table", "_hash", "_mono", "_fit")

    table: tuple[Optional[int], ...]

    def __new__(cls, table: Iterable[Optional[int]]) -> FiniteMap:
        table = tuple(None if v is None else int(v) for v in table)
        if not table:
            raise ValueError("a FiniteMap needs a domain of at least one unit")
        return cls._from_trusted(table)

    @classmethod
    def _from_trusted(cls, table: tuple[Optional[int], ...]) -> FiniteMap:
        self = object.__new__(cls)
        object.__setattr__(self, "table", table)
        object.__setattr__(self, "_hash", None)
        object.__setattr__(self, "_mono", None)
        object.__setattr__(self, "_fit", False)
        return self

    @classmethod
    def tabulate(cls, f: Map, size: int) -> FiniteMap:
        """The table of any map over ``[0, size)``."""
        if isinstance(f, FiniteMap):
            if f.size != size:
                raise DomainMismatch(f"a finite map over {f.size} units cannot be read over {size}")
            return f
        return cls._from_trusted(tuple(f(u) for u in range(size)))

    # -- evaluation ---------------------------------------------------------

    @property
    def size(self) -> int:
        """Length of the domain ``[0, size)``."""
        return len(self.table)

    def __call__(self, u: int) -> Optional[int]:
        return self.table[u] if 0 <= u < len(self.table) else None

    def defined(self) -> list[int]:
        """The units that read something."""
        return [u for u, v in enumerate(self.table) if v is not None]

    @property
    def has_holes(self) -> bool:
        """True when some unit reads nothing."""
        return None in self.table

    def periodic_fit(self) -> Optional[tuple[int, int]]:
        """``(T, M)`` when the table is periodic-affine over its domain: the smallest ``T`` with
        ``2 T <= size`` (or ``T = 1``) such that ``f(u + T) = f(u) + M`` wherever ``u + T`` is in the
        domain (holes repeating with period ``T``); ``None`` otherwise."""
        fit = self._fit
        if fit is False:
            fit = _periodic_fit(self.table)
            object.__setattr__(self, "_fit", fit)
        return fit

    @property
    def slope(self) -> Fraction:
        """``M / T`` when the table is periodic-affine over its domain (`periodic_fit`); otherwise the
        exact mean slope ``(f(b) - f(a)) / (b - a)`` between the first and last defined units ``a < b``
        (0 when fewer than two units read something)."""
        fit = self.periodic_fit()
        if fit is not None:
            return Fraction(fit[1], fit[0])
        units = self.defined()
        if len(units) < 2:
            return Fraction(0)
        a, b = units[0], units[-1]
        return Fraction(self.table[b] - self.table[a], b - a)

    def is_monotone(self) -> bool:
        """True when the map is non-decreasing over the units that read something."""
        mono = self._mono
        if mono is None:
            values = [v for v in self.table if v is not None]
            mono = all(a <= b for a, b in zip(values, values[1:]))
            object.__setattr__(self, "_mono", mono)
        return mono

    @property
    def is_constant(self) -> bool:
        return False

    def values(self, n: int, start: int = 0) -> list[Optional[int]]:
        """``[f(start), ..., f(start + n - 1)]`` (``None`` outside the domain and at holes)."""
        return [self(u) for u in range(start, start + n)]

    # -- algebra ------------------------------------------------------------

    def compose(self, inner: Map, size: Optional[int] = None) -> Map:
        """``self o inner`` over the domain of ``inner`` (``[0, size)`` when ``inner`` is a `PAMap`;
        a constant ``inner`` gives a constant `PAMap` where it lands on a unit that reads something)."""
        if isinstance(inner, FiniteMap):
            return FiniteMap._from_trusted(tuple(None if v is None else self(v) for v in inner.table))
        if inner.is_constant:
            value = self(inner.table[0])
            if value is not None:
                return PAMap.constant(value)
            return FiniteMap._from_trusted((None,) * (size or 1))
        if size is None:
            raise ValueError("composing a finite map with a periodic-affine one needs the output length (size=)")
        return FiniteMap._from_trusted(tuple(self(inner(u)) for u in range(size)))

    def shift(self, delta: int) -> FiniteMap:
        """``u -> self(u) + delta``."""
        if delta == 0:
            return self
        return FiniteMap._from_trusted(tuple(None if v is None else v + delta for v in self.table))

    def minimum(self, other: Map, size: Optional[int] = None) -> Map:
        """Pointwise minimum over the domain (a unit reading nothing on one side takes the other's value)."""
        return self._pointwise(other, min, size)

    def maximum(self, other: Map, size: Optional[int] = None) -> Map:
        """Pointwise maximum over the domain (see `minimum`)."""
        return self._pointwise(other, max, size)

    def _pointwise(self, other: Map, op, size: Optional[int] = None) -> Map:
        if size is not None and size != self.size:
            raise DomainMismatch(f"a finite map over {self.size} units merged over {size}")
        if self == other:
            return self
        theirs = FiniteMap.tabulate(other, self.size).table
        table = tuple(_opt(op, a, b) for a, b in zip(self.table, theirs))
        if table == self.table:
            return self
        if table == theirs and isinstance(other, FiniteMap):
            return other
        # a merge with a finite operand stays finite (its tensor exists at this length only), even where
        # the result equals a periodic operand on the domain
        return FiniteMap._from_trusted(table)

    # -- protocol -----------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FiniteMap):
            return NotImplemented
        return self.table == other.table

    def __hash__(self) -> int:
        h = self._hash
        if h is None:
            h = hash(("finite", self.table))
            object.__setattr__(self, "_hash", h)
        return h

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("FiniteMap is immutable")

    def __reduce__(self):
        return (FiniteMap, (self.table,))

    def __repr__(self) -> str:
        return f"FiniteMap({self.table!r})"

    def __str__(self) -> str:
        cells = ["." if v is None else str(v) for v in self.table]
        if len(cells) > 12:
            cells = cells[:6] + ["..."] + cells[-4:]
        return f"finite[{', '.join(cells)}] over {self.size}"


Map = Union[PAMap, FiniteMap]
"""A window map: periodic-affine on all integers, or a finite table over ``[0, size)``."""


def _periodic_fit(table: tuple[Optional[int], ...]) -> Optional[tuple[int, int]]:
    n = len(table)
    for period in range(1, max(1, n // 2) + 1):
        advance = None
        ok = True
        for u in range(n - period):
            a, b = table[u], table[u + period]
            if a is None or b is None:
                if a is not b:
                    ok = False
                    break
                continue
            if advance is None:
                advance = b - a
            elif b - a != advance:
                ok = False
                break
        if ok and advance is not None:
            return period, advance
    return None


def _opt(op: Callable, a: Optional[int], b: Optional[int]) -> Optional[int]:
    if a is None:
        return b
    if b is None:
        return a
    return op(a, b)


def _tabulated_pointwise(a: PAMap, b: PAMap, op, size: int) -> Map:
    """``op(a, b)`` over ``[0, size)`` for maps of different slopes: ``a`` or ``b`` when one of them is it
    there (periodic-affine stays the fast path), else the table."""
    table = tuple(op(a(u), b(u)) for u in range(size))
    if all(v == a(u) for u, v in enumerate(table)):
        return a
    if all(v == b(u) for u, v in enumerate(table)):
        return b
    return FiniteMap._from_trusted(table)


def _domain(*maps: Optional[Map]) -> Optional[int]:
    """The common length of the finite maps among ``maps`` (``None`` when all are periodic-affine)."""
    size = None
    for m in maps:
        if isinstance(m, FiniteMap):
            if size is not None and m.size != size:
                raise DomainMismatch(f"finite maps over {size} and {m.size} units in one field")
            size = m.size
    return size


def _units(*maps: Map) -> range:
    """Units over which ``maps`` repeat: the finite domain, or one common period."""
    size = _domain(*maps)
    if size is not None:
        return range(size)
    return range(lcm(*(m.period for m in maps)))


def _width(lo: Map, hi: Map, u: int) -> Optional[int]:
    a, b = lo(u), hi(u)
    return None if a is None or b is None else b - a + 1


class Field:
    """The receptive field of one tensor dimension with respect to one input axis.

    ``lo(u)`` and ``hi(u)`` are the first and last input coordinates that can
    change output index ``u`` (unclipped: as if the input were infinite).
    ``path_lo`` / ``path_hi`` follow one path only, the one with the smallest
    field (at each merge the operand with the smaller RF is kept), which is what
    a residual shortcut lets through.  ``lo is None`` means *global*: the
    dimension depends on the whole input along this axis.

    The maps are `PAMap` (periodic-affine, defined on all integers) or
    `FiniteMap` (a table over the dim's length ``[0, size)``, with ``None``
    at units that read nothing); when one map is finite all four are tables
    over the same domain, and ``size`` is its length.
    """

    __slots__ = ("lo", "hi", "path_lo", "path_hi")

    lo: Optional[Map]
    hi: Optional[Map]

    def __init__(self, lo: Optional[Map], hi: Optional[Map], path_lo=None, path_hi=None):
        if isinstance(lo, FiniteMap) or isinstance(hi, FiniteMap):
            # One domain for the whole field: a position outside [0, n) has no window at all (a periodic
            # map's extension would give it half a window), so every map becomes a table over [0, n).
            n = (lo if isinstance(lo, FiniteMap) else hi).size
            lo, hi = FiniteMap.tabulate(lo, n), FiniteMap.tabulate(hi, n)
            path_lo = None if path_lo is None else FiniteMap.tabulate(path_lo, n)
            path_hi = None if path_hi is None else FiniteMap.tabulate(path_hi, n)
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

    @property
    def size(self) -> Optional[int]:
        """The length of the finite domain when some map is a `FiniteMap`, else ``None``."""
        if self.lo is None:
            return None
        return _domain(self.lo, self.hi, self.path_lo, self.path_hi)

    @property
    def is_finite(self) -> bool:
        """True when the field is stored as tables over a finite domain (not periodic-affine)."""
        return self.lo is not None and any(isinstance(m, FiniteMap) for m in (self.lo, self.hi))

    @property
    def stride_regular(self) -> bool:
        """True when ``lo`` and ``hi`` are periodic-affine with one slope (a finite table counts when it is
        periodic-affine over its domain, `FiniteMap.periodic_fit`): the stride is then a single number."""
        if self.lo is None:
            return True
        if any(isinstance(m, FiniteMap) and m.periodic_fit() is None for m in (self.lo, self.hi)):
            return False
        return self.lo.slope == self.hi.slope

    def tabulated(self, size: int) -> Field:
        """The same field as tables over ``[0, size)`` (a global field stays global)."""
        if self.lo is None:
            return self
        return Field(*(FiniteMap.tabulate(m, size) for m in (self.lo, self.hi, self.path_lo, self.path_hi)))

    def through(self, low: Map, high: Map, step: int = 1, size: Optional[int] = None) -> Field:
        """The field after an op reading positions ``low(u), low(u) + step, ..., high(u)`` of this tensor.

        ``size`` is the op's output length, needed when this field is finite and ``low`` / ``high``
        are periodic-affine (the result is then a table over ``[0, size)``)."""
        if self.lo is None:
            return self
        return Field(
            _extreme_map(self.lo, low, high, min, step, size),
            _extreme_map(self.hi, low, high, max, step, size),
            _extreme_map(self.path_lo, low, high, min, step, size),
            _extreme_map(self.path_hi, low, high, max, step, size),
        )

    def merge(self, other: Field, size: Optional[int] = None) -> Field:
        """Union of two fields over the same output positions (add, mul, concat, ...).

        ``size`` is the length of those positions: with it, maps of different slopes merge exactly into
        a `FiniteMap`; without it they raise `SlopeMismatch`."""
        if self is other:
            return self
        if self.lo is None:
            return self
        if other.lo is None:
            return other
        lo = self.lo.minimum(other.lo, size)
        hi = self.hi.maximum(other.hi, size)
        if size is not None and isinstance(lo, PAMap) and isinstance(hi, PAMap) and lo.slope != hi.slope:
            # lo from one operand, hi from another of another slope: the widths grow along the domain, so
            # no period summarises the field (its rf over one period would be that of the first units)
            lo = FiniteMap.tabulate(lo, size)
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
        """Smallest RF over output positions (0 when some unit reads nothing)."""
        if self.lo is None:
            return None
        widths = [_width(self.lo, self.hi, u) for u in _units(self.lo, self.hi)]
        return max(0, min(0 if w is None else w for w in widths))

    @property
    def rf_path_min(self) -> Optional[int]:
        return None if self.lo is None else _max_width(self.path_lo, self.path_hi)

    @property
    def stride(self) -> Optional[Fraction]:
        """The slope of ``lo``: the effective stride, or its exact mean when not `stride_regular`."""
        return None if self.lo is None else self.lo.slope

    @property
    def start(self) -> Optional[Fraction]:
        """``lo(0)``; ``None`` when global or when unit 0 reads nothing."""
        if self.lo is None:
            return None
        v = self.lo(0)
        return None if v is None else Fraction(v)

    def center(self, u: int = 0) -> Optional[Fraction]:
        if self.lo is None:
            return None
        a, b = self.lo(u), self.hi(u)
        if a is None or b is None:
            return None
        return Fraction(a + b, 2)

    def max_center_shift(self, other: Field) -> Fraction:
        """Largest ``|center_self(u) - center_other(u)|`` over a common period (or the finite domain),
        over units where both read something."""
        if self.lo is None or other.lo is None:
            return Fraction(0)
        twice = 0  # twice the shift, in integers: one Fraction at the end, not one per unit
        for u in _units(self.lo, self.hi, other.lo, other.hi):
            a, b, c, d = self.lo(u), self.hi(u), other.lo(u), other.hi(u)
            if a is not None and b is not None and c is not None and d is not None:
                twice = max(twice, abs(a + b - c - d))
        return Fraction(twice, 2)

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


def _extreme_map(f: Map, low: Map, high: Map, op, step: int = 1, size: Optional[int] = None) -> Map:
    """``u -> op(f(v) for the positions v read by unit u)``: `_range_extreme` when everything is
    periodic-affine; otherwise a table over the output's domain (positions where ``f`` reads nothing,
    or that lie outside a finite ``f``'s domain, are skipped; a unit reading only such positions reads
    nothing).  A constant window (an index, a broadcast) gives a constant `PAMap` when it reads something."""
    if isinstance(f, PAMap) and isinstance(low, PAMap) and isinstance(high, PAMap):
        return _range_extreme(f, low, high, op, step)
    n = _domain(low, high)
    if n is None:
        if low.is_constant and high.is_constant:
            value = _window_extreme(f, low.table[0], high.table[0], step, op)
            if value is not None:
                return PAMap.constant(value)
            return FiniteMap._from_trusted((None,) * (size or 1))
        if size is None:
            raise DomainMismatch("reading a finite field through a periodic-affine window needs the output length")
        n = size
    return FiniteMap._from_trusted(tuple(_window_extreme(f, low(u), high(u), step, op) for u in range(n)))


def _window_extreme(f: Map, a: Optional[int], b: Optional[int], step: int, op) -> Optional[int]:
    """``op`` of ``f`` over the positions ``a, a + step, ..., <= b`` where it is defined (``None``: none)."""
    if a is None or b is None or a > b:
        return None
    if isinstance(f, PAMap):
        if f.is_monotone():
            return f(a) if op is min else f(a + ((b - a) // step) * step)
        return op(f(v) for v in range(a, b + 1, step))
    n = f.size
    first = a if a >= 0 else a + (-a + step - 1) // step * step
    top = min(b, n - 1)
    if first > top:
        return None
    last = a + ((top - a) // step) * step
    if not f.has_holes and f.is_monotone():
        return f.table[first] if op is min else f.table[last]
    values = [v for v in f.table[first : last + 1 : step] if v is not None]
    return op(values) if values else None


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


def _max_width(lo: Map, hi: Map) -> int:
    if isinstance(lo, PAMap) and isinstance(hi, PAMap):
        period = lcm(lo.period, hi.period)
        return max(0, max(hi(u) - lo(u) + 1 for u in range(period)))
    widths = [w for w in (_width(lo, hi, u) for u in _units(lo, hi)) if w is not None]
    return max(0, max(widths, default=0))


_IDENTITY_FIELD = Field(_IDENTITY, _IDENTITY)
GLOBAL = Field(None, None)
