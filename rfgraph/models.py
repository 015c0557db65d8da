"""Load models from a short spec: ``torchvision:resnet50``, ``timm:convnext_tiny``,
``path/to/file.py:factory`` or ``package.module:factory``.

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

__all__ = ["ModelLoadError", "load_model", "default_input_shape"]


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
        except NotImplementedError:
            if device != "meta":
                raise
            # Builders that compute with tensors (RegNet's width schedule) cannot run
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
