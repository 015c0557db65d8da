"""The numeric probe (rfgraph.probe): hardened gradient measurement, validation, local fallback.

Expected values are published numbers (Distill 2019, DESIGN.md §6), hand-derived
small cases (derivation in each docstring), or the symbolic pass's result (the
probe is an independent measurement: agreement is the test).
"""

from __future__ import annotations

import copy
from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import rfgraph
from rfgraph.probing import ProbeResult, fallback, probe, sanitized_copy, validate_analysis


def agree(result: ProbeResult, record) -> None:
    """Probe == symbolic exactly (rf, stride, start), measured unclipped."""
    assert result.exact, result
    assert result.rf == record.rf, (result, record.rf)
    assert result.stride == record.stride, (result, record.stride)
    assert result.start == record.start, (result, record.start)


def probe_agrees(model, node, shape, **kw) -> ProbeResult:
    analysis = rfgraph.analyze(model, shape)
    result = probe(model, node, analysis=analysis, **kw)
    agree(result, analysis[node])
    return result


# ---------------------------------------------------------------------------
# small hand-derived cases
# ---------------------------------------------------------------------------


def test_conv_chain_hand_derived():
    """conv 3, conv 3 stride 2, conv 3 (no padding): RF 1 + 2 + 2 + 2*2 = 9, stride 2, start 0."""
    net = nn.Sequential(nn.Conv1d(1, 2, 3), nn.Conv1d(2, 2, 3, stride=2), nn.Conv1d(2, 1, 3))
    r = probe(net, "2", (1, 1, 40))
    assert r.rf == (9,) and r.stride == (Fraction(2),) and r.start == (Fraction(0),) and r.exact
    assert len(r.axes[0].units) >= 2  # two neighbours: the stride is measured, not assumed


def test_without_estimate_the_input_grows_until_exact():
    """Same chain, no symbolic estimate, started on a 6-long input (smaller than the RF 9): the probe
    grows the input until the field no longer touches a border; same values."""
    net = nn.Sequential(nn.Conv1d(1, 2, 3), nn.Conv1d(2, 2, 3, stride=2), nn.Conv1d(2, 1, 3))
    r = probe(net, "2", (1, 1, 8), use_estimate=False)
    assert r.rf == (9,) and r.stride == (Fraction(2),) and r.start == (Fraction(0),) and r.exact
    assert r.axes[0].input_shape[2] > 8


def test_user_model_untouched_and_meta_models_work():
    """The probe works on a sanitized copy: the user's weights, module types (ReLU6, MaxPool) and
    training flags are unchanged; the same model built on the meta device gives the same result."""
    def build():
        return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU6(), nn.MaxPool2d(2),
                             nn.Dropout(0.5), nn.Conv2d(4, 4, 3))

    net = build().train()
    before = copy.deepcopy(net.state_dict())
    r = probe_agrees(net, "5", (1, 3, 32, 32))
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert isinstance(net[2], nn.ReLU6) and isinstance(net[3], nn.MaxPool2d) and net.training
    assert all(p.requires_grad for p in net.parameters())
    with torch.device("meta"):
        meta = build()
    m = probe(meta, "5", (1, 3, 32, 32))
    assert (m.rf, m.stride, m.start) == (r.rf, r.stride, r.start)
    assert next(meta.parameters()).is_meta


def test_sanitized_copy_is_positive_and_linearised():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Hardsigmoid(), nn.MaxPool2d(2), nn.LayerNorm(4))
    c = sanitized_copy(net)
    assert all((p > 0).all() for p in c.parameters())
    assert isinstance(c[1], nn.Identity) and not isinstance(c[2], nn.MaxPool2d)
    assert not c.training and next(c.parameters()).dtype == torch.float64


def test_deep_chain_does_not_underflow():
    """80 convs k=3 (RF 1 + 80 * 2 = 161) with the default init: the gradient at the RF's edge is a
    product of 80 factors < 1; renormalised at every node it stays non-zero, in float32 too."""
    net = nn.Sequential(*[nn.Conv1d(4, 4, 3) for _ in range(80)])
    for dtype in (torch.float32, torch.float64):
        r = probe(net, "79", (1, 4, 200), dtype=dtype)
        assert r.rf == (161,) and r.start == (Fraction(0),) and r.exact


class LayerScaleBlock(nn.Module):
    """ConvNeXt-like: x + gamma * pw(LN(dw(x))), gamma initialised to 1e-6, LayerNorm over channels."""

    def __init__(self, c=8):
        super().__init__()
        self.dw = nn.Conv2d(c, c, 7, padding=3, groups=c)
        self.norm = nn.LayerNorm(c)
        self.pw = nn.Linear(c, c)
        self.gamma = nn.Parameter(torch.full((c, 1, 1), 1e-6))

    def forward(self, x):
        y = self.dw(x).permute(0, 2, 3, 1)
        y = self.pw(self.norm(y)).permute(0, 3, 1, 2)
        return x + self.gamma * y


def test_layer_norm_and_tiny_layer_scale():
    """Six such blocks: RF 1 + 6 * 6 = 37, start -18.  Through LayerNorm (whose backward removes the
    channel mean: cancellation) and 1e-6 multipliers; probe == symbolic."""
    net = nn.Sequential(*[LayerScaleBlock() for _ in range(6)])
    r = probe_agrees(net, "5", (1, 8, 48, 48))
    assert r.rf == (37, 37) and r.start == (Fraction(-18), Fraction(-18))


class Concat(nn.Module):
    """Channel 0.. from a 1x1 conv (RF 1), the rest from five 3x3 convs (RF 11): the node's RF is the
    union over channels, 11 (a probe seeding channel 0 only would say 1)."""

    def __init__(self):
        super().__init__()
        self.early = nn.Conv2d(1, 1, 1)
        self.late = nn.Sequential(*[nn.Conv2d(1, 1, 3, padding=1) for _ in range(5)])

    def forward(self, x):
        return torch.cat([self.early(x), self.late(x)], 1)


def test_channel_concat_seeds_every_channel():
    r = probe_agrees(Concat(), "cat", (1, 1, 32, 32))
    assert r.rf == (11, 11) and r.start == (Fraction(-5), Fraction(-5))


class SE(nn.Module):
    def __init__(self, c=4):
        super().__init__()
        self.conv1 = nn.Conv2d(1, c, 3, padding=1)
        self.fc1 = nn.Conv2d(c, 2, 1)
        self.fc2 = nn.Conv2d(2, c, 1)
        self.conv2 = nn.Conv2d(c, 1, 3, padding=1)

    def forward(self, x):
        y = self.conv1(x)
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(y, 1)))))
        return self.conv2(y * s)


def test_squeeze_excitation_context_is_cut():
    """conv 3 -> SE scale -> conv 3: the local RF is 5 (start -2); the SE path, a (N, C, 1, 1) tensor
    broadcast over H, W, is a context path (flagged global_context by the symbolic pass)."""
    a = rfgraph.analyze(SE(), (1, 1, 32, 32))
    assert a["conv2"].global_context
    r = probe(SE(), "conv2", analysis=a)
    agree(r, a["conv2"])
    assert r.rf == (5, 5)
    assert "context" in r.axes[0].note


def test_group_norm_statistics_are_context():
    """conv 3 -> GroupNorm -> conv 3: statistics over H, W are a context path; local RF 5."""
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.GroupNorm(2, 4), nn.Conv2d(4, 1, 3, padding=1))
    r = probe_agrees(net, "2", (1, 1, 32, 32))
    assert r.rf == (5, 5)


def test_saturating_activations_and_max_pool():
    """conv 3 -> hardtanh -> max pool 2 -> relu6 -> hardsigmoid -> conv 3 (no padding): RF 3 + 1 + 2*2 = 8,
    stride 2, start 0; max pool routes to one arg-max and the activations saturate in a naive probe."""
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Hardtanh(), nn.MaxPool2d(2), nn.ReLU6(), nn.Hardsigmoid(),
                        nn.Conv2d(4, 1, 3))
    r = probe_agrees(net, "5", (1, 1, 40, 40))
    assert r.rf == (8, 8) and r.stride == (Fraction(2), Fraction(2)) and r.start == (Fraction(0), Fraction(0))


def test_global_node():
    """adaptive average pool to 1 -> flatten -> linear: the node reads the whole input on both axes."""
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 3))
    r = probe(net, "3", (1, 1, 16, 16))
    assert r.is_global == (True, True) and r.rf == (None, None)


# ---------------------------------------------------------------------------
# periodic maps: transposed conv and upsampling, every phase measured
# ---------------------------------------------------------------------------

PERIODIC = {
    "convT": lambda: nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1), nn.ReLU(),
                                   nn.ConvTranspose2d(4, 4, 3, stride=2, padding=1, output_padding=1),
                                   nn.Conv2d(4, 1, 3, padding=1)),
    "convT_k2": lambda: nn.Sequential(nn.Conv2d(1, 4, 5, stride=4, padding=2), nn.ConvTranspose2d(4, 4, 2, stride=2),
                                      nn.Conv2d(4, 2, 3)),
    "nearest": lambda: nn.Sequential(nn.Conv2d(1, 4, 3, stride=2), nn.Upsample(scale_factor=2), nn.Conv2d(4, 1, 3)),
    "bilinear": lambda: nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1),
                                      nn.Upsample(scale_factor=2, mode="bilinear"), nn.Conv2d(4, 1, 3, padding=1)),
    "bilinear_x3": lambda: nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1),
                                         nn.Upsample(scale_factor=3, mode="bilinear"), nn.Conv2d(4, 1, 3, padding=1)),
}


@pytest.mark.parametrize("name", list(PERIODIC))
def test_periodic_maps_every_phase(name):
    """The probe measures one unit per phase (plus one: the stride) and recovers the symbolic periodic
    maps L(u), H(u) themselves, not only rf / stride / start."""
    net = PERIODIC[name]()
    a = rfgraph.analyze(net, (1, 1, 64, 64))
    node = a.nodes[-2]
    r = probe(net, node, analysis=a)
    agree(r, a[node])
    for axis in r.axes:
        period = a[node].lo[axis.axis].period
        assert len(axis.units) == max(period, 1) + 1
        assert axis.lo_map == a[node].lo[axis.axis] and axis.hi_map == a[node].hi[axis.axis]


def test_nearest_upsample_hand_derived():
    """conv 3 stride 2 -> nearest x2 -> conv 3: lo(u) = 2 * floor(u / 2) ... period 2, stride 1."""
    net = PERIODIC["nearest"]()
    r = probe(net, "2", (1, 1, 64, 64))
    a = r.axes[0]
    # conv 3 after x2 reads upsampled u..u+2 = original floor(u/2)..floor((u+2)/2); then conv stride 2 k 3:
    # lo = 2 floor(u/2), hi = 2 floor((u+2)/2) + 2: phases u even: [u, u+4], u odd: [u-1, u+3]; rf 5.
    assert a.lo_map(10) == 10 and a.hi_map(10) == 14 and a.lo_map(11) == 10 and a.hi_map(11) == 14
    assert a.rf == 5 and a.stride == 1 and a.period == 2


# ---------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------


def test_validate_agrees_and_prints_a_table():
    net = nn.Sequential(nn.Conv2d(1, 2, 3, stride=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(2, 1, 3))
    report = rfgraph.validate(net, (1, 1, 32, 32))
    assert report.ok and not report.disagreements and len(report) >= 2
    text = str(report)
    assert "rf sym" in text and "all probed nodes agree" in text
    assert report.to_dict()["ok"] is True


class Box3(nn.Module):
    """A 3-wide box filter along both axes (padding 1), written with avg_pool so the tracer can be told
    to keep it opaque."""

    def forward(self, x):
        return F.avg_pool2d(x, 3, 1, 1)


def test_validate_reports_a_wrong_symbolic_rule():
    """A user rule claiming Box3 is pointwise is wrong: symbolic RF 1, the probe measures 3.  The
    report lists the disagreement with both values; the probe is not tuned to agree."""
    net = nn.Sequential(Box3(), nn.Conv2d(1, 1, 1))
    rules = rfgraph.DEFAULT_RULES.override(modules={Box3: lambda call: call.args[0]})
    a = rfgraph.analyze(net, (1, 1, 16, 16), rules=rules, leaf_modules=[Box3])
    report = validate_analysis(a, ["1"])
    assert not report.ok
    found = {(d.quantity, d.symbolic, d.numeric) for d in report.disagreements}
    assert ("rf", 1, 3) in found and ("start", Fraction(0), Fraction(-1)) in found
    assert "DISAGREE" in str(report) and "symbolic 1 != numeric 3" in str(report)


# ---------------------------------------------------------------------------
# local fallback
# ---------------------------------------------------------------------------


class BoxFilter(nn.Module):
    """A strided box filter written with unfold: kernel k, stride s, padding p along H and W."""

    def __init__(self, k=3, s=2, p=1):
        super().__init__()
        self.k, self.s, self.p = k, s, p

    def forward(self, x):
        n, c, h, w = x.shape
        cols = F.unfold(x, self.k, padding=self.p, stride=self.s)
        ho = (h + 2 * self.p - self.k) // self.s + 1
        wo = (w + 2 * self.p - self.k) // self.s + 1
        return cols.view(n, c, self.k * self.k, ho * wo).mean(2).view(n, c, ho, wo)


def box_net():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), BoxFilter(), nn.Conv2d(8, 8, 3, padding=1),
                         BoxFilter(5, 2, 2), nn.Conv2d(8, 4, 3))


def test_fallback_fits_opaque_box_filter():
    """Hand derivation: conv 3 pad 1 -> [u-1, u+1]; box 3 s 2 p 1 reads [2u-1, 2u+1] -> [2u-2, 2u+2] (rf 5,
    stride 2, start -2); conv 3 pad 1 -> [2u-4, 2u+4] (9); box 5 s 2 p 2 reads [2u-2, 2u+2] -> [4u-8, 4u+8]
    (17, stride 4); conv 3 no pad reads [u, u+2] -> [4u-8, 4u+16]: rf 25, stride 4, start -8.  Without the
    fallback the leaf is unknown; with it (the default) the nodes are 'probed' and equal a whole-model probe."""
    net = box_net()
    a = rfgraph.analyze(net, (1, 3, 64, 64), leaf_modules=[BoxFilter])
    expected = {"2": (5, 2, -2), "3": (9, 2, -4), "4": (17, 4, -8), "5": (25, 4, -8)}
    for node, (rf, stride, start) in expected.items():
        r = a[node]
        assert r.source == "probed"
        assert r.rf == (rf, rf) and r.stride == (stride, stride) and r.start == (start, start)
    assert a["0"].source == "symbolic"
    whole = probe(net, "5", (1, 3, 64, 64), leaf_modules=[BoxFilter])
    agree(whole, a["5"])
    off = rfgraph.analyze(net, (1, 3, 64, 64), leaf_modules=[BoxFilter], fallback="unknown")
    assert off["2"].source == "unknown" and "BoxFilter" in off["2"].reason
    explicit = rfgraph.analyze(net, (1, 3, 64, 64), leaf_modules=[BoxFilter], fallback=fallback)
    assert explicit["5"].rf == (25, 25)


class Reverse(nn.Module):
    """Flips W: L(u) = H(u) = n - 1 - u, decreasing: no periodic-affine (monotone) map fits."""

    def forward(self, x):
        return x.flip(-1) * 1.0


class RowMean(nn.Module):
    """Every output of a row reads the whole row (global along W), and only its own row along H."""

    def forward(self, x):
        return x.mean(-1, keepdim=True).expand_as(x) + 0.0


def test_fallback_never_guesses():
    net = nn.Sequential(nn.Conv2d(1, 1, 3), Reverse(), nn.Conv2d(1, 1, 3))
    a = rfgraph.analyze(net, (1, 1, 20, 20), leaf_modules=[Reverse])
    assert a["1"].source == "unknown" and "Reverse" in a["1"].reason and "window" in a["1"].reason
    g = rfgraph.analyze(nn.Sequential(nn.Conv2d(1, 1, 3), RowMean()), (1, 1, 20, 20), leaf_modules=[RowMean])
    r = g["1"]
    assert r.source == "probed" and r.is_global == (False, True) and r.rf[0] == 3


# ---------------------------------------------------------------------------
# torchvision models (weights=None, built on the meta device): probe == symbolic
# ---------------------------------------------------------------------------


def meta_model(name: str) -> nn.Module:
    with torch.device("meta"):
        if name == "inception_v3":
            return torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False)
        return getattr(torchvision.models, name)(weights=None)


@pytest.fixture(scope="module")
def resnet50_analysis():
    return rfgraph.analyze(meta_model("resnet50"), (1, 3, 224, 224))


@pytest.mark.slow
@pytest.mark.parametrize("node,rf,stride,start", [
    ("layer1", 35, 4, -17), ("layer2", 91, 8, -45), ("layer3", 267, 16, -133), ("layer4", 427, 32, -213),
])
def test_resnet50_layers(resnet50_analysis, node, rf, stride, start):
    """Community-published torchvision ResNet-50 values (DESIGN.md §6), measured and symbolic."""
    a = resnet50_analysis
    r = probe(a.model, node, analysis=a, dtype=torch.float32)
    agree(r, a[node])
    assert r.rf == (rf, rf) and r.stride == (stride, stride) and r.start == (start, start)


@pytest.mark.slow
def test_vgg16_distill_values():
    """Distill 2019: VGG-16 pool1..pool4 RF 6 / 16 / 44 / 100, stride 2 / 4 / 8 / 16, padding 2 / 6 / 18 / 42."""
    a = rfgraph.analyze(meta_model("vgg16"), (1, 3, 224, 224))
    for node, rf, stride, pad in (("features.4", 6, 2, 2), ("features.9", 16, 4, 6), ("features.16", 44, 8, 18),
                                  ("features.23", 100, 16, 42)):
        r = probe(a.model, node, analysis=a, dtype=torch.float32)
        agree(r, a[node])
        assert r.rf == (rf, rf) and r.stride == (stride, stride) and r.padding == (pad, pad)


@pytest.mark.slow
@pytest.mark.parametrize("name,node,size", [
    ("inception_v3", "Mixed_6e", 299),
    ("inception_v3", "Mixed_7c", 299),
    ("densenet121", "features", 224),
    ("convnext_tiny", "features", 224),
    ("efficientnet_b0", "features", 224),
    ("mobilenet_v3_large", "features", 224),
])
def test_zoo_probe_equals_symbolic(name, node, size):
    """Probe == symbolic exactly; inception's values are also Distill's (927 / 16 and 1311 / 32)."""
    a = rfgraph.analyze(meta_model(name), (1, 3, size, size))
    r = probe(a.model, node, analysis=a, dtype=torch.float32)
    agree(r, a[node])
    published = {"Mixed_6e": (927, 16), "Mixed_7c": (1311, 32)}
    if node in published:
        rf, stride = published[node]
        assert r.rf == (rf, rf) and r.stride == (stride, stride)


def test_validate_analysis_default_nodes_resnet18():
    """Default validation of ResNet-18 (a handful of nodes over the depth plus the last spatial node,
    whose published RF is 435): every probed node agrees."""
    a = rfgraph.analyze(meta_model("resnet18"), (1, 3, 224, 224))
    report = validate_analysis(a, dtype=torch.float32)
    assert report.ok, str(report)
    assert report.rows[-1].numeric.rf == (435, 435)


class Exported(nn.Module):
    """Control flow on a shape defeats torch.fx, so rfgraph traces it with torch.export (aten ops):
    relu6, max pool, a squeeze-excitation scale and GroupNorm are sanitized there too."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.fc1 = nn.Conv2d(8, 4, 1)
        self.fc2 = nn.Conv2d(4, 8, 1)
        self.norm = nn.GroupNorm(2, 8)

    def forward(self, x):
        if x.shape[-1] > 4:
            x = x * 1
        y = F.max_pool2d(F.relu6(self.c1(x)), 3, 2, 1)
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(y.mean((2, 3), keepdim=True)))))
        return self.c2(self.norm(y * s))


def test_exported_graph_aten_ops():
    """conv 3 p1 (3, start -1) -> max pool 3 s2 p1 (5, stride 2, start -2) -> conv 3 p1 (9, start -4)."""
    a = rfgraph.analyze(Exported(), (1, 3, 32, 32))
    assert a.meta["trace"] == "export"
    report = validate_analysis(a)
    assert report.ok, str(report)
    assert report.rows[-1].numeric.rf == (9, 9) and report.rows[-1].numeric.start == (-4, -4)


def test_cli_probe_subcommand(capsys):
    """`rfgraph probe MODEL --nodes ...` prints the symbolic-vs-numeric table; exit 0 when all agree,
    1 with one line on stderr for a node that does not exist."""
    from rfgraph.cli import main

    assert main(["probe", "torchvision:resnet18", "--nodes", "layer1", "--float32"]) == 0
    out = capsys.readouterr().out
    assert "layer1.1.relu_1" in out and "43" in out and "all probed nodes agree" in out
    assert main(["probe", "torchvision:resnet18", "--nodes", "nope"]) == 1
    err = capsys.readouterr().err
    assert "nope" in err and "Traceback" not in err


class Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x).softmax(-1).unsqueeze(1)


def test_fallback_after_global_pooling_stays_global():
    """A leaf head on a globally pooled (N, C) tensor: nothing local to fit; the output can depend on no
    more than its input, which depends on the whole image: global on both axes, marked probed."""
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), Head())
    a = rfgraph.analyze(net, (1, 1, 16, 16), leaf_modules=[Head])
    assert a["3"].source == "probed" and a["3"].is_global == (True, True) and a["3"].shape == (1, 1, 3)


def test_fixed_size_adaptive_pool_cannot_be_isolated():
    """After adaptive pooling to a fixed 3x3, no output dim follows the input's length: the probe says
    it cannot isolate units (explicit request: an error row; default choice: skipped, not a failure)."""
    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(2, 2, 3, padding=1), nn.AdaptiveAvgPool2d(3))
    a = rfgraph.analyze(net, (1, 1, 24, 24))
    with pytest.raises(rfgraph.ProbeError, match="cannot isolate units"):
        probe(net, "2", analysis=a)
    explicit = validate_analysis(a, ["2"])
    assert not explicit.ok and explicit.rows[0].status == "error"
    default = validate_analysis(a)
    assert default.ok and default.rows[-1].status == "skipped" and "skipped 2" in str(default)


class ImagePooling(nn.Module):
    """DeepLab's ASPP image-pooling branch: global average -> 1x1 conv -> bilinear upsample to H, W,
    concatenated with a local conv 3 branch, then conv 1: the upsampled 1x1 map is one value spread over
    the image (context, like a broadcast); the local RF is 3."""

    def __init__(self):
        super().__init__()
        self.local = nn.Conv2d(1, 2, 3, padding=1)
        self.pool_conv = nn.Conv2d(1, 2, 1)
        self.project = nn.Conv2d(4, 1, 1)

    def forward(self, x):
        g = self.pool_conv(F.adaptive_avg_pool2d(x, 1))
        g = F.interpolate(g, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.project(torch.cat([self.local(x), g], 1))


def test_upsampled_global_pool_is_context():
    a = rfgraph.analyze(ImagePooling(), (1, 1, 24, 24))
    r = probe(ImagePooling(), "project", analysis=a)
    assert r.rf == (3, 3) and not any(r.is_global)
    assert a["project"].rf == (3, 3)  # the symbolic pass agrees (context, flagged global_context)


class Fusion(nn.Module):
    """HRNet-like fusion: a stride-4 path upsampled x4 and added to the full-resolution path, so the
    model accepts only lengths divisible by 4; the probe rounds its lengths up when refused."""

    def __init__(self):
        super().__init__()
        self.down = nn.Sequential(nn.Conv2d(1, 2, 3, stride=2, padding=1), nn.Conv2d(2, 2, 3, stride=2, padding=1))
        self.full = nn.Conv2d(1, 2, 3, padding=1)

    def forward(self, x):
        return self.full(x) + F.interpolate(self.down(x), scale_factor=4.0, mode="nearest")


def test_lengths_rounded_up_for_strided_merges():
    r = probe_agrees(Fusion(), "add", (1, 1, 32, 32))
    assert all(a.input_shape[2 + a.axis] % 4 == 0 for a in r.axes)


class SliceAfterConcat(nn.Module):
    """cat([conv 1 (RF 1), conv 5 p2 (RF 5)]) along channels, keep channel 0 (the conv 1 part), conv 3 p1.
    Hand derivation: channel 0 sees [u, u] (RF 1, start 0); after the conv 3: RF 3, start -1."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 1, 1)
        self.b = nn.Conv2d(1, 1, 5, padding=2)
        self.c = nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x):
        return self.c(torch.cat([self.a(x), self.b(x)], 1)[:, :1])


def test_probe_channel_slice_after_concat():
    r = probe(SliceAfterConcat(), "c", (1, 1, 32, 32))
    assert r.rf == (3, 3) and r.start == (-1, -1)


def test_symbolic_channel_slice_after_concat():
    """Found by the probe: slicing one operand's channels back out of a concat must give that
    operand's field (3 / start -1), not the union over channels (7 / -3)."""
    probe_agrees(SliceAfterConcat(), "c", (1, 1, 32, 32))


class _SafeNet(nn.Module):
    """conv / batchnorm / ReLU / max-pool / nearest upsample / concat / a product with a parameter."""

    def __init__(self):
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2))
        self.b = nn.Conv2d(4, 4, 3, padding=1)
        self.scale = nn.Parameter(torch.ones(1, 8, 1, 1))
        self.c = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        y = self.a(x)
        z = torch.cat([y, self.b(y)], 1) * self.scale
        return self.c(F.interpolate(z, scale_factor=2.0))


class _NormNet(nn.Module):
    """A LayerNorm over channels (its backward subtracts the channel mean: cancellation can occur)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3)
        self.norm = nn.LayerNorm(4)

    def forward(self, x):
        return self.norm(self.conv(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class _ProductNet(nn.Module):
    """A product of two values computed from the input (a coefficient of either sign)."""

    def __init__(self):
        super().__init__()
        self.p = nn.Conv2d(2, 4, 3)
        self.q = nn.Conv2d(2, 4, 3)

    def forward(self, x):
        return self.p(x) * self.q(x)


def test_float32_only_where_the_support_is_exact():
    """The default float type: float32 when every op back-propagates a non-negative gradient on the sanitized
    copy (sums of non-negative terms cannot cancel; magnitudes are renormalised at every node), float64 for
    a LayerNorm over channels or a product of two computed values."""
    from rfgraph.sanitize import first_unsafe_op, support_safe

    for net, safe in ((_SafeNet(), True), (_NormNet(), False), (_ProductNet(), False)):
        a = rfgraph.analyze(net, (1, 2, 16, 16))
        assert support_safe(a.graph_module) is safe, first_unsafe_op(a.graph_module)
        r = probe(net, "output", analysis=a)
        assert r.dtype == (torch.float32 if safe else torch.float64)
    assert "norm" in first_unsafe_op(rfgraph.analyze(_NormNet(), (1, 2, 16, 16)).graph_module)


def test_float32_and_float64_find_the_same_windows():
    """Brute force: on the support-safe net, every measured window in float32 equals float64's, and both equal
    the hand derivation.  conv 3 -> pool 2 (s 2) -> conv 3 pad 1 -> x2 nearest -> conv 1: a pooled unit p reads
    conv units 2p, 2p + 1, i.e. input [2p, 2p + 3]; after the conv 3 pad 1, [2p - 2, 2p + 5] (rf 8, stride 2);
    after the x2 upsample, output unit u reads pooled unit u // 2: [2(u // 2) - 2, 2(u // 2) + 5]."""
    net = _SafeNet()
    a = rfgraph.analyze(net, (1, 2, 40, 40))
    r32 = probe(net, "output", analysis=a, dtype=torch.float32)
    r64 = probe(net, "output", analysis=a, dtype=torch.float64)
    for x32, x64 in zip(r32.axes, r64.axes):
        assert (x32.units, x32.lo, x32.hi) == (x64.units, x64.lo, x64.hi)
        for u, lo, hi in zip(x32.units, x32.lo, x32.hi):
            assert (lo, hi) == (2 * (u // 2) - 2, 2 * (u // 2) + 5)
    assert r32.rf == (8, 8) and r32.stride == (1, 1)


class _Casts(nn.Module):
    """conv -> cast to float64 and back to float32 -> conv: exported, the casts are aten ``_to_copy`` with
    the traced dtype baked in."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv1d(1, 2, 3)
        self.b = nn.Conv1d(2, 1, 3)

    def forward(self, x):
        return self.b(self.a(x).to(torch.float64).to(torch.float32))


def test_exported_float_casts_keep_the_probe_float_type():
    """A cast between float types changes no dependence: on the sanitized copy of an exported graph it keeps
    the probe's float type (before: the baked float32 met float64 weights and the probe failed).  Two 3-taps:
    rf 5, stride 1, start 0."""
    from rfgraph.tracing import export_trace

    net = _Casts()
    traced = export_trace(net, (torch.rand(1, 1, 32),))
    a = rfgraph.analyze(net, (1, 1, 32), traced=traced)
    assert a.meta.get("trace") == "export"
    for dtype in (torch.float64, torch.float32):
        r = probe(net, "output", analysis=a, dtype=dtype)
        assert (r.rf, r.stride, r.start) == ((5,), (1,), (0,)) and r.dtype == dtype
