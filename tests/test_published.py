"""Published receptive fields (Araujo, Norris, Sim, "Computing Receptive Fields of
Convolutional Neural Networks", Distill 2019; TF-Slim models) and community values
for torchvision's ResNets (v1.5).  Where torchvision's architecture equals TF-Slim's,
the numbers must be identical.  Models are built on the meta device (weights=None).
"""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch
import torchvision

import rfgraph


def _analyze(name: str, size: int) -> rfgraph.Analysis:
    with torch.device("meta"):
        model = torchvision.models.get_model(name, weights=None)
    return rfgraph.analyze(model, (1, 3, size, size))


@pytest.fixture(scope="module")
def vgg16():
    return _analyze("vgg16", 224)


@pytest.fixture(scope="module")
def inception_v3():
    return _analyze("inception_v3", 299)


def _check(record: rfgraph.NodeRF, rf: int, stride: int, padding: int | None) -> None:
    assert record.rf == (rf, rf)
    assert record.stride == (Fraction(stride), Fraction(stride))
    if padding is not None:
        assert record.padding == (Fraction(padding), Fraction(padding))


def test_alexnet_last_pool():
    # Distill: RF 195, stride 32.  torchvision pads AlexNet's first conv (padding=2),
    # so its offset differs from TF-Slim's 64: it is 64 + 2 = 66.
    record = _analyze("alexnet", 224)["features"]
    _check(record, 195, 32, 66)


@pytest.mark.parametrize(
    "node, rf, stride, padding",
    [
        ("features.4", 6, 2, 2),  # pool1
        ("features.9", 16, 4, 6),  # pool2
        ("features.16", 44, 8, 18),  # pool3
        ("features.23", 100, 16, 42),  # pool4
        ("features.30", 212, 32, 90),  # pool5
        ("features", 212, 32, 90),  # module name resolves to its last node
    ],
)
def test_vgg16_pools(vgg16, node, rf, stride, padding):
    _check(vgg16[node], rf, stride, padding)


@pytest.mark.parametrize(
    "node, rf, stride, padding",
    [("Mixed_5d", 127, 8, 50), ("Mixed_6e", 927, 16, 442), ("Mixed_7c", 1311, 32, 618)],
)
def test_inception_v3_mixed(inception_v3, node, rf, stride, padding):
    _check(inception_v3[node], rf, stride, padding)


@pytest.mark.parametrize(
    "name, layers",
    [
        ("resnet18", [(43, 4, 21), (99, 8, 49), (211, 16, 105), (435, 32, 217)]),
        ("resnet50", [(35, 4, 17), (91, 8, 45), (267, 16, 133), (427, 32, 213)]),
    ],
)
def test_torchvision_resnets(name, layers):
    analysis = _analyze(name, 224)
    for i, (rf, stride, padding) in enumerate(layers, start=1):
        _check(analysis[f"layer{i}"], rf, stride, padding)


def test_resnet_residual_paths():
    """In a bottleneck block the shortcut skips the 3x3 conv, so the smallest single
    path into layer1.0's add has RF of the stem (conv7/2 then maxpool3/2: 7 + 2*2 = 11),
    while the main path adds one 3x3 at stride 4: 11 + 2*4 = 19."""
    analysis = _analyze("resnet50", 224)
    record = analysis["layer1.0.add"]
    assert record.rf == (19, 19)
    assert record.rf_path_min == (11, 11)
    assert record.aligned
