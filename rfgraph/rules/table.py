"""The rule registry as a table: module type / function / method name -> rule.

Read it as fvcore's ``_DEFAULT_SUPPORTED_OPS`` or torch's decomposition
tables.  Each set of ops sharing one rule states the criterion every member
satisfies; an op that does not satisfy it does not belong in the set (it would
give wrong numbers, not an error).  Families with 1-D / 2-D / 3-D variants are
built by a factory over ``nd``.  `DEFAULT_RULES` is read-only;
``DEFAULT_RULES.override(...)`` gives a per-analysis copy.
"""

from __future__ import annotations

import operator
import sys
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import maxvit, swin_transformer
from torchvision.models.video import mvit
from torchvision.models.video import swin_transformer as video_swin
from torchvision.ops.drop_block import drop_block2d, drop_block3d
from torchvision.ops.stochastic_depth import stochastic_depth

from .aten import aten_functions, with_indices
from .call import Rule, RuleSet
from .constants import CONSTANT_LIKE_FUNCTIONS, CONSTANT_LIKE_METHODS, constant_like_rule, type_as_rule
from .mixing import (
    add_product_rule,
    attention_module_rule,
    cumulative_rule,
    einsum_rule,
    group_norm_dims,
    instance_norm_dims,
    layer_norm_dims,
    linear_rule,
    matmul_rule,
    mha_function_rule,
    mix_dim_rule,
    norm_context_rule,
    norm_rule,
    reduction_rule,
    relative_logits_rule,
    sdpa_rule,
    softmax_module_rule,
)
from .pointwise import (
    channel_mixing_rule,
    copy_rule,
    dtype_rule,
    glu_rule,
    identity_rule,
    local_response_norm_rule,
    merge_rule,
    normalize_rule,
)
from .rearrange import flip_rule, roll_rule, select_rule
from .recurrent import recurrent_rule
from .shapes import (
    cat_rule,
    chunk_rule,
    dim_rule,
    embedding_rule,
    expand_as_rule,
    expand_rule,
    flatten_rule,
    getattr_rule,
    getitem_rule,
    narrow_rule,
    numel_rule,
    permute_rule,
    repeat_interleave_rule,
    repeat_rule,
    reshape_rule,
    size_rule,
    split_rule,
    squeeze_rule,
    stack_rule,
    t_rule,
    tensor_split_rule,
    transpose_rule,
    unbind_rule,
    unflatten_rule,
    unsqueeze_rule,
    view_as_rule,
)
from .torchvision import (
    maxvit_partition_attention_rule,
    mvit_add_rel_pos_rule,
    mvit_add_shortcut_rule,
    mvit_squeeze_rule,
    mvit_unsqueeze_rule,
    swin_patch_merging_pad_rule,
    swin_window_attention_rule,
)
from .windowed import (
    adaptive_function_rule,
    adaptive_module_rule,
    avg_pool_function_rule,
    conv_function_rule,
    conv_module_rule,
    conv_transpose_function_rule,
    conv_transpose_module_rule,
    fold_rule,
    im2col_rule,
    interpolate_function_rule,
    lp_pool_function_rule,
    max_pool_function_rule,
    pad_function_rule,
    pad_module_rule,
    pixel_shuffle_rule,
    pixel_unshuffle_rule,
    pool_module_rule,
    tensor_unfold_rule,
    upsample_module_rule,
)

__all__ = [
    "DEFAULT_RULES",
    "MODULE_RULES",
    "FUNCTION_RULES",
    "METHOD_RULES",
    "IDENTITY_MODULES",
    "IDENTITY_FUNCTIONS",
    "IDENTITY_METHODS",
    "CHANNEL_MIXING_MODULES",
    "CHANNEL_MIXING_FUNCTIONS",
    "MERGE_FUNCTIONS",
    "MERGE_METHODS",
    "REDUCTIONS",
    "MIX_DIM",
    "NAMED_FUNCTION_RULES",
    "named_function_rules",
]

NDS = (1, 2, 3)


# ---------------------------------------------------------------------------
# sets of ops sharing one rule, each with its criterion
# ---------------------------------------------------------------------------

#: Identity on fields: reads exactly position u of each channel and keeps channels apart
#: (activations, eval-mode batch norm, dropout; per-channel affine parameters are allowed).
IDENTITY_MODULES: frozenset[type] = frozenset({
    nn.Identity, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Hardshrink, nn.Softshrink, nn.Sigmoid, nn.Tanh,
    nn.Softplus, nn.Softsign, nn.Tanhshrink, nn.Threshold, nn.LogSigmoid,
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout,
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm,
})

#: Identity on fields, as functions: reads exactly position u of each channel and keeps channels apart.
IDENTITY_FUNCTIONS: frozenset[Any] = frozenset({
    F.relu, F.relu_, F.relu6, F.leaky_relu, F.leaky_relu_, F.elu, F.elu_, F.selu, F.celu, F.gelu, F.silu, F.mish,
    F.hardswish, F.hardsigmoid, F.hardtanh, F.hardtanh_, F.sigmoid, F.tanh, F.softplus, F.softsign,
    F.tanhshrink, F.threshold, F.logsigmoid, F.prelu, F.rrelu, F.hardshrink, F.softshrink,
    F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, F.feature_alpha_dropout, F.batch_norm,
    torch.relu, torch.relu_, torch.sigmoid, torch.tanh, torch.exp, torch.log, torch.sqrt, torch.rsqrt, torch.abs,
    torch.neg, torch.sin, torch.cos, torch.erf, torch.square, torch.reciprocal, torch.sign, torch.floor,
    torch.ceil, torch.round, torch.clamp, torch.clip, torch.clamp_min, torch.clamp_max, torch.nan_to_num,
    torch.dropout, torch.detach, torch.clone,
    operator.neg, operator.pos, operator.abs, operator.invert, operator.not_,
    stochastic_depth,  # per-sample scaling
    drop_block2d, drop_block3d,  # identity in eval; in training a random mask, no reach
})

#: Identity on fields, as Tensor methods: reads exactly position u of each channel and keeps channels apart.
IDENTITY_METHODS: frozenset[str] = frozenset({
    "relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "exp", "exp_", "log", "sqrt", "rsqrt", "abs", "neg",
    "clamp", "clamp_", "clip", "clip_", "clamp_min", "clamp_min_", "clamp_max", "erf", "square", "reciprocal",
    "sign", "floor", "ceil", "round", "contiguous", "detach", "clone", "requires_grad_", "cpu", "cuda",
    "hardtanh_", "nan_to_num", "sin", "cos",
})

#: Reads exactly position u, but each output channel reads several input channels (dim 1): the spatial
#: field is kept, a channel slice after it sees the union of the channels' fields.
CHANNEL_MIXING_MODULES: dict[type, Rule] = {
    nn.ChannelShuffle: channel_mixing_rule,
    nn.LocalResponseNorm: local_response_norm_rule,
}
CHANNEL_MIXING_FUNCTIONS: dict[Any, Rule] = {
    torch.channel_shuffle: channel_mixing_rule,
    torch.native_channel_shuffle: channel_mixing_rule,
    F.channel_shuffle: channel_mixing_rule,
    F.native_channel_shuffle: channel_mixing_rule,
    F.local_response_norm: local_response_norm_rule,
}

#: Elementwise over broadcast operands: output position u reads position u of every operand (pointwise
#: min / max of their fields).
MERGE_FUNCTIONS: frozenset[Any] = frozenset({
    operator.add, operator.sub, operator.mul, operator.truediv, operator.floordiv, operator.pow, operator.mod,
    operator.iadd, operator.isub, operator.imul, operator.itruediv, operator.and_, operator.or_, operator.xor,
    operator.lt, operator.le, operator.gt, operator.ge, operator.eq, operator.ne,
    torch.add, torch.sub, torch.subtract, torch.mul, torch.multiply, torch.div, torch.divide, torch.true_divide,
    torch.pow, torch.maximum, torch.minimum, torch.fmax, torch.fmin, torch.where, torch.addcmul, torch.addcdiv,
    torch.lerp, torch.masked_fill, torch.logical_and, torch.logical_or, torch.eq, torch.ne, torch.lt, torch.gt,
    torch.le, torch.ge, torch.atan2, torch.hypot, torch.remainder, torch.fmod, torch.floor_divide,
})
MERGE_METHODS: frozenset[str] = frozenset({
    "add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "pow", "pow_", "maximum", "minimum", "where",
    "masked_fill", "masked_fill_", "lerp", "addcmul", "addcdiv", "__add__", "__radd__", "__mul__", "__rmul__",
    "__sub__", "__rsub__", "__truediv__", "__rtruediv__", "eq", "ne", "lt", "gt", "le", "ge",
    "remainder", "fmod", "floor_divide", "logical_and", "logical_or",
})

#: Reduce ``dim`` (all dims when none is given): every reduced spatial dim becomes global.
REDUCTIONS: tuple[str, ...] = (
    "mean", "sum", "amax", "amin", "max", "min", "std", "var", "prod", "logsumexp", "nansum", "nanmean",
    "all", "any", "count_nonzero", "median", "argmax", "argmin",
)
#: Keep the shape, but every position along ``dim`` depends on the whole of ``dim``.
MIX_DIM: tuple[str, ...] = (
    "softmax", "log_softmax", "softmin", "sort", "argsort",
)
#: Causal scans along ``dim``: position ``u`` reads ``0 .. u`` of it.
CUMULATIVE: tuple[str, ...] = ("cumsum", "cumprod", "cummax", "cummin")

#: Dtype and device conversions: identity on fields, with the new dtype.
DTYPE_METHODS: tuple[str, ...] = ("to", "type", "float", "double", "half", "bfloat16", "long", "int", "bool")

PADDING_MODULES: tuple[type, ...] = (
    nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d, nn.ConstantPad1d, nn.ConstantPad2d, nn.ConstantPad3d,
    nn.ReflectionPad1d, nn.ReflectionPad2d, nn.ReflectionPad3d, nn.ReplicationPad1d, nn.ReplicationPad2d,
    nn.ReplicationPad3d, nn.CircularPad1d, nn.CircularPad2d, nn.CircularPad3d,
)


# ---------------------------------------------------------------------------
# families with 1-D / 2-D / 3-D variants
# ---------------------------------------------------------------------------


def windowed_modules(nd: int) -> dict[type, Rule]:
    """Conv, transposed conv and pooling modules of dimension ``nd``."""
    suffix = f"{nd}d"
    table: dict[type, Rule] = {
        getattr(nn, f"Conv{suffix}"): conv_module_rule,
        getattr(nn, f"ConvTranspose{suffix}"): conv_transpose_module_rule,
        getattr(nn, f"MaxPool{suffix}"): pool_module_rule(nd),
        getattr(nn, f"AvgPool{suffix}"): pool_module_rule(nd),
        getattr(nn, f"AdaptiveMaxPool{suffix}"): adaptive_module_rule(nd),
        getattr(nn, f"AdaptiveAvgPool{suffix}"): adaptive_module_rule(nd),
    }
    if hasattr(nn, f"LPPool{suffix}"):
        table[getattr(nn, f"LPPool{suffix}")] = pool_module_rule(nd)
    return table


def windowed_functions(nd: int) -> dict[Any, Rule]:
    """Conv, transposed conv and pooling functions of dimension ``nd`` (``F.`` and ``torch.`` spellings)."""
    suffix = f"{nd}d"
    table: dict[Any, Rule] = {
        getattr(F, f"conv{suffix}"): conv_function_rule(nd),
        getattr(torch, f"conv{suffix}"): conv_function_rule(nd),
        getattr(F, f"conv_transpose{suffix}"): conv_transpose_function_rule(nd),
        getattr(F, f"max_pool{suffix}"): max_pool_function_rule(nd),
        getattr(torch, f"max_pool{suffix}"): max_pool_function_rule(nd),
        # (values, indices), as their aten spellings
        getattr(F, f"max_pool{suffix}_with_indices"): with_indices(max_pool_function_rule(nd)),
        getattr(F, f"avg_pool{suffix}"): avg_pool_function_rule(nd),
        getattr(F, f"adaptive_avg_pool{suffix}"): adaptive_function_rule(nd),
        getattr(F, f"adaptive_max_pool{suffix}"): adaptive_function_rule(nd),
        getattr(F, f"adaptive_max_pool{suffix}_with_indices"): with_indices(adaptive_function_rule(nd)),
    }
    if hasattr(F, f"lp_pool{suffix}"):
        table[getattr(F, f"lp_pool{suffix}")] = lp_pool_function_rule(nd)
    return table


def _torch_and_tensor(names, rule: Rule, namespaces=(torch,)) -> tuple[dict[Any, Rule], dict[str, Rule]]:
    """``torch.<name>`` (and ``F.<name>``) functions and ``Tensor.<name>`` methods sharing ``rule``."""
    functions = {getattr(ns, n): rule for n in names for ns in namespaces if hasattr(ns, n)}
    return functions, {n: rule for n in names if hasattr(torch.Tensor, n)}


_reduction_functions, _reduction_methods = _torch_and_tensor(REDUCTIONS, reduction_rule)
_mix_functions, _mix_methods = _torch_and_tensor(MIX_DIM, mix_dim_rule, (torch, F))
_cumulative_functions, _cumulative_methods = _torch_and_tensor(CUMULATIVE, cumulative_rule)
_layer_norm = norm_context_rule(layer_norm_dims)
_group_norm = norm_context_rule(group_norm_dims)
_instance_norm = norm_context_rule(instance_norm_dims)


# ---------------------------------------------------------------------------
# the table
# ---------------------------------------------------------------------------

MODULE_RULES: dict[type, Rule] = {
    **dict.fromkeys(IDENTITY_MODULES, identity_rule),
    **CHANNEL_MIXING_MODULES,
    nn.GLU: glu_rule,
    # windowed
    **windowed_modules(1), **windowed_modules(2), **windowed_modules(3),
    nn.Upsample: upsample_module_rule,
    nn.UpsamplingNearest2d: upsample_module_rule,
    nn.UpsamplingBilinear2d: upsample_module_rule,
    **dict.fromkeys(PADDING_MODULES, pad_module_rule),
    nn.PixelShuffle: pixel_shuffle_rule,
    nn.PixelUnshuffle: pixel_unshuffle_rule,
    nn.Unfold: im2col_rule,
    nn.Fold: fold_rule,
    # norms
    nn.LayerNorm: _layer_norm,
    nn.RMSNorm: _layer_norm,
    nn.GroupNorm: _group_norm,
    nn.InstanceNorm1d: _instance_norm,
    nn.InstanceNorm2d: _instance_norm,
    nn.InstanceNorm3d: _instance_norm,
    # shapes
    nn.Flatten: flatten_rule,
    nn.Unflatten: unflatten_rule,
    nn.Embedding: embedding_rule,
    # mixing
    nn.Softmax: softmax_module_rule,
    nn.LogSoftmax: softmax_module_rule,
    nn.Softmin: softmax_module_rule,
    nn.Linear: linear_rule,
    nn.Bilinear: linear_rule,
    nn.MultiheadAttention: attention_module_rule,
    # recurrent (nn.RNNBase and its subclasses RNN, LSTM, GRU)
    nn.RNNBase: recurrent_rule,
    # torchvision
    maxvit.PartitionAttentionLayer: maxvit_partition_attention_rule,
}

FUNCTION_RULES: dict[Any, Rule] = {
    **dict.fromkeys(IDENTITY_FUNCTIONS, identity_rule),
    **CHANNEL_MIXING_FUNCTIONS,
    **dict.fromkeys(MERGE_FUNCTIONS, merge_rule),
    F.glu: glu_rule,
    F.normalize: normalize_rule,
    # windowed
    **windowed_functions(1), **windowed_functions(2), **windowed_functions(3),
    F.interpolate: interpolate_function_rule,
    F.upsample: interpolate_function_rule,
    F.pad: pad_function_rule,
    torch.constant_pad_nd: pad_function_rule,
    F.pixel_shuffle: pixel_shuffle_rule,
    torch.pixel_shuffle: pixel_shuffle_rule,
    F.pixel_unshuffle: pixel_unshuffle_rule,
    torch.pixel_unshuffle: pixel_unshuffle_rule,
    F.unfold: im2col_rule,
    F.fold: fold_rule,
    # norms
    F.layer_norm: _layer_norm,
    F.rms_norm: _layer_norm,
    F.group_norm: _group_norm,
    F.instance_norm: _instance_norm,
    # shapes
    torch.cat: cat_rule,
    torch.concat: cat_rule,
    torch.concatenate: cat_rule,
    torch.stack: stack_rule,
    torch.reshape: reshape_rule,
    torch.flatten: flatten_rule,
    torch.unflatten: unflatten_rule,
    torch.permute: permute_rule,
    torch.transpose: transpose_rule,
    torch.t: t_rule,
    torch.squeeze: squeeze_rule,
    torch.unsqueeze: unsqueeze_rule,
    torch.numel: numel_rule,
    getattr: getattr_rule,
    operator.getitem: getitem_rule,
    torch.narrow: narrow_rule,
    torch.split: split_rule,
    torch.chunk: chunk_rule,
    torch.unbind: unbind_rule,
    torch.tensor_split: tensor_split_rule,
    F.embedding: embedding_rule,
    # rearrangements
    torch.flip: flip_rule,
    torch.roll: roll_rule,
    torch.repeat_interleave: repeat_interleave_rule,
    torch.select: select_rule,
    # mixing
    **_reduction_functions,
    torch.norm: norm_rule,
    torch.linalg.vector_norm: norm_rule,
    torch.linalg.norm: norm_rule,
    **_mix_functions,
    **_cumulative_functions,
    F.linear: linear_rule,
    torch.matmul: matmul_rule,
    operator.matmul: matmul_rule,
    torch.bmm: matmul_rule,
    torch.mm: matmul_rule,
    torch.addmm: add_product_rule,
    torch.baddbmm: add_product_rule,
    torch.addbmm: add_product_rule,
    torch.einsum: einsum_rule,
    F.scaled_dot_product_attention: sdpa_rule,
    F.multi_head_attention_forward: mha_function_rule,
    # shape-derived constants
    **{getattr(torch, n): constant_like_rule for n in CONSTANT_LIKE_FUNCTIONS},
    torch.Tensor.type_as: type_as_rule,  # const.type_as(x): see RuleSet.lookup
    # torchvision
    swin_transformer.shifted_window_attention: swin_window_attention_rule,
    swin_transformer._patch_merging_pad: swin_patch_merging_pad_rule,
    video_swin.shifted_window_attention_3d: swin_window_attention_rule,
    mvit._unsqueeze: mvit_unsqueeze_rule,
    mvit._squeeze: mvit_squeeze_rule,
    mvit._add_rel_pos: mvit_add_rel_pos_rule,
    mvit._add_shortcut: mvit_add_shortcut_rule,
}

METHOD_RULES: dict[str, Rule] = {
    **dict.fromkeys(IDENTITY_METHODS, identity_rule),
    **dict.fromkeys(MERGE_METHODS, merge_rule),
    **dict.fromkeys(DTYPE_METHODS, dtype_rule),
    "copy_": copy_rule,
    # shapes
    "view": reshape_rule,
    "reshape": reshape_rule,
    "view_as": view_as_rule,
    "reshape_as": view_as_rule,
    "flatten": flatten_rule,
    "unflatten": unflatten_rule,
    "permute": permute_rule,
    "transpose": transpose_rule,
    "swapaxes": transpose_rule,
    "swapdims": transpose_rule,
    "t": t_rule,
    "squeeze": squeeze_rule,
    "unsqueeze": unsqueeze_rule,
    "expand": expand_rule,
    "expand_as": expand_as_rule,
    "repeat": repeat_rule,
    "repeat_interleave": repeat_interleave_rule,
    "size": size_rule,
    "dim": dim_rule,
    "numel": numel_rule,
    "narrow": narrow_rule,
    "split": split_rule,
    "chunk": chunk_rule,
    "unbind": unbind_rule,
    "tensor_split": tensor_split_rule,
    "unfold": tensor_unfold_rule,
    # rearrangements
    "flip": flip_rule,
    "roll": roll_rule,
    "select": select_rule,
    # mixing
    **_reduction_methods,
    "norm": norm_rule,
    **_mix_methods,
    **_cumulative_methods,
    "matmul": matmul_rule,
    "bmm": matmul_rule,
    "mm": matmul_rule,
    "addmm": add_product_rule,
    "baddbmm": add_product_rule,
    "addbmm": add_product_rule,
    "__matmul__": matmul_rule,
    # shape-derived constants
    **dict.fromkeys(CONSTANT_LIKE_METHODS, constant_like_rule),
    "type_as": type_as_rule,
}

#: Functions of other libraries with a rule, by ``module.qualname``: a pattern whose pieces have no exact
#: rule one by one (timm's relative-position "skew").  `named_function_rules` resolves those whose module
#: is imported (the model is built before it is analysed); fx then keeps each whole (autowrapped).
NAMED_FUNCTION_RULES: dict[str, Rule] = {
    "timm.layers.bottleneck_attn.rel_logits_1d": relative_logits_rule,
    "timm.layers.halo_attn.rel_logits_1d": relative_logits_rule,
}


def named_function_rules() -> dict[Any, Rule]:
    """``{function: rule}`` of `NAMED_FUNCTION_RULES` whose module is already imported (none is imported here)."""
    out: dict[Any, Rule] = {}
    for name, rule in NAMED_FUNCTION_RULES.items():
        module, _, attr = name.rpartition(".")
        fn = getattr(sys.modules.get(module), attr, None)
        if fn is not None:
            out[fn] = rule
    return out


#: The rules every analysis starts from (read-only): the tables above plus the aten spellings of
#: graphs from the ``torch.export`` fallback.
DEFAULT_RULES: RuleSet = RuleSet(
    MODULE_RULES,
    {**FUNCTION_RULES, **aten_functions(FUNCTION_RULES, METHOD_RULES)},
    METHOD_RULES,
)
