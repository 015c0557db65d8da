"""Effective receptive field (ERF): how much each input pixel actually matters.

The theoretical RF of a unit says which input pixels *can* change it; with real
weights only a central part does (Luo et al., "Understanding the Effective
Receptive Field in Deep Convolutional Neural Networks", NeurIPS 2016).  The
ERF of a node is measured here as in that paper and in the RepLKNet / SLaK
scripts: for the centre unit ``u`` of the node (summed over channels, or one
chosen channel) and a set of inputs ``x_1 ... x_N``,

    ERF[p] = sum_i sum_c | d y(x_i) / d x_i[c, p] |,    y = sum_channels out[:, u]

with the model in eval mode and its own weights, untouched (this is the
*effective* field: nothing is sanitized).  One forward pass per batch through
the model truncated at the requested nodes, then one backward pass per node
(``retain_graph``), so per-stage ERFs cost one forward, not one per node.

The input size is chosen from the symbolic pass so that the theoretical RF box
of the centre unit lies inside the image (a warning says so when a fixed size
is too small), and the measured support is checked against that box: a
gradient outside the box would mean a wrong rule somewhere, and raises
`ERFSupportError` with both boxes.

Summary numbers of an `ERFResult`, all computed on the accumulated map ``m``
(total ``S = sum(m)``):

* ``area_ratio(t)``: grow boxes centred on the unit's RF centre, shaped like
  the theoretical RF box (for a square RF: the centred squares of the
  literature), until they hold ``t * S``; the ratio is the number of pixels in
  the smallest such box over the number of pixels in the theoretical RF box.
  ``area_ratios`` holds ``t`` = 20 %, 30 %, 50 % and 99 %.
* ``radius(t)``: the smallest Euclidean distance ``r`` from the RF centre such
  that pixels at distance ``<= r`` hold ``t * S``.
* ``sigma``: per axis, the standard deviation of ``m / S`` read as a
  distribution (the maximum-likelihood Gaussian fit); ``centroid`` its mean.
* ``effective_size``: per axis ``sqrt(12 * sigma**2 + 1)``, the width of the
  discrete uniform distribution with that variance; ``rf_ratio`` is
  ``effective_size / rf``: 1 when every pixel of the theoretical RF
  contributes equally, and about ``1 / sqrt(n)`` for ``n`` stacked box filters.
"""

from __future__ import annotations

import copy
import itertools
import math
import os
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from ..errors import InputTooSmallError, RFGraphError, TraceError
from ..passes import analyze
from ..results import Analysis, NodeRF
from ..rules import RuleSet
from ..tracing import Traced, cut, trace

__all__ = [
    "erf",
    "ERFResult",
    "ERFError",
    "ERFSupportError",
    "ERFWarning",
    "DEFAULT_SHARES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "fitting_input_size",
    "plot_erf",
    "default_nodes",
]

#: The shares of the total contribution reported by `ERFResult.area_ratios` (as in RepLKNet / SLaK).
DEFAULT_SHARES: tuple[float, ...] = (0.2, 0.3, 0.5, 0.99)
IMAGENET_MEAN: tuple[float, ...] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, ...] = (0.229, 0.224, 0.225)
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


class ERFError(RFGraphError):
    """The ERF could not be measured as asked (bad node, inputs, weights...)."""


class ERFSupportError(ERFError):
    """The measured ERF reaches outside the theoretical RF box: a bug in a rule or in the pass."""


class ERFWarning(UserWarning):
    """Something that makes an ERF less meaningful (clipped RF, NaN/inf gradients, zero map)."""


# -- the result ------------------------------------------------------------------------------------


@dataclass
class ERFResult:
    """The ERF of one node: the accumulated map and what it means.

    ``map`` has the input's spatial shape (``(L,)``, ``(H, W)`` or
    ``(D, H, W)``), float64, summed over samples and input channels.
    ``box[a]`` is the theoretical RF of the measured unit along axis ``a`` as
    ``(lo, hi)`` input coordinates (unclipped, ``None`` when the node is not
    local along that axis).
    """

    node: str
    map: np.ndarray
    unit: tuple[int, ...]
    box: tuple[Optional[tuple[int, int]], ...]
    input_shape: tuple[int, ...]
    n_samples: int
    nan_count: int = 0
    inf_count: int = 0
    nonfinite_samples: int = 0
    dtype: str = "float32"
    channel: Optional[int] = None
    support_checked: bool = True
    note: Optional[str] = None
    requested: str = ""
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    # -- geometry -----------------------------------------------------------------

    @property
    def ndim(self) -> int:
        return self.map.ndim

    @property
    def rf(self) -> tuple[Optional[int], ...]:
        """Theoretical RF size of the measured unit per axis (unclipped)."""
        return tuple(None if b is None else b[1] - b[0] + 1 for b in self.box)

    @property
    def fits(self) -> tuple[bool, ...]:
        """Per axis: the theoretical RF box lies inside the input (no padding reaches the unit)."""
        return tuple(b is None or (b[0] >= 0 and b[1] < n) for b, n in zip(self.box, self.map.shape))

    def _axis_box(self, a: int) -> tuple[int, int]:
        """The theoretical box along ``a`` (the whole input when the node is not local along ``a``)."""
        b = self.box[a]
        return (0, self.map.shape[a] - 1) if b is None else b

    @property
    def center(self) -> tuple[float, ...]:
        """Centre of the unit's theoretical RF box per axis (half-integers possible)."""
        return tuple((lo + hi) / 2 for lo, hi in (self._axis_box(a) for a in range(self.ndim)))

    @property
    def rf_area(self) -> int:
        """Number of input pixels inside the theoretical RF box (clipped to the input)."""
        area = 1
        for a, n in enumerate(self.map.shape):
            lo, hi = self._axis_box(a)
            area *= max(0, min(hi, n - 1) - max(lo, 0) + 1)
        return area

    def support(self) -> Optional[tuple[tuple[int, int], ...]]:
        """Bounding box ``((lo, hi), ...)`` of the non-zero pixels of the map (``None`` if all zero)."""
        nz = np.nonzero(self.map)
        if len(nz[0]) == 0:
            return None
        return tuple((int(ix.min()), int(ix.max())) for ix in nz)

    # -- contribution statistics ------------------------------------------------

    @property
    def total(self) -> float:
        return float(self.map.sum())

    def normalized(self) -> np.ndarray:
        """The map divided by its total (a distribution over input pixels)."""
        total = self.total
        if total == 0:
            return np.full_like(self.map, np.nan)
        return self.map / total

    def _marginal(self, a: int) -> np.ndarray:
        other = tuple(i for i in range(self.ndim) if i != a)
        return self.map.sum(axis=other) if other else self.map

    @property
    def centroid(self) -> tuple[float, ...]:
        """Centre of mass of the map per axis, in input coordinates."""
        total = self.total
        out = []
        for a in range(self.ndim):
            m = self._marginal(a)
            out.append(float(np.dot(np.arange(m.size, dtype=np.float64), m) / total) if total else math.nan)
        return tuple(out)

    @property
    def sigma(self) -> tuple[float, ...]:
        """Per-axis standard deviation of the normalized map (the maximum-likelihood Gaussian fit)."""
        if "sigma" not in self._cache:
            total = self.total
            out = []
            for a, mu in enumerate(self.centroid):
                m = self._marginal(a)
                x = np.arange(m.size, dtype=np.float64) - mu
                out.append(math.sqrt(float(np.dot(x * x, m) / total)) if total else math.nan)
            self._cache["sigma"] = tuple(out)
        return self._cache["sigma"]

    @property
    def effective_size(self) -> tuple[float, ...]:
        """Per axis ``sqrt(12 sigma^2 + 1)``: the width of a uniform field with the same spread."""
        return tuple(math.sqrt(12 * s * s + 1) for s in self.sigma)

    @property
    def rf_ratio(self) -> tuple[float, ...]:
        """Per axis ``effective_size / rf`` (1 for a field uniform over the whole theoretical RF)."""
        out = []
        for a, size in enumerate(self.effective_size):
            lo, hi = self._axis_box(a)
            out.append(size / (hi - lo + 1))
        return tuple(out)

    def _shells(self, key: str, distance: Callable[[list[np.ndarray]], np.ndarray]):
        """Distinct distances (sorted), cumulative mass and cumulative pixel count up to each."""
        if key not in self._cache:
            grids = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in self.map.shape], indexing="ij")
            d = distance(grids).ravel()
            order = np.argsort(d, kind="stable")
            d, mass = d[order], self.map.ravel()[order]
            last = np.r_[d[1:] != d[:-1], True]  # end of each group of equal distance
            cum_mass = np.cumsum(mass)[last]
            cum_count = np.nonzero(last)[0] + 1
            self._cache[key] = (d[last], cum_mass, cum_count)
        return self._cache[key]

    def _first_holding(self, cum_mass: np.ndarray, share: float) -> int:
        if not 0 < share <= 1:
            raise ValueError(f"share must be in (0, 1], got {share}")
        total = cum_mass[-1]
        if total == 0:
            return -1
        return int(np.searchsorted(cum_mass, share * total, side="left"))

    def area_ratio(self, share: float) -> float:
        """Pixels of the smallest RF-shaped centred box holding ``share`` of the total, over the RF area."""
        centre = self.center
        half = [(self._axis_box(a)[1] - self._axis_box(a)[0] + 1) / 2 for a in range(self.ndim)]

        def chebyshev(grids):
            return np.max(np.stack([np.abs(g - c) / h for g, c, h in zip(grids, centre, half)]), axis=0)

        _, cum_mass, cum_count = self._shells("box", chebyshev)
        i = self._first_holding(cum_mass, share)
        return math.nan if i < 0 else int(cum_count[i]) / self.rf_area

    @property
    def area_ratios(self) -> dict[float, float]:
        """``area_ratio`` for 20 %, 30 %, 50 % and 99 % of the total contribution."""
        return {t: self.area_ratio(t) for t in DEFAULT_SHARES}

    def radius(self, share: float = 0.5) -> float:
        """Smallest Euclidean radius around the RF centre holding ``share`` of the total contribution."""
        centre = self.center

        def squared(grids):
            return sum((g - c) ** 2 for g, c in zip(grids, centre))

        d2, cum_mass, _ = self._shells("disc", squared)
        i = self._first_holding(cum_mass, share)
        return math.nan if i < 0 else math.sqrt(float(d2[i]))

    # -- output -------------------------------------------------------------------

    def save_npy(self, path: Union[str, os.PathLike]) -> str:
        """Save the map (float64) with `numpy.save`; returns the path written."""
        path = os.fspath(path)
        np.save(path, self.map)
        return path if path.endswith(".npy") else path + ".npy"

    def to_dict(self) -> dict[str, Any]:
        """The summary numbers as plain Python values (JSON-ready; the map itself is left out)."""

        def clean(v):
            return None if isinstance(v, float) and not math.isfinite(v) else v

        return {
            "node": self.node,
            "requested": self.requested or self.node,
            "input_shape": list(self.input_shape),
            "unit": list(self.unit),
            "box": [None if b is None else list(b) for b in self.box],
            "rf": list(self.rf),
            "fits": list(self.fits),
            "support": None if self.support() is None else [list(s) for s in self.support()],
            "support_checked": self.support_checked,
            "n_samples": self.n_samples,
            "dtype": self.dtype,
            "channel": self.channel,
            "total": clean(self.total),
            "area_ratios": {f"{int(round(t * 100))}%": clean(v) for t, v in self.area_ratios.items()},
            "radius_50": clean(self.radius(0.5)),
            "sigma": [clean(s) for s in self.sigma],
            "centroid": [clean(c) for c in self.centroid],
            "effective_size": [clean(s) for s in self.effective_size],
            "rf_ratio": [clean(r) for r in self.rf_ratio],
            "nan_count": self.nan_count,
            "inf_count": self.inf_count,
            "nonfinite_samples": self.nonfinite_samples,
            "note": self.note,
        }

    def plot(self, path: Optional[Union[str, os.PathLike]] = None, scale: str = "log", ax: Any = None) -> Any:
        """Heatmap (line plot in 1-D) with the theoretical RF box on top; see `plot_erf`."""
        return plot_erf([self], path, scale=scale, ax=ax)

    def __repr__(self) -> str:
        ratios = ", ".join(f"{int(round(t * 100))}%={v:.3f}" for t, v in self.area_ratios.items())
        sig = ", ".join(f"{s:.2f}" for s in self.sigma)
        bad = f", nan={self.nan_count}, inf={self.inf_count}" if self.nan_count or self.inf_count else ""
        return (
            f"<ERFResult {self.node!r} input={self.input_shape} rf={self.rf} samples={self.n_samples} "
            f"area_ratio({ratios}) sigma=({sig}){bad}>"
        )


# -- input sources -----------------------------------------------------------------------------------


def _infer_input_template(model: nn.Module) -> tuple[int, int]:
    """(channels, spatial ndim) read from the first convolution of ``model``."""
    for m in model.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            return m.in_channels, len(m.kernel_size)
    raise ERFError(
        f"cannot tell the input channels and rank of {type(model).__name__} (it has no convolution): "
        "pass input_shape=(1, C, *spatial)"
    )


class _Source:
    """Where the inputs come from: noise, a tensor batch, a folder of images or an iterable of batches."""

    def __init__(self, inputs: Any, channels: int, ndim: int, size: Optional[tuple[int, ...]], *,
                 mean, std, seed: int):
        self.channels, self.ndim, self.seed = channels, ndim, seed
        self.mean, self.std = mean, std
        self.fixed: Optional[tuple[int, ...]] = size  # spatial size imposed by the user or the data
        self.count: Optional[int] = None
        self.kind = ""
        self.files: list[str] = []
        self._tensor: Optional[torch.Tensor] = None
        self._iter: Optional[Iterator] = None
        if isinstance(inputs, bool):
            raise ERFError("inputs must be a number of noise samples, a tensor, a folder or an iterable of batches")
        if isinstance(inputs, int):
            if inputs < 1:
                raise ERFError(f"the number of noise inputs must be >= 1, got {inputs}")
            self.kind, self.count = "noise", inputs
        elif isinstance(inputs, torch.Tensor):
            if inputs.dim() < 3 or inputs.shape[0] == 0:
                raise ERFError(f"an input batch needs shape (N, C, *spatial) with N >= 1, got {tuple(inputs.shape)}")
            self.kind, self._tensor, self.count = "tensor", inputs, inputs.shape[0]
            self._check_fixed(tuple(inputs.shape[2:]), "the input tensor")
        elif isinstance(inputs, (str, os.PathLike)):
            folder = os.fspath(inputs)
            if not os.path.isdir(folder):
                raise ERFError(f"image folder {folder!r} does not exist or is not a directory")
            if ndim != 2:
                raise ERFError(f"a folder of images only suits 2-D models; this model's input has {ndim} spatial axes")
            self.files = sorted(
                os.path.join(folder, f) for f in os.listdir(folder) if f.lower().endswith(_IMAGE_SUFFIXES)
            )
            if not self.files:
                raise ERFError(f"no image files ({', '.join(_IMAGE_SUFFIXES)}) in {folder!r}")
            self.kind, self.count = "images", len(self.files)
        elif isinstance(inputs, Iterable):
            it = iter(inputs)
            try:
                first = _batch_tensor(next(it))
            except StopIteration:
                raise ERFError("the iterable of input batches is empty") from None
            self.kind, self._iter = "iterable", itertools.chain([first], it)
            self.channels, self.ndim = first.shape[1], first.dim() - 2
            self._check_fixed(tuple(first.shape[2:]), "the input batches")
        else:
            raise ERFError(
                f"inputs must be a number of noise samples, a tensor, a folder or an iterable of batches, "
                f"got {type(inputs).__name__}"
            )

    def _check_fixed(self, spatial: tuple[int, ...], what: str) -> None:
        if self.fixed is not None and len(self.fixed) == 1 and len(spatial) > 1:
            self.fixed = self.fixed * len(spatial)  # an int size given before the rank was known
        if self.fixed is not None and tuple(self.fixed) != spatial:
            raise ERFError(f"size={self.fixed} was asked but {what} has spatial size {spatial}")
        self.fixed = spatial

    def batches(self, spatial: tuple[int, ...], batch_size: int, dtype: torch.dtype,
                device: torch.device) -> Iterator[torch.Tensor]:
        if self.kind == "noise":
            gen = torch.Generator().manual_seed(self.seed)
            for start in range(0, self.count, batch_size):
                n = min(batch_size, self.count - start)
                yield torch.randn((n, self.channels, *spatial), generator=gen, dtype=torch.float64).to(device, dtype)
        elif self.kind == "tensor":
            for start in range(0, self.count, batch_size):
                yield self._tensor[start:start + batch_size].to(device, dtype)
        elif self.kind == "images":
            for start in range(0, self.count, batch_size):
                files = self.files[start:start + batch_size]
                yield torch.stack([self._load(f, spatial) for f in files]).to(device, dtype)
        else:
            for item in self._iter:
                batch = _batch_tensor(item)
                if tuple(batch.shape[2:]) != tuple(spatial):
                    raise ERFError(f"input batches change size: {tuple(batch.shape[2:])} after {tuple(spatial)}")
                yield batch.to(device, dtype)

    def _load(self, path: str, spatial: tuple[int, ...]) -> torch.Tensor:
        from PIL import Image

        try:
            with Image.open(path) as img:
                img = img.convert("RGB" if self.channels == 3 else "L")
                img = img.resize((spatial[1], spatial[0]), Image.BILINEAR)
                arr = np.asarray(img, dtype=np.float64) / 255.0
        except Exception as exc:  # never skip an image silently
            raise ERFError(f"cannot read image {path!r}: {type(exc).__name__}: {exc}") from exc
        if arr.ndim == 2:
            arr = np.repeat(arr[None], self.channels, axis=0)
        else:
            arr = arr.transpose(2, 0, 1)
        t = torch.from_numpy(arr)
        mean, std = self.mean, self.std
        if mean is None and std is None and self.channels == 3:
            mean, std = IMAGENET_MEAN, IMAGENET_STD
        if mean is not None:
            t = t - torch.tensor(mean, dtype=t.dtype).view(-1, 1, 1)
        if std is not None:
            t = t / torch.tensor(std, dtype=t.dtype).view(-1, 1, 1)
        return t


def _batch_tensor(item: Any) -> torch.Tensor:
    if isinstance(item, (list, tuple)) and item:
        item = item[0]  # (images, labels) from a DataLoader
    if not isinstance(item, torch.Tensor) or item.dim() < 3:
        raise ERFError(f"each input batch must be a tensor (N, C, *spatial), got {type(item).__name__}")
    return item


# -- size selection ----------------------------------------------------------------------------------


def _centre_unit(rec: NodeRF) -> tuple[Optional[int], ...]:
    out = []
    for a in range(rec.ndim):
        d = rec.dims[a] if rec.dims else None
        out.append(None if d is None or rec.shape is None else (rec.shape[d] - 1) // 2)
    return tuple(out)


def _unit_boxes(rec: NodeRF, unit: Sequence[Optional[int]]) -> tuple[Optional[tuple[int, int]], ...]:
    boxes: list[Optional[tuple[int, int]]] = []
    for a, u in enumerate(unit):
        lo = rec.lo[a] if rec.lo else None
        hi = rec.hi[a] if rec.hi else None
        if u is None or lo is None or hi is None or rec.is_global[a] or rec.source not in ("symbolic", "probed"):
            boxes.append(None)
        else:
            boxes.append((lo(u), hi(u)))
    return tuple(boxes)


def _deficits(analysis: Analysis, names: Sequence[str], spatial: tuple[int, ...]) -> list[int]:
    out = [0] * len(spatial)
    for name in names:
        rec = analysis[name]
        for a, b in enumerate(_unit_boxes(rec, _centre_unit(rec))):
            if b is not None:
                out[a] = max(out[a], max(0, -b[0]) + max(0, b[1] - (spatial[a] - 1)))
    return out


def fitting_input_size(
    model: nn.Module,
    nodes: Union[str, Sequence[str]],
    channels: int,
    ndim: int,
    *,
    probe: Optional[Sequence[int]] = None,
    minimum: Optional[Sequence[int]] = None,
    traced: Optional[Traced] = None,
    rules: Optional[RuleSet] = None,
    max_steps: int = 64,
) -> tuple[tuple[int, ...], Analysis]:
    """The smallest input size (found by growing) whose centre units of ``nodes`` see only real pixels.

    Reads the RFs from an analysis at size ``probe`` (default 32 per axis),
    starts from the largest theoretical RF among ``nodes`` (and at least
    ``minimum``) and grows each axis by its deficit until the centre unit's
    RF box of every node lies inside the input.  Returns the spatial size and
    its analysis.
    """
    names = [nodes] if isinstance(nodes, str) else list(nodes)
    traced = traced or trace(model)
    # Read the RFs at any size the model accepts, then grow from the largest RF.
    first = _analyze_growing(model, traced, rules, channels, list(probe) if probe is not None else [32] * ndim)
    names = [first.resolve(n) for n in names]
    spatial = list(minimum) if minimum is not None else [1] * ndim
    for name in names:
        rec = first[name]
        for a, r in enumerate(rec.rf):
            if r is not None and not rec.is_global[a]:
                spatial[a] = max(spatial[a], r)
    for _ in range(max_steps):
        analysis = _analyze_growing(model, traced, rules, channels, spatial)
        spatial = list(analysis.input_shape[2:])
        deficit = _deficits(analysis, names, tuple(spatial))
        if not any(deficit):
            return tuple(spatial), analysis
        spatial = [n + d for n, d in zip(spatial, deficit)]
    raise ERFError(
        f"no input size up to {tuple(spatial)} lets the theoretical RF of the centre unit of {names} fit "
        "inside the input; pass an explicit size"
    )


def _analyze_growing(model, traced, rules, channels, spatial) -> Analysis:
    """`analyze` at ``spatial``, doubling the size while a layer's output comes out empty."""
    spatial = list(spatial)
    for _ in range(16):
        try:
            return analyze(model, (1, channels, *spatial), traced=traced, rules=rules)
        except InputTooSmallError as exc:
            need = exc.minimal_size or 0
            spatial = [max(2 * n, need) for n in spatial]
    raise ERFError(f"the model rejects every input size up to {tuple(spatial)}")


# -- the measurement -------------------------------------------------------------------------------------


def erf(
    model: nn.Module,
    node: Union[str, Sequence[str]],
    inputs: Any = 16,
    *,
    size: Union[int, Sequence[int], None] = None,
    input_shape: Optional[Sequence[int]] = None,
    channel: Optional[int] = None,
    dtype: torch.dtype = torch.float32,
    batch_size: int = 8,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    seed: int = 0,
    progress: bool = True,
    check_support: bool = True,
    traced: Optional[Traced] = None,
    rules: Optional[RuleSet] = None,
    leaf_modules: Iterable[type] = (),
    autowrap_functions: Sequence[Callable] = (),
) -> Union[ERFResult, dict[str, ERFResult]]:
    """Effective receptive field of the centre unit of ``node`` (or of each of several nodes).

    ``inputs``: a number of standard-normal noise inputs, a tensor batch
    ``(N, C, *spatial)``, a folder of images (resized to the chosen size, then
    normalized with ``mean`` / ``std``, ImageNet's by default for RGB), or an
    iterable of batches (a ``DataLoader``).  ``size``: spatial input size for
    noise and images; by default the smallest size, not below the spatial size
    of ``input_shape`` when given, at which the theoretical RF of the centre
    unit of every requested node lies inside the input.  A size
    that is too small, imposed by ``size`` or by the data, gives an
    `ERFWarning`.  ``channel``: seed one output channel instead of their sum.
    ``dtype=torch.float64`` runs a float64 copy of the model (the caller's
    model is never modified; it is only put in eval mode for the run).

    ``node`` a string: returns an `ERFResult`; a list of names: a dict
    ``{name: ERFResult}`` from one forward pass per batch.

    >>> import torch, torch.nn as nn
    >>> net = nn.Sequential(nn.Conv1d(1, 1, 3, bias=False), nn.Conv1d(1, 1, 3, bias=False))
    >>> with torch.no_grad():
    ...     _ = [c.weight.fill_(1.0) for c in net]
    >>> r = erf(net, "1", torch.zeros(1, 1, 7), dtype=torch.float64, progress=False)
    >>> r.map.tolist(), r.box
    ([0.0, 1.0, 2.0, 3.0, 2.0, 1.0, 0.0], ((1, 5),))
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"erf() needs a torch.nn.Module, got {type(model).__name__}")
    single = isinstance(node, str)
    requested = [node] if single else list(node)
    if not requested:
        raise ERFError("no node to measure: pass a node name or a list of names")
    if batch_size < 1:
        raise ERFError(f"batch_size must be >= 1, got {batch_size}")
    if dtype not in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        raise ERFError(f"dtype must be a floating dtype, got {dtype}")
    params = list(itertools.chain(model.parameters(), model.buffers()))
    if any(p.is_meta for p in params):
        raise ERFError(
            f"{type(model).__name__} has weights on the meta device; the ERF needs real weights "
            "(load the model with device='cpu')"
        )
    device = params[0].device if params else torch.device("cpu")

    if isinstance(inputs, torch.Tensor) and inputs.dim() >= 3:
        channels, ndim = int(inputs.shape[1]), inputs.dim() - 2
    elif input_shape is not None:
        channels, ndim = int(input_shape[1]), len(input_shape) - 2
    elif isinstance(inputs, (int, str, os.PathLike)):
        channels, ndim = _infer_input_template(model)
    else:
        channels, ndim = 0, 0  # read from the first batch of the iterable
    fixed = None
    if size is not None:
        fixed = (int(size),) * max(ndim, 1) if isinstance(size, int) else tuple(int(s) for s in size)
        if ndim and len(fixed) != ndim:
            raise ERFError(f"size {fixed} has {len(fixed)} axes but the model's input has {ndim}")
    source = _Source(inputs, channels, ndim, fixed, mean=mean, std=std, seed=seed)
    channels, ndim = source.channels, source.ndim

    if traced is None:
        traced = trace(model, leaf_modules=leaf_modules, autowrap_functions=autowrap_functions)
    if source.fixed is not None:
        spatial = tuple(source.fixed)
        analysis = analyze(model, (1, channels, *spatial), traced=traced, rules=rules)
    else:
        first = list(input_shape[2:]) if input_shape is not None else [32] * ndim
        spatial, analysis = fitting_input_size(model, requested, channels, ndim, probe=first,
                                               minimum=None if input_shape is None else first,
                                               traced=traced, rules=rules)

    names = [_resolve(analysis, n) for n in requested]
    records = [analysis[n] for n in names]
    for req, rec in zip(requested, records):
        _check_node(rec, req)
    units = [_centre_unit(rec) for rec in records]
    boxes = [_unit_boxes(rec, u) for rec, u in zip(records, units)]
    for req, rec, b in zip(requested, records, boxes):
        clipped = [a for a, (bb, n) in enumerate(zip(b, spatial)) if bb is not None and (bb[0] < 0 or bb[1] >= n)]
        if clipped:
            try:
                need, _ = fitting_input_size(model, rec.name, channels, ndim, traced=traced, rules=rules)
                hint = f"; an input of at least {need} would hold it"
            except RFGraphError:
                hint = ""
            desc = " x ".join(f"[{lo}, {hi}]" for lo, hi in (bb for bb in b if bb is not None))
            warnings.warn(
                f"the theoretical RF of the centre unit of node {req!r} ({rec.name}) spans {desc}, which does "
                f"not fit inside the input {spatial}: the part outside is padding, the ERF is clipped{hint}",
                ERFWarning,
                stacklevel=2,
            )

    maps, stats = _measure(traced, records, units, source, spatial, batch_size, dtype, device, channel, progress)

    results: dict[str, ERFResult] = {}
    for req, rec, unit, box, m, st in zip(requested, records, units, boxes, maps, stats):
        note = None
        checked = check_support
        if rec.global_context:
            checked, note = False, "node has global context (e.g. squeeze-excitation): the gradient may reach every pixel"
        elif any(b is None for b in box):
            checked, note = False, f"node is not local along every axis (source={rec.source})"
        res = ERFResult(
            node=rec.name, map=m, unit=tuple(u if u is not None else -1 for u in unit), box=box,
            input_shape=(source.count or st["samples"], channels, *spatial), n_samples=st["samples"],
            nan_count=st["nan"], inf_count=st["inf"], nonfinite_samples=st["bad_samples"],
            dtype=str(dtype).replace("torch.", ""), channel=channel, support_checked=checked, note=note,
            requested=req,
        )
        if checked:
            _assert_support(res)
        if res.nan_count or res.inf_count:
            warnings.warn(
                f"node {req!r}: {res.nan_count} NaN and {res.inf_count} inf gradient entries in "
                f"{res.nonfinite_samples} of {res.n_samples} samples were left out of the map (counted in the result)",
                ERFWarning,
                stacklevel=2,
            )
        if res.total == 0:
            warnings.warn(f"node {req!r}: the ERF map is all zeros (no gradient reached the input)",
                          ERFWarning, stacklevel=2)
        results[req] = res
    return results[requested[0]] if single else results


def _resolve(analysis: Analysis, name: str) -> str:
    return analysis.resolve(name)


def _check_node(rec: NodeRF, requested: str) -> None:
    if rec.shape is None or len(rec.shape) < 2:
        raise ERFError(f"node {requested!r} ({rec.name}) is not a batched tensor (shape {rec.shape})")
    if all(d is None for d in rec.dims) or all(rec.is_global):
        raise ERFError(
            f"node {requested!r} ({rec.name}, {rec.op}) keeps no input spatial axis as a tensor dim "
            f"(dims {rec.dims}, global {rec.is_global}): it has no centre unit; pick an earlier node"
        )


def _measure(traced, records, units, source, spatial, batch_size, dtype, device, channel, progress):
    try:
        gm = cut(traced.graph_module, [r.fx_name or r.name for r in records])
    except TraceError as exc:
        raise ERFError(str(exc)) from exc
    model_modules = list(traced.graph_module.modules())
    training = {m: m.training for m in model_modules}
    if dtype != torch.float32:
        gm = copy.deepcopy(gm).to(dtype)
    gm.eval()
    indices = []
    for rec, unit in zip(records, units):
        idx: list[Any] = [slice(None)] * len(rec.shape)
        for a, u in enumerate(unit):
            if u is not None:
                idx[rec.dims[a]] = u
        if channel is not None:
            free = [d for d in range(1, len(rec.shape)) if d not in rec.dims]
            if len(free) != 1:
                raise ERFError(f"node {rec.name!r} has {len(free)} non-spatial dims besides the batch; "
                               "cannot pick a channel")
            if not 0 <= channel < rec.shape[free[0]]:
                raise ERFError(f"channel {channel} out of range for node {rec.name!r} with "
                               f"{rec.shape[free[0]]} channels")
            idx[free[0]] = channel
        indices.append(tuple(idx))
    maps = [np.zeros(spatial, dtype=np.float64) for _ in records]
    stats = [{"samples": 0, "nan": 0, "inf": 0, "bad_samples": 0} for _ in records]
    total = None if source.count is None else math.ceil(source.count / batch_size)
    from tqdm.auto import tqdm

    label = records[0].name if len(records) == 1 else f"{len(records)} nodes"
    bar = tqdm(total=total, desc=f"ERF {label}", unit="batch", disable=not progress, file=sys.stderr)
    try:
        with torch.enable_grad():
            for x in source.batches(spatial, batch_size, dtype, device):
                x = x.detach().requires_grad_(True)
                outs = gm(x)
                for i, (out, idx) in enumerate(zip(outs, indices)):
                    if not isinstance(out, torch.Tensor):
                        raise ERFError(f"node {records[i].name!r} did not produce a tensor")
                    y = out[idx].sum()
                    (g,) = torch.autograd.grad(y, x, retain_graph=i < len(outs) - 1, allow_unused=True)
                    if g is None:
                        g = torch.zeros_like(x)
                    g = g.detach().abs().to(torch.float64)
                    nan, inf = torch.isnan(g), torch.isinf(g)
                    bad = nan | inf
                    stats[i]["nan"] += int(nan.sum())
                    stats[i]["inf"] += int(inf.sum())
                    stats[i]["bad_samples"] += int(bad.flatten(1).any(1).sum())
                    stats[i]["samples"] += x.shape[0]
                    g = torch.where(bad, torch.zeros((), dtype=g.dtype), g)
                    maps[i] += g.sum(dim=(0, 1)).cpu().numpy()
                del outs, x
                bar.update(1)
    finally:
        bar.close()
        for m, flag in training.items():
            m.training = flag
    if stats[0]["samples"] == 0:
        raise ERFError("no input samples were given")
    return maps, stats


def _assert_support(res: ERFResult) -> None:
    sup = res.support()
    if sup is None:
        return
    outside = []
    for a, ((slo, shi), b) in enumerate(zip(sup, res.box)):
        if b is not None and (slo < b[0] or shi > b[1]):
            outside.append(a)
    if outside:
        raise ERFSupportError(
            f"the ERF of node {res.node!r} is non-zero on {sup} but the theoretical RF box of its centre unit "
            f"{res.unit} is {res.box} (input {res.input_shape[2:]}; axes {outside} exceed it). This is a bug in a "
            "rule or in the symbolic pass: please report it with the model."
        )


# -- plots ------------------------------------------------------------------------------------------------


def plot_erf(
    results: Union[ERFResult, Sequence[ERFResult]],
    path: Optional[Union[str, os.PathLike]] = None,
    *,
    scale: str = "log",
    ax: Any = None,
    title: Optional[str] = None,
    dpi: int = 100,
    log_range: float = 1e-8,
    cols: Optional[int] = None,
) -> Any:
    """Heatmaps of ERF maps (one panel per result) with the theoretical RF box drawn on top.

    ``scale``: ``"log"`` (zeros shown in grey, values below ``max * log_range``
    clipped) or ``"linear"``.  3-D maps are summed over their first axis; 1-D
    maps are drawn as a curve with the RF shaded.  Returns the figure; saved
    to ``path`` when given (matplotlib's Agg backend, no display needed).
    """
    if scale not in ("log", "linear"):
        raise ERFError(f"scale must be 'log' or 'linear', got {scale!r}")
    import matplotlib

    if path is not None and ax is None:
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm, Normalize
    from matplotlib.patches import Patch, Rectangle

    results = [results] if isinstance(results, ERFResult) else list(results)
    if ax is not None and len(results) != 1:
        raise ERFError("ax= can only be used with a single result")
    n = len(results)
    cols = max(1, min(n, cols if cols else (n if n <= 3 else math.ceil(math.sqrt(n)))))
    rows = math.ceil(n / cols)
    if ax is None:
        fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.9 * rows), squeeze=False)
        axes = axes.ravel()
    else:
        fig, axes = ax.figure, [ax]
    for a, res in zip(axes, results):
        m = res.map
        label = res.requested if res.requested and res.requested != res.node else res.node
        ratios = res.area_ratios
        sub = f"RF {'x'.join(str(r) for r in res.rf)}  σ {'/'.join(f'{s:.1f}' for s in res.sigma)}\n" + \
            "area ratio " + " ".join(f"{int(round(t * 100))}%:{v:.3f}" for t, v in ratios.items())
        if res.ndim == 1:
            x = np.arange(m.size)
            a.plot(x, m, color="C0", lw=1.2)
            if scale == "log":
                a.set_yscale("log")
                pos = m[m > 0]
                if pos.size:
                    a.set_ylim(max(pos.min(), pos.max() * log_range) / 2, pos.max() * 2)
            b = res.box[0]
            if b is not None:
                a.axvspan(b[0] - 0.5, b[1] + 0.5, color="C1", alpha=0.15, label="theoretical RF")
                a.legend(loc="upper right", fontsize=7)
            a.set_xlabel("input position")
            a.set_ylabel("Σ |∂y/∂x|")
        else:
            img = m.sum(axis=0) if res.ndim == 3 else m
            boxes = res.box[1:] if res.ndim == 3 else res.box
            vmax = float(img.max()) if img.size else 1.0
            if scale == "log" and vmax > 0:
                pos = img[img > 0]
                norm = LogNorm(vmin=max(float(pos.min()), vmax * log_range), vmax=vmax)
                shown = np.ma.masked_where(img <= 0, img)
            else:
                norm = Normalize(vmin=0, vmax=vmax if vmax > 0 else 1)
                shown = img
            base = matplotlib.colormaps["magma"]
            cmap = base.with_extremes(bad="#d0d0d0", under=base(0.0))
            im = a.imshow(shown, cmap=cmap, norm=norm, interpolation="nearest", origin="upper")
            fig.colorbar(im, ax=a, fraction=0.046, pad=0.03)
            handles = []
            if all(b is not None for b in boxes):
                (y0, y1), (x0, x1) = boxes
                handles.append(a.add_patch(Rectangle(
                    (x0 - 0.5, y0 - 0.5), x1 - x0 + 1, y1 - y0 + 1, fill=False, edgecolor="#35c0ff", lw=1.3,
                    ls="--", label="theoretical RF")))
            if scale == "log" and (img <= 0).any():
                handles.append(Patch(facecolor="#d0d0d0", edgecolor="#808080", lw=0.5, label="exactly 0"))
            if handles:
                a.legend(handles=handles, loc="lower right", fontsize=7, framealpha=0.75)
            c = res.center[-2:]
            a.plot([c[1]], [c[0]], marker="+", color="#35c0ff", ms=8)
            a.set_xlim(-0.5, img.shape[1] - 0.5)
            a.set_ylim(img.shape[0] - 0.5, -0.5)
            if res.ndim == 3:
                sub += "\n(summed over depth)"
        a.set_title(f"{label}\n{sub}", fontsize=8)
    for a in axes[n:]:
        a.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    if path is not None:
        fig.savefig(os.fspath(path), dpi=dpi)
        if ax is None:
            plt.close(fig)
    return fig


# -- nodes chosen for the caller --------------------------------------------------------------------


def default_nodes(
    model: nn.Module,
    input_shape: Sequence[int],
    which: str = "last",
    traced: Optional[Traced] = None,
    rules: Optional[RuleSet] = None,
) -> list[str]:
    """The nodes to measure when none are named: ``"last"``, the last spatial node, or ``"stages"``,
    the output of every module-level block whose RF is local (global nodes have no bounded ERF).

    The symbolic analysis runs at ``input_shape``'s channels and spatial size, grown while a layer's
    output comes out empty.
    """
    if which not in ("last", "stages"):
        raise ERFError(f"which must be 'last' or 'stages', got {which!r}")
    shape = tuple(input_shape)
    if len(shape) < 3:
        raise ERFError(f"input_shape needs (N, C, *spatial), got {shape}")
    traced = trace(model) if traced is None else traced
    a = _analyze_growing(model, traced, rules, shape[1], list(shape[2:]))
    if which == "stages":
        return [r.name for r in a.stages() if not any(r.is_global)]
    last = a.last_spatial()
    if last is None:
        raise ERFError("the model has no spatial node; name the node to measure")
    return [last.name]
