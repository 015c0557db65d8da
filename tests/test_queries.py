"""Design queries (rfgraph.queries): every expected value is derived by hand in the docstring.

Notation: a conv/pool with kernel k, stride s, left padding p and dilation d reads
``[s*u - p, s*u - p + d*(k-1)]``; composing with the input's field
``lo(u) = J*u + start`` gives the next field.  Published ResNet-50 values
(layer3: RF 267, stride 16, padding 133; layer4: RF 427, stride 32, padding 213)
come from /work/shared/DESIGN.md section 6.
"""

from __future__ import annotations

import os
from fractions import Fraction

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

import rfgraph
from rfgraph.queries import (
    Declared,
    Resizer,
    alignment_report,
    coverage,
    declared_strides,
    first_covering,
    lint,
    minimal_input_size,
    size_classes,
    target_rf,
    time_summary,
    unit_box,
    units_seeing,
)

HERE = os.path.abspath(__file__)


def _meta(builder, **kw):
    with torch.device("meta"):
        return builder(weights=None, **kw)


@pytest.fixture(scope="module")
def resnet50():
    return rfgraph.analyze(_meta(torchvision.models.resnet50), (1, 3, 224, 224))


def chain1d(*specs, n=32):
    """A 1-D conv chain; ``specs`` are (k, s, p) triples; nodes are "0", "1", ..."""
    net = nn.Sequential(*[nn.Conv1d(1, 1, k, stride=s, padding=p) for k, s, p in specs])
    return rfgraph.analyze(net, (1, 1, n))


# ---------------------------------------------------------------------------
# unit boxes
# ---------------------------------------------------------------------------


def test_unit_box_small_conv():
    """Conv2d k3 s2 p1 on 8x8: unit u reads [2u-1, 2u+1].

    Unit (0, 3): rows [-1, 1], cols [5, 7]; clipped to the 8x8 input: rows [0, 1], cols [5, 7].
    """
    a = rfgraph.analyze(nn.Conv2d(1, 1, 3, stride=2, padding=1), (1, 1, 8, 8))
    b = unit_box(a, "output", (0, 3))
    assert b.box == ((-1, 1), (5, 7))
    assert b.clipped == ((0, 1), (5, 7))
    assert b.size == (3, 3) and b.clipped_size == (2, 3)


def test_unit_box_resnet50_layer3(resnet50):
    """layer3: stride 16, start -133, RF 267 (published), so lo(u) = 16u - 133, hi(u) = 16u + 133.

    Unit (5, 7): rows [80-133, 80+133] = [-53, 213], cols [112-133, 112+133] = [-21, 245];
    clipped to 224: rows [0, 213], cols [0, 223].
    """
    b = unit_box(resnet50, "layer3", (5, 7))
    assert b.box == ((-53, 213), (-21, 245))
    assert b.clipped == ((0, 213), (0, 223))


def test_unit_box_only_padding_and_errors():
    """ConstantPad1d((3, 0)) then a 1x1 conv: unit u reads pixel u - 3; units 0..2 see only padding."""
    a = rfgraph.analyze(nn.Sequential(nn.ConstantPad1d((3, 0), 0.0), nn.Conv1d(1, 1, 1)), (1, 1, 10))
    b = unit_box(a, "1", 2)
    assert b.box == ((-1, -1),) and b.clipped == (None,)
    assert unit_box(a, "1", 3).clipped == ((0, 0),)
    with pytest.raises(rfgraph.RFGraphError, match="13 units"):
        unit_box(a, "1", 13)  # 10 + 3 = 13 units: 0..12


def test_units_seeing_chain():
    """conv k3 p0, conv k3 s2 p0, conv k3 p0 on 20 samples: node "2" reads [2u, 2u+8], 6 units.

    Pixel 9: hi(u) = 2u + 8 >= 9 gives u >= 1, lo(u) = 2u <= 9 gives u <= 4: units 1..4.
    Box [0, 19]: every unit 0..5.
    """
    a = chain1d((3, 1, 0), (3, 2, 0), (3, 1, 0), n=20)
    assert units_seeing(a, "2", (9,)) == ((range(1, 5),),)
    assert units_seeing(a, "2", ((0, 19),)) == ((range(0, 6),),)
    assert units_seeing(a, "2", (-20,)) == ((),)


def test_units_seeing_resnet50_layer4(resnet50):
    """layer4: lo(u) = 32u - 213, hi(u) = 32u + 213, 7x7 units at 224.

    Pixel (0, 223): rows need 32u <= 213, u <= 6; cols need 32u + 213 >= 223, u >= 1: rows 0..6, cols 1..6.
    Box rows [100, 100]: 32u - 213 <= 100 gives u <= 9, capped at the 7 units: 0..6.
    """
    assert units_seeing(resnet50, "layer4", (0, 223)) == ((range(0, 7),), (range(1, 7),))
    assert units_seeing(resnet50, "layer4", ((100, 100), (0, 0)))[0] == (range(0, 7),)


def test_units_seeing_skips_outputs_that_read_nothing():
    """ConvTranspose1d k1 s2 on 5 samples: 9 outputs; even u reads input u/2, odd u reads nothing.

    The maps are finite tables with empty windows at odd u: pixels 1..2 are seen by u = 2 and u = 4
    only (u = 3 lies between them but reads nothing), so two runs.
    """
    a = rfgraph.analyze(nn.ConvTranspose1d(1, 1, 1, stride=2), (1, 1, 5))
    assert units_seeing(a, "output", ((1, 2),)) == ((range(2, 3), range(4, 5)),)
    assert units_seeing(a, "output", (0,)) == ((range(0, 1),),)


# ---------------------------------------------------------------------------
# input sizes
# ---------------------------------------------------------------------------


def test_minimal_size_chain():
    """conv k3 p0 (n-2), conv k3 s2 p0 (floor((n-5)/2)+1), conv k3 p0 (that - 2).

    The last length >= 1 needs floor((n-5)/2) >= 2, n >= 9.
    """
    a = chain1d((3, 1, 0), (3, 2, 0), (3, 1, 0), n=40)
    assert minimal_input_size(a) == (9,)
    assert minimal_input_size(a, axis=0) == 9


def test_minimal_size_alexnet_vgg():
    """AlexNet: c1 = floor((n-7)/4)+1 (k11 s4 p2), pools k3 s2: p = floor((c-3)/2)+1, convs 2..5 keep sizes.

    The last pool needs its input p2 >= 3, so p1 >= 7, so c1 >= 15, so floor((n-7)/4) >= 14: n >= 63.
    VGG-16: five k2 s2 pools halve (floor) the size, convs keep it: n >= 2**5 = 32.
    """
    a = rfgraph.analyze(_meta(torchvision.models.alexnet), (1, 3, 224, 224))
    assert minimal_input_size(a) == (63, 63)
    # Centred grids: conv1 centres 4u + 3 over c1 units, 3 + 4(c1-1) + 3 = n - 1 iff c1 = (n-3)/4 (n ≡ 3 mod 4);
    # each k3 s2 p0 pool (centres 2u + 1) is centred iff its input length is odd: c1, p1 = (c1-1)/2 and
    # p2 = (p1-1)/2 odd, i.e. c1 ≡ 7 (mod 8), n ≡ 31 (mod 32) (223: c1 55, p1 27, p2 13).  Divisible never
    # holds: a k3 s2 p0 pool gives floor((m-3)/2) + 1 != m/2 units.  The flatten/linear head is not a grid.
    cen = size_classes(a, "centered")
    assert (cen.modulus, cen.residues) == (32, (31,))
    assert size_classes(a, "divisible").residues == ()
    v = rfgraph.analyze(_meta(torchvision.models.vgg16), (1, 3, 224, 224))
    assert minimal_input_size(v, axis=1) == 32


@pytest.mark.slow
def test_size_classes_resnet():
    """ResNet-18/50 share the stride layout: every stride-2 op (conv1 k7 p3, maxpool k3 p1, conv k3 p1,
    downsample k1 p0) gives ceil(n/2) units with unit centres 2u.

    Divisible: n_in = 2 * ceil(n_in/2) iff n_in is even, at five levels: n ≡ 0 (mod 32).
    Centred: the last centre 2(ceil(n_in/2) - 1) equals n_in - 1 iff n_in is odd, at every level:
    n ≡ 1 (mod 32) (n = 32k + 1 keeps every level odd: 16k + 1, 8k + 1, ...).
    """
    a = rfgraph.analyze(_meta(torchvision.models.resnet18), (1, 3, 224, 224))
    rs = Resizer(a)
    div = size_classes(a, "divisible", resizer=rs)
    assert (div.modulus, div.residues, div.periodic) == (32, (0,), True)
    assert 224 in div and 225 not in div
    cen = size_classes(a, "centered", resizer=rs)
    assert (cen.modulus, cen.residues) == (32, (1,))
    assert cen.examples(513, 1) == [513]


def test_size_classes_valid_convs():
    """conv k3 p0 then conv k3 s2 p0 (minimum n = 5).

    Divisible never holds: the strided conv reads n-2 and gives floor((n-5)/2)+1 units, and
    2*(floor((n-5)/2)+1) = n-2 has no solution.  Centred: conv0 centres u+1 over n-2 units
    (1 + n-2 = n-1, always); conv1 centres 2u+2 over N units: 2 + 2(N-1) + 2 = n-1 iff N = (n-3)/2,
    i.e. n odd: n ≡ 1 (mod 2), n >= 5.
    """
    a = chain1d((3, 1, 0), (3, 2, 0), n=21)
    assert minimal_input_size(a) == (5,)
    div = size_classes(a, "divisible")
    assert div.residues == () and "no input size" in str(div)
    cen = size_classes(a, "centered")
    assert (cen.modulus, cen.residues, cen.minimum) == (2, (1,), 5)


def test_coverage_small_chain():
    """conv k3 p1, conv k3 s2 p1: node "1" reads [2u-2, 2u+2] (RF 5) and has ceil(n/2) units.

    Some unit: u <= 1 (2u - 2 <= 0) and hi(1) = 4 >= n - 1: n <= 5 (unit 1 exists at n = 5).
    Every unit: hi(0) = 2 >= n - 1 gives n <= 3.
    At n = 5 the first node covering [0, 4] is "1" (conv "0" has RF 3 < 5).
    """
    a = chain1d((3, 1, 1), (3, 2, 1), n=5)
    c = coverage(a, "1")
    assert (c.some_unit, c.every_unit) == (5, 3)
    assert first_covering(a) == "1"


def test_coverage_resnet50_layer4(resnet50):
    """layer4: lo(u) = 32u - 213, hi(u) = 32u + 213, ceil(n/32) units.

    Some unit: lo(u) <= 0 needs u <= 6; hi(6) = 405 >= n - 1: n <= 406 (13 units at 406, so u = 6 exists).
    Every unit: hi(0) = 213 >= n - 1: n <= 214 (and lo(last) = 32*6 - 213 <= 0 holds at 214).
    """
    c = coverage(resnet50, "layer4")
    assert (c.some_unit, c.every_unit) == (406, 214)


def test_first_covering_resnet50(resnet50):
    """Each layer3 block's 3x3 conv adds 2*16 = 32 to the RF: layer3.5 (published 267) -> layer3.4.conv2 235,
    layer3.3.conv2 203 < 224.  layer3.4.conv2: lo(u) = 16u - 117, hi(u) = 16u + 117; u = 7 has lo <= 0 and
    hi = 229 >= 223: it is the first node some unit of which sees the whole 224 input."""
    assert resnet50["layer3.4.conv2"].rf == (235, 235)
    assert first_covering(resnet50) == "layer3.4.conv2"


# ---------------------------------------------------------------------------
# alignment
# ---------------------------------------------------------------------------


class EvenKernelMerge(nn.Module):
    """Path a: conv k2 s2 p0 reads [2u, 2u+1], centre 2u + 1/2; path b: conv k1 s2 reads [2u, 2u], centre 2u."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 1, 2, stride=2)
        self.b = nn.Conv2d(1, 1, 1, stride=2)

    def forward(self, x):
        return self.a(x) + self.b(x)


class SameMerge(nn.Module):
    """Path a: timm Conv2dSame k3 s2 pads (0, 1) for even n (centre 2u + 1) and (1, 1) for odd n
    (centre 2u); path b: conv k1 s2, centre 2u.  Aligned iff n is odd."""

    def __init__(self):
        super().__init__()
        from timm.layers import Conv2dSame

        self.a = Conv2dSame(1, 1, 3, stride=2)
        self.b = nn.Conv2d(1, 1, 1, stride=2)

    def forward(self, x):
        return self.a(x) + self.b(x)


class PadMerge(nn.Module):
    """Path a: F.pad (1, 0) then conv k3 p0: reads [u-1, u+1], centre u; path b: identity, centre u.
    Path c: F.pad (2, 0) then conv k3 p0: reads [u-2, u], centre u-1: shifted by 1."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv1d(1, 1, 3)
        self.c = nn.Conv1d(1, 1, 2)

    def forward(self, x):
        return self.a(F.pad(x, (1, 1))) + x + self.c(F.pad(x, (1, 0)))


def test_alignment_even_kernel():
    """Centres 2u + 1/2 and 2u: shift 1/2 at every size, so no size aligns it (modulus 2, no residue)."""
    a = rfgraph.analyze(EvenKernelMerge(), (1, 1, 16, 16))
    (m,) = alignment_report(a)
    assert not m.aligned and m.max_center_shift == Fraction(1, 2)
    assert [p.center for p in m.paths] == [(Fraction(1, 2),) * 2, (Fraction(0),) * 2]
    assert [p.stride for p in m.paths] == [(Fraction(2),) * 2] * 2
    assert any("even kernel 2" in c for c in m.causes)
    assert m.aligned_sizes.modulus == 2 and m.aligned_sizes.residues == ()


def test_alignment_same_padding_depends_on_size():
    """At n = 16 Conv2dSame pads (0, 1): centre 2u + 1 vs 2u, shift 1; aligned exactly for odd n."""
    a = rfgraph.analyze(SameMerge(), (1, 1, 16, 16))
    (m,) = alignment_report(a)
    assert not m.aligned and m.max_center_shift == 1
    assert any("'same' padding (Conv2dSame)" in c for c in m.causes)
    assert (m.aligned_sizes.modulus, m.aligned_sizes.residues) == (2, (1,))


def test_alignment_asymmetric_padding():
    """Path c (pad (1, 0), conv k2): reads [u-1, u], centre u - 1/2 vs u: shift 1/2, causes named."""
    a = rfgraph.analyze(PadMerge(), (1, 1, 12))
    bad = [m for m in alignment_report(a, sizes=False) if not m.aligned]
    assert bad and max(m.max_center_shift for m in bad) == Fraction(1, 2)
    causes = " ".join(c for m in bad for c in m.causes)
    assert "asymmetric padding (1, 0)" in causes and "even kernel 2" in causes


def test_alignment_resnets(resnet50):
    """torchvision ResNet-50: every branch op has odd k and p = (k-1)/2, so all 16 adds are aligned.

    timm resnet50d: the shortcut avg-pools k2 s2 (window [2u, 2u+1], centre offset 1/2 input unit)
    at input stride 4, 8, 16 (layer2..4 first blocks): shifts 2, 4, 8 pixels; no size fixes it.
    """
    assert len(alignment_report(resnet50, sizes=False)) == 16
    assert all(m.aligned for m in alignment_report(resnet50, sizes=False))
    import timm

    with torch.device("meta"):
        model = timm.create_model("resnet50d")
    a = rfgraph.analyze(model, (1, 3, 224, 224))
    bad = alignment_report(a, sizes=False, only_misaligned=True)
    assert [(m.node, m.max_center_shift) for m in bad] == [
        ("layer2.0.add", 2), ("layer3.0.add", 4), ("layer4.0.add", 8)
    ]
    assert all(any("even kernel 2" in c and "downsample.0" in c for c in m.causes) for m in bad)


# ---------------------------------------------------------------------------
# stride lint
# ---------------------------------------------------------------------------


class WrongStrides(nn.Module):
    """Two k3 s2 p1 convs: strides 2 and 4.  ``feature_info`` declares 2 and 8 (wrong on purpose)."""

    def __init__(self, second: int = 8):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, stride=2, padding=1)
        self.feature_info = [
            dict(module="conv1", reduction=2, num_chs=4),
            dict(module="conv2", reduction=second, num_chs=4),
        ]

    def forward(self, x):
        return self.conv2(self.conv1(x))


def wrong_strides():
    return WrongStrides(8)


def right_strides():
    return WrongStrides(4)


def test_lint_catches_wrong_declaration():
    """conv2's stride is 2 * 2 = 4, declared 8: one mismatch; conv1's 2 is right."""
    model = WrongStrides(8)
    a = rfgraph.analyze(model, (1, 3, 32, 32))
    rows = lint(a)
    assert [(r.node, r.declared, r.computed, r.ok) for r in rows] == [
        ("conv1", 2, (2, 2), True), ("conv2", 8, (4, 4), False)
    ]
    assert [r.status for r in rows] == ["ok", "mismatch"]
    bad = lint(a, [Declared("x", "nope", Fraction(2), "test")])
    assert bad[0].status == "unchecked" and "cannot resolve" in bad[0].error


def test_lint_cli_exit_codes(capsys):
    """`rfgraph lint` exits 1 on the deliberate mismatch and 0 when the declaration is right."""
    from rfgraph.cli import main

    assert main(["lint", f"{HERE}:wrong_strides", "--input-shape", "1,3,32,32"]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH" in out and "declared    8  computed    4" in out
    assert main(["lint", f"{HERE}:right_strides", "--input-shape", "1,3,32,32"]) == 0


def test_lint_timm_resnet():
    """timm resnet18 declares reductions 2 (act1), 4, 8, 16, 32 (layer1..4): the ResNet stride layout."""
    import timm

    with torch.device("meta"):
        model = timm.create_model("resnet18")
    assert [d.stride for d in declared_strides(model)] == [2, 4, 8, 16, 32]
    rows = lint(rfgraph.analyze(model, (1, 3, 224, 224)))
    assert all(r.ok for r in rows) and len(rows) == 5


def test_lint_timm_features_only():
    """HRNet's feature_info names ``stem`` / ``stage1``, which the classification model lacks; with
    ``features_only=True`` the i-th declared reduction (2, 4, 8, 16, 32) is matched with the i-th returned tensor."""
    import timm

    with torch.device("meta"):
        model = timm.create_model("hrnet_w18_small", features_only=True)
    declared = declared_strides(model)
    assert [d.node for d in declared] == [f"output[{i}]" for i in range(5)]
    rows = lint(rfgraph.analyze(model, (1, 3, 224, 224)), declared)
    assert [r.computed[0] for r in rows] == [2, 4, 8, 16, 32] and all(r.ok for r in rows)


def test_lint_torchvision_ssd300(capsys):
    """SSD300-VGG16 backbone outputs: conv4_3 after three k2 s2 pools: 8; fc7 after pool4 (k2 s2) and
    pool5 (k3 s1): 16; extras 1, 2 end with k3 s2 convs: 32, 64; extras 3, 4 end with k3 s1 p0 convs: 64, 64.
    ``anchor_generator.steps`` declares 8, 16, 32, 64, 100, 300: the last two are 300/3 and 300/1 (box
    spacing over the image), not strides, so the lint reports two mismatches and exits 1."""
    from rfgraph.cli import main

    with torch.device("meta"):
        model = torchvision.models.detection.ssd300_vgg16(weights=None, weights_backbone=None)
    rows = lint(rfgraph.analyze(model.backbone, (1, 3, 300, 300)), declared_strides(model))
    assert [r.computed[0] for r in rows] == [8, 16, 32, 64, 64, 64]
    assert [r.ok for r in rows] == [True] * 4 + [False] * 2
    assert main(["lint", "torchvision:ssd300_vgg16"]) == 1
    assert capsys.readouterr().out.count("MISMATCH") == 2


# ---------------------------------------------------------------------------
# time units
# ---------------------------------------------------------------------------


class WaveNetBlock(nn.Module):
    def __init__(self, ch: int, d: int):
        super().__init__()
        self.d = d
        self.filt = nn.Conv1d(ch, ch, 2, dilation=d)
        self.gate = nn.Conv1d(ch, ch, 2, dilation=d)
        self.res = nn.Conv1d(ch, ch, 1)
        self.skip = nn.Conv1d(ch, ch, 1)

    def forward(self, x):
        h = F.pad(x, (self.d, 0))  # causal: d samples of left padding for a k2 conv of dilation d
        z = torch.tanh(self.filt(h)) * torch.sigmoid(self.gate(h))
        return x + self.res(z), self.skip(z)


class WaveNet(nn.Module):
    """Gated residual blocks, k2 causal convs of dilation 1, 2, ..., 512, skip sum."""

    def __init__(self, ch: int = 4):
        super().__init__()
        self.inp = nn.Conv1d(1, ch, 1)
        self.blocks = nn.ModuleList(WaveNetBlock(ch, 2**i) for i in range(10))
        self.out = nn.Conv1d(ch, 8, 1)

    def forward(self, x):
        x = self.inp(x)
        total = 0
        for b in self.blocks:
            x, s = b(x)
            total = total + s
        return self.out(torch.relu(total))


def wav2letter(ch: int = 8) -> nn.Sequential:
    """torchaudio's Wav2Letter (waveform input) layer list."""
    layers = [nn.Conv1d(1, ch, 250, stride=160, padding=45), nn.ReLU(), nn.Conv1d(ch, ch, 48, stride=2, padding=23),
              nn.ReLU()]
    for _ in range(7):
        layers += [nn.Conv1d(ch, ch, 7, padding=3), nn.ReLU()]
    layers += [nn.Conv1d(ch, ch, 32, padding=16), nn.ReLU(), nn.Conv1d(ch, ch, 1), nn.ReLU(), nn.Conv1d(ch, 29, 1)]
    return nn.Sequential(*layers)


def test_time_wavenet_causal():
    """Each block's conv reads [u - d, u]; the longest path adds 1 + 2 + ... + 512 = 1023 past samples.

    RF 1024 samples = 64 ms at 16 kHz, stride 1 (1/16 ms), past 1023 = 63.9375 ms, lookahead 0: causal.
    """
    a = rfgraph.analyze(WaveNet(), (1, 1, 4000))
    t = time_summary(a, "output", 16000)
    assert (t.rf, t.stride, t.past, t.lookahead, t.causal) == (1024, 1, 1023, 0, True)
    assert (t.rf_ms, t.stride_ms, t.past_ms, t.lookahead_ms) == (64, Fraction(1, 16), Fraction(10230, 160), 0)


def test_time_wav2letter():
    """RF: 250; + 47*160 = 7770 (stride 320); + 7*6*320 = 21210; + 31*320 = 31130 (1x1s add nothing).
    start: -45; -45 - 23*160 = -3725; -7*3*320 -> -10445; -16*320 -> -15565.
    Unit u anchored at 320u: past 15565 samples (972.8125 ms), lookahead -15565 + 31129 = 15564
    (972.75 ms): not causal.  Stride 320 samples = 20 ms; RF 31130 = 1945.625 ms.
    """
    a = rfgraph.analyze(wav2letter(), (1, 1, 16000))
    t = time_summary(a, "output", 16000)
    assert (t.rf, t.stride, t.past, t.lookahead, t.causal) == (31130, 320, 15565, 15564, False)
    assert (t.rf_ms, t.stride_ms, t.past_ms, t.lookahead_ms) == (
        Fraction(1945625, 1000), 20, Fraction(9728125, 10000), Fraction(97275, 100)
    )


def test_time_needs_1d(resnet50):
    with pytest.raises(rfgraph.InputShapeError, match="1-D"):
        time_summary(resnet50, "layer4", 16000)


# ---------------------------------------------------------------------------
# target RF
# ---------------------------------------------------------------------------


def test_target_single_change():
    """conv k3 p1, conv k3 s2 p1, conv k3 p1: RF 1 + 2 + 2 + 2*2 = 9; target 13 needs +4.

    Layer "2" sits at input stride 2: kernel 3 -> 5 (extent 4 -> ... +2*2 = 4) or dilation 1 -> 2 (+2*2);
    layers "0", "1" (stride 1) would need extent +4, kernel 7: a larger kernel.  One change, RF 13.
    """
    a = chain1d((3, 1, 1), (3, 2, 1), (3, 1, 1), n=64)
    plan = target_rf(a, "2", 13)
    assert plan.rf == 9 and plan.fewest_changes == 1
    (change,), got = plan.solutions[0]
    assert change.layer == "2" and got == 13
    assert (change.what, change.old, change.new) in (("kernel", 3, 5), ("dilation", 1, 2))
    assert [s[2] for s in plan.stages][-1] == 9 - 13


def test_target_needs_two_changes():
    """Two k3 p1 convs on 8 samples: RF 5.  Each layer's extent is capped at its input length 8
    (kernel 7 or dilation 3: extent 7, gain 4); one change reaches at most 9 < 13, two reach 13."""
    a = chain1d((3, 1, 1), (3, 1, 1), n=8)
    plan = target_rf(a, "1", 13)
    assert plan.fewest_changes == 2
    changes, got = plan.solutions[0]
    assert {c.layer for c in changes} == {"0", "1"} and got == 13
    assert target_rf(a, "1", 20).solutions == ()


def test_target_resnet50(resnet50):
    """layer4 (RF 427) to 600 needs +173: a 1x1 conv in layer4 (input stride 32) made 7x7 adds 6*32 = 192."""
    plan = target_rf(resnet50, "layer4", 600, verify=3)
    (change,), got = plan.solutions[0]
    assert change.layer.startswith("layer4") and (change.old, change.new) == (1, 7) and got == 427 + 192


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------


def test_cli_box(capsys):
    """`rfgraph box torchvision:resnet50 --node layer3 --unit 5,7` prints the box derived above."""
    from rfgraph.cli import main

    assert main(["box", "torchvision:resnet50", "--node", "layer3", "--unit", "5,7", "--pixel", "0,223"]) == 0
    out = capsys.readouterr().out
    assert "unclipped [-53, 213]" in out and "clipped [0, 223]" in out
    # pixel (0, 223) of layer3 (lo = 16u - 133, hi = 16u + 133, 14 units): rows u <= 8, cols u >= 6
    assert "axis 0: 0..8" in out and "axis 1: 6..13" in out


def test_cli_sizes_align_target(capsys):
    """Smoke test of the other subcommands on EvenKernelMerge (values derived in test_alignment_even_kernel):
    the merge is misaligned by 1/2 pixel and no size aligns it."""
    from rfgraph.cli import main

    spec = f"{HERE}:EvenKernelMerge"
    assert main(["align", spec, "--input-shape", "1,1,16,16"]) == 0
    out = capsys.readouterr().out
    assert "1 merges, 1 misaligned" in out and "MISALIGNED by 0.5 px" in out and "even kernel 2" in out
    assert main(["sizes", spec, "--input-shape", "1,1,16,16"]) == 0
    # k2 s2 gives floor((n-2)/2)+1 units: none at n = 1, so the minimal size is 2.  The k1 s2 path gives
    # floor((n-1)/2)+1: the two agree (and n_in = 2 n_out) only for even n; odd n fail at the add.
    out = capsys.readouterr().out
    assert "minimal input size per axis: (2, 2)" in out and "n ≡ 0 (mod 2)" in out
    assert main(["target", spec, "--input-shape", "1,1,16,16", "--node", "add", "--rf", "2"]) == 0
    assert "target already reached" in capsys.readouterr().out


def test_cli_time_and_errors(capsys):
    from rfgraph.cli import main

    assert main(["time", f"{HERE}:wav2letter", "--input-shape", "1,1,16000", "--sample-rate", "16000",
                 "--node", "output"]) == 0
    out = capsys.readouterr().out
    assert "1945.625" in out and "972.8125" in out
    assert main(["box", "torchvision:resnet50", "--node", "layer3", "--unit", "50,0"]) != 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "outside node" in err


class DynamicConv(nn.Module):
    """Conv whose 3x3 weights come from a linear map of the globally pooled input (CondConv-style)."""

    def __init__(self):
        super().__init__()
        self.route = nn.Linear(2, 2 * 2 * 3 * 3)

    def forward(self, x):
        w = self.route(x.mean((2, 3))).view(2, 2, 3, 3)
        return F.conv2d(x, w, padding=1, stride=2)


def test_conv_with_input_dependent_weights():
    """Core regression (found by benchmarks/lint_timm.py on CondConv EfficientNets): a k3 s2 p1 conv
    reads [2u-1, 2u+1] whatever its weights are: RF 3, stride 2, start -1; the weights depend on the
    input only through a global mean, which is a context path (global_context=True)."""
    a = rfgraph.analyze(DynamicConv(), (1, 2, 16, 16))
    r = a["conv2d"]
    assert (r.rf, r.stride, r.start, r.global_context) == ((3, 3), (2, 2), (-1, -1), True)
    assert r.shape == (1, 2, 8, 8)
