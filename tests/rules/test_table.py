"""The rule table (`rfgraph.rules.table`): every member of a named set meets the set's criterion
(checked on the op's Jacobian), the sets are disjoint and registered, the defaults are read-only,
and an op the table lacks is reported, not guessed.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from rfcheck import Lambda, check, last
from torch import nn
from torchvision.ops.stochastic_depth import stochastic_depth

from rfgraph.rules import DEFAULT_RULES
from rfgraph.rules.pointwise import channel_mixing_rule, glu_rule, identity_rule, normalize_rule
from rfgraph.rules.table import (
    CHANNEL_MIXING_FUNCTIONS,
    CHANNEL_MIXING_MODULES,
    IDENTITY_FUNCTIONS,
    IDENTITY_MODULES,
    MERGE_FUNCTIONS,
    MODULE_RULES,
    windowed_functions,
    windowed_modules,
)

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


# ---------------------------------------------------------------------------
# every member of a set satisfies the set's criterion
# ---------------------------------------------------------------------------


def _reads(op, channels: int = 4, n: int = 6) -> torch.Tensor:
    """Which input (channel, position) each output (channel, position) depends on: a boolean
    ``(C_out, n_out, C_in, n)`` Jacobian pattern of ``op`` on a random ``(1, C, n)`` float64 input."""
    torch.manual_seed(0)
    x = torch.rand(1, channels, n, dtype=torch.float64) + 0.5
    jac = torch.autograd.functional.jacobian(op, x)  # (1, C_out, n_out, 1, C_in, n)
    return jac[0, :, :, 0].abs() > 0


def _identity_like(op) -> bool:
    """Reads exactly position u of each channel and keeps channels apart: out[c, u] depends on in[c, u] only."""
    pattern = _reads(op)
    c, n = pattern.shape[0], pattern.shape[1]
    allowed = torch.zeros_like(pattern)
    for i in range(c):
        for u in range(n):
            allowed[i, u, i, u] = True
    return bool((pattern & ~allowed).sum() == 0)


def _as_1d(m: nn.Module, extra: int):
    """``m`` applied to a ``(1, C, n)`` input through ``extra`` trailing size-1 dims (2-D / 3-D variants)."""

    def op(t):
        for _ in range(extra):
            t = t.unsqueeze(-1)
        out = m(t)
        for _ in range(extra):
            out = out.squeeze(-1)
        return out

    return op


#: constructor arguments where the defaults do not do; ``None``: not runnable on CPU here
_ARGS = {nn.Threshold: (0.5, 0.0), nn.PReLU: (4,), nn.BatchNorm1d: (4,), nn.BatchNorm2d: (4,),
         nn.BatchNorm3d: (4,), nn.SyncBatchNorm: None}
_EXTRA = {nn.BatchNorm2d: 1, nn.BatchNorm3d: 2, nn.Dropout2d: 1, nn.Dropout3d: 2}


@pytest.mark.parametrize("cls", sorted(IDENTITY_MODULES, key=lambda c: c.__name__), ids=lambda c: c.__name__)
def test_identity_modules_meet_their_criterion(cls):
    """Every identity module (in eval mode) reads exactly position u of each channel."""
    args = _ARGS.get(cls, ())
    if args is None:
        pytest.skip(f"{cls.__name__} needs a process group; same op as BatchNorm in eval mode")
    m = cls(*args).double().eval()
    assert _identity_like(_as_1d(m, _EXTRA.get(cls, 0)))


IDENTITY_CALLS = {
    "F.relu": F.relu, "F.gelu": F.gelu, "F.silu": F.silu, "F.hardswish": F.hardswish, "F.prelu":
    lambda x: F.prelu(x, torch.full((4,), 0.2, dtype=x.dtype)), "F.dropout": lambda x: F.dropout(x, 0.5, False),
    "F.batch_norm": lambda x: F.batch_norm(x, torch.zeros(4, dtype=x.dtype), torch.ones(4, dtype=x.dtype)),
    "torch.exp": torch.exp, "torch.clamp": lambda x: torch.clamp(x, 0.6, 1.2), "torch.sqrt": torch.sqrt,
    "stochastic_depth": lambda x: stochastic_depth(x, 0.5, "row", training=False),
}


@pytest.mark.parametrize("name", list(IDENTITY_CALLS))
def test_identity_functions_meet_their_criterion(name):
    assert _identity_like(IDENTITY_CALLS[name])


@pytest.mark.parametrize(
    "op",
    [nn.ChannelShuffle(2), nn.LocalResponseNorm(3), lambda x: F.normalize(x, dim=1), nn.GLU(1)],
    ids=["ChannelShuffle", "LocalResponseNorm", "normalize", "GLU"],
)
def test_channel_mixers_break_the_identity_criterion(op):
    """Why these left the identity set: some output channel reads another input channel."""
    pattern = _reads(op)
    assert not _identity_like(op)
    # but still position by position: out[:, u] reads in[:, u] only
    c_out, n_out, c_in, n = pattern.shape
    for u in range(n_out):
        for v in range(n):
            if u != v:
                assert not pattern[:, u, :, v].any()


def test_sets_are_disjoint_and_registered():
    assert not IDENTITY_MODULES & set(CHANNEL_MIXING_MODULES)
    assert not IDENTITY_FUNCTIONS & set(CHANNEL_MIXING_FUNCTIONS)
    assert not IDENTITY_FUNCTIONS & MERGE_FUNCTIONS
    for cls in IDENTITY_MODULES:
        assert DEFAULT_RULES.modules[cls] is identity_rule
    for cls, rule in CHANNEL_MIXING_MODULES.items():
        assert DEFAULT_RULES.modules[cls] is rule
    assert DEFAULT_RULES.modules[nn.GLU] is glu_rule
    assert DEFAULT_RULES.functions[F.normalize] is normalize_rule
    for overload in (torch.ops.aten.channel_shuffle.default, torch.ops.aten.native_channel_shuffle.default):
        assert DEFAULT_RULES.functions[overload] is channel_mixing_rule


def test_family_factories_cover_every_dimension():
    for nd in (1, 2, 3):
        modules, functions = windowed_modules(nd), windowed_functions(nd)
        assert getattr(nn, f"Conv{nd}d") in modules and getattr(nn, f"LPPool{nd}d") in modules
        assert getattr(F, f"max_pool{nd}d") in functions and getattr(F, f"avg_pool{nd}d") in functions
        for key in (*modules, *functions):
            assert key in DEFAULT_RULES.modules or key in DEFAULT_RULES.functions


def test_the_table_is_read_only():
    with pytest.raises(TypeError):
        DEFAULT_RULES.functions[torch.relu] = identity_rule
    assert isinstance(MODULE_RULES, dict)  # the literal itself; DEFAULT_RULES holds a read-only copy
