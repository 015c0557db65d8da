"""Recurrent layers (``nn.RNN``, ``nn.LSTM``, ``nn.GRU``) over a time dim.

Input ``(T, N, C)``, ``(N, T, C)`` with ``batch_first``, or unbatched
``(T, C)``.  At each step the layer mixes all ``C`` input features (spatial
positions held in the feature dim, e.g. a conv feature map's height flattened
into channels, become global) and carries a state along time:

* unidirectional: output step ``t`` reads input steps ``0 .. t`` -- a causal
  prefix, ``L(u) = 0``, ``H(u) = u`` on the ``T`` steps.  ``L`` is stored as a
  table over the whole length (period ``T``, advance ``T``) so that both maps
  have slope 1 and merge with ordinary paths; it is exact on every step that
  exists (`rfgraph.windows.causal_window`).
  Stacked layers compose to the same prefix.
* bidirectional (any layer): every step reads the whole time dim: global.
* the final states ``h_n`` (and ``c_n``) have read every step: global along
  time.

An initial state ``h_0`` computed from the input is not tracked (handed to
the fallback); a constant one (zeros, a parameter) changes nothing.
"""

from __future__ import annotations

from ..values import Axis, SymTensor, collect
from ..windows import causal_window
from .call import OpCall, hand_over, tensor_arg
from .mixing import project

__all__ = ["recurrent_rule"]


def recurrent_rule(call: OpCall):
    """``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU``: ``(output, h_n)``, or ``(output, (h_n, c_n))`` for LSTM."""
    m = call.module
    x = tensor_arg(call)
    what = call.describe()
    states = collect((call.args[1:], call.kwargs), SymTensor)
    if any(s.unknown or s.axis_fields() or s.global_context for s in states):
        return hand_over(call, x, "an initial state computed from the input is not tracked; no exact rule")
    batched = x.ndim == 3
    t = 1 if (m.batch_first and batched) else 0
    directions = 2 if m.bidirectional else 1
    proj = getattr(m, "proj_size", 0) or 0
    out_size = proj or m.hidden_size
    mixed = project(x, directions * out_size, what)
    if mixed.unknown:
        return hand_over(call, x, mixed.unknown)
    tag = mixed.tags[t]
    local = tag is not None and any(not f.is_global for _, f in tag.items())
    if local and not isinstance(tag, Axis):
        return hand_over(call, x, f"the time dim {t} holds flattened or shuffled spatial positions; "
                                  "a recurrence along it is no window map")
    n = x.shape[t]
    if m.bidirectional:
        out = mixed.globalize([t], what)
    elif local:
        low, high = causal_window(n)
        out = mixed.window(t, low, high, n, what)
    else:
        out = mixed
    final = mixed.reduce([t], keepdim=False, what=what)  # (N, D*H) or (D*H,): has read every step
    batch_tags = final.tags[:-1]
    layers = directions * m.num_layers
    h_n = final.like(shape=(layers, *final.shape[:-1], out_size), tags=(None, *batch_tags, None))
    if type(m).__name__ == "LSTM" or getattr(m, "mode", "") == "LSTM":
        c_n = final.like(shape=(layers, *final.shape[:-1], m.hidden_size), tags=(None, *batch_tags, None))
        return out, (h_n, c_n)
    return out, h_n
