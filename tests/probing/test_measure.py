"""`rfgraph.probing.measure`: argument checks of `rfgraph.probe` (its measurements are tested in
tests/test_probe.py and by the symbolic-vs-numeric tests); context cut in a graph that accepts its analysed
length only (the shapes of a shape-only run up to the node that refuses another length)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import rfgraph
from rfgraph.probing import validate_analysis
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
    detached: unit 6136 reads ``[8, 12271]``; the probe now agrees there too, in about 90 s.)"""
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
