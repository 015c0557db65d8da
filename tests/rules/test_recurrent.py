"""Recurrent layers (`rfgraph.rules.recurrent`): ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` over the time
axis of a conv feature map (torchaudio DeepSpeech), ``batch_first`` both ways, stacked layers.

conv k=3 p=1 reads ``[u-1, u+1]``; a unidirectional layer's step ``t`` reads steps ``0..t``: the output
reads input ``[-1, t+1]`` (rf on ``n = 12`` steps: 14 at the last step, 3 at the first); bidirectional:
global along time; ``h_n`` / ``c_n``: global.  Every step's window is checked against back-propagation
(float64, small positive recurrent weights so that tanh / sigmoid do not saturate).
"""

from __future__ import annotations

import pytest
import torch
from rfcheck import check, numeric_window
from torch import nn

from rfgraph.windows import causal_window

N = 12


class Seq(nn.Module):
    def __init__(self, kind: str, batch_first: bool, bidirectional: bool, layers: int = 2):
        super().__init__()
        self.batch_first = batch_first
        self.conv = nn.Conv1d(2, 3, 3, padding=1)
        self.rnn = getattr(nn, kind)(3, 4, num_layers=layers, batch_first=batch_first,
                                     bidirectional=bidirectional)
        self.out = nn.Conv1d(4 * (2 if bidirectional else 1), 2, 1)

    def forward(self, x):
        f = self.conv(x)  # (N, C, T)
        seq = f.permute(0, 2, 1) if self.batch_first else f.permute(2, 0, 1)
        y, state = self.rnn(seq)
        y = y.permute(0, 2, 1) if self.batch_first else y.permute(1, 2, 0)
        h = state[0] if isinstance(state, tuple) else state
        return self.out(y), h


def _small_weights(model: nn.Module) -> nn.Module:
    model = model.double().eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            # no bias, recurrent gain about 1 per step (4 hidden units of ~0.25), small inputs
            scale = 0.0 if "bias" in name else 0.25 if ".rnn." in name else 0.1
            p.copy_((torch.rand(p.shape, generator=g, dtype=p.dtype) + 0.5) * scale)
    model._rfcheck_positive = True
    return model


class First(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x)[0]


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_recurrent_layers_against_backprop(kind, batch_first, bidirectional):
    model = Seq(kind, batch_first, bidirectional)
    a = check(model, (1, 2, N), fallback="unknown")
    r = a["out"]
    assert r.source == "symbolic" and a.meta["unknown_ops"] == {}
    if bidirectional:
        assert r.is_global == (True,)
    else:
        assert (r.rf, r.rf_min, r.start) == ((N + 2,), (3,), (-1,))
        assert [(r.lo[0](u), r.hi[0](u)) for u in range(N)] == [(-1, u + 1) for u in range(N)]
    assert a["getitem_1"].is_global == (True,)  # h_n, or (h_n, c_n) for LSTM
    probe_model = _small_weights(First(model))
    for u in range(N):
        expected = (0, N - 1) if bidirectional else (0, min(u + 1, N - 1))
        assert numeric_window(probe_model, (1, 2, N), 0, u) == expected, u


def test_spatial_features_in_the_feature_dim_become_global():
    """DeepSpeech: a 2-D conv map (N, C, F, T) viewed as (N, C*F, T), then (T, N, C*F): the frequency
    axis sits in the feature dim, which the layer mixes whole: global along F, causal along T."""

    class DS(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3, padding=1)
            self.rnn = nn.GRU(2 * 5, 3)

        def forward(self, x):
            f = self.conv(x)
            n, c, fr, t = f.shape
            y, _ = self.rnn(f.view(n, c * fr, t).permute(2, 0, 1))
            return y.permute(1, 2, 0)

    r = check(DS(), (1, 1, 5, 8), fallback="unknown")["permute_1"]
    assert r.is_global == (True, False)
    assert (r.rf[1], r.rf_min[1], r.start[1]) == (10, 3, -1)


def test_input_dependent_initial_state_is_not_guessed():
    """``h_0`` computed from the input: handed to the fallback (unknown), never a guess."""

    class H0(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.RNN(2, 2)

        def forward(self, x):
            seq = x.permute(2, 0, 1)
            return self.rnn(seq, seq.mean(0, keepdim=True))[0]

    r = check(H0(), (1, 2, 6), fallback="unknown")["getitem"]
    assert r.source == "unknown" and "initial state" in r.reason


def test_causal_window_maps():
    low, high = causal_window(5)
    assert [low(u) for u in range(5)] == [0] * 5 and [high(u) for u in range(5)] == list(range(5))
    assert low.slope == high.slope == 1  # both slope 1 on the domain: merges with ordinary paths
