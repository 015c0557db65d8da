"""Shared helpers of the core tests: run an analysis and cross-check it against torch.

* `check` analyses a model and asserts that every tensor node's shape equals
  the shape torch computes on a real tensor (an `fx.Interpreter` run of the
  same graph).
* `numeric_window` measures, by back-propagation, which input positions along
  one axis can change one output unit (float64, positive random weights): the
  numeric side of symbolic-vs-numeric agreement tests.
"""

from __future__ import annotations

import copy
from typing import Optional

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

import rfgraph
from rfgraph.results import Analysis, NodeRF

__all__ = ["check", "torch_shapes", "numeric_window", "assert_windows_match", "last"]


def torch_shapes(analysis: Analysis, x: torch.Tensor) -> dict[str, tuple[int, ...]]:
    """Shape of every tensor-valued fx node when the traced graph runs on ``x``."""
    shapes: dict[str, tuple[int, ...]] = {}

    class Recorder(fx.Interpreter):
        def run_node(self, n):
            out = super().run_node(n)
            if isinstance(out, torch.Tensor):
                shapes[n.name] = tuple(out.shape)
            return out

    with torch.no_grad():
        Recorder(analysis.graph_module).run(x)
    return shapes


def check(model: nn.Module, input_shape: tuple[int, ...], **kwargs) -> Analysis:
    """Analyse ``model`` and assert every node's shape equals torch's on a real input."""
    model.eval()
    analysis = rfgraph.analyze(model, input_shape, **kwargs)
    real = torch_shapes(analysis, torch.rand(input_shape))
    compared = 0
    for r in analysis:
        if r.fx_name in real and r.op != "output":
            assert r.shape == real[r.fx_name], f"node {r.name}: rfgraph shape {r.shape}, torch {real[r.fx_name]}"
            compared += 1
    assert compared >= 1
    return analysis


def last(analysis: Analysis) -> NodeRF:
    """The record of the node feeding the graph's output."""
    return analysis[analysis.nodes[-2]] if analysis.nodes[-1] == "output" else analysis[analysis.nodes[-1]]


def _positive(model: nn.Module) -> nn.Module:
    """``model`` (a copy: the caller's is left alone) in float64 with positive random weights."""
    model = model.double().eval()
    model._rfcheck_positive = True
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.rand(p.shape, generator=g, dtype=p.dtype) + 0.5)
    return model


def numeric_window(
    model: nn.Module, input_shape: tuple[int, ...], axis: int, unit: int
) -> Optional[tuple[int, int]]:
    """Extent ``(first, last)`` along input ``axis`` of the input positions that change output ``unit``.

    The output unit is ``unit`` along ``axis`` and the middle index along the
    other spatial axes, summed over channels.  ``None`` when no position does.
    Gradients below 1e-9 of the largest count as zero (rounding noise).
    Weights are set to positive random values (float64) so that nothing cancels.
    """
    if not getattr(model, "_rfcheck_positive", False):
        model = _positive(copy.deepcopy(model))
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(input_shape, generator=g, dtype=torch.float64) + 0.5).requires_grad_(True)
    out = model(x)
    index: list = [0, slice(None)]
    for k in range(out.ndim - 2):
        index.append(unit if k == axis else out.shape[2 + k] // 2)
    out[tuple(index)].sum().backward()
    grad = x.grad.abs()
    other = [d for d in range(grad.ndim) if d != 2 + axis]
    per_position = grad.sum(dim=other)
    # rounding noise is not a dependency: torch's linear interpolation gives a weight of ~1e-17 (float64)
    # to the second pixel where the exact source index is an integer
    hit = per_position > 1e-9 * per_position.max()
    where = torch.nonzero(hit).flatten().tolist()
    return (where[0], where[-1]) if where else None


def assert_windows_match(
    model: nn.Module,
    input_shape: tuple[int, ...],
    record: NodeRF,
    axis: int,
    interior_only: bool = False,
    margin: int = 0,
    skip=None,
) -> int:
    """Symbolic window of every output unit along ``axis`` (clipped to the input) equals the numeric one.

    ``interior_only`` restricts the check to units whose window lies inside the
    input (for border modes such as reflect padding, where the unclipped window
    clipped to the input is not what the border units read).  ``margin`` keeps
    only units whose window stays that far from both borders (needed when an
    intermediate tensor is shifted or cropped: its own border then cuts the
    unclipped window inside the input).  ``skip(u)`` true leaves unit ``u`` out.
    Returns how many units were compared.
    """
    model = _positive(copy.deepcopy(model))
    n_in = input_shape[2 + axis]
    n_out = record.shape[record.dims[axis]]
    lo, hi = record.lo[axis], record.hi[axis]
    compared = 0
    for u in range(n_out):
        a, b = lo(u), hi(u)  # None: the unit reads nothing (a finite map's empty window)
        if (interior_only or margin) and a is not None and (a < margin or b >= n_in - margin):
            continue
        if skip is not None and skip(u):
            continue
        expected = None if a is None else (max(a, 0), min(b, n_in - 1))
        if expected is not None and expected[0] > expected[1]:
            expected = None
        got = numeric_window(model, input_shape, axis, u)
        assert got == expected, f"axis {axis} unit {u}: symbolic {expected} (unclipped {a}..{b}), numeric {got}"
        compared += 1
    assert compared >= 1
    return compared


class Lambda(nn.Module):
    """A module whose forward is a plain function (traced by fx)."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def summary(r: NodeRF, axis: int = 0) -> tuple:
    """(rf, rf_min, stride, start) of one axis."""
    return r.rf[axis], r.rf_min[axis], r.stride[axis], r.start[axis]


class CatThen(nn.Module):
    """``fn(cat([conv1x1(x), conv7x7(x)], 1))`` on ``(1, 2, H, W)``: channels ``[0, near)`` read rf 1,
    ``[near, near + far)`` rf 7 (the concat pieces' fixture)."""

    def __init__(self, fn, near: int = 2, far: int = 2):
        super().__init__()
        self.near, self.far, self.fn = nn.Conv2d(2, near, 1), nn.Conv2d(2, far, 7, padding=3), fn

    def forward(self, x):
        return self.fn(torch.cat([self.near(x), self.far(x)], 1))


class ShiftedWindows1d(nn.Module):
    """conv k=3 p=1 over 16 positions, rolled by -2, windows of 4, attention with Swin's mask (``fill`` between
    the two regions of the wrapped window: rolled positions 12, 13 hold 14, 15 and rolled 14, 15 hold 0, 1),
    windows put back, rolled by +2.  ``how`` spells the mask: ``"add"`` (hand-written attention, the mask
    added to the scores), ``"fill"`` (``masked_fill`` of the scores with ``fill``), ``"sdpa"``
    (``F.scaled_dot_product_attention`` with the mask as ``attn_mask``)."""

    def __init__(self, fill: float = -100.0, how: str = "add"):
        super().__init__()
        self.conv = nn.Conv1d(1, 4, 3, padding=1)
        self.qkv = nn.Linear(4, 12)
        self.how = how
        region = torch.tensor([0] * 12 + [1] * 2 + [2] * 2).view(4, 4)  # per rolled window, per position
        apart = region.unsqueeze(1) != region.unsqueeze(2)  # (windows, query, key)
        self.register_buffer("apart", apart)
        self.register_buffer("mask", apart.float() * fill)
        self.fill = fill

    def forward(self, x):
        b, _, n = x.shape
        t = torch.roll(self.conv(x).transpose(1, 2), -2, 1)  # (B, 16, C)
        q, k, v = self.qkv(t.reshape(b, n // 4, 4, 4)).chunk(3, -1)  # (B, windows, 4, C): 4 windows only
        if self.how == "sdpa":
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=self.mask)
        else:
            scores = (q * 1e-3) @ k.transpose(-2, -1)
            scores = scores + self.mask if self.how == "add" else scores.masked_fill(self.apart, self.fill)
            y = scores.softmax(-1) @ v
        return torch.roll(y.reshape(b, n, 4), 2, 1).transpose(1, 2)
