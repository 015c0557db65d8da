"""One small model of each third-party zoo family (`rfgraph.models` specs, `rfgraph.zoo` families), symbolic
only, on the meta device; each test is skipped when its library is not installed (``pip install 'rfgraph[zoo]'``).

Values are hand-derived with ``r += (k - 1) * j`` over the layers (``j`` the running stride)."""

from __future__ import annotations

import importlib.util
import warnings

import pytest

import rfgraph
from rfgraph import zoo
from rfgraph.models import default_input_shape, load_model


def _need(module):
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (rfgraph[zoo])")


def _analyze(spec, shape=None, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_model(spec, device="meta", **kwargs)
    shape = shape or default_input_shape(spec, model)
    a = rfgraph.analyze(model, shape)
    for r in a.unknown():  # never a silent unknown: each names its op and why
        assert r.reason, r
    return a


def _at(a, name):
    r = a[name]
    return r.rf, tuple(int(s) for s in r.stride), tuple(int(s) for s in r.start)


def test_smp_unet_resnet34():
    """The encoder is torchvision's ResNet-34: stem 7/2 + pool 3/2 (rf 11, j 4), then 6, 8, 12, 6 3x3 convs
    (the first of stages 2-4 at the previous stride): 11 + 48 + 8 + 112 + 16 + 352 + 32 + 320 = 899, stride 32,
    start -(899 - 1) / 2 = -449 (every layer padded 'same')."""
    _need("segmentation_models_pytorch")
    a = _analyze("smp:Unet:resnet34", (1, 3, 64, 64))
    assert _at(a, "encoder.layer4") == ((899, 899), (32, 32), (-449, -449))
    head = a["segmentation_head"]
    assert head.shape == (1, 1, 64, 64) and head.stride == (1, 1) and head.source == "symbolic"
    assert not a.unknown()


def test_monai_basicunet_2d():
    """BasicUNet: two 3x3 convs per level, 2x2 max pools: down_4 = 5 + 1 + 8 + 2 + 16 + 4 + 32 + 8 + 64 = 140,
    stride 16; start -62 (the pools add no padding: (140 - 1 - 15) / 2 = 62)."""
    _need("monai")
    # fx drops MONAI UpCat's skip concats (`torch.jit.isinstance` is False on a Proxy); the channel check
    # notices and `analyze` retries with torch.export, whose graph keeps them
    a = _analyze("monai:BasicUNet:2d", (1, 1, 64, 64))
    assert _at(a, "down_4") == ((140, 140), (16, 16), (-62, -62))
    assert a["final_conv"].shape == (1, 2, 64, 64) and a["final_conv"].stride == (1, 1)
    assert not a.unknown()


def test_transformers_vit_small_config():
    """A ViT built from a small config: the patch embedding is a conv 8/8 (rf 8, stride 8, start 0);
    after self-attention every token sees the whole image."""
    _need("transformers")
    a = _analyze("hf:ViTModel", (1, 3, 32, 32), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                 intermediate_size=64, image_size=32, patch_size=8)
    assert _at(a, "model.embeddings.patch_embeddings.projection") == ((8, 8), (8, 8), (0, 0))
    assert all(a["model.layernorm"].is_global)  # the last hidden state, the model's first output


def test_torchaudio_wav2letter_on_waveforms():
    """Wav2Letter on raw audio: conv 250/160 pad 45, conv 48/2, seven convs 7, conv 32, 1x1s:
    250 + 47*160 + 7*6*320 + 31*320 = 31130 samples, stride 320, start -15565."""
    _need("torchaudio")
    a = _analyze("torchaudio:Wav2Letter")
    assert _at(a, "acoustic_model.0") == ((250,), (160,), (-45,))
    assert _at(a, "acoustic_model") == ((31130,), (320,), (-15565,))
    assert not a.unknown()


def test_open_clip_vit_b_32_visual_tower():
    _need("open_clip")
    a = _analyze("open_clip:ViT-B-32")
    assert _at(a, "conv1") == ((32, 32), (32, 32), (0, 0))
    assert all(a["ln_post"].is_global)


def test_ultralytics_yolov8n_from_yaml():
    """The first conv of YOLOv8n is 3x3/2 pad 1 (rf 3, stride 2, start -1); the analysis must not stop at the
    detection head's anchor grid (issue 14: arange(...).type_as(feature) + 0.5 -> meshgrid)."""
    _need("ultralytics")
    a = _analyze("ultralytics:yolov8n.yaml")
    assert _at(a, "model.0.conv") == ((3, 3), (2, 2), (-1, -1))
    # the head concatenates the three levels' flattened outputs (strides 8, 16, 32) into one dim of 8400
    # tokens: no single field per axis, so that node is unknown with the reason, never a merged number
    head = a["model.22.cat"]
    assert head.shape == (1, 64, 8400) and head.source == "unknown" and "different strides" in head.reason


def test_timm_all_lists_every_architecture_once():
    _need("timm")
    import timm

    models = zoo.family_models("timm-all")
    assert [m.spec for m in models] == [f"timm:{n}" for n in timm.list_models()]
    a = _analyze("timm:resnet10t", (1, 3, 64, 64))
    assert a["layer4"].stride == (32, 32) and not a.unknown()


def test_third_party_families_and_specs():
    """Each family lists the models of the brief, built from specs that `rfgraph MODEL` accepts too."""
    fams = {f: [m.spec for m in zoo.family_models(f)] for f in zoo.THIRD_PARTY_FAMILIES if f != "timm-all"}
    if importlib.util.find_spec("segmentation_models_pytorch"):
        assert "smp:Unet:resnet34" in fams["smp"] and "smp:FPN:efficientnet-b0" in fams["smp"]
        assert "smp:Segformer:mit_b0" in fams["smp"] and "smp:UnetPlusPlus:tu-regnety_002" in fams["smp"]
    if importlib.util.find_spec("monai"):
        assert len(fams["monai"]) == 14 and "monai:UNETR:2d" in fams["monai"] and "monai:SwinUNETR:3d" in fams["monai"]
    if importlib.util.find_spec("transformers"):
        assert {"hf:SwinModel", "hf:SegformerModel", "hf:Wav2Vec2Model:feature_extractor"} <= set(fams["transformers"])
    if importlib.util.find_spec("ultralytics"):
        assert fams["ultralytics"] == ["ultralytics:yolov8n.yaml", "ultralytics:yolo11n.yaml"]
    if importlib.util.find_spec("open_clip"):
        assert fams["open_clip"] == ["open_clip:RN50", "open_clip:ViT-B-32"]
    if importlib.util.find_spec("torchaudio"):
        assert len(fams["torchaudio"]) == 4


def test_bad_third_party_specs_are_load_errors():
    from rfgraph.models import ModelLoadError

    with pytest.raises(ModelLoadError, match="monai:NET:2d"):
        load_model("monai:UNet:4d")
    with pytest.raises(ModelLoadError, match="torchaudio model 'Nope'|torchaudio"):
        load_model("torchaudio:Nope")
