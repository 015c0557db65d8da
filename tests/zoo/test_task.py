"""Tests of `rfgraph.zoo.task`: the rows of one model (stage nodes, counts, validation), and the segmentation facts they report."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import rfgraph
from rfgraph import zoo


class _PoolBranchCat(nn.Module):
    """A local 3x3 branch concatenated with an image-pooling branch upsampled back (ASPP-style)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.proj = nn.Conv2d(3, 1, 1)

    def forward(self, x):
        local = self.conv(x)
        ctx = F.interpolate(self.pool(x), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.proj(torch.cat([local, ctx], dim=1))


def test_upsampled_pooled_branch_is_context_not_global():
    """The pooled branch is one value broadcast over the map: a context path.

    Hand derivation: the 3x3 conv (padding 1) has RF 3, stride 1, start -1; the
    concat with a constant-over-space branch keeps the local RF 3 and only sets
    ``global_context`` (DESIGN, "context paths"); the 1x1 projection keeps it.
    """
    a = rfgraph.analyze(_PoolBranchCat(), (1, 1, 16, 16))
    out = a["proj"]
    assert out.rf == (3, 3)
    assert out.start == (-1, -1)
    assert out.is_global == (False, False)
    assert out.global_context


def test_tiny_model_rows(factories):
    """Hand derivation for conv3 -> relu -> conv3/s2: stages are the ReLU (RF 3, stride 1, start 0)
    and the last conv (RF 3 + 2*1 = 5, stride 2, start 0)."""
    result = zoo.run([factories("tiny")], progress=False)
    assert [(r["node"], r["rf"], r["stride"], r["start"]) for r in result] == [
        ("1", [3, 3], [1, 1], [0, 0]),
        ("2", [5, 5], [2, 2], [0, 0]),
    ]
    assert all(r["error"] == "" and r["source"] == "symbolic" for r in result)


def test_a_model_of_tokens_only_reports_its_last_token_nodes(factories):
    """No node of a patch-token model holds the axes as a feature map: the rows are the last node with a
    local field (the linear over 8x8 patches: rf 8, stride 8, start 0) and the last node holding the
    axes (global after the softmax over tokens), not an error row."""
    result = zoo.run([factories("tokens")], progress=False)
    assert [(r["op"], r["rf"], r["stride"], r["start"], r["global"]) for r in result] == [
        ("Linear", [8, 8], [8, 8], [0, 0], [False, False]),
        (".softmax", [None, None], [None, None], [None, None], [True, True]),
    ]
    assert all(r["error"] == "" for r in result)
    # unfold, transpose, linear local; the softmax over tokens global along both axes
    assert {k: result.rows[0]["counts"][k] for k in ("symbolic", "global", "unknown")} == {
        "symbolic": 4, "global": 1, "unknown": 0}


def test_failing_models_become_error_rows(factories):
    """A model that cannot be loaded, built or traced is one row with its error; the others still run."""
    result = zoo.run(
        [factories("broken"), factories("tiny"), factories("branchy"), "no_such_model_xyz"], progress=False
    )
    by_model = {}
    for r in result:
        by_model.setdefault(r["model"], []).append(r)
    assert list(by_model) == ["broken", "tiny", "branchy", "no_such_model_xyz"]
    assert all(set(r) == set(zoo.ROW_KEYS) for r in result)
    assert by_model["broken"][0]["error"].startswith("ModelLoadError:") and "boom" in by_model["broken"][0]["error"]
    assert by_model["branchy"][0]["error"].startswith("TraceError:")
    assert "no_such_model_xyz" in by_model["no_such_model_xyz"][0]["error"]
    assert all(len(by_model[m]) == 1 and by_model[m][0]["node"] == "" for m in ("broken", "branchy"))
    assert all(r["error"] == "" for r in by_model["tiny"])
    assert len(result.errors()) == 3
    md = result.to_markdown()
    assert "TraceError" in md and "| tiny |" in md


def test_unknown_node_override_is_an_error_row(factories):
    result = zoo.run([factories("tiny")], nodes=["2", "nope"], progress=False)
    assert [r["node"] for r in result] == ["2", ""]
    assert result.rows[1]["label"] == "nope" and "NodeNotFoundError" in result.rows[1]["error"]


def test_validate_agrees_on_a_small_model(factories):
    """The probe measures the hand-derived values of `test_tiny_model_rows` on both stage nodes."""
    result = zoo.run([factories("tiny")], validate=True, progress=False)
    assert [(r["probe"], r["probe_rf"], r["probe_stride"], r["probe_start"]) for r in result] == [
        ("agree", [3, 3], [1, 1], [0, 0]),
        ("agree", [5, 5], [2, 2], [0, 0]),
    ]
    assert all(r["probe_s"] is not None for r in result)


def test_validate_reports_both_values_of_a_disagreement(factories, monkeypatch):
    """A disagreement row carries the probe's values and names the quantity (report faked here)."""
    from fractions import Fraction

    from rfgraph.probing import AxisProbe, ProbeResult, ValidationReport, ValidationRow, compare
    def fake_validate(analysis, nodes=None, **kwargs):
        rows = []
        for name in nodes:
            sym = analysis[name]
            axes = tuple(
                AxisProbe(i, sym.rf[i] + 2, sym.stride[i], sym.start[i] - 1, True, False, (1, 3, 64, 1), (0,),
                                (0,), (0,))
                for i in range(sym.ndim)
            )
            num = ProbeResult(name, axes)
            rows.append(ValidationRow(name, sym, num, compare(name, sym, num)))
        return ValidationReport(rows)

    monkeypatch.setattr(zoo.task, "validate_analysis", fake_validate)
    # in-process: a worker process (forked by a clean fork server) would not see the monkeypatch
    result = zoo.run([factories("tiny")], validate=True, progress=False, isolate=False)
    last = result.rows[-1]
    assert (last["probe"], last["probe_rf"], last["probe_start"]) == ("DISAGREE", [7, 7], [-1, -1])
    assert "rf symbolic 5 != numeric 7" in last["probe_note"]
    assert "DISAGREE: probe 7 / 2 / -1" in result.to_markdown()
    assert len(result.disagreements()) == 2
    assert Fraction(last["probe_stride"][0]) == 2


def test_isolated_validation_after_a_backward_pass_in_the_caller(factories):
    """A caller that has run a backward pass (a probe, an ERF) has autograd threads; forked workers would
    inherit them and autograd would refuse to run there. The fork server keeps workers clean."""
    import torch

    x = torch.ones(2, requires_grad=True)
    (x * x).sum().backward()
    result = zoo.run([factories("tiny")], validate=True, progress=False)
    assert [r["probe"] for r in result] == ["agree", "agree"], [r["probe_note"] for r in result]


def _rows(model, **kw):
    result = zoo.run([model], progress=False, **kw)
    assert not result.errors(), result.errors()
    return {r["label"] or r["node"]: r for r in result}


def test_fcn_backbone_is_dilated_to_stride_8():
    """torchvision's FCN backbone replaces the strides of layer3 and layer4 by dilation
    (``replace_stride_with_dilation=[False, True, True]``): stem x4, layer2 x2, then none: stride 8."""
    rows = _rows("fcn_resnet50", nodes=["backbone.layer4"])
    assert rows["backbone.layer4"]["stride"] == [8, 8]


def test_deeplabv3_aspp_grows_by_the_largest_rate():
    """Hand derivation for DeepLabV3-ResNet-50 at stride 8.

    Dilation keeps every 3x3 conv's growth: layer3's convs grow the RF by 2*1*8 (block 0) and
    2*2*8 (blocks 1-5), as the undilated 2*8 and 2*16 would; layer4's by 2*2*8 and 2*4*8 (vs 2*16,
    2*32).  So ``layer4`` has ResNet-50's published RF 427 and start -213, at stride 8.  ASPP's
    branches are a 1x1 conv, 3x3 convs of rates 12, 24, 36 and an image-pooling branch (a context
    path); the concat's local RF is the widest branch: 427 + (3-1)*36*8 = 1003, start -213 - 36*8
    = -501.  The 1x1 projection keeps it.
    """
    rows = _rows("deeplabv3_resnet50", nodes=["backbone.layer4", "classifier.0.convs.3", "classifier.0"])
    layer4, rate36, aspp = rows["backbone.layer4"], rows["classifier.0.convs.3"], rows["classifier.0"]
    assert (layer4["rf"], layer4["stride"], layer4["start"]) == ([427, 427], [8, 8], [-213, -213])
    assert rate36["rf"] == [427 + 2 * 36 * 8] * 2
    assert (aspp["rf"], aspp["stride"], aspp["start"]) == ([1003, 1003], [8, 8], [-501, -501])
    assert aspp["global"] == [False, False] and aspp["global_context"]


def test_fpn_levels_have_their_own_stride_and_rf():
    """Faster R-CNN's backbone returns P2..P5 and a pooled P6 (``model.backbone``).

    Hand derivation: P5 = 3x3 conv at stride 32 on the 1x1 lateral of ResNet-50 layer4 (RF 427,
    start -213): RF 427 + 2*32 = 491, start -245.  P6 = max_pool(k=1, s=2) of P5: stride 64, RF 491.
    P4 = 3x3 conv at stride 16 on lateral(layer3) + nearest-x2(P5 lateral): unit u reads units
    u-1..u+1, whose upsampled parts come from layer4 units floor((u-1)/2)..floor((u+1)/2), at most 2
    of them: RF 427 + 32 = 459 (layer3's RF 267 plus 2*16 is smaller).  P3 and P2 add one more
    nearest-x2 each, which maps each unit to one stride-16 unit, so the same 3x3 window still
    spans at most 2 layer4 units: RF 459 at strides 8 and 4.  All start at -213 - 32 = -245.
    """
    result = zoo.run(["fasterrcnn_resnet50_fpn"], progress=False)
    assert not result.errors()
    levels = {r["node"]: r for r in result if r["node"].startswith("fpn.")}
    got = {name: (r["rf"][0], r["stride"][0], r["start"][0]) for name, r in levels.items()}
    assert got == {
        "fpn.layer_blocks.0.0": (459, 4, -245),
        "fpn.layer_blocks.1.0": (459, 8, -245),
        "fpn.layer_blocks.2.0": (459, 16, -245),
        "fpn.layer_blocks.3.0": (491, 32, -245),
        "fpn.extra_blocks.max_pool2d": (491, 64, -245),
    }
    assert result.rows[0]["target"] == "backbone" and result.rows[0]["input"] == [1, 3, 800, 800]


def test_r3d_18_has_a_3d_receptive_field():
    """Hand derivation for r3d_18 (axes T, H, W; input 16x112x112).

    Stem: conv 3x7x7, stride (1,2,2): RF (3, 7, 7), stride (1, 2, 2).  Each layer has 4 3x3x3 convs;
    in layers 2-4 the first is strided (2,2,2).  A 3-conv at jump j adds 2j.
    T: 3 + 4*2*1 = 11; +2*1 + 3*2*2 = 25; +2*2 + 3*2*4 = 53; +2*4 + 3*2*8 = 109, stride 8.
    H, W: 7 + 4*2*2 = 23; +2*2 + 3*2*4 = 51; +2*4 + 3*2*8 = 107; +2*8 + 3*2*16 = 219, stride 16.
    """
    rows = _rows("r3d_18", nodes=["layer1", "layer4"])
    assert rows["layer1"]["rf"] == [11, 23, 23]
    assert (rows["layer4"]["rf"], rows["layer4"]["stride"]) == ([109, 219, 219], [8, 16, 16])
    assert rows["layer4"]["input"] == [1, 3, 16, 112, 112]


def test_trunk_stages_are_the_published_end_points():
    """The automatic stages of Inception-v3 are Distill 2019's end points at strides 8, 16 and 32
    (Mixed_5d 127/8/50, Mixed_6e 927/16/442, Mixed_7c 1311/32/618: RF / stride / padding); those of
    ResNet-50 are its layers (community values: RF 35/91/267/427, padding 17/45/133/213)."""
    result = zoo.run(["inception_v3", "resnet50"], progress=False)
    got = {(r["model"], r["node"]): (r["rf"][0], r["stride"][0], -r["start"][0]) for r in result}
    assert {k: v for k, v in got.items() if v[1] >= 8 and k[0] == "inception_v3"} == {
        ("inception_v3", "Mixed_5d.cat"): (127, 8, 50),
        ("inception_v3", "Mixed_6e.cat"): (927, 16, 442),
        ("inception_v3", "Mixed_7c.cat_2"): (1311, 32, 618),
    }
    resnet = [v for k, v in got.items() if k[0] == "resnet50"]
    assert resnet[1:] == [(35, 4, 17), (91, 8, 45), (267, 16, 133), (427, 32, 213)]
