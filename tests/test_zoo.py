"""Tests of the zoo runner (`rfgraph.zoo`) and of the segmentation facts it reports."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import rfgraph


class _PoolBranchCat(nn.Module):
    """A local 3x3 branch concatenated with an image-pooling branch upsampled back (ASPP-style)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.proj = nn.Conv2d(3, 1, 1)

    def forward(self, x):
        local = self.conv(x)
        ctx = F.interpolate(self.pool(x), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.proj(torch.cat([local, ctx], dim=1))


def test_upsampled_pooled_branch_is_context_not_global():
    """The pooled branch is one value broadcast over the map: a context path.

    Hand derivation: the 3x3 conv (padding 1) has RF 3, stride 1, start -1; the
    concat with a constant-over-space branch keeps the local RF 3 and only sets
    ``global_context`` (DESIGN, "context paths"); the 1x1 projection keeps it.
    """
    a = rfgraph.analyze(_PoolBranchCat(), (1, 1, 16, 16))
    out = a["proj"]
    assert out.rf == (3, 3)
    assert out.start == (-1, -1)
    assert out.is_global == (False, False)
    assert out.global_context
