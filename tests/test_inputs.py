"""rfgraph.inputs: the library boundary refuses shapes that are not ints, or that no tensor could have, with
one `InputShapeError` (before: floats truncated silently, ``100000000000000000000`` an allocator error with
1.5 KB of C++ frames); huge but valid sizes work without allocating activations."""

import resource
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

import rfgraph
from rfgraph.errors import InputShapeError, RFGraphError
from rfgraph.inputs import MAX_ELEMENTS, MAX_SIZE, check_input_shape, example_input


@pytest.mark.parametrize("shape", [(1, 3, 224.5, 224), (1, 3, 224.0, 224), (1, 3, "224", 224), (True, 3, 8, 8),
                                   (1, 3, None, 8)])
def test_non_integer_sizes_are_refused_never_truncated(shape):
    with pytest.raises(InputShapeError, match=r"has the size .* at dim \d: sizes must be ints"):
        check_input_shape(shape)
    with pytest.raises(InputShapeError):
        rfgraph.analyze(nn.Conv2d(3, 1, 3), shape)


def test_integer_types_of_numpy_and_torch_are_accepted():
    assert check_input_shape((np.int64(1), torch.tensor(3), 8, 8)) == (1, 3, 8, 8)
    assert check_input_shape(torch.Size([1, 3, 8, 8])) == (1, 3, 8, 8)


@pytest.mark.parametrize("size", [100000000000000000000, MAX_SIZE + 1])
def test_absurd_sizes_are_refused_with_the_limit(size):
    with pytest.raises(InputShapeError, match="too large .*at most 9223372036854775807 elements"):
        rfgraph.analyze(nn.Conv2d(3, 1, 3), (1, 3, size, size))


def test_too_many_elements_is_refused_even_when_each_size_is_allowed():
    with pytest.raises(InputShapeError, match="too large"):
        check_input_shape((1, 3, MAX_SIZE, MAX_SIZE))
    assert MAX_ELEMENTS == 2**63 - 1


def test_cli_huge_size_is_one_line_error():
    out = subprocess.run([sys.executable, "-m", "rfgraph", "torchvision:resnet18", "--input-size",
                          "100000000000000000000"], capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert out.stderr.startswith("rfgraph: error:") and "too large" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "c10" not in out.stderr


def test_example_input_of_a_cpu_model_is_fake_and_allocates_nothing():
    x = example_input(nn.Conv2d(3, 1, 3), (1, 3, 100000, 100000), torch.float32)
    assert tuple(x.shape) == (1, 3, 100000, 100000) and x.device.type == "cpu"
    assert type(x).__name__ == "FakeTensor"
    with torch.device("meta"):
        m = nn.Conv2d(3, 1, 3)
    assert example_input(m, (1, 3, 8, 8), torch.float32).is_meta


_MEMORY_SCRIPT = textwrap.dedent("""
    import resource, sys, time, torch, torchvision, rfgraph
    model = torchvision.models.resnet18(weights=None)           # a CPU model with real weights
    size = int(sys.argv[1])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    a = rfgraph.analyze(model, (1, 3, size, size))
    print(a["layer4"].rf[0], time.perf_counter() - t,
          (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)
""")


@pytest.mark.parametrize("size", [20000, 100000])
def test_cpu_model_at_huge_sizes_allocates_no_activations(size):
    """Before: +4.6 GB and 16.5 s at 20000^2, an allocator RuntimeError at 100000^2."""
    out = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, str(size)], capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    rf, seconds, grown_mb = out.stdout.split()
    assert int(rf) == 435
    assert float(grown_mb) < 100  # an activation of 1x3x20000x20000 float32 alone is 4800 MB


def test_channels_last_input_names_the_layer_and_the_layout():
    with torch.device("meta"):
        import torchvision

        model = torchvision.models.resnet50(weights=None)
    with pytest.raises(InputShapeError) as info:
        rfgraph.analyze(model, (1, 224, 224, 3))
    msg = str(info.value)
    assert msg.startswith("expected 3 input channels at conv1, got 224; is the input channels-last?")
    assert "While executing" not in msg


def test_error_is_rfgraph_error_for_the_cli():
    assert issubclass(InputShapeError, RFGraphError)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss > 0
