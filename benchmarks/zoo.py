"""Run the zoo (torchvision, the timm sample, the third-party families) and write docs/zoo.md.

    .venv/bin/python benchmarks/zoo.py [--families classification,segmentation,...] [--timm] [--third-party]
                                       [--validate-families smp,monai,...] [--jobs N] [--timeout S] [-o docs/zoo.md]

`make zoo` runs the exact command that wrote the committed docs/zoo.md (the Makefile's ``ZOO_ARGS``), and
`make zoo-timm-all` the one of docs/zoo_timm_all.md.  Per-family logs live in build/zoo_logs (``--resume``
continues them).  ``--validate-families`` also runs a probe sweep of those families' stage nodes and merges
its verdicts into the symbolic rows (whose timings stay those of the symbolic sweep).

Models are built without weights on the meta device (on the CPU with random
weights when ``--validate`` runs the numeric probe).  The classification sweep
runs in one process so that its wall time is the figure to compare with the
60 s budget; the published Distill 2019 end points (Araujo et al.,
"Computing Receptive Fields of Convolutional Neural Networks") get a
comparison column.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from fractions import Fraction
from pathlib import Path

import torch
import torchvision

import rfgraph
from rfgraph import zoo

#: (model, end point) -> (name in the paper, RF, effective stride, effective padding), Distill 2019, TF-Slim.
DISTILL_2019 = {
    ("alexnet", "features.12"): ("AlexNet last pool", 195, 32, 64),
    ("vgg16", "features.4"): ("VGG-16 pool1", 6, 2, 2),
    ("vgg16", "features.9"): ("VGG-16 pool2", 16, 4, 6),
    ("vgg16", "features.16"): ("VGG-16 pool3", 44, 8, 18),
    ("vgg16", "features.23"): ("VGG-16 pool4", 100, 16, 42),
    ("vgg16", "features.30"): ("VGG-16 pool5", 212, 32, 90),
    ("vgg16_bn", "features.6"): ("VGG-16 pool1", 6, 2, 2),
    ("vgg16_bn", "features.13"): ("VGG-16 pool2", 16, 4, 6),
    ("vgg16_bn", "features.23"): ("VGG-16 pool3", 44, 8, 18),
    ("vgg16_bn", "features.33"): ("VGG-16 pool4", 100, 16, 42),
    ("vgg16_bn", "features.43"): ("VGG-16 pool5", 212, 32, 90),
    ("inception_v3", "Mixed_5d"): ("Inception-v3 Mixed_5d", 127, 8, 50),
    ("inception_v3", "Mixed_6e"): ("Inception-v3 Mixed_6e", 927, 16, 442),
    ("inception_v3", "Mixed_7c"): ("Inception-v3 Mixed_7c", 1311, 32, 618),
}

#: Known, documented architecture differences between torchvision and TF-Slim.
DIFFERENCES = {
    "alexnet": "torchvision's AlexNet pads conv1 by 2 (TF-Slim: VALID), so its offset differs by 2",
}


def _published(row: dict) -> tuple | None:
    return DISTILL_2019.get((row["model"], row["label"])) if row["label"] else None


def distill_cell(row: dict) -> str:
    pub = _published(row)
    if pub is None or not row["node"]:
        return ""
    _, rf, stride, pad = pub
    got_pad = -Fraction(row["start"][0]) if row["start"][0] is not None else None
    ok = row["rf"] == [rf, rf] and row["stride"] == [stride, stride]
    cell = f"{'✓' if ok else '✗'} {rf}/{stride}/{pad}"
    if got_pad != pad:
        cell += f" (padding here {got_pad})"
    return cell


def distill_table(rows: list[dict]) -> list[str]:
    lines = [
        "| published end point | torchvision node | RF pub / here | stride pub / here | padding pub / here | match |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        pub = _published(r)
        if pub is None:
            continue
        name, rf, stride, pad = pub
        if not r["node"]:
            lines.append(f"| {name} | `{r['model']}` {r['label']} | {rf} / - | {stride} / - | {pad} / - | error |")
            continue
        here_rf, here_stride = r["rf"][0], r["stride"][0]
        here_pad = -Fraction(r["start"][0])
        match = "RF and stride ✓" if (here_rf, here_stride) == (rf, stride) else "✗"
        if here_pad != pad:
            match += f"; padding differs: {DIFFERENCES.get(r['model'], 'unexplained')}"
        elif match.startswith("RF"):
            match = "✓"
        lines.append(
            f"| {name} | `{r['model']}` `{r['node']}` | {rf} / {here_rf} | {stride} / {here_stride} "
            f"| {pad} / {here_pad} | {match} |"
        )
    return lines


def _cause(row: dict) -> str:
    """A known explanation of a disagreement, read from the op (empty when none is known)."""
    if row["op"] and row["op"].startswith("Adaptive") and row["probe_rf"] and all(v is None for v in row["probe_rf"]):
        return (
            "size-dependent op: at the analysed input the adaptive pool maps its input one-to-one (RF as shown), "
            "but the probe measures on longer thin inputs, where each output averages a window that grows with "
            "the input; a probe limitation, not a rule error"
        )
    return ""


def disagreement_lines(rows: list[dict]) -> list[str]:
    bad = [r for r in rows if r["probe"] in ("DISAGREE", "error")]
    if not bad:
        return []
    lines = [
        "| model | node | symbolic rf / stride / start | probe rf / stride / start | note |",
        "|---|---|---|---|---|",
    ]
    ax = zoo.rows.axes_cell
    for r in bad:
        lines.append(
            f"| {r['model']} | `{r['node']}` | {ax(r['rf'], r['global'])} / {ax(r['stride'], r['global'])} / "
            f"{ax(r['start'], r['global'])} | {zoo.rows.probe_cells(r)} "
            f"| {r['probe'] if r['probe'] != 'DISAGREE' else ''} {_cause(r) or zoo.rows.md_escape(r['probe_note'])[:300]} |"
        )
    return lines


PROBE_KEYS = ("probe", "probe_rf", "probe_stride", "probe_start", "probe_note")


def _merge_probe(rows: list[dict], probed: list[dict]) -> None:
    """Copy the probe columns of a validation sweep into the rows with the same model and node."""
    by_key = {(r["model"], r["node"]): r for r in probed if r["node"]}
    failed = {r["model"]: r["error"] for r in probed if r["error"] and not r["node"]}
    for r in rows:
        src = by_key.get((r["model"], r["node"]))
        if src is not None:
            r.update({k: src[k] for k in PROBE_KEYS})
        elif r["node"] and r["model"] in failed:
            r["probe_note"] = f"validation sweep failed: {failed[r['model']][:200]}"
        elif r["node"] and any(p["model"] == r["model"] for p in probed):
            r["probe_note"] = "not a stage node of the validation sweep"


THIRD_PARTY = ("smp", "monai", "transformers", "torchaudio", "ultralytics", "open_clip")


def _per_model(rows: list[dict]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for r in rows:
        out.setdefault(r["model"], r)
    return out


def _op_of(first_unknown: str) -> str:
    return first_unknown.split(" (", 1)[0] if first_unknown else ""


def family_summary(family: str, result: zoo.ZooResult) -> tuple[str, list[str]]:
    """A one-line summary (for the README) and the section's summary lines: models, crashes, counts by
    source, unknown ops with their reasons, probe verdicts."""
    per = _per_model(result.rows)
    crashed = {m: r["error"] for m, r in per.items() if r["error"] and not r["node"]}
    counts: dict[str, int] = {}
    for r in per.values():
        for k, v in (r.get("counts") or {}).items():
            counts[k] = counts.get(k, 0) + v
    unknown_ops: dict[str, list[str]] = {}
    reasons: dict[str, str] = {}
    for m, r in per.items():
        if r.get("first_unknown"):
            op = _op_of(r["first_unknown"])
            unknown_ops.setdefault(op, []).append(m)
            reasons.setdefault(op, r["first_unknown"].split(": ", 1)[-1])
    verdicts: dict[str, int] = {}
    for r in result.rows:
        if r["probe"]:
            verdicts[r["probe"]] = verdicts.get(r["probe"], 0) + 1
    s = result.summary()
    n_global = counts.pop("global", 0)
    src = ", ".join(f"{k} {v}" + (f" (of them global {n_global})" if k == "symbolic" and n_global else "")
                    for k, v in counts.items() if v) or "n/a"
    per_model_s = sum((r["build_s"] or 0) + (r["analysis_s"] or 0) for r in per.values())
    # A resumed sweep's wall time covers only the models run this time: give the per-model sum instead.
    timed = result.wall_s and not result.resumed
    wall = f", {s['wall_s']:.0f} s wall" if timed else f", {per_model_s:.0f} s build + analysis summed per model"
    one = (f"{family}: {len(per)} models, {len(crashed)} failed{wall}; nodes {src}; "
           f"{len(unknown_ops)} op(s) left unknown in {sum(map(len, unknown_ops.values()))} model(s)")
    if verdicts:
        one += "; probe " + ", ".join(f"{k} {v}" for k, v in sorted(verdicts.items()))
    lines = [f"- models: {len(per)}; failed (error rows): {len(crashed)}; stage rows: {len(result.rows)}; "
             + (f"wall time {s['wall_s']} s with {s['workers'] or 'dask'} worker(s)" if timed else
                f"build + analysis summed per model {per_model_s:.1f} s ({result.resumed or len(per)} model(s) taken "
                "from the sweep's log, whose wall time is not recorded)"),
             f"- nodes by source, summed over the models: {src}"]
    uncounted = [m for m, r in per.items() if r.get("counts") is None and not (r["error"] and not r["node"])]
    if uncounted:
        lines.append(f"- node counts by source were not recorded for {len(uncounted)} model(s) of the log (swept "
                     "before the log carried them); their first unknown op is not shown either")
    if verdicts:
        lines.append("- stage rows by probe verdict: " + ", ".join(f"{k} {v}" for k, v in sorted(verdicts.items())))
    if crashed:
        lines += ["", "| failed model | error |", "|---|---|"]
        lines += [f"| {m} | {zoo.rows.md_escape(e)[:400]} |" for m, e in crashed.items()]
    if unknown_ops:
        lines += ["", "First unknown op per model (everything after it is unknown too), grouped by op:", "",
                  "| op | models | reason (first model) |", "|---|---|---|"]
        for op, models in sorted(unknown_ops.items(), key=lambda kv: -len(kv[1])):
            shown = ", ".join(models[:12]) + (f", ... ({len(models)} in all)" if len(models) > 12 else "")
            lines.append(f"| `{op}` | {zoo.rows.md_escape(shown)} | {zoo.rows.md_escape(reasons[op])[:300]} |")
    return one, lines


def model_table(result: zoo.ZooResult) -> list[str]:
    """One line per model: input, node counts by source, time, first unknown op, probe verdicts."""
    lines = ["| model | input | symbolic | of them global | probed | unknown | nonspatial | time s | first unknown op "
             "| probe |", "|---|---|---|---|---|---|---|---|---|---|"]
    verdicts: dict[str, dict[str, int]] = {}
    for r in result.rows:
        if r["probe"]:
            verdicts.setdefault(r["model"], {}).setdefault(r["probe"], 0)
            verdicts[r["model"]][r["probe"]] += 1
    for m, r in _per_model(result.rows).items():
        c = r.get("counts") or {}
        t = (r["build_s"] or 0) + (r["analysis_s"] or 0)
        if r["error"] and not r["node"]:
            first = "error: " + zoo.rows.md_escape(r["error"])[:200]
        else:
            first = zoo.rows.md_escape(r.get("first_unknown") or "")[:200]
        probe = ", ".join(f"{k} {v}" for k, v in sorted(verdicts.get(m, {}).items()))
        lines.append(
            f"| {m} | {'×'.join(map(str, (r['input'] or [])[2:]))} | {c.get('symbolic', '')} | {c.get('global', '')} "
            f"| {c.get('probed', '')} "
            f"| {c.get('unknown', '')} | {c.get('nonspatial', '')} | {t:.2f} | {first} | {probe} |"
        )
    return lines


def _from_log(family: str, log: Path) -> tuple[zoo.ZooResult, str]:
    """The rows of the complete models of a family's log, in family order, and a note when some are missing."""
    _, logged, done = zoo.log.read_log(log)
    rows = []
    names = [m.name for m in zoo.family_models(family)]
    complete = [n for n in names if n in logged and done.get(n) == len(logged[n])]
    for n in complete:
        rows.extend(logged[n])
    note = "" if len(complete) == len(names) else (
        f"; partial sweep: {len(complete)} of {len(names)} models (the sweep was stopped; "
        "`make zoo-timm-all` continues it)" if family == "timm-all" else
        f"; partial sweep: {len(complete)} of {len(names)} models")
    return zoo.ZooResult(rows), note


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default="docs/zoo.md")
    parser.add_argument("--families", default="classification,segmentation,detection,video")
    parser.add_argument("--timm", action="store_true", help="add the timm CNN family section")
    parser.add_argument("--third-party", action="store_true", help="add " + ", ".join(THIRD_PARTY))
    parser.add_argument("--validate", action="store_true", help="check every stage node with the probe")
    parser.add_argument("--validate-families", default="",
                        help="families whose stage nodes are also checked by a probe sweep (merged into the rows)")
    parser.add_argument(
        "--probe-log",
        help="JSON-lines log of an earlier `rfgraph zoo --validate` sweep: its probe columns are merged into the "
        "symbolic rows (so the timings stay those of the symbolic sweep)",
    )
    parser.add_argument("--jobs", type=int, default=1, help="worker processes for the families after the first")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per model")
    parser.add_argument("--validate-timeout", type=float, help="seconds per model of a validation sweep (default --timeout)")
    parser.add_argument("--resume", action="store_true", help="keep rows already in the per-family logs")
    parser.add_argument("--from-logs", action="store_true",
                        help="run nothing: tabulate the models already in build/zoo_logs (a partial sweep says so)")
    parser.add_argument("--summary-out", help="also write the one-line family summaries to this file")
    parser.add_argument("--readme-marker", metavar="NAME",
                        help="write the one-line family summaries into README.md between <!-- NAME --> and <!-- /NAME -->")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    families = ([f for f in args.families.split(",") if f] + (["timm"] if args.timm else [])
                + (list(THIRD_PARTY) if args.third_party else []))
    validate_families = {f for f in args.validate_families.split(",") if f}
    out = Path(args.output)
    logs = Path("build") / "zoo_logs"  # ignored by git; --resume continues from these
    torch.set_grad_enabled(False)

    sections: list[str] = []
    summaries: list[str] = []
    results: dict[str, zoo.ZooResult] = {}
    for family in families:
        t0 = time.perf_counter()
        if args.from_logs:
            result, note = _from_log(family, logs / f"{family}{'_validate' if args.validate else ''}.jsonl")
            results[family] = result
            one, summary_lines = family_summary(family, result)
            summaries.append(one + note)
            sections.append("\n".join([f"## {family}", "", FAMILY_NOTES.get(family, ""), "", "### Summary", "",
                                       *summary_lines, f"- {note.strip('; ')}" if note else "", "",
                                       "### Models", "", *model_table(result), "",
                                       "### Stage nodes", "", result.to_markdown(summary=False), ""]))
            continue
        result = zoo.run(
            family,
            validate=args.validate,
            jobs=1 if family == "classification" else args.jobs,
            timeout=args.timeout,
            resume=args.resume,
            progress=not args.no_progress,
            log=logs / f"{family}{'_validate' if args.validate else ''}.jsonl",
        )
        if family in validate_families and not args.validate:
            probed = zoo.run(family, validate=True, jobs=args.jobs, timeout=args.validate_timeout or args.timeout,
                             resume=args.resume,
                             progress=not args.no_progress, log=logs / f"{family}_validate.jsonl")
            _merge_probe(result.rows, probed.rows)
        if args.probe_log:
            _merge_probe(result.rows, zoo.read_rows(args.probe_log))
        results[family] = result
        s = result.summary()
        print(
            f"{family}: {s['models']} models, {s['failed']} failed, {s['wall_s']} s wall "
            f"({time.perf_counter() - t0:.1f} s with set-up), slowest {s['slowest'][:3]}",
            file=sys.stderr,
        )
        one, summary_lines = family_summary(family, result)
        summaries.append(one)
        body = [f"## {family}", ""]
        if family in FAMILY_NOTES:
            body += [FAMILY_NOTES[family], ""]
        if family == "classification":
            body += [
                "### Published values (Distill 2019)",
                "",
                "RF, effective stride and effective padding (`-start`) at the end points of Araujo et al.,",
                '"Computing Receptive Fields of Convolutional Neural Networks", Distill 2019 (TF-Slim models),',
                "where torchvision's architecture is the same.",
                "",
                *distill_table(result.rows),
                "",
            ]
        body += ["### Summary", "", *summary_lines, ""]
        if family in zoo.THIRD_PARTY_FAMILIES:
            body += ["### Models", "", *model_table(result), ""]
        disagreements = disagreement_lines(result.rows)
        if any(r["probe"] for r in result.rows):
            body += ["### Probe disagreements and errors", ""]
            skipped = {r["model"]: r["probe_note"] for r in result.rows if not r["probe"] and r["node"]}
            if skipped:
                body += ["(not probed: " + "; ".join(f"{m}: {n or 'no probe row'}" for m, n in skipped.items()) + ")"]
            body += [""]
            body += disagreements or ["None: every validated stage node agrees with the probe."]
            body += [""]
        extra = {"Distill 2019 rf/stride/pad": distill_cell} if family == "classification" else None
        body += ["### Stage nodes", "", result.to_markdown(summary=False) if extra is None else
                 zoo.to_markdown(result.rows, None, extra), ""]
        sections.append("\n".join(body))

    command = " ".join(["benchmarks/zoo.py", *sys.argv[1:]])
    header = [
        "# rfgraph zoo" + (" (timm, every architecture)" if families == ["timm-all"] else ""),
        "",
        "Receptive field (rf), effective stride and start (`-start` is the effective padding) per input axis",
        "at the stage nodes of each model (the last node at each effective stride on the trunk, the last",
        "spatial node, and named end points), built without weights on the meta device and analysed",
        "symbolically.  Cells show one number when all axes agree, else one per axis (T×H×W for video).",
        "Flags: `context` = a global path (squeeze-and-excitation, image pooling) also reaches the node,",
        "whose local RF is shown; `global` = the node depends on the whole input; `misaligned` = paths",
        "meeting at a merge have different centers (largest shift in input pixels).  Detection rows are",
        "nodes of `model.backbone` (backbone + FPN), whose output levels each have their own stride and RF.",
        "Each model runs in its own worker process with a timeout; a failed model is one row with its error.",
        "",
        f"Generated by `{command}` on {time.strftime('%Y-%m-%d')}: "
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, rfgraph {rfgraph.__version__}, "
        f"{_library_versions(families)}Python {platform.python_version()}, {os.cpu_count()} CPU cores shared "
        f"with other jobs (load average {os.getloadavg()[0]:.1f} at the end: wall times are inflated by that "
        "contention).",
        "",
        "Families:",
        "",
        *[f"- {line}" for line in summaries],
        "",
    ]
    if "classification" in results:
        s = results["classification"].summary()
        timing = (f"in {s['wall_s']} s** ({s['cpu_s']} s of CPU time in the sweep's own process; "
                  if not results["classification"].resumed else
                  "** (rows taken from the sweep's log; ")
        header += [
            f"**Whole torchvision classification zoo: {s['models']} models {timing}meta-device construction "
            f"{s['build_s']} s + analysis {s['analysis_s']} s summed per model; "
            f"{s['failed']} failed).  Slowest five: "
            + ", ".join(f"{m} {t:.2f} s" for m, t in s["slowest"])
            + (f".  Largest peak RSS: {s['peak_rss_mb'][1]:.0f} MB ({s['peak_rss_mb'][0]})" if s["peak_rss_mb"] else "")
            + ".",
            "",
        ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(header) + "\n" + "\n".join(sections))
    if args.summary_out:
        Path(args.summary_out).write_text("\n".join(summaries) + "\n")
    if args.readme_marker:
        readme = Path("README.md")
        text = readme.read_text()
        begin, end = f"<!-- {args.readme_marker} -->", f"<!-- /{args.readme_marker} -->"
        if begin in text and end in text:
            head, rest = text.split(begin, 1)
            _, tail = rest.split(end, 1)
            lines = "".join(f"- {line}\n" for line in summaries)
            readme.write_text(f"{head}{begin}\n{lines}{end}{tail}")
    print(f"wrote {out}", file=sys.stderr)
    return 0


#: Notes printed under a family's heading: how its models are built.
FAMILY_NOTES = {
    "timm-all": "Every architecture of `timm.list_models()` (one entry per model name, no pretrained tag), at its "
                "`default_cfg` input size.",
    "smp": "segmentation_models_pytorch: every architecture × the encoders resnet34, efficientnet-b0, mit_b0 and "
           "the timm-universal tu-regnety_002 (DPT takes only ViT encoders: tu-vit_small_patch16_224 at 224²), "
           "`encoder_weights=None`, input 256².",
    "monai": "MONAI networks, 1 input channel, 2 classes, 2-D at 128² and 3-D at 64³ (UNet / AttentionUnet with "
             "channels 16..256 and strides 2, DynUNet kernels 3 and strides 1,2,2,2,2).",
    "transformers": "transformers model classes built from their default config (the reference architecture, "
                    "random weights); images at 224² (MobileViT 256², SegFormer 512²), audio as (1, 1, 16000) "
                    "samples.  `hf:Wav2Vec2Model:feature_extractor` is the convolutional feature encoder alone.",
    "torchaudio": "torchaudio.models: the wav2vec2 base feature extractor, ConvTasNet and Wav2Letter on 16000 "
                  "samples, DeepSpeech on (1, 1, 200 frames, 40 features).",
    "ultralytics": "ultralytics DetectionModel built from its packaged yaml (no weights), 640².",
    "open_clip": "The visual tower of open_clip models created with `pretrained=None`, 224².",
}


def _library_versions(families: list[str]) -> str:
    import importlib.metadata as md

    names = {"timm": "timm", "timm-all": "timm", "smp": "segmentation-models-pytorch", "monai": "monai",
             "transformers": "transformers", "torchaudio": "torchaudio", "ultralytics": "ultralytics",
             "open_clip": "open-clip-torch"}
    out = []
    for f in families:
        if f in names and names[f] not in [n for n, _ in out]:
            try:
                out.append((names[f], md.version(names[f])))
            except md.PackageNotFoundError:
                pass
    return "".join(f"{n} {v}, " for n, v in out)


if __name__ == "__main__":
    sys.exit(main())
