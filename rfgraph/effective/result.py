"""The result of an effective-RF measurement (`ERFResult`, its summary numbers and plot) and the ERF errors."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np

from ..errors import RFGraphError

__all__ = ["ERFResult", "ERFError", "ERFSupportError", "ERFWarning", "DEFAULT_SHARES", "IMAGENET_MEAN", "IMAGENET_STD", "IMAGE_SUFFIXES", "plot_erf"]

#: The shares of the total contribution reported by `ERFResult.area_ratios` (as in RepLKNet / SLaK).
DEFAULT_SHARES: tuple[float, ...] = (0.2, 0.3, 0.5, 0.99)
IMAGENET_MEAN: tuple[float, ...] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, ...] = (0.229, 0.224, 0.225)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


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
