from __future__ import annotations

import networkx as nx
import pytest

from pipeline.errors import InputDataError
from pipeline.io.swc import read_swc, write_swc
from tests.conftest import SHARED_DATA


def _tree() -> nx.Graph:
    g = nx.Graph()
    g.add_node(10, pos_um=(1.5, 2.0, 3.0), radius_um=0.5, swc_type=1)
    g.add_node(11, pos_um=(3.0, 2.0, 3.0), radius_um=0.75, swc_type=2)
    g.add_node(12, pos_um=(3.0, 4.5, 3.0), radius_um=1.0, swc_type=3)
    g.add_node(13, pos_um=(3.0, 2.0, 0.25))
    g.add_edges_from([(10, 11), (11, 12), (11, 13)])
    return g


def test_round_trip_preserves_positions_radii_types_and_topology(tmp_path):
    path = tmp_path / "a.swc"
    write_swc(path, _tree(), comments=["made by a test"])
    g = read_swc(path)
    assert g.number_of_nodes() == 4 and g.number_of_edges() == 3
    assert nx.is_tree(g)
    by_pos = {d["pos_um"]: d for _, d in g.nodes(data=True)}
    assert by_pos[(1.5, 2.0, 3.0)]["radius_um"] == 0.5
    assert by_pos[(1.5, 2.0, 3.0)]["swc_type"] == 1
    assert by_pos[(3.0, 2.0, 0.25)]["radius_um"] == 1.0  # default radius
    assert g.graph["comments"][0] == "made by a test"
    # The file is x y z: the first node line has x=3, y=2, z=1.5.
    first = [line for line in path.read_text().splitlines() if not line.startswith("#")][0].split()
    assert first[:7] == ["1", "1", "3.000000", "2.000000", "1.500000", "0.500000", "-1"]


def test_offset_header_is_applied(tmp_path):
    path = tmp_path / "o.swc"
    path.write_text("# OFFSET 100 200 300\n1 2 1 2 3 0.5 -1\n2 2 2 2 3 0.5 1\n")
    g = read_swc(path)
    assert g.nodes[1]["pos_um"] == (303.0, 202.0, 101.0)
    assert g.graph["offset_um"] == (300.0, 200.0, 100.0)
    out = tmp_path / "o2.swc"
    write_swc(out, g)
    assert read_swc(out).nodes[1]["pos_um"] == (303.0, 202.0, 101.0)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("1 2 1 2 3 0.5\n", "expected 7 fields"),
        ("1 2 a 2 3 0.5 -1\n", "non-numeric"),
        ("1 2 1 2 3 0.5 -1\n1 2 1 2 3 0.5 -1\n", "more than once"),
        ("1 2 1 2 3 0.5 -1\n2 2 1 2 3 0.5 7\n", "parent 7"),
        ("# OFFSET 1 2\n1 2 1 2 3 0.5 -1\n", "OFFSET needs three numbers"),
        ("1 2 1 2 3 0.5 -1\n2 2 1 2 3 0.5 2\n", "node 2 is its own parent"),
        (
            "1 2 1 2 3 0.5 3\n2 2 1 2 3 0.5 1\n3 2 1 2 3 0.5 2\n",
            r"parents of node 3 form a cycle \(3 -> 2 -> 1 -> 3\)",
        ),
    ],
)
def test_corrupt_swc_is_refused_with_line_numbers(tmp_path, text, match):
    path = tmp_path / "bad.swc"
    path.write_text(text)
    with pytest.raises(InputDataError, match=match):
        read_swc(path)


def test_missing_file_and_cycles(tmp_path):
    with pytest.raises(InputDataError, match="does not exist"):
        read_swc(tmp_path / "nope.swc")
    cyc = nx.cycle_graph(3)
    for n in cyc:
        cyc.nodes[n]["pos_um"] = (0.0, 0.0, float(n))
    with pytest.raises(ValueError, match="cycle"):
        write_swc(tmp_path / "c.swc", cyc)


def test_mouselight_file_reads_as_one_tree_in_absolute_um():
    files = sorted((SHARED_DATA / "mouselight").glob("*.swc"))
    if not files:
        pytest.skip(f"MouseLight SWC files not found in {SHARED_DATA / 'mouselight'}")
    g = read_swc(files[-1])
    assert nx.is_tree(g)
    oz, oy, ox = g.graph["offset_um"]
    assert ox > 1000  # MouseLight offsets are tens of millimetres
    first = [line for line in files[-1].read_text().splitlines() if not line.startswith("#")][0].split()
    assert g.nodes[int(first[0])]["pos_um"] == pytest.approx((float(first[4]) + oz, float(first[3]) + oy,
                                                              float(first[2]) + ox))


def test_navis_reads_our_swc_in_micrometres_with_the_right_cable_length(tmp_path):
    navis = pytest.importorskip("navis", reason="navis is not installed (optional, `pip install navis`): "
                                "it checks that navis reads the unit of our SWC files")
    g = nx.Graph()
    g.add_node(1, pos_um=(0.0, 0.0, 0.0))
    g.add_node(2, pos_um=(0.0, 0.0, 3.0))  # 3 µm along x
    g.add_node(3, pos_um=(0.0, 4.0, 3.0))  # then 4 µm along y
    g.add_node(4, pos_um=(12.0, 4.0, 3.0))  # then 12 µm along z
    g.add_edges_from([(1, 2), (2, 3), (3, 4)])
    path = tmp_path / "7.swc"
    write_swc(path, g, comments=["neurorecon skeletonize segmentation.zarr", "label 7"])
    neuron = navis.read_swc(path)
    assert str(neuron.units.units) == "micrometer" and neuron.units.magnitude == 1
    assert neuron.cable_length == pytest.approx(19.0)  # in the neuron's units
    assert (neuron.cable_length * neuron.units).to("nanometer").magnitude == pytest.approx(19000.0)
    assert read_swc(path).number_of_nodes() == 4  # our reader still reads it
