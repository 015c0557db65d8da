"""`rfgraph.cli.options`: one input-shape parser and one ``--nodes`` splitter, with one set of checks for all commands."""

from __future__ import annotations

import pytest

from rfgraph import cli
from rfgraph.cli.options import EXIT_USAGE, CLIError, parse_ints, resolve_shape, split_names


def test_parse_ints():
    assert parse_ints("1,3,224,224", "x") == (1, 3, 224, 224)
    assert parse_ints("1x3x224x224", "x") == (1, 3, 224, 224)
    with pytest.raises(CLIError):
        parse_ints("1,a", "x")


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("1.5", "'1.5' is not an integer"),
        ("224,22.5", "'22.5' is not an integer"),
        ("-3", "-3' is a non-positive"),
        ("1,3,0,224", "'0' is a non-positive"),
        (",,,", "has an empty item"),
        ("1,,3", "has an empty item"),
        ("", "is empty"),
        ("1e20", "'1e20' is not an integer"),
        ("100000000000000000000", "is too large (at most 2**31)"),
        ("2147483649", "is too large"),
        ("9" * 5000, "(5000 characters) is too large"),
        ("nan", "is not an integer"),
    ],
)
def test_bad_sizes(text, fragment):
    with pytest.raises(CLIError) as exc:
        parse_ints(text, "--input-size")
    assert exc.value.code == EXIT_USAGE and fragment in str(exc.value)
    assert "\n" not in str(exc.value) and len(str(exc.value)) < 200


def test_minimum_zero_for_indices():
    assert parse_ints("0,7", "--unit", minimum=0) == (0, 7)
    with pytest.raises(CLIError, match="below 0"):
        parse_ints("0,-1", "--unit", minimum=0)


def test_split_names():
    assert split_names(None) == [] and split_names("") == []
    assert split_names(" layer1 ,layer4") == ["layer1", "layer4"]
    for text in (",,,", "a,,b", "a,"):
        with pytest.raises(CLIError, match="has an empty name") as exc:
            split_names(text)
        assert exc.value.code == EXIT_USAGE


def test_resolve_shape():
    assert resolve_shape("f.py:m", (1, 3, 224, 224)) == (1, 3, 224, 224)
    assert resolve_shape("f.py:m", (1, 3, 224, 224), input_size=(64,)) == (1, 3, 64, 64)
    assert resolve_shape("f.py:m", (1, 3, 224, 224), input_size=(64, 32)) == (1, 3, 64, 32)
    assert resolve_shape("f.py:m", (1, 3, 224, 224), input_shape=(1, 1, 16)) == (1, 1, 16)  # a user model may
    with pytest.raises(CLIError, match="takes 4-D inputs"):
        resolve_shape("torchvision:resnet18", (1, 3, 224, 224), input_shape=(1, 3, 16))
    with pytest.raises(CLIError, match="has 2 dims"):
        resolve_shape("f.py:m", (1, 3, 224, 224), input_shape=(1, 3))


# -- the same checks through every command ------------------------------------------------------------


_M = "torchvision:resnet18"


@pytest.mark.parametrize(
    "argv, fragment",
    [
        ([_M, "--input-size", "1.5"], "--input-size must be comma-separated integers"),
        ([_M, "--input-size", "-5"], "--input-size '-5': '-5' is a non-positive"),
        ([_M, "--input-shape=1,3,-224,224"], "'-224' is a non-positive"),
        ([_M, "--input-size", "1e20"], "'1e20' is not an integer"),
        ([_M, "--input-size", "100000000000000000000"], "too large"),
        ([_M, "--nodes", ",,,"], "--nodes ',,,' has an empty name"),
        (["box", _M, "--node", "layer3", "--unit", "1.5"], "--unit must be comma-separated integers"),
        (["box", _M, "--node", "layer3", "--input-size", "0"], "--input-size '0'"),
        (["box", _M, "--node", "layer3"], "give --unit"),
        (["sizes", _M, "--input-shape", "1,3,,224"], "has an empty item"),
        (["target", _M, "--node", "layer3", "--rf=-5"], "--rf '-5': '-5' is a non-positive value"),
        (["target", _M, "--node", "layer3", "--rf", "12.5"], "--rf must be comma-separated integers"),
        (["target", _M, "--node", "layer3", "--rf", "3,4"], "--rf takes one integer"),
        (["time", _M, "--sample-rate", "0"], "--sample-rate '0'"),
        (["erf", _M, "--size", "1e20"], "--size must be comma-separated integers"),
        (["erf", _M, "--size", "-224"], "'-224' is a non-positive"),
        (["erf", _M, "--input-shape", "1,3,99999999999"], "too large"),
        (["erf", _M, "--noise", "0"], "--noise '0'"),
        (["erf", _M, "--mean", "a,b"], "--mean must be comma-separated numbers"),
        (["erf", _M, "--nodes", ",,,"], "--nodes ',,,' has an empty name"),
        (["probe", _M, "--input-shape", "1.5,3"], "--input-shape must be comma-separated integers"),
        (["probe", _M, "--nodes", ",,,"], "has an empty name"),
        (["zoo", "--jobs", "0"], "--jobs '0'"),
        (["zoo", "--models", "a,,b"], "--models 'a,,b' has an empty name"),
    ],
)
def test_bad_values_are_usage_errors(one_line_error, argv, fragment):
    """Each bad value fails before any model is built: one line, exit code 2."""
    one_line_error(cli.main(argv), EXIT_USAGE, fragment)
