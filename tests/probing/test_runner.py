"""`rfgraph.probing.runner` (and the shape-only runs `Prober.try_shapes` makes with it): the renormalising
hooks, shape-only runs, refused sizes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from rfcheck import ShiftedWindows1d, last
from torch import nn

import rfgraph
from rfgraph.probing import probe
from rfgraph.probing.measure import Prober
from rfgraph.probing.runner import Runner
from rfgraph.sanitize import sanitized_copy
from rfgraph.tracing import cut, export_trace, trace


def _runnable(gm, dtype=torch.float32):
    """The sanitized copy of ``gm`` cut at its returned tensor (a runner's graph returns a tuple)."""
    last = next(n for n in gm.graph.nodes if n.op == "output").args[0]
    while isinstance(last, (tuple, list)):
        last = last[0]
    return sanitized_copy(cut(gm, [last.name]), dtype, 0)


class _Aliases(nn.Module):
    """conv -> relu (an identity on the copy: the same tensor) -> in-place add (the same tensor object, a new
    autograd value) -> conv."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv1d(1, 2, 3)
        self.b = nn.Conv1d(2, 1, 3)

    def forward(self, x):
        y = torch.relu(self.a(x))
        y.add_(1.0)
        return self.b(y)


def test_renormalising_hook_once_per_autograd_value():
    """The relu made an identity returns the conv's tensor: hooked once, not twice.  The in-place add keeps
    the tensor object but makes a new autograd value (its version moved): hooked again.  Hooked values: the
    input, conv a's output, the add's, conv b's output (before: the relu's too, the same tensor as conv a's); the
    input gradient's support is unchanged (two 3-taps: 5 wide)."""
    gm = _runnable(trace(_Aliases()).graph_module, torch.float64)
    runner = Runner(gm)
    calls = []
    inner = runner._renormalise
    runner._renormalise = lambda g: calls.append(tuple(g.shape)) or inner(g)
    alt = runner.shapes((1, 1, 40), torch.float64)
    x = torch.rand(1, 1, 32, dtype=torch.float64, requires_grad=True)
    out, _ = runner.run(x.clone(), alt)
    seed = torch.zeros_like(out)
    seed[0, 0, 10] = 1.0
    (g,) = torch.autograd.grad(out, x, seed)
    assert calls == [(1, 1, 28), (1, 2, 30), (1, 2, 30), (1, 1, 32)], calls
    assert torch.nonzero(g[0, 0]).flatten().tolist() == [10, 11, 12, 13, 14]


class _FixedSize(nn.Module):
    """Two convs, a reshape to a fixed size (the model accepts length 32 only), a conv."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv1d(1, 4, 3, padding=1)
        self.b = nn.Conv1d(4, 4, 3, padding=1)
        self.c = nn.Conv1d(4, 1, 3, padding=1)

    def forward(self, x):
        return self.c(self.b(self.a(x)).reshape(1, 4, 32))


def _counting(pr: Prober, calls: list) -> None:
    inner = pr.runner.shapes

    def shapes(shape, *args, **kwargs):
        calls.append(tuple(shape))
        return inner(shape, *args, **kwargs)

    pr.runner.shapes = shapes


def test_refused_size_remembered_only_for_graphs_holding_the_failing_node():
    """A size refused at the reshape is not run again for a later node whose cut holds the reshape (it
    computes the reshape exactly as before); a node upstream of the reshape still runs it, and accepts it."""
    a = rfgraph.analyze(_FixedSize(), (1, 1, 32))
    names = {r.name: r.fx_name or r.name for r in a}
    pr = Prober(a.graph_module, [names["c"], names["a"]], torch.float32, 0)
    pr.select(names["c"])
    calls: list = []
    _counting(pr, calls)
    assert pr.try_shapes((1, 1, 48)) is None and calls == [(1, 1, 48)]
    assert pr.refused[(1, 1, 48)] == frozenset({"reshape"})
    assert pr.try_shapes((1, 1, 32)) is not None
    pr.select(names["c"])  # a new runner, the same graph: the refusal is known
    calls.clear()
    _counting(pr, calls)
    assert pr.try_shapes((1, 1, 48)) is None and calls == []
    pr.select(names["a"])  # upstream of the reshape: runs, and accepts
    calls.clear()
    _counting(pr, calls)
    assert pr.try_shapes((1, 1, 48)) is not None and calls == [(1, 1, 48)]


def test_refused_size_no_real_run_when_the_graph_runs_on_meta():
    """A refused size fails on meta; with a shape the model accepts (``accepted``), a meta run there shows
    that every op runs on meta, so the size is refused without the real run (which costs a forward)."""
    gm = _runnable(trace(_FixedSize()).graph_module)
    devices: list = []

    def recording(runner):
        inner = runner.run

        def run(x, alt, shape_only=False):
            devices.append(x.device.type)
            return inner(x, alt, shape_only)

        runner.run = run
        return runner

    runner = recording(Runner(gm))
    try:
        runner.shapes((1, 1, 48), torch.float32, (1, 1, 32))
        raise AssertionError("length 48 accepted")
    except RuntimeError:
        pass
    assert devices == ["meta", "meta"] and runner.refused_at == ["reshape"]
    devices.clear()
    runner = recording(Runner(gm))
    try:
        runner.shapes((1, 1, 48), torch.float32)
        raise AssertionError("length 48 accepted")
    except RuntimeError:
        pass
    assert devices == ["meta", "cpu"] and runner.refused_at == ["reshape", "reshape"]


class _Norms(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, stride=2)
        self.bn = nn.BatchNorm2d(4)
        self.b = nn.Conv2d(4, 2, 3, padding=1)

    def forward(self, x):
        if x.shape[-1] > 4:  # defeats torch.fx: exported, batch norm is aten.batch_norm
            x = x * 1
        return self.b(F.relu(self.bn(self.a(x))))


def test_shape_only_runs_skip_batch_norm_with_the_same_shapes():
    """Shape-only runs return batch norm's input as its output (its meta decomposition was half the time of
    a shape-only run of an exported smp model): every node's shape equals the real run's."""
    traced = export_trace(_Norms().eval(), (torch.rand(1, 3, 20, 24),))
    assert any("batch_norm" in str(n.target) for n in traced.graph_module.graph.nodes)
    gm = _runnable(traced.graph_module)
    runner = Runner(gm)
    meta = runner.shapes((1, 3, 20, 24), torch.float32)
    with torch.no_grad():
        _, real = Runner(gm).run(torch.rand(1, 3, 20, 24), None)
    assert {n.name: s for n, s in meta.items()} == {n.name: s for n, s in real.items()}


class MadeMask(nn.Module):
    """A constant made in ``forward`` on the input's device, as MONAI's SwinUNETR makes its shifted-window
    attention mask (``torch.zeros(..., device=x.device)``, then slices filled).  Control flow on a shape
    defeats torch.fx: the graph is exported, and exported from a model on ``meta`` it records
    ``aten.zeros(..., device=meta)``."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv1d(1, 2, 3, padding=1)
        self.b = nn.Conv1d(2, 1, 5)

    def forward(self, x):
        if x.shape[-1] > 4:
            x = x * 1
        mask = torch.zeros(1, 1, x.shape[-1], device=x.device)
        mask[..., : x.shape[-1] // 2] = 1.0
        return self.b(self.a(x) + mask)


def test_tensors_made_by_the_graph_follow_the_runs_device():
    """Analysed on ``meta``: the copy's real runs make the mask on the CPU (before: a meta tensor met the
    CPU activations, "Tensor on device meta is not on the expected device cpu").  conv 3 p1 (rf 3, start
    -1), conv 5: rf 7, stride 1, start -1."""
    with torch.device("meta"):
        net = MadeMask()
    a = rfgraph.analyze(net, (1, 1, 32))
    assert a.meta["trace"] == "export"
    assert any(n.kwargs.get("device") == torch.device("meta") for n in a.graph_module.graph.nodes)
    r = probe(net, "output", analysis=a)
    assert (r.rf, r.stride, r.start) == ((7,), (1,), (-1,))


class _Chain(nn.Module):
    """conv -> batch norm -> add of a skip -> flatten / unflatten -> conv."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv1d(1, 2, 3)
        self.bn = nn.BatchNorm1d(2)
        self.b = nn.Conv1d(2, 1, 3)

    def forward(self, x):
        y = self.a(x)
        z = (self.bn(y) + y).flatten(1).unflatten(1, (2, -1))
        return self.b(z)


def _hooked_shapes(sparse: bool):
    gm = _runnable(trace(_Chain()).graph_module, torch.float32)
    runner = Runner(gm)
    runner.sparse_hooks = sparse
    calls: list = []
    inner = runner._renormalise
    runner._renormalise = lambda g: calls.append(tuple(g.shape)) or inner(g)
    alt = runner.shapes((1, 1, 40), torch.float32)
    x = torch.rand(1, 1, 32, requires_grad=True)
    out, _ = runner.run(x.clone(), alt)
    seed = torch.zeros_like(out)
    seed[0, 0, 12] = 1.0
    (g,) = torch.autograd.grad(out, x, seed)
    return calls, torch.nonzero(g[0, 0]).flatten().tolist()


def test_sparse_hooks_skip_ops_that_move_copy_or_boundedly_scale():
    """With `Runner.sparse_hooks` (support-safe graphs) the batch norm, the add, the flatten and the
    unflatten outputs are not renormalised; the input, both convs' outputs are.  Every output otherwise.
    The gradient's support is the same: two 3-taps, unit 12 reads [12, 16]."""
    dense, support = _hooked_shapes(False)
    sparse, support_sparse = _hooked_shapes(True)
    assert support == support_sparse == [12, 13, 14, 15, 16]
    assert sorted(sparse) == sorted([(1, 1, 28), (1, 2, 30), (1, 1, 32)])
    # input, a (two users), unflatten (its user is a conv), b; not bn (its one user, the add, hands it its own
    # gradient), the add (flattened), the flatten (unflattened): `Runner._move_user`; before, all 7
    assert sorted(dense) == sorted([(1, 1, 28), (1, 2, 30), (1, 2, 30), (1, 1, 32)])


class _Moves(nn.Module):
    """conv a -> transpose -> + a constant (broadcast over positions) -> LayerNorm over channels -> transpose
    -> conv b, and a mean over positions (context) added back before conv b."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv1d(1, 4, 3)
        self.norm = nn.LayerNorm(4)
        self.b = nn.Conv1d(4, 1, 3)
        self.register_buffer("c", torch.ones(1, 1, 4))

    def forward(self, x):
        y = self.norm(self.a(x).transpose(1, 2) + self.c).transpose(1, 2)
        return self.b(y + y.mean(2, keepdim=True))


def test_dense_hooks_skip_a_value_whose_one_user_moves_its_gradient():
    """Not support-safe (LayerNorm): every value is renormalised, except one whose only user hands it its
    own gradient moved (`Runner._move_user`): conv a's output (transposed), the transpose (added to a
    constant of another shape: the transpose has the add's shape), the norm (transposed back).  Hooked by
    hand: the input (1, 1, 32), the add (1, 30, 4) (its user is the norm), the second transpose (two users),
    the add (1, 4, 30) (its user is a conv), conv b (1, 1, 28); and the mean (broadcast in its add, whose
    backward sums over positions: hooked, but detached as context, so no gradient reaches it).  Unit 12 reads
    two 3-taps: [12, 16]."""
    gm = _runnable(trace(_Moves()).graph_module, torch.float64)
    runner = Runner(gm)
    calls: list = []
    inner = runner._renormalise
    runner._renormalise = lambda g: calls.append(tuple(g.shape)) or inner(g)
    alt = runner.shapes((1, 1, 40), torch.float64)
    x = torch.rand(1, 1, 32, dtype=torch.float64, requires_grad=True)
    out, _ = runner.run(x.clone(), alt)
    assert runner.skipped_hooks == 3 and runner.cut == 1
    seed = torch.zeros_like(out)
    seed[0, 0, 12] = 1.0
    (g,) = torch.autograd.grad(out, x, seed)
    assert sorted(calls) == sorted([(1, 1, 32), (1, 30, 4), (1, 4, 30), (1, 4, 30), (1, 1, 28)]), calls
    assert torch.nonzero(g[0, 0]).flatten().tolist() == [12, 13, 14, 15, 16]


def test_sparse_hooks_only_for_support_safe_cuts():
    """The prober renormalises every op's output in a cut that is not support-safe (a LayerNorm's backward
    subtracts a mean: its incoming gradient must stay random), sparsely in one that is."""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv1d(1, 4, 3)
            self.norm = nn.LayerNorm(4)
            self.b = nn.Conv1d(4, 1, 3)

        def forward(self, x):
            y = self.a(x)
            return self.b(self.norm(y.transpose(1, 2)).transpose(1, 2))

    a = rfgraph.analyze(Net(), (1, 1, 32))
    names = {r.name: r.fx_name or r.name for r in a}
    pr = Prober(a.graph_module, [names["b"], names["a"]], None, 0)
    assert pr.dtype == torch.float64 and not pr.safe
    pr.select(names["b"])
    assert not pr.runner.sparse_hooks
    pr.select(names["a"])
    assert pr.runner.sparse_hooks


class _NormAfterFixedView(nn.Module):
    """conv 3 p1, a reshape baked to length 32 (the model accepts no other length), an instance norm (its
    statistics span the whole length: a context path), conv 3 p1."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv1d(1, 4, 3, padding=1)
        self.norm = nn.InstanceNorm1d(4)
        self.b = nn.Conv1d(4, 1, 3, padding=1)

    def forward(self, x):
        return self.b(self.norm(self.a(x).reshape(1, 4, 32)))


def test_instance_norm_statistics_cut_by_structure_in_a_fixed_size_graph():
    """No run at another length tells the context apart (the refusal comes before the norm, so the partial
    shape-only run does not reach it): the instance norm's statistics are detached by structure, and the local
    field is measured -- two 3-taps p1: rf 5, stride 1, start -2 (before: the statistics were kept, and
    every unit read the whole input)."""
    net = _NormAfterFixedView()
    a = rfgraph.analyze(net, (1, 1, 32))
    r = a["b"]
    assert r.global_context and (r.rf, r.start) == ((5,), (-2,))
    p = probe(net, "b", analysis=a)
    assert (p.rf, p.stride, p.start) == ((5,), (1,), (-2,))
    assert "instance-norm statistics detached" in p.axes[0].note


def test_instance_norm_of_an_exported_graph_reads_aten_argument_order():
    """``aten.instance_norm(input, weight, bias, running_mean, running_var, ...)`` puts the affine parameters
    before the statistics (F.instance_norm after): with the statistics detached by structure, the runner
    computes the value the graph itself computes (before: the weight was read as running_mean and dropped)."""
    net = _NormAfterFixedView()
    net.norm = nn.InstanceNorm1d(4, affine=True)
    gm = _runnable(export_trace(net, (torch.rand(1, 1, 32),)).graph_module, torch.float64)
    runner = Runner(gm)
    x = torch.rand(1, 1, 32, dtype=torch.float64)
    out, _ = runner.run(x.clone().requires_grad_(True), {})
    assert runner.structural_cuts == 1
    (expected,) = gm(x)
    torch.testing.assert_close(out.detach(), expected)


def _windows_of_the_wrapped_units(model) -> dict[int, tuple]:
    """The probe's window of every unit of the model's output at the analysed length (the mask fixes it)."""
    a = rfgraph.analyze(model, (1, 1, 16))
    r = last(a)
    pr = Prober(a.graph_module, [r.fx_name], torch.float64, 0)
    pr.select(r.fx_name)
    assert pr.try_shapes((1, 1, 32)) is None  # the model accepts no other length
    units, los, his, *_ = pr.measure((1, 1, 16), 0, {}, lambda n: list(range(n)), dim_hint=2)  # (B, C, 16)
    assert list(units) == list(range(16))
    return {u: (los[u], his[u]) for u in (0, 1, 14, 15)}


@pytest.mark.parametrize("how", ["add", "fill", "sdpa"])
def test_an_additive_mask_of_minus_100_hides_its_entries(how):
    """Hand derivation: the conv gives position p the field [p - 1, p + 1]; the wrapped window holds positions
    14, 15, 0, 1, and the mask keeps {14, 15} and {0, 1} apart.  Hidden (-100): units 14, 15 read [13, 16],
    clipped [13, 15], units 0, 1 read [-1, 2], clipped [0, 2].  A softmax weight e^-100 of its unmasked
    value changes no float output, though its gradient is not zero: the probe takes it as -inf (before,
    in float64, it read [0, 15] for those units)."""
    got = _windows_of_the_wrapped_units(ShiftedWindows1d(-100.0, how))
    assert got == {0: (0, 2), 1: (0, 2), 14: (13, 15), 15: (13, 15)}


@pytest.mark.parametrize("how", ["add", "fill"])
def test_an_additive_mask_above_minus_100_hides_nothing(how):
    """-99 is a bias, not a mask (`HIDING_LOGIT`): the wrapped window reads both ends, [0, 15] clipped."""
    assert _windows_of_the_wrapped_units(ShiftedWindows1d(-99.0, how)) == {u: (0, 15) for u in (0, 1, 14, 15)}
