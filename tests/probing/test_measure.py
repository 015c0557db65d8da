"""`rfgraph.probing.measure`: argument checks of `rfgraph.probe` (its measurements are tested in
tests/test_probe.py and by the symbolic-vs-numeric tests); context cut in a graph that accepts its analysed
length only (the shapes of a shape-only run up to the node that refuses another length)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import rfgraph
from rfgraph.probing import measure, validate_analysis
from rfgraph.probing.measure import Prober
from rfgraph.tracing import export_trace


def test_node_given_in_the_shape_place_is_a_clear_type_error():
    """``probe(model, shape, node)`` (arguments swapped) says what it expected instead of failing deep inside
    name resolution."""
    net = nn.Sequential(nn.Conv1d(1, 1, 3))
    with pytest.raises(TypeError, match=r"node must be a node or module name \(a str\), not tuple \(1, 1, 32\)"):
        rfgraph.probe(net, (1, 1, 32), "0")


class TinyTasNet(nn.Module):
    """ConvTasNet in miniature: an encoder, a gLN (``GroupNorm(1, C)``: statistics over the whole input, a
    global context path), a mask of two sources, the sources moved into the batch for the decoder and back
    into the channels by a ``view(batch, sources, length)``: torch.export bakes the length into that view,
    so the exported graph accepts the analysed length only.

    Hand derivation (input length 64): encoder frame ``f`` (k 4, stride 2, pad 2) reads ``[2f - 2, 2f + 1]``
    (33 frames); the mask conv (k 3, pad 1) frames ``f - 1 .. f + 1``, so the masked frame ``f`` reads
    ``[2f - 4, 2f + 3]`` (the encoder's own frame is inside); the decoder (transposed, k 4, stride 2, pad 2)
    writes frame ``i`` to ``[2i - 2, 2i + 1]``, so output ``t = 2q + r`` reads frames ``q, q + 1``: input
    ``[2q - 4, 2q + 5]``.  rf 10, stride 1 (period 2), start -4; local, with the gLN statistics as context.
    """

    def __init__(self):
        super().__init__()
        self.enc = nn.Conv1d(1, 4, 4, stride=2, padding=2, bias=False)
        self.norm = nn.GroupNorm(1, 4)
        self.mask = nn.Conv1d(4, 8, 3, padding=1)
        self.dec = nn.ConvTranspose1d(4, 1, 4, stride=2, padding=2, bias=False)

    def forward(self, x):
        b, n = x.shape[0], x.shape[-1]
        e = self.enc(x)
        m = self.mask(self.norm(e)).view(b, 2, 4, -1)
        y = (m * e.unsqueeze(1)).view(b * 2, 4, -1)
        return self.dec(y).view(b, 2, n)


@pytest.mark.parametrize("method", ["fx", "export"])
def test_sources_moved_from_batch_to_channels_after_gln_agree(method):
    """At the final view (sources from the batch into the channels) the probe measures the local field.
    Exported, that view refuses every length but 64, so there is no full run at another length to tell the
    gLN statistics (context) apart; a shape-only run at 128 still gives the shapes of every node before that
    view, which is all the context cut reads.  Before, the probe measured with no cut and read the whole
    input: DISAGREE, symbolic (6, 15) != numeric (0, 63) at unit 10."""
    net = TinyTasNet().eval()
    traced = export_trace(net, (torch.rand(1, 1, 64),)) if method == "export" else None
    a = rfgraph.analyze(net, (1, 1, 64), traced=traced)
    assert a.meta.get("trace") == method
    out = a["view_2"]
    assert out.shape == (1, 2, 64) and out.global_context
    assert (out.rf, out.stride, out.start) == ((10,), (1,), (-4,))
    if method == "export":
        with pytest.raises(RuntimeError):  # the exported graph really accepts no other length
            a.graph_module(torch.rand(1, 1, 128))
    report = validate_analysis(a, ["dec", "view_2"])
    assert report.ok, str(report)
    ax = report.rows[1].numeric.axes[0]
    assert ax.input_shape == (1, 1, 64) and ax.units
    for u, lo, hi in zip(ax.units, ax.lo, ax.hi):
        assert (lo, hi) == (2 * (u // 2) - 4, 2 * (u // 2) + 5)
    assert (ax.rf, ax.stride, ax.start) == (10, 1, -4)
    if method == "export":
        assert "stops at node 'view_2'" in ax.note, ax.note


class _NormAfterFixedView(TinyTasNet):
    """The same, with a gLN after the baked view: a context op the shapes before the view cannot inform."""

    def __init__(self):
        super().__init__()
        self.post = nn.GroupNorm(1, 2)

    def forward(self, x):
        return self.post(super().forward(x))


def test_no_partial_context_cut_when_a_context_op_follows_the_refusal():
    """A shape-only run stopped by a baked size gives no shapes from there on: a normalisation after that
    node would go uncut, so the partial shapes are not used (the probe keeps 'no context cut', and reports
    what it measures)."""
    net = _NormAfterFixedView().eval()
    a = rfgraph.analyze(net, (1, 1, 64), traced=export_trace(net, (torch.rand(1, 1, 64),)))
    node = a.resolve("post")
    pr = Prober(a.graph_module, [a[node].fx_name], None, 0)
    shapes, refused = pr.runner.partial_shapes((1, 1, 128), pr.dtype)
    assert shapes is None and refused is None  # no meta run has worked yet: nothing run
    assert pr.try_shapes((1, 1, 64)) is not None
    shapes, refused = pr.runner.partial_shapes((1, 1, 128), pr.dtype)
    assert refused is not None and refused.name == "view_2"
    assert shapes[next(n for n in shapes if n.name == "group_norm")] == (1, 4, 65)
    assert pr.partial_alt((1, 1, 64), 0, 128) == ({}, "")
    report = validate_analysis(a, [node])
    ax = report.rows[0].numeric.axes[0]
    assert "no context cut" in ax.note


class _CumsumTasNet(TinyTasNet):
    """TinyTasNet with a running sum over time before the final view: a length-bound node (prefix windows)."""

    def forward(self, x):
        b, n = x.shape[0], x.shape[-1]
        e = self.enc(x)
        m = self.mask(self.norm(e)).view(b, 2, 4, -1)
        y = (m * e.unsqueeze(1)).view(b * 2, 4, -1)
        return self.dec(y).cumsum(-1).view(b, 2, n)


@pytest.mark.parametrize("method", ["fx", "export"])
def test_length_bound_node_after_gln_in_a_fixed_length_graph(method):
    """A prefix (``cumsum``) node is measured at the analysed length, every unit.  Exported, the graph accepts
    no other length and the node has a global context path (the gLN): before, an error row (no run told the
    context apart); now the shapes before the baked view cut it, as in the fx graph.  Hand derivation (see
    TinyTasNet): output ``t`` reads ``[0, 2 (t // 2) + 5]``; every window starts on the border: clipped."""
    net = _CumsumTasNet().eval()
    traced = export_trace(net, (torch.rand(1, 1, 64),)) if method == "export" else None
    a = rfgraph.analyze(net, (1, 1, 64), traced=traced)
    assert a.meta.get("trace") == method and a["view_2"].global_context
    report = validate_analysis(a, ["view_2"])
    row = report.rows[0]
    assert row.status == "clipped" and not row.disagreements, str(report)
    ax = row.numeric.axes[0]
    assert ax.finite and ax.units == tuple(range(64))
    assert ax.lo == (0,) * 64 and ax.hi == tuple(min(2 * (t // 2) + 5, 63) for t in range(64))
    if method == "export":
        assert "stops at node 'view_2'" in ax.note, ax.note


def test_small_torchaudio_convtasnet_output_agrees():
    """torchaudio's ConvTasNet (traced by torch.export: torch.fx fails on it) at its output, the view that
    moves the sources from the batch into the channels with the analysed length baked in (the zoo's DISAGREE
    at the full-size model: the probe read the whole input through the gLN statistics).  Small config, length
    256.  Hand derivation: encoder (k 16, stride 8, pad 8) frame ``f`` reads ``[8f - 8, 8f + 7]`` (33 frames);
    the mask's two depthwise convs (k 3, dilation 1 and 2; everything else 1x1) read frames ``f - 3 .. f + 3``:
    input ``[8f - 32, 8f + 31]`` (rf 64, stride 8, start -32 at the masked frames); the decoder (transposed,
    k 16, stride 8, pad 8) gives output ``t = 8q + r`` frames ``q, q + 1``: ``[8q - 32, 8q + 39]``, rf 72,
    stride 1 (period 8), start -32.  (The full-size model, 3 stacks of 8 layers: frames ``f -+ 765``, rf
    12264, start -6128, also checked by brute force on the real model with its GroupNorm statistics
    detached: unit 6136 reads ``[8, 12271]``; the probe agrees there too: 11 s in the zoo run of 41a1cf1.)"""
    torchaudio = pytest.importorskip("torchaudio")
    net = torchaudio.models.ConvTasNet(enc_num_feats=16, msk_num_feats=8, msk_num_hidden_feats=16,
                                       msk_num_layers=2, msk_num_stacks=1).eval()
    a = rfgraph.analyze(net, (1, 1, 256))
    assert a.meta.get("trace") == "export"
    assert a["view_1"].shape == (1, 2, 256) and a["view_1"].global_context
    report = validate_analysis(a, ["view", "view_1"])
    assert report.ok, str(report)
    frames, out = (r.numeric for r in report.rows)
    assert (frames.rf, frames.stride, frames.start) == ((64,), (8,), (-32,))
    assert (out.rf, out.stride, out.start) == ((72,), (1,), (-32,))
    ax = out.axes[0]
    for u, lo, hi in zip(ax.units, ax.lo, ax.hi):
        assert (lo, hi) == (8 * (u // 8) - 32, 8 * (u // 8) + 39)


class TinyPSP(nn.Module):
    """smp PSPNet's pyramid pooling in miniature (1-D): an encoder; a global branch (pool to 1 bin, a 1x1 conv,
    resized back: context) and a 2-bin branch (pool to 2 bins, resized back: a data path with wide windows),
    both resized with ``F.interpolate(size=n, mode="linear", align_corners=True)``, concatenated with the
    local path, then two 1x1 convs.  torch.export bakes ``n`` into both resizes, so the exported graph accepts
    its analysed length only: a run at another length stops at the ``cat``.

    Hand derivation (input length 32): encoder feature ``f`` (k 3, stride 2, pad 1) reads ``[2f - 1, 2f + 1]``
    (16 features); bin 0 averages features 0..7 (input ``[-1, 15]``), bin 1 features 8..15 (``[15, 31]``);
    resized with aligned corners, position 0 is bin 0 exactly, position 15 bin 1, the others mix both.  So
    with the global branch cut, unit 0 reads ``[-1, 15]`` (``(0, 15)`` clipped), unit 15 ``[15, 31]`` and every
    other unit the whole input; uncut, every unit reads the whole input."""

    def __init__(self, align_corners: bool = True):
        super().__init__()
        self.align = align_corners
        self.enc = nn.Conv1d(1, 2, 3, stride=2, padding=1)
        self.glob = nn.Conv1d(2, 2, 1)
        self.head = nn.Conv1d(6, 2, 1)
        self.out = nn.Conv1d(2, 2, 1)

    def forward(self, x, cut_global: bool = False):
        e = self.enc(x)
        n = e.shape[-1]
        g = F.interpolate(self.glob(F.adaptive_avg_pool1d(e, 1)), size=n, mode="linear", align_corners=self.align)
        if cut_global:
            g = g.detach()
        b = F.interpolate(F.adaptive_avg_pool1d(e, 2), size=n, mode="linear", align_corners=self.align)
        return self.out(self.head(torch.cat([g, b, e], 1)))


@pytest.mark.parametrize("align_corners", [True, False])
def test_no_partial_context_cut_when_a_baked_resize_spreads_a_global_bin(align_corners):
    """Exported, the global branch's resize has its size fixed: the run at another length gives it the same
    shape (1, 2, 16) and stops at the ``cat``, after it.  Before, the partial shapes were used, the resize was
    not cut (its size does not vary), and the probe read the whole input: a false DISAGREE, unit 0 symbolic
    (0, 15) != numeric (0, 31) (smp PSPNet resnet34's ``decoder.dropout``: (0, 209) != (0, 255), where brute
    force on the real model, float64, its global bin detached by hand, reads (0, 209)).  Now the shapes are
    not used and the row is the named error; the symbolic windows are the hand-derived ones.  Without aligned
    corners the node is not length-bound (measured by `_probe_axis`, not as finite maps): the same error, where
    the declined shapes had left an uncut measurement and a DISAGREE at unit 12, (15, 31) != (0, 31)."""
    net = TinyPSP(align_corners).eval()
    a = rfgraph.analyze(net, (1, 1, 32), traced=export_trace(net, (torch.rand(1, 1, 32),)))
    assert a.meta.get("trace") == "export"
    with pytest.raises(RuntimeError):  # the exported graph really accepts no other length
        a.graph_module(torch.rand(1, 1, 64))
    node = a.resolve("out")
    est = a[node]
    assert est.global_context
    if align_corners:
        assert [(est.lo[0](u), est.hi[0](u)) for u in (0, 1, 14, 15)] == [(-1, 15), (-1, 31), (-1, 31), (15, 31)]
    pr = Prober(a.graph_module, [est.fx_name], None, 0)
    assert pr.try_shapes((1, 1, 32)) is not None
    shapes, refused = pr.runner.partial_shapes((1, 1, 64), pr.dtype)
    assert refused is not None and refused.name == "cat"
    alt, note = pr.partial_alt((1, 1, 32), 0, 64)
    assert alt == {} and "node 'upsample_linear1d' spreads a value" in note, note
    report = validate_analysis(a, ["head", node])
    for row in report.rows:
        assert row.status == "error" and not row.disagreements, str(report)
        assert "global context path" in row.error and "upsample_linear1d" in row.error, row.error

    # brute force, the global branch cut by hand (float64): every unit's window is the symbolic one, clipped
    torch.manual_seed(0)
    x = torch.rand(1, 1, 32, dtype=torch.float64, requires_grad=True)
    y = TinyPSP(align_corners).double().eval()(x, cut_global=True)
    for u in range(16):
        (grad,) = torch.autograd.grad(y[0, :, u].sum(), x, retain_graph=True)
        idx = torch.nonzero(grad[0, 0]).flatten()
        assert (int(idx[0]), int(idx[-1])) == (max(est.lo[0](u), 0), min(est.hi[0](u), 31)), u


def test_smp_pspnet_decoder_is_an_error_not_a_false_disagree():
    """The row of `benchmarks/validate_smp.py --archs PSPNet` (resnet34, 256 x 256, meta, exported): the
    symbolic windows of ``decoder.dropout`` along the rows, clipped to the input, are the brute-force ones (the real model on the
    CPU, float64, activations made identities, max pools made average pools of the same windows, the 1-bin
    branch's output detached: unit 0 reads rows (0, 209), unit 31 rows (39, 255)); the probe cannot cut the
    global bin (its resize's size is baked in), so the row is the named error, as before 127a38e, and no
    DISAGREE."""
    pytest.importorskip("segmentation_models_pytorch")
    from rfgraph.models import load_model, offline_env

    offline_env()
    a = rfgraph.analyze(load_model("smp:PSPNet:resnet34", device="meta"), (1, 3, 256, 256))
    est = a["decoder.dropout"]
    assert est.global_context
    clipped = [(max(est.lo[0](u), 0), min(est.hi[0](u), 255)) for u in (0, 31)]
    assert clipped == [(0, 209), (39, 255)]
    report = validate_analysis(a, ["decoder.dropout"])
    (row,) = report.rows
    assert row.status == "error" and not row.disagreements, str(report)
    assert "spreads a value to a size that is the same in both runs" in row.error, row.error


@pytest.mark.parametrize("batched_ok", [True, False])
def test_grads_of_every_seed_in_order_batched_or_not(batched_ok):
    """`Prober._grads` times one unit alone against two batched and batches the rest only when that is not
    slower: every seed still gets its own gradient, in order (two 3-taps: unit u reads [u - 2, u + 2])."""
    net = nn.Sequential(nn.Conv1d(1, 2, 3, padding=1), nn.Conv1d(2, 1, 3, padding=1))
    a = rfgraph.analyze(net, (1, 1, 32))
    pr = Prober(a.graph_module, [a["1"].fx_name], torch.float64, 0)
    pr.batched_ok = batched_ok
    x = pr.input_tensor((1, 1, 32)).requires_grad_(True)
    out, _ = pr.runner.run(x.clone(), {})
    units = [3, 9, 14, 20, 27]
    seeds = []
    for u in units:
        s = torch.zeros_like(out)
        s[0, 0, u] = 1.0
        seeds.append(s)
    grads = pr._grads(out, x, seeds, None)
    assert len(grads) == len(units)
    for u, g in zip(units, grads):
        idx = torch.nonzero(g[0, 0]).flatten().tolist()
        assert idx == list(range(max(u - 2, 0), min(u + 2, 31) + 1))


def test_grads_one_seed_at_a_time_in_a_run_holding_a_huge_tensor(monkeypatch):
    """A run holding a tensor of `BATCH_MAX_ELEMENTS` elements or more back-propagates its seeds one at a time,
    with no batched trial (a batched pass holds every big tensor once per seed: SwinUNETR 3d's attention
    scores); the gradients are the same (two 3-taps: unit u reads [u - 2, u + 2])."""
    net = nn.Sequential(nn.Conv1d(1, 2, 3, padding=1), nn.Conv1d(2, 1, 3, padding=1))
    a = rfgraph.analyze(net, (1, 1, 32))
    pr = Prober(a.graph_module, [a["1"].fx_name], torch.float64, 0)
    x = pr.input_tensor((1, 1, 32)).requires_grad_(True)
    out, _ = pr.runner.run(x.clone(), {})
    units = [3, 9, 14, 20]
    seeds = []
    for u in units:
        s = torch.zeros_like(out)
        s[0, 0, u] = 1.0
        seeds.append(s)
    calls = []
    grad = torch.autograd.grad

    def spy(*args, **kwargs):
        calls.append(kwargs.get("is_grads_batched", False))
        return grad(*args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", spy)
    grads = pr._grads(out, x, seeds, None, largest=measure.BATCH_MAX_ELEMENTS)
    assert calls == [False] * 4
    for u, g in zip(units, grads):
        assert torch.nonzero(g[0, 0]).flatten().tolist() == list(range(u - 2, u + 3))
    calls.clear()
    pr._grads(out, x, seeds, None, largest=measure.BATCH_MAX_ELEMENTS - 1)
    assert True in calls  # below it: the timed trial batches two


class _Stride4Fixed(nn.Module):
    """Encoder k 8, stride 4, pad 2: frame ``f`` reads ``[4f - 2, 4f + 5]``; decoder (transposed, k 4, stride
    4) writes frame ``q`` to outputs ``4q .. 4q + 3``: output ``t`` reads ``[4 (t // 4) - 2, 4 (t // 4) + 5]``,
    rf 8, stride 1 (period 4), start -2.  The final ``view(b, 1, n)`` bakes the length into an exported graph."""

    def __init__(self):
        super().__init__()
        self.enc = nn.Conv1d(1, 2, 8, stride=4, padding=2)
        self.dec = nn.ConvTranspose1d(2, 1, 4, stride=4)

    def forward(self, x):
        return self.dec(self.enc(x)).view(x.shape[0], 1, x.shape[-1])


def test_fixed_size_graph_measures_three_units_of_a_period():
    """A graph that accepts its analysed shape only (exported): every unit is a backward pass through the
    full-size model, so a period-4 map is measured at a phase-0 unit, one period later and the widest phase
    (all phases are 8 wide: the first), not at T + 1 = 5 consecutive units; it agrees (hand derivation in
    `_Stride4Fixed`), and each measured window is the hand-derived one."""
    net = _Stride4Fixed().eval()
    a = rfgraph.analyze(net, (1, 1, 64), traced=export_trace(net, (torch.rand(1, 1, 64),)))
    assert a.meta.get("trace") == "export"
    node = a.records[-2].name if a.records[-1].op == "output" else a.records[-1].name
    assert (a[node].rf, a[node].stride, a[node].start) == ((8,), (1,), (-2,))
    report = validate_analysis(a, [node])
    assert report.ok, str(report)
    ax = report.rows[0].numeric.axes[0]
    assert ax.input_shape == (1, 1, 64) and len(ax.units) == 2 and ax.units[1] - ax.units[0] == 4 \
        and ax.units[0] % 4 == 0, ax.units
    for u, lo, hi in zip(ax.units, ax.lo, ax.hi):
        assert (lo, hi) == (4 * (u // 4) - 2, 4 * (u // 4) + 5)
    assert (ax.rf, ax.stride, ax.start) == (8, 1, -2)


class _FixedPlane(nn.Module):
    """Two 3x3 convs (no padding) around a ``view(b, 2, h - 2, w - 2)`` that torch.export bakes in, and an add
    (a context op for `Prober.partial_alt`: the shapes of a run at another size are not used after the view).
    Unit ``u`` reads ``[u, u + 4]`` along each axis: rf 5, stride 1, start 0."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 2, 3)
        self.b = nn.Conv2d(2, 1, 3)

    def forward(self, x):
        y = self.a(x).view(x.shape[0], 2, x.shape[2] - 2, x.shape[3] - 2)
        return self.b(y + y)


def test_fixed_size_graph_runs_forward_once_for_every_axis(monkeypatch):
    """A graph that accepts its analysed shape only, with no context cut by shapes, runs the same forward for
    each axis: it is run once and seeded for both axes (then freed); both agree with the hand derivation."""
    net = _FixedPlane().eval()
    a = rfgraph.analyze(net, (1, 1, 24, 24), traced=export_trace(net, (torch.rand(1, 1, 24, 24),)))
    assert a.meta.get("trace") == "export"
    node = a.records[-2].name if a.records[-1].op == "output" else a.records[-1].name
    runs = []
    run = measure.Runner.run

    def spy(self, x, alt, shape_only=False):
        if alt is not None and not shape_only:
            runs.append((tuple(x.shape), len(alt)))
        return run(self, x, alt, shape_only)

    monkeypatch.setattr(measure.Runner, "run", spy)
    pr = Prober(a.graph_module, [a[node].fx_name], None, 0)
    r = rfgraph.probe(net, node, analysis=a, _prober=pr)
    assert runs == [((1, 1, 24, 24), 0)], runs
    assert pr._kept is None
    assert (r.rf, r.stride, r.start) == ((5, 5), (1, 1), (0, 0)) and r.exact
    for ax in r.axes:
        for u, lo, hi in zip(ax.units, ax.lo, ax.hi):
            assert (lo, hi) == (u, u + 4)


def test_fixed_size_graph_clipped_measures_first_middle_last_unit():
    """`_Stride4Fixed` at length 12: the period-4 units' fields (8 wide) do not fit with a margin, so the five
    middle units 4 .. 8 would be measured clipped; at the analysed shape of a graph that accepts no other
    (every unit a backward pass through the full-size model) only the first, middle and last: 4, 6, 8, each
    window the hand-derived one clipped to [0, 11] (unit 8: [6, 13] -> [6, 11])."""
    net = _Stride4Fixed().eval()
    a = rfgraph.analyze(net, (1, 1, 12), traced=export_trace(net, (torch.rand(1, 1, 12),)))
    node = a.records[-2].name if a.records[-1].op == "output" else a.records[-1].name
    report = validate_analysis(a, [node])
    assert not report.disagreements and not report.errors, str(report)
    ax = report.rows[0].numeric.axes[0]
    assert ax.units == (4, 6, 8), ax.units
    assert list(zip(ax.lo, ax.hi)) == [(2, 9), (2, 9), (6, 11)]


class _FixedPlaneNorm(_FixedPlane):
    """`_FixedPlane` with an instance norm after the add: detached by structure (no run at another size)."""

    def __init__(self):
        super().__init__()
        self.norm = nn.InstanceNorm2d(2)

    def forward(self, x):
        y = self.a(x).view(x.shape[0], 2, x.shape[2] - 2, x.shape[3] - 2)
        return self.b(self.norm(y + y))


def test_fixed_size_graph_kept_run_keeps_its_context_cut_counts():
    """The run kept for the second axis is the one whose instance-norm statistics were detached by structure:
    both axes say so (the shape-only runs in between reset the runner's counts), and both agree."""
    net = _FixedPlaneNorm().eval()
    a = rfgraph.analyze(net, (1, 1, 24, 24), traced=export_trace(net, (torch.rand(1, 1, 24, 24),)))
    node = a.records[-2].name if a.records[-1].op == "output" else a.records[-1].name
    r = rfgraph.probe(net, node, analysis=a)
    assert all("1 instance-norm statistics detached" in ax.note for ax in r.axes), [ax.note for ax in r.axes]
    assert (r.rf, r.stride, r.start) == ((5, 5), (1, 1), (0, 0))
