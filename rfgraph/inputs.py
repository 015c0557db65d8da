"""Model inputs: example tensors for tracing, several inputs, and "input too small" diagnostics.

Several inputs.  ``analyze(model, {"x": (1, 3, 64, 64), "y": (1, 3, 32, 32)})``
returns ``{"x": Analysis, "y": Analysis}``: the receptive field of every node
with respect to each input on its own.  The keys are names of ``forward``'s
parameters (in any order; every parameter without a default must be given).
While one input is analysed, the others flow through the pass as tensors with
no spatial fields, so a node that merges both reports its RF in the analysed
input's coordinates.  ``dtype`` may be one dtype or a dict by input name.

Input too small.  When some layer's output would be empty, the pass raises
`InputTooSmallError` naming the layer; `explain_too_small` then searches the
smallest input size that works (re-running the symbolic pass, which takes
milliseconds) and adds it to the message.
"""

from __future__ import annotations

import inspect
import math
import operator
from typing import Any, Callable, Optional

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from .errors import InputShapeError, InputTooSmallError

__all__ = ["example_input", "forward_parameters", "ordered_inputs", "explain_too_small", "check_input_shape"]

#: Largest size of one dim accepted by `check_input_shape` (torch indexes with int64; 2**40 is far beyond
#: any real input and keeps products of a few sizes exact in torch's shape arithmetic).
MAX_SIZE = 1 << 40
#: Largest number of elements of an input (torch's ``numel`` is an int64).
MAX_ELEMENTS = (1 << 63) - 1

#: Largest spatial size tried when searching for the smallest input that works.
SEARCH_LIMIT = 1 << 14


def check_input_shape(input_shape: Any, dtype: torch.dtype = torch.float32, name: str = "input_shape") -> tuple:
    """Validate ``(N, C, *spatial)``; integer inputs may also be ``(N, L)`` token ids (no spatial axis)."""
    try:
        if isinstance(input_shape, (str, bytes)):
            raise TypeError("a string")
        items = list(input_shape)
    except TypeError:
        raise InputShapeError(
            f"{name} must be a sequence of ints like (1, 3, 224, 224), got {input_shape!r}"
        ) from None
    shape_list = []
    for d, s in enumerate(items):
        try:
            if isinstance(s, bool):
                raise TypeError("a bool")
            shape_list.append(operator.index(s))  # ints, numpy and torch integers; never truncates a float
        except TypeError:
            raise InputShapeError(
                f"{name} {tuple(items)!r} has the size {s!r} ({type(s).__name__}) at dim {d}: "
                "sizes must be ints like (1, 3, 224, 224)"
            ) from None
    shape = tuple(shape_list)
    integer = not (dtype.is_floating_point or dtype.is_complex)
    low = 2 if integer else 3
    if not low <= len(shape) <= 5:
        extra = (
            " Integer inputs (token ids for an embedding) may also be (N, L); pass dtype=torch.long."
            if not integer and len(shape) == 2 else ""
        )
        raise InputShapeError(
            f"{name} {shape} has rank {len(shape)}; expected (N, C, L), (N, C, H, W) or (N, C, D, H, W).{extra}"
        )
    bad = [d for d, s in enumerate(shape) if s <= 0]
    if bad:
        raise InputShapeError(
            f"{name} {shape} has size {shape[bad[0]]} at dim {bad[0]}: every size must be at least 1 "
            "(a zero-size tensor has no receptive field)"
        )
    huge = [d for d, s in enumerate(shape) if s > MAX_SIZE]
    if huge or math.prod(shape) > MAX_ELEMENTS:
        where = f"size {shape[huge[0]]} at dim {huge[0]}" if huge else f"{math.prod(shape)} elements"
        raise InputShapeError(
            f"{name} {shape} is too large ({where}): torch tensors hold at most {MAX_ELEMENTS} elements "
            f"and rfgraph accepts sizes up to {MAX_SIZE}"
        )
    return shape


def example_input(model: nn.Module, shape: tuple, dtype: torch.dtype) -> torch.Tensor:
    """A data-free tensor of ``shape`` on the model's device, for ``torch.export``.

    Meta models get a meta tensor; other models a fake tensor (``FakeTensorMode``):
    it has the device, shape and dtype of a real input but no storage, so the
    export of a 20000x20000 input allocates nothing (a real ``torch.zeros`` took
    4.8 GB there).  ``torch.export`` adopts the fake mode of its inputs.
    """
    device = next((p.device for p in model.parameters()), None)
    if device is None:
        device = next((b.device for b in model.buffers()), torch.device("cpu"))
    if device.type == "meta":
        return torch.empty(shape, dtype=dtype, device=device)
    with FakeTensorMode(allow_non_fake_inputs=True):
        return torch.empty(shape, dtype=dtype, device=device)


def forward_parameters(model: nn.Module) -> list[inspect.Parameter]:
    """``forward``'s positional parameters, in order."""
    params = inspect.signature(model.forward).parameters.values()
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p for p in params if p.kind in kinds]


def ordered_inputs(model: nn.Module, shapes: dict) -> list[str]:
    params = forward_parameters(model)
    names = [p.name for p in params]
    unknown = [k for k in shapes if k not in names]
    if unknown:
        raise InputShapeError(
            f"{type(model).__name__}.forward has no parameter {unknown[0]!r}; its parameters are {names}"
        )
    missing = [p.name for p in params if p.name not in shapes and p.default is inspect.Parameter.empty]
    if missing:
        raise InputShapeError(
            f"{type(model).__name__}.forward needs input {missing[0]!r} too: give a shape for each of {names}"
        )
    used = [n for n in names if n in shapes]
    if used != names[: len(used)]:
        skipped = next(n for n in names if n not in shapes)
        raise InputShapeError(
            f"inputs after {skipped!r} are given but {skipped!r} is not: give a shape for it as well"
        )
    return used


def explain_too_small(
    exc: InputTooSmallError, run: Callable[[tuple], Any], shape: tuple, integer_ok: bool = False
) -> InputTooSmallError:
    """``exc`` with the smallest input shape that works appended (``run(shape)`` raises when it does not).

    Assumes that an input that works stays working when made larger, which
    holds for the ops with size rules (every output length is non-decreasing
    in the input length).  First the smallest common size of all spatial dims,
    then each dim on its own with the others at that size.
    """
    spatial = list(range(2, len(shape)))
    if not spatial:
        return exc

    def works(candidate: tuple) -> bool:
        try:
            run(candidate)
        except InputTooSmallError:
            return False
        except Exception:
            return True  # another problem than size: not ours to explain here
        return True

    def with_sizes(sizes: dict) -> tuple:
        return tuple(sizes.get(d, s) for d, s in enumerate(shape))

    def smallest(make: Callable[[int], tuple], low: int) -> Optional[int]:
        high = max(low, 1)
        while not works(make(high)):
            if high >= SEARCH_LIMIT:
                return None
            high = min(2 * high, SEARCH_LIMIT)
        lo = low  # invariant: make(hi) works
        while lo < high:
            mid = (lo + high) // 2
            if works(make(mid)):
                high = mid
            else:
                lo = mid + 1
        return high

    common = smallest(lambda s: with_sizes({d: max(shape[d], s) for d in spatial}), 1)
    if common is None:
        return exc
    base = {d: max(shape[d], common) for d in spatial}
    minimal = {}
    for d in spatial:
        minimal[d] = smallest(lambda s, d=d: with_sizes({**base, d: s}), 1) or base[d]
    good = with_sizes(minimal)
    if not works(good):  # the dims interact: report the common size, which works
        good = with_sizes(base)
    original = str(exc.args[0]).split("\n\nWhile executing")[0]  # torch.fx appends the node's code
    message = (
        f"{original} The smallest input that works is {good} "
        f"(spatial sizes {tuple(good[d] for d in spatial)}; input given: {shape})."
    )
    err = InputTooSmallError(message, node=exc.node, minimal_size=min(good[d] for d in spatial))
    err.minimal_shape = good
    return err
