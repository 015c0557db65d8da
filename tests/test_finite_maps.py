"""Graphs whose window maps are finite tables (`rfgraph.algebra.FiniteMap`): merges of paths whose slopes
differ (``align_corners=True`` resampling), transposed convs whose kernel is smaller than their stride
(outputs that read nothing), and a U-Net decoder with fractional resampling.

Every case has hand-derived values, and every unit's window agrees with back-propagation
(`rfcheck.assert_windows_match`) and with the numeric probe at the analysed length (`rfgraph.validate`).
"""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F
from rfcheck import Lambda, assert_windows_match, check, last
from torch import nn

import rfgraph
from rfgraph.algebra import FiniteMap
from rfgraph.queries import unit_box, units_seeing
from rfgraph.report import formats


class AlignCornersMerge(nn.Module):
    """x (22) -> conv k3 s4 p1 (6 units) -> linear resize to 22 with align_corners=True, added to conv k3 p1 of x."""

    def __init__(self):
        super().__init__()
        self.down = nn.Conv1d(1, 1, 3, stride=4, padding=1)
        self.direct = nn.Conv1d(1, 1, 3, padding=1)
        self.head = nn.Conv1d(1, 1, 3, padding=1)

    def forward(self, x):
        up = F.interpolate(self.down(x), size=x.shape[-1], mode="linear", align_corners=True)
        return self.head(self.direct(x) + up)


def test_align_corners_merge_hand_derived():
    """Resize 6 -> 22 with align_corners=True: source 5u/21, window [floor(5u/21), ceil(5u/21)] of the
    stride-4 conv, whose unit i sees [4i - 1, 4i + 1]: slope 20/21.  The direct path sees [u - 1, u + 1]:
    slope 1.  Merged: lo(u) = min(u - 1, 4 floor(5u/21) - 1) = 4 floor(5u/21) - 1 (the resampled path
    is never to the right), hi(u) = max(u + 1, 4 ceil(5u/21) + 1): the resampled path except at u = 21
    (21 < 22).  hi is no periodic-affine map, so the field is stored as tables over its 22 units (both
    maps: a position outside them has no window); rf 7 (u = 1: -1..5), rf_min 3 (u = 0: -1..1), start -1,
    stride the mean slope of lo, (19 - (-1)) / 21 = 20/21, not a single number.  Main refused this merge
    ("cannot merge maps of slopes 20/21 and 1")."""
    a = check(AlignCornersMerge(), (1, 1, 22), fallback="unknown")
    r = a["add"]
    assert r.source == "symbolic"
    assert [r.lo[0](u) for u in range(22)] == [4 * ((5 * u) // 21) - 1 for u in range(22)]
    assert [r.hi[0](u) for u in range(22)] == [max(u + 1, 4 * (-(-5 * u // 21)) + 1) for u in range(22)]
    assert isinstance(r.lo[0], FiniteMap) and isinstance(r.hi[0], FiniteMap) and r.hi[0].size == 22
    assert (r.rf, r.rf_min, r.stride, r.start, r.stride_regular) == ((7,), (3,), (Fraction(20, 21),), (-1,), (False,))
    assert not r.aligned
    head = last(a)
    assert head.source == "symbolic" and head.stride_regular == (False,)
    # head conv k3 p1 over the finite field: unit 21 reads 20, 21 (22 is padding of a tensor that exists
    # only at this length: it reads nothing): lo = lo(20) = 15, hi = max(hi(20), hi(21)) = 22
    assert (head.lo[0](21), head.hi[0](21)) == (15, 22) and (head.lo[0](0), head.hi[0](0)) == (-1, 5)
    assert head.rf == (11,)  # u = 5: lo(4) = -1 .. hi(6) = 9
    assert assert_windows_match(AlignCornersMerge(), (1, 1, 22), head, 0) == 22


def test_align_corners_merge_reports_and_schema():
    """The irregular stride is its mean slope marked ``~`` in tables, ``stride_regular`` false in CSV / JSON,
    the finite map serialised as ``{"finite": [...]}``; reading the JSON back keeps the tables."""
    a = rfgraph.analyze(AlignCornersMerge(), (1, 1, 22))
    r = a["add"]
    assert formats.format_axes(r, "stride") == "~20/21"
    assert "irregular stride (exact per-unit table)" in formats.flags(r)
    assert "~20/21" in formats.to_markdown(a, ["add"])
    csv_row = formats.to_csv(a, ["add"]).splitlines()
    assert "stride_regular_l" in csv_row[0] and ",20/21,false," in csv_row[1]
    data = a.to_dict(["add"])
    axis = data["nodes"][0]["axes"][0]
    assert data["schema_version"] == 2 and axis["stride_regular"] is False
    assert axis["hi"] == {"finite": [r.hi[0](u) for u in range(22)]} and axis["lo"]["finite"][:6] == [-1] * 5 + [3]
    back = rfgraph.Analysis.from_json(a.to_json())
    assert back["add"].hi[0] == r.hi[0] and back["add"].stride_regular == (False,)
    assert back["add"].box((21,)) == ((19, 22),)
    graph = formats.to_networkx(a)
    assert graph.nodes["add"]["stride_regular"] == (False,)


def test_schema_version_1_is_still_read():
    """A version 1 file (periodic maps only, no ``stride_regular``) reads back with every stride regular."""
    a = rfgraph.analyze(nn.Conv1d(1, 1, 3, stride=2), (1, 1, 12))
    data = a.to_dict()
    data["schema_version"] = 1
    for node in data["nodes"]:
        for axis in node["axes"]:
            del axis["stride_regular"]
    back = rfgraph.Analysis.from_dict(data)
    assert back["output"].stride_regular == (True,) and back["output"].box((2,)) == ((4, 6),)


class Holes(nn.Module):
    """ConvTranspose1d k=2 s=3 on 5 samples (14 outputs), added to a nearest resize of x to 14, then conv k3."""

    def __init__(self, merge: bool = True):
        super().__init__()
        self.merge = merge
        self.up = nn.ConvTranspose1d(1, 1, 2, stride=3)
        self.conv = nn.Conv1d(1, 1, 3, padding=1)

    def forward(self, x):
        y = self.up(x)
        if self.merge:
            y = y + F.interpolate(x, size=y.shape[-1], mode="nearest")
        return self.conv(y)


def test_transposed_conv_kernel_smaller_than_stride_hand_derived():
    """ConvTranspose1d(k=2, s=3): output u = 3i + j, j in {0, 1}: u = 3i and 3i + 1 read input i, u = 3i + 2
    reads nothing.  n_out = (5 - 1) * 3 + 1 + 1 = 14.  Windows (i, i), (i, i), empty: rf 1, rf_min 0; the
    table repeats with period 3 (holes included) and advances 1: stride 1/3, regular.
    Then conv k3 p1 reads u - 1 .. u + 1, skipping holes and the 14-unit tensor's own padding:
    u = 3i: {i - 1 (u - 1 = 3(i-1) + 2 is a hole: no), i, i} -> [i, i]... precisely: u - 1 = 3i - 1 is a hole,
    so [i, i]; u = 3i + 1: reads 3i, 3i + 1, 3i + 2 (hole): [i, i]; u = 3i + 2: reads 3i + 1 (i), 3i + 2 (hole),
    3i + 3 (i + 1): [i, i + 1].  rf 2, rf_min 1, start 0; unit 13 = 3*4 + 1 reads [4, 4].  Main handed this
    layer to the fallback ("leaves outputs that read no input")."""
    net = Holes(merge=False)
    a = check(net, (1, 1, 5), fallback="unknown")
    t = a["up"]
    assert t.source == "symbolic" and t.shape == (1, 1, 14)
    assert [t.lo[0](u) for u in range(6)] == [0, 0, None, 1, 1, None] and t.hi[0] == t.lo[0]
    assert (t.rf, t.rf_min, t.stride, t.start, t.stride_regular) == ((1,), (0,), (Fraction(1, 3),), (0,), (True,))
    assert t.box((2,)) is None and t.box((3,)) == ((1, 1),)
    c = last(a)
    assert [(c.lo[0](u), c.hi[0](u)) for u in range(6)] == [(0, 0), (0, 0), (0, 1), (1, 1), (1, 1), (1, 2)]
    assert (c.rf, c.rf_min, c.start, c.lo[0](13), c.hi[0](13)) == ((2,), (1,), (0,), 4, 4)
    assert assert_windows_match(net, (1, 1, 5), c, 0) == 14
    assert units_seeing(a, "up", ((1, 1),)) == ((range(3, 5),),)
    assert unit_box(a, "up", 2).box is None


def test_holes_merged_with_a_dense_path():
    """The same transposed conv added to nearest 5 -> 14 (source floor(5u/14)): a hole takes the dense path's
    window alone (the empty window is the union's neutral element).  u = 2: hole, floor(10/14) = 0 -> [0, 0];
    u = 5: hole, floor(25/14) = 1 -> [1, 1]; u = 8: hole, floor(40/14) = 2 -> [2, 2]; u = 3: (1, 1) and
    floor(15/14) = 1 -> [1, 1]; u = 11: (3, 3) and floor(55/14) = 3."""
    net = Holes(merge=True)
    a = check(net, (1, 1, 5), fallback="unknown")
    add = a["add"]
    assert add.source == "symbolic" and add.rf_min == (1,)
    assert [add.lo[0](u) for u in range(14)] == [min(v for v in (u // 3 if u % 3 < 2 else None, 5 * u // 14)
                                                     if v is not None) for u in range(14)]
    assert assert_windows_match(net, (1, 1, 5), last(a), 0) == 14


class TinyUNet(nn.Module):
    """A 2-D U-Net with two levels on odd sizes: the decoder resizes to the skip's size (fractional factors)
    with bilinear align_corners=True, concatenates, and convolves; one level uses a transposed conv k2 s3."""

    def __init__(self):
        super().__init__()
        self.enc1 = nn.Conv2d(1, 2, 3, padding=1)
        self.down1 = nn.Conv2d(2, 2, 3, stride=2, padding=1)
        self.down2 = nn.AvgPool2d(3, stride=3, ceil_mode=True)  # rfcheck back-propagates through the real op
        self.mid = nn.Conv2d(2, 2, 3, padding=1)
        self.up2 = nn.ConvTranspose2d(2, 2, 2, stride=3)
        self.dec2 = nn.Conv2d(4, 2, 3, padding=1)
        self.dec1 = nn.Conv2d(4, 1, 3, padding=1)

    def forward(self, x):
        s1 = torch.relu(self.enc1(x))
        s2 = self.down1(s1)
        b = self.mid(self.down2(s2))
        u2 = self.up2(b)
        u2 = F.interpolate(u2, size=s2.shape[-2:], mode="bilinear", align_corners=True)
        d2 = self.dec2(torch.cat([u2, s2], 1))
        u1 = F.interpolate(d2, size=s1.shape[-2:], mode="bilinear", align_corners=True)
        return self.dec1(torch.cat([u1, s1], 1))


@pytest.mark.parametrize("size", [(47, 61), (52, 45)])
def test_unet_decoder_with_fractional_resampling(size):
    """Every node is exact (main: unknown from the first concat of resized and skip paths), every output
    unit's window agrees with back-propagation along both axes, and the probe agrees at the analysed size."""
    shape = (1, 1) + size
    net = TinyUNet()
    a = check(net, shape, fallback="unknown")
    assert not a.unknown()
    out = last(a)
    assert out.source == "symbolic" and any(isinstance(m, FiniteMap) for m in out.lo + out.hi)
    for axis in (0, 1):
        assert assert_windows_match(net, shape, out, axis) == size[axis]
    report = rfgraph.validate(net, shape, ["cat", "dec2", "cat_1", out.name], fallback="unknown")
    assert report.ok, str(report)
    assert all(ax.finite for row in report.rows for ax in row.numeric.axes)


def test_probe_agrees_on_every_unit_of_finite_nodes():
    """validate() probes finite nodes at the analysed length, every unit: no disagreement, and the rf of the
    units whose window lies inside the input is the symbolic one."""
    report = rfgraph.validate(AlignCornersMerge(), (1, 1, 22), ["add", "head"])
    assert report.ok, str(report)
    head = report.rows[1].numeric.axes[0]
    assert head.finite and head.units == tuple(range(22)) and head.rf == 11
    holes = rfgraph.validate(Holes(), (1, 1, 5), ["up", "add", "conv"], fallback="unknown")
    assert holes.ok, str(holes)
    assert holes.rows[0].numeric.axes[0].lo[2] is None  # the probe also sees that unit 2 reads nothing


def test_merge_of_a_skip_and_a_downsampled_path_reports_the_widest_unit():
    """Found by the U-Net fuzzing (a mul of a nearest-resized path and its skip: rf 11 reported, 13
    measured).  Smallest form: ``x[..., :4] + interpolate(x, size=4, mode="nearest")`` on 8 positions.
    Unit u of the slice sees u, unit u of the resize sees source ``floor(u * 8 / 4) = 2u``: the union
    is ``[u, 2u]``, widths 1, 2, 3, 4.  lo comes from the slice (slope 1), hi from the resize (slope 2):
    rf 4 (unit 3), rf_min 1, start 0; both maps periodic, but of different slopes, so the stride is not
    one number (mean slope of lo: 1).  Before, both periodic maps were kept and rf was the width over
    one common period (unit 0): 1."""
    model = Lambda(lambda x: x[..., :4] + F.interpolate(x, size=4, mode="nearest"))
    r = last(check(model, (1, 1, 8), fallback="unknown"))
    assert r.source == "symbolic"
    assert [(r.lo[0](u), r.hi[0](u)) for u in range(4)] == [(0, 0), (1, 2), (2, 4), (3, 6)]
    assert (r.rf, r.rf_min, r.start, r.stride, r.stride_regular) == ((4,), (1,), (0,), (Fraction(1),), (False,))
    assert assert_windows_match(model, (1, 1, 8), r, 0) == 4
