"""Rules for graphs exported by ``torch.export``, and for rearrangements along spatial dims.

Two tables, merged into `rfgraph.rules.DEFAULT_RULES`:

* **aten ops.**  When ``torch.fx`` cannot trace a model, `rfgraph.tracing.trace`
  falls back to ``torch.export`` (non-strict), whose graph calls aten ops
  (``torch.ops.aten.conv2d.default``, ``aten.max_pool2d_with_indices``...).  Most
  aten ops take their arguments in the order of the ``torch`` / ``F`` function of
  the same name, so they reuse that function's rule; the few that do not
  (``convolution``, ``slice``, ``select``, ``upsample_*``, ops returning tuples)
  get a small adapter.  Every overload of a listed op packet is registered.
* **rearrangements along a spatial dim.**  ``flip`` and ``roll`` reverse or wrap
  positions: the map from output to input index is decreasing or piecewise, not
  a window map, so along a dim that carries a local field they are handed to the
  fallback (which marks the node unknown, or probes it) -- never guessed.  Along
  channel dims, global dims, or with a shift that is a multiple of the length
  they are exact identities.  A concat along a spatial dim is exact when the
  pieces continue each other (``cat(split(x))``: piece ``i``'s map shifted by the
  lengths before it equals the first piece's map); otherwise it is piecewise and
  goes to the fallback.
* **embeddings.**  ``nn.Embedding`` / ``F.embedding`` look up each index on its
  own: the output keeps the index tensor's fields, with one extra,
  non-spatial, feature dim.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .algebra import PAMap
from .errors import RuleError
from .values import Axis, SymTensor, merge_tensors

__all__ = ["aten_functions", "rearrangement_rules", "flip_rule", "roll_rule", "select_rule", "spatial_cat",
           "embedding_rule"]

aten = torch.ops.aten


# ---------------------------------------------------------------------------
# rearrangements along spatial dims
# ---------------------------------------------------------------------------


def _hand_over(call, x: SymTensor, reason: str, shape=None) -> Any:
    """No exact rule for this call: the analysis' fallback decides (probe or unknown), never a guess."""
    interp = call.interp
    if interp is not None and getattr(interp, "fallback", None) != getattr(interp, "unknown_fallback", None):
        out = interp.fallback(call)
        if isinstance(out, SymTensor) and out.unknown and reason not in out.unknown:
            out.unknown = f"{call.describe()}: {reason}; {out.unknown}"
        return out
    if interp is not None:
        what = call.describe()
        interp.unknown_ops[what] = interp.unknown_ops.get(what, 0) + 1
    return x.as_unknown(f"{call.describe()}: {reason}", shape=shape)


def _local_axis(x: SymTensor, d: int) -> bool:
    """Whether dim ``d`` carries spatial positions that are not all global."""
    tag = x.tags[d]
    return tag is not None and x.shape[d] > 1 and any(not f.is_global for _, f in tag.items())


def _dims(value: Any, ndim: int) -> list[int]:
    values = value if isinstance(value, (list, tuple)) else [value]
    return [int(d) + ndim if int(d) < 0 else int(d) for d in values]


def flip_rule(call) -> SymTensor:
    """``torch.flip(x, dims)``: identity unless a flipped dim holds local spatial positions."""
    x = call.args[0]
    dims = _dims(call.arg(1, "dims"), x.ndim)
    flipped = [d for d in dims if _local_axis(x, d)]
    if flipped:
        return _hand_over(call, x, f"flip reverses the positions of spatial dim {flipped[0]} (a decreasing map); "
                                   "no exact rule")
    return x


def roll_rule(call) -> SymTensor:
    """``torch.roll(x, shifts, dims)``: identity unless it wraps local spatial positions around."""
    x = call.args[0]
    shifts = call.arg(1, "shifts")
    dims = call.arg(2, "dims", None)
    if dims is None or (isinstance(dims, (list, tuple)) and len(dims) == 0):
        # roll of the flattened tensor: every position can move to any dim
        if any(_local_axis(x, d) for d in range(x.ndim)) and int(_as_list(shifts)[0]) % max(1, _numel(x)):
            return _hand_over(call, x, "roll of the flattened tensor moves spatial positions; no exact rule")
        return x
    for d, s in zip(_dims(dims, x.ndim), _as_list(shifts)):
        if _local_axis(x, d) and int(s) % x.shape[d]:
            return _hand_over(call, x, f"roll by {int(s)} wraps the positions of spatial dim {d} around "
                                       "(a piecewise map); no exact rule")
    return x


def _as_list(v: Any) -> list:
    return list(v) if isinstance(v, (list, tuple)) else [v]


def _numel(x: SymTensor) -> int:
    n = 1
    for s in x.shape:
        n *= s
    return n


def select_rule(call) -> SymTensor:
    """``x.select(dim, i)`` / ``aten.select.int``: one position along ``dim``, dim dropped."""
    x = call.args[0]
    dim = _dims(call.arg(1, "dim"), x.ndim)[0]
    i = int(call.arg(2, "index"))
    n = x.shape[dim]
    if not -n <= i < n:
        raise RuleError(f"{call.describe()} at node {call.name!r}: index {i} out of range for size {n}")
    return x.index(dim, i + n if i < 0 else i)


def spatial_cat(call, tensors: list[SymTensor], dim: int) -> SymTensor:
    """Concat along a dim that carries spatial positions in some operand.

    Output index ``u`` in piece ``i`` reads index ``u - o_i`` of operand ``i``
    (``o_i``: total length of the pieces before it).  The whole is one
    periodic-affine map exactly when every operand's map shifted by ``o_i``
    equals the first operand's map (the pieces of a split, put back); anything
    else is piecewise and goes to the fallback.
    """
    shape = list(tensors[0].shape)
    shape[dim] = sum(t.shape[dim] for t in tensors)
    unknown = next((t.unknown for t in tensors if t.unknown), None)
    if unknown:
        return tensors[0].as_unknown(unknown, shape=shape)
    tags = [t.tags[dim] for t in tensors]
    first = tags[0]
    reason = None
    if not all(isinstance(tag, Axis) for tag in tags) or len({tag.axis for tag in tags}) != 1:
        reason = f"concat along dim {dim} joins operands of which not all carry the same spatial axis"
    else:
        offset = 0
        for t, tag in zip(tensors, tags):
            shift = PAMap.affine(1, -offset)
            if tag.field.through(shift, shift) != first.field:
                reason = (
                    f"concat along spatial dim {dim} joins pieces whose fields do not continue each other "
                    "(a piecewise map); no exact rule"
                )
                break
            offset += t.shape[dim]
    if reason is not None:
        return _hand_over(call, tensors[0], reason, shape=tuple(shape))
    stripped = []
    for t in tensors:
        t_tags = list(t.tags)
        t_tags[dim] = None
        stripped.append(t.like(tags=t_tags))
    out, info = merge_tensors(stripped, shape, call.describe(), concat_dim=dim)
    call.note_merge(info)
    if out.unknown:
        return out
    out_tags = list(out.tags)
    out_tags[dim] = first
    return out.like(tags=out_tags)


# ---------------------------------------------------------------------------
# embeddings
# ---------------------------------------------------------------------------


def embedding_rule(call) -> SymTensor:
    """Each index is looked up on its own: the index tensor's fields plus a non-spatial feature dim."""
    if call.module is not None:
        idx, dim = call.args[0], call.module.embedding_dim
    else:
        idx, weight = call.arg(0, "input"), call.arg(1, "weight")
        if not isinstance(idx, SymTensor):  # aten.embedding(weight, indices, ...)
            idx, weight = weight, idx
        dim = weight.shape[-1]
    if not isinstance(idx, SymTensor):
        raise RuleError(f"{call.describe()} at node {call.name!r}: expected an index tensor")
    return idx.like(shape=idx.shape + (dim,), tags=idx.tags + (None,), dtype=torch.float32)


# ---------------------------------------------------------------------------
# aten adapters
# ---------------------------------------------------------------------------


def _convolution(rules) -> Callable:
    """``aten.convolution(input, weight, bias, stride, padding, dilation, transposed, output_padding, groups)``."""

    def rule(call) -> SymTensor:
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
        return rules[fn](_recall(call, args))

    return rule


def _recall(call, args: tuple, kwargs: Optional[dict] = None):
    """The same call with other arguments (an adapter's translation)."""
    return type(call)(call.node, call.target, call.module, tuple(args), dict(kwargs or {}), call.interp)


def _slice(call) -> SymTensor:
    """``aten.slice.Tensor(x, dim, start, end, step)``."""
    from .rules import _index

    x = call.args[0]
    dim = _dims(call.arg(1, "dim", 0), x.ndim)[0]
    start, end, step = call.arg(2, "start", None), call.arg(3, "end", None), call.arg(4, "step", 1)
    index = [slice(None)] * x.ndim
    index[dim] = slice(start, end, step)
    return _index(call, x, tuple(index))


def _with_indices(rule: Callable) -> Callable:
    """Ops returning ``(values, indices)``: indices carry the same positions."""

    def wrapped(call) -> tuple:
        out = rule(call)
        return out, out.like(dtype=torch.int64)

    return wrapped


def _first_of(rule: Callable, extra: int) -> Callable:
    """Ops returning ``(out, stat, stat...)`` (native batch/layer norm): the statistics are not tracked."""

    def wrapped(call) -> tuple:
        out = rule(call)
        return (out,) + tuple(out.as_unknown("normalisation statistics are not tracked") for _ in range(extra))

    return wrapped


def _upsample(mode: str, has_align: bool) -> Callable:
    """``aten.upsample_<mode>.vec(input, output_size, [align_corners,] scale_factors)``."""

    def rule(call) -> SymTensor:
        from .rules import _interpolate

        x = call.args[0]
        size = call.arg(1, "output_size", None)
        align = call.arg(2, "align_corners", None) if has_align else None
        scales = call.arg(3 if has_align else 2, "scale_factors", None)
        if size is not None and len(size) == 0:
            size = None
        return _interpolate(call, x, size, scales, mode, align, None)

    return rule


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
    "linear": F.linear, "layer_norm": F.layer_norm, "group_norm": F.group_norm, "instance_norm": F.instance_norm,
    "cat": torch.cat, "concat": torch.cat, "stack": torch.stack, "einsum": torch.einsum,
    "matmul": torch.matmul, "mm": torch.matmul, "bmm": torch.matmul,
    "scaled_dot_product_attention": F.scaled_dot_product_attention,
    "embedding": F.embedding, "flip": torch.flip, "roll": torch.roll,
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
        "expand", "repeat", "narrow", "split", "chunk", "unbind", "to",
        "mean", "sum", "amax", "amin", "std", "var", "prod", "logsumexp", "norm", "all", "any", "argmax",
        "argmin", "softmax", "log_softmax", "cumsum", "cumprod",
    )},
    "_unsafe_view": "view", "split_with_sizes": "split", "_to_copy": "to", "type_as": "to",
    "_softmax": "softmax", "_log_softmax": "log_softmax", "alias": "clone", "lift_fresh_copy": "clone",
    "rsub": "sub", "true_divide": "div", "swapaxes": "transpose", "swapdims": "transpose",
}

#: aten activations and eval-mode layers that act position by position.
POINTWISE = (
    "gelu", "silu", "silu_", "hardtanh", "hardtanh_", "hardswish", "hardswish_", "hardsigmoid", "hardsigmoid_",
    "leaky_relu", "leaky_relu_", "elu", "elu_", "selu", "celu", "mish", "softplus", "relu6", "prelu", "_prelu_kernel",
    "dropout", "dropout_", "feature_dropout", "alpha_dropout", "feature_alpha_dropout", "batch_norm",
    "logit", "log_sigmoid", "threshold", "threshold_", "channel_shuffle", "native_channel_shuffle",
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


def aten_functions(functions: dict, methods: dict, identity: Callable, reduction: Callable) -> dict:
    """``{aten overload: rule}`` built from the torch-level tables ``functions`` and ``methods``."""
    table: dict[Any, Callable] = {}

    def put(name: str, rule: Optional[Callable]) -> None:
        if rule is None:
            return
        for ov in _packet_overloads(name):
            table[ov] = rule

    for name in POINTWISE:
        put(name, identity)
    for name, method in SAME_AS_METHOD.items():
        put(name, methods.get(method))
    for name, fn in SAME_AS_FUNCTION.items():
        put(name, functions.get(fn))
    put("convolution", _convolution(functions))
    put("_convolution", _convolution(functions))
    put("slice", _slice)
    put("select", select_rule)
    for nd in (1, 2, 3):
        put(f"max_pool{nd}d_with_indices", _with_indices(functions[getattr(F, f"max_pool{nd}d")]))
        put(f"adaptive_max_pool{nd}d", _with_indices(functions[getattr(F, f"adaptive_max_pool{nd}d")]))
    for name in ("max", "min"):
        # max.dim returns (values, indices); max.other is elementwise; max.default reduces all dims
        for ov in _packet_overloads(name):
            arg_names = [a.name for a in ov._schema.arguments]
            if len(ov._schema.returns) == 2:
                table[ov] = _with_indices(reduction)
            elif "other" in arg_names:
                table[ov] = methods.get("maximum" if name == "max" else "minimum")
            else:
                table[ov] = reduction
    put("_native_batch_norm_legit_no_training", _first_of(identity, 2))
    put("native_layer_norm", _first_of(functions[F.layer_norm], 2))
    for nd in (1, 2, 3):
        put(f"upsample_nearest{nd}d", _upsample("nearest", False))
        put(f"_upsample_nearest_exact{nd}d", _upsample("nearest-exact", False))
    put("upsample_linear1d", _upsample("linear", True))
    put("upsample_bilinear2d", _upsample("bilinear", True))
    put("upsample_trilinear3d", _upsample("trilinear", True))
    put("upsample_bicubic2d", _upsample("bicubic", True))
    table.pop(None, None)
    return table


def rearrangement_rules() -> tuple[dict, dict, dict]:
    """``(modules, functions, methods)`` for flip, roll, select and embeddings (fx graphs)."""
    modules = {nn.Embedding: embedding_rule}
    functions = {torch.flip: flip_rule, torch.roll: roll_rule, torch.select: select_rule,
                 F.embedding: embedding_rule}
    methods = {"flip": flip_rule, "roll": roll_rule, "select": select_rule}
    return modules, functions, methods

