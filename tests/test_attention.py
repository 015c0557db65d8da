"""Attention, end to end: every spelling of ``softmax(q k^T) v`` is global along the axes its tokens hold.

Each family gets a hand-derived expectation and the numeric probe's agreement on a small instance
(`rfgraph.probing.validate_analysis`: float64 back-propagation on a sanitized copy, independent of
the rules).  The attention product reads every key and value token, so it is *global*, never the
value path's local field with a ``global_context`` flag; ``global_context`` stays for gates made
from a global summary that scale a local path (squeeze-and-excitation, a norm's statistics).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from rfcheck import check, last, summary
from torch import nn

import rfgraph
from rfgraph.probing import validate_analysis
from rfgraph.tracing import export_trace


def agrees(analysis, nodes):
    """The probe measures what the symbolic pass reports at ``nodes`` (a global field touches the
    borders by definition, so its measurement counts as clipped: no disagreement and no error is what
    is asserted), and the probe's global axes are the symbolic ones."""
    report = validate_analysis(analysis, nodes)
    assert not report.disagreements and not report.errors, str(report)
    for row in report:
        assert row.numeric is not None and row.numeric.is_global == row.symbolic.is_global, str(report)
        if not any(row.symbolic.is_global):
            assert row.status == "ok", str(report)
    return report


def assert_global(r, axes=(True, True)):
    assert r.source == "symbolic", r.reason
    assert r.is_global == tuple(axes), (r.name, r.is_global)
    assert not r.global_context, r.name


# ---------------------------------------------------------------------------
# the wrong-number case: attention written by hand over a 2-D map
# ---------------------------------------------------------------------------


class HandAttention(nn.Module):
    """conv k=3 p=1, then 1x1-conv q / k / v, flatten to tokens, ``softmax(q @ k^T) @ v``, reshape back."""

    def __init__(self, c: int = 4, spelling: str = "matmul"):
        super().__init__()
        self.conv = nn.Conv2d(1, c, 3, padding=1)
        self.q, self.k, self.v = nn.Conv2d(c, c, 1), nn.Conv2d(c, c, 1), nn.Conv2d(c, c, 1)
        self.spelling = spelling

    def forward(self, x):
        x = self.conv(x)
        b, c, h, w = x.shape
        q = self.q(x).flatten(2).transpose(1, 2)            # (B, HW, C)
        k = self.k(x).flatten(2)                            # (B, C, HW)
        v = self.v(x).flatten(2).transpose(-2, -1)          # (B, HW, C)
        if self.spelling == "matmul":
            a = torch.matmul(q, k).softmax(dim=-1)
            o = a @ v
        elif self.spelling == "functional":
            a = F.softmax(q @ k, dim=-1)
            o = torch.bmm(a, v)
        else:  # einsum
            a = torch.einsum("bic,bcj->bij", q, k).softmax(-1)
            o = torch.einsum("bij,bjc->bic", a, v)
        return o.transpose(1, 2).reshape(b, c, h, w)


@pytest.mark.parametrize("spelling", ["matmul", "functional", "einsum"])
def test_hand_written_attention_is_global(spelling):
    """Every output token reads every token of v (through ``A @ v``) and every token of k (through
    the softmax over keys): global on both axes, on the map and on the attention matrix; the q / k / v
    paths before it keep conv k=3's rf 3, start -1."""
    a = check(HandAttention(spelling=spelling), (1, 1, 8, 8))
    assert summary(a["q"], 0) == summary(a["v"], 1) == (3, 3, 1, -1)
    out = last(a)
    assert out.shape == (1, 4, 8, 8)
    assert_global(out)
    assert a.counts()["unknown"] == 0
    assert agrees(a, [out.name]).rows[0].numeric.is_global == (True, True)


def test_hand_written_attention_is_global_through_export():
    """The same block traced by torch.export: aten matmul / _softmax / transpose / view spellings."""
    model = HandAttention()
    shape = (1, 1, 8, 8)
    a = rfgraph.analyze(model, shape, traced=export_trace(model, (torch.zeros(shape),)))
    assert a.meta["trace"] == "export"
    assert_global(last(a))
    assert a.counts()["unknown"] == 0
    # an exported graph is fixed to its input size, which the probe must vary: it measures the same
    # model traced by fx, whose nodes carry the same names
    fx = rfgraph.analyze(model, shape)
    assert [(r.name, r.is_global, r.rf) for r in a if r.op != "output"] == \
        [(r.name, r.is_global, r.rf) for r in fx if r.op != "output"]
    agrees(fx, [last(fx).name])


def test_attention_matrix_pairs_queries_with_keys():
    """``q @ k^T`` (no softmax yet): entry (i, j) reads query i and key j, so over its entries the
    node spans the whole map (global), and the probe measures the same; the softmax keeps it global."""
    class Logits(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3, padding=1)

        def forward(self, x):
            t = self.conv(x).flatten(2)
            return t.transpose(1, 2) @ t

    a = check(Logits(), (1, 1, 8, 8))
    assert_global(last(a))
    agrees(a, [last(a).name])


# ---------------------------------------------------------------------------
# exact windows: attention along one axis only
# ---------------------------------------------------------------------------


class AxialAttention(nn.Module):
    """Attention along W within each row (axial attention): rows do not mix."""

    def __init__(self, c: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(1, c, 3, padding=1)
        self.qkv = nn.Conv2d(c, 3 * c, 1)

    def forward(self, x):
        q, k, v = self.qkv(self.conv(x)).permute(0, 2, 3, 1).chunk(3, dim=-1)   # (B, H, W, C) each
        a = (q @ k.transpose(-2, -1)).softmax(-1)                                 # (B, H, W, W)
        return (a @ v).permute(0, 3, 1, 2)                                        # (B, C, H, W)


def test_axial_attention_is_global_along_its_axis_only():
    """Mixing W within each row: W global; H keeps conv k=3's window (rf 3, stride 1, start -1)."""
    a = check(AxialAttention(), (1, 1, 8, 8))
    r = last(a)
    assert r.is_global == (False, True) and not r.global_context
    assert summary(r, 0) == (3, 3, 1, -1)
    agrees(a, [r.name])


# ---------------------------------------------------------------------------
# SDPA, MultiheadAttention, F.multi_head_attention_forward
# ---------------------------------------------------------------------------


class SDPABlock(nn.Module):
    def __init__(self, c: int = 4, heads: int = 2, mask: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(1, c, 3, padding=1)
        self.qkv = nn.Linear(c, 3 * c)
        self.heads = heads
        self.mask = mask
        self.bias = nn.Parameter(torch.zeros(heads, 1, 1))

    def forward(self, x):
        x = self.conv(x)
        b, c, h, w = x.shape
        t = x.flatten(2).transpose(1, 2)
        q, k, v = self.qkv(t).reshape(b, h * w, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        bias = self.bias if self.mask else None   # an additive (per-head) bias keeps every dependency
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return o.transpose(1, 2).reshape(b, h * w, c).transpose(1, 2).reshape(b, c, h, w)


@pytest.mark.parametrize("mask", [False, True], ids=["plain", "additive_bias"])
def test_sdpa_is_global(mask):
    a = check(SDPABlock(mask=mask), (1, 1, 8, 8))
    assert_global(last(a))
    agrees(a, [last(a).name])


def test_sdpa_with_a_hiding_mask_is_handed_over():
    """A boolean mask that hides tokens cuts dependencies: no exact rule, the op is named."""
    class Masked(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3, padding=1)

        def forward(self, x):
            t = self.conv(x).flatten(2).transpose(1, 2)
            mask = torch.ones(t.shape[1], t.shape[1], dtype=torch.bool).tril()
            return F.scaled_dot_product_attention(t, t, t, attn_mask=mask)

    r = last(rfgraph.analyze(Masked(), (1, 1, 4, 4), fallback="unknown"))
    assert r.source == "unknown" and "mask" in r.reason and "scaled_dot_product_attention" in r.reason


class _CausalScores(nn.Module):
    """conv k=3 over 8 positions, hand-written attention over them with a causal mask spelled as ``how``:
    an additive -1e4 above the diagonal, or ``masked_fill`` with -inf there."""

    def __init__(self, how: str):
        super().__init__()
        self.conv = nn.Conv1d(1, 2, 3, padding=1)
        self.how = how
        self.register_buffer("upper", torch.ones(8, 8, dtype=torch.bool).triu(1))

    def forward(self, x):
        t = self.conv(x).transpose(1, 2)
        scores = t @ t.transpose(1, 2)
        if self.how == "add":
            scores = scores + self.upper.float() * -1e4
        else:
            scores = scores.masked_fill(self.upper, float("-inf"))
        return (scores.softmax(-1) @ t).transpose(1, 2)


@pytest.mark.parametrize("how", ["add", "fill"])
def test_hand_written_causal_mask_is_handed_over(how):
    """A mask of -100 or less hides entries (`rules.mixing.HIDING_LOGIT`): on tokens that no roll wrapped
    (here causal: token i reads tokens 0..i) which ones is not followed, so the softmax is handed over with
    the reason named (before: global, a window too large that the probe contradicted)."""
    a = rfgraph.analyze(_CausalScores(how), (1, 1, 8), fallback="unknown")
    r = a["softmax"]
    assert r.source == "unknown" and "no roll wrapped" in r.reason and "softmax" in r.reason


def test_sdpa_through_export():
    model = SDPABlock()
    shape = (1, 1, 8, 8)
    a = rfgraph.analyze(model, shape, traced=export_trace(model, (torch.zeros(shape),)))
    assert_global(last(a))


class MHABlock(nn.Module):
    def __init__(self, batch_first: bool):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.mha = nn.MultiheadAttention(4, 2, batch_first=batch_first)
        self.batch_first = batch_first

    def forward(self, x):
        x = self.conv(x)
        b, c, h, w = x.shape
        t = x.flatten(2).transpose(1, 2) if self.batch_first else x.flatten(2).permute(2, 0, 1)
        o, weights = self.mha(t, t, t)
        o = o.transpose(1, 2) if self.batch_first else o.permute(1, 2, 0)
        return o.reshape(b, c, h, w), weights


@pytest.mark.parametrize("batch_first", [True, False])
def test_multihead_attention_module(batch_first):
    """Output and averaged weights (B, L, S) both global; shapes as torch's."""
    a = check(MHABlock(batch_first), (1, 1, 6, 6))
    r = a["mha"]
    assert r.source == "symbolic" and r.is_global == (True, True)
    assert_global(a["reshape"])
    agrees(a, ["reshape"])


class AttnPool(nn.Module):
    """open_clip's ModifiedResNet attention pool: query = mean token + positional embedding, keys and
    values the flattened map, through ``F.multi_head_attention_forward``; output the query token."""

    def __init__(self):
        super().__init__()
        from open_clip.modified_resnet import AttentionPool2d

        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.pool = AttentionPool2d(spacial_dim=4, embed_dim=8, num_heads=2, output_dim=6)

    def forward(self, x):
        return self.pool(self.conv(x))


def test_open_clip_attention_pool():
    pytest.importorskip("open_clip")
    a = check(AttnPool(), (1, 1, 4, 4))
    r = last(a)
    assert r.shape == (1, 6)
    assert_global(r)
    assert a.counts()["unknown"] == 0


# ---------------------------------------------------------------------------
# einsum spellings, linear attention, sub-sampled keys / values
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("scores, mix", [("bhid,bhjd->bhij", "bhij,bhjd->bhid"),
                                         ("bhdi,bhdj->bhij", "bhdj,bhij->bhdi"),
                                         ("...id,...jd->...ij", "...ij,...jd->...id")])
def test_einsum_attention(scores, mix):
    class EinsumAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=1)

        def forward(self, x):
            x = self.conv(x)
            b, c, h, w = x.shape
            t = x.reshape(b, 2, c // 2, h * w)            # (B, heads, d, N)
            if scores.startswith("bhid") or scores.startswith("..."):
                t = t.transpose(-2, -1)                   # (B, heads, N, d)
            a = torch.einsum(scores, t, t).softmax(-1)
            o = torch.einsum(mix, t, a) if mix.startswith("bhdj") else torch.einsum(mix, a, t)
            if not mix.startswith("bhdj"):
                o = o.transpose(-2, -1)
            return o.reshape(b, c, h, w)

    a = check(EinsumAttention(), (1, 1, 6, 6))
    assert_global(last(a))
    agrees(a, [last(a).name])


def test_linear_attention_is_global_too():
    """``q (k^T v)`` is ``(q k^T) v`` reassociated: the summary ``k^T v`` holds every token's value,
    and the product with q is a contraction, not a gate: global (the probe agrees)."""
    class LinearAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=1)

        def forward(self, x):
            x = self.conv(x)
            b, c, h, w = x.shape
            t = x.flatten(2).transpose(1, 2).relu()      # (B, N, C)
            kv = t.transpose(1, 2) @ t                   # (B, C, C): no token dim left
            return (t @ kv).transpose(1, 2).reshape(b, c, h, w)

    a = check(LinearAttention(), (1, 1, 8, 8))
    assert_global(last(a))
    agrees(a, [last(a).name])


class SubsampledAttention(nn.Module):
    """Spatial-reduction attention (PVT / Segformer): queries at full resolution, keys and values from
    a k=r s=r conv of the map (or an average pool)."""

    def __init__(self, c: int = 4, r: int = 2, pool: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(1, c, 3, padding=1)
        self.q = nn.Linear(c, c)
        self.sr = nn.AvgPool2d(r) if pool else nn.Conv2d(c, c, r, stride=r)
        self.kv = nn.Linear(c, 2 * c)

    def forward(self, x):
        x = self.conv(x)
        b, c, h, w = x.shape
        q = self.q(x.flatten(2).transpose(1, 2))                      # (B, HW, C)
        k, v = self.kv(self.sr(x).flatten(2).transpose(1, 2)).chunk(2, -1)   # (B, HW / r^2, C)
        a = (q @ k.transpose(-2, -1)).softmax(-1)                     # (B, HW, HW / r^2)
        return (a @ v).transpose(1, 2).reshape(b, c, h, w)


@pytest.mark.parametrize("pool", [False, True], ids=["strided_conv", "avg_pool"])
def test_subsampled_keys_values(pool):
    """The queries' own windows (rf 3) joined with the whole reduced map, which covers the whole input:
    global.  The score matrix pairs stride-1 queries with stride-2 keys: global over its entries too,
    not 'held with different strides'."""
    a = check(SubsampledAttention(pool=pool), (1, 1, 8, 8))
    assert summary(a["q"], 0) == (3, 3, 1, -1)
    scores = a["matmul"]
    assert scores.source == "symbolic" and scores.is_global == (True, True)
    assert_global(last(a))
    assert a.counts()["unknown"] == 0
    agrees(a, [last(a).name, "matmul"])


# ---------------------------------------------------------------------------
# context stays context
# ---------------------------------------------------------------------------


def test_global_context_block_stays_context():
    """GCNet's context block: a softmax over tokens pools the map into one vector per channel (a global
    summary, no token dim left), added back to every position: a context path, rf 3 kept."""
    class GC(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=1)
            self.mask = nn.Conv2d(4, 1, 1)

        def forward(self, x):
            x = self.conv(x)
            b, c, h, w = x.shape
            attn = self.mask(x).flatten(2).softmax(-1).unsqueeze(-1)     # (B, 1, HW, 1)
            ctx = x.flatten(2).unsqueeze(1) @ attn                       # (B, 1, C, 1)
            return x + ctx.reshape(b, c, 1, 1)

    r = last(check(GC(), (1, 1, 8, 8)))
    assert summary(r, 0) == (3, 3, 1, -1) and r.global_context and not any(r.is_global)


# ---------------------------------------------------------------------------
# model families: LeViT, EfficientFormer, YOLO11's C2PSA
# ---------------------------------------------------------------------------


class LevitStyle(nn.Module):
    """LeViT's two attention forms on a small map, attention biases left out (a constant added to the
    scores changes no dependency): the BCHW form (1x1-conv qkv, ``q^T @ k``, ``v @ attn^T``) and the
    attention-downsample (queries from every second token of every second row, keys / values from all)."""

    def __init__(self, c: int = 8, heads: int = 2):
        super().__init__()
        self.stem = nn.Conv2d(1, c, 3, stride=2, padding=1)
        self.kd, self.dv = 2, c // heads
        self.qkv = nn.Conv2d(c, heads * (2 * self.kd + self.dv), 1)
        self.heads = heads
        self.kv = nn.Linear(c, 2 * c)
        self.q = nn.Linear(c, c)

    def forward(self, x):
        x = self.stem(x)
        b, c, h, w = x.shape
        q, k, v = self.qkv(x).view(b, self.heads, -1, h * w).split([self.kd, self.kd, self.dv], dim=2)
        attn = (q.transpose(-2, -1) @ k).softmax(dim=-1)
        x = (v @ attn.transpose(-2, -1)).view(b, -1, h, w)
        t = x.flatten(2).transpose(1, 2)                                   # (B, N, C)
        k, v = self.kv(t).view(b, h * w, self.heads, -1).split([c // 2, c // 2], dim=3)
        sub = t.view(b, h, w, c)[:, ::2, ::2].reshape(b, -1, c)
        q = self.q(sub).view(b, -1, self.heads, c // 2).permute(0, 2, 1, 3)
        attn = (q @ k.permute(0, 2, 3, 1)).softmax(dim=-1)
        y = (attn @ v.permute(0, 2, 1, 3)).transpose(1, 2).reshape(b, -1, c)
        return y.transpose(1, 2).reshape(b, c, (h + 1) // 2, (w + 1) // 2)


def test_levit_style_attention_and_downsample():
    """Stem conv k=3 s=2 p=1 (rf 3, stride 2, start -1); both attentions global; the probe agrees."""
    a = check(LevitStyle(), (1, 1, 16, 16))
    assert summary(a["stem"], 0) == (3, 3, 2, -1)
    assert_global(a["view_1"])
    assert_global(last(a))
    assert a.counts()["unknown"] == 0
    agrees(a, ["view_1", last(a).name])


@pytest.fixture(scope="module")
def timm():
    return pytest.importorskip("timm")


def _meta_timm(timm, name):
    with torch.device("meta"):
        return timm.create_model(name, pretrained=False).eval()


def test_timm_levit_128s(timm):
    """The stem (4 convs k=3 s=2 p=1: rf 31, stride 16, start -15) feeds the first attention, from which
    every node is global; nothing is unknown, no node is local with a context flag (the former wrong
    numbers: 396 nodes reported local + global_context)."""
    a = rfgraph.analyze(_meta_timm(timm, "levit_128s"), (1, 3, 224, 224))
    assert summary(a["stem.conv4.bn"], 0) == (31, 31, 16, -15)
    assert a.counts() == {"symbolic": 27, "probed": 0, "global": 426, "unknown": 0, "nonspatial": 0}
    assert not [r.name for r in a if r.global_context and not all(r.is_global)]
    assert_global(a["stages.0.blocks.0.attn.matmul_1"])
    assert_global(a["stages.1.downsample.attn_downsample.matmul_1"])


def test_timm_efficientformer_l1(timm):
    """Pooling mixers stay local up to the last stage (rf 503, stride 32, start -251 at the first
    attention's input); its attention makes everything after it global, with no context flag (the
    former wrong numbers: 18 nodes local + global_context)."""
    a = rfgraph.analyze(_meta_timm(timm, "efficientformer_l1"), (1, 3, 224, 224))
    assert summary(a["stages.3.blocks.4.token_mixer.transpose"], 0) == (503, 503, 32, -251)
    assert a.counts() == {"symbolic": 235, "probed": 0, "global": 29, "unknown": 0, "nonspatial": 0}
    assert not [r.name for r in a if r.global_context and not all(r.is_global)]
    assert_global(a["stages.3.blocks.4.token_mixer.matmul_1"])


def test_yolo11_c2psa():
    """ultralytics' C2PSA (PSA attention over a map, 1x1-conv qkv, ``(q^T k).softmax``, ``v @ attn^T``
    plus a depthwise positional conv of v): global after the block; the probe agrees."""
    block = pytest.importorskip("ultralytics.nn.modules.block")
    model = nn.Sequential(nn.Conv2d(1, 128, 3, padding=1), block.C2PSA(128, 128, n=1))
    a = check(model, (1, 1, 8, 8))
    assert summary(a["0"], 0) == (3, 3, 1, -1)
    assert_global(last(a))
    assert a.counts()["unknown"] == 0
    agrees(a, [last(a).name])


def test_talking_heads_conv_over_the_score_matrix():
    """EfficientFormerV2's talking heads: a 1x1 conv over (B, heads, N, N) scores mixes heads and reads
    score (i, j) alone, so it keeps both token dims as they are (before: unknown, 'reads along a dim
    that holds flattened positions'); the attention after it is global; the probe agrees."""
    class TalkingHeads(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3, padding=1)
            self.th1, self.th2 = nn.Conv2d(2, 2, 1), nn.Conv2d(2, 2, 1)

        def forward(self, x):
            x = self.conv(x)
            b, c, h, w = x.shape
            t = x.reshape(b, 2, 2, h * w).transpose(-2, -1)              # (B, heads, N, d)
            scores = self.th1(t @ t.transpose(-2, -1))
            return (self.th2(scores.softmax(-1)) @ t).transpose(-2, -1).reshape(b, c, h, w)

    a = check(TalkingHeads(), (1, 1, 6, 6))
    assert a["th1"].source == "symbolic" and a["th1"].is_global == (True, True)
    assert_global(last(a))
    agrees(a, [last(a).name])


def test_timm_efficientformerv2_s0(timm):
    a = rfgraph.analyze(_meta_timm(timm, "efficientformerv2_s0"), (1, 3, 224, 224))
    assert a.counts()["unknown"] == 0
    assert not [r.name for r in a if r.global_context and not all(r.is_global)]
    assert_global(a["stages.2.blocks.4.token_mixer.talking_head1"])


@pytest.mark.parametrize("first_kept, hides", [(0, False), (1, True)])
def test_mask_computed_from_constants_on_meta(first_kept, hides):
    """transformers builds an 'attend everywhere' boolean mask as ``arange(n) >= 0``; exported on the
    meta device it has no values, so the rule recomputes it from the graph on the CPU: all True keeps
    the attention global; ``arange(n) >= 1`` hides key 0, and the op is handed over with that reason."""
    class Masked(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3, padding=1)

        def forward(self, x):
            t = self.conv(x).flatten(2).transpose(1, 2)
            keep = torch.arange(t.shape[1], device=t.device)[None, :] >= first_kept
            return F.scaled_dot_product_attention(t, t, t, attn_mask=keep.expand(t.shape[1], -1))

    with torch.device("meta"):
        model = Masked()
    shape = (1, 1, 4, 4)
    traced = export_trace(model, (torch.zeros(shape, device="meta"),))
    r = last(rfgraph.analyze(model, shape, traced=traced, fallback="unknown"))
    if hides:
        assert r.source == "unknown" and "hides some tokens" in r.reason
    else:
        assert_global(r)
