"""Merge spellings (issue 14): ``torch.stack`` (smp FPN's ``decoder.merge``), ``stack(...).sum(0)``,
``sum(stack)``, ``torch.maximum`` / ``torch.minimum`` of pairs and over a stacked list, ``+=`` in a loop,
``torch.add(..., alpha=)``, the builtin ``sum([...])``.  Each is an exact merge (the pointwise union of
the operands' fields) with the alignment reported at the merging node, as for ``add``; indexing one
operand back out of a stack gives that operand's own field.

Operands: ``a`` = conv k=3 p=1 (reads ``[u-1, u+1]``), ``b`` = conv k=3 p=0 padded by 2 on the left
(reads ``[u-2, u]``): union ``[u-2, u+1]``, rf 4, start -2, centres 1 apart (not aligned).  Every case is
checked unit by unit against the numeric back-propagation (`rfcheck.assert_windows_match`).
"""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F
from rfcheck import assert_windows_match, check, last
from torch import nn


class Two(nn.Module):
    def __init__(self, how: str):
        super().__init__()
        self.how = how
        self.a = nn.Conv2d(2, 2, 3, padding=1)
        self.b = nn.Conv2d(2, 2, 3)

    def forward(self, x):
        a, b = self.a(x), F.pad(self.b(x), (2, 0, 2, 0))
        how = self.how
        if how == "stack_sum":
            return torch.stack([a, b]).sum(0)
        if how == "stack_sum_dim1":
            return torch.stack([a, b], 1).sum(1)
        if how == "stack_mean":
            return torch.stack([a, b], dim=-1).mean(-1)
        if how == "sum_of_stack":  # iterates over a proxy: fx fails, torch.export traces it
            return sum(torch.stack([a, b]))
        if how == "maximum":
            return torch.maximum(a, b)
        if how == "minimum":
            return torch.minimum(a, b)
        if how == "max_over_list":
            return torch.stack([a, b]).max(0)[0]
        if how == "amax_over_list":
            return torch.stack([a, b]).amax(0)
        if how == "iadd_loop":
            y = torch.zeros_like(a)
            for t in (a, b):
                y += t
            return y
        if how == "add_alpha":
            return torch.add(a, b, alpha=2)
        if how == "builtin_sum":
            return sum([a, b])
        raise ValueError(how)


MERGES = ["stack_sum", "stack_sum_dim1", "stack_mean", "sum_of_stack", "maximum", "minimum", "max_over_list",
          "amax_over_list", "iadd_loop", "add_alpha", "builtin_sum"]


@pytest.mark.parametrize("how", MERGES)
def test_merge_spellings_are_exact_unions(how):
    model = Two(how)
    a = check(model, (1, 2, 9, 9), fallback="unknown")
    r = last(a)
    assert r.source == "symbolic", r.reason
    assert (r.rf, r.stride, r.start) == ((4, 4), (1, 1), (-2, -2))
    assert r.rf_path_min == (3, 3)
    assert a.meta["unknown_ops"] == {}
    if how not in SELECTING:
        assert assert_windows_match(model, (1, 2, 12, 12), r, 0, margin=2) >= 1


#: Elementwise max / min pass the gradient of one operand only, so back-propagation cannot show that
#: both can change the output (the same reason the probe turns max pooling into a sum); their windows
#: equal the add spellings' above.
SELECTING = {"maximum", "minimum", "max_over_list", "amax_over_list"}


@pytest.mark.parametrize("how", ["stack_sum", "stack_sum_dim1", "stack_mean", "sum_of_stack", "maximum", "minimum",
                                 "amax_over_list", "add_alpha", "builtin_sum"])
def test_merge_spellings_report_misalignment(how):
    """The merging node (the add, the maximum, or the reduction over the stacked dim) reports the centres
    of its operands 1 apart, as an add of the same operands does."""
    r = last(check(Two(how), (1, 2, 9, 9), fallback="unknown"))
    assert r.aligned is False
    assert r.max_center_shift == Fraction(1)


def test_iadd_loop_reports_each_add():
    """``y = zeros; y += a; y += b``: the first add merges a constant (aligned), the second the shifted
    operand: the last node reports the misalignment."""
    a = check(Two("iadd_loop"), (1, 2, 9, 9), fallback="unknown")
    adds = [r for r in a if r.op in ("iadd", "add")]
    assert adds[0].aligned is True and adds[-1].aligned is False


class StackIndex(Two):
    def forward(self, x):
        a, b = self.a(x), F.pad(self.b(x), (2, 0, 2, 0))
        s = torch.stack([a, b])
        if self.how == "getitem":
            return s[1]
        if self.how == "unbind":
            return s.unbind(0)[1]
        return s.select(0, 1)


@pytest.mark.parametrize("how", ["getitem", "unbind", "select"])
def test_one_operand_back_out_of_a_stack(how):
    """``stack([a, b])[1]`` is ``b``: rf 3, start -2 (not the union's 4)."""
    model = StackIndex(how)
    r = last(check(model, (1, 2, 9, 9), fallback="unknown"))
    assert (r.rf, r.start) == ((3, 3), (-2, -2))
    assert_windows_match(model, (1, 2, 12, 12), r, 1, margin=2)


def test_fpn_like_stack_merge_of_upsampled_pyramid():
    """smp FPN's merge: pyramid levels at strides 1, 2, 4 upsampled (nearest) to the finest, stacked and
    summed.  Level k reads a conv k=3 at stride 2^k: the union is the coarsest level's field."""

    class FPN(nn.Module):
        def __init__(self):
            super().__init__()
            self.c0 = nn.Conv2d(1, 2, 3, padding=1)
            self.c1 = nn.Conv2d(2, 2, 3, stride=2, padding=1)
            self.c2 = nn.Conv2d(2, 2, 3, stride=2, padding=1)

        def forward(self, x):
            p0 = self.c0(x)
            p1 = self.c1(p0)
            p2 = self.c2(p1)
            levels = [p0, F.interpolate(p1, scale_factor=2), F.interpolate(p2, scale_factor=4)]
            return torch.stack(levels).sum(0)

    model = FPN()
    a = check(model, (1, 1, 16, 16), fallback="unknown")
    r = last(a)
    assert r.source == "symbolic"
    ref = rfgraph_analysis_of_add(model)
    assert (r.rf, r.rf_min, r.start) == (ref.rf, ref.rf_min, ref.start)
    assert assert_windows_match(model, (1, 1, 32, 32), last(check(model, (1, 1, 32, 32))), 0, margin=4) >= 1


def rfgraph_analysis_of_add(model):
    """The same pyramid merged with ``+``: the reference the stack spelling must equal."""

    class Added(nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            m = self.inner
            p0 = m.c0(x)
            p1 = m.c1(p0)
            p2 = m.c2(p1)
            return p0 + F.interpolate(p1, scale_factor=2) + F.interpolate(p2, scale_factor=4)

    return last(check(Added(model), (1, 1, 16, 16)))
