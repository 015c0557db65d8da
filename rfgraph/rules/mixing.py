"""Ops that mix whole dims: reductions, softmax-like ops, linear layers, contractions, attention, norms.

A dim that is mixed as a whole makes the axes it carries global
(`rfgraph.values.SymTensor.reduce` / ``globalize``).  Normalisations whose
statistics span spatial dims keep the local field and set ``global_context``
(a spatially constant statistic scales each position, like
squeeze-and-excitation).  Attention's all-token mix is the signal itself, not
a context path.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Optional, Union

import torch
import torch.fx as fx
from torch import nn

from ..errors import RuleError
from ..values import Axis, Cat, Flat, Sub, SymTensor, merge_tensors
from ..windows import causal_window
from .call import OpCall, Rule, as_operand, as_tuple, hand_over, norm_dim, run_for_shape, target_name, tensor_arg
from .pointwise import merged_parts, mix_channels

__all__ = [
    "cumulative_rule",
    "norm_context_rule",
    "layer_norm_dims",
    "group_norm_dims",
    "instance_norm_dims",
    "reduction_rule",
    "norm_rule",
    "mix_dim_rule",
    "softmax_module_rule",
    "linear_rule",
    "einsum_rule",
    "matmul_rule",
    "add_product_rule",
    "attention_module_rule",
    "mha_function_rule",
    "sdpa_rule",
    "attend",
    "project",
    "multi_head_attention",
    "global_axes",
    "relative_logits_rule",
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
            return x.normalize(dims, call.describe())
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
    # std / var take ``unbiased`` before ``keepdim`` (``torch.std(x, 1, True)``), and alone in the place of
    # ``dim`` (``x.std(True)``: over every dim)
    keepdim_at = 3 if _op_name(call) in ("std", "var") else 2
    if isinstance(dim, bool):
        dim = None
    keepdim = bool(call.arg(keepdim_at, "keepdim", False))
    dims = range(x.ndim) if dim is None or dim == () else [norm_dim(d, x.ndim) for d in as_tuple(dim, 1)]
    out = x.reduce(dims, keepdim, call.describe())
    if x.parts is not None and x.parts[0] in dims and not out.unknown:
        # A sum / max over the operands of a stack or concat (``torch.stack(fs).sum(0)``) is a merge:
        # the alignment of its operands is reported here, as for an add.
        pieces = [piece.reduce(dims, keepdim, call.describe()) for _, _, piece in x.parts[1]]
        _, info = merge_tensors(pieces, out.shape, call.describe())
        call.note_merge(info)
        # the operands' own concat pieces (a stack of concats summed over the stack) survive the merge
        out.parts = merged_parts(call, pieces, out.shape)
    if (call.target in ("max", "min", "median", torch.max, torch.min, torch.median) and dim is not None
            and not isinstance(dim, (list, tuple))):
        return out, out.like(dtype=torch.int64)  # (values, indices)
    return out


def _op_name(call: OpCall) -> str:
    """``std`` for ``torch.std``, ``Tensor.std`` and ``aten.std.dim`` alike."""
    target = call.target
    name = target if isinstance(target, str) else getattr(target, "__name__", "")
    return name.split(".")[0]


def norm_rule(call: OpCall) -> SymTensor:
    """``torch.norm(x, p, dim, keepdim)``, ``x.norm(p, dim, keepdim)``, ``torch.linalg.vector_norm(x, ord,
    dim, keepdim)`` / ``linalg.norm`` and their aten spellings: the order comes before ``dim``, so this
    is `reduction_rule` with the arguments one place further (over all dims when none is given)."""
    x = tensor_arg(call)
    dim = call.arg(2, "dim", None)
    keepdim = bool(call.arg(3, "keepdim", False))
    dims = range(x.ndim) if dim is None or dim == () else [norm_dim(d, x.ndim) for d in as_tuple(dim, 1)]
    return x.reduce(dims, keepdim, call.describe())


def mix_dim_rule(call: OpCall) -> SymTensor:
    """softmax / sort ... along ``dim``: shape kept, every position depends on the whole dim (a softmax
    after an additive mask that hides entries: `additive_mask`)."""
    x = tensor_arg(call)
    dim = call.arg(1, "dim", None)
    if dim is None:
        dim = -1
    if target_name(call.target) not in SOFTMAX_NAMES:
        return x.mix([norm_dim(dim, x.ndim)], call.describe())
    return _masked_softmax(call, x, norm_dim(dim, x.ndim))


def cumulative_rule(call: OpCall) -> Any:
    """``cumsum`` / ``cumprod`` / ``cummax`` / ``cummin`` along ``dim``: position ``u`` reads ``0 .. u``
    (a causal window along a spatial dim; along channels it mixes them)."""
    x = tensor_arg(call)
    d = norm_dim(call.arg(1, "dim"), x.ndim)
    tag = x.tags[d]
    if isinstance(tag, Axis) and not tag.field.is_global:
        low, high = causal_window(x.shape[d])
        out = x.window(d, low, high, x.shape[d], call.describe())
    else:
        out = x.globalize([d], call.describe())
        if x.parts is not None and x.parts[0] == d and tag is None and not out.unknown:
            # along the channels of a concat: the channels of piece i read pieces 0 .. i
            pieces, seen = [], []
            for a, b, piece in x.parts[1]:
                seen.append(piece)
                merged, _ = merge_tensors([p.like(shape=piece.shape) for p in seen], piece.shape, call.describe())
                if merged.unknown:
                    break
                pieces.append((a, b, merged))
            else:
                out.parts = (d, tuple(pieces))
    if call.target in ("cummax", "cummin", torch.cummax, torch.cummin):
        return out, out.with_dtype(torch.int64)  # (values, indices)
    return out


def softmax_module_rule(call: OpCall) -> SymTensor:
    """``nn.Softmax`` / ``nn.LogSoftmax`` / ``nn.Softmin``: as `mix_dim_rule`."""
    x = tensor_arg(call)
    dim = call.module.dim if call.module.dim is not None else -1
    if not isinstance(call.module, nn.Softmax):
        return x.mix([norm_dim(dim, x.ndim)], call.describe())
    return _masked_softmax(call, x, norm_dim(dim, x.ndim))


def _masked_softmax(call: OpCall, x: SymTensor, d: int) -> SymTensor:
    """A softmax along dim ``d``, after an additive mask or not (`additive_mask`): a mask that may hide
    entries hides the wrapped part of rolled windows (Swin's); one known to hide entries of a dim that no
    roll wrapped (a causal or padding mask written by hand) hides keys this rule does not follow."""
    mask = additive_mask(call)
    if mask == "hides" and not _rolled(x.tags[d]):
        return hand_over(call, x, "an additive mask hides entries (-100 or less) of tokens that no roll wrapped; "
                                  "which keys it hides is not followed")
    return x.mix([d], call.describe(), wrap_hidden=bool(mask))


#: The convention for additive attention masks: a logit shifted by -100 or less is a hidden entry, as if it
#: were -inf.  Such masks are written to hide (Swin's shifted-window mask is -100, transformers' masks the
#: dtype's lowest value): the entry's softmax weight is at most e^-100 (3.7e-44) of its unmasked weight, so
#: no output of a float32 or float64 forward changes with it, though its gradient is not zero.  The probe
#: follows the same convention (`rfgraph.probing.runner`).  After such a mask (`additive_mask`), a softmax over
#: rolled windows cuts their wrapped part at the seam (`SymTensor.mix`), which is what Swin's -100 mask hides.
HIDING_LOGIT = -100.0

#: The softmax, whose entries an additive mask of -100 or less hides (the probe's convention too,
#: `rfgraph.probing.runner`; not softmin, which negates them, nor log_softmax, whose hidden entries are -inf).
SOFTMAX_NAMES = frozenset({"softmax", "_softmax"})
#: How an additive mask is spelled (and a fill of the masked entries with -100 or less), and the ops that
#: carry the masked scores to the softmax unchanged.
ADD_NAMES = frozenset({"add", "add_", "__add__", "__radd__", "iadd", "__iadd__"})
FILL_NAMES = frozenset({"masked_fill", "masked_fill_"})
MASK_CARRIERS = frozenset({
    "view", "reshape", "_unsafe_view", "permute", "transpose", "contiguous", "clone", "to", "float", "double",
    "half", "type_as", "_to_copy", "unsqueeze", "squeeze", "flatten", "unflatten", "alias", "movedim",
})


def _rolled(tag) -> bool:
    """Whether a dim's tag holds digits of a rolled axis (Swin's shifted windows)."""
    return any(isinstance(leaf, Sub) and leaf.shift for leaf in _subs(tag, everything=True))


def additive_mask(call: OpCall) -> str:
    """What was added to the scores reaching this softmax: ``"hides"`` (a constant with an entry of -100
    or less, `HIDING_LOGIT`, or a ``masked_fill`` of -100 or less by a constant mask with a True entry),
    ``"unknown"`` (such a constant whose values are unknown: made on the meta device, taken as hiding) or
    ``""`` (nothing that hides).  The graph is followed back through adds, fills and moves (views,
    permutes, dtype changes)."""
    node = call.node
    if call.interp is None or not isinstance(node, fx.Node) or not node.args:
        return ""
    return _masked_scores(call.interp, node.args[0])


def weighted_by_hiding_softmax(call: OpCall) -> bool:
    """Whether an operand of this contraction is the output of a softmax that an additive mask hides
    entries of (`additive_mask`; through moves and eval-mode dropout): its weights are zero
    where the mask hides, so the contraction does not read the values there either (``attn @ v``)."""
    node = call.node
    if call.interp is None or not isinstance(node, fx.Node):
        return False
    for src in node.all_input_nodes:
        for _ in range(16):
            module = call.interp.fetch_attr(src.target) if src.op == "call_module" else None
            name = target_name(src.target) if src.op in ("call_function", "call_method") else ""
            if isinstance(module, nn.Softmax) or name in SOFTMAX_NAMES:
                if src.args and _masked_scores(call.interp, src.args[0]):
                    return True
                break
            carries = isinstance(module, (nn.Dropout, nn.Identity)) or name in MASK_CARRIERS or name == "dropout"
            if not carries or not src.args or not isinstance(src.args[0], fx.Node):
                break
            src = src.args[0]
    return False


def _masked_scores(interp: Any, src: Any) -> str:
    """`additive_mask` from node ``src`` back (the pass records which nodes read the input and whether the
    constants added to something hide, `rfgraph.passes`)."""
    data, hides = getattr(interp, "data_nodes", set()), getattr(interp, "constant_hides", {})
    for _ in range(64):
        if not isinstance(src, fx.Node) or src.op not in ("call_function", "call_method"):
            return ""
        name = target_name(src.target)
        if name in ADD_NAMES:
            operands = [a for a in src.args[:2] if isinstance(a, fx.Node)]
            flags = {hides[a] for a in operands if a in hides}
            if True in flags:
                return "hides"
            if None in flags:
                return "unknown"
            read = [a for a in operands if a in data]
            if len(read) != 1:
                return ""
            src = read[0]
        elif name in FILL_NAMES and len(src.args) >= 3:
            mask, value = src.args[1], src.args[2]
            if isinstance(value, (int, float)) and value <= HIDING_LOGIT and mask in hides:
                return "hides" if hides[mask] else ("unknown" if hides[mask] is None else "")
            src = src.args[0]
        elif name in MASK_CARRIERS and src.args:
            src = src.args[0]
        else:
            return ""
    return ""


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
    return project(x, out_features, call.describe())


def einsum_rule(call: OpCall) -> SymTensor:
    """Generic contraction: indices summed over mix their positions (global), kept ones merge."""
    equation = call.args[0].replace(" ", "")
    operands = call.args[1:]
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    return _contract(call, equation, [as_operand(o) for o in operands], weighted_by_hiding_softmax(call))


def _contract(call: OpCall, equation: str, operands: list[SymTensor], wrap_hidden: bool = False) -> SymTensor:
    """The contraction ``equation`` (einsum notation) of ``operands``; ``wrap_hidden``: see `SymTensor.mix`."""
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
    joined: set[int] = set()
    for o, s in zip(operands, specs):
        summed = [d for d, c in enumerate(s) if c not in rhs]
        reduced = o.reduce(summed, keepdim=False, what=call.describe(), wrap_hidden=wrap_hidden) if summed else o
        joined |= global_axes(reduced)
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
    if not out.unknown:
        out = _as_data(out, joined, operands)
        info.global_context = out.global_context
    call.note_merge(info)
    return out


def global_axes(t: SymTensor) -> set[int]:
    """Input axes on which some position of ``t`` depends as a whole."""
    return {k for k, fs in t.axis_fields().items() if any(f.is_global for f in fs)}


def _as_data(out: SymTensor, joined: set[int], operands) -> SymTensor:
    """The result of a contraction: it sums products over its operands' positions, so an operand that
    depends on a whole axis makes every output position depend on it (``(q k^T) v`` and ``q (k^T v)``
    alike), never a context path.  Context flags come only from the operands' own upstream gates, and
    mean nothing once every axis is global."""
    out = out.join_axes(joined)
    fields = out.axis_fields()
    context = any(o.global_context for o in operands)
    out.global_context = context and not all(f.is_global for fs in fields.values() for f in fs)
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
    return _contract(call, f"{sa},{sb}->{batch}ik", [a, b], weighted_by_hiding_softmax(call))


def add_product_rule(call: OpCall) -> SymTensor:
    """``addmm`` / ``baddbmm`` (``input + a @ b``) and ``addbmm`` (``input + sum over the batch of a @ b``):
    the product as `matmul_rule` (its batch summed too for ``addbmm``), merged with ``input``."""
    inp, a, b = (as_operand(call.arg(i, n)) for i, n in enumerate(("input", "batch1", "batch2")))
    name = getattr(call.target, "__name__", str(call.target)).split(".")[0]
    if name == "addbmm":
        product = _contract(call, "bij,bjk->ik", [a, b])
    else:
        product = matmul_rule(call.with_args((a, b)))
    shape = tuple(torch.broadcast_shapes(inp.shape, product.shape))
    out, info = merge_tensors([inp, product], shape, call.describe())
    call.note_merge(info)
    return out


def attend(call: OpCall, q: SymTensor, k: SymTensor, v: SymTensor, mask: Optional[SymTensor] = None,
           wrap_hidden: bool = False):
    """``softmax(q k^T + mask) v`` over the last two dims: ``(out, weights)``.  ``wrap_hidden``: a constant
    mask may hide the wrapped part of rolled windows (`SymTensor.mix`).

    ``q (..., L, E)``, ``k (..., S, E)``, ``v (..., S, Ev)``, leading dims broadcast (batch, heads,
    windows).  Written as the two contractions and the softmax it is, so each part is exact on its own:
    the weights ``(..., L, S)`` pair query ``l`` with every key (softmax over ``S``), and each output
    token reads every key and value token besides its own query.
    """
    logits = _contract(call, "...le,...se->...ls", [q, k], wrap_hidden)
    if mask is not None:
        shape = tuple(torch.broadcast_shapes(logits.shape, mask.shape))
        logits, _ = merge_tensors([logits, mask], shape, call.describe())
    weights = logits.mix([logits.ndim - 1], call.describe(), wrap_hidden)
    out = _contract(call, "...ls,...sc->...lc", [weights, v], wrap_hidden)
    if out.unknown and not any(t.unknown for t in (q, k, v, mask) if isinstance(t, SymTensor)):
        out = _attend_direct(call, q, k, v, mask)
    return out, weights


def _attend_direct(call: OpCall, q: SymTensor, k: SymTensor, v: SymTensor, mask: Optional[SymTensor]) -> SymTensor:
    """The output of `attend` without the weights: query ``l`` of each leading slice reads its own query
    and every key and value of that slice (and its mask row), so the output is the merge of ``q`` and
    of ``k``, ``v`` (the mask) summed over their tokens.  Used when the weights pair two copies of an
    axis that no layout can hold at once (Hiera's queries pooled inside each window against the
    window's keys at full resolution: the window digit of both, the queries' and the keys' own
    digits); summed over the keys, the keys' window digit is one of the queries' copy
    (`values.merge_tensors` aligns the copies)."""
    what = call.describe()

    def summed(t: SymTensor, n: int) -> SymTensor:  # the last n dims summed, size-1 dims holding nothing
        r = t.reduce(range(t.ndim - n, t.ndim), keepdim=False, what=what)
        return r.reshape(r.shape + (1,) * n)

    parts = [summed(q, 1), summed(k, 2), summed(v, 2)]
    if mask is not None:
        parts.append(summed(mask, 1))
    shape = tuple(torch.broadcast_shapes(q.shape[:-1] + (v.shape[-1],), *(p.shape for p in parts)))
    joined = set().union(*(global_axes(p) for p in parts))
    out, info = merge_tensors(parts, shape, what)
    if not out.unknown:
        out = _as_data(out, joined, parts)
    call.note_merge(info)
    return out


def project(x: SymTensor, features: int, what: str) -> SymTensor:
    """``x`` after a linear map of its last dim to ``features`` channels (spatial positions held
    there become global, as for `linear_rule`)."""
    out = x.reduce([x.ndim - 1], keepdim=True, what=what)
    shape = list(out.shape)
    shape[-1] = features
    tags = list(out.tags)
    pinned = dict(out.pinned)
    last = tags[-1]
    if last is not None:
        # A digit whose copy's other digits (in other dims) carry the same field is not pinned: the field
        # is constant over it and those digits hold it (csatv2's DCT over each patch's columns and rows);
        # pinned, it would stay indexed by the old positions when a merge or window changes theirs.
        held = {(leaf.axis, leaf.n, leaf.shift, leaf.field) for tag in tags[:-1] for leaf in _subs(tag)}
        for leaf in _subs(last, everything=True):
            for k, f in leaf.items():
                if not (isinstance(leaf, Sub) and (leaf.axis, leaf.n, leaf.shift, leaf.field) in held):
                    pinned[k] = f
        tags[-1] = None
    return out.like(shape=shape, tags=tags, pinned=pinned)


def _subs(tag, everything: bool = False) -> list:
    """The `Sub` leaves of a dim's tag (``everything``: every leaf)."""
    if tag is None:
        return []
    if isinstance(tag, Flat):
        return [leaf for _, t in tag.parts for leaf in _subs(t, everything)]
    if isinstance(tag, Cat):
        return [leaf for _, t in tag.segments for leaf in _subs(t, everything)]
    return [tag] if everything or isinstance(tag, Sub) else []



def _mask(call: OpCall, index: int, name: str, padding: bool = False) -> Union[None, SymTensor, str]:
    """Attention mask argument ``index`` / ``name`` as an operand of the scores: ``None`` (no mask, or
    one that cuts nothing), a `SymTensor` (an input-dependent mask: a data path), or the reason why
    the mask may cut dependencies (a boolean mask with a False entry, a float mask with a -inf entry,
    or a boolean mask whose values cannot be known; the op is then handed over).

    A float mask is added to the scores: entries above `HIDING_LOGIT` keep every dependency (relative
    position biases), entries of -100 or less hide their key like -inf.  Float masks on the meta device
    have no values to check and are taken as additive biases.  A mask on the meta device that the graph computes from constants
    alone (transformers' ``arange(n) >= 0`` "attend everywhere" mask) is recomputed on the CPU.
    ``padding``: a key padding mask, whose True entries hide keys (an attention mask's True entries
    keep them)."""
    mask = call.arg(index, name, None)
    if mask is None:
        return None
    if isinstance(mask, SymTensor):
        return "an input-dependent key padding mask" if padding else mask
    if not isinstance(mask, torch.Tensor):
        return f"an attention mask of type {type(mask).__name__}"
    if mask.device.type == "meta":
        node = call.node
        source = None
        if isinstance(node, fx.Node):
            source = node.args[index] if index < len(node.args) else node.kwargs.get(name)
        mask = constant_on_cpu(source)
        if mask is None:
            return "a boolean attention mask whose values are unknown on the meta device" \
                if call.arg(index, name).dtype == torch.bool else None
    if mask.dtype == torch.bool:
        hides = bool(mask.any()) if padding else not bool(mask.all())
        return "a boolean attention mask that hides some tokens" if hides else None
    if bool((mask <= HIDING_LOGIT).any()):
        return _HIDING_FLOAT_MASK
    return None


_HIDING_FLOAT_MASK = "an attention mask with entries of -100 or less (hidden tokens)"


def _mask_of_rolled_keys(call: OpCall, k: SymTensor, mask: Union[None, SymTensor, str], at: tuple[int, str]) \
        -> tuple[Union[None, SymTensor, str], bool]:
    """``(mask, wrap_hidden)`` for `attend`: a float mask that hides entries of keys held in rolled windows
    hides their wrapped part (Swin's, as `_masked_softmax` takes it); a mask on the meta device with unknown
    values is taken as such.  Other masks that hide keep their reason (handed over)."""
    rolled = k.ndim >= 2 and _rolled(k.tags[k.ndim - 2])
    if mask == _HIDING_FLOAT_MASK and rolled:
        return None, True
    return mask, rolled and _mask_values_unknown(call, *at)


_MAX_CONSTANT = 1 << 24


def _mask_values_unknown(call: OpCall, index: int, name: str) -> bool:
    """Whether argument ``index`` / ``name`` is a float mask on the meta device that the graph does not
    compute from constants alone: its values are unknown (taken as hiding, as in `additive_mask`)."""
    mask = call.arg(index, name, None)
    if not isinstance(mask, torch.Tensor) or not mask.is_floating_point() or mask.device.type != "meta":
        return False
    node = call.node
    source = node.args[index] if isinstance(node, fx.Node) and index < len(node.args) else \
        getattr(node, "kwargs", {}).get(name)
    return constant_on_cpu(source) is None


def constant_on_cpu(node: Any, depth: int = 0) -> Optional[torch.Tensor]:
    """The value of fx node ``node`` when the graph computes it from constants alone (function calls
    on Python values: ``arange``, comparisons, ``expand``...), recomputed on the CPU; else ``None``."""
    if not isinstance(node, fx.Node) or node.op != "call_function" or depth > 32:
        return None
    failed = []

    def value(a: Any) -> Any:
        if isinstance(a, fx.Node):
            v = constant_on_cpu(a, depth + 1)
            if v is None:
                failed.append(a)
            return v
        if isinstance(a, torch.device) and a.type == "meta":
            return torch.device("cpu")
        return a

    args = fx.node.map_aggregate(node.args, value)
    kwargs = fx.node.map_aggregate(dict(node.kwargs), value)
    if failed:
        return None
    kwargs = dict(kwargs)
    if kwargs.get("device") is not None:
        kwargs["device"] = torch.device("cpu")
    try:
        out = node.target(*args, **kwargs)
    except Exception:
        return None
    if isinstance(out, torch.Tensor) and out.device.type == "cpu" and out.numel() <= _MAX_CONSTANT:
        return out
    return None


def sdpa_rule(call: OpCall) -> Any:
    """``F.scaled_dot_product_attention(q, k, v, attn_mask, dropout_p, is_causal, scale, enable_gqa)``:
    `attend` over the last two dims."""
    q, k, v = (tensor_or_const(call, i, n) for i, n in enumerate(("query", "key", "value")))
    if call.arg(5, "is_causal", False):
        return hand_over(call, q, "causal attention (each token reads the tokens before it in flattened order)",
                         shape=q.shape[:-1] + (v.shape[-1],))
    mask, wrap_hidden = _mask_of_rolled_keys(call, k, _mask(call, 3, "attn_mask"), (3, "attn_mask"))
    if isinstance(mask, str):
        return hand_over(call, q, mask, shape=q.shape[:-1] + (v.shape[-1],))
    if q.ndim >= 3 and k.ndim >= 3 and k.shape[-3] != q.shape[-3] and k.shape[-3] != 1:
        # grouped-query attention: each group of query heads shares one key / value head
        if k.tags[-3] is not None or v.tags[-3] is not None:
            return hand_over(call, q, "grouped heads along a dim holding spatial positions",
                             shape=q.shape[:-1] + (v.shape[-1],))
        k = k.like(shape=k.shape[:-3] + (1,) + k.shape[-2:])
        v = v.like(shape=v.shape[:-3] + (1,) + v.shape[-2:])
    out, _ = attend(call, q, k, v, mask, wrap_hidden)
    return out


def attention_module_rule(call: OpCall) -> Any:
    """``nn.MultiheadAttention(query, key, value, key_padding_mask, need_weights, attn_mask,
    average_attn_weights, is_causal)``: `multi_head_attention` with the module's sizes."""
    m = call.module
    return multi_head_attention(
        call,
        call.arg(0, "query"), call.arg(1, "key"), call.arg(2, "value"),
        batch_first=m.batch_first, embed_dim=m.embed_dim, num_heads=m.num_heads, out_features=m.out_proj.out_features,
        extra_keys=int(m.bias_k is not None) + int(m.add_zero_attn),
        padding_at=(3, "key_padding_mask"), need_weights=call.arg(4, "need_weights", True),
        mask_at=(5, "attn_mask"), average=call.arg(6, "average_attn_weights", True),
        is_causal=call.arg(7, "is_causal", False),
    )


_MHA_ARGS = (
    "query", "key", "value", "embed_dim_to_check", "num_heads", "in_proj_weight", "in_proj_bias", "bias_k", "bias_v",
    "add_zero_attn", "dropout_p", "out_proj_weight", "out_proj_bias", "training", "key_padding_mask", "need_weights",
    "attn_mask", "use_separate_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight", "static_k",
    "static_v", "average_attn_weights", "is_causal",
)
_MHA_DEFAULTS = {"training": True, "key_padding_mask": None, "need_weights": True, "attn_mask": None,
                 "use_separate_proj_weight": False, "q_proj_weight": None, "k_proj_weight": None,
                 "v_proj_weight": None, "static_k": None, "static_v": None, "average_attn_weights": True,
                 "is_causal": False}


def mha_function_rule(call: OpCall) -> Any:
    """``F.multi_head_attention_forward(query, key, value, ...)`` on ``(L, B, E)`` or unbatched ``(L, E)``
    (open_clip's ResNet attention pool): `multi_head_attention`."""
    a = {n: call.arg(i, n, _MHA_DEFAULTS.get(n)) for i, n in enumerate(_MHA_ARGS)}
    q = tensor_or_const(call, 0, "query")
    weights = [a[n] for n in ("in_proj_weight", "in_proj_bias", "bias_k", "bias_v", "out_proj_weight",
                              "out_proj_bias", "q_proj_weight", "k_proj_weight", "v_proj_weight")]
    if any(isinstance(w, SymTensor) for w in weights):
        return hand_over(call, q, "input-dependent projection weights")
    if a["static_k"] is not None or a["static_v"] is not None:
        return hand_over(call, q, "static keys / values")
    return multi_head_attention(
        call, a["query"], a["key"], a["value"],
        batch_first=False, embed_dim=int(a["embed_dim_to_check"]), num_heads=int(a["num_heads"]),
        out_features=int(a["out_proj_weight"].shape[0]),
        extra_keys=int(a["bias_k"] is not None) + int(bool(a["add_zero_attn"])),
        padding_at=(14, "key_padding_mask"), need_weights=a["need_weights"], mask_at=(16, "attn_mask"),
        average=a["average_attn_weights"], is_causal=a["is_causal"],
    )


def multi_head_attention(
    call: OpCall, query: Any, key: Any, value: Any, *, batch_first: bool, embed_dim: int, num_heads: int,
    out_features: int, extra_keys: int, padding_at: tuple[int, str], need_weights: bool, mask_at: tuple[int, str],
    average: bool, is_causal: bool,
) -> tuple[SymTensor, Optional[SymTensor]]:
    """Multi-head attention: linear projections of query / key / value (channels only), `attend`, an
    output projection; ``(out, weights)`` in the layout of ``query``.  Heads split channels, which carry
    no positions, so every head has the dependencies of one attention over all channels.  Extra keys
    (``bias_k``, ``add_zero_attn``) are positions with no spatial origin: they add to the weights' key
    count and to no field."""
    q, k, v = (as_operand(t) for t in (query, key, value))
    unbatched = q.ndim == 2
    out_shape = q.shape[:-1] + (out_features,)
    if is_causal:
        return hand_over(call, q, "causal attention (each token reads the tokens before it)", shape=out_shape), None
    def batch_major(t: SymTensor) -> SymTensor:
        if unbatched:
            return t.reshape((1,) + t.shape)
        return t if batch_first else t.permute((1, 0, 2))

    what = call.describe()
    query_in = q
    q, k, v = (batch_major(project(t, embed_dim, what)) for t in (q, k, v))
    mask, wrap_hidden = _mask_of_rolled_keys(call, k, _mask(call, *mask_at), mask_at)
    reason = next((m for m in (mask, _mask(call, *padding_at, padding=True)) if isinstance(m, str)), None)
    if reason is not None:
        return hand_over(call, query_in, reason, shape=out_shape), None
    if mask is not None:  # (L, S) or (B * heads, L, S): keep the (L, S) pairing, broadcast over the batch
        if mask.ndim == 3:
            mask = mask.reduce([0], keepdim=True, what=what)
        else:
            mask = mask.reshape((1,) + mask.shape)
    out, weights = attend(call, q, k, v, mask, wrap_hidden)
    out = project(out, out_features, what)
    if unbatched:
        out = out.reshape(out.shape[1:])
    elif not batch_first:
        out = out.permute((1, 0, 2))
    if not need_weights:
        return out, None
    shape = list(weights.shape)
    shape[-1] += extra_keys
    weights = weights.like(shape=shape)
    if not average:
        weights = weights.reshape(weights.shape[:1] + (1,) + weights.shape[1:])
        weights = weights.like(shape=weights.shape[:1] + (num_heads,) + weights.shape[2:])
    if unbatched:
        weights = weights.reshape(weights.shape[1:])
    return out, weights


def tensor_or_const(call: OpCall, index: int, name: str) -> SymTensor:
    """Argument ``index`` / ``name`` as a `SymTensor` (a constant tensor becomes a field-free one)."""
    out = as_operand(call.arg(index, name))
    if out is None:
        raise RuleError(f"{call.describe()} at node {call.name!r}: expected a tensor for {name!r}")
    return out


def relative_logits_rule(call: OpCall) -> Any:
    """timm's ``rel_logits_1d(q, rel_k, permute_mask)`` (BoTNet's ``bottleneck_attn``, HaloNet's
    ``halo_attn``): relative-position logits turned absolute by the "skew" (pad, flatten, pad, view,
    slice), tiled and permuted.

    ``q`` is ``(B, H, W, d)``, ``rel_k`` a constant table of ``r = 2*win - 1`` offsets.  ``x = q @ rel_k^T``
    is ``(B*H, W, r)``; padded with one column it is ``(B*H, W*(r + 1))``, so row ``i``, offset ``c`` sits at
    flat index ``(r + 1)*i + c``.  Padded by ``r - W`` more and viewed as ``(W + 1, r)``, element ``(i, j)``
    of the slice ``[:W, win - 1:]`` is flat index ``r*i + j + win - 1 = (r + 1)*i + (j + win - 1 - i)``,
    and ``0 <= j + win - 1 - i <= r - 1`` whenever ``win >= W``: it is ``x[i, win - 1 + j - i]``, which
    reads query ``i`` alone (never the pad column, never another row).  So the result, before the
    permute ``(B, H, E, W, win)`` (``E`` the tiling), reads ``q[b, h, i, :]`` at ``(b, h, ., i, .)``: the
    dims of ``B``, ``H`` and ``W`` keep their layout, the tiled and offset dims hold no position."""
    q, rel_k, mask = call.arg(0, "q"), call.arg(1, "rel_k"), call.arg(2, "permute_mask")
    if not isinstance(q, SymTensor) or q.ndim != 4 or isinstance(rel_k, SymTensor) or rel_k.ndim != 2:
        return hand_over(call, q if isinstance(q, SymTensor) else rel_k,
                         "relative logits of a non-constant table or an unusual shape; no exact rule")
    b, h, w, _ = q.shape
    r = rel_k.shape[0]
    win = (r + 1) // 2
    out_shape = tuple(run_for_shape(call).shape)
    order = [int(d) for d in mask]
    before = [0] * 5
    for k, d in enumerate(order):
        before[d] = out_shape[k]
    if r % 2 == 0 or win < w or (before[0], before[1], before[3]) != (b, h, w):
        return hand_over(call, q, f"relative logits with {r} offsets for {w} positions (the skew reads "
                                  "neighbouring rows); no exact rule", shape=out_shape)
    t = q.reduce([3], keepdim=False, what=call.describe()).reshape((b, h, 1, w, 1))
    if t.unknown:
        return t.as_unknown(t.unknown, shape=out_shape)
    return t.like(shape=before, tags=(t.tags[0], t.tags[1], None, t.tags[3], None)).permute(order)
