"""Lint timm's declared feature strides (``feature_info`` reductions) against rfgraph's computed strides.

Every model is built on the meta device without weights with
``features_only=True`` (falling back to the plain model, matched by module
name, when timm cannot wrap it), analysed at its default input size, and each
``feature_info`` entry's ``reduction`` is compared with the effective stride
rfgraph computes at the tensor the wrapper returns for it.

    .venv/bin/python benchmarks/lint_timm.py                 # CNN families, up to 5 models each
    .venv/bin/python benchmarks/lint_timm.py --per-family 0  # every model of the families
    .venv/bin/python benchmarks/lint_timm.py resnet50d convnext_tiny

Each row has the same keys whatever happens (``status`` is ok / MISMATCH
(declared and computed strides differ) / UNCHECKED (rfgraph computed no stride
at some declared node) / ERROR / no-info), so one failing model never stops the
run.
"""

from __future__ import annotations

import argparse
import time
from fractions import Fraction

import torch

import rfgraph
from rfgraph.queries import declared_strides, lint

FAMILIES = (
    "resnet*", "resnext*", "seresnet*", "seresnext*", "ecaresnet*", "wide_resnet*", "res2net*", "resnest*",
    "skresnet*", "efficientnet*", "tf_efficientnet*", "mobilenetv2*", "mobilenetv3*", "tf_mobilenetv3*",
    "mnasnet*", "mixnet*", "fbnet*", "lcnet*", "tinynet*", "ghostnet*", "rexnet*", "hardcorenas*",
    "convnext*", "regnet*", "densenet*", "dla*", "dpn*", "cspresnet*", "cspdarknet*", "darknet*", "cs3*",
    "hrnet*", "vgg*", "inception*", "xception*", "nfnet*", "dm_nfnet*", "nf_resnet*", "gernet*", "repvgg*",
    "selecsls*", "ese_vovnet*", "vovnet*", "tresnet*", "mobileone*", "hgnet*", "rdnet*", "legacy_*",
)


def _fmt(v) -> str:
    if isinstance(v, Fraction):
        return str(v.numerator) if v.denominator == 1 else str(v)
    if isinstance(v, tuple):
        vals = sorted({_fmt(x) for x in v})
        return "x".join(vals)
    return str(v)


def lint_one(name: str) -> dict:
    """One row: model, input, declared, mismatches, status, detail, seconds."""
    import timm

    row = {"model": name, "mode": "", "input": "", "declared": 0, "mismatches": 0, "status": "", "detail": "",
           "seconds": 0.0}
    t0 = time.perf_counter()
    try:
        try:  # features_only: declared entry i is matched with returned tensor i (no module names involved)
            with torch.device("meta"):
                model = timm.create_model(name, pretrained=False, features_only=True)
            row["mode"] = "features"
        except Exception:
            with torch.device("meta"):
                model = timm.create_model(name, pretrained=False)
            row["mode"] = "names"
        model.eval()
        cfg = getattr(model, "default_cfg", None) or getattr(model, "pretrained_cfg", None) or {}
        size = tuple(cfg.get("input_size", (3, 224, 224)))
        row["input"] = "x".join(map(str, size[1:]))
        declared = declared_strides(model)
        row["declared"] = len(declared)
        if not declared:
            row["status"] = "no-info"
        else:
            rows = lint(rfgraph.analyze(model, (1, *size)), declared)
            bad = [r for r in rows if not r.ok]
            row["mismatches"] = sum(r.status == "mismatch" for r in rows)
            row["status"] = "MISMATCH" if row["mismatches"] else ("UNCHECKED" if bad else "ok")
            row["detail"] = "; ".join(
                f"{r.node} declared {_fmt(r.declared)} computed {_fmt(r.computed)}" + (f" ({r.error})" if r.error else "")
                for r in bad
            )
    except Exception as exc:  # a benchmark row, not a crash
        row["status"] = "ERROR"
        row["detail"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
    row["seconds"] = round(time.perf_counter() - t0, 2)
    return row


def select(per_family: int) -> list[str]:
    import timm

    seen: dict[str, None] = {}
    for pattern in FAMILIES:
        names = [n for n in timm.list_models(pattern) if n not in seen]
        if per_family:
            # spread the pick over the family (names sort by variant)
            step = max(1, len(names) // per_family)
            names = names[::step][:per_family]
        seen.update(dict.fromkeys(names))
    return list(seen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="timm model names (default: the CNN families)")
    parser.add_argument("--per-family", type=int, default=5, help="models per family pattern (0: all)")
    parser.add_argument("--budget", type=float, default=280.0, help="stop starting new models after this many s")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    names = args.names or select(args.per_family)
    keys = ("model", "mode", "input", "declared", "mismatches", "status", "seconds", "detail")
    sep = " | " if args.markdown else "  "
    print(sep.join(keys))
    if args.markdown:
        print("|".join(["---"] * len(keys)))
    start = time.perf_counter()
    rows = []
    for name in names:
        if time.perf_counter() - start > args.budget:
            print(f"# budget of {args.budget:.0f} s reached after {len(rows)} of {len(names)} models")
            break
        row = lint_one(name)
        rows.append(row)
        print(sep.join(str(row[k]) for k in keys), flush=True)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    total = time.perf_counter() - start
    print(f"# {len(rows)} models in {total:.0f} s: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))


if __name__ == "__main__":
    main()
