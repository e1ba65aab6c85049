"""SWC folders, neuroglancer precomputed skeletons and lengths tables: round trips, encoding, errors."""

from __future__ import annotations

import json
import struct

import networkx as nx
import numpy as np
import pytest

from pipeline.errors import InputDataError, OutputError
from pipeline.io.skeletons import (
    LENGTHS_COLUMNS,
    read_lengths_csv,
    read_precomputed_skeletons,
    read_swc_folder,
    segment_properties,
    write_lengths_csv,
    write_precomputed_skeletons,
    write_swc_folder,
)
from pipeline.skeleton import ObjectRow, skeletonize


def y_skeleton() -> nx.Graph:
    g = nx.Graph(label=7)
    points = [(1.5, 2.0, 3.0), (1.5, 2.5, 3.5), (3.0, 3.0, 4.0), (3.0, 2.0, 5.5), (4.5, 4.0, 4.0)]
    for i, p in enumerate(points):
        g.add_node(i, pos_um=p, radius_um=0.25 * (i + 1))
    g.add_edges_from([(0, 1), (1, 2), (2, 3), (2, 4)])
    return g


def as_sets(g: nx.Graph) -> tuple[set, set]:
    pos = {n: tuple(np.round(d["pos_um"], 4)) for n, d in g.nodes(data=True)}
    return set(pos.values()), {frozenset((pos[a], pos[b])) for a, b in g.edges}


def test_precomputed_round_trip_keeps_vertices_edges_and_radii(tmp_path):
    graphs = {7: y_skeleton(), 3: nx.relabel_nodes(y_skeleton(), {i: 10 + i for i in range(5)})}
    written = write_precomputed_skeletons(tmp_path / "pre", graphs)
    assert [p.name for p in written] == ["info", "3", "7"]
    back = read_precomputed_skeletons(tmp_path / "pre")
    assert sorted(back) == [3, 7]
    for label in graphs:
        assert as_sets(back[label]) == as_sets(graphs[label])
        radii = sorted(round(d["radius_um"], 6) for _, d in back[label].nodes(data=True))
        assert radii == [0.25, 0.5, 0.75, 1.0, 1.25]


def test_precomputed_file_is_the_neuroglancer_encoding(tmp_path):
    write_precomputed_skeletons(tmp_path / "pre", {7: y_skeleton()})
    info = json.loads((tmp_path / "pre" / "info").read_text())
    assert info["@type"] == "neuroglancer_skeletons"
    assert info["transform"] == [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0]
    assert info["vertex_attributes"] == [{"id": "radius", "data_type": "float32", "num_components": 1}]
    buf = (tmp_path / "pre" / "7").read_bytes()
    n_vertices, n_edges = struct.unpack("<II", buf[:8])
    assert (n_vertices, n_edges) == (5, 4)
    assert len(buf) == 8 + 12 * n_vertices + 8 * n_edges + 4 * n_vertices
    vertices = np.frombuffer(buf[8 : 8 + 12 * n_vertices], "<f4").reshape(-1, 3)
    np.testing.assert_allclose(vertices[0], [3000.0, 2000.0, 1500.0])  # (x, y, z) nm of (z, y, x) µm node 0
    edges = np.frombuffer(buf[8 + 12 * n_vertices : 8 + 12 * n_vertices + 8 * n_edges], "<u4").reshape(-1, 2)
    assert {tuple(sorted(e)) for e in edges.tolist()} == {(0, 1), (1, 2), (2, 3), (2, 4)}
    radius = np.frombuffer(buf[8 + 12 * n_vertices + 8 * n_edges :], "<f4")
    np.testing.assert_allclose(radius, [250, 500, 750, 1000, 1250])


def test_reader_applies_the_info_transform(tmp_path):
    write_precomputed_skeletons(tmp_path / "pre", {7: y_skeleton()})
    info_path = tmp_path / "pre" / "info"
    info = json.loads(info_path.read_text())
    info["transform"] = [2, 0, 0, 10, 0, 2, 0, 0, 0, 0, 2, 0]  # stored coordinates x2, x shifted 10 nm
    info_path.write_text(json.dumps(info))
    node = read_precomputed_skeletons(tmp_path / "pre")[7].nodes[0]
    np.testing.assert_allclose(node["pos_um"], (3.0, 4.0, 6.01))


def test_swc_folder_round_trip_of_kimimaro_skeletons(tmp_path):
    labels = np.zeros((6, 20, 40), np.uint32)
    labels[2:4, 5:8, 3:37] = 4
    labels[2:4, 12:15, 5:30] = 9
    graphs = skeletonize(labels, voxel_size_um=(1.5, 0.5, 0.5))
    files = write_swc_folder(tmp_path / "skeletons", graphs, comments=["source test"])
    assert [f.name for f in files] == ["4.swc", "9.swc"]
    assert "# source test" in files[0].read_text()
    back = read_swc_folder(tmp_path / "skeletons")
    assert sorted(back) == [4, 9]
    for label in graphs:
        assert as_sets(back[label]) == as_sets(graphs[label])


def test_outputs_refuse_to_overwrite_without_permission(tmp_path):
    write_precomputed_skeletons(tmp_path / "pre", {7: y_skeleton()})
    with pytest.raises(OutputError, match="already exists and is not empty"):
        write_precomputed_skeletons(tmp_path / "pre", {7: y_skeleton()})
    write_precomputed_skeletons(tmp_path / "pre", {8: y_skeleton()}, overwrite=True)
    assert sorted(read_precomputed_skeletons(tmp_path / "pre")) == [8]
    write_swc_folder(tmp_path / "swc", {7: y_skeleton()})
    with pytest.raises(OutputError, match="--overwrite"):
        write_swc_folder(tmp_path / "swc", {7: y_skeleton()})


def test_readers_name_the_problem(tmp_path):
    with pytest.raises(InputDataError, match="no info file"):
        read_precomputed_skeletons(tmp_path)
    (tmp_path / "info").write_text(json.dumps({"@type": "neuroglancer_multiscale_volume"}))
    with pytest.raises(InputDataError, match="expected 'neuroglancer_skeletons'"):
        read_precomputed_skeletons(tmp_path)
    write_precomputed_skeletons(tmp_path / "pre", {7: y_skeleton()})
    (tmp_path / "pre" / "7").write_bytes(b"\x05\x00\x00\x00")
    with pytest.raises(InputDataError, match="cannot be decoded"):
        read_precomputed_skeletons(tmp_path / "pre")
    with pytest.raises(InputDataError, match="does not exist"):
        read_swc_folder(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputDataError, match="holds no <label>.swc"):
        read_swc_folder(tmp_path / "empty")
    cyclic = y_skeleton()
    cyclic.add_edge(0, 4)
    with pytest.raises(ValueError, match="cycle"):
        write_swc_folder(tmp_path / "cyc", {1: cyclic})


def test_lengths_csv_round_trip_and_errors(tmp_path):
    rows = (ObjectRow(3, 12.5, 14.25, 310, False, 2), ObjectRow(11, 0.0, 0.0, 1, True, 0))
    path = write_lengths_csv(tmp_path / "lengths.csv", rows)
    assert path.read_text().splitlines()[0] == ",".join(LENGTHS_COLUMNS)
    assert read_lengths_csv(path) == rows
    with pytest.raises(InputDataError, match="run `neurorecon skeletonize` first"):
        read_lengths_csv(tmp_path / "none.csv")
    (tmp_path / "bad.csv").write_text("label,length_um\n1,2\n")
    with pytest.raises(InputDataError, match="lacks the columns"):
        read_lengths_csv(tmp_path / "bad.csv")
    (tmp_path / "bad2.csv").write_text(",".join(LENGTHS_COLUMNS) + "\nx,1,1,1,0,2\n")
    with pytest.raises(InputDataError, match=":2: malformed row"):
        read_lengths_csv(tmp_path / "bad2.csv")


def test_precomputed_segment_properties_list_every_object(tmp_path):
    rows = [ObjectRow(7, 4.25, 5.5, 40, True, 3), ObjectRow(12, 0.0, 0.0, 1, False, 0)]  # 12: no skeleton
    written = write_precomputed_skeletons(tmp_path / "pre", {7: y_skeleton()}, objects=rows)
    assert [p.relative_to(tmp_path / "pre").as_posix() for p in written] == [
        "info", "segment_properties/info", "7", "12"]
    info = json.loads((tmp_path / "pre" / "info").read_text())
    assert info["segment_properties"] == "segment_properties"
    properties = json.loads((tmp_path / "pre" / "segment_properties" / "info").read_text())
    assert properties == segment_properties(rows)
    inline = properties["inline"]
    assert inline["ids"] == ["7", "12"]
    assert inline["properties"][0] == {"id": "label", "type": "label",
                                       "values": ["4.2 µm, touches the border", "0.0 µm"]}
    assert [(p["id"], p["values"]) for p in inline["properties"][1:]] == [
        ("length_um", [4.25, 0.0]), ("cable_length_um", [5.5, 0.0])]
    assert (tmp_path / "pre" / "12").read_bytes() == bytes(8)  # an empty skeleton: a viewer finds a file
    assert sorted(read_precomputed_skeletons(tmp_path / "pre")) == [7]  # ... that the reader leaves out


def test_segment_properties_refuse_what_neuroglancer_cannot_read():
    with pytest.raises(ValueError, match="non-finite"):
        segment_properties([ObjectRow(3, float("nan"), 1.0, 4, False, 2)])
    with pytest.raises(ValueError, match="repeated"):
        segment_properties([ObjectRow(3, 1.0, 1.0, 4, False, 2)] * 2)
    with pytest.raises(ValueError, match="non-negative"):
        segment_properties([ObjectRow(-1, 1.0, 1.0, 4, False, 2)])
