"""The report's figures (matplotlib, no pyplot state): length distributions and z projections.

Every function returns a ``matplotlib.figure.Figure``; :func:`figure_png` renders one to PNG bytes.
Physical axes are in µm; images are shown with their true aspect ratio.
"""

from __future__ import annotations

import colorsys
import io
from collections.abc import Mapping, Sequence

import matplotlib
import networkx as nx
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from pipeline.report.projection import ZProjection

__all__ = [
    "PRED_COLOUR",
    "TRUE_COLOUR",
    "figure_png",
    "label_colours",
    "length_figure",
    "projection_figure",
]

PRED_COLOUR = "#d1495b"  # prediction / segmentation
TRUE_COLOUR = "#00798c"  # ground truth
_GOLDEN = 0.618033988749895

_STYLE = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.fontsize": 8,
    "legend.frameon": False,
}


def figure_png(figure: Figure, *, dpi: int = 110) -> bytes:
    """Render a figure to PNG bytes."""
    FigureCanvasAgg(figure)
    buf = io.BytesIO()
    figure.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
    return buf.getvalue()


def label_colours(labels: np.ndarray) -> np.ndarray:
    """A stable, well-separated RGB colour (float, 0–1) per label: hue from the golden-ratio sequence.

    Parameters
    ----------
    labels : ndarray of int
        Labels (> 0).

    Returns
    -------
    ndarray, shape (N, 3)
        Colours; the same label always gets the same colour.
    """
    labels = np.asarray(labels, dtype=np.uint64).ravel()
    hues = (labels.astype(np.float64) * _GOLDEN) % 1.0
    return np.array([colorsys.hsv_to_rgb(h, 0.75, 0.95) for h in hues]).reshape(-1, 3)


def _ecdf(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.sort(values)
    return np.concatenate([[x[0]], x]), np.concatenate([[0.0], np.arange(1, len(x) + 1) / len(x)])


def length_figure(
    pred_lengths_um: Sequence[float],
    true_lengths_um: Sequence[float] | None = None,
    *,
    pred_name: str = "segmentation",
    true_name: str = "ground truth",
) -> Figure:
    """Histogram and empirical CDF of object lengths (µm), prediction against ground truth when given.

    Parameters
    ----------
    pred_lengths_um : sequence of float
        Lengths of the predicted objects (interior objects only, as in the length metrics).
    true_lengths_um : sequence of float, optional
        Lengths of the ground-truth objects.
    pred_name, true_name : str
        Legend names.

    Returns
    -------
    matplotlib.figure.Figure
        Two panels: histogram (shared bins) and ECDF, with n and median in the legend.
    """
    pred = np.asarray(pred_lengths_um, dtype=np.float64)
    true = None if true_lengths_um is None else np.asarray(true_lengths_um, dtype=np.float64)
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(10.5, 3.6), layout="constrained")
        ax_h, ax_c = fig.subplots(1, 2)
        series = [(pred, pred_name, PRED_COLOUR)]
        if true is not None and len(true):
            series.append((true, true_name, TRUE_COLOUR))
        everything = np.concatenate([s[0] for s in series]) if series else np.zeros(0)
        if len(everything) == 0:
            for ax in (ax_h, ax_c):
                ax.text(
                    0.5,
                    0.5,
                    "no objects to measure",
                    ha="center",
                    va="center",
                    transform=ax.transAxes,
                    color="0.4",
                )
        else:
            hi = float(everything.max()) if everything.max() > 0 else 1.0
            bins = np.linspace(0.0, hi * 1.02, min(40, max(8, int(np.sqrt(len(everything))) * 2)) + 1)
            for k, (values, name, colour) in enumerate(series):
                if len(values) == 0:
                    continue
                label = f"{name} (n={len(values)}, median {np.median(values):.1f} µm)"
                if k == 0:  # the segmentation filled, the ground truth as an outline on top
                    ax_h.hist(values, bins=bins, color=colour, alpha=0.45, label=label)
                else:
                    ax_h.hist(values, bins=bins, color=colour, histtype="step", linewidth=2.0, label=label)
                x, y = _ecdf(values)
                ax_c.step(x, y, where="post", color=colour, linewidth=1.6, label=label)
                ax_c.axvline(np.median(values), color=colour, linewidth=0.8, linestyle=":")
            ax_h.legend(loc="upper right")
            ax_h.yaxis.get_major_locator().set_params(integer=True)
            ax_c.legend(loc="lower right")
            ax_c.set_ylim(0, 1.02)
            ax_c.set_xlim(left=0)
        ax_h.set(title="Object length distribution", xlabel="length (µm)", ylabel="objects")
        ax_c.set(
            title="Cumulative distribution (ECDF)",
            xlabel="length (µm)",
            ylabel="fraction of objects ≤ length",
        )
        ax_c.grid(alpha=0.3)
    return fig


def _extent(shape: tuple[int, int], vs: Sequence[float]) -> list[float]:
    (ny, nx_), (vy, vx) = shape, (float(vs[1]), float(vs[2]))
    return [-vx / 2, (nx_ - 0.5) * vx, (ny - 0.5) * vy, -vy / 2]


def _contrast(raw: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(raw, [1.0, 99.8])
    if hi <= lo:
        hi = lo + 1.0
    return np.clip((raw - lo) / (hi - lo), 0.0, 1.0)


def projection_figure(
    projection: ZProjection,
    *,
    voxel_size_um: Sequence[float],
    skeletons: Mapping[int, nx.Graph] | None = None,
    alpha: float = 0.45,
    max_pixels: int = 1_500_000,
) -> Figure:
    """Maximum-intensity projections along z: raw with the segmentation overlaid, and with the skeletons.

    Parameters
    ----------
    projection : ZProjection
        From :func:`pipeline.report.projection.z_projection` (raw may be None: black background).
    voxel_size_um : sequence of 3 float
        Voxel size in µm, (z, y, x); axes are drawn in µm.
    skeletons : mapping of int to networkx.Graph, optional
        Skeletons (``pos_um`` (z, y, x)); their edges are projected onto (y, x) in the label's colour.
    alpha : float
        Opacity of the segmentation overlay.
    max_pixels : int
        Larger projections are shown subsampled (every k-th pixel) to keep the figure small.

    Returns
    -------
    matplotlib.figure.Figure
    """
    labels = projection.labels
    step = max(1, int(np.ceil(np.sqrt(labels.size / max_pixels))))
    labels = labels[::step, ::step]
    vs = (float(voxel_size_um[0]), float(voxel_size_um[1]) * step, float(voxel_size_um[2]) * step)
    base = (
        np.zeros(labels.shape)
        if projection.raw is None
        else _contrast(projection.raw[::step, ::step].astype(np.float64))
    )
    overlay = np.zeros((*labels.shape, 4))
    present = np.unique(labels)
    present = present[present != 0]
    if len(present):
        index = np.searchsorted(present, labels)
        colours = label_colours(present)
        fg = labels != 0
        overlay[fg, :3] = colours[np.minimum(index[fg], len(present) - 1)]
        overlay[fg, 3] = alpha
    extent = _extent(labels.shape, vs)
    ny, nx_ = labels.shape
    aspect_h = ny * vs[1] / max(nx_ * vs[2], 1e-9)
    width = 10.5
    panel_h = min(7.0, max(2.2, width / 2 * aspect_h))
    with matplotlib.rc_context(_STYLE):
        fig = Figure(figsize=(width, panel_h + 0.8), layout="constrained")
        ax_s, ax_k = fig.subplots(1, 2, sharex=True, sharey=True)
        for ax in (ax_s, ax_k):
            ax.imshow(base, cmap="gray", extent=extent, interpolation="nearest", vmin=0, vmax=1)
            ax.set(xlabel="x (µm)", ylabel="y (µm)")
            ax.spines[["top", "right"]].set_visible(True)
        ax_s.imshow(overlay, extent=extent, interpolation="nearest")
        ax_s.set_title(f"Raw MIP (z) + segmentation ({len(present)} objects)")
        n_edges = 0
        if skeletons:
            segments, colours = [], []
            for label, graph in skeletons.items():
                pos = {n: d["pos_um"] for n, d in graph.nodes(data=True)}
                colour = label_colours(np.array([label]))[0]
                for a, b in graph.edges:
                    segments.append(((pos[a][2], pos[a][1]), (pos[b][2], pos[b][1])))
                    colours.append(colour)
            n_edges = len(segments)
            if segments:
                ax_k.add_collection(LineCollection(segments, colors=colours, linewidths=1.1))
        ax_k.imshow(np.zeros((*labels.shape, 4)), extent=extent)  # keep the image limits
        ax_k.set_title(
            f"Raw MIP (z) + skeletons ({len(skeletons or {})} objects)"
            if n_edges
            else "Raw MIP (z); no skeletons"
        )
    return fig
