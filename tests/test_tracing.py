"""The tracing front end: torchvision-compatible node names, no mutation of the user's model, clear errors."""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.feature_extraction import get_graph_node_names

import rfgraph
from rfgraph.errors import TraceError
from rfgraph.tracing import trace

#: Models with no torchvision.ops modules: torchvision's feature extraction treats those as leaves,
#: while rfgraph traces through them, so only these have identical graphs.
GOLDEN_MODELS = {
    "resnet18": {},
    "vgg11": {},
    "densenet121": {},
    "inception_v3": {"init_weights": False},
    "alexnet": {},
    "squeezenet1_0": {},
    "googlenet": {"init_weights": False},
    "shufflenet_v2_x0_5": {},
    "mnasnet0_5": {},
}


def _meta_model(arch: str, **kwargs) -> nn.Module:
    with torch.device("meta"):
        return torchvision.models.get_model(arch, weights=None, **kwargs)


@pytest.mark.parametrize("arch", list(GOLDEN_MODELS))
def test_node_names_match_torchvision(arch):
    """Every traced node, in order, carries the name torchvision's get_graph_node_names gives (eval graph)."""
    model = _meta_model(arch, **GOLDEN_MODELS[arch])
    expected = get_graph_node_names(model)[1]
    traced = trace(model)
    names = [traced.name(n) for n in traced.graph_module.graph.nodes if n.op != "output"]
    assert names == expected


def test_analysis_nodes_use_the_same_names():
    """analysis.nodes lists the tensor nodes (shape arithmetic such as x.size() is not a tensor) in graph order,
    under torchvision's names, followed by the graph output."""
    model = _meta_model("shufflenet_v2_x0_5")
    expected = get_graph_node_names(model)[1]
    a = rfgraph.analyze(model, (1, 3, 64, 64))
    assert a.nodes[-1] == "output"
    tensor_nodes = a.nodes[:-1]
    assert set(tensor_nodes) <= set(expected)
    assert [n for n in expected if n in set(tensor_nodes)] == tensor_nodes
    assert "stage2.0.branch2.0" in tensor_nodes


def test_suffixes_count_repeated_calls():
    """A module called twice gets "relu" then "relu_1"; functions get the module path prefix
    (torchvision naming): "block.add" for an add inside `block`."""

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 3, padding=1)
            self.relu = nn.ReLU()

        def forward(self, x):
            return self.relu(self.relu(self.conv(x)) + x)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = Block()

        def forward(self, x):
            return self.block(x)

    traced = trace(Net())
    names = [traced.name(n) for n in traced.graph_module.graph.nodes]
    assert names == ["x", "block.conv", "block.relu", "block.add", "block.relu_1", "output"]


class Mixed(nn.Module):
    """Submodules in different modes, one with a shape-dependent branch (fx cannot trace it)."""

    def __init__(self, shape_branch: bool = False):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.bn = nn.BatchNorm2d(2)
        self.drop = nn.Dropout(0.5)
        self.shape_branch = shape_branch

    def forward(self, x):
        if self.shape_branch and x.shape[-1] > 4:
            x = x * 2
        return self.drop(self.bn(self.conv(x)))


def _snapshot(model: nn.Module):
    return (
        {name: m.training for name, m in model.named_modules()},
        {k: v.clone() for k, v in model.state_dict().items()},
        {k: p.requires_grad for k, p in model.named_parameters()},
        {name: (len(m._forward_hooks), len(m._forward_pre_hooks)) for name, m in model.named_modules()},
        {name: sorted(vars(m)) for name, m in model.named_modules()},
    )


def _assert_same(before, after):
    assert before[0] == after[0], "training flags changed"
    assert before[1].keys() == after[1].keys()
    assert all(torch.equal(before[1][k], after[1][k]) for k in before[1]), "state changed"
    assert before[2:] == after[2:]


@pytest.mark.parametrize("shape_branch", [False, True], ids=["fx", "export_fallback"])
def test_model_is_not_mutated(shape_branch):
    """analyze() traces in eval mode but restores every module's own training flag (here: model in train
    mode with its batch norm in eval), and leaves parameters, buffers (batch-norm running stats),
    requires_grad flags, hooks and attributes as they were, for the fx path and the export fallback."""
    model = Mixed(shape_branch).train()
    model.bn.eval()
    model.conv.weight.requires_grad_(False)
    before = _snapshot(model)
    a = rfgraph.analyze(model, (2, 1, 8, 8))
    assert a.meta["trace"] == ("export" if shape_branch else "fx")
    _assert_same(before, _snapshot(model))
    assert model.training and not model.bn.training and model.drop.training
    # the result is still right: conv k=3, then pointwise bn / dropout
    assert a[a.nodes[-2]].rf == (3, 3)


def test_model_is_not_mutated_by_trace_errors():
    """A failed trace restores the training flags as well."""
    model = DataDependent().train()
    before = _snapshot(model)
    with pytest.raises(TraceError):
        trace(model)
    _assert_same(before, _snapshot(model))


class DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3)

    def forward(self, x):
        if x.sum() > 0:  # depends on the values, not the shapes
            return self.conv(x)
        return x


def test_data_dependent_control_flow_is_a_clear_trace_error():
    """fx cannot branch on a traced value, and torch.export cannot guard on a data-dependent value:
    one TraceError names the model and both causes, and gives a hint; the chain keeps the original error."""
    with pytest.raises(TraceError) as info:
        rfgraph.analyze(DataDependent(), (1, 1, 8, 8))
    message = str(info.value)
    assert "DataDependent" in message
    assert "control flow" in message
    assert "torch.export" in message and "data-dependent" in message
    assert "Hint" in message and "leaf_modules" in message
    assert info.value.__cause__ is not None
    assert isinstance(info.value, rfgraph.RFGraphError)


def test_trace_without_input_shape_says_export_was_not_tried():
    with pytest.raises(TraceError, match="torch.export was not tried"):
        trace(DataDependent())


def test_leaf_modules_make_untraceable_code_opaque():
    """The hint works: with the data-dependent module as a leaf the model traces; the leaf has no rule, so
    its node is either measured by the probe fallback (rf 1: both branches are pointwise) or unknown with
    the module named, never guessed."""

    class Sign(nn.Module):
        def forward(self, x):
            if x.sum() > 0:
                return x * 2
            return -x

    class Outer(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = Sign()
            self.conv = nn.Conv2d(1, 1, 3)

        def forward(self, x):
            return self.conv(self.inner(x))

    a = rfgraph.analyze(Outer(), (1, 1, 10, 10), leaf_modules=[Sign])
    assert a["inner"].shape == (1, 1, 10, 10)
    assert a["conv"].shape == (1, 1, 8, 8)
    if a["inner"].source == "unknown":  # no fallback could measure it
        assert "Sign" in a["inner"].reason
        assert a["conv"].source == "unknown" and a["conv"].rf == (None, None)
    else:  # measured by the numeric probe: both branches are position by position
        assert a["inner"].source == "probed" and a["inner"].rf == (1, 1)
        assert a["conv"].rf == (3, 3)


def test_not_a_module():
    with pytest.raises((TraceError, TypeError)):
        rfgraph.analyze(lambda x: x, (1, 1, 4, 4))


def _export_cases():
    from test_graphs import CausalTCN, SEBlock, TinyViT, UpSkip

    return {
        "resnet18": (lambda: torchvision.models.resnet18(weights=None), (1, 3, 64, 64)),
        "se_block": (SEBlock, (1, 1, 8, 8)),
        "causal_tcn": (CausalTCN, (1, 2, 20)),
        "tiny_vit": (TinyViT, (2, 3, 16, 16)),
        "bilinear_skip": (lambda: UpSkip(nn.Upsample(scale_factor=2, mode="linear")), (1, 1, 8)),
    }


@pytest.mark.parametrize("case", ["resnet18", "se_block", "causal_tcn", "tiny_vit", "bilinear_skip"])
def test_export_graph_gives_the_same_fields(case):
    """The torch.export graph (aten ops, names rebuilt from nn_module_stack) and the fx graph of the same
    model give the same rf / stride / start / global flags on every node name they share, and at the output."""
    from rfgraph.tracing import export_trace

    build, shape = _export_cases()[case]
    model = build().eval()
    fx_analysis = rfgraph.analyze(model, shape)
    ex_analysis = rfgraph.analyze(model, shape, traced=export_trace(model, (torch.zeros(shape),)))
    assert ex_analysis.meta["trace"] == "export"

    def key(r):
        return r.rf, r.rf_min, r.stride, r.start, r.is_global, r.global_context, r.source

    shared = [n for n in fx_analysis.nodes if n in set(ex_analysis.nodes)]
    assert len(shared) >= len(fx_analysis.nodes) // 2
    assert [n for n in shared if key(fx_analysis[n]) != key(ex_analysis[n])] == []
    assert key(fx_analysis["output"]) == key(ex_analysis["output"])


def test_bare_layer_as_the_model():
    """Regression: a single torch.nn layer passed as the model (fx cannot trace ConvTranspose1d's own forward,
    so the export fallback runs): its node gets the op's name, never an empty one.
    ConvTranspose1d k=3, s=2: rf 2, rf_min 1, stride 1/2 (see tests/rules/test_windowed.py)."""
    a = rfgraph.analyze(nn.ConvTranspose1d(1, 1, 3, stride=2), (1, 1, 5))
    assert "" not in a.nodes
    assert all(a.nodes)
    r = a[a.nodes[-2]]
    assert (r.rf, r.rf_min, r.stride) == ((2,), (1,), (Fraction(1, 2),))
    a = rfgraph.analyze(nn.Conv2d(1, 1, 3, stride=2), (1, 1, 9, 9))
    assert all(a.nodes) and a[a.nodes[-2]].rf == (3, 3)


class _InplaceStem(nn.Module):
    """conv -> in-place ReLU -> a second conv -> in-place add of a buffer: exported, the in-place ops are
    aten ``relu_`` / ``add_`` nodes, which `fx.Graph.eliminate_dead_code` keeps as impure."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3)
        self.relu = nn.ReLU(inplace=True)
        self.body = nn.Sequential(*[nn.Conv2d(4, 4, 3, padding=1) for _ in range(6)])

    def forward(self, x):
        y = self.relu(self.stem(x))
        z = self.body(y)
        z.add_(1.0)
        return z


def test_cut_of_an_exported_graph_keeps_only_what_the_node_needs():
    """A cut at the stem of an exported model is the stem (placeholder, conv weights, conv, relu_, output),
    not the whole model; a cut at the end keeps the in-place add that mutates the value it returns."""
    from rfgraph.tracing import cut, export_trace

    model = _InplaceStem().eval()
    x = torch.rand(1, 3, 12, 12)
    traced = export_trace(model, (x,))
    gm = traced.graph_module
    relu = next(n for n in gm.graph.nodes if "relu" in str(n.target))
    stem = cut(gm, [relu.name])
    ops = [n for n in stem.graph.nodes if n.op == "call_function"]
    assert len(ops) == 2, [n.format_node() for n in stem.graph.nodes]
    with torch.no_grad():
        (got,) = stem(x)
        assert torch.equal(got, torch.relu(model.stem(x)))
    last = next(n for n in reversed(list(gm.graph.nodes)) if n.op == "call_function" and "add_" in str(n.target))
    whole = cut(gm, [last.name])
    with torch.no_grad():
        (got,) = whole(x)
        assert torch.allclose(got, model(x))


def test_cut_keeps_an_in_place_op_on_a_kept_value_before_the_node():
    """``y.mul_(2)`` (not an ancestor of ``z`` in the graph: ``z`` reads ``y``'s node) mutates ``y`` before
    ``z`` reads it: the cut at ``z`` must keep it, or ``z`` would be computed from the unmutated ``y``."""
    from rfgraph.tracing import cut

    class M(nn.Module):
        def forward(self, x):
            y = x + 1
            y.mul_(2)
            return y - 3

    gm = torch.fx.symbolic_trace(M())
    z = next(n for n in gm.graph.nodes if n.op == "call_function" and n.target.__name__ == "sub")
    x = torch.rand(5)
    (got,) = cut(gm, [z.name])(x)
    assert torch.equal(got, (x + 1) * 2 - 3)


class _SliceFilledMask(nn.Module):
    """A mask made in ``forward`` and filled slice by slice, as MONAI's SwinUNETR builds its shifted-window
    attention mask (``img_mask[:, d, h, w, :] = cnt``): exported, each fill is ``fill_`` or ``copy_`` into a ``slice`` of a
    ``slice`` of the ``zeros``, not into the zeros node itself.  Control flow on a shape defeats torch.fx."""

    def forward(self, x):
        if x.shape[-1] > 4:
            x = x * 1
        mask = torch.zeros(1, 1, x.shape[-1])
        mask[:, :, :4] = 1.0
        mask[:, :, 6:8] = 2.0
        return x * mask


def test_cut_keeps_in_place_fills_of_a_view_of_a_kept_value():
    """The cut at the output keeps the in-place nodes writing into slices of the mask (before: only in-place
    ops on the kept node itself were kept, so the mask stayed zeros and the output did not depend on the input;
    SwinUNETR's probe then read across its shifted windows' masked borders)."""
    from rfgraph.tracing import cut, export_trace

    model = _SliceFilledMask()
    x = torch.rand(1, 1, 12)
    gm = export_trace(model, (x,)).graph_module
    assert any(str(n.target).split(".")[-2] in ("copy_", "fill_") for n in gm.graph.nodes if n.op == "call_function")
    out = next(n for n in gm.graph.nodes if n.op == "output").args[0][0]
    (got,) = cut(gm, [out.name])(x)
    expected = x * torch.tensor([1.0] * 4 + [0.0] * 2 + [2.0] * 2 + [0.0] * 4)
    assert torch.equal(got, expected)
