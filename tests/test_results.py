"""rfgraph.results: hostile or broken report files raise `RFGraphError` and nothing else (the file is checked
against `REPORT_SCHEMA` with the jsonschema package first); YAML python tags stay refused."""

import copy
import json

import pytest
from torch import nn

import rfgraph
from rfgraph.errors import NodeNameError, RFGraphError
from rfgraph.results import REPORT_SCHEMA, Analysis, validate_report


@pytest.fixture(scope="module")
def good():
    net = nn.Sequential(nn.Conv2d(1, 1, 3), nn.Upsample(scale_factor=2), nn.Conv2d(1, 1, 3, stride=2))
    return rfgraph.analyze(net, (1, 1, 16, 16)).to_dict()


def _with(data, path, value):
    d = copy.deepcopy(data)
    target = d
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return d


CASES = {
    # the cases of issue 15 and what they raised before
    "nodes are strings (AttributeError)": (("nodes",), ["x"], r"nodes/0: 'x' is not of type 'object'"),
    "stride 1/0 (ZeroDivisionError)": (("nodes", 2, "axes", 0, "stride"), "1/0", r"nodes/2/axes/0/stride"),
    "source evil (accepted, KeyError in counts)": (("nodes", 1, "source"), "evil", r"'evil' is not one of"),
    "rf a string (TypeError)": (("nodes", 1, "axes", 0, "rf"), "abc", r"nodes/1/axes/0/rf: 'abc' is not of type"),
    "rf a list (TypeError)": (("nodes", 1, "axes", 0, "rf"), [1], r"nodes/1/axes/0/rf"),
    "shape a string": (("nodes", 1, "shape"), "1x1", r"nodes/1/shape"),
    "input_shape null": (("input_shape",), None, r"input_shape: None is not of type 'array'"),
    "input_shape floats": (("input_shape",), [1, 1, 16.5, 16], r"input_shape/2"),
    "axes a dict": (("nodes", 1, "axes"), {"a": 1}, r"nodes/1/axes"),
    "axis out of range": (("nodes", 1, "axes", 0, "axis"), 7, r"axes \[1, 7\]; the input has 2 spatial axes"),
    "window map table too short": (("nodes", 1, "axes", 0, "lo"), {"period": 3, "advance": 1, "table": [0]},
                                   r"period >= 1 and a table of that length"),
    "window map period 0": (("nodes", 1, "axes", 0, "hi"), {"period": 0, "advance": 1, "table": []},
                            r"nodes/1/axes/0/hi"),
    "name not a string": (("nodes", 1, "name"), 5, r"nodes/1/name: 5 is not of type 'string'"),
    "inputs a string": (("nodes", 1, "inputs"), 7, r"nodes/1/inputs"),
    "global a string": (("nodes", 1, "axes", 0, "global"), "yes", r"nodes/1/axes/0/global"),
    "schema_version true": (("schema_version",), True, r"unsupported rfgraph report schema_version True"),
    "schema_version 3": (("schema_version",), 3, r"unsupported rfgraph report schema_version 3"),
    "deep nesting (RecursionError)": (("meta",), {"x": json.loads("[" * 200 + "]" * 200)},
                                      r"nested deeper than 32 levels"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_broken_reports_raise_rfgraph_error_naming_the_place(good, case):
    path, value, message = CASES[case]
    bad = _with(good, path, value)
    for read in (Analysis.from_dict, lambda d: Analysis.from_json(json.dumps(d)),
                 lambda d: Analysis.from_yaml(json.dumps(d))):  # JSON is YAML
        with pytest.raises(RFGraphError, match=message):
            read(bad)


@pytest.mark.parametrize("text", ["[" * 100000 + "]" * 100000, "{" * 5000, "1" * 5000, "", "null", "[1]", '"x"'])
def test_broken_json_text_raises_rfgraph_error(text):
    with pytest.raises(RFGraphError):
        Analysis.from_json(text)


@pytest.mark.parametrize("text", [
    "!!python/object/apply:os.system ['echo pwned']",
    "schema_version: 1\ninput_shape: !!python/tuple [1, 1, 8]\n",
    "a: " + "[" * 5000 + "]" * 5000,
    "a: [",
])
def test_yaml_python_tags_and_broken_yaml_are_refused(text):
    with pytest.raises(RFGraphError):
        Analysis.from_yaml(text)


def test_good_report_round_trips_and_validates(good):
    validate_report(good)
    a = Analysis.from_dict(good)
    assert a.to_dict()["nodes"] == good["nodes"]
    assert Analysis.from_json(a.to_json()).to_json() == a.to_json()
    assert REPORT_SCHEMA["properties"]["schema_version"] == {"enum": [1, 2]}  # 2: finite maps; 1 still read


def test_fraction_strings_and_integers_are_both_read(good):
    d = _with(good, ("nodes", 2, "axes", 0, "stride"), 1)
    assert Analysis.from_dict(d).records[2].stride[0] == 1


def test_non_string_node_names_are_a_clear_error(good):
    a = Analysis.from_dict(good)
    for key in (None, 0, 1.5, ("a",)):
        with pytest.raises(NodeNameError, match="nodes are named by strings"):
            a[key]
        assert key not in a
    assert a[a.records[1]] is a.records[1]
