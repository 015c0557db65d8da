"""The rule table (`rfgraph.rules.table`) and what it does with ops it lacks.

Notation: ``n`` input length, ``k`` kernel, ``s`` stride, ``p`` padding, ``d``
dilation; ``L(u)``/``H(u)`` the first/last input coordinate read by output
``u`` (unclipped).  Every analysis also checks each node's shape against what
torch computes on a real tensor (`rfcheck.check`), and where cheap, every
output unit's window against a numeric back-propagation (`assert_windows_match`).
"""

from __future__ import annotations

import torch
from rfcheck import Lambda, check, last

# ---------------------------------------------------------------------------
# unknown ops
# ---------------------------------------------------------------------------


def test_unknown_op_is_reported_not_guessed():
    """With fallback="unknown", an op with no rule (torch.fft.fft2 along H, W) makes the node and its
    consumers unknown, op named; ``.real`` of the complex result is position by position and keeps the
    (unknown) state.  With the default (probe) fallback the node is never silently symbolic."""
    model = Lambda(lambda x: torch.fft.fft2(x).real + 1)
    a = check(model, (1, 1, 4, 4), fallback="unknown")
    r = last(a)
    assert r.source == "unknown"
    assert "fft" in r.reason
    assert r.rf == (None, None)
    assert a["getattr"].source == "unknown" and a["getattr"].shape == (1, 1, 4, 4)
    assert check(model, (1, 1, 4, 4))["fft_fft2"].source in ("probed", "unknown")

