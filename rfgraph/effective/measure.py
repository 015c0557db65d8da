"""Effective receptive field (ERF): how much each input pixel actually matters.

The theoretical RF of a unit says which input pixels *can* change it; with real
weights only a central part does (Luo et al., "Understanding the Effective
Receptive Field in Deep Convolutional Neural Networks", NeurIPS 2016).  The
ERF of a node is measured here as in that paper and in the RepLKNet / SLaK
scripts: for the centre unit ``u`` of the node (summed over channels, or one
chosen channel) and a set of inputs ``x_1 ... x_N``,

    ERF[p] = sum_i sum_c | d y(x_i) / d x_i[c, p] |,    y = sum_channels out[:, u]

with the model in eval mode and its own weights, untouched (this is the
*effective* field: nothing is sanitized).  One forward pass per batch through
the model truncated at the requested nodes, then one backward pass per node
(``retain_graph``), so per-stage ERFs cost one forward, not one per node.

The input size is chosen from the symbolic pass so that the theoretical RF box
of the centre unit lies inside the image (a warning says so when a fixed size
is too small), and the measured support is checked against that box: a
gradient outside the box would mean a wrong rule somewhere, and raises
`ERFSupportError` with both boxes.

Summary numbers of an `ERFResult`, all computed on the accumulated map ``m``
(total ``S = sum(m)``):

* ``area_ratio(t)``: grow boxes centred on the unit's RF centre, shaped like
  the theoretical RF box (for a square RF: the centred squares of the
  literature), until they hold ``t * S``; the ratio is the number of pixels in
  the smallest such box over the number of pixels in the theoretical RF box.
  ``area_ratios`` holds ``t`` = 20 %, 30 %, 50 % and 99 %.
* ``radius(t)``: the smallest Euclidean distance ``r`` from the RF centre such
  that pixels at distance ``<= r`` hold ``t * S``.
* ``sigma``: per axis, the standard deviation of ``m / S`` read as a
  distribution (the maximum-likelihood Gaussian fit); ``centroid`` its mean.
* ``effective_size``: per axis ``sqrt(12 * sigma**2 + 1)``, the width of the
  discrete uniform distribution with that variance; ``rf_ratio`` is
  ``effective_size / rf``: 1 when every pixel of the theoretical RF
  contributes equally, and about ``1 / sqrt(n)`` for ``n`` stacked box filters.
"""

from __future__ import annotations

import copy
import itertools
import math
import os
import sys
import warnings
from typing import Any, Callable, Iterable, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from ..errors import InputTooSmallError, RFGraphError, TraceError
from ..locking import serialized
from ..passes import analyze
from ..results import Analysis, NodeRF
from ..rules import RuleSet
from ..tracing import Traced, cut, trace
from .result import ERFError, ERFResult, ERFSupportError, ERFWarning
from .sources import Source, infer_input_template

__all__ = ["erf", "fitting_input_size", "fx_trace_or_none", "default_nodes"]

# -- size selection ----------------------------------------------------------------------------------


def _centre_unit(rec: NodeRF) -> tuple[Optional[int], ...]:
    out = []
    for a in range(rec.ndim):
        d = rec.dims[a] if rec.dims else None
        out.append(None if d is None or rec.shape is None else (rec.shape[d] - 1) // 2)
    return tuple(out)


def _unit_boxes(rec: NodeRF, unit: Sequence[Optional[int]]) -> tuple[Optional[tuple[int, int]], ...]:
    boxes: list[Optional[tuple[int, int]]] = []
    for a, u in enumerate(unit):
        lo = rec.lo[a] if rec.lo else None
        hi = rec.hi[a] if rec.hi else None
        if u is None or lo is None or hi is None or rec.is_global[a] or rec.source not in ("symbolic", "probed"):
            boxes.append(None)
        elif lo(u) is None or hi(u) is None:  # a finite map's unit that reads nothing
            boxes.append(None)
        else:
            boxes.append((lo(u), hi(u)))
    return tuple(boxes)


def _deficits(analysis: Analysis, names: Sequence[str], spatial: tuple[int, ...]) -> list[int]:
    out = [0] * len(spatial)
    for name in names:
        rec = analysis[name]
        for a, b in enumerate(_unit_boxes(rec, _centre_unit(rec))):
            if b is not None:
                out[a] = max(out[a], max(0, -b[0]) + max(0, b[1] - (spatial[a] - 1)))
    return out


def fitting_input_size(
    model: nn.Module,
    nodes: Union[str, Sequence[str]],
    channels: int,
    ndim: int,
    *,
    probe: Optional[Sequence[int]] = None,
    minimum: Optional[Sequence[int]] = None,
    traced: Optional[Traced] = None,
    rules: Optional[RuleSet] = None,
    max_steps: int = 64,
) -> tuple[tuple[int, ...], Analysis]:
    """The smallest input size (found by growing) whose centre units of ``nodes`` see only real pixels.

    Reads the RFs from an analysis at size ``probe`` (default 32 per axis),
    starts from the largest theoretical RF among ``nodes`` (and at least
    ``minimum``) and grows each axis by its deficit until the centre unit's
    RF box of every node lies inside the input.  Returns the spatial size and
    its analysis.
    """
    names = [nodes] if isinstance(nodes, str) else list(nodes)
    traced = traced if traced is not None else fx_trace_or_none(model)
    # Read the RFs at any size the model accepts, then grow from the largest RF.
    first = _analyze_growing(model, traced, rules, channels, list(probe) if probe is not None else [32] * ndim)
    names = [first.resolve(n) for n in names]
    spatial = list(minimum) if minimum is not None else [1] * ndim
    for name in names:
        rec = first[name]
        for a, r in enumerate(rec.rf):
            if r is not None and not rec.is_global[a]:
                spatial[a] = max(spatial[a], r)
    for _ in range(max_steps):
        analysis = _analyze_growing(model, traced, rules, channels, spatial)
        spatial = list(analysis.input_shape[2:])
        deficit = _deficits(analysis, names, tuple(spatial))
        if not any(deficit):
            return tuple(spatial), analysis
        spatial = [n + d for n, d in zip(spatial, deficit)]
    raise ERFError(
        f"no input size up to {tuple(spatial)} lets the theoretical RF of the centre unit of {names} fit "
        "inside the input; pass an explicit size"
    )


def fx_trace_or_none(model: nn.Module, leaf_modules: Iterable[type] = (),
                     autowrap_functions: Sequence[Callable] = ()) -> Optional[Traced]:
    """The model's ``torch.fx`` trace, reusable at every input size; ``None`` when fx cannot trace it.

    ``None`` tells the functions here to let `analyze` trace at each size, which
    falls back to ``torch.export`` exactly as a plain ``analyze`` call does (an
    exported graph holds the sizes of its input, so it is traced per size).
    """
    try:
        return trace(model, leaf_modules=leaf_modules, autowrap_functions=autowrap_functions)
    except TraceError:
        return None


def _analyze_growing(model, traced, rules, channels, spatial) -> Analysis:
    """`analyze` at ``spatial``, doubling the size while a layer's output comes out empty."""
    spatial = list(spatial)
    for _ in range(16):
        try:
            return analyze(model, (1, channels, *spatial), traced=traced, rules=rules)
        except InputTooSmallError as exc:
            need = exc.minimal_size or 0
            spatial = [max(2 * n, need) for n in spatial]
    raise ERFError(f"the model rejects every input size up to {tuple(spatial)}")


# -- the measurement -------------------------------------------------------------------------------------


@serialized
def erf(
    model: nn.Module,
    node: Union[str, Sequence[str]],
    inputs: Any = 16,
    *,
    size: Union[int, Sequence[int], None] = None,
    input_shape: Optional[Sequence[int]] = None,
    channel: Optional[int] = None,
    dtype: Optional[torch.dtype] = None,
    batch_size: int = 8,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    seed: int = 0,
    progress: bool = True,
    check_support: bool = True,
    traced: Optional[Traced] = None,
    rules: Optional[RuleSet] = None,
    leaf_modules: Iterable[type] = (),
    autowrap_functions: Sequence[Callable] = (),
) -> Union[ERFResult, dict[str, ERFResult]]:
    """Effective receptive field of the centre unit of ``node`` (or of each of several nodes).

    ``inputs``: a number of standard-normal noise inputs, a tensor batch
    ``(N, C, *spatial)``, a folder of images (resized to the chosen size, then
    normalized with ``mean`` / ``std``, ImageNet's by default for RGB), or an
    iterable of batches (a ``DataLoader``).  ``size``: spatial input size for
    noise and images; by default the smallest size, not below the spatial size
    of ``input_shape`` when given, at which the theoretical RF of the centre
    unit of every requested node lies inside the input.  A size
    that is too small, imposed by ``size`` or by the data, gives an
    `ERFWarning`.  ``channel``: seed one output channel instead of their sum.
    ``dtype``: by default the model's own (a ``model.double()`` runs in
    float64, its inputs converted to float64); another dtype runs a copy of
    the model in that dtype.  The caller's model is never modified (the run
    uses a traced copy in eval mode).  Models that ``torch.fx`` cannot trace
    are traced with ``torch.export`` at the measured size, as `rfgraph.analyze`
    does, and measured one sample per batch.

    ``node`` a string: returns an `ERFResult`; a list of names: a dict
    ``{name: ERFResult}`` from one forward pass per batch.

    >>> import torch, torch.nn as nn
    >>> net = nn.Sequential(nn.Conv1d(1, 1, 3, bias=False), nn.Conv1d(1, 1, 3, bias=False))
    >>> with torch.no_grad():
    ...     _ = [c.weight.fill_(1.0) for c in net]
    >>> r = erf(net, "1", torch.zeros(1, 1, 7), dtype=torch.float64, progress=False)
    >>> r.map.tolist(), r.box
    ([0.0, 1.0, 2.0, 3.0, 2.0, 1.0, 0.0], ((1, 5),))
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"erf() needs a torch.nn.Module, got {type(model).__name__}")
    single = isinstance(node, str)
    requested = [node] if single else list(node)
    if not requested:
        raise ERFError("no node to measure: pass a node name or a list of names")
    if batch_size < 1:
        raise ERFError(f"batch_size must be >= 1, got {batch_size}")
    params = list(itertools.chain(model.parameters(), model.buffers()))
    model_dtype = next((p.dtype for p in params if p.is_floating_point()), torch.float32)
    if dtype is None:  # follow the model: model.double() with float64 data measures in float64
        dtype = model_dtype
    if dtype not in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        raise ERFError(f"dtype must be a floating dtype, got {dtype}")
    if any(p.is_meta for p in params):
        raise ERFError(
            f"{type(model).__name__} has weights on the meta device; the ERF needs real weights "
            "(load the model with device='cpu')"
        )
    device = params[0].device if params else torch.device("cpu")

    if isinstance(inputs, torch.Tensor) and inputs.dim() >= 3:
        channels, ndim = int(inputs.shape[1]), inputs.dim() - 2
    elif input_shape is not None:
        channels, ndim = int(input_shape[1]), len(input_shape) - 2
    elif isinstance(inputs, (int, str, os.PathLike)):
        channels, ndim = infer_input_template(model)
    else:
        channels, ndim = 0, 0  # read from the first batch of the iterable
    fixed = None
    if size is not None:
        fixed = (int(size),) * max(ndim, 1) if isinstance(size, int) else tuple(int(s) for s in size)
        if ndim and len(fixed) != ndim:
            raise ERFError(f"size {fixed} has {len(fixed)} axes but the model's input has {ndim}")
    source = Source(inputs, channels, ndim, fixed, mean=mean, std=std, seed=seed)
    channels, ndim = source.channels, source.ndim

    if traced is None:  # fx, or None: analyze traces at each size (torch.export), as a plain analyze does
        traced = fx_trace_or_none(model, leaf_modules=leaf_modules, autowrap_functions=autowrap_functions)
    if source.fixed is not None:
        spatial = tuple(source.fixed)
        analysis = analyze(model, (1, channels, *spatial), traced=traced, rules=rules,
                           leaf_modules=leaf_modules, autowrap_functions=autowrap_functions)
    else:
        first = list(input_shape[2:]) if input_shape is not None else [32] * ndim
        spatial, analysis = fitting_input_size(model, requested, channels, ndim, probe=first,
                                               minimum=None if input_shape is None else first,
                                               traced=traced, rules=rules)

    if traced is None or traced.method != "fx":
        # The graph exported for (1, C, *spatial): measure with that very graph, one sample per batch.
        traced = Traced(analysis.graph_module, {}, method=analysis.meta.get("trace", "export"))
        batch_size = 1
    names = [_resolve(analysis, n) for n in requested]
    records = [analysis[n] for n in names]
    for req, rec in zip(requested, records):
        _check_node(rec, req)
    units = [_centre_unit(rec) for rec in records]
    boxes = [_unit_boxes(rec, u) for rec, u in zip(records, units)]
    for req, rec, b in zip(requested, records, boxes):
        clipped = [a for a, (bb, n) in enumerate(zip(b, spatial)) if bb is not None and (bb[0] < 0 or bb[1] >= n)]
        if clipped:
            try:
                need, _ = fitting_input_size(model, rec.name, channels, ndim, traced=traced, rules=rules)
                hint = f"; an input of at least {need} would hold it"
            except RFGraphError:
                hint = ""
            desc = " x ".join(f"[{lo}, {hi}]" for lo, hi in (bb for bb in b if bb is not None))
            warnings.warn(
                f"the theoretical RF of the centre unit of node {req!r} ({rec.name}) spans {desc}, which does "
                f"not fit inside the input {spatial}: the part outside is padding, the ERF is clipped{hint}",
                ERFWarning,
                stacklevel=2,
            )

    maps, stats = _measure(traced, records, units, source, spatial, batch_size, dtype, model_dtype, device,
                           channel, progress)

    results: dict[str, ERFResult] = {}
    for req, rec, unit, box, m, st in zip(requested, records, units, boxes, maps, stats):
        note = None
        checked = check_support
        if rec.global_context:
            checked, note = False, "node has global context (e.g. squeeze-excitation): the gradient may reach every pixel"
        elif any(b is None for b in box):
            checked, note = False, f"node is not local along every axis (source={rec.source})"
        res = ERFResult(
            node=rec.name, map=m, unit=tuple(u if u is not None else -1 for u in unit), box=box,
            input_shape=(source.count or st["samples"], channels, *spatial), n_samples=st["samples"],
            nan_count=st["nan"], inf_count=st["inf"], nonfinite_samples=st["bad_samples"],
            dtype=str(dtype).replace("torch.", ""), channel=channel, support_checked=checked, note=note,
            requested=req,
        )
        if checked:
            _assert_support(res)
        if res.nan_count or res.inf_count:
            warnings.warn(
                f"node {req!r}: {res.nan_count} NaN and {res.inf_count} inf gradient entries in "
                f"{res.nonfinite_samples} of {res.n_samples} samples were left out of the map (counted in the result)",
                ERFWarning,
                stacklevel=2,
            )
        if res.total == 0:
            warnings.warn(f"node {req!r}: the ERF map is all zeros (no gradient reached the input)",
                          ERFWarning, stacklevel=2)
        results[req] = res
    return results[requested[0]] if single else results


def _resolve(analysis: Analysis, name: str) -> str:
    return analysis.resolve(name)


def _check_node(rec: NodeRF, requested: str) -> None:
    if rec.shape is None or len(rec.shape) < 2:
        raise ERFError(f"node {requested!r} ({rec.name}) is not a batched tensor (shape {rec.shape})")
    if all(d is None for d in rec.dims) or all(rec.is_global):
        raise ERFError(
            f"node {requested!r} ({rec.name}, {rec.op}) keeps no input spatial axis as a tensor dim "
            f"(dims {rec.dims}, global {rec.is_global}): it has no centre unit; pick an earlier node"
        )


def _measure(traced, records, units, source, spatial, batch_size, dtype, model_dtype, device, channel, progress):
    try:
        gm = cut(traced.graph_module, [r.fx_name or r.name for r in records])
    except TraceError as exc:
        raise ERFError(str(exc)) from exc
    model_modules = list(traced.graph_module.modules())
    training = {m: m.training for m in model_modules}
    if dtype != model_dtype:
        gm = copy.deepcopy(gm).to(dtype)
    gm.eval()
    indices = []
    for rec, unit in zip(records, units):
        idx: list[Any] = [slice(None)] * len(rec.shape)
        for a, u in enumerate(unit):
            if u is not None:
                idx[rec.dims[a]] = u
        if channel is not None:
            free = [d for d in range(1, len(rec.shape)) if d not in rec.dims]
            if len(free) != 1:
                raise ERFError(f"node {rec.name!r} has {len(free)} non-spatial dims besides the batch; "
                               "cannot pick a channel")
            if not 0 <= channel < rec.shape[free[0]]:
                raise ERFError(f"channel {channel} out of range for node {rec.name!r} with "
                               f"{rec.shape[free[0]]} channels")
            idx[free[0]] = channel
        indices.append(tuple(idx))
    maps = [np.zeros(spatial, dtype=np.float64) for _ in records]
    stats = [{"samples": 0, "nan": 0, "inf": 0, "bad_samples": 0} for _ in records]
    total = None if source.count is None else math.ceil(source.count / batch_size)
    from tqdm.auto import tqdm

    label = records[0].name if len(records) == 1 else f"{len(records)} nodes"
    bar = tqdm(total=total, desc=f"ERF {label}", unit="batch", disable=not progress, file=sys.stderr)
    try:
        with torch.enable_grad():
            for x in source.batches(spatial, batch_size, dtype, device):
                x = x.detach().requires_grad_(True)
                outs = gm(x)
                for i, (out, idx) in enumerate(zip(outs, indices)):
                    if not isinstance(out, torch.Tensor):
                        raise ERFError(f"node {records[i].name!r} did not produce a tensor")
                    y = out[idx].sum()
                    (g,) = torch.autograd.grad(y, x, retain_graph=i < len(outs) - 1, allow_unused=True)
                    if g is None:
                        g = torch.zeros_like(x)
                    g = g.detach().abs().to(torch.float64)
                    nan, inf = torch.isnan(g), torch.isinf(g)
                    bad = nan | inf
                    stats[i]["nan"] += int(nan.sum())
                    stats[i]["inf"] += int(inf.sum())
                    stats[i]["bad_samples"] += int(bad.flatten(1).any(1).sum())
                    stats[i]["samples"] += x.shape[0]
                    g = torch.where(bad, torch.zeros((), dtype=g.dtype), g)
                    maps[i] += g.sum(dim=(0, 1)).cpu().numpy()
                del outs, x
                bar.update(1)
    finally:
        bar.close()
        for m, flag in training.items():
            m.training = flag
    if stats[0]["samples"] == 0:
        raise ERFError("no input samples were given")
    return maps, stats


def _assert_support(res: ERFResult) -> None:
    sup = res.support()
    if sup is None:
        return
    outside = []
    for a, ((slo, shi), b) in enumerate(zip(sup, res.box)):
        if b is not None and (slo < b[0] or shi > b[1]):
            outside.append(a)
    if outside:
        raise ERFSupportError(
            f"the ERF of node {res.node!r} is non-zero on {sup} but the theoretical RF box of its centre unit "
            f"{res.unit} is {res.box} (input {res.input_shape[2:]}; axes {outside} exceed it). This is a bug in a "
            "rule or in the symbolic pass: please report it with the model."
        )



# -- nodes chosen for the caller --------------------------------------------------------------------


def default_nodes(
    model: nn.Module,
    input_shape: Sequence[int],
    which: str = "last",
    traced: Optional[Traced] = None,
    rules: Optional[RuleSet] = None,
) -> list[str]:
    """The nodes to measure when none are named: ``"last"``, the last spatial node, or ``"stages"``,
    the output of every module-level block whose RF is local (global nodes have no bounded ERF).

    The symbolic analysis runs at ``input_shape``'s channels and spatial size, grown while a layer's
    output comes out empty.
    """
    if which not in ("last", "stages"):
        raise ERFError(f"which must be 'last' or 'stages', got {which!r}")
    shape = tuple(input_shape)
    if len(shape) < 3:
        raise ERFError(f"input_shape needs (N, C, *spatial), got {shape}")
    traced = fx_trace_or_none(model) if traced is None else traced
    a = _analyze_growing(model, traced, rules, shape[1], list(shape[2:]))
    if which == "stages":
        return [r.name for r in a.stages() if not any(r.is_global)]
    last = a.last_spatial()
    if last is None:
        raise ERFError("the model has no spatial node; name the node to measure")
    return [last.name]
