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

from .families import (
    BASE_FAMILIES,
    FAMILIES,
    RETRY_MARK,
    ROW_KEYS,
    THIRD_PARTY_FAMILIES,
    ZooModel,
    family_models,
    resolve_models,
)
from .log import DONE_MARK, LOG_HEADER, ZooLogError, log_path, read_rows, sweep_options
from .rows import ZooResult, to_csv, to_markdown, write_rows
from .sweep import DEFAULT_TIMEOUT, NoWorkerError, run
from .task import run_task, trunk_stages

__all__ = [
    "DEFAULT_TIMEOUT",
    "DONE_MARK",
    "LOG_HEADER",
    "RETRY_MARK",
    "log_path",
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
