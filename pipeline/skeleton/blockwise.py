"""Block-wise TEASAR skeletons of label volumes larger than memory: one skeleton per object.

Each block is skeletonized with kimimaro on its *read region* (its write region grown by a halo of
context on every side, clipped to the volume), the skeleton is cut back to the block's *write region*,
and the pieces of every label are fused across blocks. Objects that cross a block seam but are small
enough (their bounding box holds no more voxels than a read region) are not cut at all: they are
skeletonized in one piece, on their own box. Memory per task is bounded by the read region (kimimaro's
EDT and per-object fields); the fused skeletons are small (a few vertices per µm of cable).

Algorithm
---------
0. **Count and plan** (:func:`block_labels`, :func:`label_statistics`, :func:`plan_one_piece`): a first
   pass over the write regions gives every label's voxel count, bounding box and number of blocks.
   Labels in more than one block whose box, grown by one voxel on its faces inside the volume, holds at
   most ``max_voxels`` (default: the largest read region) are *one-piece objects*; each is assigned to
   the block whose write region holds its box's first corner.
   One-piece objects (:func:`skeletonize_objects`) are skeletonized each on its own box, other labels
   masked out and a layer of background added on the box's faces inside the volume. kimimaro
   skeletonizes every object on the crop of its own box, with distances to the nearest voxel of another
   label, so this is *exactly* its result on the whole volume (tested edge for edge), except for objects
   on the volume border (below). Steps 1-6 handle the other labels; one-piece objects are masked out
   of the blocks' read regions, which does not change the other labels' distance fields.
1. **Skeletonize with context** (kimimaro): ``kimimaro.skeletonize(read_region, fix_borders=True,
   anisotropy=voxel_size_um)``, with one layer of background added on the read region's faces inside
   the volume, so that ``fix_borders`` places end points only where objects leave the *volume* (as in a
   whole-volume run), not at every cut. The halo makes the distance-to-boundary field and the TEASAR
   paths inside the write region (nearly) those of a whole-volume run; the effects of the cut (paths
   that end at the farthest voxels of the cut face) fall into the halo.
2. **Cut by edge ownership** (written here): vertices are converted to global voxel indices, and a
   block keeps exactly the skeleton edges whose *midpoint* lies in its write region (half-open in
   voxel-centre coordinates), so every edge position of the volume is owned by one block. An edge that
   crosses into the next block ends in a *stub* vertex one voxel beyond the write region. Vertices
   that lost an edge to the cut, and stubs, are marked *cut*.
3. **Snap the seams** (written here): where the two blocks' paths cross a seam at the same voxel, the
   stub coincides with a vertex of the neighbouring block and is merged by step 4. Otherwise the stub is
   moved onto the nearest vertex of the block that owns its position (same label), when that vertex
   lies within ``max(r_stub, r_vertex) + max(voxel_size_um)`` µm (r = kimimaro's radius).
4. **Merge duplicates** (osteoid): ``Skeleton.simple_merge(pieces).consolidate()`` merges vertices
   with identical coordinates and identical edges. Vertices are ``index * voxel_size_um`` computed the
   same way in every block, so coinciding vertices are bit-identical.
5. **Bridge, un-loop and prune at seams** (written here): a cut vertex left with at most one edge is
   joined to the nearest vertex of another connected component of the label within ``r1 + r2 + 2
   max(voxel size)`` (shortest bridges first, never closing a loop) — this repairs objects that run
   along a seam, where each block kept a different part of its own path. Loops (two blocks' versions
   of one stretch, joined at both ends) lose the chain with the smaller mean radius (kimimaro's
   ``remove_loops`` would delete a loop without side branches, i.e. the whole object). Finally end
   branches that end, or branch off, at a cut vertex and are at most ``r + 2 max(voxel size)`` long
   (one block's path overshooting the junction) are removed, never all branches of one branch point.
6. **Clean up** (kimimaro): for labels that span more than one block and are still in several
   pieces, ``kimimaro.postprocess(skeleton, dust_threshold=0, tick_threshold=tick_threshold_um)`` joins
   pieces across gaps shorter than the two radii (``join_close_components(restrict_by_radius=
   True)``); with ``tick_threshold_um > 0`` it also removes short end branches, and is then applied to
   every label so single-block labels are treated alike.

Labels that lie in one block are exactly kimimaro's result for that block's read region.

Accuracy and cost
-----------------
Measured against one kimimaro call on the whole volume with the same parameters (tests and
``benchmarks/bench_skeleton.py``).

- *Objects inside the volume* that lie in one block, or cross a seam and fit in a read region, get
  exactly the whole-volume skeleton, edge for edge.
- *Objects larger than a read region* are fused from blocks (steps 1-6). On light-sheet phantoms
  (voxels 1.5 x 0.5 x 0.5 µm, blocks down to 24 x 16 x 16 µm) their smoothed cable and length (as
  ``lengths.csv`` reports them) agree within 2 %. Unsmoothed, what differs are TEASAR's own choices,
  which a whole-volume run makes just as arbitrarily: an AIS lying flat in a z seam runs at z = 15
  over some stretches in one run and at z = 16 in the other (both centre lines of a 6-voxel-thick
  object; each 1.5 µm z step adds cable, 6 % in all), and blobs thicker than the halo (somata) get
  other short paths.
- *Objects on the volume border* (flagged in ``lengths.csv`` and left out of length distributions)
  depend on kimimaro's root choice: with ``fix_borders`` it roots an object at one of the centres of
  its cross-sections with the border, taken from a Python set of coordinates *relative to the array it
  was given*. Another crop of the same volume (a block, an object's box, or the whole volume mirrored)
  can pick another of them; a path then ends on another voxel of a blunt end.

Dense EM (16 x 16 x 40 nm, 256^3 crop, 198 of its 223 objects cut by the crop): the 25 objects inside
are identical to the whole-volume run with 128^3 and 128 x 256 x 256 blocks; 74-83 % of the border
objects agree within 2 %. Time: 0.87-0.92x the whole-volume call on EM; 1.1x on a sub-second phantom
with 64 x 256 x 256 blocks, 1.3x with 32 x 128 x 128 blocks (``benchmarks/RESULTS.md``).

All positions are (z, y, x); physical positions are in µm at voxel centres ``index * voxel_size_um``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import networkx as nx
import numpy as np

from pipeline._checks import as_voxel_size
from pipeline.skeleton.block import BlockSkeletons, ReadLabels, skeletonize_block_with_plan
from pipeline.skeleton.config import DEFAULT_HALO_UM, DEFAULT_TICK_THRESHOLD_UM
from pipeline.skeleton.fuse import fuse_block_skeletons
from pipeline.skeleton.grid import skeleton_grid
from pipeline.skeleton.lengths import EXACT_MAX_NODES, ObjectRow, measure_object
from pipeline.skeleton.plan import (
    LabelStatistics,
    block_labels,
    check_max_voxels,
    label_statistics,
    plan_one_piece,
)
from pipeline.skeleton.teasar import TeasarParams, dust_threshold_voxels

__all__ = ["object_rows", "object_table_blocks", "skeletonize_blocks", "without_dust"]


def object_rows(
    graphs: Mapping[int, nx.Graph],
    statistics: LabelStatistics,
    *,
    voxel_size_um: Sequence[float],
    smooth_sigma_um: float | None = None,
    exact_max_nodes: int = EXACT_MAX_NODES,
) -> tuple[ObjectRow, ...]:
    """Per-object rows (as :func:`~pipeline.skeleton.object_table`) from fused skeletons and statistics.

    Parameters
    ----------
    graphs : mapping of int to networkx.Graph
        Skeletons from :func:`fuse_block_skeletons` (or :func:`~pipeline.skeleton.teasar`).
    statistics : LabelStatistics
        Voxel counts and border flags; every label in it gets a row (0.0 lengths without a skeleton).
    voxel_size_um : sequence of 3 float
        Voxel size in µm, (z, y, x).
    smooth_sigma_um : float, optional
        Smoothing along chains before measuring; default ``max(1.0, max(voxel_size_um))``.
    exact_max_nodes : int
        Passed to :func:`~pipeline.skeleton.graph_diameter_um`.

    Returns
    -------
    tuple of ObjectRow
        Sorted by label.
    """
    vs = as_voxel_size(voxel_size_um)
    sigma = max(1.0, *vs) if smooth_sigma_um is None else float(smooth_sigma_um)
    if not (math.isfinite(sigma) and sigma >= 0):
        raise ValueError(
            f"smooth_sigma_um must be a finite number >= 0 (µm) or None; got {smooth_sigma_um!r}"
        )
    rows = []
    for label, count in statistics.n_voxels.items():
        rows.append(measure_object(int(label), graphs.get(label), n_voxels=int(count),
                                   touches_border=int(label) in statistics.border_labels, sigma_um=sigma,
                                   exact_max_nodes=exact_max_nodes))
    return tuple(sorted(rows, key=lambda r: r.label))


def without_dust(
    statistics: LabelStatistics, *, dust_threshold_um3: float, voxel_size_um: Sequence[float]
) -> LabelStatistics:
    """``statistics`` without the dust: the labels whose *total* volume is at most ``dust_threshold_um3``.

    Whole objects are measured (kimimaro's own dust threshold applies per connected component, and per
    block would drop pieces of large objects): an object of ``n_voxels`` is dust if
    ``n_voxels <= dust_threshold_voxels(dust_threshold_um3, voxel_size_um)``.

    Raises
    ------
    ValueError
        If ``dust_threshold_um3`` is negative or not finite, or the voxel size is invalid.

    Examples
    --------
    >>> stats = LabelStatistics(n_voxels={1: 5, 2: 6}, border_labels=frozenset({1}))
    >>> without_dust(stats, dust_threshold_um3=2.0, voxel_size_um=(1.5, 0.5, 0.5)).n_voxels  # 5 voxels
    {2: 6}
    """
    dust = dust_threshold_voxels(dust_threshold_um3, voxel_size_um)
    keep = {label for label, n in statistics.n_voxels.items() if n > dust}
    return LabelStatistics(
        n_voxels={k: v for k, v in statistics.n_voxels.items() if k in keep},
        border_labels=frozenset(statistics.border_labels & keep),
        boxes={k: v for k, v in statistics.boxes.items() if k in keep},
        n_blocks={k: v for k, v in statistics.n_blocks.items() if k in keep},
    )


def _check_volume(shape: Sequence[int], read_labels: Any) -> tuple[int, int, int]:
    if not callable(read_labels):
        raise TypeError(
            f"read_labels must be a callable region -> ndarray (e.g. lambda region: labels[region]); "
            f"got {type(read_labels).__name__}"
        )
    try:
        out = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape must be three positive integers (z, y, x); got {shape!r}") from None
    if len(out) != 3 or min(out) < 1:
        raise ValueError(f"shape must be three positive integers (z, y, x); got {shape!r}")
    return out  # type: ignore[return-value]


def _run_serial(
    read_labels: ReadLabels,
    shape: Sequence[int],
    voxel_size_um: Sequence[float],
    block_shape: Sequence[int],
    halo_um: float | Sequence[float],
    params: TeasarParams,
    one_piece_max_voxels: int | None,
) -> tuple[list[BlockSkeletons], LabelStatistics]:
    volume = _check_volume(shape, read_labels)
    check_max_voxels(one_piece_max_voxels, "one_piece_max_voxels")
    blocks = skeleton_grid(volume, block_shape=block_shape, voxel_size_um=voxel_size_um, halo_um=halo_um)
    stats = label_statistics(
        (block_labels(np.asarray(read_labels(b.write)), block=b) for b in blocks), volume_shape=volume
    )
    plan = plan_one_piece(stats, blocks, max_voxels=one_piece_max_voxels)
    pieces: list[BlockSkeletons] = []
    for b in blocks:
        pieces.extend(
            skeletonize_block_with_plan(
                read_labels, block=b, plan=plan, volume_shape=volume, voxel_size_um=voxel_size_um,
                params=params,
            )
        )
    return pieces, stats


def skeletonize_blocks(
    read_labels: ReadLabels,
    *,
    shape: Sequence[int],
    voxel_size_um: Sequence[float],
    block_shape: Sequence[int],
    halo_um: float | Sequence[float] = DEFAULT_HALO_UM,
    params: TeasarParams | None = None,
    tick_threshold_um: float = DEFAULT_TICK_THRESHOLD_UM,
    dust_threshold_um3: float | None = None,
    one_piece_max_voxels: int | None = None,
) -> dict[int, nx.Graph]:
    """Skeletonize a label volume block by block, in this process, and fuse the pieces.

    The serial counterpart of the Dask stage in :mod:`flows.stages.skeletonize`; only one block's read
    region is in memory at a time (plus the skeletons).

    Parameters
    ----------
    read_labels : callable
        ``read_labels(region) -> ndarray``: the labels of a (z, y, x) tuple of slices, e.g.
        ``lambda region: zarr_array[region]`` or ``labels.__getitem__``. Integer or bool.
    shape : sequence of 3 int
        Volume shape, voxels (z, y, x).
    voxel_size_um : sequence of 3 float
        Voxel size in µm, (z, y, x).
    block_shape : sequence of 3 int
        Write-region shape of every block, voxels.
    halo_um : float or sequence of 3 float
        Context around each block, µm (at least one voxel); see the module docstring.
    params : TeasarParams, optional
        kimimaro settings (µm); default ``TeasarParams()``.
    tick_threshold_um : float
        End branches shorter than this are removed (``kimimaro.postprocess``); 0 keeps them.
    dust_threshold_um3 : float, optional
        Labels whose *total* volume is at most this, µm³, are dropped (:func:`without_dust`; None or 0
        keeps all; the stage uses ``skeletonize.dust_threshold_um3``).
    one_piece_max_voxels : int, optional
        Objects that cross a seam and whose box (grown by one voxel) holds at most this many voxels are
        skeletonized in one piece (:func:`plan_one_piece`); default the largest read region, 0 never.

    Returns
    -------
    dict of int to networkx.Graph
        As :func:`~pipeline.skeleton.teasar`.

    Raises
    ------
    TypeError
        If ``read_labels`` is not callable or returns a non-integer array.
    ValueError
        If a shape, the voxel size or the halo is invalid, or ``read_labels`` returns a wrong shape.

    Examples
    --------
    >>> labels = np.zeros((4, 4, 60), np.uint32)
    >>> labels[1:3, 1:3, 2:58] = 7
    >>> graphs = skeletonize_blocks(labels.__getitem__, shape=labels.shape, voxel_size_um=(1, 1, 1),
    ...                             block_shape=(4, 4, 20), halo_um=2)
    >>> from pipeline.skeleton import cable_length_um
    >>> round(cable_length_um(graphs[7]))
    56
    """
    pieces, stats = _run_serial(
        read_labels, shape, voxel_size_um, block_shape, halo_um, params, one_piece_max_voxels
    )
    graphs = fuse_block_skeletons(pieces, voxel_size_um=voxel_size_um, tick_threshold_um=tick_threshold_um)
    kept = without_dust(stats, dust_threshold_um3=dust_threshold_um3 or 0.0, voxel_size_um=voxel_size_um)
    return {k: g for k, g in graphs.items() if k in kept.n_voxels}


def object_table_blocks(
    read_labels: ReadLabels,
    *,
    shape: Sequence[int],
    voxel_size_um: Sequence[float],
    block_shape: Sequence[int],
    halo_um: float | Sequence[float] = DEFAULT_HALO_UM,
    params: TeasarParams | None = None,
    tick_threshold_um: float = DEFAULT_TICK_THRESHOLD_UM,
    smooth_sigma_um: float | None = None,
    one_piece_max_voxels: int | None = None,
) -> tuple[ObjectRow, ...]:
    """Block-wise :func:`~pipeline.skeleton.object_table`: one row per label present.

    Parameters are those of :func:`skeletonize_blocks` and :func:`object_rows`.

    Returns
    -------
    tuple of ObjectRow
        Sorted by label; ``touches_border`` flags objects on a face of the whole volume.
    """
    pieces, stats = _run_serial(
        read_labels, shape, voxel_size_um, block_shape, halo_um, params, one_piece_max_voxels
    )
    graphs = fuse_block_skeletons(pieces, voxel_size_um=voxel_size_um, tick_threshold_um=tick_threshold_um)
    return object_rows(graphs, stats, voxel_size_um=voxel_size_um, smooth_sigma_um=smooth_sigma_um)
