"""Random small networks for fuzzing the symbolic pass against a numeric measurement.

A network is a `NetSpec`: a number of spatial dims (1, 2 or 3), the input
channels, a base input size, and a program of `Op`s, each reading earlier
nodes (node 0 is the input).  Ops: convolution (stride, dilation, symmetric
padding, groups), transposed convolution, max/avg pooling (with and without
``ceil_mode``), asymmetric ``F.pad``, nearest / (bi,tri)linear upsampling by an
integer factor, adaptive avg/max pooling to a non-1 size, crops by slicing
(with step 1 or 2), and merges of two nodes by add, mul or channel concat
(operands cropped to a common size first, as a U-Net does).

`FuzzNet` builds a spec into an ``nn.Module`` for one input shape (adaptive
output sizes are a ratio of the actual input length).  With
``reference=True`` the module computes *dependency*, not values: max pooling
becomes a sum over the same window, adaptive max pooling adaptive average
pooling, and mul becomes add; every output is binarised (0 / 1) after each op
(interpolation weights below 1e-9, rounding noise, count as 0).  With
non-negative weights and no bias, an output is non-zero exactly when it
depends on some non-zero input (no cancellation: nothing is subtracted).
Given the measured ``axis``, the reference extends the other axes circularly
where an op reads beyond them (no path dies there), and in touch mode
(`touched`) every read beyond the measured axis reads 1.

`measure` feeds, for one spatial axis, a batch of one-hot *slabs* (batch ``b``
is 1 on input coordinate ``b`` along that axis, everywhere else along the
others) and reads, for every node and output index ``u``, the first and last
``b`` that reach it: the node's numeric window ``[lo(u), hi(u)]``.  Units are
compared only where no border can have clipped them: the *clean* units, which
the touch-mode run finds reading nothing out of range (independent of
rfgraph).  `check` compares every clean unit of every node with the symbolic
``lo(u)``, ``hi(u)``, and the record's ``rf``, ``stride`` and ``start`` with
those measured over one full period (docs/design.md, "Testing: the fuzzing").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Optional

import torch
import torch.nn.functional as F
from hypothesis import strategies as st
from torch import nn

from rfgraph.algebra import PAMap

__all__ = ["Op", "NetSpec", "FuzzNet", "net_specs", "unet_specs", "check", "measure", "valid", "Disagreement"]

C = 2  # channels of every conv output


@dataclass(frozen=True)
class Op:
    kind: str
    inputs: tuple[int, ...]
    params: tuple = ()


@dataclass(frozen=True)
class NetSpec:
    nd: int
    in_channels: int
    base: int
    ops: tuple[Op, ...]

    def __str__(self) -> str:
        lines = [f"NetSpec(nd={self.nd}, in_channels={self.in_channels}, base={self.base}, ops=("]
        lines += [f"    {op!r}," for op in self.ops]
        return "\n".join(lines) + "))"


# ---------------------------------------------------------------------------
# the network
# ---------------------------------------------------------------------------


def _sum_pool(x: torch.Tensor, nd: int, k: int, s: int, p: int, d: int, n_out: list[int],
              extend=None) -> torch.Tensor:
    """Sum over the pool windows ``[u*s - p, u*s - p + d*(k-1)]`` (step d), zeros outside (or what
    ``extend(x, i, left, right)`` puts outside along spatial axis ``i``)."""
    for i in range(nd):
        dim = x.ndim - nd + i
        n = x.shape[dim]
        need = (n_out[i] - 1) * s + d * (k - 1) + 1  # padded length that holds every window
        right = max(0, need - n - p)
        x = extend(x, i, p, right) if extend is not None else _pad_axis(x, nd, i, p, right, 0.0)
        x = x.unfold(dim, d * (k - 1) + 1, s).narrow(dim, 0, n_out[i])[..., ::d].sum(-1)
    return x


def _pad_axis(x: torch.Tensor, nd: int, axis: int, left: int, right: int, value: float) -> torch.Tensor:
    """``x`` padded along spatial ``axis`` by ``left`` / ``right`` positions of ``value``."""
    if not left and not right:
        return x
    return F.pad(x, [0, 0] * (nd - 1 - axis) + [left, right], value=value)


def _wrap_axis(x: torch.Tensor, nd: int, axis: int, left: int, right: int) -> torch.Tensor:
    """``x`` extended circularly along spatial ``axis`` (any amounts, also beyond its length)."""
    if not left and not right:
        return x
    dim = x.ndim - nd + axis
    n = x.shape[dim]
    return x.index_select(dim, torch.arange(-left, n + right) % n)


def _mark_clamped(y: torch.Tensor, axis: int, n_in: int) -> torch.Tensor:
    """Touch mode of a linear resampling with ``align_corners=False``: output ``u`` reads source
    ``src = (u + 1/2) n_in / n_out - 1/2``, clamped into ``[0, n_in - 1]`` by torch; the units whose
    ``floor(src)`` or ``ceil(src)`` lies outside are marked as reading out of range (exact fractions)."""
    n_out = y.shape[2 + axis]
    marks = [u for u in range(n_out)
             if not 0 <= (Fraction(2 * u + 1, 2) * Fraction(n_in, n_out) - Fraction(1, 2)) <= n_in - 1]
    if marks:
        y = y.clone()
        y.index_fill_(2 + axis, torch.tensor(marks), 1.0)
    return y


class FuzzNet(nn.Module):
    """A `NetSpec` built for inputs of ``shape``; ``self.taps[i]`` marks node ``i + 1``."""

    def __init__(self, spec: NetSpec, shape: tuple[int, ...], reference: bool = False, seed: int = 0,
                 axis: Optional[int] = None, touch: bool = False):
        super().__init__()
        self.spec = spec
        self.nd = spec.nd
        self.reference = reference or touch
        #: the measured axis (reference and touch modes): the other axes are extended circularly where an
        #: op reads beyond them, so that no path dies along them (at a thin size, a branch can read only
        #: padding there); along it, out-of-range reads read 0, or 1 in touch mode (`touched`)
        self.axis = axis
        self.touch = touch
        self.layers = nn.ModuleList()
        self.taps = nn.ModuleList()
        self.plans: list[tuple] = []
        self.outputs: list[torch.Tensor] = []
        #: applied to each node's output before it is kept in ``outputs`` (reference and touch modes)
        self.reduce = None
        gen = torch.Generator().manual_seed(seed)
        nd = spec.nd
        conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[nd - 1]
        convt = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)[nd - 1]
        # the shape of every node at this input shape
        shapes = [tuple(shape)]
        for op in spec.ops:
            a = op.inputs[0]
            x_shape = shapes[a]
            layer: Optional[nn.Module] = None
            plan: tuple = ()
            c_in = x_shape[1]
            lengths = list(x_shape[2:])
            if op.kind == "conv":
                k, s, d, p, grouped = op.params
                groups = math.gcd(c_in, C) if grouped else 1
                layer = conv(c_in, C, k, stride=s, padding=p, dilation=d, groups=groups, bias=False)
                out = [(n + 2 * p - d * (k - 1) - 1) // s + 1 for n in lengths]
                c_out = C
            elif op.kind == "convT":
                k, s, d, p, op_pad = op.params
                layer = convt(c_in, C, k, stride=s, padding=p, output_padding=op_pad, dilation=d, bias=False)
                out = [(n - 1) * s - 2 * p + d * (k - 1) + op_pad + 1 for n in lengths]
                c_out = C
            elif op.kind in ("maxpool", "avgpool"):
                k, s, p, d, ceil = op.params
                if op.kind == "avgpool":
                    d = 1
                out = []
                for n in lengths:
                    span = n + 2 * p - d * (k - 1) - 1
                    m = (-(-span // s) if ceil else span // s) + 1
                    if ceil and (m - 1) * s >= n + p:
                        m -= 1
                    out.append(m)
                plan = (k, s, p, d, ceil, out)
                c_out = c_in
            elif op.kind == "pad":
                pads = op.params  # (left, right) per dim, last dim first as F.pad wants
                out = list(lengths)
                for j in range(nd):
                    out[nd - 1 - j] += pads[2 * j] + pads[2 * j + 1]
                plan = (tuple(pads),)
                c_out = c_in
            elif op.kind == "up":
                mode, f = op.params
                out = [n * f for n in lengths]
                mode = "nearest" if mode == "nearest" else ("linear", "bilinear", "trilinear")[nd - 1]
                plan = (mode, f)
                c_out = c_in
            elif op.kind == "adapt":
                how, num, den = op.params
                out = [max(2, n * num // den) for n in lengths]
                plan = (how, out)
                c_out = c_in
            elif op.kind == "crop":
                starts, ends, step = op.params
                out = [len(range(starts[i], n - ends[i], step)) for i, n in enumerate(lengths)]
                plan = (starts, ends, step)
                c_out = c_in
            elif op.kind == "resize":
                mode, num, den, align = op.params
                out = [max(1, n * num // den) for n in lengths]
                mode = "nearest" if mode == "nearest" else ("linear", "bilinear", "trilinear")[nd - 1]
                plan = (mode, out, align if mode != "nearest" else None)
                c_out = c_in
            elif op.kind == "shuffle":
                (r,) = op.params
                out = [n * r for n in lengths]
                plan = (r,)
                c_out = c_in
            elif op.kind == "unshuffle":
                (r,) = op.params
                out = [n // r for n in lengths]
                plan = (r,)
                c_out = c_in * r * r
            elif op.kind in ("add", "mul", "cat", "max", "stack"):
                (align,) = op.params
                b = op.inputs[1]
                y_shape = shapes[b]
                out = [min(n, m) for n, m in zip(lengths, y_shape[2:])]
                c_out = c_in + y_shape[1] if op.kind == "cat" else (c_in if c_in == y_shape[1] else 1)
                plan = (align, out, c_out)
            else:  # pragma: no cover
                raise ValueError(op.kind)
            if any(n < 1 for n in out):
                raise ValueError(f"{op} gives an empty output at input {shape}")
            if layer is not None:
                with torch.no_grad():
                    w = torch.rand(layer.weight.shape, generator=gen) + 0.5
                    layer.weight.copy_(w / w[0].numel())
            self.layers.append(layer if layer is not None else nn.Identity())
            self.taps.append(nn.Identity())
            self.plans.append(plan)
            shapes.append((x_shape[0], c_out, *out))
        self.shapes = shapes

    def _extend(self, y: torch.Tensor, j: int, left: int, right: int) -> torch.Tensor:
        """Reads beyond spatial axis ``j``: along the measured axis 0 (1 in touch mode), along the others
        a circular extension."""
        if j == self.axis:
            return _pad_axis(y, self.nd, j, left, right, 1.0 if self.touch else 0.0)
        return _wrap_axis(y, self.nd, j, left, right)

    def forward(self, x):
        nodes = [x]
        self.outputs = []
        a = self.axis if self.reference else None
        t = a if self.touch else None
        for i, op in enumerate(self.spec.ops):
            y = nodes[op.inputs[0]]
            plan = self.plans[i]
            nd = self.nd
            if a is not None and op.kind == "conv":
                layer = self.layers[i]
                p = layer.padding[0]
                for j in range(nd):
                    y = self._extend(y, j, p, p)
                y = (F.conv1d, F.conv2d, F.conv3d)[nd - 1](y, layer.weight, None, layer.stride, 0, layer.dilation,
                                                           layer.groups)
            elif a is not None and op.kind == "convT":
                # extend the input by `ext` positions on both sides of every axis: output o + s*ext of the
                # extended input is output o of the original (o = s*i - p + d*j); keep those
                layer = self.layers[i]
                k, s, d = layer.kernel_size[0], layer.stride[0], layer.dilation[0]
                ext = (d * (k - 1) + layer.padding[0]) // s + 2
                for j in range(nd):
                    y = self._extend(y, j, ext, ext)
                y = layer(y)
                for j in range(nd):
                    y = y.narrow(2 + j, s * ext, self.shapes[i + 1][2 + j])
            elif op.kind in ("conv", "convT"):
                y = self.layers[i](y)
            elif op.kind in ("maxpool", "avgpool") and (a is not None or (op.kind == "maxpool" and self.reference)):
                k, s, p, d, ceil, out = plan
                y = _sum_pool(y, nd, k, s, p, d if op.kind == "maxpool" else 1, out,
                              self._extend if a is not None else None)
            elif op.kind == "maxpool":
                k, s, p, d, ceil, out = plan
                y = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[nd - 1](y, k, s, p, d, ceil_mode=ceil)
            elif op.kind == "avgpool":
                k, s, p, d, ceil, out = plan
                y = (F.avg_pool1d, F.avg_pool2d, F.avg_pool3d)[nd - 1](y, k, s, p, ceil_mode=ceil)
            elif op.kind == "pad":
                pads = plan[0]  # last dim first
                if a is None:
                    y = F.pad(y, list(pads))
                else:
                    for j in range(nd):
                        y = self._extend(y, j, pads[2 * (nd - 1 - j)], pads[2 * (nd - 1 - j) + 1])
            elif op.kind == "up":
                mode, f = plan
                n_in = y.shape[2 + t] if t is not None else 0
                if mode == "nearest":
                    y = F.interpolate(y, scale_factor=f, mode=mode)
                else:
                    y = F.interpolate(y, scale_factor=f, mode=mode, align_corners=False)
                    if t is not None:
                        y = _mark_clamped(y, t, n_in)
            elif op.kind == "adapt":
                how, out = plan
                if how == "max" and not self.reference:
                    y = (F.adaptive_max_pool1d, F.adaptive_max_pool2d, F.adaptive_max_pool3d)[nd - 1](y, out)
                else:
                    y = (F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d)[nd - 1](y, out)
            elif op.kind == "resize":
                mode, out, align = plan
                n_in = y.shape[2 + t] if t is not None else 0
                y = F.interpolate(y, size=out, mode=mode, align_corners=align)
                if t is not None and mode != "nearest" and not align:
                    y = _mark_clamped(y, t, n_in)
            elif op.kind == "shuffle":
                (r,) = plan
                y = F.pixel_shuffle(y.repeat(1, r * r, 1, 1), r)
            elif op.kind == "unshuffle":
                (r,) = plan
                y = F.pixel_unshuffle(y[:, :, : y.shape[2] // r * r, : y.shape[3] // r * r], r)
            elif op.kind == "crop":
                starts, ends, step = plan
                index = [slice(None), slice(None)]
                for j in range(nd):
                    index.append(slice(starts[j], y.shape[2 + j] - ends[j], step))
                y = y[tuple(index)]
            else:
                align, out, c_out = plan
                z = nodes[op.inputs[1]]
                y, z = _crop_to(y, out, align), _crop_to(z, out, align)
                if op.kind == "cat":
                    y = torch.cat([y, z], 1)
                else:
                    if c_out == 1 and self.shapes[op.inputs[0]][1] != self.shapes[op.inputs[1]][1]:
                        # mix channels rather than slice them: rfgraph's RF is the union over channels, and
                        # a channel slice after a crop of a concat over-approximates (xfail in test_trust)
                        y, z = y.sum(1, keepdim=True), z.sum(1, keepdim=True)
                    if op.kind == "add" or self.reference:  # the reference computes dependency: a sum
                        y = torch.stack([y, z]).sum(0) if op.kind == "stack" else y + z
                    elif op.kind == "mul":
                        y = y * z
                    elif op.kind == "max":
                        y = torch.maximum(y, z)
                    else:  # stack
                        y = torch.stack([y, z]).amax(0)
            y = self.taps[i](y)
            if self.reference:
                # reachability only: 0 / 1 after every op (no underflow over deep networks); the reference
                # runs in float64, where an interpolation whose exact source index is an integer still gives
                # the neighbour a weight of ~1e-17 (rounding noise, not a dependency: real weights are
                # above 1e-6 here)
                y = (y > (1e-9 if op.kind in ("up", "resize") else 0)).to(y.dtype)
                self.outputs.append(self.reduce(y) if self.reduce is not None else y)
            nodes.append(y)
        return nodes[-1]


def _crop_to(y: torch.Tensor, out: list[int], align: str) -> torch.Tensor:
    index = [slice(None), slice(None)]
    for j, m in enumerate(out):
        n = y.shape[2 + j]
        start = {"left": 0, "right": n - m, "center": (n - m) // 2}[align]
        index.append(slice(start, start + m))
    return y[tuple(index)]


# ---------------------------------------------------------------------------
# the strategy
# ---------------------------------------------------------------------------


@st.composite
def _op(draw, kind: str, nd: int, a: int, n_nodes: int, local: bool) -> Op:
    s_max = 1 if local else 3
    if kind == "conv":
        k = draw(st.integers(1, 4))
        d = draw(st.integers(1, 3)) if k > 1 else 1
        s = draw(st.integers(1, s_max))
        p = draw(st.integers(0, d * (k - 1)))
        return Op("conv", (a,), (k, s, d, p, draw(st.booleans())))
    if kind == "convT":
        k = draw(st.integers(1, 4))
        d = draw(st.integers(1, 2)) if k > 1 else 1
        s = draw(st.integers(1, s_max))
        p = draw(st.integers(0, d * (k - 1)))
        op_pad = draw(st.integers(0, max(s, d) - 1))
        return Op("convT", (a,), (k, s, d, p, op_pad))
    if kind in ("maxpool", "avgpool"):
        k = draw(st.integers(1, 4))
        s = draw(st.integers(1, s_max))
        p = draw(st.integers(0, k // 2))
        d = draw(st.integers(1, 2)) if kind == "maxpool" and k > 1 else 1
        return Op(kind, (a,), (k, s, p, d, draw(st.booleans())))
    if kind == "pad":
        return Op("pad", (a,), tuple(draw(st.integers(0, 3)) for _ in range(2 * nd)))
    if kind == "up":
        return Op("up", (a,), (draw(st.sampled_from(["nearest", "linear"])), draw(st.sampled_from([2, 3]))))
    if kind == "adapt":
        num, den = draw(st.sampled_from([(1, 2), (2, 3), (3, 4), (3, 5), (4, 5), (5, 4), (3, 2)]))
        return Op("adapt", (a,), (draw(st.sampled_from(["avg", "max"])), num, den))
    if kind == "crop":
        starts = tuple(draw(st.integers(0, 3)) for _ in range(nd))
        ends = tuple(draw(st.integers(0, 3)) for _ in range(nd))
        step = 1 if local else draw(st.sampled_from([1, 1, 2]))
        return Op("crop", (a,), (starts, ends, step))
    b = draw(st.integers(0, n_nodes - 1))
    return Op(kind, (a, b), (draw(st.sampled_from(["left", "center", "right"])),))


KINDS = ("conv", "convT", "maxpool", "avgpool", "pad", "up", "adapt", "crop", "add", "mul", "cat")


@st.composite
def net_specs(draw, nd: Optional[int] = None, max_ops: int = 6) -> NetSpec:
    """A random network; invalid programs (an empty output at the base size) are filtered out."""
    nd = draw(st.sampled_from([1, 2, 3])) if nd is None else nd
    max_ops = {1: max_ops, 2: max_ops, 3: min(max_ops, 4)}[nd]
    n_ops = draw(st.integers(1, max_ops))
    base = {1: 40, 2: 24, 3: 16}[nd]
    in_channels = draw(st.integers(1, 2))
    ops: list[Op] = []
    for i in range(n_ops):
        n_nodes = i + 1
        kind = draw(st.sampled_from(KINDS))
        if kind in ("add", "mul", "cat") and n_nodes < 2:
            kind = "conv"
        a = draw(st.integers(max(0, n_nodes - 2), n_nodes - 1))  # mostly a chain, sometimes a branch
        local = draw(st.booleans())
        ops.append(draw(_op(kind, nd, a, n_nodes, local)))
    spec = NetSpec(nd, in_channels, base, tuple(ops))
    if not valid(spec, (1, in_channels) + (base,) * nd):
        from hypothesis import assume

        assume(False)
    return spec


@st.composite
def unet_specs(draw, max_depth: int = 3) -> NetSpec:
    """A random 2-D U-Net-like network: an encoder of convs and downsamplings (strided conv, max / avg
    pooling, pixel unshuffle), a decoder of upsamplings (interpolation by integer and fractional factors,
    nearest or linear with ``align_corners`` both ways, transposed convs with holes, output padding and
    dilation, pixel shuffle), each level merged with its skip by add / mul / max / cat / stack after
    cropping both to a common size."""
    depth = draw(st.integers(1, max_depth))
    ops: list[Op] = []

    def add(op: Op) -> int:
        ops.append(op)
        return len(ops)  # node index of the op's output

    x = add(Op("conv", (0,), (draw(st.integers(1, 3)), 1, 1, draw(st.integers(0, 1)), False)))
    skips = []
    for _ in range(depth):
        k = draw(st.integers(1, 3))
        x = add(Op("conv", (x,), (k, 1, draw(st.integers(1, 2)) if k > 1 else 1, draw(st.integers(0, k - 1)),
                                  draw(st.booleans()))))
        skips.append(x)
        down = draw(st.sampled_from(["conv", "maxpool", "avgpool", "unshuffle"]))
        if down == "conv":
            x = add(Op("conv", (x,), (draw(st.integers(2, 3)), 2, 1, draw(st.integers(0, 1)), False)))
        elif down == "unshuffle":
            x = add(Op("unshuffle", (x,), (2,)))
        else:
            x = add(Op(down, (x,), (2, 2, 0, 1, draw(st.booleans()))))
    # bottleneck: a conv mixing all channels (a pixel shuffle right after a pixel unshuffle would undo it
    # exactly, which rfgraph's per-position union over channels over-approximates: test_fuzz, xfail)
    x = add(Op("conv", (x,), (draw(st.integers(1, 3)), 1, 1, 1, False)))
    for skip in reversed(skips):
        up = draw(st.sampled_from(["resize", "resize", "convT", "shuffle", "up"]))
        if up == "resize":
            num, den = draw(st.sampled_from([(2, 1), (3, 2), (5, 2), (7, 4), (2, 1), (4, 3)]))
            x = add(Op("resize", (x,), (draw(st.sampled_from(["nearest", "linear"])), num, den,
                                        draw(st.booleans()))))
        elif up == "convT":
            k = draw(st.integers(1, 4))
            s = draw(st.integers(2, 3))
            d = draw(st.integers(1, 2)) if k > 1 else 1
            x = add(Op("convT", (x,), (k, s, d, draw(st.integers(0, d * (k - 1))), draw(st.integers(0, max(s, d) - 1)))))
        elif up == "shuffle":
            x = add(Op("shuffle", (x,), (2,)))
        else:
            x = add(Op("up", (x,), (draw(st.sampled_from(["nearest", "linear"])), 2)))
        if draw(st.booleans()):
            x = add(Op("crop", (x,), ((draw(st.integers(0, 2)),) * 2, (draw(st.integers(0, 2)),) * 2, 1)))
        merge = draw(st.sampled_from(["add", "mul", "max", "cat", "stack"]))
        x = add(Op(merge, (x, skip), (draw(st.sampled_from(["left", "center", "right"])),)))
        x = add(Op("conv", (x,), (draw(st.integers(1, 3)), 1, 1, 1, False)))
    spec = NetSpec(2, draw(st.integers(1, 2)), 24 * 2 ** (depth - 1), tuple(ops))
    if not valid(spec, (1, spec.in_channels) + (spec.base,) * 2):
        from hypothesis import assume

        assume(False)
    return spec


# ---------------------------------------------------------------------------
# measurement and comparison
# ---------------------------------------------------------------------------


@dataclass
class Disagreement:
    node: int
    axis: int
    what: str
    symbolic: object
    measured: object

    def __str__(self) -> str:
        return f"node {self.node} axis {self.axis}: {self.what}: symbolic {self.symbolic}, measured {self.measured}"


@dataclass
class Report:
    disagreements: list[Disagreement] = field(default_factory=list)
    checked_units: int = 0
    nodes_checked: int = 0
    nodes_full_period: int = 0
    nodes_unknown: int = 0
    nodes_skipped: int = 0
    too_big: int = 0
    #: axes whose last node was compared
    last_checked: int = 0
    #: the measured axis' length and the number of slabs fed (of the last axis measured)
    length: int = 0
    slabs: int = 0
    #: axes measured again with thicker other axes (a disagreement there was the thin axes' doing)
    thin_retries: int = 0


#: Largest number of tensor elements (batch of slabs included) one measurement may allocate.
BUDGET = 4_000_000
#: The same for U-Nets (deep, many nodes): 32M float32 elements over all nodes, though each node keeps only its
#: reachability (slabs x units) once computed.
UNET_BUDGET = 32_000_000
UNET_THIN = 12


def valid(spec: NetSpec, shape: tuple[int, ...]) -> bool:
    """Whether torch runs the network on ``shape`` (shape-only, on the meta device)."""
    try:
        net = FuzzNet(spec, shape)
        with torch.device("meta"):
            net.to("meta")(torch.zeros(shape, device="meta"))
    except (ValueError, RuntimeError):
        return False
    return True


def _thin_size(spec: NetSpec) -> int:
    """Smallest size (from a few) at which the network is valid: the other axes are measured thin."""
    for size in (4, 6, 8, 12, 16, 24):
        if size >= spec.base:
            break
        if valid(spec, (1, spec.in_channels) + (size,) * spec.nd):
            return size
    return spec.base


def touched(spec: NetSpec, shape: tuple[int, ...], axis: int) -> list[list[bool]]:
    """Per node, per unit along ``axis``: whether the unit's computation reads anything out of range along
    ``axis`` (a padding position, a source an interpolation clamps, a transposed conv's tap beyond its
    input), at any position of the other axes and channels.

    One run of the reference network in *touch mode* on a zero input: every such out-of-range position
    holds 1 instead of 0 (out-of-range reads along the other axes stay 0), the weights are positive, so
    a unit is non-zero exactly when it reads one.  A unit that reads none is *clean*: every path into it
    reads only real positions along ``axis``, its window is the unclipped one.  Independent of rfgraph.
    """
    net = FuzzNet(spec, shape, axis=axis, touch=True).double()
    net.reduce = lambda y: y.amax(dim=[d for d in range(y.ndim) if d != 2 + axis])
    with torch.no_grad():
        net(torch.zeros(shape, dtype=torch.float64))
    return [(t > 0).tolist() for t in net.outputs]


def measure(spec: NetSpec, shape: tuple[int, ...], axis: int, seed: int = 0, slabs: Optional[range] = None):
    """Per node: ``(n_out, lo, hi)`` lists measured along ``axis`` (``None`` where nothing reaches).

    In float64.  One batch item per input coordinate of ``slabs`` (default: every coordinate): 1 on that coordinate,
    everywhere along the other axes.  ``lo`` / ``hi`` are the first / last coordinate of ``slabs`` that
    reaches the unit (clipped to ``slabs``: a unit reaching the first or last slab may read beyond)."""
    n = shape[2 + axis]
    slabs = range(n) if slabs is None else slabs
    net = FuzzNet(spec, shape, reference=True, seed=seed, axis=axis).double()
    net.reduce = lambda y: y.amax(dim=[d for d in range(1, y.ndim) if d != 2 + axis]) > 0  # (batch, n_out)
    x = torch.zeros((len(slabs),) + tuple(shape[1:]), dtype=torch.float64)
    index = [torch.arange(len(slabs)), slice(None)] + [slice(None)] * spec.nd
    index[2 + axis] = torch.tensor(list(slabs))
    x[tuple(index)] = 1.0
    with torch.no_grad():
        net(x)
    out = []
    for reach in net.outputs:
        hit = reach.any(0).tolist()
        first = reach.int().argmax(0).tolist()
        last = (len(slabs) - 1 - reach.flip(0).int().argmax(0)).tolist()
        los = [slabs[f] if h else None for f, h in zip(first, hit)]
        his = [slabs[v] if h else None for v, h in zip(last, hit)]
        out.append((reach.shape[1], los, his))
    return net, out


def _period(rec, axis: int) -> Optional[int]:
    """The period of a record's maps along ``axis`` (None: a finite table that does not repeat)."""
    periods = [m.period if isinstance(m, PAMap) else (m.periodic_fit() or (None,))[0]
               for m in (rec.lo[axis], rec.hi[axis])]
    return None if None in periods else math.lcm(*periods)


def check(spec: NetSpec, seed: int = 0, axes: Optional[list[int]] = None, budget: int = BUDGET,
          min_thin: int = 0) -> Report:
    """Symbolic vs measured, for every node, along ``axes`` (default: every spatial axis); ``budget``
    bounds the elements one measurement allocates (U-Nets need more: `UNET_BUDGET`); ``min_thin`` the
    size of the axes not measured (the smallest valid size can leave a branch that reads only padding
    there, so that the measurement misses it: U-Nets use `UNET_THIN`).

    Along the measured axis the input length grows until the last node has clean units (`touched`:
    they read nothing out of range) for a full period of its maps, and the other nodes as many as the
    length gives; the symbolic maps choose only that length and the slabs fed (the hull of the symbolic
    windows of a run of clean units per node, plus 2).  Every clean unit whose symbolic window lies inside
    the slabs fed (or is empty) is compared: a measured window reaching the first or last slab fed is then a
    disagreement (the unit reads at least that far), and so is a smaller one."""
    report = Report()
    nd = spec.nd
    max_size = {1: 2000, 2: 1000, 3: 300}[nd]
    thin = max(_thin_size(spec), min_thin)
    for axis in range(nd) if axes is None else axes:
        result = _check_axis(spec, seed, axis, budget, thin, max_size)
        # A disagreement that a thicker input makes vanish was the thin axes' doing: a crop there can keep
        # only a transposed conv's holes (no position of the tensor reads anything, while rfgraph's fields,
        # one per axis, describe each axis on its own).  Fields along the measured axis do not depend on the
        # other axes' lengths (every op acts on each axis separately), so the thicker measurement decides.
        size = thin
        while result is not None and result.disagreements and size < 4 * thin:
            size *= 2
            retry = _check_axis(spec, seed, axis, budget, size, max_size)
            if retry is None:
                break
            report.thin_retries += 1
            result = retry
        if result is None:
            report.too_big += 1
            continue
        report.disagreements += result.disagreements
        report.checked_units += result.units
        report.nodes_checked += result.nodes
        report.nodes_full_period += result.full
        report.nodes_unknown += result.unknown
        report.nodes_skipped += result.skipped
        report.last_checked += result.last
        report.length = result.length
        report.slabs = result.slabs
    return report


def _check_axis(spec: NetSpec, seed: int, axis: int, budget: int, thin: int, max_size: int) -> Optional[_Axis]:
    """`check` along one axis, the others ``thin``; None when the measurement would exceed ``budget``."""
    import rfgraph

    base_shape = (1, spec.in_channels) + (thin,) * spec.nd
    last = len(spec.ops) - 1

    def shape_at(n: int, axis: int = axis) -> tuple[int, ...]:
        shape = list(base_shape)
        shape[2 + axis] = n
        return tuple(shape)

    # the length: grow (by 3/2) until the last node has 3 clean units and no node gains clean units
    n, best, clean = spec.base, -1, None
    while True:
        if valid(spec, shape_at(n)):
            clean = [[not t for t in node] for node in touched(spec, shape_at(n), axis)]
            counts = [sum(c) for c in clean]
            have = sum(min(c, 3) for c in counts)
            if (counts[last] >= 3 and have <= best) or have == 3 * len(counts) or n >= max_size:
                break
            best = max(best, have)
        elif n >= max_size:
            break
        n = min(max_size, n * 3 // 2)
    if clean is None:
        return None
    for attempt in range(5):  # then a full period of the last node's maps (as long as n allows)
        shape = shape_at(n)
        analysis = rfgraph.analyze(FuzzNet(spec, shape, seed=seed), shape)
        rec = analysis[f"taps.{last}"]
        if rec.source == "unknown" or rec.lo[axis] is None or n >= max_size or attempt == 4:
            break
        runs = _runs(clean[last])
        if runs and len(max(runs, key=len)) >= min((_period(rec, axis) or 8) + 2, 66):
            break
        bigger = min(max_size, n * 3 // 2)
        if not valid(spec, shape_at(bigger)):
            break
        n = bigger
        clean = [[not t for t in node] for node in touched(spec, shape_at(n), axis)]
    # the slabs: the hull of the symbolic windows of a run of clean units per node (period + 2 units,
    # 8 at least, centred in the node's longest clean run)
    lo_fed, hi_fed = None, None
    records = [analysis[f"taps.{i}"] for i in range(len(spec.ops))]
    for i, rec in enumerate(records):
        runs = _runs(clean[i])
        if rec.source == "unknown" or rec.lo[axis] is None or not runs:
            continue
        run = max(runs, key=len)
        want = min(max((_period(rec, axis) or 8) + 2, 8), 66)
        mid = (run[0] + run[-1]) // 2
        first = max(run[0], min(mid - want // 2, run[-1] + 1 - want))
        for u in range(first, min(run[-1], first + want - 1) + 1):
            lo, hi = rec.lo[axis](u), rec.hi[axis](u)
            if lo is not None:
                lo_fed = lo if lo_fed is None else min(lo_fed, lo)
                hi_fed = hi if hi_fed is None else max(hi_fed, hi)
    if lo_fed is None:
        return None
    slabs = range(max(0, lo_fed - 2), min(n, hi_fed + 3))
    if len(slabs) * sum(math.prod(s) for s in FuzzNet(spec, shape).shapes) > budget:
        return None
    net, measured = measure(spec, shape, axis, seed, slabs)
    result = _compare(records, measured, clean, axis, slabs, n)
    result.length, result.slabs = n, len(slabs)
    return result


def _runs(flags: list[bool]) -> list[range]:
    """The maximal runs of consecutive True flags, as ranges."""
    runs, start = [], None
    for u, f in enumerate(flags + [False]):
        if f and start is None:
            start = u
        elif not f and start is not None:
            runs.append(range(start, u))
            start = None
    return runs


@dataclass
class _Axis:
    disagreements: list[Disagreement] = field(default_factory=list)
    units: int = 0
    nodes: int = 0
    full: int = 0
    unknown: int = 0
    skipped: int = 0
    last: int = 0
    length: int = 0
    slabs: int = 0


def _compare(records, measured, clean, axis, slabs: range, n: int) -> _Axis:
    res = _Axis()
    first_fed, last_fed = slabs[0], slabs[-1]

    def inside(lo, hi) -> bool:  # a window the slabs fed measure unclipped
        return (lo > first_fed or first_fed == 0) and (hi < last_fed or last_fed == n - 1)

    for i, ((n_out, los, his), rec) in enumerate(zip(measured, records)):
        if rec.source == "unknown":
            res.unknown += 1
            continue
        lo_map, hi_map = rec.lo[axis], rec.hi[axis]
        if lo_map is None or rec.dims[axis] is None:
            res.disagreements.append(Disagreement(i + 1, axis, "no field", rec.source, "local"))
            continue
        if rec.shape[rec.dims[axis]] != n_out:
            res.disagreements.append(Disagreement(i + 1, axis, "length", rec.shape[rec.dims[axis]], n_out))
            continue
        compared = []
        for u in range(n_out):
            if not clean[i][u]:
                continue
            sym = (lo_map(u), hi_map(u))
            # a gap (a transposed conv's output reached by no tap) reads nothing: an empty window (None)
            num = None if los[u] is None else (los[u], his[u])
            if sym[0] is not None and not inside(*sym):
                # the slabs fed may miss part of this unit's window (a measured hull that stops inside the
                # slabs is no proof: a dilated window jumps over the last slab fed)
                continue
            compared.append(u)
            if sym != (num or (None, None)):
                res.disagreements.append(Disagreement(i + 1, axis, f"unit {u} window", sym, num))
        if not compared:
            res.skipped += 1
            continue
        res.nodes += 1
        res.units += len(compared)
        res.last += i == len(records) - 1
        period = _period(rec, axis)
        if period is None or not rec.stride_regular[axis]:
            # finite maps with no period, or lo and hi of different slopes (widths that grow along the
            # domain: rf is the largest over all units): every unit's window was compared above
            continue
        runs = _runs([u in set(compared) for u in range(n_out)])
        units = max(runs, key=len)
        if len(units) < period + 1:
            continue
        res.full += 1
        # rf, stride, start from the measured values over one full period (plus one)
        u0 = units[0]
        widths = [his[u] - los[u] + 1 for u in range(u0, u0 + period) if los[u] is not None]
        rf = max(widths) if widths else 0
        pairs = [u for u in units if u + period in units and los[u] is not None and los[u + period] is not None]
        if not pairs:
            continue
        advance = los[pairs[0] + period] - los[pairs[0]]
        stride = Fraction(advance, period)
        # lo is periodic-affine: lo(0) = lo(q * period) - q * advance
        zero = next((u for u in units if u % period == 0 and los[u] is not None), None)
        start = None if zero is None else los[zero] - (zero // period) * advance
        for what, sym, num in (("rf", rec.rf[axis], rf), ("stride", rec.stride[axis], stride),
                               ("start", rec.start[axis], start)):
            if num is not None and sym != num:
                res.disagreements.append(Disagreement(i + 1, axis, what, sym, num))
    return res
