"""torchvision blocks kept opaque by fx (`rfgraph.rules.torchvision`), called directly with an `OpCall`."""

from __future__ import annotations

from rfgraph.algebra import Field
from rfgraph.rules import OpCall
from rfgraph.rules.torchvision import swin_patch_merging_pad_rule, swin_window_attention_rule
from rfgraph.values import Axis, SymTensor


def _channels_last(h: int, w: int, c: int = 3) -> SymTensor:
    """(B, H, W, C) with H, W carrying axes 0, 1."""
    return SymTensor((1, h, w, c), tags=(None, Axis(0, Field.identity()), Axis(1, Field.identity()), None))


def test_patch_merging_pad():
    """Output u reads 2u and 2u + 1 (odd sizes padded): 7 -> 4, rf 2, stride 2; channels x 4."""
    out = swin_patch_merging_pad_rule(OpCall(None, "pad", None, (_channels_last(7, 8),), {}))
    assert out.shape == (1, 4, 4, 12)
    assert out.tags[1].field.rf == 2 and out.tags[1].field.stride == 2


def test_shifted_window_attention():
    """Window 4, shift 2 on H = 8: u lies in rolled window floor((u - 2) / 4): u = 2..5 mix positions 2..5
    (rf 4); a window covering the whole (padded) W = 3 mixes everything (global)."""
    x = _channels_last(8, 3)
    args = (x, None, None, None, [4, 4], 2, [2, 2])
    out = swin_window_attention_rule(OpCall(None, "swin", None, args, {}))
    field = out.tags[1].field
    assert (field.lo(3), field.hi(3)) == (2, 5) and field.rf == 4
    assert out.tags[2].field.is_global


def test_patch_merging_pad_keeps_each_quadrant_of_a_concat():
    """``_patch_merging_pad`` of cat([a (2 ch, rf 1), b (2 ch, rf 7 along H)], -1): the output is
    ``cat([x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2]], -1)``, so channels 0, 1 are a at
    ``(2u, 2v)`` (rf 1, stride 2) and channels 6, 7 are b at ``(2u + 1, 2v)``: ``[2u - 2, 2u + 4]``."""
    from rfgraph.algebra import PAMap
    from rfgraph.rules.shapes import apply_index, cat_rule

    x = _channels_last(8, 8, 2)
    b = x.windows({1: (PAMap.affine(1, -3), PAMap.affine(1, 3), 8)}, "conv 7x1")
    cat = cat_rule(OpCall(None, "cat", None, ([x, b], -1), {}))
    out = swin_patch_merging_pad_rule(OpCall(None, "pad", None, (cat,), {}))
    assert out.shape == (1, 4, 4, 16)
    get = OpCall(None, "getitem", None, (), {})
    a0 = apply_index(get, out, (Ellipsis, slice(0, 2)))
    assert (a0.tags[1].field.rf, a0.tags[1].field.stride, a0.tags[1].field.start) == (1, 2, 0)
    b1 = apply_index(get, out, (Ellipsis, slice(6, 8)))
    assert (b1.tags[1].field.rf, b1.tags[1].field.start, b1.tags[2].field.rf, b1.tags[2].field.start) == (7, -2, 1, 0)
    both = apply_index(get, out, (Ellipsis, slice(1, 3)))
    assert both.tags[1].field.rf == 7
