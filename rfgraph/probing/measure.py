"""The numeric probe: receptive fields measured by back-propagation.

The seed's method (DESIGN.md §4) sets weights to a positive constant and reads
the non-zero extent of the input gradient of one output unit.  Done naively it
fails on real models; this module measures on a *sanitized copy* of the model
(the user's model is never touched), made robust as follows:

* **Underflow, tiny multipliers.**  Every intermediate tensor gets a gradient
  hook that keeps only the non-zero *pattern* of its gradient and multiplies
  it by a fresh positive random factor: what is measured is reachability, not
  magnitude, so a product of a hundred small factors (or a 1e-6 layer scale)
  cannot underflow to zero.
* **Cancellation.**  Weights are positive *random* (not constant), the seed is
  positive random over all channels of the probed unit, and the renormalised
  gradient is random: a LayerNorm backward (which removes the channel mean)
  cannot cancel exactly.
* **Saturation.**  Inputs are small and positive, and pointwise ops whose
  gradient vanishes on part of their domain (ReLU6, hardtanh, hardsigmoid,
  sigmoid, clamp, sign/floor/round, shrinkage) are replaced by the identity.
  A pointwise op never changes which positions a value depends on.
* **Max-pool routing.**  Max pooling becomes a sum over the same window (and
  adaptive max pooling adaptive average pooling), so the backward reaches
  every element of the window, not only the arg-max.
* **Batch coupling.**  The copy runs in eval mode (batchnorm uses running
  statistics, dropout is off; both are also replaced where called
  functionally).
* **Context paths.**  A tensor broadcast from size 1 along a dimension that
  carries the measured input axis (squeeze-and-excitation scales, global
  context) is detached at the broadcast, and the statistics of a
  normalisation are detached when they span such a dimension (GroupNorm,
  InstanceNorm): the probe measures the *local* receptive field, as the
  symbolic pass reports it.  Which dimensions carry the measured axis is read
  from *shapes only*: a dimension carries axis ``k`` when its size changes when
  the input's size along ``k`` changes (two shape-only runs).  No symbolic
  rule is consulted.
* **Clipping.**  Each spatial axis is measured on its own *thin* input: the
  measured axis long enough for the probed units' fields to lie strictly
  inside (size chosen from the symbolic estimate when there is one: field plus
  a margin; otherwise grown until the field stops touching a border), the
  other axes as small as the model accepts.  A result says whether it is
  exact (no measured unit touched a border) or clipped.

For each axis the probe measures consecutive output units ``u0 .. u0 + T``
(``T`` the period of the symbolic map, at least 1), i.e. two neighbours and
one unit per phase, and derives ``rf``, ``stride`` and ``start`` exactly
(integers and `Fraction`s).

The module also provides `validate` (symbolic vs numeric, every disagreement
listed) and `fallback`, the local probe of a single op without a rule, which
fits periodic-affine window maps and feeds them back into the symbolic pass.
"""

from __future__ import annotations

import copy
import math
import operator
import time
from dataclasses import dataclass, field
from fractions import Fraction
from math import lcm
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional, Sequence

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from ..algebra import PAMap
from ..errors import NodeNotFoundError, ProbeError, RFGraphError
from ..tracing import ancestors, trace

if TYPE_CHECKING:  # pragma: no cover
    from ..results import Analysis, NodeRF
    from ..rules import OpCall

__all__ = [
    "probe",
    "ProbeResult",
    "AxisProbe",
    "validate",
    "validate_analysis",
    "ValidationReport",
    "Disagreement",
    "ValidationRow",
    "NotIsolableError",
    "default_nodes",
    "compare",
    "fallback",
    "sanitized_copy",
    "add_cli",
]


# ---------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AxisProbe:
    """What the probe measured along one input spatial axis."""

    axis: int
    rf: Optional[int]
    stride: Optional[Fraction]
    start: Optional[Fraction]
    #: True when no measured unit's field touched a border of the probing input
    exact: bool
    #: True when the node depends on the whole input along this axis
    is_global: bool
    #: the probing input's shape (thin along the other axes)
    input_shape: tuple[int, ...]
    #: the output units measured (indices along the node's dim carrying this axis)
    units: tuple[int, ...]
    #: measured first / last input coordinate per unit (``None``: the unit reads nothing)
    lo: tuple[Optional[int], ...]
    hi: tuple[Optional[int], ...]
    period: int = 1
    lo_map: Optional[PAMap] = None
    hi_map: Optional[PAMap] = None
    note: str = ""

    @property
    def padding(self) -> Optional[Fraction]:
        return None if self.start is None else -self.start


@dataclass(frozen=True)
class ProbeResult:
    """Numeric receptive field of one node, one `AxisProbe` per input spatial axis."""

    node: str
    axes: tuple[AxisProbe, ...]
    dtype: torch.dtype = torch.float64
    seconds: float = 0.0

    @property
    def rf(self) -> tuple[Optional[int], ...]:
        return tuple(a.rf for a in self.axes)

    @property
    def stride(self) -> tuple[Optional[Fraction], ...]:
        return tuple(a.stride for a in self.axes)

    @property
    def start(self) -> tuple[Optional[Fraction], ...]:
        return tuple(a.start for a in self.axes)

    @property
    def padding(self) -> tuple[Optional[Fraction], ...]:
        return tuple(a.padding for a in self.axes)

    @property
    def exact(self) -> bool:
        """True when every axis was measured without touching a border."""
        return all(a.exact for a in self.axes)

    @property
    def clipped(self) -> bool:
        return not self.exact

    @property
    def is_global(self) -> tuple[bool, ...]:
        return tuple(a.is_global for a in self.axes)

    def __str__(self) -> str:
        parts = []
        for a in self.axes:
            if a.is_global:
                parts.append(f"axis {a.axis}: global")
                continue
            state = "exact" if a.exact else "CLIPPED"
            parts.append(
                f"axis {a.axis}: rf {a.rf}, stride {_fmt(a.stride)}, start {_fmt(a.start)} "
                f"({state}, input {a.input_shape}, units {a.units[0]}..{a.units[-1]})"
            )
        return f"probe {self.node!r}: " + "; ".join(parts)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, Fraction) and v.denominator == 1:
        return str(v.numerator)
    return str(v)


class NotIsolableError(ProbeError):
    """No output dim follows the measured axis' length (fixed-size adaptive pooling upstream): no units to seed."""


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
_IDENTITY_MODULE_TYPES: tuple[type, ...] = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
    nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Hardshrink, nn.Softshrink, nn.Sigmoid, nn.Tanh, nn.Softplus,
    nn.Softsign, nn.Tanhshrink, nn.Threshold, nn.LogSigmoid,
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout,
)


def _replace_children(module: nn.Module) -> None:
    for name, child in list(module.named_children()):
        if isinstance(child, _IDENTITY_MODULE_TYPES):
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
_IDENTITY_METHODS = {
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


_FUNCTION_REPLACEMENTS: dict[Any, Callable] = {}
for _nd in (1, 2, 3):
    for _f in (getattr(F, f"max_pool{_nd}d"), getattr(torch, f"max_pool{_nd}d", None)):
        if _f is not None:
            _FUNCTION_REPLACEMENTS[_f] = _max_pool_function(_nd)
    if hasattr(F, f"max_pool{_nd}d_with_indices"):
        _FUNCTION_REPLACEMENTS[getattr(F, f"max_pool{_nd}d_with_indices")] = _max_pool_function(_nd, True)
    _FUNCTION_REPLACEMENTS[getattr(F, f"adaptive_max_pool{_nd}d")] = _adaptive_max_function(_nd)
    if hasattr(F, f"adaptive_max_pool{_nd}d_with_indices"):
        _FUNCTION_REPLACEMENTS[getattr(F, f"adaptive_max_pool{_nd}d_with_indices")] = _adaptive_max_function(_nd, True)
for _f in _IDENTITY_FUNCTIONS:
    _FUNCTION_REPLACEMENTS[_f] = _identity_first

# Graphs exported by torch.export (rfgraph.tracing's fallback) call aten ops: the same replacements.
_aten = torch.ops.aten


def _aten_overloads(name: str, overloads: Sequence[str] = ("default", "Tensor", "Scalar")) -> list:
    packet = getattr(_aten, name, None)
    if packet is None:
        return []
    return [getattr(packet, ov) for ov in packet.overloads() if ov in overloads]


for _name in ("relu", "relu_", "relu6", "hardtanh", "hardtanh_", "hardsigmoid", "hardsigmoid_", "hardswish",
              "hardswish_", "sigmoid", "sigmoid_", "tanh", "tanh_", "clamp", "clamp_", "clamp_min", "clamp_max",
              "gelu", "gelu_", "silu", "silu_", "mish", "mish_", "leaky_relu", "leaky_relu_", "elu", "elu_",
              "dropout", "feature_dropout", "sign", "floor", "ceil", "round", "trunc", "hardshrink", "softshrink",
              "threshold", "softplus", "log_sigmoid"):
    for _op in _aten_overloads(_name):
        _FUNCTION_REPLACEMENTS[_op] = _identity_first
for _nd in (1, 2, 3):
    for _op in _aten_overloads(f"max_pool{_nd}d"):
        _FUNCTION_REPLACEMENTS[_op] = _max_pool_function(_nd)
    for _op in _aten_overloads(f"max_pool{_nd}d_with_indices"):
        _FUNCTION_REPLACEMENTS[_op] = _max_pool_function(_nd, True)
    for _op in _aten_overloads(f"adaptive_max_pool{_nd}d"):
        _FUNCTION_REPLACEMENTS[_op] = _adaptive_max_function(_nd, True)

#: aten normalisations with the argument order of their F counterparts.
_NORM_ALIASES: dict[Any, Any] = {}
for _op in _aten_overloads("layer_norm"):
    _NORM_ALIASES[_op] = F.layer_norm
for _op in _aten_overloads("group_norm"):
    _NORM_ALIASES[_op] = F.group_norm
for _op in _aten_overloads("instance_norm"):
    _NORM_ALIASES[_op] = F.instance_norm

#: Elementwise ops with broadcasting: an operand broadcast along a dimension
#: that carries the measured axis is a context path (detached).
_BROADCAST_FUNCTIONS = {
    operator.add, operator.sub, operator.mul, operator.truediv, operator.iadd, operator.isub, operator.imul,
    operator.itruediv, operator.pow, torch.add, torch.sub, torch.mul, torch.div, torch.true_divide, torch.where,
    torch.maximum, torch.minimum, torch.addcmul, torch.addcdiv, torch.lerp, torch.pow, torch.subtract,
    torch.multiply, torch.divide,
} | {op for name in ("add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "where", "maximum", "minimum",
                     "addcmul", "lerp") for op in _aten_overloads(name)}
_BROADCAST_METHODS = {
    "add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "pow", "maximum", "minimum", "lerp", "addcmul",
    "addcdiv", "where", "__add__", "__radd__", "__mul__", "__rmul__", "__sub__", "__rsub__", "__truediv__",
    "__rtruediv__",
}
#: Ops that broadcast their single operand to a larger shape.
_EXPAND_METHODS = {"expand", "expand_as", "broadcast_to", "repeat"}
#: Resampling ops: upsampling a size-1 dim spreads one value (a global pooling branch, as in
#: DeepLab's ASPP image pooling) like a broadcast: also context.
_RESAMPLE_FUNCTIONS = {F.interpolate, F.upsample, F.upsample_bilinear, F.upsample_nearest} | {
    op for name in ("upsample_nearest1d", "upsample_nearest2d", "upsample_nearest3d", "upsample_linear1d",
                    "upsample_bilinear2d", "upsample_trilinear3d", "upsample_bicubic2d", "_upsample_nearest_exact2d",
                    "_upsample_bilinear2d_aa")
    for op in _aten_overloads(name, ("default", "vec"))}
_EXPAND_FUNCTIONS = {torch.broadcast_to} | {op for name in ("expand", "expand_as", "broadcast_to", "repeat")
                                            for op in _aten_overloads(name)}


def _norm(x, dims, weight, bias, eps, detach, rms=False):
    if rms:
        scale = x.pow(2).mean(dims, keepdim=True)
        if detach:
            scale = scale.detach()
        y = x * torch.rsqrt(scale + (eps if eps is not None else torch.finfo(x.dtype).eps))
    else:
        mean = x.mean(dims, keepdim=True)
        var = x.var(dims, unbiased=False, keepdim=True)
        if detach:
            mean, var = mean.detach(), var.detach()
        y = (x - mean) / torch.sqrt(var + eps)
    return y, weight, bias


def _affine(y, weight, bias, channel_dim: Optional[int]):
    if channel_dim is not None:
        shape = [1] * y.ndim
        shape[channel_dim] = -1
        weight = None if weight is None else weight.reshape(shape)
        bias = None if bias is None else bias.reshape(shape)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


# ---------------------------------------------------------------------------
# running the truncated graph
# ---------------------------------------------------------------------------


def _shape(v: Any) -> Optional[tuple[int, ...]]:
    return tuple(v.shape) if isinstance(v, torch.Tensor) else None


class _Runner:
    """Runs the graph up to ``target`` on the sanitized copy.

    With ``alt_shapes`` (the node shapes of a shape-only run at another size of
    the measured axis) it also cuts context paths and registers the gradient
    renormalisation hooks.
    """

    def __init__(self, gm: fx.GraphModule, holder: nn.Module, keys: dict[str, str], raw: dict[str, Any],
                 target: fx.Node, seed: int = 0):
        self.gm = holder
        self.keys = keys
        self.raw = raw
        self.target = target
        needed = ancestors(target)
        self.nodes = [n for n in gm.graph.nodes if n in needed]
        self.gen = torch.Generator().manual_seed(seed + 1)
        self._pool: Optional[torch.Tensor] = None
        self._meta_ok = True
        self._state_cache: Optional[dict[str, torch.Tensor]] = None

    def module(self, target: str) -> nn.Module:
        return getattr(self.gm, self.keys[target])

    # -- shape-only runs -------------------------------------------------------

    def shapes(self, input_shape: Sequence[int], dtype: torch.dtype) -> dict[fx.Node, Any]:
        """Node output shapes for an input of ``input_shape``: on the meta device (a real run as a last resort)."""
        from torch.nn.utils.stateless import _reparametrize_module

        if self._meta_ok:
            tensors = {k: torch.empty_like(v, device="meta") for k, v in self._state().items()}
            try:
                with _reparametrize_module(self.gm, tensors):
                    _, shapes = self.run(torch.empty(tuple(input_shape), dtype=dtype, device="meta"), None, True)
                return shapes
            except RFGraphError:
                raise
            except Exception:
                pass
        with torch.no_grad():
            _, shapes = self.run(torch.rand(tuple(input_shape), dtype=dtype), None, True)
        return shapes

    def _state(self) -> dict[str, torch.Tensor]:
        if self._state_cache is None:
            state = dict(self.gm.named_parameters(remove_duplicate=False))
            state.update(self.gm.named_buffers(remove_duplicate=False))
            self._state_cache = state
        return self._state_cache

    # -- the run -------------------------------------------------------------------

    def run(self, x: torch.Tensor, alt: Optional[dict[fx.Node, Any]], shape_only: bool = False):
        env: dict[fx.Node, Any] = {}
        shapes: dict[fx.Node, Any] = {}
        first = True
        self.cut = 0
        for n in self.nodes:
            if n.op == "placeholder":
                if first:
                    value = x
                    first = False
                elif n.args:
                    value = n.args[0]
                else:
                    raise ProbeError(
                        f"the model takes several inputs ({n.name!r} has no default); the probe feeds one tensor. "
                        "Hint: wrap the model so that it takes a single image tensor."
                    )
            elif n.op == "get_attr":
                value = self._fetch(n.target)
            elif n.op == "output":
                continue
            else:
                args = fx.node.map_arg(n.args, lambda a: env[a])
                kwargs = fx.node.map_arg(n.kwargs, lambda a: env[a])
                if shape_only and n.op == "call_module" and isinstance(self.module(n.target), _SHAPE_KEEPING):
                    value = args[0]
                else:
                    value = self._call(n, args, kwargs, env, shapes, alt)
            if alt is not None:
                value = _rescale(value)
                self._hook(value)
            env[n] = value
            shapes[n] = _shapes_of(value)
        return env[self.target], shapes

    def _fetch(self, target: str) -> Any:
        if target in self.raw:
            return self.raw[target]
        return getattr(self.gm, self.keys[target])

    def _hook(self, value: Any) -> None:
        if isinstance(value, torch.Tensor):
            if value.requires_grad and value.is_floating_point():
                value.register_hook(self._renormalise)
        elif isinstance(value, (list, tuple)):
            for v in value:
                self._hook(v)

    def _renormalise(self, g: torch.Tensor) -> torch.Tensor:
        """Keep the gradient's non-zero pattern; give it fresh positive random magnitudes.

        The magnitudes are a random slice of a pool of ``U(0.5, 1.5)`` values
        (drawing a new tensor for every node would dominate the backward's cost).
        """
        if g is None:  # an output of a multi-output op that this unit does not reach
            return g
        numel = g.numel()
        pool = self._pool
        if pool is None or pool.numel() < 2 * numel or pool.dtype != g.dtype:
            pool = self._pool = torch.rand(max(2 * numel, 1 << 16), generator=self.gen, dtype=g.dtype).add_(0.5)
        offset = int(torch.randint(0, pool.numel() - numel + 1, (1,), generator=self.gen))
        return pool[offset: offset + numel].view(g.shape) * (g != 0)

    # -- per-op behaviour ------------------------------------------------------------

    def _varies(self, node_or_value: Any, shapes, alt) -> set[int]:
        """Dims (of a node's output) whose size differs between this run and the shape-only run."""
        if not isinstance(node_or_value, fx.Node):
            return set()
        a, b = shapes.get(node_or_value), alt.get(node_or_value)
        if not isinstance(a, tuple) or not isinstance(b, tuple) or len(a) != len(b):
            return set()
        if a and isinstance(a[0], tuple):
            return set()
        return {d for d, (x, y) in enumerate(zip(a, b)) if x != y}

    def _call(self, n: fx.Node, args, kwargs, env, shapes, alt):
        if n.op == "call_module":
            m = self.module(n.target)
            if alt is not None and isinstance(m, (nn.LayerNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm))\
                    or alt is not None and hasattr(nn, "RMSNorm") and isinstance(m, nn.RMSNorm):
                out = self._norm_module(n, m, args, kwargs, shapes, alt)
                if out is not None:
                    return out
            out = m(*args, **kwargs)
            if alt is not None and isinstance(m, nn.Upsample) and n.args:
                out = self._detach_if_expanded(n, n.args[0], out, shapes, alt)
            return out
        if n.op == "call_method":
            name = n.target
            if name in _IDENTITY_METHODS:
                return args[0]
            if alt is not None and name in _BROADCAST_METHODS:
                return self._broadcast(n, lambda *a: getattr(a[0], name)(*a[1:], **kwargs), args, shapes, alt)
            out = getattr(args[0], name)(*args[1:], **kwargs)
            if alt is not None and name in _EXPAND_METHODS:
                out = self._detach_if_expanded(n, n.args[0], out, shapes, alt)
            return out
        fn = n.target
        replacement = _FUNCTION_REPLACEMENTS.get(fn) if _hashable(fn) else None
        if replacement is not None:
            return replacement(*args, **kwargs)
        if alt is not None and _hashable(fn):
            if fn in _BROADCAST_FUNCTIONS:
                return self._broadcast(n, lambda *a: fn(*a, **kwargs), args, shapes, alt)
            if fn in (F.layer_norm, F.group_norm, F.instance_norm) or fn is getattr(F, "rms_norm", None):
                return self._norm_function(n, fn, args, kwargs, shapes, alt)
            if fn in _NORM_ALIASES:
                return self._norm_function(n, _NORM_ALIASES[fn], args, kwargs, shapes, alt, call=fn)
            out = fn(*args, **kwargs)
            if fn in _EXPAND_FUNCTIONS or fn in _RESAMPLE_FUNCTIONS:
                out = self._detach_if_expanded(n, n.args[0] if n.args else n.kwargs.get("input"), out, shapes, alt)
            return out
        return fn(*args, **kwargs)

    def _broadcast(self, n: fx.Node, fn: Callable, args, shapes, alt):
        """Elementwise op: detach operands broadcast from size 1 along a dim that carries the measured axis."""
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        if len(tensors) < 2:
            return fn(*args)
        out_shape = tuple(torch.broadcast_shapes(*[t.shape for t in tensors]))
        alt_out = alt.get(n)
        if not isinstance(alt_out, tuple) or len(alt_out) != len(out_shape) or \
                (alt_out and isinstance(alt_out[0], tuple)):
            return fn(*args)
        varying = {d for d, (x, y) in enumerate(zip(out_shape, alt_out)) if x != y}
        if not varying:
            return fn(*args)
        new_args = list(args)
        sources = list(n.args) + [None] * len(args)
        for i, a in enumerate(args):
            if not isinstance(a, torch.Tensor) or not a.requires_grad:
                continue
            if _broadcast_along(tuple(a.shape), _alt_shape(sources[i], alt), len(out_shape), varying):
                new_args[i] = a.detach()
                self.cut += 1
        return fn(*new_args)

    def _detach_if_expanded(self, n: fx.Node, src: Any, out: Any, shapes, alt):
        if not isinstance(out, torch.Tensor) or not isinstance(src, fx.Node):
            return out
        varying = self._varies(n, {n: tuple(out.shape)}, alt)
        a = shapes.get(src)
        if not varying or not isinstance(a, tuple) or (a and isinstance(a[0], tuple)):
            return out
        if _broadcast_along(a, _alt_shape(src, alt), out.ndim, varying):
            self.cut += 1
            return out.detach()
        return out

    def _stat_dims_vary(self, src: Any, dims: Iterable[int], shapes, alt) -> bool:
        varying = self._varies(src, shapes, alt)
        return any(d in varying for d in dims)

    def _norm_module(self, n, m, args, kwargs, shapes, alt):
        x = args[0] if args else kwargs.get("input")
        if not isinstance(x, torch.Tensor) or len(args) > 1:
            return None
        src = n.args[0] if n.args else n.kwargs.get("input")
        if isinstance(m, nn.GroupNorm):
            dims = range(2, x.ndim)
            if not self._stat_dims_vary(src, dims, shapes, alt):
                return None
            xs = x.reshape(x.shape[0], m.num_groups, -1)
            y, _, _ = _norm(xs, (2,), None, None, m.eps, True)
            return _affine(y.reshape(x.shape), m.weight, m.bias, 1)
        if isinstance(m, nn.modules.instancenorm._InstanceNorm):
            if m.track_running_stats and not m.training:
                return None
            dims = tuple(range(2, x.ndim))
            if not self._stat_dims_vary(src, dims, shapes, alt):
                return None
            y, _, _ = _norm(x, dims, None, None, m.eps, True)
            return _affine(y, m.weight, m.bias, 1)
        k = len(tuple(m.normalized_shape))
        dims = tuple(range(x.ndim - k, x.ndim))
        if not self._stat_dims_vary(src, dims, shapes, alt):
            return None
        rms = not isinstance(m, nn.LayerNorm)
        y, _, _ = _norm(x, dims, None, None, m.eps, True, rms=rms)
        return _affine(y, m.weight, getattr(m, "bias", None), None)

    def _norm_function(self, n, fn, args, kwargs, shapes, alt, call=None):
        """``fn`` (an F normalisation) says how to read the arguments; ``call`` is what the graph calls."""
        x = args[0]
        src = n.args[0]
        if call is not None:
            original = call

            def fn_call(*a, **k):
                return original(*a, **k)
        else:
            fn_call = fn
        if fn is F.group_norm:
            names = ("input", "num_groups", "weight", "bias", "eps")
            a = {"weight": None, "bias": None, "eps": 1e-5, **dict(zip(names, args)), **kwargs}
            if not self._stat_dims_vary(src, range(2, x.ndim), shapes, alt):
                return fn_call(*args, **kwargs)
            y, _, _ = _norm(x.reshape(x.shape[0], a["num_groups"], -1), (2,), None, None, a["eps"], True)
            return _affine(y.reshape(x.shape), a["weight"], a["bias"], 1)
        if fn is F.instance_norm:
            names = ("input", "running_mean", "running_var", "weight", "bias", "use_input_stats", "momentum", "eps")
            a = {"running_mean": None, "running_var": None, "weight": None, "bias": None, "use_input_stats": True,
                 "momentum": 0.1, "eps": 1e-5, **dict(zip(names, args)), **kwargs}
            dims = tuple(range(2, x.ndim))
            if not a["use_input_stats"] or not self._stat_dims_vary(src, dims, shapes, alt):
                return fn_call(*args, **kwargs)
            y, _, _ = _norm(x, dims, None, None, a["eps"], True)
            return _affine(y, a["weight"], a["bias"], 1)
        rms = fn is not F.layer_norm
        names = ("input", "normalized_shape", "weight", "eps") if rms else \
            ("input", "normalized_shape", "weight", "bias", "eps")
        a = {"weight": None, "bias": None, "eps": None if rms else 1e-5, **dict(zip(names, args)), **kwargs}
        shape = a["normalized_shape"]
        k = 1 if isinstance(shape, int) else len(tuple(shape))
        dims = tuple(range(x.ndim - k, x.ndim))
        if not self._stat_dims_vary(src, dims, shapes, alt):
            return fn_call(*args, **kwargs)
        y, _, _ = _norm(x, dims, None, None, a["eps"], True, rms=rms)
        return _affine(y, a["weight"], a.get("bias"), None)


#: Modules whose output has their input's shape: skipped by shape-only runs (meta batchnorm is slow).
_SHAPE_KEEPING: tuple[type, ...] = (
    nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.Identity, nn.modules.instancenorm._InstanceNorm,
) + _IDENTITY_MODULE_TYPES


def _rescale(value: Any) -> Any:
    """Divide a tensor whose magnitude drifts far from 1 by a detached scalar.

    Multiplicative gates (x * f(x)) square magnitudes block after block, which
    overflows even float64; dividing by a constant changes no dependence.
    """
    if isinstance(value, torch.Tensor) and value.is_floating_point() and value.requires_grad and value.numel():
        m = float(value.detach().abs().amax())
        if m > 1e6 or 0 < m < 1e-6:
            return value / m
    return value


def _getattr_path(obj: Any, target: str) -> Any:
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _alt_shape(src: Any, alt: dict) -> Optional[tuple]:
    if not isinstance(src, fx.Node):
        return None  # a constant: the same shape in every run
    shape = alt.get(src)
    return shape if isinstance(shape, tuple) and not (shape and isinstance(shape[0], tuple)) else None


def _broadcast_along(shape: tuple, alt_shape: Optional[tuple], out_ndim: int, varying: Iterable[int]) -> bool:
    """Whether an operand of ``shape`` (``alt_shape`` in the other run) is spread from size 1 (or a missing
    leading dim) along some output dim in ``varying``: a constant along the measured axis, i.e. context."""
    lead = out_ndim - len(shape)
    for d in varying:
        if d < lead:
            return True
        if shape[d - lead] == 1 and (alt_shape is None or len(alt_shape) != len(shape) or alt_shape[d - lead] == 1):
            return True
    return False


def _hashable(v: Any) -> bool:
    try:
        hash(v)
    except TypeError:
        return False
    return True


def _shapes_of(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return tuple(value.shape)
    if isinstance(value, (list, tuple)) and any(isinstance(v, torch.Tensor) for v in value):
        return tuple(_shapes_of(v) if isinstance(v, torch.Tensor) else None for v in value)
    return None


# ---------------------------------------------------------------------------
# the probe
# ---------------------------------------------------------------------------

_MAX_SIZE = 8192


class _Prober:
    """Probe state shared by the axes of one node: the sanitized truncated graph and the runner."""

    def __init__(self, gm: fx.GraphModule, fx_names: Sequence[str], dtype: torch.dtype, seed: int):
        nodes = {n.name: n for n in gm.graph.nodes}
        # Only what the nodes need is copied: the modules and attributes of their ancestors, gathered
        # under flat names in one holder (the graph itself is read, never copied or modified).
        needed: set[fx.Node] = set()
        for name in fx_names:
            needed |= ancestors(nodes[name])
        holder = nn.Module()
        keys: dict[str, str] = {}
        raw: dict[str, Any] = {}
        for n in gm.graph.nodes:
            if n not in needed or n.op not in ("call_module", "get_attr") or n.target in keys or n.target in raw:
                continue
            obj = gm.get_submodule(n.target) if n.op == "call_module" else _getattr_path(gm, n.target)
            key = f"k{len(keys)}"
            if isinstance(obj, nn.Module):
                holder.add_module(key, obj)
            elif isinstance(obj, nn.Parameter):
                holder.register_parameter(key, obj)
            elif isinstance(obj, torch.Tensor):
                holder.register_buffer(key, obj)
            else:
                raw[n.target] = obj
                continue
            keys[n.target] = key
        self.graph_module = gm
        self.nodes = nodes
        self.needed = needed
        self.keys, self.raw = keys, raw
        self.holder = sanitized_copy(holder, dtype, seed)
        self.dtype = dtype
        self.seed = seed
        self.gen = torch.Generator().manual_seed(seed + 2)
        self.select(fx_names[0])

    def has(self, fx_name: str) -> bool:
        return fx_name in self.nodes and self.nodes[fx_name] in self.needed

    def select(self, fx_name: str) -> None:
        """Probe ``fx_name`` next (one of the nodes this copy was made for)."""
        self.target = self.nodes[fx_name]
        self.runner = _Runner(self.graph_module, self.holder, self.keys, self.raw, self.target, self.seed)

    def input_tensor(self, shape: Sequence[int]) -> torch.Tensor:
        # small positive values
        return (torch.rand(tuple(shape), generator=self.gen, dtype=self.dtype) + 0.5) * 0.1

    def try_shapes(self, shape: Sequence[int]) -> Optional[dict]:
        try:
            return self.runner.shapes(shape, self.dtype)
        except RFGraphError:
            raise
        except Exception:
            return None

    def measure(self, shape: tuple[int, ...], axis: int, alt: dict, units_of: Callable):
        """Run at ``shape``; measure the units chosen by ``units_of(n_out)`` along ``axis``.

        ``alt`` holds the node shapes of a shape-only run at another length
        along ``axis``.  Returns ``(units, lo, hi, n_out, out_dim, cuts)``.
        """
        x = self.input_tensor(shape).requires_grad_(True)
        try:
            out, shapes = self.runner.run(x.clone(), alt)
        except RFGraphError:
            raise
        except Exception as exc:
            raise ProbeError(
                f"probing node {self.target.name!r}: the sanitized model failed on an input of shape {shape}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if isinstance(out, (list, tuple)):
            tensors = [o for o in out if isinstance(o, torch.Tensor)]
            if len(tensors) != 1:
                raise ProbeError(f"node {self.target.name!r} gives {len(tensors)} tensors; probe one of them")
            out = tensors[0]
        if not isinstance(out, torch.Tensor) or not out.is_floating_point():
            raise ProbeError(f"node {self.target.name!r} is not a floating-point tensor ({type(out).__name__})")
        if not out.requires_grad:
            raise ProbeError(
                f"node {self.target.name!r} does not depend on the input through differentiable ops "
                "(detached, integer or constant); it cannot be probed"
            )
        alt_out = alt[self.target]
        if isinstance(alt_out, tuple) and alt_out and isinstance(alt_out[0], tuple):
            alt_out = next(s for s in alt_out if s is not None)
        varying = [d for d, (a, b) in enumerate(zip(out.shape, alt_out)) if a != b] if alt_out else []
        out_dim = varying[0] if varying else None
        n_out = out.shape[out_dim] if out_dim is not None else 1
        units = units_of(n_out)
        los: list[Optional[int]] = []
        his: list[Optional[int]] = []
        in_dim = 2 + axis
        other = [d for d in range(x.ndim) if d != in_dim]
        for u in units:
            seed = torch.zeros_like(out)
            if out_dim is None:  # no dim follows this axis: one element (global nodes read everything)
                seed.view(-1)[seed.numel() // 2] = 1.0
            else:
                sl = seed.select(out_dim, u)
                sl.copy_(torch.rand(sl.shape, generator=self.gen, dtype=out.dtype) + 0.5)
            (g,) = torch.autograd.grad(out, x, seed, retain_graph=True, allow_unused=True)
            if g is None:
                los.append(None)
                his.append(None)
                continue
            hit = (g != 0).any(dim=other) if other else (g != 0)
            idx = torch.nonzero(hit).flatten()
            if idx.numel() == 0:
                los.append(None)
                his.append(None)
            else:
                los.append(int(idx[0]))
                his.append(int(idx[-1]))
        return tuple(units), tuple(los), tuple(his), n_out, out_dim, self.runner.cut

    def minimal_thin(self, base: list[int], axis: int, n: int, upper: Sequence[int]):
        """The smallest sizes (powers of two, then bisected, capped by ``upper``) of the other axes with
        which the model accepts length ``n`` and ``2 n`` along ``axis``.

        Returns ``(sizes, node shapes at 2 n)`` or ``None``.
        """
        nd = len(base) - 2

        def attempt(t: int):
            shape = list(base)
            for j in range(nd):
                shape[2 + j] = n if j == axis else min(t, upper[j])
            if self.try_shapes(shape) is None:
                return None
            shape[2 + axis] = 2 * n
            shapes = self.try_shapes(shape)
            return None if shapes is None else ([shape[2 + j] for j in range(nd) if j != axis], shapes)

        t = 1
        while True:
            found = attempt(t)
            if found is not None:
                break
            if all(t >= upper[j] for j in range(nd) if j != axis):
                return None
            t *= 2
        # Between t / 2 (rejected) and t (accepted): bisect to within 1/8 (thin inputs are the cost).
        low, high = t // 2, t
        while low and high - low > max(1, high // 8):
            mid = (low + high) // 2
            trial = attempt(mid)
            if trial is None:
                low = mid
            else:
                high, found = mid, trial
        others, shapes = found
        sizes = list(others)
        sizes.insert(axis, n)
        return sizes, shapes


def _axis_from_measure(axis, shape, units, los, his, period, n_in, note) -> AxisProbe:
    """Turn measured windows of consecutive units ``units`` into rf / stride / start."""
    touching = any(lo is not None and (lo <= 0 or hi >= n_in - 1) for lo, hi in zip(los, his))
    whole = all(lo == 0 and hi == n_in - 1 for lo, hi in zip(los, his))
    widths = [hi - lo + 1 for lo, hi in zip(los, his) if lo is not None]
    rf = max(widths) if widths else 0
    stride = start = lo_map = hi_map = None
    T = period
    if len(units) >= T + 1 and los[0] is not None and los[T] is not None:
        advance = los[T] - los[0]
        stride = Fraction(advance, T)
        if all(lo is not None for lo in los[:T]) and his[T] is not None:
            lo_table = [0] * T
            hi_table = [0] * T
            for u, lo, hi in zip(units[:T], los[:T], his[:T]):
                q, r = divmod(u, T)
                lo_table[r] = lo - q * advance
                hi_table[r] = hi - q * (his[T] - his[0])
            lo_map = PAMap(T, advance, lo_table)
            hi_map = PAMap(T, his[T] - his[0], hi_table)
            start = Fraction(lo_map(0))
        else:
            note = (note + "; " if note else "") + "some phase reads no input: start not measured"
    elif len(units) == 1 and los[0] is not None:  # a node with no dim along this axis: a fixed window
        stride, start = Fraction(0), Fraction(los[0])
    return AxisProbe(
        axis=axis, rf=None if whole and touching else rf, stride=None if whole and touching else stride,
        start=None if whole and touching else start, exact=not touching, is_global=whole and touching,
        input_shape=tuple(shape), units=tuple(units), lo=tuple(los), hi=tuple(his), period=T,
        lo_map=lo_map, hi_map=hi_map, note=note,
    )


def _probe_axis(pr: _Prober, axis: int, base: list[int], est: Optional["NodeRF"], max_size: int) -> AxisProbe:
    nd = len(base) - 2
    upper = [base[2 + j] for j in range(nd)]
    lo_est = hi_est = None
    if est is not None and est.source in ("symbolic", "probed") and axis < len(est.lo):
        lo_est, hi_est = est.lo[axis], est.hi[axis]
    if lo_est is not None:
        T = lcm(lo_est.period, hi_est.period)
        stride = lo_est.slope
        margin = 2 * math.ceil(stride) + 4 if stride > 0 else 4
    else:
        T, margin = 1, 4
    global_est = est is not None and axis < len(est.is_global) and est.is_global[axis]
    n = None
    attempts = 0
    note = ""
    last: Optional[AxisProbe] = None
    whole_count = 0
    u0 = 0
    while attempts < 6:
        attempts += 1
        if lo_est is not None and lo_est.slope > 0:
            u0 = 0
            while lo_est(u0) < margin:
                u0 += 1
            need = max(hi_est(u) for u in range(u0, u0 + T + 1)) + 1 + margin
            n = max(n or 0, need)
        elif n is None:
            n = max(base[2 + axis], 16)
        found = None
        # Models that merge strided paths need lengths divisible by their total stride: round up if refused.
        for step in (1, 8, 16, 32, 64, 128):
            trial = -(-n // step) * step
            if step > 1 and trial == n:
                continue
            found = pr.minimal_thin(base, axis, trial, [max(u, 1) for u in upper])
            if found is not None:
                n = trial
                break
        if found is None:
            raise ProbeError(
                f"the model rejects inputs of length {n} and {2 * n} (also rounded up to multiples of 8 .. 128) "
                f"along axis {axis}, with the other axes up to {upper}. "
                "The probe needs to vary the measured axis' length; a model that accepts only one input size "
                "(e.g. a fixed position embedding) can be probed only at nodes before that constraint"
            )
        thin, alt = found
        shape = tuple(base[:2]) + tuple(thin[j] if j != axis else n for j in range(nd))
        k = T + 1 if lo_est is not None else 5

        def units_of(n_out, k=k, u0=u0):
            if lo_est is not None and lo_est.slope > 0:
                start = u0
            else:
                start = max(0, n_out // 2 - k // 2)
            return [u for u in range(start, start + k) if u < n_out] or [0]

        units, los, his, n_out, out_dim, cut = pr.measure(shape, axis, alt, units_of)
        if out_dim is None:
            units = (0,)
            los, his = los[:1], his[:1]
            if not (los[0] == 0 and his[0] == n - 1):
                raise NotIsolableError(
                    f"no dimension of node {pr.target.name!r} follows the input's length along axis {axis} "
                    f"(e.g. adaptive pooling to a fixed size, or a flatten, upstream), and one of its elements "
                    f"reads input [{los[0]}, {his[0]}] of {n}: the probe cannot isolate units to measure a stride"
                )
        if len(units) < min(k, 2) and out_dim is not None:
            n = n + max(int(math.ceil(lo_est.slope)) if lo_est is not None else 1, 1) * (k + 2)
            continue
        period = T if len(units) > T else 1
        if lo_est is None and len(units) > 2:
            period = _smallest_period(los, his)
        last = _axis_from_measure(axis, shape, units, los, his, period, n, note)
        if cut:
            last = _with_note(last, f"{cut} context operand(s) detached")
        if last.exact:
            return last
        if last.is_global:
            whole_count += 1
            if global_est or whole_count >= 2 or 2 * n > max_size:
                return last
        if 2 * n > max_size:
            break
        n *= 2
        margin *= 2
    assert last is not None
    return last


def _with_note(a: AxisProbe, note: str) -> AxisProbe:
    from dataclasses import replace

    return replace(a, note=(a.note + "; " if a.note else "") + note)


def _smallest_period(los, his) -> int:
    k = len(los)
    for T in range(1, k):
        if any(v is None for v in los) or any(v is None for v in his):
            break
        if all(los[u + T] - los[u] == los[T] - los[0] and his[u + T] - his[u] == his[T] - his[0]
               for u in range(k - T)):
            return T
    return 1


def _tensor_node(gm: fx.GraphModule, fx_name: str, name: str) -> str:
    """The fx node holding the tensor of ``fx_name`` (the output node stands for its single argument)."""
    target = next((n for n in gm.graph.nodes if n.name == fx_name), None)
    if target is not None and target.op == "output":
        inner = target.args[0]
        while isinstance(inner, (list, tuple)) and len(inner) == 1:
            inner = inner[0]
        if not isinstance(inner, fx.Node):
            raise ProbeError(f"node {name!r} (the model output) holds several tensors; probe one of them")
        return inner.name
    return fx_name


def _resolve(gm: fx.GraphModule, names: dict[fx.Node, str], node: str) -> fx.Node:
    by_name = {q: n for n, q in names.items() if n.op not in ("placeholder", "output", "get_attr")}
    if node in by_name:
        return by_name[node]
    fx_nodes = {n.name: n for n in gm.graph.nodes}
    if node in fx_nodes:
        return fx_nodes[node]
    found = None
    for q, n in by_name.items():
        if q == node or q.startswith(node + "."):
            found = n
    if found is None:
        raise NodeNotFoundError(node, list(by_name))
    return found


def _infer_input_shape(gm: fx.GraphModule) -> tuple[int, ...]:
    for n in gm.graph.nodes:
        if n.op == "call_module":
            m = gm.get_submodule(n.target)
            weight = getattr(m, "weight", None)
            if hasattr(m, "in_channels") and isinstance(weight, torch.Tensor) and weight.ndim >= 3:
                return (1, int(m.in_channels)) + (32,) * (weight.ndim - 2)
    raise ProbeError("cannot tell the model's input channels and rank; pass input_shape=(1, C, H, W)")


def probe(
    model: nn.Module,
    node: str,
    input_shape: Optional[Sequence[int]] = None,
    *,
    analysis: Optional["Analysis"] = None,
    dtype: torch.dtype = torch.float64,
    leaf_modules: Sequence[type] = (),
    autowrap_functions: Sequence[Callable] = (),
    axes: Optional[Sequence[int]] = None,
    use_estimate: bool = True,
    max_size: int = _MAX_SIZE,
    seed: int = 0,
    _prober: Optional["_Prober"] = None,
) -> ProbeResult:
    """Measure the receptive field of ``node`` numerically.

    ``node`` is a node name, fx node name or module name, as in `Analysis`.
    ``input_shape`` gives the channels and rank (and, without a symbolic
    estimate, the starting size); the measured sizes are chosen by the probe.
    When ``analysis`` is given (or ``input_shape`` is, and ``use_estimate``),
    the symbolic result is used *only* to choose the input sizes and the
    units measured.  ``model`` is never modified; a model on the ``meta``
    device works (its copy is materialised with random positive weights).

    >>> import torch.nn as nn
    >>> net = nn.Sequential(nn.Conv1d(1, 1, 3), nn.Conv1d(1, 1, 3, stride=2), nn.Conv1d(1, 1, 3))
    >>> r = probe(net, "2", (1, 1, 32))
    >>> r.rf, r.stride, r.start, r.exact
    ((9,), (Fraction(2, 1),), (Fraction(0, 1),), True)
    """
    t0 = time.perf_counter()
    if analysis is None and input_shape is not None and use_estimate:
        from ..passes import analyze

        try:
            analysis = analyze(model, input_shape, leaf_modules=leaf_modules, autowrap_functions=autowrap_functions)
        except RFGraphError:
            analysis = None
    est = None
    if analysis is not None and analysis.graph_module is not None:
        gm = analysis.graph_module
        name = analysis.resolve(node)
        rec = analysis[name]
        fx_name = rec.fx_name or name
        est = rec if use_estimate else None
        base = list(input_shape) if input_shape is not None else list(analysis.input_shape)
    else:
        traced = trace(model, leaf_modules=leaf_modules, autowrap_functions=autowrap_functions)
        gm = traced.graph_module
        target = _resolve(gm, traced.names, node)
        name = traced.name(target)
        fx_name = target.name
        base = list(input_shape) if input_shape is not None else list(_infer_input_shape(gm))
    base[0] = 1
    nd = len(base) - 2
    fx_name = _tensor_node(gm, fx_name, name)
    if _prober is not None and _prober.has(fx_name):
        pr = _prober
    else:
        pr = _Prober(gm, [fx_name], dtype, seed)
    pr.select(fx_name)
    results = []
    for axis in (range(nd) if axes is None else axes):
        try:
            results.append(_probe_axis(pr, axis, base, est, max_size))
        except ProbeError as exc:
            if "rejects inputs of length" in str(exc) and analysis is not None \
                    and analysis.meta.get("trace") == "export":
                raise ProbeError(
                    f"{exc} (here the graph was traced by torch.export, which fixes every shape to the analysed "
                    f"input {tuple(analysis.input_shape)})"
                ) from exc
            raise
    return ProbeResult(name, tuple(results), dtype, time.perf_counter() - t0)


# ---------------------------------------------------------------------------
# validation: symbolic vs numeric
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Disagreement:
    """One quantity on which the symbolic pass and the probe differ."""

    node: str
    axis: int
    quantity: str
    symbolic: Any
    numeric: Any

    def __str__(self) -> str:
        return (f"{self.node} axis {self.axis}: {self.quantity} symbolic {_fmt(self.symbolic)} "
                f"!= numeric {_fmt(self.numeric)}")


@dataclass
class ValidationRow:
    """Symbolic and numeric results of one node."""

    node: str
    symbolic: "NodeRF"
    numeric: Optional[ProbeResult]
    disagreements: list[Disagreement] = field(default_factory=list)
    error: Optional[str] = None
    #: a default-chosen node the probe cannot measure (why); not counted against `ValidationReport.ok`
    skipped: Optional[str] = None

    @property
    def status(self) -> str:
        if self.skipped:
            return "skipped"
        if self.error:
            return "error"
        if self.disagreements:
            return "DISAGREE"
        if self.numeric is not None and not self.numeric.exact:
            return "clipped"
        return "ok"


class ValidationReport:
    """Symbolic vs numeric receptive fields of the probed nodes; ``str()`` gives a table."""

    def __init__(self, rows: Sequence[ValidationRow], model_name: str = "", input_shape: tuple[int, ...] = ()):
        self.rows = list(rows)
        self.model_name = model_name
        self.input_shape = tuple(input_shape)

    @property
    def disagreements(self) -> list[Disagreement]:
        return [d for r in self.rows for d in r.disagreements]

    @property
    def errors(self) -> list[tuple[str, str]]:
        return [(r.node, r.error) for r in self.rows if r.error and not r.skipped]

    @property
    def ok(self) -> bool:
        """True when every probed node agrees exactly and was measured unclipped."""
        return all(r.status in ("ok", "skipped") for r in self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def to_dict(self) -> dict[str, Any]:
        def axis_values(values):
            return [None if v is None else (str(v) if isinstance(v, Fraction) else v) for v in values]

        return {
            "model": self.model_name,
            "input_shape": list(self.input_shape),
            "ok": self.ok,
            "rows": [
                {
                    "node": r.node,
                    "status": r.status,
                    "symbolic": {"rf": axis_values(r.symbolic.rf), "stride": axis_values(r.symbolic.stride),
                                 "start": axis_values(r.symbolic.start), "global": list(r.symbolic.is_global)},
                    "numeric": None if r.numeric is None else {
                        "rf": axis_values(r.numeric.rf), "stride": axis_values(r.numeric.stride),
                        "start": axis_values(r.numeric.start), "global": list(r.numeric.is_global),
                        "exact": r.numeric.exact,
                    },
                    "error": r.error,
                }
                for r in self.rows
            ],
            "disagreements": [
                {"node": d.node, "axis": d.axis, "quantity": d.quantity, "symbolic": _fmt(d.symbolic),
                 "numeric": _fmt(d.numeric)}
                for d in self.disagreements
            ],
        }

    def __str__(self) -> str:
        header = ("node", "rf sym", "rf num", "stride sym", "stride num", "start sym", "start num", "status")
        lines = []
        for r in self.rows:
            num = r.numeric
            lines.append((
                r.node,
                _axes(r.symbolic.rf, r.symbolic.is_global),
                "-" if num is None else _axes(num.rf, num.is_global),
                _axes(r.symbolic.stride, r.symbolic.is_global),
                "-" if num is None else _axes(num.stride, num.is_global),
                _axes(r.symbolic.start, r.symbolic.is_global),
                "-" if num is None else _axes(num.start, num.is_global),
                r.status,
            ))
        widths = [max(len(h), *(len(str(line[i])) for line in lines)) if lines else len(h)
                  for i, h in enumerate(header)]
        out = [f"validation of {self.model_name or 'model'} {self.input_shape}: symbolic vs numeric probe"]
        out.append("  ".join(h.ljust(w) for h, w in zip(header, widths)))
        out.append("  ".join("-" * w for w in widths))
        for line in lines:
            out.append("  ".join(str(v).ljust(w) for v, w in zip(line, widths)))
        dis = self.disagreements
        if dis:
            out.append(f"{len(dis)} disagreement(s):")
            out.extend(f"  {d}" for d in dis)
        for r in self.rows:
            if r.skipped:
                out.append(f"skipped {r.node}: {r.skipped}")
        for node, err in self.errors:
            out.append(f"could not probe {node}: {err}")
        if not dis and not self.errors:
            out.append("all probed nodes agree" + ("" if self.ok else " (some measurements clipped)"))
        return "\n".join(out)

    def __repr__(self) -> str:
        return f"<ValidationReport {self.model_name} nodes={len(self.rows)} disagreements={len(self.disagreements)}>"


def _axes(values: Sequence[Any], is_global: Sequence[bool]) -> str:
    parts = ["global" if g else _fmt(v) for v, g in zip(values, is_global)]
    if len(set(parts)) == 1:
        return parts[0]
    return "x".join(parts)


def default_nodes(analysis: "Analysis", count: int = 4) -> list[str]:
    """A handful of nodes spread over the depth, plus the last spatial node (with the input's rank)."""
    rank = len(analysis.input_shape)
    # Spatial nodes that still have the input's layout (not flattened: a probe isolates units along real dims).
    spatial = [r.name for r in analysis if r.is_spatial and r.name != "output" and not all(r.is_global)
               and (r.shape is None or len(r.shape) == rank)]
    if not spatial:
        return []
    picks = []
    for i in range(1, count + 1):
        picks.append(spatial[min(len(spatial) - 1, (i * len(spatial)) // (count + 1))])
    picks.append(spatial[-1])  # the last spatial node (the output node itself may hold several tensors)
    return list(dict.fromkeys(picks))


def compare(node: str, sym: "NodeRF", num: ProbeResult) -> list[Disagreement]:
    """Every quantity on which ``sym`` and ``num`` differ (rf, stride, start; global-ness)."""
    out = []
    for a in num.axes:
        axis = a.axis
        if sym.is_global[axis] or a.is_global:
            if sym.is_global[axis] != a.is_global:
                out.append(Disagreement(node, axis, "global", sym.is_global[axis], a.is_global))
            continue
        if sym.rf[axis] is None:
            out.append(Disagreement(node, axis, "rf", None, a.rf))
            continue
        for q, s, v in (("rf", sym.rf[axis], a.rf), ("stride", sym.stride[axis], a.stride),
                        ("start", sym.start[axis], a.start)):
            if s != v:
                out.append(Disagreement(node, axis, q, s, v))
    return out


def validate_analysis(
    analysis: "Analysis",
    nodes: Optional[Sequence[str]] = None,
    *,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
    max_size: int = _MAX_SIZE,
) -> ValidationReport:
    """Probe ``nodes`` (default: `default_nodes`) and compare with the symbolic results of ``analysis``."""
    if analysis.model is None or analysis.graph_module is None:
        raise ProbeError("this analysis holds no model / graph to probe; run rfgraph.analyze() on a model")
    names = default_nodes(analysis) if nodes is None else [analysis.resolve(n) for n in nodes]
    rows = []
    shared = None  # one sanitized copy for all nodes
    try:
        fx_names = [_tensor_node(analysis.graph_module, analysis[n].fx_name or n, n) for n in names
                    if analysis[n].source in ("symbolic", "probed")]
        if fx_names:
            shared = _Prober(analysis.graph_module, fx_names, dtype, seed)
    except RFGraphError:
        shared = None
    for name in names:
        sym = analysis[name]
        if sym.source not in ("symbolic", "probed"):
            rows.append(ValidationRow(name, sym, None, error=f"symbolic result is {sym.source}: {sym.reason}"))
            continue
        try:
            num = probe(analysis.model, name, analysis=analysis, dtype=dtype, seed=seed, max_size=max_size,
                        _prober=shared)
        except NotIsolableError as exc:
            rows.append(ValidationRow(name, sym, None, error=str(exc), skipped=str(exc) if nodes is None else None))
            continue
        except RFGraphError as exc:
            rows.append(ValidationRow(name, sym, None, error=str(exc)))
            continue
        rows.append(ValidationRow(name, sym, num, compare(name, sym, num)))
    return ValidationReport(rows, analysis.model_name, analysis.input_shape)


def validate(
    model: nn.Module,
    input_shape: Sequence[int],
    nodes: Optional[Sequence[str]] = None,
    *,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
    **analyze_kwargs: Any,
) -> ValidationReport:
    """Analyse ``model`` symbolically, probe ``nodes`` numerically, and report every disagreement.

    >>> import torch.nn as nn
    >>> net = nn.Sequential(nn.Conv2d(1, 2, 3, stride=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(2, 1, 3))
    >>> validate(net, (1, 1, 32, 32)).ok
    True
    """
    from ..passes import analyze

    analysis = analyze(model, input_shape, **analyze_kwargs)
    return validate_analysis(analysis, nodes, dtype=dtype, seed=seed)


# ---------------------------------------------------------------------------
# local fallback: probe one op without a rule, fit its window maps
# ---------------------------------------------------------------------------


class _NoFit(Exception):
    """The op's windows are not periodic-affine (the message says where the fit failed)."""


_MAX_PERIOD = 16
_GRAD_CHUNK = 32


def fallback(call: "OpCall") -> Any:
    """Symbolic-pass fallback for an op or leaf module with no rule: probe it alone.

    The op is run on real tensors (a sanitized copy for a module) at several
    lengths of each spatial dimension it reads; for every output position the
    input window ``[L(u), H(u)]`` is measured by back-propagation.  Periodic-
    affine maps are fitted on interior positions of two lengths and must then
    reproduce every measured window, borders included (clipped to the input),
    at further lengths not used for the fit, among them the length the model
    actually has there.  The maps are applied to the `SymTensor`, marked
    ``probed``.  When no such map fits, the dimension is global if every output
    reads the whole input, otherwise the node is ``unknown`` with the reason.

    Usable as ``analyze(..., fallback=fallback)``; `rfgraph.analyze` uses it by
    default (``fallback="unknown"`` opts out).
    """
    interp = call.interp
    syms = call.sym_args()
    if interp is None:
        raise ProbeError("the probe fallback needs the symbolic pass (call.interp) to run the op")
    if any(a.unknown for a in syms) or not syms:
        return interp.unknown_fallback(call)
    try:
        return _probe_op(call, syms)
    except _NoFit as exc:
        return _unknown(call, f"no rule for {call.describe()}, and the probe fallback found no window map: {exc}")
    except RFGraphError:
        raise
    except Exception as exc:  # the op refused the probe's inputs
        return _unknown(
            call, f"no rule for {call.describe()}, and probing it failed: {type(exc).__name__}: {exc}"
        )


def _unknown(call: "OpCall", reason: str) -> Any:
    from ..passes import _to_unknown, shape_by_execution

    interp = call.interp
    what = call.describe()
    interp.unknown_ops[what] = interp.unknown_ops.get(what, 0) + 1
    out = shape_by_execution(interp._callable(call), call.args, call.kwargs, interp.device)
    return _to_unknown(out, reason)


def _op_callable(call: "OpCall") -> Callable:
    interp = call.interp
    if call.module is not None:
        cache = interp.__dict__.setdefault("_probe_module_cache", {})
        key = id(call.module)
        if key not in cache:
            cache[key] = sanitized_copy(call.module, torch.float64)
        return cache[key]
    return interp._callable(call)


def _real_args(call: "OpCall", x_sym: Any, x_real: torch.Tensor, consts: dict) -> tuple[tuple, dict]:
    def conv(v):
        if v is x_sym:
            return x_real
        if isinstance(v, torch.Tensor):
            key = id(v)
            if key not in consts:
                if v.is_meta:
                    t = torch.rand(v.shape, dtype=torch.float64) + 0.5 if v.is_floating_point() else \
                        torch.zeros(v.shape, dtype=v.dtype)
                else:
                    t = v.detach().to(torch.float64) if v.is_floating_point() else v
                consts[key] = t
            return consts[key]
        if isinstance(v, (list, tuple)):
            items = [conv(a) for a in v]
            return type(v)(*items) if hasattr(v, "_fields") else type(v)(items)
        if isinstance(v, dict):
            return {k: conv(a) for k, a in v.items()}
        return v

    return conv(call.args), conv(call.kwargs)


class _OpProbe:
    def __init__(self, call: "OpCall", x):
        self.call = call
        self.x = x
        self.fn = _op_callable(call)
        self.consts: dict[int, torch.Tensor] = {}
        self.gen = torch.Generator().manual_seed(0)

    def run(self, shape: Sequence[int], grad: bool = False):
        xr = (torch.rand(tuple(shape), generator=self.gen, dtype=torch.float64) + 0.5)
        if grad:
            xr.requires_grad_(True)
        args, kwargs = _real_args(self.call, self.x, xr, self.consts)
        with torch.set_grad_enabled(grad):
            out = self.fn(*args, **kwargs)
        return xr, out

    def windows(self, shape: Sequence[int], d: int) -> tuple[int, list[Optional[tuple[int, int]]]]:
        """Measured (clipped) input window along ``d`` of every output position along ``d``."""
        xr, out = self.run(shape, grad=True)
        if not isinstance(out, torch.Tensor) or not out.requires_grad:
            raise _NoFit("the op's output does not depend differentiably on its input")
        n_out = out.shape[d]
        other = [i for i in range(xr.ndim) if i != d]
        result: list[Optional[tuple[int, int]]] = []
        for start in range(0, n_out, _GRAD_CHUNK):
            units = list(range(start, min(n_out, start + _GRAD_CHUNK)))
            seeds = torch.zeros((len(units),) + tuple(out.shape), dtype=out.dtype)
            for i, u in enumerate(units):
                sl = seeds[i].select(d, u)
                sl.copy_(torch.rand(sl.shape, generator=self.gen, dtype=out.dtype) + 0.5)
            try:
                (g,) = torch.autograd.grad(out, xr, seeds, retain_graph=True, is_grads_batched=True)
                grads = list(g)
            except Exception:
                grads = [torch.autograd.grad(out, xr, s, retain_graph=True)[0] for s in seeds]
            for g in grads:
                hit = (g != 0).any(dim=other) if other else (g != 0)
                idx = torch.nonzero(hit).flatten()
                result.append(None if idx.numel() == 0 else (int(idx[0]), int(idx[-1])))
        return n_out, result


def _probe_op(call: "OpCall", syms: list) -> Any:
    from ..values import Axis

    if len(syms) != 1:
        raise _NoFit(f"it takes {len(syms)} tensors that depend on the input; the fallback probes ops of one")
    x = syms[0]
    if not x.dtype.is_floating_point:
        raise _NoFit(f"its input has dtype {x.dtype}; gradients need a floating-point input")
    op = _OpProbe(call, x)
    _, out = op.run(x.shape)
    if not isinstance(out, torch.Tensor):
        return call.interp.unknown_fallback(call)
    if not out.is_floating_point():
        raise _NoFit(f"its output has dtype {out.dtype}")
    local = [d for d, tag in enumerate(x.tags) if tag is not None and any(not f.is_global for _, f in tag.items())]
    if not local:
        # Nothing local left (a head after global pooling): each output element can depend on no more
        # than the input's fields, which every element of the input shares.
        from ..values import SymTensor

        out_sym = SymTensor(tuple(out.shape), x.dtype, None, _all_fields(x), None, x.global_context, True)
        return out_sym
    if any(not isinstance(x.tags[d], Axis) for d in local):
        raise _NoFit("it reads a dimension holding flattened or shuffled spatial positions")
    dims = local
    if out.ndim != x.ndim:
        raise _NoFit(f"it changes the rank ({x.ndim} -> {out.ndim}); positions cannot be followed")
    per_dim = {}
    global_dims = []
    for d in dims:
        fitted = _fit_dim(op, x.shape, d, tuple(out.shape), dims)
        if fitted is None:
            global_dims.append(d)
        else:
            low, high = fitted
            per_dim[d] = (low, high, out.shape[d])
    result = x.windows(per_dim, call.describe()) if per_dim else x
    if global_dims:
        result = result.globalize(global_dims, call.describe())
    result = result.like(shape=tuple(out.shape))
    result.probed = True
    return result


def _all_fields(x: Any) -> dict:
    """Every field ``x`` holds, merged per axis (global wins)."""
    from ..algebra import GLOBAL

    out: dict = {}
    for k, fields in x.axis_fields().items():
        merged = fields[0]
        for f in fields[1:]:
            try:
                merged = merged.merge(f)
            except ValueError:
                merged = GLOBAL
        out[k] = merged
    return out


def _sizes_that_run(op: _OpProbe, base: Sequence[int], d: int, candidates: Iterable[int], want: int,
                    skip: set) -> list[int]:
    found = []
    for m in candidates:
        if m in skip or m < 1:
            continue
        shape = list(base)
        shape[d] = m
        try:
            _, out = op.run(shape)
        except Exception:
            continue
        if isinstance(out, torch.Tensor) and out.ndim == len(base) and out.shape[d] >= 1:
            found.append(m)
            skip.add(m)
            if len(found) == want:
                break
    return found


def _fit_dim(op: _OpProbe, base: tuple[int, ...], d: int, out_shape: tuple[int, ...],
             spatial: Sequence[int]) -> Optional[tuple[PAMap, PAMap]]:
    """Window maps of dim ``d``; ``None`` when every output reads the whole dim (global)."""
    n = base[d]
    # Thin along the other spatial dims when the op accepts it (cheaper backward passes).
    thin = list(base)
    for j in spatial:
        if j != d:
            thin[j] = min(base[j], 8)
    if thin != list(base) and not _sizes_that_run(op, thin, d, [n], 1, set()):
        thin = list(base)
    used: set[int] = {n}
    small = max(24, min(n, 40))
    fit_sizes = _sizes_that_run(op, thin, d, range(small, small + 12), 2, used)
    check_sizes = [n] + _sizes_that_run(op, thin, d, range(small + 13, small + 40), 1, used)
    if len(fit_sizes) < 2:
        raise _NoFit(f"it runs on too few lengths of dim {d} near {small} to fit a map")
    # The output dim following d must be d itself (the windows API keeps positions in place).
    _, first = op.run(_with(thin, d, n))
    _, other = op.run(_with(thin, d, fit_sizes[0]))
    changed = [i for i, (a, b) in enumerate(zip(first.shape, other.shape)) if a != b]
    if changed != [d]:
        if not changed:
            raise _NoFit(f"no output dim follows the length of input dim {d}")
        raise _NoFit(f"input dim {d} moves to output dim(s) {changed}; the fallback keeps positions in place")
    base = tuple(thin)
    measured = {m: op.windows(_with(base, d, m), d) for m in fit_sizes + check_sizes}
    whole = all(w == (0, m - 1) for m, (_, ws) in measured.items() for w in ws)
    try:
        low = _fit_map([(m, [None if w is None else w[0] for w in measured[m][1]]) for m in fit_sizes])
        high = _fit_map([(m, [None if w is None else w[1] for w in measured[m][1]]) for m in fit_sizes])
        if not (low.is_monotone() and high.is_monotone()):
            raise _NoFit(f"the fitted window maps of dim {d} are not monotone ({low}, {high})")
        for m, (_, ws) in measured.items():
            for u, w in enumerate(ws):
                lo, hi = max(low(u), 0), min(high(u), m - 1)
                predicted = None if lo > hi else (lo, hi)
                if predicted != w:
                    raise _NoFit(
                        f"along dim {d}, the map fitted on lengths {fit_sizes} (L = {low}, H = {high}) predicts "
                        f"window {predicted} for output {u} at length {m}, but the probe measured {w}"
                    )
    except _NoFit:
        if whole:
            return None
        raise
    return low, high


def _with(shape: Sequence[int], d: int, m: int) -> tuple[int, ...]:
    out = list(shape)
    out[d] = m
    return tuple(out)


def _fit_map(data: list[tuple[int, list[Optional[int]]]]) -> PAMap:
    """Smallest-period periodic-affine map through the interior values of every length.

    Interior: strictly inside ``[0, m - 1]`` (a value at the border may be clipped).
    """
    points = [(m, u, v) for m, values in data for u, v in enumerate(values) if v is not None and 0 < v < m - 1]
    if not points:
        raise _NoFit("no output position reads an interior window")
    for m, values in data:
        inner = [u for u, v in enumerate(values) if v is not None and 0 < v < m - 1]
        if inner and any(values[u] is None for u in range(inner[0], inner[-1] + 1)):
            raise _NoFit("some output positions read no input at all")
    by_size: dict[int, dict[int, int]] = {}
    for m, u, v in points:
        by_size.setdefault(m, {})[u] = v
    for period in range(1, _MAX_PERIOD + 1):
        advance = None
        for values in by_size.values():
            for u, v in values.items():
                if u + period in values:
                    advance = values[u + period] - v
                    break
            if advance is not None:
                break
        if advance is None:
            continue
        table: dict[int, int] = {}
        ok = True
        for _, u, v in points:
            q, r = divmod(u, period)
            base = v - q * advance
            if table.setdefault(r, base) != base:
                ok = False
                break
        if ok and len(table) == period:
            return PAMap(period, advance, [table[r] for r in range(period)])
    raise _NoFit(f"no periodic-affine map of period <= {_MAX_PERIOD} fits the measured windows")


# ---------------------------------------------------------------------------
# command line: rfgraph probe MODEL [--nodes ...]
# ---------------------------------------------------------------------------


def add_cli(subparsers: Any) -> None:
    """Register ``rfgraph probe MODEL [--nodes a,b] [--input-shape N,C,H,W] [--float32] [--json]``."""
    p = subparsers.add_parser(
        "probe",
        help="measure receptive fields numerically (gradient probe) and compare with the symbolic pass",
        description="Probe the chosen nodes (default: a handful over the depth plus the last spatial node) on a "
        "sanitized copy of the model (random positive weights; no weights are downloaded) and print symbolic "
        "vs numeric rf / stride / start.  Exit code 1 when any node disagrees or cannot be probed.",
    )
    p.add_argument("model", help="model spec: torchvision:NAME, timm:NAME, file.py:factory or module:factory")
    p.add_argument("--nodes", help="comma-separated node or module names, e.g. layer3,layer4")
    p.add_argument("--input-shape", metavar="N,C,...", help="input shape of the symbolic analysis, e.g. 1,3,299,299")
    p.add_argument("--float32", action="store_true", help="probe in float32 (faster; default float64)")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    p.set_defaults(handler=_run_cli)


def _run_cli(args: Any) -> int:
    import json

    from ..cli import parse_ints
    from ..models import default_input_shape, load_model
    from ..passes import analyze

    model = load_model(args.model, device="meta")
    shape = parse_ints(args.input_shape, "--input-shape") if args.input_shape else \
        default_input_shape(args.model, model)
    analysis = analyze(model, shape)
    nodes = [n.strip() for n in args.nodes.split(",") if n.strip()] if args.nodes else None
    report = validate_analysis(analysis, nodes, dtype=torch.float32 if args.float32 else torch.float64)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report)
    return 0 if report.ok else 1
