"""Windowed ops: each output index reads an input window along the spatial dims.

Conv, transposed conv, pooling (max / avg / lp), adaptive pooling,
interpolation, padding and pixel (un)shuffle.  The window arithmetic itself is
in `rfgraph.windows`; these rules read the op's arguments once, record them on
the node as a `rfgraph.windows.WindowParams` (``node.meta["rfgraph.window"]``),
and apply the windows to the input's fields.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import torch

from ..algebra import PAMap
from ..errors import InputShapeError, RuleError
from ..values import Axis, Flat, Mixed, Offsets, SymTensor, axis_with_channels, merge_tensors, same_fields
from ..windows import (
    WindowParams,
    adaptive_window,
    as_tuple,
    conv_padding,
    conv_window,
    interpolate_window,
    pool_window,
    transposed_window,
)
from .call import OpCall, Rule, hand_over, run_for_shape, tensor_arg

__all__ = [
    "conv_module_rule",
    "conv_function_rule",
    "conv_transpose_module_rule",
    "conv_transpose_function_rule",
    "pool_module_rule",
    "max_pool_function_rule",
    "avg_pool_function_rule",
    "lp_pool_function_rule",
    "adaptive_module_rule",
    "adaptive_function_rule",
    "adaptive",
    "interpolate",
    "interpolate_function_rule",
    "upsample_module_rule",
    "pad_function_rule",
    "pad_module_rule",
    "pixel_shuffle_rule",
    "pixel_unshuffle_rule",
    "unfold_dim",
    "tensor_unfold_rule",
    "im2col_rule",
    "fold_rule",
]


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


def _apply(call: OpCall, x: SymTensor, per_dim, channels: Optional[int] = None, groups: int = 1) -> SymTensor:
    c = x.ndim - len(per_dim) - 1
    multiplier = None  # the groups keep what the channels hold above the group size (positions as digits)
    if channels is not None and x.tags[c] is not None and x.shape[c] > 1:
        x = _mix_within_groups(call, x, c, groups)
        if x.unknown:
            return x.as_unknown(x.unknown, shape=tuple(channels if d == c else n for d, n in enumerate(x.shape)))
        multiplier = channels // groups
    out = x.windows(per_dim, call.describe())
    if multiplier is not None and not out.unknown:
        # (the channel tag after the windows: a window along an axis's top digit re-reads its digits)
        tags = list(out.tags)
        tags[c] = _grouped_channel_tag(out.shape[c], out.tags[c], multiplier, out)
        return out.like(shape=tuple(channels if d == c else n for d, n in enumerate(out.shape)), tags=tuple(tags))
    if channels is not None and not out.unknown:
        shape = list(out.shape)
        shape[x.ndim - len(per_dim) - 1] = channels
        parts = _group_parts(call, out, c, groups, channels) if groups > 1 else None
        out = out.like(shape=shape)
        out.parts = parts
    elif channels is not None:
        shape = list(out.shape)
        shape[x.ndim - len(per_dim) - 1] = channels
        out.shape = tuple(shape)
    return out


def _group_parts(call: OpCall, out: SymTensor, c: int, groups: int, channels: int):
    """Concat pieces through a grouped conv: output group ``g`` reads input group ``g`` only, so its
    channels see the union of the pieces overlapping that group's input channels, not the whole union
    (a depthwise conv after a concat keeps each operand's field).  Neighbouring groups with the same
    fields are one piece.  None when ``out`` (the windows, input channel count) carries no pieces."""
    if out.parts is None or out.parts[0] != c:
        return None
    per_in, per_out = out.shape[c] // groups, channels // groups
    merged: list[tuple[int, int, SymTensor]] = []
    for g in range(groups):
        lo, hi = g * per_in, (g + 1) * per_in
        shape = tuple(per_out if d == c else n for d, n in enumerate(out.shape))
        operands = [piece.like(shape=shape) for a, b, piece in out.parts[1] if a < hi and b > lo]
        piece, _ = merge_tensors(operands, shape, call.describe())
        if piece.unknown:
            return None
        if merged and same_fields(merged[-1][2], piece):
            a, _, prev = merged[-1]
            merged[-1] = (a, (g + 1) * per_out, prev.like(shape=tuple(
                (g + 1) * per_out - a if d == c else n for d, n in enumerate(shape))))
        else:
            merged.append((g * per_out, (g + 1) * per_out, piece))
    return (c, tuple(merged)) if len(merged) > 1 else None


def _grouped_channel_tag(n: int, tag, multiplier: int, out: SymTensor):
    """The channel tag after a grouped conv, given the tag of its ``n`` groups (what each group keeps,
    `_mix_within_groups`): output channel ``j`` is made by group ``j // multiplier`` only, so the
    positions the groups hold stay where they were, each repeated ``multiplier`` times (a trailing
    factor holding no axis)."""
    if tag is None or multiplier == 1:
        return tag
    parts = tag.parts if isinstance(tag, Flat) else ((n, tag),)
    # (one axis then the repeats: an axis of n * multiplier positions, unit j reading j // multiplier)
    return axis_with_channels(Flat(tuple(parts) + ((multiplier, None),)), n * multiplier, out)


def _mix_within_groups(call: OpCall, x: SymTensor, c: int, groups: int) -> SymTensor:
    """A conv whose channel dim ``c`` holds spatial digits (``pixel_unshuffle``, space-to-depth written as
    view / permute, TResNet's ``SpaceToDepth``; tokens fed to a ``Conv1d`` as its channels): output group
    ``g`` reads input group ``g``, ``C / groups`` consecutive channels.  When the group size splits the
    channels' factors (the channels viewed as ``(groups, C / groups)`` by whole factors), each group
    mixes the positions of its own factors (their block's field, `SymTensor.reduce`) and keeps those
    above: one group mixes them all (exactly ``pixel_unshuffle`` then a conv), a depthwise conv none.
    Returns ``x`` with a channel dim of ``groups`` positions (what each group keeps) and the axes whose
    digits are all mixed away as ordinary axes of the digits left; unknown when a group cuts a factor."""
    n = x.shape[c]
    split = x.reshape(x.shape[:c] + (groups, n // groups) + x.shape[c + 1:])
    if split.unknown or _cuts_a_factor(split.tags[c]) or _cuts_a_factor(split.tags[c + 1]):
        block, size = _positions_block(n, x.tags[c]), n // groups
        if not all(-(-k * size // block) * block + block <= (k + 1) * size for k in range(groups)):
            return x.as_unknown(f"{call.describe()} with {groups} groups reads channels that hold spatial "
                                "positions, its groups cutting their factors; no exact rule")
        # every group holds a whole block of the positions (3 channels x 2 x 2 sub-positions, 2 groups of
        # 6: channels 0-3 and 8-11): each reads their whole union
        mixed = x.reduce([c], keepdim=False, what=call.describe())
        if mixed.unknown:
            return x.as_unknown(mixed.unknown)
        return mixed.like(shape=x.shape[:c] + (groups,) + x.shape[c + 1:],
                          tags=mixed.tags[:c] + (None,) + mixed.tags[c:]).with_digits_as_axes()
    mixed = split.reduce([c + 1], keepdim=False, what=call.describe())
    if mixed.unknown:
        return x.as_unknown(mixed.unknown)
    return mixed.with_digits_as_axes()


def _positions_block(n: int, tag) -> int:
    """How many consecutive channels one block of the positions they hold spans: the product of the
    channel dim's factors from the first one holding positions down (``n`` when not a `Flat`)."""
    if not isinstance(tag, Flat):
        return n
    sizes = [s for s, _ in tag.parts]
    first = next((i for i, (_, leaf) in enumerate(tag.parts) if leaf is not None), len(sizes))
    return math.prod(sizes[first:]) if first < len(sizes) else 1


def _cuts_a_factor(tag) -> bool:
    """Whether a dim made by a reshape holds part of a factor it could not keep whole (`Mixed`)."""
    return isinstance(tag, Mixed)


def _conv(call: OpCall, x: SymTensor, kernel, stride, padding, dilation, out_channels, groups: int = 1) -> SymTensor:
    nd = len(kernel)
    kernel, stride, dilation = tuple(int(k) for k in kernel), as_tuple(stride, nd), as_tuple(dilation, nd)
    pads = [conv_padding(padding, i, kernel[i], dilation[i]) for i in range(nd)]
    call.record(WindowParams("conv", kernel, stride, tuple(p[0] for p in pads), tuple(p[1] for p in pads), dilation))

    def make(i, n):
        return conv_window(n, kernel[i], stride[i], pads[i][0], pads[i][1], dilation[i])

    return _apply(call, x, _spatial_windows(call, x, nd, make, dilation), out_channels, groups)


def conv_module_rule(call: OpCall) -> SymTensor:
    m = call.module
    return _conv(call, tensor_arg(call), m.kernel_size, m.stride, m.padding, m.dilation, m.out_channels, m.groups)


def conv_function_rule(nd: int) -> Rule:
    def rule(call: OpCall) -> SymTensor:
        x = tensor_arg(call)
        weight = call.arg(1, "weight")
        context = False
        if isinstance(weight, SymTensor):
            # Weights computed from the input (CondConv, dynamic convs).  When they depend on the input
            # only globally (routing from a pooled vector) the op is still a conv window plus a context
            # path; otherwise its output is unknown, with the shape torch gives it.
            fields = [f for fs in weight.axis_fields().values() for f in fs]
            if weight.unknown or any(not f.is_global for f in fields) or len(weight.shape) != nd + 2:
                device = call.interp.device if call.interp is not None else torch.device("cpu")
                out = run_for_shape(call, device)
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
            int(call.arg(6, "groups", 1)),
        )
        if context and not out.unknown:
            out.global_context = True
        return out

    return rule


def conv_transpose_module_rule(call: OpCall) -> SymTensor:
    m = call.module
    x = tensor_arg(call)
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
    return _conv_transpose(call, x, m.kernel_size, m.stride, m.padding, m.dilation, output_padding, m.out_channels,
                           m.groups)


def _conv_transpose(call, x, kernel, stride, padding, dilation, output_padding, out_channels, groups=1):
    nd = len(kernel)
    stride, padding = as_tuple(stride, nd), as_tuple(padding, nd)
    dilation, output_padding = as_tuple(dilation, nd), as_tuple(output_padding, nd)

    kernel = tuple(int(k) for k in kernel)
    call.record(WindowParams("transposed", kernel, stride, padding, padding, dilation, output_padding=output_padding))

    def make(i, n):
        return transposed_window(n, kernel[i], stride[i], padding[i], dilation[i], output_padding[i])

    # Outputs reached by no tap (kernel taps cover fewer than `stride` residues) read nothing:
    # their maps are finite tables with empty windows there (`rfgraph.windows.transposed_window`).
    # Output u reads the inputs (u + p - d*j) / s of the taps j with d*j = u + p (mod s): consecutive such
    # taps differ by s / gcd(d, s), so the inputs read are every (d / gcd(d, s))-th of [L(u), H(u)] (which
    # matters where the field read is not monotone: a merge with a path of holes).
    steps = [dilation[i] // math.gcd(dilation[i], stride[i]) for i in range(nd)]
    windows = _spatial_windows(call, x, nd, make, steps)
    return _apply(call, x, windows, out_channels, groups)


def conv_transpose_function_rule(nd: int) -> Rule:
    def rule(call: OpCall) -> SymTensor:
        x = tensor_arg(call)
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
            int(groups),
        )

    return rule


def _pool(call, x, nd, kernel, stride, padding, dilation, ceil_mode):
    kernel = as_tuple(kernel, nd)
    stride = as_tuple(stride if stride not in (None, (), []) else kernel, nd)  # aten passes [] for 'same as kernel'
    padding, dilation = as_tuple(padding, nd), as_tuple(dilation, nd)
    call.record(WindowParams("pool", kernel, stride, padding, padding, dilation, bool(ceil_mode)))

    def make(i, n):
        return pool_window(n, kernel[i], stride[i], padding[i], dilation[i], ceil_mode)

    return _apply(call, x, _spatial_windows(call, x, nd, make, dilation))


def pool_module_rule(nd: int) -> Rule:
    def rule(call: OpCall) -> SymTensor:
        m = call.module
        out = _pool(
            call, tensor_arg(call), nd, m.kernel_size, m.stride, getattr(m, "padding", 0), getattr(m, "dilation", 1),
            getattr(m, "ceil_mode", False),
        )
        if getattr(m, "return_indices", False):
            return out, out.like(dtype=torch.int64)
        return out

    return rule


def max_pool_function_rule(nd: int) -> Rule:
    def rule(call: OpCall) -> Any:
        out = _pool(
            call, tensor_arg(call), nd, call.arg(1, "kernel_size"), call.arg(2, "stride", None), call.arg(3, "padding", 0),
            call.arg(4, "dilation", 1), call.arg(5, "ceil_mode", False),
        )
        if call.arg(6, "return_indices", False):
            return out, out.like()
        return out

    return rule


def avg_pool_function_rule(nd: int) -> Rule:
    def rule(call: OpCall) -> SymTensor:
        return _pool(
            call, tensor_arg(call), nd, call.arg(1, "kernel_size"), call.arg(2, "stride", None), call.arg(3, "padding", 0),
            1, call.arg(4, "ceil_mode", False),
        )

    return rule


def lp_pool_function_rule(nd: int) -> Rule:
    def rule(call: OpCall) -> SymTensor:
        return _pool(call, tensor_arg(call), nd, call.arg(2, "kernel_size"), call.arg(3, "stride", None), 0, 1,
                     call.arg(4, "ceil_mode", False))

    return rule


def adaptive(call: OpCall, x: SymTensor, nd: int, output_size) -> SymTensor:
    sizes = as_tuple(output_size, nd)
    call.record(WindowParams("adaptive", size=tuple(None if s is None else int(s) for s in sizes)))
    per_dim = {}
    global_dims = []
    for i in range(nd):
        d = x.ndim - nd + i
        n = x.shape[d]
        m = n if sizes[i] is None else int(sizes[i])
        if m == 1:
            global_dims.append(d)  # made global below
            continue
        low, high = adaptive_window(n, m)
        per_dim[d] = (low, high, m)
    out = x.windows(per_dim, call.describe())
    if global_dims:
        out = out.reduce(global_dims, keepdim=True, what=call.describe())
    return out


def adaptive_module_rule(nd: int) -> Rule:
    def rule(call: OpCall) -> Any:
        out = adaptive(call, tensor_arg(call), nd, call.module.output_size)
        if getattr(call.module, "return_indices", False):
            return out, out.like()
        return out

    return rule


def adaptive_function_rule(nd: int) -> Rule:
    def rule(call: OpCall) -> Any:
        out = adaptive(call, tensor_arg(call), nd, call.arg(1, "output_size"))
        if call.arg(2, "return_indices", False):
            return out, out.like()
        return out

    return rule


def interpolate(call, x, size, scale_factor, mode, align_corners, recompute_scale_factor):
    nd = x.ndim - 2
    if mode not in ("nearest", "nearest-exact", "linear", "bilinear", "trilinear", "bicubic", "area"):
        raise RuleError(f"{call.describe()} at node {call.name!r}: interpolation mode {mode!r} has no rule")
    if mode == "area":
        return adaptive(call, x, nd, size if size is not None else
                         [math.floor(x.shape[2 + i] * s) for i, s in enumerate(as_tuple(scale_factor, nd))])
    if size is not None:
        out_sizes = [int(s) for s in as_tuple(size, nd)]
        scales = [None] * nd
    else:
        factors = [float(s) for s in as_tuple(scale_factor, nd)]
        out_sizes = [math.floor(float(x.shape[2 + i]) * factors[i]) for i in range(nd)]
        scales = [None] * nd if recompute_scale_factor else factors
    call.record(WindowParams("interpolate", size=tuple(out_sizes) if size is not None else None,
                             scale=None if size is not None else tuple(factors), mode=mode))

    def make(i, n):
        low, high = interpolate_window(n, out_sizes[i], mode, align_corners, scales[i])
        return low, high, out_sizes[i]

    return _apply(call, x, _spatial_windows(call, x, nd, make))


def interpolate_function_rule(call: OpCall) -> SymTensor:
    if call.arg(6, "antialias", False):
        # Antialiased downsampling widens the kernel with the scale; no rule yet.
        return call.interp.fallback(call) if call.interp is not None else tensor_arg(call).as_unknown("antialias")
    return interpolate(
        call,
        tensor_arg(call),
        call.arg(1, "size", None),
        call.arg(2, "scale_factor", None),
        call.arg(3, "mode", "nearest"),
        call.arg(4, "align_corners", None),
        call.arg(5, "recompute_scale_factor", None),
    )


def upsample_module_rule(call: OpCall) -> SymTensor:
    m = call.module
    return interpolate(
        call, tensor_arg(call), m.size, m.scale_factor, m.mode, getattr(m, "align_corners", None),
        getattr(m, "recompute_scale_factor", None),
    )


def _pad(call: OpCall, x: SymTensor, pad: Sequence[int], constant: bool = True) -> SymTensor:
    # F.pad lists (left, right) pairs starting from the last dim.
    pairs = [(int(pad[2 * j]), int(pad[2 * j + 1])) for j in range(len(pad) // 2)][::-1]
    call.record(WindowParams("pad", padding_left=tuple(a for a, _ in pairs), padding_right=tuple(b for _, b in pairs)))
    per_dim = {}
    for j in range(len(pad) // 2):
        d = x.ndim - 1 - j
        left, right = int(pad[2 * j]), int(pad[2 * j + 1])
        n_out = x.shape[d] + left + right
        if n_out <= 0:
            raise call.too_small(d, x.shape[d], f"padding ({left}, {right})")
        if (constant and x.tags[d] is not None and not isinstance(x.tags[d], Axis)
                and (padded := x.pad_constant(d, left, right)) is not None):
            # tokens, windows, concatenated segments: whole constant positions added before / after
            x = padded
            continue
        shift = PAMap.affine(1, -left)
        per_dim[d] = (shift, shift, n_out)
    return x.windows(per_dim, call.describe())


def pad_function_rule(call: OpCall) -> SymTensor:
    return _pad(call, tensor_arg(call), call.arg(1, "pad"), call.arg(2, "mode", "constant") == "constant")


def pad_module_rule(call: OpCall) -> SymTensor:
    m = call.module
    return _pad(call, tensor_arg(call), m.padding, isinstance(m, _CONSTANT_PADS))


_CONSTANT_PADS = (torch.nn.ConstantPad1d, torch.nn.ConstantPad2d, torch.nn.ConstantPad3d,
                  torch.nn.ZeroPad1d, torch.nn.ZeroPad2d, torch.nn.ZeroPad3d)


def _pixel_shuffle(call: OpCall, x: SymTensor, r: int, inverse: bool) -> SymTensor:
    call.record(WindowParams("pixel_unshuffle" if inverse else "pixel_shuffle", scale=(1 / r if inverse else r,) * 2))
    per_dim = {}
    for d in (x.ndim - 2, x.ndim - 1):
        n = x.shape[d]
        if inverse:
            if n % r:
                raise RuleError(f"{call.describe()} at node {call.name!r}: size {n} not divisible by {r}")
            per_dim[d] = (PAMap.affine(r, 0), PAMap.affine(r, r - 1), n // r)
        else:
            per_dim[d] = (PAMap.floor_div(r), PAMap.floor_div(r), n * r)
    if x.parts is None:
        moved = _shuffle_by_reshape(x, r, inverse)
        if not moved.unknown:
            return moved
    out = x.windows(per_dim, call.describe())
    shape = list(out.shape)
    c = x.shape[-3]
    shape[-3] = c * r * r if inverse else c // (r * r)
    if out.unknown:
        return out.as_unknown(out.unknown, shape=tuple(shape))
    res = out.like(shape=shape)
    if x.parts is None or x.parts[0] != x.ndim - 3:
        return res
    # Concat pieces along the channels: unshuffle sends channel c to channels c*r*r .. c*r*r + r*r - 1,
    # shuffle sends channels c*r*r + k (k < r*r) to channel c at the r x r sub-positions k.  A piece whose
    # range maps to whole channels stays a piece; otherwise one output channel holds several operands
    # at different sub-positions: no rule (the union would be too large at some positions).
    pieces = []
    for a, b, piece in x.parts[1]:
        if not inverse and (a % (r * r) or b % (r * r)):
            if all(same_fields(piece, other) for _, _, other in x.parts[1]):
                return res
            return x.as_unknown(f"{call.describe()} of a concat whose operands share output channels "
                                f"(channels {a}..{b - 1}, factor {r}): positions read different operands",
                                shape=tuple(shape))
        inner = _pixel_shuffle(call, piece, r, inverse)
        if inner.unknown:
            return res
        pieces.append((a * r * r, b * r * r, inner) if inverse else (a // (r * r), b // (r * r), inner))
    res.parts = (x.ndim - 3, tuple(pieces))
    return res


def _shuffle_by_reshape(x: SymTensor, r: int, inverse: bool) -> SymTensor:
    """``pixel_(un)shuffle`` as the ``reshape`` / ``permute`` / ``reshape`` it is, so that the channels
    hold the sub-positions as digits of the axes: a depthwise op keeps them apart, a shuffle back or a
    channel slice reads exactly the sub-positions it holds, and a conv reading every channel takes
    their union (`_mix_within_groups`).  The windows spelling gave every channel the union of its
    block, too large after a shuffle back (unshuffle then shuffle is the identity, not 2x2 blocks)."""
    *lead, c, h, w = x.shape
    b = len(lead)
    lead = list(lead)
    if inverse:
        split = x.reshape(lead + [c, h // r, r, w // r, r])
        order = list(range(b)) + [b, b + 2, b + 4, b + 1, b + 3]
        return split.permute(order).reshape(lead + [c * r * r, h // r, w // r])
    split = x.reshape(lead + [c // (r * r), r, r, h, w])
    order = list(range(b)) + [b, b + 3, b + 1, b + 4, b + 2]
    return split.permute(order).reshape(lead + [c // (r * r), h * r, w * r])


def pixel_shuffle_rule(call: OpCall) -> SymTensor:
    r = call.module.upscale_factor if call.module is not None else call.arg(1, "upscale_factor")
    return _pixel_shuffle(call, tensor_arg(call), int(r), inverse=False)


def pixel_unshuffle_rule(call: OpCall) -> SymTensor:
    r = call.module.downscale_factor if call.module is not None else call.arg(1, "downscale_factor")
    return _pixel_shuffle(call, tensor_arg(call), int(r), inverse=True)




# ---------------------------------------------------------------------------
# unfold (sliding windows as a new dim), im2col and fold
# ---------------------------------------------------------------------------


def unfold_dim(x: SymTensor, d: int, k: int, s: int, what: str, p: int = 0, dil: int = 1) -> SymTensor:
    """``x`` with dim ``d`` cut into windows of ``k`` taps (``dil`` apart), step ``s``, after ``p`` zeros on
    both sides: dim ``d`` indexes the windows ``u`` and a new last dim the taps ``j``; element ``(u, j)``
    is position ``s*u - p + dil*j``.

    * Windows that tile the dim (``k == s``, no padding or dilation): a reshape into ``(n // k, k)``
      (a trailing remainder sliced off first) with the digit moved last: exact digits of the axis
      (MobileViT's patches, TNT's pixel patches), which a fold or a reshape puts back.
    * Otherwise (HaloNet's overlapping halo windows, VOLO's 3x3 outlook windows): the window dim holds
      each window's union (the conv window ``[s*u - p, s*u - p + dil*(k - 1)]``) and the tap dim is
      `Offsets`: exact for whatever treats the taps as a whole; reading part of them is unknown."""
    n = x.shape[d]
    n_u = (n + 2 * p - dil * (k - 1) - 1) // s + 1
    if n_u <= 0:
        raise RuleError(f"{what}: {n} positions (padding {p}) hold no window of {k}")
    if k == s and p == 0 and dil == 1:
        if n_u * k != n:
            x = x.window(d, PAMap.identity(), PAMap.identity(), n_u * k, what)
        split = x.reshape(x.shape[:d] + (n_u, k) + x.shape[d + 1:])
        order = [i for i in range(split.ndim) if i != d + 1] + [d + 1]
        return split.permute(order)
    low, high, _ = conv_window(n, k, s, p, p, dil)
    out = x.windows({d: (low, high, n_u) if dil == 1 else (low, high, n_u, dil)}, what)
    if out.unknown:
        return out.as_unknown(out.unknown, shape=out.shape + (k,))
    local = [a for a, f in (out.tags[d].items() if out.tags[d] is not None else ()) if not f.is_global]
    res = out.like(shape=out.shape + (k,), tags=out.tags + (Offsets(local[0]) if local and k > 1 else None,))
    if x.parts is not None and x.parts[0] != d:  # a concat's channels keep their own fields
        pieces = tuple((a, b, unfold_dim(piece, d, k, s, what, p, dil)) for a, b, piece in x.parts[1])
        if not any(piece.unknown for _, _, piece in pieces):
            res.parts = (x.parts[0], pieces)
    return res


def tensor_unfold_rule(call: OpCall) -> SymTensor:
    """``x.unfold(dimension, size, step)``: see `unfold_dim`."""
    x = tensor_arg(call)
    d = int(call.arg(1, "dimension"))
    d = d + x.ndim if d < 0 else d
    return unfold_dim(x, d, int(call.arg(2, "size")), int(call.arg(3, "step")), call.describe())


def _fold_params(call: OpCall, kernel_index: int) -> tuple:
    m = call.module
    if m is not None:
        k, dil, p, s = m.kernel_size, m.dilation, m.padding, m.stride
    else:
        k = call.arg(kernel_index, "kernel_size")
        dil = call.arg(kernel_index + 1, "dilation", 1)
        p = call.arg(kernel_index + 2, "padding", 0)
        s = call.arg(kernel_index + 3, "stride", 1)
    return tuple(tuple(int(v) for v in as_tuple(a, 2)) for a in (k, dil, p, s))


def im2col_rule(call: OpCall) -> SymTensor:
    """``F.unfold`` / ``nn.Unfold`` of ``(N, C, H, W)``: ``(N, C*kh*kw, L)``, the channels followed by the
    kernel taps, ``L`` the windows in row-major order: `unfold_dim` along H and W, then the taps moved
    next to the channels and flattened."""
    x = tensor_arg(call)
    (kh, kw), (dh, dw), (ph, pw), (sh, sw) = _fold_params(call, 1)
    call.record(WindowParams("unfold", (kh, kw), (sh, sw), (ph, pw), (ph, pw), (dh, dw)))
    if x.ndim != 4:
        return hand_over(call, x, "unfold of an input that is not (N, C, H, W); no rule")
    what = call.describe()
    t = unfold_dim(unfold_dim(x, 2, kh, sh, what, ph, dh), 3, kw, sw, what, pw, dw)
    n, c, oh, ow = t.shape[:4]
    shape = (n, c * kh * kw, oh * ow)
    if t.unknown:
        return t.as_unknown(t.unknown, shape=shape)
    return t.permute([0, 1, 4, 5, 2, 3]).reshape(shape)


def fold_rule(call: OpCall) -> SymTensor:
    """``F.fold`` / ``nn.Fold``: ``(N, C*kh*kw, L)`` to ``(N, C, H, W)``, summing the taps that land on
    each position.

    * Tiling windows (``k == s``, no padding or dilation): the inverse rearrangement of `im2col_rule`,
      a reshape and a permute (exact for any layout; MobileViT's patches back).
    * Overlapping windows (VOLO's outlook attention): position ``u`` sums window ``l``'s tap
      ``j = (u + p - s*l) / dil``: it reads the windows ``l`` of a transposed conv's window.  Exact when
      the tap dims hold no position (each window's value depends on ``l`` alone, channels aside);
      taps that still hold positions of their own (`Offsets`, digits) are unknown."""
    x = tensor_arg(call)
    size = call.module.output_size if call.module is not None else call.arg(1, "output_size")
    out_h, out_w = (int(v) for v in as_tuple(size, 2))
    (kh, kw), (dh, dw), (ph, pw), (sh, sw) = _fold_params(call, 2)
    call.record(WindowParams("fold", (kh, kw), (sh, sw), (ph, pw), (ph, pw), (dh, dw)))
    if x.ndim != 3:
        return hand_over(call, x, "fold of an input that is not (N, C*kh*kw, L); no rule")
    n, ckk, length = x.shape
    c = ckk // (kh * kw)
    oh = (out_h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (out_w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    if c * kh * kw != ckk or oh * ow != length:
        raise RuleError(f"{call.describe()} at node {call.name!r}: input {x.shape} does not fit the windows")
    t = x.reshape((n, c, kh, kw, oh, ow))
    if (kh, kw) == (sh, sw) and (ph, pw, dh, dw) == (0, 0, 1, 1) and (oh * kh, ow * kw) == (out_h, out_w):
        return t.permute([0, 1, 4, 2, 5, 3]).reshape((n, c, out_h, out_w))
    if t.tags[2] is not None or t.tags[3] is not None:
        return hand_over(call, x, "fold of overlapping windows whose taps hold positions of their own; no exact rule",
                         shape=(n, c, out_h, out_w))
    t = t.reduce([2, 3], keepdim=False, what=call.describe())
    per_dim = {}
    for d, (k, s, p, dil, m, full) in zip((2, 3), ((kh, sh, ph, dh, oh, out_h), (kw, sw, pw, dw, ow, out_w))):
        reached = (m - 1) * s - 2 * p + dil * (k - 1) + 1
        low, high, n_out = transposed_window(m, k, s, p, dil, full - reached)
        per_dim[d] = (low, high, n_out)
    return t.windows(per_dim, call.describe())
