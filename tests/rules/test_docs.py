"""The examples of docs/rules.md run as written: a custom-module rule and a custom-function rule.

Each ```python block is executed in a fresh module namespace; the blocks assert
their own hand-derived values (derivations in the guide).  The function example
also shows that a function given a rule is kept whole by fx without passing it
as ``autowrap_functions``: without the rule, tracing that function fails.
"""

from __future__ import annotations

import re
import types
from pathlib import Path

import pytest

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "rules.md"


def _blocks() -> list[str]:
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.S)
    return [b for b in blocks if "assert" in b]


def _run(code: str, name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    exec(compile(code, f"{GUIDE}:{name}", "exec"), module.__dict__)
    return module


def test_guide_has_both_examples():
    blocks = _blocks()
    assert len(blocks) == 2
    assert "modules={MedianPool2d" in blocks[0] and "functions={causal_mean" in blocks[1]


def test_module_rule_example():
    m = _run(_blocks()[0], "rules_doc_module")
    assert m.analysis["1"].op == "MedianPool2d"


def test_function_rule_example():
    m = _run(_blocks()[1], "rules_doc_function")
    assert m.analysis["causal_mean"].source == "symbolic"


def test_function_without_rule_is_not_kept_whole():
    """Control: without the rule fx cannot trace through ``causal_mean`` (``range`` of a traced size),
    so the analysis falls back to ``torch.export``, which unrolls the loop into aten ops: no
    ``causal_mean`` node.  With the rule (above) it is one fx node and symbolic."""
    import rfgraph

    code = _blocks()[1].split("rules = rfgraph.DEFAULT_RULES")[0]
    m = _run(code, "rules_doc_function_norule")
    a = rfgraph.analyze(m.Smoother(), (1, 1, 50), fallback="unknown")
    assert a.meta["trace"] == "export"
    assert "causal_mean" not in a.nodes


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__])
