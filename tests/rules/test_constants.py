"""Shape-derived constants (`rfgraph.rules.constants`): ``type_as``, ``arange``, ``meshgrid``,
``zeros_like`` / ``ones_like`` / ``full_like`` / ``new_*`` carry no receptive field and never stop the
analysis, on the fx and on the torch.export path (issue 14: the YOLOv8 / YOLO11 anchor grid
``torch.arange(w).type_as(feature) + 0.5`` and ``torch.meshgrid``).
"""

from __future__ import annotations

import importlib.util

import pytest
import torch
from rfcheck import Lambda, check
from torch import nn

import rfgraph
from rfgraph.tracing import export_trace


def make_anchors(feats, strides, grid_cell_offset=0.5):
    """ultralytics' ``make_anchors``, with both spellings of the grid (``type_as`` and ``dtype=``)."""
    anchor_points, stride_tensor = [], []
    dtype, device = feats[0].dtype, feats[0].device
    for i, stride in enumerate(strides):
        _, _, h, w = feats[i].shape
        sx = torch.arange(end=w, device=device).type_as(feats[i]) + grid_cell_offset
        sy = torch.arange(end=h, device=device, dtype=dtype) + grid_cell_offset
        sy, sx = torch.meshgrid(sy, sx, indexing="ij")
        anchor_points.append(torch.stack((sx, sy), -1).view(-1, 2))
        stride_tensor.append(torch.full((h * w, 1), stride, dtype=dtype, device=device))
    return torch.cat(anchor_points), torch.cat(stride_tensor)


class DetectHead(nn.Module):
    """A two-level replica of YOLOv8's ``Detect``: per level ``cat(box conv, cls conv)``, tokens of the
    levels concatenated, anchors from ``make_anchors``, DFL-free ``dist2bbox`` decoding."""

    def __init__(self):
        super().__init__()
        self.b1 = nn.Conv2d(3, 8, 3, 2, 1)
        self.b2 = nn.Conv2d(8, 8, 3, 2, 1)
        self.cv2 = nn.ModuleList([nn.Conv2d(8, 4, 3, 1, 1) for _ in range(2)])
        self.cv3 = nn.ModuleList([nn.Conv2d(8, 2, 1) for _ in range(2)])
        self.stride = [2, 4]

    def forward(self, x):
        f1 = self.b1(x)
        xs = [f1, self.b2(f1)]
        xs = [torch.cat((self.cv2[i](xs[i]), self.cv3[i](xs[i])), 1) for i in range(2)]
        shape = xs[0].shape
        x_cat = torch.cat([xi.view(shape[0], 6, -1) for xi in xs], 2)
        anchors, strides = (t.transpose(0, 1) for t in make_anchors(xs, self.stride, 0.5))
        box, cls = x_cat.split((4, 2), 1)
        lt, rb = box.chunk(2, 1)
        a = anchors.unsqueeze(0)
        x1y1, x2y2 = a - lt, a + rb
        dbox = torch.cat(((x1y1 + x2y2) / 2, x2y2 - x1y1), 1) * strides
        return torch.cat((dbox, cls.sigmoid()), 1)


def _constant_nodes(a):
    return [r for r in a if r.source == "nonspatial"]


@pytest.mark.parametrize("path", ["fx", "export"])
def test_yolo_anchor_grid_is_a_constant(path):
    """No node is unknown for lack of a rule, no RuleError; the per-level heads keep their exact fields
    (b1: rf 3 stride 2; cv2[1] after b2: rf 3 + 2*2 + 4*2 = 15, stride 4); every unknown node is one of
    the merged token list of two strides (an unequal-slope merge, the finite-domain maps' business)."""
    m = DetectHead().eval()
    traced = export_trace(m, (torch.zeros(1, 3, 16, 16),)) if path == "export" else None
    a = rfgraph.analyze(m, (1, 3, 16, 16), traced=traced, fallback="unknown")
    assert a.meta["unknown_ops"] == {}
    for r in a:
        if r.source == "unknown":
            assert "slopes 2 and 4" in r.reason or "different strides" in r.reason, (r.name, r.reason)
    convs = {r.module: r for r in a if r.module in ("b1", "cv2.1")}
    assert (convs["b1"].rf, convs["b1"].stride) == ((3, 3), (2, 2))
    assert (convs["cv2.1"].rf, convs["cv2.1"].stride) == ((15, 15), (4, 4))


def test_type_as_of_a_constant_is_that_constant():
    """``torch.arange(w).type_as(x)`` (a method on a constant with a SymTensor argument, fx path):
    the grid converted to x's dtype; ``x.type_as(c)`` keeps x's field with c's dtype."""
    a = check(Lambda(lambda x: x + torch.arange(x.shape[-1]).type_as(x)), (1, 1, 6))
    assert a.meta["unknown_ops"] == {}
    assert a["add"].rf == (1,) and a["add"].source == "symbolic"
    b = check(Lambda(lambda x: x.type_as(torch.zeros(1, dtype=torch.float64)) * 2), (1, 1, 6))
    assert b["type_as"].rf == (1,)


@pytest.mark.parametrize("make", [
    lambda x: torch.zeros_like(x),
    lambda x: torch.ones_like(x, dtype=torch.float64),
    lambda x: torch.full_like(x, 3.0),
    lambda x: torch.empty_like(x).zero_(),
    lambda x: x.new_zeros(x.shape),
    lambda x: x.new_ones((1, 1, 5)),
    lambda x: x.new_full((2, 3), 1.5),
    lambda x: x.new_empty((1, 2)),
    lambda x: torch.zeros_like(x).fill_(2.0),
])
def test_shape_derived_constants_are_nonspatial(make):
    a = check(Lambda(make), (1, 2, 7), fallback="unknown")
    rec = [r for r in a if r.op not in ("placeholder", "output")]
    assert rec and all(r.source == "nonspatial" for r in rec), [(r.name, r.source, r.reason) for r in rec]
    assert a.meta["unknown_ops"] == {}


def test_ops_without_rule_on_constants_give_constants():
    """``meshgrid`` (no rule) of grids built from ``zeros_like`` reads no input position: nonspatial,
    and an add with a feature map keeps the map's field."""

    def f(x):
        gy, gx = torch.meshgrid(torch.zeros_like(x[0, 0, :, 0]), torch.zeros_like(x[0, 0, 0, :]), indexing="ij")
        return x + gx + gy

    a = check(Lambda(f), (1, 1, 5, 6), fallback="unknown")
    assert a["meshgrid"].source == "nonspatial"
    assert a["add_1"].rf == (1, 1) and a["add_1"].source == "symbolic"


@pytest.mark.skipif(importlib.util.find_spec("ultralytics") is None, reason="ultralytics not installed")
@pytest.mark.parametrize("cfg", ["yolov8n.yaml", "yolo11n.yaml"])
def test_ultralytics_from_yaml(cfg):  # pragma: no cover - optional dependency
    from ultralytics import YOLO

    model = YOLO(cfg).model.eval()
    a = rfgraph.analyze(model, (1, 3, 64, 64), fallback="unknown")
    assert not any("type_as" in k or "meshgrid" in k or "arange" in k for k in a.meta["unknown_ops"])
