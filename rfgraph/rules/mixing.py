"""Ops that mix whole dims: reductions, softmax-like ops, linear layers, contractions, attention, norms.

A dim that is mixed as a whole makes the axes it carries global
(`rfgraph.values.SymTensor.reduce` / ``globalize``).  Normalisations whose
statistics span spatial dims keep the local field and set ``global_context``
(a spatially constant statistic scales each position, like
squeeze-and-excitation).  Attention's all-token mix is the signal itself, not
a context path.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import torch

from ..algebra import GLOBAL
from ..values import SymTensor, is_complete, merge_tensors
from .call import OpCall, Rule, as_operand, as_tuple, norm_dim, tensor_arg
from .pointwise import mix_channels

__all__ = [
    "norm_context_rule",
    "layer_norm_dims",
    "group_norm_dims",
    "instance_norm_dims",
    "reduction_rule",
    "mix_dim_rule",
    "softmax_module_rule",
    "linear_rule",
    "einsum_rule",
    "matmul_rule",
    "attention_module_rule",
    "sdpa_rule",
]


def norm_context_rule(dims_of: Callable[[OpCall, SymTensor], Iterable[int]]) -> Rule:
    """Normalisations whose statistics span ``dims_of(call, x)``.

    Over channel dims only they read position u alone but mix the channels
    (concat pieces along those dims do not survive); where the statistics also span
    spatial dims (GroupNorm, InstanceNorm, LayerNorm over tokens) each output
    depends on the whole extent through a spatially constant statistic: a
    context path, like squeeze-and-excitation.
    """

    def rule(call: OpCall) -> SymTensor:
        x = tensor_arg(call)
        dims = list(dims_of(call, x))
        if any(x.tags[d] is not None for d in dims):
            if any(not is_complete(x.tags[d]) for d in dims):
                return x.as_unknown(f"{call.describe()} normalises over a subset of spatial positions")
            out = x.like()
            out.global_context = True
            return out
        for d in dims:
            x = mix_channels(x, d)
        return x

    return rule


def layer_norm_dims(call: OpCall, x: SymTensor) -> range:
    shape = call.module.normalized_shape if call.module is not None else call.arg(1, "normalized_shape")
    return range(x.ndim - len(as_tuple(shape, 1)), x.ndim)


def group_norm_dims(call: OpCall, x: SymTensor) -> range:
    return range(1, x.ndim)


def instance_norm_dims(call: OpCall, x: SymTensor) -> range:
    m = call.module
    if m is not None and m.track_running_stats and not m.training:
        return range(0)
    return range(2, x.ndim)


def reduction_rule(call: OpCall) -> Any:
    """mean / sum / amax ... over ``dim`` (all dims when none given): reduced spatial dims become global."""
    x = tensor_arg(call)
    dim = call.arg(1, "dim", None)
    keepdim = bool(call.arg(2, "keepdim", False))
    dims = range(x.ndim) if dim is None or dim == () else [norm_dim(d, x.ndim) for d in as_tuple(dim, 1)]
    out = x.reduce(dims, keepdim, call.describe())
    if call.target in ("max", "min", torch.max, torch.min) and dim is not None and not isinstance(dim, (list, tuple)):
        return out, out.like(dtype=torch.int64)  # (values, indices)
    return out


def mix_dim_rule(call: OpCall) -> SymTensor:
    """softmax / cumsum / sort ... along ``dim``: shape kept, every position depends on the whole dim."""
    x = tensor_arg(call)
    dim = call.arg(1, "dim", None)
    if dim is None:
        dim = -1
    return x.globalize([norm_dim(dim, x.ndim)], call.describe())


def softmax_module_rule(call: OpCall) -> SymTensor:
    x = tensor_arg(call)
    dim = call.module.dim if call.module.dim is not None else -1
    return x.globalize([norm_dim(dim, x.ndim)], call.describe())


def linear_rule(call: OpCall) -> SymTensor:
    """``y = x W^T + b`` contracts the last dim; spatial positions held there become global."""
    x = tensor_arg(call)
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
    return _contract(call, equation, [as_operand(o) for o in operands])


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
    a, b = as_operand(call.args[0]), as_operand(call.args[1])
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
    query = tensor_arg(call, 0, "query")
    key, value = call.arg(1, "key"), call.arg(2, "value")
    token_dim = 1 if m.batch_first and query.ndim == 3 else 0
    operands = [o for o in (as_operand(key), as_operand(value)) if o is not None]
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
    q, k, v = (as_operand(call.arg(i, n)) for i, n in enumerate(("query", "key", "value")))
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


