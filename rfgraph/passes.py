"""The symbolic pass: an `fx.Interpreter` that runs rules instead of ops.

Every value in the environment is either a `SymTensor` (shape, dtype and
receptive fields; no data), a constant tensor of the model (parameters,
buffers, tensors built from Python numbers), or a plain Python value (sizes,
tuples).  Calls whose arguments hold no `SymTensor` are executed for real
(shape arithmetic, constants); calls on a `SymTensor` go to the rule
registered for their target (`rfgraph.rules`).  A target with no rule goes to
the fallback: by default `rfgraph.fallback` probes the op alone and fits its
window maps (``probed``); with ``fallback="unknown"`` its output shape is
learned by running it on shape-only tensors, and the node and all that depends
on it are marked ``unknown``, with the op named.
"""

from __future__ import annotations

import copy
import operator
import os
import types
from math import lcm
from typing import Any, Callable, Optional, Union

import torch
import torch.fx as fx
from torch import nn

from .algebra import GLOBAL, Field, PAMap, SlopeMismatch
from .errors import InputShapeError, InputTooSmallError, NotAModuleError, RFGraphError, RuleError
from .fallback import fallback as probe_fallback
from .inputs import check_input_shape, example_input, explain_too_small, ordered_inputs
from .locking import serialized
from .results import Analysis, NodeRF
from .rules import DEFAULT_RULES, OpCall, RuleSet, describe_target, named_function_rules
from .rules.channels import ChannelError, check_channels
from .rules.mixing import ADD_NAMES, FILL_NAMES, HIDING_LOGIT, target_name
from .tracing import Traced, export_trace, trace
from .values import Axis, MergeInfo, SymTensor, collect, shape_by_execution

__all__ = ["analyze", "SymbolicPass", "contains_sym", "shape_by_execution"]


def contains_sym(value: Any) -> bool:
    """True when ``value`` (possibly nested in lists, tuples, dicts) holds a `SymTensor`."""
    if isinstance(value, SymTensor):
        return True
    if isinstance(value, (list, tuple)):
        return any(contains_sym(v) for v in value)
    if isinstance(value, dict):
        return any(contains_sym(v) for v in value.values())
    return False


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def _mutable(value: Any) -> Any:
    if isinstance(value, list):  # fx's immutable_list is a list subclass
        return [_mutable(v) for v in value]
    if isinstance(value, dict):
        return {k: _mutable(v) for k, v in value.items()}
    return value


#: Functions of ``operator`` that change their first argument in place.
_INPLACE_OPERATORS = frozenset({
    operator.iadd, operator.isub, operator.imul, operator.itruediv, operator.ifloordiv, operator.imod,
    operator.ipow, operator.imatmul, operator.iand, operator.ior, operator.ixor, operator.ilshift,
    operator.irshift, operator.setitem, operator.delitem,
})


def _mutates(target: Any, kwargs: dict) -> bool:
    """Whether a call changes one of its tensor arguments: ``Tensor.add_``, ``torch.relu_``, ``x[i] = v``,
    ``x += 1``, ``out=``, aten ops whose schema writes to an argument."""
    if "out" in kwargs:
        return True
    if target in _INPLACE_OPERATORS:
        return True
    schema = getattr(target, "_schema", None)
    if schema is not None and getattr(schema, "is_mutable", False):
        return True
    name = target if isinstance(target, str) else getattr(target, "__name__", "")
    if not isinstance(name, str):
        return False
    if name in ("__setitem__", "__delitem__") or (name.startswith("__i") and name.endswith("__")):
        return True
    return name.endswith("_") and not name.startswith("__") and not name.endswith("__")


#: ``x.item()`` spellings.  On a model built on the meta device a constant has no value: a floating one's
#: item is NaN (harmless as a fill value, ``torch.full(shape, stride)`` in a YOLO head; an error in any
#: size arithmetic, never a silent wrong shape).  Integer items still raise.
_ITEM = frozenset({torch.ops.aten.item.default, torch.ops.aten._local_scalar_dense.default})
_META_ITEM = float("nan")


def _meta_float(args: tuple) -> bool:
    return (len(args) == 1 and isinstance(args[0], torch.Tensor) and args[0].device.type == "meta"
            and args[0].dtype.is_floating_point)


def _map_tensors(value: Any, fn: Callable) -> Any:
    if isinstance(value, torch.Tensor):
        return fn(value)
    if isinstance(value, (list, tuple)):
        items = [_map_tensors(v, fn) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    if isinstance(value, dict):
        return {k: _map_tensors(v, fn) for k, v in value.items()}
    return value


def _to_unknown(value: Any, reason: str) -> Any:
    if isinstance(value, torch.Tensor):
        out = SymTensor(tuple(value.shape), value.dtype)
        out.unknown = reason
        return out
    if isinstance(value, (list, tuple)):
        items = [_to_unknown(v, reason) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    if isinstance(value, dict):
        return {k: _to_unknown(v, reason) for k, v in value.items()}
    return value


class SymbolicPass(fx.Interpreter):
    """Propagate `SymTensor` values through a traced graph, recording a `NodeRF` per tensor node."""

    def __init__(
        self,
        traced: Traced,
        rules: RuleSet = DEFAULT_RULES,
        device: Optional[torch.device] = None,
        fallback: Optional[Callable[[OpCall], Any]] = None,
        check_shapes: bool = False,
    ):
        super().__init__(traced.graph_module, garbage_collect_values=True)
        self.extra_traceback = False  # our errors name the node already; fx would append the graph's code
        self.traced = traced
        self.rules = rules
        self.check_shapes = check_shapes
        self.device = device if device is not None else _model_device(traced.graph_module)
        self.fallback = fallback or self.unknown_fallback
        self.records: list[NodeRF] = []
        #: nodes whose value reads the input (a `SymTensor` that is not constant)
        self.data_nodes: set[fx.Node] = set()
        #: constant masks: float tensors added to something (whether an entry hides, `rules.mixing.HIDING_LOGIT`)
        #: and boolean ones that ``masked_fill`` uses (whether an entry is True); ``None`` when their values are
        #: unknown (the meta device); read by the softmax rules
        self.constant_hides: dict[fx.Node, Optional[bool]] = {}
        self._merge_info: dict[fx.Node, MergeInfo] = {}
        self._summaries: dict[Field, tuple] = {}
        self._ndim = 0
        self.unknown_ops: dict[str, int] = {}
        self._copies: dict[str, torch.Tensor] = {}
        self._module_copies: dict[str, nn.Module] = {}
        self._storages: Optional[dict[int, str]] = None

    # -- entry point -------------------------------------------------------------

    def propagate(
        self, input_shape: tuple[int, ...], dtype: torch.dtype = torch.float32, args: Optional[list] = None
    ) -> list[NodeRF]:
        """Run the pass on an input of ``input_shape``; ``args`` replaces the inputs (several inputs)."""
        self._ndim = len(input_shape) - 2
        self._input_shape = tuple(input_shape)
        self.run(*(args if args is not None else [SymTensor.input(input_shape, dtype)]))
        return self.records

    # -- node execution ----------------------------------------------------------

    def run_node(self, n: fx.Node) -> Any:
        self._current = n
        try:
            value = super().run_node(n)
        except RFGraphError:
            raise
        except AssertionError as exc:
            raise InputShapeError(
                f"the model rejected the input {self._input_shape} at node {self.traced.name(n)!r}: {exc}"
            ) from exc
        except Exception as exc:
            raise RuleError(
                f"symbolic pass failed at node {self.traced.name(n)!r} ({describe_target(n)}): "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if isinstance(value, SymTensor) or contains_sym(value):
            self.records.append(self._record(n, value))
            if isinstance(value, SymTensor) and not value.is_constant:
                self.data_nodes.add(n)
        elif isinstance(value, torch.Tensor) and value.is_floating_point() and _used_by(n, ADD_NAMES):
            self.constant_hides[n] = None if value.is_meta else bool((value <= HIDING_LOGIT).any())
        elif isinstance(value, torch.Tensor) and value.dtype == torch.bool and _used_by(n, FILL_NAMES):
            self.constant_hides[n] = None if value.is_meta else bool(value.any())
        return value

    def call_function(self, target, args, kwargs):
        if not contains_sym(args) and not contains_sym(kwargs):
            # fx hands list constants over as immutable lists; the eager code may mutate them
            # (torchvision's video Swin adapts its window list in place).
            args, kwargs = tuple(map(_mutable, args)), {k: _mutable(v) for k, v in kwargs.items()}
            if _mutates(target, kwargs):
                args = self._private_copy(args)
            if target in _ITEM and _meta_float(args):
                return _META_ITEM
            return target(*args, **kwargs)
        return self._apply(target, None, args, kwargs)

    def call_method(self, target: str, args, kwargs):
        if not contains_sym(args) and not contains_sym(kwargs):
            if _mutates(target, kwargs):
                args = self._private_copy(args)
            self_obj, *rest = args
            if target == "item" and _meta_float(args):
                return _META_ITEM
            return getattr(self_obj, target)(*rest, **kwargs)
        return self._apply(target, None, args, kwargs)

    def call_module(self, target: str, args, kwargs):
        module = self.fetch_attr(target)
        if not contains_sym(args) and not contains_sym(kwargs):
            return self._private_module(target, module)(*args, **kwargs)
        return self._apply(target, module, args, kwargs)

    def get_attr(self, target, args, kwargs):
        if target in self._copies:
            return self._copies[target]
        return super().get_attr(target, args, kwargs)

    # -- the model is never changed --------------------------------------------------
    #
    # Calls on constants run for real (shape arithmetic, position tables).  An in-place op on a
    # tensor the model owns (``self.step.add_(1)`` in forward) runs on a private copy instead, and
    # later reads of that attribute in this pass see the copy; a submodule called on constants
    # runs as a copy when it owns buffers (a batchnorm in training mode would update its statistics).

    def _state_storages(self) -> dict[int, str]:
        if self._storages is None:
            gm = self.traced.graph_module
            self._storages = {}
            for name, t in list(gm.named_parameters()) + list(gm.named_buffers()):
                if not t.is_meta:
                    self._storages.setdefault(t.untyped_storage().data_ptr(), name)
            for name, t in vars(gm).items():  # plain tensor attributes of the traced module (export consts)
                if isinstance(t, torch.Tensor) and not t.is_meta:
                    self._storages.setdefault(t.untyped_storage().data_ptr(), name)
        return self._storages

    def _owned(self, t: Any) -> Optional[str]:
        if not isinstance(t, torch.Tensor) or t.is_meta:
            return None
        return self._state_storages().get(t.untyped_storage().data_ptr())

    def _private_copy(self, args: tuple) -> tuple:
        """``args`` with the model's tensors among them replaced by private copies (kept for later reads)."""
        out = list(args)
        for i, a in enumerate(out):
            owner = self._owned(a)
            if owner is None:
                continue
            copy_ = a.detach().clone()
            out[i] = copy_
            n = self._current.args[i] if i < len(self._current.args) else None
            if isinstance(n, fx.Node) and n.op == "get_attr":
                self._copies[n.target] = copy_
                if n in self.env:
                    self.env[n] = copy_
        return tuple(out)

    def _private_module(self, target: str, module: nn.Module) -> nn.Module:
        if not any(True for _ in module.buffers()):
            return module
        if target not in self._module_copies:
            self._module_copies[target] = copy.deepcopy(module)
        return self._module_copies[target]

    def output(self, target, args, kwargs):
        return args[0]

    def _apply(self, target, module, args, kwargs):
        call = OpCall(self._current, target, module, tuple(args), dict(kwargs), self)
        check_channels(call)  # a channels-last input would otherwise flow through the rules unnoticed
        rule = self.rules.lookup(call)
        if rule is None:
            if all(t.is_constant for t in call.sym_args()):
                return self.constant(call)
            return self.fallback(call)
        try:
            out = rule(call)
        except SlopeMismatch as exc:
            # a finite (table) field reaching a layout the rule can follow only for periodic maps:
            # unknown, with the op and the reason, never a guess
            out = self.unknown_fallback(call, reason=f"{call.describe()}: {exc}")
        if self.check_shapes:
            self._check_shapes(rule, call, out)
        return out

    def _check_shapes(self, rule, call: OpCall, out: Any) -> None:
        """Debug mode: the rule's output shapes must be torch's (run on data-free tensors)."""
        try:
            real = shape_by_execution(self._callable(call), call.args, call.kwargs, self.device)
        except Exception:  # the op cannot run on stand-ins (data-dependent): nothing to compare with
            return
        ours = [tuple(t.shape) for t in collect(out, SymTensor)]
        theirs = [tuple(t.shape) for t in collect(real, torch.Tensor)]
        if ours != theirs:
            what = getattr(rule, "__qualname__", None) or repr(rule)
            raise RuleError(
                f"rule {what} for {call.describe()} at node {call.name!r} gives shape "
                f"{ours[0] if len(ours) == 1 else ours}, torch gives {theirs[0] if len(theirs) == 1 else theirs} "
                "(check_shapes / RFGRAPH_CHECK_SHAPES)"
            )

    # -- fallback ------------------------------------------------------------------

    def constant(self, call: OpCall) -> Any:
        """An op with no rule whose tensor arguments read no input position (``meshgrid`` of shape-derived
        grids): its outputs read none either. Shapes from a run on stand-ins; every tensor field-free."""
        out = shape_by_execution(self._callable(call), call.args, call.kwargs, self.device)
        return _map_tensors(out, lambda t: SymTensor(tuple(t.shape), t.dtype))

    def unknown_fallback(self, call: OpCall, reason: Optional[str] = None) -> Any:
        """No rule: learn the output shape by running the op on stand-ins, mark it unknown (with ``reason``)."""
        what = call.describe()
        self.unknown_ops[what] = self.unknown_ops.get(what, 0) + 1
        upstream = next((a.unknown for a in call.sym_args() if a.unknown), None)
        reason = upstream or reason or f"no rule for {what}"
        fn = self._callable(call)
        try:
            out = shape_by_execution(fn, call.args, call.kwargs, self.device)
        except Exception as exc:
            raise RuleError(
                f"no rule for {what} at node {call.name!r}, and running it on shape-only tensors "
                f"to learn its output shape failed: {type(exc).__name__}: {exc}"
            ) from exc
        return _to_unknown(out, reason)

    def _callable(self, call: OpCall) -> Callable:
        n = call.node
        if n.op == "call_module":
            return call.module
        if n.op == "call_method":
            return lambda self_obj, *a, **k: getattr(self_obj, n.target)(*a, **k)
        return n.target

    # -- records -----------------------------------------------------------------

    def note_merge(self, node: fx.Node, info: MergeInfo) -> None:
        self._merge_info[node] = info

    def _summary(self, f: Field) -> tuple:
        """``(rf, rf_min, rf_path_min, stride, start, center(0), stride_regular)`` of ``f``, once per distinct
        field of the pass (a norm, an activation and the conv before them share one)."""
        out = self._summaries.get(f)
        if out is None:
            out = self._summaries[f] = (f.rf, f.rf_min, f.rf_path_min, f.stride, f.start, f.center(0),
                                        f.stride_regular)
        return out

    def _record(self, n: fx.Node, value: Any) -> NodeRF:
        name = self.traced.name(n)
        module = n.meta.get("rf_module") or None
        if n.op == "call_module":
            module = n.target
        op = describe_target(n)
        inputs = tuple(self.traced.name(a) for a in n.all_input_nodes)
        shape: Optional[tuple[int, ...]] = None
        if isinstance(value, SymTensor):
            shape = value.shape
        else:
            # A node returning several tensors (the output node, attention's (out, weights)): their union.
            value = _union_of_outputs(value)
        ndim = self._ndim
        info = self._merge_info.get(n, MergeInfo())
        base = dict(name=name, op=op, module=module, shape=shape, inputs=inputs, fx_name=n.name)
        if value.unknown:
            none = (None,) * ndim
            return NodeRF(
                **base, dims=none, rf=none, rf_min=none, rf_path_min=none, stride=none, start=none,
                center=none, is_global=(False,) * ndim, lo=none, hi=none, source="unknown", reason=value.unknown,
            )
        paired = value.paired_axes()
        fields: list[Optional[Field]] = []
        try:
            by_axis = value.record_fields()
            for k in range(ndim):
                f = by_axis.get(k)
                if f is not None and k in paired:  # queries x keys: the node as a whole spans the axis
                    f = GLOBAL
                fields.append(f)
        except SlopeMismatch as exc:
            none = (None,) * ndim
            return NodeRF(
                **base, dims=none, rf=none, rf_min=none, rf_path_min=none, stride=none, start=none,
                center=none, is_global=(False,) * ndim, lo=none, hi=none, source="unknown",
                reason=(f"holds positions of one input axis at different strides ({exc}; e.g. a concat of "
                        "flattened pyramid levels): no single rf / stride / start describes the node, each "
                        "operand's node has its own"),
            )
        dims = value.axis_dims()
        source = "probed" if value.probed else "symbolic"
        if all(f is None for f in fields):
            source = "nonspatial"
        widths = [_unit_widths(f, value, dims.get(k)) for k, f in enumerate(fields)]
        sums = [None if f is None else self._summary(f) for f in fields]
        return NodeRF(
            **base,
            dims=tuple(dims.get(k) for k in range(ndim)),
            rf=tuple(None if s is None else w[0] if w else s[0] for s, w in zip(sums, widths)),
            rf_min=tuple(None if s is None else w[1] if w else s[1] for s, w in zip(sums, widths)),
            rf_path_min=tuple(None if s is None else s[2] for s in sums),
            stride=tuple(None if s is None else s[3] for s in sums),
            start=tuple(None if s is None else s[4] for s in sums),
            center=tuple(None if s is None else s[5] for s in sums),
            is_global=tuple(f is not None and f.is_global for f in fields),
            lo=tuple(None if f is None else f.lo for f in fields),
            hi=tuple(None if f is None else f.hi for f in fields),
            stride_regular=tuple(s is None or s[6] for s in sums),
            aligned=info.aligned,
            max_center_shift=info.max_center_shift,
            global_context=value.global_context,
            source=source,
        )


def _unit_widths(f: Optional[Field], value: SymTensor, d: Optional[int]) -> Optional[tuple[int, int]]:
    """``(rf, rf_min)`` over the node's own units when the field's period is longer than the dim holding
    the axis: a causal prefix is periodic with the input's length ``n``, and after a valid conv the node
    has fewer than ``n`` units (the summary over one period would count units that do not exist).
    None when the per-period summary is exact."""
    if f is None or d is None or not isinstance(value.tags[d], Axis):
        return None
    if not (isinstance(f.lo, PAMap) and isinstance(f.hi, PAMap)):
        return None
    n = value.shape[d]
    if n < 1 or lcm(f.lo.period, f.hi.period) <= n:
        return None
    w = [f.hi(u) - f.lo(u) + 1 for u in range(n)]
    return max(0, max(w)), max(0, min(w))


def _union_of_outputs(value: Any) -> SymTensor:
    tensors = collect(value, SymTensor)
    out = SymTensor((), tensors[0].dtype)
    pinned: dict[int, Field] = {}
    for t in tensors:
        if t.unknown:
            out.unknown = t.unknown
            return out
        for k, fs in t.axis_fields().items():
            for f in fs:
                if k not in pinned:
                    pinned[k] = f
                else:
                    try:
                        pinned[k] = pinned[k].merge(f)
                    except SlopeMismatch:
                        pinned[k] = GLOBAL if (f.is_global or pinned[k].is_global) else pinned[k]
                        out.unknown = "outputs of different strides"
    out.pinned = pinned
    out.global_context = any(t.global_context for t in tensors)
    return out


def _ruled_leaves(rules: Optional[RuleSet]) -> tuple[type, ...]:
    """Modules with a rule of their own (outside torch.nn, whose modules are leaves
    anyway) are kept whole, so that their rule, not their internals, decides."""
    return tuple(t for t in (rules or DEFAULT_RULES).modules if not t.__module__.startswith("torch.nn"))


def _ruled_functions(rules: Optional[RuleSet]) -> tuple[Callable, ...]:
    """Python functions given a rule by the user are kept whole by fx (autowrapped), so that
    their rule, not their body, decides; no need to also pass them as ``autowrap_functions``."""
    if rules is None or rules is DEFAULT_RULES:
        return ()
    return tuple(f for f in rules.functions if isinstance(f, types.FunctionType) and f not in DEFAULT_RULES.functions)


def _with_named_functions(rules: Optional[RuleSet]) -> Optional[RuleSet]:
    """``rules`` plus the rules of other libraries' functions (`rfgraph.rules.table.NAMED_FUNCTION_RULES`)
    whose module the model has imported, unless ``rules`` gives those functions rules of its own."""
    extra = {f: r for f, r in named_function_rules().items() if f not in (rules or DEFAULT_RULES).functions}
    return (rules or DEFAULT_RULES).override(functions=extra) if extra else rules


def _check_shapes_default() -> bool:
    return os.environ.get("RFGRAPH_CHECK_SHAPES", "").strip().lower() not in ("", "0", "false", "no")


@serialized
def analyze(
    model: nn.Module,
    input_shape: Any,
    *,
    rules: Optional[RuleSet] = None,
    leaf_modules=(),
    autowrap_functions=(),
    dtype: torch.dtype = torch.float32,
    fallback: Union[Callable[[OpCall], Any], str, None] = None,
    traced: Optional[Traced] = None,
    check_shapes: Optional[bool] = None,
) -> Analysis:
    """Receptive field of every tensor node of ``model`` for inputs of ``input_shape``.

    Ops with no rule go to ``fallback``: by default `rfgraph.fallback.fallback`,
    which probes the op alone and fits its window maps (nodes marked
    ``source="probed"``); ``fallback="unknown"`` marks them unknown instead.
    ``check_shapes=True`` (or the environment variable ``RFGRAPH_CHECK_SHAPES=1``)
    compares every rule's output shape with torch's on data-free tensors and
    raises a `RuleError` naming the rule that disagrees (a debug mode for rule
    authors; slower).

    >>> import torch.nn as nn
    >>> net = nn.Sequential(nn.Conv2d(1, 1, 3), nn.Conv2d(1, 1, 3, stride=2), nn.Conv2d(1, 1, 3))
    >>> a = analyze(net, (1, 1, 32, 32))
    >>> a["2"].rf, a["2"].stride
    ((9, 9), (Fraction(2, 1), Fraction(2, 1)))
    """
    if not isinstance(model, nn.Module):
        raise NotAModuleError(
            f"analyze() needs a torch.nn.Module, got {type(model).__name__}"
            + (" (a class: instantiate it first)" if isinstance(model, type) else "")
        )
    rules = _with_named_functions(rules)
    if fallback is None:  # ops without a rule: probe them alone (rfgraph.fallback)
        fallback = probe_fallback
    elif isinstance(fallback, str):
        if fallback != "unknown":
            raise ValueError(f"fallback must be a callable, None (probe) or 'unknown', got {fallback!r}")
        fallback = None
    if isinstance(input_shape, dict):  # several inputs: one analysis per input
        return _analyze_inputs(model, input_shape, dtype=dtype, rules=rules or DEFAULT_RULES,
                               leaf_modules=leaf_modules, autowrap_functions=autowrap_functions, fallback=fallback)
    shape = check_input_shape(input_shape, dtype)
    own_trace = traced is None
    if traced is None:
        traced = trace(model, leaf_modules=tuple(leaf_modules) + _ruled_leaves(rules),
                       autowrap_functions=tuple(autowrap_functions) + _ruled_functions(rules),
                       example_inputs=(example_input(model, shape, dtype),))
    if check_shapes is None:
        check_shapes = _check_shapes_default()
    interp = SymbolicPass(traced, rules or DEFAULT_RULES, fallback=fallback, check_shapes=check_shapes)
    try:
        try:
            records = interp.propagate(shape, dtype)
        except ChannelError as exc:
            # A layer got other channels than its weights take.  Either the input is wrong, or torch.fx
            # traced a branch the model never takes with tensors (``torch.jit.isinstance(proxy, Tensor)``
            # is False in MONAI's UpCat, which then skips its skip concat): torch.export runs the real
            # branches on fake tensors.  If it also fails, the input is wrong: the channel error says how.
            if not own_trace or traced.method != "fx":
                raise
            try:
                traced = export_trace(model, (example_input(model, shape, dtype),),
                                      tuple(leaf_modules) + _ruled_leaves(rules))
            except Exception:
                raise exc from None
            interp = SymbolicPass(traced, rules or DEFAULT_RULES, fallback=fallback, check_shapes=check_shapes)
            records = interp.propagate(shape, dtype)
    except InputTooSmallError as exc:

        def run(candidate):
            SymbolicPass(traced, rules or DEFAULT_RULES, fallback=fallback).propagate(candidate, dtype)

        raise explain_too_small(exc, run, shape) from exc
    return Analysis(
        records,
        shape,
        model_name=type(model).__name__,
        graph_module=traced.graph_module,
        model=model,
        meta={"unknown_ops": dict(interp.unknown_ops), "trace": traced.method},
    )


def _analyze_inputs(model: nn.Module, shapes: dict, *, dtype: Any = torch.float32,
                    rules=None, leaf_modules=(), autowrap_functions=(), fallback=None) -> dict:
    """Per-input analyses of a model with several inputs (see `rfgraph.inputs`)."""
    if not shapes:
        raise InputShapeError("no input shapes given: pass {input_name: shape, ...}")
    names = ordered_inputs(model, shapes)
    dtypes = {n: dtype.get(n, torch.float32) if isinstance(dtype, dict) else dtype for n in names}
    checked = {n: check_input_shape(shapes[n], dtypes[n], name=f"shape of input {n!r}") for n in names}
    examples = tuple(example_input(model, checked[n], dtypes[n]) for n in names)
    traced = trace(model, leaf_modules=tuple(leaf_modules) + _ruled_leaves(rules),
                   autowrap_functions=tuple(autowrap_functions) + _ruled_functions(rules), example_inputs=examples)
    out = {}
    for name in names:
        args = [
            SymTensor.input(checked[n], dtypes[n]) if n == name else SymTensor(checked[n], dtypes[n])
            for n in names
        ]
        interp = SymbolicPass(traced, rules, fallback=fallback)
        records = interp.propagate(checked[name], dtypes[name], args=args)
        out[name] = Analysis(
            records, checked[name], model_name=type(model).__name__, graph_module=traced.graph_module,
            model=model, meta={"unknown_ops": dict(interp.unknown_ops), "trace": traced.method, "input": name},
        )
    return out


def _used_by(n: fx.Node, names: frozenset) -> bool:
    """Whether some user of ``n`` is an op of one of ``names`` (a mask's ``add`` or ``masked_fill``)."""
    return any(u.op in ("call_function", "call_method") and target_name(u.target) in names for u in n.users)
