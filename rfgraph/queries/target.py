"""`target_rf`: how far each stage is from a target RF, and the fewest kernel or dilation changes that reach it."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Optional, Sequence

from torch import nn

from ..errors import RFGraphError
from ..passes import analyze
from ..results import Analysis
from ..tracing import ancestors
from .common import Resizer, axis_length, is_local, node_record, require_local, traced_of

__all__ = ["TARGET_ASSUMPTIONS", "LayerChange", "TargetPlan", "target_rf"]

# ---------------------------------------------------------------------------
# target RF
# ---------------------------------------------------------------------------

TARGET_ASSUMPTIONS = (
    "RF = max over paths of 1 + sum(extent_l * J_l), extent = dilation*(kernel-1), J_l = effective stride at "
    "layer l's input; changing one layer's extent by D raises every path through it by D*J_l, so the node's RF "
    "rises by that when the layer lies on a longest path. Kernels grow by 2 (odd kernels) and padding grows by "
    "D/2 so that every size, and every merge, is kept. Extents are capped at the layer's input length (beyond it "
    "a unit reads only padding). Several changes are assumed additive (true on one longest path); every proposed "
    "change set is checked by re-running the analysis, and only verified ones are reported."
)


@dataclass(frozen=True)
class LayerChange:
    """One proposed change of a conv / pool layer."""

    layer: str
    what: str  # "kernel" or "dilation"
    old: int
    new: int
    gain: int  # RF gain predicted by the assumption (in input pixels, axis 0)


@dataclass(frozen=True)
class TargetPlan:
    """Distance of each stage to a target RF, and change sets that reach it."""

    node: str
    target: int
    rf: int
    stages: tuple[tuple[str, int, int], ...]  # (node, rf, rf - target) along axis 0
    #: change sets that reach the target, fewest changes first, each with its verified RF
    solutions: tuple[tuple[tuple[LayerChange, ...], int], ...]
    assumptions: str = TARGET_ASSUMPTIONS

    @property
    def fewest_changes(self) -> Optional[int]:
        return len(self.solutions[0][0]) if self.solutions else (0 if self.rf >= self.target else None)


def _candidate_layers(analysis: Analysis, node: str) -> list[tuple[str, nn.Module, int, int]]:
    """``(module name, module, J, n_in)`` of the conv / pool modules upstream of ``node`` (axis 0)."""
    gm = analysis.graph_module
    records = {r.fx_name: r for r in analysis.records}
    target = next(n for n in gm.graph.nodes if n.name == node_record(analysis, node).fx_name)
    upstream = ancestors(target)
    out = []
    for n in gm.graph.nodes:
        if n not in upstream or n.op != "call_module":
            continue
        m = gm.get_submodule(n.target)
        is_conv = isinstance(m, nn.modules.conv._ConvNd) and not isinstance(m, nn.modules.conv._ConvTransposeNd)
        is_pool = isinstance(m, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d))
        if not (is_conv or is_pool) or isinstance(getattr(m, "padding", 0), str):
            continue
        src = next((records[a.name] for a in n.all_input_nodes if a.name in records), None)
        if src is None or not is_local(src, 0) or src.stride[0] is None or src.stride[0].denominator != 1 \
                or not src.is_regular(0):
            continue
        out.append((n.target, m, int(src.stride[0]), axis_length(src, 0)))
    return out


def _kd(m: nn.Module) -> tuple[int, int]:
    k = m.kernel_size[0] if isinstance(m.kernel_size, tuple) else m.kernel_size
    d = getattr(m, "dilation", 1)
    d = d[0] if isinstance(d, tuple) else d
    return int(k), int(d)


def _options(m: nn.Module, j: int, n_in: int, need: Optional[int]) -> list[LayerChange]:
    """Smallest kernel and dilation change of ``m`` giving at least ``need`` (``None``: the largest allowed)."""
    k, d = _kd(m)
    ext = d * (k - 1)
    out = []
    if k % 2 == 1:
        # kernel k + 2t: extent + 2*t*d
        t_max = (n_in - 1 - ext) // (2 * d)
        t = t_max if need is None else max(1, -(-need // (2 * d * j)))
        if 1 <= t <= t_max:
            out.append(LayerChange("", "kernel", k, k + 2 * t, 2 * t * d * j))
    if k >= 2 and not isinstance(m, (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)):
        step = 1 if (k - 1) % 2 == 0 else 2  # padding must grow by an integer
        e_max = (n_in - 1 - ext) // ((k - 1) * step)
        e = e_max if need is None else max(1, -(-need // ((k - 1) * step * j)))
        if 1 <= e <= e_max:
            out.append(LayerChange("", "dilation", d, d + e * step, e * step * (k - 1) * j))
    return out


def _new_extent(gm, c: LayerChange) -> int:
    k, d = _kd(gm.get_submodule(c.layer))
    return (c.new - 1) * d + 1 if c.what == "kernel" else c.new * (k - 1) + 1


def _apply_changes(gm, changes: Sequence[LayerChange]) -> list[tuple[nn.Module, dict]]:
    saved = []
    for c in changes:
        m = gm.get_submodule(c.layer)
        nd = len(m.kernel_size) if isinstance(m.kernel_size, tuple) else None
        old = {a: getattr(m, a) for a in ("kernel_size", "dilation", "padding") if hasattr(m, a)}
        saved.append((m, old))
        k, d = _kd(m)
        grow = (c.new - k) * d // 2 if c.what == "kernel" else (c.new - d) * (k - 1) // 2
        pad = m.padding
        pad = tuple(p + grow for p in pad) if isinstance(pad, tuple) else pad + grow
        new = (c.new,) * nd if nd else c.new
        if c.what == "kernel":
            m.kernel_size = new
        else:
            m.dilation = new
        m.padding = pad
    return saved


def target_rf(
    analysis: Analysis, node: str, target: int, verify: int = 8, resizer: Optional[Resizer] = None
) -> TargetPlan:
    """How far each stage is from RF ``target`` (axis 0), and the fewest layer changes that reach it.

    See `TARGET_ASSUMPTIONS`.  Single changes are tried first (the ``verify``
    cheapest ones, by new extent, are checked); if none suffices, the layers are
    taken in order of their largest allowed gain until the predicted gains
    cover the gap, and that set is checked.
    """
    record = node_record(analysis, node)
    require_local(record)
    rf = record.rf[0]
    stages = tuple(
        (s.name, s.rf[0], s.rf[0] - target)
        for s in analysis.stages()
        if s.rf[0] is not None and s.op != "placeholder"
    )
    if rf >= target:
        return TargetPlan(record.name, target, rf, stages, ())
    need = target - rf
    work_gm = copy.deepcopy(analysis.graph_module)
    traced = traced_of(analysis, work_gm)
    layers = _candidate_layers(analysis, node)

    def check(changes: Sequence[LayerChange]) -> Optional[int]:
        saved = _apply_changes(work_gm, changes)
        try:
            a = analyze(work_gm, analysis.input_shape, traced=traced)
            return a[record.name].rf[0]
        except RFGraphError:
            return None
        finally:
            for m, old in saved:
                for attr, v in old.items():
                    setattr(m, attr, v)

    singles = []
    for name, m, j, n_in in layers:
        for opt in _options(m, j, n_in, need):
            singles.append(LayerChange(name, opt.what, opt.old, opt.new, opt.gain))
    # the smallest new dilated kernel first (the most plausible edit), then the smallest overshoot
    singles.sort(key=lambda c: (_new_extent(work_gm, c), c.gain, c.layer))
    solutions = []
    for c in singles[:verify]:
        got = check([c])
        if got is not None and got >= target:
            solutions.append(((c,), got))
    if not solutions:
        best = []
        for name, m, j, n_in in layers:
            opts = _options(m, j, n_in, None)
            if opts:
                o = max(opts, key=lambda o: o.gain)
                best.append(LayerChange(name, o.what, o.old, o.new, o.gain))
        best.sort(key=lambda c: -c.gain)
        chosen, total = [], 0
        for c in best:
            if total >= need:
                break
            chosen.append(c)
            total += c.gain
        if total >= need:
            got = check(chosen)
            if got is not None and got >= target:
                solutions.append((tuple(chosen), got))
    return TargetPlan(record.name, target, rf, stages, tuple(solutions))
