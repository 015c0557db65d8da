"""Pointwise rules (`rfgraph.rules.pointwise`): identity, channel mixing, elementwise merges.

Notation: ``n`` input length, ``k`` kernel, ``s`` stride, ``p`` padding, ``d``
dilation; ``L(u)``/``H(u)`` the first/last input coordinate read by output
``u`` (unclipped).  Every analysis also checks each node's shape against what
torch computes on a real tensor (`rfcheck.check`), and where cheap, every
output unit's window against a numeric back-propagation (`assert_windows_match`).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from rfcheck import Lambda, check, last, summary
from torch import nn

# ---------------------------------------------------------------------------
# identity-like ops
# ---------------------------------------------------------------------------


POINTWISE = {
    "relu": nn.ReLU(),
    "gelu": nn.GELU(),
    "hardswish": nn.Hardswish(),
    "silu_f": Lambda(F.silu),
    "sigmoid_t": Lambda(torch.sigmoid),
    "tanh_m": Lambda(lambda x: x.tanh()),
    "exp_m": Lambda(lambda x: x.exp()),
    "clamp": Lambda(lambda x: torch.clamp(x, 0, 1)),
    "mul_const": Lambda(lambda x: x * 2.0),
    "radd": Lambda(lambda x: 1 + x),
    "div": Lambda(lambda x: x / 3),
    "pow": Lambda(lambda x: x**2),
    "neg": Lambda(lambda x: -x),
    "sub_self": Lambda(lambda x: x - x.sigmoid()),
    "where": Lambda(lambda x: torch.where(x > 0, x, 0.1 * x)),
    "batchnorm": nn.BatchNorm2d(2),
    "layernorm_channels_last": Lambda(lambda x: F.layer_norm(x.permute(0, 2, 3, 1), (2,)).permute(0, 3, 1, 2)),
    "instancenorm_running": nn.InstanceNorm2d(2, track_running_stats=True),
    "dropout": nn.Dropout(0.5),
    "dropout2d": nn.Dropout2d(0.5),
    "f_dropout": Lambda(lambda x: F.dropout(x, 0.3, training=False)),
    "contiguous_float": Lambda(lambda x: x.contiguous().float()),
    "channel_shuffle": nn.ChannelShuffle(2),
}



@pytest.mark.parametrize("name", list(POINTWISE))
def test_pointwise_ops_keep_the_field(name):
    """conv k=3, p=1 (rf 3, stride 1, start -1) followed by a position-by-position op: unchanged,
    no global context (batch norm in eval mode and instance norm with running stats use fixed statistics)."""
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), POINTWISE[name])
    r = last(check(model, (1, 1, 6, 6)))
    assert r.source == "symbolic"
    assert summary(r, 0) == summary(r, 1) == (3, 3, 1, -1)
    assert not r.global_context
    assert r.shape == (1, 2, 6, 6)



def test_stochastic_depth():
    """torchvision.ops.StochasticDepth in eval mode is the identity: after conv k=3 rf 3; a residual
    x + sd(conv(x)) merges rf 1 and rf 3 centered paths: rf 3, rf_path_min 1, aligned."""
    from torchvision.ops import StochasticDepth

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 3, padding=1)
            self.sd = StochasticDepth(0.2, "row")

        def forward(self, x):
            return x + self.sd(self.conv(x))

    model = Block().train()
    r = last(check(model, (2, 1, 6, 6)))
    assert summary(r, 0) == (3, 3, 1, -1)
    assert r.rf_path_min == (1, 1)
    assert r.aligned



def test_torchvision_permute_and_mlp_are_pointwise():
    """ops.Permute to channels-last, ops.MLP over the last (channel) dim, and back: rf 1, dims (2, 3)."""
    from torchvision.ops import MLP, Permute

    r = last(check(nn.Sequential(Permute([0, 2, 3, 1]), MLP(1, [4, 3]), Permute([0, 3, 1, 2])), (1, 1, 5, 5)))
    assert r.rf == (1, 1) and r.dims == (2, 3)
    assert r.shape == (1, 3, 5, 5)

