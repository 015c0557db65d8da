"""The numeric probe: receptive fields measured by back-propagation.

The seed's method (DESIGN.md §4) sets weights to a positive constant and reads
the non-zero extent of the input gradient of one output unit.  Done naively it
fails on real models; this module measures on a *sanitized copy* of the model
(the user's model is never touched), made robust as follows:

* **Underflow, tiny multipliers.**  Every intermediate tensor gets a gradient
  hook that keeps only the non-zero *pattern* of its gradient and multiplies
  it by a fresh positive random factor: what is measured is reachability, not
  magnitude, so a product of a hundred small factors (or a 1e-6 layer scale)
  cannot underflow to zero.
* **Cancellation.**  Weights are positive *random* (not constant), the seed is
  positive random over all channels of the probed unit, and the renormalised
  gradient is random: a LayerNorm backward (which removes the channel mean)
  cannot cancel exactly.
* **Saturation.**  Inputs are small and positive, and pointwise ops whose
  gradient vanishes on part of their domain (ReLU6, hardtanh, hardsigmoid,
  sigmoid, clamp, sign/floor/round, shrinkage) are replaced by the identity.
  A pointwise op never changes which positions a value depends on.
* **Max-pool routing.**  Max pooling becomes a sum over the same window (and
  adaptive max pooling adaptive average pooling), so the backward reaches
  every element of the window, not only the arg-max.
* **Batch coupling.**  The copy runs in eval mode (batchnorm uses running
  statistics, dropout is off; both are also replaced where called
  functionally).
* **Context paths.**  A tensor broadcast from size 1 along a dimension that
  carries the measured input axis (squeeze-and-excitation scales, global
  context) is detached at the broadcast, and the statistics of a
  normalisation are detached when they span such a dimension (GroupNorm,
  InstanceNorm): the probe measures the *local* receptive field, as the
  symbolic pass reports it.  Which dimensions carry the measured axis is read
  from *shapes only*: a dimension carries axis ``k`` when its size changes when
  the input's size along ``k`` changes (two shape-only runs).  No symbolic
  rule is consulted.
* **Clipping.**  Each spatial axis is measured on its own *thin* input: the
  measured axis long enough for the probed units' fields to lie strictly
  inside (size chosen from the symbolic estimate when there is one: field plus
  a margin; otherwise grown until the field stops touching a border), the
  other axes as small as the model accepts.  A result says whether it is
  exact (no measured unit touched a border) or clipped.

For each axis the probe measures consecutive output units ``u0 .. u0 + T``
(``T`` the period of the symbolic map, at least 1), i.e. two neighbours and
one unit per phase, and derives ``rf``, ``stride`` and ``start`` exactly
(integers and `Fraction`s).

Validation (symbolic against numeric) is in `rfgraph.probing.validate`; the
symbolic pass's local fallback (one op probed alone) in `rfgraph.fallback`.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from math import lcm
from typing import TYPE_CHECKING, Any, Callable, Collection, Optional, Sequence

import torch
import torch.fx as fx
from torch import nn

from ..algebra import FiniteMap, PAMap
from ..errors import NodeNotFoundError, ProbeError, RFGraphError
from ..locking import serialized
from ..passes import analyze
from ..sanitize import sanitized_copy, support_safe
from ..tracing import cut, trace
from .runner import Runner

if TYPE_CHECKING:  # pragma: no cover
    from ..results import Analysis, NodeRF


__all__ = ["probe", "ProbeResult", "AxisProbe", "NotIsolableError", "Prober", "MAX_SIZE", "ProbeBudgetError", "Budget", "format_value", "tensor_node",
           "PROBE_THREADS", "intra_op_threads", "inert_nodes"]


# ---------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class AxisProbe:
    """What the probe measured along one input spatial axis."""

    axis: int
    rf: Optional[int]
    stride: Optional[Fraction]
    start: Optional[Fraction]
    #: True when no measured unit's field touched a border of the probing input
    exact: bool
    #: True when the node depends on the whole input along this axis
    is_global: bool
    #: the probing input's shape (thin along the other axes)
    input_shape: tuple[int, ...]
    #: the output units measured (indices along the node's dim carrying this axis)
    units: tuple[int, ...]
    #: measured first / last input coordinate per unit (``None``: the unit reads nothing)
    lo: tuple[Optional[int], ...]
    hi: tuple[Optional[int], ...]
    period: int = 1
    lo_map: Optional[PAMap] = None
    hi_map: Optional[PAMap] = None
    note: str = ""
    #: True when the node's window maps are finite tables (they hold for the analysed length only): the
    #: probe then measures at that length, every unit (or a spread of them), and ``rf`` is the largest
    #: window among units whose window does not touch a border; ``stride`` is not measured
    finite: bool = False

    @property
    def padding(self) -> Optional[Fraction]:
        return None if self.start is None else -self.start


@dataclass(frozen=True)
class ProbeResult:
    """Numeric receptive field of one node, one `AxisProbe` per input spatial axis."""

    node: str
    axes: tuple[AxisProbe, ...]
    dtype: torch.dtype = torch.float64
    seconds: float = 0.0

    @property
    def rf(self) -> tuple[Optional[int], ...]:
        return tuple(a.rf for a in self.axes)

    @property
    def stride(self) -> tuple[Optional[Fraction], ...]:
        return tuple(a.stride for a in self.axes)

    @property
    def start(self) -> tuple[Optional[Fraction], ...]:
        return tuple(a.start for a in self.axes)

    @property
    def padding(self) -> tuple[Optional[Fraction], ...]:
        return tuple(a.padding for a in self.axes)

    @property
    def exact(self) -> bool:
        """True when every axis was measured without touching a border."""
        return all(a.exact for a in self.axes)

    @property
    def clipped(self) -> bool:
        return not self.exact

    @property
    def is_global(self) -> tuple[bool, ...]:
        return tuple(a.is_global for a in self.axes)

    def __str__(self) -> str:
        parts = []
        for a in self.axes:
            if a.is_global:
                parts.append(f"axis {a.axis}: global")
                continue
            state = "exact" if a.exact else "CLIPPED"
            parts.append(
                f"axis {a.axis}: rf {a.rf}, stride {format_value(a.stride)}, start {format_value(a.start)} "
                f"({state}, input {a.input_shape}, units {a.units[0]}..{a.units[-1]})"
            )
        return f"probe {self.node!r}: " + "; ".join(parts)


def format_value(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, Fraction) and v.denominator == 1:
        return str(v.numerator)
    return str(v)


class NotIsolableError(ProbeError):
    """No output dim follows the measured axis' length (fixed-size adaptive pooling upstream): no units to seed."""


class ProbeBudgetError(ProbeError):
    """The probe of one node exceeded its budget (seconds, or elements of the probing input)."""


@dataclass
class Budget:
    """Per-node limits: wall-clock ``seconds`` (``None``: none) and ``max_elements`` of a probing input."""

    seconds: Optional[float] = None
    max_elements: int = 1 << 22
    started: float = 0.0

    def start(self) -> "Budget":
        self.started = time.perf_counter()
        return self

    def check(self, node: str) -> None:
        if self.seconds is not None and time.perf_counter() - self.started > self.seconds:
            raise ProbeBudgetError(f"probing node {node!r} exceeded its budget of {self.seconds:g} s")

    def check_size(self, node: str, shape: Sequence[int]) -> None:
        elements = math.prod(shape[2:])
        if elements > self.max_elements:
            raise ProbeBudgetError(
                f"probing node {node!r} needs an input of shape {tuple(shape)} ({elements} positions), over the "
                f"budget of {self.max_elements} positions"
            )


# ---------------------------------------------------------------------------
# the probe
# ---------------------------------------------------------------------------

MAX_SIZE = 8192
#: torch intra-op threads while probing.  The probing inputs are thin strips (one axis long, the others as
#: thin as the model accepts), so every op is small: a second thread saves little, and on a loaded machine
#: the threads' synchronisation at every op dominates (smp Unet's last node, load 8 on 2 cores: 50 s with
#: torch's 2 threads, 10 s with 1).
PROBE_THREADS = 1


@contextmanager
def intra_op_threads(n: Optional[int]):
    """torch's intra-op thread count set to ``n`` (``None``: unchanged) for the block, then restored."""
    old = torch.get_num_threads()
    if n is None or n == old:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
#: Above this length, a node whose field fits is measured on a crop sized by its field (congruent to the
#: analysed length modulo the model's largest stride), not at the analysed length.
CROP_MIN = 1024
#: Units measured per batched backward pass.
_GRAD_CHUNK = 16
#: A run holding a tensor of this many elements back-propagates its units one at a time (`Prober._grads`).
BATCH_MAX_ELEMENTS = 1 << 24


class Prober:
    """Probe state shared by the axes of one node: the sanitized truncated graph and the runner."""

    def __init__(self, gm: fx.GraphModule, fx_names: Sequence[str], dtype: Optional[torch.dtype], seed: int,
                 inert: Collection[str] = ()):
        # Only what the nodes need is copied and sanitized: the graph cut at them (the user's graph
        # module is read, never modified).
        graph = cut(gm, fx_names)
        self.inert = frozenset(inert)
        #: the (unsanitized) cut graph: which ops a node's cut holds (`support_safe`, per node)
        self.graph = graph
        #: every op of the cut back-propagates a non-negative gradient (`sanitize.support_safe`)
        self.safe = support_safe(graph, self.inert)
        if dtype is None:  # float32 where the gradient's support is exact in it (`sanitize.support_safe`)
            dtype = torch.float32 if self.safe else torch.float64
        self.sanitized = sanitized_copy(graph, dtype, seed)
        self.nodes = {n.name: n for n in self.sanitized.graph.nodes}
        self.dtype = dtype
        self.seed = seed
        self.gen = torch.Generator().manual_seed(seed + 2)
        #: thin sizes of the other axes that worked last, per measured axis (tried first for the next node)
        self.thin_hint: dict[int, int] = {}
        self.batched_ok = True
        #: input shapes refused by a shape-only run -> the nodes at which its runs failed (`try_shapes`)
        self.refused: dict[tuple[int, ...], frozenset[str]] = {}
        #: an input shape the model accepts (the analysed one, set by `probe`): tells a refused size from a graph
        #: that cannot run on meta (`Runner.shapes`)
        self.accepted: Optional[tuple[int, ...]] = None
        #: the node being probed's limits: checked at every node of every run, forward and backward
        self.budget: Optional[Budget] = None
        #: the run kept for the next axis of the node (`measure`), freed by `forget_run` and `select`
        self._kept: Optional[tuple] = None
        self.select(fx_names[0])

    def forget_run(self) -> None:
        """Free the run kept for the next axis (`measure`)."""
        self._kept = None

    def has(self, fx_name: str) -> bool:
        return fx_name in self.nodes

    def select(self, fx_name: str) -> None:
        """Probe ``fx_name`` next (one of the nodes this copy was made for)."""
        self._kept = None
        self.runner = Runner(cut(self.sanitized, [fx_name]), self.seed)
        self.runner_nodes = frozenset(n.name for n in self.runner.graph.nodes)
        self.target = next(n for n in self.runner.graph.nodes if n.name == fx_name)
        self.length_dependent = _length_dependent_op(self.runner.module)
        # A support-safe graph cannot cancel (every backward term is non-negative): its renormalising hooks
        # only keep magnitudes in range, and the ops that move, copy or boundedly scale the gradient need none.
        self.runner.sparse_hooks = self.safe or support_safe(cut(self.graph, [fx_name]), self.inert)

        def check() -> None:
            if self.budget is not None:
                self.budget.check(fx_name)

        self.runner.check = check

    def input_tensor(self, shape: Sequence[int]) -> torch.Tensor:
        # small positive values
        return (torch.rand(tuple(shape), generator=self.gen, dtype=self.dtype) + 0.5) * 0.1

    def try_shapes(self, shape: Sequence[int]) -> Optional[dict]:
        """Node shapes for an input of ``shape`` (a shape-only run), ``None`` when the model refuses it.

        A refusal is remembered with the nodes at which the runs failed: a later node's cut graph holding
        those nodes computes them exactly as before (a cut keeps every ancestor of a kept node, and the
        in-place ops on them that precede it), so it refuses the shape too and is not run again (a fixed-size
        exported graph refuses every thin size, each refusal a shape-only run through the whole encoder)."""
        key = tuple(shape)
        failed = self.refused.get(key)
        if failed is not None and failed <= self.runner_nodes:
            return None
        try:
            return self.runner.shapes(shape, self.dtype, self.accepted)
        except RFGraphError:
            raise
        except Exception:
            at = frozenset(self.runner.refused_at)
            if at and None not in at and "output" not in at:
                self.refused[key] = at
            return None

    def measure(self, shape: tuple[int, ...], axis: int, alt: dict, units_of: Callable,
                dim_hint: Optional[int] = None, budget: Optional[Budget] = None):
        """Run at ``shape``; measure the units chosen by ``units_of(n_out)`` along ``axis``.

        ``alt`` holds the node shapes of a shape-only run at another length
        along ``axis`` (empty when the model accepts no other length: then no
        context path is cut, and the output dim is ``dim_hint``).  Returns
        ``(units, lo, hi, n_out, out_dim, cuts)``.
        """
        # With no other run to compare with (``alt`` empty: a graph that accepts one length only), a run cuts no
        # context by shapes, so the run at ``shape`` is the same for every axis: its graph is kept (the backward
        # passes retain it anyway) and the next axis seeds it again (`forget_run` frees it).
        key = (self.target.name, tuple(shape)) if not alt else None
        if key is not None and self._kept is not None and self._kept[0] == key:
            # (the shape-only runs since then reset the runner's counts of that run's context cuts)
            _, x, out, shapes, self.runner.cut, self.runner.structural_cuts = self._kept
        else:
            self._kept = None  # (freed before the next run)
            x = self.input_tensor(shape).requires_grad_(True)
            try:
                out, shapes = self.runner.run(x.clone(), alt)
            except RFGraphError:
                raise
            except Exception as exc:
                raise ProbeError(
                    f"probing node {self.target.name!r}: the sanitized model failed on an input of shape {shape}: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            if key is not None:
                self._kept = (key, x, out, shapes, self.runner.cut, self.runner.structural_cuts)
        if isinstance(out, (list, tuple)):
            tensors = [o for o in out if isinstance(o, torch.Tensor)]
            if len(tensors) != 1:
                raise ProbeError(f"node {self.target.name!r} gives {len(tensors)} tensors; probe one of them")
            out = tensors[0]
        if not isinstance(out, torch.Tensor) or not out.is_floating_point():
            raise ProbeError(f"node {self.target.name!r} is not a floating-point tensor ({type(out).__name__})")
        if not out.requires_grad:
            raise ProbeError(
                f"node {self.target.name!r} does not depend on the input through differentiable ops "
                "(detached, integer or constant); it cannot be probed"
            )
        alt_out = alt.get(self.target)
        if isinstance(alt_out, tuple) and alt_out and isinstance(alt_out[0], tuple):
            alt_out = next(s for s in alt_out if s is not None)
        if alt_out is not None and len(alt_out) == out.ndim:
            varying = [d for d, (a, b) in enumerate(zip(out.shape, alt_out)) if a != b]
            # several dims follow the length (a map spread along a new dim of that size): the caller's dim,
            # the analysis' own, when it is one of them
            out_dim = dim_hint if dim_hint in varying else (varying[0] if varying else None)
        else:  # no other length accepted: the dim the caller names (the analysis' own, or the input's)
            out_dim = dim_hint if dim_hint is not None and 0 <= dim_hint < out.ndim else None
        n_out = out.shape[out_dim] if out_dim is not None else 1
        units = units_of(n_out)
        in_dim = 2 + axis
        other = [d for d in range(x.ndim) if d != in_dim]
        seeds = []
        for u in units:
            seed = torch.zeros(out.shape, dtype=out.dtype, device=out.device)  # (contiguous: `view(-1)` below)
            if out_dim is None:  # no dim follows this axis: one element (global nodes read everything)
                seed.view(-1)[seed.numel() // 2] = 1.0
            else:
                sl = seed.select(out_dim, u)
                sl.copy_(torch.rand(sl.shape, generator=self.gen, dtype=out.dtype) + 0.5)
            seeds.append(seed)
        los: list[Optional[int]] = []
        his: list[Optional[int]] = []
        largest = max((math.prod(s) for s in shapes.values()
                       if isinstance(s, tuple) and all(isinstance(v, int) for v in s)), default=0)
        for g in self._grads(out, x, seeds, budget, largest):
            if g is None:
                los.append(None)
                his.append(None)
                continue
            hit = (g != 0).any(dim=other) if other else (g != 0)
            idx = torch.nonzero(hit).flatten()
            if idx.numel() == 0:
                los.append(None)
                his.append(None)
            else:
                los.append(int(idx[0]))
                his.append(int(idx[-1]))
        return tuple(units), tuple(los), tuple(his), n_out, out_dim, self.runner.cut

    def _grads(self, out: torch.Tensor, x: torch.Tensor, seeds: list, budget: Optional[Budget], largest: int = 0):
        """Input gradients of ``out`` for each seed: batched backward passes (vmap) where the graph allows and
        they are not slower, one pass per seed otherwise.

        With three seeds or more, the first runs alone and the next two batched, timed: the rest are batched
        only when the pair cost at most twice the single pass.  Batching saves per-op overhead on the thin
        strips most probes run (smp FPN resnet34, 256 x 256: 11.0 s of gradients batched, 13.4 s one unit at
        a time), but some graphs back-propagate slower batched than one unit at a time (torchaudio's
        ConvTasNet output, 16000 samples, float64 tensors of 2 x 512 x 2001: 9 units 74 s batched, 26 s one by
        one).  Either way the gradients are the same; only the time differs.  A run holding a tensor of
        `BATCH_MAX_ELEMENTS` elements or more (``largest``) goes one seed at a time without the trial: a
        batched pass then holds every such tensor (and its renormalised gradient) once per seed, and its
        time is memory traffic (SwinUNETR 3d, windowed attention scores of 44M float64 elements: a pair
        15.1 s batched, 11.4 s one by one, and the pair's copies on top of the peak memory).
        """
        def one(s):
            (g,) = torch.autograd.grad(out, x, s, retain_graph=True, allow_unused=True)
            return g

        def batch(chunk) -> Optional[list]:  # None: the graph refuses the batched backward
            try:
                (g,) = torch.autograd.grad(out, x, torch.stack(chunk), retain_graph=True, allow_unused=True,
                                           is_grads_batched=True)
            except ProbeBudgetError:
                raise
            except Exception:
                self.batched_ok = False
                return None
            return [None] * len(chunk) if g is None else list(g)

        grads: list[Optional[torch.Tensor]] = []
        rest = list(seeds)
        batched = self.batched_ok and largest < BATCH_MAX_ELEMENTS
        if batched and len(rest) >= 3:
            if budget is not None:
                budget.check(self.target.name)
            t0 = time.perf_counter()
            grads.append(one(rest[0]))
            single = time.perf_counter() - t0
            t0 = time.perf_counter()
            pair = batch(rest[1:3])
            paired = time.perf_counter() - t0
            if pair is None:
                rest = rest[1:]
            else:
                grads.extend(pair)
                rest = rest[3:]
            batched = pair is not None and paired <= 2 * single
        for start in range(0, len(rest), _GRAD_CHUNK):
            if budget is not None:
                budget.check(self.target.name)
            chunk = rest[start: start + _GRAD_CHUNK]
            got = batch(chunk) if batched and self.batched_ok and len(chunk) > 1 else None
            grads.extend(got if got is not None else [one(s) for s in chunk])
        return grads

    def partial_alt(self, shape: Sequence[int], axis: int, alt_n: int) -> tuple[dict, str]:
        """Context information for a graph that accepts its analysed length only along ``axis``: the node
        shapes of a shape-only run at length ``alt_n`` (the other sizes of ``shape``) up to the node that
        refuses it (`Runner.partial_shapes`), with a note, when no node from that one on cuts context (reads
        the other run's shapes, `Runner.reads_alt`): those would go uncut.  Else ``({}, "")``.

        A torch.export graph of a length-agnostic model bakes the analysed length into a final ``view``
        (torchaudio's ConvTasNet moves its sources from the batch into the channels with
        ``view(batch, sources, frames)``): every node before it tells, by its shapes, which of its dims carry
        the axis, as a full run at ``alt_n`` would.  Not when a baked size comes earlier, on a context path:
        smp PSPNet's global pooling branch, ``F.interpolate(pool(x), size=(h, w))`` with ``(h, w)`` fixed, has
        the same shape in both runs, so nothing tells that it spreads one value along the axis, and the run
        stops only at the ``cat`` that joins it to the local path.  A node that spreads an input-dependent
        value from size 1 to a size the same in both runs (`Runner.spreads_fixed`) makes the shapes unusable:
        ``({}, note)``, the note naming it.
        """
        other = list(shape)
        other[2 + axis] = alt_n
        main = self.try_shapes(shape)
        shapes, refused = self.runner.partial_shapes(other, self.dtype)
        if not shapes or main is None:
            return {}, ""
        if refused is None:
            return shapes, ""
        order = list(self.runner.graph.nodes)
        if any(self.runner.reads_alt(n) for n in order[order.index(refused):]):
            return {}, ""
        dependent: set[fx.Node] = set()
        for n in order:
            if n.op == "placeholder" and not dependent or any(a in dependent for a in n.all_input_nodes):
                dependent.add(n)
        fixed = next((n for n in order[:order.index(refused)] if n in shapes and self.runner.reads_alt(n)
                      and self.runner.spreads_fixed(n, main, shapes, dependent)), None)
        if fixed is not None:
            return {}, (f"no context cut: a run at length {alt_n} stops at node {refused.name!r}, and before it "
                        f"node {fixed.name!r} spreads a value to a size that is the same in both runs (maybe the "
                        "analysed length baked in): the shapes cannot tell whether that is a context path")
        return shapes, (f"context cut by the shapes of a run at length {alt_n}, which stops at node "
                        f"{refused.name!r} (a size fixed at the analysed length; no context op from there on)")

    def minimal_thin(self, base: list[int], axis: int, n: int, upper: Sequence[int], alt_n: Optional[int]):
        """The smallest sizes (powers of two, then bisected, capped by ``upper``) of the other axes with
        which the model accepts length ``n`` (and ``alt_n``, when given) along ``axis``.

        Returns ``(sizes, node shapes at alt_n)`` (``{}`` without ``alt_n``) or ``None``.
        """
        nd = len(base) - 2

        def attempt(t: int):
            shape = list(base)
            for j in range(nd):
                shape[2 + j] = n if j == axis else min(t, upper[j])
            if self.try_shapes(shape) is None:
                return None
            if alt_n is None:
                shapes: Optional[dict] = {}
            else:
                shape[2 + axis] = alt_n
                shapes = self.try_shapes(shape)
            return None if shapes is None else ([shape[2 + j] for j in range(nd) if j != axis], shapes)

        def done(found):
            others, shapes = found
            sizes = list(others)
            sizes.insert(axis, n)
            return sizes, shapes

        top = max([upper[j] for j in range(nd) if j != axis], default=1)
        hint = self.thin_hint.get(axis)
        if hint is not None:
            found = attempt(hint)
            if found is not None:
                return done(found)
        t = 1
        while True:
            found = attempt(t)
            if found is not None:
                break
            if t >= top:
                return None
            t = min(2 * t, top)
        # Between t / 2 (rejected) and t (accepted): bisect to within 1/8 (thin inputs are the cost).
        low, high = t // 2, t
        while low and high - low > max(1, high // 8):
            mid = (low + high) // 2
            trial = attempt(mid)
            if trial is None:
                low = mid
            else:
                high, found = mid, trial
        self.thin_hint[axis] = high
        return done(found)


def _axis_from_measure(axis, shape, units, los, his, period, n_in, note, can_be_global=True) -> AxisProbe:
    """Turn measured windows of increasing units ``units`` into rf / stride / start.

    ``period`` is the period ``T`` of the maps: the stride is read from two units ``T`` apart, the start
    from a unit of phase 0; with ``T + 1`` consecutive units the periodic maps themselves are recovered.
    ``can_be_global=False``: the input could not be lengthened, so a unit reading all of it is only clipped.
    """
    touching = any(lo is not None and (lo <= 0 or hi >= n_in - 1) for lo, hi in zip(los, his))
    whole = all(lo == 0 and hi == n_in - 1 for lo, hi in zip(los, his)) and can_be_global
    widths = [hi - lo + 1 for lo, hi in zip(los, his) if lo is not None]
    rf = max(widths) if widths else 0
    stride = start = lo_map = hi_map = None
    lo_of = dict(zip(units, los))
    hi_of = dict(zip(units, his))
    T = period
    pairs = [u for u in units if u + T in lo_of and lo_of[u] is not None and lo_of[u + T] is not None]
    if not pairs and T > 1:
        T = 1
        pairs = [u for u in units if u + 1 in lo_of and lo_of[u] is not None and lo_of[u + 1] is not None]
    if pairs:
        base_u = pairs[0]
        advance = lo_of[base_u + T] - lo_of[base_u]
        stride = Fraction(advance, T)
        block = list(range(base_u, base_u + T + 1))
        if all(lo_of.get(u) is not None and hi_of.get(u) is not None for u in block):
            hi_advance = hi_of[base_u + T] - hi_of[base_u]
            lo_table = [0] * T
            hi_table = [0] * T
            for u in block[:T]:
                q, r = divmod(u, T)
                lo_table[r] = lo_of[u] - q * advance
                hi_table[r] = hi_of[u] - q * hi_advance
            lo_map = PAMap(T, advance, lo_table)
            hi_map = PAMap(T, hi_advance, hi_table)
            start = Fraction(lo_map(0))
        else:
            phase0 = [u for u in units if u % T == 0 and lo_of[u] is not None]
            if phase0:
                start = Fraction(lo_of[phase0[0]] - (phase0[0] // T) * advance)
            else:
                note = (note + "; " if note else "") + "some phase reads no input: start not measured"
    elif len(units) == 1 and los[0] is not None:  # a node with no dim along this axis: a fixed window
        stride, start = Fraction(0), Fraction(los[0])
    return AxisProbe(
        axis=axis, rf=None if whole and touching else rf, stride=None if whole and touching else stride,
        start=None if whole and touching else start, exact=not touching, is_global=whole and touching,
        input_shape=tuple(shape), units=tuple(units), lo=tuple(los), hi=tuple(his), period=T,
        lo_map=lo_map, hi_map=hi_map, note=note,
    )


def _finite_units(n_out: int, limit: int = 64, whole: Optional[Callable[[int], bool]] = None,
                  whole_limit: int = 8) -> list[int]:
    """Every unit when there are at most ``limit``, else the first and last 8 and a spread between.

    ``whole(u)``: the symbolic window of unit ``u`` covers the whole probing input (given only where every
    unit is a backward pass through the full-size model, `_probe_axis_finite`).  Such a unit's measured
    window can only be compared with the whole input, so of them are kept: those next to a unit that is not
    whole (where the symbolic window's ends cross the borders: the least margin; chosen above or not) and of
    the chosen ones a spread of
    ``whole_limit`` (the first and last of them included); every other unit chosen above is kept.  The
    symbolic estimate chooses units, never a measured value."""
    if n_out <= limit:
        picks = list(range(n_out))
    else:
        inner = limit - 16
        chosen = set(range(8)) | set(range(n_out - 8, n_out))
        chosen |= {8 + (k * (n_out - 17)) // (inner - 1) for k in range(inner)}
        picks = sorted(chosen)
    if whole is None:
        return picks
    flags = [whole(u) for u in range(n_out)]
    spread = [u for u in picks if flags[u]]
    keep = {u for u in picks if not flags[u]}
    keep |= {u for u in range(n_out) if flags[u] and ((u > 0 and not flags[u - 1]) or
                                                      (u + 1 < n_out and not flags[u + 1]))}
    if spread:
        k = min(whole_limit, len(spread))
        keep |= {spread[(i * (len(spread) - 1)) // max(k - 1, 1)] for i in range(k)}
    return sorted(keep)


def _probe_axis_finite(pr: Prober, axis: int, base: list[int], dim: Optional[int], context: bool = False,
                       maps: Optional[tuple] = None) -> AxisProbe:
    """A node with finite window maps: measured at the analysed length (its maps hold there only), on an
    input thin along the other axes when the model accepts one, else at the analysed shape itself (a graph
    traced by torch.export); the output dim to seed is then the node's dim carrying the axis (``dim``).

    At the analysed shape every unit is a backward pass through the full-size model: with the symbolic
    ``maps`` ``(lo, hi)`` of the axis, units whose symbolic window covers the whole input are thinned
    (`_finite_units`: those next to other units and a spread of 8)."""
    nd = len(base) - 2
    n = base[2 + axis]
    found = pr.minimal_thin(base, axis, n, [max(base[2 + j], 1) for j in range(nd)], 2 * n)
    partial_note = ""
    if found is not None:
        thin, alt = found
        shape = tuple(base[:2]) + tuple(thin[j] if j != axis else n for j in range(nd))
        units, los, his, n_out, out_dim, cut = pr.measure(shape, axis, alt, _finite_units)
    elif dim is not None and pr.try_shapes(base) is not None:
        shape = tuple(base)
        alt, partial_note = pr.partial_alt(shape, axis, 2 * n)
        units_of = _finite_units
        if maps is not None and maps[0] is not None and maps[1] is not None:
            lo_map, hi_map = maps

            def whole(u: int) -> bool:
                try:
                    lo, hi = lo_map(u), hi_map(u)
                except Exception:  # noqa: BLE001 - a unit the symbolic maps do not cover: measured
                    return False
                return lo is not None and hi is not None and lo <= 0 and hi >= n - 1

            def units_of(n_out: int) -> list[int]:
                return _finite_units(n_out, whole=whole)

        def no_context_cut() -> ProbeError:
            return ProbeError(
                f"node {pr.target.name!r} has a global context path, and the model accepts its analysed length "
                f"{n} only along axis {axis}: without a run at another length the probe cannot tell the context "
                "operands apart to cut them, so it would measure the whole input"
                + (f" ({partial_note})" if partial_note else "")
            )

        def units_checked(n_out: int, units_of=units_of) -> list[int]:
            # called after the forward run, before any backward pass: the error below is known by then (the
            # structural cuts are made in the forward), and the backward passes would be thrown away
            if context and not alt and not pr.runner.structural_cuts:
                raise no_context_cut()
            return units_of(n_out)
        units, los, his, n_out, out_dim, cut = pr.measure(shape, axis, alt, units_checked, dim_hint=dim)
        structural = pr.runner.structural_cuts if not alt else 0
        if context and not alt and not structural:
            raise no_context_cut()
        if structural:
            partial_note = (f"{structural} instance-norm statistics detached (context by structure: no run at "
                            "another length)")
    else:
        raise ProbeError(f"the model rejects its analysed input length {n} along axis {axis}")
    if out_dim is None:
        raise NotIsolableError(f"no dimension of node {pr.target.name!r} follows the input's length along axis {axis}")
    inner = [hi - lo + 1 for lo, hi in zip(los, his) if lo is not None and lo > 0 and hi < n - 1]
    start = next((Fraction(lo) for u, lo in zip(units, los) if u == 0 and lo is not None), None)
    a = AxisProbe(axis=axis, rf=max(inner) if inner else None, stride=None, start=start, exact=bool(inner),
                  is_global=False, input_shape=shape, units=tuple(units), lo=tuple(los), hi=tuple(his),
                  note="finite maps: measured at the analysed length" + (f"; {partial_note}" if partial_note else ""),
                  finite=True)
    return _with_note(a, f"{cut} context operand(s) detached") if cut else a


def _probe_axis(pr: Prober, axis: int, base: list[int], est: Optional["NodeRF"], max_size: int,
                period: int = 1, budget: Optional[Budget] = None) -> AxisProbe:
    """Measure one axis.

    ``base`` is the analysed input shape; its length ``n0`` along ``axis`` is where the model is measured
    when the probed units' fields fit in it (or when the model accepts no other length: fixed-size models,
    measured clipped if need be).  Otherwise the probing input is a crop (or an extension) sized by the
    estimated field, of a length congruent to ``n0`` modulo ``period`` (the model's largest stride), so
    that every layer sees the same length residues as at ``n0`` (padding that depends on them, as in
    "same" convolutions, is unchanged).
    """
    budget = budget or Budget().start()
    nd = len(base) - 2
    n0 = base[2 + axis]
    if est is not None and est.source in ("symbolic", "probed") and \
            (_length_bound(est, axis) or pr.length_dependent is not None):
        maps = (est.lo[axis], est.hi[axis]) if axis < len(est.lo) and axis < len(est.hi) else None
        return _probe_axis_finite(pr, axis, base, est.dims[axis] if axis < len(est.dims) else None,
                                  bool(est.global_context), maps)
    upper = [base[2 + j] for j in range(nd)]
    name = pr.target.name
    lo_est = hi_est = None
    if est is not None and est.source in ("symbolic", "probed") and axis < len(est.lo) \
            and est.lo[axis] is not None and est.hi[axis] is not None:
        lo_est, hi_est = est.lo[axis], est.hi[axis]
    regular = lo_est is not None and lo_est.slope > 0
    if regular:
        T = lcm(lo_est.period, hi_est.period)
        margin = 2 * math.ceil(lo_est.slope) + 4
    else:
        T, margin = 1, 4
    dim_hint = est.dims[axis] if est is not None and axis < len(getattr(est, "dims", ())) else None
    if dim_hint is None:
        dim_hint = 2 + axis
    global_est = est is not None and axis < len(est.is_global) and est.is_global[axis]
    P = max(1, int(period))

    def congruent(m: int) -> int:
        """The smallest length >= m (and >= 1) congruent to n0 modulo P."""
        m = max(m, 1)
        return m + (n0 - m) % P

    def plan(margin: int, few: bool = False) -> tuple[list[int], int]:
        """The units to measure (from the first one whose field starts at >= margin) and the length they
        need.  Up to period 8: T + 1 consecutive units (every phase, the maps are recovered); beyond, or with
        ``few``, a phase-0 unit ``a`` and ``a + T`` (start, stride) and the phase of the widest estimated
        window (rf): each window is compared with the symbolic one by validation (every unit is a backward
        pass)."""
        u0 = 0
        if lo_est(0) < margin:  # lo_est is non-decreasing: jump close, then step
            u0 = max(0, int((margin - lo_est(0)) / lo_est.slope) - T - 1)
            while lo_est(u0) < margin:
                u0 += 1
        if T <= 8 and not few:
            chosen = list(range(u0, u0 + T + 1))
        else:
            a = -(-u0 // T) * T
            widths = [hi_est(a + r) - lo_est(a + r) for r in range(T)]
            chosen = sorted({a, a + widths.index(max(widths)), a + T})
        need = max(hi_est(u) for u in chosen) + 1 + margin
        return chosen, need

    chosen: list[int] = []
    if regular:
        chosen, need = plan(margin)
        if need > n0 and plan(1)[1] <= n0:
            # the units fit strictly inside the analysed length with a margin of one pixel: measured there (a
            # map that depends on the length, e.g. GLU's second half at + n/2, holds at this length only)
            margin = 1
            chosen, need = plan(margin)
        n = n0 if need <= n0 <= max(2 * need, CROP_MIN) else congruent(need)
    elif global_est:
        n = n0 if n0 <= CROP_MIN else congruent(CROP_MIN // 4)
    else:
        n = max(n0, 16)
    fixed = False  # the model accepts no other length than n0: measured there, clipped if need be
    attempts = 0
    note = ""
    last: Optional[AxisProbe] = None
    whole_count = 0
    while attempts < 6:
        attempts += 1
        budget.check(name)
        found = None
        if n != n0 and not fixed:
            steps = (1,) if est is not None else (1, 8, 16, 32, 64, 128)
            for step in steps:  # without an estimate: lengths divisible by what strided merges need
                trial = -(-n // step) * step
                if step > 1 and trial == n:
                    continue
                budget.check_size(name, [1, 1] + [trial if j == axis else 1 for j in range(nd)])
                found = pr.minimal_thin(base, axis, trial, [max(u, 1) for u in upper], trial + max(P, trial))
                if found is not None:
                    n = trial
                    break
            if found is None and last is None:
                fixed = True  # try the analysed length itself
            elif found is None:
                break
        if found is None:
            n = n0
            found = pr.minimal_thin(base, axis, n0, [max(u, 1) for u in upper], n0 + max(P, n0))
            if found is None:  # the model accepts its analysed length only: no context information
                found = pr.minimal_thin(base, axis, n0, [max(u, 1) for u in upper], None)
                fixed = True
            if found is None:
                raise ProbeError(
                    f"the model rejects inputs of length {n0} along axis {axis} with the other axes thinner "
                    f"than {upper}"
                )
        thin, alt = found
        shape = tuple(base[:2]) + tuple(thin[j] if j != axis else n for j in range(nd))
        budget.check_size(name, shape)
        partial_note = ""
        if fixed and not alt:  # only the analysed length runs: the shapes up to the node that refuses others
            alt, partial_note = pr.partial_alt(shape, axis, n0 + max(P, n0))
            if not alt and partial_note and est is not None and est.global_context:
                # the shapes were refused because a context path may hide behind a baked size: measured uncut,
                # the node would read the whole input through it (as in `_probe_axis_finite`)
                raise ProbeError(
                    f"node {name!r} has a global context path, and the model accepts its analysed length {n0} "
                    f"only along axis {axis}: the probe cannot tell the context operands apart to cut them, so "
                    f"it would measure the whole input ({partial_note})"
                )
        # a unit's window settles a global axis (it reads the whole input) or refutes it: two units suffice
        k = min(T, 8) + 1 if lo_est is not None else (2 if global_est else 5)
        fits = regular and plan(margin)[1] <= n
        if fits and fixed and T > 1 and list(shape) == list(base):
            # The model accepts its analysed shape only: every unit is a backward pass through the full-size
            # model (SwinUNETR 3d: 5 s each in float64), so the three units of a long period (a phase-0 unit,
            # one period later, the widest phase) instead of one per phase; every window still compared.
            few, few_need = plan(margin, few=True)
            if few_need <= n:
                chosen = few

        def units_of(n_out, k=k, chosen=chosen, fits=fits, whole_only=fixed and n == n0, n=n,
                     full=fixed and list(shape) == list(base)):
            if fits:
                return [u for u in chosen if u < n_out] or [0]
            start = max(0, n_out // 2 - k // 2)
            units = [u for u in range(start, start + k) if u < n_out] or [0]
            if whole_only and len(units) > 3 and (full or lo_est is not None and
                                                  all(lo_est(u) <= 0 and hi_est(u) >= n - 1 for u in units)):
                # Measured clipped at the only length the model accepts (no period, stride or start is read
                # from clipped windows: each measured window is compared with the symbolic one clipped), and
                # every chosen unit's symbolic window covers the whole input (each can only be compared with
                # the whole input), or the input is the analysed shape itself (every unit a backward pass
                # through the full-size model: SwinUNETR 3d's stage 2, 35 s each under load): the first,
                # middle and last of them.
                units = [units[0], units[len(units) // 2], units[-1]]
            return units

        units, los, his, n_out, out_dim, cut = pr.measure(shape, axis, alt, units_of, dim_hint, budget)
        if out_dim is None:
            units = (0,)
            los, his = los[:1], his[:1]
            if not (los[0] == 0 and his[0] == n - 1):
                raise NotIsolableError(
                    f"no dimension of node {pr.target.name!r} follows the input's length along axis {axis} "
                    f"(e.g. adaptive pooling to a fixed size, or a flatten, upstream), and one of its elements "
                    f"reads input [{los[0]}, {his[0]}] of {n}: the probe cannot isolate units to measure a stride"
                )
        if len(units) < min(k, 2) and out_dim is not None and not fixed:
            n = congruent(n + max(int(math.ceil(lo_est.slope)) if lo_est is not None else 1, 1) * (k + 2))
            continue
        T_used = T
        if lo_est is None and len(units) > 2:
            T_used = _smallest_period(los, his)
        fixed_note = note
        if fixed and not alt and pr.runner.structural_cuts:
            partial_note = (f"{pr.runner.structural_cuts} instance-norm statistics detached (context by structure: "
                            "no run at another length)")
        if fixed and (partial_note or not alt):
            fixed_note = (note + "; " if note else "") + \
                f"measured at the analysed length {n0} only (the model accepts no other); " + \
                (partial_note or "no context cut")
        last = _axis_from_measure(axis, shape, units, los, his, T_used, n, fixed_note,
                                  can_be_global=global_est or not fixed)
        if cut:
            last = _with_note(last, f"{cut} context operand(s) detached")
        if last.exact or fixed:
            return last
        if last.is_global:
            whole_count += 1
            if global_est or whole_count >= 2 or 2 * n > max_size:
                return last
        if 2 * n > max_size:
            break
        margin *= 2
        if regular:
            chosen, need = plan(margin)
            n = congruent(max(2 * n, need))
        else:
            n = congruent(2 * n)
    if last is None:
        raise ProbeError(f"probing node {name!r} along axis {axis}: no input length could be measured")
    return last


def inert_nodes(analysis: "Analysis") -> frozenset[str]:
    """fx names of the analysis' nodes that hold no tensor or depend on no input position (shape arithmetic,
    constants): their ops do not matter for the probe's float type."""
    return frozenset(r.fx_name or r.name for r in analysis if r.source == "nonspatial")


def _length_dependent_op(gm: fx.GraphModule) -> Optional[str]:
    """The first resampling with ``align_corners=True`` in ``gm`` (``None`` if none): its map has slope
    ``(n_in - 1) / (n_out - 1)``, so the node's maps at another input length (even one congruent modulo every
    stride) are other maps; such a node is measured at the analysed length."""
    for n in gm.graph.nodes:
        flag = None
        if n.op == "call_module":
            try:
                flag = getattr(gm.get_submodule(n.target), "align_corners", None)
            except AttributeError:
                flag = None
        elif n.op == "call_function":
            name = getattr(n.target, "__name__", "")
            if "align_corners" in n.kwargs:
                flag = n.kwargs["align_corners"]
            elif name in ("interpolate", "upsample") and len(n.args) > 4:
                flag = n.args[4]
            elif name.startswith(("upsample_", "_upsample_")) and len(n.args) > 2 and isinstance(n.args[2], bool):
                flag = n.args[2]  # aten upsample_bilinear2d(input, output_size, align_corners, ...)
        if flag is True:
            return n.name
    return None


def _length_bound(est: "NodeRF", axis: int) -> bool:
    """Whether the node's maps along ``axis`` hold at the analysed length only: a finite table, or a periodic
    map whose period spans the node's whole dim (a causal prefix, ``L(u) = 0`` stored with period ``n``: its
    periodic extension is no field of a longer input).  The probe then measures at the analysed length."""
    if axis >= len(est.lo) or est.lo[axis] is None or est.hi[axis] is None:
        return False
    maps = (est.lo[axis], est.hi[axis])
    if any(isinstance(m, FiniteMap) for m in maps):
        return True
    dim = est.dims[axis] if axis < len(est.dims) else None
    if dim is None or est.shape is None or dim >= len(est.shape):
        return False
    n = est.shape[dim]
    return n > 1 and any(isinstance(m, PAMap) and m.period >= n for m in maps)


def _length_period(analysis: "Analysis", axis: int, cap: int = 1024) -> int:
    """The lcm of the (numerators of the) strides of the analysed nodes along ``axis``, capped: lengths
    congruent modulo it give every layer the same length residues (the symbolic results only choose sizes)."""
    period = 1
    for r in analysis:
        if r.source not in ("symbolic", "probed") or axis >= len(r.stride) or r.is_global[axis]:
            continue
        s = r.stride[axis]
        if s is not None and s > 0:
            period = lcm(period, Fraction(s).numerator)
            if period > cap:
                return cap
    return period


def _with_note(a: AxisProbe, note: str) -> AxisProbe:
    from dataclasses import replace

    return replace(a, note=(a.note + "; " if a.note else "") + note)


def _smallest_period(los, his) -> int:
    k = len(los)
    for T in range(1, k):
        if any(v is None for v in los) or any(v is None for v in his):
            break
        if all(los[u + T] - los[u] == los[T] - los[0] and his[u + T] - his[u] == his[T] - his[0]
               for u in range(k - T)):
            return T
    return 1


def tensor_node(gm: fx.GraphModule, fx_name: str, name: str) -> str:
    """The fx node holding the tensor of ``fx_name`` (the output node stands for its single argument)."""
    target = next((n for n in gm.graph.nodes if n.name == fx_name), None)
    if target is not None and target.op == "output":
        inner = target.args[0]
        while isinstance(inner, (list, tuple)) and len(inner) == 1:
            inner = inner[0]
        if not isinstance(inner, fx.Node):
            raise ProbeError(f"node {name!r} (the model output) holds several tensors; probe one of them")
        return inner.name
    return fx_name


def _resolve(gm: fx.GraphModule, names: dict[fx.Node, str], node: str) -> fx.Node:
    by_name = {q: n for n, q in names.items() if n.op not in ("placeholder", "output", "get_attr")}
    if node in by_name:
        return by_name[node]
    fx_nodes = {n.name: n for n in gm.graph.nodes}
    if node in fx_nodes:
        return fx_nodes[node]
    found = None
    for q, n in by_name.items():
        if q == node or q.startswith(node + "."):
            found = n
    if found is None:
        raise NodeNotFoundError(node, list(by_name))
    return found


def _infer_input_shape(gm: fx.GraphModule) -> tuple[int, ...]:
    for n in gm.graph.nodes:
        if n.op == "call_module":
            m = gm.get_submodule(n.target)
            weight = getattr(m, "weight", None)
            if hasattr(m, "in_channels") and isinstance(weight, torch.Tensor) and weight.ndim >= 3:
                return (1, int(m.in_channels)) + (32,) * (weight.ndim - 2)
    raise ProbeError("cannot tell the model's input channels and rank; pass input_shape=(1, C, H, W)")


@serialized
def probe(
    model: nn.Module,
    node: str,
    input_shape: Optional[Sequence[int]] = None,
    *,
    analysis: Optional["Analysis"] = None,
    dtype: Optional[torch.dtype] = None,
    leaf_modules: Sequence[type] = (),
    autowrap_functions: Sequence[Callable] = (),
    axes: Optional[Sequence[int]] = None,
    use_estimate: bool = True,
    max_size: int = MAX_SIZE,
    seed: int = 0,
    budget: Optional[float] = None,
    max_elements: int = Budget.max_elements,
    threads: Optional[int] = PROBE_THREADS,
    _prober: Optional["Prober"] = None,
) -> ProbeResult:
    """Measure the receptive field of ``node`` numerically.

    ``node`` is a node name, fx node name or module name, as in `Analysis`.
    ``input_shape`` gives the channels and rank (and, without a symbolic
    estimate, the starting size); the measured sizes are chosen by the probe.
    When ``analysis`` is given (or ``input_shape`` is, and ``use_estimate``),
    the symbolic result is used *only* to choose the input sizes and the
    units measured.  ``model`` is never modified; a model on the ``meta``
    device works (its copy is materialised with random positive weights).

    With an analysis, each axis is measured at the analysed length when the
    probed units' fields fit in it, else on a length sized by the field and
    congruent to the analysed one modulo the model's largest stride; a model
    that accepts no other length is measured at its own, clipped if need be
    (`AxisProbe.exact` is then False and validation compares the clipped
    windows).  ``budget`` (seconds) and ``max_elements`` (positions of a
    probing input) bound the work: beyond them a `ProbeBudgetError` is raised; the seconds are checked at
    every node of every forward and backward run.  ``threads``: torch's intra-op threads while probing
    (`PROBE_THREADS`; ``None`` keeps torch's setting).  ``dtype`` ``None`` (the default) is float32 when
    every op between the input and the node keeps the gradient's non-zero pattern exact in float32
    (`rfgraph.sanitize.support_safe`), float64 otherwise; `ProbeResult.dtype` says which.

    >>> import torch.nn as nn
    >>> net = nn.Sequential(nn.Conv1d(1, 1, 3), nn.Conv1d(1, 1, 3, stride=2), nn.Conv1d(1, 1, 3))
    >>> r = probe(net, "2", (1, 1, 32))
    >>> r.rf, r.stride, r.start, r.exact
    ((9,), (Fraction(2, 1),), (Fraction(0, 1),), True)
    """
    if not isinstance(node, str):
        raise TypeError(f"probe(model, node, input_shape): node must be a node or module name (a str), not "
                        f"{type(node).__name__} {node!r}")
    t0 = time.perf_counter()
    if analysis is None and input_shape is not None and use_estimate:
        try:
            analysis = analyze(model, input_shape, leaf_modules=leaf_modules, autowrap_functions=autowrap_functions)
        except RFGraphError:
            analysis = None
    est = None
    if analysis is not None and analysis.graph_module is not None:
        gm = analysis.graph_module
        name = analysis.resolve(node)
        rec = analysis[name]
        fx_name = rec.fx_name or name
        est = rec if use_estimate else None
        base = list(input_shape) if input_shape is not None else list(analysis.input_shape)
    else:
        traced = trace(model, leaf_modules=leaf_modules, autowrap_functions=autowrap_functions)
        gm = traced.graph_module
        target = _resolve(gm, traced.names, node)
        name = traced.name(target)
        fx_name = target.name
        base = list(input_shape) if input_shape is not None else list(_infer_input_shape(gm))
    base[0] = 1
    nd = len(base) - 2
    fx_name = tensor_node(gm, fx_name, name)
    if _prober is not None and _prober.has(fx_name):
        pr = _prober
    else:
        pr = Prober(gm, [fx_name], dtype, seed, inert_nodes(analysis) if analysis is not None else ())
    pr.select(fx_name)
    pr.accepted = tuple(base)
    limits = Budget(budget, max_elements).start()
    pr.budget = limits
    results = []
    try:
        for axis in (range(nd) if axes is None else axes):
            period = _length_period(analysis, axis) if analysis is not None else 1
            try:
                with intra_op_threads(threads):
                    results.append(_probe_axis(pr, axis, base, est, max_size, period, limits))
            except ProbeError as exc:
                if "rejects inputs of length" in str(exc) and analysis is not None \
                        and analysis.meta.get("trace") == "export":
                    raise ProbeError(
                        f"{exc} (here the graph was traced by torch.export, which fixes every shape to the "
                        f"analysed input {tuple(analysis.input_shape)})"
                    ) from exc
                raise
    finally:
        pr.forget_run()
    return ProbeResult(name, tuple(results), pr.dtype, time.perf_counter() - t0)
