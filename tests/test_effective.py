"""Effective receptive field: closed-form cases, support within the theoretical RF, CLI."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import rfgraph
from rfgraph.effective import ERFError, ERFResult, ERFSupportError, ERFWarning, erf
from rfgraph.effective.measure import _assert_support

F64 = torch.float64


def box_stack(n: int, k: int, ndim: int = 1) -> nn.Sequential:
    """``n`` convolutions of width ``k``, unit weights, no bias, no padding."""
    conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[ndim]
    net = nn.Sequential(*[conv(1, 1, k, bias=False) for _ in range(n)])
    with torch.no_grad():
        for c in net:
            c.weight.fill_(1.0)
    return net


def bspline(n: int, k: int) -> list[int]:
    """Coefficients of ``(1 + z + ... + z^(k-1))^n`` by integer polynomial multiplication."""
    out = [1]
    for _ in range(n):
        new = [0] * (len(out) + k - 1)
        for i, c in enumerate(out):
            for j in range(k):
                new[i + j] += c
        out = new
    return out


# -- closed forms ---------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [2, 3, 5])
def test_box_filters_give_the_discrete_bspline_and_sqrt_n_spread(k):
    """n stacked unit box filters of width k (Luo et al. 2016, Sec. 3).

    The centre unit's value is sum_j c_j x[lo + j] with c the coefficients of
    (1 + z + ... + z^(k-1))^n (each path through the stack is one choice of a
    tap per layer), so the gradient map is exactly c placed on the RF box
    [lo, lo + n(k-1)], times the number of samples (the model is linear).
    Read as a distribution, c is the law of a sum of n independent uniforms on
    {0..k-1}: variance n(k^2-1)/12, so sigma grows as sqrt(n); the effective
    size sqrt(12 sigma^2 + 1) = sqrt(n(k^2-1) + 1) equals k for n = 1.
    """
    sigmas = {}
    for n in range(1, 6):
        rf = n * (k - 1) + 1
        length = rf + 6
        net = box_stack(n, k)
        x = torch.randn(3, 1, length, dtype=F64)
        r = erf(net, str(n - 1), x, dtype=F64, progress=False)
        # n_out = length - rf + 1 = 7, centre unit 3, box [3, 3 + rf - 1]
        assert r.unit == (3,) and r.box == ((3, 3 + rf - 1),)
        expected = np.zeros(length)
        expected[3 : 3 + rf] = 3 * np.array(bspline(n, k), dtype=np.float64)
        assert np.array_equal(r.map, expected)
        assert r.support() == ((3, 3 + rf - 1),)
        assert math.isclose(r.sigma[0] ** 2, n * (k * k - 1) / 12, rel_tol=1e-12)
        assert math.isclose(r.effective_size[0], math.sqrt(n * (k * k - 1) + 1), rel_tol=1e-12)
        assert math.isclose(r.rf_ratio[0], math.sqrt(n * (k * k - 1) + 1) / rf, rel_tol=1e-12)
        sigmas[n] = r.sigma[0]
    for n, s in sigmas.items():
        assert math.isclose(s / sigmas[1], math.sqrt(n), rel_tol=1e-12)


def test_area_ratios_and_radius_hand_derived():
    """Two boxes of width 3: ERF [1, 2, 3, 2, 1] (total 9) on RF box [0, 4], centre 2.

    Centred boxes: {2} holds 3, {1..3} holds 7, {0..4} holds 9.  Share 20 %
    (1.8) and 30 % (2.7): the centre pixel, area 1/5; 50 % (4.5): 3/5;
    99 % (8.91): 5/5.  Radius holding 50 %: 1; holding 30 %: 0.
    """
    net = box_stack(2, 3)
    r = erf(net, "1", torch.zeros(1, 1, 5), dtype=F64, progress=False)
    assert r.map.tolist() == [1, 2, 3, 2, 1]
    assert r.area_ratios == {0.2: 1 / 5, 0.3: 1 / 5, 0.5: 3 / 5, 0.99: 1.0}
    assert r.radius(0.5) == 1.0 and r.radius(0.3) == 0.0 and r.radius(1.0) == 2.0
    assert r.centroid == (2.0,)


def test_box_filters_2d_and_3d_are_outer_products():
    """Separable unit boxes: the n-D map is the outer product of the 1-D B-splines (hand-derived)."""
    b = np.array(bspline(2, 3), dtype=np.float64)  # [1, 2, 3, 2, 1]
    r2 = erf(box_stack(2, 3, 2), "1", torch.ones(2, 1, 5, 7, dtype=F64), dtype=F64, progress=False)
    expected = np.zeros((5, 7))
    expected[:, 1:6] = 2 * np.outer(b, b)
    assert r2.box == ((0, 4), (1, 5)) and np.array_equal(r2.map, expected)
    assert math.isclose(r2.sigma[0] ** 2, 2 * 8 / 12, rel_tol=1e-12)
    r3 = erf(box_stack(2, 3, 3), "1", torch.ones(1, 1, 5, 5, 5, dtype=F64), dtype=F64, progress=False)
    assert np.array_equal(r3.map, np.einsum("i,j,k->ijk", b, b, b))
    assert r3.area_ratio(1.0) == 1.0 and r3.rf == (5, 5, 5)


def test_linear_model_gradient_is_full_convolution_of_kernels():
    """A linear 1-D model: conv1d (cross-correlations) with integer kernels, some negative, and biases.

    Layer l computes y_l[u] = b_l + sum_i w_l[i] y_{l-1}[u + i].  Composing two:
    z[v] = const + sum_{i,j} w2[i] w1[j] x[v + i + j], so dz[v]/dx[v + m] =
    sum_{i + j = m} w1[j] w2[i] = (w1 * w2)[m], the full convolution; by
    induction the gradient of a stack is np.convolve of all its kernels, laid
    on the RF box starting at v (the flips a true convolution would need
    cancel in the composition of cross-correlations, so no kernel is
    reversed).  The map is |that| times the number of samples; integer
    products and sums are exact in float64.
    """
    kernels = [[2.0, -1.0, 3.0], [-1.0, 4.0], [1.0, 0.0, -2.0, 1.0]]
    net = nn.Sequential(*[nn.Conv1d(1, 1, len(w)) for w in kernels])
    with torch.no_grad():
        for c, w, b in zip(net, kernels, (0.5, -3.0, 7.0)):
            c.weight.copy_(torch.tensor(w).view(1, 1, -1))
            c.bias.fill_(b)
    full = np.convolve(np.convolve(kernels[0], kernels[1]), kernels[2])
    assert (full < 0).any() and not np.array_equal(full, full[::-1])  # abs and orientation both matter
    rf = len(full)  # 3 + 2 + 4 - 2 = 7
    length = rf + 8  # n_out = 9, centre unit 4, box [4, 10]
    r = erf(net, "2", torch.randn(4, 1, length, dtype=F64), dtype=F64, progress=False)
    expected = np.zeros(length)
    expected[4 : 4 + rf] = 4 * np.abs(full)
    assert r.box == ((4, 4 + rf - 1),)
    assert np.array_equal(r.map, expected)


def test_absolute_value_is_taken_per_input_channel_before_summing():
    """Two input channels with kernels [1, -2] and [-3, 1]: the map is |w_a| + |w_b| = [4, 3], not |w_a + w_b|."""
    net = nn.Conv1d(2, 1, 2, bias=False)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[[1.0, -2.0], [-3.0, 1.0]]]))
    r = erf(net, "output", torch.randn(1, 2, 2, dtype=F64), dtype=F64, progress=False)
    assert r.map.tolist() == [4.0, 3.0]


def test_channel_seed_selects_one_output_channel():
    """Output channels with kernels [1, 0] and [0, 5]: channel 1 alone gives [0, 5]; the sum gives [1, 5]."""
    net = nn.Conv1d(1, 2, 2, bias=False)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[[1.0, 0.0]], [[0.0, 5.0]]]))
    x = torch.zeros(1, 1, 2, dtype=F64)
    assert erf(net, "output", x, dtype=F64, channel=1, progress=False).map.tolist() == [0.0, 5.0]
    assert erf(net, "output", x, dtype=F64, progress=False).map.tolist() == [1.0, 5.0]


# -- several nodes, sizes, robustness ------------------------------------------------------------


def test_several_nodes_in_one_call_match_separate_calls():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2), nn.Tanh(), nn.Conv2d(4, 3, 5))
    both = erf(net, ["1", "4"], 3, batch_size=2, progress=False, dtype=F64)
    assert set(both) == {"1", "4"}
    for name, res in both.items():
        alone = erf(net, name, 3, batch_size=2, size=both["4"].map.shape, progress=False, dtype=F64)
        assert np.array_equal(res.map, alone.map)


def test_input_size_is_chosen_so_that_the_rf_fits():
    """Three padded convs of width 5 (padding 2): RF 13, n_out = N, centre u = (N-1)//2,
    box [u-6, u+6] inside [0, N) first for N = 13.  A fixed size of 9 clips it: warned."""
    net = nn.Sequential(*[nn.Conv1d(1, 1, 5, padding=2) for _ in range(3)])
    r = erf(net, "2", 2, progress=False)
    assert r.map.shape == (13,) and r.box == ((0, 12),) and r.fits == (True,)
    with pytest.warns(ERFWarning, match=r"does not fit.*at least \(13,\)"):
        r = erf(net, "2", 2, size=9, progress=False)
    assert r.fits == (False,) and r.box == ((-2, 10),)


def test_nan_and_inf_are_counted_not_dropped_silently():
    """sqrt then a width-3 conv, centre unit 3 of 7 (box [3, 5]).  x = -1 at 0 (outside the box):
    d sqrt = 0 / (2 sqrt(-1)) = NaN; x = 0 at 4 (inside): g / (2 * 0) = inf.  One of each per sample."""

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(1, 1, 3, bias=False)

        def forward(self, x):
            return self.conv(torch.sqrt(x))

    net = Net()
    with torch.no_grad():
        net.conv.weight.fill_(1.0)
    x = torch.ones(2, 1, 9, dtype=F64)
    x[:, :, 0] = -1.0
    x[:, :, 4] = 0.0
    with pytest.warns(ERFWarning, match="1 NaN.*inf|NaN and 2 inf"):
        r = erf(net, "conv", x, dtype=F64, progress=False)
    assert (r.nan_count, r.inf_count, r.nonfinite_samples, r.n_samples) == (2, 2, 2, 2)
    assert np.isfinite(r.map).all() and r.map[0] == 0 and r.map[4] == 0
    assert r.map[3] == r.map[5] == 2 * 0.5  # d sqrt(1) = 1/2, two samples


def test_float64_copy_leaves_the_model_untouched():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Dropout(0.5), nn.Conv2d(2, 1, 3))
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    erf(net, "3", 2, dtype=F64, progress=False)
    assert net.training and all(m.training for m in net.modules())
    assert all(v.dtype == before[k].dtype and torch.equal(v, before[k]) for k, v in net.state_dict().items())


def test_support_error_names_both_boxes():
    res = ERFResult(node="n", map=np.array([0.0, 1.0, 1.0, 0.0]), unit=(0,), box=((1, 1),),
                    input_shape=(1, 1, 4), n_samples=1)
    with pytest.raises(ERFSupportError, match=r"non-zero on \(\(1, 2\),\).*box of its centre unit.*\(\(1, 1\),\)"):
        _assert_support(res)


def test_errors_are_clear():
    net = box_stack(2, 3)
    with pytest.raises(rfgraph.NodeNotFoundError, match="'nope'"):
        erf(net, "nope", torch.zeros(1, 1, 9), progress=False)
    with torch.device("meta"):
        meta = box_stack(1, 3)
    with pytest.raises(ERFError, match="meta device"):
        erf(meta, "0", 2, progress=False)
    with pytest.raises(ERFError, match="does not exist"):
        erf(net, "1", "/nonexistent/folder", progress=False)


def test_images_folder_and_save_npy(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(tmp_path / f"im{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 3, stride=2))
    r = erf(net, "2", tmp_path, size=(11, 13), batch_size=2, progress=False)
    assert r.n_samples == 3 and r.map.shape == (11, 13)
    out = r.save_npy(tmp_path / "m.npy")
    assert np.array_equal(np.load(out), r.map)


def test_iterable_of_batches_matches_one_tensor():
    """A DataLoader-like iterable of (images, labels) gives the same map as the concatenated tensor."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 3))
    batches = [torch.randn(2, 3, 9, 9, dtype=F64) for _ in range(3)]
    r_iter = erf(net, "2", iter([(b, 0) for b in batches]), size=9, dtype=F64, progress=False)
    r_tensor = erf(net, "2", torch.cat(batches), batch_size=2, dtype=F64, progress=False)
    assert r_iter.n_samples == 6 and np.array_equal(r_iter.map, r_tensor.map)


# -- real models: the support never leaves the theoretical box ---------------------------------


@pytest.mark.slow
def test_support_within_theoretical_rf_on_torchvision_models():
    """Random weights, eval mode; `erf` itself raises ERFSupportError if the gradient leaves the box."""
    import torchvision

    torch.manual_seed(0)
    cases = [
        (torchvision.models.resnet18(), ["layer1", "layer2"]),
        (torchvision.models.vgg11().features, ["5", "10"]),
        (torchvision.models.mobilenet_v2().features, ["3", "6"]),
    ]
    for model, nodes in cases:
        results = erf(model, nodes, 2, batch_size=2, progress=False, input_shape=(1, 3, 64, 64))
        for res in results.values():
            assert res.support_checked and res.fits == (True, True)
            sup = res.support()
            assert sup is not None
            for (slo, shi), (blo, bhi) in zip(sup, res.box):
                assert blo <= slo <= shi <= bhi


def test_support_within_theoretical_rf_3d_video_model():
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.video.r3d_18()
    r = erf(model, "stem", 1, input_shape=(1, 3, 8, 32, 32), progress=False)
    # stem: Conv3d kernel (3, 7, 7), stride (1, 2, 2), padding (1, 3, 3): RF 3 x 7 x 7
    assert r.rf == (3, 7, 7) and r.support_checked
    assert all(blo <= slo and shi <= bhi for (slo, shi), (blo, bhi) in zip(r.support(), r.box))


# -- CLI and plots --------------------------------------------------------------------------------


def test_cli_writes_plot_npy_and_table(tmp_path, capsys):
    from rfgraph.cli import main

    png, npy = tmp_path / "erf.png", tmp_path / "erf.npy"
    code = main(["erf", "torchvision:resnet18", "--nodes", "conv1,layer1", "--noise", "2", "--plot", str(png),
                 "--npy", str(npy), "--no-progress", "--float64"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert png.stat().st_size > 1000
    assert (tmp_path / "erf_conv1.npy").exists() and (tmp_path / "erf_layer1.npy").exists()
    assert "layer1 (layer1.1.relu_1)" in out and "43x43" in out  # ResNet-18 layer1: RF 43 (published)
    code = main(["erf", "torchvision:resnet18", "--node", "layer9", "--noise", "1", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "layer9" in err


def test_cli_json_on_a_model_file(tmp_path, capsys):
    """Two 3x3 unit boxes in 2-D on a 5x5 input: map outer([1,2,3,2,1], same), total 81.
    Centred squares: 1 pixel holds 9 (11 %), 3x3 holds 7^2 = 49 (60 %), 5x5 holds 81.
    So 20 %, 30 %, 50 % need 9 of the 25 RF pixels (0.36), 99 % needs 25 (1.0)."""
    import json

    from rfgraph.cli import main

    src = tmp_path / "boxes.py"
    src.write_text(
        "import torch, torch.nn as nn\n"
        "def build():\n"
        "    net = nn.Sequential(nn.Conv2d(1, 1, 3, bias=False), nn.Conv2d(1, 1, 3, bias=False))\n"
        "    with torch.no_grad():\n"
        "        [c.weight.fill_(1.0) for c in net]\n"
        "    return net\n"
    )
    code = main(["erf", f"{src}:build", "--node", "1", "--input-shape", "1,1,5,5", "--noise", "3", "--float64",
                 "--json", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0
    (rec,) = json.loads(out)
    assert rec["input_shape"] == [3, 1, 5, 5] and rec["box"] == [[0, 4], [0, 4]] and rec["rf"] == [5, 5]
    assert rec["area_ratios"] == {"20%": 0.36, "30%": 0.36, "50%": 0.36, "99%": 1.0}
    assert rec["support"] == [[0, 4], [0, 4]] and rec["nan_count"] == 0


def test_plots_1d_2d_3d(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    for ndim, shape in ((1, (1, 1, 9)), (2, (1, 1, 7, 7)), (3, (1, 1, 5, 7, 7))):
        r = erf(box_stack(2, 3, ndim), "1", torch.ones(shape, dtype=F64), dtype=F64, progress=False)
        for scale in ("log", "linear"):
            path = tmp_path / f"{ndim}{scale}.png"
            r.plot(path, scale=scale)
            assert path.stat().st_size > 1000
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ERFError, match="scale"):
            r.plot(tmp_path / "x.png", scale="sqrt")


class _Pair(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 2, 3)
        self.b = nn.Conv2d(2, 1, 3, stride=2)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


class _PairNeedsExport(_Pair):
    def forward(self, x):  # control flow on a shape: torch.fx cannot trace it, torch.export can
        if x.shape[-1] > 4:
            x = torch.relu(self.a(x))
        return self.b(x)


def test_float64_model_with_float64_data_runs_in_float64():
    """Before: "Input type (torch.FloatTensor) and weight type (torch.DoubleTensor) should be the same"."""
    torch.manual_seed(0)
    net = _Pair().double()
    x = torch.randn(2, 1, 13, 13, dtype=torch.float64)
    r = erf(net, "b", x, progress=False)
    assert r.dtype == "float64" and r.box == ((4, 8), (4, 8))
    explicit = erf(net, "b", x, dtype=F64, progress=False)
    assert np.array_equal(r.map, explicit.map)
    as32 = erf(net, "b", x, dtype=torch.float32, progress=False)  # a float32 copy, the model stays float64
    assert as32.dtype == "float32" and np.allclose(as32.map, r.map, rtol=1e-4)
    assert all(p.dtype == torch.float64 for p in net.parameters())


def test_erf_traces_models_that_need_torch_export():
    """Before: "torch.export was not tried"; analyze handled the same model."""
    torch.manual_seed(0)
    net, ref = _PairNeedsExport(), _Pair()
    ref.load_state_dict(net.state_dict())
    assert rfgraph.analyze(net, (1, 1, 13, 13)).meta["trace"] == "export"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ERFWarning)
        x = torch.randn(3, 1, 13, 13)
        got = erf(net, "b", x, progress=False)
        want = erf(ref, "b", x, progress=False)
        noise = erf(net, "b", 2, progress=False)  # the size chosen by the symbolic pass, traced per size
    assert got.box == want.box and got.n_samples == 3
    assert np.allclose(got.map, want.map)
    assert noise.box == ((0, 4), (0, 4))
