"""`rfgraph.windows`: the pure window arithmetic, checked against hand derivations and against torch.

Notation: ``n`` input length, ``k`` kernel, ``s`` stride, ``p`` padding, ``d`` dilation;
``L(u)`` / ``H(u)`` the first / last input index read by output ``u`` (unclipped).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from rfgraph.algebra import PAMap
from rfgraph.windows import (
    WindowParams,
    adaptive_window,
    as_tuple,
    conv_padding,
    conv_window,
    interpolate_window,
    pool_window,
    transposed_gaps,
    transposed_window,
)


def test_conv_window_hand_derived():
    """k=3, s=2, p=1 on 10: L(u) = 2u - 1, H(u) = 2u + 1, n_out = floor((10 + 2 - 2 - 1) / 2) + 1 = 5.
    Dilation 2, k=3, no padding, on 10: H(u) = u + 4, n_out 6."""
    assert conv_window(10, 3, 2, 1, 1) == (PAMap.affine(2, -1), PAMap.affine(2, 1), 5)
    assert conv_window(10, 3, 1, 0, 0, 2) == (PAMap.affine(1, 0), PAMap.affine(1, 4), 6)


@settings(deadline=None, max_examples=50)
@given(n=st.integers(1, 30), k=st.integers(1, 6), s=st.integers(1, 4), pl=st.integers(0, 3),
       pr=st.integers(0, 3), d=st.integers(1, 3))
def test_conv_output_length_is_torchs(n, k, s, pl, pr, d):
    assume(n + pl + pr >= d * (k - 1) + 1)
    x = F.pad(torch.zeros(1, 1, n, device="meta"), (pl, pr))
    expected = F.conv1d(x, torch.zeros(1, 1, k, device="meta"), stride=s, dilation=d).shape[-1]
    assert conv_window(n, k, s, pl, pr, d)[2] == expected


@settings(deadline=None, max_examples=50)
@given(n=st.integers(1, 30), k=st.integers(1, 6), s=st.integers(1, 4), data=st.data(), ceil=st.booleans())
def test_pool_output_length_is_torchs(n, k, s, data, ceil):
    """torch's ceil_mode clamp included (the last window may not start in the right padding)."""
    p = data.draw(st.integers(0, k // 2))
    assume(n + 2 * p >= k)
    expected = F.max_pool1d(torch.zeros(1, 1, n), k, s, p, ceil_mode=ceil).shape[-1]
    assert pool_window(n, k, s, p, 1, ceil)[2] == expected


def test_transposed_window_hand_derived():
    """k=3, s=2, p=1 on 4: output u receives input i when u = 2i - 1 + j, j in 0..2:
    u=0: i=0 (j=1); u=1: i=0 (j=2), i=1 (j=0); u=2: i=1.  n_out = 3*2 - 2 + 2 + 1 = 7."""
    low, high, n_out = transposed_window(4, 3, 2, 1)
    assert [(low(u), high(u)) for u in range(4)] == [(0, 0), (0, 1), (1, 1), (1, 2)]
    assert n_out == 7


def test_transposed_gaps():
    """Taps cover residues {j*d mod s}: k=1, s=2 leaves odd outputs unread; k=2, s=3, d=1 leaves one."""
    assert transposed_gaps(1, 2, 1) and transposed_gaps(2, 3, 1)
    assert not transposed_gaps(3, 2, 1) and not transposed_gaps(3, 3, 2)  # 0, 2, 4 mod 3 = 0, 2, 1


@given(n=st.integers(1, 20), m=st.integers(1, 20))
def test_adaptive_window_is_torchs_formula(n, m):
    low, high = adaptive_window(n, m)
    for u in range(m):
        assert (low(u), high(u)) == ((u * n) // m, -(-(u + 1) * n // m) - 1)


def test_interpolate_window_hand_derived():
    """bilinear x2, align_corners=False: src(u) = (u + 0.5) / 2 - 0.5: u=0 -> -0.25 [-1, 0]; u=1 -> 0.25 [0, 1];
    u=2 -> 0.75 [0, 1]; u=3 -> 1.25 [1, 2]: period 2, advance 1.  nearest x2: floor(u / 2).
    align_corners=True 3 -> 5: src = u / 2: windows [0,0], [0,1], [1,1], [1,2], [2,2]."""
    low, high = interpolate_window(4, 8, "bilinear", False, None)
    assert (low, high) == (PAMap(2, 1, (-1, 0)), PAMap(2, 1, (0, 1)))
    low, high = interpolate_window(4, 8, "nearest", None, None)
    assert low == high == PAMap.floor_div(2)
    low, high = interpolate_window(3, 5, "linear", True, None)
    assert [(low(u), high(u)) for u in range(5)] == [(0, 0), (0, 1), (1, 1), (1, 2), (2, 2)]


def test_argument_helpers():
    assert as_tuple(3, 2) == (3, 3) and as_tuple([2], 3) == (2, 2, 2) and as_tuple((1, 2), 2) == (1, 2)
    assert conv_padding("same", 0, 4, 1) == (1, 2)  # torch pads the extra pixel on the right
    assert conv_padding("same", 0, 3, 2) == (2, 2)
    assert conv_padding("valid", 0, 5, 1) == (0, 0)
    assert conv_padding((1, 3), 1, 3, 1) == (3, 3)


def test_window_params_is_a_frozen_value():
    p = WindowParams("conv", (3, 3), (2, 2), (1, 1), (1, 1), (1, 1))
    assert p.nd == 2 and WindowParams("adaptive", size=(7,)).nd == 1
    assert p == WindowParams("conv", (3, 3), (2, 2), (1, 1), (1, 1), (1, 1)) and hash(p) == hash(
        WindowParams("conv", (3, 3), (2, 2), (1, 1), (1, 1), (1, 1)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.kind = "pool"


@pytest.mark.parametrize("n_in,n_out,scale", [(8, 24, 3.0), (40, 120, 3.0), (16, 40, 2.5), (12, 21, None),
                                               (30, 45, None), (9, 63, 7.0), (24, 36, 1.5)])
@pytest.mark.parametrize("mode", ["linear", "bicubic"])
def test_interpolate_windows_equal_torchs_weights(n_in, n_out, scale, mode):
    """Found by the fuzzing (``F.interpolate(scale_factor=3, mode="linear")``, unit 1: symbolic [0, 0],
    measured [0, 1]).  Where the exact source index is an integer k, torch's float arithmetic gives
    k +- eps: float32 puts a weight of 1.49e-8 on input 1 at unit 1 (its CPU kernel rounds
    ``scale * 1.5 - 0.5`` once), float64 ~1e-17, or none: rounding noise.  The windows are those of
    the exact source (here [0, 0]); brute force in float64: every unit's window is the hull of the inputs
    whose weight is above 1e-9, where no border clamps it."""
    eye = torch.eye(n_in, dtype=torch.float64)
    x = eye.reshape(n_in, 1, n_in) if mode == "linear" else eye.reshape(n_in, 1, 1, n_in).expand(n_in, 1, 4, n_in)
    kwargs = {"scale_factor": scale} if scale else {"size": n_out if mode == "linear" else (4, n_out)}
    if mode == "bicubic" and scale:
        kwargs = {"scale_factor": (1.0, scale)}
    y = F.interpolate(x, mode=mode, align_corners=False, **kwargs)
    weights = y.reshape(n_in, -1, n_out)[:, 0, :] if mode == "linear" else y[:, 0, 0, :]  # (input, unit)
    low, high = interpolate_window(n_in, n_out, mode, False, scale)
    assert (low(1), high(1)) == ((0, 0) if (n_in, n_out, scale) == (8, 24, 3.0) and mode == "linear" else
                                 (low(1), high(1)))
    checked = 0
    for u in range(n_out):
        lo, hi = low(u), high(u)
        if lo < 0 or hi > n_in - 1:
            continue  # clamped by the border
        read = (weights[:, u].abs() > 1e-9).nonzero().flatten().tolist()
        assert (lo, hi) == (read[0], read[-1]), (u, (lo, hi), read)
        checked += 1
    assert checked >= n_out // 2
