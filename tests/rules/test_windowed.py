"""Windowed rules (`rfgraph.rules.windowed`): conv, transposed conv, pooling, adaptive pooling,
interpolation, padding, pixel shuffle; values derived by hand in each docstring.

Notation: ``n`` input length, ``k`` kernel, ``s`` stride, ``p`` padding, ``d``
dilation; ``L(u)``/``H(u)`` the first/last input coordinate read by output
``u`` (unclipped).  Every analysis also checks each node's shape against what
torch computes on a real tensor (`rfcheck.check`), and where cheap, every
output unit's window against a numeric back-propagation (`assert_windows_match`).
"""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from rfcheck import CatThen, Lambda, assert_windows_match, check, last, summary
from torch import nn

import rfgraph
from rfgraph.algebra import PAMap
from rfgraph.errors import InputTooSmallError
from rfgraph.rules import OpCall
from rfgraph.rules.windowed import conv_module_rule, interpolate_function_rule, max_pool_function_rule
from rfgraph.values import SymTensor
from rfgraph.windows import META_KEY, WindowParams

F1 = Fraction(1)
HALF = Fraction(1, 2)


# ---------------------------------------------------------------------------
# convolution
# ---------------------------------------------------------------------------


def test_conv1d_stride_padding():
    """k=3, s=2, p=1: L(u) = 2u - 1, H(u) = 2u + 1 -> rf 3, stride 2, start -1.

    n=10: n_out = floor((10 + 2 - 2 - 1) / 2) + 1 = 5.
    """
    m = nn.Conv1d(1, 2, 3, stride=2, padding=1)
    r = last(check(m, (1, 1, 10)))
    assert summary(r) == (3, 3, 2, -1)
    assert r.shape == (1, 2, 5)
    assert r.lo[0] == PAMap.affine(2, -1) and r.hi[0] == PAMap.affine(2, 1)
    assert r.center == (0,)
    assert_windows_match(m, (1, 1, 10), r, 0)



def test_conv1d_dilation():
    """k=3, d=2, p=0: L(u) = u, H(u) = u + 4 -> rf 5, start 0, center 2; n_out = 10 - 4 = 6."""
    m = nn.Conv1d(1, 1, 3, dilation=2)
    r = last(check(m, (1, 1, 10)))
    assert summary(r) == (5, 5, 1, 0)
    assert r.center == (2,)
    assert r.shape == (1, 1, 6)
    assert_windows_match(m, (1, 1, 10), r, 0)



def test_conv2d_groups_anisotropic():
    """groups=2, k=(3, 5), s=(2, 1), p=(1, 0) on 9 x 11.

    H: rf 3, stride 2, start -1, n_out = floor((9 + 2 - 3) / 2) + 1 = 5.
    W: rf 5, stride 1, start 0, n_out = 11 - 4 = 7.  Groups only split channels.
    """
    m = nn.Conv2d(4, 6, (3, 5), stride=(2, 1), padding=(1, 0), groups=2)
    r = last(check(m, (1, 4, 9, 11)))
    assert summary(r, 0) == (3, 3, 2, -1)
    assert summary(r, 1) == (5, 5, 1, 0)
    assert r.shape == (1, 6, 5, 7)
    assert r.dims == (2, 3)
    assert_windows_match(m, (1, 4, 9, 11), r, 0)
    assert_windows_match(m, (1, 4, 9, 11), r, 1)



def test_conv3d_per_axis():
    """k=(3, 1, 2), s=(1, 2, 1), d=(1, 1, 2), p=(1, 0, 0) on 5 x 6 x 7.

    D: rf 3, stride 1, start -1, n_out 5.  H: rf 1, stride 2, start 0, n_out 3.
    W: rf 1 + 2 * 1 = 3, stride 1, start 0, center 1, n_out 7 - 2 = 5.
    """
    m = nn.Conv3d(1, 1, (3, 1, 2), stride=(1, 2, 1), dilation=(1, 1, 2), padding=(1, 0, 0))
    r = last(check(m, (1, 1, 5, 6, 7)))
    assert summary(r, 0) == (3, 3, 1, -1)
    assert summary(r, 1) == (1, 1, 2, 0)
    assert summary(r, 2) == (3, 3, 1, 0)
    assert r.center == (0, 0, 1)
    assert r.shape == (1, 1, 5, 3, 5)
    for axis in range(3):
        assert_windows_match(m, (1, 1, 5, 6, 7), r, axis)



def test_conv_padding_same_even_kernel():
    """padding="same", k=4: total padding 3, torch puts 1 left and 2 right.

    L(u) = u - 1, H(u) = u + 2: rf 4, start -1, center(0) = 1/2; length kept (10).
    """
    m = nn.Conv1d(1, 1, 4, padding="same")
    r = last(check(m, (1, 1, 10)))
    assert summary(r) == (4, 4, 1, -1)
    assert r.center == (HALF,)
    assert r.shape == (1, 1, 10)
    assert_windows_match(m, (1, 1, 10), r, 0)



def test_conv_padding_same_dilated():
    """padding="same", k=3, d=2: total 4, 2 left: L(u) = u - 2, H(u) = u + 2: rf 5, start -2, center 0."""
    m = nn.Conv2d(1, 1, 3, padding="same", dilation=2)
    r = last(check(m, (1, 1, 9, 9)))
    assert summary(r, 0) == summary(r, 1) == (5, 5, 1, -2)
    assert r.center == (0, 0)
    # a dilated window is a hull with holes: at the border the first pixel read is not lo clipped
    assert_windows_match(m, (1, 1, 9, 9), r, 0, interior_only=True)



def test_conv_padding_valid():
    """padding="valid", k=3: L(u) = u, H(u) = u + 2: rf 3, start 0; n_out = 8 - 2 = 6."""
    r = last(check(nn.Conv1d(1, 1, 3, padding="valid"), (1, 1, 8)))
    assert summary(r) == (3, 3, 1, 0)
    assert r.shape == (1, 1, 6)



@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_conv_padding_mode(mode):
    """k=5, p=2, any padding_mode: the unclipped window is the same as with zeros,
    L(u) = u - 2, H(u) = u + 2 (rf 5, start -2); only border units read other pixels.
    n_out = 9 + 4 - 4 = 9.  Interior units are checked numerically."""
    m = nn.Conv1d(1, 1, 5, padding=2, padding_mode=mode)
    r = last(check(m, (1, 1, 9)))
    assert summary(r) == (5, 5, 1, -2)
    assert r.shape == (1, 1, 9)
    assert_windows_match(m, (1, 1, 9), r, 0, interior_only=True)



def test_conv_padding_same_with_circular_mode():
    """padding="same" with padding_mode="circular", k=4: 1 left, 2 right (torch's split),
    so L(u) = u - 1, H(u) = u + 2 as with zeros: rf 4, start -1."""
    m = nn.Conv2d(1, 1, 4, padding="same", padding_mode="circular")
    r = last(check(m, (1, 1, 8, 8)))
    assert summary(r, 0) == (4, 4, 1, -1)
    assert_windows_match(m, (1, 1, 8, 8), r, 1, interior_only=True)



def test_conv_functional_positional_and_keyword():
    """F.conv2d(x, w, None, 2, 1, 1) (k=3, s=2, p=1) then F.conv2d(y, w2, stride=1, padding=0, dilation=2) (k=3).

    First: rf 3, stride 2, start -1.  Second: r = 3 + 2*(3-1)*2 = 11, stride 2,
    start -1 - 0 = -1; shapes: 9 -> floor((9 + 2 - 3)/2) + 1 = 5 -> 5 - 4 = 1.
    """
    w = torch.rand(2, 1, 3, 3)
    w2 = torch.rand(1, 2, 3, 3)

    class M(nn.Module):
        def forward(self, x):
            y = F.conv2d(x, w, None, 2, 1, 1)
            return F.conv2d(y, w2, stride=1, padding=0, dilation=2)

    a = check(M(), (1, 1, 9, 9))
    assert summary(a["conv2d"], 0) == (3, 3, 2, -1)
    assert summary(a["conv2d_1"], 0) == (11, 11, 2, -1)
    assert a["conv2d_1"].shape == (1, 1, 1, 1)



# ---------------------------------------------------------------------------
# transposed convolution
# ---------------------------------------------------------------------------


def test_conv_transpose1d_stride2_k3():
    """k=3, s=2, p=0: input i feeds outputs 2i + j, j in {0, 1, 2}.

    u = 2m reads i = m (j=0) and i = m - 1 (j=2): [m - 1, m], width 2;
    u = 2m + 1 reads i = m (j=1) only: [m, m], width 1.
    lo = (-1, 0) + 1 per 2, hi = (0, 0) + 1 per 2: rf 2, rf_min 1, stride 1/2, start -1.
    n_out = (5 - 1) * 2 + 2 + 1 = 11.
    """
    m = nn.Sequential(nn.ConvTranspose1d(1, 1, 3, stride=2))
    r = last(check(m, (1, 1, 5)))
    assert summary(r) == (2, 1, HALF, -1)
    assert r.lo[0] == PAMap(2, 1, (-1, 0)) and r.hi[0] == PAMap(2, 1, (0, 0))
    assert r.shape == (1, 1, 11)
    assert_windows_match(m, (1, 1, 5), r, 0)



def test_conv_transpose1d_padding_output_padding():
    """k=3, s=2, p=1, output_padding=1: u + 1 = 2i + j.

    u = 2m: 2m + 1 = 2i + j -> j=1, i=m: [m, m] (width 1);
    u = 2m + 1: 2m + 2 = 2i + j -> (j=0, i=m+1), (j=2, i=m): [m, m + 1] (width 2).
    rf 2, rf_min 1, stride 1/2, start 0.  n_out = (5-1)*2 - 2 + 2 + 1 + 1 = 10.
    """
    m = nn.Sequential(nn.ConvTranspose1d(1, 1, 3, stride=2, padding=1, output_padding=1))
    r = last(check(m, (1, 1, 5)))
    assert summary(r) == (2, 1, HALF, 0)
    assert r.lo[0] == PAMap(2, 1, (0, 0)) and r.hi[0] == PAMap(2, 1, (0, 1))
    assert r.shape == (1, 1, 10)
    assert_windows_match(m, (1, 1, 5), r, 0)



def test_conv_transpose2d_k4_s2_p1():
    """The DCGAN layer k=4, s=2, p=1: u + 1 = 2i + j, j in 0..3.

    u = 2m: j=1 -> i=m, j=3 -> i=m-1: [m-1, m];  u = 2m+1: j=0 -> i=m+1, j=2 -> i=m: [m, m+1].
    Both width 2: rf 2, rf_min 2, stride 1/2, start -1.  n_out = (4-1)*2 - 2 + 3 + 1 = 8.
    """
    m = nn.Sequential(nn.ConvTranspose2d(2, 3, 4, stride=2, padding=1))
    r = last(check(m, (1, 2, 4, 4)))
    assert summary(r, 0) == summary(r, 1) == (2, 2, HALF, -1)
    assert r.lo[0] == PAMap(2, 1, (-1, 0)) and r.hi[0] == PAMap(2, 1, (0, 1))
    assert r.shape == (1, 3, 8, 8)
    assert_windows_match(m, (1, 2, 4, 4), r, 1)



def test_conv_transpose_stride1_is_a_flipped_conv():
    """s=1, k=3, p=1: u + 1 = i + j -> i in [u - 1, u + 1]: rf 3, stride 1, start -1; n_out = n."""
    m = nn.Sequential(nn.ConvTranspose1d(1, 1, 3, padding=1))
    r = last(check(m, (1, 1, 6)))
    assert summary(r) == (3, 3, 1, -1)
    assert r.shape == (1, 1, 6)



def _gap(k, s, p, d):
    """Whether transposed-conv output u is reached by no tap (u + p - j d never a multiple of s)."""
    return lambda u: all((u + p - j * d) % s for j in range(k))



def test_conv_transpose_dilated_leaves_gaps():
    """k=2, d=2, s=2, p=0: u = 2i + 2j, j in {0, 1}.

    u = 2m reads i = m and i = m - 1: [m - 1, m]; u odd is reached by no tap and reads nothing.
    rf 2, rf_min 0, start -1.  n_out = (4-1)*2 + 2 + 1 = 9.  The maps are finite tables with empty
    windows at the odd outputs; they repeat with period 2 (holes included) and advance 1 over the
    domain, so the stride is regular: 1/2.
    """
    m = nn.Sequential(nn.ConvTranspose1d(1, 1, 2, stride=2, dilation=2))
    r = last(check(m, (1, 1, 4)))
    assert r.shape == (1, 1, 9)
    assert r.source == "symbolic" and r.stride_regular == (True,) and r.lo[0].periodic_fit() == (2, 1)
    assert (r.rf[0], r.rf_min[0], r.stride[0], r.start[0]) == (2, 0, HALF, -1)
    assert [(r.lo[0](u), r.hi[0](u)) for u in range(5)] == [(-1, 0), (None, None), (0, 1), (None, None), (1, 2)]
    assert r.box((1,)) is None and r.box((2,)) == ((0, 1),)
    assert_windows_match(m, (1, 1, 4), r, 0)



@pytest.mark.parametrize("before", ["input", "avgpool"])
def test_gap_outputs_read_nothing(before):
    """ConvTranspose1d(k=2, d=2, s=2) on the input, or ConvTranspose1d(k=1, s=2) after AvgPool1d(2, 1):
    the odd outputs are reached by no tap and read nothing: rf_min 0, an empty window (``None``) at
    every odd output, and every unit agrees with back-propagation."""
    if before == "input":
        net = nn.Sequential(nn.ConvTranspose1d(1, 1, 2, stride=2, dilation=2))
    else:
        net = nn.Sequential(nn.AvgPool1d(2, 1), nn.ConvTranspose1d(1, 1, 1, stride=2))
    r = last(check(net, (1, 1, 8)))
    assert r.source == "symbolic" and r.rf_min == (0,)
    assert all(r.lo[0](u) is None and r.hi[0](u) is None for u in range(1, r.shape[2], 2))
    assert_windows_match(net, (1, 1, 8), r, 0)



def test_conv_transpose3d():
    """k=(3, 2, 1), s=(2, 2, 1), output_padding=(1, 0, 0).

    D as the k=3, s=2 case: rf 2, rf_min 1, stride 1/2, start -1.
    H: k=2, s=2: u = 2i + j: both parities read i = floor(u/2) only: rf 1, stride 1/2, start 0.
    W: k=1, s=1: identity.  Shapes: D (3-1)*2 + 2 + 1 + 1 = 8, H (3-1)*2 + 1 + 1 = 6, W 4.
    """
    m = nn.Sequential(nn.ConvTranspose3d(1, 2, (3, 2, 1), stride=(2, 2, 1), output_padding=(1, 0, 0)))
    r = last(check(m, (1, 1, 3, 3, 4)))
    assert summary(r, 0) == (2, 1, HALF, -1)
    assert summary(r, 1) == (1, 1, HALF, 0)
    assert summary(r, 2) == (1, 1, 1, 0)
    assert r.shape == (1, 2, 8, 6, 4)
    assert_windows_match(m, (1, 1, 3, 3, 4), r, 0)



def test_conv_transpose_functional():
    """F.conv_transpose1d(x, w, stride=2) with w of shape (1, 2, 3): same windows as the k=3, s=2 module,
    and out_channels = w.shape[1] * groups = 2."""
    w = torch.rand(1, 2, 3)
    r = last(check(Lambda(lambda x: F.conv_transpose1d(x, w, stride=2)), (1, 1, 5)))
    assert summary(r) == (2, 1, HALF, -1)
    assert r.shape == (1, 2, 11)



def test_conv_transpose_output_size():
    """Regression: ConvTranspose2d(k=3, s=2, p=1)(y, output_size=x.size()) (the U-Net idiom) picks the
    output_padding that reaches x's size: 4 -> (4-1)*2 - 2 + 2 + 1 = 7 by default, 8 with output_padding 1.
    Windows on y as for k=3, s=2, p=1: u=2m reads y[m], u=2m+1 reads y[m..m+1]; y[v] = x[2v], so in x:
    u=2m reads [2m, 2m], u=2m+1 reads [2m, 2m+2]: rf 3, rf_min 1, stride 2 * 1/2 = 1, start 0."""

    class Up(nn.Module):
        def __init__(self):
            super().__init__()
            self.up = nn.ConvTranspose2d(1, 1, 3, stride=2, padding=1)

        def forward(self, x):
            return self.up(x[:, :, ::2, ::2], output_size=x.size())

    for n in (7, 8):
        r = last(check(Up(), (1, 1, n, n)))
        assert r.shape == (1, 1, n, n)
        assert summary(r, 0) == (3, 1, 1, 0)



def test_conv_transpose_out_of_order_taps_then_conv():
    """Regression: ConvTranspose1d(k=3, s=3, d=2): u = 3i + 2j, j = 0, 1, 2 lands taps out of order:
    u = 3m reads i = m (j=0), u = 3m+1 reads i = m-1 (j=2, 3(m-1) + 4), u = 3m+2 reads i = m (j=1).
    Then Conv1d(k=2) reads units u, u+1:
    u = 3m: {m, m-1} -> [m-1, m];  u = 3m+1: {m-1, m} -> [m-1, m];  u = 3m+2: {m, m+1} -> [m, m+1].
    lo = (-1, -1, 0) + 1 per 3, hi = (0, 0, 1) + 1 per 3: rf 2, stride 1/3, start -1 (not the empty
    window [m, m-1] that composing with the first unit's lo and the last one's hi gave)."""
    net = nn.Sequential(nn.ConvTranspose1d(1, 1, 3, stride=3, dilation=2), nn.Conv1d(1, 1, 2))
    a = check(net, (1, 1, 6))
    assert a["0"].lo[0] == PAMap(3, 1, (0, -1, 0))
    r = last(a)
    assert r.lo[0] == PAMap(3, 1, (-1, -1, 0)) and r.hi[0] == PAMap(3, 1, (0, 0, 1))
    assert summary(r) == (2, 2, Fraction(1, 3), -1)
    assert_windows_match(net, (1, 1, 6), r, 0)



# ---------------------------------------------------------------------------
# pooling
# ---------------------------------------------------------------------------


def test_maxpool_stride_padding():
    """MaxPool1d(3, 2, 1): like the conv, rf 3, stride 2, start -1; n_out = floor((10 + 2 - 3)/2) + 1 = 5."""
    r = last(check(nn.MaxPool1d(3, 2, 1), (1, 1, 10)))
    assert summary(r) == (3, 3, 2, -1)
    assert r.shape == (1, 1, 5)



def test_maxpool_dilation_and_default_stride():
    """MaxPool2d(3, dilation=2): stride defaults to k=3; rf 1 + 2*2 = 5, start 0; n_out = floor((11-4-1)/3)+1 = 3."""
    r = last(check(nn.MaxPool2d(3, dilation=2), (1, 1, 11, 11)))
    assert summary(r, 0) == (5, 5, 3, 0)
    assert r.shape == (1, 1, 3, 3)



@pytest.mark.parametrize(
    "k, s, p, n, n_out",
    [
        # span = n + 2p - (k-1) - 1; ceil(span / s) + 1, minus 1 if (n_out - 1) * s >= n + p
        (2, 2, 0, 7, 4),  # span 5 -> ceil 3 -> 4; 3*2 = 6 < 7
        (3, 2, 1, 6, 4),  # span 5 -> 3 -> 4; 6 < 7
        (2, 2, 1, 5, 3),  # span 5 -> 3 -> 4; 3*2 = 6 >= 6: the clamp drops it -> 3
        (3, 3, 0, 10, 4),  # span 7 -> ceil(7/3) = 3 -> 4; 9 < 10
    ],
)
def test_pool_ceil_mode_lengths(k, s, p, n, n_out):
    """ceil_mode output lengths (hand-computed, parameters above) and windows L(u) = s u - p, rf k."""
    for pool in (nn.MaxPool1d(k, s, p, ceil_mode=True), nn.AvgPool1d(k, s, p, ceil_mode=True)):
        r = last(check(pool, (1, 1, n)))
        assert r.shape == (1, 1, n_out)
        assert summary(r) == (k, k, s, -p)



def test_avgpool_anisotropic_numeric():
    """AvgPool2d((3, 2), stride=(1, 2), padding=(1, 0)): H rf 3, stride 1, start -1; W rf 2, stride 2, start 0."""
    m = nn.AvgPool2d((3, 2), stride=(1, 2), padding=(1, 0))
    r = last(check(m, (1, 1, 6, 8)))
    assert summary(r, 0) == (3, 3, 1, -1)
    assert summary(r, 1) == (2, 2, 2, 0)
    assert_windows_match(m, (1, 1, 6, 8), r, 0)
    assert_windows_match(m, (1, 1, 6, 8), r, 1)



def test_lppool():
    """LPPool1d(2, 3, stride=2): no padding: rf 3, stride 2, start 0; n_out = floor((9-3)/2)+1 = 4.
    LPPool2d(2, 2) (stride = kernel): rf 2, stride 2."""
    r = last(check(nn.LPPool1d(2, 3, stride=2), (1, 1, 9)))
    assert summary(r) == (3, 3, 2, 0) and r.shape == (1, 1, 4)
    r = last(check(nn.LPPool2d(2, 2), (1, 1, 8, 8)))
    assert summary(r, 1) == (2, 2, 2, 0)



def test_pool_functionals():
    """F.max_pool2d(x, 3, 2, 1): rf 3, s 2, start -1.  F.avg_pool2d(x, 2): rf 2, s 2, start 0.
    F.lp_pool2d(x, 2, 3): rf 3, s 3, start 0.  F.max_pool1d(x, 2, return_indices=True)[0]: rf 2, s 2."""
    a = check(Lambda(lambda x: F.max_pool2d(x, 3, 2, 1)), (1, 1, 8, 8))
    assert summary(last(a), 0) == (3, 3, 2, -1)
    a = check(Lambda(lambda x: F.avg_pool2d(x, 2)), (1, 1, 8, 8))
    assert summary(last(a), 0) == (2, 2, 2, 0)
    a = check(Lambda(lambda x: F.lp_pool2d(x, 2, 3)), (1, 1, 9, 9))
    assert summary(last(a), 0) == (3, 3, 3, 0)
    a = check(Lambda(lambda x: F.max_pool1d(x, 2, return_indices=True)[0] + 1), (1, 1, 8))
    assert summary(last(a), 0) == (2, 2, 2, 0)
    assert last(a).shape == (1, 1, 4)



def test_adaptive_max_pool_function_with_indices():
    """Regression: F.adaptive_max_pool2d(x, 2, return_indices=True) traces to adaptive_max_pool2d_with_indices.
    6 -> 2: windows [3u, 3u + 2]: rf 3, stride 3; both the values and the indices carry it."""
    a = check(Lambda(lambda x: F.adaptive_max_pool2d(x, 2, return_indices=True)[1]), (1, 2, 6, 6))
    r = last(a)
    assert r.source == "symbolic"
    assert summary(r, 0) == (3, 3, 3, 0)
    assert r.shape == (1, 2, 2, 2)



def test_maxpool_module_return_indices():
    """nn.MaxPool2d(2, return_indices=True) returns (values, indices); values: rf 2, stride 2, shape 4x4."""

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.pool = nn.MaxPool2d(2, return_indices=True)

        def forward(self, x):
            y, _ = self.pool(x)
            return y * 2

    r = last(check(M(), (1, 1, 8, 8)))
    assert summary(r, 0) == (2, 2, 2, 0)
    assert r.shape == (1, 1, 4, 4)



def test_adaptive_pool_to_one_is_global():
    """AdaptiveAvgPool2d(1): every output reads the whole input: global on both axes, shape (1, 3, 1, 1)."""
    r = last(check(nn.AdaptiveAvgPool2d(1), (1, 3, 7, 9)))
    assert r.is_global == (True, True)
    assert r.rf == (None, None)
    assert r.shape == (1, 3, 1, 1)
    assert r.source == "symbolic"



def test_adaptive_pool_exact_windows_divisible():
    """AdaptiveAvgPool1d(3) on n=6: [floor(2u), ceil(2(u+1)) - 1] = [2u, 2u + 1]: rf 2, stride 2, start 0."""
    m = nn.AdaptiveAvgPool1d(3)
    r = last(check(m, (1, 1, 6)))
    assert summary(r) == (2, 2, 2, 0)
    assert_windows_match(m, (1, 1, 6), r, 0)



def test_adaptive_pool_exact_windows_uneven():
    """AdaptiveMaxPool1d(3) on n=8: u=0 [0, ceil(8/3) - 1 = 2]; u=1 [floor(8/3) = 2, ceil(16/3) - 1 = 5];
    u=2 [floor(16/3) = 5, 7]. Widths 3, 4, 3: rf 4, rf_min 3, stride 8/3, start 0.

    Checked numerically on AdaptiveAvgPool1d (max routes its gradient to one argmax)."""
    r = last(check(nn.AdaptiveMaxPool1d(3), (1, 1, 8)))
    assert summary(r) == (4, 3, Fraction(8, 3), 0)
    assert r.lo[0].values(3) == [0, 2, 5] and r.hi[0].values(3) == [2, 5, 7]
    m = nn.AdaptiveAvgPool1d(3)
    assert_windows_match(m, (1, 1, 8), last(check(m, (1, 1, 8))), 0)



def test_adaptive_pool_none_and_partial_global():
    """AdaptiveAvgPool2d((None, 2)) on 5 x 6: H untouched (rf 1), W [3u, 3u + 2]: rf 3, stride 3.
    F.adaptive_avg_pool2d(x, (2, 1)) on 6 x 5: H [3u, 3u + 2] (rf 3, stride 3), W global."""
    r = last(check(nn.AdaptiveAvgPool2d((None, 2)), (1, 1, 5, 6)))
    assert summary(r, 0) == (1, 1, 1, 0)
    assert summary(r, 1) == (3, 3, 3, 0)
    assert r.shape == (1, 1, 5, 2)
    r = last(check(Lambda(lambda x: F.adaptive_avg_pool2d(x, (2, 1))), (1, 1, 6, 5)))
    assert summary(r, 0) == (3, 3, 3, 0)
    assert r.is_global == (False, True)



def test_adaptive_pool_3d():
    """AdaptiveAvgPool3d((2, 1, 4)) on 4 x 3 x 4: D [2u, 2u + 1] rf 2 stride 2; H global; W identity windows rf 1."""
    r = last(check(nn.AdaptiveAvgPool3d((2, 1, 4)), (1, 1, 4, 3, 4)))
    assert summary(r, 0) == (2, 2, 2, 0)
    assert r.is_global == (False, True, False)
    assert summary(r, 2) == (1, 1, 1, 0)



# ---------------------------------------------------------------------------
# resampling, padding, shuffles
# ---------------------------------------------------------------------------


def test_upsample_nearest_x2():
    """nn.Upsample(scale_factor=2) (nearest): u reads floor(u/2): rf 1, stride 1/2, start 0; 5 -> 10."""
    m = nn.Upsample(scale_factor=2)
    r = last(check(m, (1, 1, 5, 5)))
    assert summary(r, 0) == (1, 1, HALF, 0)
    assert r.lo[0] == PAMap.floor_div(2) == r.hi[0]
    assert r.shape == (1, 1, 10, 10)
    assert_windows_match(m, (1, 1, 5, 5), r, 0)



def test_nearest_by_size():
    """nearest 4 -> 6: src = floor(u * 4/6): 0, 0, 1, 2, 2, 3 = (0, 0, 1) + 2 per 3: rf 1, stride 2/3."""
    m = Lambda(lambda x: F.interpolate(x, size=6, mode="nearest"))
    r = last(check(m, (1, 1, 4)))
    assert summary(r) == (1, 1, Fraction(2, 3), 0)
    assert r.lo[0] == PAMap(3, 2, (0, 0, 1))
    assert_windows_match(m, (1, 1, 4), r, 0)



def test_nearest_exact():
    """nearest-exact 4 -> 6: floor((u + 0.5) * 2/3): 0, 1, 1, 2, 3, 3 = (0, 1, 1) + 2 per 3."""
    m = Lambda(lambda x: F.interpolate(x, size=6, mode="nearest-exact"))
    r = last(check(m, (1, 1, 4)))
    assert r.lo[0] == PAMap(3, 2, (0, 1, 1)) == r.hi[0]
    assert_windows_match(m, (1, 1, 4), r, 0)



def test_nearest_downsample_by_scale():
    """scale_factor=0.5 nearest on 8: u reads floor(2u) = 2u: rf 1, stride 2; 8 -> 4."""
    r = last(check(Lambda(lambda x: F.interpolate(x, scale_factor=0.5)), (1, 1, 8)))
    assert summary(r) == (1, 1, 2, 0)
    assert r.shape == (1, 1, 4)



def test_bilinear_x2_align_corners_false():
    """bilinear x2, align_corners=False: src(u) = (u + 0.5)/2 - 0.5 = u/2 - 1/4, window [floor, ceil].

    u=0: -1/4 -> [-1, 0]; u=1: 1/4 -> [0, 1]; u=2: 3/4 -> [0, 1]; u=3: 5/4 -> [1, 2].
    lo = (-1, 0) + 1 per 2, hi = (0, 1) + 1 per 2: rf 2, rf_min 2, stride 1/2, start -1.
    (torch clamps src >= 0, so the border unit 0 reads only pixel 0: a border effect.)
    """
    m = Lambda(lambda x: F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))
    r = last(check(m, (1, 1, 4, 4)))
    assert summary(r, 0) == summary(r, 1) == (2, 2, HALF, -1)
    assert r.lo[1] == PAMap(2, 1, (-1, 0)) and r.hi[1] == PAMap(2, 1, (0, 1))
    assert r.shape == (1, 1, 8, 8)
    assert_windows_match(m, (1, 1, 4, 4), r, 1)



def test_linear_align_corners_true():
    """linear 4 -> 7, align_corners=True: src(u) = u * 3/6 = u/2.
    Even u = 2m: [m, m] (integer); odd u = 2m + 1: [m, m + 1].  rf 2, rf_min 1, stride 1/2, start 0."""
    m = Lambda(lambda x: F.interpolate(x, size=7, mode="linear", align_corners=True))
    r = last(check(m, (1, 1, 4)))
    assert summary(r) == (2, 1, HALF, 0)
    assert_windows_match(m, (1, 1, 4), r, 0)



def test_linear_align_corners_true_uneven_ratio():
    """Regression: linear 4 -> 8, align_corners=True: src(u) = 3u/7, so the stride is 3/7 (not 4/8).

    u:   0  1    2    3    4    5    6    7
    src: 0  3/7  6/7  9/7  12/7 15/7 18/7 3
    lo:  0  0    0    1    1    2    2    3      hi: 0 1 1 2 2 3 3 3
    rf 2, rf_min 1 (u = 0 and 7 land on pixels), start 0.
    """
    m = Lambda(lambda x: F.interpolate(x, size=8, mode="linear", align_corners=True))
    r = last(check(m, (1, 1, 4)))
    assert summary(r) == (2, 1, Fraction(3, 7), 0)
    assert r.lo[0].values(8) == [0, 0, 0, 1, 1, 2, 2, 3]
    assert r.hi[0].values(8) == [0, 1, 1, 2, 2, 3, 3, 3]
    assert_windows_match(m, (1, 1, 4), r, 0)



def test_scale_factor_sets_the_stride():
    """Regression: with a scale factor torch steps by 1/scale, not n_in/n_out.

    nearest, scale 1.5 on n=5 (n_out = floor(7.5) = 7): src = floor(u / 1.5) = 0, 0, 1, 2, 2, 3, 4:
    (0, 0, 1) + 2 per 3, stride 2/3 (not 5/7).
    bilinear, scale 0.5 on n=7 (n_out 3): src = 2(u + 0.5) - 0.5 = 2u + 1/2: [2u, 2u + 1], stride 2 (not 7/3).
    """
    m = Lambda(lambda x: F.interpolate(x, scale_factor=1.5))
    r = last(check(m, (1, 1, 5)))
    assert summary(r) == (1, 1, Fraction(2, 3), 0)
    assert r.lo[0] == PAMap(3, 2, (0, 0, 1))
    assert_windows_match(m, (1, 1, 5), r, 0)
    m = Lambda(lambda x: F.interpolate(x, scale_factor=0.5, mode="linear"))
    r = last(check(m, (1, 1, 7)))
    assert summary(r) == (2, 2, 2, 0)
    assert_windows_match(m, (1, 1, 7), r, 0)



def test_upsampling_bilinear2d_module_align_corners():
    """nn.UpsamplingBilinear2d(size=7) uses align_corners=True: same windows as above on both axes."""
    m = nn.UpsamplingBilinear2d(size=7)
    r = last(check(m, (1, 1, 4, 4)))
    assert summary(r, 0) == summary(r, 1) == (2, 1, HALF, 0)
    assert_windows_match(m, (1, 1, 4, 4), r, 0)



def test_linear_downsample():
    """bilinear scale 0.5 (no antialias), align_corners=False: src = 2(u + 0.5) - 0.5 = 2u + 1/2: [2u, 2u + 1].
    rf 2, stride 2, start 0."""
    m = Lambda(lambda x: F.interpolate(x, scale_factor=0.5, mode="bilinear"))
    r = last(check(m, (1, 1, 8, 8)))
    assert summary(r, 0) == (2, 2, 2, 0)
    assert_windows_match(m, (1, 1, 8, 8), r, 0)



def test_trilinear_x2():
    """trilinear x2 (align_corners=False) on each of the 3 axes: as bilinear, rf 2, stride 1/2, start -1."""
    m = nn.Upsample(scale_factor=2, mode="trilinear")
    r = last(check(m, (1, 1, 3, 3, 3)))
    for axis in range(3):
        assert summary(r, axis) == (2, 2, HALF, -1)
    assert r.shape == (1, 1, 6, 6, 6)
    assert_windows_match(m, (1, 1, 3, 3, 3), r, 2)



def test_bicubic_x2():
    """bicubic x2: src = u/2 - 1/4; non-integer src reads [floor - 1, floor + 2]: u=0 [-2, 1], u=1 [-1, 2].
    rf 4, stride 1/2, start -2."""
    m = Lambda(lambda x: F.interpolate(x, scale_factor=2, mode="bicubic"))
    r = last(check(m, (1, 1, 6, 6)))
    assert summary(r, 0) == (4, 4, HALF, -2)
    assert_windows_match(m, (1, 1, 6, 6), r, 0, interior_only=True)



def test_interpolate_antialias_is_not_guessed():
    """bilinear x0.5 with antialias=True: the filter support widens to 2 input pixels each side of the
    center 2u + 1, i.e. pixels [2u - 1, 2u + 2] (rf 4), not the plain bilinear [2u, 2u + 1].
    The rule must give the exact rf 4 or mark the node unknown, never rf 2."""
    m = Lambda(lambda x: F.interpolate(x, scale_factor=0.5, mode="bilinear", antialias=True))
    r = last(check(m, (1, 1, 8, 8)))
    if r.source == "unknown":
        assert "interpolate" in r.reason
    else:
        assert summary(r, 0) == (4, 4, 2, -1)
        assert_windows_match(m, (1, 1, 8, 8), r, 0)



def test_interpolate_area_is_adaptive():
    """mode="area" 8 -> 4 is adaptive average pooling: [2u, 2u + 1]: rf 2, stride 2, start 0."""
    r = last(check(Lambda(lambda x: F.interpolate(x, size=4, mode="area")), (1, 1, 8)))
    assert summary(r) == (2, 2, 2, 0)



def test_functional_pad():
    """F.pad(x, (1, 0, 2, 3)): W padded 1 left: L = H = u - 1 (start -1), n 5 -> 6;
    H padded 2 top, 3 bottom: start -2, n 4 -> 9.  rf 1 on both."""
    r = last(check(Lambda(lambda x: F.pad(x, (1, 0, 2, 3))), (1, 1, 4, 5)))
    assert summary(r, 0) == (1, 1, 1, -2)
    assert summary(r, 1) == (1, 1, 1, -1)
    assert r.shape == (1, 1, 9, 6)



def test_negative_pad_crops():
    """F.pad(x, (-1, -2)): crop 1 left, 2 right: L = H = u + 1, start 1; 8 -> 5."""
    r = last(check(Lambda(lambda x: F.pad(x, (-1, -2))), (1, 1, 8)))
    assert summary(r) == (1, 1, 1, 1)
    assert r.shape == (1, 1, 5)



@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_pad_modes_then_conv(mode):
    """F.pad(x, (2, 2), mode) then Conv1d(k=5): same unclipped window as a zero-padded conv p=2:
    rf 5, start -2; n 7 -> 11 -> 7."""
    conv = nn.Conv1d(1, 1, 5)

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = conv

        def forward(self, x):
            return self.conv(F.pad(x, (2, 2), mode=mode))

    r = last(check(M(), (1, 1, 7)))
    assert summary(r) == (5, 5, 1, -2)
    assert r.shape == (1, 1, 7)



def test_pad_modules():
    """ZeroPad2d((1, 2, 3, 4)) on 4 x 4: W start -1 (4 -> 7), H start -3 (4 -> 11).
    ReflectionPad1d(2): start -2, 6 -> 10."""
    r = last(check(nn.ZeroPad2d((1, 2, 3, 4)), (1, 1, 4, 4)))
    assert r.start == (-3, -1) and r.shape == (1, 1, 11, 7)
    r = last(check(nn.ReflectionPad1d(2), (1, 1, 6)))
    assert r.start == (-2,) and r.shape == (1, 1, 10)



class _ConvRelPosEnc(nn.Module):
    """CoaT's class token and ConvRelPosEnc in small: a 3x3 patch conv to tokens (B, N, C), a class
    token in front, a depthwise 3x3 conv over the image tokens times the tokens, padded with a zero
    class-token slot in front (``F.pad(EV_hat, (0, 0, 1, 0))``) and added; the image tokens back to
    an image.  ``mode`` pads the slot with another mode (``tail`` returns that node)."""

    def __init__(self, mode: str = "constant", tail: str = "image"):
        super().__init__()
        self.embed = nn.Conv2d(1, 2, 3, padding=1)
        self.cls = nn.Parameter(torch.zeros(1, 1, 2))
        self.dw = nn.Conv2d(2, 2, 3, padding=1, groups=2)
        self.mode, self.tail = mode, tail

    def forward(self, x):
        b, _, h, w = x.shape
        t = self.embed(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(b, -1, -1), t], dim=1)
        img = t[:, 1:].transpose(1, 2).reshape(b, 2, h, w)
        ev = t[:, 1:] * self.dw(img).flatten(2).transpose(1, 2)
        if self.mode == "constant":
            ev = F.pad(ev, (0, 0, 1, 0))
        else:
            ev = F.pad(ev.unsqueeze(0), (0, 0, 1, 0), mode=self.mode)[0]
        out = t + ev
        if self.tail == "class":
            return out[:, 0]
        if self.tail == "pad":
            return ev
        return out[:, 1:].transpose(1, 2).reshape(b, 2, h, w)


def test_constant_pad_of_tokens_is_a_concat_with_a_constant_slot():
    """The padded tokens are the concat (1 zero slot, H*W tokens): the image tokens keep their exact
    fields through the pad and the add with the class-token concat.  Per token: the patch conv reads
    [u - 1, u + 1], the depthwise conv after it [u - 2, u + 2]: rf 5, start -2, stride 1 on both axes,
    and the back-propagation agrees unit by unit.  The class slot reads nothing: the class token (a
    parameter) plus a zero is constant.  A replicate pad copies a token into the slot: not a
    constant segment, left unknown."""
    m = _ConvRelPosEnc()
    r = last(check(m, (1, 1, 6, 6)))
    assert r.source == "symbolic"
    assert summary(r, 0) == summary(r, 1) == (5, 5, 1, -2)
    assert_windows_match(m, (1, 1, 6, 6), r, 0)
    assert_windows_match(m, (1, 1, 6, 6), r, 1)
    pad = last(check(_ConvRelPosEnc(tail="pad"), (1, 1, 6, 6)))
    assert pad.source == "symbolic" and pad.shape == (1, 37, 2) and pad.rf == (5, 5)
    cls = last(check(_ConvRelPosEnc(tail="class"), (1, 1, 6, 6)))
    assert cls.source == "nonspatial" and cls.rf == (None, None)
    assert last(check(_ConvRelPosEnc(mode="replicate"), (1, 1, 6, 6))).source == "unknown"


def test_pixel_shuffle():
    """PixelShuffle(2): (1, 4, 3, 3) -> (1, 1, 6, 6); output u reads input floor(u/2): rf 1, stride 1/2, start 0."""
    m = nn.PixelShuffle(2)
    r = last(check(m, (1, 4, 3, 3)))
    assert summary(r, 0) == summary(r, 1) == (1, 1, HALF, 0)
    assert r.shape == (1, 1, 6, 6)
    assert_windows_match(m, (1, 4, 3, 3), r, 1)



def test_pixel_unshuffle():
    """PixelUnshuffle(2): (1, 1, 6, 6) -> (1, 4, 3, 3); over all channels output u reads [2u, 2u + 1]:
    rf 2 (union over channels), stride 2, start 0."""
    m = nn.PixelUnshuffle(2)
    r = last(check(m, (1, 1, 6, 6)))
    assert summary(r, 0) == (2, 2, 2, 0)
    assert r.shape == (1, 4, 3, 3)
    assert_windows_match(m, (1, 1, 6, 6), r, 0)
    r = last(check(Lambda(lambda x: F.pixel_unshuffle(F.pixel_shuffle(x, 2), 2)), (1, 4, 3, 3)))
    assert summary(r, 0) == (1, 1, 1, 0)  # floor((2u + {0, 1}) / 2) = u
    assert r.shape == (1, 4, 3, 3)



def _unshuffle_by_view(y, r):
    b, c, h, w = y.shape
    return y.view(b, c, h // r, r, w // r, r).permute(0, 1, 3, 5, 2, 4).reshape(b, c * r * r, h // r, w // r)


def _shuffle_by_view(y, r):
    b, c, h, w = y.shape
    return y.view(b, c // (r * r), r, r, h, w).permute(0, 1, 4, 2, 5, 3).reshape(b, c // (r * r), h * r, w * r)


class _SubPositions(nn.Module):
    """conv 3x3 (pad 1) on (1, 2, 16, 16), then space-to-depth by 2, ``middle``, and depth-to-space."""

    def __init__(self, middle: str, by_view: bool):
        super().__init__()
        self.middle, self.by_view = middle, by_view
        self.conv = nn.Conv2d(2, 2, 3, padding=1)
        self.ops = nn.ModuleDict({
            "depthwise": nn.Conv2d(8, 8, 1, groups=8), "depthwise3": nn.Conv2d(8, 8, 3, padding=1, groups=8),
            "depthwise3x2": nn.Conv2d(8, 16, 3, padding=1, groups=8),
            "full": nn.Conv2d(8, 8, 1), "full3": nn.Conv2d(8, 8, 3, padding=1)})

    def forward(self, x):
        down, up = (_unshuffle_by_view, _shuffle_by_view) if self.by_view else (F.pixel_unshuffle, F.pixel_shuffle)
        y = down(self.conv(x), 2)
        if self.middle == "none_down":
            return y
        if self.middle in self.ops:
            y = self.ops[self.middle](y)
        return up(y, 2)


@pytest.mark.parametrize("by_view", [False, True], ids=["functional", "view"])
@pytest.mark.parametrize("middle,expected", [
    # the space-to-depth node: unit i (all channels) reads the conv outputs [2i, 2i + 1], input [2i - 1, 2i + 2]
    ("none_down", (4, 4, 2, -1)),
    # unshuffle then shuffle is the identity: the conv's own field
    ("identity", (3, 3, 1, -1)),
    # a depthwise 1x1 keeps each channel's sub-position: still the identity on positions
    ("depthwise", (3, 3, 1, -1)),
    # depthwise 3x3: X = 2i + a reads conv outputs 2(i - 1) + a .. 2(i + 1) + a, input [X - 3, X + 3]
    ("depthwise3", (7, 7, 1, -3)),
    # the same with a channel multiplier 2: output channel j reads input channel j // 2, so the shuffle
    # puts the row's sub-position into the channels (c' % 2) and the column's into the row's (X % 2):
    # over the channels X reads rows 2(X // 2) .. 2(X // 2) + 1 of blocks X // 2 - 1 .. X // 2 + 1,
    # input [2(X // 2) - 3, 2(X // 2) + 4]
    ("depthwise3x2", (8, 8, 1, -3)),
    # a 1x1 conv over every channel joins the block: X reads [2(X // 2) - 1, 2(X // 2) + 2]
    ("full", (4, 4, 1, -1)),
    # 3x3 over every channel: blocks i - 1 .. i + 1, input [2(X // 2) - 3, 2(X // 2) + 4]
    ("full3", (8, 8, 1, -3)),
])
def test_sub_positions_in_the_channels(middle, expected, by_view):
    """pixel_(un)shuffle, and the same written as view / permute / reshape, keep the sub-positions as digits
    of the axes in the channels: exact after a shuffle back, through depthwise convs, and the union where
    a conv reads every channel.  (Every channel carried its block's union before: the identity was
    reported as rf 4; the view spelling reported depth-to-space with stride 2.)  Hand-derived values,
    every unit checked against back-propagation."""
    m = _SubPositions(middle, by_view)
    r = last(check(m, (1, 2, 16, 16)))
    assert r.source == "symbolic"
    assert summary(r, 0) == summary(r, 1) == tuple(Fraction(v) for v in expected)
    assert r.dims == (2, 3)
    assert_windows_match(m, (1, 2, 16, 16), r, 0)


def test_depth_to_space_by_view_then_conv():
    """conv 3x3 (pad 1, 2 -> 8 channels) on 16 x 16, depth-to-space by view / permute / reshape (32 x 32),
    then a valid conv 3x3: unit u reads the shuffled positions u .. u + 2, i.e. blocks u // 2 .. (u + 2) // 2,
    input [u // 2 - 1, (u + 2) // 2 + 1]: 4 wide, start -1, stride 1/2.  (The dim holding an axis followed
    by channel sub-positions was a flattened dim, and the conv along it unknown.)"""
    m = nn.Sequential(nn.Conv2d(2, 8, 3, padding=1), Lambda(lambda y: _shuffle_by_view(y, 2)), nn.Conv2d(2, 2, 3))
    r = last(check(m, (1, 2, 16, 16)))
    assert summary(r, 0) == (4, 4, HALF, -1)
    assert_windows_match(m, (1, 2, 16, 16), r, 0)


class _GroupedAfterUnshuffle(nn.Module):
    """conv 3x3 (pad 1, 2 -> c channels) on (1, 2, 16, 16), pixel_unshuffle(2) (channel 4k + 2a + b holds
    sub-position (a, b) of channel k), a 1x1 conv with ``groups``, then pixel_shuffle(2) back."""

    def __init__(self, c: int, groups: int):
        super().__init__()
        self.conv = nn.Conv2d(2, c, 3, padding=1)
        self.grouped = nn.Conv2d(4 * c, 4 * c, 1, groups=groups)

    def forward(self, x):
        return F.pixel_shuffle(self.grouped(F.pixel_unshuffle(self.conv(x), 2)), 2)


@pytest.mark.parametrize("c,groups,rows,cols", [
    # one group: every channel reads the 2x2 block, X reads [2(X // 2) - 1, 2(X // 2) + 2]
    (2, 1, (4, -1), (4, -1)),
    # groups of 4 channels = one channel's block: the same
    (2, 2, (4, -1), (4, -1)),
    # groups of 2 channels: group 2k + a holds row sub-position a, both columns; the shuffle puts
    # output row X = 2i + a on group 2c' + a: row 2i + a exactly, columns the block
    (2, 4, (3, -1), (4, -1)),
    # depthwise: the identity on positions
    (2, 8, (3, -1), (3, -1)),
    # 3 channels (12), 2 groups of 6: each group holds a whole block (channels 0-3, 8-11): the block
    (3, 2, (4, -1), (4, -1)),
])
def test_grouped_conv_over_sub_positions(c, groups, rows, cols):
    """Grouped convs over channels holding sub-positions: a group keeps the factors above its size and
    mixes those below (the block's union where it holds whole blocks).  Hand-derived values above,
    every unit against back-propagation (before: unknown for every grouped conv but the depthwise)."""
    m = _GroupedAfterUnshuffle(c, groups)
    r = last(check(m, (1, 2, 16, 16)))
    assert r.source == "symbolic"
    for axis, (rf, start) in enumerate((rows, cols)):
        assert (r.rf[axis], r.start[axis]) == (rf, start), axis
        assert_windows_match(m, (1, 2, 16, 16), r, axis)


def test_unshuffled_map_after_a_conv_merges_with_an_ordinary_map():
    """Found by the U-Net fuzzing: pixel_unshuffle, a 1x1 conv (the channels' sub-positions mixed away,
    the rows left as their top digit), added to a conv 3x3 stride 2 of the input: both read blocks of
    the input, [2i - 1, 2i + 2] and [2i - 1, 2i + 1], so rf 4, stride 2, start -1 (the top digit is an
    ordinary axis again; it was an unknown merge)."""
    class Merge(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.mix = nn.Conv2d(2, 2, 3, padding=1), nn.Conv2d(8, 4, 1)
            self.down = nn.Conv2d(2, 4, 3, stride=2, padding=1)

        def forward(self, x):
            return self.mix(F.pixel_unshuffle(self.conv(x), 2)) + self.down(x)

    m = Merge()
    r = last(check(m, (1, 2, 16, 16)))
    assert summary(r, 0) == summary(r, 1) == (4, 4, 2, -1)
    assert_windows_match(m, (1, 2, 16, 16), r, 0)


class _UnshuffleSlice(nn.Module):
    """conv 3x3 (pad 1, 2 -> 3 channels), pixel_unshuffle(2) (channel 4c + 2a + b holds row sub-position a,
    column sub-position b), an optional depthwise 3x3, then a channel slice."""

    def __init__(self, channels: slice, depthwise: bool):
        super().__init__()
        self.channels = channels
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.depthwise = nn.Conv2d(12, 12, 3, padding=1, groups=12) if depthwise else nn.Identity()

    def forward(self, x):
        return self.depthwise(F.pixel_unshuffle(self.conv(x), 2))[:, self.channels]


@pytest.mark.parametrize("channels,rows,cols", [
    # channel 0: sub-position (0, 0), unit i reads row 2i of the conv, input [2i - 1, 2i + 1]
    (slice(0, 1), (3, 2, -1), (3, 2, -1)),
    # channel 1: (0, 1), the column one to the right: input columns [2j, 2j + 2]
    (slice(1, 2), (3, 2, -1), (3, 2, 0)),
    # channels 0 and 1: row sub-position 0, both columns: columns [2j - 1, 2j + 2]
    (slice(0, 2), (3, 2, -1), (4, 2, -1)),
    # channels 4..7: all of channel 1's block
    (slice(4, 8), (4, 2, -1), (4, 2, -1)),
])
@pytest.mark.parametrize("depthwise", [False, True], ids=["", "depthwise3"])
def test_channel_slice_of_sub_positions(channels, rows, cols, depthwise):
    """A channel slice of pixel_unshuffle's output keeps the sub-positions it holds: exact, every unit
    checked against back-propagation (before, every channel carried its 2x2 block: rf 4).  With a
    depthwise 3x3 in between the slice reads rows 2(i - 1) + a .. 2(i + 1) + a: rf 3 + 4, start 2 lower."""
    m = _UnshuffleSlice(channels, depthwise)
    r = last(check(m, (1, 2, 16, 16)))
    grow = 4 if depthwise else 0
    for axis, (rf, stride, start) in enumerate((rows, cols)):
        want = (rf + grow, rf + grow, Fraction(stride), Fraction(start - grow // 2))
        assert summary(r, axis) == want, axis
        assert_windows_match(m, (1, 2, 16, 16), r, axis)


def test_channel_slice_across_sub_positions_is_unknown():
    """Channels 0..2 of pixel_unshuffle's output hold sub-positions (0, 0), (0, 1) and (1, 0): no layout
    holds that set, so the slice is unknown with the reason, never the block's union (rf 4)."""
    r = last(check(Lambda(lambda x: F.pixel_unshuffle(x, 2)[:, :3]), (1, 1, 8, 8)))
    assert r.source == "unknown" and "flattened or shuffled" in r.reason


# ---------------------------------------------------------------------------
# symbolic vs numeric on random configurations
# ---------------------------------------------------------------------------


_NUMERIC = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])



@_NUMERIC
@given(
    k=st.integers(1, 5), s=st.integers(1, 3), p=st.integers(0, 3), d=st.integers(1, 2),
    op=st.integers(0, 2), n=st.integers(2, 7),
)
def test_conv_transpose_windows_match_backprop(k, s, p, d, op, n):
    """Every output unit of a random ConvTranspose1d that some tap reaches reads exactly the inputs its
    symbolic window says (clipped to the input; interior units only when dilation leaves holes); units
    no tap reaches read nothing (an empty window), with no hand-over to a fallback."""
    assume(op < max(s, d))  # torch: output_padding must be smaller than stride or dilation
    n_out = (n - 1) * s - 2 * p + d * (k - 1) + op + 1
    assume(n_out >= 1)
    m = nn.Sequential(nn.ConvTranspose1d(1, 1, k, stride=s, padding=p, dilation=d, output_padding=op))
    r = last(check(m, (1, 1, n)))
    assert r.shape == (1, 1, n_out)
    gap = _gap(k, s, p, d)
    assert r.source == "symbolic"
    assert all((r.lo[0](u) is None) == gap(u) for u in range(n_out))
    if any(r.lo[0](u) is not None and r.lo[0](u) >= 0 and r.hi[0](u) < n for u in range(n_out)):
        assert_windows_match(m, (1, 1, n), r, 0, interior_only=d > 1)



@_NUMERIC
@given(k=st.integers(1, 5), s=st.integers(1, 3), data=st.data(), n=st.integers(5, 12), ceil=st.booleans())
def test_avg_pool_windows_match_backprop(k, s, data, n, ceil):
    """Random AvgPool1d (count_include_pad, ceil_mode): windows and output length agree with torch."""
    p = data.draw(st.integers(0, k // 2))
    assume(n + 2 * p >= k)
    m = nn.AvgPool1d(k, s, p, ceil_mode=ceil)
    r = last(check(m, (1, 1, n)))
    assert summary(r) == (k, k, s, -p)
    assert_windows_match(m, (1, 1, n), r, 0)



@_NUMERIC
@given(n=st.integers(1, 9), m_out=st.integers(1, 9))
def test_adaptive_avg_pool_windows_match_backprop(n, m_out):
    """Random AdaptiveAvgPool1d n -> m: exact windows [floor(u n / m), ceil((u + 1) n / m) - 1]."""
    m = nn.AdaptiveAvgPool1d(m_out)
    r = last(check(m, (1, 1, n)))
    if m_out == 1:
        assert r.is_global == (True,)
        return
    for u in range(m_out):
        assert (r.lo[0](u), r.hi[0](u)) == ((u * n) // m_out, -(-(u + 1) * n // m_out) - 1)
    assert_windows_match(m, (1, 1, n), r, 0)



@_NUMERIC
@given(
    mode=st.sampled_from(["nearest", "nearest-exact", "linear-False", "linear-True"]),
    n=st.integers(2, 7),
    how=st.sampled_from(["size", "scale"]),
    data=st.data(),
)
def test_interpolate_windows_match_backprop(mode, n, how, data):
    """Random 1-D F.interpolate (by size or scale factor, up or down): every unit's window equals what
    torch's kernel reads, and the reported stride is the slope of the source index map."""
    align = None
    if mode.startswith("linear"):
        mode, align = "linear", mode.endswith("True")
    if how == "size":
        size = data.draw(st.integers(2, 12))
        kwargs = {"size": size}
        assume(not align or size > 1)
    else:
        scale = data.draw(st.sampled_from([0.5, 1.5, 2.0, 2.5, 3.0]))
        assume(int(n * scale) >= 1)
        kwargs = {"scale_factor": scale}
    m = Lambda(lambda x: F.interpolate(x, mode=mode, align_corners=align, **kwargs))
    r = last(check(m, (1, 1, n)))
    assert_windows_match(m, (1, 1, n), r, 0)



# ---------------------------------------------------------------------------
# torchvision building blocks traced through
# ---------------------------------------------------------------------------


def test_torchvision_conv_norm_activation_is_traced_through():
    """Conv2dNormActivation(k=3, s=2) with FrozenBatchNorm2d: padding (3-1)//2 = 1: rf 3, stride 2, start -1.
    Conv2dNormActivation(k=5, dilation=2): padding (5-1)//2 * 2 = 4: rf 1 + 2*4 = 9, start -4, same length.
    The frozen norm is arithmetic on constant buffers: pointwise."""
    from torchvision.ops import Conv2dNormActivation, FrozenBatchNorm2d

    a = check(nn.Sequential(Conv2dNormActivation(1, 4, 3, stride=2, norm_layer=FrozenBatchNorm2d)), (1, 1, 8, 8))
    assert "0.0" in a.nodes  # the inner Conv2d is a node of its own
    assert summary(last(a), 0) == (3, 3, 2, -1)
    r = last(check(nn.Sequential(Conv2dNormActivation(1, 4, 5, dilation=2)), (1, 1, 12, 12)))
    assert summary(r, 1) == (9, 9, 1, -4)
    assert r.shape == (1, 4, 12, 12)



# ---------------------------------------------------------------------------
# parameters recorded on the node (read once), handlers called directly
# ---------------------------------------------------------------------------


def test_window_params_recorded_on_nodes():
    """Each windowed rule records what it read in node.meta["rfgraph.window"], as ShapeProp records shapes."""

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 4, stride=2, padding=1)
            self.pool = nn.MaxPool2d(3, 2, 1, ceil_mode=True)
            self.up = nn.ConvTranspose2d(2, 2, 3, stride=2, padding=1, output_padding=1)

        def forward(self, x):
            y = self.pool(self.conv(x))
            y = F.pad(y, (1, 0, 2, 3))
            y = F.interpolate(self.up(y), size=(9, 9), mode="bilinear")
            return F.adaptive_avg_pool2d(y, (3, 1))

    a = rfgraph.analyze(M(), (1, 1, 16, 16))
    nodes = {n.name: n for n in a.graph_module.graph.nodes}
    meta = {name: n.meta.get(META_KEY) for name, n in nodes.items()}
    assert meta["conv"] == WindowParams("conv", (4, 4), (2, 2), (1, 1), (1, 1), (1, 1))
    assert meta["pool"] == WindowParams("pool", (3, 3), (2, 2), (1, 1), (1, 1), (1, 1), ceil_mode=True)
    assert meta["pad"] == WindowParams("pad", padding_left=(2, 1), padding_right=(3, 0))
    assert meta["up"] == WindowParams("transposed", (3, 3), (2, 2), (1, 1), (1, 1), (1, 1), output_padding=(1, 1))
    assert meta["interpolate"] == WindowParams("interpolate", size=(9, 9), mode="bilinear")
    assert meta["adaptive_avg_pool2d"] == WindowParams("adaptive", size=(3, 1))
    assert meta["x"] is None


def test_conv_same_padding_recorded_split():
    """padding="same" with k=4: total 3, torch pads 1 left and 2 right."""
    a = rfgraph.analyze(nn.Sequential(nn.Conv1d(1, 1, 4, padding="same")), (1, 1, 10))
    node = next(n for n in a.graph_module.graph.nodes if n.op == "call_module")
    params = node.meta[META_KEY]
    assert (params.padding_left, params.padding_right) == ((1,), (2,))


def test_conv_module_rule_directly():
    """Conv1d(k=3, s=2, p=1) on length 10 called with an OpCall: L(u) = 2u - 1, H(u) = 2u + 1, n_out 5,
    4 output channels."""
    x = SymTensor.input((1, 2, 10))
    out = conv_module_rule(OpCall(None, "conv", nn.Conv1d(2, 4, 3, stride=2, padding=1), (x,), {}))
    assert out.shape == (1, 4, 5)
    field = out.tags[2].field
    assert (field.lo, field.hi) == (PAMap.affine(2, -1), PAMap.affine(2, 1))


def test_pool_function_rule_directly_and_too_small():
    """max_pool1d(k=3, s=2) on 7: n_out 3, rf 3.  On length 2: output length 0 -> InputTooSmallError."""
    x = SymTensor.input((1, 1, 7))
    out = max_pool_function_rule(1)(OpCall(None, F.max_pool1d, None, (x, 3), {"stride": 2}))
    assert out.shape == (1, 1, 3) and out.tags[2].field.rf == 3
    with pytest.raises(InputTooSmallError, match="gets length 2 along tensor dim 2"):
        max_pool_function_rule(1)(OpCall(None, F.max_pool1d, None, (SymTensor.input((1, 1, 2)), 3), {}))


def test_interpolate_rule_directly():
    """Nearest x2 along the last dim of length 4: L = H = floor(u / 2), n_out 8, stride 1/2."""
    x = SymTensor.input((1, 1, 4))
    out = interpolate_function_rule(OpCall(None, F.interpolate, None, (x,), {"scale_factor": 2.0}))
    assert out.shape == (1, 1, 8)
    assert out.tags[2].field.lo == PAMap.floor_div(2) and out.tags[2].field.stride == HALF


# ---------------------------------------------------------------------------
# convs over channels that hold spatial positions (space-to-depth by view / permute)
# ---------------------------------------------------------------------------


class _SpaceToDepth(nn.Module):
    """timm TResNet's ``SpaceToDepth`` (view, permute, view) followed by a conv; ``unshuffle`` writes the
    same rearrangement (up to the order of the channels) as ``F.pixel_unshuffle``."""

    def __init__(self, k: int, bs: int = 2, groups: int = 1, unshuffle: bool = False):
        super().__init__()
        self.bs, self.unshuffle = bs, unshuffle
        self.conv = nn.Conv2d(2 * bs * bs, 4, k, padding=k // 2, groups=groups)

    def forward(self, x):
        n, c, h, w = x.shape
        bs = self.bs
        if self.unshuffle:
            x = F.pixel_unshuffle(x, bs)
        else:
            x = x.view(n, c, h // bs, bs, w // bs, bs).permute(0, 3, 5, 1, 2, 4).contiguous()
            x = x.view(n, c * bs * bs, h // bs, w // bs)
        return self.conv(x)


@pytest.mark.parametrize("k, bs, expected", [(1, 2, (2, 2, 2, 0)), (3, 2, (6, 6, 2, -2)), (3, 4, (12, 12, 4, -4))])
def test_conv_after_space_to_depth_mixes_the_channel_digits(k, bs, expected):
    """The channel dim holds the inner digits (``bs`` x ``bs`` offsets); a conv with one group reads
    every channel, so unit ``u`` of the block map reads input ``[bs*u, bs*u + bs - 1]``, and a conv
    k, p = k // 2 reads block units ``u - k//2 .. u + k//2``: k=1, bs=2: [2u, 2u+1] (rf 2, stride 2,
    start 0); k=3, bs=2: [2u - 2, 2u + 3] (rf 6, start -2); k=3, bs=4: [4u - 4, 4u + 7] (rf 12).
    Equal to ``pixel_unshuffle`` then the conv; every unit agrees with back-propagation.  (A 1x1 conv
    used to keep the channel dim's digits: rf 1, stride 1, too small.)"""
    model = _SpaceToDepth(k, bs)
    shape = (1, 2, 4 * bs, 4 * bs)
    r = last(check(model, shape))
    assert r.source == "symbolic"
    assert summary(r, 0) == summary(r, 1) == expected
    same = last(check(_SpaceToDepth(k, bs, unshuffle=True), shape))
    assert (same.rf, same.stride, same.start) == (r.rf, r.stride, r.start)
    for axis in (0, 1):
        assert_windows_match(model, shape, r, axis)


def test_grouped_conv_after_space_to_depth_keeps_each_groups_offsets():
    """TResNet's channel order (row offset, column offset, channel): two groups of 4 read row offset 0
    and 1 respectively, each both column offsets.  Output group g keeps its row offset (a digit of the
    channels); over all channels a unit still reads the 2x2 blocks of its 3x3 window: [2u - 2, 2u + 3]
    (rf 6, stride 2, start -2) along both axes, every unit against back-propagation (it was unknown)."""
    model = _SpaceToDepth(3, 2, groups=2)
    r = last(check(model, (1, 2, 8, 8)))
    assert r.source == "symbolic"
    assert summary(r, 0) == summary(r, 1) == (6, 6, 2, -2)
    for axis in (0, 1):
        assert_windows_match(model, (1, 2, 8, 8), r, axis)


def test_grouped_conv_cutting_the_offsets_is_unknown():
    """Groups of 2 channels over TResNet's (row offset, column offset, 3 channels) cut the channel factor
    (group 1 holds channel 2 of offset (0, 0) and channel 0 of offset (0, 1)) and hold no whole block of
    the offsets: no rule, unknown with the reason."""
    class Cut(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(12, 6, 1, groups=6)

        def forward(self, x):
            n, c, h, w = x.shape
            x = x.view(n, c, h // 2, 2, w // 2, 2).permute(0, 3, 5, 1, 2, 4).reshape(n, 4 * c, h // 2, w // 2)
            return self.conv(x)

    r = last(rfgraph.analyze(Cut(), (1, 3, 8, 8), fallback="unknown"))
    assert r.source == "unknown"
    assert "groups" in r.reason


def test_conv1d_over_tokens_as_channels_is_global():
    """Tokens (H*W) in the channel dim of a Conv1d (MLP-Mixer's token mixing written as a conv): every
    output reads every token: global along both axes (the channel dim's layout is not kept)."""
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.Flatten(2), Lambda(lambda t: t.transpose(1, 2)),
                          nn.Conv1d(16, 5, 1))
    r = last(check(model, (1, 1, 4, 4)))
    assert r.shape == (1, 5, 3)
    assert r.is_global == (True, True)


@pytest.mark.parametrize("groups,rows_per_group", [(2, 2), (4, 1)])
def test_grouped_conv1d_over_tokens_as_channels_reads_its_rows(groups, rows_per_group):
    """The 16 tokens of a 4x4 map (after a 3x3 conv, pad 1) as the channels of a ``Conv1d(16, 8, 1,
    groups)``: group k reads the tokens of rows ``k*R .. k*R + R - 1`` (R rows per group), all columns;
    output channel j is made by group ``j // (8 / groups)``.  Hand derivation: channel j reads input rows
    ``[R*k - 1, R*k + R]`` (rf R + 2, one group per 8 / groups channels: stride R * groups / 8, start -1),
    every column (global along W); each channel checked against back-propagation (it was unknown)."""
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.Flatten(2), Lambda(lambda t: t.transpose(1, 2)),
                          nn.Conv1d(16, 8, 1, groups=groups))
    r = last(check(model, (1, 1, 4, 4)))
    assert r.dims == (1, None) and r.is_global == (False, True)
    assert (r.rf[0], r.stride[0], r.start[0]) == (rows_per_group + 2, Fraction(rows_per_group * groups, 8), -1)
    probe_model = model.double()
    for j in range(8):
        x = torch.rand(1, 1, 4, 4, dtype=torch.float64, requires_grad=True)
        probe_model(x)[0, j].sum().backward()
        rows = torch.nonzero(x.grad[0, 0].abs().sum(1)).flatten().tolist()
        lo, hi = r.lo[0](j), r.hi[0](j)
        assert (rows[0], rows[-1]) == (max(lo, 0), min(hi, 3)), j


class _CatThen(nn.Module):
    """``cat([conv1x1(x) (n_near channels), conv7x7(x) (n_far channels)], 1)``, then ``mid``, then a channel
    slice: the slice reads the near operand (rf 1), the far one (rf 7) or both (7)."""

    def __init__(self, n_near: int, n_far: int, mid: nn.Module, channels: slice):
        super().__init__()
        self.near, self.far = nn.Conv2d(2, n_near, 1), nn.Conv2d(2, n_far, 7, padding=3)
        self.mid, self.channels = mid, channels

    def forward(self, x):
        return self.mid(torch.cat([self.near(x), self.far(x)], 1))[:, self.channels]


@pytest.mark.parametrize("n_near, n_far, mid, channels, rf", [
    # two groups of two channels: group 0 reads the near operand only, group 1 the far one
    (2, 2, nn.Conv2d(4, 4, 1, groups=2), slice(0, 2), 1),
    (2, 2, nn.Conv2d(4, 4, 1, groups=2), slice(2, 4), 7),
    # depthwise: every channel keeps its own operand's field
    (2, 2, nn.Conv2d(4, 4, 3, padding=1, groups=4), slice(0, 2), 3),
    (2, 2, nn.Conv2d(4, 4, 3, padding=1, groups=4), slice(1, 3), 9),
    # a depthwise channel multiplier of 2: output channels 0..3 come from input channels 0, 1
    (2, 2, nn.Conv2d(4, 8, 1, groups=4), slice(0, 4), 1),
    (2, 2, nn.Conv2d(4, 8, 1, groups=4), slice(4, 8), 7),
    # groups that cut across the operands: group 0 reads channel 0 (near) and channel 1 (far)
    (1, 3, nn.Conv2d(4, 4, 1, groups=2), slice(0, 2), 7),
    (3, 1, nn.Conv2d(4, 4, 1, groups=2), slice(0, 2), 1),
    (3, 1, nn.Conv2d(4, 4, 1, groups=2), slice(2, 4), 7),
    # one group mixes every channel: the union
    (2, 2, nn.Conv2d(4, 4, 1), slice(0, 2), 7),
])
def test_grouped_conv_after_a_concat_keeps_each_group_apart(n_near, n_far, mid, channels, rf):
    """Output group g of a grouped conv reads input group g only: a channel slice after it sees the
    union of the concat operands in its groups' inputs, not of all of them (a depthwise conv after a
    concat).  Brute force: every output unit's window against a numeric back-propagation."""
    model = _CatThen(n_near, n_far, mid, channels)
    a = check(model, (1, 2, 16, 16))
    assert summary(last(a)) == (rf, rf, 1, -(rf // 2))
    assert assert_windows_match(model, (1, 2, 16, 16), last(a), 0, interior_only=True) >= 1


def test_transposed_conv_reads_every_d_over_gcd_th_input_of_its_window():
    """Found by the U-Net fuzzing.  ``up``: a transposed conv k1 s2 of x (40): output o even reads x[o/2],
    o odd reads nothing.  ``m = cat([up[..., 39:], x])`` (channels): unit v reads v, and (39 + v) / 2
    when v is odd, so m's hi is not monotone (hi(14) = 14, hi(15) = 27, hi(16) = 16).  Then a transposed
    conv k4 s3 d2: output o reads m[(o - 2j) / 3] for the taps j in 0..3 that divide: o = 48 reads
    m[16] (j = 0) and m[14] (j = 3), never m[15] (taps j differ by 3 / gcd(2, 3) = 3, inputs by 2):
    window [14, 16].  o = 45 reads m[15] and m[13]: [13, 27].  The rule took the extremes over every
    input of [L(o), H(o)] and gave [14, 27] at o = 48."""

    def fn(x):
        up = F.conv_transpose1d(x, torch.ones(1, 1, 1, dtype=x.dtype), stride=2)
        m = torch.cat([up[..., 39:], x], 1)
        return F.conv_transpose1d(m, torch.ones(2, 1, 4, dtype=x.dtype), stride=3, dilation=2)

    model = Lambda(fn)
    r = last(check(model, (1, 1, 40), fallback="unknown"))
    assert r.source == "symbolic"
    assert (r.lo[0](48), r.hi[0](48)) == (14, 16) and (r.lo[0](45), r.hi[0](45)) == (13, 27)
    assert assert_windows_match(model, (1, 1, 40), r, 0) == r.shape[-1]


# ---------------------------------------------------------------------------
# unfold (Tensor.unfold, F.unfold / nn.Unfold) and F.fold
# ---------------------------------------------------------------------------


class _HaloWindows(nn.Module):
    """conv k=3 p=1, zero pad ``h``, ``unfold(win, step)`` along H and W, the taps summed (or indexed)."""

    def __init__(self, win: int, step: int, h: int, pick: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.win, self.step, self.h, self.pick = win, step, h, pick

    def forward(self, x):
        t = F.pad(self.conv(x), [self.h] * 4).unfold(2, self.win, self.step).unfold(3, self.win, self.step)
        return t[..., 0, 0] if self.pick else t.sum((-1, -2))


@pytest.mark.parametrize("win, step, h", [(4, 2, 1), (3, 1, 1), (2, 2, 0), (2, 3, 0)])
def test_tensor_unfold_windows(win, step, h):
    """Window ``u`` of the padded map holds its positions ``step*u - h .. step*u - h + win - 1``; through
    conv k=3: input ``[step*u - h - 1, step*u - h + win]`` (rf win + 2, stride step).  (4, 2, 1): HaloNet's
    overlapping halo windows; (2, 2, 0) tiles (a reshape into exact digits); (2, 3, 0) leaves gaps."""
    model = _HaloWindows(win, step, h)
    r = last(check(model, (1, 1, 8, 8), fallback="unknown"))
    assert r.source == "symbolic", r.reason
    n_u = r.shape[2]
    assert n_u == (8 + 2 * h - win) // step + 1
    assert [(r.lo[0](u), r.hi[0](u)) for u in range(n_u)] == [(step * u - h - 1, step * u - h + win) for u in range(n_u)]
    for axis in (0, 1):
        assert_windows_match(model, (1, 1, 8, 8), r, axis)


def test_tensor_unfold_index_of_a_tap_is_unknown():
    """Tap 0 of overlapping windows reads one position, which the windows' union cannot say: unknown."""
    r = last(rfgraph.analyze(_HaloWindows(4, 2, 1, pick=True), (1, 1, 8, 8), fallback="unknown"))
    assert r.source == "unknown" and "offset" in r.reason


class _Outlook(nn.Module):
    """VOLO's outlook pattern: conv k=3 p=1, ``F.unfold`` 3x3 (padding 1) of ``v``, a softmax over the taps
    (weights from the window's own values), ``F.fold`` back with the same windows."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)

    def forward(self, x):
        v = self.conv(x)
        n, c, h, w = v.shape
        t = F.unfold(v, 3, padding=1).view(n, c, 9, h * w)
        t = t.softmax(dim=2) * t.mean(dim=2, keepdim=True)  # each tap now reads its whole window
        return F.fold(t.reshape(n, c * 9, h * w), (h, w), 3, padding=1)


def test_unfold_then_fold_of_overlapping_windows():
    """Window ``l`` reads conv positions ``l - 1 .. l + 1`` (input ``[l - 2, l + 2]``) once its taps are
    mixed; fold puts tap ``j`` of window ``l`` at ``l - 1 + j``, so position ``p`` sums windows
    ``p - 1 .. p + 1``: input ``[p - 3, p + 3]``, rf 7."""
    model = _Outlook()
    r = last(check(model, (1, 1, 9, 9), fallback="unknown"))
    assert r.source == "symbolic", r.reason
    assert summary(r, 0) == summary(r, 1) == (7, 7, 1, -3)
    for axis in (0, 1):
        assert_windows_match(model, (1, 1, 9, 9), r, axis)


def test_fold_of_unmixed_taps_is_unknown():
    """``fold(unfold(x))`` with overlapping windows: tap ``j`` of window ``l`` is one position, which the
    windows' union cannot say (the result is ``x`` times the number of windows covering it): unknown."""
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Unfold(3, padding=1), nn.Fold((6, 6), 3, padding=1))
    r = last(rfgraph.analyze(model, (1, 1, 6, 6), fallback="unknown"))
    assert r.source == "unknown"


class _Patches(nn.Module):
    """MobileViT-v2's patches: conv k=3 p=1, ``F.unfold`` into 2x2 patches (tiling), a softmax over the
    patches (attention across patches at each offset), ``F.fold`` back."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)

    def forward(self, x):
        v = self.conv(x)
        n, c, h, w = v.shape
        t = F.unfold(v, 2, stride=2).view(n, c, 4, -1).softmax(dim=-1)
        return F.fold(t.reshape(n, c * 4, -1), (h, w), 2, stride=2)


def test_tiling_unfold_and_fold_are_exact_digits():
    """Tiling windows are digits: the softmax over the patches at one offset joins positions ``p mod 2 +
    2j``: conv field ``[p mod 2 - 1, p mod 2 + 7]`` on 8; fold restores the axis."""
    model = _Patches()
    r = last(check(model, (1, 1, 8, 8), fallback="unknown"))
    assert r.source == "symbolic", r.reason
    assert [(r.lo[0](u), r.hi[0](u)) for u in range(8)] == [(u % 2 - 1, u % 2 + 7) for u in range(8)]
    for axis in (0, 1):
        assert_windows_match(model, (1, 1, 8, 8), r, axis)


class _UnfoldInWindows(nn.Module):
    """conv k=3 p=1, windows of 4 as (B * nW, C, 4, 4), ``unfold(2, 2, 1)`` inside each window."""

    def __init__(self, pick: bool):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.pick = pick

    def forward(self, x):
        x = self.conv(x)
        b, c, h, w = x.shape
        t = x.view(b, c, h // 4, 4, w // 4, 4).permute(0, 2, 4, 1, 3, 5).reshape(-1, c, 4, 4).unfold(2, 2, 1)
        return t[..., 0] if self.pick else t.sum(-1)


def test_unfold_inside_windows_keeps_its_taps_apart():
    """Windows of 2 taps inside windows of 4 read rows ``[u, u + 1]`` of their window (rf 4 through the
    conv); picking one tap is unknown, as for an unfold of a whole axis."""
    r = last(check(_UnfoldInWindows(pick=False), (1, 1, 8, 8), fallback="unknown"))
    assert r.source == "symbolic" and r.rf == (4, 3)
    r = last(rfgraph.analyze(_UnfoldInWindows(pick=True), (1, 1, 8, 8), fallback="unknown"))
    assert r.source == "unknown" and "offset" in r.reason


def test_box_filter_written_with_im2col():
    """A box filter as ``F.unfold`` (k=3, s=2, p=1) then the mean over the taps (tests/test_probe.py's
    BoxFilter, there a leaf for the fallback): conv 3 p 1 -> [u - 1, u + 1], box reads [2u - 1, 2u + 1]:
    input [2u - 2, 2u + 2], rf 5, stride 2, start -2, now without the fallback."""

    def box(t):
        n, c, h, w = t.shape
        cols = F.unfold(t, 3, padding=1, stride=2)
        return cols.view(n, c, 9, -1).mean(2).view(n, c, (h + 1) // 2, (w + 1) // 2)

    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), Lambda(box))
    r = last(check(model, (1, 1, 10, 10), fallback="unknown"))
    assert r.source == "symbolic" and summary(r, 0) == summary(r, 1) == (5, 5, 2, -2)
    for axis in (0, 1):
        assert_windows_match(model, (1, 1, 10, 10), r, axis)


# ---------------------------------------------------------------------------
# concat pieces through pixel shuffle / unshuffle
# ---------------------------------------------------------------------------


def test_pixel_shuffle_of_whole_channel_groups_keeps_the_operands():
    """cat([1x1 (4 ch), 7x7 (4 ch)]) then pixel_shuffle(2): channels 4c .. 4c + 3 make output channel c, so
    channel 0 is the 1x1 operand's (rf 1: u reads u // 2), channel 1 the 7x7's (rf 7)."""
    assert last(check(CatThen(lambda y: F.pixel_shuffle(y, 2)[:, :1], 4, 4), (1, 2, 12, 12))).rf == (1, 1)
    assert last(check(CatThen(lambda y: F.pixel_shuffle(y, 2)[:, 1:], 4, 4), (1, 2, 12, 12))).rf == (7, 7)


def test_pixel_shuffle_mixing_operands_in_one_channel_is_unknown():
    """cat([1x1 (2 ch), 7x7 (2 ch)]) then pixel_shuffle(2): the one output channel holds the 1x1 operand
    at sub-positions (0, 0), (0, 1) and the 7x7's at (1, 0), (1, 1): the field depends on the row's
    parity, which no union states; unknown, with the op named.  Equal operands (two 1x1) stay exact."""
    r = last(rfgraph.analyze(CatThen(lambda y: F.pixel_shuffle(y, 2)), (1, 2, 12, 12), fallback="unknown"))
    assert r.source == "unknown" and "share output channels" in r.reason and "pixel_shuffle" in r.reason

    class Same(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(2, 2, 1), nn.Conv2d(2, 2, 1)

        def forward(self, x):
            return F.pixel_shuffle(torch.cat([self.a(x), self.b(x)], 1), 2)

    assert last(check(Same(), (1, 2, 12, 12))).rf == (1, 1)


def test_pixel_unshuffle_maps_each_operand_to_its_channel_blocks():
    """cat([1x1, 7x7]) then pixel_unshuffle(2): input channel c becomes channels 4c .. 4c + 3, so channels
    0 .. 7 read the 1x1 operand's 2x2 blocks (rf 2) and 8 .. 15 the 7x7's (``[2v - 3, 2v + 4]``: rf 8)."""
    assert last(check(CatThen(lambda y: F.pixel_unshuffle(y, 2)[:, :8]), (1, 2, 12, 12))).rf == (2, 2)
    assert last(check(CatThen(lambda y: F.pixel_unshuffle(y, 2)[:, 8:]), (1, 2, 12, 12))).rf == (8, 8)
