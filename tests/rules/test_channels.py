"""rfgraph.rules.channels: every op that consumes channels (or features) checks them against its module or
weight before its rule runs.  Shapes come from the rules, so without these checks an NHWC input flowed
through ResNet-50 with shapes like 1x64x112x2 and exit code 0."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import rfgraph
from rfgraph.errors import InputShapeError, RFGraphError
from rfgraph.tracing import Traced


def _analyze(model, shape, **kw):
    return rfgraph.analyze(model, shape, fallback="unknown", **kw)


@pytest.mark.parametrize("model, shape, message", [
    (nn.Conv2d(3, 8, 3), (1, 16, 16, 3), "expected 3 input channels at conv2d, got 16; is the input channels-last?"),
    (nn.Sequential(nn.Conv1d(2, 4, 3)), (1, 5, 2), "expected 2 input channels at 0, got 5; is the input channels-last?"),
    (nn.Sequential(nn.Conv3d(1, 1, 3)), (1, 2, 8, 8, 8), "expected 1 input channels at 0, got 2"),
    (nn.Sequential(nn.ConvTranspose2d(4, 2, 3)), (1, 3, 8, 8), "expected 4 input channels at 0, got 3"),
    (nn.Sequential(nn.BatchNorm2d(4)), (1, 3, 8, 8), "expected 4 input channels at 0, got 3"),
    (nn.Sequential(nn.GroupNorm(2, 4)), (1, 6, 8, 8), "expected 4 input channels at 0, got 6"),
    (nn.Sequential(nn.InstanceNorm2d(4, affine=True)), (1, 3, 8, 8), "expected 4 input channels at 0, got 3"),
    (nn.Sequential(nn.LayerNorm(4)), (1, 4, 8, 8), "expected trailing size 4 at 0, got 8; is the input channels-first"),
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(10, 2)), (1, 1, 8, 8),
     "expected 10 input features at 2, got 72"),
], ids=["conv2d", "conv1d", "conv3d", "conv_transpose", "batchnorm", "groupnorm", "instancenorm", "layernorm",
        "linear"])
def test_module_channels_are_checked(model, shape, message):
    with pytest.raises(InputShapeError) as info:
        _analyze(model, shape)
    assert str(info.value).startswith(message)


def test_matching_channels_pass_unchanged():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.GroupNorm(2, 4), nn.ConvTranspose2d(4, 2, 3, groups=2),
                        nn.Conv2d(2, 4, 1, groups=2), nn.Flatten(), nn.Linear(4 * 8 * 8, 3), nn.LayerNorm(3))
    a = _analyze(net, (1, 3, 8, 8))
    assert a["3"].rf == (5, 5) and a["7"].shape == (1, 3)


class _Functional(nn.Module):
    def __init__(self, groups=1):
        super().__init__()
        self.groups = groups
        self.w = nn.Parameter(torch.ones(4, 6 // groups, 3, 3))
        self.lin = nn.Parameter(torch.ones(2, 4))

    def forward(self, x):
        y = F.conv2d(x, self.w, groups=self.groups)
        return F.linear(y.permute(0, 2, 3, 1), self.lin)


def test_functional_conv_and_linear_read_the_weight_and_groups():
    assert _analyze(_Functional(), (1, 6, 8, 8))["output"].shape == (1, 6, 6, 2)
    assert _analyze(_Functional(groups=2), (1, 6, 8, 8))["output"].shape == (1, 6, 6, 2)
    with pytest.raises(InputShapeError, match="expected 6 input channels at conv2d, got 5"):
        _analyze(_Functional(groups=3), (1, 5, 8, 8))


class _NeedsExport(nn.Module):
    """fx cannot trace the shape test: the exported graph calls aten.conv2d, checked the same way."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        if x.shape[-2] > 4:
            x = self.conv(x)
        return x


def test_export_graphs_are_checked_too():
    """torch.export runs the model on fake tensors, so torch itself refuses the shape there (one TraceError);
    a graph exported at the right shape and reused (``traced=``) is checked by the aten spelling."""
    good = _analyze(_NeedsExport(), (1, 3, 8, 8))
    assert good.meta["trace"] == "export"
    with pytest.raises(RFGraphError, match="expected input.*to have 3 channels, but got 8"):
        _analyze(_NeedsExport(), (1, 8, 8, 3))
    traced = Traced(good.graph_module, {}, method="export")
    with pytest.raises(InputShapeError, match="expected 3 input channels at conv2d, got 8; is the input channels-last"):
        _analyze(_NeedsExport(), (1, 8, 8, 3), traced=traced)


class _Tokens(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 4)

    def forward(self, ids):
        return self.emb(ids)


def test_embedding_needs_integer_ids():
    assert _analyze(_Tokens(), (1, 7), dtype=torch.long)["output"].shape == (1, 7, 4)
    with pytest.raises(InputShapeError, match="looks up integer token ids, got a float32 tensor; analyse with dtype=torch.long"):
        _analyze(_Tokens(), (1, 7, 7))


class _UpCat(nn.Module):
    """MONAI's UpCat pattern: ``torch.jit.isinstance(proxy, Tensor)`` is False under torch.fx, so fx traces the
    branch without the skip concat, whose conv then gets half its channels; torch.export takes the real one."""

    def __init__(self):
        super().__init__()
        self.down = nn.Conv2d(2, 2, 3, stride=2, padding=1)
        self.up = nn.ConvTranspose2d(2, 2, 2, stride=2)
        self.conv = nn.Conv2d(4, 1, 3, padding=1)

    def forward(self, x):
        skip = x
        y = self.up(self.down(x))
        if skip is not None and torch.jit.isinstance(skip, torch.Tensor):
            y = torch.cat([skip, y], dim=1)
        return self.conv(y)


def test_a_wrong_fx_branch_is_retried_with_export():
    a = _analyze(_UpCat(), (1, 2, 16, 16))
    assert a.meta["trace"] == "export"
    assert a["conv"].shape == (1, 1, 16, 16) and a["conv"].rf == (5, 5)  # 3 (down), then 2 units of it
