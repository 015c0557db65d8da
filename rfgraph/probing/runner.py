"""Running a model's graph, cut at the probed nodes, on the sanitized copy (see `rfgraph.probing`)."""

from __future__ import annotations

import operator
import random
import weakref
from typing import Any, Callable, Iterable, Optional, Sequence

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from ..errors import ProbeError, RFGraphError
from ..rules.call import target_name
from ..rules.mixing import ADD_NAMES, FILL_NAMES, HIDING_LOGIT, MASK_CARRIERS, SOFTMAX_NAMES
from ..sanitize import (
    FUNCTION_REPLACEMENTS,
    IDENTITY_METHODS,
    IDENTITY_MODULE_TYPES,
    NORM_ALIASES,
    aten_overloads,
    hashable,
)

__all__ = ["Runner"]


#: Elementwise ops with broadcasting: an operand broadcast along a dimension
#: that carries the measured axis is a context path (detached).
_BROADCAST_FUNCTIONS = {
    operator.add, operator.sub, operator.mul, operator.truediv, operator.iadd, operator.isub, operator.imul,
    operator.itruediv, operator.pow, torch.add, torch.sub, torch.mul, torch.div, torch.true_divide, torch.where,
    torch.maximum, torch.minimum, torch.addcmul, torch.addcdiv, torch.lerp, torch.pow, torch.subtract,
    torch.multiply, torch.divide,
} | {op for name in ("add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "where", "maximum", "minimum",
                     "addcmul", "lerp") for op in aten_overloads(name)}
_BROADCAST_METHODS = {
    "add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "pow", "maximum", "minimum", "lerp", "addcmul",
    "addcdiv", "where", "__add__", "__radd__", "__mul__", "__rmul__", "__sub__", "__rsub__", "__truediv__",
    "__rtruediv__",
}
#: Ops that broadcast their single operand to a larger shape.
_EXPAND_METHODS = {"expand", "expand_as", "broadcast_to", "repeat"}
#: Resampling ops: upsampling a size-1 dim spreads one value (a global pooling branch, as in
#: DeepLab's ASPP image pooling) like a broadcast: also context.
_RESAMPLE_FUNCTIONS = {F.interpolate, F.upsample, F.upsample_bilinear, F.upsample_nearest} | {
    op for name in ("upsample_nearest1d", "upsample_nearest2d", "upsample_nearest3d", "upsample_linear1d",
                    "upsample_bilinear2d", "upsample_trilinear3d", "upsample_bicubic2d", "_upsample_nearest_exact2d",
                    "_upsample_bilinear2d_aa")
    for op in aten_overloads(name, ("default", "vec"))}
_EXPAND_FUNCTIONS = {torch.broadcast_to} | {op for name in ("expand", "expand_as", "broadcast_to", "repeat")
                                            for op in aten_overloads(name)}


#: Normalisation modules whose statistics are detached when they span a dim carrying the measured axis.
_NORM_MODULES: tuple[type, ...] = (nn.LayerNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm) + \
    ((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ())


def _norm(x, dims, weight, bias, eps, detach, rms=False):
    if rms:
        scale = x.pow(2).mean(dims, keepdim=True)
        if detach:
            scale = scale.detach()
        y = x * torch.rsqrt(scale + (eps if eps is not None else torch.finfo(x.dtype).eps))
    else:
        mean = x.mean(dims, keepdim=True)
        var = x.var(dims, unbiased=False, keepdim=True)
        if detach:
            mean, var = mean.detach(), var.detach()
        y = (x - mean) / torch.sqrt(var + eps)
    return y, weight, bias


def _affine(y, weight, bias, channel_dim: Optional[int]):
    if channel_dim is not None:
        shape = [1] * y.ndim
        shape[channel_dim] = -1
        weight = None if weight is None else weight.reshape(shape)
        bias = None if bias is None else bias.reshape(shape)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


# ---------------------------------------------------------------------------
# running the truncated graph
# ---------------------------------------------------------------------------


def _shape(v: Any) -> Optional[tuple[int, ...]]:
    return tuple(v.shape) if isinstance(v, torch.Tensor) else None


class Runner(fx.Interpreter):
    """Runs a graph module cut at one probed node (`rfgraph.tracing.cut`) on its sanitized copy.

    ``run(x, alt)`` returns the probed node's value and every node's output
    shape.  With ``alt`` (the node shapes of a shape-only run at another size of
    the measured axis) it also cuts context paths and registers the gradient
    renormalisation hooks.
    """

    def __init__(self, gm: fx.GraphModule, seed: int = 0):
        super().__init__(gm, garbage_collect_values=True)
        self.gen = torch.Generator().manual_seed(seed + 1)
        #: offsets into the pool: Python's generator, not torch's (a torch random op inside a hook is refused
        #: by the batched backward, ``is_grads_batched`` runs under vmap)
        self.offsets = random.Random(seed + 1)
        self._pools: dict[torch.dtype, torch.Tensor] = {}
        self._meta_ok = True
        self._meta_worked = False
        self._state_cache: Optional[dict[str, torch.Tensor]] = None
        self.alt: Optional[dict[fx.Node, Any]] = None
        self.device = torch.device("cpu")
        self.shape_only = False
        self.node_shapes: dict[fx.Node, Any] = {}
        self.cut = 0
        #: instance-norm statistics detached in a run with no other length to compare with (`_instance_stats_cut`)
        self.structural_cuts = 0
        #: called at every node of a run and of the backward (the probe's time budget: raises when spent)
        self.check: Optional[Callable[[], None]] = None
        #: renormalise only the outputs of ops that may change magnitudes (`_passes_magnitude`); set by the
        #: prober for support-safe graphs, where the hooks guard against underflow only (no cancellation)
        self.sparse_hooks = False
        #: the tensors hooked in the current run, by (id, version)
        self._hooked: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
        #: values whose hook waits for their one user (`_move_user`), and how many were left unhooked in the run
        self._deferred: dict[fx.Node, torch.Tensor] = {}
        self.skipped_hooks = 0
        self._node: Optional[fx.Node] = None
        #: the nodes at which the last refused shape-only run failed (`shapes`)
        self.refused_at: list[Optional[str]] = []
        #: entries hidden by an additive mask, per node on the way from the mask to a softmax (`_track_hidden`),
        #: and how many of the node's users have still to run
        self._hidden: dict[fx.Node, list] = {}

    # -- shape-only runs -------------------------------------------------------

    def shapes(self, input_shape: Sequence[int], dtype: torch.dtype,
               accepted: Optional[Sequence[int]] = None) -> dict[fx.Node, Any]:
        """Node output shapes for an input of ``input_shape``: on the meta device (a real run as a last resort).

        ``accepted``: a shape the model is known to accept (the analysed one); when the meta run fails and no
        meta run has worked yet, a meta run at ``accepted`` tells whether every op runs on meta (then the size
        is refused, with no real run) before a real run is tried.  When the size is refused (an exception),
        `refused_at` names the node at which each run failed."""
        self.refused_at = []
        if self._meta_ok:
            try:
                shapes = self._meta_shapes(input_shape, dtype)
                self._meta_worked = True
                return shapes
            except RFGraphError:
                raise
            except Exception:
                self.refused_at.append(self._node.name if self._node is not None else None)
                if not self._meta_worked and accepted is not None and tuple(accepted) != tuple(input_shape):
                    failed_at = self.refused_at
                    try:
                        self._meta_shapes(accepted, dtype)
                        self._meta_worked = True
                    except RFGraphError:
                        raise
                    except Exception:
                        pass
                    self.refused_at = failed_at
                if self._meta_worked:
                    # Every op of this graph runs on meta (it did at another size): the size is refused.
                    # No real run (a real forward of a refused size costs as much as a probe).
                    raise
        try:
            with torch.no_grad():
                _, shapes = self.run(torch.rand(tuple(input_shape), dtype=dtype), None, True)
        except RFGraphError:
            raise
        except Exception:
            self.refused_at.append(self._node.name if self._node is not None else None)
            raise
        return shapes

    def _meta_shapes(self, input_shape: Sequence[int], dtype: torch.dtype) -> dict[fx.Node, Any]:
        from torch.nn.utils.stateless import _reparametrize_module

        tensors = {k: torch.empty_like(v, device="meta") for k, v in self._state().items()}
        with _reparametrize_module(self.module, tensors):
            _, shapes = self.run(torch.empty(tuple(input_shape), dtype=dtype, device="meta"), None, True)
        return shapes

    def partial_shapes(self, input_shape: Sequence[int], dtype: torch.dtype) \
            -> tuple[Optional[dict[fx.Node, Any]], Optional[fx.Node]]:
        """Node output shapes of a shape-only (meta) run at ``input_shape`` that the graph may refuse part way:
        ``(shapes of the nodes computed, the node that refused it)``, the node ``None`` when none did.

        A graph traced by torch.export bakes sizes of the analysed input into some ops (a ``view`` to the
        analysed length): every other length fails there, after the nodes before it have their shapes.
        Only once a meta run of this graph has worked (a failure is then the size's, not the meta device's);
        otherwise ``(None, None)``, with nothing run.
        """
        if not self._meta_worked:
            return None, None
        try:
            return self.shapes(input_shape, dtype), None
        except RFGraphError:
            raise
        except Exception:
            return dict(self.node_shapes), self._node

    def reads_alt(self, n: fx.Node) -> bool:
        """Whether running ``n`` consults the other run's shapes to cut a context path (a normalisation's
        statistics, an operand broadcast, expanded or resampled from size 1): mirrors `_call`."""
        if n.op == "call_module":
            return isinstance(self.fetch_attr(n.target), _NORM_MODULES + (nn.Upsample,))
        if n.op == "call_method":
            return n.target in _BROADCAST_METHODS or n.target in _EXPAND_METHODS
        if n.op != "call_function" or not hashable(n.target):
            return False
        fn = n.target
        return fn in _BROADCAST_FUNCTIONS or fn in _EXPAND_FUNCTIONS or fn in _RESAMPLE_FUNCTIONS or \
            fn in NORM_ALIASES or fn in (F.layer_norm, F.group_norm, F.instance_norm) or \
            fn is getattr(F, "rms_norm", None)

    def spreads_fixed(self, n: fx.Node, shapes: dict[fx.Node, Any], alt: dict[fx.Node, Any],
                      sources: Iterable[fx.Node]) -> bool:
        """Whether ``n``, a node that consults the other run's shapes (`reads_alt`), has an output of the same
        shape in both runs and yet spreads one of ``sources`` (its operands that depend on the input) from size
        1 to a larger size (a resample, an expand, a broadcast), or, a normalisation, takes statistics over more
        than one position per channel.

        In a graph that accepts its analysed length only, such a size may be the analysed length baked into the
        op (torch.export fixes ``F.interpolate(x, size=(h, w))`` of smp PSPNet's global pooling branch): the
        other run, stopped further on, then shows no dim carrying the axis there, and the context path would go
        uncut (`Runner.partial_shapes`)."""
        out, other = shapes.get(n), alt.get(n)
        if not isinstance(out, tuple) or out != other or not out or isinstance(out[0], tuple):
            return False
        if n.op == "call_module" and isinstance(self.fetch_attr(n.target), _NORM_MODULES) or \
                n.op == "call_function" and hashable(n.target) and (
                    n.target in NORM_ALIASES or n.target in (F.layer_norm, F.group_norm, F.instance_norm)
                    or n.target is getattr(F, "rms_norm", None)):
            return any(s > 1 for s in out[2:])
        for src in n.all_input_nodes:
            s = shapes.get(src)
            if src not in sources or not isinstance(s, tuple) or not s or isinstance(s[0], tuple) or len(s) > len(out):
                continue
            s = (1,) * (len(out) - len(s)) + s
            if any(a == 1 and b > 1 for a, b in zip(s, out)):
                return True
        return False

    def _state(self) -> dict[str, torch.Tensor]:
        if self._state_cache is None:
            state = dict(self.module.named_parameters(remove_duplicate=False))
            state.update(self.module.named_buffers(remove_duplicate=False))
            self._state_cache = state
        return self._state_cache

    # -- the run -------------------------------------------------------------------

    def run(self, x: torch.Tensor, alt: Optional[dict[fx.Node, Any]], shape_only: bool = False):  # type: ignore[override]
        """The probed node's value for input ``x``, and the output shape of every node."""
        self.alt, self.shape_only = alt, shape_only
        self.device = x.device
        self.node_shapes = {}
        self.cut = 0
        self.structural_cuts = 0
        self._first_input = True
        self._node = None
        self._hooked = weakref.WeakValueDictionary()
        self._deferred = {}
        self._hidden = {}
        self.skipped_hooks = 0
        try:
            (out,) = super().run(x)
            for held in self._deferred.values():  # (a user that did not run: none in a cut graph)
                self._hook(held)
        finally:
            self._hooked = weakref.WeakValueDictionary()
            self._deferred = {}
            self._hidden = {}
        return out, self.node_shapes

    def run_node(self, n: fx.Node) -> Any:
        if self.check is not None:
            self.check()
        self._node = n
        value = super().run_node(n)
        if n.op == "output":
            return value
        if self.alt is not None:
            value = _rescale(value)
            self._settle_deferred(n, value)
            if not self.sparse_hooks and self._move_user(n) is not None and isinstance(value, torch.Tensor):
                self._deferred[n] = value  # hooked, or not, when its one user runs (`_settle_deferred`)
            else:
                self._hook(value, self.sparse_hooks and self._passes_magnitude(n))
        self.node_shapes[n] = _shapes_of(value)
        return value

    def _move_user(self, n: fx.Node) -> Optional[fx.Node]:
        """``n``'s only user when that user's backward hands ``n`` its own gradient moved, element for element
        (a view, permute, contiguous / clone, slice or select of ``n``; an ``add`` with ``n`` as an operand
        once, alpha 1, if ``n`` is not broadcast in it: checked when it runs), else ``None``.

        Then ``n``'s gradient is its user's, moved: when that one is renormalised (hooked), renormalising
        ``n``'s again draws other random magnitudes on the same non-zero pattern, and takes a full pass over
        the tensor (SwinUNETR 3d: the scores of its windowed attention, 44M float64 elements, go through
        ``matmul -> add (bias) -> view -> add (mask) -> view -> softmax``: 6 hooks, 2 needed).  Not an
        ``expand`` or a ``repeat`` (their backward sums), nor an indexing ``getitem`` (indices may repeat)."""
        if n.op in ("placeholder", "output") or len(n.users) != 1:
            return None
        (user,) = n.users
        if user.op not in ("call_function", "call_method"):
            return None
        name = target_name(user.target)
        if _uses(user, n) != 1:
            return None
        if name in _MOVE_OPS:
            return user if (user.args and user.args[0] is n) else None
        if name in _ADD_OPS and user.kwargs.get("alpha", 1) == 1 and len(user.args) == 2:
            return user
        return None

    def _settle_deferred(self, n: fx.Node, value: Any) -> None:
        """Hook (or not) the deferred arguments of ``n`` (`_move_user`) now that ``n``'s value is known: not when
        ``n``'s own gradient is renormalised (``n`` is hooked, or itself deferred and left unhooked by the same
        argument, down to a hooked node) and, for an ``add``, the argument has ``n``'s shape."""
        if not self._deferred:
            return
        for arg in n.all_input_nodes:
            held = self._deferred.pop(arg, None)
            if held is None:
                continue
            moved = isinstance(value, torch.Tensor) and value.requires_grad and value.is_floating_point() and \
                (target_name(n.target) in _MOVE_OPS or tuple(held.shape) == tuple(value.shape))
            if moved:
                self.skipped_hooks += 1
            else:
                self._hook(held)

    def placeholder(self, target, args, kwargs):
        if self._first_input:
            self._first_input = False
            return next(self.args_iter)
        if args:  # a further input with a default value
            return args[0]
        raise ProbeError(
            f"the model takes several inputs ({target!r} has no default); the probe feeds one tensor. "
            "Hint: wrap the model so that it takes a single image tensor."
        )

    def call_module(self, target, args, kwargs):
        if self.shape_only and isinstance(self.fetch_attr(target), _SHAPE_KEEPING):
            return args[0]
        return self._call(self._node, args, kwargs)

    def call_method(self, target, args, kwargs):
        return self._call(self._node, *_on_device(args, kwargs, self.device))

    def call_function(self, target, args, kwargs):
        if self.shape_only and hashable(target) and target in _SHAPE_KEEPING_FUNCTIONS:
            return args[0] if args else kwargs["input"]
        return self._call(self._node, *_on_device(args, kwargs, self.device))

    def _passes_magnitude(self, n: fx.Node) -> bool:
        """Whether ``n``'s backward hands each input the output gradient moved (views, concatenation,
        indexing), copied (a sum of operands) or scaled per channel by one positive factor (eval batch norm,
        weight / sqrt(var + eps): in about [0.4, 2.1] with the copy's weights and statistics, real running
        statistics of an exported graph kept): no magnitude drifts far through one such op, so with
        `sparse_hooks` its output is not renormalised (the next op that mixes positions, a conv, is)."""
        if n.op == "call_module":
            try:
                m = self.fetch_attr(n.target)
            except AttributeError:
                return False
            return isinstance(m, _MAGNITUDE_MODULES)
        if n.op == "call_method":
            return n.target in _MAGNITUDE_OPS
        if n.op == "call_function":
            if n.kwargs.get("alpha", 1) != 1:
                return False
            return target_name(n.target) in _MAGNITUDE_OPS
        return False

    def _hook(self, value: Any, skip: bool = False) -> None:
        """Register the renormalising hook on each tensor of ``value``, once per tensor object: a value that
        is the same tensor as an earlier node's (``getitem`` of a tuple, an activation made an identity,
        ``relu_`` included) is not hooked again (a second hook would renormalise the same gradient twice: the same
        non-zero pattern, another full pass over it)."""
        if isinstance(value, torch.Tensor):
            if value.requires_grad and value.is_floating_point():
                key = (id(value), value._version)  # an in-place op bumps the version: hooked again
                if self._hooked.get(key) is value:
                    return
                self._hooked[key] = value
                if skip:  # (marked seen: an identity after it returns it again, not to be hooked then)
                    return
                self._pool_for(value.dtype, value.numel())  # drawn now: no random op inside the backward
                value.register_hook(self._renormalise)
        elif isinstance(value, (list, tuple)):
            for v in value:
                self._hook(v, skip)

    def _renormalise(self, g: torch.Tensor) -> torch.Tensor:
        """Keep the gradient's non-zero pattern; give it fresh positive random magnitudes.

        The magnitudes are a random slice of a pool of ``U(0.5, 1.5)`` values
        (drawing a new tensor for every node would dominate the backward's cost).  The pool is drawn during
        the forward (`_hook`) and the offset comes from Python's generator: the hook makes no torch random
        call, which the batched backward (``is_grads_batched``, run under vmap) refuses.
        """
        if g is None:  # an output of a multi-output op that this unit does not reach
            return g
        if self.check is not None:
            self.check()
        numel = g.numel()
        pool = self._pool_for(g.dtype, numel)
        offset = self.offsets.randrange(pool.numel() - numel + 1)
        return torch.where(g != 0, pool[offset: offset + numel].view(g.shape), 0.0)

    def _pool_for(self, dtype: torch.dtype, numel: int) -> torch.Tensor:
        pool = self._pools.get(dtype)
        if pool is None or pool.numel() < 2 * numel:
            pool = self._pools[dtype] = torch.rand(max(2 * numel, 1 << 16), generator=self.gen, dtype=dtype).add_(0.5)
        return pool

    # -- per-op behaviour ------------------------------------------------------------

    def _varies(self, node_or_value: Any, shapes, alt) -> set[int]:
        """Dims (of a node's output) whose size differs between this run and the shape-only run."""
        if not isinstance(node_or_value, fx.Node):
            return set()
        a, b = shapes.get(node_or_value), alt.get(node_or_value)
        if not isinstance(a, tuple) or not isinstance(b, tuple) or len(a) != len(b):
            return set()
        if a and isinstance(a[0], tuple):
            return set()
        return {d for d, (x, y) in enumerate(zip(a, b)) if x != y}

    def _call(self, n: fx.Node, args, kwargs):
        out = self._masked_softmax(n, args, kwargs) if self._hidden else None
        if out is None:
            if _is_sdpa(n):
                args, kwargs = _hide_in_sdpa_mask(args, kwargs)
            out = self._call_op(n, args, kwargs)
        if not self.shape_only:
            self._track_hidden(n, args, kwargs, out)
        if self._hidden:
            self._release_hidden(n)
        return out

    # -- additive masks: a logit of -100 or less is a hidden entry ----------------------------------

    def _track_hidden(self, n: fx.Node, args, kwargs, out: Any) -> None:
        """Follow the entries that an additive mask hides (`HIDING_LOGIT`) from the ``add`` of the mask to a
        softmax: an ``add`` of a constant (a value that does not require grad: no input flows into it) with
        entries of -100 or less, or a ``masked_fill`` of -100 or less by a constant mask, starts the pattern;
        moves (views, permutes, dtype changes) and further adds carry it."""
        if not isinstance(out, torch.Tensor) or not out.is_floating_point() or not out.requires_grad:
            return
        name = target_name(n.target) if n.op != "call_module" else ""
        hidden = None
        if name in ADD_NAMES and len(args) == 2 and kwargs.get("alpha", 1) == 1:
            parts = []
            for src, value in zip(n.args, args):
                if isinstance(src, fx.Node) and src in self._hidden:
                    parts.append(self._hidden[src][0])
                elif isinstance(value, torch.Tensor) and value.is_floating_point() and not value.requires_grad:
                    hides = value <= HIDING_LOGIT
                    if bool(hides.any()):
                        parts.append(hides)
            for part in parts:
                try:
                    part = torch.broadcast_to(part, out.shape)
                except RuntimeError:
                    return
                hidden = part if hidden is None else hidden | part
        elif name in FILL_NAMES and len(args) >= 3 and isinstance(args[2], (int, float)) \
                and args[2] <= HIDING_LOGIT and isinstance(args[1], torch.Tensor) and args[1].dtype == torch.bool \
                and not args[1].requires_grad:
            try:
                hidden = torch.broadcast_to(args[1], out.shape)
            except RuntimeError:
                return
            src = n.args[0]
            if isinstance(src, fx.Node) and src in self._hidden:
                hidden = hidden | self._hidden[src][0]
        elif name in MASK_CARRIERS and n.args and isinstance(n.args[0], fx.Node) and n.args[0] in self._hidden:
            held = self._hidden[n.args[0]][0]
            if name in _DTYPE_MOVES:
                hidden = held
            else:
                move = _RESHAPES.get(name, name)
                try:
                    hidden = getattr(held, move)(*args[1:], **kwargs) if n.op == "call_method" else \
                        getattr(torch, move)(held, *args[1:], **kwargs)
                except (RuntimeError, TypeError, AttributeError):
                    return
        if hidden is not None and tuple(hidden.shape) == tuple(out.shape) and n.users:
            self._hidden[n] = [hidden, len(n.users)]

    def _release_hidden(self, n: fx.Node) -> None:
        for src in n.all_input_nodes:
            held = self._hidden.get(src)
            if held is not None:
                held[1] -= 1
                if held[1] <= 0:
                    del self._hidden[src]

    def _masked_softmax(self, n: fx.Node, args, kwargs) -> Optional[torch.Tensor]:
        """A softmax of logits that an additive mask shifted by -100 or less (`_track_hidden`): those entries
        are given the weight 0 (-inf logits), as the mask means, unless a whole row is hidden.  ``None`` when
        ``n`` is not such a softmax."""
        dim = _softmax_dim(self, n, args, kwargs)
        src = n.args[0] if n.args else None
        if dim is None or not isinstance(src, fx.Node) or src not in self._hidden:
            return None
        masked = _as_minus_inf(args[0], self._hidden[src][0], dim)
        return self._call_op(n, (masked,) + tuple(args[1:]), kwargs)

    def _call_op(self, n: fx.Node, args, kwargs):
        shapes, alt = self.node_shapes, self.alt
        if n.op == "call_module":
            m = self.fetch_attr(n.target)
            if alt is not None and isinstance(m, _NORM_MODULES):
                out = self._norm_module(n, m, args, kwargs, shapes, alt)
                if out is not None:
                    return out
            out = m(*args, **kwargs)
            if alt is not None and isinstance(m, nn.Upsample) and n.args:
                out = self._detach_if_expanded(n, n.args[0], out, shapes, alt)
            return out
        if n.op == "call_method":
            name = n.target
            if name in IDENTITY_METHODS:
                return args[0]
            if alt is not None and name in _BROADCAST_METHODS:
                return self._broadcast(n, lambda *a: getattr(a[0], name)(*a[1:], **kwargs), args, shapes, alt)
            out = getattr(args[0], name)(*args[1:], **kwargs)
            if alt is not None and name in _EXPAND_METHODS:
                out = self._detach_if_expanded(n, n.args[0], out, shapes, alt)
            return out
        fn = n.target
        replacement = FUNCTION_REPLACEMENTS.get(fn) if hashable(fn) else None
        if replacement is not None:
            return replacement(*args, **kwargs)
        if alt is not None and hashable(fn):
            if fn in _BROADCAST_FUNCTIONS:
                return self._broadcast(n, lambda *a: fn(*a, **kwargs), args, shapes, alt)
            if fn in (F.layer_norm, F.group_norm, F.instance_norm) or fn is getattr(F, "rms_norm", None):
                return self._norm_function(n, fn, args, kwargs, shapes, alt)
            if fn in NORM_ALIASES:
                return self._norm_function(n, NORM_ALIASES[fn], args, kwargs, shapes, alt, call=fn)
            out = fn(*args, **kwargs)
            if fn in _EXPAND_FUNCTIONS or fn in _RESAMPLE_FUNCTIONS:
                out = self._detach_if_expanded(n, n.args[0] if n.args else n.kwargs.get("input"), out, shapes, alt)
            return out
        return fn(*args, **kwargs)

    def _broadcast(self, n: fx.Node, fn: Callable, args, shapes, alt):
        """Elementwise op: detach operands broadcast from size 1 along a dim that carries the measured axis."""
        tensors = [a for a in args if isinstance(a, torch.Tensor)]
        if len(tensors) < 2:
            return fn(*args)
        out_shape = tuple(torch.broadcast_shapes(*[t.shape for t in tensors]))
        alt_out = alt.get(n)
        if not isinstance(alt_out, tuple) or len(alt_out) != len(out_shape) or \
                (alt_out and isinstance(alt_out[0], tuple)):
            return fn(*args)
        varying = {d for d, (x, y) in enumerate(zip(out_shape, alt_out)) if x != y}
        if not varying:
            return fn(*args)
        new_args = list(args)
        sources = list(n.args) + [None] * len(args)
        for i, a in enumerate(args):
            if not isinstance(a, torch.Tensor) or not a.requires_grad:
                continue
            if _broadcast_along(tuple(a.shape), _alt_shape(sources[i], alt), len(out_shape), varying):
                new_args[i] = a.detach()
                self.cut += 1
        return fn(*new_args)

    def _detach_if_expanded(self, n: fx.Node, src: Any, out: Any, shapes, alt):
        if not isinstance(out, torch.Tensor) or not isinstance(src, fx.Node):
            return out
        varying = self._varies(n, {n: tuple(out.shape)}, alt)
        a = shapes.get(src)
        if not varying or not isinstance(a, tuple) or (a and isinstance(a[0], tuple)):
            return out
        if self._varies(src, shapes, alt):
            return out  # the source holds the measured axis itself: spread along a new dim, still a data path
        if _broadcast_along(a, _alt_shape(src, alt), out.ndim, varying):
            self.cut += 1
            return out.detach()
        return out

    def _stat_dims_vary(self, src: Any, dims: Iterable[int], shapes, alt) -> bool:
        varying = self._varies(src, shapes, alt)
        return any(d in varying for d in dims)

    def _instance_stats_cut(self, src: Any, dims: Iterable[int], shapes, alt) -> bool:
        """Whether an instance normalisation's statistics (over every dim after the channels) are detached: when
        those dims carry the measured axis (their sizes differ in the other run), and, in a run with no other
        run to compare with (``alt`` empty: a graph that accepts its analysed length only), always.

        Always, because an instance norm's output at ``(n, c, s)`` reads ``x[n, c, s]`` itself and, through
        the statistics, ``x[n, c, :]``.  If the axis is carried by the dims after the channels, the statistics
        span all of it: a context path, which the probe cuts.  If it is carried by the channels only, the
        positions ``s`` of a channel all sit at that channel's place along the axis, and the probe's seeds are
        whole slices along every other dim: the statistics add no place along the axis that the direct path
        does not read.  So detaching them removes a context path or (in such layouts, up to the sparsity of the
        gradient inside a slice) nothing local.  `structural_cuts` counts these detachments."""
        if self._stat_dims_vary(src, dims, shapes, alt):
            return True
        if alt is not None and not alt:
            self.structural_cuts += 1
            return True
        return False

    def _norm_module(self, n, m, args, kwargs, shapes, alt):
        x = args[0] if args else kwargs.get("input")
        if not isinstance(x, torch.Tensor) or len(args) > 1:
            return None
        src = n.args[0] if n.args else n.kwargs.get("input")
        if isinstance(m, nn.GroupNorm):
            dims = range(2, x.ndim)
            if not self._stat_dims_vary(src, dims, shapes, alt):
                return None
            xs = x.reshape(x.shape[0], m.num_groups, -1)
            y, _, _ = _norm(xs, (2,), None, None, m.eps, True)
            return _affine(y.reshape(x.shape), m.weight, m.bias, 1)
        if isinstance(m, nn.modules.instancenorm._InstanceNorm):
            if m.track_running_stats and not m.training:
                return None
            dims = tuple(range(2, x.ndim))
            if not self._instance_stats_cut(src, dims, shapes, alt):
                return None
            y, _, _ = _norm(x, dims, None, None, m.eps, True)
            return _affine(y, m.weight, m.bias, 1)
        k = len(tuple(m.normalized_shape))
        dims = tuple(range(x.ndim - k, x.ndim))
        if not self._stat_dims_vary(src, dims, shapes, alt):
            return None
        rms = not isinstance(m, nn.LayerNorm)
        y, _, _ = _norm(x, dims, None, None, m.eps, True, rms=rms)
        return _affine(y, m.weight, getattr(m, "bias", None), None)

    def _norm_function(self, n, fn, args, kwargs, shapes, alt, call=None):
        """``fn`` (an F normalisation) says how to read the arguments; ``call`` is what the graph calls."""
        x = args[0]
        src = n.args[0]
        if call is not None:
            original = call

            def fn_call(*a, **k):
                return original(*a, **k)
        else:
            fn_call = fn
        if fn is F.group_norm:
            names = ("input", "num_groups", "weight", "bias", "eps")
            a = {"weight": None, "bias": None, "eps": 1e-5, **dict(zip(names, args)), **kwargs}
            if not self._stat_dims_vary(src, range(2, x.ndim), shapes, alt):
                return fn_call(*args, **kwargs)
            y, _, _ = _norm(x.reshape(x.shape[0], a["num_groups"], -1), (2,), None, None, a["eps"], True)
            return _affine(y.reshape(x.shape), a["weight"], a["bias"], 1)
        if fn is F.instance_norm:
            names = ("input", "running_mean", "running_var", "weight", "bias", "use_input_stats", "momentum", "eps")
            if call in _ATEN_INSTANCE_NORM:  # aten's order: weight and bias before the running statistics
                names = ("input", "weight", "bias", "running_mean", "running_var", "use_input_stats", "momentum", "eps")
            a = {"running_mean": None, "running_var": None, "weight": None, "bias": None, "use_input_stats": True,
                 "momentum": 0.1, "eps": 1e-5, **dict(zip(names, args)), **kwargs}
            dims = tuple(range(2, x.ndim))
            if not a["use_input_stats"] or not self._instance_stats_cut(src, dims, shapes, alt):
                return fn_call(*args, **kwargs)
            y, _, _ = _norm(x, dims, None, None, a["eps"], True)
            return _affine(y, a["weight"], a["bias"], 1)
        rms = fn is not F.layer_norm
        names = ("input", "normalized_shape", "weight", "eps") if rms else \
            ("input", "normalized_shape", "weight", "bias", "eps")
        a = {"weight": None, "bias": None, "eps": None if rms else 1e-5, **dict(zip(names, args)), **kwargs}
        shape = a["normalized_shape"]
        k = 1 if isinstance(shape, int) else len(tuple(shape))
        dims = tuple(range(x.ndim - k, x.ndim))
        if not self._stat_dims_vary(src, dims, shapes, alt):
            return fn_call(*args, **kwargs)
        y, _, _ = _norm(x, dims, None, None, a["eps"], True, rms=rms)
        return _affine(y, a["weight"], a.get("bias"), None)


#: Modules whose output has their input's shape: skipped by shape-only runs (meta batchnorm is slow).
_SHAPE_KEEPING: tuple[type, ...] = (
    nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.Identity, nn.modules.instancenorm._InstanceNorm,
) + IDENTITY_MODULE_TYPES


#: Ops whose backward moves, copies or boundedly scales the gradient (`Runner._passes_magnitude`), by name
#: (methods, functions, aten ops).
_MAGNITUDE_OPS = frozenset({
    "add", "add_", "iadd", "__add__", "__radd__", "__iadd__", "batch_norm", "_native_batch_norm_legit_no_training",
    "view", "reshape", "_unsafe_view", "view_as", "reshape_as", "permute", "transpose", "t", "flatten", "unflatten",
    "unsqueeze", "squeeze", "contiguous", "clone", "cat", "concat", "getitem", "expand", "expand_as", "alias",
})
#: Ops whose backward hands their first argument the output's gradient moved, element for element (no sum,
#: no scale): `Runner._move_user`.  And the adds, whose backward hands an operand of the output's shape the
#: output's gradient itself.
_MOVE_OPS = frozenset({
    "view", "reshape", "_unsafe_view", "view_as", "reshape_as", "permute", "transpose", "t", "flatten", "unflatten",
    "unsqueeze", "squeeze", "contiguous", "clone", "alias", "slice", "select", "narrow", "movedim",
})
_ADD_OPS = frozenset({"add", "__add__", "__radd__"})

#: The moves (`MASK_CARRIERS`) that change no value, only the dtype: the hidden entries stay as they are; the
#: other moves are applied to them (views taken as reshapes: the mask may be broadcast).
_DTYPE_MOVES = frozenset({"to", "float", "double", "half", "type_as", "_to_copy", "contiguous", "clone", "alias"})
_RESHAPES = {"view": "reshape", "_unsafe_view": "reshape"}
_SDPA_FUNCTIONS = {F.scaled_dot_product_attention} | set(aten_overloads("scaled_dot_product_attention"))


def _softmax_dim(runner: Runner, n: fx.Node, args, kwargs) -> Optional[int]:
    """The dim of a softmax node (module, function, method or aten op), else ``None``."""
    if n.op == "call_module":
        m = runner.fetch_attr(n.target)
        return m.dim if isinstance(m, nn.Softmax) else None
    if n.op not in ("call_method", "call_function") or target_name(n.target) not in SOFTMAX_NAMES:
        return None
    dim = args[1] if len(args) > 1 else kwargs.get("dim")
    return dim if isinstance(dim, int) else None


def _is_sdpa(n: fx.Node) -> bool:
    return n.op == "call_function" and hashable(n.target) and n.target in _SDPA_FUNCTIONS


def _as_minus_inf(x: torch.Tensor, hidden: torch.Tensor, dim: int) -> torch.Tensor:
    """``x`` with its ``hidden`` entries -inf, except in rows (along ``dim``) hidden whole: a softmax of those
    would be NaN, and the mask means nothing there."""
    return x.masked_fill(hidden & ~hidden.all(dim, keepdim=True), float("-inf"))


def _hide_in_sdpa_mask(args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """``scaled_dot_product_attention``'s arguments with a constant float mask's entries of -100 or less
    made -inf (`HIDING_LOGIT`), unless they hide a whole row."""
    mask = args[3] if len(args) > 3 else kwargs.get("attn_mask")
    if not isinstance(mask, torch.Tensor) or not mask.is_floating_point() or mask.requires_grad:
        return args, kwargs
    hidden = mask <= HIDING_LOGIT
    if not bool(hidden.any()):
        return args, kwargs
    mask = _as_minus_inf(mask, hidden, -1)
    if len(args) > 3:
        return args[:3] + (mask,) + tuple(args[4:]), kwargs
    return args, {**kwargs, "attn_mask": mask}


def _uses(user: fx.Node, n: fx.Node) -> int:
    """How many times ``n`` is an argument of ``user``."""
    count = 0

    def see(a: fx.Node) -> fx.Node:
        nonlocal count
        count += a is n
        return a

    fx.node.map_arg((user.args, user.kwargs), see)
    return count


_MAGNITUDE_MODULES: tuple[type, ...] = (nn.modules.batchnorm._BatchNorm, nn.Identity, nn.Flatten, nn.Unflatten) \
    + IDENTITY_MODULE_TYPES


_ATEN_INSTANCE_NORM = frozenset(aten_overloads("instance_norm"))

#: Functions whose single tensor output has their input's shape: skipped by shape-only runs (batch norm runs
#: a Python decomposition on meta: half the time of a shape-only run of an exported smp model).
_SHAPE_KEEPING_FUNCTIONS = {F.batch_norm, torch.batch_norm} | set(aten_overloads("batch_norm", ("default",)))


def _on_device(args: tuple, kwargs: dict, device: torch.device) -> tuple[tuple, dict]:
    """``args`` and ``kwargs`` with every device in them (``torch.zeros(..., device=x.device)``) made the run's.

    A graph records the device of the traced values as constants: a graph exported from a model on the ``meta``
    device creates ``aten.zeros(..., device=meta)`` and ``aten.scalar_tensor(k, device=meta)`` (MONAI's
    SwinUNETR builds its shifted-window attention mask so, in ``forward``).  On the CPU copy those made tensors
    with no values, which no CPU op accepts; the copy's shape-only runs are on ``meta`` and its real runs on
    the CPU, and the tensors a graph creates follow them (their values are computed for real).
    """
    def fix(v: Any) -> Any:
        return device if isinstance(v, torch.device) and v != device else v

    if any(isinstance(v, torch.device) for v in args) or any(isinstance(v, torch.device) for v in kwargs.values()):
        return tuple(fix(v) for v in args), {k: fix(v) for k, v in kwargs.items()}
    return args, kwargs


def _rescale(value: Any) -> Any:
    """Divide a tensor whose magnitude drifts far from 1 by a detached scalar.

    Multiplicative gates (x * f(x)) square magnitudes block after block, which
    overflows even float64; dividing by a constant changes no dependence.
    """
    if isinstance(value, torch.Tensor) and value.is_floating_point() and value.requires_grad and value.numel():
        m = float(value.detach().abs().amax())
        if m > 1e6 or 0 < m < 1e-6:
            return value / m
    return value


def _alt_shape(src: Any, alt: dict) -> Optional[tuple]:
    if not isinstance(src, fx.Node):
        return None  # a constant: the same shape in every run
    shape = alt.get(src)
    return shape if isinstance(shape, tuple) and not (shape and isinstance(shape[0], tuple)) else None


def _broadcast_along(shape: tuple, alt_shape: Optional[tuple], out_ndim: int, varying: Iterable[int]) -> bool:
    """Whether an operand of ``shape`` (``alt_shape`` in the other run) is spread from size 1 (or a missing
    leading dim) along some output dim in ``varying``: a constant along the measured axis, i.e. context."""
    lead = out_ndim - len(shape)
    for d in varying:
        if d < lead:
            return True
        if shape[d - lead] == 1 and (alt_shape is None or len(alt_shape) != len(shape) or alt_shape[d - lead] == 1):
            return True
    return False


def _shapes_of(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return tuple(value.shape)
    if isinstance(value, (list, tuple)) and any(isinstance(v, torch.Tensor) for v in value):
        return tuple(_shapes_of(v) if isinstance(v, torch.Tensor) else None for v in value)
    return None
