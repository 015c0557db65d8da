"""Pure window arithmetic: what conv, pool, transposed conv, adaptive pool and
interpolation read along one dim.

Per spatial dim of length ``n``, with kernel ``k``, stride ``s``, left padding
``p``, dilation ``d``, output index ``u`` reads the input window
``[L(u), H(u)]``:

* conv / pool:        ``L(u) = s*u - p``, ``H(u) = L(u) + d*(k-1)``
* transposed conv:    input ``i`` feeds outputs ``i*s - p + j*d``; ``L``/``H`` are
                      the extreme ``i`` over the taps ``j`` (period ``s``; a finite
                      table with empty windows where no tap lands)
* nearest / linear:   from the source index torch computes (float32, as torch)
* adaptive pool:      ``L(u) = floor(u*n/m)``, ``H(u) = ceil((u+1)*n/m) - 1``
* pad by ``a`` left:  ``L(u) = H(u) = u - a``
* causal scan:        ``L(u) = 0``, ``H(u) = u`` (cumsum, a recurrent layer), stored
                      as a table over the ``n`` positions (see `causal_window`)

Each function returns the two maps (and the output length where it follows
from the arguments).  `WindowParams` is what a windowed rule records on its
node (``node.meta["rfgraph.window"]``) so that later questions (the alignment
report) read the op's parameters instead of parsing them again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Optional, Sequence

import numpy as np

from .algebra import FiniteMap, Map, PAMap

__all__ = [
    "WindowParams",
    "META_KEY",
    "as_tuple",
    "conv_padding",
    "conv_window",
    "pool_window",
    "transposed_window",
    "transposed_gaps",
    "adaptive_window",
    "interpolate_window",
    "causal_window",
]

#: The ``node.meta`` key under which a windowed rule records its `WindowParams`.
META_KEY = "rfgraph.window"


@dataclass(frozen=True)
class WindowParams:
    """The parameters of one windowed op, per spatial axis it reads (last ``nd`` dims).

    ``kind`` is one of ``conv``, ``transposed``, ``pool``, ``adaptive``,
    ``interpolate``, ``pad``, ``pixel_shuffle``.  Padding is split into left and
    right (``padding="same"`` pads the extra pixel on the right).  ``size`` is
    the requested output size (adaptive pool, ``interpolate(size=...)``),
    ``scale`` the scale factors, ``mode`` the interpolation mode.

    >>> WindowParams("pool", kernel=(3, 3), stride=(2, 2)).nd
    2
    """

    kind: str
    kernel: tuple[int, ...] = ()
    stride: tuple[int, ...] = ()
    padding_left: tuple[int, ...] = ()
    padding_right: tuple[int, ...] = ()
    dilation: tuple[int, ...] = ()
    ceil_mode: bool = False
    output_padding: tuple[int, ...] = ()
    size: Optional[tuple[Optional[int], ...]] = None
    scale: Optional[tuple[float, ...]] = None
    mode: Optional[str] = None

    @property
    def nd(self) -> int:
        """Number of spatial axes the op reads."""
        for v in (self.kernel, self.padding_left, self.size, self.scale):
            if v:
                return len(v)
        return 0


def as_tuple(v: Any, n: int) -> tuple:
    """``v`` as an ``n``-tuple: a scalar repeated, a 1-sequence repeated, a sequence kept.

    >>> as_tuple(3, 2), as_tuple([2], 3), as_tuple((1, 2), 2)
    ((3, 3), (2, 2, 2), (1, 2))
    """
    if isinstance(v, (list, tuple)):
        if len(v) == 1 and n > 1:
            return tuple(v) * n
        return tuple(v)
    return (v,) * n


def conv_padding(padding: Any, i: int, k: int, d: int) -> tuple[int, int]:
    """``(left, right)`` padding of axis ``i`` for a conv ``padding`` argument (int, tuple, "same", "valid").

    >>> conv_padding("same", 0, 4, 1), conv_padding((1, 2), 1, 3, 1), conv_padding("valid", 0, 3, 1)
    ((1, 2), (2, 2), (0, 0))
    """
    if padding == "valid":
        return 0, 0
    if padding == "same":
        total = d * (k - 1)
        return total // 2, total - total // 2  # torch pads the extra pixel on the right
    p = as_tuple(padding, i + 1)[i]
    return p, p


def conv_window(n: int, k: int, s: int, p_left: int, p_right: int, d: int = 1) -> tuple[PAMap, PAMap, int]:
    """Window maps and output length of a convolution along one dim.

    >>> low, high, n_out = conv_window(10, 3, 2, 1, 1)
    >>> low(4), high(4), n_out
    (7, 9, 5)
    """
    n_out = (n + p_left + p_right - d * (k - 1) - 1) // s + 1
    return PAMap.affine(s, -p_left), PAMap.affine(s, -p_left + d * (k - 1)), n_out


def pool_window(
    n: int, k: int, s: int, p: int, d: int = 1, ceil_mode: bool = False
) -> tuple[PAMap, PAMap, int]:
    """Window maps and output length of max/avg pooling (torch's ``ceil_mode`` clamp included).

    >>> pool_window(6, 3, 2, 0, ceil_mode=True)[2], pool_window(6, 3, 2, 0)[2]
    (3, 2)
    """
    span = n + 2 * p - d * (k - 1) - 1
    n_out = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (n_out - 1) * s >= n + p:
        n_out -= 1  # the last window would start in the right padding
    return PAMap.affine(s, -p), PAMap.affine(s, -p + d * (k - 1)), n_out


def transposed_window(
    n: int, k: int, s: int, p: int, d: int = 1, output_padding: int = 0
) -> tuple[Map, Map, int]:
    """Window maps and output length of a transposed convolution.

    Output ``u`` receives input ``i`` through tap ``j`` when ``u = i*s - p + j*d``.
    The map has period ``s`` (``u -> u + s`` is ``i -> i + 1``).  When the taps
    cover fewer than ``s`` residues (kernel smaller than the stride, or a
    dilation sharing a factor with it) some outputs are reached by no tap and
    read nothing: the maps are then `FiniteMap` tables over ``[0, n_out)`` with
    ``None`` at those outputs (an empty window).

    >>> low, high, n_out = transposed_window(4, 3, 2, 1)
    >>> [(low(u), high(u)) for u in range(3)], n_out
    ([(0, 0), (0, 1), (1, 1)], 7)
    >>> low, high, n_out = transposed_window(3, 2, 3, 0)    # k=2 < s=3: every third output reads nothing
    >>> low, n_out
    (FiniteMap((0, 0, None, 1, 1, None, 2, 2)), 8)
    """
    n_out = (n - 1) * s - 2 * p + d * (k - 1) + output_padding + 1

    def hits(u: int) -> list[int]:
        return [(u + p - j * d) // s for j in range(k) if (u + p - j * d) % s == 0]

    if transposed_gaps(k, s, d):
        found = [hits(u) for u in range(max(n_out, 1))]
        return (FiniteMap(min(h) if h else None for h in found), FiniteMap(max(h) if h else None for h in found),
                n_out)
    lows, highs = [], []
    for u in range(s):
        here = hits(u)
        lows.append(min(here))
        highs.append(max(here))
    return PAMap(s, 1, lows), PAMap(s, 1, highs), n_out


def transposed_gaps(k: int, s: int, d: int) -> bool:
    """Whether a transposed conv leaves outputs that no tap reaches (its taps cover fewer than ``s`` residues).

    >>> transposed_gaps(3, 2, 1), transposed_gaps(1, 2, 1)
    (False, True)
    """
    return len({j * d % s for j in range(k)}) < s


def adaptive_window(n: int, m: int) -> tuple[PAMap, PAMap]:
    """Adaptive pooling ``n -> m``: ``[floor(u n / m), ceil((u+1) n / m) - 1]``.

    >>> low, high = adaptive_window(5, 3)
    >>> [(low(u), high(u)) for u in range(3)]
    [(0, 1), (1, 3), (3, 4)]
    """
    g = math.gcd(n, m)
    period, advance = m // g, n // g
    lows = [(u * n) // m for u in range(period)]
    highs = [-(-((u + 1) * n) // m) - 1 for u in range(period)]
    return PAMap(period, advance, lows), PAMap(period, advance, highs)


def _fit(
    values_lo: Sequence[int], values_hi: Sequence[int], n_in: int, n_out: int, ratio: Optional[tuple[int, int]] = None
) -> tuple[PAMap, PAMap]:
    """Periodic-affine maps through the given tables on ``[0, n_out)``.

    Tries the natural period first (``n_out / gcd``, or that of ``ratio =
    (input step, output step)``, e.g. ``(n_in - 1, n_out - 1)`` with
    ``align_corners=True``) and falls back to the whole table (period
    ``n_out``, advance ``n_in``): exact on every index that exists.
    """
    num, den = ratio if ratio is not None and ratio[1] > 0 else (n_in, n_out)
    g = math.gcd(num, den)
    period, advance = den // g, num // g

    def fit(values):
        table = values[:period]
        if all(values[u] == table[u % period] + (u // period) * advance for u in range(n_out)):
            return PAMap(period, advance, table)
        return PAMap(n_out, n_in, values)

    return fit(values_lo), fit(values_hi)


def interpolate_window(
    n_in: int, n_out: int, mode: str, align_corners: Optional[bool], scale: Optional[float]
) -> tuple[PAMap, PAMap]:
    """Source windows of ``F.interpolate`` along one dim: nearest from the index torch computes (float32,
    whatever the tensor's dtype), linear / cubic from the exact source index (see below).

    ``scale`` is the user's scale factor when torch is given one (it then uses
    ``1/scale`` instead of ``n_in/n_out``).  Windows are unclipped: border
    clamping is a border effect, not part of the theoretical field.

    >>> low, high = interpolate_window(4, 8, "bilinear", False, None)
    >>> [(low(u), high(u)) for u in range(3)]
    [(-1, 0), (0, 1), (0, 1)]
    """
    u = np.arange(n_out, dtype=np.int64)
    f32 = np.float32
    if mode in ("nearest", "nearest-exact"):
        if n_out == n_in:
            idx = u
        elif n_out == 2 * n_in and mode == "nearest":
            idx = u >> 1
        else:
            ratio = f32(1.0 / scale) if scale else f32(n_in) / f32(n_out)
            src = (u.astype(f32) + f32(0.5)) * ratio if mode == "nearest-exact" else u.astype(f32) * ratio
            idx = np.floor(src).astype(np.int64)
        return _fit(idx.tolist(), idx.tolist(), n_in, n_out, _scale_ratio(scale))
    cubic = mode == "bicubic"
    # The exact source index, not torch's float arithmetic: where it is an integer k, float rounding gives
    # k - eps or k + eps, so a neighbour gets a weight of ~1e-8 (float32, depending on whether the CPU
    # kernel fuses the multiply-add) or ~1e-17 (float64) or none: rounding noise, not a dependency (the
    # probe and the tests' back-propagation draw the same line).  Elsewhere the exact source is at least
    # 1 / (2 n_out) from an integer, so floor and ceil are torch's.
    ratio = _scale_ratio(scale)
    if align_corners:
        step = Fraction(n_in - 1, n_out - 1) if n_out > 1 else Fraction(0)
        srcs = [step * v for v in range(n_out)]
    else:
        step = Fraction(*ratio) if ratio else Fraction(n_in, n_out)
        srcs = [step * (2 * v + 1) / 2 - Fraction(1, 2) for v in range(n_out)]
    lo, hi = [], []
    for x in srcs:
        base = math.floor(x)
        moving = x != base
        lo.append(base - 1 if moving and cubic else base)
        hi.append(base + (2 if cubic else 1) if moving else base)
    return _fit(lo, hi, n_in, n_out, (n_in - 1, n_out - 1) if align_corners else ratio)


def _scale_ratio(scale: Optional[float]) -> Optional[tuple[int, int]]:
    """``(input step, output step)`` of a user scale factor (torch then steps by ``1/scale``, not ``n_in/n_out``)."""
    if not scale:
        return None
    fr = Fraction(scale).limit_denominator(1 << 16)
    return fr.denominator, fr.numerator


def causal_window(n: int) -> tuple[PAMap, PAMap]:
    """``(L, H)`` of a causal scan over ``n`` positions (``cumsum``, a unidirectional recurrent layer):
    output ``u`` reads ``0 .. u``.

    ``L`` is stored as a table with period ``n`` and advance ``n`` (exact on every position that exists),
    so that both maps have slope 1: the field's summaries (``rf`` = the last unit's) are those over the
    tensor, and it merges with ordinary stride-1 paths.

    >>> low, high = causal_window(4)
    >>> [low(u) for u in range(4)], [high(u) for u in range(4)]
    ([0, 0, 0, 0], [0, 1, 2, 3])
    """
    return PAMap(n, n, (0,) * n), PAMap.identity()
