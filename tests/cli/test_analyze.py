"""``rfgraph MODEL`` / ``rfgraph analyze MODEL`` (`rfgraph.cli.analyze`): run as a user would, plus in-process checks.

Each subprocess imports torch (about 2 s), so the subprocess tests are few and each checks several things.
"""

from __future__ import annotations

import json
import re
import sys
import textwrap

import pytest

from rfgraph import cli

from .helpers import assert_one_line_error, run

# -- subprocess: what a user sees -----------------------------------------------------------------


def test_stages_table_resnet50():
    """torchvision ResNet-50, layer4: RF 427, stride 32, start -213 (published)."""
    proc = run("torchvision:resnet50", "--stages")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    row = next(line.split() for line in proc.stdout.splitlines() if line.strip().startswith("layer4.2.relu_2"))
    assert row[-3:] == ["427", "32", "-213"]
    for header in ("node", "op", "rf", "stride", "start"):
        assert header in proc.stdout
    assert "layer1.0.conv1" not in proc.stdout  # module-level outputs only


def test_json_file_plot_and_overlay(tmp_path):
    out, depth, box = tmp_path / "r.json", tmp_path / "depth.png", tmp_path / "box.png"
    proc = run(
        "torchvision:resnet50", "--nodes", "layer1,layer4", "-o", str(out),
        "--plot", str(depth), "--overlay", "blank", "--unit", "3,5", "--overlay-output", str(box),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    data = json.loads(out.read_text())
    assert data["schema_version"] == 2
    layer4 = data["nodes"][1]
    assert [(a["rf"], a["stride"], a["start"]) for a in layer4["axes"]] == [(427, "32", "-213")] * 2
    assert depth.stat().st_size > 20_000 and box.stat().st_size > 10_000


def test_user_file_model_csv_and_validate(tmp_path):
    """Conv1d k3 -> ReLU -> Conv1d k3 s2 -> Conv1d k3: RF 3, 3, 5, then 5 + 2*2 = 9; stride 1, 1, 2, 2."""
    (tmp_path / "net.py").write_text(
        textwrap.dedent(
            """
            from torch import nn

            def build():
                return nn.Sequential(nn.Conv1d(1, 4, 3), nn.ReLU(), nn.Conv1d(4, 4, 3, stride=2), nn.Conv1d(4, 1, 3))
            """
        )
    )
    proc = run("net.py:build", "--input-shape", "1,1,32", "-o", "r.csv", "--validate", "-q", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "all probed nodes agree" in proc.stdout  # the numeric probe's verdict
    text = (tmp_path / "r.csv").read_text()
    rows = {line.split(",")[0]: line.split(",") for line in text.splitlines()[1:]}
    header = text.splitlines()[0].split(",")
    rf, stride = header.index("rf_l"), header.index("stride_l")
    assert [(rows[n][rf], rows[n][stride]) for n in ("0", "1", "2", "3")] == [
        ("3", "1"), ("3", "1"), ("5", "2"), ("9", "2"),
    ]  # fmt: skip


def test_error_unknown_model():
    assert_one_line_error(run("torchvision:resnet5"), 1, "unknown torchvision model 'resnet5'", "resnet50")


def test_error_untraceable_model(tmp_path):
    (tmp_path / "odd.py").write_text(
        textwrap.dedent(
            """
            import torch
            from torch import nn

            class Branchy(nn.Module):
                def __init__(self):
                    super().__init__()
                    self.conv = nn.Conv2d(3, 8, 3)

                def forward(self, x):
                    y = self.conv(x)
                    if y.sum() > 0:  # data-dependent control flow
                        return y
                    return -y

            def build():
                return Branchy()
            """
        )
    )
    assert_one_line_error(run("odd.py:build", cwd=tmp_path), 1, "could not trace Branchy")


# -- in process: argument handling ----------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, code, fragment",
    [
        (["resnet50"], 2, "Did you mean: torchvision:resnet50"),
        (["torchvision:resnet18", "--format", "xml"], 2, "invalid choice: 'xml'"),
        (["torchvision:resnet18", "--nodes", "a", "--stages"], 2, "not allowed with"),
        (["torchvision:resnet18", "--unit", "1,2"], 2, "are only used with --overlay"),
        (["torchvision:resnet18", "--overlay", "missing.png"], 2, "does not exist"),
        (["torchvision:resnet18", "--input-size", "0"], 2, "non-positive"),
        (["torchvision:resnet18", "-o", "rf.png"], 2, "use --plot rf.png"),
        (["torchvision:resnet18", "--input-shape", "1,3,x"], 2, "--input-shape must be comma-separated integers"),
        (["torchvision:resnet18", "--input-shape", "1,3,224"], 2, "takes 4-D inputs"),
        (["torchvision:resnet18", "--nodes", "layer5", "-q"], 1, "node 'layer5' is not present"),
        (["analyze", "resnet50"], 2, "Did you mean: torchvision:resnet50"),
        (["torchvision:resnet18", "--input-shape", "1,3,8,8,8,8"], 2, "has 6 dims"),
        (["torchvision:resnet18", "--input-size", "64,64,64"], 2, "gives 3 sizes but the model takes 2"),
        (["torchvision:resnet18", "--unit=-1,2", "--overlay", "blank"], 2, "below 0"),
    ],
)
def test_usage_errors_are_one_line(one_line_error, argv, code, fragment):
    one_line_error(cli.main(argv), code, fragment)


def test_input_size_per_axis(capsys):
    """``--input-size 64,32`` keeps the default batch and channels: shape 1,3,64,32."""
    assert cli.main(["torchvision:resnet18", "--input-size", "64,32", "--nodes", "conv1", "-f", "json", "-q"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["input_shape"] == [1, 3, 64, 32]
    assert data["nodes"][0]["shape"] == [1, 64, 32, 16]


_MARKED = '''
from torch import nn


class Marked(nn.Module):
    """A module whose name looks like rich markup."""

    def __init__(self):
        super().__init__()
        self.add_module("[bold]c[/bold]", nn.Conv2d(1, 1, 3))

    def forward(self, x):
        return getattr(self, "[bold]c[/bold]")(x)
'''


@pytest.mark.parametrize("tty", [False, True])
def test_names_are_not_rich_markup(tmp_path, capsys, monkeypatch, tty):
    """A node named ``[bold]c[/bold]`` is printed as it is, on a terminal (rich) and in a pipe (plain text)."""
    (tmp_path / "marked.py").write_text(_MARKED)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: tty)
    assert cli.main([f"{tmp_path / 'marked.py'}:Marked", "--input-shape", "1,1,8,8", "-q"]) == 0
    out = re.sub(r"\x1b\[[0-9;]*m", "", capsys.readouterr().out)  # colours, on a terminal
    row = next(line for line in out.splitlines() if "Conv2d" in line)
    assert "[bold]c[/bold]" in row and row.split()[-3:] == ["3", "1", "0"]


def test_table_written_to_a_file_is_plain_text(tmp_path, capsys):
    (tmp_path / "marked.py").write_text(_MARKED)
    out = tmp_path / "rf.txt"
    assert cli.main([f"{tmp_path / 'marked.py'}:Marked", "--input-shape", "1,1,8,8", "-o", str(out)]) == 0
    assert "[bold]c[/bold]" in out.read_text() and "\x1b[" not in out.read_text()
    assert capsys.readouterr().err == f"rfgraph: wrote {out} (table)\n"


def test_html_writes_the_explorer(tmp_path):
    out = tmp_path / "r.html"
    assert cli.main(["torchvision:resnet18", "-q", "--stages", "--html", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and "torchvision:resnet18" in page and 'id="rf-box"' in page


def test_html_options_need_html(one_line_error):
    one_line_error(cli.main(["torchvision:resnet18", "--erf", "2"]), 2, "--image and --erf are only used with --html")
