"""Pointwise ops: output position ``u`` reads position ``u`` of its operands.

* `identity_rule`: the output *is* the input as far as fields go (activations,
  eval-mode batch norm, dropout); concat pieces survive it.
* `channel_mixing_rule`: position by position, but each output channel reads
  several input channels (channel shuffle, local response norm, a norm over
  channels): the spatial field is kept, the concat pieces are not.
* `merge_rule`: elementwise ops of several operands (add, mul, where...):
  broadcast, then the pointwise min / max of the fields.
* `glu_rule`, `normalize_rule`: ops that are pointwise or not depending on the
  dim they act along.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..algebra import PAMap
from ..errors import RuleError
from ..values import SymTensor, merge_tensors
from .call import OpCall, as_operand, hand_over, norm_dim, tensor_arg
from .shapes import apply_index

__all__ = [
    "mix_channels",
    "identity_rule",
    "channel_mixing_rule",
    "dtype_rule",
    "merge_rule",
    "merged_parts",
    "copy_rule",
    "glu_rule",
    "normalize_rule",
    "local_response_norm_rule",
]


def mix_channels(x: SymTensor, dim: int) -> SymTensor:
    """``x`` after an op that mixes the positions of non-spatial dim ``dim`` (each output channel reads
    several input channels): the fields are kept, but concat pieces along ``dim`` no longer line up
    with their operand's channels."""
    if x.parts is not None and x.parts[0] == dim:
        return x.like()
    return x


def channel_mixing_rule(call: OpCall) -> SymTensor:
    """Position by position across channels (dim 1): ``nn.ChannelShuffle``, ``torch.channel_shuffle``.

    Channel ``c`` of the output reads other channels of the same position, so
    a slice of channels after it sees the union of the channels' fields.
    """
    x = tensor_arg(call)
    if x.tags[1] is not None:  # dim 1 holds spatial positions: moving them is no window map
        return hand_over(call, x, "mixes the positions of a spatial dim as channels; no exact rule")
    return mix_channels(x, 1)


def local_response_norm_rule(call: OpCall) -> SymTensor:
    """``nn.LocalResponseNorm`` / ``F.local_response_norm``: a window over neighbouring channels (dim 1)."""
    return channel_mixing_rule(call)


def normalize_rule(call: OpCall) -> SymTensor:
    """``F.normalize(x, p, dim=1)``: ``x / ||x||`` along ``dim``.

    Along channels it mixes channels (fields kept, concat pieces dropped).  Along
    a spatial dim the norm is a statistic of the whole dim scaling each position:
    the local field is kept and the result has a global context path, as for a
    layer norm over tokens.
    """
    x = tensor_arg(call)
    dim = norm_dim(call.arg(2, "dim", 1), x.ndim)
    if x.tags[dim] is None:
        return mix_channels(x, dim)
    if x.shape[dim] == 1:
        return x
    out = x.like()
    out.global_context = True
    return out


def glu_rule(call: OpCall) -> SymTensor:
    """``nn.GLU(dim)`` / ``F.glu(x, dim=-1)``: ``a * sigmoid(b)`` with ``a, b`` the halves of ``dim``.

    Output index ``u`` along ``dim`` (length ``n/2``) reads ``u`` and ``u + n/2``.
    Along a channel dim that is channel mixing.  Along a spatial dim it is a
    dilated window: ``L(u) = u``, ``H(u) = u + n/2``, reading only those two taps
    (exact).
    """
    x = tensor_arg(call)
    dim = call.module.dim if call.module is not None else call.arg(1, "dim", -1)
    dim = norm_dim(dim, x.ndim)
    n = x.shape[dim]
    if n % 2:
        raise RuleError(f"{call.describe()} at node {call.name!r}: GLU halves dim {dim} of odd size {n}")
    half = n // 2
    if x.tags[dim] is None:
        shape = list(x.shape)
        shape[dim] = half
        return x.like(shape=shape)
    return x.windows({dim: (PAMap.identity(), PAMap.affine(1, half), half, half)}, call.describe())


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
    return x.with_dtype(dtype) if dtype is not None else x


def merge_rule(call: OpCall) -> SymTensor:
    """Elementwise op of several operands (add, mul, where, ...): broadcast, then pointwise min/max."""
    operands = [o for o in (as_operand(v) for v in list(call.args) + list(call.kwargs.values())) if o is not None]
    shape = tuple(torch.broadcast_shapes(*[o.shape for o in operands]))
    out, info = merge_tensors(operands, shape, call.describe())
    call.note_merge(info)
    dtype = next((o.dtype for o in operands if o.dtype.is_floating_point), operands[0].dtype)
    out.dtype = dtype
    if not out.unknown:
        out.parts = merged_parts(call, operands, shape)
    return out


def copy_rule(call: OpCall) -> SymTensor:
    """``x.copy_(src)``: ``x`` overwritten with ``src`` broadcast to its shape: reads ``src`` only."""
    x, src = call.args[0], as_operand(call.arg(1, "src"))
    if src.shape == x.shape:
        return src.with_dtype(x.dtype)
    out, _ = merge_tensors([src], x.shape, call.describe())
    out.dtype = x.dtype
    return out


def merged_parts(call: OpCall, operands: Sequence[SymTensor], shape: tuple[int, ...]):
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
            sliced.append(apply_index(call, o, tuple(index)))
        piece_shape = tuple(b - a if d == dim else n for d, n in enumerate(shape))
        piece, _ = merge_tensors(sliced, piece_shape, call.describe())
        if piece.unknown:
            return None
        pieces.append((a, b, piece))
    return dim, tuple(pieces)


