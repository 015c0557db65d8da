"""Running a sweep: in this process, on isolated worker processes with a timeout, on a process pool or on
a dask cluster; the rows go to the log as each model finishes (`run`)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Sequence, Union

from ..models import offline_env
from .families import RETRY_MARK, ZooModel, resolve_models
from .log import LOG_HEADER, ZooLogError, append_model, log_lines, log_path, read_log, sweep_options
from .rows import WRITERS, ZooResult, write_rows
from .task import blank_row, error_row, run_task

#: Seconds a model may take in its worker process before it is stopped (``timeout=``).
DEFAULT_TIMEOUT = 900.0


def _timeout_row(task: ZooModel, seconds: float) -> dict[str, Any]:
    row = blank_row(task)
    row["error"] = f"Timeout: no result within {seconds:g} s; the worker process was stopped"
    return row


def _child(conn, task: ZooModel, validate: bool, nodes) -> None:
    """Body of one isolated worker process: run the task, send its rows, exit."""
    try:
        import torch

        torch.set_num_threads(1)
        rows = run_task(task, validate, nodes)
    except BaseException as exc:  # noqa: B036 - even SystemExit from a factory becomes the model's row
        rows = [error_row(task, exc)]
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
                    rows = [error_row(task, RuntimeError(f"the worker process died ({how}) before returning rows; "
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
                    rows = [error_row(task, exc, RETRY_MARK)]
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
    if out is not None and Path(out).suffix not in WRITERS:
        raise ValueError(f"cannot write {str(out)!r}: use a .md, .csv, .json or .jsonl file")
    log_file = Path(log) if log is not None else (log_path(out) if out is not None else None)
    if resume and log_file is None:
        raise ValueError("resume needs an output file (-o FILE, or out=) whose .jsonl log holds the earlier rows")
    options = sweep_options(validate, nodes)
    kept: dict[str, list[dict[str, Any]]] = {}
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        if resume and log_file.exists():
            logged_options, logged, done = read_log(log_file)
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
                       + "".join(log_lines(m, rs) for m, rs in kept.items()))
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
            append_model(log_file, task.name, rows)
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
                rows = [error_row(task, exc, RETRY_MARK)]
            yield task, rows


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


def _progress(total: int, enabled: bool):
    if not enabled or total == 0:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="model", desc="rfgraph zoo", file=sys.stderr, dynamic_ncols=True)
