"""Pictures of an `Analysis`: RF size and stride along the depth, and the RF box of one unit.

Needs the optional extra ``plot`` (``pip install 'rfgraph[plot]'``: matplotlib
and pillow).  Figures are built with `matplotlib.figure.Figure` and saved
through the Agg canvas, so no display and no pyplot state are involved; the
functions return the figure (Jupyter shows it) and write it when given a
path (``.png``, ``.svg``, ``.pdf``: whatever matplotlib infers from the suffix).

Like every report, the pictures read only the `NodeRF` records.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Sequence

from ..errors import RFGraphError
from ..results import Analysis, NodeRF

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["plot_depth", "plot_overlay", "image_size", "default_unit"]

_AXIS_LABELS = {1: ("length",), 2: ("height", "width"), 3: ("depth", "height", "width")}


def _figure(**kwargs: Any) -> Figure:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise RFGraphError("pictures need matplotlib: pip install 'rfgraph[plot]'") from None
    return Figure(**kwargs)


def _save(fig: Figure, path: Optional[str]) -> None:
    if path is None:
        return
    try:
        fig.savefig(path, dpi=120, bbox_inches="tight")
    except (OSError, ValueError) as exc:
        raise RFGraphError(f"cannot write picture {path!r}: {exc}") from exc


def _load_image(path: str):
    try:
        from PIL import Image
    except ImportError:
        raise RFGraphError("reading images needs pillow: pip install 'rfgraph[plot]'") from None
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (OSError, ValueError) as exc:
        raise RFGraphError(f"cannot read image {path!r}: {exc}") from exc


def image_size(path: str) -> tuple[int, int]:
    """``(height, width)`` of an image file."""
    img = _load_image(path)
    return img.height, img.width


# -- RF along the depth ----------------------------------------------------------------------------


def plot_depth(
    analysis: Analysis,
    path: Optional[str] = None,
    *,
    title: Optional[str] = None,
    figsize: tuple[float, float] = (11.0, 6.5),
) -> Figure:
    """RF size (top) and effective stride (bottom) of every node, in graph order, on log scales.

    Dashed vertical lines mark stage boundaries (`Analysis.stages`: the last
    node at each stride), labelled with the node name.  The RF of the smallest
    single path (``rf_path_min``, what a residual shortcut lets through) is the
    dotted line.  Nodes that are global along every axis are shaded grey,
    unknown nodes are red ticks at the bottom.  Per-axis lines are drawn only
    when the axes differ somewhere.
    """
    records = [r for r in analysis if r.op not in ("placeholder", "output")]
    if not records:
        raise RFGraphError("nothing to plot: the analysis has no nodes besides the input and output")
    ndim = analysis.ndim
    labels = _AXIS_LABELS.get(ndim, tuple(f"axis {i}" for i in range(ndim)))
    split = any(len(set(r.rf)) > 1 or len(set(r.stride)) > 1 for r in records if r.is_spatial)
    axes_drawn = range(ndim) if split else range(min(ndim, 1))
    xs = list(range(len(records)))

    fig = _figure(figsize=figsize, layout="constrained")
    ax_rf, ax_st = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    colors = ("tab:blue", "tab:orange", "tab:green")
    for i in axes_drawn:
        suffix = f" ({labels[i]})" if split else ""
        rf = [r.rf[i] if r.is_spatial else None for r in records]
        path_min = [r.rf_path_min[i] if r.is_spatial else None for r in records]
        stride = [float(r.stride[i]) if r.is_spatial and r.stride[i] is not None else None for r in records]
        c = colors[i % len(colors)]
        ax_rf.plot(xs, _nan(rf), color=c, lw=1.8, drawstyle="steps-mid", label=f"RF size{suffix}")
        if any(a != b for a, b in zip(rf, path_min)):
            ax_rf.plot(xs, _nan(path_min), color=c, lw=1.0, ls=":", drawstyle="steps-mid", label=f"smallest single-path RF{suffix}")
        ax_st.plot(xs, _nan(stride), color=c, lw=1.8, drawstyle="steps-mid", label=f"stride{suffix}")
        odd = [(x, v) for x, v, r in zip(xs, stride, records) if v is not None and not r.is_regular(i)]
        if odd:  # finite window maps: the stride is not one number, the point is its exact mean slope
            ax_st.scatter([x for x, _ in odd], [v for _, v in odd], color=c, marker="x", s=14, zorder=3,
                          label=f"irregular stride (mean slope){suffix}")

    for ax, name in ((ax_rf, "receptive field (input pixels)"), (ax_st, "effective stride")):
        ax.set_yscale("log", base=2)
        ax.set_ylabel(name)
        ax.grid(True, which="major", axis="y", alpha=0.3)
        _mark_global_and_unknown(ax, records)
    _integer_log_ticks(ax_rf)
    _integer_log_ticks(ax_st)

    index = {r.name: k for k, r in enumerate(records)}
    stage_idx = [index[s.name] for s in analysis.stages() if s.name in index]
    for k in stage_idx:
        for ax in (ax_rf, ax_st):
            ax.axvline(k + 0.5, color="0.45", ls="--", lw=0.8)
    top = ax_rf.secondary_xaxis("top")
    top.set_xticks(
        [k + 0.5 for k in stage_idx],
        [f"{records[k].name}: RF {_first(records[k].rf)}, stride {_first(records[k].stride)}" for k in stage_idx],
        rotation=30,
        ha="left",
        fontsize=7,
    )
    top.tick_params(length=3, pad=1)
    ax_st.set_xlabel("node index in graph order")
    ax_st.set_xlim(-0.5, len(records) - 0.5)
    ax_rf.legend(loc="upper left", fontsize=8)
    ax_st.legend(loc="upper left", fontsize=8)
    head = title or analysis.model_name or "model"
    ax_rf.set_title(
        f"{head}: receptive field along the depth (input {'x'.join(map(str, analysis.input_shape))}); "
        "dashed: where the stride changes",
        fontsize=10,
    )
    _save(fig, path)
    return fig


def _nan(values: Sequence[Optional[float]]) -> list[float]:
    return [float("nan") if v is None else float(v) for v in values]


def _first(values: Sequence[Any]) -> str:
    shown = [str(v) for v in values if v is not None]
    if not shown:
        return "-"
    return shown[0] if len(set(shown)) == 1 else " x ".join(shown)


def _integer_log_ticks(ax) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator

    ax.yaxis.set_major_locator(LogLocator(base=2))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}" if v >= 1 else f"1/{1 / v:g}"))


def _mark_global_and_unknown(ax, records: Sequence[NodeRF]) -> None:
    shaded = False
    marked = False
    for k, r in enumerate(records):
        if r.is_unknown:
            ax.axvspan(k - 0.5, k + 0.5, color="tab:red", alpha=0.15, lw=0, label=None if marked else "unknown")
            marked = True
        elif r.rf and all(r.is_global):
            ax.axvspan(k - 0.5, k + 0.5, color="0.85", lw=0, label=None if shaded else "global")
            shaded = True


# -- the RF box of one unit --------------------------------------------------------------------------


def default_unit(record: NodeRF) -> tuple[int, ...]:
    """The centre unit of a node (``size // 2`` along each dim carrying an input axis)."""
    if record.shape is None:
        raise RFGraphError(f"node {record.name!r} has no shape to pick a unit from")
    return tuple(record.shape[d] // 2 if d is not None else 0 for d in record.dims)


def _check_unit(record: NodeRF, unit: Sequence[int]) -> tuple[int, ...]:
    unit = tuple(int(u) for u in unit)
    if len(unit) != record.ndim:
        raise RFGraphError(f"--unit needs {record.ndim} indices for node {record.name!r}, got {unit}")
    for i, (u, d) in enumerate(zip(unit, record.dims)):
        if d is None or record.shape is None:
            continue
        size = record.shape[d]
        if not 0 <= u < size:
            raise RFGraphError(
                f"unit index {u} along axis {i} is outside node {record.name!r} (size {size} there: 0..{size - 1})"
            )
    return unit


def plot_overlay(
    analysis: Analysis,
    node: str,
    unit: Optional[Sequence[int]] = None,
    *,
    image: Optional[str] = None,
    path: Optional[str] = None,
    title: Optional[str] = None,
    figsize: tuple[float, float] = (7.5, 7.5),
) -> Figure:
    """The input box seen by one output ``unit`` of ``node``, over an image or an input-sized canvas.

    The unclipped box (as if the input were infinite) is the dashed outline,
    its part inside the input is filled; the grey margin is padding.  The
    centre of every unit of the node is a small dot (when there are at most
    64 per axis), which shows the stride.  An image whose size differs from
    the analysed input is resized to it (boxes are in input coordinates).
    """
    if analysis.ndim != 2:
        raise RFGraphError(f"the overlay draws 2-D inputs; this analysis has {analysis.ndim} spatial axes")
    record = analysis[node]
    if not (record.is_spatial and all(lo is not None for lo in record.lo)):
        why = record.reason if record.is_unknown else "it depends on the whole input (global)"
        raise RFGraphError(f"node {record.name!r} has no local receptive field box to draw: {why}")
    unit = _check_unit(record, unit if unit is not None else default_unit(record))
    box = record.box(unit)
    if box is None:
        raise RFGraphError(f"unit {tuple(unit)} of node {record.name!r} reads nothing (an output no "
                           "transposed-conv tap reaches): there is no box to draw")
    (top, bottom), (left, right) = box
    height, width = analysis.input_shape[-2:]

    fig = _figure(figsize=figsize, layout="constrained")
    ax = fig.subplots()
    ax.set_facecolor("0.88")
    note = ""
    if image is not None:
        img = _load_image(image)
        if (img.height, img.width) != (height, width):
            note = f" (image {img.width}x{img.height} resized to {width}x{height})"
            img = img.resize((width, height))
        import numpy as np

        ax.imshow(np.asarray(img), extent=(-0.5, width - 0.5, height - 0.5, -0.5), interpolation="nearest")
    else:
        from matplotlib.patches import Rectangle

        ax.add_patch(Rectangle((-0.5, -0.5), width, height, facecolor="white", edgecolor="0.3", lw=1.0, zorder=0))

    from matplotlib.patches import Rectangle

    ax.add_patch(
        Rectangle(
            (left - 0.5, top - 0.5),
            right - left + 1,
            bottom - top + 1,
            fill=False,
            edgecolor="tab:red",
            ls="--",
            lw=1.5,
            label="receptive field (unclipped)",
            zorder=3,
        )
    )
    c_top, c_bottom = max(top, 0), min(bottom, height - 1)
    c_left, c_right = max(left, 0), min(right, width - 1)
    import numpy as np

    # Dim what this unit does not see.
    shade = np.zeros((height, width, 4))
    shade[..., 3] = 0.55
    if c_top <= c_bottom and c_left <= c_right:
        shade[c_top : c_bottom + 1, c_left : c_right + 1, 3] = 0.0
        ax.add_patch(
            Rectangle(
                (c_left - 0.5, c_top - 0.5),
                c_right - c_left + 1,
                c_bottom - c_top + 1,
                fill=False,
                edgecolor="tab:red",
                lw=2.5,
                label="seen inside the input",
                zorder=3,
            )
        )
    ax.imshow(shade, extent=(-0.5, width - 0.5, height - 0.5, -0.5), interpolation="nearest", zorder=1)
    _draw_unit_centres(ax, record, unit)
    cy, cx = (top + bottom) / 2, (left + right) / 2
    ax.plot([cx], [cy], marker="+", color="tab:red", ms=14, mew=2, zorder=5)

    margin = 0.04 * max(height, width, bottom - top, right - left)
    ax.set_xlim(min(-0.5, left - 0.5) - margin, max(width - 0.5, right + 0.5) + margin)
    ax.set_ylim(max(height - 0.5, bottom + 0.5) + margin, min(-0.5, top - 0.5) - margin)
    ax.set_aspect("equal")
    ax.set_xlabel("input column")
    ax.set_ylabel("input row")
    fig.legend(loc="outside lower center", ncols=3, fontsize=8, frameon=False)
    rf, stride = _first(record.rf), _first(record.stride)
    if record.irregular:
        stride = f"~{stride} (irregular)"
    head = f"{title}: " if title else ""
    ax.set_title(
        f"{head}{record.name} unit {unit}{note}\n"
        f"sees rows {top}..{bottom}, columns {left}..{right} (RF {rf}, stride {stride}); "
        "grey margin: padding; dimmed: not seen",
        fontsize=10,
    )
    _save(fig, path)
    return fig


def _draw_unit_centres(ax, record: NodeRF, unit: Sequence[int]) -> None:
    sizes = [record.shape[d] for d in record.dims]  # type: ignore[index]
    if any(n > 64 for n in sizes):
        return
    lo_h, hi_h = record.lo[0], record.hi[0]
    lo_w, hi_w = record.lo[1], record.hi[1]
    # units that read nothing (finite maps: None) have no centre
    rows = [(lo_h(u) + hi_h(u)) / 2 for u in range(sizes[0]) if lo_h(u) is not None]
    cols = [(lo_w(u) + hi_w(u)) / 2 for u in range(sizes[1]) if lo_w(u) is not None]
    ys = [y for y in rows for _ in cols]
    xs = [x for _ in rows for x in cols]
    ax.scatter(xs, ys, s=6, color="tab:blue", alpha=0.7, zorder=4, label=f"centres of the {sizes[0]}x{sizes[1]} units")

