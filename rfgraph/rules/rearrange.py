"""Rearrangements along spatial dims: flip, roll, select, and concat along a spatial dim.

``flip`` reverses positions: the map from output to input index is
decreasing, not a window map, so along a dim that carries a local field it is
handed to the fallback (which marks the node unknown, or probes it) -- never
guessed.  ``roll`` of a dim holding a whole axis is a cyclic relabelling of its
positions (`rfgraph.values.SymTensor.roll`): window ops refuse the rolled dim,
a window partition and attention follow it exactly (shifted windows), and
rolling back restores the axis.  Along channel dims, global dims, or with a
shift that is a multiple of the length both are exact identities.  A
concat along a spatial dim is exact when the pieces continue each other
(``cat(split(x))``: piece ``i``'s map shifted by the lengths before it equals
the first piece's map); otherwise it is piecewise and goes to the fallback.
"""

from __future__ import annotations

import math
from typing import Any

from ..algebra import PAMap
from ..errors import RuleError
from ..values import Axis, SymTensor, merge_tensors
from .call import OpCall, dims_arg, hand_over

__all__ = ["flip_rule", "roll_rule", "select_rule", "spatial_cat"]


def _local_axis(x: SymTensor, d: int) -> bool:
    """Whether dim ``d`` carries spatial positions that are not all global."""
    tag = x.tags[d]
    return tag is not None and x.shape[d] > 1 and any(not f.is_global for _, f in tag.items())


def flip_rule(call: OpCall) -> SymTensor:
    """``torch.flip(x, dims)``: identity unless a flipped dim holds local spatial positions."""
    x = call.args[0]
    dims = dims_arg(call.arg(1, "dims"), x.ndim)
    flipped = [d for d in dims if _local_axis(x, d)]
    if flipped:
        return hand_over(call, x, f"flip reverses the positions of spatial dim {flipped[0]} (a decreasing map); "
                                   "no exact rule")
    return _moves_pieces(x, dims)


def roll_rule(call: OpCall) -> SymTensor:
    """``torch.roll(x, shifts, dims)``: identity unless it wraps local spatial positions around."""
    x = call.args[0]
    shifts = call.arg(1, "shifts")
    dims = call.arg(2, "dims", None)
    if dims is None or (isinstance(dims, (list, tuple)) and len(dims) == 0):
        # roll of the flattened tensor: every position can move to any dim
        if any(_local_axis(x, d) for d in range(x.ndim)) and int(_as_list(shifts)[0]) % max(1, math.prod(x.shape)):
            return hand_over(call, x, "roll of the flattened tensor moves spatial positions; no exact rule")
        return _moves_pieces(x, range(x.ndim))
    out = x
    for d, s in zip(dims_arg(dims, x.ndim), _as_list(shifts)):
        if _local_axis(out, d) and int(s) % out.shape[d]:
            rolled = out.roll(d, int(s))
            if rolled is None:
                return hand_over(call, x, f"roll by {int(s)} wraps the positions of spatial dim {d} around "
                                           "and the dim holds only part of an axis; no exact rule")
            out = rolled
    return _moves_pieces(out, dims_arg(dims, x.ndim))


def _moves_pieces(x: SymTensor, dims) -> SymTensor:
    """``x`` after a flip / roll along ``dims``: channels of concat pieces along one of them move, so
    a slice no longer picks one operand's channels (the fields are kept, the pieces are not)."""
    if x.parts is not None and x.parts[0] in set(dims):
        return x.like()
    return x


def _as_list(v: Any) -> list:
    return list(v) if isinstance(v, (list, tuple)) else [v]


def select_rule(call: OpCall) -> SymTensor:
    """``x.select(dim, i)`` / ``aten.select.int``: one position along ``dim``, dim dropped."""
    x = call.args[0]
    dim = dims_arg(call.arg(1, "dim"), x.ndim)[0]
    i = int(call.arg(2, "index"))
    n = x.shape[dim]
    if not -n <= i < n:
        raise RuleError(f"{call.describe()} at node {call.name!r}: index {i} out of range for size {n}")
    i = i + n if i < 0 else i
    if x.parts is not None and x.parts[0] == dim:  # one operand of a stack / concat back: its own field
        for a, b, piece in x.parts[1]:
            if a <= i < b:
                return piece.index(dim, i - a)
    return x.index(dim, i)


def spatial_cat(call: OpCall, tensors: list[SymTensor], dim: int) -> SymTensor:
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
        return hand_over(call, tensors[0], reason, shape=tuple(shape))
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


