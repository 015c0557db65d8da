"""A self-checking rule table: every entry of `DEFAULT_RULES` against a numeric measurement.

For every module type, function and method of the default registry, a small
*recipe* builds the op (`MODULE_RECIPES`, `FUNCTION_RECIPES`,
`METHOD_RECIPES`; functions and methods without one are called as ``fn(x)`` /
``x.name()``), and one generated case checks it twice in one graph:

* the op alone on ``x`` (``(1, 4, n)`` or its 2-D / 3-D analogue, float64);
* the op after ``cat([conv1x1(x), conv7x7(x)], 1)`` followed by a channel slice
  ``[:, :2]`` (when the op's output has channels to slice): an op that keeps
  channels apart must give the 1x1 operand's field (1), an op that mixes
  channels the union (7).  This is how ChannelShuffle / LocalResponseNorm /
  F.normalize were caught in the identity set: an identity-like set whose
  criterion a member breaks fails here.

The measurement (`measure`) is independent of the rules: for each position
``i`` along the measured axis the input slab at ``i`` (all channels, all other
positions) is overwritten with a few values (-3.3, 0, 2, 7.1) and the model
is run again; output unit ``u`` reads ``i`` when some output element at ``u``
changes.  Finite changes, not gradients, so ops with zero or undefined
derivatives (floor, sign, comparisons, argmax, max) are measured as well.
Each symbolic unit window, clipped to the input, must equal the measured
one for every unit whose unclipped window lies inside the input (borders: a
reflect pad or an interpolation clamp reads a clipped subset there); global
fields and global context paths must read the whole input at every unit;
nonspatial outputs must read nothing.  (`rfgraph.probe` measures the same
quantity, but at ~0.5 s per call it would take minutes for the table; this
measurement is the probe's question asked directly of one small graph.)

Entries that cannot be run this way are in `SKIP`, each with its reason;
`test_every_entry_has_a_case` fails on any entry that has neither a case nor
a reason.  The torch.export (aten) spellings reuse these rules through
`rfgraph.rules.aten` and are checked in `test_aten_spellings_via_export`.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Callable, Optional

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import maxvit, swin_transformer
from torchvision.models.video import mvit
from torchvision.models.video import swin_transformer as video_swin
from torchvision.ops.drop_block import drop_block2d, drop_block3d
from torchvision.ops.stochastic_depth import stochastic_depth

import rfgraph
from rfgraph.rules import DEFAULT_RULES
from rfgraph.tracing import export_trace

C = 4  #: input channels of every case (the concat gives 2 + 2)
#: input lengths per number of spatial dims: long enough along the measured axes for units of the
#: concat case (a 7-wide operand, then the op) to lie inside the input
SHAPES = {1: (16,), 2: (13, 13), 3: (13, 6, 6)}
LENGTH = {1: 16, 2: 13, 3: 6}  #: the length of the other spatial dims, for recipes that need it
torch.set_num_threads(1)  # tiny tensors: threads only add contention on a shared machine
VALUES = (-3.3, 0.0, 2.0, 7.1)  #: what the perturbed slab is overwritten with


@dataclass(frozen=True)
class Recipe:
    """How to call an entry: ``make()`` returns the op (a module or a function of ``x``), on an
    ``nd``-D input; ``axes`` the spatial axes measured; ``cat=False`` skips the concat case (an op
    whose input must not be a concat, e.g. one reading a fixed channel count other than 4)."""

    make: Callable[[], Any]
    nd: int = 1
    axes: tuple[int, ...] = (0,)
    cat: bool = True
    shape: Optional[tuple[int, ...]] = None


def R(make, nd: int = 1, axes=None, cat: bool = True, shape=None) -> Recipe:
    return Recipe(make, nd, tuple(axes) if axes is not None else tuple(range(min(nd, 2))), cat, shape)


def _zeros(*shape):
    return torch.zeros(*shape, dtype=torch.float64)


def _ones(*shape):
    return torch.ones(*shape, dtype=torch.float64)


# ---------------------------------------------------------------------------
# recipes
# ---------------------------------------------------------------------------


def _nd_modules(nd: int) -> dict[type, Recipe]:
    s = f"{nd}d"
    out = {
        getattr(nn, f"Conv{s}"): R(lambda: getattr(nn, f"Conv{s}")(C, 3, 3, stride=2, padding=1, dilation=1), nd),
        getattr(nn, f"ConvTranspose{s}"): R(lambda: getattr(nn, f"ConvTranspose{s}")(C, 3, 3, stride=2, padding=1), nd),
        getattr(nn, f"MaxPool{s}"): R(lambda: getattr(nn, f"MaxPool{s}")(3, 2, 1, dilation=2 if nd == 1 else 1), nd),
        getattr(nn, f"AvgPool{s}"): R(lambda: getattr(nn, f"AvgPool{s}")(3, 2, 1, ceil_mode=True), nd),
        getattr(nn, f"AdaptiveMaxPool{s}"): R(lambda: getattr(nn, f"AdaptiveMaxPool{s}")(3), nd),
        getattr(nn, f"AdaptiveAvgPool{s}"): R(lambda: getattr(nn, f"AdaptiveAvgPool{s}")(3), nd),
        getattr(nn, f"LPPool{s}"): R(lambda: getattr(nn, f"LPPool{s}")(2, 2), nd),
        getattr(nn, f"InstanceNorm{s}"): R(lambda: getattr(nn, f"InstanceNorm{s}")(C, affine=True), nd),
        getattr(nn, f"ZeroPad{s}"): R(lambda: getattr(nn, f"ZeroPad{s}")((2, 1) * nd), nd),
        getattr(nn, f"ConstantPad{s}"): R(lambda: getattr(nn, f"ConstantPad{s}")((1, 2) * nd, 0.5), nd),
        getattr(nn, f"ReflectionPad{s}"): R(lambda: getattr(nn, f"ReflectionPad{s}")((2, 1) * nd), nd),
        getattr(nn, f"ReplicationPad{s}"): R(lambda: getattr(nn, f"ReplicationPad{s}")((1, 2) * nd), nd),
        getattr(nn, f"CircularPad{s}"): R(lambda: getattr(nn, f"CircularPad{s}")((2, 1) * nd), nd),
        getattr(nn, f"BatchNorm{s}"): R(lambda: getattr(nn, f"BatchNorm{s}")(C), nd),
        getattr(nn, f"Dropout{s}"): R(lambda: getattr(nn, f"Dropout{s}")(0.5), nd),
    }
    return out


MODULE_RECIPES: dict[type, Recipe] = {
    **_nd_modules(1), **_nd_modules(2), **_nd_modules(3),
    nn.Threshold: R(lambda: nn.Threshold(0.9, -1.0)),
    nn.PReLU: R(lambda: nn.PReLU(C)),
    nn.ChannelShuffle: R(lambda: nn.ChannelShuffle(2), 2),
    nn.LocalResponseNorm: R(lambda: nn.LocalResponseNorm(3)),
    nn.GLU: R(lambda: nn.GLU(1)),
    nn.Upsample: R(lambda: nn.Upsample(scale_factor=1.5, mode="bilinear", align_corners=True), 2),
    nn.UpsamplingNearest2d: R(lambda: nn.UpsamplingNearest2d(scale_factor=2), 2),
    nn.UpsamplingBilinear2d: R(lambda: nn.UpsamplingBilinear2d(size=(11, 5)), 2),
    nn.PixelShuffle: R(lambda: nn.PixelShuffle(2), 2),
    nn.PixelUnshuffle: R(lambda: nn.PixelUnshuffle(2), 2, shape=(12, 12)),
    # im2col with overlapping windows: the taps sit in the channels, each unit reads its 3x3 window (the
    # concat case's slice of channels [:2] picks taps: unknown by design, so no concat case)
    nn.Unfold: R(lambda: nn.Sequential(nn.Unfold(3, padding=1), nn.Unflatten(2, SHAPES[2])), 2, cat=False),
    # tiling windows of 2 put back by fold: the identity (the rearrangement loses the concat's pieces:
    # the union over channels, as pixel_shuffle; no concat case)
    nn.Fold: R(lambda: nn.Sequential(nn.Unfold(2, stride=2), nn.Fold((12, 12), 2, stride=2)), 2, shape=(12, 12),
               cat=False),
    nn.LayerNorm: R(lambda: nn.LayerNorm(LENGTH[1])),
    nn.RMSNorm: R(lambda: nn.RMSNorm([C, LENGTH[1]])),
    nn.GroupNorm: R(lambda: nn.GroupNorm(2, C), 2),
    nn.Flatten: R(lambda: nn.Sequential(nn.Flatten(2), nn.Unflatten(2, SHAPES[2])), 2),
    nn.Unflatten: R(lambda: nn.Unflatten(1, (2, 2))),
    nn.Softmax: R(lambda: nn.Softmax(-1)),
    nn.LogSoftmax: R(lambda: nn.LogSoftmax(1)),
    nn.Softmin: R(lambda: nn.Softmin(2)),
    nn.Linear: R(lambda: nn.Linear(LENGTH[1], 3)),
    nn.Embedding: R(lambda: _EmbedPositions()),
    nn.Bilinear: R(lambda: _BilinearSelf()),
    nn.MultiheadAttention: R(lambda: _Attention()),
    # causal: every unit's window starts at the sequence start, a border unit in the concat case
    nn.RNNBase: R(lambda: _Recurrent(nn.GRU(C, 3, batch_first=True)), cat=False),
    maxvit.PartitionAttentionLayer: R(lambda: _MaxViT(), 2, cat=False, shape=(8, 8)),
}


class _EmbedPositions(nn.Module):
    """``nn.Embedding`` looks up integer indices: here indices computed from the input (``x > 1``)."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(2, 3)

    def forward(self, x):
        return self.emb((x[:, 0] > 1).long()).permute(0, 2, 1)


class _BilinearSelf(nn.Module):
    def __init__(self):
        super().__init__()
        self.bil = nn.Bilinear(C, C, 3)

    def forward(self, x):
        t = x.transpose(1, 2)
        return self.bil(t, t).transpose(1, 2)


class _Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(C, 2, batch_first=True)

    def forward(self, x):
        t = x.transpose(1, 2)
        return self.attn(t, t, t)[0].transpose(1, 2)


class _Recurrent(nn.Module):
    """``(N, C, T)`` -> ``(N, T, C)`` -> a batch-first recurrent layer -> ``(N, H, T)``."""

    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn

    def forward(self, x):
        return self.rnn(x.transpose(1, 2))[0].transpose(1, 2)


class _MaxViT(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = maxvit.PartitionAttentionLayer(
            C, head_dim=2, partition_size=2, partition_type="window", grid_size=(8, 8),
            mlp_ratio=1, activation_layer=nn.GELU, norm_layer=nn.LayerNorm, attention_dropout=0.0,
            mlp_dropout=0.0, p_stochastic_dropout=0.0)

    def forward(self, x):
        return self.layer(x)


def _window_fns(nd: int) -> dict[Any, Recipe]:
    s = f"{nd}d"
    w = torch.rand(3, C, *(3,) * nd, dtype=torch.float64) + 0.5
    wt = torch.rand(C, 3, *(2,) * nd, dtype=torch.float64) + 0.5
    out = {
        getattr(F, f"conv{s}"): R(lambda: lambda x: getattr(F, f"conv{s}")(x, w, None, 1, 2, 2), nd),
        getattr(torch, f"conv{s}"): R(lambda: lambda x: getattr(torch, f"conv{s}")(x, w, stride=2), nd),
        # stride 2 = kernel 2: no holes (holes are the finite-domain maps' business, tests/test_fuzz.py)
        getattr(F, f"conv_transpose{s}"): R(lambda: lambda x: getattr(F, f"conv_transpose{s}")(x, wt, stride=2), nd),
        getattr(F, f"max_pool{s}"): R(lambda: lambda x: getattr(F, f"max_pool{s}")(x, 2, 2, ceil_mode=True), nd),
        getattr(torch, f"max_pool{s}"): R(lambda: lambda x: getattr(torch, f"max_pool{s}")(x, 3, 1, 1), nd),
        getattr(F, f"max_pool{s}_with_indices"):
            R(lambda: lambda x: getattr(F, f"max_pool{s}_with_indices")(x, 3, 2)[0], nd),
        getattr(F, f"avg_pool{s}"): R(lambda: lambda x: getattr(F, f"avg_pool{s}")(x, 3, 2, 1), nd),
        getattr(F, f"adaptive_avg_pool{s}"): R(lambda: lambda x: getattr(F, f"adaptive_avg_pool{s}")(x, 4), nd),
        getattr(F, f"adaptive_max_pool{s}"): R(lambda: lambda x: getattr(F, f"adaptive_max_pool{s}")(x, 3), nd),
        getattr(F, f"adaptive_max_pool{s}_with_indices"):
            R(lambda: lambda x: getattr(F, f"adaptive_max_pool{s}_with_indices")(x, 3)[0], nd),
        getattr(F, f"lp_pool{s}"): R(lambda: lambda x: getattr(F, f"lp_pool{s}")(x, 2, 3, 2), nd),
    }
    return out


def _merge(fn, other=1.5):
    """A merge of ``x`` with a shifted copy of itself (``x[..., 1:]`` padded back), so that the two
    operands read different positions: the union is ``[u, u + 1]``."""
    return lambda: lambda x: fn(x, F.pad(x[..., 1:], (0, 1), value=other))


def _merge_copy(fn):
    """In-place merges (``x += y``): on a copy, so that the shifted operand is not a view of the target."""
    return lambda: lambda x: fn(x * 1.0, F.pad(x[..., 1:], (0, 1), value=1.5))


def _merge_bool(fn):
    return lambda: lambda x: fn(x > 1, F.pad(x[..., 1:], (0, 1)) > 1)


_MASK = None


FUNCTION_RECIPES: dict[Any, Recipe] = {
    **_window_fns(1), **_window_fns(2), **_window_fns(3),
    # identity set: arguments where fn(x) does not do, or would run in training mode
    F.prelu: R(lambda: lambda x: F.prelu(x, torch.full((C,), 0.2, dtype=x.dtype))),
    torch.prelu: R(lambda: lambda x: torch.prelu(x, torch.full((C,), 0.2, dtype=x.dtype))),
    F.threshold: R(lambda: lambda x: F.threshold(x, 0.9, -1.0)),
    F.dropout: R(lambda: lambda x: F.dropout(x, 0.5, training=False)),
    F.dropout1d: R(lambda: lambda x: F.dropout1d(x, 0.5, training=False)),
    F.dropout2d: R(lambda: lambda x: F.dropout2d(x, 0.5, training=False), 2),
    F.dropout3d: R(lambda: lambda x: F.dropout3d(x, 0.5, training=False), 3),
    F.alpha_dropout: R(lambda: lambda x: F.alpha_dropout(x, 0.5, training=False)),
    F.feature_alpha_dropout: R(lambda: lambda x: F.feature_alpha_dropout(x, 0.5, training=False)),
    torch.dropout: R(lambda: lambda x: torch.dropout(x, 0.5, False)),
    F.batch_norm: R(lambda: lambda x: F.batch_norm(x, _zeros(C), _ones(C))),
    F.hardtanh: R(lambda: lambda x: F.hardtanh(x, 0.8, 1.2)),
    F.hardtanh_: R(lambda: lambda x: F.hardtanh_(x.clone(), 0.8, 1.2)),
    torch.clamp: R(lambda: lambda x: torch.clamp(x, 0.6, 1.2)),
    torch.clip: R(lambda: lambda x: torch.clip(x, 0.6, 1.2)),
    torch.clamp_min: R(lambda: lambda x: torch.clamp_min(x, 0.9)),
    torch.clamp_max: R(lambda: lambda x: torch.clamp_max(x, 0.9)),
    torch.relu_: R(lambda: lambda x: torch.relu_(x.clone())),
    F.relu_: R(lambda: lambda x: F.relu_(x.clone())),
    F.leaky_relu_: R(lambda: lambda x: F.leaky_relu_(x.clone())),
    F.elu_: R(lambda: lambda x: F.elu_(x.clone())),
    F.rrelu: R(lambda: lambda x: F.rrelu(x, training=False)),
    stochastic_depth: R(lambda: lambda x: stochastic_depth(x, 0.5, "row", training=False)),
    drop_block2d: R(lambda: lambda x: drop_block2d(x, 0.5, 3, training=False), 2),
    drop_block3d: R(lambda: lambda x: drop_block3d(x, 0.5, 3, training=False), 3),
    operator.invert: R(lambda: lambda x: ~(x > 1)),
    operator.not_: R(lambda: lambda x: operator.not_(x)),  # on a 0-d tensor only; see SKIP
    # channel mixing
    torch.channel_shuffle: R(lambda: lambda x: torch.channel_shuffle(x, 2)),
    torch.native_channel_shuffle: R(lambda: lambda x: torch.native_channel_shuffle(x, 2)),
    F.channel_shuffle: R(lambda: lambda x: F.channel_shuffle(x, 2)),
    F.native_channel_shuffle: R(lambda: lambda x: F.native_channel_shuffle(x, 2)),
    F.local_response_norm: R(lambda: lambda x: F.local_response_norm(x, 3)),
    F.glu: R(lambda: lambda x: F.glu(x, 1)),
    F.normalize: R(lambda: lambda x: F.normalize(x, dim=1)),
    # merges: two operands reading different positions
    **{fn: R(_merge(fn)) for fn in (
        operator.add, operator.sub, operator.mul, operator.truediv, operator.floordiv, operator.pow, operator.mod,
        operator.iadd, operator.isub, operator.imul, operator.itruediv, operator.lt, operator.le, operator.gt,
        operator.ge, operator.eq, operator.ne, torch.add, torch.sub, torch.subtract, torch.mul, torch.multiply,
        torch.div, torch.divide, torch.true_divide, torch.pow, torch.maximum, torch.minimum, torch.fmax,
        torch.fmin, torch.eq, torch.ne, torch.lt, torch.gt, torch.le, torch.ge, torch.atan2, torch.hypot,
        torch.remainder, torch.fmod, torch.floor_divide)},
    **{fn: R(_merge_copy(fn)) for fn in (operator.iadd, operator.isub, operator.imul, operator.itruediv)},
    **{fn: R(_merge_bool(fn)) for fn in (operator.and_, operator.or_, operator.xor, torch.logical_and,
                                          torch.logical_or)},
    torch.where: R(lambda: lambda x: torch.where(x > 1, x, F.pad(x[..., 1:], (0, 1)))),
    torch.masked_fill: R(lambda: lambda x: torch.masked_fill(x, F.pad(x[..., 1:], (0, 1)) > 1, 0.0)),
    torch.addcmul: R(lambda: lambda x: torch.addcmul(x, x, F.pad(x[..., 1:], (0, 1)))),
    torch.addcdiv: R(lambda: lambda x: torch.addcdiv(x, x, F.pad(x[..., 1:], (0, 1), value=1.0))),
    torch.lerp: R(lambda: lambda x: torch.lerp(x, F.pad(x[..., 1:], (0, 1)), 0.3)),
    # windowed
    F.interpolate: R(lambda: lambda x: F.interpolate(x, scale_factor=2.5, mode="linear", align_corners=False)),
    F.upsample: R(lambda: lambda x: F.upsample(x, size=13, mode="nearest")),
    F.pad: R(lambda: lambda x: F.pad(x, (2, 1, 1, 0)), 2),
    torch.constant_pad_nd: R(lambda: lambda x: torch.constant_pad_nd(x, (1, 2), 0.5)),
    F.pixel_shuffle: R(lambda: lambda x: F.pixel_shuffle(x, 2), 2),
    torch.pixel_shuffle: R(lambda: lambda x: torch.pixel_shuffle(x, 2), 2),
    F.pixel_unshuffle: R(lambda: lambda x: F.pixel_unshuffle(x, 2), 2, shape=(12, 12)),
    torch.pixel_unshuffle: R(lambda: lambda x: torch.pixel_unshuffle(x, 2), 2, shape=(12, 12)),
    # norms
    F.layer_norm: R(lambda: lambda x: F.layer_norm(x, (C,) + (LENGTH[1],))),
    F.rms_norm: R(lambda: lambda x: F.rms_norm(x.transpose(1, 2), (C,)).transpose(1, 2)),
    F.group_norm: R(lambda: lambda x: F.group_norm(x, 2), 2),
    F.instance_norm: R(lambda: lambda x: F.instance_norm(x)),
    # shapes
    torch.cat: R(lambda: lambda x: torch.cat([x, x[:, :1] * 2], 1)),
    torch.concat: R(lambda: lambda x: torch.concat([x[:, 1:], x], 1)),
    torch.concatenate: R(lambda: lambda x: torch.concatenate([x, x], 1)),
    torch.stack: R(lambda: lambda x: torch.stack([x, F.pad(x[..., 1:], (0, 1))], 1).sum(1)),
    torch.reshape: R(lambda: lambda x: torch.reshape(torch.reshape(x, (1, 2, 2, -1)), x.shape), 2),
    torch.flatten: R(lambda: lambda x: torch.flatten(x, 2).view(x.shape), 2),
    torch.unflatten: R(lambda: lambda x: torch.unflatten(x, 1, (2, 2)).sum(1)),
    torch.permute: R(lambda: lambda x: torch.permute(x, (0, 2, 1)).permute(0, 2, 1)),
    torch.transpose: R(lambda: lambda x: torch.transpose(x, 1, 2).transpose(1, 2)),
    torch.t: R(lambda: lambda x: torch.t(x[0]).t()[None]),
    torch.squeeze: R(lambda: lambda x: torch.squeeze(x[:, :, None], 2)),
    torch.unsqueeze: R(lambda: lambda x: torch.unsqueeze(x, 2)[:, :, 0]),
    operator.getitem: R(lambda: lambda x: x[:, :, 1::2]),
    torch.narrow: R(lambda: lambda x: torch.narrow(x, 2, 2, 5)),
    torch.split: R(lambda: lambda x: torch.split(x, 3, 2)[1]),
    torch.chunk: R(lambda: lambda x: torch.chunk(x, 3, 2)[2]),
    torch.unbind: R(lambda: lambda x: torch.unbind(x, 2)[3]),
    torch.tensor_split: R(lambda: lambda x: torch.tensor_split(x, (2, 7), 2)[1]),
    F.embedding: R(lambda: lambda x: F.embedding((x[:, 0] > 1).long(), torch.arange(6.0).view(2, 3)).permute(0, 2, 1)),
    # rearrangements
    torch.flip: R(lambda: lambda x: torch.flip(x, (1,))),
    torch.roll: R(lambda: lambda x: torch.roll(x, 1, 1)),
    torch.repeat_interleave: R(lambda: lambda x: torch.repeat_interleave(x, 2, -1)),
    torch.select: R(lambda: lambda x: torch.select(x, 2, 4)),
    # mixing
    torch.max: R(lambda: lambda x: torch.max(x, 1)[0]),
    torch.min: R(lambda: lambda x: torch.min(x, 2, keepdim=True)[0]),
    torch.median: R(lambda: lambda x: torch.median(x, 1)[0]),
    torch.sort: R(lambda: lambda x: torch.sort(x, 2)[0]),
    torch.cummax: R(lambda: lambda x: torch.cummax(x, 2)[0], cat=False),  # causal: see nn.RNNBase
    torch.cummin: R(lambda: lambda x: torch.cummin(x, 1)[0]),
    torch.argsort: R(lambda: lambda x: torch.argsort(x, 1)),
    torch.cumsum: R(lambda: lambda x: torch.cumsum(x, 2), cat=False),
    torch.cumprod: R(lambda: lambda x: torch.cumprod(x, 1)),
    torch.softmax: R(lambda: lambda x: torch.softmax(x, 1)),
    F.softmax: R(lambda: lambda x: F.softmax(x, 2)),
    torch.log_softmax: R(lambda: lambda x: torch.log_softmax(x, 2)),
    F.log_softmax: R(lambda: lambda x: F.log_softmax(x, 1)),
    F.softmin: R(lambda: lambda x: F.softmin(x, 2)),
    torch.logsumexp: R(lambda: lambda x: torch.logsumexp(x, 1)),
    F.unfold: R(lambda: lambda x: F.unfold(x, 3, dilation=2, padding=1, stride=1).view(1, C * 9, 11, 11), 2,
                cat=False),  # (see nn.Unfold)
    # overlapping fold of taps held by the channels (C = 1 x 2 x 2): unit p sums windows p - 1, p; the
    # concat case would put a different operand's channels at each tap, which the union over channels
    # cannot tell apart (as pixel_shuffle's)
    F.fold: R(lambda: lambda x: F.fold(x.flatten(2), (14, 14), 2), 2, cat=False),
    # norms: the order comes before dim (a dim read from the order's place would reduce another dim)
    torch.norm: R(lambda: lambda x: torch.norm(x, 2, 2, True)),
    torch.linalg.vector_norm: R(lambda: lambda x: torch.linalg.vector_norm(x, 2, 1)),
    torch.linalg.norm: R(lambda: lambda x: torch.linalg.norm(x, 1, 2)),
    torch.count_nonzero: R(lambda: lambda x: torch.count_nonzero(x - 2.0, 1)),
    F.linear: R(lambda: lambda x: F.linear(x, _ones(3, LENGTH[1]))),
    torch.matmul: R(lambda: lambda x: torch.matmul(_ones(3, C), x)),
    operator.matmul: R(lambda: lambda x: x.transpose(1, 2) @ _ones(C, 3)),
    torch.bmm: R(lambda: lambda x: torch.bmm(_ones(1, 3, C), x)),
    torch.einsum: R(lambda: lambda x: torch.einsum("nct,dc->ndt", x, _ones(3, C))),
    torch.mm: R(lambda: lambda x: torch.mm(_ones(3, C), x[0])[None]),
    torch.addmm: R(lambda: lambda x: torch.addmm(x[0, :3], _ones(3, C), x[0])[None]),
    torch.baddbmm: R(lambda: lambda x: torch.baddbmm(x[:, :3], _ones(1, 3, C), x)),
    torch.addbmm: R(lambda: lambda x: torch.addbmm(x[0, :3], _ones(1, 3, C), x)[None]),
    F.scaled_dot_product_attention: R(lambda: lambda x: F.scaled_dot_product_attention(
        x.transpose(1, 2), x.transpose(1, 2), x.transpose(1, 2)).transpose(1, 2)),
    # constants
    torch.full_like: R(lambda: lambda x: torch.full_like(x, 2.0)),
    torch.empty_like: R(lambda: lambda x: torch.empty_like(x).fill_(1.0)),  # its values are uninitialised
    torch.randint_like: R(lambda: lambda x: torch.randint_like(x, 5)),
    torch.Tensor.type_as: R(lambda: lambda x: x + torch.arange(x.shape[-1]).type_as(x)),
    # torchvision
    swin_transformer.shifted_window_attention: R(lambda: _SwinAttention(), 2, cat=False),
    swin_transformer._patch_merging_pad: R(lambda: lambda x: swin_transformer._patch_merging_pad(
        x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2), 2),
    video_swin.shifted_window_attention_3d: R(lambda: _SwinAttention3d(), 3, cat=False),
}


class _SwinAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = swin_transformer.ShiftedWindowAttention(C, [4, 4], [2, 2], 2)

    def forward(self, x):
        return self.block(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class _SwinAttention3d(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = video_swin.ShiftedWindowAttention3d(C, [2, 2, 2], [1, 1, 1], 2)

    def forward(self, x):
        return self.block(x.permute(0, 2, 3, 4, 1)).permute(0, 4, 1, 2, 3)


def _method(name, *args, nd=1, **kwargs):
    return R(lambda: lambda x: getattr(x, name)(*args, **kwargs), nd)


def _method_on_copy(name):
    return R(lambda: lambda x: getattr(x.clone(), name)())


def _method_merge(name, other=1.5):
    return R(lambda: lambda x: getattr(x, name)(F.pad(x[..., 1:], (0, 1), value=other)))


def _method_merge_inplace(name):
    return R(lambda: lambda x: getattr(x.clone(), name)(F.pad(x[..., 1:], (0, 1), value=1.5)))


METHOD_RECIPES: dict[str, Recipe] = {
    **{n: _method(n, 0.6, 1.2) for n in ("clamp", "clip")},
    "clamp_": R(lambda: lambda x: x.clone().clamp_(0.6, 1.2)),
    "clip_": R(lambda: lambda x: x.clone().clip_(0.6, 1.2)),
    "clamp_min": _method("clamp_min", 0.9), "clamp_max": _method("clamp_max", 0.9),
    "clamp_min_": R(lambda: lambda x: x.clone().clamp_min_(0.9)),
    **{n: _method_on_copy(n) for n in ("relu_", "sigmoid_", "tanh_", "exp_")},
    "hardtanh_": R(lambda: lambda x: F.hardtanh_(x.clone(), 0.8, 1.2)),
    "requires_grad_": R(lambda: lambda x: x.clone().requires_grad_()),
    **{n: _method_merge(n) for n in (
        "add", "sub", "mul", "div", "pow", "maximum", "minimum", "__add__", "__radd__", "__mul__", "__rmul__",
        "__sub__", "__rsub__", "__truediv__", "__rtruediv__", "eq", "ne", "lt", "gt", "le", "ge", "remainder",
        "fmod", "floor_divide")},
    **{n: _method_merge_inplace(n) for n in ("add_", "sub_", "mul_", "div_", "pow_")},
    "copy_": R(lambda: lambda x: torch.zeros_like(x).copy_(F.pad(x[..., 1:], (0, 1), value=1.5))),
    "logical_and": R(lambda: lambda x: (x > 1).logical_and(F.pad(x[..., 1:], (0, 1)) > 1)),
    "logical_or": R(lambda: lambda x: (x > 1).logical_or(F.pad(x[..., 1:], (0, 1)) > 1)),
    "where": R(lambda: lambda x: x.where(x > 1, F.pad(x[..., 1:], (0, 1)))),
    "masked_fill": R(lambda: lambda x: x.masked_fill(F.pad(x[..., 1:], (0, 1)) > 1, 0.0)),
    "masked_fill_": R(lambda: lambda x: x.clone().masked_fill_(F.pad(x[..., 1:], (0, 1)) > 1, 0.0)),
    "lerp": R(lambda: lambda x: x.lerp(F.pad(x[..., 1:], (0, 1)), 0.3)),
    "addcmul": R(lambda: lambda x: x.addcmul(x, F.pad(x[..., 1:], (0, 1)))),
    "addcdiv": R(lambda: lambda x: x.addcdiv(x, F.pad(x[..., 1:], (0, 1), value=1.0))),
    "to": _method("to", torch.float32), "type": _method("type", torch.float32),
    "view": R(lambda: lambda x: x.view(1, 2, 2, -1).view(x.shape), 2),
    "reshape": R(lambda: lambda x: x.reshape(1, C, -1).reshape(x.shape), 2),
    "view_as": R(lambda: lambda x: x.flatten(2).view_as(x), 2),
    "reshape_as": R(lambda: lambda x: x.flatten(2).reshape_as(x), 2),
    "flatten": R(lambda: lambda x: x.flatten(2).unflatten(2, SHAPES[2]), 2), "unflatten": R(lambda: lambda x: x.unflatten(1, (2, 2)).sum(2)),
    "permute": R(lambda: lambda x: x.permute(0, 2, 1).permute(0, 2, 1)),
    "transpose": R(lambda: lambda x: x.transpose(1, 2).transpose(2, 1)),
    "swapaxes": R(lambda: lambda x: x.swapaxes(1, 2).swapaxes(1, 2)),
    "swapdims": R(lambda: lambda x: x.swapdims(1, 2).swapdims(1, 2)),
    "t": R(lambda: lambda x: x[0].t().t()[None]),
    "squeeze": R(lambda: lambda x: x[:, :, None].squeeze(2)),
    "unsqueeze": R(lambda: lambda x: x.unsqueeze(-1)[..., 0]),
    "expand": R(lambda: lambda x: x[:, :1].expand(1, 3, LENGTH[1])),
    "expand_as": R(lambda: lambda x: x[:, :1].expand_as(x)),
    "repeat": _method("repeat", 1, 2, 1),
    "repeat_interleave": _method("repeat_interleave", 3, -1),
    "narrow": _method("narrow", 2, 1, 6), "split": R(lambda: lambda x: x.split([6, 10], 2)[0]),
    "chunk": R(lambda: lambda x: x.chunk(2, 2)[1]), "unbind": R(lambda: lambda x: x.unbind(1)[2]),
    "tensor_split": R(lambda: lambda x: x.tensor_split(3, 2)[1]),
    "flip": _method("flip", 1), "roll": _method("roll", 2, 1), "select": _method("select", 2, 3),
    "max": R(lambda: lambda x: x.max(1)[0]), "min": R(lambda: lambda x: x.min(2)[0]),
    "median": R(lambda: lambda x: x.median(1)[0]),
    "sort": R(lambda: lambda x: x.sort(2)[0]), "argsort": _method("argsort", 1),
    "cummax": R(lambda: lambda x: x.cummax(2)[0], cat=False), "cummin": R(lambda: lambda x: x.cummin(2)[0], cat=False),
    "cumsum": R(lambda: lambda x: x.cumsum(2), cat=False), "cumprod": R(lambda: lambda x: x.cumprod(2), cat=False),
    "logsumexp": _method("logsumexp", 1),
    "norm": _method("norm", 2, 1),
    # (the taps are mixed then indexed: the index of the last dim drops the concat pieces; no concat case)
    "unfold": R(lambda: lambda x: x.unfold(2, 3, 2).softmax(-1)[..., 0], cat=False),
    **{n: _method(n, 2) for n in ("softmax", "log_softmax")},
    "count_nonzero": R(lambda: lambda x: (x - 2.0).count_nonzero(1)),
    "matmul": R(lambda: lambda x: x.transpose(1, 2).matmul(_ones(C, 3))),
    "__matmul__": R(lambda: lambda x: x.transpose(1, 2).__matmul__(_ones(C, 3))),
    "bmm": R(lambda: lambda x: x.transpose(1, 2).bmm(_ones(1, C, 3))),
    "mm": R(lambda: lambda x: x[0].t().mm(_ones(C, 3))[None]),
    "addmm": R(lambda: lambda x: x[0, :3].addmm(_ones(3, C), x[0])[None]),
    "baddbmm": R(lambda: lambda x: x[:, :3].baddbmm(_ones(1, 3, C), x)),
    "addbmm": R(lambda: lambda x: x[0, :3].addbmm(_ones(1, 3, C), x)[None]),
    "new_zeros": _method("new_zeros", (2, 3)), "new_ones": _method("new_ones", (1, 2, 5)),
    "new_full": _method("new_full", (3,), 2.0), "new_empty": R(lambda: lambda x: x.new_empty((2,)).zero_()),
    "new_tensor": _method("new_tensor", [1.0, 2.0]),
    "zero_": R(lambda: lambda x: x.clone().zero_()), "fill_": R(lambda: lambda x: x.clone().fill_(2.0)),
    "normal_": R(lambda: lambda x: x.clone().normal_()), "uniform_": R(lambda: lambda x: x.clone().uniform_()),
    "type_as": R(lambda: lambda x: x.type_as(_zeros(1))),
}

#: Entries with no generated case, and why.  Every entry of the table has a case or a reason here.
SKIP: dict[Any, str] = {
    nn.SyncBatchNorm: "needs a process group; the same rule as BatchNorm{1,2,3}d, checked here",
    operator.not_: "bool() of a tensor: defined for one-element tensors only (no spatial field to check)",
    torch.numel: "returns a Python int (shape arithmetic), no tensor field",
    getattr: "attribute access (x.shape, x.dtype, x.T): shape arithmetic, checked in tests/rules/test_shapes.py",
    "size": "returns a torch.Size (shape arithmetic), no tensor field",
    "dim": "returns a Python int (shape arithmetic), no tensor field",
    "numel": "returns a Python int (shape arithmetic), no tensor field",
    "cuda": "needs a CUDA device; the same rule as .cpu(), checked here",
    "half": "float16 arithmetic on CPU is not exact enough for the finite-change measurement; same rule as "
            ".float() / .double(), checked here",
    "bfloat16": "bfloat16 rounds the perturbations away; same rule as .float() / .double(), checked here",
    F.multi_head_attention_forward: "needs the in- and out-projection weights of an attention layer; "
                                    "tested in tests/test_attention.py (nn.MultiheadAttention, open_clip's pool)",
    mvit._unsqueeze: "MViT's internal (tensor, thw) helper: called on (B, heads, tokens, C) inside MViT's "
                     "attention; tested on torchvision's mvit_v2_s in tests/rules/test_torchvision.py",
    mvit._squeeze: "MViT's internal helper, see mvit._unsqueeze",
    mvit._add_rel_pos: "MViT's internal attention term (needs the block's relative position tables); tested on "
                       "mvit_v2_s in tests/rules/test_torchvision.py",
    mvit._add_shortcut: "MViT's internal residual (needs the block's pooled shortcut); tested on mvit_v2_s",
}


#: Ops that *select* among their inputs (comparisons, logical ops, max / min, where, masked fill): a
#: position can change the output only in some contexts (``a & b`` ignores ``a`` where ``b`` is false),
#: which a few overwrite values at one base input need not hit.  For them the measured window must lie
#: within the symbolic one (never outside), not equal it.
SELECTING: set = {
    operator.lt, operator.le, operator.gt, operator.ge, operator.eq, operator.ne, operator.and_, operator.or_,
    operator.xor, torch.eq, torch.ne, torch.lt, torch.gt, torch.le, torch.ge, torch.logical_and, torch.logical_or,
    torch.where, torch.masked_fill, torch.maximum, torch.minimum, torch.fmax, torch.fmin, torch.max, torch.min,
    torch.median, torch.cummax, torch.cummin, torch.amax, torch.amin, torch.argmax, torch.argmin, torch.sort,
    torch.argsort, torch.floor_divide, operator.floordiv, torch.remainder, torch.fmod, operator.mod,
    "eq", "ne", "lt", "gt", "le", "ge", "logical_and", "logical_or", "where", "masked_fill", "masked_fill_",
    "maximum", "minimum", "max", "min", "median", "cummax", "cummin", "amax", "amin", "argmax", "argmin",
    "sort", "argsort", "floor_divide", "remainder", "fmod", "all", "any", torch.all, torch.any,
    "count_nonzero", torch.count_nonzero, "bool",
}

#: Entries whose symbolic answer is known to be unknown or larger than the measured one (never smaller).
#: Marked xfail(strict): fixing one makes its case pass and the mark must go.
KNOWN: dict[Any, str] = {}  # (pixel unshuffle's, the last, closed: its channels hold the sub-positions as digits)
#: The same for the torch.export spellings.
EXPORT_KNOWN: dict[Any, str] = dict(KNOWN)
#: Entries whose concat case is honestly unknown (the op alone must still agree): pixel shuffle of a
#: concat whose operands share output channels (here 2 + 2 channels, factor 2: one output channel holds
#: both operands, at different sub-positions) has no per-position rule; the union would be too large.
HONEST: set[Any] = {nn.PixelShuffle, F.pixel_shuffle, torch.pixel_shuffle}

# ---------------------------------------------------------------------------
# the cases
# ---------------------------------------------------------------------------


def _label(key: Any) -> str:
    if isinstance(key, str):
        return f"Tensor.{key}"
    if isinstance(key, type):
        return key.__name__
    mod = getattr(key, "__module__", None) or ""
    name = getattr(key, "__qualname__", None) or getattr(key, "__name__", repr(key))
    return f"{mod}.{name}" if mod and mod != "builtins" else name


def _torch_level(key: Any) -> bool:
    return not isinstance(key, torch._ops.OpOverload)


def entries() -> list[tuple[str, Any]]:
    """Every (kind, key) of the default registry, aten overloads aside (see the export test)."""
    out = [("module", k) for k in DEFAULT_RULES.modules]
    out += [("function", k) for k in DEFAULT_RULES.functions if _torch_level(k)]
    out += [("method", k) for k in DEFAULT_RULES.methods]
    return out


def recipe_for(kind: str, key: Any) -> Optional[Recipe]:
    if key in SKIP:
        return None
    if kind == "module":
        return MODULE_RECIPES.get(key) or R(lambda: key())
    if kind == "function":
        return FUNCTION_RECIPES.get(key) or R(lambda: lambda x: key(x))
    return METHOD_RECIPES.get(key) or R(lambda: lambda x: getattr(x, key)())


class Case(nn.Module):
    """``(op(x), op(cat([conv1x1(x), conv7x7(x)], 1))[:, :2])``."""

    def __init__(self, op: Any, nd: int, cat: bool, slice_after: bool):
        super().__init__()
        conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[nd - 1]
        self.op = op
        self.cat, self.slice_after = cat, slice_after
        self.near = conv(C, C // 2, 1)
        k = (7, 1, 1) if nd == 3 else 7
        self.far = conv(C, C // 2, k, padding=(3, 0, 0) if nd == 3 else 3)

    def forward(self, x):
        alone = self.op(x)
        if not self.cat:
            return (alone,)
        mixed = self.op(torch.cat([self.near(x), self.far(x)], 1))
        return alone, (mixed[:, :2] if self.slice_after else mixed)


def _build(recipe: Recipe) -> tuple[Case, tuple[int, ...]]:
    op = recipe.make()
    shape = (1, C) + (recipe.shape or SHAPES[recipe.nd])
    if isinstance(op, nn.Module):
        op = op.double().eval()
    with torch.no_grad():
        probe = op(torch.rand(shape, dtype=torch.float64) + 0.5)
    # slice channels only where dim 1 still holds channels (same rank, not a spatial length)
    slice_after = (isinstance(probe, torch.Tensor) and probe.ndim == len(shape) and probe.shape[1] >= 3
                   and probe.shape[1] not in shape[2:])
    case = Case(op, recipe.nd, recipe.cat, slice_after).double().eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in case.parameters():
            p.copy_(torch.rand(p.shape, generator=g, dtype=p.dtype) * 0.5 + 0.25)
    return case, shape


def _changed(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if a.dtype == torch.bool or not a.dtype.is_floating_point:
        return a != b
    return ~torch.isclose(a, b, rtol=1e-9, atol=1e-12, equal_nan=True)


def measure(case: Case, shape: tuple[int, ...], axis: int) -> list[list[list[int]]]:
    """Per output of ``case`` and per output element, the input positions along ``axis`` whose
    overwrite changes it: ``reads[k][i]`` is the boolean change pattern (output-shaped) for position i."""
    x0 = torch.rand(shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64) + 0.5
    with torch.no_grad():
        torch.manual_seed(0)
        base = case(x0.clone())
        reads = [[torch.zeros(o.shape, dtype=torch.bool) for _ in range(shape[2 + axis])] for o in base]
        for i in range(shape[2 + axis]):
            for v in VALUES:
                x = x0.clone()
                x.select(2 + axis, i).fill_(v)
                torch.manual_seed(0)
                for k, (o, b) in enumerate(zip(case(x), base)):
                    reads[k][i] |= _changed(o, b)
    return reads


def _expected_and_measured(record, pattern: list[torch.Tensor], axis: int, n: int):
    """(symbolic, measured) windows ``{unit: (first, last) or None}`` of one output along ``axis``."""
    stacked = torch.stack(pattern)  # (n_in, *out_shape)
    if record.source == "nonspatial" or (record.dims[axis] is None and record.lo[axis] is None
                                         and not record.is_global[axis]):
        hit = stacked.reshape(stacked.shape[0], -1).any(1)
        where = torch.nonzero(hit).flatten().tolist()
        return {"all": None}, {"all": (where[0], where[-1]) if where else None}
    d = record.dims[axis]
    if d is None:  # the axis is pinned (indexed, reduced): every element reads the same window
        hit = stacked.reshape(stacked.shape[0], -1).any(1)
        where = torch.nonzero(hit).flatten().tolist()
        got = (where[0], where[-1]) if where else None
        if record.is_global[axis] or record.global_context:
            return {"all": (0, n - 1)}, {"all": got}
        lo, hi = record.lo[axis](0), record.hi[axis](0)
        return {"all": (max(lo, 0), min(hi, n - 1))}, {"all": got}
    per_unit = stacked.movedim(1 + d, 1).flatten(2).any(2)  # (n_in, n_out)
    expected, measured = {}, {}
    for u in range(per_unit.shape[1]):
        where = torch.nonzero(per_unit[:, u]).flatten().tolist()
        got = (where[0], where[-1]) if where else None
        if record.is_global[axis] or record.global_context:
            expected[u], measured[u] = (0, n - 1), got
            continue
        lo, hi = record.lo[axis](u), record.hi[axis](u)
        if lo < 0 or hi > n - 1:
            continue  # a border unit: padding modes and clamps read a clipped subset there
        expected[u], measured[u] = ((lo, hi) if lo <= hi else None), got
    return expected, measured


def _output_records(analysis) -> list:
    out_node = next(n for n in analysis.graph_module.graph.nodes if n.op == "output")
    nodes = out_node.args[0]
    by_fx = {r.fx_name: r for r in analysis}
    return [by_fx[n.name] for n in nodes]


def _inside(measured, expected) -> bool:
    return measured is None or (expected is not None and expected[0] <= measured[0] and measured[1] <= expected[1])


def run_case(recipe: Recipe, selecting: bool = False, honest: bool = False) -> list[str]:
    """Symbolic vs measured for one recipe; the list of disagreements (empty when it agrees).
    ``selecting``: only ``measured within symbolic`` is required (see `SELECTING`); ``honest``: the
    concat case must be unknown with a reason (see `HONEST`), the op alone must agree."""
    case, shape = _build(recipe)
    analysis = rfgraph.analyze(case, shape, dtype=torch.float64, fallback="unknown")
    records = _output_records(analysis)
    problems = []
    if honest:
        if len(records) < 2 or records[1].source != "unknown" or not records[1].reason:
            return ["the concat case is not unknown"]
        records = records[:1]
    for k, r in enumerate(records):
        if r.source == "unknown":
            problems.append(f"output {k} ({r.name}): unknown: {r.reason}")
    if problems:
        return problems
    for axis in recipe.axes:
        reads = measure(case, shape, axis)
        for k, r in enumerate(records):
            expected, measured = _expected_and_measured(r, reads[k], axis, shape[2 + axis])
            what = "op alone" if k == 0 else "op after cat([1x1, 7x7]) + [:, :2]"
            if not expected:
                problems.append(f"{what}: axis {axis}: no unit inside the input to compare")
            for u in expected:
                if (not _inside(measured[u], expected[u])) if selecting else expected[u] != measured[u]:
                    problems.append(f"{what} ({r.name}): axis {axis} unit {u}: symbolic {expected[u]}, "
                                    f"measured {measured[u]}")
                    break
    return problems


CASES = [(kind, key) for kind, key in entries() if key not in SKIP]


def _params(cases: list, known: dict) -> list:
    """One pytest case per ``(kind, key)``; keys in ``known`` are strict xfails with their reason."""
    return [pytest.param(kind, key, id=f"{kind}:{_label(key)}",
                         marks=[pytest.mark.xfail(reason=known[key], strict=True)] if key in known else [])
            for kind, key in cases]


@pytest.mark.parametrize("kind,key", _params(CASES, KNOWN))
def test_entry_against_measurement(kind, key):
    problems = run_case(recipe_for(kind, key), selecting=key in SELECTING, honest=key in HONEST)
    assert not problems, "\n".join(problems)


def test_every_entry_has_a_case():
    """No entry is left out silently: each has a recipe, the default call (``cls()``, ``fn(x)``,
    ``x.name()``) or a reason in SKIP, and every case is generated; SKIP names only entries of the table."""
    assert len(CASES) + len(SKIP) == len(entries())
    table = set(DEFAULT_RULES.modules) | set(DEFAULT_RULES.functions) | set(DEFAULT_RULES.methods)
    assert set(SKIP) <= table
    assert all(reason.strip() for reason in SKIP.values())


def test_a_set_member_breaking_its_criterion_fails():
    """Put ChannelShuffle back in the identity set (its pre-issue-14 state): the generated case fails,
    on the concat + slice half (the identity keeps the 1x1 operand's field, the shuffle reads the 7x7's)."""
    from rfgraph.rules.pointwise import identity_rule

    broken = DEFAULT_RULES.override(modules={nn.ChannelShuffle: identity_rule})
    case, shape = _build(MODULE_RECIPES[nn.ChannelShuffle])
    analysis = rfgraph.analyze(case, shape, dtype=torch.float64, rules=broken, fallback="unknown")
    records = _output_records(analysis)
    reads = measure(case, shape, 0)
    exp0, got0 = _expected_and_measured(records[0], reads[0], 0, shape[2])
    exp1, got1 = _expected_and_measured(records[1], reads[1], 0, shape[2])
    assert exp0 == got0  # alone, the identity is right about positions
    assert exp1 != got1  # after the concat + slice it is not


# ---------------------------------------------------------------------------
# the aten spellings, through torch.export
# ---------------------------------------------------------------------------

#: torch-level cases re-run through ``torch.export`` (the graph then calls aten overloads, whose rules
#: are the torch-level ones through `rfgraph.rules.aten`'s adapters): one per adapter family.
EXPORT_CASES = [
    ("module", nn.Conv2d), ("module", nn.ConvTranspose1d), ("module", nn.MaxPool2d), ("module", nn.AvgPool1d),
    ("module", nn.AdaptiveMaxPool2d), ("module", nn.AdaptiveAvgPool1d), ("module", nn.Upsample),
    ("module", nn.UpsamplingNearest2d), ("module", nn.BatchNorm1d), ("module", nn.LayerNorm),
    ("module", nn.GroupNorm), ("module", nn.PixelShuffle), ("module", nn.ChannelShuffle), ("module", nn.GELU),
    ("module", nn.ReflectionPad1d), ("function", F.interpolate), ("function", torch.stack),
    ("function", operator.getitem), ("function", torch.split), ("function", torch.max), ("function", torch.where),
    ("function", torch.Tensor.type_as), ("method", "unbind"), ("method", "flatten"), ("method", "select"),
    ("method", "softmax"), ("function", torch.full_like), ("function", torch.linalg.vector_norm),
    ("method", "norm"),
]


@pytest.mark.parametrize("kind,key", _params(EXPORT_CASES, EXPORT_KNOWN))
def test_aten_spellings_via_export(kind, key):
    recipe = recipe_for(kind, key)
    case, shape = _build(recipe)
    traced = export_trace(case, (torch.rand(shape, dtype=torch.float64),))
    analysis = rfgraph.analyze(case, shape, dtype=torch.float64, fallback="unknown", traced=traced)
    records = _output_records(analysis)
    if key in HONEST:
        assert records[1].source == "unknown" and records[1].reason
        records = records[:1]
    assert all(r.source != "unknown" for r in records), [r.reason for r in records]
    reads = measure(case, shape, 0)
    for k, r in enumerate(records):
        expected, measured = _expected_and_measured(r, reads[k], 0, shape[2])
        if key in SELECTING:
            assert all(_inside(measured[u], expected[u]) for u in expected), (k, r.name)
        else:
            assert expected == measured, (k, r.name)
