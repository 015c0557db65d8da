"""Rules for torchvision building blocks that fx keeps opaque (wrapped functions, ruled modules).

Swin's shifted-window attention (2-D and video 3-D) and patch-merging pad,
MaxViT's partition attention layer, MViT's shape helpers.  Stochastic depth
and drop-block are pointwise and live in the identity table.
"""

from __future__ import annotations

from ..algebra import PAMap
from ..errors import RuleError
from ..values import SymTensor
from .call import OpCall, as_operand, norm_dim, tensor_arg
from .pointwise import merge_rule

__all__ = [
    "swin_window_attention_rule",
    "swin_patch_merging_pad_rule",
    "maxvit_partition_attention_rule",
    "mvit_unsqueeze_rule",
    "mvit_squeeze_rule",
    "mvit_add_shortcut_rule",
    "mvit_add_rel_pos_rule",
]


def swin_window_attention_rule(call: OpCall) -> SymTensor:
    """torchvision's ``shifted_window_attention`` on ``(B, H, W, C)`` (and its 3-D twin on ``(B, T, H, W, C)``).

    Positions are padded on the right to a multiple of the window ``w``, rolled
    by ``-shift`` and split into windows of ``w``; attention mixes each window.
    Original position ``p`` lies in rolled window ``floor((p - shift) / w)``,
    which covers ``[w*floor((u - shift)/w) + shift, ... + w - 1]``.  When the
    window covers the whole (padded) dim, it mixes everything: global.
    (Masks of the wrapped last window only cut that window at the border.)
    """
    x = tensor_arg(call)
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
    x = tensor_arg(call)
    per_dim = {d: (PAMap.affine(2, 0), PAMap.affine(2, 1), -(-x.shape[d] // 2)) for d in (x.ndim - 3, x.ndim - 2)}
    out = x.windows(per_dim, call.describe())
    shape = list(out.shape)
    shape[-1] = 4 * x.shape[-1]
    if out.unknown:
        return out.as_unknown(out.unknown, shape=shape)
    res = out.like(shape=shape)
    if x.parts is not None and x.parts[0] == x.ndim - 1:
        # the output channels are four copies of the input's, the quadrants x[0::2, 0::2], x[1::2, 0::2],
        # x[0::2, 1::2], x[1::2, 1::2] (H, W): each concat piece appears in each, reading its one position
        c, h, w = x.shape[-1], x.ndim - 3, x.ndim - 2
        pieces = []
        for q, (dh, dw) in enumerate(((0, 0), (1, 0), (0, 1), (1, 1))):
            for a, b, piece in x.parts[1]:
                at = {h: (PAMap.affine(2, dh), PAMap.affine(2, dh), per_dim[h][2]),
                      w: (PAMap.affine(2, dw), PAMap.affine(2, dw), per_dim[w][2])}
                sub = piece.windows(at, call.describe())
                if sub.unknown:
                    return res
                pieces.append((q * c + a, q * c + b, sub))
        res.parts = (x.ndim - 1, tuple(pieces))
    return res


def maxvit_partition_attention_rule(call: OpCall) -> SymTensor:
    """torchvision MaxViT ``PartitionAttentionLayer`` on ``(B, C, H, W)`` (attention + MLP, residuals inside).

    ``window``: tokens in the same ``p x p`` block mix: ``L(u) = p*floor(u/p)``,
    ``H(u) = L(u) + p - 1``.  ``grid``: with ``p = n / g`` partitions, tokens
    with the same ``u mod p`` mix: ``L(u) = u mod p``, ``H(u) = L(u) + p*(g-1)``,
    written as a table over the whole dim (exact on every existing index).
    """
    x = tensor_arg(call)
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
    x = tensor_arg(call)
    target, expand = call.args[1], call.args[2]
    if x.ndim == target - 1:
        d = norm_dim(expand, x.ndim + 1)
        return x.reshape(x.shape[:d] + (1,) + x.shape[d:]), x.ndim
    return x, x.ndim


def mvit_squeeze_rule(call: OpCall) -> SymTensor:
    """torchvision MViT ``_squeeze(x, target_dim, expand_dim, tensor_dim)``."""
    x = tensor_arg(call)
    target, expand, rank = call.args[1], call.args[2], call.args[3]
    if rank == target - 1:
        d = norm_dim(expand, x.ndim)
        if x.shape[d] == 1:
            return x.reshape(x.shape[:d] + x.shape[d + 1 :])
    return x


def mvit_add_shortcut_rule(call: OpCall) -> SymTensor:
    """MViT ``_add_shortcut(x, shortcut, ...)``: an elementwise add."""
    return merge_rule(call.with_args(call.args[:2], module=None))


def mvit_add_rel_pos_rule(call: OpCall) -> SymTensor:
    """MViT ``_add_rel_pos(attn, q, ...)``: ``attn (B, h, Nq, Nk)`` plus a bias that each query token
    computes from its own channels: ``q (B, h, Nq, d)`` contracted over ``d`` and broadcast over keys."""
    attn, q = tensor_arg(call, 0, "attn"), as_operand(call.args[1])
    bias = q.reduce([q.ndim - 1], keepdim=True, what=call.describe())
    return merge_rule(call.with_args((attn, bias), module=None))


