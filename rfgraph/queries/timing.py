"""`time_summary`: RF, stride, past and lookahead of 1-D sequence models in samples and milliseconds, and causality."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from math import lcm
from typing import Union

from ..algebra import FiniteMap
from ..errors import InputShapeError
from ..results import Analysis
from .common import axis_length, node_record, require_local

__all__ = ["TimeSummary", "time_summary"]

# ---------------------------------------------------------------------------
# time and physical units
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TimeSummary:
    """Receptive field of a 1-D node in samples and milliseconds.

    Unit ``u`` is anchored at input sample ``stride * u`` (the position its
    index maps to on the input grid).  ``past`` is the most samples before the
    anchor it reads (``max(stride*u - lo(u))``), ``lookahead`` the most after
    (``max(hi(u) - stride*u)``); the node is causal when ``lookahead <= 0``.
    """

    node: str
    sample_rate: Fraction
    rf: int
    stride: Fraction
    past: Fraction
    lookahead: Fraction

    @property
    def causal(self) -> bool:
        return self.lookahead <= 0

    def ms(self, samples: Union[int, Fraction]) -> Fraction:
        """Samples to milliseconds, exactly."""
        return Fraction(samples) * 1000 / self.sample_rate

    @property
    def rf_ms(self) -> Fraction:
        return self.ms(self.rf)

    @property
    def stride_ms(self) -> Fraction:
        return self.ms(self.stride)

    @property
    def past_ms(self) -> Fraction:
        return self.ms(self.past)

    @property
    def lookahead_ms(self) -> Fraction:
        return self.ms(self.lookahead)


def time_summary(analysis: Analysis, node: str, sample_rate: Union[int, Fraction]) -> TimeSummary:
    """RF, stride, past context and lookahead of ``node`` of a 1-D model, in samples (and ms)."""
    if analysis.ndim != 1:
        raise InputShapeError(
            f"time units need a 1-D model input (N, C, L); this analysis has input shape {analysis.input_shape}"
        )
    sample_rate = Fraction(sample_rate)
    if sample_rate <= 0:
        raise ValueError(f"sample rate must be positive, got {sample_rate}")
    r = node_record(analysis, node)
    require_local(r)
    lo, hi, s = r.lo[0], r.hi[0], r.stride[0]
    if isinstance(lo, FiniteMap) or isinstance(hi, FiniteMap):  # the mean slope anchors the units
        units = [u for u in range(axis_length(r, 0)) if lo(u) is not None]
    else:
        units = range(lcm(lo.period, hi.period, s.denominator))
    past = max(s * u - lo(u) for u in units)
    ahead = max(hi(u) - s * u for u in units)
    return TimeSummary(r.name, sample_rate, r.rf[0], s, Fraction(past), Fraction(ahead))
