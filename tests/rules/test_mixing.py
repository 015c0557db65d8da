"""Mixing rules (`rfgraph.rules.mixing`): reductions, norms, linear layers, contractions.

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
from rfcheck import CatThen, Lambda, assert_windows_match, check, last, summary
from torch import nn

import rfgraph
from rfgraph.rules import OpCall
from rfgraph.rules.mixing import matmul_rule, mha_function_rule, mix_dim_rule, reduction_rule, sdpa_rule
from rfgraph.tracing import export_trace
from rfgraph.values import SymTensor

# ---------------------------------------------------------------------------
# norms, reductions, contractions
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "norm",
    [nn.GroupNorm(1, 2), nn.InstanceNorm2d(2, affine=True), nn.LayerNorm([2, 6, 6])],
    ids=["groupnorm", "instancenorm", "layernorm_chw"],
)
def test_norms_over_space_are_context(norm):
    """Statistics over H, W are a spatially constant context path: the local field of conv k=3
    (rf 3, start -1) is kept and global_context is set."""
    r = last(check(nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), norm), (1, 1, 6, 6)))
    assert summary(r, 0) == (3, 3, 1, -1)
    assert r.global_context
    assert r.source == "symbolic"



@pytest.mark.parametrize(
    "fn, is_global, shape",
    [
        (lambda x: x.mean((2, 3)), (True, True), (1, 2)),
        (lambda x: x.sum(dim=2, keepdim=True), (True, False), (1, 2, 1, 6)),
        (lambda x: x.amax(dim=-1), (False, True), (1, 2, 5)),
        (lambda x: torch.mean(x, dim=[-2, -1], keepdim=True), (True, True), (1, 2, 1, 1)),
        (lambda x: x.max(dim=3)[0], (False, True), (1, 2, 5)),
    ],
    ids=["mean_hw", "sum_h_keepdim", "amax_w", "torch_mean_keepdim", "max_w_values"],
)
def test_spatial_reductions(fn, is_global, shape):
    """A reduction over a spatial dim makes that axis global; the other axis keeps conv k=3's rf 3."""
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), Lambda(fn))
    r = last(check(model, (1, 1, 5, 6)))
    assert r.is_global == is_global
    for axis, g in enumerate(is_global):
        assert r.rf[axis] == (None if g else 3)
    assert r.shape == shape



def test_flatten_then_linear_is_global():
    """flatten(1) puts C, H, W in one dim; Linear contracts it: every output depends on every pixel."""
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 4 * 4, 5))
    a = check(model, (1, 1, 6, 6))
    assert last(a).is_global == (True, True)
    assert last(a).shape == (1, 5)
    # the flattened tensor itself is not global: it still holds positions, just not as a window dim
    assert not any(a["1"].is_global)



def test_contractions():
    """x.flatten(2) @ W (16 x 5) contracts the token dim: global on both axes.
    tokens (N, HW, C) @ (C, 3) contracts channels: positions kept (rf 1, a flattened dim).
    einsum("bchw,wv->bchv") contracts W only: W global, H rf 1."""
    w_tokens, w_chan, w_w = torch.rand(16, 5), torch.rand(2, 3), torch.rand(4, 3)
    r = last(check(Lambda(lambda x: torch.matmul(x.flatten(2), w_tokens)), (1, 2, 4, 4)))
    assert r.is_global == (True, True)
    r = last(check(Lambda(lambda x: x.flatten(2).transpose(1, 2) @ w_chan), (1, 2, 4, 4)))
    assert r.rf == (1, 1) and not any(r.is_global)
    r = last(check(Lambda(lambda x: torch.einsum("bchw,wv->bchv", x, w_w)), (1, 2, 4, 4)))
    assert r.is_global == (False, True) and r.rf[0] == 1



def test_layer_norm_over_concatenated_channels_mixes_them():
    """Tokens (N, HW, C) of a 1x1 conv and a 7x7 conv (p=3) concatenated along C, then LayerNorm(C):
    each output channel is normalised by statistics over all four channels, so the channel slice
    [..., :2] (the 1x1 operand's channels) sees the 7x7 field: rf 7, not 1."""

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(1, 2, 1)
            self.b = nn.Conv2d(1, 2, 7, padding=3)
            self.norm = nn.LayerNorm(4)

        def forward(self, x):
            tokens = [c(x).flatten(2).transpose(1, 2) for c in (self.a, self.b)]
            return self.norm(torch.cat(tokens, -1))[..., :2]

    r = last(check(M(), (1, 1, 9, 9)))
    assert r.rf == (7, 7)
    assert not r.global_context
    assert rfgraph.probe(M(), r.name, (1, 1, 9, 9)).rf == (7, 7)


def test_reduction_rule_directly():
    """mean over W of (1, 2, 5, 6), keepdim: W becomes a global size-1 dim; H untouched."""
    x = SymTensor.input((1, 2, 5, 6))
    out = reduction_rule(OpCall(None, "mean", None, (x, 3, True), {}))
    assert out.shape == (1, 2, 5, 1)
    assert out.tags[3].field.is_global and out.tags[2].field.rf == 1
    values, indices = reduction_rule(OpCall(None, "max", None, (x, 2), {}))
    assert values.shape == indices.shape == (1, 2, 6) and indices.dtype == torch.int64


# ---------------------------------------------------------------------------
# attention handlers called directly (end-to-end cases and the probe: tests/test_attention.py)
# ---------------------------------------------------------------------------


def _tokens(n_h: int = 4, n_w: int = 4, c: int = 3) -> SymTensor:
    """(1, H*W, C) tokens of an input map: the token dim holds both axes at rf 1."""
    return SymTensor.input((1, c, n_h, n_w)).reshape((1, c, n_h * n_w)).permute((0, 2, 1))


def test_matmul_rule_contracting_tokens_is_data_not_context():
    """``A @ v`` with ``A`` global over keys and ``v`` local: every output token is global on both
    axes, no context flag; ``t @ W`` (channels contracted) keeps rf 1."""
    t = _tokens()
    a = mix_dim_rule(OpCall(None, "softmax", None, (matmul_rule(OpCall(None, "matmul", None,
                     (t, t.permute((0, 2, 1))), {})), -1), {}))
    out = matmul_rule(OpCall(None, "matmul", None, (a, t), {}))
    assert out.shape == (1, 16, 3) and not out.global_context
    assert all(f.is_global for fs in out.axis_fields().values() for f in fs)
    assert out.reshape((1, 4, 4, 3)).tags[1].field.is_global  # the token dim still reshapes back
    kept = matmul_rule(OpCall(None, "matmul", None, (t, torch.zeros(3, 5)), {}))
    assert kept.shape == (1, 16, 5) and {f.rf for fs in kept.axis_fields().values() for f in fs} == {1}


def test_scores_pair_queries_with_keys():
    """``q @ k^T`` keeps each dim's exact fields (rf 1) for the ops that follow, and pairs the axes."""
    t = _tokens()
    scores = matmul_rule(OpCall(None, "matmul", None, (t, t.permute((0, 2, 1))), {}))
    assert scores.shape == (1, 16, 16)
    assert scores.paired_axes() == {0, 1}
    assert {f.rf for fs in scores.axis_fields().values() for f in fs} == {1}


def test_sdpa_rule_directly():
    """(B, heads, N, d) q / k / v: output (B, heads, N, dv) global; a boolean mask hiding tokens and
    ``is_causal`` are handed over (unknown, the reason named) when no pass is running."""
    t = _tokens(c=4).reshape((1, 16, 2, 2)).permute((0, 2, 1, 3))
    out = sdpa_rule(OpCall(None, F.scaled_dot_product_attention, None, (t, t, t), {}))
    assert out.shape == (1, 2, 16, 2) and not out.unknown
    assert all(f.is_global for fs in out.axis_fields().values() for f in fs)
    hidden = torch.ones(16, 16, dtype=torch.bool).tril()
    masked = sdpa_rule(OpCall(None, F.scaled_dot_product_attention, None, (t, t, t), {"attn_mask": hidden}))
    assert masked.unknown and "hides some tokens" in masked.unknown and masked.shape == (1, 2, 16, 2)
    causal = sdpa_rule(OpCall(None, F.scaled_dot_product_attention, None, (t, t, t), {"is_causal": True}))
    assert causal.unknown and "causal" in causal.unknown
    bias = sdpa_rule(OpCall(None, F.scaled_dot_product_attention, None, (t, t, t), {"attn_mask": torch.zeros(16, 16)}))
    assert not bias.unknown


def test_mha_function_rule_directly():
    """``F.multi_head_attention_forward`` on (L, B, E) tokens: output (L, B, E_out) global, weights (B, L, S)."""
    t = _tokens(c=4).permute((1, 0, 2))  # (16, 1, 4)
    w = torch.zeros(12, 4)
    out, weights = mha_function_rule(OpCall(None, F.multi_head_attention_forward, None, (t, t, t, 4, 2, w,
                                     torch.zeros(12), None, None, False, 0.0, torch.zeros(6, 4), None), {}))
    assert out.shape == (16, 1, 6) and weights.shape == (1, 16, 16)
    assert all(f.is_global for fs in out.axis_fields().values() for f in fs)
    # weights[l, s] read query l and every key (the softmax over s): every entry is global
    assert all(f.is_global for _, f in weights.tags[2].items())
    assert all(f.is_global for fs in weights.axis_fields().values() for f in fs)


def test_baddbmm_scores_and_addmm():
    """``baddbmm(bias, q, k^T)`` (scores plus a constant bias, as some attention code writes them),
    softmax, ``bmm`` with v: global on both axes; ``addmm(b, x_tokens, W)`` over channels keeps rf 1."""
    def attention(x):
        t = x.flatten(2).transpose(1, 2)                                   # (1, 16, 2)
        scores = torch.baddbmm(torch.zeros(1, 16, 16), t, t.transpose(1, 2))
        return torch.bmm(scores.softmax(-1), t)

    r = last(check(Lambda(attention), (1, 2, 4, 4)))
    assert r.is_global == (True, True) and not r.global_context
    r = last(check(Lambda(lambda x: torch.addmm(torch.zeros(3), x.flatten(2)[0].t(), torch.ones(2, 3))),
                   (1, 2, 4, 4)))
    assert r.rf == (1, 1) and r.shape == (16, 3)


class _GRN(nn.Module):
    """ConvNeXt-V2's global response normalisation (channels last, transformers' spelling): the L2 norm
    of each channel over all positions, divided by its mean over channels, gates the local path."""

    def __init__(self, c: int, spelling: str):
        super().__init__()
        self.conv = nn.Conv2d(1, c, 3, padding=1)
        self.gamma = nn.Parameter(torch.ones(1, 1, 1, c))
        self.spelling = spelling

    def forward(self, x):
        x = self.conv(x).permute(0, 2, 3, 1)
        if self.spelling == "torch.norm":
            g = torch.norm(x, p=2, dim=(1, 2), keepdim=True)
        elif self.spelling == "positional":
            g = x.norm(2, (1, 2), True)
        else:
            g = torch.linalg.vector_norm(x, 2, (1, 2), True)
        n = g / (g.mean(dim=-1, keepdim=True) + 1e-6)
        return (self.gamma * (x * n) + x).permute(0, 3, 1, 2)


@pytest.mark.parametrize("spelling", ["torch.norm", "positional", "linalg"])
@pytest.mark.parametrize("export", [False, True], ids=["fx", "export"])
def test_grn_norm_over_positions_is_context(spelling, export):
    """GRN: a norm over H, W (any spelling: the order comes before dim) is a spatially constant summary
    gating the conv's local path: local field rf 3, start -1, global_context; the probe measures the
    same (it cuts the size-1 broadcast summary)."""
    model = _GRN(3, spelling).eval()
    kwargs = {}
    if export:
        kwargs["traced"] = export_trace(model, (torch.rand(1, 1, 7, 7),))
    r = last(rfgraph.analyze(model, (1, 1, 7, 7), fallback="unknown", **kwargs))
    assert r.source == "symbolic", r.reason
    assert r.shape == (1, 3, 7, 7)
    assert summary(r, 0) == summary(r, 1) == (3, 3, 1, -1)
    assert r.global_context
    if not export:
        assert rfgraph.probe(model, r.name, (1, 1, 7, 7)).rf == (3, 3)


def test_norm_keeps_its_order_apart_from_dim():
    """``x.norm(1, 3)``: order 1 over dim 3 (W): H keeps conv k=3's field; the shape drops W."""
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), Lambda(lambda x: x.norm(1, 3)))
    r = last(check(model, (1, 1, 5, 6)))
    assert r.shape == (1, 2, 5)
    assert r.is_global == (False, True)
    assert summary(r, 0) == (3, 3, 1, -1)


# ---------------------------------------------------------------------------
# timm's relative-position logits (BoTNet / HaloNet "skew")
# ---------------------------------------------------------------------------


try:  # (fx keeps a function with a rule whole when the forward calls it by a global name without "_")
    from timm.layers.bottleneck_attn import rel_logits_1d as botnet_rel_logits
    from timm.layers.halo_attn import rel_logits_1d as halonet_rel_logits
except ImportError:  # pragma: no cover - timm is in requirements-zoo
    botnet_rel_logits = halonet_rel_logits = None


class _RelLogits(nn.Module):
    """conv k=3 p=1 as the queries ``(B, H, W, d)``, timm's ``rel_logits_1d`` along W (``module`` picks
    BoTNet's or HaloNet's copy, ``win`` the window of offsets), summed over the tiled and offset dims so
    that the result is a map ``(B, 1, H, W)`` to measure."""

    def __init__(self, which: str, win: int, along_h: bool = False):
        super().__init__()
        self.which = which
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.rel = nn.Parameter(torch.rand(2 * win - 1, 3))
        self.along_h = along_h

    def forward(self, x):
        fn = botnet_rel_logits if self.which == "bottleneck_attn" else halonet_rel_logits
        q = self.conv(x).permute(0, 2, 3, 1)
        if self.along_h:
            q = q.transpose(1, 2)
            out = fn(q, self.rel, (0, 3, 1, 4, 2))  # (B, H, W, H', W') as PosEmbedRel's height logits
        else:
            out = fn(q, self.rel, (0, 1, 3, 2, 4))
        return out.sum((3, 4)).unsqueeze(1)


@pytest.mark.parametrize("which, win", [("bottleneck_attn", 6), ("halo_attn", 6), ("halo_attn", 9)])
@pytest.mark.parametrize("along_h", [False, True], ids=["w", "h"])
def test_relative_logits_read_their_query_alone(which, win, along_h):
    """Entry (.., i, j) of the skewed logits is ``q_i . rel_k[win - 1 + j - i]`` (derivation in
    `relative_logits_rule`): it reads query i alone, so summed over the other dims the map keeps the
    conv's field, rf 3, start -1, on both axes; every unit agrees with back-propagation.  (Pieces one by
    one: the pad of the flattened (position, offset) dim had no exact rule.)"""
    pytest.importorskip("timm")
    model = _RelLogits(which, win, along_h)
    a = check(model, (1, 1, 6, 6), fallback="unknown")
    r = last(a)
    assert r.source == "symbolic", r.reason
    assert summary(r, 0) == summary(r, 1) == (3, 3, 1, -1)
    assert any(rec.op.endswith("rel_logits_1d") for rec in a)  # kept whole
    for axis in (0, 1):
        assert_windows_match(model, (1, 1, 6, 6), r, axis)


def test_relative_logits_with_too_few_offsets_are_handed_over():
    """A window of 4 offsets for 6 positions: the skew reads neighbouring rows: no exact rule."""
    pytest.importorskip("timm")
    r = last(rfgraph.analyze(_RelLogits("halo_attn", 4), (1, 1, 6, 6), fallback="unknown"))
    assert r.source == "unknown" and "offsets" in r.reason


def test_botnet_attention_block_is_global():
    """timm's BottleneckAttn (BoTNet) after a conv: attention over all 64 tokens plus the relative
    logits: every output reads every pixel; the probe at the fixed feature size agrees."""
    bottleneck_attn = pytest.importorskip("timm.layers.bottleneck_attn")
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), bottleneck_attn.BottleneckAttn(8, feat_size=(8, 8),
                                                                                        num_heads=2))
    a = check(model, (1, 1, 8, 8), fallback="unknown")
    r = last(a)
    assert r.source == "symbolic" and r.is_global == (True, True)
    # the logits alone (width + height, before the reshape to (B, HW, HW)): the query's own field
    pos = a["1.pos_embed.add"]
    assert pos.source == "symbolic" and pos.rf == (3, 3) and pos.start == (-1, -1)
    measured = rfgraph.probe(model, pos.name, (1, 1, 8, 8))
    assert measured.rf == (3, 3) and measured.start == (-1, -1)
    assert all(rfgraph.probe(model, r.name, (1, 1, 8, 8)).is_global)


@pytest.mark.parametrize("norm", [nn.GroupNorm(2, 4), nn.GroupNorm(1, 4), nn.InstanceNorm2d(4, affine=True)])
def test_norm_with_global_statistics_keeps_the_concat_pieces(norm):
    """A statistic over whole axes (GroupNorm, InstanceNorm) is spatially constant:
    each element keeps its own field plus a context path, so the 1x1 operand of a concat keeps rf 1 after
    the norm (it was the union, 7, before).  The probe, which freezes norm statistics, measures the same."""
    class CatNorm(nn.Module):
        def __init__(self):
            super().__init__()
            self.near, self.far, self.norm = nn.Conv2d(2, 2, 1), nn.Conv2d(2, 2, 7, padding=3), norm

        def forward(self, x):
            return self.norm(torch.cat([self.near(x), self.far(x)], 1))[:, :2]

    model = CatNorm().eval()
    r = last(rfgraph.analyze(model, (1, 2, 12, 12)))
    assert (r.rf, r.global_context) == ((1, 1), True)
    assert rfgraph.probe(model, r.name, (1, 2, 12, 12)).rf == (1, 1)


def test_layer_norm_over_channels_mixes_the_concat_pieces():
    """LayerNorm over the channels only: each position's statistic reads every channel there, so the 1x1
    operand's channels see the 7x7 operand's field through it: the union, 7 (probe agrees)."""
    class CatLN(nn.Module):
        def __init__(self):
            super().__init__()
            self.near, self.far, self.norm = nn.Conv2d(2, 2, 1), nn.Conv2d(2, 2, 7, padding=3), nn.LayerNorm(4)

        def forward(self, x):
            y = torch.cat([self.near(x), self.far(x)], 1).permute(0, 2, 3, 1)
            return self.norm(y)[..., :2].permute(0, 3, 1, 2)

    model = CatLN().eval()
    r = last(rfgraph.analyze(model, (1, 2, 12, 12)))
    assert r.rf == (7, 7)
    assert rfgraph.probe(model, r.name, (1, 2, 12, 12)).rf == (7, 7)


@pytest.mark.parametrize("fn, shape", [
    (lambda x: torch.std(x, 1, True), (1, 12)),            # (dim, unbiased): keepdim stays False
    (lambda x: torch.var(x, 1, True, True), (1, 1, 12)),   # (dim, unbiased, keepdim)
    (lambda x: x.std(1, True), (1, 12)),
    (lambda x: x.var(2, False, True), (1, 3, 1)),
    (lambda x: x.std(True), ()),                           # unbiased alone: over every dim
    (lambda x: torch.mean(x, 1, True), (1, 1, 12)),        # mean: (dim, keepdim)
])
def test_std_and_var_read_unbiased_before_keepdim(fn, shape):
    """``torch.std`` / ``torch.var`` put ``unbiased`` where ``mean`` has ``keepdim``: the shape must be
    torch's (`check` compares every node with a real run), and a reduced spatial dim is global."""
    a = check(Lambda(fn), (1, 3, 12))
    r = last(a)
    assert r.shape == shape


@pytest.mark.parametrize("fn,rf", [
    # a cumulative product over the channels: channel c reads channels 0 .. c, so the first operand's
    # channels read it alone, the second's both operands
    (lambda y: y.cumprod(1)[:, :2], (1, 1)),
    (lambda y: torch.cumsum(y, 1)[:, 1:2], (1, 1)),
    (lambda y: y.cumprod(1)[:, 2:], (7, 7)),
    # a stack of concats summed over the stack: a merge, piece by piece
    (lambda y: torch.stack([y, y * 2], 0).sum(0)[:, :2], (1, 1)),
    (lambda y: torch.stack([y, y * 2], 1).amax(1)[:, 2:], (7, 7)),
])
def test_concat_pieces_through_channel_scans_and_stack_reductions(fn, rf):
    """cat([1x1, 7x7], 1) (2 + 2 channels), a scan over its channels or a stack reduced over the stack,
    then one operand's channels: 1 or 7 (the union, 7, was reported for both before)."""
    assert last(check(CatThen(fn), (1, 2, 12, 12))).rf == rf
