"""Channel checks: an op that consumes channels gets the number its module (or weight) was built for.

The pass learns shapes from the rules, never by running the model, so nothing
else would notice an input of the wrong layout: a channels-last
``(1, 224, 224, 3)`` given to ResNet-50 would flow through every rule with
shapes like ``1x64x112x2``.  `check_channels` runs before the rule of every
call (`rfgraph.passes.SymbolicPass`) and raises `InputShapeError`::

    expected 3 input channels at conv1, got 224; is the input channels-last?

Covered: convolutions and transposed convolutions (modules, ``F.conv*`` and the
aten spellings of ``torch.export`` graphs), linear layers, batch / group /
instance / layer / RMS norm, and embeddings (whose input must be integer ids).
Ops whose weights are computed from the input are checked the same way (their
weight shape is known).  Anything else passes unchecked.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputShapeError
from ..values import SymTensor
from .call import OpCall

__all__ = ["check_channels", "ChannelError"]


class ChannelError(InputShapeError):
    """An op gets other channels (features, trailing sizes, dtype of ids) than its module or weight takes."""

_CONV = {getattr(F, f"conv{nd}d"): nd for nd in (1, 2, 3)}
_CONV_T = {getattr(F, f"conv_transpose{nd}d"): nd for nd in (1, 2, 3)}
_ATEN_CONV = {f"conv{nd}d": nd for nd in (1, 2, 3)}
_ATEN_CONV_T = {f"conv_transpose{nd}d": nd for nd in (1, 2, 3)}
_BATCH_NORM_NAMES = ("batch_norm", "_native_batch_norm_legit_no_training", "_native_batch_norm_legit",
                     "native_batch_norm", "cudnn_batch_norm")


def _aten_name(target: Any) -> Optional[str]:
    if isinstance(target, (torch._ops.OpOverload, torch._ops.OpOverloadPacket)):
        return target.__name__.split(".")[0]
    return None


def _first_sym(call: OpCall) -> Optional[SymTensor]:
    x = call.args[0] if call.args else next(iter(call.kwargs.values()), None)
    return x if isinstance(x, SymTensor) else None


def _shape_of(v: Any) -> Optional[tuple[int, ...]]:
    if isinstance(v, (SymTensor, torch.Tensor)):
        return tuple(int(s) for s in v.shape)
    return None


def _fail(call: OpCall, x: SymTensor, dim: int, expected: int, what: str = "input channels") -> None:
    got = x.shape[dim]
    hint = ""
    if x.ndim >= 3 and dim != x.ndim - 1 and x.shape[-1] == expected:
        hint = "; is the input channels-last?"
    elif dim == x.ndim - 1 and x.ndim >= 3 and x.shape[1] == expected:
        hint = "; is the input channels-first where channels-last is expected?"
    raise ChannelError(
        f"expected {expected} {what} at {call.name}, got {got}{hint} "
        f"({call.describe()} gets shape {'x'.join(map(str, x.shape))})"
    )


def _expect(call: OpCall, x: SymTensor, dim: Optional[int], expected: Optional[int],
            what: str = "input channels") -> None:
    if dim is None or expected is None or not -x.ndim <= dim < x.ndim:
        return
    dim %= x.ndim
    if x.shape[dim] != int(expected):
        _fail(call, x, dim, int(expected), what)


def _channel_dim(x: SymTensor, nd: int) -> Optional[int]:
    """The channel dim of an ``nd``-d windowed op: 1 when batched, 0 when not; ``None`` for a wrong rank
    (the rule says what rank the op works on)."""
    if x.ndim not in (nd + 1, nd + 2):
        return None
    return x.ndim - nd - 1


def _check_module(call: OpCall, m: nn.Module, x: SymTensor) -> None:
    if isinstance(m, nn.modules.conv._ConvNd):
        _expect(call, x, _channel_dim(x, len(m.kernel_size)), m.in_channels)
    elif isinstance(m, nn.Linear):
        _expect(call, x, -1, m.in_features, "input features")
    elif isinstance(m, nn.Bilinear):
        _expect(call, x, -1, m.in1_features, "input features")
    elif isinstance(m, nn.modules.batchnorm._BatchNorm):
        if x.ndim >= 2:
            _expect(call, x, 1, m.num_features)
    elif isinstance(m, nn.modules.instancenorm._InstanceNorm):
        if m.affine or m.track_running_stats:
            nd = {nn.InstanceNorm1d: 1, nn.InstanceNorm2d: 2, nn.InstanceNorm3d: 3}.get(type(m))
            if nd is not None:
                _expect(call, x, _channel_dim(x, nd), m.num_features)
    elif isinstance(m, nn.GroupNorm):
        if x.ndim >= 2:
            _expect(call, x, 1, m.num_channels)
    elif isinstance(m, (nn.LayerNorm, nn.RMSNorm)):
        _check_trailing(call, x, tuple(m.normalized_shape))
    elif isinstance(m, nn.Embedding):
        _check_ids(call, x)


def _check_trailing(call: OpCall, x: SymTensor, normalized: tuple) -> None:
    normalized = tuple(int(s) for s in normalized)
    got = x.shape[x.ndim - len(normalized):] if len(normalized) <= x.ndim else x.shape
    if tuple(got) != normalized:
        hint = ""
        if len(normalized) == 1 and x.ndim >= 3 and x.shape[1] == normalized[0]:
            hint = "; is the input channels-first where channels-last is expected?"
        raise ChannelError(
            f"expected trailing size {'x'.join(map(str, normalized))} at {call.name}, got "
            f"{'x'.join(map(str, got))}{hint} ({call.describe()} gets shape {'x'.join(map(str, x.shape))})"
        )


def _check_ids(call: OpCall, x: SymTensor) -> None:
    if x.dtype.is_floating_point or x.dtype.is_complex:
        raise ChannelError(
            f"{call.describe()} at {call.name} looks up integer token ids, got a {str(x.dtype).replace('torch.', '')} "
            "tensor; analyse with dtype=torch.long"
        )


def _check_function(call: OpCall, x: SymTensor) -> None:
    target = call.target
    name = _aten_name(target)
    if target in _CONV or name in _ATEN_CONV:
        nd = _CONV.get(target) or _ATEN_CONV[name]
        w = _shape_of(call.arg(1, "weight", None))
        groups = call.arg(6, "groups", 1)
        if w is not None and len(w) == nd + 2 and isinstance(groups, int):
            _expect(call, x, _channel_dim(x, nd), w[1] * groups)
    elif target in _CONV_T or name in _ATEN_CONV_T:
        nd = _CONV_T.get(target) or _ATEN_CONV_T[name]
        w = _shape_of(call.arg(1, "weight", None))
        if w is not None and len(w) == nd + 2:
            _expect(call, x, _channel_dim(x, nd), w[0])
    elif target is F.linear or name == "linear":
        w = _shape_of(call.arg(1, "weight", None))
        if w is not None and len(w) == 2:
            _expect(call, x, -1, w[1], "input features")
    elif target is F.batch_norm or name in _BATCH_NORM_NAMES:
        for v in call.args[1:5]:
            s = _shape_of(v)
            if s is not None and len(s) == 1 and x.ndim >= 2:
                _expect(call, x, 1, s[0])
                break
    elif target in (F.layer_norm, F.rms_norm) or name in ("layer_norm", "native_layer_norm", "rms_norm"):
        shape = call.arg(1, "normalized_shape", None)
        if isinstance(shape, int):
            shape = (shape,)
        if isinstance(shape, (tuple, list, torch.Size)) and all(isinstance(s, int) for s in shape):
            _check_trailing(call, x, tuple(shape))
    elif target is F.embedding:
        _check_ids(call, x)


def check_channels(call: OpCall) -> None:
    """Raise `InputShapeError` when ``call`` consumes channels (or features) its weights were not made for."""
    x = _first_sym(call)
    if x is None or x.unknown:
        return
    if call.module is not None:
        _check_module(call, call.module, x)
    else:
        _check_function(call, x)
