"""What a rule sees and how rules are found: `OpCall`, `Rule`, `RuleSet`.

A rule is a function ``rule(call: OpCall) -> value``: it receives the call
being interpreted (the fx node, its target, the module for ``call_module``
nodes, and the arguments with `SymTensor` values in place of tensors) and
returns the output value (a `SymTensor`, or a tuple / list of them, or a plain
Python value for shape arithmetic).  `RuleSet.lookup` finds the rule of a call
by module type (walking the MRO), by function object, or by method name.

The helpers at the bottom read arguments the way every rule family needs them.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional

import torch
from torch import nn

from ..errors import InputTooSmallError, RuleError
from ..values import MergeInfo, SymTensor, collect, shape_by_execution
from ..windows import META_KEY, WindowParams, as_tuple

if TYPE_CHECKING:  # pragma: no cover
    import torch.fx as fx

__all__ = [
    "OpCall",
    "Rule",
    "RuleSet",
    "describe_target",
    "target_name",
    "hand_over",
    "tensor_arg",
    "as_operand",
    "as_tuple",
    "norm_dim",
    "dims_arg",
    "run_for_shape",
]

_MISSING = object()


class OpCall:
    """One call being interpreted: what a rule sees.

    ``node`` is the fx node, ``target`` its target (a function, a method name
    or a module path), ``module`` the called module for ``call_module`` nodes
    (else ``None``), ``args`` / ``kwargs`` the arguments with `SymTensor` values
    in place of tensors, ``interp`` the running pass (``None`` when a rule is
    called directly, e.g. in a test).
    """

    __slots__ = ("node", "target", "module", "args", "kwargs", "interp")

    def __init__(self, node, target, module, args, kwargs, interp=None):
        self.node = node
        self.target = target
        self.module = module
        self.args = args
        self.kwargs = kwargs
        self.interp = interp

    @property
    def name(self) -> str:
        """The node's name as reports show it."""
        if self.interp is not None:
            return self.interp.traced.name(self.node)
        return getattr(self.node, "name", "?")

    def arg(self, index: int, name: str, default: Any = _MISSING) -> Any:
        """Positional argument ``index`` or keyword ``name``."""
        if index < len(self.args):
            return self.args[index]
        if name in self.kwargs:
            return self.kwargs[name]
        if default is _MISSING:
            raise RuleError(f"{self.describe()} at node {self.name!r}: missing argument {name!r}")
        return default

    def sym_args(self) -> list[SymTensor]:
        """Every `SymTensor` among the arguments, in order."""
        return collect((self.args, self.kwargs), SymTensor)

    def describe(self) -> str:
        """``module torch.nn...Conv2d``, ``method Tensor.view`` or ``function torch.cat``."""
        if self.module is not None:
            return f"module {type(self.module).__module__}.{type(self.module).__name__}"
        if isinstance(self.target, str):
            return f"method Tensor.{self.target}"
        return f"function {_qualified(self.target)}"

    def with_args(self, args: tuple, kwargs: Optional[dict] = None, module: Any = _MISSING) -> OpCall:
        """The same call with other arguments (an adapter's translation, a rule delegating to another)."""
        return OpCall(self.node, self.target, self.module if module is _MISSING else module, tuple(args),
                      dict(kwargs or {}), self.interp)

    def note_merge(self, info: MergeInfo) -> None:
        """Tell the pass what happened at a merge (alignment, centre shift)."""
        if self.interp is not None:
            self.interp.note_merge(self.node, info)

    def record(self, params: WindowParams) -> None:
        """Keep a windowed op's parameters on its node (``node.meta["rfgraph.window"]``), read once."""
        meta = getattr(self.node, "meta", None)
        if meta is not None:
            meta[META_KEY] = params

    def too_small(self, dim: int, n_in: int, detail: str) -> InputTooSmallError:
        """The error for an input length that leaves this op's output empty."""
        return InputTooSmallError(
            f"input too small: {self.describe()} at node {self.name!r} gets length {n_in} along tensor dim "
            f"{dim} and would produce an empty output ({detail}). Use a larger input size.",
            node=self.name,
        )


#: The one signature of every rule.
Rule = Callable[[OpCall], Any]


def _qualified(fn: Any) -> str:
    mod = getattr(fn, "__module__", None) or ""
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    return f"{mod}.{name}" if mod and mod != "builtins" else name


def target_name(target: Any) -> str:
    """The bare name of a node's target: a method name, a function's name, ``"add"`` of ``aten.add.Tensor``."""
    packet = getattr(target, "overloadpacket", None)  # an aten OpOverload
    if packet is not None:
        return getattr(packet, "__name__", str(packet)).split(".")[-1]
    return target if isinstance(target, str) else getattr(target, "__name__", "")


def describe_target(node: "fx.Node") -> str:
    """Short op label of a node: module class, method or function name."""
    if node.op == "call_module":
        owner = node.graph.owning_module
        try:
            return type(owner.get_submodule(node.target)).__name__
        except Exception:
            return str(node.target)
    if node.op == "call_method":
        return f".{node.target}"
    if node.op == "call_function":
        return getattr(node.target, "__name__", str(node.target))
    return node.op


class RuleSet:
    """Rules keyed by module type, function and method name; read-only.

    The three tables are read-only mappings; `override` gives a new set with
    rules added or replaced, leaving this one untouched:

    >>> from torch import nn
    >>> base = RuleSet(modules={nn.ReLU: lambda call: call.args[0]})
    >>> mine = base.override(modules={nn.Identity: lambda call: call.args[0]})
    >>> nn.Identity in mine.modules, nn.Identity in base.modules
    (True, False)
    """

    __slots__ = ("modules", "functions", "methods", "_module_cache")

    def __init__(
        self,
        modules: Optional[Mapping[type, Rule]] = None,
        functions: Optional[Mapping[Any, Rule]] = None,
        methods: Optional[Mapping[str, Rule]] = None,
    ):
        self.modules: Mapping[type, Rule] = MappingProxyType(dict(modules or {}))
        self.functions: Mapping[Any, Rule] = MappingProxyType(dict(functions or {}))
        self.methods: Mapping[str, Rule] = MappingProxyType(dict(methods or {}))
        self._module_cache: dict[type, Optional[Rule]] = {}

    def lookup(self, call: OpCall) -> Optional[Rule]:
        """The rule for ``call`` (module, function or method alike), or ``None``.

        A module's rule is that of the nearest class in its MRO that has one.
        A method called on a constant tensor with a `SymTensor` argument uses
        the rule of the ``torch`` function of the same name, or the rule
        registered for the unbound method ``torch.Tensor.<name>``
        (``torch.arange(w).type_as(x)``).
        """
        if call.module is not None:
            return self.for_module(call.module)
        target = call.target
        if isinstance(target, str):
            if call.args and isinstance(call.args[0], SymTensor):
                return self.methods.get(target)
            rule = self.functions.get(getattr(torch, target, None))
            return rule if rule is not None else self.functions.get(getattr(torch.Tensor, target, None))
        return self.functions.get(target)

    def for_module(self, module: nn.Module) -> Optional[Rule]:
        """The rule of the nearest class in ``type(module)``'s MRO that has one."""
        cls = type(module)
        try:
            return self._module_cache[cls]
        except KeyError:
            rule = next((self.modules[c] for c in cls.__mro__ if c in self.modules), None)
            self._module_cache[cls] = rule
            return rule

    def override(
        self,
        modules: Optional[Mapping[type, Rule]] = None,
        functions: Optional[Mapping[Any, Rule]] = None,
        methods: Optional[Mapping[str, Rule]] = None,
    ) -> RuleSet:
        """A new set with extra or replaced rules; this set is left untouched."""
        return RuleSet(
            {**self.modules, **(modules or {})},
            {**self.functions, **(functions or {})},
            {**self.methods, **(methods or {})},
        )

    def __repr__(self) -> str:
        return (f"RuleSet({len(self.modules)} module types, {len(self.functions)} functions, "
                f"{len(self.methods)} methods)")


# ---------------------------------------------------------------------------
# helpers shared by the rule families
# ---------------------------------------------------------------------------


def hand_over(call: OpCall, x: SymTensor, reason: str, shape=None) -> Any:
    """No exact rule for this call: the analysis' fallback decides (probe or unknown), never a guess."""
    interp = call.interp
    if interp is not None and getattr(interp, "fallback", None) != getattr(interp, "unknown_fallback", None):
        out = interp.fallback(call)
        if isinstance(out, SymTensor) and out.unknown and reason not in out.unknown:
            out.unknown = f"{call.describe()}: {reason}; {out.unknown}"
        return out
    if interp is not None and shape is None:
        # the op's own output structure (a tuple for a recurrent layer), shapes from a run on stand-ins
        try:
            return interp.unknown_fallback(call, f"{call.describe()}: {reason}")
        except RuleError:
            interp.unknown_ops[call.describe()] -= 1  # counted again below
    if interp is not None:
        what = call.describe()
        interp.unknown_ops[what] = interp.unknown_ops.get(what, 0) + 1
    return x.as_unknown(f"{call.describe()}: {reason}", shape=shape)


def tensor_arg(call: OpCall, index: int = 0, name: str = "input") -> SymTensor:
    """Argument ``index`` / ``name``, which must be a `SymTensor`."""
    x = call.arg(index, name)
    if not isinstance(x, SymTensor):
        raise RuleError(f"{call.describe()} at node {call.name!r}: expected a tensor for {name!r}")
    return x


def as_operand(v: Any) -> Optional[SymTensor]:
    """A `SymTensor` as is, a constant tensor as a field-free `SymTensor`, anything else ``None``."""
    if isinstance(v, SymTensor):
        return v
    if isinstance(v, torch.Tensor):
        return SymTensor(tuple(v.shape), v.dtype)
    return None


def norm_dim(dim: int, ndim: int) -> int:
    """A possibly negative dim as a non-negative one."""
    return dim + ndim if dim < 0 else dim


def dims_arg(value: Any, ndim: int) -> list[int]:
    """A dim or a sequence of dims, each made non-negative."""
    values = value if isinstance(value, (list, tuple)) else [value]
    return [int(d) + ndim if int(d) < 0 else int(d) for d in values]


def run_for_shape(call: OpCall, device: Optional[torch.device] = None) -> Any:
    """Run the call's op on data-free stand-ins (meta tensors unless ``device``): its output's shapes."""
    if call.module is not None:
        fn = call.module
    elif isinstance(call.target, str):
        name = call.target

        def fn(self_obj, *a, **k):
            return getattr(self_obj, name)(*a, **k)
    else:
        fn = call.target
    return shape_by_execution(fn, call.args, call.kwargs, device or torch.device("meta"))
