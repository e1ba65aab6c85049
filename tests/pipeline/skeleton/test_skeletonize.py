"""kimimaro wrapper: axis order, physical units of the TEASAR parameters, dust, conversions."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from pipeline.skeleton import (
    TeasarParams,
    dust_threshold_voxels,
    graph_to_skeleton,
    skeleton_to_graph,
    skeletonize,
)

VS = (1.5, 0.5, 0.5)  # (z, y, x) µm, anisotropic on purpose


def _positions(graph: nx.Graph) -> np.ndarray:
    return np.array([graph.nodes[n]["pos_um"] for n in graph.nodes])


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_straight_line_along_each_axis_keeps_zyx_order(axis):
    # A one-voxel-thick line of 20 voxels along `axis`, at index 3 on the other axes.
    labels = np.zeros((24, 24, 24), np.uint32)
    index = [3, 3, 3]
    index[axis] = slice(2, 22)
    labels[tuple(index)] = 9
    graph = skeletonize(labels, voxel_size_um=VS)[9]
    pos = _positions(graph)
    assert graph.number_of_nodes() == 20 and graph.number_of_edges() == 19
    for other in {0, 1, 2} - {axis}:
        # off-axis coordinates are the constant index 3 times that axis' voxel size
        np.testing.assert_allclose(pos[:, other], 3 * VS[other])
    np.testing.assert_allclose(np.sort(pos[:, axis]), np.arange(2, 22) * VS[axis], rtol=1e-6)
    # pos_um are voxel centres index * voxel_size_um, (z, y, x)
    assert all(isinstance(v, float) for v in graph.nodes[0]["pos_um"])
    assert graph.graph["label"] == 9 and graph.graph["voxel_size_um"] == VS


def test_radius_is_distance_to_boundary_in_um():
    # A 3x3 square cross-section along x, z spacing 1.5 µm: the distance to the boundary at the centre
    # is limited by the y neighbours (1 voxel = 0.5 µm to the last voxel, +0.5 to outside).
    labels = np.zeros((7, 7, 30), np.uint8)
    labels[2:5, 2:5, 3:27] = 1
    graph = skeletonize(labels, voxel_size_um=VS)[1]
    radii = np.array([graph.nodes[n]["radius_um"] for n in graph.nodes])
    assert radii.max() == pytest.approx(1.0, abs=1e-6)


def test_teasar_parameters_are_in_physical_units():
    # Scaling the voxel size and every length parameter by 1000 (µm -> nm) scales the skeleton by 1000
    # and leaves its topology unchanged: kimimaro treats const in the units of `anisotropy`.
    labels = np.zeros((5, 40, 40), np.uint8)
    labels[2, 5:35, 19:22] = 1  # bar along y, 1.5 x 1.5 µm cross-section
    labels[2, 19:22, 5:35] = 1  # bar along x: a plus sign with four arms of 7.5 µm
    a = skeletonize(labels, voxel_size_um=VS, params=TeasarParams(const_um=2.0))[1]
    b = skeletonize(labels, voxel_size_um=tuple(v * 1000 for v in VS),
                    params=TeasarParams(const_um=2000.0))[1]
    assert a.number_of_nodes() == b.number_of_nodes()
    np.testing.assert_allclose(_positions(b), _positions(a) * 1000, rtol=1e-5)
    # and const_um is in µm: an invalidation radius longer than the 7.5 µm arms leaves only the
    # root-to-farthest path, a shorter one keeps all four tips
    c = skeletonize(labels, voxel_size_um=VS, params=TeasarParams(const_um=10.0))[1]
    assert sum(1 for _, d in c.degree if d == 1) == 2
    assert sum(1 for _, d in a.degree if d == 1) == 4


def test_dust_threshold_in_cubic_micrometres():
    voxel_volume = VS[0] * VS[1] * VS[2]  # 0.375 µm³
    assert dust_threshold_voxels(8 * voxel_volume, VS) == 8
    assert dust_threshold_voxels(8 * voxel_volume - 1e-3, VS) == 7
    assert dust_threshold_voxels(0.0, VS) == 0
    labels = np.zeros((5, 5, 20), np.uint16)
    labels[2, 2, 2:10] = 1  # 8 voxels = 3.0 µm³
    labels[2, 2, 11:19] = 2
    labels[1:4, 1:4, 11:19] = 2  # 72 voxels
    kept = skeletonize(labels, voxel_size_um=VS, dust_threshold_um3=8 * voxel_volume)
    assert set(kept) == {2}  # volume <= threshold is dust
    kept = skeletonize(labels, voxel_size_um=VS, dust_threshold_um3=8 * voxel_volume - 0.01)
    assert set(kept) == {1, 2}
    with pytest.raises(ValueError, match="dust_threshold_um3"):
        skeletonize(labels, voxel_size_um=VS, dust_threshold_um3=-1.0)


def test_single_voxel_and_empty_volumes():
    labels = np.zeros((5, 5, 5), np.uint8)
    assert skeletonize(labels, voxel_size_um=VS) == {}
    labels[2, 2, 2] = 3
    assert skeletonize(labels, voxel_size_um=VS) == {}  # kimimaro skips single voxels


def test_bool_input_and_memory_order_give_the_same_skeleton():
    mask = np.zeros((6, 20, 20), bool)
    mask[2:4, 3:17, 9:11] = True
    a = skeletonize(mask, voxel_size_um=VS)[1]
    b = skeletonize(np.asfortranarray(mask.astype(np.int64)), voxel_size_um=VS)[1]
    np.testing.assert_allclose(np.sort(_positions(a), axis=0), np.sort(_positions(b), axis=0))


def test_soma_mode_places_a_node_near_the_soma_centre():
    # A ball of radius 5 µm with an axon; in soma mode the root is placed at the ball's centre.
    shape = (30, 40, 60)
    z, y, x = np.meshgrid(*[np.arange(n) * 0.5 for n in shape], indexing="ij")
    ball = (z - 7.5) ** 2 + (y - 10) ** 2 + (x - 10) ** 2 <= 5.0**2
    axon = (np.abs(z - 7.5) <= 0.5) & (np.abs(y - 10) <= 0.5) & (x >= 10) & (x <= 28)
    labels = (ball | axon).astype(np.uint8)
    graph = skeletonize(labels, voxel_size_um=(0.5, 0.5, 0.5), params=TeasarParams(soma=True))[1]
    pos = _positions(graph)
    assert np.linalg.norm(pos - [7.5, 10, 10], axis=1).min() <= 0.75


def test_graph_skeleton_round_trip():
    labels = np.zeros((8, 30, 30), np.uint8)
    labels[3:5, 5:25, 14:16] = 1
    labels[3:5, 14:16, 5:25] = 1
    graph = skeletonize(labels, voxel_size_um=VS)[1]
    skel = graph_to_skeleton(graph)
    assert skel.space == "physical" and skel.id == 1
    back = skeleton_to_graph(skel)
    assert nx.utils.graphs_equal(nx.Graph(back.edges), nx.Graph(graph.edges))
    np.testing.assert_allclose(_positions(back), _positions(graph), rtol=1e-6)
    radii = [back.nodes[n]["radius_um"] for n in back.nodes]
    np.testing.assert_allclose(radii, [graph.nodes[n]["radius_um"] for n in graph.nodes], rtol=1e-6)


def test_graph_to_skeleton_requires_positions():
    g = nx.Graph()
    g.add_edge(0, 1)
    with pytest.raises(ValueError, match="pos_um"):
        graph_to_skeleton(g)


def test_skeleton_to_graph_rejects_voxel_space():
    from osteoid import Skeleton

    skel = Skeleton(np.zeros((2, 3), np.float32), np.array([[0, 1]], np.uint32), space="voxel")
    with pytest.raises(ValueError, match="physical"):
        skeleton_to_graph(skel)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"labels": np.zeros((4, 4), np.uint8)}, ValueError, "ndim=2"),
        ({"labels": np.zeros((4, 4, 4), np.float32)}, TypeError, "dtype float32"),
        ({"voxel_size_um": (1.0, 1.0)}, ValueError, "3 entries"),
        ({"voxel_size_um": (1.0, 0.0, 1.0)}, ValueError, "positive"),
        ({"teasar": {"const_um": -1.0}}, ValueError, "const_um"),
        ({"teasar": {"pdrf_exponent": 0}}, ValueError, "pdrf_exponent"),
        ({"params": {"const_um": 1.0}}, TypeError, "params must be a TeasarParams"),
    ],
)
def test_input_validation(kwargs, exc, match):
    args = {"labels": np.zeros((4, 4, 4), np.uint8), "voxel_size_um": VS} | kwargs
    labels = args.pop("labels")
    with pytest.raises(exc, match=match):
        if "teasar" in args:  # invalid settings are refused where they are made
            args["params"] = TeasarParams(**args.pop("teasar"))
        skeletonize(labels, **args)
