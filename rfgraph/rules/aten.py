"""Rules for graphs exported by ``torch.export``: the aten spellings of the torch-level rules.

When ``torch.fx`` cannot trace a model, `rfgraph.tracing.trace` falls back to
``torch.export`` (non-strict), whose graph calls aten ops
(``torch.ops.aten.conv2d.default``, ``aten.max_pool2d_with_indices``...).  Most
aten ops take their arguments in the order of the ``torch`` / ``F`` function of
the same name, so they reuse that function's rule (`SAME_AS_FUNCTION`,
`SAME_AS_METHOD`); the few that do not (``convolution``, ``slice``,
``select``, ``upsample_*``, ops returning tuples) get a small adapter.  Every
overload of a listed op packet is registered.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional

import torch
import torch.nn.functional as F

from ..values import SymTensor
from .call import OpCall, dims_arg
from .constants import CONSTANT_LIKE_FUNCTIONS
from .mixing import reduction_rule
from .pointwise import channel_mixing_rule, identity_rule
from .rearrange import select_rule
from .shapes import apply_index
from .windowed import interpolate

__all__ = ["aten_functions", "with_indices", "SAME_AS_FUNCTION", "SAME_AS_METHOD", "POINTWISE", "CHANNEL_MIXING"]

aten = torch.ops.aten


def _convolution(rules) -> Callable:
    """``aten.convolution(input, weight, bias, stride, padding, dilation, transposed, output_padding, groups)``."""

    def rule(call: OpCall) -> SymTensor:
        x, weight, bias, stride, padding, dilation, transposed, output_padding, groups = (
            list(call.args) + [None] * 9
        )[:9]
        nd = weight.ndim - 2
        if transposed:
            fn = getattr(F, f"conv_transpose{nd}d")
            args = (x, weight, bias, stride, padding, output_padding, groups, dilation)
        else:
            fn = getattr(F, f"conv{nd}d")
            args = (x, weight, bias, stride, padding, dilation, groups)
        return rules[fn](call.with_args(args))

    return rule


def _slice(call: OpCall) -> SymTensor:
    """``aten.slice.Tensor(x, dim, start, end, step)``."""
    x = call.args[0]
    dim = dims_arg(call.arg(1, "dim", 0), x.ndim)[0]
    start, end, step = call.arg(2, "start", None), call.arg(3, "end", None), call.arg(4, "step", 1)
    index = [slice(None)] * x.ndim
    index[dim] = slice(start, end, step)
    return apply_index(call, x, tuple(index))


def with_indices(rule: Callable) -> Callable:
    """Ops returning ``(values, indices)``: indices carry the same positions."""

    def wrapped(call: OpCall) -> tuple:
        out = rule(call)
        if isinstance(out, tuple):  # the rule gives the indices itself
            return out
        return out, out.like(dtype=torch.int64)

    return wrapped


def _first_of(rule: Callable, extra: int) -> Callable:
    """Ops returning ``(out, stat, stat...)`` (native batch/layer norm): the statistics are not tracked."""

    def wrapped(call: OpCall) -> tuple:
        out = rule(call)
        return (out,) + tuple(out.as_unknown("normalisation statistics are not tracked") for _ in range(extra))

    return wrapped


def _upsample(mode: str, has_align: bool) -> Callable:
    """``aten.upsample_<mode>.vec(input, output_size, [align_corners,] scale_factors)``."""

    def rule(call: OpCall) -> SymTensor:
        x = call.args[0]
        size = call.arg(1, "output_size", None)
        align = call.arg(2, "align_corners", None) if has_align else None
        scales = call.arg(3 if has_align else 2, "scale_factors", None)
        if size is not None and len(size) == 0:
            size = None
        return interpolate(call, x, size, scales, mode, align, None)

    return rule


#: aten ops that act position by position but mix channels (see `rfgraph.rules.pointwise.channel_mixing_rule`).
CHANNEL_MIXING = ("channel_shuffle", "native_channel_shuffle")


#: aten op packets whose arguments follow the torch / F function (or Tensor method) of the given name.
SAME_AS_FUNCTION: dict[str, Any] = {
    **{f"conv{nd}d": getattr(F, f"conv{nd}d") for nd in (1, 2, 3)},
    **{f"conv_transpose{nd}d": getattr(F, f"conv_transpose{nd}d") for nd in (1, 2, 3)},
    **{f"max_pool{nd}d": getattr(F, f"max_pool{nd}d") for nd in (1, 2, 3)},
    **{f"avg_pool{nd}d": getattr(F, f"avg_pool{nd}d") for nd in (1, 2, 3)},
    **{f"adaptive_avg_pool{nd}d": getattr(F, f"adaptive_avg_pool{nd}d") for nd in (1, 2, 3)},
    **{f"_adaptive_avg_pool{nd}d": getattr(F, f"adaptive_avg_pool{nd}d") for nd in (2, 3)},
    "pad": F.pad, "constant_pad_nd": F.pad,
    "pixel_shuffle": F.pixel_shuffle, "pixel_unshuffle": F.pixel_unshuffle,
    "linear": F.linear, "layer_norm": F.layer_norm, "rms_norm": F.rms_norm, "group_norm": F.group_norm, "instance_norm": F.instance_norm,
    "cat": torch.cat, "concat": torch.cat, "stack": torch.stack, "einsum": torch.einsum,
    "matmul": torch.matmul, "mm": torch.matmul, "bmm": torch.matmul,
    "addmm": torch.addmm, "baddbmm": torch.baddbmm, "addbmm": torch.addbmm,
    "scaled_dot_product_attention": F.scaled_dot_product_attention,
    "embedding": F.embedding, "flip": torch.flip, "roll": torch.roll,
    "linalg_vector_norm": torch.linalg.vector_norm,
    **{name: getattr(torch, name) for name in CONSTANT_LIKE_FUNCTIONS},
}


#: aten op packets that behave like the Tensor method of the same (or given) name.
SAME_AS_METHOD: dict[str, str] = {
    **{name: name for name in (
        "relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "exp", "log", "sqrt", "rsqrt", "abs", "neg",
        "clamp", "clamp_", "clamp_min", "clamp_max", "erf", "square", "reciprocal", "sign", "floor", "ceil",
        "round", "clone", "contiguous", "detach", "nan_to_num", "sin", "cos", "zero_", "fill_",
        "add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "pow", "maximum", "minimum", "where",
        "masked_fill", "masked_fill_", "lerp", "addcmul", "addcdiv", "eq", "ne", "lt", "gt", "le", "ge",
        "remainder", "fmod", "floor_divide", "logical_and", "logical_or", "copy_",
        "view", "reshape", "flatten", "unflatten", "permute", "transpose", "t", "squeeze", "unsqueeze",
        "expand", "repeat", "repeat_interleave", "narrow", "split", "chunk", "unbind", "to",
        "new_zeros", "new_ones", "new_full", "new_empty", "zero_", "fill_", "normal_", "uniform_",
        "mean", "sum", "amax", "amin", "std", "var", "prod", "logsumexp", "norm", "all", "any", "argmax",
        "argmin", "softmax", "log_softmax", "cumsum", "cumprod",
    )},
    "_unsafe_view": "view", "split_with_sizes": "split", "_to_copy": "to", "type_as": "type_as",
    "reshape_as": "reshape_as", "view_as": "view_as", "expand_as": "expand_as",
    "_softmax": "softmax", "_log_softmax": "log_softmax", "alias": "clone", "lift_fresh_copy": "clone",
    "rsub": "sub", "true_divide": "div", "swapaxes": "transpose", "swapdims": "transpose",
}


#: aten activations and eval-mode layers that read exactly position u of each channel and keep channels apart.
POINTWISE = (
    "gelu", "silu", "silu_", "hardtanh", "hardtanh_", "hardswish", "hardswish_", "hardsigmoid", "hardsigmoid_",
    "leaky_relu", "leaky_relu_", "elu", "elu_", "selu", "celu", "mish", "softplus", "relu6", "prelu", "_prelu_kernel",
    "dropout", "dropout_", "feature_dropout", "feature_dropout_", "alpha_dropout", "alpha_dropout_",
    "feature_alpha_dropout", "feature_alpha_dropout_", "batch_norm",
    "logit", "log_sigmoid", "threshold", "threshold_",
    "erf", "sigmoid", "bitwise_not", "logical_not",
)


def _packet_overloads(name: str) -> list:
    packet = getattr(aten, name, None)
    if packet is None:
        return []
    try:
        return [getattr(packet, ov) for ov in packet.overloads()]
    except Exception:  # pragma: no cover - an unusual packet
        return []


def aten_functions(functions: Mapping, methods: Mapping) -> dict:
    """``{aten overload: rule}`` built from the torch-level tables ``functions`` and ``methods``."""
    identity, channel_mixing, reduction = identity_rule, channel_mixing_rule, reduction_rule
    table: dict[Any, Callable] = {}

    def put(name: str, rule: Optional[Callable]) -> None:
        if rule is None:
            return
        for ov in _packet_overloads(name):
            table[ov] = rule

    for name in POINTWISE:
        put(name, identity)
    for name in CHANNEL_MIXING:
        put(name, channel_mixing)
    for name, method in SAME_AS_METHOD.items():
        put(name, methods.get(method))
    for name, fn in SAME_AS_FUNCTION.items():
        put(name, functions.get(fn))
    put("convolution", _convolution(functions))
    put("_convolution", _convolution(functions))
    put("slice", _slice)
    put("select", select_rule)
    for nd in (1, 2, 3):
        put(f"max_pool{nd}d_with_indices", with_indices(functions[getattr(F, f"max_pool{nd}d")]))
        put(f"adaptive_max_pool{nd}d", with_indices(functions[getattr(F, f"adaptive_max_pool{nd}d")]))
    for name in ("max", "min"):
        # max.dim returns (values, indices); max.other is elementwise; max.default reduces all dims
        for ov in _packet_overloads(name):
            arg_names = [a.name for a in ov._schema.arguments]
            if len(ov._schema.returns) == 2:
                table[ov] = with_indices(reduction)
            elif "other" in arg_names:
                table[ov] = methods.get("maximum" if name == "max" else "minimum")
            else:
                table[ov] = reduction
    put("_native_batch_norm_legit_no_training", _first_of(identity, 2))
    put("native_layer_norm", _first_of(functions[F.layer_norm], 2))
    put("_fused_rms_norm", _first_of(functions[F.rms_norm], 1))
    for nd in (1, 2, 3):
        put(f"upsample_nearest{nd}d", _upsample("nearest", False))
        put(f"_upsample_nearest_exact{nd}d", _upsample("nearest-exact", False))
    put("upsample_linear1d", _upsample("linear", True))
    put("upsample_bilinear2d", _upsample("bilinear", True))
    put("upsample_trilinear3d", _upsample("trilinear", True))
    put("upsample_bicubic2d", _upsample("bicubic", True))
    table.pop(None, None)
    return table


