"""`OpCall`, `RuleSet` (one lookup, read-only tables, override), `hand_over`, and the check_shapes debug mode."""

from __future__ import annotations

import operator

import pytest
import torch
import torch.nn.functional as F
from rfcheck import Lambda
from torch import nn

import rfgraph
from rfgraph.errors import RuleError
from rfgraph.rules import DEFAULT_RULES, OpCall, RuleSet, hand_over
from rfgraph.rules.pointwise import identity_rule, merge_rule
from rfgraph.rules.shapes import reshape_rule
from rfgraph.rules.windowed import conv_module_rule
from rfgraph.values import SymTensor


def _call(target, *args, module=None, **kwargs) -> OpCall:
    return OpCall(None, target, module, args, kwargs)


# ---------------------------------------------------------------------------
# OpCall
# ---------------------------------------------------------------------------


def test_opcall_arguments_and_description():
    x = SymTensor.input((1, 2, 8, 8))
    call = _call(F.conv2d, x, torch.zeros(3, 2, 3, 3), stride=2)
    assert call.arg(0, "input") is x
    assert call.arg(3, "stride") == 2 and call.arg(4, "padding", 0) == 0
    assert call.sym_args() == [x]
    assert call.describe() == "function torch._VariableFunctionsClass.conv2d"  # torch names its builtins so
    assert _call(F.interpolate, x).describe() == "function torch.nn.functional.interpolate"
    assert _call("view", x).describe() == "method Tensor.view"
    assert _call("0", x, module=nn.ReLU()).describe() == "module torch.nn.modules.activation.ReLU"
    with pytest.raises(RuleError, match="missing argument 'weight'"):
        _call(F.conv2d, x).arg(1, "weight")


def test_opcall_with_args_keeps_node_and_module():
    x = SymTensor.input((1, 2, 8))
    call = _call("0", x, module=nn.Conv1d(2, 2, 3))
    other = call.with_args((x, x), module=None)
    assert other.args == (x, x) and other.module is None and call.module is not None


# ---------------------------------------------------------------------------
# RuleSet: one lookup
# ---------------------------------------------------------------------------


def test_lookup_modules_functions_methods():
    """Modules by MRO, functions by object, methods by name; a constant tensor's method with a
    SymTensor argument uses the torch function of the same name."""

    class MyConv(nn.Conv2d):
        pass

    x = SymTensor.input((1, 2, 8, 8))
    assert DEFAULT_RULES.lookup(_call("c", x, module=MyConv(2, 2, 3))) is conv_module_rule
    assert DEFAULT_RULES.lookup(_call(operator.add, x, 1)) is merge_rule
    assert DEFAULT_RULES.lookup(_call("view", x, 4, 64)) is reshape_rule
    assert DEFAULT_RULES.lookup(_call("add", torch.ones(1), x)) is DEFAULT_RULES.functions[torch.add]
    assert DEFAULT_RULES.lookup(_call(torch.fft.fft2, x)) is None
    assert DEFAULT_RULES.lookup(_call("c", x, module=nn.Module())) is None


def test_defaults_are_read_only_and_override_copies():
    with pytest.raises(TypeError):
        DEFAULT_RULES.modules[nn.ReLU] = identity_rule
    with pytest.raises(TypeError):
        DEFAULT_RULES.functions[torch.relu] = identity_rule
    with pytest.raises(TypeError):
        DEFAULT_RULES.methods["relu"] = identity_rule

    def mine(call):
        return call.args[0]

    class Box(nn.Module):
        def forward(self, x):
            return x

    custom = DEFAULT_RULES.override(modules={Box: mine}, methods={"relu": mine})
    assert isinstance(custom, RuleSet) and custom is not DEFAULT_RULES
    assert custom.lookup(_call("b", SymTensor.input((1, 1, 4)), module=Box())) is mine
    assert custom.methods["relu"] is mine and DEFAULT_RULES.methods["relu"] is identity_rule
    assert Box not in DEFAULT_RULES.modules
    # a subclass picks up a rule registered after its MRO was first looked up in another set
    assert DEFAULT_RULES.for_module(Box()) is None and custom.for_module(Box()) is mine


def test_hand_over_without_a_pass_marks_unknown():
    x = SymTensor.input((1, 1, 6))
    out = hand_over(_call(torch.flip, x, [2]), x, "flip reverses positions", shape=(1, 1, 6))
    assert out.unknown == "function torch._VariableFunctionsClass.flip: flip reverses positions"
    assert out.shape == (1, 1, 6)


# ---------------------------------------------------------------------------
# check_shapes: the debug mode for rule authors
# ---------------------------------------------------------------------------


class Halve(nn.Module):
    """Average pooling by 2 (a stand-in for a custom op)."""

    def forward(self, x):
        return F.avg_pool2d(x, 2)


def _wrong_rule(call: OpCall) -> SymTensor:
    """Deliberately wrong: forgets that the op halves H and W."""
    return call.args[0]


def test_check_shapes_names_the_rule_that_disagrees():
    """Halve maps (1, 1, 8, 8) to (1, 1, 4, 4); the wrong rule claims (1, 1, 8, 8)."""
    rules = DEFAULT_RULES.override(modules={Halve: _wrong_rule})
    model = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), Halve())
    rfgraph.analyze(model, (1, 1, 8, 8), rules=rules, fallback="unknown")  # not checked: silently wrong
    with pytest.raises(RuleError) as info:
        rfgraph.analyze(model, (1, 1, 8, 8), rules=rules, fallback="unknown", check_shapes=True)
    msg = str(info.value)
    assert "rule _wrong_rule" in msg and f"module {Halve.__module__}.Halve" in msg and "node '1'" in msg
    assert "gives shape (1, 1, 8, 8), torch gives (1, 1, 4, 4)" in msg


def test_check_shapes_from_the_environment(monkeypatch):
    rules = DEFAULT_RULES.override(modules={Halve: _wrong_rule})
    monkeypatch.setenv("RFGRAPH_CHECK_SHAPES", "1")
    with pytest.raises(RuleError, match="torch gives"):
        rfgraph.analyze(nn.Sequential(Halve()), (1, 1, 8, 8), rules=rules, fallback="unknown")
    monkeypatch.setenv("RFGRAPH_CHECK_SHAPES", "0")
    rfgraph.analyze(nn.Sequential(Halve()), (1, 1, 8, 8), rules=rules, fallback="unknown")


def test_check_shapes_passes_on_the_default_rules():
    """Every default rule met on a small mixed model agrees with torch (tuples of outputs included)."""

    def fn(x):
        y = F.max_pool2d(x, 3, 2, 1, return_indices=True)[0]
        y = torch.cat([y, F.interpolate(y, scale_factor=1.0)], 1).flatten(2).transpose(1, 2)
        return y.softmax(-1).mean(1, keepdim=True)

    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ChannelShuffle(2), nn.GLU(1), Lambda(fn))
    rfgraph.analyze(model, (1, 1, 9, 9), check_shapes=True)
