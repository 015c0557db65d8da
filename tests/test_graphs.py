"""Hand-derived graphs: stacks, branches, merges, upsampling, 1-D / 3-D models, context paths, attention.

Notation as in tests/rules/test_windowed.py: a window ``[L(u), H(u)]`` is what output ``u``
reads in the input; ``r``, ``j``, ``start`` the classic recursion
``r_out = r_in + d (k - 1) j_in``, ``j_out = j_in s``, ``start_out = start_in - p j_in``.
"""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F
import torchvision
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from rfcheck import Lambda, assert_windows_match, check, last, summary
from torch import nn

import rfgraph
from rfgraph.errors import NodeNotFoundError

HALF = Fraction(1, 2)
SEED_KERNELS = (9, 3, 3, 3, 9, 3, 3, 7, 3)


# ---------------------------------------------------------------------------
# the seed's stack and the classic recursion
# ---------------------------------------------------------------------------


def test_seed_stack_no_padding():
    """Kernels 9,3,3,3,9,3,3,7,3, stride 1, no padding: rf = 1 + 8+2+2+2+8+2+2+6+2 = 35, start 0,
    center 17; on 40 x 40 the output is 40 - 34 = 6."""
    net = nn.Sequential(*[nn.Conv2d(1, 1, k) for k in SEED_KERNELS])
    r = last(check(net, (1, 1, 40, 40)))
    assert summary(r, 0) == summary(r, 1) == (35, 35, 1, 0)
    assert r.center == (17, 17)
    assert r.shape == (1, 1, 6, 6)


def test_seed_stack_padding_one():
    """Same stack with padding=1 everywhere: rf still 35 (padding does not change the size), start -9
    (each of the 9 layers shifts it by -1 at stride 1), center -9 + 17 = 8."""
    net = nn.Sequential(*[nn.Conv2d(1, 1, k, padding=1) for k in SEED_KERNELS])
    r = last(check(net, (1, 1, 40, 40)))
    assert summary(r, 0) == (35, 35, 1, -9)
    assert r.center == (8, 8)


@st.composite
def layer_stacks(draw):
    layers = []
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["conv", "max", "avg"]))
        k = draw(st.integers(1, 5))
        s = draw(st.integers(1, 3))
        if kind == "conv":
            d = draw(st.integers(1, 3))
            p = draw(st.integers(0, 3))
        else:
            d = 1 if kind == "avg" else draw(st.integers(1, 2))
            p = draw(st.integers(0, k // 2))  # torch: pad at most half the kernel
        layers.append((kind, k, s, p, d))
    return layers


def _build(layers):
    mods = []
    for kind, k, s, p, d in layers:
        if kind == "conv":
            mods.append(nn.Conv1d(1, 1, k, stride=s, padding=p, dilation=d))
        elif kind == "max":
            mods.append(nn.MaxPool1d(k, s, p, dilation=d))
        else:
            mods.append(nn.AvgPool1d(k, s, p))
    return nn.Sequential(*mods)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layer_stacks())
def test_classic_recursion_on_random_stacks(layers):
    """r_out = r_in + d (k - 1) j_in, j_out = j_in s, start_out = start_in - p j_in, and the output
    length floor((n + 2p - d (k - 1) - 1) / s) + 1, on random conv / max / avg pool stacks."""
    n = 96
    r, j, start, length = 1, 1, 0, n
    for _, k, s, p, d in layers:
        r, j, start = r + d * (k - 1) * j, j * s, start - p * j
        length = (length + 2 * p - d * (k - 1) - 1) // s + 1
        assume(length >= 1)
    out = last(check(_build(layers), (1, 1, n)))
    assert summary(out) == (r, r, j, start)
    assert out.shape == (1, 1, length)


# ---------------------------------------------------------------------------
# merges
# ---------------------------------------------------------------------------


class TwoBranches(nn.Module):
    def __init__(self, a: nn.Module, b: nn.Module, cat: bool = False):
        super().__init__()
        self.a, self.b, self.cat = a, b, cat

    def forward(self, x):
        if self.cat:
            return torch.cat([self.a(x), self.b(x)], 1)
        return self.a(x) + self.b(x)


def test_add_of_aligned_branches():
    """a: conv k=3 p=1 [u-1, u+1]; b: conv k=5 p=2 [u-2, u+2]; both centered at u.
    add: rf 5, rf_min 5, rf_path_min 3, aligned, shift 0."""
    m = TwoBranches(nn.Conv2d(1, 1, 3, padding=1), nn.Conv2d(1, 1, 5, padding=2))
    r = check(m, (1, 1, 8, 8))["add"]
    assert summary(r, 0) == (5, 5, 1, -2)
    assert r.rf_path_min == (3, 3)
    assert r.aligned and r.max_center_shift == 0


def test_add_with_even_kernel_is_misaligned():
    """a: conv k=3 p=1 [u-1, u+1] (center u); b: conv k=4 padding="same" (1 left, 2 right) [u-1, u+2]
    (center u + 1/2).  add: [u-1, u+2]: rf 4, rf_path_min 3, not aligned, shift 1/2."""
    m = TwoBranches(nn.Conv1d(1, 1, 3, padding=1), nn.Conv1d(1, 1, 4, padding="same"))
    r = check(m, (1, 1, 10))["add"]
    assert summary(r) == (4, 4, 1, -1)
    assert r.rf_path_min == (3,)
    assert not r.aligned
    assert r.max_center_shift == HALF


def test_add_with_asymmetric_pad_is_misaligned():
    """a: identity [u, u] (center u); b: F.pad(x, (2, 0)) then conv k=3 p=0: [u-2, u] (center u-1).
    add: [u-2, u]: rf 3, rf_min 3, rf_path_min 1, start -2, not aligned, shift 1."""
    conv = nn.Conv1d(1, 1, 3)
    m = TwoBranches(nn.Identity(), nn.Sequential(Lambda(lambda x: F.pad(x, (2, 0))), conv))
    a = check(m, (1, 1, 10))
    r = a["add"]
    assert summary(r) == (3, 3, 1, -2)
    assert r.rf_path_min == (1,)
    assert not r.aligned and r.max_center_shift == 1
    assert [x.name for x in a.misaligned()] == ["add"]


def test_channel_concat_inception_style():
    """cat of 1x1, 3x3 p=1, 5x5 p=2 convs and a 3x3 s=1 p=1 max pool: all centered.
    rf 5 (the widest), rf_path_min 1 (the 1x1), aligned, channels 2 + 3 + 4 + 1 = 10."""

    class Inception(nn.Module):
        def __init__(self):
            super().__init__()
            self.b1 = nn.Conv2d(1, 2, 1)
            self.b3 = nn.Conv2d(1, 3, 3, padding=1)
            self.b5 = nn.Conv2d(1, 4, 5, padding=2)
            self.pool = nn.MaxPool2d(3, 1, 1)

        def forward(self, x):
            return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.pool(x)], 1)

    r = last(check(Inception(), (1, 1, 9, 9)))
    assert summary(r, 0) == (5, 5, 1, -2)
    assert r.rf_path_min == (1, 1)
    assert r.aligned
    assert r.shape == (1, 10, 9, 9)


def test_residual_with_strided_shortcut():
    """ResNet-v1.5 downsampling block on one axis: main path conv k=3 s=2 p=1 then conv k=3 p=1;
    shortcut conv k=1 s=2.  main: r = 3 + 2*2 = 7, start -1 - 2 = -3, stride 2; shortcut r 1, start 0.
    Both centered at 2u: add rf 7, rf_path_min 1, aligned."""
    main = nn.Sequential(nn.Conv1d(1, 1, 3, 2, 1), nn.ReLU(), nn.Conv1d(1, 1, 3, 1, 1))
    r = check(TwoBranches(main, nn.Conv1d(1, 1, 1, 2)), (1, 1, 12))["add"]
    assert summary(r) == (7, 7, 2, -3)
    assert r.rf_path_min == (1,)
    assert r.aligned


def test_dilated_stack():
    """Convs k=3 with dilation 1, 2, 4 and padding = dilation: r = 1 + 2 + 4 + 8 = 15, start -7, centered."""
    net = nn.Sequential(*[nn.Conv2d(1, 1, 3, padding=d, dilation=d) for d in (1, 2, 4)])
    r = last(check(net, (1, 1, 16, 16)))
    assert summary(r, 0) == (15, 15, 1, -7)
    assert r.center == (0, 0)


# ---------------------------------------------------------------------------
# transposed conv and upsampling in graphs
# ---------------------------------------------------------------------------


def test_transposed_conv_then_conv_rf_varies_by_parity():
    """ConvTranspose1d k=3 s=2 (u=2m reads [m-1, m], u=2m+1 reads [m, m]) then conv k=3 p=1.

    The conv reads transposed outputs u-1..u+1:
    u=2m:   lo = lo_t(2m-1) = m-1, hi = hi_t(2m+1) = m      -> width 2
    u=2m+1: lo = lo_t(2m)   = m-1, hi = hi_t(2m+2) = m+1    -> width 3
    rf 3, rf_min 2, stride 1/2, start -1.
    """
    net = nn.Sequential(nn.ConvTranspose1d(1, 1, 3, stride=2), nn.Conv1d(1, 1, 3, padding=1))
    r = last(check(net, (1, 1, 6)))
    assert summary(r) == (3, 2, HALF, -1)
    assert_windows_match(net, (1, 1, 6), r, 0)


def test_encoder_decoder_transposed_conv():
    """conv k=3 s=2 p=1 ([2v-1, 2v+1]) then ConvTranspose1d k=3 s=2:
    u=2m reads v in [m-1, m] -> [2m-3, 2m+1] (width 5); u=2m+1 reads v = m -> [2m-1, 2m+1] (width 3).
    rf 5, rf_min 3, stride 1 (period 2, advance 2), start -3."""
    net = nn.Sequential(nn.Conv1d(1, 1, 3, 2, 1), nn.ConvTranspose1d(1, 1, 3, stride=2))
    r = last(check(net, (1, 1, 8)))
    assert summary(r) == (5, 3, 1, -3)
    assert_windows_match(net, (1, 1, 8), r, 0)


class UpSkip(nn.Module):
    """x + up(conv_s2(x)): the FPN / U-Net pattern."""

    def __init__(self, up):
        super().__init__()
        self.down = nn.Conv1d(1, 1, 3, 2, 1)
        self.up = up

    def forward(self, x):
        return x + self.up(self.down(x))


def test_nearest_x2_skip():
    """down [2v-1, 2v+1]; nearest x2 v = floor(u/2): u=2m -> [2m-1, 2m+1] (center u), u=2m+1 -> same
    (center u - 1).  Add the identity [u, u]: u=2m [2m-1, 2m+1], u=2m+1 [2m-1, 2m+1] (it contains u).
    rf 3, rf_min 3, stride 1, start -1, rf_path_min 1, not aligned, shift 1 (odd u)."""
    a = check(UpSkip(nn.Upsample(scale_factor=2)), (1, 1, 8))
    r = a["add"]
    assert summary(r) == (3, 3, 1, -1)
    assert r.rf_path_min == (1,)
    assert not r.aligned and r.max_center_shift == 1
    # the upsampled branch alone: stride 2 * 1/2 = 1, rf 3
    assert summary(a["up"]) == (3, 3, 1, -1)


def test_bilinear_x2_skip():
    """down [2v-1, 2v+1]; linear x2 (align_corners=False): u=2m reads v in [m-1, m], u=2m+1 v in [m, m+1].
    up: u=2m -> [2m-3, 2m+1] (center 2m-1), u=2m+1 -> [2m-1, 2m+3] (center 2m+1): rf 5, stride 1, start -3.
    Add identity: same hull; shift |2m-1 - 2m| = 1 at even u, 0 at odd u: not aligned, shift 1."""
    up = nn.Upsample(scale_factor=2, mode="linear")
    a = check(UpSkip(up), (1, 1, 8))
    assert summary(a["up"]) == (5, 5, 1, -3)
    r = a["add"]
    assert summary(r) == (5, 5, 1, -3)
    assert r.rf_path_min == (1,)
    assert not r.aligned and r.max_center_shift == 1


def test_align_corners_skip_merges():
    """Regression: n=7, down to 4 ([2v-1, 2v+1]), linear back to 7 with align_corners=True (src = u/2):
    u=2m reads v=m -> [2m-1, 2m+1]; u=2m+1 reads v in [m, m+1] -> [2m-1, 2m+3].
    Add the identity: rf 5, rf_min 3, stride 1, start -1 (the paths' slopes 1 and 2 * 1/2 agree)."""
    up = Lambda(lambda y: F.interpolate(y, size=7, mode="linear", align_corners=True))
    r = check(UpSkip(up), (1, 1, 7))["add"]
    assert r.source == "symbolic"
    assert summary(r) == (5, 3, 1, -1)


def test_scale_factor_downsample_merges_with_strided_conv():
    """Regression: n=7; F.interpolate(scale_factor=0.5, linear) reads [2u, 2u+1] (stride 2), as does
    conv k=2 s=2: the add is rf 2, stride 2, start 0, aligned (both centered at 2u + 1/2)."""
    m = TwoBranches(Lambda(lambda x: F.interpolate(x, scale_factor=0.5, mode="linear")), nn.Conv1d(1, 1, 2, 2))
    r = check(m, (1, 1, 7))["add"]
    assert r.source == "symbolic"
    assert summary(r) == (2, 2, 2, 0)
    assert r.aligned


# ---------------------------------------------------------------------------
# 1-D and 3-D models
# ---------------------------------------------------------------------------


class CausalTCN(nn.Module):
    """WaveNet-style causal stack: F.pad(x, (2d, 0)) then conv k=3 dilation d, d = 1, 2, 4."""

    def __init__(self):
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv1d(2, 2, 3, dilation=d) for d in (1, 2, 4)])

    def forward(self, x):
        for conv in self.convs:
            x = torch.relu(conv(F.pad(x, (2 * conv.dilation[0], 0)))) + x
        return x


def test_causal_tcn_1d():
    """Each layer reads [u - 2d, u]: hull after d = 1, 2, 4 is [u - 14, u]: rf 15, start -14, center -7,
    stride 1; the residual paths keep the identity: rf_path_min 1.  Length kept (20)."""
    a = check(CausalTCN(), (1, 2, 20))
    r = last(a)
    assert summary(r) == (15, 15, 1, -14)
    assert r.center == (-7,)
    assert r.rf_path_min == (1,)
    assert r.shape == (1, 2, 20)
    # causal layers shift centers: layer i's conv path is centered at u - (1 + 2 + ... ), its shortcut less
    # layer 1: conv [u-2, u] (center u-1) + identity (center u): shift 1
    # layer 2: conv [u-6, u] (center u-3) + previous [u-2, u] (center u-1): shift 2
    # layer 3: conv [u-14, u] (center u-7) + previous [u-6, u] (center u-3): shift 4
    assert [a[n].max_center_shift for n in ("add", "add_1", "add_2")] == [1, 2, 4]
    assert not any(a[n].aligned for n in ("add", "add_1", "add_2"))


def test_video_3d_stem():
    """Conv3d k=(3,7,7) s=(1,2,2) p=(1,3,3), MaxPool3d k=(1,3,3) s=(1,2,2) p=(0,1,1), Conv3d k=3 p=1.

    D: r 3 -> 3 -> 3 + 2 = 5; stride 1; start -1 -> -1 -> -2.
    H, W: r 7 (j 2, start -3) -> 7 + 2*2 = 11 (j 4, start -3 - 2 = -5) -> 11 + 2*4 = 19 (start -5 - 4 = -9).
    Shapes: 4 x 16 x 16 -> 4 x 8 x 8 -> 4 x 4 x 4 -> 4 x 4 x 4.
    """
    net = nn.Sequential(
        nn.Conv3d(1, 2, (3, 7, 7), (1, 2, 2), (1, 3, 3)),
        nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
        nn.Conv3d(2, 2, 3, padding=1),
    )
    r = last(check(net, (1, 1, 4, 16, 16)))
    assert summary(r, 0) == (5, 5, 1, -2)
    assert summary(r, 1) == summary(r, 2) == (19, 19, 4, -9)
    assert r.shape == (1, 2, 4, 4, 4)


# ---------------------------------------------------------------------------
# context paths and attention
# ---------------------------------------------------------------------------


class SEBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.se = torchvision.ops.SqueezeExcitation(4, 2)

    def forward(self, x):
        return self.se(self.conv(x))


def test_squeeze_excitation_is_context():
    """conv k=3 p=1 then torchvision SqueezeExcitation: the pooled branch is global (pool to 1), the
    product keeps the local rf 3, start -1 and sets global_context."""
    a = check(SEBlock(), (1, 1, 8, 8))
    assert a["se.avgpool"].is_global == (True, True)
    r = a["se.mul"]
    assert summary(r, 0) == (3, 3, 1, -1)
    assert r.global_context
    assert not any(r.is_global)
    assert not a["conv"].global_context


class TinyViT(nn.Module):
    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(3, 8, 4, stride=4)
        self.cls = nn.Parameter(torch.zeros(1, 1, 8))
        self.pos = nn.Parameter(torch.zeros(1, 17, 8))
        self.norm = nn.LayerNorm(8)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)
        self.head = nn.Linear(8, 10)

    def forward(self, x):
        t = self.patch(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(t.shape[0], -1, -1), t], dim=1) + self.pos
        y, _ = self.attn(self.norm(t), self.norm(t), self.norm(t), need_weights=False)
        t = t + y
        return self.head(t[:, 0])


def test_vit_style_model():
    """Patchify conv k=4 s=4: rf 4, stride 4, start 0.  Flattening H, W into 16 tokens and prepending a
    class token keeps that field (the token dim holds every position); LayerNorm over the 8 features is
    pointwise.  Attention mixes all tokens: global on both axes from there on, and the class-token head too."""
    a = check(TinyViT(), (2, 3, 16, 16))
    assert summary(a["patch"], 0) == (4, 4, 4, 0)
    assert a["transpose"].dims == (1, 1)
    assert a["norm"].rf == (4, 4) and not a["norm"].global_context
    assert a["head"].is_global == (True, True)
    assert a["head"].shape == (2, 10)
    add_1 = a["add_1"]
    assert add_1.is_global == (True, True)
    assert not add_1.global_context


# ---------------------------------------------------------------------------
# meta device, names
# ---------------------------------------------------------------------------


def _comparable(analysis):
    return [(r.name, r.shape, r.rf, r.rf_min, r.stride, r.start, r.is_global, r.aligned, r.global_context,
             r.source, tuple(r.lo), tuple(r.hi)) for r in analysis]


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v3_small"])
def test_meta_device_model_gives_same_results(arch):
    """A model built under ``with torch.device("meta")`` holds no data; the analysis needs none."""
    with torch.device("meta"):
        meta_model = torchvision.models.get_model(arch, weights=None)
    cpu_model = torchvision.models.get_model(arch, weights=None)
    shape = (1, 3, 96, 96)
    meta = rfgraph.analyze(meta_model, shape)
    cpu = rfgraph.analyze(cpu_model, shape)
    assert _comparable(meta) == _comparable(cpu)
    assert next(meta_model.parameters()).device.type == "meta"


@pytest.fixture(scope="module")
def resnet18_analysis():
    with torch.device("meta"):
        model = torchvision.models.resnet18(weights=None)
    return rfgraph.analyze(model, (1, 3, 224, 224))


def test_module_name_resolution(resnet18_analysis):
    """analysis["layer4"] resolves to the last node inside layer4, as create_feature_extractor does:
    layer4.1's final relu, "layer4.1.relu_1" (torchvision's name for the second call of that relu).
    Published: ResNet-18 layer4 rf 435, stride 32, effective padding 217 (DESIGN.md §6)."""
    a = resnet18_analysis
    assert a.resolve("layer4") == "layer4.1.relu_1"
    assert a["layer4"] is a["layer4.1.relu_1"] or a["layer4"] == a["layer4.1.relu_1"]
    assert a["layer4"].rf == (435, 435) and a["layer4"].start == (-217, -217)
    assert a.resolve("layer1.0") == "layer1.0.relu_1"
    assert a.resolve("layer1.0.conv1") == "layer1.0.conv1"
    assert "layer4" in a and "layer9" not in a


def test_fx_name_aliases(resnet18_analysis):
    """fx node names resolve to the torchvision-style names: modules get the path with dots replaced
    ("layer4_1_relu_1"), functions a global counter ("add" is layer1.0's residual add, "add_1" layer1.1's)."""
    a = resnet18_analysis
    assert a.resolve("layer4_1_relu_1") == "layer4.1.relu_1"
    assert a.resolve("add") == "layer1.0.add"
    assert a["add_1"].name == "layer1.1.add"
    assert a["add_1"].fx_name == "add_1"


def test_unknown_name_suggests(resnet18_analysis):
    with pytest.raises(NodeNotFoundError, match="layer4") as info:
        resnet18_analysis["layer5"]
    assert "layer4" in info.value.suggestions
    assert isinstance(info.value, KeyError)


# ---------------------------------------------------------------------------
# attention-like gates, rearrangements
# ---------------------------------------------------------------------------


def test_cbam_spatial_gate():
    """CBAM spatial gate: x * sigmoid(conv7x7(cat(mean over C, max over C))).  Channel reductions leave the
    positions alone; the 7x7 conv p=3 reads [u-3, u+3]; merged with x (rf 1, centered): rf 7, start -3,
    aligned, no global context."""

    class Gate(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 1, 7, padding=3)

        def forward(self, x):
            a = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)
            return x * torch.sigmoid(self.conv(a))

    r = last(check(Gate(), (1, 4, 9, 9)))
    assert summary(r, 0) == (7, 7, 1, -3)
    assert r.aligned and not r.global_context


def test_coordinate_attention_row_context():
    """x * sigmoid(mean over W): each output depends on its whole row, through a W-constant factor:
    a context path: local rf 1 and global_context."""
    r = last(check(Lambda(lambda x: x * x.mean(3, keepdim=True).sigmoid()), (1, 4, 6, 6)))
    assert summary(r, 0) == summary(r, 1) == (1, 1, 1, 0)
    assert r.global_context


def test_space_to_depth_by_slicing():
    """cat(x[::2, ::2], x[1::2, ::2], x[::2, 1::2], x[1::2, 1::2]) over channels: along H the pieces read
    2u or 2u + 1: union [2u, 2u + 1]: rf 2, stride 2, start 0; centers 2u and 2u + 1: shift 1, not aligned."""
    f = lambda x: torch.cat([x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]], 1)  # noqa: E731
    r = last(check(Lambda(f), (1, 1, 8, 8)))
    assert summary(r, 0) == summary(r, 1) == (2, 2, 2, 0)
    assert not r.aligned and r.max_center_shift == 1
    assert r.shape == (1, 4, 4, 4)


def test_transpose_swaps_axes():
    """x.transpose(2, 3) then conv k=(3, 1) p=(1, 0): the kernel's first dim runs along the input's W:
    W rf 3, start -1; H rf 1; W is now carried by tensor dim 2 and H by dim 3."""
    conv = nn.Conv2d(1, 1, (3, 1), padding=(1, 0))
    r = last(check(nn.Sequential(Lambda(lambda x: x.transpose(2, 3)), conv), (1, 1, 6, 7)))
    assert r.dims == (3, 2)
    assert summary(r, 0) == (1, 1, 1, 0)
    assert summary(r, 1) == (3, 3, 1, -1)
    assert r.shape == (1, 1, 7, 6)


def test_token_round_trip_restores_the_grid():
    """(N, C, H, W) -> (N, C, H*W) -> tokens (N, H*W, C) -> (N, H, W, C) -> (N, C, H, W), then conv k=3 p=1:
    the reshape undoes the flatten exactly, so the conv sees H and W again: rf 3, start -1."""

    def tokens(x):
        n, c, h, w = x.shape
        return x.view(n, c, h * w).permute(0, 2, 1).reshape(n, h, w, c).permute(0, 3, 1, 2)

    r = last(check(nn.Sequential(Lambda(tokens), nn.Conv2d(3, 1, 3, padding=1)), (1, 3, 4, 5)))
    assert r.source == "symbolic"
    assert r.dims == (2, 3)
    assert summary(r, 0) == summary(r, 1) == (3, 3, 1, -1)


def test_unit_box():
    """conv k=3 s=2 p=1: unit (2, 3) reads rows [2*2 - 1, 2*2 + 1] = [3, 5] and cols [5, 7]."""
    r = last(check(nn.Conv2d(1, 1, 3, 2, 1), (1, 1, 9, 9)))
    assert r.box((2, 3)) == ((3, 5), (5, 7))
    assert r.padding == (1, 1)


@st.composite
def branches(draw):
    """A branch: 1-2 "same"-padded convs (random k, d), optionally shifted by an asymmetric pad / crop."""
    layers = [(draw(st.integers(1, 5)), draw(st.integers(1, 3))) for _ in range(draw(st.integers(1, 2)))]
    shift = draw(st.integers(-2, 2))
    return layers, shift


class Branch(nn.Module):
    def __init__(self, spec):
        super().__init__()
        layers, self.shift = spec
        self.convs = nn.Sequential(*[nn.Conv1d(1, 1, k, padding="same", dilation=d) for k, d in layers])

    def forward(self, x):
        x = self.convs(x)
        if self.shift:  # move the content by `shift` positions, keeping the length
            x = F.pad(x, (self.shift, -self.shift))
        return x


class Merge(nn.Module):
    def __init__(self, a, b, s):
        super().__init__()
        self.a, self.b = Branch(a), Branch(b)
        self.tail = nn.Conv1d(1, 1, 3, stride=s, padding=1)

    def forward(self, x):
        return self.tail(self.a(x) + self.b(x))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(branches(), branches(), st.integers(1, 2))
def test_random_two_branch_merges_match_backprop(a, b, s):
    """Random two-branch merges (even kernels, dilation, shifts: centers differ) followed by a conv k=3
    of stride s: every unit's window (first and last input read) agrees with back-propagation, away from
    the borders (an intermediate shift by F.pad moves that tensor's own border inside the input);
    3 <= rf_path_min <= rf (the tail conv alone reads 3), and "aligned" means "no center shift"."""
    model = Merge(a, b, s)
    reach = max(sum(d * (k - 1) for k, d in spec[0]) + abs(spec[1]) for spec in (a, b)) + 2 * s + 1
    n = 4 * reach + 4
    analysis = check(model, (1, 1, n))
    r = last(analysis)
    assert r.source == "symbolic"
    assert r.stride == (s,)
    assert 3 <= r.rf_path_min[0] <= r.rf[0]
    add = analysis["add"]
    assert add.aligned == (add.max_center_shift == 0)
    assert_windows_match(model, (1, 1, n), r, 0, margin=reach)


@st.composite
def resampling_chains(draw):
    ops = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["conv", "avg", "convT", "nearest", "linear"]))
        if kind == "conv":
            ops.append(nn.Conv1d(1, 1, draw(st.integers(1, 4)), draw(st.integers(1, 2)), draw(st.integers(0, 2)),
                                 draw(st.integers(1, 2))))
        elif kind == "avg":
            k = draw(st.integers(1, 3))
            ops.append(nn.AvgPool1d(k, draw(st.integers(1, 2)), draw(st.integers(0, k // 2))))
        elif kind == "convT":
            s = draw(st.integers(1, 2))
            # k >= s: every output reads some input (see tests/rules/test_windowed.py::test_gap_outputs_read_nothing)
            ops.append(nn.ConvTranspose1d(1, 1, draw(st.integers(s, 4)), s, draw(st.integers(0, 1)),
                                          draw(st.integers(0, s - 1))))
        else:
            ops.append(nn.Upsample(scale_factor=2, mode=kind))
    return ops


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(resampling_chains())
def test_random_resampling_chains_match_backprop(ops):
    """Random chains of strided / dilated convs, average pools, transposed convs and x2 upsampling
    (periodic maps composed with periodic maps): every unit whose window lies inside the input reads
    exactly that window (first and last pixel), and the stride is the product of the layers' strides."""
    model = nn.Sequential(*ops)
    n = 24
    try:
        with torch.no_grad():
            length = model(torch.zeros(1, 1, n)).shape[-1]
    except RuntimeError:
        assume(False)
    assume(length <= 80)
    r = last(check(model, (1, 1, n)))
    stride = Fraction(1)
    for m in ops:
        if isinstance(m, nn.ConvTranspose1d) or isinstance(m, nn.Upsample):
            stride /= m.stride[0] if isinstance(m, nn.ConvTranspose1d) else 2
        else:
            stride *= m.stride if isinstance(m.stride, int) else m.stride[0]
    assert r.stride == (stride,)
    # a padded transposed conv crops its output, so an intermediate border can cut a window that lies
    # inside the input: keep away from the borders by every layer's padding (+1 for clamped upsampling)
    margin, jump = Fraction(0), Fraction(1)
    for m in ops:
        if isinstance(m, nn.Upsample):
            margin, jump = margin + jump, jump / 2
        elif isinstance(m, nn.ConvTranspose1d):
            margin, jump = margin + (m.padding[0] + 1) * jump, jump / m.stride[0]
        else:
            pad, s = (m.padding, m.stride) if isinstance(m.padding, int) else (m.padding[0], m.stride[0])
            margin, jump = margin + pad * jump, jump * s
    margin = math.ceil(margin)
    if any(r.lo[0](u) >= margin and r.hi[0](u) < n - margin for u in range(length)):
        assert_windows_match(model, (1, 1, n), r, 0, interior_only=True, margin=margin)


class _ConcatThenSplit(nn.Module):
    """cat([conv1x1 (RF 1), conv5x5 p2 (RF 5)]) -> BatchNorm -> ReLU -> split in halves.
    BN (eval) and ReLU act per channel, so each half keeps its operand's field:
    first half RF 1 / start 0, second half RF 5 / start -2.  After a 1x1 conv the
    channels mix: RF 5, and a slice of that is the union too."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 2, 1)
        self.b = nn.Conv2d(1, 2, 5, padding=2)
        self.bn = nn.BatchNorm2d(4)
        self.mix = nn.Conv2d(4, 4, 1)

    def forward(self, x):
        y = torch.relu(self.bn(torch.cat([self.a(x), self.b(x)], 1)))
        first, second = torch.split(y, 2, dim=1)
        mixed = self.mix(y)[:, :2]
        return first, second, mixed


def test_channel_slices_of_a_concat_keep_their_operand_fields():
    analysis = rfgraph.analyze(_ConcatThenSplit(), (1, 1, 16, 16))
    assert analysis["getitem"].rf == (1, 1) and analysis["getitem"].start == (0, 0)
    assert analysis["getitem_1"].rf == (5, 5) and analysis["getitem_1"].start == (-2, -2)
    assert analysis["getitem_2"].rf == (5, 5)
