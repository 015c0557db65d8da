"""Turn a model into a `torch.fx` graph whose nodes carry readable names.

Names follow torchvision's feature extraction (``get_graph_node_names``): the
dotted module path of the call, the op appended for functions and methods, and
``_1``, ``_2`` suffixes counted per name, so ``analysis["layer1.0.relu_1"]``
means what it means in ``create_feature_extractor``.  Unlike torchvision, the
tracer goes *through* torchvision.ops building blocks (``Conv2dNormActivation``,
``SqueezeExcitation``, ``StochasticDepth``...) so that the symbolic pass sees
their convolutions; only truly opaque modules (RoI pooling, deformable conv)
are leaves.

When ``torch.fx`` cannot trace a model (Python control flow on shapes, ...),
`trace` falls back to ``torch.export.export(..., strict=False)`` for the input
shape being analysed (`export_trace`): the exported graph calls aten ops, which
`rfgraph.rules.aten` maps onto the same rules, and its nodes get the same kind
of names from their ``nn_module_stack`` metadata.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import math
import operator
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional, Sequence

import torch
import torch.fx as fx
from torch import nn

from .errors import TraceError
from .locking import serialized

__all__ = [
    "cut","ancestors", "RFTracer", "Traced", "trace", "export_trace", "OPAQUE_TORCHVISION_MODULES"]


def _opaque_torchvision_modules() -> tuple[type, ...]:
    try:
        import torchvision.ops as tvops
    except Exception:  # pragma: no cover - torchvision is a dependency, but keep tracing usable
        return ()
    names = ("RoIAlign", "RoIPool", "PSRoIAlign", "PSRoIPool", "MultiScaleRoIAlign", "DeformConv2d")
    return tuple(getattr(tvops, n) for n in names if hasattr(tvops, n))


#: Modules of torchvision.ops that call custom kernels or depend on data: kept as leaves.
OPAQUE_TORCHVISION_MODULES: tuple[type, ...] = _opaque_torchvision_modules()

_SUFFIX = re.compile(r".+_[0-9]+$")


class RFTracer(fx.Tracer):
    """An `fx.Tracer` recording, for each node, its torchvision-style qualified name."""

    def __init__(
        self,
        leaf_modules: Iterable[type] = (),
        autowrap_modules: Sequence[Any] = (math,),
        autowrap_functions: Sequence[Callable] = (),
    ):
        super().__init__(autowrap_modules=tuple(autowrap_modules), autowrap_functions=tuple(autowrap_functions))
        self.leaf_types = tuple(leaf_modules) + OPAQUE_TORCHVISION_MODULES
        self.current_module_qualname = ""
        #: Qualified name of the innermost module whose forward raised while tracing, if any.
        self.failed_module: Optional[str] = None
        self.node_to_qualname: dict[fx.Node, str] = {}
        self._name_counts: dict[str, int] = {}

    def is_leaf_module(self, m: nn.Module, module_qualname: str) -> bool:
        if isinstance(m, self.leaf_types):
            return True
        return super().is_leaf_module(m, module_qualname)

    def call_module(self, m: nn.Module, forward: Callable, args, kwargs):
        old = self.current_module_qualname
        try:
            qualname = self.path_of_module(m)
            self.current_module_qualname = qualname
            if not self.is_leaf_module(m, qualname):
                return forward(*args, **kwargs)
            return self.create_proxy("call_module", qualname, args, kwargs)
        except Exception:
            if self.failed_module is None:
                self.failed_module = self.current_module_qualname
            raise
        finally:
            self.current_module_qualname = old

    def create_proxy(self, kind, target, args, kwargs, name=None, type_expr=None, *rest, **extra):
        proxy = super().create_proxy(kind, target, args, kwargs, name, type_expr, *rest, **extra)
        node = proxy.node
        if node not in self.node_to_qualname:
            self.node_to_qualname[node] = self._qualname(node)
            node.meta["rf_module"] = self.current_module_qualname
        return proxy

    def _qualname(self, node: fx.Node) -> str:
        # Same naming as torchvision's NodePathTracer, with the suffix counted
        # through a dict instead of a regex scan over all names (quadratic).
        name = self.current_module_qualname
        if node.op != "call_module":
            name = f"{name}.{node}" if name else str(node)
        if _SUFFIX.match(name):
            name = name.rsplit("_", 1)[0]
        count = self._name_counts.get(name, 0)
        self._name_counts[name] = count + 1
        return name if count == 0 else f"{name}_{count}"


@dataclass
class Traced:
    """A traced model: the graph module and each node's qualified name."""

    graph_module: fx.GraphModule
    names: dict[fx.Node, str] = field(default_factory=dict)
    method: str = "fx"

    def name(self, node: fx.Node) -> str:
        return self.names.get(node, node.name)


@serialized
def trace(
    model: nn.Module,
    leaf_modules: Iterable[type] = (),
    autowrap_functions: Sequence[Callable] = (),
    concrete_args: Optional[dict[str, Any]] = None,
    example_inputs: Optional[tuple] = None,
) -> Traced:
    """Trace ``model`` in eval mode (its training flags are restored afterwards).

    ``torch.fx`` symbolic tracing first.  When it fails (Python control flow on
    tensor shapes, unsupported constructs) and ``example_inputs`` are given, the
    model is exported with ``torch.export.export(..., strict=False)`` for those
    inputs, and the exported graph (nodes calling aten ops) is used instead,
    with names rebuilt from the ``nn_module_stack`` metadata
    (``Traced.method == "export"``).  If both fail, one `TraceError` says what
    failed in each and how to work around it.
    """
    if not isinstance(model, nn.Module):
        raise TraceError(f"expected a torch.nn.Module, got {type(model).__name__}")
    model, restore = _tracing_copy(model)
    try:
        return _trace(model, leaf_modules, autowrap_functions, concrete_args, example_inputs)
    finally:
        restore()


def _tracing_copy(model: nn.Module) -> tuple[nn.Module, Callable[[], None]]:
    """What the tracers run: a copy of the module tree sharing the parameters, with its own buffers.

    ``torch.fx`` runs ``forward`` with proxies, but a buffer is a plain tensor
    there, so ``self.step.add_(1)`` would run on the user's buffer (and a
    failed fx trace may have run part of ``forward`` before ``torch.export``
    takes over); training flags are switched to eval while tracing.  All of
    that happens on the copy (meta models, whose buffers hold no data, are traced
as they are, their flags put back).  Parameters are shared, not copied (fx records
    their use as graph nodes and never runs ops on them), so the copy costs
    the buffers only.  A model that cannot be deep-copied is traced as it is,
    and its buffers and training flags are put back afterwards.
    """
    training = {m: m.training for m in model.modules()}
    if all(b.is_meta for b in model.buffers()):  # no data to change (meta models): flags restored by _trace

        def restore_flags() -> None:
            for m, flag in training.items():
                m.training = flag

        return model, restore_flags
    memo: dict[int, Any] = {id(p): p for p in model.parameters()}
    try:
        return copy.deepcopy(model, memo), lambda: None
    except Exception:
        saved = {name: b.detach().clone() for name, b in model.named_buffers() if not b.is_meta}

        def restore() -> None:
            with torch.no_grad():
                for name, b in model.named_buffers():
                    if name in saved:
                        b.copy_(saved[name])
            for m, flag in training.items():
                m.training = flag

        return model, restore


def _trace(model, leaf_modules, autowrap_functions, concrete_args, example_inputs) -> Traced:
    training = {m: m.training for m in model.modules()}
    tracer = RFTracer(leaf_modules=leaf_modules, autowrap_functions=autowrap_functions)
    try:
        model.eval()
        graph = tracer.trace(model, concrete_args=concrete_args)
    except Exception as exc:  # fx raises many types; name the cause, keep the chain
        where = f" inside module {tracer.failed_module!r}" if tracer.failed_module else ""
        fx_failure = f"torch.fx failed{where}: {_first_line(exc)}"
        hint = (
            "Hint: mark the offending module as a leaf with `analyze(..., leaf_modules=[ModuleType])`, "
            "or wrap the offending function with `autowrap_functions=[fn]`."
        )
        if example_inputs is None:
            raise TraceError(
                f"could not trace {type(model).__name__}: {fx_failure}; torch.export was not tried "
                f"(no example input shape). {hint}"
            ) from exc
        try:
            return export_trace(model, example_inputs, leaf_modules)
        except Exception as exc2:
            raise TraceError(
                f"could not trace {type(model).__name__}: {fx_failure}; torch.export (non-strict) also failed: "
                f"{_first_line(exc2)}. {hint}"
            ) from exc2
    finally:
        for m, flag in training.items():
            m.training = flag
    gm = fx.GraphModule(tracer.root, graph, type(model).__name__)
    # GraphModule copies the graph's nodes by identity, so the names carry over.
    names = {n: tracer.node_to_qualname.get(n, n.name) for n in gm.graph.nodes}
    return Traced(gm, names)


def _first_line(exc: BaseException, limit: int = 300) -> str:
    """``Type: first line of the message``, shortened: torch's messages run over many lines."""
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# ---------------------------------------------------------------------------
# fallback: torch.export
# ---------------------------------------------------------------------------

#: Nodes of an exported graph that check shapes or guards and produce nothing we analyse.
_EXPORT_CHECKS = ("_assert_tensor_metadata", "_assert_scalar", "sym_constrain_range_for_size", "_assert_async")


def _op_name(target: Any) -> str:
    """``aten.conv2d.default`` -> ``conv2d``; ``operator.getitem`` -> ``getitem``."""
    name = getattr(target, "_opname", None) or getattr(target, "__name__", None) or str(target)
    return name.split(".")[0].strip("_") or name  # in-place relu_ is named like relu


@serialized
def export_trace(model: nn.Module, example_inputs: tuple, leaf_modules: Iterable[type] = ()) -> Traced:
    """Trace ``model`` with ``torch.export`` (non-strict) for ``example_inputs``.

    The exported program is turned back into an ordinary module
    (``ExportedProgram.module()``) whose nodes call aten ops; the rule table has
    entries for those (`rfgraph.rules.aten`).  Names: the qualified path of the
    innermost module from the ``nn_module_stack`` metadata, as the fx tracer
    would give, so ``"layer1.0.conv1"`` names the same tensor in both.
    """
    training = {m: m.training for m in model.modules()}
    previous_disable = logging.root.manager.disable
    try:
        model.eval()
        # torch.export logs and prints its graph when it fails; the TraceError says it in one line
        logging.disable(logging.CRITICAL)
        with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):
            exported = torch.export.export(model, tuple(example_inputs), strict=False)
    finally:
        logging.disable(previous_disable)
        for m, flag in training.items():
            m.training = flag
    gm = exported.module()
    graph = gm.graph
    for n in list(graph.nodes):
        check = (n.op == "call_module" and str(n.target).startswith("_guards")) or (
            n.op == "call_function" and _op_name(n.target) in _EXPORT_CHECKS
        )
        if check and not n.users:
            graph.erase_node(n)
    gm.recompile()
    leaf_test = RFTracer(leaf_modules=leaf_modules)
    counts: dict[str, int] = {}
    names: dict[fx.Node, str] = {}

    def unique(name: str) -> str:
        if _SUFFIX.match(name):
            name = name.rsplit("_", 1)[0]
        count = counts.get(name, 0)
        counts[name] = count + 1
        return name if count == 0 else f"{name}_{count}"

    def innermost(n: fx.Node) -> tuple[str, bool]:
        stack = n.meta.get("nn_module_stack") or {}
        if not stack:
            return "", False
        path = list(stack.values())[-1][0]
        try:
            module = model.get_submodule(path)
        except Exception:
            return path, False
        return path, leaf_test.is_leaf_module(module, path)

    nodes = list(graph.nodes)
    scopes = [innermost(n) if n.op == "call_function" else ("", False) for n in nodes]
    for i, n in enumerate(nodes):
        if n.op != "call_function":
            names[n] = unique(n.name) if n.op == "placeholder" else n.name
            continue
        path, leaf = scopes[i]
        # the root module itself (path "") is named by its op, as the fx tracer would
        last_of_leaf = leaf and path != "" and not (i + 1 < len(nodes) and scopes[i + 1] == (path, True))
        if last_of_leaf:
            names[n] = unique(path)
        else:
            op = _op_name(n.target)
            names[n] = unique(f"{path}.{op}" if path else op)
        n.meta["rf_module"] = path
    return Traced(gm, names, method="export")


def ancestors(node: fx.Node) -> set[fx.Node]:
    """``node`` and every node it depends on."""
    seen = {node}
    stack = [node]
    while stack:
        for a in stack.pop().all_input_nodes:
            if a not in seen:
                seen.add(a)
                stack.append(a)
    return seen


def cut(gm: fx.GraphModule, fx_names: Sequence[str]) -> fx.GraphModule:
    """A new graph module computing only the named nodes: its output is the tuple of their values, and
    every node they do not depend on is gone.

    The graph is copied, never modified; the new module holds references to
    ``gm``'s submodules and attributes that the kept nodes use, nothing else
    (copy it before changing weights).  ``"output"`` names the tensor the model
    returns.  Node names are kept, so results can be looked up by the names of
    ``gm``.  Shared by the numeric probe and the effective-RF measurement.
    """
    by_name = {n.name: n for n in gm.graph.nodes}
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    graph.graph_copy(gm.graph, env)
    targets = []
    for name in fx_names:
        if name not in by_name:
            raise TraceError(f"the graph has no node {name!r}")
        n = by_name[name]
        if n.op == "output":  # the model's output: the tensor it returns
            n = n.args[0]
            if not isinstance(n, fx.Node):
                raise TraceError(
                    f"the model returns {type(n).__name__}, not one tensor: name a node instead of 'output'"
                )
        targets.append(env[n])
    graph.output(tuple(targets))
    _drop_unneeded(graph, targets)
    out = fx.GraphModule(gm, graph, type(gm).__name__ + "Cut")
    out.delete_all_unused_submodules()
    out.recompile()
    return out


_IN_PLACE_OPERATORS = {operator.iadd, operator.isub, operator.imul, operator.itruediv, operator.ifloordiv,
                       operator.imod, operator.ipow, operator.iand, operator.ior, operator.ixor, operator.setitem}


def _may_mutate(n: fx.Node) -> bool:
    """An op that may change its first argument in place: impure for fx (an aten op with a mutable schema),
    a trailing-underscore method or function (``x.mul_``, ``torch.relu_``), an in-place operator, setitem."""
    if n.op not in ("call_function", "call_method") or not n.args:
        return False
    if n.is_impure() or n.target in _IN_PLACE_OPERATORS:
        return True
    name = n.target if isinstance(n.target, str) else getattr(n.target, "__name__", "")
    return name.endswith("_") and not name.endswith("__")


#: Ops (by name: methods, torch functions) whose result may share its first argument's storage.
_VIEW_NAMES = frozenset({
    "view", "view_as", "reshape", "reshape_as", "flatten", "unflatten", "squeeze", "unsqueeze", "permute",
    "transpose", "t", "expand", "expand_as", "narrow", "select", "slice", "diagonal", "unfold", "as_strided",
    "alias", "movedim", "split", "chunk", "unbind", "tensor_split", "contiguous", "detach", "_unsafe_view",
})


def _may_alias(n: fx.Node) -> bool:
    """Whether ``n``'s value may be a view of its first argument (so mutating it mutates that argument):
    an aten op whose schema says its result aliases an input, a known view op, or indexing."""
    if n.op not in ("call_function", "call_method") or not n.args or not isinstance(n.args[0], fx.Node):
        return False
    if n.target is operator.getitem:
        return True
    schema = getattr(n.target, "_schema", None)
    if schema is not None:
        returns = schema.returns
        return bool(returns) and returns[0].alias_info is not None and not returns[0].alias_info.is_write
    name = n.target if isinstance(n.target, str) else getattr(n.target, "__name__", "")
    return name in _VIEW_NAMES


def _view_base(v: Any) -> Any:
    """The value ``v`` is (possibly) a view of: followed through view ops back to one that is not."""
    while isinstance(v, fx.Node) and _may_alias(v):
        v = v.args[0]
    return v


def _drop_unneeded(graph: fx.Graph, targets: Sequence[fx.Node]) -> None:
    """Erase every node the targets do not need: their ancestors are kept, and so is an op that mutates a kept
    value in place (its first argument, or a view of it: ``mask[:, a:b] = k`` is exported as ``copy_`` into
    ``slice(slice(mask))``) before the last target, with its own ancestors.

    Not `fx.Graph.eliminate_dead_code`: it keeps every impure node, and the in-place ops of a graph exported by
    `torch.export` (``aten.relu_``) are impure, so a cut at the stem of an exported model kept the whole model.
    """
    order = {n: i for i, n in enumerate(graph.nodes)}
    last = max((order[t] for t in targets), default=-1)
    keep: set[fx.Node] = set()
    for t in targets:
        keep |= ancestors(t)
    mutating = [n for n in graph.nodes if order[n] < last and _may_mutate(n) and isinstance(n.args[0], fx.Node)]
    changed = True
    while changed:
        changed = False
        for n in mutating:
            if n not in keep and _view_base(n.args[0]) in keep:
                keep |= ancestors(n)
                changed = True
    for n in reversed(list(graph.nodes)):
        if n.op not in ("output", "placeholder") and n not in keep and not n.users:
            graph.erase_node(n)
