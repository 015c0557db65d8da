"""The sanitized copy of a model that the numeric probes run on, and the functional
replacements they apply by op.

Shared by the whole-model probe (`rfgraph.probing`) and the symbolic pass's local
fallback (`rfgraph.fallback`).  Chosen by op, never by a symbolic rule.  The user's
model is never modified: `sanitized_copy` deep-copies it.
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .rules.call import target_name

__all__ = ["sanitized_copy", "support_safe", "first_unsafe_op", "SUPPORT_SAFE_OPS", "FUNCTION_REPLACEMENTS", "IDENTITY_METHODS", "IDENTITY_MODULE_TYPES", "NORM_ALIASES", "aten_overloads"]


# ---------------------------------------------------------------------------
# the sanitized copy
# ---------------------------------------------------------------------------


class _WindowSum(nn.Module):
    """Max pooling made linear: the sum (average) over the same window, so that backward reaches all of it."""

    def __init__(self, nd: int, kernel, stride, padding, dilation, ceil_mode: bool, return_indices: bool = False):
        super().__init__()
        self.nd = nd
        self.kernel = _tup(kernel, nd)
        self.stride = _tup(stride if stride not in (None, (), []) else kernel, nd)
        self.padding = _tup(padding, nd)
        self.dilation = _tup(dilation, nd)
        self.ceil_mode = bool(ceil_mode)
        self.return_indices = bool(return_indices)

    @classmethod
    def of(cls, m: nn.Module, nd: int) -> _WindowSum:
        return cls(nd, m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode, m.return_indices)

    def forward(self, x: torch.Tensor):
        out = _window_sum(x, self.nd, self.kernel, self.stride, self.padding, self.dilation, self.ceil_mode)
        if self.return_indices:
            return out, torch.zeros(out.shape, dtype=torch.int64, device=out.device)
        return out


def _tup(v: Any, nd: int) -> tuple[int, ...]:
    if isinstance(v, (list, tuple)):
        if len(v) == 1:
            return tuple(int(v[0]) for _ in range(nd))
        return tuple(int(x) for x in v)
    return (int(v),) * nd


def _window_sum(x, nd, kernel, stride, padding, dilation, ceil_mode):
    if all(d == 1 for d in dilation):
        avg = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[nd - 1]
        return avg(x, kernel, stride, padding, ceil_mode, True)
    # Dilated: a depthwise convolution with a kernel of ones over the same taps,
    # cropped / right-padded to the size max pooling gives.
    maxp = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[nd - 1]
    target = maxp(torch.empty(x.shape, device="meta"), kernel, stride, padding, dilation, ceil_mode).shape[2:]
    pads: list[int] = []
    for i in reversed(range(nd)):
        n = x.shape[x.ndim - nd + i]
        need = (target[i] - 1) * stride[i] + dilation[i] * (kernel[i] - 1) + 1
        pads += [padding[i], max(padding[i], need - n - padding[i])]
    c = x.shape[1]
    weight = torch.ones((c, 1) + tuple(kernel), dtype=x.dtype, device=x.device)
    conv = (F.conv1d, F.conv2d, F.conv3d)[nd - 1]
    out = conv(F.pad(x, pads), weight, None, stride, 0, dilation, c)
    index = (slice(None), slice(None)) + tuple(slice(0, t) for t in target)
    return out[index]


_MAX_POOLS = {nn.MaxPool1d: 1, nn.MaxPool2d: 2, nn.MaxPool3d: 3}
_ADAPTIVE_MAX = {nn.AdaptiveMaxPool1d: nn.AdaptiveAvgPool1d, nn.AdaptiveMaxPool2d: nn.AdaptiveAvgPool2d,
                 nn.AdaptiveMaxPool3d: nn.AdaptiveAvgPool3d}

#: Pointwise modules whose gradient can vanish (saturation, dead zones, zero
#: derivative) or that only matter in training: replaced by the identity.  A
#: pointwise op never changes which input positions a value depends on.
IDENTITY_MODULE_TYPES: tuple[type, ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Hardshrink, nn.Softshrink, nn.Sigmoid, nn.Tanh, nn.Softplus,
    nn.Softsign, nn.Tanhshrink, nn.Threshold, nn.LogSigmoid,
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout,
)


def _replace_children(module: nn.Module) -> None:
    for name, child in list(module.named_children()):
        if isinstance(child, IDENTITY_MODULE_TYPES):
            setattr(module, name, nn.Identity())
        elif type(child) in _MAX_POOLS:
            setattr(module, name, _WindowSum.of(child, _MAX_POOLS[type(child)]))
        elif type(child) in _ADAPTIVE_MAX:
            if child.return_indices:
                _replace_children(child)
                continue
            setattr(module, name, _ADAPTIVE_MAX[type(child)](child.output_size))
        else:
            _replace_children(child)


_POOL = 4_194_301  # prime


def _fill(t: torch.Tensor, pool: torch.Tensor, gen: torch.Generator) -> None:
    n = t.numel()
    if n == 0:
        return
    offset = int(torch.randint(0, max(pool.numel() - n, 0) + 1, (1,), generator=gen)) % pool.numel()
    reps = -(-(offset + n) // pool.numel())
    src = pool.repeat(reps)[offset: offset + n] if reps > 1 else pool[offset: offset + n]
    t.copy_(src.view(t.shape))


def sanitized_copy(
    module: nn.Module, dtype: torch.dtype = torch.float64, seed: int = 0
) -> nn.Module:
    """A copy of ``module`` ready for probing; ``module`` itself is not modified.

    Parameters become positive random values (``U(0.5, 1.5) / fan_in``, so that
    activations neither explode nor vanish), batchnorm statistics become
    ``mean 0, var 1``, other buffers keep their values (positive random for a
    model on the ``meta`` device, where there are none), saturating
    activations and dropout become identities, max pooling a window sum; eval
    mode, float ``dtype``, no parameter requires grad.
    """
    memo: dict[int, Any] = {}
    for p in module.parameters():
        kind = dtype if p.is_floating_point() else p.dtype
        memo[id(p)] = nn.Parameter(torch.empty(p.shape, dtype=kind, device="meta"), requires_grad=False)
    originals = dict(module.named_buffers())
    for b in originals.values():
        memo[id(b)] = torch.empty(b.shape, dtype=dtype if b.is_floating_point() else b.dtype, device="meta")
    out = copy.deepcopy(module, memo)
    out.to_empty(device="cpu")
    gen = torch.Generator().manual_seed(seed)
    # One pool of U(0.5, 1.5) values of prime length, read cyclically from a random offset per
    # tensor: positive, random-looking, and much cheaper than drawing every weight.
    pool = torch.rand(_POOL, generator=gen, dtype=torch.float64).add_(0.5)
    stats = set()
    for name, m in out.named_modules():
        if isinstance(m, nn.modules.batchnorm._NormBase):
            for b in ("running_mean", "running_var", "num_batches_tracked"):
                if getattr(m, b, None) is not None:
                    stats.add(f"{name}.{b}" if name else b)
    with torch.no_grad():
        for name, b in out.named_buffers():
            src = originals.get(name)
            if name in stats:
                b.fill_(1 if name.endswith("running_var") else 0)
            elif src is not None and not src.is_meta:
                b.copy_(src)
            elif b.is_floating_point():
                _fill(b, pool, gen)
            else:
                b.zero_()
        for p in out.parameters():
            if not p.is_floating_point():
                p.zero_()
                continue
            fan = p.numel() // p.shape[0] if p.ndim >= 2 and p.shape[0] else 1
            _fill(p, pool, gen)
            if fan > 1:
                p.div_(fan)
    _replace_children(out)
    out.eval()
    for p in out.parameters():
        p.requires_grad_(False)
    return out


# ---------------------------------------------------------------------------
# functional replacements, chosen by op (never by a symbolic rule)
# ---------------------------------------------------------------------------


def _identity_first(*args, **kwargs):
    for a in args:
        if isinstance(a, torch.Tensor):
            return a
    return kwargs.get("input", next(iter(kwargs.values())))


_IDENTITY_FUNCTIONS = {
    f for f in (
        F.relu, F.relu_, F.relu6, F.leaky_relu, F.leaky_relu_, F.elu, F.elu_, F.selu, F.celu, F.gelu, F.silu,
        F.mish, F.hardswish, F.hardsigmoid, F.hardtanh, F.hardtanh_, F.sigmoid, F.tanh, F.softplus, F.softsign,
        F.tanhshrink, F.threshold, getattr(F, "threshold_", None), F.logsigmoid, F.prelu, F.rrelu, F.hardshrink,
        F.softshrink, F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, F.feature_alpha_dropout,
        torch.relu, torch.relu_, torch.sigmoid, torch.tanh, torch.clamp, torch.clip, torch.clamp_min,
        torch.clamp_max, torch.sign, torch.floor, torch.ceil, torch.round, torch.trunc, torch.dropout,
        torch.hardshrink, torch.threshold, torch.selu, torch.celu, torch.prelu, torch.rrelu,
    ) if f is not None
}
IDENTITY_METHODS = {
    "relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "clamp", "clamp_", "clip", "clip_", "clamp_min",
    "clamp_min_", "clamp_max", "clamp_max_", "sign", "sign_", "floor", "floor_", "ceil", "ceil_", "round", "round_",
    "trunc", "trunc_", "hardshrink",
}


def _max_pool_function(nd: int, indices: bool = False) -> Callable:
    names = ("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices")
    defaults = {"stride": None, "padding": 0, "dilation": 1, "ceil_mode": False, "return_indices": indices}

    def replacement(*args, **kwargs):
        a = dict(defaults)
        a.update(zip(names, args))
        a.update(kwargs)
        out = _window_sum(a["input"], nd, _tup(a["kernel_size"], nd),
                          _tup(a["stride"] if a["stride"] not in (None, (), []) else a["kernel_size"], nd),
                          _tup(a["padding"], nd), _tup(a["dilation"], nd), a["ceil_mode"])
        if a["return_indices"]:
            return out, torch.zeros(out.shape, dtype=torch.int64)
        return out

    return replacement


def _adaptive_max_function(nd: int, indices: bool = False) -> Callable:
    avg = (F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d)[nd - 1]

    def replacement(x, output_size, return_indices=indices):
        out = avg(x, output_size)
        if return_indices:
            return out, torch.zeros(out.shape, dtype=torch.int64)
        return out

    return replacement


FUNCTION_REPLACEMENTS: dict[Any, Callable] = {}
for _nd in (1, 2, 3):
    for _f in (getattr(F, f"max_pool{_nd}d"), getattr(torch, f"max_pool{_nd}d", None)):
        if _f is not None:
            FUNCTION_REPLACEMENTS[_f] = _max_pool_function(_nd)
    if hasattr(F, f"max_pool{_nd}d_with_indices"):
        FUNCTION_REPLACEMENTS[getattr(F, f"max_pool{_nd}d_with_indices")] = _max_pool_function(_nd, True)
    FUNCTION_REPLACEMENTS[getattr(F, f"adaptive_max_pool{_nd}d")] = _adaptive_max_function(_nd)
    if hasattr(F, f"adaptive_max_pool{_nd}d_with_indices"):
        FUNCTION_REPLACEMENTS[getattr(F, f"adaptive_max_pool{_nd}d_with_indices")] = _adaptive_max_function(_nd, True)
for _f in _IDENTITY_FUNCTIONS:
    FUNCTION_REPLACEMENTS[_f] = _identity_first

# Graphs exported by torch.export (rfgraph.tracing's fallback) call aten ops: the same replacements.
_aten = torch.ops.aten


def aten_overloads(name: str, overloads: Sequence[str] = ("default", "Tensor", "Scalar")) -> list:
    packet = getattr(_aten, name, None)
    if packet is None:
        return []
    return [getattr(packet, ov) for ov in packet.overloads() if ov in overloads]


for _name in ("relu", "relu_", "relu6", "hardtanh", "hardtanh_", "hardsigmoid", "hardsigmoid_", "hardswish",
              "hardswish_", "sigmoid", "sigmoid_", "tanh", "tanh_", "clamp", "clamp_", "clamp_min", "clamp_max",
              "gelu", "gelu_", "silu", "silu_", "mish", "mish_", "leaky_relu", "leaky_relu_", "elu", "elu_",
              "dropout", "feature_dropout", "sign", "floor", "ceil", "round", "trunc", "hardshrink", "softshrink",
              "threshold", "softplus", "log_sigmoid"):
    for _op in aten_overloads(_name):
        FUNCTION_REPLACEMENTS[_op] = _identity_first
for _nd in (1, 2, 3):
    for _op in aten_overloads(f"max_pool{_nd}d"):
        FUNCTION_REPLACEMENTS[_op] = _max_pool_function(_nd)
    for _op in aten_overloads(f"max_pool{_nd}d_with_indices"):
        FUNCTION_REPLACEMENTS[_op] = _max_pool_function(_nd, True)
    for _op in aten_overloads(f"adaptive_max_pool{_nd}d"):
        FUNCTION_REPLACEMENTS[_op] = _adaptive_max_function(_nd, True)

def _no_check(*args, **kwargs):
    return None


# torch.export records the traced dtype and device of some values (``_assert_tensor_metadata(x, dtype=float32,
# device=meta)``): the copy runs in another dtype, on the CPU, so these checks are skipped.
for _name in ("_assert_tensor_metadata",):
    for _op in aten_overloads(_name, ("default",)):
        FUNCTION_REPLACEMENTS[_op] = _no_check

def _keep_float(op: Callable) -> Callable:
    """An exported cast (``aten.to(x, torch.float32)``, ``_to_copy``) keeps a floating value in the copy's
    float type: the traced dtype is baked into the graph, and a cast between float types changes no
    dependence (``attn.to(v.dtype)`` in MONAI's SwinUNETR met a float64 ``v``)."""

    def replacement(x, *args, **kwargs):
        dtype = kwargs.get("dtype", next((a for a in args if isinstance(a, torch.dtype)), None))
        if isinstance(x, torch.Tensor) and x.is_floating_point() and (dtype is None or dtype.is_floating_point):
            return x
        return op(x, *args, **kwargs)

    return replacement


for _name, _ovs in (("to", ("dtype", "dtype_layout")), ("_to_copy", ("default",))):
    for _op in aten_overloads(_name, _ovs):
        FUNCTION_REPLACEMENTS[_op] = _keep_float(_op)

#: aten normalisations with the argument order of their F counterparts.
NORM_ALIASES: dict[Any, Any] = {}
for _op in aten_overloads("layer_norm"):
    NORM_ALIASES[_op] = F.layer_norm
for _op in aten_overloads("group_norm"):
    NORM_ALIASES[_op] = F.group_norm
for _op in aten_overloads("instance_norm"):
    NORM_ALIASES[_op] = F.instance_norm


# ---------------------------------------------------------------------------
# the probe's float type: float32 where the support of a gradient is exact in it
# ---------------------------------------------------------------------------

#: Ops whose local Jacobian on the sanitized copy has no negative entry: the copy's weights are positive,
#: biases and batchnorm shifts positive, the batchnorm scale positive (statistics mean 0, var 1), inputs
#: positive, so every value is positive and these ops (linear maps with non-negative coefficients, products
#: of positive values, index moves) back-propagate a non-negative gradient as a sum of non-negative terms.
#: Such a sum is zero exactly when every term is: no cancellation, in any float type.  Nor underflow:
#: the probe renormalises the gradient's magnitudes at every node (to U(0.5, 1.5)) and the values of the
#: forward (to at most 1e6 and at least 1e-6 in magnitude), so one op's terms are far above float32's
#: smallest normal number (1e-38).  GroupNorm and InstanceNorm take their statistics over every spatial
#: dim, so over the measured axis, where the probe detaches them (`rfgraph.probing.runner`): what is left
#: is an affine map with a positive scale.  A structural zero stays exactly zero (0 * x = 0, 0 + 0 = 0) unless
#: some value is infinite or NaN, which those bounds exclude.  So the non-zero pattern -- all the probe
#: reads -- is the same in float32 as in float64.  Ops outside the list (normalisations over channels and
#: softmax, whose backward subtracts a mean and can cancel; subtraction; exp and its underflow; bicubic
#: resampling's negative weights; anything unknown) keep the probe in float64.
SUPPORT_SAFE_OPS = frozenset({
    # merges and products of positive values
    "add", "add_", "iadd", "__add__", "__radd__", "mul", "mul_", "imul", "__mul__", "__rmul__",
    "cat", "concat", "concatenate", "stack", "hstack", "vstack", "sum", "mean",
    # linear maps with the copy's positive weights
    "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "convolution",
    "_convolution", "linear", "addmm", "mm", "bmm", "matmul", "einsum", "batch_norm",
    "_native_batch_norm_legit_no_training", "group_norm", "instance_norm", "avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d",
    "adaptive_avg_pool2d", "adaptive_avg_pool3d", "_adaptive_avg_pool2d", "_adaptive_avg_pool3d",
    "upsample_nearest1d", "upsample_nearest2d", "upsample_nearest3d", "_upsample_nearest_exact1d",
    "_upsample_nearest_exact2d", "_upsample_nearest_exact3d", "upsample_linear1d", "upsample_bilinear2d",
    "upsample_trilinear3d", "pad", "constant_pad_nd", "reflection_pad1d", "reflection_pad2d",
    "reflection_pad3d", "replication_pad1d", "replication_pad2d", "replication_pad3d",
    # positions moved, copied or selected
    "pixel_shuffle", "pixel_unshuffle", "channel_shuffle", "native_channel_shuffle", "view", "reshape",
    "_unsafe_view", "view_as", "reshape_as", "permute", "transpose", "t", "flatten", "unflatten", "contiguous",
    "clone", "squeeze", "unsqueeze", "expand", "expand_as", "repeat", "getitem", "getattr", "slice", "select",
    "narrow", "split", "split_with_sizes", "chunk", "unbind", "tensor_split", "size", "dim", "numel", "alias",
    "detach", "to", "type_as", "float", "double", "half", "_to_copy", "flip", "roll", "movedim", "index_select",
    "gather", "lift_fresh_copy", "sym_size", "_assert_tensor_metadata",
    # identities in eval mode; PReLU's slopes are the copy's positive weights
    "dropout", "dropout_", "feature_dropout", "feature_dropout_", "alpha_dropout", "alpha_dropout_",
    "feature_alpha_dropout", "feature_alpha_dropout_", "prelu", "_prelu_kernel",
})
#: Products: safe when at most one operand depends on the input (the others are constants or parameters,
#: positive on the copy): a product of two such values has the other value as a coefficient, and values
#: can be negative (a batchnorm of an exported graph subtracts a positive random mean).
_PRODUCTS = frozenset({"mul", "mul_", "imul", "__mul__", "__rmul__", "addmm", "mm", "bmm", "matmul", "einsum"})
#: Division: safe when the divisor is a constant (not a value of the graph).
_DIVISIONS = frozenset({"div", "div_", "truediv", "itruediv", "__truediv__", "true_divide", "divide"})
_SAFE_MODULES: tuple[type, ...] = (
    nn.modules.conv._ConvNd, nn.Linear, nn.modules.batchnorm._BatchNorm, nn.Identity, nn.Flatten, nn.Unflatten,
    nn.modules.pooling._AvgPoolNd, nn.modules.pooling._AdaptiveAvgPoolNd, _WindowSum, nn.PixelShuffle,
    nn.PixelUnshuffle, nn.ChannelShuffle, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm,
    nn.modules.padding._ConstantPadNd, nn.modules.padding._ReflectionPadNd,
    nn.modules.padding._ReplicationPadNd,
) + IDENTITY_MODULE_TYPES + tuple(_MAX_POOLS) + tuple(_ADAPTIVE_MAX)


def support_safe(gm: nn.Module, inert: Any = frozenset()) -> bool:
    """Whether every op of the graph module ``gm`` back-propagates a non-negative gradient on the sanitized
    copy (`SUPPORT_SAFE_OPS`), so that float32 finds the same non-zero pattern as float64.  Nodes named in
    ``inert`` (no tensor, or no dependence on the input: shape arithmetic, constants) are not asked."""
    return first_unsafe_op(gm, inert) is None


def first_unsafe_op(gm: nn.Module, inert: Any = frozenset()) -> Optional[str]:
    """The first op of ``gm`` (computed from the input) that `support_safe` does not accept, described as
    ``"node (op)"``; ``None`` when there is none."""
    graph = getattr(gm, "graph", None)
    if graph is None:
        return "no graph"
    depends: set = set()  # nodes computed from the input
    for n in graph.nodes:
        if n.op == "placeholder" or any(a in depends for a in n.all_input_nodes):
            depends.add(n)
    for n in graph.nodes:
        if n.op in ("placeholder", "get_attr", "output") or n.name in inert or n not in depends:
            continue
        if not _op_support_safe(gm, n, depends):
            what = n.target if n.op != "call_function" else target_name(n.target)
            return f"{n.name} ({what})"
    return None


def _op_support_safe(gm: nn.Module, n: Any, depends: set) -> bool:
    if n.op == "call_module":
        try:
            m = gm.get_submodule(n.target)
        except AttributeError:
            return False
        if not isinstance(m, _SAFE_MODULES) and not (isinstance(m, nn.Upsample) and m.mode != "bicubic"):
            return False
        # batch statistics subtract a mean
        return not (isinstance(m, nn.modules.batchnorm._BatchNorm) and not m.track_running_stats)
    if n.op == "call_function" and hashable(n.target) and n.target in FUNCTION_REPLACEMENTS:
        return True  # made an identity or a window sum on the copy
    name = target_name(n.target)
    if n.op == "call_method" and name in IDENTITY_METHODS:
        return True
    if name in ("interpolate", "upsample"):
        return n.kwargs.get("mode", n.args[3] if len(n.args) > 3 else "nearest") != "bicubic"
    if name in _DIVISIONS:
        return not (len(n.args) > 1 and n.args[1] in depends)
    if name not in SUPPORT_SAFE_OPS:
        return False
    if name in _PRODUCTS and sum(a in depends for a in n.all_input_nodes) > 1:
        return False
    return not (name == "batch_norm" and (n.kwargs.get("training") or (len(n.args) > 5 and n.args[5] is True)))


def hashable(v: Any) -> bool:
    """Whether ``v`` can be a dict key (fx targets: some callables are not hashable)."""
    try:
        hash(v)
    except TypeError:
        return False
    return True
