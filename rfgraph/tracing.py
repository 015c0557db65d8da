"""Turn a model into a `torch.fx` graph whose nodes carry readable names.

Names follow torchvision's feature extraction (``get_graph_node_names``): the
dotted module path of the call, the op appended for functions and methods, and
``_1``, ``_2`` suffixes counted per name, so ``analysis["layer1.0.relu_1"]``
means what it means in ``create_feature_extractor``.  Unlike torchvision, the
tracer goes *through* torchvision.ops building blocks (``Conv2dNormActivation``,
``SqueezeExcitation``, ``StochasticDepth``...) so that the symbolic pass sees
their convolutions; only truly opaque modules (RoI pooling, deformable conv)
are leaves.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional, Sequence

import torch
import torch.fx as fx
from torch import nn

from .errors import TraceError

__all__ = ["RFTracer", "Traced", "trace", "OPAQUE_TORCHVISION_MODULES"]


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


def trace(
    model: nn.Module,
    leaf_modules: Iterable[type] = (),
    autowrap_functions: Sequence[Callable] = (),
    concrete_args: Optional[dict[str, Any]] = None,
) -> Traced:
    """Symbolically trace ``model`` in eval mode (its training flags are restored afterwards)."""
    if not isinstance(model, nn.Module):
        raise TraceError(f"expected a torch.nn.Module, got {type(model).__name__}")
    training = {m: m.training for m in model.modules()}
    tracer = RFTracer(leaf_modules=leaf_modules, autowrap_functions=autowrap_functions)
    try:
        model.eval()
        graph = tracer.trace(model, concrete_args=concrete_args)
    except Exception as exc:  # fx raises many types; name the cause, keep the chain
        where = f" inside module {tracer.current_module_qualname!r}" if tracer.current_module_qualname else ""
        raise TraceError(
            f"torch.fx could not trace {type(model).__name__}{where}: {type(exc).__name__}: {exc}. "
            "Hint: mark the offending module as a leaf with `leaf_modules=[ModuleType]`, or a function "
            "with `autowrap_functions=[fn]`."
        ) from exc
    finally:
        for m, flag in training.items():
            m.training = flag
    gm = fx.GraphModule(tracer.root, graph, type(model).__name__)
    # GraphModule copies the graph's nodes by identity, so the names carry over.
    names = {n: tracer.node_to_qualname.get(n, n.name) for n in gm.graph.nodes}
    return Traced(gm, names)
