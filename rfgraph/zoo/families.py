"""The zoo's families: which models a sweep runs, by family name or model name, and the row keys."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Iterable, Optional, Union

from ..models import MONAI_NETS, TORCHAUDIO_MODELS, offline_env, third_party

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
    "counts",  # nodes by source: {"symbolic": n, "probed": n, "unknown": n, "nonspatial": n, "global": n}
    #          (global: the symbolic or probed nodes global along every axis they hold)
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
