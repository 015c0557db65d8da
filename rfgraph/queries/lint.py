"""Strides that model libraries declare (timm's ``feature_info``, torchvision SSD's ``steps``) against the computed ones."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Optional, Sequence

import torch.fx as fx
from torch import nn

from ..errors import NodeNotFoundError
from ..results import Analysis
from ..values import collect

__all__ = ["Declared", "LintRow", "declared_strides", "lint"]

# ---------------------------------------------------------------------------
# stride lint
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Declared:
    """A stride that a model library declares for one feature node."""

    label: str
    node: str
    stride: Fraction
    source: str
    #: the declaring module's name, tried when ``node`` cannot be resolved (e.g. timm's FeatureHookNet
    #: collects its outputs with forward hooks, which a traced graph does not see)
    module: Optional[str] = None


@dataclass(frozen=True)
class LintRow:
    """One declared stride checked against the computed one."""

    label: str
    node: str
    declared: Fraction
    computed: tuple[Optional[Fraction], ...]
    source: str
    error: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.error is None and all(c == self.declared for c in self.computed)

    @property
    def status(self) -> str:
        """``ok``, ``mismatch`` (both strides known and different) or ``unchecked`` (no computed stride)."""
        if self.error is not None:
            return "unchecked"
        return "ok" if self.ok else "mismatch"


def declared_strides(model: nn.Module) -> list[Declared]:
    """Strides declared by the model's library.

    - timm: ``model.feature_info`` (a list of dicts or a ``FeatureInfo``) gives
      each feature module's ``reduction``; on a ``features_only=True`` model the
      ``i``-th declared entry is matched with the ``i``-th returned tensor
      (``output[i]``), which avoids module names that the classification model
      does not have (HRNet's ``stem``, an ``Identity`` ``final_conv``);
    - torchvision SSD: ``model.anchor_generator.steps`` gives the stride of each
      output of ``model.backbone`` (analyse the backbone, see `lint`).
    """
    out: list[Declared] = []
    info = getattr(model, "feature_info", None)
    if info is not None:
        # a features_only wrapper returns one tensor per selected entry: match by position, not by name
        wrapper = hasattr(info, "get_dicts") and _is_timm_features(model)
        entries = info.get_dicts() if wrapper else getattr(info, "info", info)
        for i, e in enumerate(entries):
            if isinstance(e, dict) and "reduction" in e and "module" in e:
                node = f"output[{i}]" if wrapper else str(e["module"])
                out.append(Declared(f"feature_info[{i}] {e['module']}" if wrapper else f"feature_info[{i}]", node,
                                    Fraction(e["reduction"]), "timm feature_info", str(e["module"])))
    gen = getattr(model, "anchor_generator", None)
    steps = getattr(gen, "steps", None)
    if steps is not None and hasattr(model, "backbone"):
        for i, s in enumerate(steps):
            out.append(Declared(f"anchor_generator.steps[{i}]", f"backbone:output[{i}]", Fraction(s),
                                "torchvision SSD steps"))
    return out


def _is_timm_features(model: nn.Module) -> bool:
    """timm's ``features_only`` wrappers (FeatureListNet, FeatureHookNet, HighResolutionNetFeatures, ...)."""
    name = type(model).__name__
    return name.startswith("Feature") or name.endswith("Features") or hasattr(model, "out_indices")


def _output_nodes(analysis: Analysis) -> list[str]:
    gm = analysis.graph_module
    records = {r.fx_name: r.name for r in analysis.records}
    out_node = next(n for n in gm.graph.nodes if n.op == "output")
    return [records[n.name] for n in collect(out_node.args[0], fx.Node) if n.name in records]


def lint(analysis: Analysis, declared: Optional[Sequence[Declared]] = None) -> list[LintRow]:
    """Check each declared stride against the computed one (one row per declaration).

    ``declared`` defaults to `declared_strides` of the analysed model.  A node
    ``"output[i]"`` (or ``"backbone:output[i]"``) is the ``i``-th tensor the
    analysed model returns.
    """
    if declared is None:
        declared = declared_strides(analysis.model)
    rows = []
    outputs: Optional[list[str]] = None
    for d in declared:
        node = d.node.split(":", 1)[1] if d.node.startswith("backbone:") else d.node
        if node.startswith("output["):
            if outputs is None:
                outputs = _output_nodes(analysis)
            idx = int(node[len("output["):-1])
            candidates = [outputs[idx]] if idx < len(outputs) else []
        else:
            candidates = [node]
        if d.module:
            # timm's feature wrappers flatten the first level: "blocks.12" becomes "blocks_12"
            candidates += [d.module, d.module.replace(".", "_", 1)]
        r = None
        for cand in candidates:
            try:
                r = analysis[cand]
                break
            except NodeNotFoundError:
                continue
        if r is None:
            why = f"none of {', '.join(map(repr, dict.fromkeys(candidates)))} is a node" if candidates else (
                f"the traced model returns {len(outputs or [])} tensors")
            rows.append(LintRow(d.label, d.node, d.stride, (), d.source, f"cannot resolve node: {why}"))
            continue
        if r.source not in ("symbolic", "probed") or any(s is None for s in r.stride):
            rows.append(LintRow(d.label, r.name, d.stride, r.stride, d.source,
                                f"no local stride ({r.reason or r.source})"))
            continue
        rows.append(LintRow(d.label, r.name, d.stride, r.stride, d.source))
    return rows
