"""Every torchvision classification model analyses at its default input size
(weights=None, meta device): each node gets a result, nothing is unknown, and
attention models turn global where attention mixes all tokens."""

from __future__ import annotations

import pytest
import torchvision

import rfgraph
from rfgraph.models import default_input_shape, load_model

MODELS = torchvision.models.list_models(module=torchvision.models)


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_classification_model_analyses(name):
    spec = f"torchvision:{name}"
    model = load_model(spec, device="meta")
    analysis = rfgraph.analyze(model, default_input_shape(spec, model))
    assert len(analysis) > 0
    assert not analysis.unknown(), [(r.name, r.reason) for r in analysis.unknown()]
    # The classifier output depends on the whole image.
    assert all(analysis.records[-1].is_global)
    # Some node is still local, and RF grows to at least the last stride.
    last = analysis.last_spatial()
    assert last is not None
    assert all(rf >= stride for rf, stride in zip(last.rf, last.stride) if rf is not None)


@pytest.mark.parametrize("name", ["vit_b_16", "vit_b_32"])
def test_vit_is_global_after_attention(name):
    """Patchify conv: RF = stride = patch size.  After the first self-attention every token sees everything."""
    model = load_model(f"torchvision:{name}", device="meta")
    analysis = rfgraph.analyze(model, (1, 3, 224, 224))
    patch = int(name.rsplit("_", 1)[1])
    assert analysis["conv_proj"].rf == (patch, patch)
    assert analysis["conv_proj"].stride == (patch, patch)
    assert analysis["encoder.layers.encoder_layer_0.self_attention"].is_global == (True, True)
    assert analysis["encoder"].is_global == (True, True)


def test_swin_window_attention_is_local_until_windows_cover_the_map():
    """Swin-T at 224: stage 1 works on 56x56 tokens (patch 4) with 7x7 windows, so the first
    block's attention sees its window: the 4x4 patch conv RF (4) grown to 7 patches: 28 pixels
    (stride 4).  At stage 4 the map is 7x7 = one window: global."""
    model = load_model("torchvision:swin_t", device="meta")
    analysis = rfgraph.analyze(model, (1, 3, 224, 224))
    first = analysis["features.1.0.attn"]
    assert first.rf == (28, 28)
    assert first.stride == (4, 4)
    assert analysis["features.7"].is_global == (True, True)


def test_video_swin_window_attention():
    """Swin3D-T, 16x224x224: patches (2, 4, 4), windows (8, 7, 7).  T = 16/2 = 8 patches fit in one
    window, so time is global from the first block.  In H and W, block 1 sees its 7-patch window
    (28 px); block 2's windows are shifted by 3 patches, so a unit's shifted window meets two of
    block 1's windows: 14 patches = 56 px, and unit 0 (shifted window [-4, 2]) starts at patch -7
    = -28 px.  The 2-D Swin-T stage 1 has the same numbers."""
    for name, shape, node in (("swin3d_t", (1, 3, 16, 224, 224), "features.0"), ("swin_t", (1, 3, 224, 224), "features.1")):
        analysis = rfgraph.analyze(load_model(f"torchvision:{name}", device="meta"), shape)
        record = analysis[node]
        assert record.rf[-2:] == (56, 56)
        assert record.start[-2:] == (-28, -28)
        assert record.stride[-2:] == (4, 4)
        if name == "swin3d_t":
            assert record.is_global[0]
