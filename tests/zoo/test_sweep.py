"""Tests of `rfgraph.zoo.sweep`: model selection, isolated workers, timeouts, dask and the process pool."""

from __future__ import annotations

import pytest

from rfgraph import zoo

from .helpers import stable


def test_only_keeps_the_named_models_of_a_family():
    """``--family classification --models resnet18,resnet50`` runs those two, not the 80 of the family."""
    result = zoo.run("classification", only=["resnet18", "resnet50"], nodes=["layer4"], progress=False,
                     isolate=False)
    assert [(r["model"], r["rf"]) for r in result] == [("resnet18", [435, 435]), ("resnet50", [427, 427])]
    with pytest.raises(ValueError, match="not in the chosen family: vgg99"):
        zoo.run("classification", only=["resnet18", "vgg99"], progress=False)


def test_isolated_workers_give_the_rows_of_an_in_process_sweep(factories):
    models = [factories("tiny"), factories("broken"), factories("tiny2"), factories("branchy")]
    local = zoo.run(models, progress=False, isolate=False)
    isolated = zoo.run(models, progress=False, jobs=2)
    assert isolated.workers == 2
    assert stable(isolated.rows) == stable(local.rows)


def test_a_model_past_its_timeout_is_stopped_with_a_message_row(factories):
    import time

    t0 = time.monotonic()
    result = zoo.run([factories("slow"), factories("tiny")], progress=False, timeout=3)
    assert time.monotonic() - t0 < 60  # not the 120 s the model sleeps
    slow, *tiny = result.rows
    assert slow["model"] == "slow" and slow["node"] == ""
    assert slow["error"] == "Timeout: no result within 3 s; the worker process was stopped"
    assert [r["node"] for r in tiny] == ["1", "2"]


def test_a_dying_worker_is_a_row_that_says_so(factories, tmp_path):
    """A worker killed by a signal (here SIGKILL, as the kernel's OOM killer does) is one row; the sweep goes on,
    and resume runs that model again (it says nothing about the model's receptive field)."""
    out = tmp_path / "zoo.jsonl"
    result = zoo.run([factories("dies"), factories("tiny")], out=out, progress=False)
    died = result.rows[0]
    assert died["error"].startswith(zoo.RETRY_MARK + "WorkerDied: the worker process died (killed by signal 9)")
    assert [r["node"] for r in result.rows[1:]] == ["1", "2"]
    again = zoo.run([factories("dies"), factories("tiny")], out=out, resume=True, progress=False)
    assert again.resumed == 1 and again.rows[0]["error"].startswith(zoo.RETRY_MARK + "WorkerDied")


@pytest.mark.slow
def test_dask_two_threads_per_worker_gives_the_rows_of_a_local_sweep(factories):
    """issue 15: a default dask worker (2 threads) used to give spurious TraceError rows and silently wrong
    models.  With one model at a time per worker process, the rows are those of a local sweep."""
    distributed = pytest.importorskip("distributed")
    models = [factories("tiny"), factories("tiny2"), factories("broken"), factories("branchy"),
              "resnet18", "mobilenet_v3_small", "convnext_tiny", "swin_t"]
    local = zoo.run(models, progress=False, isolate=False)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cl:
        with distributed.Client(cl) as client:
            remote = zoo.run(models, dask_scheduler=client, progress=False)
    assert stable(remote.rows) == stable(local.rows)
    assert not [r for r in remote.rows if r["error"] and r["model"] not in ("broken", "branchy")]


@pytest.mark.slow
def test_dask_without_workers_is_an_error_not_an_endless_wait(factories):
    import time

    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=0, processes=False, dashboard_address=None) as cl:
        with distributed.Client(cl) as client:
            t0 = time.monotonic()
            with pytest.raises(zoo.NoWorkerError, match=r"no dask worker left .* 1 model\(s\) not run \(tiny\)"):
                list(zoo.run([factories("tiny")], dask_scheduler=client, progress=False, no_worker_timeout=2))
            assert time.monotonic() - t0 < 30


@pytest.mark.slow
def test_dask_local_cluster_gives_the_same_rows(factories):
    distributed = pytest.importorskip("distributed")
    models = [factories("tiny"), factories("tiny2"), factories("broken")]
    local = zoo.run(models, progress=False)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cl:
        with distributed.Client(cl) as client:
            remote = zoo.run(models, dask_scheduler=client, progress=False)
        remote_by_address = zoo.run(models[:1], dask_scheduler=cl.scheduler_address, progress=False)
    assert stable(remote.rows) == stable(local.rows)
    assert stable(remote_by_address.rows) == stable(local.rows[:2])
    assert remote.workers == 0


@pytest.mark.slow
def test_process_pool_gives_the_same_rows(factories):
    models = [factories("tiny"), factories("broken"), factories("tiny2")]
    local = zoo.run(models, progress=False)
    pooled = zoo.run(models, jobs=2, progress=False, isolate=False)
    assert stable(pooled.rows) == stable(local.rows)
