"""rfgraph.locking: analyses from many threads (and dask workers with several threads) give exactly the
results of sequential runs.

Before the lock, ``torch.fx``'s tracer patched ``torch.nn.Module.__call__`` for the whole process while one
thread traced: 76 of 80 calls from 4 threads raised and 2 returned silently different results (convnext_tiny
with renamed nodes, 184 "probed" nodes).
"""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
import torchvision
from torch import nn

import rfgraph
from rfgraph.locking import GLOBAL_LOCK, serialized


class SmallNet(nn.Module):
    """A CPU model with a buffer changed in place by forward, a residual add and a pool."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.skip = nn.Conv2d(3, 8, 1, stride=2)
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def forward(self, x):
        self.step.add_(1)
        return self.pool(self.b(torch.relu(self.a(x))) + self.skip(x))


def _models():
    with torch.device("meta"):
        out = {
            "resnet18": torchvision.models.resnet18(weights=None),
            "convnext_tiny": torchvision.models.convnext_tiny(weights=None),
            "swin_t": torchvision.models.swin_t(weights=None),
        }
    out["small"] = SmallNet()
    return out


SHAPE = (1, 3, 224, 224)


def _json(model) -> str:
    return rfgraph.analyze(model, SHAPE).to_json()


@pytest.fixture(scope="module")
def models():
    return _models()


@pytest.fixture(scope="module")
def sequential(models):
    return {name: _json(m) for name, m in models.items()}


def test_eight_threads_give_the_sequential_results_byte_for_byte(models, sequential):
    jobs = [name for _ in range(4) for name in models]  # 16 analyses, 4 per model, on shared instances
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda name: (name, _json(models[name])), jobs))
    assert len(results) == len(jobs)
    for name, text in results:
        assert text == sequential[name], name
    assert int(models["small"].step) == 0  # and the model was never changed


def test_threads_running_models_while_another_traces():
    """The probe (real forwards on copies of the modules) in one thread while others trace: the probe holds
    the lock, so fx's patched Module.__call__ never sees its modules.  (A forward run by user code outside
    rfgraph is not protected: torch.fx patches the whole process, see README "Threads".)"""
    net = SmallNet()
    expected = rfgraph.analyze(net, (1, 3, 32, 32)).to_json()
    errors, texts = [], []

    def analyse():
        try:
            for _ in range(5):
                texts.append(rfgraph.analyze(net, (1, 3, 32, 32)).to_json())
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def probe():
        try:
            for _ in range(2):
                rfgraph.probe(net, "b", (1, 3, 32, 32))
        except Exception as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=analyse) for _ in range(3)] + [threading.Thread(target=probe)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert texts == [expected] * 15
    assert int(net.step) == 0


def test_lock_is_reentrant_and_serialized_holds_it():
    seen = []

    @serialized
    def inner():
        seen.append(GLOBAL_LOCK._is_owned())
        return rfgraph.analyze(nn.Conv1d(1, 1, 3), (1, 1, 8))["output"].rf

    with GLOBAL_LOCK:
        assert inner() == (3,)
    assert seen == [True]


def _zoo_row(name: str) -> str:
    return _json(_models()[name])


def test_dask_local_cluster_with_two_threads_gives_the_sequential_results(sequential):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        names = [name for _ in range(2) for name in sequential]
        futures = [client.submit(_zoo_row, name, pure=False) for name in names]
        results = client.gather(futures)
    for name, text in zip(names, results):
        assert text == sequential[name], name
