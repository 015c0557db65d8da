"""The rule registry: one small function per op family, and the table that maps ops to them.

* `call`: what a rule sees (`OpCall`), the rule signature (`Rule`), `RuleSet`
  and its one `RuleSet.lookup`, and helpers shared by every family.
* one module per op family: `windowed` (conv, pool, resampling, padding,
  pixel shuffle), `pointwise` (identity, channel mixing, elementwise merges,
  dtype), `shapes` (reshape, permute, index, split, cat, stack),
  `mixing` (reductions, linear, contractions, attention, norms),
  `rearrange` (flip, roll, select, spatial concat), `torchvision` (Swin,
  MaxViT, MViT blocks), `aten` (the ``torch.export`` spellings).
* `table`: the registry itself, as dict literals, and `DEFAULT_RULES`.

Writing a rule of your own: see ``docs/rules.md``.
"""

from __future__ import annotations

from ..windows import adaptive_window, conv_window, interpolate_window, pool_window, transposed_window
from .call import OpCall, Rule, RuleSet, describe_target, hand_over
from .table import DEFAULT_RULES, named_function_rules

__all__ = [
    "OpCall",
    "Rule",
    "RuleSet",
    "DEFAULT_RULES",
    "named_function_rules",
    "describe_target",
    "hand_over",
    "conv_window",
    "pool_window",
    "transposed_window",
    "adaptive_window",
    "interpolate_window",
]
