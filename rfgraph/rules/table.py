"""The rule registry: one small function per op family.

A rule receives an `OpCall` (the fx node, its target, the module for
``call_module`` nodes, and the arguments with `SymTensor` values in place of
tensors) and returns the output value.  Rules are looked up by module type
(walking the MRO), by function object, or by method name; the tables at the
bottom of this file are the whole registry.  `RuleSet.override` gives a
per-analysis copy with user rules added, without editing the package.

Window arithmetic (DESIGN.md §2), per spatial dim of length ``n``, with kernel
``k``, stride ``s``, left padding ``p``, dilation ``d``:

* conv / pool:        ``L(u) = s*u - p``, ``H(u) = L(u) + d*(k-1)``
* transposed conv:    input ``i`` feeds outputs ``i*s - p + j*d``; ``L``/``H`` are
                      the extreme ``i`` over the taps ``j`` (period ``s``)
* nearest / linear:   from the source index torch computes (float32, as torch)
* adaptive pool:      ``L(u) = floor(u*n/m)``, ``H(u) = ceil((u+1)*n/m) - 1``
* pad by ``a`` left:  ``L(u) = H(u) = u - a``
"""

from __future__ import annotations

import math
import operator
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .algebra import GLOBAL, PAMap
from .errors import InputShapeError, InputTooSmallError, RuleError
from .values import Axis, MergeInfo, SymTensor, collect, is_complete, merge_tensors

if TYPE_CHECKING:  # pragma: no cover
    import torch.fx as fx

__all__ = [
    "OpCall",
    "Rule",
    "RuleSet",
    "DEFAULT_RULES",
    "describe_target",
    "conv_window",
    "pool_window",
    "transposed_window",
    "adaptive_window",
    "interpolate_window",
]

_MISSING = object()


class OpCall:
    """One call being interpreted: what a rule sees."""

    __slots__ = ("node", "target", "module", "args", "kwargs", "interp")

    def __init__(self, node, target, module, args, kwargs, interp=None):
        self.node = node
        self.target = target
        self.module = module
        self.args = args
        self.kwargs = kwargs
        self.interp = interp

    @property
    def name(self) -> str:
        if self.interp is not None:
            return self.interp.traced.name(self.node)
        return getattr(self.node, "name", "?")

    def arg(self, index: int, name: str, default: Any = _MISSING) -> Any:
        """Positional argument ``index`` or keyword ``name``."""
        if index < len(self.args):
            return self.args[index]
        if name in self.kwargs:
            return self.kwargs[name]
        if default is _MISSING:
            raise RuleError(f"{self.describe()} at node {self.name!r}: missing argument {name!r}")
        return default

    def sym_args(self) -> list[SymTensor]:
        return collect((self.args, self.kwargs), SymTensor)

    def describe(self) -> str:
        if self.module is not None:
            return f"module {type(self.module).__module__}.{type(self.module).__name__}"
        if isinstance(self.target, str):
            return f"method Tensor.{self.target}"
        return f"function {_qualified(self.target)}"

    def note_merge(self, info: MergeInfo) -> None:
        if self.interp is not None:
            self.interp.note_merge(self.node, info)

    def too_small(self, dim: int, n_in: int, detail: str) -> InputTooSmallError:
        return InputTooSmallError(
            f"input too small: {self.describe()} at node {self.name!r} gets length {n_in} along tensor dim "
            f"{dim} and would produce an empty output ({detail}). Use a larger input size.",
            node=self.name,
        )


Rule = Callable[[OpCall], Any]


def _qualified(fn: Any) -> str:
    mod = getattr(fn, "__module__", None) or ""
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    return f"{mod}.{name}" if mod and mod != "builtins" else name


def describe_target(node: "fx.Node") -> str:
    """Short op label of a node: module class, method or function name."""
    if node.op == "call_module":
        owner = node.graph.owning_module
        try:
            return type(owner.get_submodule(node.target)).__name__
        except Exception:
            return str(node.target)
    if node.op == "call_method":
        return f".{node.target}"
    if node.op == "call_function":
        return getattr(node.target, "__name__", str(node.target))
    return node.op


class RuleSet:
    """Rules keyed by module type, function and method name."""

    def __init__(
        self,
        modules: Optional[dict[type, Rule]] = None,
        functions: Optional[dict[Any, Rule]] = None,
        methods: Optional[dict[str, Rule]] = None,
    ):
        self.modules: dict[type, Rule] = dict(modules or {})
        self.functions: dict[Any, Rule] = dict(functions or {})
        self.methods: dict[str, Rule] = dict(methods or {})
        self._module_cache: dict[type, Optional[Rule]] = {}

    def for_module(self, module: nn.Module) -> Optional[Rule]:
        cls = type(module)
        if cls not in self._module_cache:
            self._module_cache[cls] = next((self.modules[c] for c in cls.__mro__ if c in self.modules), None)
        return self._module_cache[cls]

    def override(
        self,
        modules: Optional[dict[type, Rule]] = None,
        functions: Optional[dict[Any, Rule]] = None,
        methods: Optional[dict[str, Rule]] = None,
    ) -> RuleSet:
        """A copy with extra or replaced rules; this set is left untouched."""
        return RuleSet(
            {**self.modules, **(modules or {})},
            {**self.functions, **(functions or {})},
            {**self.methods, **(methods or {})},
        )


# ---------------------------------------------------------------------------
# window arithmetic
# ---------------------------------------------------------------------------


def conv_window(n: int, k: int, s: int, p_left: int, p_right: int, d: int = 1) -> tuple[PAMap, PAMap, int]:
    """Window maps and output length of a convolution along one dim.

    >>> low, high, n_out = conv_window(10, 3, 2, 1, 1)
    >>> low(4), high(4), n_out
    (7, 9, 5)
    """
    n_out = (n + p_left + p_right - d * (k - 1) - 1) // s + 1
    return PAMap.affine(s, -p_left), PAMap.affine(s, -p_left + d * (k - 1)), n_out


def pool_window(
    n: int, k: int, s: int, p: int, d: int = 1, ceil_mode: bool = False
) -> tuple[PAMap, PAMap, int]:
    """Window maps and output length of max/avg pooling (torch's ``ceil_mode`` clamp included)."""
    span = n + 2 * p - d * (k - 1) - 1
    n_out = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (n_out - 1) * s >= n + p:
        n_out -= 1  # the last window would start in the right padding
    return PAMap.affine(s, -p), PAMap.affine(s, -p + d * (k - 1)), n_out


def transposed_window(
    n: int, k: int, s: int, p: int, d: int = 1, output_padding: int = 0
) -> tuple[PAMap, PAMap, int]:
    """Window maps and output length of a transposed convolution.

    Output ``u`` receives input ``i`` through tap ``j`` when ``u = i*s - p + j*d``.
    The map has period ``s`` (``u -> u + s`` is ``i -> i + 1``).  An output
    reached by no tap reads nothing; it gets ``L`` of the next output that
    reads something and ``H`` of the previous one, so that any later window
    covering it composes to the exact hull (with ``d = 1`` this is ``L = H + 1``,
    an empty window; with a dilation the taps' windows overlap and a gap gets
    the overlap of its neighbours').
    """
    n_out = (n - 1) * s - 2 * p + d * (k - 1) + output_padding + 1

    def hits(u: int) -> list[int]:
        return [(u + p - j * d) // s for j in range(k) if (u + p - j * d) % s == 0]

    lows, highs = [], []
    for u in range(s):
        here = hits(u)
        if here:
            lows.append(min(here))
            highs.append(max(here))
            continue
        # every window of s consecutive outputs holds one reached by tap 0
        lows.append(min(next(h for h in (hits(t) for t in range(u + 1, u + s + 1)) if h)))
        highs.append(max(next(h for h in (hits(t) for t in range(u - 1, u - s - 1, -1)) if h)))
    return PAMap(s, 1, lows), PAMap(s, 1, highs), n_out


def adaptive_window(n: int, m: int) -> tuple[PAMap, PAMap]:
    """Adaptive pooling ``n -> m``: ``[floor(u n / m), ceil((u+1) n / m) - 1]``."""
    g = math.gcd(n, m)
    period, advance = m // g, n // g
    lows = [(u * n) // m for u in range(period)]
    highs = [-(-((u + 1) * n) // m) - 1 for u in range(period)]
    return PAMap(period, advance, lows), PAMap(period, advance, highs)


def _fit(
    values_lo: Sequence[int], values_hi: Sequence[int], n_in: int, n_out: int, ratio: Optional[tuple[int, int]] = None
) -> tuple[PAMap, PAMap]:
    """Periodic-affine maps through the given tables on ``[0, n_out)``.

    Tries the natural period first (``n_out / gcd``, or that of ``ratio =
    (input step, output step)``, e.g. ``(n_in - 1, n_out - 1)`` with
    ``align_corners=True``) and falls back to the whole table (period
    ``n_out``, advance ``n_in``): exact on every index that exists.
    """
    num, den = ratio if ratio is not None and ratio[1] > 0 else (n_in, n_out)
    g = math.gcd(num, den)
    period, advance = den // g, num // g

    def fit(values):
        table = values[:period]
        if all(values[u] == table[u % period] + (u // period) * advance for u in range(n_out)):
            return PAMap(period, advance, table)
        return PAMap(n_out, n_in, values)

    return fit(values_lo), fit(values_hi)


def interpolate_window(
    n_in: int, n_out: int, mode: str, align_corners: Optional[bool], scale: Optional[float]
) -> tuple[PAMap, PAMap]:
    """Source windows of ``F.interpolate`` along one dim, computed as torch computes them (float32).

    ``scale`` is the user's scale factor when torch is given one (it then uses
    ``1/scale`` instead of ``n_in/n_out``).  Windows are unclipped: border
    clamping is a border effect, not part of the theoretical field.
    """
    u = np.arange(n_out, dtype=np.int64)
    f32 = np.float32
    if mode in ("nearest", "nearest-exact"):
        if n_out == n_in:
            idx = u
        elif n_out == 2 * n_in and mode == "nearest":
            idx = u >> 1
        else:
            ratio = f32(1.0 / scale) if scale else f32(n_in) / f32(n_out)
            src = (u.astype(f32) + f32(0.5)) * ratio if mode == "nearest-exact" else u.astype(f32) * ratio
            idx = np.floor(src).astype(np.int64)
        return _fit(idx.tolist(), idx.tolist(), n_in, n_out, _scale_ratio(scale))
    cubic = mode == "bicubic"
    if align_corners:
        ratio = f32(n_in - 1) / f32(n_out - 1) if n_out > 1 else f32(0)
        src = ratio * u.astype(f32)
    else:
        ratio = f32(1.0 / scale) if scale else f32(n_in) / f32(n_out)
        src = ratio * (u.astype(f32) + f32(0.5)) - f32(0.5)
    base = np.floor(src)
    frac = src - base
    base = base.astype(np.int64)
    moving = frac > 0
    if cubic:
        lo = np.where(moving, base - 1, base)
        hi = np.where(moving, base + 2, base)
    else:
        lo = base
        hi = base + moving.astype(np.int64)
    return _fit(lo.tolist(), hi.tolist(), n_in, n_out, (n_in - 1, n_out - 1) if align_corners else _scale_ratio(scale))


def _scale_ratio(scale: Optional[float]) -> Optional[tuple[int, int]]:
    """``(input step, output step)`` of a user scale factor (torch then steps by ``1/scale``, not ``n_in/n_out``)."""
    if not scale:
        return None
    fr = Fraction(scale).limit_denominator(1 << 16)
    return fr.denominator, fr.numerator


# ---------------------------------------------------------------------------
# helpers for rules
# ---------------------------------------------------------------------------


def _tuple(v: Any, n: int) -> tuple:
    if isinstance(v, (list, tuple)):
        if len(v) == 1 and n > 1:
            return tuple(v) * n
        return tuple(v)
    return (v,) * n


def _sym(call: OpCall, index: int = 0, name: str = "input") -> SymTensor:
    x = call.arg(index, name)
    if not isinstance(x, SymTensor):
        raise RuleError(f"{call.describe()} at node {call.name!r}: expected a tensor for {name!r}")
    return x


def _norm_dim(dim: int, ndim: int) -> int:
    return dim + ndim if dim < 0 else dim


def _spatial_windows(call: OpCall, x: SymTensor, nd: int, make, taps: Optional[Sequence[int]] = None) -> dict:
    """``{tensor dim: (L, H, n_out)}`` for the last ``nd`` dims; ``make(i, n)`` gives each.

    ``taps`` are the dilations: a dilated window reads every ``taps[i]``-th position of ``[L, H]``
    only, which matters where the field it reads is not monotone (see `Field.through`)."""
    if x.ndim < nd + 1:
        raise RuleError(f"{call.describe()} at node {call.name!r} expects at least {nd + 1} dims, got {x.shape}")
    windowed = x.tags[x.ndim - nd :]
    unbatched_mix = x.ndim == nd + 1 and None in windowed and any(isinstance(t, Axis) for t in windowed)
    if x.ndim > nd + 2 or unbatched_mix:
        # torch would read the channel dim as a spatial one (or refuse): the input rank does not suit the model
        layout = ("(N, C, L)", "(N, C, H, W)", "(N, C, D, H, W)")[min(nd, 3) - 1]
        raise InputShapeError(
            f"{call.describe()} at node {call.name!r} works on {layout} but gets shape {x.shape}: the input shape "
            f"has the wrong rank for this model (is the batch dim missing?). Pass an input shape like {layout}."
        )
    out = {}
    for i in range(nd):
        d = x.ndim - nd + i
        low, high, n_out = make(i, x.shape[d])
        if n_out <= 0:
            raise call.too_small(d, x.shape[d], f"output length {n_out}")
        out[d] = (low, high, n_out) if not taps or taps[i] == 1 else (low, high, n_out, taps[i])
    return out


def _apply(call: OpCall, x: SymTensor, per_dim, channels: Optional[int] = None) -> SymTensor:
    out = x.windows(per_dim, call.describe())
    if channels is not None and not out.unknown:
        shape = list(out.shape)
        shape[x.ndim - len(per_dim) - 1] = channels
        out = out.like(shape=shape)
    elif channels is not None:
        shape = list(out.shape)
        shape[x.ndim - len(per_dim) - 1] = channels
        out.shape = tuple(shape)
    return out


# ---------------------------------------------------------------------------
# convolution
# ---------------------------------------------------------------------------


def _conv_padding(padding, i: int, k: int, d: int) -> tuple[int, int]:
    if padding == "valid":
        return 0, 0
    if padding == "same":
        total = d * (k - 1)
        return total // 2, total - total // 2  # torch pads the extra pixel on the right
    p = _tuple(padding, i + 1)[i]
    return p, p


def _conv(call: OpCall, x: SymTensor, kernel, stride, padding, dilation, out_channels) -> SymTensor:
    nd = len(kernel)
    stride, dilation = _tuple(stride, nd), _tuple(dilation, nd)

    def make(i, n):
        pl, pr = _conv_padding(padding, i, kernel[i], dilation[i])
        return conv_window(n, kernel[i], stride[i], pl, pr, dilation[i])

    return _apply(call, x, _spatial_windows(call, x, nd, make, dilation), out_channels)


def conv_module_rule(call: OpCall) -> SymTensor:
    m = call.module
    return _conv(call, _sym(call), m.kernel_size, m.stride, m.padding, m.dilation, m.out_channels)


def conv_function_rule(nd: int) -> Rule:
    def rule(call: OpCall) -> SymTensor:
        x = _sym(call)
        weight = call.arg(1, "weight")
        context = False
        if isinstance(weight, SymTensor):
            # Weights computed from the input (CondConv, dynamic convs).  When they depend on the input
            # only globally (routing from a pooled vector) the op is still a conv window plus a context
            # path; otherwise its output is unknown, with the shape torch gives it.
            fields = [f for fs in weight.axis_fields().values() for f in fs]
            if weight.unknown or any(not f.is_global for f in fields) or len(weight.shape) != nd + 2:
                from .passes import shape_by_execution

                device = call.interp.device if call.interp is not None else torch.device("cpu")
                out = shape_by_execution(call.target, call.args, call.kwargs, device)
                return x.as_unknown(f"{call.describe()} with input-dependent weights", shape=tuple(out.shape))
            context = bool(fields) or weight.global_context
        kernel = tuple(weight.shape[2:])
        out = _conv(
            call,
            x,
            kernel,
            call.arg(3, "stride", 1),
            call.arg(4, "padding", 0),
            call.arg(5, "dilation", 1),
            weight.shape[0],
        )
        if context and not out.unknown:
            out.global_context = True
        return out

    return rule


def conv_transpose_module_rule(call: OpCall) -> SymTensor:
    m = call.module
    x = _sym(call)
    output_padding = m.output_padding
    output_size = call.arg(1, "output_size", None)
    if output_size is not None:
        # torch turns output_size into the output_padding that reaches it; the windows do not change
        nd = len(m.kernel_size)
        sizes = [int(v) for v in list(output_size)[-nd:]]
        output_padding = tuple(
            sizes[i] - ((x.shape[x.ndim - nd + i] - 1) * m.stride[i] - 2 * m.padding[i]
                        + m.dilation[i] * (m.kernel_size[i] - 1) + 1)
            for i in range(nd)
        )
    return _conv_transpose(call, x, m.kernel_size, m.stride, m.padding, m.dilation, output_padding, m.out_channels)


def _conv_transpose(call, x, kernel, stride, padding, dilation, output_padding, out_channels):
    nd = len(kernel)
    stride, padding = _tuple(stride, nd), _tuple(padding, nd)
    dilation, output_padding = _tuple(dilation, nd), _tuple(output_padding, nd)

    def make(i, n):
        return transposed_window(n, kernel[i], stride[i], padding[i], dilation[i], output_padding[i])

    windows = _spatial_windows(call, x, nd, make)
    # Outputs reached by no tap (kernel taps cover fewer than `stride` residues) have an empty
    # field; window maps cannot carry an empty set through later merges and dilated reads
    # exactly (found by fuzzing), so such a layer goes to the fallback (probe or unknown).
    gaps = [i for i in range(nd) if len({j * dilation[i] % stride[i] for j in range(kernel[i])}) < stride[i]]
    tagged = [i for i in gaps if x.tags[x.ndim - nd + i] is not None]
    if tagged:
        from .aten_rules import _hand_over

        i = tagged[0]
        shape = list(x.shape)
        shape[x.ndim - nd - 1] = out_channels
        for d, (_, _, n_out) in windows.items():
            shape[d] = n_out
        return _hand_over(
            call, x, f"transposed conv (kernel {kernel[i]}, stride {stride[i]}, dilation {dilation[i]}) leaves "
            "outputs that read no input; no exact window map", shape=tuple(shape),
        )
    return _apply(call, x, windows, out_channels)


def conv_transpose_function_rule(nd: int) -> Rule:
    def rule(call: OpCall) -> SymTensor:
        x = _sym(call)
        weight = call.arg(1, "weight")
        groups = call.arg(6, "groups", 1)
        return _conv_transpose(
            call,
            x,
            tuple(weight.shape[2:]),
            call.arg(3, "stride", 1),
            call.arg(4, "padding", 0),
            call.arg(7, "dilation", 1),
            call.arg(5, "output_padding", 0),
            weight.shape[1] * groups,
        )

    return rule


# ---------------------------------------------------------------------------
# pooling
# ---------------------------------------------------------------------------


def _pool(call, x, nd, kernel, stride, padding, dilation, ceil_mode):
    kernel = _tuple(kernel, nd)
    stride = _tuple(stride if stride not in (None, (), []) else kernel, nd)  # aten passes [] for 'same as kernel'
    padding, dilation = _tuple(padding, nd), _tuple(dilation, nd)

    def make(i, n):
        return pool_window(n, kernel[i], stride[i], padding[i], dilation[i], ceil_mode)

    return _apply(call, x, _spatial_windows(call, x, nd, make, dilation))


def pool_module_rule(nd: int) -> Rule:
    def rule(call: OpCall) -> SymTensor:
        m = call.module
        out = _pool(
            call, _sym(call), nd, m.kernel_size, m.stride, getattr(m, "padding", 0), getattr(m, "dilation", 1),
            getattr(m, "ceil_mode", False),
        )
        if getattr(m, "return_indices", False):
            return out, out.like(dtype=torch.int64)
        return out

    return rule


def max_pool_function_rule(nd: int) -> Rule:
    def rule(call: OpCall) -> Any:
        out = _pool(
            call, _sym(call), nd, call.arg(1, "kernel_size"), call.arg(2, "stride", None), call.arg(3, "padding", 0),
            call.arg(4, "dilation", 1), call.arg(5, "ceil_mode", False),
        )
        if call.arg(6, "return_indices", False):
            return out, out.like()
        return out

    return rule


def avg_pool_function_rule(nd: int) -> Rule:
    def rule(call: OpCall) -> SymTensor:
        return _pool(
            call, _sym(call), nd, call.arg(1, "kernel_size"), call.arg(2, "stride", None), call.arg(3, "padding", 0),
            1, call.arg(4, "ceil_mode", False),
        )

    return rule


def lp_pool_function_rule(nd: int) -> Rule:
    def rule(call: OpCall) -> SymTensor:
        return _pool(call, _sym(call), nd, call.arg(2, "kernel_size"), call.arg(3, "stride", None), 0, 1,
                     call.arg(4, "ceil_mode", False))

    return rule


def _adaptive(call: OpCall, x: SymTensor, nd: int, output_size) -> SymTensor:
    sizes = _tuple(output_size, nd)
    per_dim = {}
    global_dims = []
    for i in range(nd):
        d = x.ndim - nd + i
        n = x.shape[d]
        m = n if sizes[i] is None else int(sizes[i])
        if m == 1:
            global_dims.append(d)
            per_dim[d] = (PAMap.constant(0), PAMap.constant(0), 1)  # placeholder; dim made global below
            continue
        low, high = adaptive_window(n, m)
        per_dim[d] = (low, high, m)
    out = x.windows({d: w for d, w in per_dim.items() if d not in global_dims}, call.describe())
    if global_dims:
        out = out.reduce(global_dims, keepdim=True, what=call.describe())
    return out


def adaptive_module_rule(nd: int) -> Rule:
    def rule(call: OpCall) -> Any:
        out = _adaptive(call, _sym(call), nd, call.module.output_size)
        if getattr(call.module, "return_indices", False):
            return out, out.like()
        return out

    return rule


def adaptive_function_rule(nd: int) -> Rule:
    def rule(call: OpCall) -> Any:
        out = _adaptive(call, _sym(call), nd, call.arg(1, "output_size"))
        if call.arg(2, "return_indices", False):
            return out, out.like()
        return out

    return rule


# ---------------------------------------------------------------------------
# resampling, padding, shuffles
# ---------------------------------------------------------------------------


def _interpolate(call, x, size, scale_factor, mode, align_corners, recompute_scale_factor):
    nd = x.ndim - 2
    if mode not in ("nearest", "nearest-exact", "linear", "bilinear", "trilinear", "bicubic", "area"):
        raise RuleError(f"{call.describe()} at node {call.name!r}: interpolation mode {mode!r} has no rule")
    if mode == "area":
        return _adaptive(call, x, nd, size if size is not None else
                         [math.floor(x.shape[2 + i] * s) for i, s in enumerate(_tuple(scale_factor, nd))])
    if size is not None:
        out_sizes = [int(s) for s in _tuple(size, nd)]
        scales = [None] * nd
    else:
        factors = [float(s) for s in _tuple(scale_factor, nd)]
        out_sizes = [math.floor(float(x.shape[2 + i]) * factors[i]) for i in range(nd)]
        scales = [None] * nd if recompute_scale_factor else factors

    def make(i, n):
        low, high = interpolate_window(n, out_sizes[i], mode, align_corners, scales[i])
        return low, high, out_sizes[i]

    return _apply(call, x, _spatial_windows(call, x, nd, make))


def interpolate_function_rule(call: OpCall) -> SymTensor:
    if call.arg(6, "antialias", False):
        # Antialiased downsampling widens the kernel with the scale; no rule yet.
        return call.interp.fallback(call) if call.interp is not None else _sym(call).as_unknown("antialias")
    return _interpolate(
        call,
        _sym(call),
        call.arg(1, "size", None),
        call.arg(2, "scale_factor", None),
        call.arg(3, "mode", "nearest"),
        call.arg(4, "align_corners", None),
        call.arg(5, "recompute_scale_factor", None),
    )


def upsample_module_rule(call: OpCall) -> SymTensor:
    m = call.module
    return _interpolate(
        call, _sym(call), m.size, m.scale_factor, m.mode, getattr(m, "align_corners", None),
        getattr(m, "recompute_scale_factor", None),
    )


def _pad(call: OpCall, x: SymTensor, pad: Sequence[int]) -> SymTensor:
    # F.pad lists (left, right) pairs starting from the last dim.
    per_dim = {}
    for j in range(len(pad) // 2):
        d = x.ndim - 1 - j
        left, right = int(pad[2 * j]), int(pad[2 * j + 1])
        n_out = x.shape[d] + left + right
        if n_out <= 0:
            raise call.too_small(d, x.shape[d], f"padding ({left}, {right})")
        shift = PAMap.affine(1, -left)
        per_dim[d] = (shift, shift, n_out)
    return x.windows(per_dim, call.describe())


def pad_function_rule(call: OpCall) -> SymTensor:
    return _pad(call, _sym(call), call.arg(1, "pad"))


def pad_module_rule(call: OpCall) -> SymTensor:
    return _pad(call, _sym(call), call.module.padding)


def _pixel_shuffle(call: OpCall, x: SymTensor, r: int, inverse: bool) -> SymTensor:
    per_dim = {}
    for d in (x.ndim - 2, x.ndim - 1):
        n = x.shape[d]
        if inverse:
            if n % r:
                raise RuleError(f"{call.describe()} at node {call.name!r}: size {n} not divisible by {r}")
            per_dim[d] = (PAMap.affine(r, 0), PAMap.affine(r, r - 1), n // r)
        else:
            per_dim[d] = (PAMap.floor_div(r), PAMap.floor_div(r), n * r)
    out = x.windows(per_dim, call.describe())
    shape = list(out.shape)
    c = x.shape[-3]
    shape[-3] = c * r * r if inverse else c // (r * r)
    out.shape = tuple(shape)
    return out


def pixel_shuffle_rule(call: OpCall) -> SymTensor:
    r = call.module.upscale_factor if call.module is not None else call.arg(1, "upscale_factor")
    return _pixel_shuffle(call, _sym(call), int(r), inverse=False)


def pixel_unshuffle_rule(call: OpCall) -> SymTensor:
    r = call.module.downscale_factor if call.module is not None else call.arg(1, "downscale_factor")
    return _pixel_shuffle(call, _sym(call), int(r), inverse=True)


# ---------------------------------------------------------------------------
# pointwise ops and merges
# ---------------------------------------------------------------------------


def identity_rule(call: OpCall) -> SymTensor:
    """Same shape, each output position reads the same input position (activations, BN in eval, dropout...)."""
    for v in call.args:
        if isinstance(v, SymTensor):
            return v
    return call.sym_args()[0]


def dtype_rule(call: OpCall) -> SymTensor:
    """``.to(dtype)``, ``.float()``...: identity, keeping the new dtype when one is given."""
    x = call.sym_args()[0]
    target = call.target if isinstance(call.target, str) else ""
    dtype = {"float": torch.float32, "double": torch.float64, "half": torch.float16, "bfloat16": torch.bfloat16,
             "long": torch.int64, "int": torch.int32, "bool": torch.bool}.get(target)
    for v in list(call.args[1:]) + list(call.kwargs.values()):
        if isinstance(v, torch.dtype):
            dtype = v
    return x.like(dtype=dtype) if dtype is not None else x


def _as_operand(v: Any) -> Optional[SymTensor]:
    if isinstance(v, SymTensor):
        return v
    if isinstance(v, torch.Tensor):
        return SymTensor(tuple(v.shape), v.dtype)
    return None


def merge_rule(call: OpCall) -> SymTensor:
    """Elementwise op of several operands (add, mul, where, ...): broadcast, then pointwise min/max."""
    operands = [o for o in (_as_operand(v) for v in list(call.args) + list(call.kwargs.values())) if o is not None]
    shape = tuple(torch.broadcast_shapes(*[o.shape for o in operands]))
    out, info = merge_tensors(operands, shape, call.describe())
    call.note_merge(info)
    dtype = next((o.dtype for o in operands if o.dtype.is_floating_point), operands[0].dtype)
    out.dtype = dtype
    if not out.unknown:
        out.parts = _merged_parts(call, operands, shape)
    return out


def _merged_parts(call: OpCall, operands: Sequence[SymTensor], shape: tuple[int, ...]):
    """Concat pieces survive an elementwise op piece by piece (a residual add, a squeeze-excitation
    gate): each piece merges with the matching slice of the other operands."""
    carrier = next((o for o in operands if o.parts is not None and o.ndim == len(shape)), None)
    if carrier is None:
        return None
    dim, parts = carrier.parts
    pieces = []
    for a, b, _ in parts:
        sliced = []
        for o in operands:
            od = dim - (len(shape) - o.ndim)
            if od < 0 or o.shape[od] == 1:
                sliced.append(o)
                continue
            index = [slice(None)] * o.ndim
            index[od] = slice(a, b)
            sliced.append(_index(call, o, tuple(index)))
        piece_shape = tuple(b - a if d == dim else n for d, n in enumerate(shape))
        piece, _ = merge_tensors(sliced, piece_shape, call.describe())
        if piece.unknown:
            return None
        pieces.append((a, b, piece))
    return dim, tuple(pieces)


def cat_rule(call: OpCall) -> SymTensor:
    tensors = [_as_operand(t) for t in call.arg(0, "tensors")]
    dim = _norm_dim(call.arg(1, "dim", 0), tensors[0].ndim)
    shape = list(tensors[0].shape)
    if any(isinstance(t.tags[dim], Axis) for t in tensors):
        from .aten_rules import spatial_cat  # concat along a spatial dim: exact or handed to the fallback

        return spatial_cat(call, tensors, dim)
    shape[dim] = sum(t.shape[dim] for t in tensors)
    out, info = merge_tensors(tensors, shape, call.describe(), concat_dim=dim)
    call.note_merge(info)
    if not out.unknown:  # channels, or flattened tokens (a class token in front)
        out.parts = (dim, _concat_parts(tensors, dim))
    return out


def _concat_parts(tensors: Sequence[SymTensor], dim: int) -> tuple[tuple[int, int, SymTensor], ...]:
    parts, start = [], 0
    for t in tensors:
        if t.parts is not None and t.parts[0] == dim:  # nested concat: keep the finer pieces
            parts.extend((start + a, start + b, piece) for a, b, piece in t.parts[1])
        else:
            parts.append((start, start + t.shape[dim], t))
        start += t.shape[dim]
    return tuple(parts)


def _index_concat_part(call: OpCall, x: SymTensor, expanded: list[Any]) -> Optional[SymTensor]:
    """Index ``x`` through the concat operand holding the selected range, if one holds all of it."""
    dim, parts = x.parts
    position, d = None, 0
    for j, i in enumerate(expanded):
        if i is None:
            continue
        if d == dim:
            position = j
            break
        d += 1
    entry = expanded[position] if position is not None else None
    if isinstance(entry, int):
        lo = entry + x.shape[dim] if entry < 0 else entry
        hi = lo + 1
    elif isinstance(entry, slice):
        lo, hi, step = entry.indices(x.shape[dim])
        if step != 1 or hi <= lo:
            return None
    else:
        return None
    for a, b, piece in parts:
        if a <= lo and hi <= b:
            local = list(expanded)
            local[position] = lo - a if isinstance(entry, int) else slice(lo - a, hi - a)
            return _index(call, piece, tuple(local))
    return None


def stack_rule(call: OpCall) -> SymTensor:
    tensors = [_as_operand(t) for t in call.arg(0, "tensors")]
    dim = _norm_dim(call.arg(1, "dim", 0), tensors[0].ndim + 1)
    expanded = [t.reshape(t.shape[:dim] + (1,) + t.shape[dim:]) for t in tensors]
    shape = list(expanded[0].shape)
    shape[dim] = len(tensors)
    out, info = merge_tensors(expanded, shape, call.describe(), concat_dim=dim)
    call.note_merge(info)
    return out


def norm_context_rule(dims_of: Callable[[OpCall, SymTensor], Iterable[int]]) -> Rule:
    """Normalisations whose statistics span ``dims_of(call, x)``.

    Over channel dims only they are pointwise; where the statistics also span
    spatial dims (GroupNorm, InstanceNorm, LayerNorm over tokens) each output
    depends on the whole extent through a spatially constant statistic: a
    context path, like squeeze-and-excitation.
    """

    def rule(call: OpCall) -> SymTensor:
        x = _sym(call)
        dims = list(dims_of(call, x))
        if any(x.tags[d] is not None for d in dims):
            if any(not is_complete(x.tags[d]) for d in dims):
                return x.as_unknown(f"{call.describe()} normalises over a subset of spatial positions")
            out = x.like()
            out.global_context = True
            return out
        return x

    return rule


def _layer_norm_dims(call: OpCall, x: SymTensor) -> range:
    shape = call.module.normalized_shape if call.module is not None else call.arg(1, "normalized_shape")
    return range(x.ndim - len(_tuple(shape, 1)), x.ndim)


def _spatial_and_channel_dims(call: OpCall, x: SymTensor) -> range:
    return range(1, x.ndim)


def _instance_dims(call: OpCall, x: SymTensor) -> range:
    m = call.module
    if m is not None and m.track_running_stats and not m.training:
        return range(0)
    return range(2, x.ndim)


# ---------------------------------------------------------------------------
# shape ops
# ---------------------------------------------------------------------------


def _shape_args(call: OpCall, start: int = 1) -> tuple[int, ...]:
    rest = call.args[start:]
    if len(rest) == 1 and isinstance(rest[0], (list, tuple, torch.Size)):
        rest = tuple(rest[0])
    if not rest:
        rest = tuple(call.kwargs.get("shape", call.kwargs.get("size", ())))
    return tuple(int(s) for s in rest)


def reshape_rule(call: OpCall) -> SymTensor:
    return _sym(call).reshape(_shape_args(call))


def view_as_rule(call: OpCall) -> SymTensor:
    other = call.arg(1, "other")
    return _sym(call).reshape(other.shape)


def flatten_rule(call: OpCall) -> SymTensor:
    x = _sym(call)
    if call.module is not None:
        start, end = call.module.start_dim, call.module.end_dim
    else:
        start, end = call.arg(1, "start_dim", 0), call.arg(2, "end_dim", -1)
    if x.ndim == 0:
        return x.reshape((1,))
    start, end = _norm_dim(start, x.ndim), _norm_dim(end, x.ndim)
    shape = x.shape[:start] + (math.prod(x.shape[start : end + 1]),) + x.shape[end + 1 :]
    return x.reshape(shape)


def unflatten_rule(call: OpCall) -> SymTensor:
    x = _sym(call)
    if call.module is not None:
        dim, sizes = call.module.dim, call.module.unflattened_size
    else:
        dim, sizes = call.arg(1, "dim"), call.arg(2, "sizes")
    dim = _norm_dim(dim, x.ndim)
    sizes = list(sizes)
    if -1 in sizes:
        known = math.prod(s for s in sizes if s != -1)
        sizes[sizes.index(-1)] = x.shape[dim] // known
    return x.reshape(x.shape[:dim] + tuple(sizes) + x.shape[dim + 1 :])


def permute_rule(call: OpCall) -> SymTensor:
    x = _sym(call)
    if call.module is not None:  # torchvision.ops.misc.Permute is traced through; kept for user modules
        order = call.module.dims
    else:
        order = _shape_args(call) if call.node.op == "call_method" else tuple(call.arg(1, "dims"))
    return x.permute([_norm_dim(d, x.ndim) for d in order])


def transpose_rule(call: OpCall) -> SymTensor:
    x = _sym(call)
    a, b = _norm_dim(call.arg(1, "dim0"), x.ndim), _norm_dim(call.arg(2, "dim1"), x.ndim)
    order = list(range(x.ndim))
    order[a], order[b] = order[b], order[a]
    return x.permute(order)


def t_rule(call: OpCall) -> SymTensor:
    x = _sym(call)
    return x.permute(list(range(x.ndim))[::-1])


def squeeze_rule(call: OpCall) -> SymTensor:
    x = _sym(call)
    dim = call.arg(1, "dim", None)
    dims = range(x.ndim) if dim is None else [_norm_dim(d, x.ndim) for d in _tuple(dim, 1)]
    shape = tuple(s for d, s in enumerate(x.shape) if not (d in dims and s == 1))
    return x.reshape(shape)


def unsqueeze_rule(call: OpCall) -> SymTensor:
    x = _sym(call)
    dim = _norm_dim(call.arg(1, "dim"), x.ndim + 1)
    return x.reshape(x.shape[:dim] + (1,) + x.shape[dim:])


def expand_rule(call: OpCall) -> SymTensor:
    x = _sym(call)
    sizes = _shape_args(call)
    lead = len(sizes) - x.ndim
    shape = tuple(x.shape[i - lead] if s == -1 else s for i, s in enumerate(sizes))
    base = x.reshape((1,) * lead + x.shape) if lead else x
    out, info = merge_tensors([base], shape, call.describe())
    return out


def expand_as_rule(call: OpCall) -> SymTensor:
    x = _sym(call)
    other = call.arg(1, "other")
    out, _ = merge_tensors([x], tuple(other.shape), call.describe())
    return out


def repeat_rule(call: OpCall) -> SymTensor:
    x = _sym(call)
    reps = _shape_args(call)
    lead = len(reps) - x.ndim
    base = x.reshape((1,) * lead + x.shape) if lead else x
    shape = tuple(s * r for s, r in zip(base.shape, reps))
    repeated = [d for d, r in enumerate(reps) if r != 1 and base.shape[d] != 1 and base.tags[d] is not None]
    if repeated:
        return base.as_unknown(f"{call.describe()} tiles a spatial dimension", shape=shape)
    out, _ = merge_tensors([base], shape, call.describe())
    return out


def getattr_rule(call: OpCall) -> Any:
    x, attr = call.args[0], call.args[1]
    if attr == "shape":
        return torch.Size(x.shape)
    if attr == "dtype":
        return x.dtype
    if attr == "device":
        return call.interp.device if call.interp is not None else torch.device("cpu")
    if attr == "ndim":
        return x.ndim
    if attr in ("T", "mT"):
        order = list(range(x.ndim))
        order[-1], order[-2] = order[-2], order[-1]
        return x.permute(order if attr == "mT" else list(range(x.ndim))[::-1])
    if attr in ("is_cuda", "requires_grad", "is_sparse", "is_quantized"):
        return False
    if attr in ("real", "imag"):  # position by position
        return x.like(dtype=x.dtype.to_real())
    raise RuleError(f"attribute {attr!r} of a tensor has no rule (node {call.name!r})")


def size_rule(call: OpCall) -> Any:
    x = _sym(call)
    dim = call.arg(1, "dim", None)
    return torch.Size(x.shape) if dim is None else x.shape[dim]


def dim_rule(call: OpCall) -> int:
    return _sym(call).ndim


def numel_rule(call: OpCall) -> int:
    return math.prod(_sym(call).shape)


def getitem_rule(call: OpCall) -> Any:
    x, index = call.args[0], call.args[1]
    if not isinstance(x, SymTensor):
        return operator.getitem(x, index)  # a tuple or list holding tensors
    return _index(call, x, index)


def _index(call: OpCall, x: SymTensor, index: Any) -> SymTensor:
    if not isinstance(index, tuple):
        index = (index,)
    if any(isinstance(i, (SymTensor, torch.Tensor, list)) for i in index):
        shape = tuple(shape_of_execution(call).shape)
        return x.as_unknown(f"{call.describe()}: advanced indexing has no rule", shape=shape)
    n_real = sum(1 for i in index if i is not None and i is not Ellipsis)
    expanded: list[Any] = []
    for i in index:
        if i is Ellipsis:
            expanded.extend([slice(None)] * (x.ndim - n_real))
        else:
            expanded.append(i)
    expanded.extend([slice(None)] * (x.ndim - sum(1 for i in expanded if i is not None)))
    if x.parts is not None:
        piece = _index_concat_part(call, x, expanded)
        if piece is not None:
            return piece
    out = x
    d = 0  # dim of `out` being indexed
    for i in expanded:
        if i is None:
            out = out.reshape(out.shape[:d] + (1,) + out.shape[d:])
            d += 1
        elif isinstance(i, slice):
            n = out.shape[d]
            start, stop, step = i.indices(n)
            size = len(range(start, stop, step))
            if (start, step, size) != (0, 1, n):
                if size <= 0:
                    raise call.too_small(d, n, f"slice {i}")
                window = PAMap.affine(step, start)
                out = out.windows({d: (window, window, size)}, call.describe())
            d += 1
        elif isinstance(i, int):
            out = out.index(d, i + out.shape[d] if i < 0 else i)
        else:
            raise RuleError(f"{call.describe()} at node {call.name!r}: index {i!r} has no rule")
    return out


def shape_of_execution(call: OpCall) -> torch.Tensor:
    from .passes import shape_by_execution

    fn = call.node.target
    return shape_by_execution(fn, call.args, call.kwargs, torch.device("meta"))


def narrow_rule(call: OpCall) -> SymTensor:
    x = _sym(call)
    dim = _norm_dim(call.arg(1, "dim"), x.ndim)
    start, length = call.arg(2, "start"), call.arg(3, "length")
    index = [slice(None)] * x.ndim
    index[dim] = slice(start, start + length)
    return _index(call, x, tuple(index))


def split_rule(call: OpCall) -> list[SymTensor]:
    x = _sym(call)
    sizes = call.arg(1, "split_size_or_sections" if call.node.op == "call_function" else "split_size")
    dim = _norm_dim(call.arg(2, "dim", 0), x.ndim)
    n = x.shape[dim]
    if isinstance(sizes, int):
        sizes = [min(sizes, n - s) for s in range(0, n, sizes)]
    out, start = [], 0
    for s in sizes:
        index = [slice(None)] * x.ndim
        index[dim] = slice(start, start + s)
        out.append(_index(call, x, tuple(index)))
        start += s
    return out


def chunk_rule(call: OpCall) -> list[SymTensor]:
    x = _sym(call)
    chunks = call.arg(1, "chunks")
    dim = _norm_dim(call.arg(2, "dim", 0), x.ndim)
    n = x.shape[dim]
    size = -(-n // chunks)
    out, start = [], 0
    while start < n:
        index = [slice(None)] * x.ndim
        index[dim] = slice(start, min(start + size, n))
        out.append(_index(call, x, tuple(index)))
        start += size
    return out


def tensor_split_rule(call: OpCall) -> list[SymTensor]:
    """``torch.tensor_split(x, sections_or_indices, dim)``: slices, as torch cuts them."""
    x = _sym(call)
    spec = call.kwargs.get("indices", call.kwargs.get("sections"))
    if spec is None:
        spec = call.arg(1, "indices_or_sections")
    dim = _norm_dim(call.arg(2, "dim", 0), x.ndim)
    n = x.shape[dim]
    if isinstance(spec, int):
        size, extra = divmod(n, spec)
        bounds, start = [], 0
        for i in range(spec):
            start += size + (1 if i < extra else 0)
            bounds.append(start)
        bounds = bounds[:-1]
    else:
        bounds = [min(max(int(b) + (n if b < 0 else 0), 0), n) for b in spec]
    out, start = [], 0
    for stop in list(bounds) + [n]:
        index = [slice(None)] * x.ndim
        index[dim] = slice(start, max(start, stop))
        out.append(_index(call, x, tuple(index)))
        start = max(start, stop)
    return out


def unbind_rule(call: OpCall) -> list[SymTensor]:
    x = _sym(call)
    dim = _norm_dim(call.arg(1, "dim", 0), x.ndim)
    return [x.index(dim, i) for i in range(x.shape[dim])]


# ---------------------------------------------------------------------------
# ops that mix whole dims
# ---------------------------------------------------------------------------


def reduction_rule(call: OpCall) -> Any:
    """mean / sum / amax ... over ``dim`` (all dims when none given): reduced spatial dims become global."""
    x = _sym(call)
    dim = call.arg(1, "dim", None)
    keepdim = bool(call.arg(2, "keepdim", False))
    dims = range(x.ndim) if dim is None or dim == () else [_norm_dim(d, x.ndim) for d in _tuple(dim, 1)]
    out = x.reduce(dims, keepdim, call.describe())
    if call.target in ("max", "min", torch.max, torch.min) and dim is not None and not isinstance(dim, (list, tuple)):
        return out, out.like(dtype=torch.int64)  # (values, indices)
    return out


def mix_dim_rule(call: OpCall) -> SymTensor:
    """softmax / cumsum / sort ... along ``dim``: shape kept, every position depends on the whole dim."""
    x = _sym(call)
    dim = call.arg(1, "dim", None)
    if dim is None:
        dim = -1
    return x.globalize([_norm_dim(dim, x.ndim)], call.describe())


def linear_rule(call: OpCall) -> SymTensor:
    """``y = x W^T + b`` contracts the last dim; spatial positions held there become global."""
    x = _sym(call)
    if call.module is not None:
        out_features = call.module.out_features
    else:
        weight = call.arg(1, "weight")
        if isinstance(weight, SymTensor):
            return x.as_unknown(f"{call.describe()} with input-dependent weights")
        out_features = weight.shape[0] if weight.ndim == 2 else 1
    out = x.reduce([x.ndim - 1], keepdim=True, what=call.describe())
    shape = list(out.shape)
    shape[-1] = out_features
    tags = list(out.tags)
    pinned = dict(out.pinned)
    last = tags[-1]
    if last is not None:
        for k, f in last.items():
            pinned[k] = f
        tags[-1] = None
    return out.like(shape=shape, tags=tags, pinned=pinned)


def einsum_rule(call: OpCall) -> SymTensor:
    """Generic contraction: indices summed over mix their positions (global), kept ones merge."""
    equation = call.args[0].replace(" ", "")
    operands = call.args[1:]
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    return _contract(call, equation, [_as_operand(o) for o in operands])


def _contract(call: OpCall, equation: str, operands: list[SymTensor]) -> SymTensor:
    if "..." in equation:
        lhs, rhs = equation.split("->") if "->" in equation else (equation, None)
        specs = lhs.split(",")
        free = [c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in equation]
        max_ell = max(o.ndim - len(s.replace("...", "")) for o, s in zip(operands, specs))
        ell = "".join(free[:max_ell])
        specs = [s.replace("...", ell[max_ell - (o.ndim - len(s.replace("...", ""))):]) for o, s in zip(operands, specs)]
        if rhs is None:
            rhs = ell + "".join(sorted(c for c in "".join(specs) if "".join(specs).count(c) == 1 and c not in ell))
        else:
            rhs = rhs.replace("...", ell)
    else:
        if "->" in equation:
            lhs, rhs = equation.split("->")
        else:
            lhs = equation
            joined = lhs.replace(",", "")
            rhs = "".join(sorted(c for c in joined if joined.count(c) == 1))
        specs = lhs.split(",")
    sizes: dict[str, int] = {}
    for o, s in zip(operands, specs):
        for c, n in zip(s, o.shape):
            sizes[c] = max(sizes.get(c, 1), n)
    prepared = []
    for o, s in zip(operands, specs):
        summed = [d for d, c in enumerate(s) if c not in rhs]
        reduced = o.reduce(summed, keepdim=False, what=call.describe()) if summed else o
        kept = [c for c in s if c in rhs]
        # lay the remaining dims out in output order, size-1 where the operand lacks an index
        perm = sorted(range(len(kept)), key=lambda i: rhs.index(kept[i]))
        reduced = reduced.permute(perm)
        kept = [kept[i] for i in perm]
        shape = []
        it = iter(reduced.shape)
        for c in rhs:
            shape.append(next(it) if c in kept else 1)
        prepared.append(reduced.reshape(shape))
    shape = tuple(sizes[c] for c in rhs)
    out, info = merge_tensors(prepared, shape, call.describe())
    call.note_merge(info)
    return out


def matmul_rule(call: OpCall) -> SymTensor:
    a, b = _as_operand(call.args[0]), _as_operand(call.args[1])
    if a.ndim == 1 or b.ndim == 1:
        return (a if isinstance(call.args[0], SymTensor) else b).as_unknown(
            f"{call.describe()} with a 1-D operand has no rule"
        )
    batch = "".join("abcdefgh"[: max(a.ndim, b.ndim) - 2])
    sa = batch[len(batch) - (a.ndim - 2):] + "ij"
    sb = batch[len(batch) - (b.ndim - 2):] + "jk"
    return _contract(call, f"{sa},{sb}->{batch}ik", [a, b])


def attention_module_rule(call: OpCall) -> Any:
    """nn.MultiheadAttention: every query mixes all key/value tokens."""
    m = call.module
    query = _sym(call, 0, "query")
    key, value = call.arg(1, "key"), call.arg(2, "value")
    token_dim = 1 if m.batch_first and query.ndim == 3 else 0
    operands = [o for o in (_as_operand(key), _as_operand(value)) if o is not None]
    # every output token depends on all keys/values: reduce them over tokens, merge as context-free global
    mixed = [o.reduce([token_dim if o.ndim == 3 else 0], keepdim=True, what=call.describe()) for o in operands]
    q = query.globalize([token_dim], call.describe()) if query.tags[token_dim] is not None else query
    shape = query.shape[:-1] + (m.embed_dim,)
    parts = [q.like(shape=shape)] + [t.like(shape=t.shape[:-1] + (m.embed_dim,)) for t in mixed]
    out, _ = merge_tensors(parts, shape, call.describe())
    out = _absorb_context(out)
    weights = None
    if call.arg(4, "need_weights", True):
        weights = out.as_unknown("attention weights are not tracked")
    return out, weights


def sdpa_rule(call: OpCall) -> SymTensor:
    """F.scaled_dot_product_attention(q, k, v): tokens of k/v (dim -2) are mixed into every query."""
    q, k, v = (_as_operand(call.arg(i, n)) for i, n in enumerate(("query", "key", "value")))
    mixed = [t.reduce([t.ndim - 2], keepdim=True, what=call.describe()) for t in (k, v)]
    shape = q.shape[:-1] + (v.shape[-1],)
    parts = [q.globalize([q.ndim - 2], call.describe()).like(shape=shape)]
    parts += [t.like(shape=t.shape[:-1] + (v.shape[-1],)) for t in mixed]
    out, _ = merge_tensors(parts, shape, call.describe())
    return _absorb_context(out)


def _absorb_context(t: SymTensor) -> SymTensor:
    """Attention output: the all-token mix is the signal itself, not a context path."""
    if t.unknown:
        return t
    fields = t.axis_fields()
    if any(f.is_global for fs in fields.values() for f in fs):
        t = t.globalize([d for d, tag in enumerate(t.tags) if tag is not None])
        pinned = {k: f for k, f in t.pinned.items()}
        for k in fields:
            if k in pinned:
                pinned[k] = GLOBAL
        t = t.like(pinned=pinned)
        t.global_context = False
    return t


# ---------------------------------------------------------------------------
# the registry
# ---------------------------------------------------------------------------

#: Modules that act position by position (or over channels only): identity on fields.
IDENTITY_MODULES: tuple[type, ...] = (
    nn.Identity, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
    nn.Mish, nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Hardshrink, nn.Softshrink, nn.Sigmoid, nn.Tanh,
    nn.Softplus, nn.Softsign, nn.Tanhshrink, nn.Threshold, nn.LogSigmoid, nn.GLU,
    nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout,
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.LocalResponseNorm, nn.ChannelShuffle,
)

#: Functions and tensor methods that act position by position.
IDENTITY_FUNCTIONS: tuple[Any, ...] = (
    F.relu, F.relu_, F.relu6, F.leaky_relu, F.leaky_relu_, F.elu, F.elu_, F.selu, F.celu, F.gelu, F.silu, F.mish,
    F.hardswish, F.hardsigmoid, F.hardtanh, F.hardtanh_, F.sigmoid, F.tanh, F.softplus, F.softsign,
    F.tanhshrink, F.threshold, F.logsigmoid, F.prelu, F.rrelu, F.glu, F.hardshrink, F.softshrink,
    F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout, F.feature_alpha_dropout, F.batch_norm,
    F.local_response_norm, F.normalize,
    torch.relu, torch.relu_, torch.sigmoid, torch.tanh, torch.exp, torch.log, torch.sqrt, torch.rsqrt, torch.abs,
    torch.neg, torch.sin, torch.cos, torch.erf, torch.square, torch.reciprocal, torch.sign, torch.floor,
    torch.ceil, torch.round, torch.clamp, torch.clip, torch.clamp_min, torch.clamp_max, torch.nan_to_num,
    torch.dropout, torch.channel_shuffle, torch.native_channel_shuffle, torch.detach, torch.clone,
    operator.neg, operator.pos, operator.abs, operator.invert, operator.not_,
)

IDENTITY_METHODS: tuple[str, ...] = (
    "relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_", "exp", "exp_", "log", "sqrt", "rsqrt", "abs", "neg",
    "clamp", "clamp_", "clip", "clip_", "clamp_min", "clamp_min_", "clamp_max", "erf", "square", "reciprocal",
    "sign", "floor", "ceil", "round", "contiguous", "detach", "clone", "requires_grad_", "cpu", "cuda",
    "hardtanh_", "nan_to_num", "softplus", "type_as", "sin", "cos", "zero_", "fill_", "normal_", "uniform_",
)

MERGE_FUNCTIONS: tuple[Any, ...] = (
    operator.add, operator.sub, operator.mul, operator.truediv, operator.floordiv, operator.pow, operator.mod,
    operator.iadd, operator.isub, operator.imul, operator.itruediv, operator.and_, operator.or_, operator.xor,
    operator.lt, operator.le, operator.gt, operator.ge, operator.eq, operator.ne,
    torch.add, torch.sub, torch.subtract, torch.mul, torch.multiply, torch.div, torch.divide, torch.true_divide,
    torch.pow, torch.maximum, torch.minimum, torch.fmax, torch.fmin, torch.where, torch.addcmul, torch.addcdiv,
    torch.lerp, torch.masked_fill, torch.logical_and, torch.logical_or, torch.eq, torch.ne, torch.lt, torch.gt,
    torch.le, torch.ge, torch.atan2, torch.hypot, torch.remainder, torch.fmod, torch.floor_divide,
)

MERGE_METHODS: tuple[str, ...] = (
    "add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "pow", "pow_", "maximum", "minimum", "where",
    "masked_fill", "masked_fill_", "lerp", "addcmul", "addcdiv", "__add__", "__radd__", "__mul__", "__rmul__",
    "__sub__", "__rsub__", "__truediv__", "__rtruediv__", "eq", "ne", "lt", "gt", "le", "ge", "copy_",
    "remainder", "fmod", "floor_divide", "logical_and", "logical_or",
)

REDUCTIONS = ("mean", "sum", "amax", "amin", "max", "min", "std", "var", "prod", "logsumexp", "norm", "nansum",
              "nanmean", "all", "any", "count_nonzero", "median", "argmax", "argmin")
MIX_DIM = ("softmax", "log_softmax", "cumsum", "cumprod", "softmin", "sort", "argsort", "cummax", "cummin")


def _build_default() -> RuleSet:
    modules: dict[type, Rule] = {m: identity_rule for m in IDENTITY_MODULES}
    functions: dict[Any, Rule] = {f: identity_rule for f in IDENTITY_FUNCTIONS}
    methods: dict[str, Rule] = {m: identity_rule for m in IDENTITY_METHODS}

    for nd, conv, convt, maxp, avgp, amax, aavg, lpp in (
        (1, nn.Conv1d, nn.ConvTranspose1d, nn.MaxPool1d, nn.AvgPool1d, nn.AdaptiveMaxPool1d, nn.AdaptiveAvgPool1d, nn.LPPool1d),
        (2, nn.Conv2d, nn.ConvTranspose2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveMaxPool2d, nn.AdaptiveAvgPool2d, nn.LPPool2d),
        (3, nn.Conv3d, nn.ConvTranspose3d, nn.MaxPool3d, nn.AvgPool3d, nn.AdaptiveMaxPool3d, nn.AdaptiveAvgPool3d, getattr(nn, "LPPool3d", None)),
    ):
        modules[conv] = conv_module_rule
        modules[convt] = conv_transpose_module_rule
        modules[maxp] = pool_module_rule(nd)
        modules[avgp] = pool_module_rule(nd)
        if lpp is not None:
            modules[lpp] = pool_module_rule(nd)
        modules[amax] = adaptive_module_rule(nd)
        modules[aavg] = adaptive_module_rule(nd)
        functions[getattr(F, f"conv{nd}d")] = conv_function_rule(nd)
        functions[getattr(torch, f"conv{nd}d")] = conv_function_rule(nd)
        functions[getattr(F, f"conv_transpose{nd}d")] = conv_transpose_function_rule(nd)
        functions[getattr(F, f"max_pool{nd}d")] = max_pool_function_rule(nd)
        functions[getattr(torch, f"max_pool{nd}d")] = max_pool_function_rule(nd)
        functions[getattr(F, f"avg_pool{nd}d")] = avg_pool_function_rule(nd)
        functions[getattr(F, f"adaptive_avg_pool{nd}d")] = adaptive_function_rule(nd)
        functions[getattr(F, f"adaptive_max_pool{nd}d")] = adaptive_function_rule(nd)
        if hasattr(F, f"lp_pool{nd}d"):
            functions[getattr(F, f"lp_pool{nd}d")] = lp_pool_function_rule(nd)
        functions[getattr(F, f"max_pool{nd}d_with_indices", None)] = max_pool_function_rule(nd)
        functions[getattr(F, f"adaptive_max_pool{nd}d_with_indices", None)] = adaptive_function_rule(nd)

    for m in (nn.Upsample, nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d):
        modules[m] = upsample_module_rule
    functions[F.interpolate] = interpolate_function_rule
    functions[F.upsample] = interpolate_function_rule
    for m in (nn.ZeroPad1d, nn.ZeroPad2d, nn.ZeroPad3d, nn.ConstantPad1d, nn.ConstantPad2d, nn.ConstantPad3d,
              nn.ReflectionPad1d, nn.ReflectionPad2d, nn.ReflectionPad3d, nn.ReplicationPad1d, nn.ReplicationPad2d,
              nn.ReplicationPad3d, nn.CircularPad1d, nn.CircularPad2d, nn.CircularPad3d):
        modules[m] = pad_module_rule
    functions[F.pad] = pad_function_rule
    functions[torch.constant_pad_nd] = pad_function_rule
    modules[nn.PixelShuffle] = pixel_shuffle_rule
    modules[nn.PixelUnshuffle] = pixel_unshuffle_rule
    functions[F.pixel_shuffle] = functions[torch.pixel_shuffle] = pixel_shuffle_rule
    functions[F.pixel_unshuffle] = functions[torch.pixel_unshuffle] = pixel_unshuffle_rule

    for f in MERGE_FUNCTIONS:
        functions[f] = merge_rule
    for name in MERGE_METHODS:
        methods[name] = merge_rule
    functions[torch.cat] = functions[torch.concat] = functions[torch.concatenate] = cat_rule
    functions[torch.stack] = stack_rule

    layer_norm = norm_context_rule(_layer_norm_dims)
    group_norm = norm_context_rule(_spatial_and_channel_dims)
    instance_norm = norm_context_rule(_instance_dims)
    modules[nn.LayerNorm] = layer_norm
    functions[F.layer_norm] = layer_norm
    if hasattr(nn, "RMSNorm"):
        modules[nn.RMSNorm] = layer_norm
        functions[F.rms_norm] = layer_norm
    modules[nn.GroupNorm] = group_norm
    functions[F.group_norm] = group_norm
    for m in (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d):
        modules[m] = instance_norm
    functions[F.instance_norm] = instance_norm

    for name in ("view", "reshape"):
        methods[name] = reshape_rule
    functions[torch.reshape] = reshape_rule
    methods["view_as"] = methods["reshape_as"] = view_as_rule
    methods["flatten"] = functions[torch.flatten] = modules[nn.Flatten] = flatten_rule
    methods["unflatten"] = functions[torch.unflatten] = modules[nn.Unflatten] = unflatten_rule
    methods["permute"] = functions[torch.permute] = permute_rule
    methods["transpose"] = functions[torch.transpose] = transpose_rule
    methods["swapaxes"] = methods["swapdims"] = transpose_rule
    methods["t"] = functions[torch.t] = t_rule
    methods["squeeze"] = functions[torch.squeeze] = squeeze_rule
    methods["unsqueeze"] = functions[torch.unsqueeze] = unsqueeze_rule
    methods["expand"] = expand_rule
    methods["expand_as"] = expand_as_rule
    methods["repeat"] = repeat_rule
    methods["size"] = size_rule
    methods["dim"] = dim_rule
    methods["numel"] = numel_rule
    functions[torch.numel] = numel_rule
    functions[getattr] = getattr_rule
    functions[operator.getitem] = getitem_rule
    methods["narrow"] = functions[torch.narrow] = narrow_rule
    methods["split"] = functions[torch.split] = split_rule
    methods["chunk"] = functions[torch.chunk] = chunk_rule
    methods["unbind"] = functions[torch.unbind] = unbind_rule
    methods["tensor_split"] = functions[torch.tensor_split] = tensor_split_rule
    for name in ("to", "type", "float", "double", "half", "bfloat16", "long", "int", "bool"):
        methods[name] = dtype_rule

    for name in REDUCTIONS:
        methods[name] = reduction_rule
        if hasattr(torch, name):
            functions[getattr(torch, name)] = reduction_rule
    for name in MIX_DIM:
        methods[name] = mix_dim_rule
        if hasattr(torch, name):
            functions[getattr(torch, name)] = mix_dim_rule
        if hasattr(F, name):
            functions[getattr(F, name)] = mix_dim_rule
    modules[nn.Softmax] = modules[nn.LogSoftmax] = modules[nn.Softmin] = _softmax_module_rule

    modules[nn.Linear] = modules[nn.Bilinear] = linear_rule
    functions[F.linear] = linear_rule
    functions[torch.matmul] = functions[operator.matmul] = functions[torch.bmm] = matmul_rule
    methods["matmul"] = methods["bmm"] = methods["__matmul__"] = matmul_rule
    functions[torch.einsum] = einsum_rule
    modules[nn.MultiheadAttention] = attention_module_rule
    functions[F.scaled_dot_product_attention] = sdpa_rule

    functions.update(_torchvision_functions())
    modules.update(_torchvision_modules())
    # flip / roll / select / embeddings, then aten ops of graphs from the torch.export fallback
    from .aten_rules import aten_functions, rearrangement_rules

    more_modules, more_functions, more_methods = rearrangement_rules()
    modules.update(more_modules)
    functions.update(more_functions)
    methods.update(more_methods)
    functions.update(aten_functions(functions, methods, identity_rule, reduction_rule))

    functions.pop(None, None)
    return RuleSet(modules, functions, methods)


# ---------------------------------------------------------------------------
# torchvision functions that are fx-wrapped (opaque to tracing)
# ---------------------------------------------------------------------------


def swin_window_attention_rule(call: OpCall) -> SymTensor:
    """torchvision's ``shifted_window_attention`` on ``(B, H, W, C)`` (and its 3-D twin on ``(B, T, H, W, C)``).

    Positions are padded on the right to a multiple of the window ``w``, rolled
    by ``-shift`` and split into windows of ``w``; attention mixes each window.
    Original position ``p`` lies in rolled window ``floor((p - shift) / w)``,
    which covers ``[w*floor((u - shift)/w) + shift, ... + w - 1]``.  When the
    window covers the whole (padded) dim, it mixes everything: global.
    (Masks of the wrapped last window only cut that window at the border.)
    """
    x = _sym(call)
    window = list(call.arg(4, "window_size"))
    shift = list(call.arg(6, "shift_size"))
    per_dim, whole = {}, []
    first = x.ndim - 1 - len(window)  # channels-last: (B, *spatial, C)
    for i, d in enumerate(range(first, x.ndim - 1)):
        n, w = x.shape[d], window[i]
        padded = n + (w - n % w) % w
        if w >= padded:
            whole.append(d)
            continue
        s = shift[i]
        low = PAMap(w, w, [w * ((u - s) // w) + s for u in range(w)])
        per_dim[d] = (low, low.shift(w - 1), n)
    out = x.windows(per_dim, call.describe())
    return out.globalize(whole, call.describe()) if whole else out


def swin_patch_merging_pad_rule(call: OpCall) -> SymTensor:
    """torchvision's ``_patch_merging_pad`` on ``(..., H, W, C)``: output ``u`` reads ``2u, 2u+1``."""
    x = _sym(call)
    per_dim = {d: (PAMap.affine(2, 0), PAMap.affine(2, 1), -(-x.shape[d] // 2)) for d in (x.ndim - 3, x.ndim - 2)}
    out = x.windows(per_dim, call.describe())
    shape = list(out.shape)
    shape[-1] = 4 * x.shape[-1]
    return out.like(shape=shape) if not out.unknown else out.as_unknown(out.unknown, shape=shape)


def maxvit_partition_attention_rule(call: OpCall) -> SymTensor:
    """torchvision MaxViT ``PartitionAttentionLayer`` on ``(B, C, H, W)`` (attention + MLP, residuals inside).

    ``window``: tokens in the same ``p x p`` block mix: ``L(u) = p*floor(u/p)``,
    ``H(u) = L(u) + p - 1``.  ``grid``: with ``p = n / g`` partitions, tokens
    with the same ``u mod p`` mix: ``L(u) = u mod p``, ``H(u) = L(u) + p*(g-1)``,
    written as a table over the whole dim (exact on every existing index).
    """
    x = _sym(call)
    m = call.module
    per_dim = {}
    for d in (x.ndim - 2, x.ndim - 1):
        n, p = x.shape[d], m.p
        if n % p:
            raise RuleError(f"{call.describe()} at node {call.name!r}: size {n} not divisible by partition {p}")
        if m.partition_type == "window":
            low = PAMap(p, p, [0] * p)
            per_dim[d] = (low, low.shift(p - 1), n)
        else:
            low = PAMap(n, n, [u % p for u in range(n)])
            per_dim[d] = (low, low.shift(n - p), n)
    return x.windows(per_dim, call.describe())


def mvit_unsqueeze_rule(call: OpCall) -> tuple[SymTensor, int]:
    """torchvision MViT ``_unsqueeze(x, target_dim, expand_dim)``: a reshape, and the original rank."""
    x = _sym(call)
    target, expand = call.args[1], call.args[2]
    if x.ndim == target - 1:
        d = _norm_dim(expand, x.ndim + 1)
        return x.reshape(x.shape[:d] + (1,) + x.shape[d:]), x.ndim
    return x, x.ndim


def mvit_squeeze_rule(call: OpCall) -> SymTensor:
    """torchvision MViT ``_squeeze(x, target_dim, expand_dim, tensor_dim)``."""
    x = _sym(call)
    target, expand, rank = call.args[1], call.args[2], call.args[3]
    if rank == target - 1:
        d = _norm_dim(expand, x.ndim)
        if x.shape[d] == 1:
            return x.reshape(x.shape[:d] + x.shape[d + 1 :])
    return x


def mvit_add_shortcut_rule(call: OpCall) -> SymTensor:
    """MViT ``_add_shortcut(x, shortcut, ...)``: an elementwise add."""
    return merge_rule(OpCall(call.node, call.target, None, call.args[:2], {}, call.interp))


def mvit_add_rel_pos_rule(call: OpCall) -> SymTensor:
    """MViT ``_add_rel_pos(attn, q, ...)``: ``attn (B, h, Nq, Nk)`` plus a bias that each query token
    computes from its own channels: ``q (B, h, Nq, d)`` contracted over ``d`` and broadcast over keys."""
    attn, q = _sym(call, 0, "attn"), _as_operand(call.args[1])
    bias = q.reduce([q.ndim - 1], keepdim=True, what=call.describe())
    return merge_rule(OpCall(call.node, call.target, None, (attn, bias), {}, call.interp))


def _torchvision_modules() -> dict[type, Rule]:
    import importlib

    try:
        maxvit = importlib.import_module("torchvision.models.maxvit")
    except ImportError:  # pragma: no cover
        return {}
    return {maxvit.PartitionAttentionLayer: maxvit_partition_attention_rule}


def _torchvision_functions() -> dict[Any, Rule]:
    out: dict[Any, Rule] = {}
    import importlib

    try:
        swin_transformer = importlib.import_module("torchvision.models.swin_transformer")
        drop_block = importlib.import_module("torchvision.ops.drop_block")
        stochastic_depth = importlib.import_module("torchvision.ops.stochastic_depth")
    except ImportError:  # pragma: no cover
        return out
    out[stochastic_depth.stochastic_depth] = identity_rule  # per-sample scaling: pointwise
    out[drop_block.drop_block2d] = identity_rule  # identity in eval; in training a random mask, still no reach
    out[drop_block.drop_block3d] = identity_rule
    out[swin_transformer.shifted_window_attention] = swin_window_attention_rule
    out[swin_transformer._patch_merging_pad] = swin_patch_merging_pad_rule
    video_swin = importlib.import_module("torchvision.models.video.swin_transformer")
    out[video_swin.shifted_window_attention_3d] = swin_window_attention_rule
    mvit = importlib.import_module("torchvision.models.video.mvit")
    out[mvit._unsqueeze] = mvit_unsqueeze_rule
    out[mvit._squeeze] = mvit_squeeze_rule
    out[mvit._add_rel_pos] = mvit_add_rel_pos_rule
    out[mvit._add_shortcut] = mvit_add_shortcut_rule
    return out


def _softmax_module_rule(call: OpCall) -> SymTensor:
    x = _sym(call)
    dim = call.module.dim if call.module.dim is not None else -1
    return x.globalize([_norm_dim(dim, x.ndim)], call.describe())


#: The rules every analysis starts from.
DEFAULT_RULES: RuleSet = _build_default()
