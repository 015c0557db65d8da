"""Never touch the model: analyze, probe, validate, erf and the queries leave parameters, buffers, hooks and
training flags exactly as they were, even when ``forward`` changes a buffer in place (before: +1 per
``analyze()`` call) or the model is in training mode with batchnorm and dropout.

Tracing runs on a copy of the module tree that shares the parameters and owns its buffers
(`rfgraph.tracing._tracing_copy`); in-place ops on model tensors in the symbolic pass run on private copies;
shape execution runs on stand-in copies; the probe and the ERF use sanitized or traced copies.
"""

import warnings

import pytest
import torch
from torch import nn

import rfgraph
import rfgraph.queries as Q


class Stateful(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)
        self.conv2 = nn.Conv2d(4, 4, 3, stride=2)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self.register_buffer("acc", torch.zeros(4))

    def body(self, x):
        return self.conv2(self.drop(torch.relu(self.bn(self.conv1(x)))))

    def forward(self, x):
        self.step.add_(1)
        self.acc += 1
        self.acc[0] = 7
        return self.body(x)


class StatefulExport(Stateful):
    """fx cannot trace the shape test: torch.export (after a failed fx trace that ran part of forward)."""

    def forward(self, x):
        self.step.add_(1)
        if x.shape[-1] > 4:
            x = x + 0
        return self.body(x)


def _snapshot(m: nn.Module):
    state = {k: (v.dtype, v.device, v.clone()) for k, v in m.state_dict(keep_vars=True).items()}
    flags = {name: sub.training for name, sub in m.named_modules()}
    hooks = {name: (dict(sub._forward_hooks), dict(sub._forward_pre_hooks), dict(sub._backward_hooks))
             for name, sub in m.named_modules()}
    grads = {name: p.grad for name, p in m.named_parameters()}
    return state, flags, hooks, grads


def _assert_same(m: nn.Module, before):
    state, flags, hooks, grads = _snapshot(m)
    assert state.keys() == before[0].keys()
    for k, (dtype, device, value) in state.items():
        assert (dtype, device) == before[0][k][:2], k
        assert torch.equal(value, before[0][k][2]), k
    assert flags == before[1]
    assert hooks == before[2]
    assert all(g is None for g in grads.values()) and grads.keys() == before[3].keys()


@pytest.fixture(params=[Stateful, StatefulExport], ids=["fx", "export"])
def model(request):
    torch.manual_seed(0)
    m = request.param()
    m.train()
    m.conv1.register_forward_hook(lambda mod, inp, out: None)
    m.register_forward_pre_hook(lambda mod, inp: None)
    return m


SHAPE = (1, 3, 16, 16)


def test_analyze(model):
    before = _snapshot(model)
    for _ in range(3):
        a = rfgraph.analyze(model, SHAPE)
    assert a["conv2"].rf == (5, 5)
    assert a.meta["trace"] == ("fx" if type(model) is Stateful else "export")
    _assert_same(model, before)


def test_probe_and_validate(model):
    before = _snapshot(model)
    p = rfgraph.probe(model, "conv2", SHAPE)
    assert p.rf == (5, 5)
    report = rfgraph.validate(model, SHAPE)
    assert report.ok
    _assert_same(model, before)


def test_erf(model):
    before = _snapshot(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = rfgraph.erf(model, "conv2", 2, progress=False)
        r64 = rfgraph.erf(model, "conv2", 2, dtype=torch.float64, progress=False)
    assert r.box == r64.box
    _assert_same(model, before)


def test_queries(model):
    before = _snapshot(model)
    a = rfgraph.analyze(model, SHAPE)
    Q.unit_box(a, "conv2", (1, 1))
    Q.minimal_input_size(a)
    Q.size_classes(a)
    Q.alignment_report(a)
    Q.coverage(a, "conv2")
    plan = Q.target_rf(a, "conv2", 7)
    assert plan.solutions or a.meta["trace"] == "export"  # an exported graph has no conv modules to edit
    _assert_same(model, before)


def test_meta_model_flags_are_restored():
    with torch.device("meta"):
        m = Stateful()
    m.train()
    m.bn.eval()
    flags = {n: s.training for n, s in m.named_modules()}
    rfgraph.analyze(m, SHAPE)
    assert {n: s.training for n, s in m.named_modules()} == flags
