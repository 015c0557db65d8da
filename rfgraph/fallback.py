"""The symbolic pass's fallback for an op with no rule: probe the op alone and fit its window maps.

It runs the op on real tensors (a sanitized copy for a module) and measures, by
back-propagation, the input window of every output position; see `fallback`.
"""

from __future__ import annotations

from math import lcm
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional, Sequence

import torch

from .algebra import GLOBAL, PAMap
from .errors import ProbeError, RFGraphError
from .sanitize import sanitized_copy
from .values import Axis, SymTensor, shape_by_execution

if TYPE_CHECKING:  # pragma: no cover
    from .rules import OpCall


__all__ = ["fallback"]


# ---------------------------------------------------------------------------
# local fallback: probe one op without a rule, fit its window maps
# ---------------------------------------------------------------------------


class _NoFit(Exception):
    """The op's windows are not periodic-affine (the message says where the fit failed)."""


_MAX_PERIOD = 16
_GRAD_CHUNK = 32
#: Elements of the seeds of one batched backward pass (bounds the fallback's memory at large lengths).
_SEED_ELEMENTS = 1 << 21
#: Size of the other spatial dims while one dim is measured.
_THIN = 8


def fallback(call: "OpCall") -> Any:
    """Symbolic-pass fallback for an op or leaf module with no rule: probe it alone.

    The op is run on real tensors (a sanitized copy for a module) at several
    lengths of each spatial dimension it reads; for every output position the
    input window ``[L(u), H(u)]`` is measured by back-propagation.  Periodic-
    affine maps are fitted on interior positions of two lengths and must then
    reproduce every measured window, borders included (clipped to the input),
    at further lengths not used for the fit, among them the length the model
    actually has there.  The maps are applied to the `SymTensor`, marked
    ``probed``.  When no such map fits, the dimension is global if every output
    reads the whole input, otherwise the node is ``unknown`` with the reason.

    Usable as ``analyze(..., fallback=fallback)``; `rfgraph.analyze` uses it by
    default (``fallback="unknown"`` opts out).
    """
    interp = call.interp
    syms = call.sym_args()
    if interp is None:
        raise ProbeError("the probe fallback needs the symbolic pass (call.interp) to run the op")
    if any(a.unknown for a in syms) or not syms:
        return interp.unknown_fallback(call)
    try:
        return _probe_op(call, syms)
    except _NoFit as exc:
        return _unknown(call, f"no rule for {call.describe()}, and the probe fallback found no window map: {exc}")
    except RFGraphError:
        raise
    except Exception as exc:  # the op refused the probe's inputs
        return _unknown(
            call, f"no rule for {call.describe()}, and probing it failed: {type(exc).__name__}: {exc}"
        )


def _unknown(call: "OpCall", reason: str) -> Any:
    return call.interp.unknown_fallback(call, reason)


def _op_callable(call: "OpCall") -> Callable:
    interp = call.interp
    if call.module is not None:
        cache = interp.__dict__.setdefault("_probe_module_cache", {})
        key = id(call.module)
        if key not in cache:
            cache[key] = sanitized_copy(call.module, torch.float64)
        return cache[key]
    return interp._callable(call)


def _real_args(call: "OpCall", x_sym: Any, x_real: torch.Tensor, consts: dict) -> tuple[tuple, dict]:
    def conv(v):
        if v is x_sym:
            return x_real
        if isinstance(v, torch.Tensor):
            key = id(v)
            if key not in consts:
                if v.is_meta:
                    t = torch.rand(v.shape, dtype=torch.float64) + 0.5 if v.is_floating_point() else \
                        torch.zeros(v.shape, dtype=v.dtype)
                else:
                    t = v.detach().to(torch.float64) if v.is_floating_point() else v
                consts[key] = t
            return consts[key]
        if isinstance(v, (list, tuple)):
            items = [conv(a) for a in v]
            return type(v)(*items) if hasattr(v, "_fields") else type(v)(items)
        if isinstance(v, dict):
            return {k: conv(a) for k, a in v.items()}
        return v

    return conv(call.args), conv(call.kwargs)


class _OpProbe:
    def __init__(self, call: "OpCall", x):
        self.call = call
        self.x = x
        self.fn = _op_callable(call)
        self.consts: dict[int, torch.Tensor] = {}
        self.gen = torch.Generator().manual_seed(0)

    def run(self, shape: Sequence[int], grad: bool = False):
        xr = (torch.rand(tuple(shape), generator=self.gen, dtype=torch.float64) + 0.5)
        if grad:
            xr.requires_grad_(True)
        args, kwargs = _real_args(self.call, self.x, xr, self.consts)
        with torch.set_grad_enabled(grad):
            out = self.fn(*args, **kwargs)
        return xr, out

    def windows(self, shape: Sequence[int], d: int, which: Optional[Callable[[int], Sequence[int]]] = None
                ) -> tuple[int, list[Optional[tuple[int, int]]]]:
        """Measured (clipped) input window along ``d`` of every output position along ``d`` (or of the
        positions ``which(n_out)``; the others are ``None`` in the list)."""
        xr, out = self.run(shape, grad=True)
        if not isinstance(out, torch.Tensor) or not out.requires_grad:
            raise _NoFit("the op's output does not depend differentiably on its input")
        n_out = out.shape[d]
        other = [i for i in range(xr.ndim) if i != d]
        wanted = list(range(n_out)) if which is None else sorted({u for u in which(n_out) if 0 <= u < n_out})
        result: list[Optional[tuple[int, int]]] = [None] * n_out
        chunk = max(1, min(_GRAD_CHUNK, _SEED_ELEMENTS // max(out.numel(), 1)))
        for start in range(0, len(wanted), chunk):
            units = wanted[start: start + chunk]
            seeds = torch.zeros((len(units),) + tuple(out.shape), dtype=out.dtype)
            for i, u in enumerate(units):
                sl = seeds[i].select(d, u)
                sl.copy_(torch.rand(sl.shape, generator=self.gen, dtype=out.dtype) + 0.5)
            try:
                (g,) = torch.autograd.grad(out, xr, seeds, retain_graph=True, is_grads_batched=True)
                grads = list(g)
            except Exception:
                grads = [torch.autograd.grad(out, xr, s, retain_graph=True)[0] for s in seeds]
            for u, g in zip(units, grads):
                hit = (g != 0).any(dim=other) if other else (g != 0)
                idx = torch.nonzero(hit).flatten()
                result[u] = None if idx.numel() == 0 else (int(idx[0]), int(idx[-1]))
        return n_out, result


def _probe_op(call: "OpCall", syms: list) -> Any:
    if len(syms) != 1:
        raise _NoFit(f"it takes {len(syms)} tensors that depend on the input; the fallback probes ops of one")
    x = syms[0]
    if not x.dtype.is_floating_point:
        raise _NoFit(f"its input has dtype {x.dtype}; gradients need a floating-point input")
    op = _OpProbe(call, x)
    # The output's shape and dtype from data-free stand-ins (never a full-size real run: the probe
    # itself works on inputs thin along the other dims and sized by the fit, see _fit_dim).
    out = shape_by_execution(call.interp._callable(call), call.args, call.kwargs, call.interp.device)
    if not isinstance(out, torch.Tensor):
        return call.interp.unknown_fallback(call)
    if not out.is_floating_point():
        raise _NoFit(f"its output has dtype {out.dtype}")
    local = [d for d, tag in enumerate(x.tags) if tag is not None and any(not f.is_global for _, f in tag.items())]
    if not local:
        # Nothing local left (a head after global pooling): each output element can depend on no more
        # than the input's fields, which every element of the input shares.
        out_sym = SymTensor(tuple(out.shape), x.dtype, None, _all_fields(x), None, x.global_context, True)
        return out_sym
    if any(not isinstance(x.tags[d], Axis) for d in local):
        raise _NoFit("it reads a dimension holding flattened or shuffled spatial positions")
    dims = local
    if out.ndim != x.ndim:
        raise _NoFit(f"it changes the rank ({x.ndim} -> {out.ndim}); positions cannot be followed")
    per_dim = {}
    global_dims = []
    for d in dims:
        fitted = _fit_dim(op, x.shape, d, tuple(out.shape), dims)
        if fitted is None:
            global_dims.append(d)
        else:
            low, high = fitted
            per_dim[d] = (low, high, out.shape[d])
    result = x.windows(per_dim, call.describe()) if per_dim else x
    if global_dims:
        result = result.globalize(global_dims, call.describe())
    result = result.like(shape=tuple(out.shape))
    result.probed = True
    return result


def _all_fields(x: Any) -> dict:
    """Every field ``x`` holds, merged per axis (global wins)."""
    out: dict = {}
    for k, fields in x.axis_fields().items():
        merged = fields[0]
        for f in fields[1:]:
            try:
                merged = merged.merge(f)
            except ValueError:
                merged = GLOBAL
        out[k] = merged
    return out


def _sizes_that_run(op: _OpProbe, base: Sequence[int], d: int, candidates: Iterable[int], want: int,
                    skip: set) -> list[int]:
    found = []
    for m in candidates:
        if m in skip or m < 1:
            continue
        shape = list(base)
        shape[d] = m
        try:
            _, out = op.run(shape)
        except Exception:
            continue
        if isinstance(out, torch.Tensor) and out.ndim == len(base) and out.shape[d] >= 1:
            found.append(m)
            skip.add(m)
            if len(found) == want:
                break
    return found


def _fit_dim(op: _OpProbe, base: tuple[int, ...], d: int, out_shape: tuple[int, ...],
             spatial: Sequence[int]) -> Optional[tuple[PAMap, PAMap]]:
    """Window maps of dim ``d``; ``None`` when every output reads the whole dim (global).

    Memory and time follow the fit, not the input: the other spatial dims are thin, the maps are fitted
    and checked on short lengths, and at the model's own length ``n`` only the output positions near the
    borders (where clipping or a length-dependent window shows) and a few interior ones are measured.
    """
    n = base[d]
    # Thin along the other spatial dims when the op accepts it (cheaper backward passes).
    thin = list(base)
    for j in spatial:
        if j != d:
            thin[j] = min(base[j], _THIN)
    if thin != list(base) and not _sizes_that_run(op, thin, d, [n], 1, set()):
        thin = list(base)
    used: set[int] = {n}
    small = max(24, min(n, 40))
    fit_sizes = _sizes_that_run(op, thin, d, range(small, small + 12), 2, used)
    check_sizes = _sizes_that_run(op, thin, d, range(small + 13, small + 40), 1, used)
    if len(fit_sizes) < 2:
        raise _NoFit(f"it runs on too few lengths of dim {d} near {small} to fit a map")
    # The output dim following d must be d itself (the windows API keeps positions in place).
    _, first = op.run(_with(thin, d, n))
    _, other = op.run(_with(thin, d, fit_sizes[0]))
    changed = [i for i, (a, b) in enumerate(zip(first.shape, other.shape)) if a != b]
    if changed != [d]:
        if not changed:
            raise _NoFit(f"no output dim follows the length of input dim {d}")
        raise _NoFit(f"input dim {d} moves to output dim(s) {changed}; the fallback keeps positions in place")
    base = tuple(thin)
    measured = {m: op.windows(_with(base, d, m), d) for m in fit_sizes + check_sizes}

    def whole(found: dict) -> bool:
        return all(w == (0, m - 1) for m, (_, ws) in found.items() for w in ws)

    low = high = None
    try:
        low = _fit_map([(m, [None if w is None else w[0] for w in measured[m][1]]) for m in fit_sizes])
        high = _fit_map([(m, [None if w is None else w[1] for w in measured[m][1]]) for m in fit_sizes])
        if not (low.is_monotone() and high.is_monotone()):
            raise _NoFit(f"the fitted window maps of dim {d} are not monotone ({low}, {high})")
        _check(low, high, measured, fit_sizes, d)
        # The model's own length: the positions whose window the borders clip, two periods beyond them,
        # and two periods in the middle (a window depending on the length shows at either end).
        T = lcm(low.period, high.period)

        def near_borders(n_out: int) -> list[int]:
            clipped = [u for u in range(n_out) if low(u) < 0 or high(u) > n - 1] if n_out <= 4096 else \
                [u for u in (*range(0, 4096), *range(n_out - 4096, n_out)) if low(u) < 0 or high(u) > n - 1]
            pad = 2 * T + 2
            picks = set(range(min(pad, n_out))) | set(range(max(0, n_out - pad), n_out))
            for u in clipped:
                picks.update(range(max(0, u - pad), min(n_out, u + pad + 1)))
            mid = n_out // 2
            picks.update(range(max(0, mid - T), min(n_out, mid + T + 1)))
            return sorted(picks)

        at_n = op.windows(_with(base, d, n), d, near_borders)
        at_n_ws = at_n[1]
        picked = set(near_borders(at_n[0]))
        _check(low, high, {n: (at_n[0], [w if u in picked else _SKIP for u, w in enumerate(at_n_ws)])},
               fit_sizes, d)
    except _NoFit:
        if whole(measured):
            ends = op.windows(_with(base, d, n), d, lambda n_out: (0, n_out // 2, n_out - 1))
            if whole({n: (ends[0], [w for w in ends[1] if w is not None])}):
                return None
        raise
    return low, high


_SKIP = object()  # a position not measured at that length


def _check(low: PAMap, high: PAMap, measured: dict, fit_sizes: Sequence[int], d: int) -> None:
    """Raise `_NoFit` unless the maps reproduce every measured window (clipped to the input)."""
    for m, (_, ws) in measured.items():
        for u, w in enumerate(ws):
            if w is _SKIP:
                continue
            lo, hi = max(low(u), 0), min(high(u), m - 1)
            predicted = None if lo > hi else (lo, hi)
            if predicted != w:
                raise _NoFit(
                    f"along dim {d}, the map fitted on lengths {fit_sizes} (L = {low}, H = {high}) predicts "
                    f"window {predicted} for output {u} at length {m}, but the probe measured {w}"
                )


def _with(shape: Sequence[int], d: int, m: int) -> tuple[int, ...]:
    out = list(shape)
    out[d] = m
    return tuple(out)


def _fit_map(data: list[tuple[int, list[Optional[int]]]]) -> PAMap:
    """Smallest-period periodic-affine map through the interior values of every length.

    Interior: strictly inside ``[0, m - 1]`` (a value at the border may be clipped).
    """
    points = [(m, u, v) for m, values in data for u, v in enumerate(values) if v is not None and 0 < v < m - 1]
    if not points:
        raise _NoFit("no output position reads an interior window")
    for m, values in data:
        inner = [u for u, v in enumerate(values) if v is not None and 0 < v < m - 1]
        if inner and any(values[u] is None for u in range(inner[0], inner[-1] + 1)):
            raise _NoFit("some output positions read no input at all")
    by_size: dict[int, dict[int, int]] = {}
    for m, u, v in points:
        by_size.setdefault(m, {})[u] = v
    for period in range(1, _MAX_PERIOD + 1):
        advance = None
        for values in by_size.values():
            for u, v in values.items():
                if u + period in values:
                    advance = values[u + period] - v
                    break
            if advance is not None:
                break
        if advance is None:
            continue
        table: dict[int, int] = {}
        ok = True
        for _, u, v in points:
            q, r = divmod(u, period)
            base = v - q * advance
            if table.setdefault(r, base) != base:
                ok = False
                break
        if ok and len(table) == period:
            return PAMap(period, advance, [table[r] for r in range(period)])
    raise _NoFit(f"no periodic-affine map of period <= {_MAX_PERIOD} fits the measured windows")
