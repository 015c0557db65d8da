"""Token layouts end to end: window / shifted-window / grid attention, unfold-fold patches, a class token
concatenated and sliced off, patch merging, written with reshape / permute / roll as timm, transformers
and monai write them.

Every case is hand-derived (``conv k=3 p=1`` first, so that the attention's window shows around a field
of 3) and compared unit by unit with a numeric back-propagation (`rfcheck.assert_windows_match`) and
with the probe (`rfgraph.probe`).  Attention here is written by hand (``softmax(q k^T) v``); windows of
``ws`` over ``n`` positions, shift ``s`` (a roll by ``-s`` before the partition, ``+s`` after).
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from rfcheck import Lambda, assert_windows_match, check, last
from torch import nn

import rfgraph


class Scale(nn.Module):
    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor


class Attention(nn.Module):
    """Hand-written single-head attention over dim 1 of ``(B, N, C)``, with an optional additive mask."""

    def __init__(self, c: int):
        super().__init__()
        self.qkv = nn.Linear(c, 3 * c)
        self.proj = nn.Linear(c, c)

    def forward(self, x, mask=None):
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        a = (q * 1e-3) @ k.transpose(-2, -1)  # small logits: the numeric check's softmax must not saturate
        if mask is not None:
            a = a + mask
        return self.proj(a.softmax(dim=-1) @ v)


def swin_mask(n: int, ws: int, s: int) -> torch.Tensor:
    """Swin's mask for the rolled windows: regions that the roll brought together do not mix (-100)."""
    img = torch.zeros(1, n, n, 1)
    cnt = 0
    for h in (slice(0, -ws), slice(-ws, -s), slice(-s, None)):
        for w in (slice(0, -ws), slice(-ws, -s), slice(-s, None)):
            img[:, h, w, :] = cnt
            cnt += 1
    win = img.view(1, n // ws, ws, n // ws, ws, 1).permute(0, 1, 3, 2, 4, 5).reshape(-1, ws * ws)
    m = win.unsqueeze(1) - win.unsqueeze(2)
    return m.masked_fill(m != 0, -100.0).masked_fill(m == 0, 0.0)


class WindowBlock(nn.Module):
    """conv k=3 p=1, then (shifted) window attention on ``(B, H, W, C)`` as timm's Swin writes it."""

    def __init__(self, n: int = 16, ws: int = 4, shift: int = 0, c: int = 4, masked: bool = True):
        super().__init__()
        self.n, self.ws, self.shift = n, ws, shift
        self.conv = nn.Conv2d(1, c, 3, padding=1)
        self.attn = Attention(c)
        self.register_buffer("mask", swin_mask(n, ws, shift) if shift and masked else None)

    def forward(self, x):
        x = self.conv(x).permute(0, 2, 3, 1)
        B, H, W, C = x.shape
        ws, s = self.ws, self.shift
        if s:
            x = torch.roll(x, shifts=(-s, -s), dims=(1, 2))
        w = x.view(B, H // ws, ws, W // ws, ws, C).permute(0, 1, 3, 2, 4, 5).reshape(-1, ws * ws, C)
        w = self.attn(w, self.mask)
        x = w.view(B, H // ws, W // ws, ws, ws, C).permute(0, 1, 3, 2, 4, 5).reshape(B, H, W, C)
        if s:
            x = torch.roll(x, shifts=(s, s), dims=(1, 2))
        return x.permute(0, 3, 1, 2)


class GridBlock(nn.Module):
    """conv k=3 p=1, then MaxViT's grid attention: a ``g x g`` grid of tokens ``n / g`` apart mixes."""

    def __init__(self, g: int = 4, c: int = 4):
        super().__init__()
        self.g = g
        self.conv = nn.Conv2d(1, c, 3, padding=1)
        self.attn = Attention(c)

    def forward(self, x):
        x = self.conv(x)
        B, C, H, W = x.shape
        g = self.g
        t = x.permute(0, 2, 3, 1).view(B, g, H // g, g, W // g, C).permute(0, 2, 4, 1, 3, 5).reshape(-1, g * g, C)
        t = self.attn(t)
        t = t.view(B, H // g, W // g, g, g, C).permute(0, 3, 1, 4, 2, 5).reshape(B, H, W, C)
        return t.permute(0, 3, 1, 2)


class UnfoldFold(nn.Module):
    """conv k=3 p=1, then MobileViT's unfold into ``p x p`` patches, attention over the patches, fold back."""

    def __init__(self, p: int = 2, c: int = 4):
        super().__init__()
        self.p = p
        self.conv = nn.Conv2d(1, c, 3, padding=1)
        self.norm = nn.LayerNorm(c)
        self.attn = Attention(c)

    def forward(self, x):
        x = self.conv(x)
        B, C, H, W = x.shape
        p = self.p
        nh, nw = H // p, W // p
        t = x.reshape(B * C * nh, p, nw, p).transpose(1, 2)
        t = t.reshape(B, C, nh * nw, p * p).transpose(1, 3).reshape(B * p * p, nh * nw, C)
        t = self.attn(self.norm(t))
        t = t.contiguous().view(B, p * p, nh * nw, -1).transpose(1, 3).reshape(B * C * nh, nw, p, p)
        return t.transpose(1, 2).reshape(B, C, nh * p, nw * p)


class ClassToken(nn.Module):
    """conv k=3 p=1, tokens with a class token in front, sliced off again, back to a map, conv k=3:
    rf 5 when nothing mixes the tokens; global after attention over them."""

    def __init__(self, attend: bool, c: int = 4):
        super().__init__()
        self.attend = attend
        self.conv = nn.Conv2d(1, c, 3, padding=1)
        self.cls = nn.Parameter(torch.zeros(1, 1, c))
        self.attn = Attention(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        x = self.conv(x)
        B, C, H, W = x.shape
        t = torch.cat([self.cls.expand(B, -1, -1), x.flatten(2).transpose(1, 2)], dim=1)
        if self.attend:
            t = t + self.attn(t)
        x = t[:, 1:].transpose(1, 2).reshape(B, C, H, W)
        return self.conv2(x)


class PooledClassToken(nn.Module):
    """torchvision MViT's pooling of tokens that carry a class token: split it off, pool the map
    (conv k=3 s=2 p=1), flatten, put it back; then slice it off and look at the map."""

    def __init__(self, c: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(1, c, 3, padding=1)
        self.cls = nn.Parameter(torch.zeros(1, 1, c))
        self.pool = nn.Conv2d(c, c, 3, stride=2, padding=1, groups=c)

    def forward(self, x):
        x = self.conv(x)
        B, C, H, W = x.shape
        t = torch.cat([self.cls.expand(B, -1, -1), x.flatten(2).transpose(1, 2)], dim=1)
        cls, t = torch.tensor_split(t, (1,), dim=1)
        m = self.pool(t.transpose(1, 2).reshape(B, C, H, W))
        t = torch.cat([cls, m.flatten(2).transpose(1, 2)], dim=1)
        return t[:, 1:].transpose(1, 2).reshape(B, C, H // 2, W // 2)


class PatchMerging(nn.Module):
    """conv k=3 p=1, then Swin's patch merging (2x2 neighbours into channels, LayerNorm, Linear), then
    conv k=3 p=1 on the merged map: unit o reads conv outputs 2o-2 .. 2o+3, input 2o-3 .. 2o+4."""

    def __init__(self, c: int = 4):
        super().__init__()
        self.conv = nn.Conv2d(1, c, 3, padding=1)
        self.norm = nn.LayerNorm(4 * c)
        self.reduction = nn.Linear(4 * c, c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        x = self.conv(x).permute(0, 2, 3, 1)
        B, H, W, C = x.shape
        x = x.reshape(B, H // 2, 2, W // 2, 2, C).permute(0, 1, 3, 4, 2, 5).flatten(3)
        x = self.reduction(self.norm(x))
        return self.conv2(x.permute(0, 3, 1, 2))


def _maps(r, axis, n):
    return [(r.lo[axis](u), r.hi[axis](u)) for u in range(n)]


@pytest.mark.parametrize("shift", [0, 2])
def test_window_attention(shift):
    """Windows of 4 (rolled by -shift): p joins [4*floor((p - s)/4) + s, ... + 3], read through conv k=3:
    [4*floor((p - s)/4) + s - 1, 4*floor((p - s)/4) + s + 4]: rf 6, stride 1."""
    model = WindowBlock(shift=shift)
    r = last(check(model, (1, 1, 16, 16)))
    assert r.source == "symbolic" and r.is_global == (False, False)
    expected = [(4 * ((u - shift) // 4) + shift - 1, 4 * ((u - shift) // 4) + shift + 4) for u in range(16)]
    assert _maps(r, 0, 16) == expected and _maps(r, 1, 16) == expected
    assert r.rf == (6, 6) and r.stride == (1, 1)
    # the wrapped window (shift 2: units 0, 1 and 14, 15) is cut at the border by the -100 mask (a hidden
    # entry, `rules.mixing.HIDING_LOGIT`): clipped, the periodic extension is what they read
    for axis in (0, 1):
        assert assert_windows_match(model, (1, 1, 16, 16), r, axis) == 16
    assert rfgraph.probe(model, r.name, (1, 1, 16, 16)).rf == (6, 6)  # (shift 2: measured at 16, the mask's size)


def test_shifted_windows_without_a_mask_read_both_ends():
    """The same shifted windows with no mask: the wrapped window holds positions 14, 15, 0, 1 and mixes
    them all, so those units read conv fields [13, 15] .. [-1, 1] and [0, 2]: (-1, 16) unclipped, every
    position of the axis (before: the periodic extension cut at the border, as if a mask hid the wrap:
    (-3, 2) and (13, 18), half the truth)."""
    model = WindowBlock(shift=2, masked=False)
    r = last(check(model, (1, 1, 16, 16)))
    assert r.source == "symbolic"
    expected = [(-1, 16) if u in (0, 1, 14, 15) else (4 * ((u - 2) // 4) + 1, 4 * ((u - 2) // 4) + 6)
                for u in range(16)]
    assert _maps(r, 0, 16) == expected and _maps(r, 1, 16) == expected
    for axis in (0, 1):
        assert assert_windows_match(model, (1, 1, 16, 16), r, axis) == 16


def test_grid_attention():
    """Grid of 4 x 4 tokens 4 apart on 16: p joins {p mod 4 + 4j}: conv field [p mod 4 - 1, p mod 4 + 13]."""
    model = GridBlock()
    r = last(check(model, (1, 1, 16, 16)))
    assert r.source == "symbolic" and r.is_global == (False, False)
    assert _maps(r, 0, 16) == [(u % 4 - 1, u % 4 + 13) for u in range(16)]
    assert r.rf == (15, 15)
    for axis in (0, 1):
        assert assert_windows_match(model, (1, 1, 16, 16), r, axis) == 16


def test_unfold_fold_patches():
    """MobileViT, patches of 2 on 8: attention over patches mixes positions of equal offset in their
    patch: p joins {p mod 2 + 2j}: conv field [p mod 2 - 1, p mod 2 + 7]; LayerNorm over channels only."""
    model = UnfoldFold()
    r = last(check(model, (1, 1, 8, 8)))
    assert r.source == "symbolic"
    assert _maps(r, 1, 8) == [(u % 2 - 1, u % 2 + 7) for u in range(8)]
    for axis in (0, 1):
        assert assert_windows_match(model, (1, 1, 8, 8), r, axis) == 8


def test_class_token_sliced_off_keeps_the_field():
    """cat(cls, tokens)[:, 1:] reshaped back is the map itself: conv k=3 twice, rf 5, start -2."""
    model = ClassToken(attend=False)
    r = last(check(model, (1, 1, 8, 8)))
    assert r.source == "symbolic"
    assert (r.rf, r.stride, r.start) == ((5, 5), (1, 1), (-2, -2))
    assert rfgraph.probe(model, r.name, (1, 1, 8, 8)).rf == (5, 5)


def test_class_token_attention_is_global():
    r = last(check(ClassToken(attend=True), (1, 1, 8, 8)))
    assert r.source == "symbolic" and r.is_global == (True, True)


def test_pooled_tokens_with_a_class_token():
    """MViT's pooling: conv k=3 p=1, then conv k=3 s=2 p=1 on the map between the class tokens:
    unit o reads [2o - 2, 2o + 2]: rf 5, stride 2, start -2."""
    model = PooledClassToken()
    r = last(check(model, (1, 1, 8, 8)))
    assert r.source == "symbolic"
    assert (r.rf, r.stride, r.start) == ((5, 5), (2, 2), (-2, -2))
    for axis in (0, 1):
        assert_windows_match(model, (1, 1, 8, 8), r, axis)


def test_patch_merging():
    """After the merge, unit o holds pixels 2o, 2o + 1 (conv field [2o - 1, 2o + 2]); conv k=3 on the
    merged map: [2o - 3, 2o + 4]: rf 8, stride 2, start -3."""
    model = PatchMerging()
    a = check(model, (1, 1, 8, 8))
    merged = a["reduction"]
    assert (merged.rf, merged.stride, merged.start) == ((4, 4), (2, 2), (-1, -1))
    r = last(a)
    assert r.source == "symbolic"
    assert (r.rf, r.stride, r.start) == ((8, 8), (2, 2), (-3, -3))
    for axis in (0, 1):
        assert_windows_match(model, (1, 1, 8, 8), r, axis)
    assert rfgraph.probe(model, r.name, (1, 1, 16, 16)).rf == (8, 8)


def test_export_path_window_attention():
    """The same shifted-window block traced by torch.export (aten view / permute / clone / roll)."""
    from rfgraph.tracing import export_trace

    model = WindowBlock(shift=2).eval()
    a = rfgraph.analyze(model, (1, 1, 16, 16), traced=export_trace(model, (torch.rand(1, 1, 16, 16),)))
    assert a.meta["trace"] == "export"
    ops = {r.op for r in a}
    assert any("roll" in op for op in ops) and any("view" in op for op in ops)
    r = last(a)
    assert r.source == "symbolic" and r.rf == (6, 6)
    assert [(r.lo[0](u), r.hi[0](u)) for u in range(4)] == [(-3, 2), (-3, 2), (1, 6), (1, 6)]


class WindowConv(nn.Module):
    """conv k=3 p=1, windows of 4 as (B * nW, C, 4, 4), a conv (or a pool of 2) inside each window,
    windows put back: EfficientViT's cascaded attention convs, Hiera's query pooling."""

    def __init__(self, pool: bool, c: int = 2):
        super().__init__()
        self.conv = nn.Conv2d(1, c, 3, padding=1)
        self.inner = nn.AvgPool2d(2) if pool else nn.Conv2d(c, c, 3, padding=1, groups=c)  # (avg: max routes the gradient to one pixel)
        self.pool = pool

    def forward(self, x):
        x = self.conv(x)
        B, C, H, W = x.shape
        w = x.view(B, C, H // 4, 4, W // 4, 4).permute(0, 2, 4, 1, 3, 5).reshape(-1, C, 4, 4)
        w = self.inner(w)
        k = w.shape[-1]
        return w.view(B, H // 4, W // 4, C, k, k).permute(0, 3, 1, 4, 2, 5).reshape(B, C, H // 4 * k, W // 4 * k)


def test_conv_inside_windows():
    """A conv k=3 p=1 inside windows of 4 pads at the window's borders: p reads
    [max(4w, p - 1), min(4w + 3, p + 1)] of the first conv: input [.. - 1, .. + 1]."""
    model = WindowConv(pool=False)
    r = last(check(model, (1, 1, 16, 16)))
    assert r.source == "symbolic"
    expected = [(max(4 * (u // 4), u - 1) - 1, min(4 * (u // 4) + 3, u + 1) + 1) for u in range(16)]
    assert _maps(r, 0, 16) == expected
    for axis in (0, 1):
        assert assert_windows_match(model, (1, 1, 16, 16), r, axis) == 16


def test_pool_inside_windows():
    """A pool of 2 inside windows of 4: windows of 2 after, unit o reads pixels 2o, 2o + 1 of the
    first conv: [2o - 1, 2o + 2], stride 2."""
    model = WindowConv(pool=True)
    r = last(check(model, (1, 1, 16, 16)))
    assert r.source == "symbolic" and r.shape == (1, 2, 8, 8)
    assert _maps(r, 0, 8) == [(2 * o - 1, 2 * o + 2) for o in range(8)]
    for axis in (0, 1):
        assert assert_windows_match(model, (1, 1, 16, 16), r, axis) == 8


class PooledTokens(nn.Module):
    """conv k=3 p=1, tokens flattened, a pool (or a conv) of ``m`` tokens with stride ``m`` (NextViT's
    ``AvgPool1d`` before K / V), viewed back as ``(B, C, H * W / (m * w_out), w_out)``."""

    def __init__(self, m: int, conv: bool = False, c: int = 2):
        super().__init__()
        self.conv = nn.Conv2d(1, c, 3, padding=1)
        self.pool = nn.Conv1d(c, c, m, m) if conv else nn.AvgPool1d(m, m)
        self.m = m

    def forward(self, x):
        x = self.conv(x)
        B, C, H, W = x.shape
        t = self.pool(x.flatten(2))
        w_out = max(W // self.m, 1)
        return t.view(B, C, -1, w_out)


@pytest.mark.parametrize("conv", [False, True], ids=["avgpool1d", "conv1d"])
def test_pool_of_flattened_tokens(conv):
    """Pools of 4 tokens of rows of 8 read 4 pixels of one row: unit (h, o) reads rows [h - 1, h + 1]
    and columns [4o - 1, 4o + 4] (conv k=3 around pixels 4o .. 4o + 3): rf (3, 6), stride (1, 4)."""
    model = PooledTokens(4, conv)
    r = last(check(model, (1, 1, 8, 8)))
    assert r.source == "symbolic" and r.shape == (1, 2, 8, 2)
    assert _maps(r, 0, 8) == [(h - 1, h + 1) for h in range(8)]
    assert _maps(r, 1, 2) == [(4 * o - 1, 4 * o + 4) for o in range(2)]
    for axis in (0, 1):
        assert_windows_match(model, (1, 1, 8, 8), r, axis)
    # (no rfgraph.probe here: it measures on thin inputs, where a pool of 4 tokens spans other pixels)


def test_pool_of_two_rows_of_tokens():
    """Pools of 16 tokens over rows of 8: two whole rows each: rows [2h - 1, 2h + 2], every column."""
    model = PooledTokens(16)
    r = last(check(model, (1, 1, 8, 8)))
    assert r.source == "symbolic" and r.shape == (1, 2, 4, 1)
    assert r.is_global == (False, True)
    assert _maps(r, 0, 4) == [(2 * h - 1, 2 * h + 2) for h in range(4)]


def test_pool_straddling_rows():
    """Pools of 4 tokens over rows of 6 (NextViT at 224: 16 over rows of 28) straddle rows: pooled token
    ``u`` holds tokens ``4u .. 4u + 3``, rows ``4u // 6 .. (4u + 3) // 6`` and, where it crosses a row, every
    column: u = 0: row 0, cols 0-3; u = 1: rows 0-1, all; u = 2: row 1, cols 2-5; then again two rows
    down.  Through conv k=3 p=1 each range grows by one on both sides; back-propagation agrees unit by
    unit, and attention over the pooled tokens (NextViT's keys) makes every query global."""
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Flatten(2), nn.AvgPool1d(4, 4))
    r = last(check(model, (1, 1, 4, 6), fallback="unknown"))
    assert r.source == "symbolic", r.reason
    rows = [(0, 0), (0, 1), (1, 1), (2, 2), (2, 3), (3, 3)]
    cols = [(0, 3), (0, 5), (2, 5), (0, 3), (0, 5), (2, 5)]
    assert _maps(r, 0, 6) == [(a - 1, b + 1) for a, b in rows]
    assert _maps(r, 1, 6) == [(a - 1, b + 1) for a, b in cols]
    positive = copy.deepcopy(model).double()
    with torch.no_grad():
        for p in positive.parameters():
            p.copy_(torch.rand(p.shape, dtype=p.dtype) + 0.5)
    for u in range(6):
        x = (torch.rand(1, 1, 4, 6, dtype=torch.float64) + 0.5).requires_grad_(True)
        positive(x)[0, :, u].sum().backward()
        hit = x.grad[0, 0] != 0
        h, w = hit.any(1).nonzero().flatten().tolist(), hit.any(0).nonzero().flatten().tolist()
        assert (h[0], h[-1]) == (max(rows[u][0] - 1, 0), min(rows[u][1] + 1, 3))
        assert (w[0], w[-1]) == (max(cols[u][0] - 1, 0), min(cols[u][1] + 1, 5))
    # keys pooled that way, queries at full resolution: every query reads every pixel
    def attend(x):
        t = model[1](model[0](x)).transpose(1, 2)
        kv = model[2](t.transpose(1, 2)).transpose(1, 2)
        return F.scaled_dot_product_attention(t[:, None], kv[:, None], kv[:, None])[:, 0].transpose(1, 2)

    g = last(check(Lambda(attend), (1, 1, 4, 6), fallback="unknown"))
    assert g.source == "symbolic" and g.is_global == (True, True)


class GlobalQueryBlock(nn.Module):
    """gcvit's global-query window attention in small: conv k=3 p=1; keys and values from windows of
    ``ws`` (``(B * nW, ws * ws, C)``); queries from the whole map pooled down to ``ws x ws`` (avg 2,
    stride 2: ``n = 2 ws``), flattened and repeated over the windows (``repeat_interleave``, as timm);
    attention per window, windows put back (timm's window_reverse)."""

    def __init__(self, ws: int = 4, c: int = 4):
        super().__init__()
        self.ws = ws
        self.conv = nn.Conv2d(1, c, 3, padding=1)
        self.pool = nn.AvgPool2d(2)
        self.kv = nn.Linear(c, 2 * c)
        self.proj = nn.Linear(c, c)

    def forward(self, x):
        x = self.conv(x)
        g = self.pool(x).permute(0, 2, 3, 1)  # (B, ws, ws, C): the global query map
        x = x.permute(0, 2, 3, 1)
        B, H, W, C = x.shape
        ws = self.ws
        t = x.view(B, H // ws, ws, W // ws, ws, C).permute(0, 1, 3, 2, 4, 5).reshape(-1, ws * ws, C)
        k, v = self.kv(t).chunk(2, dim=-1)
        q = g.repeat_interleave(t.shape[0] // B, dim=0).reshape(-1, ws * ws, C)
        a = ((q * 1e-3) @ k.transpose(-2, -1)).softmax(dim=-1)
        o = self.proj(a @ v)
        o = o.view(B, H // ws, W // ws, ws, ws, C).permute(0, 1, 3, 2, 4, 5).reshape(B, H, W, C)
        return o.permute(0, 3, 1, 2)


def test_global_query_attention():
    """n = 8, ws = 4.  Keys / values of window w read the conv field of the window: [4w - 1, 4w + 4];
    the query at position a of every window is the global map's unit a: the conv field through the
    pool of 2, [2a - 1, 2a + 2].  Output position p = 4w + a reads both:
    [min(4w - 1, 2a - 1), max(4w + 4, 2a + 2)] -- two slopes (4 per window, 2 per query), an exact
    table over the 8 positions (rf 10 at p = 3, 4: [-1, 8]; mean stride 4/7).  Before the windows are
    put back, the record at window index w pairs it with every query: [min(4w - 1, -1), max(4w + 4, 8)]."""
    model = GlobalQueryBlock()
    a = check(model, (1, 1, 8, 8))
    r = last(a)
    assert r.source == "symbolic" and r.is_global == (False, False)
    expected = [(min(4 * (p // 4) - 1, 2 * (p % 4) - 1), max(4 * (p // 4) + 4, 2 * (p % 4) + 2)) for p in range(8)]
    assert expected[:4] == [(-1, 4), (-1, 4), (-1, 6), (-1, 8)] and expected[4:] == [(-1, 8), (1, 8), (3, 8), (3, 8)]
    assert _maps(r, 0, 8) == expected and _maps(r, 1, 8) == expected
    assert r.rf == (10, 10) and r.stride_regular == (False, False)
    for axis in (0, 1):
        assert assert_windows_match(model, (1, 1, 8, 8), r, axis) == 8
    per_window = a["proj"]
    assert [(per_window.lo[0](w), per_window.hi[0](w)) for w in range(2)] == [(-1, 8), (-1, 8)]
    assert a["repeat_interleave"].source == "symbolic"
    # the torch.export spelling (aten repeat_interleave / view / permute / bmm): the same windows
    from rfgraph.tracing import export_trace

    e = rfgraph.analyze(model, (1, 1, 8, 8), traced=export_trace(model, (torch.rand(1, 1, 8, 8),)))
    assert e.meta["trace"] == "export" and e.counts()["unknown"] == 0
    assert _maps(last(e), 0, 8) == expected


def test_gcvit_stage_global_query():
    """timm's GlobalContextVitStage itself (16 x 16, windows of 4, squeeze-excitation removed: with it the
    global query is a context path, which the probe cannot cut on a fixed-size model).  Block 0: windows
    of 4, p reads [4 floor(p/4), + 3].  Global query: MbConv (dw 3x3) + max pool 3/2/1 twice:
    G(a) = [4a - 6, 4a + 6].  Block 1's output p = 4w + a: [min(4w, 4a - 6), max(4w + 3, 4a + 6)]."""
    timm_gcvit = pytest.importorskip("timm.models.gcvit")
    torch.manual_seed(0)
    stage = timm_gcvit.GlobalContextVitStage(dim=4, depth=2, num_heads=1, feat_size=(16, 16), window_size=(4, 4),
                                             downsample=False, norm_layer_cl=nn.LayerNorm).eval()
    for m in stage.modules():
        if hasattr(m, "se"):
            m.se = nn.Identity()
    a = rfgraph.analyze(stage, (1, 4, 16, 16))
    assert a.counts()["unknown"] == 0
    r = a["blocks.1.add_1"]
    expected = [(min(4 * (p // 4), 4 * (p % 4) - 6), max(4 * (p // 4) + 3, 4 * (p % 4) + 6)) for p in range(16)]
    assert _maps(r, 0, 16) == expected and _maps(r, 1, 16) == expected and r.rf == (22, 22)
    report = rfgraph.validate(stage, (1, 4, 16, 16), nodes=["blocks.1.add", "blocks.1.add_1"])
    assert report.ok, report


@pytest.mark.parametrize("stride, block, halo", [(1, 4, 1), (2, 4, 1), (1, 8, 2), (1, 16, 2)])
def test_halo_attention(stride, block, halo):
    """timm's HaloAttn after conv k=3 p=1 (scaled by 1e-3 so that the softmax does not saturate): queries
    in blocks of ``block`` (of the map, or of its stride-2 copy), keys and values in the block's halo
    window ``[block*b - halo, block*b + block + halo - 1]`` of the conv map (``Tensor.unfold`` of the padded
    map, overlapping); the relative logits read the query alone.  Query ``o`` of block ``b = o // (block /
    stride)`` reads ``[block*b - halo - 1, block*b + block + halo]``, which holds its own conv field: rf
    ``block + 2*halo + 2`` (one block over the whole 16: a constant window, stride 0).  Every unit agrees
    with back-propagation."""
    HaloAttn = pytest.importorskip("timm.layers.halo_attn").HaloAttn
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), Scale(1e-3),
                          HaloAttn(8, stride=stride, num_heads=2, block_size=block, halo_size=halo))
    r = last(check(model, (1, 1, 16, 16), fallback="unknown"))
    assert r.source == "symbolic", r.reason
    per = block // stride
    n = 16 // stride
    expected = [(block * (o // per) - halo - 1, block * (o // per) + block + halo) for o in range(n)]
    assert _maps(r, 0, n) == expected and _maps(r, 1, n) == expected
    assert r.rf == (block + 2 * halo + 2,) * 2
    for axis in (0, 1):
        assert assert_windows_match(model, (1, 1, 16, 16), r, axis) == n


def test_hiera_query_pooling_inside_windows():
    """timm's hieradet MultiScaleBlock with q_stride 2 on a 16 x 16 map, windows of 4: queries max-pooled
    2x2 inside each window (8 x 8 queries), keys and values the window's 16 tokens at full resolution
    (SDPA).  Query p' (window w = p' // 2) reads its 2x2 block and, through the keys and values, the
    window's [4w, 4w + 3]; the shortcut is the pooled projection [2p', 2p' + 1], inside it.  So the
    block's output: [4 floor(u/2), 4 floor(u/2) + 3]: rf 4, stride 2, start 0; the probe agrees."""
    hieradet = pytest.importorskip("timm.models.hieradet_sam2")
    torch.manual_seed(0)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.blk = hieradet.MultiScaleBlock(dim=4, dim_out=8, num_heads=1, q_stride=(2, 2), window_size=4)

        def forward(self, x):
            return self.blk(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)

    model = Block().eval()
    a = rfgraph.analyze(model, (1, 4, 16, 16))
    assert a.counts()["unknown"] == 0
    r = last(a)
    assert r.shape == (1, 8, 8, 8) and (r.rf, r.stride, r.start) == ((4, 4), (2, 2), (0, 0))
    assert _maps(r, 0, 8) == [(4 * (u // 2), 4 * (u // 2) + 3) for u in range(8)]
    report = rfgraph.validate(model, (1, 4, 16, 16), nodes=["blk.add_5", r.name])
    assert report.ok, report


def test_hf_hiera_query_pooling_max_values():
    """transformers' HieraModel pools its queries with ``view(...).max(dim=1).values`` (a RuleError on
    ``.values`` before); a tiny config, the stage maps it reshapes back (``reshaped_hidden_states``):
    symbolic everywhere, and the probe agrees with the symbolic windows at the stage output (both find
    rf 53 along H and 5 along W at this config)."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.HieraConfig(
        embed_dim=4, image_size=[64, 64], patch_size=[3, 3], patch_stride=[2, 2], patch_padding=[1, 1],
        depths=[1, 1], num_heads=[1, 1], num_query_pool=1, query_stride=[2, 2], masked_unit_size=[4, 4],
        masked_unit_attention=[True, False], mlp_ratio=1.0)

    class Stage(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = transformers.HieraModel(cfg)

        def forward(self, x):
            return self.m(x, output_hidden_states=True).reshaped_hidden_states[2].permute(0, 3, 1, 2)

    model = Stage().eval()
    a = rfgraph.analyze(model, (1, 3, 64, 64))
    assert a.counts()["unknown"] == 0
    assert any(r.op.endswith("max") for r in a)
    report = rfgraph.validate(model, (1, 3, 64, 64), nodes=[last(a).name])
    # (fixed size: measured at 64; the probed units' fields (rf 53) fit inside it with a one-pixel margin,
    # so they are measured unclipped, exactly)
    assert not report.disagreements and not report.errors and [r.status for r in report] == ["ok"], report
