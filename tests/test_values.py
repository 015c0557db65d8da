"""The tag algebra of `rfgraph.values`: token layouts as digits of axes, and mixing along dims.

Hand-derived cases on an identity field (an input tensor), so that a mixed field is the group of
positions itself: a dim of ``n`` positions split by a window partition of ``ws`` holds the outer digit
(stride ``ws``) and the inner one (stride 1); mixing the inner digit joins ``[ws*floor(p/ws), +ws-1]``,
mixing the outer one (a grid) joins ``{p mod ws + ws*j}``, a roll by ``-s`` first shifts the blocks by ``s``.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from rfcheck import last
from torch import nn

import rfgraph
from rfgraph.algebra import PAMap
from rfgraph.values import Axis, Cat, Flat, Mixed, Sub, SymTensor, merge_tensors


def _bhwc(n: int = 8, c: int = 2) -> SymTensor:
    """(B, H, W, C) with H, W = n carrying axes 0, 1."""
    return SymTensor.input((1, c, n, n)).permute([0, 2, 3, 1])


def _partition(x: SymTensor, ws: int) -> SymTensor:
    """timm's window_partition: (B, H, W, C) -> (B * nH * nW, ws * ws, C)."""
    b, h, w, c = x.shape
    return x.reshape((b, h // ws, ws, w // ws, ws, c)).permute([0, 1, 3, 2, 4, 5]).reshape((-1, ws * ws, c))


def _reverse(x: SymTensor, ws: int, h: int, w: int) -> SymTensor:
    b = x.shape[0] // ((h // ws) * (w // ws))
    c = x.shape[-1]
    return x.reshape((b, h // ws, w // ws, ws, ws, c)).permute([0, 1, 3, 2, 4, 5]).reshape((b, h, w, c))


def _window(x: SymTensor, axis: int, n: int):
    f = x.axis_fields()[axis][0]
    return [(f.lo(u), f.hi(u)) for u in range(n)]


def test_flatten_and_unflatten_round_trip():
    x = SymTensor.input((1, 2, 4, 6))
    t = x.reshape((1, 2, 24))
    assert t.tags[2] == Flat(((4, Axis(0, x.tags[2].field)), (6, Axis(1, x.tags[3].field))))
    assert t.reshape((1, 2, 4, 6)).tags == x.tags


def test_window_partition_digits_and_reverse():
    """H = 8 split by ws = 4: outer digit (stride 4, size 2) in the batch dim, inner (stride 1, size 4)
    in the token dim; the reverse puts the digits back together into the axis."""
    x = _bhwc()
    w = _partition(x, 4)
    assert w.shape == (4, 16, 2)
    f = x.tags[1].field
    assert w.tags[0] == Flat(((2, Sub(0, f, 8, 4, 2)), (2, Sub(1, f, 8, 4, 2))))
    assert w.tags[1] == Flat(((4, Sub(0, f, 8, 1, 4)), (4, Sub(1, f, 8, 1, 4))))
    assert _reverse(w, 4, 8, 8).tags == x.tags


def test_mix_inner_digit_gives_blocks():
    """softmax over the window's tokens: p joins [4*floor(p/4), 4*floor(p/4) + 3]."""
    back = _reverse(_partition(_bhwc(), 4).mix([1]), 4, 8, 8)
    assert isinstance(back.tags[1], Axis)
    assert _window(back, 0, 8) == [(4 * (u // 4), 4 * (u // 4) + 3) for u in range(8)]
    assert back.tags[1].field.rf == 4 and back.tags[1].field.stride == 1


@pytest.mark.parametrize("wrap_hidden", [True, False])
def test_mix_with_a_roll_shifts_the_blocks(wrap_hidden):
    """roll by -2 first (Swin's shift), windows of 4: p joins [4*floor((p-2)/4) + 2, ... + 3]; rolled back
    by +2 the axis is whole again.  The wrapped window holds p = 6, 7, 0, 1.  Hidden (Swin's mask keeps
    the two ends apart): the periodic extension, p = 0 reads [-2, 1] (-2, -1 stand for 6, 7; cut at the
    border, [0, 1]).  Not hidden: those four units read both ends, [0, 7]."""
    x = _bhwc()
    r = x.roll(1, -2).roll(2, -2)
    assert isinstance(r.tags[1], Sub) and r.tags[1].shift == 2
    back = _reverse(_partition(r, 4).mix([1], wrap_hidden=wrap_hidden), 4, 8, 8).roll(1, 2).roll(2, 2)
    assert isinstance(back.tags[1], Axis) and isinstance(back.tags[2], Axis)
    periodic = [(4 * ((u - 2) // 4) + 2, 4 * ((u - 2) // 4) + 5) for u in range(8)]
    expected = periodic if wrap_hidden else [(0, 7) if u in (0, 1, 6, 7) else periodic[u] for u in range(8)]
    assert _window(back, 0, 8) == expected


def test_mix_outer_digit_gives_a_grid():
    """MaxViT's grid: tokens 4 apart mix: p joins {p mod 4, p mod 4 + 4}: hull [p mod 4, p mod 4 + 4]."""
    x = _bhwc()
    g = x.reshape((1, 2, 4, 2, 4, 2)).permute([0, 2, 4, 1, 3, 5]).reshape((16, 4, 2))
    back = g.mix([1]).reshape((1, 4, 4, 2, 2, 2)).permute([0, 3, 1, 4, 2, 5]).reshape((1, 8, 8, 2))
    assert isinstance(back.tags[1], Axis)
    assert _window(back, 0, 8) == [(u % 4, u % 4 + 4) for u in range(8)]


def test_mix_of_every_digit_is_global():
    x = _bhwc()
    w = _partition(x, 4)
    both = w.reshape((1, 2, 2, 16, 2)).permute([0, 1, 3, 2, 4]).reshape((1, 2, 32, 2))
    # (W's outer digit and every token) mixed: W global, H still in blocks of 4
    out = both.mix([2])
    fields = out.axis_fields()
    assert all(f.is_global for f in fields[1])
    assert not any(f.is_global for f in fields[0])
    tokens = x.reshape((1, 64, 2))
    assert all(f.is_global for fs in tokens.mix([1]).axis_fields().values() for f in fs)


def test_reduce_over_a_window_then_merge_back():
    """x - x.mean(tokens, keepdim) in a window: every token reads its whole block; the mean dropped
    (keepdim=False) leaves the batch dim with the block field, constant over the dropped digits."""
    w = _partition(_bhwc(), 4)
    mean = w.reduce([1], keepdim=True)
    out, _ = merge_tensors([w, mean], w.shape, "sub")
    assert _window(_reverse(out, 4, 8, 8), 0, 8) == [(4 * (u // 4), 4 * (u // 4) + 3) for u in range(8)]
    dropped = w.reduce([1], keepdim=False)
    assert dropped.shape == (4, 2)
    # reported in storage order: 2 windows, window o reads [4o, 4o + 3]
    assert _window(dropped, 0, 2) == [(0, 3), (4, 7)]


def test_patch_merge_is_an_axis_of_half_length():
    """Swin's patch merging: (B, H/2, 2, W/2, 2, C) -> permute -> flatten(3) -> linear: unit o reads 2o, 2o+1;
    a conv k=3 p=1 then reads it as an ordinary axis of 4 positions: [2(o - 1), 2(o + 1) + 1]."""
    x = _bhwc()
    m = x.reshape((1, 4, 2, 4, 2, 2)).permute([0, 1, 3, 4, 2, 5]).reshape((1, 4, 4, 8)).reduce([3], keepdim=True)
    assert _window(m, 0, 4) == [(0, 1), (2, 3), (4, 5), (6, 7)]
    read = m.permute([0, 3, 1, 2]).windows({2: (PAMap.affine(1, -1), PAMap.affine(1, 1), 4)}, "conv")
    assert isinstance(read.tags[2], Axis)
    f = read.tags[2].field
    assert [(f.lo(u), f.hi(u)) for u in range(4)] == [(2 * (u - 1), 2 * (u + 1) + 1) for u in range(4)]
    assert f.stride == 2


def test_class_token_cat_and_slice_off():
    """cat(cls, tokens) along the token dim keeps both segments; slicing [1:] restores the tokens exactly;
    mixing the whole dim makes every position (the class token too) global."""
    x = SymTensor.input((1, 2, 4, 4)).reshape((1, 2, 16)).permute([0, 2, 1])
    cls = SymTensor((1, 1, 2))
    out, _ = merge_tensors([cls, x], (1, 17, 2), "cat", concat_dim=1)
    assert out.tags[1] == Cat(((1, None), (16, x.tags[1])))
    start = PAMap.affine(1, 1)
    sliced = out.windows({1: (start, start, 16)}, "slice")
    assert sliced.tags[1] == x.tags[1]
    mixed = out.mix([1])
    segs = mixed.tags[1].segments
    assert isinstance(segs[0][1], Mixed) and all(f.is_global for _, f in segs[0][1].pairs)
    assert all(f.is_global for _, f in segs[1][1].items())
    assert out.index(1, 0).pinned == {}  # the class token holds no spatial position


def test_irregular_split_is_refused_by_mix():
    """(6, 4) -> (4, 6) splits factors unevenly: irregular positions; mixing them is unknown."""
    x = SymTensor.input((1, 1, 6, 4))
    y = x.reshape((1, 1, 4, 6))
    assert isinstance(y.tags[2], Mixed) and not y.tags[2].complete
    assert y.mix([3]).unknown


@pytest.mark.parametrize("wrap_hidden", [True, False])
@pytest.mark.parametrize("ws,shift", [(2, 0), (2, 1), (4, 1), (4, 3)])
def test_block_maps_against_brute_force(ws, shift, wrap_hidden):
    """Every position's hull equals the extent of its rolled window, counted by brute force: the members'
    positions modulo n (a window that wraps holds both ends), or, when a mask hides the wrap, the periodic
    extension (members unwrapped around p)."""
    n = 8
    x = _bhwc(n).roll(1, -shift)
    back = _reverse(_partition(x, ws).mix([1], wrap_hidden=wrap_hidden), ws, n, n).roll(1, shift)
    got = _window(back, 0, n)
    for p in range(n):
        q = (p - shift) % n  # rolled index holding p
        members = [(q2 + shift) for q2 in range(ws * (q // ws), ws * (q // ws) + ws)]
        if wrap_hidden:  # unwrap around p (periodic extension): members within one window of p
            members = [m - n if m - p >= ws else (m + n if p - m >= ws else m) for m in members]
        else:
            members = [m % n for m in members]
        assert got[p] == (min(members), max(members))


def test_pad_of_global_token_dim_keeps_a_consistent_layout():
    """BoTNet's relative logits (rel_logits_1d): tokens already global (after attention), padded by one
    column, flattened, padded by W - 1, regrouped as (W + 1, 2W - 1) and sliced back.  The padded dims
    no longer factor as the tokens did: the positions are irregular but global, and every reshape
    after them works (lamhalobotnet50ts_256 crashed with 'pop from empty list' in the regrouping)."""
    w = 4
    g = SymTensor.input((1, 1, w, w)).reshape((1, w * w)).mix([1]).reshape((w, w))  # (H, W), global
    x = g.like(shape=(w, w, 2 * w - 1), tags=(*g.tags, None))  # the logits (H, W, 2W - 1)
    padded = x.window(2, PAMap.identity(), PAMap.identity(), 2 * w, "pad")  # (0, 1)
    flat = padded.reshape((w, 2 * w * w))
    assert flat.tags[1] == Flat(((w, g.tags[1]), (2 * w, None)))
    flat = flat.window(1, PAMap.identity(), PAMap.identity(), 2 * w * w + w - 1, "pad")  # (0, W - 1)
    assert isinstance(flat.tags[1], Mixed) and all(f.is_global for _, f in flat.tags[1].items())
    out = flat.reshape((w, w + 1, 2 * w - 1))
    assert out.tags[0] == g.tags[0] and out.tags[2] == out.tags[1] == flat.tags[1]


def test_concat_of_flattened_maps_at_two_strides_is_not_one_field():
    """Two feature maps at strides 1 and 2, flattened and concatenated along the tokens (a detection head
    joining its pyramid levels): token u of the first map and token u of the second are different units
    with fields of different slopes, so the node has no single rf / stride / start: unknown with the
    reason, never a merged number (a hull of the second map added to every unit gave rf 1871 stride 0
    on YOLOv8n's head)."""
    class Levels(nn.Module):
        def __init__(self):
            super().__init__()
            self.fine, self.coarse = nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(1, 2, 3, stride=2, padding=1)

        def forward(self, x):
            return torch.cat([self.fine(x).flatten(2), self.coarse(x).flatten(2)], 2)

    r = last(rfgraph.analyze(Levels(), (1, 1, 8, 8)))
    assert r.shape == (1, 2, 64 + 16) and r.source == "unknown" and "different strides" in r.reason


def test_concat_of_flattened_maps_on_one_grid_merges_index_by_index():
    """The same with two maps on one grid (3x3 and 5x5 convs, stride 1): token u of either map reads the
    window of its own position, so the node's field is the union index by index: rf 5, stride 1."""
    class Branches(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(1, 2, 5, padding=2)

        def forward(self, x):
            return torch.cat([self.a(x).flatten(2), self.b(x).flatten(2)], 2)

    r = last(rfgraph.analyze(Branches(), (1, 1, 8, 8)))
    assert (r.rf, r.stride, r.start) == ((5, 5), (1, 1), (-2, -2))


# ---------------------------------------------------------------------------
# concat pieces through reshapes, indexes and reductions (SymTensor.parts)
# ---------------------------------------------------------------------------


def _cat_rf(fn, near: int = 2, far: int = 2, shape=(1, 2, 12, 12)):
    from rfcheck import CatThen, check

    return last(check(CatThen(fn, near, far), shape)).rf


@pytest.mark.parametrize("fn,rf", [
    # the concat dim split into (2, 2): its outer digit indexes the operands, [2a, 2b) -> [a, b)
    (lambda y: y.view(1, 2, 2, 12, 12)[:, 0], (1, 1)),
    (lambda y: y.view(1, 2, 2, 12, 12)[:, 1], (7, 7)),
    (lambda y: y.view(1, 2, 2, -1).view(1, 4, 12, 12)[:, :2], (1, 1)),  # split, then merged back
    (lambda y: y.reshape(1, 2, 2, 144).reshape(1, 4, 12, 12)[:, 2:], (7, 7)),
    # merged with H: channel c, row h is row 12*c + h; [a, b) -> [12a, 12b)
    (lambda y: y.view(1, 48, 12)[:, :24].view(1, 2, 12, 12), (1, 1)),
    (lambda y: y.view(1, 48, 12)[:, 24:].view(1, 2, 12, 12), (7, 7)),
    # the inner digit of a split mixes both operands: the union, exact here
    (lambda y: y.view(1, 2, 2, 12, 12)[:, :, 0], (7, 7)),
    # an index along another dim (the batch), a reduction over another dim: the pieces are kept
    (lambda y: y[0][:2], (1, 1)),
    (lambda y: y[0][2:], (7, 7)),
    (lambda y: y.mean(3, keepdim=True)[:, :2], (1, None)),
    (lambda y: y.sum(0)[:2], (1, 1)),
])
def test_concat_pieces_through_reshapes_indexes_and_reductions(fn, rf):
    """cat([1x1, 7x7], 1) (2 + 2 channels) then a reshape / index / reduction, then one operand's
    channels: rf 1 for the 1x1 operand's, 7 for the 7x7's (the union over the concat was 7 for both).
    ``None``: the axis is global (reduced)."""
    got = _cat_rf(fn)
    assert got == rf


def test_a_split_not_aligned_with_the_operands_keeps_blocks():
    """3 + 1 channels viewed as (2, 2): the outer digit's index q holds channels 2q, 2q + 1: q = 0 the 1x1
    operand's only (rf 1), q = 1 one channel of each (the union, 7).  3 + 3 viewed as (3, 2): blocks
    (0, 1), (2, 3), (4, 5) read the 1x1, both, the 7x7."""
    assert _cat_rf(lambda y: y.view(1, 2, 2, 12, 12)[:, 0], near=3, far=1) == (1, 1)
    assert _cat_rf(lambda y: y.view(1, 2, 2, 12, 12)[:, 1], near=3, far=1) == (7, 7)
    assert _cat_rf(lambda y: y.view(1, 3, 2, 12, 12)[:, :1].reshape(1, 2, 12, 12), near=3, far=3) == (1, 1)
    assert _cat_rf(lambda y: y.view(1, 3, 2, 12, 12)[:, 1:], near=3, far=3) == (7, 7)
    assert _cat_rf(lambda y: y.view(1, 3, 2, 12, 12)[:, 2], near=3, far=3) == (7, 7)


def test_concat_of_a_finite_map_and_another_grid_is_not_one_field():
    """A 10x10 map whose field is a finite table (a stride-1 path plus a stride-2 path upsampled with
    align_corners, slope 4/9), flattened and concatenated with a 5x5 crop of a stride-1 map: the table
    indexes its own 10 positions per row, not the other segment's 5, so the node is unknown with the
    reason (it was merged index by index into a table: rf 5, stride 8/9)."""
    class FiniteAndCrop(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(1, 2, 3, stride=2, padding=1)

        def forward(self, x):
            y = self.a(x) + F.interpolate(self.b(x), size=x.shape[-2:], mode="bilinear", align_corners=True)
            return torch.cat([y.flatten(2), self.a(x)[:, :, :5, :5].flatten(2)], 2)

    r = last(rfgraph.analyze(FiniteAndCrop(), (1, 1, 10, 10)))
    assert r.shape == (1, 2, 125) and r.source == "unknown" and "different grids" in r.reason
