"""Constants derived from shapes: they carry no receptive field and never stop the analysis.

A tensor built from another tensor's shape or dtype only (``zeros_like``,
``x.new_zeros(...)``, ``torch.arange(w).type_as(x)``, a ``meshgrid`` of
such grids -- the anchor grid of a YOLO detection head) reads no input
position.  Its value is a *nonspatial constant*: a `SymTensor` with no field
(reported with ``source="nonspatial"``), or, when the op's own operand is a
constant tensor of the model, that constant itself.  Merged into a feature
map later (``anchors - box``) it adds nothing to the field.

`constant_like_rule` serves ops whose *values* ignore their tensor arguments
(only shape, dtype and device are read); `type_as_rule` serves
``a.type_as(b)``, which reads the values of ``a`` and only the dtype of ``b``.
Ops of any kind whose tensor arguments are all constants give constants too;
the pass (`rfgraph.passes`) does that for ops without a rule.
"""

from __future__ import annotations

import torch

from ..values import SymTensor, collect
from .call import OpCall, run_for_shape

__all__ = ["constant_like_rule", "type_as_rule", "CONSTANT_LIKE_FUNCTIONS", "CONSTANT_LIKE_METHODS"]

#: ``torch.<name>(x, ...)``: a new tensor shaped (and typed) like ``x``; its values do not read ``x``.
CONSTANT_LIKE_FUNCTIONS: tuple[str, ...] = (
    "zeros_like", "ones_like", "full_like", "empty_like", "rand_like", "randn_like", "randint_like",
)
#: ``x.<name>(...)``: a new tensor (shape from the arguments, dtype / device from ``x``), or ``x``
#: overwritten in place (``zero_``, ``fill_`` with a number, ``normal_``, ``uniform_``): no value of ``x``
#: is read.
CONSTANT_LIKE_METHODS: tuple[str, ...] = (
    "new_zeros", "new_ones", "new_full", "new_empty", "new_tensor", "zero_", "fill_", "normal_",
    "uniform_",
)


def constant_like_rule(call: OpCall) -> SymTensor:
    """An op whose output values read no value of its tensor arguments: a field-free constant of the
    output's shape (``zeros_like(x)``, ``x.new_ones(n)``, ``x.zero_()``)."""
    x = next(iter(call.sym_args()), None)
    fill = call.arg(1, "value", None) if call.target == "fill_" else None
    if isinstance(fill, SymTensor):  # x.fill_(t) with a 0-d tensor read from the input: t's field
        return SymTensor(x.shape, x.dtype, pinned=_pinned(fill), unknown=fill.unknown,
                         global_context=fill.global_context)
    out = [SymTensor(tuple(t.shape), t.dtype) for t in collect(run_for_shape(call), torch.Tensor)]
    return out[0]


def _pinned(t: SymTensor) -> dict:
    out = dict(t.pinned)
    for k, fs in t.axis_fields().items():
        for f in fs:
            out[k] = out[k].merge(f) if k in out else f
    return out


def type_as_rule(call: OpCall):
    """``a.type_as(b)``: the values of ``a`` with the dtype of ``b`` (``b``'s values are not read).

    With ``a`` a constant (``torch.arange(w).type_as(feature)``, the anchor grid of a detection head)
    the result is that constant, converted, whatever ``b`` holds.
    """
    a, b = call.arg(0, "self"), call.arg(1, "other")
    dtype = b.dtype
    if isinstance(a, SymTensor):
        return a.with_dtype(dtype)
    return a.to(dtype)
