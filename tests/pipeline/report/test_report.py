"""Report compute: projections, figures, summary numbers, the HTML page and the PDF."""

from __future__ import annotations

import math
import re

import networkx as nx
import numpy as np
import pytest
from matplotlib.figure import Figure

from pipeline.io.report import read_metrics_json, write_metrics_json, write_report
from pipeline.report import (
    METRICS_SCHEMA,
    ReportData,
    build_report,
    combine_projections,
    label_colours,
    length_figure,
    software_versions,
    summarize,
    tiled_projection,
    z_projection,
)
from pipeline.report.content import VOXEL_ROWS, format_value, metric_table
from pipeline.report.figures import figure_png
from pipeline.skeleton import ObjectRow

ROWS = (
    ObjectRow(1, 30.0, 34.0, 900, False, 2),
    ObjectRow(2, 10.0, 10.5, 200, False, 2),
    ObjectRow(3, 50.0, 61.0, 1500, True, 3),
    ObjectRow(4, 0.0, 0.0, 1, False, 0),
    ObjectRow(5, 20.0, 20.0, 400, False, 2),
)

METRICS = {
    "voxel": {
        "dice": 0.91,
        "accuracy": 0.999,
        "adjusted_rand_index": 0.88,
        "voi_split_bits": 0.3,
        "voi_merge_bits": 0.1,
        "voi_total_bits": 0.4,
    },
    "skeleton": {
        "splits_per_neuron": 0.5,
        "omit_pct": 2.0,
        "merged_pct": 5.0,
        "edge_accuracy_pct": 93.0,
        "erl_um": 41.5,
        "normalized_erl": 0.8,
        "n_skeletons": 4,
    },
    "length": {
        "precision": 0.75,
        "recall": 1.0,
        "overlapping_instances": 1.25,
        "wasserstein_um": 2.5,
        "ssmd": 0.1,
        "ssmd_signed": -0.1,
        "n_pred": 5,
        "n_true": 4,
        "n_matched": 4,
        "pred_lengths_um": {"1": 30.0, "2": 10.0, "5": 20.0},
        "true_lengths_um": {"1": 31.0, "2": 24.0},
    },
}


def test_z_projection_picks_the_brightest_labelled_voxel():
    labels = np.zeros((3, 2, 2), np.uint32)
    labels[0, 0, 0], labels[2, 0, 0] = 4, 9
    labels[1, 1, 1] = 2
    raw = np.zeros((3, 2, 2), np.uint16)
    raw[0, 0, 0], raw[2, 0, 0], raw[1, 0, 1] = 10, 30, 50  # (0, 1) is bright but unlabelled
    p = z_projection(labels, raw)
    assert p.labels.tolist() == [[9, 0], [0, 2]]
    assert p.raw.tolist() == [[30, 50], [0, 0]]
    assert z_projection(labels).labels.tolist() == [[9, 0], [0, 2]]  # without raw: the largest label


def test_projection_of_slabs_equals_projection_of_the_volume():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 5, size=(20, 8, 9)).astype(np.uint64)
    raw = rng.random((20, 8, 9)).astype(np.float32)
    whole = z_projection(labels, raw)
    parts = [z_projection(labels[a : a + 6], raw[a : a + 6]) for a in range(0, 20, 6)]
    combined = parts[0]
    for p in parts[1:]:
        combined = combine_projections(combined, p)
    np.testing.assert_array_equal(combined.labels, whole.labels)
    np.testing.assert_array_equal(combined.raw, whole.raw)
    with pytest.raises(ValueError, match="must match"):
        combine_projections(whole, z_projection(labels[:, :4], raw[:, :4]))
    with pytest.raises(ValueError, match="shape"):
        z_projection(labels, raw[:5])


@pytest.mark.parametrize("tile", [(20, 8, 9), (6, 3, 4), (1, 1, 1), (7, 8, 2)])
@pytest.mark.parametrize("with_raw", [True, False])
def test_a_projection_read_tile_by_tile_equals_the_whole_volumes(tile, with_raw):
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 5, size=(20, 8, 9)).astype(np.uint64)
    raw = rng.random((20, 8, 9)).astype(np.float32)
    reads = []

    def read(region):
        reads.append(tuple(s.stop - s.start for s in region))
        return labels[region]

    whole = z_projection(labels, raw if with_raw else None)
    tiled = tiled_projection(read, (lambda r: raw[r]) if with_raw else None, labels.shape, tile)
    np.testing.assert_array_equal(tiled.labels, whole.labels)
    np.testing.assert_array_equal(tiled.score, whole.score)
    if with_raw:
        np.testing.assert_array_equal(tiled.raw, whole.raw)
    assert max(int(np.prod(r)) for r in reads) <= int(np.prod(tile))


def test_label_colours_are_stable_and_distinct():
    a = label_colours(np.array([1, 2, 3, 1000]))
    b = label_colours(np.array([1000, 3]))
    np.testing.assert_array_equal(a[[3, 2]], b)
    assert a.shape == (4, 3) and np.all((a >= 0) & (a <= 1))
    assert min(np.linalg.norm(a[i] - a[j]) for i in range(4) for j in range(i + 1, 4)) > 0.1


def test_length_figure_renders_with_and_without_ground_truth():
    for true in (None, [12.0, 30.0]):
        fig = length_figure([10.0, 20.0, 35.0], true)
        assert isinstance(fig, Figure)
        assert figure_png(fig).startswith(b"\x89PNG")
    assert figure_png(length_figure([])).startswith(b"\x89PNG")


def test_summary_leaves_border_and_unskeletonized_objects_out_of_the_lengths():
    s = summarize(ROWS)
    assert (s.n_objects, s.n_interior, s.n_border) == (5, 4, 1)
    assert sorted(s.interior_lengths_um.tolist()) == [10.0, 20.0, 30.0]
    assert s.median_length_um == 20.0 and s.total_cable_um == pytest.approx(125.5)
    assert math.isnan(summarize(()).median_length_um)


def test_metric_formatting():
    assert format_value(math.nan, "{:.3f}") == "–" and format_value(None, "{:.1f}") == "–"
    assert format_value(math.inf, "{:.1f}") == "∞"
    assert format_value(12, "{:d}") == "12"
    rows = metric_table({"dice": 0.5}, VOXEL_ROWS)
    assert rows == [("Dice (foreground)", "0.500", VOXEL_ROWS[0].definition)]
    assert set(METRICS["length"]) <= set(METRICS_SCHEMA["length"])


def _data(**kw) -> ReportData:
    g = nx.Graph()
    g.add_node(0, pos_um=(3.0, 2.0, 2.0))
    g.add_node(1, pos_um=(3.0, 6.0, 8.0))
    g.add_edge(0, 1)
    labels = np.zeros((4, 20, 24), np.uint32)
    labels[1:3, 3:12, 3:16] = 1
    raw = np.random.default_rng(0).integers(100, 200, size=labels.shape).astype(np.uint16)
    base = dict(
        title="neurorecon report — test <run>",
        rows=ROWS,
        voxel_size_um=(1.5, 0.5, 0.5),
        metrics=METRICS,
        projection=z_projection(labels, raw),
        skeletons={1: g},
        parameters={"block_shape": [8, 64, 64], "teasar": {"scale": 1.5}},
        versions=software_versions(),
        created="2024-01-01 12:00 UTC",
        sources={"segmentation": "seg.zarr"},
    )
    base.update(kw)
    return ReportData(**base)


def test_html_is_self_contained_and_states_the_numbers():
    report = build_report(_data())
    page = report.html
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page)
    assert "<script" not in page and "<link" not in page
    assert page.count("data:image/png;base64,") == 2 and set(report.figures) == {"lengths", "projection"}
    assert "test &lt;run&gt;" in page  # escaped
    for text in (
        "Length distributions",
        "Maximum-intensity projections",
        "Voxel metrics",
        "Skeleton metrics",
        "Length metrics",
        "Expected run length (ERL)",
        "Wasserstein distance",
        "SSMD",
        "Objects",
        "Software versions",
        "kimimaro",
        "teasar.scale",
        "block_shape",
        "µm",
        "0.910",
        "41.5 µm",
        "GT median length",
        "27.5 µm",
    ):
        assert text in page, text
    assert re.search(r'<div class="value">5</div>', page)  # number of objects
    assert '<tr class="border">' in page


def test_report_without_metrics_or_projection_says_how_to_get_them():
    page = build_report(_data(metrics=None, projection=None, skeletons=None)).html
    assert "neurorecon evaluate" in page and page.count("data:image/png;base64,") == 1
    assert "GT median length" not in page


def test_pdf_has_the_summary_figures_tables_and_provenance(tmp_path):
    report = build_report(_data())
    assert report.pdf.startswith(b"%PDF")
    assert len(re.findall(rb"/Type /Page[^s]", report.pdf)) == 5
    written = write_report(tmp_path, report, figures=True)
    assert sorted(written) == ["html", "lengths", "pdf", "projection"]
    assert written["html"].read_text(encoding="utf-8") == report.html


def test_metrics_json_round_trips_nan_and_inf(tmp_path):
    metrics = {
        "voxel": {"dice": math.nan, "x": math.inf},
        "length": {"n": np.int64(3), "l": {"1": np.float32(2.5)}},
        "inputs": {"gt_swc": None},
    }
    path = write_metrics_json(tmp_path / "metrics.json", metrics)
    assert "NaN" not in path.read_text()
    back = read_metrics_json(path)
    assert math.isnan(back["voxel"]["dice"]) and back["voxel"]["x"] == math.inf
    assert back["length"] == {"n": 3, "l": {"1": 2.5}} and back["inputs"] == {"gt_swc": None}


@pytest.mark.parametrize("kind", ["neurons", "ais"])
def test_the_report_shows_what_fits_the_kind(kind):
    per_neuron = [{"label": 3, "cable_um": 812.25, "matched_cable_um": 640.5, "erl_um": 301.0,
                   "normalized_erl": 0.371, "splits": 4, "merges": 0}]
    metrics = {
        "kind": kind,
        "voxel": dict(METRICS["voxel"]),
        "skeleton": {**METRICS["skeleton"], "merges_per_neuron": 0.25, "gaps_bridged": 0.5, "n_gaps": 6,
                     "n_gaps_bridged": 3, "per_neuron": per_neuron},
        "length": {**METRICS["length"], "discontinuities_per_instance": 1.5},
    }
    report = build_report(ReportData(title="t", rows=ROWS, voxel_size_um=(1.5, 0.5, 0.5), metrics=metrics))
    page = report.html
    assert "Dropout gaps bridged" in page and "3 of 6 signal-dropout gaps" in page
    if kind == "neurons":  # the per-neuron table, splits / merges per neuron
        assert (
            "<h2>Neurons</h2>" in page and "812.2" in page and ">640.5<" in page and "Splits / merges" in page
        )
        assert "Discontinuities per AIS" not in page and "AIS length distribution" not in page
        assert "Length distributions" not in page and "Precision / recall" not in page
    else:  # the AIS length distribution and discontinuities per AIS, no neuron table
        assert "AIS length distribution" in page and "Discontinuities per AIS" in page
        assert "<h2>Neurons</h2>" not in page and "812.2" not in page and "Splits / merges" not in page
        assert "Precision / recall" in page and "Length distance" in page
    assert report.pdf.startswith(b"%PDF")


def test_the_report_shows_the_gap_joins_and_the_metrics_before_them():
    skeleton = {**METRICS["skeleton"], "gaps_bridged": 0.9, "n_gaps": 10, "n_gaps_bridged": 9}
    before = {"skeleton": {**skeleton, "gaps_bridged": 0.3, "splits_per_neuron": 2.5,
                           "merges_per_neuron": 1.0}}
    metrics = {"kind": "neurons", "voxel": dict(METRICS["voxel"]), "skeleton": skeleton,
               "joins": {"n_joins": 7, "n_pieces_joined": 12, "before": before}}

    def page_of(metrics):
        data = ReportData(title="t", rows=ROWS, voxel_size_um=(1.5, 0.5, 0.5), metrics=metrics)
        return build_report(data).html

    page = page_of(metrics)
    assert "Gap joins" in page and "12 pieces joined" in page
    assert "before: gaps bridged 0.30, splits / merges 2.50 / 1.00 per neuron" in page
    del metrics["joins"]
    assert "Gap joins" not in page_of(metrics)
