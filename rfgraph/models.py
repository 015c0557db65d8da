"""Load models from a short spec: ``torchvision:resnet50``, ``timm:convnext_tiny``,
``path/to/file.py:factory`` or ``package.module:factory``, and third-party zoos
(the ``rfgraph[zoo]`` extra):

==============================  ===============================================================
``smp:ARCH:ENCODER``            segmentation_models_pytorch, ``smp:Unet:resnet34``, ``smp:FPN:tu-regnety_002``
``monai:NET:2d`` / ``:3d``      MONAI BasicUNet, UNet, SegResNet, DynUNet, AttentionUnet, UNETR, SwinUNETR
``hf:CLASS``                    transformers, e.g. ``hf:SwinModel``: the class with its default config
                                (the reference architecture, random weights); audio models get (N, 1, T)
``torchaudio:NAME``             wav2vec2_feature_extractor, ConvTasNet, Wav2Letter, DeepSpeech
``ultralytics:FILE.yaml``       YOLO from its packaged yaml, e.g. ``ultralytics:yolov8n.yaml``
``open_clip:NAME``              the visual tower of an open_clip model, e.g. ``open_clip:RN50``
==============================  ===============================================================

Nothing is downloaded: no weights, and the libraries are told to stay offline
(``HF_HUB_OFFLINE``, ``TRANSFORMERS_OFFLINE``, ``YOLO_OFFLINE``; ultralytics keeps
its settings file in a temporary directory).

Models are built without pretrained weights.  ``device="meta"`` builds them
without allocating weight memory, which is all the symbolic pass needs.

Loading ``file.py:factory`` or ``package.module:factory`` *executes that code*:
only point it at files you trust.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from typing import Any, Optional

import torch
from torch import nn

from .errors import RFGraphError

__all__ = ["ModelLoadError", "load_model", "default_input_shape", "THIRD_PARTY_KINDS", "offline_env"]


class ModelLoadError(RFGraphError):
    """The model spec could not be resolved to a model."""


def _torchvision_builder(name: str):
    import torchvision.models as tvm

    try:
        return tvm.get_model_builder(name)
    except ValueError:
        import difflib

        known = tvm.list_models()
        close = difflib.get_close_matches(name, known, n=5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ModelLoadError(f"unknown torchvision model {name!r}.{hint}") from None


def _timm_builder(name: str):
    try:
        import timm
    except ImportError:
        raise ModelLoadError("timm is not installed; install the extra: pip install 'rfgraph[timm]'") from None
    if not timm.is_model(name):
        import difflib

        close = difflib.get_close_matches(name, timm.list_models(), n=5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ModelLoadError(f"unknown timm model {name!r}.{hint}")

    def build(**kwargs):
        kwargs.pop("weights", None)
        return timm.create_model(name, pretrained=False, **kwargs)

    return build


# ---------------------------------------------------------------------------
# third-party zoos (optional dependencies, imported on use)
# ---------------------------------------------------------------------------

#: Spec prefixes of the third-party loaders -> the pip package that provides them.
THIRD_PARTY_KINDS = {
    "smp": "segmentation-models-pytorch",
    "monai": "monai",
    "hf": "transformers",
    "torchaudio": "torchaudio",
    "ultralytics": "ultralytics",
    "open_clip": "open-clip-torch",
}


def offline_env() -> None:
    """Tell the third-party libraries never to reach the network (set before they are imported)."""
    for key in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "YOLO_OFFLINE"):
        os.environ.setdefault(key, "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("YOLO_VERBOSE", "False")
    if "YOLO_CONFIG_DIR" not in os.environ:  # ultralytics writes a settings file at import time
        import tempfile

        os.environ["YOLO_CONFIG_DIR"] = os.path.join(tempfile.gettempdir(), "rfgraph-ultralytics")


def _need(module: str, kind: str):
    offline_env()
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ModelLoadError(
            f"{kind}: specs need {THIRD_PARTY_KINDS[kind]!r}, which cannot be imported ({exc}); "
            "install the extra: pip install 'rfgraph[zoo]'"
        ) from None


#: smp input: divisible by 32 (every encoder's output stride) and large enough for PSPNet's pooling.
SMP_SIZE = 256


def _smp_builder(rest: str):
    arch, _, encoder = rest.partition(":")
    smp = _need("segmentation_models_pytorch", "smp")
    archs = {cls.__name__.lower(): cls for cls in smp.MODEL_ARCHITECTURES_MAPPING.values()}
    cls = archs.get(arch.lower())
    if cls is None:
        raise ModelLoadError(f"unknown smp architecture {arch!r}; known: {', '.join(sorted(c.__name__ for c in archs.values()))}")

    def build(**kwargs):
        kwargs.setdefault("encoder_name", encoder or "resnet34")
        kwargs.setdefault("encoder_weights", None)
        return cls(**kwargs)

    return build, (1, 3, SMP_SIZE, SMP_SIZE)


#: MONAI inputs per dimensionality: divisible by 32 (SwinUNETR), and UNETR's img_size.
MONAI_SIZES = {2: 128, 3: 64}


def _monai_kwargs(net: str, dims: int) -> dict[str, Any]:
    size = MONAI_SIZES[dims]
    common = {"spatial_dims": dims, "in_channels": 1, "out_channels": 2}
    return {
        "BasicUNet": common,
        "UNet": dict(common, channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2), num_res_units=2),
        "SegResNet": common,
        "DynUNet": dict(common, kernel_size=[3, 3, 3, 3, 3], strides=[1, 2, 2, 2, 2],
                        upsample_kernel_size=[2, 2, 2, 2]),
        "AttentionUnet": dict(common, channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2)),
        "UNETR": dict(common, img_size=size),
        "SwinUNETR": dict(common),
    }[net]


MONAI_NETS = ("BasicUNet", "UNet", "SegResNet", "DynUNet", "AttentionUnet", "UNETR", "SwinUNETR")


def _monai_builder(rest: str):
    net, _, dims_s = rest.partition(":")
    dims = {"2d": 2, "3d": 3, "": 2}.get(dims_s.lower())
    if net not in MONAI_NETS or dims is None:
        raise ModelLoadError(f"monai spec must be monai:NET:2d or monai:NET:3d with NET one of {', '.join(MONAI_NETS)}")
    nets = _need("monai.networks.nets", "monai")

    def build(**kwargs):
        return getattr(nets, net)(**{**_monai_kwargs(net, dims), **kwargs})

    return build, (1, 1) + (MONAI_SIZES[dims],) * dims


class AudioInput(nn.Module):
    """Feeds ``(N, 1, T)`` to a model that takes raw audio as ``(N, T)`` and returns its first output."""

    def __init__(self, model: nn.Module, *extra: Any):
        super().__init__()
        self.model = model
        self.extra = extra

    def forward(self, x):
        out = self.model(x.flatten(1), *self.extra)
        return out[0] if isinstance(out, (tuple, list)) else out


class FirstOutput(nn.Module):
    """Calls the model and returns its first output (a transformers ``ModelOutput``, a tuple)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):
        out = self.model(x)
        return out[0] if isinstance(out, (tuple, list)) or hasattr(out, "to_tuple") else out


#: transformers: config overrides where the default config is not an image model of the usual size.
HF_AUDIO = ("Wav2Vec2Model", "HubertModel", "WavLMModel", "Data2VecAudioModel", "UniSpeechModel", "SEWModel")
HF_CPU = ("Wav2Vec2Model", "HubertModel")
HF_SIZES = {"LevitModel": 224, "MobileViTModel": 256, "MobileViTV2Model": 256, "SegformerModel": 512,
            "Dinov2Model": 224}


def _hf_builder(rest: str):
    name, _, part = rest.partition(":")
    tr = _need("transformers", "hf")
    cls = getattr(tr, name, None)
    if cls is None or not hasattr(cls, "config_class"):
        raise ModelLoadError(f"transformers has no model class {name!r}")
    audio = name in HF_AUDIO

    def build(**kwargs):
        config = cls.config_class(**kwargs)
        if hasattr(config, "image_size") and name in ("Dinov2Model",):
            config.image_size = HF_SIZES[name]
        if name in HF_CPU:  # their forward makes tensors on the CPU, which meet meta weights under torch.export
            with torch.device("cpu"):
                model = cls(config)
        else:
            model = cls(config)
        if part == "feature_extractor":
            return AudioInput(model.feature_extractor)
        return AudioInput(model) if audio else FirstOutput(model)

    if audio:
        return build, (1, 1, 16000)
    size = HF_SIZES.get(name, 224)
    return build, (1, 3, size, size)


TORCHAUDIO_MODELS = ("wav2vec2_feature_extractor", "ConvTasNet", "Wav2Letter", "DeepSpeech")


def _torchaudio_builder(rest: str):
    models = _need("torchaudio.models", "torchaudio")
    if rest == "wav2vec2_feature_extractor":
        return (lambda **kw: AudioInput(models.wav2vec2_base(**kw).feature_extractor, None)), (1, 1, 16000)
    if rest == "ConvTasNet":
        return (lambda **kw: models.ConvTasNet(**kw)), (1, 1, 16000)
    if rest == "Wav2Letter":
        return (lambda **kw: models.Wav2Letter(**{"num_features": 1, **kw})), (1, 1, 16000)
    if rest == "DeepSpeech":  # (N, 1, time, features)
        return (lambda **kw: models.DeepSpeech(**{"n_feature": 40, **kw})), (1, 1, 200, 40)
    raise ModelLoadError(f"unknown torchaudio model {rest!r}; known: {', '.join(TORCHAUDIO_MODELS)}")


def _ultralytics_builder(rest: str):
    _need("ultralytics", "ultralytics")
    from ultralytics.nn.tasks import DetectionModel

    def build(**kwargs):
        # The constructor runs a forward pass to learn the strides (``.item()``): build on the CPU
        # (a few million parameters), then move to the meta device when asked for.
        target = torch.empty(0).device
        with torch.device("cpu"):
            model = DetectionModel(rest, verbose=False, **kwargs)
        return model.to(target) if target.type == "meta" else model

    return build, (1, 3, 640, 640)


def _open_clip_builder(rest: str):
    open_clip = _need("open_clip", "open_clip")
    if rest not in open_clip.list_models():
        raise ModelLoadError(f"unknown open_clip model {rest!r}")

    def build(**kwargs):
        import logging

        kwargs.setdefault("device", torch.empty(0).device)  # create_model moves the model to "cpu" by default
        previous = logging.root.manager.disable
        logging.disable(logging.WARNING)  # "No pretrained weights loaded": none are wanted
        try:
            return open_clip.create_model(rest, pretrained=None, **kwargs).visual
        finally:
            logging.disable(previous)

    size = open_clip.get_model_config(rest)["vision_cfg"].get("image_size", 224)
    size = size[0] if isinstance(size, (tuple, list)) else size
    return build, (1, 3, size, size)


_THIRD_PARTY = {
    "smp": _smp_builder,
    "monai": _monai_builder,
    "hf": _hf_builder,
    "torchaudio": _torchaudio_builder,
    "ultralytics": _ultralytics_builder,
    "open_clip": _open_clip_builder,
}


def third_party(spec: str):
    """``(builder, default input shape)`` of a third-party spec, or ``None`` for other specs."""
    kind, sep, rest = spec.partition(":")
    if not sep or kind not in _THIRD_PARTY or not rest:
        return None
    return _THIRD_PARTY[kind](rest)


def _factory_from_spec(spec: str):
    target, _, attr = spec.rpartition(":")
    if not target or not attr:
        raise ModelLoadError(
            f"cannot read model spec {spec!r}: use torchvision:NAME, timm:NAME, path/to/file.py:factory "
            "or package.module:factory"
        )
    if target.endswith(".py") or os.sep in target:
        if not os.path.exists(target):
            raise ModelLoadError(f"model file {target!r} does not exist")
        mod_name = f"_rfgraph_user_{abs(hash(os.path.abspath(target)))}"
        module_spec = importlib.util.spec_from_file_location(mod_name, target)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[mod_name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:
            raise ModelLoadError(f"executing {target!r} failed: {type(exc).__name__}: {exc}") from exc
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise ModelLoadError(f"cannot import module {target!r}: {exc}") from exc
    if not hasattr(module, attr):
        raise ModelLoadError(f"{target!r} has no attribute {attr!r}")
    return getattr(module, attr)


def load_model(spec: str, device: Optional[str] = "meta", **kwargs: Any) -> nn.Module:
    """Build the model named by ``spec`` (no pretrained weights), in eval mode."""
    kind, _, name = spec.partition(":")
    if kind == "torchvision" and name:
        builder = _torchvision_builder(name)
        kwargs.setdefault("weights", None)
        if "weights_backbone" in inspect.signature(builder).parameters:
            kwargs.setdefault("weights_backbone", None)  # detection models default to a pretrained backbone
    elif kind == "timm" and name:
        builder = _timm_builder(name)
    elif kind in _THIRD_PARTY and name:
        builder = third_party(spec)[0]
    else:
        builder = _factory_from_spec(spec)
    def build():
        model = builder(**kwargs) if callable(builder) else builder
        if inspect.isclass(model) and issubclass(model, nn.Module):
            model = model()
        return model

    try:
        try:
            with torch.device(device) if device else _null():
                model = build()
        except (NotImplementedError, RuntimeError) as exc:
            if device != "meta" or (isinstance(exc, RuntimeError) and not isinstance(exc, NotImplementedError)
                                    and "meta" not in str(exc)):
                raise
            # Builders that compute with tensors (RegNet's width schedule, ``.item()`` of a drop-path
            # schedule in SegFormer's MiT encoder) cannot run
            # under the meta device context: build on the CPU, moving each parameter
            # to meta as it is registered so that weights are never all allocated.
            with _parameters_on_meta():
                model = build()
    except RFGraphError:
        raise
    except Exception as exc:
        raise ModelLoadError(f"building {spec!r} failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise ModelLoadError(f"{spec!r} did not produce a torch.nn.Module (got {type(model).__name__})")
    return model.eval()


class _parameters_on_meta:
    """Register every new parameter and buffer on the meta device (weights are never materialized)."""

    def __enter__(self):
        self._param, self._buffer = nn.Module.register_parameter, nn.Module.register_buffer
        original_param, original_buffer = self._param, self._buffer

        def register_parameter(module, name, param):
            if param is not None and param.device.type != "meta":
                param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
            original_param(module, name, param)

        def register_buffer(module, name, tensor, persistent=True):
            if tensor is not None and tensor.device.type != "meta":
                tensor = tensor.to("meta")
            original_buffer(module, name, tensor, persistent)

        nn.Module.register_parameter = register_parameter
        nn.Module.register_buffer = register_buffer
        return self

    def __exit__(self, *exc):
        nn.Module.register_parameter, nn.Module.register_buffer = self._param, self._buffer
        return False


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


#: Input sizes that differ from 224 for torchvision classification models.
_TORCHVISION_SIZES = {
    "inception_v3": 299,
    "efficientnet_b1": 240,
    "efficientnet_b2": 288,
    "efficientnet_b3": 300,
    "efficientnet_b4": 380,
    "efficientnet_b5": 456,
    "efficientnet_b6": 528,
    "efficientnet_b7": 600,
    "efficientnet_v2_s": 384,
    "efficientnet_v2_m": 480,
    "efficientnet_v2_l": 480,
}


def default_input_shape(spec: str, model: Optional[nn.Module] = None) -> tuple[int, ...]:
    """The input shape a model expects by default (ImageNet-style 224 unless known otherwise)."""
    kind, _, name = spec.partition(":")
    if kind in _THIRD_PARTY and name:
        return tuple(third_party(spec)[1])
    if kind == "timm" and model is not None and hasattr(model, "default_cfg"):
        size = model.default_cfg.get("input_size")
        if size:
            return (1, *size)
    if kind == "torchvision":
        # A ViT built without weights keeps its constructor's image size (vit_h_14: 224, not 518).
        if model is not None and isinstance(getattr(model, "image_size", None), int):
            return (1, 3, model.image_size, model.image_size)
        if name.startswith(("r3d", "mc3", "r2plus1d", "s3d", "mvit", "swin3d")):
            return (1, 3, 16, 112, 112) if not name.startswith(("s3d", "mvit", "swin3d")) else (1, 3, 16, 224, 224)
        if name in _TORCHVISION_SIZES:
            s = _TORCHVISION_SIZES[name]
            return (1, 3, s, s)
    return (1, 3, 224, 224)
