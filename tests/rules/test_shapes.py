"""Shape rules (`rfgraph.rules.shapes`): concat, reshapes, permutes, indexing, shape arithmetic.

Notation: ``n`` input length, ``k`` kernel, ``s`` stride, ``p`` padding, ``d``
dilation; ``L(u)``/``H(u)`` the first/last input coordinate read by output
``u`` (unclipped).  Every analysis also checks each node's shape against what
torch computes on a real tensor (`rfcheck.check`), and where cheap, every
output unit's window against a numeric back-propagation (`assert_windows_match`).
"""

from __future__ import annotations

import operator
from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F
from rfcheck import CatThen, Lambda, assert_windows_match, check, last, summary
from torch import nn

from rfgraph.algebra import PAMap
from rfgraph.rules import OpCall
from rfgraph.rules.shapes import apply_index, cat_rule, reshape_rule, split_rule
from rfgraph.values import SymTensor

F1 = Fraction(1)
HALF = Fraction(1, 2)


# ---------------------------------------------------------------------------
# merges and shape ops
# ---------------------------------------------------------------------------


def test_channel_concat():
    """cat([conv k=3 p=1, conv k=5 p=2], dim=1): both centered at u: rf 5, rf_path_min 3, aligned, 2 + 3 channels."""

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(1, 2, 3, padding=1)
            self.b = nn.Conv2d(1, 3, 5, padding=2)

        def forward(self, x):
            return torch.cat([self.a(x), self.b(x)], dim=1)

    r = last(check(M(), (1, 1, 8, 8)))
    assert summary(r, 0) == (5, 5, 1, -2)
    assert r.rf_path_min == (3, 3)
    assert r.aligned and r.max_center_shift == 0
    assert r.shape == (1, 5, 8, 8)



def test_channel_reshapes_keep_the_field():
    """Channel shuffle by view/transpose/reshape, a flatten of (N, C) and a permute round trip touch
    no spatial dim: rf 3 (conv k=3, p=1) and the spatial dims stay at (2, 3) of the result."""

    def shuffle(x):
        n, c, h, w = x.shape
        y = x.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)
        y = y.flatten(0, 1).unsqueeze(0)  # (1, N*C, H, W)
        return y.permute(0, 2, 3, 1).permute(0, 3, 1, 2).contiguous()

    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), Lambda(shuffle))
    r = last(check(model, (2, 1, 5, 5)))
    assert summary(r, 0) == summary(r, 1) == (3, 3, 1, -1)
    assert r.dims == (2, 3)
    assert r.shape == (1, 8, 5, 5)



def test_channels_last_dims_are_tracked():
    """x.permute(0, 2, 3, 1): H now at dim 1, W at dim 2; a LayerNorm over C keeps rf 1, no context."""
    r = last(check(Lambda(lambda x: F.layer_norm(x.permute(0, 2, 3, 1), (3,))), (1, 3, 4, 5)))
    assert r.dims == (1, 2)
    assert r.rf == (1, 1)
    assert not r.global_context



def test_size_shape_getitem_drive_shape_arithmetic():
    """x.size(0), x.shape[-2:], h * 2 are plain integers: interpolate(size=(2h, 2w)) nearest gives
    rf 1, stride 1/2; x.view(x.size(0), -1) of a pooled (N, C, 1, 1) tensor is global."""

    class M(nn.Module):
        def forward(self, x):
            h, w = x.shape[-2:]
            y = F.interpolate(x, size=(h * 2, w * 2))
            z = F.adaptive_avg_pool2d(y, 1)
            return y, z.view(z.size(0), -1)

    a = check(M(), (1, 3, 4, 5))
    r = a["interpolate"]
    assert summary(r, 0) == (1, 1, HALF, 0)
    assert r.shape == (1, 3, 8, 10)
    assert a["view"].is_global == (True, True)
    assert a["view"].shape == (1, 3)



def test_getitem_slices():
    """x[:, :, 1:-1]: L = H = u + 1 (start 1), 8 -> 6.  x[..., ::2]: L = H = 2u, stride 2, 6 -> 3.
    x[:, 0] selects a channel: fields unchanged.  x[:, :, 2] pins H (no dim carries it), W unchanged."""
    r = last(check(Lambda(lambda x: x[:, :, 1:-1]), (1, 2, 8)))
    assert summary(r) == (1, 1, 1, 1) and r.shape == (1, 2, 6)
    r = last(check(Lambda(lambda x: x[..., ::2]), (1, 2, 6)))
    assert summary(r) == (1, 1, 2, 0) and r.shape == (1, 2, 3)
    r = last(check(Lambda(lambda x: x[:, 0]), (1, 2, 5, 6)))
    assert r.dims == (1, 2) and r.rf == (1, 1)
    r = last(check(Lambda(lambda x: x[:, :, 2]), (1, 2, 5, 6)))
    assert r.dims == (None, 2)
    assert r.rf[1] == 1


def test_empty_prefix_slice_is_taken_on_purpose():
    """deepseek_vit: ``x[:, :0]`` (zero prefix tokens) is an empty tensor the model takes on purpose,
    concatenated back in front of the tokens: no error, and the tokens keep their fields (rf 3 of the
    conv) through the concat and the slice after it."""

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3, padding=1)

        def forward(self, x):
            t = self.conv(x).flatten(2).transpose(1, 2)   # (B, H*W, C)
            prefix = t[:, :0]                             # no prefix tokens
            t = torch.cat([prefix, t], dim=1)
            return t[:, prefix.shape[1]:].transpose(1, 2).reshape(1, 2, 6, 6)

    r = last(check(M(), (1, 1, 6, 6)))
    assert r.source == "symbolic" and r.rf == (3, 3) and r.start == (-1, -1)




def test_repeat_interleave():
    """x.repeat_interleave(2, dim=-1) along W: unit u is unit floor(u / 2): L = H = floor(u / 2),
    stride 1/2 (a nearest upsample), 5 -> 10.  Along the batch dim (gcvit's global query repeated over
    the windows): the fields stay.  Along tokens (B, H*W, C): each token followed by its copy, and a
    reshape to (B, H, W, 2, C) gives the map back (conv field rf 3)."""
    r = last(check(Lambda(lambda x: x.repeat_interleave(2, dim=-1)), (1, 1, 4, 5)))
    assert r.shape == (1, 1, 4, 10) and summary(r, 1) == (1, 1, HALF, 0)
    assert [(r.lo[1](u), r.hi[1](u)) for u in range(4)] == [(0, 0), (0, 0), (1, 1), (1, 1)]
    r = last(check(Lambda(lambda x: torch.repeat_interleave(x, 3, dim=0)), (1, 1, 4, 5)))
    assert r.shape == (3, 1, 4, 5) and r.rf == (1, 1) and r.source == "symbolic"

    class Tokens(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3, padding=1)

        def forward(self, x):
            t = self.conv(x).flatten(2).transpose(1, 2).repeat_interleave(2, dim=1)  # (1, 2 * 16, 2)
            return t.reshape(1, 4, 4, 2, 2).permute(0, 3, 4, 1, 2).reshape(1, 4, 4, 4)

    r = last(check(Tokens(), (1, 1, 4, 4)))
    assert r.source == "symbolic" and summary(r, 0) == (3, 3, 1, -1)



class _DctStem(nn.Module):
    """csatv2's DCT stem in small: 4 x 4 patches, a linear map over each patch's columns then rows
    (the DCT), the 16 coefficients per channel reordered by a constant index (the zigzag order:
    advanced indexing along a channel dim), a 1x1 conv, then an adaptive average pool 8 -> 3."""

    def __init__(self, index_as_tensor: bool, residual: bool = False):
        super().__init__()
        self.residual = nn.Conv2d(2, 2, 3, padding=1) if residual else None
        self.dct = nn.Linear(4, 4, bias=False)
        perm = [0, 1, 4, 8, 5, 2, 3, 6, 9, 12, 13, 10, 7, 11, 14, 15]
        self.perm = torch.tensor(perm) if index_as_tensor else perm
        self.conv = nn.Conv2d(16, 2, 1)
        self.pool = nn.AdaptiveAvgPool2d(3)

    def forward(self, x):
        b, c, h, w = x.shape
        x = x.reshape(b, c, h // 4, 4, w // 4, 4).permute(0, 2, 4, 1, 3, 5)
        x = self.dct(self.dct(x).transpose(-1, -2)).transpose(-1, -2)
        x = x.reshape(-1, c, 16)[:, :, self.perm]
        x = x.reshape(b, h // 4, w // 4, c, 16).permute(0, 3, 4, 1, 2)
        x = self.conv(x[:, 0])
        if self.residual is not None:  # csatv2's first block: a conv branch added to the stem's output
            x = x + self.residual(x)
        return self.pool(x)


def test_constant_index_along_channels_is_a_gather():
    """x[:, :, perm] along the DCT coefficients (no position) keeps every field: the stem's unit u reads
    its patch [4u, 4u + 3]; the adaptive pool 8 -> 3 reads stem units [0, 2], [2, 5], [5, 7]: input
    [0, 11], [8, 23], [20, 31].  (The coefficients' dropped digits were also kept as a field indexed by
    the old positions, which the pool's windows no longer matched: 'different strides'.)"""
    for as_tensor in (False, True):
        m = _DctStem(as_tensor)
        a = check(m, (1, 1, 32, 32))
        assert a["getitem_4"].source == "symbolic" and a["getitem_4"].shape == (64, 1, 16)
        r = last(a)
        assert r.source == "symbolic"
        assert [(r.lo[0](o), r.hi[0](o)) for o in range(3)] == [(0, 11), (8, 23), (20, 31)]
        assert_windows_match(m, (1, 1, 32, 32), r, 0)
        assert_windows_match(m, (1, 1, 32, 32), r, 1)
    # with a 3x3 conv branch added to the stem's output first: stem units [o0 - 1, o1 + 1] of the pool's
    # [o0, o1]: [-4, 15], [4, 27], [16, 35] (the pinned copy of the patch field was a third operand there)
    m = _DctStem(False, residual=True)
    r = last(check(m, (1, 1, 32, 32)))
    assert r.source == "symbolic", r.reason
    assert [(r.lo[0](o), r.hi[0](o)) for o in range(3)] == [(-4, 15), (4, 27), (16, 35)]
    assert_windows_match(m, (1, 1, 32, 32), r, 0)


def test_constant_index_along_a_spatial_dim():
    """x[..., [1, 2, 5]] along W: increasing positions, the window L = H = (1, 2, 5) as a table;
    a permutation of positions ([2, 0, 1]) has no monotone window: unknown, named."""
    r = last(check(Lambda(lambda x: x[..., [1, 2, 5]]), (1, 1, 4, 6)))
    assert r.source == "symbolic" and r.shape == (1, 1, 4, 3)
    assert [(r.lo[1](u), r.hi[1](u)) for u in range(3)] == [(1, 1), (2, 2), (5, 5)]
    r = last(check(Lambda(lambda x: x[:, :, :, [2, 0, 1]]), (1, 1, 4, 6)))
    assert r.source == "unknown" and "advanced indexing" in r.reason



def test_values_and_indices_of_a_reduction():
    """``x.max(dim=-1).values`` and ``.indices`` (HF Hiera's query pooling): the rule's (values, indices)
    pair, by name.  max over a window's 2 positions (view (.., 3, 2)): unit u reads [2u, 2u + 1]."""
    r = last(check(Lambda(lambda x: x.view(1, 1, 3, 2).max(dim=-1).values), (1, 1, 6)))
    assert r.source == "symbolic" and summary(r) == (2, 2, 2, 0)
    r = last(check(Lambda(lambda x: x.max(dim=1).indices), (1, 2, 6)))
    assert r.shape == (1, 6) and r.rf == (1,)


# ---------------------------------------------------------------------------
# handlers called directly
# ---------------------------------------------------------------------------


def _cat() -> SymTensor:
    """cat([a, b], 1) of two 2-channel tensors; b's H field is widened to [u - 3, u + 3]."""
    x = SymTensor.input((1, 1, 9, 9))
    b = x.windows({2: (PAMap.affine(1, -3), PAMap.affine(1, 3), 9)}, "conv 7x1").like(shape=(1, 2, 9, 9))
    return cat_rule(OpCall(None, torch.cat, None, ([x.like(shape=(1, 2, 9, 9)), b], 1), {}))


def test_slicing_a_concat_piece_back_out():
    """x[:, :2] is operand a (rf 1); x[:, 1:3] straddles both (union: rf 7); split(2, 1) gives each operand."""
    x = _cat()
    assert x.shape == (1, 4, 9, 9)
    assert apply_index(OpCall(None, operator.getitem, None, (), {}), x, (slice(None), slice(0, 2))).tags[2].field.rf == 1
    both = apply_index(OpCall(None, operator.getitem, None, (), {}), x, (slice(None), slice(1, 3)))
    assert both.tags[2].field.rf == 7
    a, b = split_rule(OpCall(None, torch.split, None, (x, 2, 1), {}))
    assert (a.tags[2].field.rf, b.tags[2].field.rf) == (1, 7)


def test_reshape_rule_round_trip():
    """flatten H, W into tokens and back: the fields come back exactly."""
    x = SymTensor.input((1, 2, 4, 6))
    flat = reshape_rule(OpCall(None, "view", None, (x, 1, 2, 24), {}))
    back = reshape_rule(OpCall(None, "view", None, (flat, (1, 2, 4, 6)), {}))
    assert back.tags == x.tags


def test_unsqueeze_by_indexing_with_none():
    """``y[None]``, ``y[None, ...]``, ``y[..., None]``, ``y[:, None, :, None]`` add size-1 dims and keep the
    fields on the moved spatial dims (issue 15: an obscure TypeError was reported for ``a[None]``)."""
    import rfgraph

    cases = {
        "lead": (lambda y: y[None], (1, 1, 3, 14, 14), (3, 4)),
        "lead_ellipsis": (lambda y: y[None, ...], (1, 1, 3, 14, 14), (3, 4)),
        "trail": (lambda y: y[..., None], (1, 3, 14, 14, 1), (2, 3)),
        "between": (lambda y: y[:, None, :, None], (1, 1, 3, 1, 14, 14), (4, 5)),
        "round_trip": (lambda y: y[None][0], (1, 3, 14, 14), (2, 3)),
    }
    for name, (fn, shape, dims) in cases.items():
        net = nn.Sequential(nn.Conv2d(3, 3, 3), Lambda(fn))
        rec = rfgraph.analyze(net, (1, 3, 16, 16))["output"]
        assert (rec.shape, rec.dims, rec.rf) == (shape, dims, (3, 3)), name


def test_stack_and_unsqueeze_keep_a_size_1_spatial_dim():
    """Found by the U-Net fuzzing (a thin axis pooled down to one position, then stacked with its skip):
    the stack's unsqueeze went through the general reshape, which pinned the size-1 axis (its field
    constant over every later position), and the merge with a path still carrying that axis was refused
    (``unknown``).  x (1, 1, 4, 4); ``a = avg_pool((4, 1))``: one row, H window [0, 3];
    ``stack([a, a]).amax(0)`` keeps it; nearest resize to 2 rows: both read row 0, [0, 3]; added to
    ``avg_pool((2, 1))`` of x (rows [2v, 2v + 1]): H windows [0, 3] and [0, 3], rf 4, start 0; the stride
    is that of the resized path, whose maps are ``4 floor(v / 2)`` and ``4 floor(v / 2) + 3`` (pool stride
    4, nearest x2): 2.  W is untouched (rf 1, stride 1)."""

    def fn(x):
        a = F.avg_pool2d(x, (4, 1))
        s = torch.stack([a, a]).amax(0)
        u = F.interpolate(s, size=(2, 4), mode="nearest")
        return u + F.avg_pool2d(x, (2, 1))

    r = last(check(Lambda(fn), (1, 1, 4, 4), fallback="unknown"))
    assert r.source == "symbolic"
    assert [(r.lo[0](v), r.hi[0](v)) for v in range(2)] == [(0, 3), (0, 3)]
    assert (r.rf, r.stride, r.start) == ((4, 1), (Fraction(2), Fraction(1)), (0, 0))


# ---------------------------------------------------------------------------
# concat pieces through shape ops (SymTensor.parts)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("fn,rf", [
    (lambda y: y.unsqueeze(2)[:, :2, 0], (1, 1)),  # unsqueeze before / after the concat dim
    (lambda y: torch.unsqueeze(y, 0)[0, :, 2:], (7, 7)),
    (lambda y: y.unsqueeze(1)[:, 0, :2], (1, 1)),
    (lambda y: y[0, :, 0].t()[:, :2], (1, 1)),  # t moves the concat dim last
    (lambda y: torch.t(y[0, :, 0])[:, 2:], (7, 7)),
    (lambda y: y[0, :, 0].t().t()[:2][None, :, None], (1, 1)),
    # repeat tiles the pieces: channels 4, 5 are channels 0, 1 again; 2 .. 5 straddle both operands
    (lambda y: y.repeat(1, 2, 1, 1)[:, 4:6], (1, 1)),
    (lambda y: y.repeat(1, 2, 1, 1)[:, 6:], (7, 7)),
    (lambda y: y.repeat(1, 2, 1, 1)[:, 2:6], (7, 7)),
    (lambda y: y.repeat(2, 1, 1, 1)[1:, :2], (1, 1)),
    (lambda y: y.repeat(3, 1, 1, 1, 1)[2, :, :2], (1, 1)),  # new leading dims: the concat dim moves
])
def test_concat_pieces_through_shape_ops(fn, rf):
    """cat([1x1, 7x7], 1) (2 + 2 channels), a shape op, then one operand's channels: rf 1 or 7 (the union
    over the concat, 7, was reported for both before)."""
    assert last(check(CatThen(fn), (1, 2, 12, 12))).rf == rf


def test_channel_shuffle_by_views_keeps_the_union_of_both_halves():
    """ShuffleNetV2's shuffle (view (2, 2), transpose, view back) interleaves the operands: each half of
    ``chunk(2, 1)`` holds one channel of each, so both read the union (7), exactly."""
    def shuffle(y):
        return y.view(1, 2, 2, 12, 12).transpose(1, 2).reshape(1, 4, 12, 12).chunk(2, 1)[0]

    assert last(check(CatThen(shuffle), (1, 2, 12, 12))).rf == (7, 7)


def test_a_slice_straddling_concat_pieces_reads_only_those_it_overlaps():
    """cat([1x1 (2 ch), 7x7 (2 ch), 3x3 (2 ch)]): channels 1 .. 2 overlap the first two operands (rf 7),
    channels 4 .. 5 the 3x3's only (3); a straddling slice is itself a concat of the overlaps, so slicing
    it again recovers each (channel 0 of [1 .. 3) is the 1x1's: rf 1; channels 1, 2 of [3 .. 6) the 3x3's)."""
    class Three(nn.Module):
        def __init__(self, fn):
            super().__init__()
            self.fn = fn
            self.a, self.b, self.c = nn.Conv2d(2, 2, 1), nn.Conv2d(2, 2, 7, padding=3), nn.Conv2d(2, 2, 3, padding=1)

        def forward(self, x):
            return self.fn(torch.cat([self.a(x), self.b(x), self.c(x)], 1))

    for fn, rf in [(lambda y: y[:, 1:3], (7, 7)), (lambda y: y[:, 4:], (3, 3)), (lambda y: y[:, 1:3][:, :1], (1, 1)),
                   (lambda y: y[:, 3:6][:, 1:], (3, 3))]:
        assert last(check(Three(fn), (1, 2, 12, 12))).rf == rf
