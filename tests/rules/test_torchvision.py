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
