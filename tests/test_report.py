"""Reports read back: every format parses to the values of the `Analysis` it was written from.

The models are small and built by hand; the only hand-derived numbers are
the ones stated in each docstring (the rest compares a report with the
records it was written from).
"""

from __future__ import annotations

import csv
import io
import json
import re
from fractions import Fraction

import pytest
import torch
import yaml
from torch import nn

import rfgraph
from rfgraph import report
from rfgraph.errors import NodeNotFoundError, RFGraphError
from rfgraph.results import Analysis, NodeRF


class NoRule(nn.Module):
    """A leaf module no rule knows: its node and everything after it are unknown (``fallback="unknown"``)."""

    def forward(self, x):
        return x * 2


class Mixed(nn.Module):
    """conv 3 (pad 1) -> nearest x2 upsample -> conv 3 (pad 1), a global branch, and an unknown tail.

    After the x2 upsample the effective stride is 1/2 (each input pixel is
    repeated twice), so ``up`` and ``conv2`` have stride ``1/2`` on both axes:
    the exact fraction the JSON / YAML reports must carry as ``"1/2"``.
    """

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 2, 3, padding=1)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.conv2 = nn.Conv2d(2, 2, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.odd = NoRule()

    def forward(self, x):
        y = self.conv2(self.up(self.conv1(x)))
        g = self.pool(y)
        return self.odd(y + g)


@pytest.fixture(scope="module")
def mixed() -> Analysis:
    return rfgraph.analyze(Mixed(), (1, 1, 12, 10), leaf_modules=[NoRule], fallback="unknown")


@pytest.fixture(scope="module")
def resnet() -> Analysis:
    import torchvision

    with torch.device("meta"):
        model = torchvision.models.resnet50()
    return rfgraph.analyze(model, (1, 3, 224, 224))


def _same(a: NodeRF, b: NodeRF) -> None:
    assert a == b, a.name
    assert a.lo == b.lo and a.hi == b.hi, a.name  # compare=False in the dataclass


# -- the fixture is what its docstring says --------------------------------------------------


def test_fixture_has_fraction_global_and_unknown(mixed):
    assert mixed["conv2"].stride == (Fraction(1, 2), Fraction(1, 2))
    assert all(mixed["pool"].is_global)
    assert mixed["odd"].is_unknown
    assert mixed.counts()["unknown"] >= 1


# -- JSON / YAML ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_round_trip_keeps_every_record(mixed, resnet, fmt):
    for a in (mixed, resnet):
        text = a.to_json() if fmt == "json" else a.to_yaml()
        b = Analysis.from_json(text) if fmt == "json" else Analysis.from_yaml(text)
        assert b.nodes == a.nodes
        assert b.input_shape == a.input_shape and b.model_name == a.model_name
        for r in a:
            _same(r, b[r.name])
        assert b.counts() == a.counts()


def test_round_trip_box_still_works(resnet, mixed):
    b = Analysis.from_yaml(resnet.to_yaml())
    for unit in [(0, 0), (3, 5), (6, 6)]:
        assert b["layer4"].box(unit) == resnet["layer4"].box(unit)
    m = Analysis.from_json(mixed.to_json())
    for u in range(4):  # period 2 after the upsample: check both phases
        assert m["conv2"].box((u, u + 1)) == mixed["conv2"].box((u, u + 1))


def test_json_schema_and_exact_fractions(mixed):
    data = json.loads(mixed.to_json())
    assert data["schema_version"] == report.SCHEMA_VERSION == 2
    assert data["input_shape"] == [1, 1, 12, 10]
    assert data["axes"] == ["h", "w"]
    conv2 = next(n for n in data["nodes"] if n["name"] == "conv2")
    assert [a["stride"] for a in conv2["axes"]] == ["1/2", "1/2"]
    odd = next(n for n in data["nodes"] if n["name"] == "odd")
    assert odd["source"] == "unknown" and "NoRule" in odd["reason"]
    assert all(a["rf"] is None for a in odd["axes"])


def test_yaml_is_safe_loadable_with_fraction_strings(mixed):
    data = yaml.safe_load(mixed.to_yaml())
    conv2 = next(n for n in data["nodes"] if n["name"] == "conv2")
    assert conv2["axes"][0]["stride"] == "1/2"
    assert isinstance(conv2["axes"][0]["start"], str)


def test_partial_report_and_bad_versions(resnet):
    data = resnet.to_dict(["layer1", "layer4"])
    assert [n["name"] for n in data["nodes"]] == [resnet.resolve("layer1"), resnet.resolve("layer4")]
    data["schema_version"] = 99
    with pytest.raises(RFGraphError, match="schema_version 99"):
        Analysis.from_dict(data)
    with pytest.raises(RFGraphError, match="schema_version"):
        Analysis.from_json('{"nodes": []}')
    with pytest.raises(RFGraphError, match="not valid JSON"):
        Analysis.from_json("{")


# -- CSV, Markdown, terminal table --------------------------------------------------------------


def _opt(cast, text):
    return None if text == "" else cast(text)


def test_csv_values(mixed, resnet):
    for a in (mixed, resnet):
        rows = list(csv.DictReader(io.StringIO(report.to_csv(a))))
        assert [row["node"] for row in rows] == a.nodes
        for row in rows:
            r = a[row["node"]]
            assert row["op"] == r.op and row["source"] == r.source
            for i, ax in enumerate(report.axis_names(a.ndim)):
                assert _opt(int, row[f"rf_{ax}"]) == r.rf[i]
                assert _opt(int, row[f"rf_min_{ax}"]) == r.rf_min[i]
                assert _opt(Fraction, row[f"stride_{ax}"]) == r.stride[i]
                assert _opt(Fraction, row[f"start_{ax}"]) == r.start[i]
                assert _opt(Fraction, row[f"center_{ax}"]) == r.center[i]
                assert (row[f"global_{ax}"] == "true") == r.is_global[i]
            assert (row["aligned"] == "true") == r.aligned
            assert row["inputs"].split() == list(r.inputs)


def _parse_cell(text: str, cast):
    """Inverse of the one-value-or-``a x b`` cells: a list per axis (None for global / ? / -)."""
    parts = [p.strip() for p in text.split(" x ")]
    return [None if p in ("global", "?", "-") else cast(p) for p in parts]


def _expect(record: NodeRF, values):
    values = list(values)
    return values[:1] if len(set(values)) == 1 else values


def _check_rows(a: Analysis, rows: list[list[str]]) -> None:
    assert [row[0] for row in rows] == a.nodes
    for name, op, _shape, rf, stride, start, *_ in rows:
        r = a[name]
        assert op == r.op
        assert _parse_cell(rf, int) == _expect(r, r.rf)
        assert _parse_cell(stride, Fraction) == _expect(r, r.stride)
        assert _parse_cell(start, Fraction) == _expect(r, r.start)


def test_markdown_values(mixed, resnet):
    for a in (mixed, resnet):
        lines = report.to_markdown(a).splitlines()
        header = lines.index("| node | op | shape | rf | stride | start | flags |")
        rows = [[c.strip() for c in line.strip("|").split(" | ")] for line in lines[header + 2 :] if line]
        _check_rows(a, rows)
    flags = {row[0]: row[-1] for row in rows}
    assert flags["avgpool"] == ""  # global shows in the rf column, not as a flag


def test_terminal_table_values(mixed, resnet):
    for a in (mixed, resnet):
        text = report.render_table(a)
        assert "\x1b[" not in text  # no colour codes when not asked for
        rows = []
        for line in text.splitlines():
            cells = re.split(r"\s{2,}", line.strip())
            if cells and cells[0] in a.nodes and len(cells) >= 6:
                rows.append(cells)
        _check_rows(a, rows)
    assert "unknown: no rule for" in report.render_table(mixed)


def test_module_outputs_resnet50_published(resnet):
    """torchvision ResNet-50: layer4 has RF 427, stride 32, start -213 (published)."""
    outs = report.module_outputs(resnet)
    names = [r.name for r in outs]
    for module in ("conv1", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool", "fc"):
        assert resnet.resolve(module) in names
    layer4 = outs[names.index(resnet.resolve("layer4"))]
    assert (layer4.rf, layer4.stride, layer4.start) == ((427, 427), (32, 32), (-213, -213))


def test_unknown_node_name_suggests(resnet):
    with pytest.raises(NodeNotFoundError, match="Did you mean"):
        resnet.to_json(["layer5"])


# -- networkx -------------------------------------------------------------------------------------


def test_networkx_matches_fx_graph(resnet, mixed):
    for a in (resnet, mixed):
        g = report.to_networkx(a)
        by_fx = {r.fx_name: r.name for r in a}
        fx_nodes = [n for n in a.graph_module.graph.nodes if n.name in by_fx]
        assert set(g.nodes) == {by_fx[n.name] for n in fx_nodes} == set(a.nodes)
        expected = {
            (by_fx[i.name], by_fx[n.name]) for n in fx_nodes for i in n.all_input_nodes if i.name in by_fx
        }
        assert set(g.edges) == expected
        for r in a:
            attrs = g.nodes[r.name]
            assert (attrs["rf"], attrs["stride"], attrs["start"], attrs["source"]) == (r.rf, r.stride, r.start, r.source)
    assert g.graph["input_shape"] == (1, 1, 12, 10)


# -- pictures ---------------------------------------------------------------------------------------


def test_resnet50_pictures(resnet, tmp_path):
    pytest.importorskip("matplotlib")
    from rfgraph.report.plots import plot_depth, plot_overlay

    depth = tmp_path / "depth.png"
    plot_depth(resnet, str(depth), title="resnet50")
    assert depth.stat().st_size > 20_000
    box = tmp_path / "box.svg"
    plot_overlay(resnet, "layer3", (5, 7), path=str(box))
    assert box.stat().st_size > 10_000
    with pytest.raises(RFGraphError, match="global"):
        plot_overlay(resnet, "fc")
    with pytest.raises(RFGraphError, match="outside node"):
        plot_overlay(resnet, "layer4", (7, 0))


def test_overlay_on_an_image(resnet, tmp_path):
    pytest.importorskip("PIL")
    import numpy as np
    from PIL import Image

    from rfgraph.report.plots import image_size, plot_overlay

    path = tmp_path / "img.png"
    Image.fromarray(np.full((50, 80, 3), 200, dtype=np.uint8)).save(path)
    assert image_size(str(path)) == (50, 80)
    fig = plot_overlay(resnet, "layer2", None, image=str(path), path=str(tmp_path / "out.png"))
    assert "resized to 224x224" in fig.axes[0].get_title()
    with pytest.raises(RFGraphError, match="cannot read image"):
        plot_overlay(resnet, "layer2", image=str(tmp_path / "missing.png"))


def test_every_module_name_resolves_to_a_node_inside_it():
    """torchvision-style node names drop a module's own numeric suffix (ViT's ``ln_1`` runs as node ``...ln``,
    ``ln_2`` as node ``...ln_1``); a module name still resolves to the last node traced inside that module."""
    import torchvision

    with torch.device("meta"):
        model = torchvision.models.vit_b_16(weights=None)
    a = rfgraph.analyze(model, (1, 3, 224, 224), fallback="unknown")
    for name in a.module_names():
        record = a[name]
        assert record.module == name or record.module.startswith(name + ".") or record.name.startswith(name), name
    assert a["encoder.layers.encoder_layer_0.ln_2"].module == "encoder.layers.encoder_layer_0.ln_2"
    assert a["encoder.layers.encoder_layer_0"].name.startswith("encoder.layers.encoder_layer_0.")


def test_render_table_prints_markup_in_names_as_text():
    """Names come from the model or a report file: rich markup in them is printed, never interpreted."""
    a = rfgraph.analyze(nn.Sequential(nn.Conv2d(1, 1, 3)), (1, 1, 8, 8))
    d = a.to_dict()
    d["model"] = "[blink]M[/blink]"
    d["nodes"][1]["name"] = "[bold red]evil[/bold red] [link=http://x]y[/link]"
    text = report.render_table(Analysis.from_dict(d), color=True)
    assert "[bold red]evil[/bold red] [link=http://x]y[/link]" in text
    assert "[blink]M[/blink]" in text
    assert "\x1b]8;" not in text  # no terminal hyperlink was made
