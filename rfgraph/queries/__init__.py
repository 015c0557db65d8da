"""Design queries: the questions asked after "what is the receptive field?" (one module per question).

Pure functions over an `Analysis` (and, where input sizes matter, over
re-runs of `rfgraph.analyze` at other sizes through a `Resizer`):

- `unit_box` / `units_seeing`: the input box a unit sees (clipped and
  unclipped) and, inversely, the units of a node that see an input pixel or box
  (the monotone window maps are inverted by bisection, never scanned);
- `minimal_input_size`, `size_classes` (sizes ``n ≡ r (mod m)`` for which
  every strided layer divides evenly, or for which every feature grid is
  centred on the input), `coverage` (the largest input a node still sees whole);
- `alignment_report`: every merge, each incoming path's stride and centre, the
  likely cause of a misalignment and the input sizes that would align it;
- `declared_strides` / `lint`: strides that model libraries declare (timm's
  ``feature_info``, torchvision SSD's ``steps``) against the computed ones;
- `time_summary`: RF, stride, past and lookahead of 1-D sequence models in
  samples and milliseconds, and whether the model is causal;
- `target_rf`: how far each stage is from a target RF, and the fewest kernel
  or dilation changes that reach it.

All numbers are exact (``int`` / ``Fraction``).

>>> import torch.nn as nn, rfgraph
>>> net = nn.Sequential(nn.Conv1d(1, 1, 3), nn.Conv1d(1, 1, 3, stride=2), nn.Conv1d(1, 1, 3))
>>> a = rfgraph.analyze(net, (1, 1, 20))
>>> unit_box(a, "2", 1).box
((2, 10),)
>>> units_seeing(a, "2", (9,))
((range(1, 5),),)
"""

from .align import MergeReport, PathInfo, alignment_report
from .boxes import Box, UnitBox, unit_box, units_seeing
from .common import Resizer
from .lint import Declared, LintRow, declared_strides, lint
from .sizes import Coverage, SizeClasses, coverage, first_covering, minimal_input_size, size_classes
from .target import TARGET_ASSUMPTIONS, LayerChange, TargetPlan, target_rf
from .timing import TimeSummary, time_summary

__all__ = [
    "Resizer",
    "Box",
    "UnitBox",
    "unit_box",
    "units_seeing",
    "minimal_input_size",
    "SizeClasses",
    "size_classes",
    "Coverage",
    "coverage",
    "first_covering",
    "PathInfo",
    "MergeReport",
    "alignment_report",
    "Declared",
    "LintRow",
    "declared_strides",
    "lint",
    "TimeSummary",
    "time_summary",
    "TARGET_ASSUMPTIONS",
    "LayerChange",
    "TargetPlan",
    "target_rf",
]
