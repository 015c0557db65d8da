"""One model -> rows: build it, analyse it, pick its stage nodes, optionally validate them with the probe.

The one task function that every way of running a sweep calls (`run_task`)."""

from __future__ import annotations

import os
import time
import traceback
import warnings
from fractions import Fraction
from typing import Any, Optional, Sequence, Union

from ..models import default_input_shape, load_model
from ..passes import analyze
from ..probing import validate_analysis
from .families import ROW_KEYS, ZooModel


def _num(v: Optional[Fraction]) -> Union[int, str, None]:
    if v is None:
        return None
    v = Fraction(v)
    return int(v) if v.denominator == 1 else f"{v.numerator}/{v.denominator}"


def blank_row(task: ZooModel) -> dict[str, Any]:
    row: dict[str, Any] = {k: None for k in ROW_KEYS}
    row.update(
        model=task.name, family=task.family, spec=task.spec, target=task.target, label="", node="", probe="",
        probe_note="", error="", reason="",
    )
    return row


def error_row(task: ZooModel, exc: BaseException, prefix: str = "") -> dict[str, Any]:
    row = blank_row(task)
    message = " ".join(str(exc).split()) or repr(exc)
    row["error"] = f"{prefix}{type(exc).__name__}: {message}"
    return row


def _reset_peak_rss() -> None:
    """Reset the kernel's peak-RSS mark of this process (Linux), so the next reading is per model."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def _peak_rss_mb() -> Optional[float]:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    try:
        import resource

        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    except Exception:  # pragma: no cover - no resource module (Windows)
        return None


def _stage_like(r) -> bool:
    """A feature map: spatial, not the input or output node, and every local axis on a dim of its own
    (a flattened map is the same field as the map before the flatten)."""
    if not r.is_spatial or r.op in ("placeholder", "output"):
        return False
    dims = [d for d, rf in zip(r.dims, r.rf) if rf is not None]
    return None not in dims and len(set(dims)) == len(dims)


def trunk_stages(analysis) -> list:
    """Stage nodes on the trunk: the last node at each effective stride among the nodes that every path
    from the input to the last spatial node (and to each map a multi-output backbone returns) goes
    through, plus those end nodes.

    This is `Analysis.stages` without the branch nodes it meets in graph order (a strided 1x1
    shortcut evaluated before its block's main path, one branch of an Inception module): what is
    left are block outputs, as in the published tables (Inception-v3 gives Mixed_5d, Mixed_6e,
    Mixed_7c).  Falls back to `Analysis.stages` if the graph cannot be read.
    """
    import networkx as nx

    records = analysis.records
    spatial_ends = [r for r in records if _stage_like(r)]
    if not spatial_ends:
        return []
    last = spatial_ends[-1]
    targets = [last.name]
    out = next((r for r in records if r.op == "output"), None)
    if out is not None and len(out.inputs) > 1:
        targets += [n for n in out.inputs if n in analysis and analysis[n].is_spatial]
    graph = nx.DiGraph()
    root = object()
    names = {r.name for r in records}
    for r in records:
        graph.add_node(r.name)
        if r.op == "placeholder":
            graph.add_edge(root, r.name)
        for i in r.inputs:
            if i in names:
                graph.add_edge(i, r.name)
    try:
        idom = nx.immediate_dominators(graph, root)
    except Exception:
        return analysis.stages()
    trunk: set[str] = set()
    for t in targets:
        node = t
        while node in idom and node is not root and node not in trunk:
            trunk.add(node)
            node = idom[node]
    spatial = [r for r in records if r.name in trunk and _stage_like(r)]
    picked = [r for r, nxt in zip(spatial, spatial[1:] + [None]) if nxt is None or nxt.stride != r.stride]
    chosen = {r.name for r in picked} | set(targets)
    return [r for r in records if r.name in chosen]


def _stage_nodes(analysis, task: ZooModel, nodes: Optional[Sequence[str]]) -> list[tuple[str, str]]:
    """``(label, node name)`` pairs, in graph order; a label that names nothing keeps node ``""``."""
    order = {name: i for i, name in enumerate(analysis.nodes)}
    if nodes is not None:
        out = []
        for label in nodes:
            try:
                out.append((label, analysis.resolve(label)))
            except Exception:
                out.append((label, ""))
        return out
    picked: dict[str, str] = {}
    for r in trunk_stages(analysis):
        picked.setdefault(r.name, "")
    for label in task.extra_nodes:
        try:
            name = analysis.resolve(label)
        except Exception:
            continue
        if not picked.get(name):
            picked[name] = label
    return [(label, name) for name, label in sorted(picked.items(), key=lambda kv: order[kv[0]])]


def _counts(analysis) -> dict[str, int]:
    """Nodes by source, and ``global``: those of them (symbolic or probed) global along every axis they
    hold (after attention or a global pool)."""
    counts = {k: 0 for k in ("symbolic", "probed", "unknown", "nonspatial", "global")}
    for r in analysis.records:
        if r.op in ("placeholder", "output"):
            continue
        counts[r.source] = counts.get(r.source, 0) + 1
        held = [g for g, rf in zip(r.is_global, r.rf) if g or rf is not None]
        counts["global"] += bool(held) and all(held)
    return counts


def _first_unknown(analysis) -> str:
    for r in analysis.unknown():
        if r.op != "output":
            return f"{r.op} ({r.name}): {' '.join((r.reason or '').split())}"
    return ""


def _node_fields(rec) -> dict[str, Any]:
    return dict(
        op=rec.op,
        shape=list(rec.shape) if rec.shape else None,
        rf=list(rec.rf),
        stride=[_num(s) for s in rec.stride],
        start=[_num(s) for s in rec.start],
        **{"global": list(rec.is_global)},
        global_context=bool(rec.global_context),
        aligned=bool(rec.aligned),
        max_center_shift=_num(rec.max_center_shift),
        source=rec.source,
        reason=rec.reason or "",
    )


#: Models with more parameters than this are not probed (the probe materialises a float64 copy).
VALIDATE_MAX_PARAMS = 200_000_000


def _validate(analysis, names: list[str]) -> dict[str, dict[str, Any]]:
    """Probe verdict per node name (`rfgraph.probing.validate_analysis`): ``probe``, ``probe_rf``, ``probe_stride``,
    ``probe_start``, ``probe_note``.  ``probe`` is ``agree``, ``DISAGREE``, ``error`` or ``""`` (not probed)."""
    n_params = sum(p.numel() for p in analysis.model.parameters()) if analysis.model is not None else 0
    if n_params > VALIDATE_MAX_PARAMS:
        note = f"not probed: {n_params / 1e6:.0f}M parameters (limit {VALIDATE_MAX_PARAMS / 1e6:.0f}M)"
        return {n: {"probe": "", "probe_note": note} for n in names}
    try:
        report = validate_analysis(analysis, names)
    except Exception as exc:
        note = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        return {n: {"probe": "error", "probe_note": note} for n in names}
    out: dict[str, dict[str, Any]] = {}
    for row in report.rows:
        num = row.numeric
        verdict = {"ok": "agree", "clipped": "agree", "DISAGREE": "DISAGREE"}.get(row.status, "error")
        if row.error:
            note = row.error
        elif row.disagreements:
            note = "; ".join(str(d) for d in row.disagreements)
        elif row.status == "clipped":
            note = "clipped: a measured unit touched the border of the probing input"
        else:
            note = ""
        out[row.node] = {
            "probe": verdict,
            "probe_rf": None if num is None else list(num.rf),
            "probe_stride": None if num is None else [_num(v) for v in num.stride],
            "probe_start": None if num is None else [_num(v) for v in num.start],
            "probe_note": " ".join(note.split()),
        }
    return out


def run_task(task: ZooModel, validate: bool = False, nodes: Optional[Sequence[str]] = None) -> list[dict[str, Any]]:
    """Build, analyse (and with ``validate`` probe) one model; its rows.  Never raises for a model's failure."""
    import torch


    _reset_peak_rss()
    base = blank_row(task)
    try:
        t0 = time.perf_counter()
        with warnings.catch_warnings():  # init-scheme FutureWarnings (GoogLeNet, Inception) would break the bar
            warnings.simplefilter("ignore", FutureWarning)
            # Meta even for validation: the probe materialises its own sanitized copy.
            model = load_model(task.spec, device="meta", **task.build_kwargs)
        if task.target:
            model = model.get_submodule(task.target)
        shape = tuple(task.input_shape or default_input_shape(task.spec, model))
        base["input"] = list(shape)
        t1 = time.perf_counter()
        with torch.no_grad():
            analysis = analyze(model, shape)
        t2 = time.perf_counter()
        base.update(
            build_s=round(t1 - t0, 4),
            analysis_s=round(t2 - t1, 4),
            nodes=len(analysis),
            # The output node of a multi-level backbone (a dict of maps at different strides) is
            # "unknown" as a whole, but each level is reported on its own row.
            unknown_nodes=sum(1 for r in analysis.unknown() if r.op != "output"),
            counts=_counts(analysis),
            first_unknown=_first_unknown(analysis),
        )
        picked = _stage_nodes(analysis, task, nodes if nodes is not None else task.nodes)
        rows = []
        for label, name in picked:
            row = dict(base, label=label, node=name)
            if name:
                row.update(_node_fields(analysis[name]))
            else:
                row["error"] = f"NodeNotFoundError: no node or module named {label!r}"
            rows.append(row)
        if not rows:
            # Tokens from the first op on (TNT unfolds the image into patches): no node holds the axes as
            # a feature map.  The rows are then the last node with a local field and the last node that
            # holds the axes in a dim at all (global after attention), in graph order.
            held = [r for r in analysis.records if r.op not in ("placeholder", "output")
                    and any(d is not None for d in r.dims)]
            local = [r for r in held if r.is_spatial]
            ends = {r.name for r in (local[-1:] + held[-1:])}
            rows += [dict(base, node=r.name, **_node_fields(r)) for r in held if r.name in ends]
        if not rows:
            unknown = analysis.unknown()
            why = f"; {len(unknown)} of {len(analysis)} nodes unknown, first: {unknown[0].reason}" if unknown else ""
            rows.append(dict(base, error=f"no spatial node: the model has no stage to report{why}"))
        if validate:
            names = [r["node"] for r in rows if r["node"]]
            t3 = time.perf_counter()
            verdicts = _validate(analysis, names)
            probe_s = round(time.perf_counter() - t3, 2)
            for r in rows:
                r.update(verdicts.get(r["node"], {}), probe_s=probe_s)
    except (Exception, RecursionError, MemoryError) as exc:
        row = error_row(task, exc)
        row["input"] = base.get("input")
        row["build_s"], row["analysis_s"] = base.get("build_s"), base.get("analysis_s")
        if os.environ.get("RFGRAPH_ZOO_TRACEBACK"):
            traceback.print_exc()
        rows = [row]
    rss = _peak_rss_mb()
    for r in rows:
        r["peak_rss_mb"] = rss
    return rows
