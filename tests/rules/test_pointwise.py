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

import rfgraph
from rfgraph.algebra import PAMap
from rfgraph.errors import RuleError
from rfgraph.rules import OpCall
from rfgraph.rules.pointwise import channel_mixing_rule, glu_rule, identity_rule
from rfgraph.rules.shapes import cat_rule
from rfgraph.values import SymTensor

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



# ---------------------------------------------------------------------------
# ops that are not identities: channel mixing, normalize, GLU
# ---------------------------------------------------------------------------


class CatThen(nn.Module):
    """``op(cat([conv1x1(x), conv7x7(x)], 1))[:, :2]``: channels 0-1 have rf 1, channels 2-3 rf 7."""

    def __init__(self, op: nn.Module):
        super().__init__()
        self.a = nn.Conv2d(1, 2, 1)
        self.b = nn.Conv2d(1, 2, 7, padding=3)
        self.op = op

    def forward(self, x):
        return self.op(torch.cat([self.a(x), self.b(x)], 1))[:, :2]


MIXING = {
    # out channel order [0, 2, 1, 3]: [:, :2] holds channel 2 (from the 7x7)
    "channel_shuffle": nn.ChannelShuffle(2),
    "torch_channel_shuffle": Lambda(lambda x: torch.channel_shuffle(x, 2)),
    # out channel 1 reads channels 0..2: channel 2 is from the 7x7
    "local_response_norm": nn.LocalResponseNorm(3),
    # every channel is divided by the norm over all four channels
    "normalize": Lambda(lambda x: F.normalize(x)),
    # out channel c = a_c * sigmoid(b_c): a from the 1x1, b from the 7x7
    "glu_channels": nn.GLU(1),
    "f_glu_channels": Lambda(lambda x: F.glu(x, 1)),
}


@pytest.mark.parametrize("name", list(MIXING))
def test_channel_mixing_after_concat(name):
    """The channel slice [:, :2] after a channel-mixing op sees the 7x7 path: rf 7, start -3 (before these
    ops left the identity set the concat pieces survived them and gave rf 1).  Confirmed by the probe."""
    model = CatThen(MIXING[name])
    a = check(model, (1, 1, 15, 15))
    r = last(a)
    assert r.source == "symbolic"
    assert summary(r, 0) == summary(r, 1) == (7, 7, 1, -3)
    assert r.shape == (1, 2, 15, 15)
    assert rfgraph.probe(model, r.name, (1, 1, 15, 15)).rf == (7, 7)


@pytest.mark.parametrize("name", ["channel_shuffle", "local_response_norm", "normalize"])
def test_channel_mixing_alone_keeps_the_field(name):
    """After conv k=3 p=1 a channel-mixing op keeps rf 3, start -1 (probe agrees)."""
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), MIXING[name])
    r = last(check(model, (1, 1, 12, 12)))
    assert summary(r, 0) == summary(r, 1) == (3, 3, 1, -1)
    assert not r.global_context
    assert rfgraph.probe(model, r.name, (1, 1, 12, 12)).rf == (3, 3)


def test_glu_along_a_spatial_dim():
    """GLU(dim=-1) on W = 16 after conv k=3 p=1: output u (of 8) reads u and u + 8 of the conv output,
    i.e. input [u - 1, u + 1] and [u + 7, u + 9]: hull [u - 1, u + 9], rf 11, start -1, stride 1.
    H keeps rf 3.  Checked unit by unit by back-propagation at this size, clipped to the 16 input
    positions (the window depends on the
    length: at W = 24 it would be rf 15)."""
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.GLU())
    r = last(check(model, (1, 1, 10, 16)))
    assert summary(r, 0) == (3, 3, 1, -1)
    assert summary(r, 1) == (11, 11, 1, -1)
    assert r.shape == (1, 2, 10, 8)
    assert numeric_hull(model, (1, 1, 10, 16), 1) == [(max(u - 1, 0), min(u + 9, 15)) for u in range(8)]


def numeric_hull(model: nn.Module, shape: tuple, axis: int) -> list:
    """Extent of the input positions (along ``axis``) with a non-zero gradient, per output unit, with
    torch's default random weights (GLU's sigmoid saturates with rfcheck's positive weights)."""
    torch.manual_seed(0)
    model = model.double().eval()
    x = torch.rand(shape, dtype=torch.float64, requires_grad=True)
    out = model(x)
    hulls = []
    for u in range(out.shape[2 + axis]):
        x.grad = None
        index = [0, slice(None)] + [u if k == axis else out.shape[2 + k] // 2 for k in range(out.ndim - 2)]
        out[tuple(index)].sum().backward(retain_graph=True)
        other = [d for d in range(x.ndim) if d != 2 + axis]
        where = torch.nonzero(x.grad.abs().sum(dim=other)).flatten().tolist()
        hulls.append((where[0], where[-1]))
    return hulls


def test_normalize_along_a_spatial_dim_is_context():
    """F.normalize(x, dim=2) divides by a norm over all of H: a spatially constant statistic scaling each
    position (like a layer norm over tokens): the local field (rf 3) stays, global_context is set."""
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), Lambda(lambda x: F.normalize(x, dim=2)))
    r = last(check(model, (1, 1, 8, 8)))
    assert summary(r, 0) == summary(r, 1) == (3, 3, 1, -1)
    assert r.global_context


# ---------------------------------------------------------------------------
# handlers called directly
# ---------------------------------------------------------------------------


def _concat() -> SymTensor:
    """cat([a (2 ch), b (2 ch)], 1), with b's field widened by a conv k=7 along both axes."""
    x = SymTensor.input((1, 1, 9, 9))
    b = x.windows({d: (PAMap.affine(1, -3), PAMap.affine(1, 3), 9) for d in (2, 3)}, "conv 7x7")
    a, b = x.like(shape=(1, 2, 9, 9)), b.like(shape=(1, 2, 9, 9))
    out = cat_rule(OpCall(None, torch.cat, None, ([a, b], 1), {}))
    assert out.parts is not None
    return out


def test_identity_rule_keeps_concat_pieces():
    x = _concat()
    assert identity_rule(OpCall(None, F.relu, None, (x,), {})) is x


def test_channel_mixing_rule_drops_concat_pieces():
    x = _concat()
    out = channel_mixing_rule(OpCall(None, "0", nn.ChannelShuffle(2), (x,), {}))
    assert out.parts is None and out.shape == x.shape
    assert out.tags == x.tags


def test_glu_rule_directly():
    """Along channels: 4 -> 2 channels, fields kept, pieces dropped.  Along W (length 8): a window
    [u, u + 4] reading only u and u + 4 (step 4), 8 -> 4."""
    x = _concat()
    out = glu_rule(OpCall(None, F.glu, None, (x, 1), {}))
    assert out.shape == (1, 2, 9, 9) and out.parts is None
    y = SymTensor.input((1, 1, 8))
    out = glu_rule(OpCall(None, F.glu, None, (y,), {}))
    field = out.tags[2].field
    assert out.shape == (1, 1, 4)
    assert (field.lo(1), field.hi(1)) == (1, 5)
    with pytest.raises(RuleError, match="odd size 9"):
        glu_rule(OpCall(None, F.glu, None, (x, -1), {}))
