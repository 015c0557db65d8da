"""Tests of `rfgraph.zoo.families`: family names and model specs resolve."""

from __future__ import annotations

import pytest

from rfgraph import zoo


def test_families_resolve():
    names = {m.name for m in zoo.resolve_models(["segmentation", "detection", "video"])}
    assert {"fcn_resnet50", "deeplabv3_resnet50", "lraspp_mobilenet_v3_large"} <= names
    assert {"fasterrcnn_resnet50_fpn", "retinanet_resnet50_fpn", "fcos_resnet50_fpn", "ssd300_vgg16",
            "ssdlite320_mobilenet_v3_large"} <= names
    assert {"r3d_18", "mc3_18", "r2plus1d_18", "s3d"} <= names
    det = {m.name: m for m in zoo.family_models("detection")}
    assert all(m.target == "backbone" and m.build_kwargs == {"weights_backbone": None} for m in det.values())
    assert zoo.resolve_models("resnet50")[0].spec == "torchvision:resnet50"
    with pytest.raises(ValueError, match="unknown family"):
        zoo.family_models("nope")


def test_timm_entries_are_prefixed_and_globbed():
    pytest.importorskip("timm")
    found = zoo.resolve_models(["resnet18", "timm:resnet18", "timm:resnet1*"])
    names = [m.name for m in found]
    assert names[:2] == ["resnet18", "timm:resnet18"]  # torchvision's and timm's are different models
    assert all(m.spec == m.name and m.family == "timm" for m in found[1:]) and len(set(names)) == len(names)
    assert "timm:resnet101" in names
