"""A phantom-like test case built by hand: touching tubes whose skeleton nodes sample their neighbours.

Voxels are (1.0, 0.5, 0.5) µm (z, y, x); every tube has radius 1.5 µm and runs along x.

* A (label 3) and B (label 5) lie end to end on the line z = 3, y = 3.5 µm and touch at x = 42.5 µm:
  A covers x in [2.5, 42.5) µm, B covers [42.5, 82.5) µm. Their skeletons have a node every 1 µm
  (40 edges of 1 µm each, 40 µm) and overlap by one node, like compartments of a neuron:
  A's nodes x = 3, 4, ..., 43 µm (its end node x = 43 lies in B), B's nodes x = 42, ..., 82 µm
  (its end node x = 42 lies in A).
* C (label 9) runs beside A at y = 6.5 µm, x in [10, 35) µm, touching A along its side (C is drawn
  last, so the row y = 5.0 µm they share is C's). Its skeleton has nodes x = 10.5, ..., 34.5 µm
  (24 edges); the node at x = 20.5 µm lies on the border at y = 4.5 µm, which is A's voxel, as an
  SWC node at the border of touching objects does. Its cable is 22 + 2 sqrt(5) µm.
* Dropout gaps: one on A from x = 12.3 to 15.6 µm (sides: nodes x = 12 and 16) and one on B from
  x = 60.5 to 63.5 µm (sides: nodes x = 60 and 64).
"""

from __future__ import annotations

import math

import networkx as nx
import numpy as np

VS = (1.0, 0.5, 0.5)
SHAPE = (7, 18, 170)
Z_UM, Y_UM, RADIUS_UM = 3.0, 3.5, 1.5
C_Y_UM = 6.5
A, B, C = 3, 5, 9
LENGTH_C_UM = 22 + 2 * math.sqrt(5)
GAPS = (
    {"label": A, "start_um": (Z_UM, Y_UM, 12.3), "end_um": (Z_UM, Y_UM, 15.6)},
    {"label": B, "start_um": (Z_UM, Y_UM, 60.5), "end_um": (Z_UM, Y_UM, 63.5)},
)


def _tube(vol: np.ndarray, label: int, y_um: float, x0_um: float, x1_um: float) -> None:
    z, y, x = (np.arange(n) * s for n, s in zip(vol.shape, VS, strict=True))
    inside = ((z[:, None, None] - Z_UM) ** 2 + (y[None, :, None] - y_um) ** 2 <= RADIUS_UM**2) & (
        (x[None, None, :] >= x0_um) & (x[None, None, :] < x1_um)
    )
    vol[inside] = label


def labels() -> np.ndarray:
    """The ground-truth label volume, (7, 18, 170) uint16."""
    vol = np.zeros(SHAPE, np.uint16)
    _tube(vol, A, Y_UM, 2.5, 42.5)
    _tube(vol, B, Y_UM, 42.5, 82.5)
    _tube(vol, C, C_Y_UM, 10.0, 35.0)
    return vol


def _path(points) -> nx.Graph:
    g = nx.Graph()
    for k, p in enumerate(points):
        g.add_node(k, pos_um=tuple(float(v) for v in p))
    g.add_edges_from((k, k + 1) for k in range(len(points) - 1))
    return g


def skeletons() -> dict[int, nx.Graph]:
    """Ground-truth skeletons keyed by label; node k of A and B sits at x = 3 + k and 42 + k µm."""
    a = _path([(Z_UM, Y_UM, 3.0 + k) for k in range(41)])
    b = _path([(Z_UM, Y_UM, 42.0 + k) for k in range(41)])
    c = _path([(Z_UM, 4.5 if k == 10 else C_Y_UM, 10.5 + k) for k in range(25)])
    return {A: a, B: b, C: c}
