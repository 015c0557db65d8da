"""`alignment_report`: every merge, each incoming path's stride and centre, the likely cause of a misalignment and the
input sizes that would align it."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Iterable, Optional, Sequence

from torch import nn

from ..algebra import Field
from ..errors import NodeNotFoundError, RFGraphError
from ..results import Analysis, NodeRF
from ..tracing import ancestors
from ..windows import META_KEY
from .common import Resizer, axis_length, is_local, is_positional, resizer_for
from .sizes import SizeClasses, input_period

__all__ = ["PathInfo", "MergeReport", "alignment_report"]

# ---------------------------------------------------------------------------
# alignment
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PathInfo:
    """One operand of a merge: its stride and the centre of unit 0 per axis, and its shift from path 0."""

    input: str
    stride: tuple[Optional[Fraction], ...]
    center: tuple[Optional[Fraction], ...]
    shift: tuple[Fraction, ...]
    causes: tuple[str, ...] = ()


@dataclass(frozen=True)
class MergeReport:
    """A node where several spatial paths meet."""

    node: str
    op: str
    aligned: bool
    max_center_shift: Fraction
    paths: tuple[PathInfo, ...]
    causes: tuple[str, ...] = ()
    #: square input sizes at which this merge is aligned (``None``: not computed)
    aligned_sizes: Optional[SizeClasses] = None


def _path_causes(analysis: Analysis, nodes: Iterable[Any], sizes: Sequence[int]) -> list[str]:
    gm = analysis.graph_module
    records = {r.fx_name: r for r in analysis.records}
    causes: list[str] = []
    for n in nodes:
        r = records.get(n.name)
        label = r.name if r is not None else n.name
        module = gm.get_submodule(n.target) if n.op == "call_module" else None
        # the original model keeps the classes (an exported graph flattens them)
        enclosing = _enclosing_modules(analysis.model if isinstance(analysis.model, nn.Module) else gm, n)
        same = next((m for m in [module, *enclosing] if m is not None and "same" in type(m).__name__.lower()), None)
        if same is not None:
            where = n.target if module is same else (n.meta.get("rf_module") or label)
            causes.append(f"size-dependent 'same' padding ({type(same).__name__}) in {where}")
            continue
        params = n.meta.get(META_KEY)  # recorded by the windowed rule that ran on this node
        if params is None:
            continue
        if params.kind in ("adaptive", "interpolate"):
            if params.kind == "adaptive" or params.size is not None:
                causes.append(f"size-dependent resampling at {label}")
            continue
        if params.kind not in ("conv", "pool", "pad"):
            continue
        kind, nd = params.kind, params.nd
        k, s, d = params.kernel or (1,) * nd, params.stride or (1,) * nd, params.dilation or (1,) * nd
        pl, pr, ceil = params.padding_left, params.padding_right, params.ceil_mode
        n_in = _input_length(analysis, n, records)
        for i in range(nd):
            ext = d[i] * (k[i] - 1)
            if ext % 2:
                causes.append(f"even kernel {k[i]} at {label}")
            elif pl[i] != pr[i]:
                causes.append(f"asymmetric padding ({pl[i]}, {pr[i]}) at {label}")
            elif pl[i] * 2 != ext and kind != "pad":
                causes.append(f"off-centre padding {pl[i]} for kernel extent {ext + 1} at {label}")
            if kind == "pad" and pl[i] != pr[i]:
                causes.append(f"asymmetric padding ({pl[i]}, {pr[i]}) at {label}")
            if n_in is not None and s[i] > 1:
                span = n_in[i] + pl[i] + pr[i] - ext - 1
                if ceil and span % s[i]:
                    causes.append(f"ceil_mode at {label} (length {n_in[i]}, stride {s[i]})")
                elif n_in[i] % s[i]:
                    causes.append(f"size {n_in[i]} not divisible by stride {s[i]} at {label}")
            break  # one axis is enough to name the op (square kernels)
    return list(dict.fromkeys(causes))


def _enclosing_modules(root: nn.Module, n) -> list[nn.Module]:
    qual = n.meta.get("rf_module") or ""
    out = []
    parts = qual.split(".") if qual else []
    for i in range(len(parts), 0, -1):
        try:
            out.append(root.get_submodule(".".join(parts[:i])))
        except AttributeError:
            continue
    return out


def _input_length(analysis: Analysis, n, records) -> Optional[tuple[int, ...]]:
    src = next((a for a in n.all_input_nodes if a.name in records), None)
    if src is None:
        return None
    r = records[src.name]
    if r.shape is None:
        return None
    return tuple(r.shape[-analysis.ndim:])


def _merges(analysis: Analysis) -> list[tuple[NodeRF, list[NodeRF]]]:
    records = {r.name: r for r in analysis.records}
    out = []
    for r in analysis.records:
        if not r.is_spatial:
            continue
        ins = []
        for name in dict.fromkeys(r.inputs):
            src = records.get(name)
            if src is None or not src.is_spatial:
                continue
            if any(is_positional(src, k) and is_positional(r, k)
                   and axis_length(src, k) == axis_length(r, k) and src.stride[k] == r.stride[k]
                   for k in range(r.ndim)) or not r.aligned:
                ins.append(src)
        if len(ins) >= 2:
            out.append((r, ins))
    return out


def alignment_report(
    analysis: Analysis,
    sizes: bool = True,
    resizer: Optional[Resizer] = None,
    only_misaligned: bool = False,
) -> list[MergeReport]:
    """Every merge of spatial paths: each operand's stride and centre, and what misaligns it.

    Causes are looked for among the ops that lie on one operand's branch only
    (ancestors of that operand that are not ancestors of every operand): even
    kernels, asymmetric or off-centre padding, ``ceil_mode``, size-dependent
    "same" padding, size-dependent resampling, strided layers whose input length
    the stride does not divide.  With ``sizes=True`` the square input sizes at
    which each misaligned merge would be aligned are found by re-running the
    analysis over two periods of the largest stride.
    """
    gm = analysis.graph_module
    by_fx = {n.name: n for n in gm.graph.nodes} if gm is not None else {}
    merges = _merges(analysis)
    reports = []
    misaligned_names = []
    for r, ins in merges:
        paths = []
        base = ins[0]
        for src in ins:
            shift = []
            for k in range(r.ndim):
                if is_local(src, k) and is_local(base, k) and src.stride[k] == base.stride[k]:
                    shift.append(Field(base.lo[k], base.hi[k]).max_center_shift(Field(src.lo[k], src.hi[k])))
                else:
                    shift.append(Fraction(0))
            paths.append(PathInfo(src.name, src.stride, src.center, tuple(shift)))
        causes: list[str] = []
        if not r.aligned and by_fx:
            fx_ins = [by_fx[s.fx_name] for s in ins]
            closures = [ancestors(x) for x in fx_ins]
            common = set.intersection(*closures)
            new_paths = []
            for p, closure in zip(paths, closures):
                branch = [x for x in gm.graph.nodes if x in closure and x not in common]
                pc = tuple(_path_causes(analysis, branch, analysis.input_shape[2:]))
                new_paths.append(PathInfo(p.input, p.stride, p.center, p.shift, pc))
                causes.extend(pc)
            paths = new_paths
            misaligned_names.append(r.name)
        if only_misaligned and r.aligned:
            continue
        reports.append(MergeReport(r.name, r.op, r.aligned, r.max_center_shift, tuple(paths),
                                   tuple(dict.fromkeys(causes))))
    if sizes and misaligned_names:
        classes = _aligned_sizes(analysis, misaligned_names, resizer_for(analysis, resizer))
        reports = [
            MergeReport(m.node, m.op, m.aligned, m.max_center_shift, m.paths, m.causes, classes.get(m.node))
            if m.node in classes else m
            for m in reports
        ]
    return reports


def _aligned_sizes(analysis: Analysis, names: list[str], rs: Resizer, periods: int = 2) -> dict[str, SizeClasses]:
    m = input_period(analysis)
    n0 = analysis.input_shape[2]
    start = max(1, n0 - n0 % m)
    if not rs.valid(start):
        start = n0
    if analysis.meta.get("trace", "fx") != "fx":
        periods = 1  # every size is traced again (torch.export): keep the search short
    passed: dict[str, list[int]] = {name: [] for name in names}
    for n in range(start, start + periods * m):
        try:
            a = rs(n)
        except RFGraphError:
            continue
        for name in names:
            try:
                if a[name].aligned:
                    passed[name].append(n)
            except NodeNotFoundError:
                pass
    out = {}
    for name, ok in passed.items():
        first = {n % m for n in ok if n < start + m}
        periodic = all((n % m in first) == (n in ok) for n in range(start, start + periods * m))
        out[name] = SizeClasses("aligned", m, tuple(sorted(first)), start, periodic, tuple(ok))
    return out
