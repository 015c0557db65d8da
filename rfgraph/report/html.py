"""The interactive receptive-field explorer: one self-contained HTML file.

`to_html` writes everything into one page: the data of every node (names,
shapes, flags and the exact window maps ``lo`` / ``hi``), the JavaScript
(``explorer.js``) and the CSS (``explorer.css``) shipped with this package,
and, when given, the input image and ERF heat maps as ``data:`` URLs.  The
page loads nothing from the network and opens from disk.

The page computes every box itself from the window maps, with the one
periodic-affine evaluator of ``explorer.js`` (``f(u) = table[u mod T] +
M * floor(u / T)``, or ``finite[u]`` for a map stored exactly over
``[0, n)``), so a unit's box in the page is `NodeRF.box` of that unit.

State lives in the URL fragment: ``page.html#node=layer2&unit=3,11`` opens
with that node (a node, fx node or module name, as ``analysis[...]``) and that
unit selected.

>>> import torch.nn as nn, rfgraph
>>> a = rfgraph.analyze(nn.Conv2d(1, 1, 3, stride=2), (1, 1, 9, 9))
>>> page = to_html(a)
>>> page.startswith("<!DOCTYPE html>"), 'id="rf-box"' in page
(True, True)
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import struct
import zlib
from importlib import resources
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

from ..algebra import PAMap
from ..errors import RFGraphError
from ..results import Analysis, NodeRF
from .formats import axis_names, flags

__all__ = ["page_data", "to_html", "write_html", "explorer", "Explorer", "map_json", "image_data_url"]

#: Longest side of an ERF heat map embedded in the page (larger maps are block-averaged).
ERF_MAX_SIDE = 256


# -- window maps ---------------------------------------------------------------------------------


def map_json(m: Any, n: int) -> Optional[dict[str, Any]]:
    """A window map as the page reads it.

    A `PAMap` becomes ``{"period", "advance", "table"}``; any other exact
    map (callable on unit indices) is stored over the node's ``n`` units as
    ``{"finite": [f(0), ..., f(n - 1)]}`` (``null`` where a unit reads
    nothing, e.g. an output of a transposed conv no tap reaches); ``None``
    (global / unknown) stays ``None``.
    """
    if m is None:
        return None
    if isinstance(m, PAMap):
        return {"period": m.period, "advance": m.advance, "table": list(m.table)}
    return {"finite": [None if v is None else int(v) for v in (m(u) for u in range(n))]}


def _units(r: NodeRF, axis: int) -> int:
    dim = r.dims[axis] if axis < len(r.dims) else None
    if dim is None or r.shape is None:
        return 1
    return int(r.shape[dim])


def _frac(v: Any) -> Optional[str]:
    return None if v is None else str(v)


def _node_json(r: NodeRF, index: dict[str, int]) -> dict[str, Any]:
    n = [_units(r, a) for a in range(r.ndim)]
    d: dict[str, Any] = {
        "name": r.name,
        "op": r.op,
        "shape": list(r.shape) if r.shape is not None else None,
        "source": r.source,
        "flags": flags(r),
        "n": n,
        "rf": list(r.rf),
        "rf_min": list(r.rf_min),
        "rf_path_min": list(r.rf_path_min),
        "stride": [_frac(v) for v in r.stride],
        "start": [_frac(v) for v in r.start],
        "global": [bool(g) for g in r.is_global],
        "lo": [map_json(r.lo[a] if a < len(r.lo) else None, n[a]) for a in range(r.ndim)],
        "hi": [map_json(r.hi[a] if a < len(r.hi) else None, n[a]) for a in range(r.ndim)],
        "inputs": [index[i] for i in r.inputs if i in index],
    }
    if r.module:
        d["module"] = r.module
    if not r.aligned:
        d["shift"] = str(r.max_center_shift)
    if r.global_context:
        d["context"] = True
    if r.reason:
        d["reason"] = r.reason
    return d


# -- pictures ------------------------------------------------------------------------------------


def _png(pixels: np.ndarray) -> bytes:
    """PNG bytes of a uint8 array ``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)`` (stdlib zlib only)."""
    a = np.ascontiguousarray(pixels, dtype=np.uint8)
    if a.ndim == 2:
        a = a[:, :, None]
    h, w, c = a.shape
    color = {1: 0, 3: 2, 4: 6}[c]
    raw = b"".join(b"\x00" + a[y].tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def _data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
)


def _sniff(data: bytes) -> Optional[str]:
    for magic, mime in _MAGIC:
        if data.startswith(magic):
            return mime
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _array_png(a: np.ndarray) -> bytes:
    a = np.asarray(a)
    if a.ndim == 3 and a.shape[0] in (1, 3, 4) and a.shape[2] not in (1, 3, 4):
        a = np.moveaxis(a, 0, -1)  # CHW, as a torch image tensor
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise RFGraphError(f"an image array must be (H, W), (H, W, 3|4) or (3, H, W); got shape {a.shape}")
    if a.dtype != np.uint8:
        a = a.astype(np.float64)
        if np.nanmax(a) <= 1.0:
            a = a * 255.0
        a = np.clip(np.nan_to_num(a), 0, 255).round().astype(np.uint8)
    return _png(a)


def image_data_url(image: Any) -> str:
    """An image as a ``data:`` URL: a file path or bytes (PNG, JPEG, GIF, BMP, WebP embedded as they are;
    other formats through pillow), a PIL image, or an array ``(H, W)``, ``(H, W, 3|4)``, ``(3, H, W)``
    (uint8, or floats in ``[0, 1]``)."""
    if isinstance(image, (str, os.PathLike)):
        try:
            with open(image, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise RFGraphError(f"cannot read image {os.fspath(image)!r}: {exc}") from exc
        image = data
    if isinstance(image, (bytes, bytearray)):
        data = bytes(image)
        mime = _sniff(data)
        if mime:
            return _data_url(mime, data)
        try:
            from PIL import Image
        except ImportError:
            raise RFGraphError("this image format needs pillow: pip install 'rfgraph[plot]'") from None
        try:
            with Image.open(io.BytesIO(data)) as img:
                image = img.convert("RGBA")
        except (OSError, ValueError) as exc:
            raise RFGraphError(f"cannot read image: {exc}") from exc
    if hasattr(image, "save") and hasattr(image, "mode"):  # a PIL image
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        return _data_url("image/png", buf.getvalue())
    if hasattr(image, "detach"):  # a torch tensor
        image = image.detach().cpu().numpy()
    return _data_url("image/png", _array_png(np.asarray(image)))


# Five stops of a perceptual dark-to-light map (close to matplotlib's "inferno").
_HEAT = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], dtype=np.float64)


def _heat_rgba(v: np.ndarray) -> np.ndarray:
    """``v`` in ``[0, 1]`` -> RGBA uint8, transparent where ``v`` is 0."""
    x = np.clip(v, 0, 1) * (len(_HEAT) - 1)
    i = np.minimum(x.astype(int), len(_HEAT) - 2)
    t = (x - i)[..., None]
    rgb = _HEAT[i] * (1 - t) + _HEAT[i + 1] * t
    alpha = np.sqrt(np.clip(v, 0, 1)) * 235
    return np.concatenate([rgb, alpha[..., None]], axis=-1).round().astype(np.uint8)


def _block_mean(m: np.ndarray, factor: Sequence[int]) -> np.ndarray:
    for axis, f in enumerate(factor):
        if f > 1:
            n = m.shape[axis]
            pad = (-n) % f
            if pad:
                widths = [(0, 0)] * m.ndim
                widths[axis] = (0, pad)
                m = np.pad(m, widths)
            shape = m.shape[:axis] + (m.shape[axis] // f, f) + m.shape[axis + 1 :]
            m = m.reshape(shape).mean(axis=axis + 1)
    return m


def _erf_json(analysis: Analysis, res: Any) -> dict[str, Any]:
    """One ERF result as the page draws it: a heat-map PNG of the map cropped to the unit's box."""
    node = analysis.resolve(res.node)
    m = np.nan_to_num(np.asarray(res.map, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    size = list(m.shape)
    box = [list(b) if b is not None else None for b in res.box]
    crop = []
    for a, n in enumerate(size):
        b = res.box[a]
        lo, hi = (0, n - 1) if b is None else (max(b[0], 0), min(b[1], n - 1))
        crop.append([lo, hi])
    m = m[tuple(slice(lo, hi + 1) for lo, hi in crop)]
    projected = m.ndim == 3
    if projected:  # 3-D: the sum over the first axis (depth), drawn on the H x W slices
        m = m.sum(axis=0)
    factor = [max(1, -(-s // ERF_MAX_SIDE)) for s in m.shape]
    m = _block_mean(m, factor)
    peak = float(m.max()) if m.size else 0.0
    v = m / peak if peak > 0 else np.zeros_like(m)
    if v.ndim == 1:
        v = v[None, :]
    return {
        "node": node,
        "unit": [int(u) for u in res.unit],
        "box": box,
        "crop": crop,
        "size": size,
        "samples": int(res.n_samples),
        "projected": projected,
        "note": res.note,
        "png": _data_url("image/png", _png(_heat_rgba(v))),
    }


# -- the page ------------------------------------------------------------------------------------


def _erf_list(erf: Any) -> list[Any]:
    if erf is None:
        return []
    if isinstance(erf, Mapping):
        return list(erf.values())
    if isinstance(erf, (list, tuple)):
        return list(erf)
    return [erf]


def page_data(
    analysis: Analysis,
    image: Any = None,
    erf: Any = None,
    *,
    node: Optional[str] = None,
    unit: Optional[Sequence[int]] = None,
    model_label: Optional[str] = None,
) -> dict[str, Any]:
    """Everything the page shows, JSON-safe (what `to_html` embeds)."""
    records = analysis.records
    index = {r.name: i for i, r in enumerate(records)}
    # A module name means the node `Analysis.resolve` gives it (one pass over dotted prefixes, shared).
    last_inside = analysis.module_last_nodes()
    aliases = {m: last_inside[m] for m in analysis.module_names() if m in last_inside and m not in index}
    for r in records:
        if r.fx_name and r.fx_name not in index:
            aliases[r.fx_name] = r.name
    warnings = []
    for r in records:
        if r.is_unknown:
            warnings.append({"node": r.name, "kind": "unknown", "text": r.reason or "unknown"})
        if not r.aligned:
            warnings.append({"node": r.name, "kind": "misaligned", "text": f"centre shift {r.max_center_shift}"})
        if r.global_context:
            warnings.append({"node": r.name, "kind": "global-context", "text": "a global path feeds in"})
    erfs = [_erf_json(analysis, res) for res in _erf_list(erf)]
    last = analysis.last_spatial()
    # The page opens on `node`, else on the first node with an ERF, else on the last spatial node.
    first = analysis.resolve(node) if node else erfs[0]["node"] if erfs else last.name if last else None
    initial: dict[str, Any] = {"node": first}
    if unit is not None:
        initial["unit"] = [int(u) for u in (unit if isinstance(unit, (list, tuple)) else [unit])]
    else:  # open on the unit whose ERF was measured, when it was measured at this input size
        for e in erfs:
            if e["node"] == initial["node"] and e["size"] == list(analysis.input_shape[2:]) and min(e["unit"]) >= 0:
                initial["unit"] = e["unit"]
                break
    return {
        "version": 1,
        "model": model_label or analysis.model_name or "model",
        "input_shape": list(analysis.input_shape),
        "axes": list(axis_names(analysis.ndim)),
        "counts": analysis.counts(),
        "unknown_ops": {str(k): v for k, v in (analysis.meta.get("unknown_ops") or {}).items()},
        "warnings": warnings,
        "aliases": aliases,
        "initial": initial,
        "nodes": [_node_json(r, index) for r in records],
        "image": image_data_url(image) if image is not None else None,
        "erf": erfs,
    }


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def _script_json(data: Any) -> str:
    """JSON safe inside ``<script>``: no ``</script>``, no ``<!--``."""
    text = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def to_html(
    analysis: Analysis,
    image: Any = None,
    erf: Any = None,
    *,
    node: Optional[str] = None,
    unit: Optional[Sequence[int]] = None,
    model_label: Optional[str] = None,
) -> str:
    """The explorer of ``analysis`` as one self-contained HTML page (no network access, opens from disk).

    ``image``: the input plane's picture (path, bytes, PIL image or array; drawn
    stretched over the model's input size); without it the page shows a grid,
    and its file picker reads a local image.  ``erf``: an `rfgraph.ERFResult`,
    a list of them or a dict ``node -> result``; each is drawn under the box of
    its node.  ``node`` / ``unit`` choose the initial selection (the URL
    fragment ``#node=...&unit=...`` overrides them).
    """
    data = page_data(analysis, image, erf, node=node, unit=unit, model_label=model_label)
    title = html.escape(f"rfgraph explorer: {data['model']}")
    parts = {"title": title, "css": _asset("explorer.css"), "data": _script_json(data), "js": _asset("explorer.js")}
    # One pass over the template's slots, so no inserted text is ever read as a slot.
    chunks = _TEMPLATE.split("@@")
    return "".join(parts[c] if i % 2 else c for i, c in enumerate(chunks))


def write_html(path: Union[str, os.PathLike], analysis: Analysis, image: Any = None, erf: Any = None, **kw: Any) -> None:
    """Write `to_html` to ``path`` (UTF-8)."""
    text = to_html(analysis, image, erf, **kw)
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        raise RFGraphError(f"cannot write {os.fspath(path)!r}: {exc}") from exc


class Explorer:
    """The explorer page for a notebook cell: ``_repr_html_`` embeds it inline in an ``<iframe srcdoc>``."""

    def __init__(self, page: str, height: int = 820):
        self.html = page
        self.height = int(height)

    def _repr_html_(self) -> str:
        return (
            f'<iframe class="rfgraph-explorer" srcdoc="{html.escape(self.html, quote=True)}" '
            f'style="width:100%;height:{self.height}px;border:1px solid #ccc" '
            'sandbox="allow-scripts"></iframe>'
        )

    def save(self, path: Union[str, os.PathLike]) -> None:
        """Write the page to a file."""
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.html)

    def __repr__(self) -> str:
        return f"<rfgraph Explorer: {len(self.html)} bytes of HTML>"


def explorer(analysis: Analysis, image: Any = None, erf: Any = None, *, height: int = 820, **kw: Any) -> Explorer:
    """The explorer for a notebook: the value of a cell's last line displays it inline, offline.

    Takes the arguments of `to_html`; nothing from IPython is imported.
    """
    return Explorer(to_html(analysis, image, erf, **kw), height=height)


_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="rfgraph">
<title>@@title@@</title>
<style>
@@css@@
</style>
</head>
<body>
<header id="rf-header"></header>
<main>
<section id="rf-left">
  <div class="rf-filters">
    <input id="rf-filter" type="search" placeholder="filter name / op" aria-label="filter nodes">
    <select id="rf-flag" aria-label="filter by source or flag">
      <option value="">all nodes</option>
      <option value="local">local (finite RF)</option>
      <option value="flagged">any flag</option>
      <option value="symbolic">symbolic</option>
      <option value="probed">probed</option>
      <option value="unknown">unknown</option>
      <option value="global">global</option>
      <option value="nonspatial">nonspatial</option>
      <option value="misaligned">misaligned</option>
      <option value="global-context">global context</option>
    </select>
    <span id="rf-count"></span>
  </div>
  <div class="rf-table-wrap"><table id="rf-table"><thead></thead><tbody></tbody></table></div>
</section>
<section id="rf-right">
  <div id="rf-chart-wrap"><svg id="rf-chart" role="img" aria-label="RF size and stride along the depth"></svg></div>
  <div id="rf-info">
    <div id="rf-node"></div>
    <div class="rf-line"><span class="rf-key">unit</span> <span id="rf-unit"></span></div>
    <div class="rf-line"><span class="rf-key">box</span> <span id="rf-box"></span>
      <span class="rf-key">clipped</span> <span id="rf-clipped"></span></div>
    <div class="rf-line"><span class="rf-key">centre</span> <span id="rf-centre"></span></div>
    <div id="rf-paths"></div>
    <div id="rf-message" role="status"></div>
  </div>
  <div id="rf-viewer">
    <div class="rf-panel">
      <div class="rf-caption">output units of the node <span id="rf-grid-size"></span></div>
      <svg id="rf-grid"></svg>
      <div id="rf-out-slice" class="rf-slider" hidden></div>
    </div>
    <div class="rf-panel">
      <div class="rf-caption">input <span id="rf-input-size"></span>
        <span class="rf-tools"><label class="rf-file">image <input id="rf-file" type="file" accept="image/*"></label>
        <button id="rf-grid-button" type="button">grid</button></span></div>
      <svg id="rf-input"></svg>
      <div id="rf-detail-wrap" hidden><div class="rf-caption">detail <span id="rf-detail-range"></span></div>
        <svg id="rf-detail" preserveAspectRatio="none"></svg></div>
      <div id="rf-in-slice" class="rf-slider" hidden></div>
      <div id="rf-legend"></div>
    </div>
  </div>
</section>
</main>
<script id="rf-data" type="application/json">@@data@@</script>
<script>
@@js@@
</script>
</body>
</html>
"""
