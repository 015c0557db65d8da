"""Rearrangements (`rfgraph.rules.rearrange`): flip / roll / select, and concat along a spatial dim.

Exact where the map stays a window map (channel dims, global dims, a roll by a multiple of the
length, the pieces of a split put back); handed to the fallback otherwise, never guessed.
"""

from __future__ import annotations

import torch
from rfcheck import Lambda, check, last, summary
from torch import nn

from rfgraph.rules import OpCall
from rfgraph.rules.rearrange import flip_rule, roll_rule, select_rule
from rfgraph.values import SymTensor


def _x() -> SymTensor:
    return SymTensor.input((1, 2, 5, 6))


def test_flip_along_channels_is_exact():
    x = _x()
    assert flip_rule(OpCall(None, torch.flip, None, (x, [1]), {})) is x


def test_flip_along_space_is_handed_over():
    out = flip_rule(OpCall(None, torch.flip, None, (_x(), [3]), {}))
    assert out.unknown and "flip reverses the positions of spatial dim 3" in out.unknown


def test_roll_by_a_multiple_of_the_length_is_exact():
    x = _x()
    assert roll_rule(OpCall(None, torch.roll, None, (x, 6, 3), {})) is x


def test_roll_of_a_whole_axis_is_a_relabelling():
    """roll by 1 along W (n=6): index q holds position q - 1 (mod 6), i.e. shift 5; rolling back by -1
    restores the axis; a window op cannot read the rolled dim."""
    from rfgraph.algebra import PAMap
    from rfgraph.values import Axis, Sub

    x = _x()
    rolled = roll_rule(OpCall(None, torch.roll, None, (x, 1, 3), {}))
    assert not rolled.unknown
    tag = rolled.tags[3]
    assert isinstance(tag, Sub) and (tag.n, tag.stride, tag.size, tag.shift) == (6, 1, 6, 5)
    back = roll_rule(OpCall(None, torch.roll, None, (rolled, -1, 3), {}))
    assert back.tags[3] == x.tags[3] and isinstance(back.tags[3], Axis)
    assert rolled.window(3, PAMap.affine(1, -1), PAMap.affine(1, 1), 6, "conv").unknown


def test_roll_of_part_of_an_axis_is_handed_over():
    """roll along the inner factor of a split axis is no relabelling of whole positions: handed over."""
    x = _x().reshape((1, 2, 5, 2, 3))
    out = roll_rule(OpCall(None, torch.roll, None, (x, 1, 4), {}))
    assert out.unknown and "holds only part of an axis" in out.unknown


def test_select_pins_the_position():
    """x.select(2, -1) on H of length 5: position 4; H no longer a dim, its field pinned at [4, 4]."""
    out = select_rule(OpCall(None, "select", None, (_x(), 2, -1), {}))
    assert out.shape == (1, 2, 6)
    assert out.pinned[0].lo(0) == out.pinned[0].hi(0) == 4


def test_cat_of_a_split_along_space_is_exact():
    """cat(x.split(3, dim=3), dim=3) after conv k=3 p=1: the pieces continue each other: rf 3, start -1."""
    model = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), Lambda(lambda x: torch.cat(x.split(3, dim=3), dim=3)))
    r = last(check(model, (1, 1, 5, 6)))
    assert r.source == "symbolic"
    assert summary(r, 1) == (3, 3, 1, -1)


def test_cat_of_unrelated_pieces_along_space_is_not_guessed():
    """cat([x, x], dim=3): the second piece restarts at input position 0: piecewise, handed over."""
    r = last(check(Lambda(lambda x: torch.cat([x, x], dim=3)), (1, 1, 4, 4), fallback="unknown"))
    assert r.source == "unknown" and "do not continue each other" in r.reason
