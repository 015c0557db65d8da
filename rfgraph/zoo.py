"""Zoo runs: the receptive field of every stage of many models, side by side.

A sweep builds each model without weights (on the ``meta`` device, so even the
largest torchvision models need little memory), analyses it, and writes one
row per model and stage node: rf, stride and start per input axis, the global
flags, alignment, analysis time, peak RSS and, with ``validate=True``, the
numeric probe's verdict.  A model that fails becomes one row carrying its error
(the same keys as a success row), never a crash of the sweep.  Rows are
appended to a JSON-lines log as each model finishes, so an interrupted sweep
keeps what it has and ``resume=True`` carries on from there.

>>> from rfgraph import zoo
>>> result = zoo.run(["resnet18"], progress=False, nodes=["layer4"])
>>> row = result.rows[0]
>>> row["node"], row["rf"], row["stride"], row["start"]
('layer4.1.relu_1', [435, 435], [32, 32], [-217, -217])

Stage nodes default to `Analysis.stages` (the last node at each effective
stride, plus the last spatial node), together with a few named end points per
family: the backbone and classifier of segmentation models, the levels a
detection backbone returns, and the published Distill 2019 end points of
AlexNet, VGG-16 and Inception-v3.  ``nodes=`` (or `ZooModel.nodes`) replaces
them.

Work runs in this process (``jobs=1``), on a local process pool (``jobs=N``)
or on a ``dask.distributed`` cluster (``dask_scheduler=ADDRESS`` or a
``Client``); all three call the same task function, `run_task`.
"""

from __future__ import annotations

import asyncio
import csv
import functools
import io
import json
import os
import sys
import threading
import time
import traceback
import warnings
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Sequence, Union

from .models import MONAI_NETS, TORCHAUDIO_MODELS, default_input_shape, load_model, offline_env, third_party
from .passes import analyze
from .probing import validate_analysis

__all__ = [
    "FAMILIES",
    "ROW_KEYS",
    "ZooModel",
    "ZooResult",
    "family_models",
    "trunk_stages",
    "resolve_models",
    "run",
    "run_task",
    "read_rows",
    "sweep_options",
    "ZooLogError",
    "NoWorkerError",
    "THIRD_PARTY_FAMILIES",
    "BASE_FAMILIES",
    "write_rows",
    "to_markdown",
    "to_csv",
]

#: Families that ``family_models`` knows.  ``all`` is the union of `BASE_FAMILIES` (torchvision and the timm
#: CNN sample); the third-party families need the ``rfgraph[zoo]`` extra and are swept one by one.
BASE_FAMILIES = ("classification", "segmentation", "detection", "video", "timm")
THIRD_PARTY_FAMILIES = ("timm-all", "smp", "monai", "transformers", "torchaudio", "ultralytics", "open_clip")
FAMILIES = BASE_FAMILIES + THIRD_PARTY_FAMILIES

#: Keys of every row, success or error, in table order.
ROW_KEYS = (
    "model",  # display name
    "family",
    "spec",  # model spec given to rfgraph.models.load_model
    "target",  # submodule analysed ("" = the whole model)
    "input",  # input shape
    "label",  # the end point asked for (module name), "" for automatic stages
    "node",  # node name in the analysis
    "op",
    "shape",  # output shape of the node
    "rf",  # per input spatial axis (None: global or unknown)
    "stride",  # per axis; int, or "p/q" for fractional strides
    "start",  # per axis; -start is the Distill "effective padding"
    "global",  # per axis: the node depends on the whole input along it
    "global_context",  # some global (context) path reaches the node, e.g. squeeze-and-excitation
    "aligned",
    "max_center_shift",
    "source",  # symbolic / probed / unknown / nonspatial
    "reason",  # why a node is unknown
    "build_s",  # seconds to build the model
    "analysis_s",  # seconds to trace and analyse it
    "peak_rss_mb",  # peak resident memory while building + analysing (+ probing)
    "nodes",  # number of tensor nodes in the analysis
    "unknown_nodes",
    "counts",  # nodes by source: {"symbolic": n, "probed": n, "unknown": n, "nonspatial": n}
    "first_unknown",  # the first unknown node in graph order: "op (node): reason"; "" when none
    "probe_s",  # seconds spent probing the model's stage nodes
    "probe",  # "agree" / "DISAGREE" / "error" / "" (not validated)
    "probe_rf",
    "probe_stride",
    "probe_start",
    "probe_note",
    "error",  # "" for a success; "ExceptionType: message" otherwise
)

#: Prefix of errors that say nothing about the model (a worker died, a cluster
#: lost a task): ``resume`` runs those models again.
RETRY_MARK = "[infrastructure] "


@dataclass
class ZooModel:
    """One entry of a sweep.

    ``target`` names the submodule to analyse (``"backbone"`` for detection
    models, whose full forward is not fx-traceable).  ``nodes`` replaces the
    automatic stage nodes; ``extra_nodes`` adds named end points to them.
    """

    name: str
    spec: str
    family: str = "custom"
    input_shape: Optional[tuple[int, ...]] = None
    target: str = ""
    build_kwargs: dict[str, Any] = field(default_factory=dict)
    nodes: Optional[tuple[str, ...]] = None
    extra_nodes: tuple[str, ...] = ()


# ---------------------------------------------------------------------------
# families
# ---------------------------------------------------------------------------

#: Published end points (Araujo et al., Distill 2019) and other named stages.
_EXTRA_NODES: dict[str, tuple[str, ...]] = {
    "alexnet": ("features.12",),
    "vgg16": ("features.4", "features.9", "features.16", "features.23", "features.30"),
    "vgg16_bn": ("features.6", "features.13", "features.23", "features.33", "features.43"),
    "inception_v3": ("Mixed_5d", "Mixed_6e", "Mixed_7c"),
    "googlenet": ("inception3b", "inception4e", "inception5b"),
}

#: Input sizes of detection backbones: what each model's transform feeds them
#: (``min_size``; 800 is divisible by the largest FPN stride before the extra pool).
_DETECTION_SIZES = {
    "ssd300_vgg16": 300,
    "ssdlite320_mobilenet_v3_large": 320,
    "fasterrcnn_mobilenet_v3_large_320_fpn": 320,
}

#: One small representative per timm CNN family (models missing from the
#: installed timm are skipped).  Any timm model can be named with ``timm:NAME``
#: or a pattern such as ``timm:resnet*``.
TIMM_CNNS = (
    "resnet18", "resnet50d", "resnet26t", "resnext50_32x4d", "seresnet50", "res2net50_26w_4s", "resnest14d",
    "resnetv2_50", "regnetx_002", "regnety_004", "efficientnet_b0", "tf_efficientnet_b0", "efficientnetv2_rw_t",
    "mobilenetv2_100", "mobilenetv3_large_100", "mobilenetv4_conv_small", "mnasnet_100", "fbnetc_100",
    "hardcorenas_a", "lcnet_050", "ghostnet_100", "mixnet_s", "rexnet_100", "densenet121", "dpn68", "dla34",
    "hrnet_w18_small", "inception_v3", "inception_v4", "inception_resnet_v2", "legacy_xception", "xception41",
    "vgg11", "repvgg_a0", "cspdarknet53", "cspresnet50", "darknet53", "selecsls42b", "tresnet_m",
    "nf_resnet50", "nfnet_f0", "ese_vovnet19b_dw", "gernet_s", "convnext_nano",
)


@functools.lru_cache(maxsize=None)
def _torchvision_names(submodule: str) -> list[str]:
    import torchvision.models as tvm

    module = tvm if not submodule else getattr(tvm, submodule)
    return sorted(tvm.list_models(module=module))


def _classification(name: str) -> ZooModel:
    return ZooModel(name, f"torchvision:{name}", "classification", extra_nodes=_EXTRA_NODES.get(name, ()))


def _segmentation(name: str) -> ZooModel:
    extra = ("backbone", "classifier.0", "classifier") if name.startswith("deeplabv3") else ("backbone", "classifier")
    return ZooModel(
        name, f"torchvision:{name}", "segmentation", build_kwargs={"weights_backbone": None}, extra_nodes=extra
    )


def _detection(name: str) -> ZooModel:
    size = _DETECTION_SIZES.get(name, 800)
    return ZooModel(
        name,
        f"torchvision:{name}",
        "detection",
        input_shape=(1, 3, size, size),
        target="backbone",
        build_kwargs={"weights_backbone": None},
    )


def _video(name: str) -> ZooModel:
    return ZooModel(name, f"torchvision:{name}", "video")


def _timm(name: str) -> ZooModel:
    # Named with its prefix: timm's resnet18 or inception_v3 are not torchvision's.
    return ZooModel(f"timm:{name}", f"timm:{name}", "timm")


def _timm_available() -> bool:
    try:
        import timm  # noqa: F401
    except ImportError:
        return False
    return True


#: segmentation_models_pytorch encoders of the ``smp`` family: two CNNs, a transformer (SegFormer's MiT) and a
#: timm-universal encoder (any timm model with ``features_only``).
SMP_ENCODERS = ("resnet34", "efficientnet-b0", "mit_b0", "tu-regnety_002")

#: Architecture x encoder pairs that smp refuses to build (checked against smp 0.6.0): DPT takes only ViT-style
#: timm encoders, and UnetPlusPlus and Linknet refuse the MiT encoder.
SMP_UNSUPPORTED = {
    ("DPT", "resnet34"), ("DPT", "efficientnet-b0"), ("DPT", "mit_b0"), ("DPT", "tu-regnety_002"),
    ("UnetPlusPlus", "mit_b0"), ("Linknet", "mit_b0"),  # "is not supported for ..." (smp raises ValueError)
}
#: The ViT encoder DPT is built with instead (a timm-universal ViT).
SMP_DPT_ENCODER = "tu-vit_small_patch16_224"

#: transformers model classes of the ``transformers`` family, each built from its default config (the reference
#: architecture) with random weights on the meta device.  Audio models take ``(N, 1, samples)``.
HF_MODELS = (
    "ViTModel", "DeiTModel", "BeitModel", "Data2VecVisionModel", "Dinov2Model", "SwinModel", "Swinv2Model",
    "SegformerModel", "PvtModel", "PvtV2Model", "ConvNextModel", "ConvNextV2Model", "MobileViTModel",
    "MobileViTV2Model", "LevitModel", "ResNetModel", "RegNetModel", "EfficientNetModel", "MobileNetV2Model",
    "FocalNetModel", "PoolFormerModel", "CvtModel", "SwiftFormerModel", "HieraModel",
    "Wav2Vec2Model:feature_extractor", "Wav2Vec2Model", "HubertModel", "WavLMModel",
)


def _smp_models() -> list[ZooModel]:
    offline_env()
    try:
        import segmentation_models_pytorch as smp
    except ImportError:
        return []
    archs = [cls.__name__ for cls in smp.MODEL_ARCHITECTURES_MAPPING.values()]
    out = []
    for arch in archs:
        encoders = [SMP_DPT_ENCODER] if arch == "DPT" else [e for e in SMP_ENCODERS if (arch, e) not in SMP_UNSUPPORTED]
        for enc in encoders:
            spec = f"smp:{arch}:{enc}"
            shape = third_party(spec)[1]
            if arch == "DPT":
                shape = (1, 3, 224, 224)  # the ViT's position embedding
            out.append(ZooModel(spec, spec, "smp", input_shape=shape, extra_nodes=("encoder", "decoder")))
    return out


def _third_party_family(family: str) -> list[ZooModel]:
    def have(module: str) -> bool:
        import importlib.util

        try:
            return importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            return False

    if family == "timm-all":
        if not _timm_available():
            return []
        import timm

        return [ZooModel(f"timm:{n}", f"timm:{n}", "timm-all") for n in timm.list_models()]
    if family == "smp":
        return _smp_models()
    if family == "monai":
        if not have("monai"):
            return []
        return [ZooModel(f"monai:{n}:{d}", f"monai:{n}:{d}", "monai") for d in ("2d", "3d") for n in MONAI_NETS]
    if family == "transformers":
        if not have("transformers"):
            return []
        return [ZooModel(f"hf:{n}", f"hf:{n}", "transformers") for n in HF_MODELS]
    if family == "torchaudio":
        if not have("torchaudio"):
            return []
        return [ZooModel(f"torchaudio:{n}", f"torchaudio:{n}", "torchaudio") for n in TORCHAUDIO_MODELS]
    if family == "ultralytics":
        if not have("ultralytics"):
            return []
        return [ZooModel(f"ultralytics:{n}", f"ultralytics:{n}", "ultralytics") for n in ("yolov8n.yaml", "yolo11n.yaml")]
    if family == "open_clip":
        if not have("open_clip"):
            return []
        return [ZooModel(f"open_clip:{n}", f"open_clip:{n}", "open_clip") for n in ("RN50", "ViT-B-32")]
    raise AssertionError(family)


def family_models(family: str) -> list[ZooModel]:
    """The models of one family (`FAMILIES`, or ``all`` for `BASE_FAMILIES`); a third-party family whose
    library is not installed is empty."""
    if family == "all":
        return [m for f in BASE_FAMILIES for m in family_models(f)]
    if family in THIRD_PARTY_FAMILIES:
        return _third_party_family(family)
    if family == "classification":
        return [_classification(n) for n in _torchvision_names("")]
    if family == "segmentation":
        return [_segmentation(n) for n in _torchvision_names("segmentation")]
    if family == "detection":
        return [_detection(n) for n in _torchvision_names("detection")]
    if family == "video":
        return [_video(n) for n in _torchvision_names("video")]
    if family == "timm":
        if not _timm_available():
            return []
        import timm

        return [_timm(n) for n in TIMM_CNNS if timm.is_model(n)]
    raise ValueError(f"unknown family {family!r}; choose one of {', '.join(FAMILIES + ('all',))}")


def _lookup(name: str) -> list[ZooModel]:
    """A model name or spec as a user types it, made into sweep entries."""
    kind, sep, rest = name.partition(":")
    if sep and kind == "timm":
        if any(c in rest for c in "*?["):
            if not _timm_available():
                return [_timm(rest)]  # becomes an error row naming the missing extra
            import timm

            return [_timm(n) for n in timm.list_models(rest)]
        return [_timm(rest)]
    if sep and kind == "torchvision":
        name = rest
    elif sep:
        return [ZooModel(name, name)]
    for make, sub in (
        (_classification, ""),
        (_segmentation, "segmentation"),
        (_detection, "detection"),
        (_video, "video"),
    ):
        if name in _torchvision_names(sub):
            return [make(name)]
    if kind != "torchvision" and _timm_available():
        import timm

        if timm.is_model(name):
            return [_timm(name)]
    return [ZooModel(name, f"torchvision:{name}")]  # fails to load: an error row with the loader's hint


def resolve_models(models: Union[str, Iterable[Union[str, ZooModel]]]) -> list[ZooModel]:
    """Sweep entries from family names, model names, specs (``timm:NAME``, ``file.py:fn``) or `ZooModel`."""
    if isinstance(models, str):
        models = [models]
    out: list[ZooModel] = []
    for m in models:
        if isinstance(m, ZooModel):
            out.append(m)
        elif m in FAMILIES or m == "all":
            out.extend(family_models(m))
        else:
            out.extend(_lookup(m))
    seen: set[str] = set()
    unique = []
    for m in out:
        if m.name not in seen:
            seen.add(m.name)
            unique.append(m)
    return unique


# ---------------------------------------------------------------------------
# the task: one model -> rows
# ---------------------------------------------------------------------------


def _num(v: Optional[Fraction]) -> Union[int, str, None]:
    if v is None:
        return None
    v = Fraction(v)
    return int(v) if v.denominator == 1 else f"{v.numerator}/{v.denominator}"


def _blank_row(task: ZooModel) -> dict[str, Any]:
    row: dict[str, Any] = {k: None for k in ROW_KEYS}
    row.update(
        model=task.name, family=task.family, spec=task.spec, target=task.target, label="", node="", probe="",
        probe_note="", error="", reason="",
    )
    return row


def _error_row(task: ZooModel, exc: BaseException, prefix: str = "") -> dict[str, Any]:
    row = _blank_row(task)
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
    counts = {k: 0 for k in ("symbolic", "probed", "unknown", "nonspatial")}
    for r in analysis.records:
        if r.op in ("placeholder", "output"):
            continue
        counts[r.source] = counts.get(r.source, 0) + 1
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
    base = _blank_row(task)
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
        row = _error_row(task, exc)
        row["input"] = base.get("input")
        row["build_s"], row["analysis_s"] = base.get("build_s"), base.get("analysis_s")
        if os.environ.get("RFGRAPH_ZOO_TRACEBACK"):
            traceback.print_exc()
        rows = [row]
    rss = _peak_rss_mb()
    for r in rows:
        r["peak_rss_mb"] = rss
    return rows


# ---------------------------------------------------------------------------
# the sweep
# ---------------------------------------------------------------------------


@dataclass
class ZooResult:
    """Rows of a sweep (in the order of the models asked for), its wall time and worker count."""

    rows: list[dict[str, Any]]
    wall_s: float = 0.0
    workers: int = 1
    resumed: int = 0  # models taken from the log instead of run again
    cpu_s: float = 0.0  # CPU time of this process during the sweep (little with workers elsewhere)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def models(self) -> list[str]:
        return list(dict.fromkeys(r["model"] for r in self.rows))

    def errors(self) -> list[dict[str, Any]]:
        """One row per failed model (load, trace or analysis error)."""
        return [r for r in self.rows if r["error"] and not r["node"]]

    def disagreements(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["probe"] == "DISAGREE"]

    def summary(self) -> dict[str, Any]:
        per_model: dict[str, dict[str, Any]] = {}
        for r in self.rows:
            per_model.setdefault(r["model"], r)
        times = [(m, (r["build_s"] or 0) + (r["analysis_s"] or 0)) for m, r in per_model.items()]
        rss = [(m, r["peak_rss_mb"]) for m, r in per_model.items() if r["peak_rss_mb"] is not None]
        return {
            "models": len(per_model),
            "failed": len(self.errors()),
            "rows": len(self.rows),
            "wall_s": round(self.wall_s, 2),
            "cpu_s": round(self.cpu_s, 2),
            "workers": self.workers,
            "build_s": round(sum(r["build_s"] or 0 for r in per_model.values()), 2),
            "analysis_s": round(sum(r["analysis_s"] or 0 for r in per_model.values()), 2),
            "slowest": sorted(times, key=lambda kv: -kv[1])[:5],
            "peak_rss_mb": max(rss, key=lambda kv: kv[1]) if rss else None,
            "unknown_models": sorted({r["model"] for r in self.rows if r["unknown_nodes"]}),
            "disagreements": len(self.disagreements()),
        }

    def to_markdown(self, summary: bool = True) -> str:
        return to_markdown(self.rows, self.summary() if summary else None)


def log_path(out: Union[str, os.PathLike]) -> Path:
    """The JSON-lines log kept next to ``out`` (``zoo.md`` -> ``zoo.jsonl``)."""
    return Path(out).with_suffix(".jsonl")


#: Key of the log's first line, which records the sweep's options (``{"rfgraph_zoo_log": 2, "options": {...}}``).
LOG_HEADER = "rfgraph_zoo_log"
#: Key of the line written after a model's rows: ``{"done": MODEL, "rows": N}``.  A model whose marker is
#: missing, or whose rows are fewer than the marker says, is incomplete and runs again on resume.
DONE_MARK = "done"


def read_rows(path: Union[str, os.PathLike]) -> list[dict[str, Any]]:
    """Rows of a JSON-lines log (header and completion markers left out); a line cut short is skipped."""
    return [r for rs in _read_log(Path(path))[1].values() for r in rs] if Path(path).exists() else []


def _read_log(path: Path) -> tuple[Optional[dict[str, Any]], dict[str, list[dict[str, Any]]], dict[str, int]]:
    """``(options or None, rows by model, completed models -> their row count)`` of a log."""
    options = None
    rows: dict[str, list[dict[str, Any]]] = {}
    done: dict[str, int] = {}
    if not path.exists():
        return options, rows, done
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(entry, dict):
            continue
        if LOG_HEADER in entry and options is None:
            options = entry.get("options") or {}
        elif DONE_MARK in entry and isinstance(entry.get("rows"), int):
            done[str(entry[DONE_MARK])] = entry["rows"]
        elif "model" in entry:
            rows.setdefault(entry["model"], []).append({k: entry.get(k) for k in ROW_KEYS})
    return options, rows, done


def _log_lines(model: str, rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows) + json.dumps({DONE_MARK: model, "rows": len(rows)}) + "\n"


def _append(path: Optional[Path], model: str, rows: list[dict[str, Any]]) -> None:
    if path is None:
        return
    # One write per model, rows then its completion marker, flushed: an interruption loses at most this model.
    with open(path, "a") as fh:
        fh.write(_log_lines(model, rows))
        fh.flush()
        os.fsync(fh.fileno())


def sweep_options(validate: bool, nodes: Optional[Sequence[str]]) -> dict[str, Any]:
    """The options that change a sweep's rows: recorded in its log, and compared by ``resume``."""
    return {"validate": bool(validate), "nodes": list(nodes) if nodes is not None else None}


class ZooLogError(ValueError):
    """``resume`` was asked to continue a log written by a sweep with other options."""


#: Seconds a model may take in its worker process before it is stopped (``timeout=``).
DEFAULT_TIMEOUT = 900.0


def _timeout_row(task: ZooModel, seconds: float) -> dict[str, Any]:
    row = _blank_row(task)
    row["error"] = f"Timeout: no result within {seconds:g} s; the worker process was stopped"
    return row


def _child(conn, task: ZooModel, validate: bool, nodes) -> None:
    """Body of one isolated worker process: run the task, send its rows, exit."""
    try:
        import torch

        torch.set_num_threads(1)
        rows = run_task(task, validate, nodes)
    except BaseException as exc:  # noqa: B036 - even SystemExit from a factory becomes the model's row
        rows = [_error_row(task, exc)]
    try:
        conn.send(rows)
    finally:
        conn.close()


#: Libraries imported once by the fork server before it forks the workers, by spec prefix (each worker
#: importing monai or transformers anew costs seconds).
_PRELOAD = {
    "timm": ("timm",),
    "smp": ("segmentation_models_pytorch",),
    "monai": ("monai.networks.nets",),
    "hf": ("transformers",),
    "torchaudio": ("torchaudio.models",),
    "ultralytics": ("ultralytics.nn.tasks",),
    "open_clip": ("open_clip",),
}


def _preload_modules(tasks) -> list[str]:
    """The libraries the fork server imports once for ``tasks`` (it sets the offline environment first)."""
    kinds = {t.spec.partition(":")[0] for t in tasks}
    if kinds & set(_PRELOAD) - {"timm"}:
        offline_env()  # inherited by the fork server, which starts after this
    return [module for kind in sorted(kinds) for module in _PRELOAD.get(kind, ())]


def _mp_context():
    import multiprocessing

    # forkserver: a clean server process imports torch and the model libraries once and forks a fresh
    # copy of itself per model, so nothing a model does (global patches, leaks, a crash) reaches the next
    # one.  A plain fork of the caller would inherit its autograd threads once it has run a backward
    # pass (a probe, an ERF): autograd then refuses to run in the child.
    method = "forkserver" if sys.platform.startswith("linux") else "spawn"
    return multiprocessing.get_context(method)


def _isolated(tasks, jobs, validate, nodes, timeout) -> Iterator[tuple[ZooModel, list[dict[str, Any]]]]:
    """Each model in its own worker process, at most ``jobs`` at a time; a model that outlives ``timeout``
    seconds is stopped and becomes a ``Timeout`` row, a worker that dies becomes a row that says so."""
    from collections import deque
    from multiprocessing.connection import wait

    ctx = _mp_context()
    if ctx.get_start_method() == "forkserver":
        ctx.set_forkserver_preload(["rfgraph.zoo", *_preload_modules(tasks)])
    pending = deque(tasks)
    running: dict[Any, tuple[Any, ZooModel, float]] = {}
    try:
        while pending or running:
            while pending and len(running) < max(1, jobs):
                task = pending.popleft()
                reader, writer = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_child, args=(writer, task, validate, nodes), daemon=True,
                                   name=f"rfgraph-zoo {task.name}")
                proc.start()
                writer.close()
                running[reader] = (proc, task, time.monotonic())
            for reader in wait(list(running), timeout=0.5):
                proc, task, _ = running.pop(reader)
                try:
                    rows = reader.recv()
                except (EOFError, OSError):
                    rows = None
                reader.close()
                proc.join(10)
                if rows is None:
                    proc.join()
                    code = proc.exitcode
                    how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
                    rows = [_error_row(task, RuntimeError(f"the worker process died ({how}) before returning rows; "
                                                          "out of memory?"), RETRY_MARK)]
                    rows[0]["error"] = rows[0]["error"].replace("RuntimeError", "WorkerDied", 1)
                yield task, rows
            if timeout:
                now = time.monotonic()
                for reader, (proc, task, t0) in list(running.items()):
                    if now - t0 > timeout:
                        proc.kill()
                        proc.join()
                        reader.close()
                        del running[reader]
                        yield task, [_timeout_row(task, timeout)]
    finally:
        for reader, (proc, _, _) in running.items():
            proc.kill()
            proc.join()
            reader.close()


class NoWorkerError(RuntimeError):
    """A dask sweep has no worker left to run its remaining models."""


#: One model at a time per process on dask workers: tracing patches process-wide state (torch.fx), so
#: threads of one worker would see each other's patches.  Parallelism comes from worker processes.
_TASK_LOCK = threading.Lock()


def _locked_task(task: ZooModel, validate: bool, nodes) -> list[dict[str, Any]]:
    with _TASK_LOCK:
        return run_task(task, validate, nodes)


def _dask(tasks, scheduler, validate, nodes, no_worker_timeout=60.0):
    try:
        from distributed import Client, wait
    except ImportError:
        raise ImportError("--dask-scheduler needs dask.distributed: pip install 'rfgraph[dask]'") from None
    own = not isinstance(scheduler, Client)
    client = Client(scheduler) if own else scheduler
    try:
        futures = {}
        for t in tasks:
            fut = client.submit(_locked_task, t, validate, nodes, pure=False,
                                key=f"rfgraph-zoo-{t.name}-{os.getpid()}-{time.time_ns()}")
            futures[fut.key] = (fut, t)
        pending = {f for f, _ in futures.values()}
        idle_since = None
        while pending:
            try:
                done, pending = wait(pending, timeout=1, return_when="FIRST_COMPLETED")
            except (TimeoutError, asyncio.TimeoutError):  # nothing finished within the second
                done = set()
            for fut in done:
                task = futures[fut.key][1]
                try:
                    rows = fut.result()
                except Exception as exc:  # lost worker, cancelled task
                    rows = [_error_row(task, exc, RETRY_MARK)]
                yield task, rows
            if not pending:
                break
            if done or client.scheduler_info().get("workers"):
                idle_since = None
            elif idle_since is None:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > no_worker_timeout:
                names = [futures[f.key][1].name for f in pending]
                client.cancel(list(pending))
                raise NoWorkerError(
                    f"no dask worker left at {client.scheduler.address} for {no_worker_timeout:g} s; "
                    f"{len(names)} model(s) not run ({', '.join(names[:5])}{', ...' if len(names) > 5 else ''}); "
                    "start workers and run again with --resume"
                )
    finally:
        if own:
            client.close()


def _select(tasks: list[ZooModel], names: Optional[Sequence[str]]) -> list[ZooModel]:
    """The entries of ``tasks`` named in ``names`` (by name, spec, or the name without its ``timm:`` prefix)."""
    if names is None:
        return tasks
    index: dict[str, ZooModel] = {}
    for t in tasks:
        for key in (t.name, t.spec, t.spec.partition(":")[2]):
            index.setdefault(key, t)
    missing = [n for n in names if n not in index]
    if missing:
        raise ValueError(f"not in the chosen family: {', '.join(missing)}")
    picked = {index[n].name: index[n] for n in names}
    return list(picked.values())


def run(
    models: Union[str, Iterable[Union[str, ZooModel]]] = "classification",
    *,
    out: Optional[Union[str, os.PathLike]] = None,
    validate: bool = False,
    jobs: int = 1,
    dask_scheduler: Any = None,
    resume: bool = False,
    nodes: Optional[Sequence[str]] = None,
    progress: bool = True,
    log: Optional[Union[str, os.PathLike]] = None,
    only: Optional[Sequence[str]] = None,
    isolate: bool = True,
    timeout: Optional[float] = DEFAULT_TIMEOUT,
    no_worker_timeout: float = 60.0,
) -> ZooResult:
    """Sweep ``models`` (family names, model names, specs or `ZooModel` entries) and return their rows.

    ``only`` keeps just the named models of that selection (``--family classification --models
    resnet18,resnet50``).  Each model runs in a worker process of its own (``isolate=True``, at most
    ``jobs`` at a time) that is stopped after ``timeout`` seconds (a ``Timeout`` row); a worker that
    dies gives a row that says so.  ``isolate=False`` runs the models in this process, one after the
    other.  ``dask_scheduler`` (an address or a ``distributed.Client``) runs the same task on a dask
    cluster instead (one model at a time per worker process); a cluster with no worker for
    ``no_worker_timeout`` seconds raises `NoWorkerError`.

    ``out`` (``.md``, ``.csv``, ``.json`` or ``.jsonl``) receives the final table; rows are appended as
    each model finishes to the JSON-lines ``log`` (default: ``out`` with suffix ``.jsonl``), whose first
    line records the sweep's options and where each model's rows end with a completion marker.
    ``resume=True`` keeps the complete models of the log and runs the others (and those whose worker
    died); a log made with other options (``validate``, ``nodes``) raises `ZooLogError`.
    """
    tasks = _select(resolve_models(models), only)
    if out is not None and Path(out).suffix not in _WRITERS:
        raise ValueError(f"cannot write {str(out)!r}: use a .md, .csv, .json or .jsonl file")
    log_file = Path(log) if log is not None else (log_path(out) if out is not None else None)
    if resume and log_file is None:
        raise ValueError("resume needs an output file (-o FILE, or out=) whose .jsonl log holds the earlier rows")
    options = sweep_options(validate, nodes)
    kept: dict[str, list[dict[str, Any]]] = {}
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        if resume and log_file.exists():
            logged_options, logged, done = _read_log(log_file)
            if logged_options is None and logged:
                raise ZooLogError(f"{log_file} records no sweep options (an older or foreign log); cannot resume it")
            if logged_options is not None and logged_options != options:
                diff = {k: (logged_options.get(k), v) for k, v in options.items() if logged_options.get(k) != v}
                raise ZooLogError(
                    f"{log_file} was written by a sweep with other options ("
                    + "; ".join(f"{k}: log {a!r}, now {b!r}" for k, (a, b) in diff.items())
                    + "); resume with the same options, or write to another file"
                )
            for model, rows in logged.items():
                complete = done.get(model) == len(rows)
                retry = any((r["error"] or "").startswith(RETRY_MARK) for r in rows)
                if complete and not retry:
                    kept[model] = rows
        # Rewrite the log: options, then the complete models only (drops cut lines, partial models, retries).
        tmp = log_file.with_suffix(".jsonl.tmp")
        tmp.write_text(json.dumps({LOG_HEADER: 2, "options": options}) + "\n"
                       + "".join(_log_lines(m, rs) for m, rs in kept.items()))
        tmp.replace(log_file)
    todo = [t for t in tasks if t.name not in kept]
    results: dict[str, list[dict[str, Any]]] = {}
    t0, c0 = time.perf_counter(), time.process_time()
    if dask_scheduler is not None:
        source = _dask(todo, dask_scheduler, validate, nodes, no_worker_timeout)
        workers = 0
    elif isolate:
        source = _isolated(todo, jobs, validate, nodes, timeout)
        workers = max(1, jobs)
    elif jobs > 1 and len(todo) > 1:
        source = _local_pool(todo, jobs, validate, nodes)
        workers = jobs
    else:
        source = ((t, run_task(t, validate, nodes)) for t in todo)
        workers = 1
    bar = _progress(len(todo), progress)
    try:
        for task, rows in source:
            results[task.name] = rows
            _append(log_file, task.name, rows)
            if bar is not None:
                bar.set_postfix_str(task.name + (" (failed)" if rows and rows[0]["error"] and not rows[0]["node"] else ""))
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    ordered = []
    for t in tasks:
        ordered.extend(kept.get(t.name) or results.get(t.name) or [])
    result = ZooResult(ordered, wall, workers, resumed=sum(1 for t in tasks if t.name in kept), cpu_s=cpu)
    if out is not None and Path(out).suffix != ".jsonl":
        write_rows(result, out)
    return result


def _local_pool(tasks, jobs, validate, nodes) -> Iterator[tuple[ZooModel, list[dict[str, Any]]]]:
    """A spawned process pool (``isolate=False, jobs > 1``): workers are reused across models."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_worker_init) as pool:
        futures = {pool.submit(run_task, t, validate, nodes): t for t in tasks}
        for fut in as_completed(futures):
            task = futures[fut]
            try:
                rows = fut.result()
            except Exception as exc:  # the worker died (crash, out of memory)
                rows = [_error_row(task, exc, RETRY_MARK)]
            yield task, rows


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


def _progress(total: int, enabled: bool):
    if not enabled or total == 0:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="model", desc="rfgraph zoo", file=sys.stderr, dynamic_ncols=True)


# ---------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------


def _axes(values: Any, glob: Any = None) -> str:
    """Per-axis values as one cell: ``427`` when all axes agree, else ``11×23×23``; global axes as ``global``."""
    if values is None:
        return ""
    cells = []
    for i, v in enumerate(values):
        if v is None:
            cells.append("global" if glob and glob[i] else "?")
        else:
            cells.append(str(v))
    return cells[0] if len(set(cells)) == 1 else "×".join(cells)


def _flags(row: dict[str, Any]) -> str:
    flags = []
    if row["source"] and row["source"] != "symbolic":
        flags.append(row["source"])
    if row["global"] and any(row["global"]):
        flags.append("global")
    if row["global_context"]:
        flags.append("context")
    if row["aligned"] is False:
        flags.append(f"misaligned ({row['max_center_shift']} px)")
    return ", ".join(flags)


def _md_escape(text: Any) -> str:
    return str(text if text is not None else "").replace("|", "\\|").replace("\n", " ")


_MD_COLUMNS = ("model", "input", "node", "rf", "stride", "start", "flags", "time s", "RSS MB", "probe", "error")


def to_markdown(
    rows: Sequence[dict[str, Any]],
    summary: Optional[dict[str, Any]] = None,
    extra_columns: Optional[dict[str, Any]] = None,
) -> str:
    """A Markdown table (one line per stage node; model-level cells only on a model's first line).

    ``extra_columns`` maps a column title to ``fn(row) -> str``, placed before the error column.
    """
    lines = []
    if summary:
        lines += _summary_lines(summary) + [""]
    validated = any(r["probe"] for r in rows)
    extra_columns = dict(extra_columns or {})
    columns = [c for c in _MD_COLUMNS if c != "probe" or validated]
    columns[-1:-1] = list(extra_columns)
    lines.append("| " + " | ".join(columns) + " |")
    lines.append("|" + "|".join("---" for _ in columns) + "|")
    previous = None
    for r in rows:
        first = r["model"] != previous
        previous = r["model"]
        node = r["node"] or r["label"] or ""
        if r["label"] and r["node"] and r["label"] != r["node"]:
            node = f"{r['label']} ({r['node']})"
        elif r["target"] and node:
            node = f"{r['target']}.{node}"
        seconds = (r["build_s"] or 0) + (r["analysis_s"] or 0)
        probe = r["probe"] or ""
        if probe == "DISAGREE":
            probe = f"DISAGREE: probe {_probe_cells(r)}"
        elif probe == "error":
            probe = f"error: {r['probe_note']}"
        cells = {
            "model": r["model"] if first else "",
            "input": "×".join(map(str, r["input"][2:])) if first and r["input"] else "",
            "node": f"`{node}`" if node else "",
            "rf": _axes(r["rf"], r["global"]),
            "stride": _axes(r["stride"], r["global"]),
            "start": _axes(r["start"], r["global"]),
            "flags": _flags(r) if r["node"] else "",
            "time s": f"{seconds:.3f}" if first and r["analysis_s"] is not None else "",
            "RSS MB": f"{r['peak_rss_mb']:.0f}" if first and r["peak_rss_mb"] is not None else "",
            "probe": probe,
            "error": (r["error"] or "")[:300],
        }
        cells.update({title: fn(r) for title, fn in extra_columns.items()})
        lines.append("| " + " | ".join(_md_escape(cells[c]) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def _probe_cells(r: dict[str, Any]) -> str:
    """The probe's rf / stride / start as cells (an axis the probe found global shows ``global``)."""
    glob = [v is None for v in r["probe_rf"] or []]
    return " / ".join(_axes(r[k], glob) for k in ("probe_rf", "probe_stride", "probe_start"))


def _summary_lines(s: dict[str, Any]) -> list[str]:
    out = [
        f"- models: {s['models']} ({s['failed']} failed), stage rows: {s['rows']}",
        f"- wall time: {s['wall_s']} s with {s['workers'] or 'dask'} worker(s) ({s['cpu_s']} s CPU in this process); "
        f"summed per model: build {s['build_s']} s, analysis {s['analysis_s']} s",
    ]
    if s["slowest"]:
        out.append("- slowest (build + analysis): " + ", ".join(f"{m} {t:.2f} s" for m, t in s["slowest"]))
    if s["peak_rss_mb"]:
        m, mb = s["peak_rss_mb"]
        out.append(f"- largest peak RSS: {mb:.0f} MB ({m})")
    if s["unknown_models"]:
        out.append(f"- models with unknown nodes: {', '.join(s['unknown_models'])}")
    if s["disagreements"]:
        out.append(f"- probe disagreements: {s['disagreements']} rows")
    return out


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, list):
        return "x".join("" if x is None else str(x) for x in v)
    return str(v)


def to_csv(rows: Sequence[dict[str, Any]]) -> str:
    """CSV with every row key; per-axis lists joined with ``x``."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(ROW_KEYS)
    for r in rows:
        writer.writerow([_cell(r.get(k)) for k in ROW_KEYS])
    return buf.getvalue()


def _write_md(result: ZooResult, path: Path) -> None:
    path.write_text("# rfgraph zoo\n\n" + result.to_markdown())


def _write_csv(result: ZooResult, path: Path) -> None:
    path.write_text(to_csv(result.rows))


def _write_json(result: ZooResult, path: Path) -> None:
    path.write_text(json.dumps({"summary": result.summary(), "rows": result.rows}, indent=1) + "\n")


def _write_jsonl(result: ZooResult, path: Path) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in result.rows))


_WRITERS = {".md": _write_md, ".csv": _write_csv, ".json": _write_json, ".jsonl": _write_jsonl}


def write_rows(result: Union[ZooResult, Sequence[dict[str, Any]]], path: Union[str, os.PathLike]) -> None:
    """Write a sweep's table; the format follows the suffix (``.md``, ``.csv``, ``.json``, ``.jsonl``)."""
    if not isinstance(result, ZooResult):
        result = ZooResult(list(result))
    p = Path(path)
    if p.suffix not in _WRITERS:
        raise ValueError(f"cannot write {str(path)!r}: use a .md, .csv, .json or .jsonl file")
    p.parent.mkdir(parents=True, exist_ok=True)
    _WRITERS[p.suffix](result, p)
