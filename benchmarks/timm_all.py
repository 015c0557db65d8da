"""Sweep every architecture of ``timm.list_models()``: how many nodes are exact, and what stops the rest.

Each model is built on the meta device (``pretrained=False``, no weights),
analysed symbolically at its default input size with ``fallback="unknown"``
(no probing), and summarised as counts of nodes: ``symbolic`` (exact, local
on every axis), ``global`` (exact, global along some axis), ``probed``,
``unknown``, plus the op and reason of the first unknown node.  A worker
process runs the models one after another; one that exceeds the time limit
is killed and the sweep goes on (its row says ``timeout``).

    .venv/bin/python benchmarks/timm_all.py -o timm_all.jsonl            # every model (resumes the file)
    .venv/bin/python benchmarks/timm_all.py swin_tiny_patch4_window7_224 maxvit_tiny_tf_224
    .venv/bin/python benchmarks/timm_all.py --summary timm_all.jsonl     # totals, unknowns by op

One row per model (JSON lines): model, input, status (ok / error / timeout),
nodes, symbolic, global, probed, unknown, nonspatial, first_unknown_op,
first_unknown_reason, seconds.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from collections import Counter


def analyse_one(name: str) -> dict:
    """Build ``name`` on meta, analyse it, count nodes by kind."""
    import timm
    import torch

    import rfgraph

    row = {"model": name, "input": None, "status": "ok", "nodes": 0, "symbolic": 0, "global": 0, "probed": 0,
           "unknown": 0, "nonspatial": 0, "first_unknown_op": "", "first_unknown_reason": "", "seconds": 0.0}
    t0 = time.perf_counter()
    try:
        with torch.device("meta"):
            model = timm.create_model(name, pretrained=False)
        cfg = getattr(model, "pretrained_cfg", None) or {}
        size = tuple(cfg.get("input_size") or (3, 224, 224))
        row["input"] = "x".join(map(str, size))
        analysis = rfgraph.analyze(model.eval(), (1, *size), fallback="unknown")
        for r in analysis:
            if r.op == "output" or r.shape is None:
                continue
            row["nodes"] += 1
            if r.source == "unknown":
                row["unknown"] += 1
                if not row["first_unknown_op"]:
                    row["first_unknown_op"] = r.op
                    row["first_unknown_reason"] = (r.reason or "")[:300]
            elif r.source == "probed":
                row["probed"] += 1
            elif r.source == "nonspatial":
                row["nonspatial"] += 1
            elif any(r.is_global):
                row["global"] += 1
            else:
                row["symbolic"] += 1
    except Exception as exc:  # one failing model never stops the sweep
        row["status"] = "error"
        row["first_unknown_reason"] = f"{type(exc).__name__}: {exc}"[:300]
    row["seconds"] = round(time.perf_counter() - t0, 2)
    return row


def _worker(conn) -> None:
    while True:
        name = conn.recv()
        if name is None:
            return
        conn.send(analyse_one(name))


class _Runner:
    """One worker process at a time; killed and replaced when a model exceeds the limit."""

    def __init__(self, limit: float):
        self.limit = limit
        self.ctx = mp.get_context("spawn")
        self.proc = None

    def _start(self) -> None:
        self.conn, child = self.ctx.Pipe()
        self.proc = self.ctx.Process(target=_worker, args=(child,), daemon=True)
        self.proc.start()

    def run(self, name: str) -> dict:
        if self.proc is None or not self.proc.is_alive():
            self._start()
        self.conn.send(name)
        if self.conn.poll(self.limit):
            try:
                return self.conn.recv()
            except EOFError:
                pass
        status = "timeout" if self.proc.is_alive() else "crashed"
        self.proc.kill()
        self.proc.join()
        self.proc = None
        return {"model": name, "status": status, "nodes": 0, "symbolic": 0, "global": 0, "probed": 0, "unknown": 0,
                "nonspatial": 0, "first_unknown_op": "", "first_unknown_reason": f"{status} after {self.limit:.0f} s",
                "seconds": self.limit}

    def close(self) -> None:
        if self.proc is not None and self.proc.is_alive():
            self.conn.send(None)
            self.proc.join(5)


def all_models() -> list[str]:
    """One config per architecture: every name of ``timm.list_models()`` (deduplicated before any '.'),
    ordered so that every model family (timm module) comes up early: the first model of each family,
    then the second of each, and so on -- an interrupted sweep still covers every family."""
    import timm
    from timm.models import _registry

    seen, by_module = set(), {}
    for name in timm.list_models():
        base = name.split(".")[0]
        if base not in seen:
            seen.add(base)
            by_module.setdefault(_registry._model_to_module.get(base, ""), []).append(base)
    out, queues = [], list(by_module.values())
    while queues:
        out.extend(q.pop(0) for q in queues)
        queues = [q for q in queues if q]
    return out


def summary(rows: list[dict]) -> str:
    """Totals over the rows and the first unknown op of each model with unknowns, by op and reason."""
    keys = ("nodes", "symbolic", "global", "probed", "unknown", "nonspatial")
    tot = {k: sum(r.get(k, 0) for r in rows) for k in keys}
    status = Counter(r["status"] for r in rows)
    with_unknown = [r for r in rows if r["status"] == "ok" and r["unknown"]]
    lines = [
        f"models: {len(rows)} ({', '.join(f'{k} {v}' for k, v in sorted(status.items()))}); "
        f"fully exact (no unknown node): {sum(1 for r in rows if r['status'] == 'ok' and not r['unknown'])}; "
        f"with unknown nodes: {len(with_unknown)}",
        "nodes: " + ", ".join(f"{k} {tot[k]}" for k in keys),
        "",
        "first unknown op (models):",
    ]
    by_op = Counter(r["first_unknown_op"] for r in with_unknown)
    for op, n in by_op.most_common():
        reasons = Counter(r["first_unknown_reason"][:140] for r in with_unknown if r["first_unknown_op"] == op)
        reason, _ = reasons.most_common(1)[0]
        models = [r["model"] for r in with_unknown if r["first_unknown_op"] == op][:4]
        lines.append(f"  {n:4d}  {op}  -- {reason}  (e.g. {', '.join(models)})")
    errors = [r for r in rows if r["status"] != "ok"]
    if errors:
        lines.append("")
        lines.append("errors / timeouts:")
        for r in errors:
            lines.append(f"  {r['model']}: {r['status']} {r['first_unknown_reason'][:160]}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="*", help="model names (default: every architecture of timm.list_models())")
    ap.add_argument("-o", "--output", help="JSON lines file; models already in it are skipped (resume)")
    ap.add_argument("--limit", type=float, default=300.0, help="seconds per model (default 300)")
    ap.add_argument("--summary", metavar="FILE", help="only print the summary of an existing JSON lines file")
    args = ap.parse_args(argv)
    if args.summary:
        with open(args.summary) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        print(summary(rows))
        return 0
    names = args.models or all_models()
    done: dict[str, dict] = {}
    if args.output and os.path.exists(args.output):
        with open(args.output) as f:
            for line in f:
                if line.strip():
                    row = json.loads(line)
                    done[row["model"]] = row
    out = open(args.output, "a") if args.output else None
    runner = _Runner(args.limit)
    rows = [done[n] for n in names if n in done]
    try:
        for name in (n for n in names if n not in done):
            row = runner.run(name)
            rows.append(row)
            print(f"[{len(rows)}/{len(names)}] {name}: {row['status']} nodes {row['nodes']} symbolic {row['symbolic']} "
                  f"global {row['global']} probed {row['probed']} unknown {row['unknown']} "
                  f"{row['first_unknown_op']} {row['seconds']}s", flush=True)
            if out:
                out.write(json.dumps(row) + "\n")
                out.flush()
    finally:
        runner.close()
        if out:
            out.close()
    print()
    print(summary(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
