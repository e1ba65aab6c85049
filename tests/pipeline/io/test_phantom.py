"""write_phantom's ground truth for both kinds: params.json (kind), ais.csv, dropout_gaps.csv on skeletons."""

from __future__ import annotations

import csv
import json

import networkx as nx
import numpy as np
import pytest
import zarr

from pipeline.io.phantom import AIS_COLUMNS, GAPS_COLUMNS, phantom_complete, write_phantom
from pipeline.io.swc import read_swc
from pipeline.synth import (
    LENGTHS_COLUMNS,
    AISParams,
    DropoutParams,
    PhantomParams,
    generate_phantom,
    render_volume,
)
from pipeline.synth.geometry import edge_length_um

PARAMS = {
    "neurons": PhantomParams(
        shape=(32, 128, 128), chunks=(16, 64, 64), seed=8, n_neurons=2, n_ais=3, n_passing_axons=1,
        dropout=DropoutParams(rate_per_100um=3.0),
    ),
    "ais": PhantomParams(
        kind="ais", shape=(32, 128, 128), chunks=(16, 64, 64), seed=8,
        ais=AISParams(density_per_mm3=20000.0), dropout=DropoutParams(rate_per_100um=4.0),
    ),
}
#: SWC files hold 6 decimals (µm): node positions are equal to this.
SWC_TOL_UM = 2e-6


@pytest.fixture(scope="module", params=sorted(PARAMS))
def written(request, tmp_path_factory):
    params = PARAMS[request.param]
    path = tmp_path_factory.mktemp(request.param) / "volume.zarr"
    return params, path, write_phantom(path, params, progress=False)


def _rows(path):
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        return tuple(reader.fieldnames or ()), list(reader)


def _node_at(graph, point):
    """The SWC node at ``point`` (µm, (z, y, x)); fails unless one lies within the file's precision."""
    nodes = list(graph.nodes)
    pos = np.array([graph.nodes[n]["pos_um"] for n in nodes])
    dist = np.linalg.norm(pos - np.asarray(point, float), axis=1)
    k = int(np.argmin(dist))
    assert dist[k] <= SWC_TOL_UM, f"{point} is {dist[k]:.2e} µm from the nearest skeleton node"
    return nodes[k]


def _path_length(graph, a, b):
    path = nx.shortest_path(graph, a, b)
    return path, sum(edge_length_um(graph, u, v) for u, v in zip(path[:-1], path[1:], strict=True))


def test_params_json_and_complete_marker_record_the_kind(written):
    params, path, result = written
    assert result.kind == params.kind and phantom_complete(path)
    back = PhantomParams.model_validate_json((result.gt_dir / "params.json").read_text())
    assert back == params and json.loads((result.gt_dir / "params.json").read_text())["kind"] == params.kind
    marker = json.loads((result.gt_dir / "COMPLETE").read_text())
    assert marker["kind"] == params.kind and marker["n_objects"] == result.n_objects
    labels = zarr.open(str(path), mode="r")["labels/ground_truth/0"][...]
    np.testing.assert_array_equal(labels, render_volume(generate_phantom(params)).labels)
    columns, rows = _rows(result.lengths_csv)
    assert columns == LENGTHS_COLUMNS
    assert {r["kind"] for r in rows} == ({"neuron"} if params.kind == "neurons" else {"ais"})


def test_ais_csv_says_where_each_ais_lies_on_the_skeleton(written):
    params, _, result = written
    columns, rows = _rows(result.ais_csv)
    assert columns == AIS_COLUMNS
    phantom = generate_phantom(params)
    assert [int(r["label"]) for r in rows] == [o.label for o in phantom.objects if o.ais is not None]
    assert len(rows) >= 3
    for row in rows:
        graph = read_swc(result.skeleton_dir / f"{row['label']}.swc")
        start = _node_at(graph, [float(row[f"start_{a}_um"]) for a in "zyx"])
        end = _node_at(graph, [float(row[f"end_{a}_um"]) for a in "zyx"])
        s0, s1, length = float(row["start_path_um"]), float(row["end_path_um"]), float(row["length_um"])
        assert length == pytest.approx(s1 - s0, abs=1e-5) and 0 < length <= params.ais.length_um[1] + 1e-5
        path, along = _path_length(graph, start, end)
        if nx.is_tree(graph):
            assert along == pytest.approx(length, abs=1e-4)
        assert all(graph.nodes[n]["swc_type"] == 2 for n in path)
        if row["soma_in_volume"] == "True" and params.kind == "neurons":
            # Path distance from the axon's root on the soma surface, along the SWC skeleton.
            soma = {n for n in graph if graph.nodes[n]["swc_type"] == 1}
            root = next(n for s in soma for n in graph[s] if graph.nodes[n]["swc_type"] == 2)
            assert _path_length(graph, root, start)[1] == pytest.approx(s0, abs=1e-4)
            assert params.ais.soma_distance_um[0] - 1e-4 <= s0 <= params.ais.soma_distance_um[1] + 1e-4
        if row["clipped"] == "False":
            assert params.ais.length_um[0] - 1e-4 <= length


def test_dropout_gap_ends_are_nodes_of_the_labels_skeleton(written):
    params, _, result = written
    columns, rows = _rows(result.gaps_csv)
    assert columns == GAPS_COLUMNS
    assert len(rows) == len(result.gaps) >= 3
    kind = "neuron" if params.kind == "neurons" else "ais"
    for i, row in enumerate(rows):
        assert int(row["gap"]) == i and row["kind"] == kind
        graph = read_swc(result.skeleton_dir / f"{row['label']}.swc")
        start = _node_at(graph, [float(row[f"start_{a}_um"]) for a in "zyx"])
        end = _node_at(graph, [float(row[f"end_{a}_um"]) for a in "zyx"])
        # The dark stretch is the skeleton path between those two nodes: a neurite, never a soma.
        path, along = _path_length(graph, start, end)
        assert along == pytest.approx(float(row["length_um"]), abs=1e-4)
        assert params.dropout.length_um[0] - 1e-4 <= along <= params.dropout.length_um[1] + 1e-4
        assert all(graph.nodes[n]["swc_type"] in (2, 3) for n in path)
