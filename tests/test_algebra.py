"""Unit and property tests of the periodic-affine algebra (`PAMap`, `Field`).

Every expected value is either derived by hand in the test's docstring or
checked against direct evaluation of the maps on integer points.
"""

from __future__ import annotations

import copy
import pickle
from fractions import Fraction
from math import lcm

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from rfgraph.algebra import GLOBAL, Field, PAMap, SlopeMismatch

# ---------------------------------------------------------------------------
# strategies
# ---------------------------------------------------------------------------


@st.composite
def pamaps(draw, max_period: int = 6, monotone: bool = False) -> PAMap:
    """Any periodic-affine map (optionally non-decreasing)."""
    period = draw(st.integers(1, max_period))
    if monotone:
        # non-negative steps f(u+1) - f(u) over one period; the last one closes the period
        steps = draw(st.lists(st.integers(0, 4), min_size=period, max_size=period))
        table = [draw(st.integers(-20, 20))]
        for step in steps[:-1]:
            table.append(table[-1] + step)
        return PAMap(period, sum(steps), table)
    advance = draw(st.integers(-12, 12))
    table = draw(st.lists(st.integers(-30, 30), min_size=period, max_size=period))
    return PAMap(period, advance, table)


@st.composite
def same_slope(draw, n: int = 2):
    """``n`` maps with one common slope (different periods allowed)."""
    slope = Fraction(draw(st.integers(-6, 6)), draw(st.integers(1, 4)))
    out = []
    for _ in range(n):
        mult = draw(st.integers(1, 3))
        period = slope.denominator * mult
        table = draw(st.lists(st.integers(-30, 30), min_size=period, max_size=period))
        out.append(PAMap(period, slope.numerator * mult, table))
    return tuple(out)


POINTS = range(-25, 26)


def _brute_min_period(f: PAMap) -> int:
    """Smallest p >= 1 with f(u + p) - f(u) constant and p * slope integral, checked on many points."""
    for p in range(1, f.period + 1):
        step = f.slope * p
        if step.denominator != 1:
            continue
        if all(f(u + p) - f(u) == step for u in range(-3 * f.period, 3 * f.period)):
            return p
    raise AssertionError("no period found")


# ---------------------------------------------------------------------------
# PAMap: constructors and evaluation (hand-derived)
# ---------------------------------------------------------------------------


def test_affine_evaluation():
    """L(u) = 2u - 1 (stride 2, padding 1): L(0) = -1, L(3) = 5, L(-2) = -5."""
    f = PAMap.affine(2, -1)
    assert (f(0), f(3), f(-2)) == (-1, 5, -5)
    assert f.slope == Fraction(2)
    assert f.period == 1 and f.advance == 2 and f.table == (-1,)


def test_constant_and_identity():
    """constant(7)(u) = 7 for all u, slope 0; identity(u) = u, slope 1."""
    c = PAMap.constant(7)
    assert [c(u) for u in (-3, 0, 9)] == [7, 7, 7]
    assert c.slope == 0
    i = PAMap.identity()
    assert [i(u) for u in (-3, 0, 9)] == [-3, 0, 9]
    assert i == PAMap.affine(1, 0)


def test_floor_and_ceil_div():
    """floor(u/2): -1 -> -1, 0 -> 0, 1 -> 0, 3 -> 1; ceil((u - 1)/3): u=0 -> 0, 1 -> 0, 2 -> 1, 4 -> 1, 5 -> 2."""
    f = PAMap.floor_div(2)
    assert [f(u) for u in (-1, 0, 1, 3)] == [-1, 0, 0, 1]
    assert f.period == 2 and f.advance == 1 and f.slope == Fraction(1, 2)
    g = PAMap.ceil_div(3, offset=-1)
    assert [g(u) for u in (0, 1, 2, 4, 5)] == [0, 0, 1, 1, 2]
    # floor((3u + 1) / 2): u=0 -> 0, 1 -> 2, 2 -> 3, 3 -> 5
    h = PAMap.floor_div(2, offset=1, numerator=3)
    assert [h(u) for u in range(4)] == [0, 2, 3, 5]
    assert h.slope == Fraction(3, 2)


@pytest.mark.parametrize("divisor", [0, -2])
def test_floor_div_rejects_bad_divisor(divisor):
    with pytest.raises(ValueError):
        PAMap.floor_div(divisor)
    with pytest.raises(ValueError):
        PAMap.ceil_div(divisor)


@pytest.mark.parametrize("period, table", [(0, ()), (2, (1,)), (1, (1, 2))])
def test_constructor_rejects_bad_tables(period, table):
    with pytest.raises(ValueError):
        PAMap(period, 1, table)


def test_period_is_reduced_on_construction():
    """(period 4, advance 8, table 0,2,4,6) is u -> 2u: reduces to (1, 2, (0,)).

    (period 4, advance 2, table 0,0,1,1) is floor(u/2): reduces to (2, 1, (0, 0)).
    (period 2, advance 1, table 0,1) is not reducible: p=1 would need advance 1/2.
    """
    assert PAMap(4, 8, (0, 2, 4, 6)) == PAMap.affine(2, 0)
    assert PAMap(4, 8, (0, 2, 4, 6)).period == 1
    g = PAMap(4, 2, (0, 0, 1, 1))
    assert (g.period, g.advance, g.table) == (2, 1, (0, 0))
    assert PAMap(2, 1, (0, 1)).period == 2


def test_from_values_and_values():
    f = PAMap.from_values([0, 0, 1], 2)
    assert f.values(6) == [0, 0, 1, 2, 2, 3]
    assert f.values(3, start=-3) == [-2, -2, -1]


def test_is_monotone():
    """floor(u/2) is non-decreasing; table (0, 3) with advance 2 gives f(1)=3 > f(2)=2: not monotone."""
    assert PAMap.floor_div(2).is_monotone()
    assert not PAMap(2, 2, (0, 3)).is_monotone()
    assert not PAMap.affine(-1, 0).is_monotone()


def test_immutable():
    f = PAMap.affine(2, 1)
    with pytest.raises(AttributeError):
        f.period = 3
    with pytest.raises(AttributeError):
        Field.identity().lo = f


def test_compose_hand_derived():
    """Conv (s=2, p=1): L(u) = 2u - 1 after nearest x2: floor(u/2) -> 2*floor(u/2) - 1 = (-1, -1) + 2 per 2.

    Upsample after conv: floor((2u - 1)/2) = u - 1 (period 1).
    """
    conv, up = PAMap.affine(2, -1), PAMap.floor_div(2)
    assert conv.compose(up) == PAMap(2, 2, (-1, -1))
    assert up.compose(conv) == PAMap.affine(1, -1)


def test_compose_with_constant_inner():
    """f o const(c) is const(f(c)): advance 0 gives k = 1."""
    f = PAMap.floor_div(3, offset=1)
    assert f.compose(PAMap.constant(5)) == PAMap.constant(2)


def test_shift():
    f = PAMap.floor_div(2)
    assert f.shift(0) is f
    assert f.shift(3).values(4) == [3, 3, 4, 4]


def test_str_and_repr():
    """str gives a short formula; repr round-trips through eval."""
    assert str(PAMap.affine(2, -1)) == "2u - 1"
    assert str(PAMap.affine(1, 3)) == "u + 3"
    assert str(PAMap.affine(1, 0)) == "u"
    assert str(PAMap.constant(4)) == "4"
    assert str(PAMap.floor_div(2)) == "[0, 0] + 1*(u//2)"
    f = PAMap(3, 2, (0, 0, 1))
    assert eval(repr(f), {"PAMap": PAMap}) == f


def test_minimum_maximum_hand_derived():
    """a(u) = 2u and b = (period 3, advance 6, table (-1, 5, 4)), both of slope 2.

    u:    0   1  2  3   4   5
    a:    0   2  4  6   8  10
    b:   -1   5  4  5  11  10
    min: -1   2  4  5   8  10
    max:  0   5  4  6  11  10
    """
    a = PAMap.affine(2, 0)
    b = PAMap(3, 6, (-1, 5, 4))
    assert a.minimum(b).values(6) == [-1, 2, 4, 5, 8, 10]
    assert a.maximum(b).values(6) == [0, 5, 4, 6, 11, 10]


def test_min_of_unequal_slopes_is_refused():
    with pytest.raises(SlopeMismatch, match="slopes 2 and 1"):
        PAMap.affine(2, 0).minimum(PAMap.affine(1, 0))


# ---------------------------------------------------------------------------
# PAMap: properties
# ---------------------------------------------------------------------------


@given(pamaps(), pamaps())
def test_compose_equals_direct_evaluation(f, g):
    h = f.compose(g)
    assert all(h(u) == f(g(u)) for u in POINTS)


@given(pamaps(), pamaps(), pamaps())
def test_compose_is_associative(f, g, h):
    assert f.compose(g).compose(h) == f.compose(g.compose(h))


@given(pamaps(), pamaps())
def test_slope_of_composition_is_product(f, g):
    assert f.compose(g).slope == f.slope * g.slope


@given(pamaps())
def test_identity_is_neutral(f):
    i = PAMap.identity()
    assert f.compose(i) == f
    assert i.compose(f) == f


@given(pamaps(monotone=True), pamaps(monotone=True))
def test_composition_of_monotone_maps_is_monotone(f, g):
    assert f.is_monotone() and g.is_monotone()
    assert f.compose(g).is_monotone()


@given(pamaps())
def test_period_is_minimal(f):
    assert f.period == _brute_min_period(f)


@given(pamaps(max_period=4), st.integers(2, 4))
def test_normal_form_equality_and_hash(f, reps):
    """A map given over ``reps`` periods normalises to the same object (equal, same hash)."""
    table = [f(u) for u in range(f.period * reps)]
    g = PAMap(f.period * reps, f.advance * reps, table)
    assert g == f
    assert hash(g) == hash(f)
    assert (g.period, g.advance, g.table) == (f.period, f.advance, f.table)
    assert len({f, g}) == 1


@given(pamaps())
def test_repr_and_pickle_round_trip(f):
    assert eval(repr(f), {"PAMap": PAMap}) == f
    g = pickle.loads(pickle.dumps(f))
    assert g == f and hash(g) == hash(f)
    assert copy.deepcopy(f) == f


@given(same_slope())
def test_min_max_pointwise(pair):
    a, b = pair
    lo, hi = a.minimum(b), a.maximum(b)
    assert all(lo(u) == min(a(u), b(u)) for u in POINTS)
    assert all(hi(u) == max(a(u), b(u)) for u in POINTS)
    assert lo.slope == a.slope == hi.slope


@given(same_slope())
def test_min_max_commutative(pair):
    a, b = pair
    assert a.minimum(b) == b.minimum(a)
    assert a.maximum(b) == b.maximum(a)


@given(pamaps())
def test_min_max_idempotent(f):
    assert f.minimum(f) == f
    assert f.maximum(f) == f


@given(same_slope(3))
def test_min_max_associative(triple):
    a, b, c = triple
    assert a.minimum(b).minimum(c) == a.minimum(b.minimum(c))
    assert a.maximum(b).maximum(c) == a.maximum(b.maximum(c))


@given(same_slope(), pamaps(monotone=True))
def test_composition_distributes_over_min_for_monotone_outer(pair, g):
    """For non-decreasing ``g``: g(min(a, b)) = min(g(a), g(b)) (why min/max merges commute with later ops)."""
    a, b = pair
    assert g.compose(a.minimum(b)) == g.compose(a).minimum(g.compose(b))
    assert g.compose(a.maximum(b)) == g.compose(a).maximum(g.compose(b))


# ---------------------------------------------------------------------------
# Field
# ---------------------------------------------------------------------------


def test_identity_field():
    """The input itself: rf 1, stride 1, start 0, center 0."""
    f = Field.identity()
    assert (f.rf, f.rf_min, f.rf_path_min, f.stride, f.start, f.center(0)) == (1, 1, 1, 1, 0, 0)
    assert not f.is_global


def test_field_through_conv():
    """Conv k=3, s=2, p=1 on the input: lo(u) = 2u - 1, hi(u) = 2u + 1, rf 3, stride 2, start -1, center(u) = 2u."""
    f = Field.identity().through(PAMap.affine(2, -1), PAMap.affine(2, 1))
    assert (f.rf, f.rf_min, f.stride, f.start) == (3, 3, 2, -1)
    assert f.center(0) == 0 and f.center(3) == 6


def test_field_through_even_kernel_has_half_center():
    """Conv k=2, s=1, p=0: lo(u) = u, hi(u) = u + 1, center(u) = u + 1/2."""
    f = Field.identity().through(PAMap.affine(1, 0), PAMap.affine(1, 1))
    assert f.center(0) == Fraction(1, 2)
    assert f.rf == 2


def test_field_rf_varies_over_period():
    """Transposed conv k=3, s=2, p=0: even output u=2i reads inputs i-1..i (2 taps), odd 2i+1 reads i only.

    lo = (-1, 0) + 1 per 2, hi = (0, 0) + 1 per 2: rf 2 (even u), rf_min 1 (odd u), stride 1/2.
    """
    lo, hi = PAMap(2, 1, (-1, 0)), PAMap(2, 1, (0, 0))
    f = Field.identity().through(lo, hi)
    assert (f.rf, f.rf_min, f.stride, f.start) == (2, 1, Fraction(1, 2), -1)


def test_field_merge_and_paths():
    """Merge of a 3-wide and a 5-wide centered field at stride 1: rf 5, rf_path_min 3, aligned (shift 0).

    a: [u-1, u+1], b: [u-2, u+2]; union [u-2, u+2]; centers both u.
    """
    a = Field(PAMap.affine(1, -1), PAMap.affine(1, 1))
    b = Field(PAMap.affine(1, -2), PAMap.affine(1, 2))
    m = a.merge(b)
    assert (m.rf, m.rf_min, m.rf_path_min) == (5, 5, 3)
    assert m == b.merge(a)
    assert a.max_center_shift(b) == 0
    assert m.merge(m) == m


def test_field_center_shift():
    """a: [u-1, u+1] center u; c: [u, u+1] center u + 1/2: shift 1/2."""
    a = Field(PAMap.affine(1, -1), PAMap.affine(1, 1))
    c = Field(PAMap.affine(1, 0), PAMap.affine(1, 1))
    assert a.max_center_shift(c) == Fraction(1, 2)
    assert c.max_center_shift(a) == Fraction(1, 2)


def test_global_field():
    """GLOBAL absorbs: through() and merge() keep it; summaries are None."""
    assert GLOBAL.is_global
    assert GLOBAL.through(PAMap.affine(2, 0), PAMap.affine(2, 1)) is GLOBAL
    assert Field.identity().merge(GLOBAL).is_global
    assert GLOBAL.merge(Field.identity()).is_global
    assert (GLOBAL.rf, GLOBAL.rf_min, GLOBAL.rf_path_min, GLOBAL.stride, GLOBAL.start, GLOBAL.center()) == (None,) * 6
    assert GLOBAL.max_center_shift(Field.identity()) == 0
    assert repr(GLOBAL) == "Field(GLOBAL)"


def test_field_empty_window_width_is_zero():
    """An output reading no input (L = H + 1) has width 0, never negative."""
    f = Field(PAMap.affine(1, 1), PAMap.affine(1, 0))
    assert f.rf == 0 and f.rf_min == 0


@st.composite
def conv_layers(draw):
    k = draw(st.integers(1, 7))
    s = draw(st.integers(1, 3))
    d = draw(st.integers(1, 3))
    p = draw(st.integers(0, 3))
    return k, s, d, p


@given(st.lists(conv_layers(), min_size=1, max_size=6))
def test_field_through_conv_stack_matches_recursion(layers):
    """Through conv windows L(u) = s u - p, H(u) = L(u) + d (k - 1):
    r_out = r_in + d (k - 1) j_in, j_out = j_in s, start_out = start_in - p j_in."""
    f = Field.identity()
    r, j, start = 1, 1, 0
    for k, s, d, p in layers:
        f = f.through(PAMap.affine(s, -p), PAMap.affine(s, -p + d * (k - 1)))
        r, j, start = r + d * (k - 1) * j, j * s, start - p * j
    assert (f.rf, f.rf_min, f.stride, f.start) == (r, r, j, start)


@given(same_slope(4))
def test_field_merge_is_pointwise_union(maps):
    a = Field(maps[0].minimum(maps[1]), maps[0].maximum(maps[1]))
    b = Field(maps[2].minimum(maps[3]), maps[2].maximum(maps[3]))
    m = a.merge(b)
    assert all(m.lo(u) == min(a.lo(u), b.lo(u)) and m.hi(u) == max(a.hi(u), b.hi(u)) for u in POINTS)
    assert m.rf_path_min == min(a.rf, b.rf)
    assert m.rf >= max(a.rf, b.rf)
    assert m.rf_min >= max(a.rf_min, b.rf_min)
    period = lcm(a.lo.period, a.hi.period, b.lo.period, b.hi.period)
    assert a.max_center_shift(b) == max(abs(a.center(u) - b.center(u)) for u in range(period))


def test_field_equality_hash_repr():
    a = Field(PAMap.affine(1, -1), PAMap.affine(1, 1))
    b = Field(PAMap.affine(1, -1), PAMap.affine(1, 1))
    assert a == b and hash(a) == hash(b)
    assert repr(a) == "Field(lo=u - 1, hi=u + 1)"
    assert a != Field.identity()


@settings(max_examples=30)
@given(pamaps(max_period=3), st.integers(-5, 5))
def test_shift_matches_evaluation(f, delta):
    g = f.shift(delta)
    assert all(g(u) == f(u) + delta for u in POINTS)


@st.composite
def monotone_windows(draw):
    """Non-decreasing ``L <= H`` of one common slope (a window op: every output reads something)."""
    low = draw(pamaps(max_period=4, monotone=True))
    extra = draw(st.lists(st.integers(0, 3), min_size=low.period, max_size=low.period))
    # H = L + a non-negative periodic width (plain L when that is not non-decreasing)
    table = [low(u) + extra[u] for u in range(low.period)]
    high = PAMap(low.period, low.advance, table)
    if not high.is_monotone():
        high = low
    return low, high


@settings(max_examples=60)
@given(monotone_windows(), monotone_windows())
def test_through_is_the_hull_of_the_union(field_maps, window):
    """For a field [lo(v), hi(v)] (non-decreasing, lo <= hi) read through windows [L(u), H(u)]:
    the union over v in [L(u), H(u)] of [lo(v), hi(v)] has hull [lo(L(u)), hi(H(u))] (brute force)."""
    lo, hi = field_maps
    low, high = window
    f = Field(lo, hi).through(low, high)
    for u in range(-10, 11):
        vs = range(low(u), high(u) + 1)
        assert f.lo(u) == min(lo(v) for v in vs)
        assert f.hi(u) == max(hi(v) for v in vs)


@settings(max_examples=60)
@given(pamaps(max_period=4), monotone_windows())
def test_through_non_monotone_field_takes_the_window_extremes(f, window):
    """A field whose lo / hi are not non-decreasing (left by a transposed conv with out-of-order taps) read
    through a window: lo is the minimum and hi the maximum over the whole window (brute force)."""
    low, high = window
    g = Field(f, f).through(low, high)
    for u in range(-10, 11):
        vs = range(low(u), high(u) + 1)
        assert g.lo(u) == min(f(v) for v in vs)
        assert g.hi(u) == max(f(v) for v in vs)


# ---------------------------------------------------------------------------
# FiniteMap: exact tables over [0, n), holes (units that read nothing)
# ---------------------------------------------------------------------------

from rfgraph.algebra import DomainMismatch, FiniteMap  # noqa: E402


@st.composite
def finite_maps(draw, size: int, monotone: bool = False, holes: bool = True) -> FiniteMap:
    """A table over ``[0, size)``; ``None`` (a unit reading nothing) allowed when ``holes``."""
    if monotone:
        steps = draw(st.lists(st.integers(0, 3), min_size=size, max_size=size))
        values, v = [], draw(st.integers(-10, 10))
        for step in steps:
            values.append(v)
            v += step
    else:
        values = draw(st.lists(st.integers(-15, 15), min_size=size, max_size=size))
    if holes:
        mask = draw(st.lists(st.booleans(), min_size=size, max_size=size))
        values = [None if m else v for v, m in zip(values, mask)]
    return FiniteMap(values)


@st.composite
def domain_maps(draw, size: int, monotone: bool = False):
    """A map read over ``[0, size)``: a `PAMap` or a `FiniteMap` of that size."""
    if draw(st.booleans()):
        return draw(pamaps(monotone=monotone))
    return draw(finite_maps(size, monotone=monotone, holes=not monotone))


def _ev(f, x):
    return None if x is None else f(x)


def test_finite_map_hand_derived():
    """f = (3, 5, None, 6): f(2) reads nothing, outside [0, 4) too; slope (6 - 3) / 3 = 1."""
    f = FiniteMap([3, 5, None, 6])
    assert (f(0), f(1), f(2), f(3), f(-1), f(4)) == (3, 5, None, 6, None, None)
    assert f.size == 4 and f.has_holes and f.defined() == [0, 1, 3]
    assert f.slope == 1 and f.is_monotone() and f.periodic_fit() is None
    assert FiniteMap([4, 2]).is_monotone() is False
    assert f.shift(2) == FiniteMap([5, 7, None, 8])
    assert f == FiniteMap((3, 5, None, 6)) and hash(f) == hash(FiniteMap([3, 5, None, 6])) and f != PAMap.identity()
    with pytest.raises(AttributeError):
        f.table = (1,)
    with pytest.raises(ValueError):
        FiniteMap([])
    assert eval(repr(f)) == f and pickle.loads(pickle.dumps(f)) == f and copy.deepcopy(f) == f
    assert str(f) == "finite[3, 5, ., 6] over 4"


def test_finite_periodic_fit_and_mean_slope():
    """(0, 0, 1, 1, 2, 2, 3) repeats with period 2, advance 1: slope 1/2 exactly; (0, 1, 3, 4, 6) has no
    period <= 2 (differences 1, 2, 1, 2 fit period 2: 0->3, 1->4, 3->6: yes, T = 2, M = 3); (0, 1, 3, 7) has
    none: its mean slope is (7 - 0) / 3.  Holes repeating with the period are part of the pattern."""
    assert FiniteMap([0, 0, 1, 1, 2, 2, 3]).periodic_fit() == (2, 1)
    assert FiniteMap([0, 0, 1, 1, 2, 2, 3]).slope == Fraction(1, 2)
    assert FiniteMap([0, 1, 3, 4, 6]).periodic_fit() == (2, 3)
    assert FiniteMap([0, 1, 3, 7]).periodic_fit() is None and FiniteMap([0, 1, 3, 7]).slope == Fraction(7, 3)
    assert FiniteMap([0, None, 1, None, 2]).periodic_fit() == (2, 1)
    assert FiniteMap([None, None]).slope == 0 and FiniteMap([5]).slope == 0


def test_merge_of_unequal_slopes_hand_derived():
    """Bilinear align_corners=True 22 -> 85 after a stride-4 conv vs a direct path.

    a(u) = 2u + 1 and b(u) = floor(7u / 3): b is below a up to u = 5 (b(5) = 11 = a(5)), above from u = 6
    (b(6) = 14 > 13).  min over [0, 8) = (0, 2, 4, 7, 9, 11, 13, 15); max = (1, 3, 5, 7, 9, 11, 14, 16).
    Without a length the merge is refused, as before."""
    a, b = PAMap.affine(2, 1), PAMap.floor_div(3, 0, 7)
    assert a.minimum(b, size=8) == FiniteMap([0, 2, 4, 7, 9, 11, 13, 15])
    assert a.maximum(b, size=8) == FiniteMap([1, 3, 5, 7, 9, 11, 14, 16])
    assert a.minimum(b, size=5) == b and a.maximum(b, size=5) == a  # one operand throughout: stays periodic
    with pytest.raises(SlopeMismatch):
        a.minimum(b)
    with pytest.raises(DomainMismatch):
        FiniteMap([1, 2]).minimum(FiniteMap([1, 2, 3]))


def test_field_merge_and_summaries_over_a_finite_domain():
    """Field(2u + 1 .. 2u + 3) merged with Field(floor(7u/3) .. floor(7u/3) + 1) over 8 units:
    lo = (0, 2, 4, 7, 9, 11, 13, 15); hi = max(2u + 3, floor(7u/3) + 1) = 2u + 3 on [0, 8) (equal at u = 7):
    as a map that is the periodic operand, but in a field with a finite lo it is tabulated too.  Widths 4, 4, 4, 3, 3, 3, 3, 3: rf 4, rf_min 3.  lo has no period T <= 4
    (differences 2, 2, 3, 2, 2, 2, 2), so the stride is irregular, its mean slope (15 - 0) / 7.  Centres
    (lo + hi) / 2 = 1.5, 3.5, 5.5, then 2u + 2 = f's: the largest shift from f is 1/2."""
    f = Field(PAMap.affine(2, 1), PAMap.affine(2, 3))
    g = Field(PAMap.floor_div(3, 0, 7), PAMap.floor_div(3, 3, 7))
    m = f.merge(g, size=8)
    assert m.lo == FiniteMap([0, 2, 4, 7, 9, 11, 13, 15])
    assert m.hi == FiniteMap.tabulate(PAMap.affine(2, 3), 8)  # one domain for the whole field
    assert f.hi.maximum(g.hi, size=8) == f.hi  # as maps: the periodic operand, kept
    assert (m.rf, m.rf_min, m.stride, m.start, m.size) == (4, 3, Fraction(15, 7), 0, 8)
    assert m.is_finite and not m.stride_regular and f.stride_regular
    assert m.center(3) == 8 and m.center(0) == Fraction(3, 2) and m.max_center_shift(f) == Fraction(1, 2)


def test_field_through_holes_hand_derived():
    """A transposed conv k=1, s=2 (L = H = (0, None, 1, None, 2)) then a conv k=2: unit v reads w(v), w(v+1),
    exactly one of which reads something: lo = hi = (0, 1, 1, 2) over 4 units.  A conv k=1 keeps the holes."""
    low = FiniteMap([0, None, 1, None, 2])
    t = Field.identity().through(low, low)
    assert t.lo == low and t.rf_min == 0 and t.rf == 1 and t.center(1) is None and t.start == 0
    c = t.through(PAMap.identity(), PAMap.affine(1, 1), size=4)
    assert c.lo == FiniteMap([0, 1, 1, 2]) == c.hi
    assert t.through(PAMap.identity(), PAMap.identity(), size=5) == t
    # a unit whose window lies only on holes or outside the domain reads nothing
    assert t.through(PAMap.affine(1, 5), PAMap.affine(1, 5), size=2).lo == FiniteMap([None, None])
    # an index / broadcast (constant window) gives a constant periodic map where it reads something
    assert t.through(PAMap.constant(2), PAMap.constant(2)).lo == PAMap.constant(1)


@settings(max_examples=200, deadline=None)
@given(st.data(), st.integers(1, 9), st.integers(1, 9), st.integers(1, 9))
def test_composition_is_associative_and_agrees_with_evaluation(data, n1, n2, n3):
    """(f o g) o h == f o (g o h) on h's domain [0, n3), and both equal f(g(h(u))) point by point
    (``None`` where some stage reads nothing or leaves a finite map's domain).  ``h`` reads inside
    ``f o g``'s domain [0, n2) (outside it, a finite table has no positions while a periodic map extends)."""
    f = data.draw(domain_maps(n1))
    g = data.draw(domain_maps(n2))
    if data.draw(st.booleans()):
        h = FiniteMap(data.draw(st.lists(st.none() | st.integers(0, n2 - 1), min_size=n3, max_size=n3)))
    else:
        h = data.draw(pamaps())
        assume(all(0 <= h(u) < n2 for u in range(n3)))
    left = f.compose(g, size=n2).compose(h, size=n3)
    right = f.compose(g.compose(h, size=n3), size=n3)
    for u in range(n3):
        want = _ev(f, _ev(g, h(u)))
        assert left(u) == right(u) == want


@settings(max_examples=200, deadline=None)
@given(st.data(), st.integers(1, 12))
def test_merge_is_commutative_associative_and_pointwise(data, n):
    """min / max over [0, n) of periodic and finite maps: commutative, associative, equal to the pointwise
    extreme with holes as the neutral element."""
    a, b, c = (data.draw(domain_maps(n)) for _ in range(3))
    for op, name in ((min, "minimum"), (max, "maximum")):
        ab = getattr(a, name)(b, size=n)
        ba = getattr(b, name)(a, size=n)
        abc = getattr(ab, name)(c, size=n)
        a_bc = getattr(a, name)(getattr(b, name)(c, size=n), size=n)
        for u in range(n):
            vals = [v for v in (a(u), b(u)) if v is not None]
            assert ab(u) == ba(u) == (op(vals) if vals else None)
            vals3 = [v for v in (a(u), b(u), c(u)) if v is not None]
            assert abc(u) == a_bc(u) == (op(vals3) if vals3 else None)


@settings(max_examples=200, deadline=None)
@given(st.data(), st.integers(1, 10), st.integers(1, 10), st.integers(1, 3))
def test_field_through_agrees_with_brute_force(data, n_in, n_out, step):
    """Reading a finite (or periodic) field through conv-like windows [s u - p, s u - p + step (k - 1)]
    (every ``step``-th position): the extreme over the read positions inside the domain, skipping holes."""
    lo = data.draw(finite_maps(n_in, monotone=data.draw(st.booleans())))
    f = Field(lo, lo.shift(data.draw(st.integers(0, 3))))
    s, p, k = data.draw(st.integers(1, 3)), data.draw(st.integers(0, 3)), data.draw(st.integers(1, 4))
    low, high = PAMap.affine(s, -p), PAMap.affine(s, -p + step * (k - 1))
    out = f.through(low, high, step, size=n_out)
    for u in range(n_out):
        reads = [v for v in range(low(u), high(u) + 1, step) if f.lo(v) is not None]
        assert out.lo(u) == (min(f.lo(v) for v in reads) if reads else None)
        assert out.hi(u) == (max(f.hi(v) for v in reads) if reads else None)


@settings(max_examples=100, deadline=None)
@given(st.data(), st.integers(1, 12))
def test_monotone_stays_monotone_and_periodic_fit_holds(data, n):
    """Compositions and merges of non-decreasing maps without holes are non-decreasing (with holes they
    need not be: max((1, None), (0, 0)) = (1, 0)); a periodic fit (T, M) of a table is exact:
    f(u + T) = f(u) + M on the domain."""
    a, b = data.draw(domain_maps(n, monotone=True)), data.draw(domain_maps(n, monotone=True))
    for m in (a.minimum(b, size=n), a.maximum(b, size=n), a.compose(b, size=n)):
        values = [v for v in (m(u) for u in range(n)) if v is not None]
        assert values == sorted(values)
        if isinstance(m, FiniteMap) and m.periodic_fit() is not None:
            T, M = m.periodic_fit()
            assert all(m(u + T) is None if m(u) is None else m(u + T) == m(u) + M for u in range(n - T))


def test_merge_whose_lo_and_hi_come_from_operands_of_different_slopes():
    """Found by the U-Net fuzzing: ``a`` sees ``[u - 1, u + 1]`` (slope 1), ``b`` sees ``[2u - 1, 2u + 2]``
    (slope 2).  Over ``[0, 4)`` the union is ``lo = min(u - 1, 2u - 1) = u - 1`` (``a``'s map, periodic)
    and ``hi = max(u + 1, 2u + 2) = 2u + 2`` (``b``'s map, periodic): widths ``u + 4`` = 4, 5, 6, 7.
    Keeping both periodic maps made ``rf`` the width over one common period (1 unit): 4, not 7.  The
    field is now stored over its domain: rf 7, rf_min 4, irregular stride (lo slope 1, hi slope 2)."""
    a = Field(PAMap.affine(1, -1), PAMap.affine(1, 1))
    b = Field(PAMap.affine(2, -1), PAMap.affine(2, 2))
    m = a.merge(b, size=4)
    assert [m.lo(u) for u in range(4)] == [-1, 0, 1, 2] and [m.hi(u) for u in range(4)] == [2, 4, 6, 8]
    assert (m.rf, m.rf_min, m.start, m.stride_regular, m.is_finite) == (7, 4, -1, False, True)
    # equal slopes keep the periodic-affine fast path
    assert not a.merge(Field(PAMap.affine(1, -3), PAMap.affine(1, 0)), size=4).is_finite
