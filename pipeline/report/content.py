"""What the report says: the metric tables (names, units, definitions) and the summary numbers.

The metrics come as the dictionary ``neurorecon evaluate`` writes to ``metrics.json``
(:data:`METRICS_SCHEMA` lists its keys). Every metric shown carries a one-line definition so a reader
does not have to look it up.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.skeleton.lengths import ObjectRow

__all__ = [
    "LENGTH_ROWS",
    "METRICS_SCHEMA",
    "NEURON_COLUMNS",
    "SKELETON_ROWS",
    "THRESHOLD_COLUMNS",
    "VOXEL_ROWS",
    "MetricRow",
    "Summary",
    "format_value",
    "metric_table",
    "summarize",
]


@dataclass(frozen=True)
class MetricRow:
    """One line of a metrics table: key in the metrics dict, display name, format, definition."""

    key: str
    name: str
    fmt: str
    definition: str


VOXEL_ROWS = (
    MetricRow(
        "dice", "Dice (foreground)", "{:.3f}", "2|P∩T| / (|P|+|T|) of the foreground masks; 1 is perfect"
    ),
    MetricRow("accuracy", "Voxel accuracy", "{:.4f}", "fraction of voxels where foreground/background agree"),
    MetricRow(
        "adjusted_rand_index",
        "Adjusted Rand index",
        "{:.3f}",
        "agreement of the partitions of the ground-truth foreground; 1 is identical",
    ),
    MetricRow(
        "voi_split_bits",
        "VOI split",
        "{:.3f} bits",
        "H(pred | GT): true objects spread over several segments",
    ),
    MetricRow("voi_merge_bits", "VOI merge", "{:.3f} bits", "H(GT | pred): segments that mix true objects"),
    MetricRow("voi_total_bits", "VOI total", "{:.3f} bits", "split + merge; 0 is perfect"),
)

SKELETON_ROWS = (
    MetricRow(
        "erl_um",
        "Expected run length (ERL)",
        "{:.1f} µm",
        "expected error-free skeleton length around a random point of the ground truth",
    ),
    MetricRow(
        "normalized_erl", "Normalized ERL", "{:.3f}", "ERL / skeleton length, length-weighted; 1 is perfect"
    ),
    MetricRow("edge_accuracy_pct", "Edge accuracy", "{:.1f} %", "100 − omitted − merged edge percentages"),
    MetricRow("splits_per_neuron", "Splits per neuron", "{:.2f}", "extra segments along each true skeleton"),
    MetricRow(
        "merges_per_neuron", "Merges per neuron", "{:.2f}", "other true skeletons sharing a segment with each"
    ),
    MetricRow(
        "gaps_bridged",
        "Dropout gaps bridged",
        "{:.2f}",
        "fraction of signal-dropout gaps whose two sides lie in one segment; 1 is perfect",
    ),
    MetricRow(
        "merged_pct", "Merged edges", "{:.1f} %", "edges in segments that also cover another true neuron"
    ),
    MetricRow("omit_pct", "Omitted edges", "{:.1f} %", "edges with an end in background"),
    MetricRow(
        "n_nodes_outside_volume",
        "Skeleton nodes outside the image",
        "{:d}",
        "ground-truth nodes beyond the volume, scored at its nearest border voxel",
    ),
    MetricRow("n_skeletons", "Ground-truth skeletons", "{:d}", "SWC skeletons compared"),
)

LENGTH_ROWS = (
    MetricRow("precision", "Instance precision", "{:.3f}", "matched predicted objects / predicted objects"),
    MetricRow("recall", "Instance recall", "{:.3f}", "matched true objects / true objects"),
    MetricRow(
        "overlapping_instances",
        "Overlapping instances",
        "{:.2f}",
        "predicted objects overlapping each matched true object; 1 is ideal",
    ),
    MetricRow(
        "discontinuities_per_instance",
        "Discontinuities per object",
        "{:.2f}",
        "predicted pieces overlapping each matched true object, minus one; 0 is perfect",
    ),
    MetricRow(
        "wasserstein_um",
        "Wasserstein distance",
        "{:.2f} µm",
        "earth mover's distance between the length distributions (interior objects)",
    ),
    MetricRow("ssmd", "SSMD", "{:.3f}", "|μ_pred − μ_true| / √(σ_pred² + σ_true²) of the lengths"),
    MetricRow("n_pred", "Predicted objects", "{:d}",
              "border objects included, dust (no row in lengths.csv) left out"),
    MetricRow("n_true", "True objects", "{:d}", "border objects included, dust left out"),
    MetricRow("n_dust_pred", "Predicted dust", "{:d}",
              "labels of at most skeletonize.dust_threshold_um3, not counted as objects"),
)

#: Columns of the per-neuron table (``metrics["skeleton"]["per_neuron"]``): key, header, format.
NEURON_COLUMNS = (
    ("label", "Neuron", "{:d}"),
    ("cable_um", "GT cable (µm)", "{:.1f}"),
    ("matched_cable_um", "Matched cable (µm)", "{:.1f}"),
    ("erl_um", "ERL (µm)", "{:.1f}"),
    ("normalized_erl", "Normalized ERL", "{:.3f}"),
    ("splits", "Splits", "{:d}"),
    ("merges", "Merges", "{:d}"),
)

#: Columns of the threshold-sweep table (``metrics["thresholds"]``, one row per threshold): key, header,
#: format. A column is shown when a row has it (the metrics need ground truth).
THRESHOLD_COLUMNS = (
    ("threshold", "Threshold", "{:g}"),
    ("segmentation", "Segmentation", "{}"),
    ("n_segments", "Segments", "{:d}"),
    ("voi_split_bits", "VOI split (bits)", "{:.3f}"),
    ("voi_merge_bits", "VOI merge (bits)", "{:.3f}"),
    ("adjusted_rand_index", "ARI", "{:.3f}"),
    ("erl_um", "ERL (µm)", "{:.1f}"),
    ("normalized_erl", "Normalized ERL", "{:.3f}"),
    ("splits_per_neuron", "Splits / neuron", "{:.2f}"),
    ("merges_per_neuron", "Merges / neuron", "{:.2f}"),
)

#: Keys of ``metrics.json`` (all optional; sections absent when not computed), besides ``kind``
#: (``neurons`` or ``ais``), ``inputs`` and ``parameters``.
METRICS_SCHEMA = {
    "voxel": tuple(r.key for r in VOXEL_ROWS),
    "skeleton": (
        *(r.key for r in SKELETON_ROWS), "n_gaps", "n_gaps_bridged", "n_gaps_unscorable", "per_neuron",
    ),
    "length": (
        *(r.key for r in LENGTH_ROWS),
        "ssmd_signed",
        "n_matched",
        "n_dust_true",
        "pred_lengths_um",
        "true_lengths_um",
    ),
    "thresholds": tuple(key for key, _, _ in THRESHOLD_COLUMNS),
}


def format_value(value: Any, fmt: str) -> str:
    """Format a metric for display; missing, None and NaN become an en dash."""
    if value is None:
        return "–"
    if isinstance(value, float) and math.isnan(value):
        return "–"
    if isinstance(value, float) and math.isinf(value):
        return "∞" if value > 0 else "−∞"
    try:
        if "{:d}" in fmt:
            return fmt.format(int(value))
        return fmt.format(float(value))
    except (TypeError, ValueError):
        return str(value)


def metric_table(section: Mapping[str, Any] | None, rows: Sequence[MetricRow]) -> list[tuple[str, str, str]]:
    """(name, formatted value, definition) for the rows present in a metrics section."""
    if not section:
        return []
    return [(r.name, format_value(section.get(r.key), r.fmt), r.definition) for r in rows if r.key in section]


@dataclass(frozen=True)
class Summary:
    """Headline numbers of a run.

    Attributes
    ----------
    n_objects, n_interior, n_border : int
        All objects, those inside the volume, those touching its border.
    median_length_um : float
        Median length of the interior objects with a skeleton (NaN if none).
    quartiles_um : tuple of float
        (25th, 75th) percentile of those lengths.
    total_cable_um : float
        Sum of the cable lengths of all objects.
    interior_lengths_um : ndarray
        The lengths the distributions show.
    """

    n_objects: int
    n_interior: int
    n_border: int
    median_length_um: float
    quartiles_um: tuple[float, float]
    total_cable_um: float
    interior_lengths_um: np.ndarray


def summarize(rows: Sequence[ObjectRow]) -> Summary:
    """Headline numbers from the per-object rows; border objects are left out of the lengths."""
    interior = np.array([r.length_um for r in rows if not r.touches_border and r.length_um > 0], dtype=float)
    n_border = sum(1 for r in rows if r.touches_border)
    if len(interior):
        median = float(np.median(interior))
        q = (float(np.percentile(interior, 25)), float(np.percentile(interior, 75)))
    else:
        median, q = math.nan, (math.nan, math.nan)
    return Summary(
        n_objects=len(rows),
        n_interior=len(rows) - n_border,
        n_border=n_border,
        median_length_um=median,
        quartiles_um=q,
        total_cable_um=float(sum(r.cable_length_um for r in rows)),
        interior_lengths_um=interior,
    )
