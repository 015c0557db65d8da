"""Shape ops: reshape, view, flatten, permute, squeeze, expand, indexing, split, cat, stack.

They move, group or select dims without reading neighbouring positions:
reshapes relabel dims (`rfgraph.values.SymTensor.reshape` tracks flattened
axes), slices are windows ``L(u) = H(u) = start + step*u``, a channel concat
is a merge that keeps each operand's channels apart (``parts``), so slicing
an operand back out recovers its own field.  Plus the shape queries
(``x.shape``, ``x.size()``, ``x.dim()``) that drive the model's arithmetic.
"""

from __future__ import annotations

import math
import operator
from typing import Any, Optional, Sequence

import torch

from ..algebra import FiniteMap, PAMap
from ..errors import RuleError
from ..values import Axis, SymTensor, merge_tensors
from .call import OpCall, as_operand, as_tuple, norm_dim, run_for_shape, tensor_arg
from .rearrange import spatial_cat

__all__ = [
    "apply_index",
    "cat_rule",
    "stack_rule",
    "reshape_rule",
    "view_as_rule",
    "flatten_rule",
    "unflatten_rule",
    "permute_rule",
    "transpose_rule",
    "t_rule",
    "squeeze_rule",
    "unsqueeze_rule",
    "expand_rule",
    "repeat_interleave_rule",
    "expand_as_rule",
    "repeat_rule",
    "getattr_rule",
    "size_rule",
    "dim_rule",
    "numel_rule",
    "getitem_rule",
    "narrow_rule",
    "split_rule",
    "chunk_rule",
    "tensor_split_rule",
    "unbind_rule",
    "embedding_rule",
]


def cat_rule(call: OpCall) -> SymTensor:
    tensors = [as_operand(t) for t in call.arg(0, "tensors")]
    dim = norm_dim(call.arg(1, "dim", 0), tensors[0].ndim)
    shape = list(tensors[0].shape)
    if any(isinstance(t.tags[dim], Axis) for t in tensors):
        return spatial_cat(call, tensors, dim)  # concat along a spatial dim: exact or handed to the fallback
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
            return apply_index(call, piece, tuple(local))
    if x.tags[dim] is not None:  # tokens (a class token in front): the windows of the Cat tag handle it
        return None
    # channels straddling several pieces: the concat of their overlaps (the union of those pieces only)
    subs = []
    for a, b, piece in parts:
        if a < hi and lo < b:
            local = list(expanded)
            local[position] = slice(max(lo, a) - a, min(hi, b) - a)
            subs.append(apply_index(call, piece, tuple(local)))
    out_dim = sum(1 for i in expanded[:position] if not isinstance(i, int))
    shape = list(subs[0].shape)
    shape[out_dim] = hi - lo
    out, _ = merge_tensors(subs, shape, call.describe(), concat_dim=out_dim)
    if out.unknown or any(sub.unknown for sub in subs):
        return None
    out.parts = (out_dim, _concat_parts(subs, out_dim))
    return out


def stack_rule(call: OpCall) -> SymTensor:
    tensors = [as_operand(t) for t in call.arg(0, "tensors")]
    dim = norm_dim(call.arg(1, "dim", 0), tensors[0].ndim + 1)
    expanded = [_unsqueeze(t, dim) for t in tensors]
    shape = list(expanded[0].shape)
    shape[dim] = len(tensors)
    out, info = merge_tensors(expanded, shape, call.describe(), concat_dim=dim)
    call.note_merge(info)
    if not out.unknown:  # stack = concat of the operands with a new size-1 dim: indexing one back is exact
        out.parts = (dim, _concat_parts(expanded, dim))
    return out


def _shape_args(call: OpCall, start: int = 1) -> tuple[int, ...]:
    rest = call.args[start:]
    if len(rest) == 1 and isinstance(rest[0], (list, tuple, torch.Size)):
        rest = tuple(rest[0])
    if not rest:
        rest = tuple(call.kwargs.get("shape", call.kwargs.get("size", ())))
    return tuple(int(s) for s in rest)


def reshape_rule(call: OpCall) -> SymTensor:
    return tensor_arg(call).reshape(_shape_args(call))


def view_as_rule(call: OpCall) -> SymTensor:
    other = call.arg(1, "other")
    return tensor_arg(call).reshape(other.shape)


def flatten_rule(call: OpCall) -> SymTensor:
    x = tensor_arg(call)
    if call.module is not None:
        start, end = call.module.start_dim, call.module.end_dim
    else:
        start, end = call.arg(1, "start_dim", 0), call.arg(2, "end_dim", -1)
    if x.ndim == 0:
        return x.reshape((1,))
    start, end = norm_dim(start, x.ndim), norm_dim(end, x.ndim)
    shape = x.shape[:start] + (math.prod(x.shape[start : end + 1]),) + x.shape[end + 1 :]
    return x.reshape(shape)


def unflatten_rule(call: OpCall) -> SymTensor:
    x = tensor_arg(call)
    if call.module is not None:
        dim, sizes = call.module.dim, call.module.unflattened_size
    else:
        dim, sizes = call.arg(1, "dim"), call.arg(2, "sizes")
    dim = norm_dim(dim, x.ndim)
    sizes = list(sizes)
    if -1 in sizes:
        known = math.prod(s for s in sizes if s != -1)
        sizes[sizes.index(-1)] = x.shape[dim] // known
    return x.reshape(x.shape[:dim] + tuple(sizes) + x.shape[dim + 1 :])


def permute_rule(call: OpCall) -> SymTensor:
    x = tensor_arg(call)
    if call.module is not None:  # torchvision.ops.misc.Permute is traced through; kept for user modules
        order = call.module.dims
    else:
        order = _shape_args(call) if isinstance(call.target, str) else tuple(call.arg(1, "dims"))
    return x.permute([norm_dim(d, x.ndim) for d in order])


def transpose_rule(call: OpCall) -> SymTensor:
    x = tensor_arg(call)
    a, b = norm_dim(call.arg(1, "dim0"), x.ndim), norm_dim(call.arg(2, "dim1"), x.ndim)
    order = list(range(x.ndim))
    order[a], order[b] = order[b], order[a]
    return x.permute(order)


def t_rule(call: OpCall) -> SymTensor:
    x = tensor_arg(call)
    return x.permute(list(range(x.ndim))[::-1])


def squeeze_rule(call: OpCall) -> SymTensor:
    x = tensor_arg(call)
    dim = call.arg(1, "dim", None)
    dims = range(x.ndim) if dim is None else [norm_dim(d, x.ndim) for d in as_tuple(dim, 1)]
    shape = tuple(s for d, s in enumerate(x.shape) if not (d in dims and s == 1))
    return x.reshape(shape)


def unsqueeze_rule(call: OpCall) -> SymTensor:
    x = tensor_arg(call)
    return _unsqueeze(x, norm_dim(call.arg(1, "dim"), x.ndim + 1))


def _unsqueeze(x: SymTensor, dim: int) -> SymTensor:
    """``x.unsqueeze(dim)``: every dim keeps its tag, a size-1 spatial dim included (a general reshape
    cannot tell which of several size-1 dims is which, and pins the axis of a size-1 one: its positions,
    which later ops may still resample or pad, would be lost)."""
    if x.unknown:
        return x.reshape(x.shape[:dim] + (1,) + x.shape[dim:])
    out = x.like(shape=x.shape[:dim] + (1,) + x.shape[dim:], tags=tuple(x.tags[:dim]) + (None,) + tuple(x.tags[dim:]))
    if x.parts is not None:  # the concat dim moves up by one when the new dim comes before it
        d, parts = x.parts
        out.parts = (d + (dim <= d), tuple((a, b, _unsqueeze(piece, dim)) for a, b, piece in parts))
    return out


def expand_rule(call: OpCall) -> SymTensor:
    x = tensor_arg(call)
    sizes = _shape_args(call)
    lead = len(sizes) - x.ndim
    shape = tuple(x.shape[i - lead] if s == -1 else s for i, s in enumerate(sizes))
    base = x.reshape((1,) * lead + x.shape) if lead else x
    out, _ = merge_tensors([base], shape, call.describe())
    return out


def expand_as_rule(call: OpCall) -> SymTensor:
    x = tensor_arg(call)
    other = call.arg(1, "other")
    out, _ = merge_tensors([x], tuple(other.shape), call.describe())
    return out


def repeat_rule(call: OpCall) -> SymTensor:
    x = tensor_arg(call)
    reps = _shape_args(call)
    lead = len(reps) - x.ndim
    base = x.reshape((1,) * lead + x.shape) if lead else x
    shape = tuple(s * r for s, r in zip(base.shape, reps))
    repeated = [d for d, r in enumerate(reps) if r != 1 and base.shape[d] != 1 and base.tags[d] is not None]
    if repeated:
        return base.as_unknown(f"{call.describe()} tiles a spatial dimension", shape=shape)
    return _tile(base, tuple(reps), call.describe())


def _tile(x: SymTensor, reps: tuple[int, ...], what: str) -> SymTensor:
    """``x.repeat(*reps)`` along dims holding no position: fields unchanged; concat pieces tiled (a
    piece ``[a, b)`` along a dim of ``n`` repeated ``r`` times is ``[a + t*n, b + t*n)``, ``t < r``)."""
    shape = tuple(s * r for s, r in zip(x.shape, reps))
    out, _ = merge_tensors([x], shape, what)
    if x.parts is not None and not out.unknown:
        d, parts = x.parts
        n, r = x.shape[d], reps[d]
        inner = reps[:d] + (1,) + reps[d + 1:]
        tiled = tuple((a, b, _tile(piece, inner, what)) for a, b, piece in parts)
        if not any(piece.unknown for _, _, piece in tiled):
            out.parts = (d, tuple((a + t * n, b + t * n, piece) for t in range(r) for a, b, piece in tiled))
    return out


def repeat_interleave_rule(call: OpCall) -> SymTensor:
    """``x.repeat_interleave(r, dim)``: position ``u`` of the result is position ``floor(u / r)``.

    A dim holding no position (batch, channels; gcvit's global query repeated over the windows) only
    grows; along a whole axis it is the window ``L(u) = H(u) = floor(u / r)`` (a nearest upsample by
    ``r``); along tokens it is the regrouping ``(n, 1) -> (n, r) -> n * r`` (each token followed by
    ``r - 1`` copies: a constant factor of the layout).  Per-position repeats (a tensor) and
    ``dim=None`` (flatten first) of positions are unknown."""
    x = tensor_arg(call)
    repeats = call.arg(1, "repeats")
    dim = call.arg(2, "dim", None)
    if isinstance(repeats, torch.Tensor) and repeats.numel() == 1 and repeats.device.type != "meta":
        repeats = int(repeats.item())
    if not isinstance(repeats, int):
        shape = tuple(run_for_shape(call).shape)
        return x.as_unknown(f"{call.describe()} with per-position repeats has no rule", shape=shape)
    if dim is None:
        flat = x.reshape((math.prod(x.shape),))
        if flat.tags[0] is not None:
            return x.as_unknown(f"{call.describe()} over the flattened positions has no rule",
                                shape=(math.prod(x.shape) * repeats,))
        return flat.like(shape=(math.prod(x.shape) * repeats,))
    d = norm_dim(dim, x.ndim)
    n = x.shape[d]
    shape = x.shape[:d] + (n * repeats,) + x.shape[d + 1:]
    tag = x.tags[d]
    if repeats == 1:
        return x
    if tag is None:
        return x.like(shape=shape)
    if isinstance(tag, Axis):
        low = PAMap(repeats, 1, tuple([0] * repeats))  # floor(u / r)
        return x.window(d, low, low, n * repeats, call.describe())
    pair = x.reshape(x.shape[:d] + (n, 1) + x.shape[d + 1:])
    out, _ = merge_tensors([pair], x.shape[:d] + (n, repeats) + x.shape[d + 1:], call.describe())
    return out.reshape(shape)


def getattr_rule(call: OpCall) -> Any:
    x, attr = call.args[0], call.args[1]
    if isinstance(x, (tuple, list)) and len(x) == 2 and attr in ("values", "indices"):
        # the (values, indices) of max / min / sort / topk / cummax (``x.max(dim).values``: HF Hiera's
        # query pooling), which the reduction rules return as a pair
        return x[0] if attr == "values" else x[1]
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
    x = tensor_arg(call)
    dim = call.arg(1, "dim", None)
    return torch.Size(x.shape) if dim is None else x.shape[dim]


def dim_rule(call: OpCall) -> int:
    return tensor_arg(call).ndim


def numel_rule(call: OpCall) -> int:
    return math.prod(tensor_arg(call).shape)


def getitem_rule(call: OpCall) -> Any:
    x, index = call.args[0], call.args[1]
    if not isinstance(x, SymTensor):
        return operator.getitem(x, index)  # a tuple or list holding tensors
    return apply_index(call, x, index)


def apply_index(call: OpCall, x: SymTensor, index: Any) -> SymTensor:
    """``x[index]`` for basic indexing (ints, slices, None, Ellipsis); advanced indexing gives unknown."""
    if not isinstance(index, tuple):
        index = (index,)
    if any(isinstance(i, (SymTensor, torch.Tensor, list)) for i in index):
        gathered = _gather(call, x, index)
        if gathered is not None:
            return gathered
        shape = tuple(run_for_shape(call).shape)
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
                literal_empty = i.stop is not None and 0 <= i.stop <= (i.start or 0)  # x[:, :0] (no prefix token)
                if size <= 0 and not literal_empty:
                    raise call.too_small(d, n, f"slice {i}")
                window = PAMap.affine(step, start)
                out = out.windows({d: (window, window, size)}, call.describe())
            d += 1
        elif isinstance(i, int):
            out = out.index(d, i + out.shape[d] if i < 0 else i)
        else:
            raise RuleError(f"{call.describe()} at node {call.name!r}: index {i!r} has no rule")
    return out


def _gather(call: OpCall, x: SymTensor, index: tuple) -> Optional[SymTensor]:
    """``x[..., idx, ...]`` with one constant 1-D integer index (a list or tensor) and full slices
    elsewhere: a gather along that dim.  Along a dim holding no position (channels; csatv2's zigzag
    order of the DCT coefficients) each output reads what the input did: fields unchanged.  Along a
    whole axis with increasing indices it is the window ``L = H = idx`` (a table).  Anything else
    (a permutation of positions, several index tensors, masks): ``None``, the caller's unknown."""
    adv = [j for j, i in enumerate(index) if isinstance(i, (SymTensor, torch.Tensor, list))]
    if len(adv) != 1 or isinstance(index[adv[0]], SymTensor):
        return None
    if any(i is None or (i is not Ellipsis and j != adv[0] and i != slice(None)) for j, i in enumerate(index)):
        return None
    if index.count(Ellipsis) > 1:
        return None
    idx = index[adv[0]]
    if isinstance(idx, list) and not all(isinstance(v, int) and not isinstance(v, bool) for v in idx):
        return None
    if isinstance(idx, torch.Tensor) and (idx.ndim != 1 or idx.dtype in (torch.bool, torch.uint8)
                                          or idx.dtype.is_floating_point):
        return None
    n_real = sum(1 for i in index if i is not Ellipsis)
    if Ellipsis in index and index.index(Ellipsis) < adv[0]:
        d = adv[0] - 1 + (x.ndim - n_real)  # the Ellipsis stands for x.ndim - n_real dims
    else:
        d = adv[0]
    if d >= x.ndim:
        return None
    n_out = len(idx) if isinstance(idx, list) else int(idx.shape[0])
    shape = x.shape[:d] + (n_out,) + x.shape[d + 1:]
    tag = x.tags[d]
    if tag is None:
        return x.like(shape=shape)
    if not isinstance(tag, Axis) or (isinstance(idx, torch.Tensor) and idx.device.type == "meta") or n_out == 0:
        return None
    n = x.shape[d]
    values = [int(v) % n for v in (idx if isinstance(idx, list) else idx.tolist())]
    if any(b <= a for a, b in zip(values, values[1:])):
        return None  # a permutation or repetition of positions: no monotone window
    at = FiniteMap(values)
    return x.window(d, at, at, n_out, call.describe())


def narrow_rule(call: OpCall) -> SymTensor:
    x = tensor_arg(call)
    dim = norm_dim(call.arg(1, "dim"), x.ndim)
    start, length = call.arg(2, "start"), call.arg(3, "length")
    index = [slice(None)] * x.ndim
    index[dim] = slice(start, start + length)
    return apply_index(call, x, tuple(index))


def split_rule(call: OpCall) -> list[SymTensor]:
    x = tensor_arg(call)
    sizes = call.arg(1, "split_size" if isinstance(call.target, str) else "split_size_or_sections")
    dim = norm_dim(call.arg(2, "dim", 0), x.ndim)
    n = x.shape[dim]
    if isinstance(sizes, int):
        sizes = [min(sizes, n - s) for s in range(0, n, sizes)]
    out, start = [], 0
    for s in sizes:
        index = [slice(None)] * x.ndim
        index[dim] = slice(start, start + s)
        out.append(apply_index(call, x, tuple(index)))
        start += s
    return out


def chunk_rule(call: OpCall) -> list[SymTensor]:
    x = tensor_arg(call)
    chunks = call.arg(1, "chunks")
    dim = norm_dim(call.arg(2, "dim", 0), x.ndim)
    n = x.shape[dim]
    size = -(-n // chunks)
    out, start = [], 0
    while start < n:
        index = [slice(None)] * x.ndim
        index[dim] = slice(start, min(start + size, n))
        out.append(apply_index(call, x, tuple(index)))
        start += size
    return out


def tensor_split_rule(call: OpCall) -> list[SymTensor]:
    """``torch.tensor_split(x, sections_or_indices, dim)``: slices, as torch cuts them."""
    x = tensor_arg(call)
    spec = call.kwargs.get("indices", call.kwargs.get("sections"))
    if spec is None:
        spec = call.arg(1, "indices_or_sections")
    dim = norm_dim(call.arg(2, "dim", 0), x.ndim)
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
        out.append(apply_index(call, x, tuple(index)))
        start = max(start, stop)
    return out


def unbind_rule(call: OpCall) -> list[SymTensor]:
    x = tensor_arg(call)
    dim = norm_dim(call.arg(1, "dim", 0), x.ndim)
    if x.parts is not None and x.parts[0] == dim:  # unbind of a stack / concat: each operand back, exactly
        return [apply_index(call, x, (slice(None),) * dim + (i,)) for i in range(x.shape[dim])]
    return [x.index(dim, i) for i in range(x.shape[dim])]


def embedding_rule(call) -> SymTensor:
    """Each index is looked up on its own: the index tensor's fields plus a non-spatial feature dim."""
    if call.module is not None:
        idx, dim = call.args[0], call.module.embedding_dim
    else:
        idx, weight = call.arg(0, "input"), call.arg(1, "weight")
        if not isinstance(idx, SymTensor):  # aten.embedding(weight, indices, ...)
            idx, weight = weight, idx
        dim = weight.shape[-1]
    if not isinstance(idx, SymTensor):
        raise RuleError(f"{call.describe()} at node {call.name!r}: expected an index tensor")
    return idx.like(shape=idx.shape + (dim,), tags=idx.tags + (None,), dtype=torch.float32)


