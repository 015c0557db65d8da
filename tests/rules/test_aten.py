"""The aten spellings (`rfgraph.rules.aten`): graphs from the ``torch.export`` fallback reuse the
torch-level rules through the translation tables and a few adapters."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rfgraph.algebra import PAMap
from rfgraph.rules import DEFAULT_RULES, OpCall
from rfgraph.rules.aten import CHANNEL_MIXING, POINTWISE, SAME_AS_FUNCTION, SAME_AS_METHOD
from rfgraph.rules.pointwise import channel_mixing_rule, identity_rule
from rfgraph.values import SymTensor

aten = torch.ops.aten


def test_tables_reuse_the_torch_level_rules():
    assert DEFAULT_RULES.functions[aten.conv2d.default] is DEFAULT_RULES.functions[F.conv2d]
    assert DEFAULT_RULES.functions[aten.view.default] is DEFAULT_RULES.methods["view"]
    assert DEFAULT_RULES.functions[aten.relu.default] is DEFAULT_RULES.methods["relu"]
    assert DEFAULT_RULES.functions[aten.gelu.default] is identity_rule
    assert DEFAULT_RULES.functions[aten.channel_shuffle.default] is channel_mixing_rule
    assert not set(POINTWISE) & set(CHANNEL_MIXING)
    assert "cat" in SAME_AS_FUNCTION and SAME_AS_METHOD["_unsafe_view"] == "view"


def test_convolution_adapter():
    """aten.convolution(x, w, b, stride=[2], padding=[1], dilation=[1], transposed=False, [0], groups=1)
    is conv1d k=3, s=2, p=1: L(u) = 2u - 1, H(u) = 2u + 1, 10 -> 5, 4 channels."""
    x = SymTensor.input((1, 2, 10))
    w = torch.zeros(4, 2, 3)
    call = OpCall(None, aten.convolution.default, None, (x, w, None, [2], [1], [1], False, [0], 1), {})
    out = DEFAULT_RULES.lookup(call)(call)
    assert out.shape == (1, 4, 5)
    assert out.tags[2].field.lo == PAMap.affine(2, -1)


def test_slice_adapter():
    """aten.slice.Tensor(x, 2, 1, 9, 2): positions 1, 3, 5, 7: L = H = 2u + 1, 4 long."""
    x = SymTensor.input((1, 1, 10))
    call = OpCall(None, aten.slice.Tensor, None, (x, 2, 1, 9, 2), {})
    out = DEFAULT_RULES.lookup(call)(call)
    assert out.shape == (1, 1, 4) and out.tags[2].field.lo == PAMap.affine(2, 1)


def test_rms_norm_spellings_follow_layer_norm():
    """aten.rms_norm / aten._fused_rms_norm (torch.export of F.rms_norm, nn.RMSNorm; timm gemma4_vit):
    the layer-norm rule.  Over the channels of (B, tokens, C) each position reads itself (a conv's
    field k=3: L = u - 1, H = u + 1, unchanged); over a dim holding positions (W of (N, C, H, W)) the
    statistic spans the whole axis: a context path, local field kept, ``global_context`` set."""
    x = SymTensor.input((1, 4, 8)).window(2, PAMap.affine(1, -1), PAMap.affine(1, 1), 8, "conv")
    tokens = x.permute([0, 2, 1])  # (B, L, C)
    for op, args in ((aten.rms_norm.default, (tokens, [4], None, 1e-6)),
                     (aten._fused_rms_norm.default, (tokens, [4], None, 1e-6))):
        call = OpCall(None, op, None, args, {})
        out = DEFAULT_RULES.lookup(call)(call)
        out = out[0] if isinstance(out, tuple) else out
        assert out.shape == (1, 8, 4) and out.tags[1] == tokens.tags[1] and not out.global_context
    over_w = SymTensor.input((1, 2, 5, 6))
    call = OpCall(None, aten.rms_norm.default, None, (over_w, [6]), {})
    out = DEFAULT_RULES.lookup(call)(call)
    assert out.global_context and out.tags == over_w.tags
