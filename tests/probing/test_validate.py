"""validate() where users need it (issue 14 §5): fixed-size models at their analysed size, default nodes
that the probe can measure, every failure a row, lengths congruent to the analysed one, budgets.

Expected values are hand-derived (derivation in each docstring) or published.
"""

from __future__ import annotations

import importlib
from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F
from rfcheck import ShiftedWindows1d, last
from torch import nn

import rfgraph
from rfgraph.probing import probe, validate_analysis
from rfgraph.probing.measure import ProbeBudgetError
from rfgraph.probing.validate import default_nodes

validate_module = importlib.import_module("rfgraph.probing.validate")


class FixedViT(nn.Module):
    """ViT-like and fixed-size: a 4x4 stride-4 patch embedding, a position embedding of a fixed 16x16
    shape (any other input length fails the add), and a conv 3 pad 1 over the patch grid.

    Hand derivation: patch unit u reads [4u, 4u + 3] (rf 4, stride 4, start 0); the conv 3 pad 1 reads
    patches u - 1 .. u + 1, i.e. [4u - 4, 4u + 7]: rf 12, stride 4, start -4."""

    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(3, 8, 4, stride=4)
        self.pos = nn.Parameter(torch.zeros(1, 8, 16, 16))
        self.mix = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x):
        return self.mix(self.patch(x) + self.pos)


def test_fixed_size_model_validated_at_its_size():
    a = rfgraph.analyze(FixedViT(), (1, 3, 64, 64))
    with pytest.raises(RuntimeError):  # the model really accepts no other length
        FixedViT()(torch.rand(1, 3, 96, 64))
    report = validate_analysis(a, ["patch", "mix"])
    assert report.ok, str(report)
    patch, mix = (r.numeric for r in report.rows)
    assert patch.rf == (4, 4) and patch.stride == (4, 4) and patch.start == (0, 0)
    assert mix.rf == (12, 12) and mix.stride == (4, 4) and mix.start == (-4, -4)
    assert all(ax.input_shape[2 + ax.axis] == 64 for ax in mix.axes)  # measured at the analysed length
    assert all("analysed length 64" in ax.note for ax in mix.axes)


class Small(FixedViT):
    """The same at 16x16: a 4x4 patch grid, too small for the conv's units (rf 12) to fit with margins."""

    def __init__(self, k=3):
        super().__init__()
        self.pos = nn.Parameter(torch.zeros(1, 8, 4, 4))
        self.mix = nn.Conv2d(8, 8, k, padding=k // 2)


def test_fixed_size_model_clipped_windows_compared():
    """The probe measures at 16 anyway, clipped, and validation compares each window clipped to the
    input: they agree, the row is 'clipped' (not a false disagreement)."""
    a = rfgraph.analyze(Small(), (1, 3, 16, 16))
    report = validate_analysis(a, ["mix"])
    row = report.rows[0]
    assert row.error is None and not row.disagreements, str(report)
    assert row.status == "clipped" and all(not ax.exact for ax in row.numeric.axes)


def test_clipped_comparison_catches_a_wrong_field():
    """Symbolic results of a conv 5 pad 2 (unit u: [4u - 8, 4u + 11]) against the measured conv 3 pad 1
    ([4u - 4, 4u + 7]), both clipped to 16: the windows differ, a disagreement is reported."""
    measured = probe(Small(), "mix", analysis=rfgraph.analyze(Small(), (1, 3, 16, 16)))
    wrong = rfgraph.analyze(Small(k=5), (1, 3, 16, 16))["mix"]
    dis = validate_module.compare("mix", wrong, measured)
    assert dis and "clipped" in dis[0].quantity


class Unbinder(nn.Module):
    """A conv, a multi-output unbind along channels, and a conv over one piece."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 2, 3, padding=1)
        self.b = nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x):
        first, _ = self.a(x).unbind(1)
        return self.b(first.unsqueeze(1))


def test_default_nodes_never_multi_output():
    a = rfgraph.analyze(Unbinder(), (1, 1, 32, 32))
    picks = default_nodes(a, count=8)
    assert picks and all(a[n].op != "unbind" for n in picks)
    assert all(a[n].shape is not None and len(a[n].shape) == 4 for n in picks)
    assert validate_analysis(a).ok


class FlatQueries(nn.Module):
    """Tokens of the input's rank: ``(B, heads, H*W, d)`` (a ViT's queries), then back to a map."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)

    def forward(self, x):
        t = self.conv(x)
        b, c, h, w = t.shape
        q = t.flatten(2).transpose(1, 2).reshape(b, h * w, 2, 2).transpose(1, 2)  # (B, heads, N, d)
        return q.transpose(1, 2).reshape(b, h, w, c).permute(0, 3, 1, 2)


def test_default_nodes_never_flattened_tokens():
    """A node of the input's rank whose two axes sit on one dim (flattened tokens) is not probed by
    default: the probe measures an axis along one dim (VOLO's queries gave windows like 1489..1637)."""
    a = rfgraph.analyze(FlatQueries(), (1, 1, 8, 8))
    picks = default_nodes(a, count=8)
    assert picks and all(len(set(a[n].dims)) == 2 for n in picks)


def test_every_failure_is_a_row(monkeypatch):
    """An exception of any kind inside the probe of a node (here an AssertionError, as Swin-type models
    raised) is that node's row with its error, never a crash of validate()."""
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Conv2d(2, 1, 3))
    a = rfgraph.analyze(net, (1, 1, 24, 24))

    def boom(*args, **kwargs):
        raise AssertionError("window size mismatch")

    monkeypatch.setattr(validate_module, "probe", boom)
    report = validate_analysis(a, ["0", "1"])
    assert [r.status for r in report.rows] == ["error", "error"]
    assert "AssertionError: window size mismatch" in report.rows[0].error and not report.ok


def test_budget_is_a_row():
    """A node over its size budget is an error row naming the budget."""
    net = nn.Sequential(nn.Conv1d(1, 1, 3), nn.Conv1d(1, 1, 3))
    a = rfgraph.analyze(net, (1, 1, 64))
    with pytest.raises(ProbeBudgetError):
        probe(net, "1", analysis=a, max_elements=8)
    report = validate_analysis(a, ["1"], max_elements=8)
    assert report.rows[0].status == "error" and "budget" in report.rows[0].error


class LengthDependent(nn.Module):
    """Nearest resizing to a size derived from a stride-4 path (as smp's Unet decoder does): the
    coarse path's length is ceil(n / 4), resized back to n.  At lengths divisible by 4 the resize is an
    exact x4 (unit u reads coarse unit u // 4); at others the scale is ceil(n / 4) / n and the map is
    different.  Analysed at 64: the head conv 3 pad 1 after the resize reads coarse units (u - 1) // 4 ..
    (u + 1) // 4; coarse unit c reads [4c - 1 - 4, 4c + 3 + 4]... measured values are compared with the
    symbolic ones, which the probe must reproduce by measuring at lengths congruent to 64 modulo 4."""

    def __init__(self):
        super().__init__()
        self.down = nn.Conv1d(1, 1, 4, stride=4)
        self.head = nn.Conv1d(1, 1, 3, padding=1)

    def forward(self, x):
        c = self.down(nn.functional.pad(x, (0, (-x.shape[-1]) % 4)))
        up = nn.functional.interpolate(c, size=x.shape[-1], mode="nearest")
        return self.head(up + x)


def test_lengths_congruent_to_the_analysed_one():
    a = rfgraph.analyze(LengthDependent(), (1, 1, 64))
    rec = a["head"]
    r = probe(a.model, "head", analysis=a)
    assert r.exact and r.axes[0].input_shape[2] % 4 == 0
    assert (r.rf, r.stride, r.start) == (rec.rf, rec.stride, rec.start)
    assert validate_analysis(a, ["head"]).ok


@pytest.mark.slow
def test_smp_unet_efficientnet_b0_head_start():
    """smp Unet, efficientnet-b0 encoder, 256x256: the segmentation head's start is -458 (see the
    derivation in docs/design.md: probe section); probed at lengths that are not multiples of 32 the
    decoder's resize-to-skip-size changes scale and the probe measured -490, one period (32) off."""
    smp = pytest.importorskip("segmentation_models_pytorch")
    with torch.device("meta"):
        model = smp.create_model("Unet", "efficientnet-b0", encoder_weights=None)
    a = rfgraph.analyze(model, (1, 3, 256, 256))
    name = [r.name for r in a if r.is_spatial and r.name != "output"][-1]
    assert a[name].start == (Fraction(-458), Fraction(-458))
    r = probe(model, name, analysis=a, axes=[0], dtype=torch.float32)
    assert r.axes[0].input_shape[2] % 32 == 0
    assert r.start[0] == -458 and r.rf[0] == a[name].rf[0] and r.stride[0] == 1


@pytest.fixture(scope="module")
def swin_validation():
    timm = pytest.importorskip("timm")
    with torch.device("meta"):
        model = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False)
    a = rfgraph.analyze(model, (1, 3, 224, 224))
    return a, validate_analysis(a, dtype=torch.float32)


@pytest.mark.slow
def test_swin_validates_without_crashing(swin_validation):
    a, report = swin_validation
    assert len(report.rows) >= 1
    for r in report.rows:
        assert r.numeric is not None or r.error, r.node
        assert all(a[r.node].dims[i] is not None or a[r.node].is_global[i] for i in range(2))


@pytest.mark.slow
def test_swin_shifted_window_mask_symbolic_equals_probe(swin_validation):
    """Swin's stage nodes validate.  The window partition's view / permute nodes are reported per window
    (stride ``4 * 7`` at the first stage), so the probe's lengths keep every layer's residues modulo 224:
    it measures at 448, where the units it picks read no wrapped-around window.  (Units whose window wraps
    agree too, by the shared convention that a -100 logit is a hidden entry: `rules.mixing.HIDING_LOGIT`,
    `test_shifted_windows_symbolic_equals_probe_at_every_unit`.)"""
    _, report = swin_validation
    assert not report.disagreements, str(report)


def test_budget_is_checked_at_every_node_of_the_runs_and_gradients_are_batched(monkeypatch):
    """The time budget is checked inside the runs (every node of the forward and of the backward), not only
    between steps; and the units' gradients come from one batched backward (the renormalising hooks make no
    torch random call, which vmap refuses)."""
    from rfgraph.probing import measure

    calls = []
    monkeypatch.setattr(measure.Budget, "check", lambda self, node: calls.append(node))
    net = nn.Sequential(*[nn.Conv1d(2, 2, 3) for _ in range(10)])
    a = rfgraph.analyze(net, (1, 2, 64))
    fx_name = a["9"].fx_name
    pr = measure.Prober(a.graph_module, [fx_name], torch.float64, 0)
    out = probe(net, "9", analysis=a, budget=60.0, _prober=pr)
    assert out.rf == (21,) and out.exact  # ten 3-taps: 1 + 10 * 2
    assert pr.batched_ok
    # per measured run: 11 forward nodes and the hooked gradients of 10 convs (only a few checks between steps)
    assert len(calls) >= 20


class _ConvRecurrent(nn.Module):
    """conv k3 s2 over time, a unidirectional recurrent layer, nothing after it."""

    def __init__(self, kind):
        super().__init__()
        self.conv = nn.Conv1d(2, 4, 3, stride=2)
        self.rnn = kind(4, 5, batch_first=True)

    def forward(self, x):
        y, _ = self.rnn(self.conv(x).transpose(1, 2))
        return y.transpose(1, 2)


@pytest.mark.parametrize("kind", [nn.RNN, nn.GRU, nn.LSTM], ids=lambda k: k.__name__)
def test_unidirectional_recurrence_is_measured_at_the_analysed_length(kind):
    """A causal prefix holds at the analysed length only (unit t sees 0..t; a longer input has more steps).

    Hand derivation, input length 40: the conv k3 s2 gives 19 steps, step s reads [2s, 2s + 2]; the
    recurrence's step t reads steps 0..t, i.e. input [0, 2t + 2]; the last step (t = 18) reads [0, 38].
    The probe measures every step at length 40 and each window must be exactly that (before: measured at
    lengths up to 2944 against the periodic extension of the prefix table, a false disagreement, or over
    budget)."""
    net = _ConvRecurrent(kind)
    a = rfgraph.analyze(net, (1, 2, 40))
    node = "transpose_1"
    assert a[node].rf == (39,) and a[node].start == (0,)
    report = validate_analysis(a, [node], budget=60)
    row = report.rows[0]
    assert row.status in ("ok", "clipped"), str(report)
    (axis,) = row.numeric.axes
    assert axis.input_shape[2] == 40
    assert list(axis.units) == list(range(19))
    assert [(lo, hi) for lo, hi in zip(axis.lo, axis.hi)] == [(0, 2 * t + 2) for t in range(19)]


class _SpatialGLU(nn.Module):
    """conv 3x3 (no padding), ``nn.GLU()`` (dim -1: the width), conv 3x3."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3)
        self.glu = nn.GLU()
        self.c2 = nn.Conv2d(4, 2, 3)

    def forward(self, x):
        return self.c2(self.glu(self.conv(x)))


def test_spatial_glu_is_measured_where_its_halves_are():
    """GLU over the width pairs unit v with v + n/2: a map that depends on the length.

    Hand derivation, input 20 x 30: conv -> 18 x 28; GLU -> 18 x 14, unit v reads conv units v and v + 14,
    i.e. input [v, v + 2] and [v + 14, v + 16]: hull [v, v + 16], rf 17; c2 unit u reads GLU units
    u .. u + 2: input [u, u + 18], rf 19 (height: two 3-taps, rf 5).  Before, the probe measured c2 at width
    32 (its margin did not fit in 30), where the halves are 15 apart: rf 20, a false disagreement."""
    a = rfgraph.analyze(_SpatialGLU(), (1, 2, 20, 30))
    assert a["glu"].rf == (3, 17) and a["c2"].rf == (5, 19)
    assert a["c2"].lo[1](4) == 4 and a["c2"].hi[1](4) == 22
    report = validate_analysis(a, ["glu", "c2"])
    assert report.ok, str(report)
    assert all(ax.input_shape[3] == 30 for ax in report.rows[1].numeric.axes if ax.axis == 1)


class _AlignCorners(nn.Module):
    """conv k3 s2 p1 -> x2 linear resize with align_corners=True -> conv k15 p7 (a field wider than the input)."""

    def __init__(self):
        super().__init__()
        self.down = nn.Conv1d(1, 2, 3, stride=2, padding=1)
        self.head = nn.Conv1d(2, 1, 15, padding=7)

    def forward(self, x):
        up = F.interpolate(self.down(x), scale_factor=2.0, mode="linear", align_corners=True)
        return self.head(up)


def test_align_corners_resampling_is_measured_at_the_analysed_length():
    """align_corners=True resamples with slope (n_in - 1) / (n_out - 1): at another input length, even one
    congruent modulo every stride, the node's maps are other maps (smp FPN measured at 2304 instead of 256:
    a false disagreement of one coarse unit).

    Hand derivation, length 16: ``down`` unit v reads [2v - 1, 2v + 1] (8 units); ``up`` unit u reads source
    x = 7u / 15, down units floor(x) .. ceil(x): unit 0 -> [-1, 1], unit 1 -> units 0, 1 -> [-1, 3],
    unit 15 -> unit 7 -> [13, 15]."""
    a = rfgraph.analyze(_AlignCorners(), (1, 1, 16))
    up = a["interpolate"]
    assert [(up.lo[0](u), up.hi[0](u)) for u in (0, 1, 15)] == [(-1, 1), (-1, 3), (13, 15)]
    report = validate_analysis(a, ["interpolate", "head"])
    assert all(r.status in ("ok", "clipped") for r in report.rows), str(report)
    assert all(ax.input_shape[2] == 16 for r in report.rows for ax in r.numeric.axes)


class _RecurrentConv(nn.Module):
    """A unidirectional GRU over time, then a conv k3 without padding (the node is shorter than the
    input)."""

    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(2, 4, batch_first=True)
        self.conv = nn.Conv1d(4, 4, 3)

    def forward(self, x):
        y, _ = self.rnn(x.transpose(1, 2))
        return self.conv(y.transpose(1, 2))


def test_causal_prefix_summaries_count_only_the_units_that_exist():
    """Hand derivation, length 40: step t of the GRU reads [0, t]; the conv's unit u (38 units) reads
    steps u..u+2, i.e. [0, u + 2]: rf 40 (u = 37), rf_min 3 (u = 0).  The prefix is periodic with the
    input's length, 40, and a summary over that period counted units 38 and 39 that the node does not
    have (rf 42).  The probe measures every unit at the analysed length and agrees."""
    a = rfgraph.analyze(_RecurrentConv(), (1, 2, 40))
    r = a["conv"]
    assert (r.rf, r.rf_min, r.start) == ((40,), (3,), (0,))
    assert [(r.lo[0](u), r.hi[0](u)) for u in (0, 37)] == [(0, 2), (0, 39)]
    row = validate_analysis(a, ["conv"], budget=60).rows[0]
    assert row.status in ("ok", "clipped"), str(row)
    (axis,) = row.numeric.axes
    assert [(lo, hi) for lo, hi in zip(axis.lo, axis.hi)] == [(0, u + 2) for u in axis.units]


def test_finite_units_thin_the_units_reading_the_whole_input():
    """`_finite_units` with ``whole``: units whose symbolic window covers the whole input are kept next to
    other units and in a spread of 8 (first and last included); every other unit as before."""
    from rfgraph.probing.measure import _finite_units

    every = _finite_units(256, whole=lambda u: True)  # a spread of the 64 chosen units
    assert len(every) == 8 and every[0] == 0 and every[-1] == 255 and set(every) <= set(_finite_units(256))
    picks = _finite_units(64)
    assert picks == list(range(64))
    units = _finite_units(64, whole=lambda u: 21 <= u <= 42)
    assert [u for u in units if not 21 <= u <= 42] == [u for u in range(64) if not 21 <= u <= 42]
    assert {21, 42} <= set(units) and len([u for u in units if 21 <= u <= 42]) <= 10
    assert _finite_units(300, whole=None) == _finite_units(300)


class _AlignCornersFixed(nn.Module):
    """conv k3 s2 p1 (32 units) -> x2 linear resize with align_corners=True (64) -> conv k81 p40 -> a reshape
    to the analysed size (the model accepts length 64 only)."""

    def __init__(self):
        super().__init__()
        self.down = nn.Conv1d(1, 2, 3, stride=2, padding=1)
        self.head = nn.Conv1d(2, 1, 81, padding=40)

    def forward(self, x):
        up = F.interpolate(self.down(x), scale_factor=2.0, mode="linear", align_corners=True)
        return self.head(up).reshape(1, 1, 64)


def test_fixed_size_finite_node_measures_whole_input_units_thinned():
    """Hand derivation, length 64: ``down`` unit v reads [2v - 1, 2v + 1]; ``up`` unit w reads down units
    floor(31 w / 63) .. ceil(31 w / 63); ``head`` unit u reads up units max(u - 40, 0) .. min(u + 40, 63).
    Its window starts at <= 0 while floor(31 (u - 40) / 63) = 0, i.e. u <= 42, and ends at 63 once
    ceil(31 (u + 40) / 63) = 31, i.e. u + 40 >= 61: units 21..42 read the whole input.  The model accepts
    length 64 only, so every unit is a backward pass at that length: the whole-input run is measured at its
    ends and a spread (at most 10 of its 22 units), every other unit as before; all agree."""
    a = rfgraph.analyze(_AlignCornersFixed(), (1, 1, 64))
    r = a["reshape"]
    whole = [u for u in range(64) if r.lo[0](u) <= 0 and r.hi[0](u) >= 63]
    assert whole == list(range(21, 43))
    row = validate_analysis(a, ["reshape"]).rows[0]
    assert row.status in ("ok", "clipped") and not row.disagreements, str(row)
    (axis,) = row.numeric.axes
    assert axis.finite and axis.input_shape == (1, 1, 64)
    measured = set(axis.units)
    assert set(range(21)) | set(range(43, 64)) | {21, 42} <= measured
    assert len(measured & set(whole)) <= 10
    for u, lo, hi in zip(axis.units, axis.lo, axis.hi):
        assert (lo, hi) == (max(r.lo[0](u), 0), min(r.hi[0](u), 63))


class _NearestFixed(nn.Module):
    """conv k3 s4 p1 (16 units) -> x4 nearest resize (64, period 4) -> conv k81 p40 -> a reshape to the
    analysed size (the model accepts length 64 only)."""

    def __init__(self):
        super().__init__()
        self.down = nn.Conv1d(1, 2, 3, stride=4, padding=1)
        self.head = nn.Conv1d(2, 1, 81, padding=40)

    def forward(self, x):
        up = F.interpolate(self.down(x), scale_factor=4.0, mode="nearest")
        return self.head(up).reshape(1, 1, 64)


def test_fixed_size_clipped_units_reading_the_whole_input_thinned():
    """Hand derivation, length 64: ``head`` unit u reads resized units u - 40 .. u + 40, i.e. conv units
    floor((u - 40) / 4) .. floor((u + 40) / 4), input [4 floor((u - 40) / 4) - 1, 4 floor((u + 40) / 4) + 1]
    (unit 24: [-17, 65], unit 43: [-1, 81]): it starts at <= 0 for u <= 43 and ends at >= 63 once
    floor((u + 40) / 4) >= 16, u >= 24.  The field (about
    165) does not fit in 64 and the model accepts no other length: measured clipped at 64.  The period is
    4, so 5 middle units (30..34) would be measured; all read the whole input symbolically, so only the
    first, middle and last (30, 32, 34), each compared with the whole input.  Measured: [0, 61] (the last
    conv unit, 15, reads [59, 61]: inputs 62 and 63 feed nothing), inside the clipped symbolic [0, 63]
    (clipped on both sides)."""
    a = rfgraph.analyze(_NearestFixed(), (1, 1, 64))
    r = a["reshape"]
    assert [u for u in range(64) if r.lo[0](u) <= 0 and r.hi[0](u) >= 63] == list(range(24, 44))
    assert [(r.lo[0](u), r.hi[0](u)) for u in (24, 43)] == [(-17, 65), (-1, 81)]
    row = validate_analysis(a, ["reshape"]).rows[0]
    assert row.status == "clipped" and not row.disagreements, str(row)
    (axis,) = row.numeric.axes
    assert axis.input_shape == (1, 1, 64) and not axis.finite
    assert axis.units == (30, 32, 34) and axis.lo == (0, 0, 0) and axis.hi == (61, 61, 61)


class _AlignCornersFixedContext(nn.Module):
    """conv -> x2 linear resize with align_corners=True (a length-bound node) -> a reshape to the analysed
    size (the only length accepted) -> plus its own mean over the length (a global context path after the
    refusal: no partial run informs it)."""

    def __init__(self):
        super().__init__()
        self.down = nn.Conv1d(1, 2, 3, stride=2, padding=1)

    def forward(self, x):
        up = F.interpolate(self.down(x), scale_factor=2.0, mode="linear", align_corners=True).reshape(1, 2, 32)
        return up + up.mean(-1, keepdim=True)


def test_fixed_size_context_error_before_any_backward_pass(monkeypatch):
    """The error row of a length-bound node with a global context path that nothing can cut is known after
    the forward run: no backward pass is made for it (they were, and thrown away: 20 s per smp UPerNet
    head node under load)."""
    from rfgraph.probing.measure import Prober

    a = rfgraph.analyze(_AlignCornersFixedContext(), (1, 1, 32))
    node = a.resolve("add")
    assert a[node].global_context
    calls = []
    inner = Prober._grads
    monkeypatch.setattr(Prober, "_grads", lambda self, *args, **kw: calls.append(1) or inner(self, *args, **kw))
    row = validate_analysis(a, [node]).rows[0]
    assert row.status == "error" and "cannot tell the context operands apart" in row.error, str(row)
    assert calls == []


@pytest.mark.parametrize("how", ["add", "fill", "sdpa"])
@pytest.mark.parametrize("fill", [-100.0, -99.0, 0.0])
def test_shifted_windows_symbolic_equals_probe_at_every_unit(fill, how):
    """Rolled windows of 4 over 16 positions after a conv k=3 p=1 (`rfcheck.ShiftedWindows1d`), validated at
    every unit (the mask fixes the length), the wrapped ones included.  Hand derivation: the wrapped window
    holds positions 14, 15, 0, 1; a -100 mask keeps {14, 15} and {0, 1} apart (a hidden entry, for the
    symbolic rules and the probe alike), so units 0, 1 read [0, 2] and 14, 15 read [13, 15] clipped, reported
    as the periodic extension of the other windows' maps (unclipped (-3, 2) and (13, 18)); with -99 or no
    mask the window mixes all four: (-1, 16).  Other units read their window's conv field."""
    model = ShiftedWindows1d(fill, how)
    a = rfgraph.analyze(model, (1, 1, 16))
    r = last(a)
    assert r.source == "symbolic"
    wrapped = {} if fill <= -100 else dict.fromkeys((0, 1, 14, 15), (-1, 16))
    expected = [wrapped.get(u, (4 * ((u - 2) // 4) + 1, 4 * ((u - 2) // 4) + 6)) for u in range(16)]
    assert [(r.lo[0](u), r.hi[0](u)) for u in range(16)] == expected
    report = validate_analysis(a, [r.name])
    assert not report.disagreements and report.rows[0].numeric is not None, str(report)
    if wrapped:  # (a table: every unit measured; periodic maps are measured at a few units, the wrapped
        # units of the hidden case in `tests/probing/test_runner.py`)
        assert set(report.rows[0].numeric.axes[0].units) >= {0, 1, 14, 15}


class _SpreadAlongLength(nn.Module):
    """conv k=3 (no padding), then the map spread along a new dim whose size is the input length:
    ``(B, n, C, n - 2)``, dim 1 a copy index, dim 3 the positions."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 2, 3)

    def forward(self, x):
        return self.conv(x).unsqueeze(1).expand(-1, x.shape[2], -1, -1) * 1.0


def test_a_map_spread_along_a_dim_of_the_length_is_measured_by_its_positions():
    """Hand derivation: unit u of dim 3 reads [u, u + 2] at every index of dim 1 (rf 3, stride 1, start 0).
    The probe used to cut the expand as context (a size-1 dim spread along a dim that follows the length)
    and then found no path to the input; and of the two dims that follow the length it seeded the first,
    the copy index, not the analysis' dim."""
    a = rfgraph.analyze(_SpreadAlongLength(), (1, 1, 16))
    r = a["mul"]
    assert r.dims == (3,) and (r.rf, r.stride, r.start) == ((3,), (1,), (0,))
    report = validate_analysis(a, ["mul"])
    assert report.ok and not report.disagreements, str(report)
    assert (report.rows[0].numeric.rf, report.rows[0].numeric.start) == ((3,), (0,))
