"""Run the torchvision zoo (classification, segmentation, detection backbones, video) and write docs/zoo.md.

    .venv/bin/python benchmarks/zoo.py [--validate] [--families classification,segmentation,...]
                                       [--timm] [--jobs N] [-o docs/zoo.md]

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
    ax = zoo._axes
    for r in bad:
        lines.append(
            f"| {r['model']} | `{r['node']}` | {ax(r['rf'], r['global'])} / {ax(r['stride'], r['global'])} / "
            f"{ax(r['start'], r['global'])} | {zoo._probe_cells(r)} "
            f"| {r['probe'] if r['probe'] != 'DISAGREE' else ''} {_cause(r) or zoo._md_escape(r['probe_note'])[:300]} |"
        )
    return lines


PROBE_KEYS = ("probe", "probe_rf", "probe_stride", "probe_start", "probe_note")


def _merge_probe(rows: list[dict], probed: list[dict]) -> None:
    """Copy the probe columns of a validation sweep into the rows with the same model and node."""
    by_key = {(r["model"], r["node"]): r for r in probed if r["node"]}
    for r in rows:
        src = by_key.get((r["model"], r["node"]))
        if src is not None:
            r.update({k: src[k] for k in PROBE_KEYS})
        elif r["node"] and any(p["model"] == r["model"] for p in probed):
            r["probe_note"] = "not a stage node of the validation sweep"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default="docs/zoo.md")
    parser.add_argument("--families", default="classification,segmentation,detection,video")
    parser.add_argument("--timm", action="store_true", help="add the timm CNN family section")
    parser.add_argument("--validate", action="store_true", help="check every stage node with the probe")
    parser.add_argument(
        "--probe-log",
        help="JSON-lines log of an earlier `rfgraph zoo --validate` sweep: its probe columns are merged into the "
        "symbolic rows (so the timings stay those of the symbolic sweep)",
    )
    parser.add_argument("--jobs", type=int, default=1, help="worker processes for the families after the first")
    parser.add_argument("--resume", action="store_true", help="keep rows already in the per-family logs")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    families = [f for f in args.families.split(",") if f] + (["timm"] if args.timm else [])
    out = Path(args.output)
    logs = Path("build") / "zoo_logs"  # ignored by git; --resume continues from these
    torch.set_grad_enabled(False)

    sections: list[str] = []
    results: dict[str, zoo.ZooResult] = {}
    for family in families:
        t0 = time.perf_counter()
        result = zoo.run(
            family,
            validate=args.validate,
            jobs=1 if family == "classification" else args.jobs,
            resume=args.resume,
            progress=not args.no_progress,
            log=logs / f"{family}{'_validate' if args.validate else ''}.jsonl",
        )
        if args.probe_log:
            _merge_probe(result.rows, zoo.read_rows(args.probe_log))
        results[family] = result
        s = result.summary()
        print(
            f"{family}: {s['models']} models, {s['failed']} failed, {s['wall_s']} s wall "
            f"({time.perf_counter() - t0:.1f} s with set-up), slowest {s['slowest'][:3]}",
            file=sys.stderr,
        )
        body = [f"## {family}", ""]
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
        disagreements = disagreement_lines(result.rows)
        if any(r["probe"] for r in result.rows):
            counts = {}
            for r in result.rows:
                counts[r["probe"] or "not probed"] = counts.get(r["probe"] or "not probed", 0) + 1
            body += ["### Probe disagreements", ""]
            body += ["Stage rows by probe verdict: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))]
            skipped = {r["model"]: r["probe_note"] for r in result.rows if not r["probe"] and r["node"]}
            if skipped:
                body += ["(not probed: " + "; ".join(f"{m}: {n or 'no probe row'}" for m, n in skipped.items()) + ")"]
            body += [""]
            body += disagreements or ["None: every validated stage node agrees with the probe."]
            body += [""]
        extra = {"Distill 2019 rf/stride/pad": distill_cell} if family == "classification" else None
        body += ["### Table", "", result.to_markdown() if extra is None else
                 zoo.to_markdown(result.rows, result.summary(), extra), ""]
        sections.append("\n".join(body))

    header = [
        "# rfgraph zoo",
        "",
        "Receptive field (rf), effective stride and start (`-start` is the effective padding) per input axis",
        "at the stage nodes of every torchvision model (the last node at each effective stride, the last",
        "spatial node, and named end points), built with `weights=None` on the meta device and analysed",
        "symbolically.  Cells show one number when all axes agree, else one per axis (T×H×W for video).",
        "Flags: `context` = a global path (squeeze-and-excitation, image pooling) also reaches the node,",
        "whose local RF is shown; `global` = the node depends on the whole input; `misaligned` = paths",
        "meeting at a merge have different centers (largest shift in input pixels).  Detection rows are",
        "nodes of `model.backbone` (backbone + FPN), whose output levels each have their own stride and RF.",
        "",
        f"Generated by `benchmarks/zoo.py{' '.join([''] + sys.argv[1:])}` on {time.strftime('%Y-%m-%d')}: "
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, rfgraph {rfgraph.__version__}, "
        f"Python {platform.python_version()}, {os.cpu_count()} CPU cores shared with other jobs (load average "
        f"{os.getloadavg()[0]:.1f} at the end: wall times are inflated by that contention; CPU time is not).",
        "",
    ]
    if "classification" in results:
        s = results["classification"].summary()
        header += [
            f"**Whole torchvision classification zoo: {s['models']} models in {s['wall_s']} s** "
            f"(one process, {s['cpu_s']} s of CPU time; meta-device construction {s['build_s']} s + analysis "
            f"{s['analysis_s']} s; "
            f"{s['failed']} failed).  Slowest five: "
            + ", ".join(f"{m} {t:.2f} s" for m, t in s["slowest"])
            + (f".  Largest peak RSS: {s['peak_rss_mb'][1]:.0f} MB ({s['peak_rss_mb'][0]})" if s["peak_rss_mb"] else "")
            + ".",
            "",
        ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(header) + "\n" + "\n".join(sections))
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
