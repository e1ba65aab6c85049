"""The preflight's ground-truth checks on their own (issue 18), on skeletons of hand-computable geometry."""

from __future__ import annotations

import networkx as nx
import pytest

from flows.preflight import check_skeletons_in_volume, check_thresholds
from pipeline.errors import ConfigError, InputDataError

SHAPE, VS = (10, 10, 10), (1.0, 1.0, 1.0)  # a 10 µm cube; a node at x >= 9.5 µm samples a voxel beyond it


def _line(n_nodes: int, *, step_um: float = 1.0) -> nx.Graph:
    """A straight skeleton along x through the cube's middle, nodes at x = 0, step, 2 step, ... µm."""
    g = nx.path_graph(n_nodes)
    for i in g:
        g.nodes[i]["pos_um"] = (5.0, 5.0, i * step_um)
    return g


@pytest.mark.parametrize("n_nodes", [10, 12, 20])  # 0, 2 and 10 of them (not more than half) outside
def test_skeletons_a_little_outside_are_accepted(n_nodes):
    check_skeletons_in_volume({1: _line(n_nodes)}, shape=SHAPE, voxel_size_um=VS)


def test_skeletons_mostly_outside_are_refused_with_their_range_and_the_volume():
    with pytest.raises(InputDataError, match=r"^gt: 11 of 21 nodes lie outside the volume; their coordinates "
                       r"span z 5\.\.5, y 5\.\.5, x 0\.\.20 µm but the volume spans z 0\.\.10, y 0\.\.10, "
                       r"x 0\.\.10 µm .*check their units and origin"):
        check_skeletons_in_volume({1: _line(21)}, shape=SHAPE, voxel_size_um=VS, what="gt")


def test_skeletons_in_nm_are_refused_as_nm():
    with pytest.raises(InputDataError, match=r"9 of 10 nodes .*x 0\.\.9000 µm .*these look like nm \(they "
                       r"reach 900x the volume's extent\): divide them by 1000"):
        check_skeletons_in_volume({1: _line(10, step_um=1000.0)}, shape=SHAPE, voxel_size_um=VS)


def test_thresholds_of_a_sweep_are_checked_and_kept_in_order():
    assert check_thresholds(None, max_threshold=0.9) == ()
    assert check_thresholds([0.5, 0.3, 0.5, "0.7"], max_threshold=0.9) == (0.5, 0.3, 0.7)
    with pytest.raises(ConfigError, match=r"^--thresholds must be one or more numbers in \[0, 1\].*'-0\.1'"):
        check_thresholds([-0.1], max_threshold=0.9)
    with pytest.raises(ConfigError, match=r"^thresholds must be .*got 'x'"):
        check_thresholds(["x"], max_threshold=0.9, name="thresholds")
    with pytest.raises(ConfigError, match=r"^--thresholds 0\.8, 0\.95 above segment\.max_threshold 0\.75, .* "
                                          r"raise segment\.max_threshold"):
        check_thresholds([0.3, 0.8, 0.95], max_threshold=0.75)
