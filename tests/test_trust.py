"""Trust: tracing fallbacks, rearrangements along spatial dims, bad input (issue 7).

Every expected number is derived by hand in the test's docstring (window maps
of DESIGN.md §2), or is the agreement of two independent front ends
(``torch.fx`` vs ``torch.export``) on the same model.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import rfgraph
from rfgraph.errors import (
    InputShapeError,
    InputTooSmallError,
    NodeNotFoundError,
    NotAModuleError,
    RFGraphError,
    TraceError,
)
from rfgraph.tracing import export_trace, trace

# ---------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------


class ShapeBlock(nn.Module):
    """Python control flow on a tensor's *shape*: torch.fx cannot trace it, torch.export can."""

    def __init__(self, c: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        if x.shape[-1] > 4:
            return F.relu(self.conv(x)) + x
        return x


class PlainBlock(nn.Module):
    """`ShapeBlock` without the branch (for inputs wider than 4 they compute the same)."""

    def __init__(self, c: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return F.relu(self.conv(x)) + x


class Net(nn.Module):
    def __init__(self, block=ShapeBlock):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.layer = nn.Sequential(block(), block())
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        y = self.pool(F.relu(self.conv(x)))
        y = self.layer(y)
        y = y[..., 1:-1]
        return self.fc(y.mean((2, 3)))


class ValueGate(nn.Module):
    """Control flow on tensor *values*: neither torch.fx nor torch.export can trace it."""

    def forward(self, x):
        if x.sum() > 0:
            return x * 2
        return x


class GatedNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 3)
        self.gate = ValueGate()
        self.conv2 = nn.Conv2d(1, 1, 3)

    def forward(self, x):
        return self.conv2(self.gate(self.conv(x)))


# ---------------------------------------------------------------------------
# tracing: fx, export fallback, both failing
# ---------------------------------------------------------------------------


def test_fx_is_tried_first():
    a = rfgraph.analyze(Net(PlainBlock), (1, 3, 32, 32))
    assert a.meta["trace"] == "fx"


def test_export_fallback_names_and_values():
    """conv3 p1 -> pool2 -> two residual conv3 p1 blocks -> crop 1 on W.

    Along H: conv rf 3 start -1; pool k2 s2: rf 4 stride 2 start -1; each conv3 p1
    at stride 2 adds 4: rf 8 start -3, then rf 12 start -5.  The crop [1:-1] on W
    shifts W by one unit (stride 2): start -5 + 2 = -3, rf 12.
    """
    a = rfgraph.analyze(Net(), (1, 3, 32, 32))
    assert a.meta["trace"] == "export"
    for name in ("conv", "pool", "layer.0.conv", "layer.0.add", "layer.1.conv", "layer.1.add", "fc"):
        assert name in a.nodes, name
    assert a["layer.0.conv"].module == "layer.0.conv"
    assert a["layer.1.add"].rf == (12, 12)
    assert a["layer.1"].stride == (2, 2)
    assert a["layer.1"].start == (-5, -5)
    crop = a.records[a.nodes.index("layer.1.add") + 1]
    assert crop.rf == (12, 12) and crop.start == (-5, -3)
    assert a["fc"].is_global == (True, True)


def test_export_and_fx_agree_on_the_same_model():
    """Two front ends, one model: every node both name the same has the same fields."""
    net = Net(PlainBlock)
    by_fx = rfgraph.analyze(net, (1, 3, 32, 32))
    traced = export_trace(net, (torch.zeros(1, 3, 32, 32),))
    assert traced.method == "export"
    by_export = rfgraph.analyze(net, (1, 3, 32, 32), traced=traced)
    common = [n for n in by_fx.nodes if n in by_export.nodes and n != "output"]
    assert len(common) >= 8
    for n in common:
        f, e = by_fx[n], by_export[n]
        assert (f.rf, f.stride, f.start, f.lo, f.hi) == (e.rf, e.stride, e.start, e.lo, e.hi), n


@pytest.mark.slow
def test_export_matches_fx_on_resnet18():
    """The aten rule table agrees with the torch-level rules on every common node of ResNet-18."""
    import torchvision

    with torch.device("meta"):
        net = torchvision.models.resnet18(weights=None)
    by_fx = rfgraph.analyze(net, (1, 3, 224, 224))
    by_export = rfgraph.analyze(net, (1, 3, 224, 224),
                                traced=export_trace(net, (torch.zeros(1, 3, 224, 224, device="meta"),)))
    assert by_export["layer4"].rf == (435, 435)  # published (DESIGN.md §6)
    common = [n for n in by_fx.nodes if n in by_export.nodes and n != "output"]
    assert len(common) > 50
    for n in common:
        assert (by_fx[n].rf, by_fx[n].stride, by_fx[n].start) == (by_export[n].rf, by_export[n].stride,
                                                                   by_export[n].start), n


def test_both_tracers_fail_one_clear_error():
    with pytest.raises(TraceError) as info:
        rfgraph.analyze(GatedNet(), (1, 1, 16, 16))
    msg = str(info.value)
    assert "could not trace GatedNet" in msg
    assert "torch.fx failed inside module 'gate'" in msg
    assert "torch.export (non-strict) also failed" in msg
    assert "leaf_modules=" in msg and "autowrap_functions=" in msg
    assert "\n" not in msg


def test_without_an_input_shape_export_is_not_tried():
    with pytest.raises(TraceError, match="torch.export was not tried"):
        trace(GatedNet())


def test_leaf_module_hint_works():
    """Following the hint: `gate` becomes an opaque leaf with no rule, so, without the probe fallback
    (``fallback="unknown"``), what follows it is unknown."""
    a = rfgraph.analyze(GatedNet(), (1, 1, 16, 16), leaf_modules=[ValueGate], fallback="unknown")
    assert a.meta["trace"] == "fx"
    assert a["conv"].rf == (3, 3)
    assert a["gate"].source == "unknown" and "ValueGate" in a["gate"].reason
    assert a["conv2"].source == "unknown"


# ---------------------------------------------------------------------------
# slicing, indexing, narrow, roll, flip, concat along spatial dims
# ---------------------------------------------------------------------------


class ConvThen(nn.Module):
    """conv k3 (no padding), then ``fn``: the conv's field is lo(u) = u, hi(u) = u + 2."""

    def __init__(self, fn):
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3)
        self.fn = fn

    def forward(self, x):
        return self.fn(self.conv(x))


def _last(fn, shape=(1, 2, 16, 16)):
    a = rfgraph.analyze(ConvThen(fn), shape)
    return a.records[-2]  # the node before "output"


def test_crop_both_ends():
    """x[..., 2:-2]: W index u reads conv output u + 2: lo = u + 2, rf 3, start 2; H untouched."""
    r = _last(lambda y: y[..., 2:-2])
    assert r.shape == (1, 2, 14, 10)
    assert r.rf == (3, 3) and r.start == (0, 2) and r.stride == (1, 1)
    assert r.source == "symbolic"


def test_strided_slice():
    """y[:, :, ::2]: H index u reads 2u: lo = 2u, hi = 2u + 2; stride 2, start 0."""
    r = _last(lambda y: y[:, :, ::2])
    assert r.stride == (2, 1) and r.start == (0, 0) and r.rf == (3, 3)


def test_narrow():
    """y.narrow(3, 1, 4): W index u reads u + 1: start 1, rf 3."""
    r = _last(lambda y: y.narrow(3, 1, 4))
    assert r.shape[-1] == 4 and r.start == (0, 1) and r.rf == (3, 3)


def test_integer_index_pins_the_axis():
    """y[:, :, 3] picks row 3, which reads input rows 3..5: pinned, not a tensor dim any more."""
    r = _last(lambda y: y[:, :, 3])
    assert r.shape == (1, 2, 14)
    assert r.dims[0] is None and r.rf[0] == 3 and r.start[0] == 3
    assert r.dims[1] == 2 and r.rf[1] == 3 and r.stride[1] == 1


def test_select_like_integer_index():
    assert _last(lambda y: y.select(2, 3)).start == _last(lambda y: y[:, :, 3]).start


def test_roll_along_a_spatial_dim_is_a_relabelling():
    """roll by 1 along W (14 positions, conv k=3 valid: unit p reads [p, p + 2]): unit 0 now holds p = 13,
    unit 1 holds p = 0; a window op reading the rolled dim (not monotone) is unknown, never guessed."""
    r = _last(lambda y: torch.roll(y, 1, 3))
    assert r.source == "symbolic"
    assert [(r.lo[1](u), r.hi[1](u)) for u in range(14)] == [(13, 15)] + [(p, p + 2) for p in range(13)]
    w = torch.ones(2, 2, 3, 3)
    r = _last(lambda y: F.conv2d(torch.roll(y, 1, 3), w))
    assert r.source == "unknown" and "shuffled spatial positions" in r.reason


def test_roll_exact_cases():
    """A roll of the channels, or by a whole period (14 here), moves no spatial position."""
    assert _last(lambda y: torch.roll(y, 1, 1)).rf == (3, 3)
    assert _last(lambda y: y.roll(14, 3)).start == (0, 0)


def test_flip():
    r = _last(lambda y: torch.flip(y, [2]))
    assert r.source == "unknown" and "flip reverses the positions of spatial dim 2" in r.reason
    assert _last(lambda y: y.flip(1)).rf == (3, 3)


def test_concat_of_split_pieces_is_exact():
    """cat(split(y, 7, dim=3), dim=3) is y itself: exact, same field as the conv."""
    r = _last(lambda y: torch.cat(torch.split(y, 7, dim=3), dim=3))
    assert r.source == "symbolic" and r.rf == (3, 3) and r.start == (0, 0) and r.stride == (1, 1)
    assert r.lo[1](9) == 9 and r.hi[1](9) == 11


def test_concat_along_a_spatial_dim_is_piecewise_unknown():
    """cat([y, y], W): index 14 reads y[0] again; no periodic-affine map, so unknown, never wrong."""
    r = _last(lambda y: torch.cat([y, y], dim=3))
    assert r.shape == (1, 2, 14, 28)
    assert r.source == "unknown" and "do not continue each other" in r.reason


def test_concat_along_channels_still_merges():
    r = _last(lambda y: torch.cat([y, y[:, :, :, :]], dim=1))
    assert r.source == "symbolic" and r.rf == (3, 3)


def test_export_path_rearrangements():
    """The aten versions (slice, narrow, roll) give the same answers as the fx ones."""

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 3)

        def forward(self, x):
            y = self.conv(x)
            return y[..., 2:-2].narrow(2, 1, 4), torch.roll(y, 1, 3)

    m = M()
    shape = (1, 2, 16, 16)
    by_export = rfgraph.analyze(m, shape, traced=export_trace(m, (torch.zeros(shape),)))
    crop = by_export["narrow"]
    assert crop.start == (1, 2) and crop.rf == (3, 3)
    rolled = by_export["roll"]  # a relabelling: unit 0 holds column 13, which reads 13..15
    assert rolled.source == "symbolic" and (rolled.lo[1](0), rolled.hi[1](0)) == (13, 15)


# ---------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------


def test_not_a_module():
    with pytest.raises(NotAModuleError, match="needs a torch.nn.Module, got str"):
        rfgraph.analyze("resnet50", (1, 3, 224, 224))
    with pytest.raises(NotAModuleError, match="instantiate it first"):
        rfgraph.analyze(nn.Conv2d, (1, 3, 224, 224))
    with pytest.raises(TypeError):  # NotAModuleError is also a TypeError
        rfgraph.analyze(lambda x: x, (1, 3, 8, 8))


def test_wrong_rank():
    with pytest.raises(InputShapeError, match=r"has rank 2; expected \(N, C, L\)"):
        rfgraph.analyze(nn.Conv2d(3, 3, 3), (3, 224))
    with pytest.raises(InputShapeError, match="has rank 6"):
        rfgraph.analyze(nn.Conv2d(3, 3, 3), (1, 3, 2, 2, 2, 2))


def test_missing_batch_dim():
    """(3, 224, 224) given to a 2-D model: torch would take the 3 channels for a batch."""
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
    with pytest.raises(InputShapeError) as info:
        rfgraph.analyze(net, (3, 224, 224))
    msg = str(info.value)
    assert "module torch.nn.modules.conv.Conv2d at node '0'" in msg
    assert "works on (N, C, H, W) but gets shape (3, 224, 224)" in msg
    assert "is the batch dim missing?" in msg


def test_too_many_dims_for_the_model():
    with pytest.raises(InputShapeError, match=r"works on \(N, C, H, W\) but gets shape \(1, 3, 8, 8, 8\)"):
        rfgraph.analyze(nn.Conv2d(3, 3, 3), (1, 3, 8, 8, 8))


def test_zero_size_dim():
    with pytest.raises(InputShapeError, match="has size 0 at dim 2: every size must be at least 1"):
        rfgraph.analyze(nn.Conv2d(3, 3, 3), (1, 3, 0, 32))


def test_not_a_shape():
    with pytest.raises(InputShapeError, match="must be a sequence of ints"):
        rfgraph.analyze(nn.Conv2d(3, 3, 3), "224")


def test_input_too_small_names_the_layer_and_the_minimal_size():
    """conv3 -> pool2 -> conv3 along a length n: n - 2, then floor((n - 2) / 2), then that minus 2.

    The last is >= 1 iff floor((n - 2) / 2) >= 3 iff n >= 8.  With n = 7 the
    last conv (node "2") gets length 2 and would produce length 0.
    """
    net = nn.Sequential(nn.Conv1d(1, 1, 3), nn.MaxPool1d(2), nn.Conv1d(1, 1, 3))
    with pytest.raises(InputTooSmallError) as info:
        rfgraph.analyze(net, (1, 1, 7))
    err = info.value
    msg = str(err)
    assert "at node '2'" in msg and "Conv1d" in msg and "gets length 2" in msg
    assert "The smallest input that works is (1, 1, 8)" in msg
    assert err.node == "2" and err.minimal_size == 8 and err.minimal_shape == (1, 1, 8)
    rfgraph.analyze(net, (1, 1, 8))  # and it does work


def test_input_too_small_per_dim():
    """Kernel (5, 2): H needs >= 5, W needs >= 2, whatever the input given."""
    for given in ((1, 1, 4, 4), (1, 1, 1, 1), (1, 1, 3, 9)):
        with pytest.raises(InputTooSmallError) as info:
            rfgraph.analyze(nn.Conv2d(1, 1, (5, 2)), given)
        assert info.value.minimal_shape == (1, 1, 5, 2)
        assert info.value.minimal_size == 2


def test_unknown_node_name_suggests_close_matches():
    net = nn.Sequential()
    net.add_module("layer1", nn.Conv2d(1, 1, 3))
    net.add_module("layer2", nn.Conv2d(1, 1, 3))
    a = rfgraph.analyze(net, (1, 1, 16, 16))
    with pytest.raises(NodeNotFoundError) as info:
        a["layer3"]
    msg = str(info.value)
    assert "node 'layer3' is not present in the analysed graph" in msg
    assert "Did you mean: layer1, layer2?" in msg or "Did you mean: layer2, layer1?" in msg
    assert isinstance(info.value, KeyError)


class Heads(nn.Module):
    """Two heads on a shared conv: c1 (k3) then c2 (k3) and c3 (k5)."""

    def __init__(self, kind):
        super().__init__()
        self.kind = kind
        self.c1 = nn.Conv2d(1, 1, 3)
        self.c2 = nn.Conv2d(1, 1, 3)
        self.c3 = nn.Conv2d(1, 1, 5)

    def forward(self, x):
        y = self.c1(x)
        a, b = self.c2(y), self.c3(y)
        if self.kind == "dict":
            return {"small": a, "large": b}
        if self.kind == "list":
            return [a, b]
        return a, b


@pytest.mark.parametrize("kind", ["dict", "list", "tuple"])
def test_several_outputs_all_analysed(kind):
    """c2 after c1: rf 3 + 2 = 5; c3 after c1: rf 3 + 4 = 7; the output node is their union (7)."""
    a = rfgraph.analyze(Heads(kind), (1, 1, 16, 16))
    assert a["c2"].rf == (5, 5) and a["c3"].rf == (7, 7)
    assert a["output"].rf == (7, 7)


class TwoInputs(nn.Module):
    """x: conv k3.  y (half size): conv k3 then nearest x2, added to x's branch."""

    def __init__(self):
        super().__init__()
        self.cx = nn.Conv2d(1, 1, 3, padding=1)
        self.cy = nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x, y):
        return self.cx(x) + F.interpolate(self.cy(y), scale_factor=2, mode="nearest")


def test_multiple_inputs_per_input_rf():
    """W.r.t. x: rf 3, stride 1, start -1.  W.r.t. y: conv lo(v) = v - 1, hi = v + 1, then
    u -> floor(u / 2): lo(u) = floor(u/2) - 1, hi = floor(u/2) + 1: rf 3, stride 1/2, start -1."""
    res = rfgraph.analyze(TwoInputs(), {"y": (1, 1, 8, 8), "x": (1, 1, 16, 16)})
    assert list(res) == ["x", "y"]
    assert res["x"]["add"].rf == (3, 3) and res["x"]["add"].stride == (1, 1)
    ry = res["y"]["add"]
    assert ry.rf == (3, 3) and ry.stride == (Fraction(1, 2),) * 2 and ry.start == (-1, -1)
    assert res["y"]["cx"].source == "nonspatial"  # x's branch does not see y at all
    assert res["y"].meta["input"] == "y"


def test_multiple_inputs_bad_names():
    with pytest.raises(InputShapeError, match=r"has no parameter 'z'; its parameters are \['x', 'y'\]"):
        rfgraph.analyze(TwoInputs(), {"x": (1, 1, 16, 16), "z": (1, 1, 8, 8)})
    with pytest.raises(InputShapeError, match="needs input 'y' too"):
        rfgraph.analyze(TwoInputs(), {"x": (1, 1, 16, 16)})


class Tokens(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.conv = nn.Conv1d(4, 4, 3)

    def forward(self, ids):
        return self.conv(self.emb(ids).transpose(1, 2))


def test_integer_token_input_is_not_spatial():
    """(N, L) token ids have no spatial axis: every node is reported as non-spatial, none as wrong."""
    a = rfgraph.analyze(Tokens(), (1, 12), dtype=torch.long)
    assert a["emb"].shape == (1, 12, 4)
    assert all(r.source == "nonspatial" for r in a)
    with pytest.raises(InputShapeError, match="pass dtype=torch.long"):
        rfgraph.analyze(Tokens(), (1, 12))


class LabelMap(nn.Module):
    """(N, 1, H, W) integer class map -> embedding -> conv: positions are kept by the lookup."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(5, 3)
        self.conv = nn.Conv2d(3, 2, 3)

    def forward(self, labels):
        e = self.emb(labels[:, 0])  # (N, H, W, 3)
        return self.conv(e.permute(0, 3, 1, 2))


def test_integer_label_map_input_keeps_positions():
    """The embedding is a per-position lookup: the conv after it has rf 3, start 0."""
    a = rfgraph.analyze(LabelMap(), (1, 1, 16, 16), dtype=torch.long)
    assert a["conv"].rf == (3, 3) and a["conv"].start == (0, 0)
    assert a["emb"].rf == (1, 1)


# ---------------------------------------------------------------------------
# the CLI shows one line, never a traceback from inside torch
# ---------------------------------------------------------------------------


CLI_CASES = [
    ("return GatedNet()", ["--input-shape", "1,1,16,16"], "could not trace GatedNet"),
    ("return nn.Conv2d(3, 3, 7)", ["--input-shape", "1,3,4,4"], "The smallest input that works is (1, 3, 7, 7)"),
    ("return nn.Conv2d(3, 3, 3)", ["--input-shape", "3,224,224"], "is the batch dim missing?"),
    ("return nn.Conv2d(3, 3, 3)", ["--input-shape", "1,3,0,8"], "non-positive size"),
    ("return 'not a model'", ["--input-shape", "1,3,8,8"], ""),
]


def _user_file(tmp_path, body: str):
    src = textwrap.dedent(
        f"""
        import torch
        from torch import nn
        from tests.test_trust import GatedNet

        def factory():
            {body}
        """
    )
    path = tmp_path / "user_model.py"
    path.write_text(src)
    return path


def _one_error_line(returncode: int, stderr: str, expected: str) -> None:
    assert returncode != 0
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("rfgraph: error: ")
    assert expected in lines[0]


@pytest.mark.parametrize("body, args, expected", CLI_CASES)
def test_cli_errors_are_one_line(tmp_path, capsys, monkeypatch, body, args, expected):
    from rfgraph.cli import main

    monkeypatch.syspath_prepend(str(_repo_root()))
    path = _user_file(tmp_path, body)
    code = main([f"{path}:factory", "-q", *args])
    _one_error_line(code, capsys.readouterr().err, expected)


@pytest.mark.slow
def test_cli_entry_point_prints_no_torch_traceback(tmp_path):
    """The real process: torch.export's own logging and graph dumps must not reach the terminal."""
    body, args, expected = CLI_CASES[0]
    path = _user_file(tmp_path, body)
    proc = subprocess.run(
        [sys.executable, "-m", "rfgraph", f"{path}:factory", "-q", *args],
        capture_output=True, text=True, timeout=300, cwd=str(_repo_root()),
    )
    _one_error_line(proc.returncode, proc.stderr, expected)


def _repo_root():
    from pathlib import Path

    return Path(__file__).resolve().parent.parent


def test_errors_share_a_base():
    for cls in (TraceError, InputShapeError, InputTooSmallError, NodeNotFoundError, NotAModuleError):
        assert issubclass(cls, RFGraphError)


def test_no_pickle_when_reading_results():
    """Results files are read with json / yaml.safe_load only: no pickle, no yaml.load, in the package."""
    import pathlib

    import rfgraph as pkg

    for path in pathlib.Path(pkg.__file__).parent.glob("*.py"):
        text = path.read_text()
        assert "import pickle" not in text and "pickle.load" not in text, path.name
        assert "yaml.load(" not in text and "yaml.unsafe_load" not in text, path.name
        assert "torch.load(" not in text, path.name


def test_channel_slice_of_a_concat_keeps_only_the_kept_branch():
    """cat([conv3(x), conv7(x)], 1)[:, :1] only holds the conv3 branch: true rf 3 (rfgraph said 7).

    Found by the long fuzzing run (merges of operands with different channel
    counts sliced the concat); concat pieces are now tracked through slices.
    """

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv1d(1, 1, 3, padding=1)
            self.b = nn.Conv1d(1, 1, 7, padding=3)

        def forward(self, x):
            return torch.cat([self.a(x), self.b(x)], 1)[:, :1]

    assert rfgraph.analyze(M(), (1, 1, 32))["getitem"].rf == (3,)


def test_channel_slice_after_a_spatial_crop_of_a_concat():
    """cat([conv3(x), conv7(x)], 1)[..., 1:][:, :1] holds only the conv3 branch: true rf 3.

    The long fuzzing run found it (a U-Net style crop of a concat, then a merge
    keeping the first channels); rfgraph reported 7, the union over channels,
    until concat pieces were carried through window ops along other dims.
    """

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv1d(1, 1, 3, padding=1)
            self.b = nn.Conv1d(1, 1, 7, padding=3)

        def forward(self, x):
            return torch.cat([self.a(x), self.b(x)], 1)[..., 1:][:, :1]

    assert rfgraph.analyze(M(), (1, 1, 32))["getitem_1"].rf == (3,)
