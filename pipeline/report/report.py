"""Assemble a run's report: HTML page and PDF, as a string and bytes (writing them is pipeline.io.report).

Contents, top to bottom: a summary (objects, median length, key metrics: for a ``neurons`` run ERL,
splits and merges per neuron and the dropout gaps bridged; for an ``ais`` run precision / recall, the
length distance and discontinuities per AIS), the length histogram and ECDF (segmentation vs ground
truth when evaluated), z projections of raw with the segmentation and the skeletons, the metrics tables
with definitions, the threshold sweep (when the run has one: segments and, with ground truth, VOI, ERL,
splits and merges per threshold), the per-neuron table (``neurons`` runs), the per-object table, the run's
parameters and the software versions.
"""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import matplotlib
import networkx as nx
import numpy as np
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from pipeline._checks import as_voxel_size
from pipeline.report import html as h
from pipeline.report.content import (
    LENGTH_ROWS,
    NEURON_COLUMNS,
    SKELETON_ROWS,
    THRESHOLD_COLUMNS,
    VOXEL_ROWS,
    format_value,
    metric_table,
    summarize,
)
from pipeline.report.figures import figure_png, length_figure, projection_figure
from pipeline.report.projection import ZProjection
from pipeline.skeleton.lengths import ObjectRow

__all__ = ["Report", "ReportData", "build_report"]

#: Rows of the per-object table shown (the full table is lengths.csv).
MAX_TABLE_ROWS = 300


@dataclass(frozen=True, eq=False)
class ReportData:
    """Everything a report shows (all computed beforehand; nothing is read from disk here).

    Attributes
    ----------
    title : str
        Page title, e.g. ``"neurorecon report — runs/demo"``.
    rows : sequence of ObjectRow
        Per-object measurements (``lengths.csv``).
    voxel_size_um : tuple of 3 float
        (z, y, x) µm.
    metrics : mapping, optional
        The ``metrics.json`` dictionary (sections ``voxel``, ``skeleton``, ``length``).
    projection : ZProjection, optional
        z projections of raw and segmentation.
    skeletons : mapping of int to networkx.Graph, optional
        Skeletons to overlay on the projection.
    parameters : mapping
        The run's parameters (shown as given; nested mappings are flattened with dots).
    versions : mapping of str to str
        Software versions.
    created : str
        Time stamp shown in the header (passed in, so a report is reproducible).
    sources : mapping of str to str
        Input files, shown under the parameters.
    subtitle : str
        First part of the line under the title (e.g. the run directory).
    thresholds : sequence of mapping
        The segmentations of a threshold sweep, one row per threshold with the keys of
        :data:`~pipeline.report.content.THRESHOLD_COLUMNS` that are known (``threshold``,
        ``segmentation`` and ``n_segments`` at least); empty: no sweep.
    """

    title: str
    rows: Sequence[ObjectRow]
    voxel_size_um: tuple[float, float, float]
    metrics: Mapping[str, Any] | None = None
    projection: ZProjection | None = None
    skeletons: Mapping[int, nx.Graph] | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)
    versions: Mapping[str, str] = field(default_factory=dict)
    created: str = ""
    sources: Mapping[str, str] = field(default_factory=dict)
    subtitle: str = ""
    thresholds: Sequence[Mapping[str, Any]] = ()


@dataclass(frozen=True, eq=False)
class Report:
    """A rendered report.

    Attributes
    ----------
    html : str
        The self-contained page.
    pdf : bytes
        The same content as a multi-page PDF.
    figures : dict of str to bytes
        The PNG figures embedded in the page (``lengths``, ``projection``).
    """

    html: str
    pdf: bytes
    figures: dict[str, bytes]


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, name + "."))
        elif isinstance(value, list | tuple):
            out[name] = ", ".join(str(v) for v in value)
        else:
            out[name] = str(value)
    return out


def _true_lengths(metrics: Mapping[str, Any] | None) -> np.ndarray | None:
    lengths = (metrics or {}).get("length", {}).get("true_lengths_um")
    if not lengths:
        return None
    return np.array([float(v) for v in lengths.values()], dtype=float)


def _num(value: float, fmt: str = "{:.1f}") -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else fmt.format(value)


def _kind(metrics: Mapping[str, Any] | None) -> str | None:
    """The kind of volume a run was evaluated as (``neurons`` / ``ais``); None if it was not evaluated or
    its metrics name no kind (then everything computed is shown)."""
    return (metrics or {}).get("kind")


def _summary_cards(data: ReportData) -> str:
    """The headline numbers, chosen for the kind: a neurons run is judged by ERL, splits, merges and gaps
    bridged; an AIS run by its length distribution, precision / recall and discontinuities."""
    s = summarize(data.rows)
    m = data.metrics or {}
    kind = _kind(data.metrics)
    voxel, skel, length = m.get("voxel", {}), m.get("skeleton", {}), m.get("length", {})
    cards = [
        h.card(
            "Objects", f"{s.n_objects}", f"{s.n_interior} inside the volume, {s.n_border} touch its border"
        ),
    ]
    if kind != "neurons":  # an AIS run, or no ground truth: the length distribution is the result
        cards.append(
            h.card(
                "Median length",
                f"{_num(s.median_length_um)} µm",
                f"interior objects, IQR {_num(s.quartiles_um[0])}–{_num(s.quartiles_um[1])} µm",
                "seg",
            )
        )
    cards.append(h.card("Total cable", f"{_num(s.total_cable_um, '{:.0f}')} µm", "all skeletons, smoothed"))
    true = _true_lengths(data.metrics)
    if kind != "neurons" and true is not None and len(true):
        cards.append(
            h.card(
                "GT median length", f"{np.median(true):.1f} µm", f"{len(true)} interior true objects", "gt"
            )
        )
    if "dice" in voxel:
        cards.append(
            h.card(
                "Dice",
                format_value(voxel["dice"], "{:.3f}"),
                f"VOI split {format_value(voxel.get('voi_split_bits'), '{:.2f}')} / merge "
                f"{format_value(voxel.get('voi_merge_bits'), '{:.2f}')} bits",
            )
        )
    if kind != "ais":
        if "erl_um" in skel:
            cards.append(
                h.card(
                    "ERL",
                    f"{format_value(skel['erl_um'], '{:.1f}')} µm",
                    f"normalized {format_value(skel.get('normalized_erl'), '{:.2f}')}, edge accuracy "
                    f"{format_value(skel.get('edge_accuracy_pct'), '{:.0f}')} %",
                )
            )
        if "splits_per_neuron" in skel:
            cards.append(
                h.card(
                    "Splits / merges",
                    f"{format_value(skel['splits_per_neuron'], '{:.2f}')} / "
                    f"{format_value(skel.get('merges_per_neuron'), '{:.2f}')}",
                    "per neuron (extra segments along it / other neurons sharing its segments)",
                )
            )
    if "gaps_bridged" in skel:
        cards.append(
            h.card(
                "Dropout gaps bridged",
                format_value(skel["gaps_bridged"], "{:.2f}"),
                f"{format_value(skel.get('n_gaps_bridged'), '{:d}')} of "
                f"{format_value(skel.get('n_gaps'), '{:d}')} signal-dropout gaps with both sides in one "
                "segment",
            )
        )
    joins = m.get("joins")
    if joins:
        was = (joins.get("before") or {}).get("skeleton", {})
        cards.append(
            h.card(
                "Gap joins",
                f"{joins['n_joins']}",
                f"{joins.get('n_pieces_joined', 0)} pieces joined across short gaps (skeletonize.join); "
                f"before: gaps bridged {format_value(was.get('gaps_bridged'), '{:.2f}')}, splits / merges "
                f"{format_value(was.get('splits_per_neuron'), '{:.2f}')} / "
                f"{format_value(was.get('merges_per_neuron'), '{:.2f}')} per neuron",
            )
        )
    if kind != "neurons":
        if "discontinuities_per_instance" in length and kind == "ais":
            cards.append(
                h.card(
                    "Discontinuities per AIS",
                    format_value(length["discontinuities_per_instance"], "{:.2f}"),
                    "predicted pieces per matched true AIS, minus one",
                )
            )
        if "precision" in length:
            cards.append(
                h.card(
                    "Precision / recall",
                    f"{format_value(length['precision'], '{:.2f}')} / "
                    f"{format_value(length.get('recall'), '{:.2f}')}",
                    f"{format_value(length.get('overlapping_instances'), '{:.2f}')} overlapping per object",
                )
            )
        if "wasserstein_um" in length:
            cards.append(
                h.card(
                    "Length distance",
                    f"{format_value(length['wasserstein_um'], '{:.2f}')} µm",
                    f"Wasserstein; SSMD {format_value(length.get('ssmd'), '{:.2f}')}",
                )
            )
    return f'<div class="cards">{"".join(cards)}</div>'


def _object_table(rows: Sequence[ObjectRow], vs: tuple[float, float, float]) -> tuple[str, str]:
    ordered = sorted(rows, key=lambda r: (r.touches_border, -r.length_um, r.label))
    shown = ordered[:MAX_TABLE_ROWS]
    voxel_volume = vs[0] * vs[1] * vs[2]
    table = h.data_table(
        ["Object", "Length (µm)", "Cable (µm)", "Voxels", "Volume (µm³)", "Endpoints", "Border"],
        [
            (
                r.label,
                f"{r.length_um:.1f}",
                f"{r.cable_length_um:.1f}",
                f"{r.n_voxels:,}",
                f"{r.n_voxels * voxel_volume:,.1f}",
                r.n_endpoints,
                "yes" if r.touches_border else "",
            )
            for r in shown
        ],
        numeric=[True, True, True, True, True, True, False],
        row_classes=["border" if r.touches_border else "" for r in shown],
    )
    note = (
        "Length = diameter of the smoothed skeleton graph (longest shortest path, µm); cable = total "
        "skeleton length. Objects touching the volume border (grey) are cut by the field of view and "
        "are left out of the length distributions."
    )
    if len(rows) > len(shown):
        note += f" Showing the {len(shown)} longest of {len(rows)} objects; all are in lengths.csv."
    return f'<div class="scroll">{table}</div>', note


def _neuron_rows(metrics: Mapping[str, Any] | None) -> list[list[str]]:
    """The per-neuron table of a ``neurons`` run (empty for other runs): one formatted row per neuron."""
    if not metrics or metrics.get("kind", "neurons") != "neurons":
        return []
    per = (metrics.get("skeleton") or {}).get("per_neuron") or []
    return [[format_value(row.get(key), fmt) for key, _, fmt in NEURON_COLUMNS] for row in per]


def _metrics_html(metrics: Mapping[str, Any] | None) -> str:
    if not metrics:
        return h.section(
            "Metrics",
            "",
            "No metrics.json in this run: run `neurorecon evaluate` against ground "
            "truth to add voxel, skeleton and length metrics.",
        )
    blocks = []
    for title, key, spec in (
        ("Voxel metrics", "voxel", VOXEL_ROWS),
        ("Skeleton metrics", "skeleton", SKELETON_ROWS),
        ("Length metrics", "length", LENGTH_ROWS),
    ):
        rows = metric_table(metrics.get(key), spec)
        content = (
            h.data_table(
                ["Metric", "Value", "Definition"], rows, numeric=[False, True, False], definitions=True
            )
            if rows
            else '<p class="note">not computed</p>'
        )
        blocks.append(f"<div><h3>{h.esc(title)}</h3>{content}</div>")
    return h.section(
        "Metrics",
        f'<div class="grid3">{"".join(blocks)}</div>',
        "Against the ground truth: voxel metrics on the label volumes, skeleton metrics on the "
        "ground-truth SWC skeletons, length metrics on matched instances (AIS continuity paper, "
        "sections 2.4–2.5).",
    )


def _threshold_table(rows: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """The header and formatted rows of the threshold-sweep table: the columns some row has."""
    columns = [c for c in THRESHOLD_COLUMNS if any(c[0] in r for r in rows)]
    ordered = sorted(rows, key=lambda r: float(r.get("threshold", math.nan)))
    return [c[1] for c in columns], [[format_value(r.get(k), fmt) for k, _, fmt in columns] for r in ordered]


def _thresholds_html(rows: Sequence[Mapping[str, Any]]) -> str:
    header, table = _threshold_table(rows)
    evaluated = any("voi_split_bits" in r for r in rows)
    return h.section(
        "Threshold sweep",
        '<div class="scroll">' + h.data_table(header, table, numeric=[h_ != "Segmentation" for h_ in header])
        + "</div>",
        "One segmentation per agglomeration threshold (waterz's 1 − mean affinity), all from one watershed "
        "and region graph: a higher threshold merges more. "
        + ("VOI and ARI against the ground-truth labels; ERL, splits and merges against its skeletons, as "
           "in the metrics above (length metrics only for the segmentation evaluated)."
           if evaluated else "Run `neurorecon evaluate` on this run directory to compare them with ground "
                             "truth (VOI, ERL, splits, merges)."),
    )


def _figures(data: ReportData) -> dict[str, Figure]:
    s = summarize(data.rows)
    figures = {"lengths": length_figure(s.interior_lengths_um, _true_lengths(data.metrics))}
    if data.projection is not None:
        figures["projection"] = projection_figure(
            data.projection, voxel_size_um=data.voxel_size_um, skeletons=data.skeletons
        )
    return figures


def build_report(data: ReportData) -> Report:
    """Render a run's report as an HTML page and a PDF.

    Parameters
    ----------
    data : ReportData
        Everything the report shows.

    Returns
    -------
    Report
        ``html`` (self-contained: CSS inline, figures as base64 PNG), ``pdf`` and the PNG figures.

    Raises
    ------
    ValueError
        If the voxel size is invalid.
    """
    vs = as_voxel_size(data.voxel_size_um)
    figures = _figures(data)
    pngs = {name: figure_png(fig) for name, fig in figures.items()}
    has_gt = _true_lengths(data.metrics) is not None
    parts = [_summary_cards(data)]
    kind = _kind(data.metrics)
    if kind != "neurons":  # a neuron's length says little; an AIS's is the result
        what = "AIS" if kind == "ais" else "object"
        parts.append(
            h.section(
                "AIS length distribution" if what == "AIS" else "Length distributions",
                h.embed_png(pngs["lengths"], "histogram and cumulative distribution of object lengths"),
                f"Skeleton length of every {what} inside the volume"
                + (" — segmentation (red) against ground truth (teal)." if has_gt else "."),
            )
        )
    if "projection" in pngs:
        parts.append(
            h.section(
                "Maximum-intensity projections",
                h.embed_png(
                    pngs["projection"], "z projections of raw with segmentation and skeleton overlays"
                ),
                "Raw image projected along z (contrast: 1st–99.8th percentile). Left: the segmentation, one "
                "colour per object (the object brightest in each column). Right: the skeletons projected "
                "onto (x, y), in the same colours.",
            )
        )
    parts.append(_metrics_html(data.metrics))
    if data.thresholds:
        parts.append(_thresholds_html(data.thresholds))
    neurons = _neuron_rows(data.metrics)
    if neurons:
        parts.append(
            h.section(
                "Neurons",
                '<div class="scroll">' + h.data_table([c[1] for c in NEURON_COLUMNS], neurons,
                                                      numeric=[True] * len(NEURON_COLUMNS)) + "</div>",
                "One row per ground-truth neuron: its skeleton's cable length, the cable of the predicted "
                "segment that covers most of it, its expected run length (ERL; normalized by the cable), the "
                "extra segments along it (splits) and the other neurons that share its segments (merges).",
            )
        )
    table, note = _object_table(data.rows, vs)
    parts.append(h.section("Objects", table, note))
    params = {**_flatten(data.parameters), **{f"input.{k}": v for k, v in data.sources.items()}}
    parts.append(
        h.section(
            "Run parameters and software",
            f'<div class="grid3"><div><h3>Parameters</h3>{h.key_value_table(params or {"(none)": ""})}</div>'
            f"<div><h3>Software versions</h3>{h.key_value_table(dict(data.versions))}</div></div>",
        )
    )
    subtitle = f"voxel size (z, y, x) {vs[0]:g} × {vs[1]:g} × {vs[2]:g} µm"
    if data.projection is not None:
        ny, nx_ = data.projection.labels.shape
        subtitle += f" · field of view (y, x) {ny * vs[1]:.0f} × {nx_ * vs[2]:.0f} µm"
    if data.subtitle:
        subtitle = f"{data.subtitle} · {subtitle}"
    if data.created:
        subtitle += f" · generated {data.created}"
    page = h.page(
        title=data.title,
        subtitle=subtitle,
        body="\n".join(parts),
        footer="neurorecon · lengths in µm · axes (z, y, x)",
    )
    return Report(html=page, pdf=_pdf(data, figures, vs), figures=pngs)


# -- PDF ----------------------------------------------------------------------------------------------------

_A4 = (8.27, 11.69)


def _text_page(title: str, lines: Sequence[str]) -> Figure:
    fig = Figure(figsize=_A4)
    fig.text(0.07, 0.95, title, fontsize=15, fontweight="bold", va="top")
    fig.text(0.07, 0.91, "\n".join(lines), fontsize=8.5, va="top", family="DejaVu Sans Mono")
    return fig


def _table_pages(
    title: str, header: Sequence[str], rows: Sequence[Sequence[str]], per_page: int = 48
) -> list[Figure]:
    pages = []
    for start in range(0, max(len(rows), 1), per_page):
        chunk = rows[start : start + per_page]
        fig = Figure(figsize=_A4)
        fig.text(
            0.07,
            0.96,
            title + (f" ({start + 1}–{start + len(chunk)} of {len(rows)})" if len(rows) > per_page else ""),
            fontsize=13,
            fontweight="bold",
            va="top",
        )
        ax = fig.add_axes((0.07, 0.05, 0.86, 0.88))
        ax.axis("off")
        if chunk:
            table = ax.table(
                cellText=[list(map(str, r)) for r in chunk],
                colLabels=list(header),
                loc="upper center",
                cellLoc="left",
                colLoc="left",
            )
            table.auto_set_font_size(False)
            table.set_fontsize(7.5)
            table.scale(1, 1.25)
            for (row, _), cell in table.get_celld().items():
                cell.set_edgecolor("#d9e2ec")
                if row == 0:
                    cell.set_facecolor("#eef2f6")
        else:
            ax.text(0, 1, "none", va="top")
        pages.append(fig)
    return pages


def _pdf(data: ReportData, figures: Mapping[str, Figure], vs: tuple[float, ...]) -> bytes:
    s = summarize(data.rows)
    lines = [
        f"voxel size (z, y, x): {vs[0]:g} x {vs[1]:g} x {vs[2]:g} µm",
        f"generated: {data.created}" if data.created else "",
        "",
        f"objects: {s.n_objects} ({s.n_interior} inside the volume, {s.n_border} touching its border)",
        f"median length (interior): {_num(s.median_length_um)} µm  "
        f"(IQR {_num(s.quartiles_um[0])}-{_num(s.quartiles_um[1])} µm)",
        f"total cable: {_num(s.total_cable_um, '{:.0f}')} µm",
    ]
    true = _true_lengths(data.metrics)
    if true is not None and len(true):
        lines.append(f"ground-truth median length: {np.median(true):.1f} µm ({len(true)} interior objects)")
    for title, key, spec in (
        ("voxel metrics", "voxel", VOXEL_ROWS),
        ("skeleton metrics", "skeleton", SKELETON_ROWS),
        ("length metrics", "length", LENGTH_ROWS),
    ):
        rows = metric_table((data.metrics or {}).get(key), spec)
        if rows:
            lines += ["", title + ":"] + [f"  {name:<28s} {value:>14s}" for name, value, _ in rows]
    with matplotlib.rc_context({"pdf.fonttype": 42}):
        buf = io.BytesIO()
        with PdfPages(buf, metadata={"Title": data.title, "Creator": "neurorecon"}) as pdf:
            first = _text_page(data.title, lines)
            pdf.savefig(first)
            for name in ("lengths", "projection"):
                if name in figures and not (name == "lengths" and _kind(data.metrics) == "neurons"):
                    pdf.savefig(figures[name])
            ordered = sorted(data.rows, key=lambda r: (r.touches_border, -r.length_um, r.label))[
                :MAX_TABLE_ROWS
            ]
            for fig in _table_pages(
                "Objects (length and cable in µm)",
                ["object", "length", "cable", "voxels", "endpoints", "border"],
                [
                    (
                        r.label,
                        f"{r.length_um:.1f}",
                        f"{r.cable_length_um:.1f}",
                        r.n_voxels,
                        r.n_endpoints,
                        "yes" if r.touches_border else "",
                    )
                    for r in ordered
                ],
            ):
                pdf.savefig(fig)
            neurons = _neuron_rows(data.metrics)
            if neurons:
                for fig in _table_pages("Neurons", [c[1] for c in NEURON_COLUMNS], neurons):
                    pdf.savefig(fig)
            if data.thresholds:
                header, rows = _threshold_table(data.thresholds)
                for fig in _table_pages("Threshold sweep", header, rows):
                    pdf.savefig(fig)
            params = {**_flatten(data.parameters), **{f"input.{k}": v for k, v in data.sources.items()}}
            wrapped = []
            for k, v in {**params, **{f"version.{k}": v for k, v in data.versions.items()}}.items():
                wrapped += textwrap.wrap(f"{k} = {v}", 95, subsequent_indent="    ")
            pdf.savefig(_text_page("Run parameters and software", wrapped))
        return buf.getvalue()
