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
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import fastremap
import kimimaro
import networkx as nx
import numpy as np
from osteoid import Skeleton
from scipy.ndimage import find_objects
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from pipeline._checks import as_voxel_size, check_array
from pipeline.blocks import Block, block_grid
from pipeline.skeleton.lengths import (
    _EXACT_MAX_NODES,
    ObjectRow,
    measure_object,
)
from pipeline.skeleton.skeletonize import (
    _SOMA_ACCEPTANCE_UM,
    _SOMA_DETECTION_UM,
    _SOMA_INVALIDATION_CONST_UM,
    dust_threshold_voxels,
    skeleton_to_graph,
)

__all__ = [
    "DEFAULT_HALO_UM",
    "BlockLabels",
    "BlockSkeletons",
    "LabelStatistics",
    "OnePiecePlan",
    "TeasarParams",
    "block_labels",
    "check_max_voxels",
    "fuse_block_skeletons",
    "halo_voxels",
    "label_statistics",
    "object_rows",
    "object_table_blocks",
    "plan_one_piece",
    "skeleton_grid",
    "skeletonize_block",
    "skeletonize_block_with_plan",
    "skeletonize_blocks",
    "skeletonize_objects",
]

#: Default context around each block, µm: covers TEASAR's invalidation radius ``scale * r + const``
#: (1.5 r + 1 µm with the defaults) for radii up to ~1.3 µm, i.e. axon initial segments and neurites.
DEFAULT_HALO_UM = 3.0

ReadLabels = Callable[[tuple[slice, slice, slice]], np.ndarray]


# --------------------------------------------------------------------------------------------------------
# parameters


@dataclass(frozen=True)
class TeasarParams:
    """kimimaro TEASAR settings in physical units (µm); the same meaning as in :func:`skeletonize`.

    Attributes
    ----------
    scale, const_um : float
        Rolling-ball invalidation radius ``scale * DBF + const_um`` (µm).
    pdrf_scale : float
        Weight of the centreline penalty (unit-free).
    pdrf_exponent : int
        Exponent of the centreline penalty.
    soma : bool
        Enable kimimaro's soma handling (False: thresholds set to infinity).
    soma_detection_threshold_um, soma_acceptance_threshold_um : float
        DBF (µm) above which a soma is looked for / accepted.
    soma_invalidation_scale, soma_invalidation_const_um : float
        Invalidation radius around an accepted soma root.
    fix_branching : bool
        kimimaro's ``fix_branching``.
    """

    scale: float = 1.5
    const_um: float = 1.0
    pdrf_scale: float = 100000.0
    pdrf_exponent: int = 4
    soma: bool = False
    soma_detection_threshold_um: float = _SOMA_DETECTION_UM
    soma_acceptance_threshold_um: float = _SOMA_ACCEPTANCE_UM
    soma_invalidation_scale: float = 2.0
    soma_invalidation_const_um: float = _SOMA_INVALIDATION_CONST_UM
    fix_branching: bool = True

    def __post_init__(self) -> None:
        for name in (
            "scale",
            "const_um",
            "pdrf_scale",
            "soma_invalidation_scale",
            "soma_invalidation_const_um",
        ):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0; got {value!r}")
        if not (isinstance(self.pdrf_exponent, int | np.integer) and self.pdrf_exponent >= 1):
            raise ValueError(f"pdrf_exponent must be a positive integer; got {self.pdrf_exponent!r}")

    def kimimaro(self) -> dict[str, Any]:
        """The ``teasar_params`` dictionary for ``kimimaro.skeletonize`` (anisotropy in µm)."""
        params: dict[str, Any] = {
            "scale": float(self.scale),
            "const": float(self.const_um),
            "pdrf_scale": float(self.pdrf_scale),
            "pdrf_exponent": int(self.pdrf_exponent),
            "soma_invalidation_scale": float(self.soma_invalidation_scale),
            "soma_invalidation_const": float(self.soma_invalidation_const_um),
            "soma_detection_threshold": float(self.soma_detection_threshold_um) if self.soma else math.inf,
            "soma_acceptance_threshold": float(self.soma_acceptance_threshold_um) if self.soma else math.inf,
        }
        return params


def halo_voxels(
    halo_um: float | Sequence[float],
    *,
    voxel_size_um: Sequence[float],
    block_shape: Sequence[int] | None = None,
) -> tuple[int, int, int]:
    """Convert a halo in µm to whole voxels per axis, at least one voxel.

    Parameters
    ----------
    halo_um : float or sequence of 3 float
        Context on each side of a block, µm (one value for all axes, or (z, y, x)).
    voxel_size_um : sequence of 3 float
        Voxel size in µm, (z, y, x).
    block_shape : sequence of 3 int, optional
        If given, a halo larger than the block along an axis is an error.

    Returns
    -------
    tuple of 3 int
        ``max(1, ceil(halo_um / voxel_size_um))`` per axis.

    Raises
    ------
    ValueError
        If the halo is negative or not finite, or larger than ``block_shape``.

    Examples
    --------
    >>> halo_voxels(3.0, voxel_size_um=(1.5, 0.5, 0.5))
    (2, 6, 6)
    """
    vs = as_voxel_size(voxel_size_um)
    values = (halo_um,) * 3 if isinstance(halo_um, int | float) else tuple(halo_um)
    if len(values) != 3 or not all(
        isinstance(v, int | float) and math.isfinite(v) and v >= 0 for v in values
    ):
        raise ValueError(
            f"halo_um must be a number >= 0 or three (z, y, x) numbers >= 0 in µm; got {halo_um!r}"
        )
    halo = tuple(max(1, math.ceil(h / v - 1e-9)) for h, v in zip(values, vs, strict=True))
    if block_shape is not None:
        blocks = tuple(int(b) for b in block_shape)
        if any(h > b for h, b in zip(halo, blocks, strict=True)):
            raise ValueError(
                f"halo_um={halo_um!r} is {halo} voxels, more than block_shape {blocks} along some axis; "
                "use larger blocks (several times the halo) or a smaller halo"
            )
    return halo  # type: ignore[return-value]


def skeleton_grid(
    shape: Sequence[int],
    *,
    block_shape: Sequence[int],
    voxel_size_um: Sequence[float],
    halo_um: float | Sequence[float] = DEFAULT_HALO_UM,
) -> list[Block]:
    """The blocks of a block-wise skeletonization: a :func:`~pipeline.blocks.block_grid` with a halo.

    Parameters
    ----------
    shape, block_shape : sequence of 3 int
        Volume and block (write region) shape, voxels (z, y, x).
    voxel_size_um : sequence of 3 float
        Voxel size in µm, (z, y, x).
    halo_um : float or sequence of 3 float
        Context around each block, µm; converted with :func:`halo_voxels`.

    Returns
    -------
    list of Block
        ``block.read`` is the region to read and skeletonize, ``block.write`` the region it owns.
    """
    halo = halo_voxels(halo_um, voxel_size_um=voxel_size_um, block_shape=block_shape)
    return block_grid(shape, block_shape=block_shape, halo=halo)


# --------------------------------------------------------------------------------------------------------
# results


class _ArrayRecord:
    """``as_arrays`` / ``from_arrays`` for a dataclass of numpy arrays and ints (for ``np.savez``).

    Fields keep their names as keys, except ``block_id``, stored as ``block``; ints are stored as 0-d
    int64 arrays.
    """

    def as_arrays(self) -> dict[str, np.ndarray]:
        """All fields as numpy arrays; the inverse of :meth:`from_arrays`."""
        return {
            _key(f.name): np.asarray(getattr(self, f.name), dtype=np.int64) if f.type == "int"
            else getattr(self, f.name)
            for f in fields(self)  # type: ignore[arg-type]
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> Any:
        """Rebuild from :meth:`as_arrays` output (e.g. a loaded ``.npz``).

        Raises
        ------
        ValueError
            If a field is missing.
        """
        names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
        missing = [_key(n) for n in names if _key(n) not in arrays]
        if missing:
            raise ValueError(f"{cls.__name__} arrays lack the fields {missing}; expected those of as_arrays()")
        types = {f.name: f.type for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{  # type: ignore[call-arg]
            n: int(arrays[_key(n)]) if types[n] == "int" else np.asarray(arrays[_key(n)]) for n in names
        })


def _key(name: str) -> str:
    return "block" if name == "block_id" else name


@dataclass(frozen=True, eq=False)
class BlockSkeletons(_ArrayRecord):
    """The skeleton edges one block owns, or the whole skeletons of objects it skeletonized in one piece.

    Attributes
    ----------
    block_id : int
        The block's id in its grid.
    write_start, write_stop : ndarray, shape (3,), int64
        The block's write region, voxels (z, y, x), half-open.
    volume_shape : ndarray, shape (3,), int64
        The whole volume's shape.
    vertices_vx : ndarray, shape (N, 3), int64
        Vertex positions as global voxel indices (z, y, x).
    vertex_labels : ndarray, shape (N,), uint64
        Label of each vertex.
    radii_um : ndarray, shape (N,), float32
        kimimaro's distance to the boundary at each vertex, µm.
    edges : ndarray, shape (M, 2), int64
        Edges as vertex indices; both ends of an edge have the same label.
    cut : ndarray, shape (N,), bool
        Vertices where the block's skeleton was cut: an incident edge belongs to another block, or the
        vertex lies outside the write region (a stub). All False for whole objects
        (:func:`skeletonize_objects`).
    """

    block_id: int
    write_start: np.ndarray
    write_stop: np.ndarray
    volume_shape: np.ndarray
    vertices_vx: np.ndarray
    vertex_labels: np.ndarray
    radii_um: np.ndarray
    edges: np.ndarray
    cut: np.ndarray


# --------------------------------------------------------------------------------------------------------
# label statistics and the objects skeletonized in one piece


@dataclass(frozen=True, eq=False)
class BlockLabels(_ArrayRecord):
    """Per-label voxel counts and bounding boxes of one block's write region.

    Attributes
    ----------
    block_id : int
        The block's id in its grid.
    labels : ndarray, shape (K,), uint64
        Non-zero labels present in the write region, ascending.
    n_voxels : ndarray, shape (K,), int64
        Their voxel counts in the write region.
    box_start, box_stop : ndarray, shape (K, 3), int64
        Their bounding boxes in the write region, global voxel indices (z, y, x), half-open.
    """

    block_id: int
    labels: np.ndarray
    n_voxels: np.ndarray
    box_start: np.ndarray
    box_stop: np.ndarray


def block_labels(labels: np.ndarray, *, block: Block) -> BlockLabels:
    """Voxel counts and bounding boxes of the labels in one block's write region.

    Parameters
    ----------
    labels : ndarray, shape ``block.write_shape``, integer or bool
        The label volume read over ``block.write`` (0 is background).
    block : Block
        The block, from :func:`skeleton_grid`.

    Returns
    -------
    BlockLabels

    Raises
    ------
    TypeError
        If ``labels`` is not an integer or bool array.
    ValueError
        If ``labels`` does not have the shape of ``block.write``.

    Examples
    --------
    >>> from pipeline.blocks import block_grid
    >>> block = block_grid((4, 8, 8), block_shape=(4, 4, 4))[1]  # write region x in [4, 8)
    >>> labels = np.zeros((4, 4, 4), np.uint16)
    >>> labels[1:3, 0, 2] = 9
    >>> piece = block_labels(labels, block=block)
    >>> piece.labels.tolist(), piece.n_voxels.tolist(), piece.box_start.tolist(), piece.box_stop.tolist()
    ([9], [2], [[1, 0, 6]], [[3, 1, 7]])
    """
    arr = check_array(labels, "labels", ndim=3, kinds="biu")
    if tuple(arr.shape) != tuple(block.write_shape):
        raise ValueError(
            f"labels has shape {arr.shape} but block {block.id} writes a region of shape {block.write_shape}; "
            "pass the labels of block.write"
        )
    if arr.dtype == bool:
        arr = arr.view(np.uint8)
    # find_objects indexes by label value: renumber first (labels can be any 64-bit ids; 0 stays 0)
    renumbered, mapping = fastremap.renumber(arr, in_place=False)
    original = np.zeros(len(mapping) + 1, dtype=np.uint64)
    for old, new in mapping.items():
        original[new] = old
    slices = find_objects(renumbered)  # slices[i]: label i + 1
    ids, counts = fastremap.unique(renumbered, return_counts=True)
    keep = ids != 0
    ids, counts = ids[keep].astype(np.int64), counts[keep].astype(np.int64)
    order = np.argsort(original[ids], kind="stable")
    ids, counts = ids[order], counts[order]
    boxes = np.array(
        [[(s.start, s.stop) for s in slices[i - 1]] for i in ids.tolist()], dtype=np.int64
    ).reshape(-1, 3, 2)
    start = np.array([s.start for s in block.write], dtype=np.int64)
    return BlockLabels(
        block_id=int(block.id),
        labels=original[ids],
        n_voxels=counts,
        box_start=boxes[:, :, 0] + start,
        box_stop=boxes[:, :, 1] + start,
    )


@dataclass(frozen=True)
class LabelStatistics:
    """Whole-volume voxel statistics gathered from the blocks.

    Attributes
    ----------
    n_voxels : dict of int to int
        Voxel count of every non-zero label present.
    border_labels : frozenset of int
        Labels with a voxel on a face of the volume.
    boxes : dict of int to (tuple, tuple)
        Bounding box of every label, global voxel indices ((z, y, x) start, (z, y, x) stop), half-open.
    n_blocks : dict of int to int
        Number of blocks whose write region holds a voxel of the label.
    """

    n_voxels: dict[int, int]
    border_labels: frozenset[int]
    boxes: dict[int, tuple[tuple[int, int, int], tuple[int, int, int]]] = field(default_factory=dict)
    n_blocks: dict[int, int] = field(default_factory=dict)


def label_statistics(pieces: Iterable[BlockLabels], *, volume_shape: Sequence[int]) -> LabelStatistics:
    """Sum the per-block counts of :func:`block_labels` and merge their bounding boxes.

    ``border_labels`` are the labels whose bounding box touches a face of ``volume_shape``.
    """
    shape = np.asarray(volume_shape, dtype=np.int64)
    counts: dict[int, int] = defaultdict(int)
    n_blocks: dict[int, int] = defaultdict(int)
    lo: dict[int, np.ndarray] = {}
    hi: dict[int, np.ndarray] = {}
    for piece in pieces:
        for i, label in enumerate(piece.labels.tolist()):
            label = int(label)
            counts[label] += int(piece.n_voxels[i])
            n_blocks[label] += 1
            if label in lo:
                lo[label] = np.minimum(lo[label], piece.box_start[i])
                hi[label] = np.maximum(hi[label], piece.box_stop[i])
            else:
                lo[label], hi[label] = piece.box_start[i].copy(), piece.box_stop[i].copy()
    boxes = {k: (tuple(int(v) for v in lo[k]), tuple(int(v) for v in hi[k])) for k in sorted(counts)}
    border = frozenset(k for k in counts if np.any(lo[k] == 0) or np.any(hi[k] == shape))
    return LabelStatistics(dict(sorted(counts.items())), border, boxes, dict(sorted(n_blocks.items())))


@dataclass(frozen=True, eq=False)
class OnePiecePlan(_ArrayRecord):
    """The objects that cross a seam but are small enough to skeletonize in one piece, and who does it.

    Attributes
    ----------
    labels : ndarray, shape (K,), uint64
        The objects, ascending.
    box_start, box_stop : ndarray, shape (K, 3), int64
        Their bounding boxes, global voxel indices, half-open.
    owner : ndarray, shape (K,), int64
        Id of the block that skeletonizes each: the block whose write region holds the box's first corner.
    max_voxels : int
        The memory bound the objects were chosen by (voxels of a box grown by one voxel).
    """

    labels: np.ndarray
    box_start: np.ndarray
    box_stop: np.ndarray
    owner: np.ndarray
    max_voxels: int

    def owned_by(self, block_id: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """The objects ``block_id`` skeletonizes: label -> (box start, box stop)."""
        return {
            int(self.labels[i]): (self.box_start[i], self.box_stop[i])
            for i in np.flatnonzero(self.owner == block_id)
        }

    def in_region(self, region: Sequence[slice]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """The objects whose bounding box meets ``region`` (a (z, y, x) tuple of slices): label -> box."""
        start = np.array([s.start for s in region], dtype=np.int64)
        stop = np.array([s.stop for s in region], dtype=np.int64)
        meets = np.all((self.box_start < stop) & (self.box_stop > start), axis=1)
        return {int(self.labels[i]): (self.box_start[i], self.box_stop[i]) for i in np.flatnonzero(meets)}


def check_max_voxels(value: Any, name: str) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is None or an integer >= 0."""
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0
    ):
        raise ValueError(f"{name} must be an integer >= 0 (voxels) or None; got {value!r}")


def _padded_box(start: np.ndarray, stop: np.ndarray, shape: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A box grown by one voxel on its faces inside the volume: what :func:`skeletonize_objects` holds."""
    return start - (start > 0), stop + (stop < shape)


def plan_one_piece(
    statistics: LabelStatistics, grid: Sequence[Block], *, max_voxels: int | None = None
) -> OnePiecePlan:
    """Choose the objects to skeletonize in one piece instead of block by block.

    An object is skeletonized in one piece when its write regions span more than one block and its
    bounding box, grown by one voxel on the faces inside the volume, holds at most ``max_voxels``
    voxels. Its skeleton is then exactly that of a one-block run (see the module docstring).

    Parameters
    ----------
    statistics : LabelStatistics
        From :func:`label_statistics` over every block of ``grid``.
    grid : sequence of Block
        The grid (from :func:`skeleton_grid`).
    max_voxels : int, optional
        Largest box to hold in memory; default the largest read region of the grid, so memory stays
        bounded by the block size. 0 skeletonizes every object block by block.

    Returns
    -------
    OnePiecePlan

    Raises
    ------
    ValueError
        If ``max_voxels`` is negative or not an integer, or the grid is empty.
    """
    if not grid:
        raise ValueError("grid is empty; pass the blocks of skeleton_grid()")
    check_max_voxels(max_voxels, "max_voxels")
    if max_voxels is None:
        max_voxels = max(math.prod(b.read_shape) for b in grid)
    shape = np.max([[s.stop for s in b.write] for b in grid], axis=0)
    starts = [np.unique([b.write[a].start for b in grid]) for a in range(3)]
    by_index = {tuple(b.index): b.id for b in grid}
    chosen, lo_all, hi_all, owners = [], [], [], []
    for label, (lo, hi) in statistics.boxes.items():
        if statistics.n_blocks.get(label, 0) < 2:
            continue
        lo, hi = np.asarray(lo, dtype=np.int64), np.asarray(hi, dtype=np.int64)
        a, b = _padded_box(lo, hi, shape)
        if int(np.prod(b - a)) > max_voxels:
            continue
        index = tuple(int(np.searchsorted(starts[d], lo[d], side="right")) - 1 for d in range(3))
        if index not in by_index or np.any(hi > shape):
            raise ValueError(
                f"label {label} has the box {tuple(lo.tolist())}..{tuple(hi.tolist())}, outside the grid's volume "
                f"{tuple(shape.tolist())}; pass the statistics of this grid's blocks"
            )
        chosen.append(label)
        lo_all.append(lo)
        hi_all.append(hi)
        owners.append(by_index[index])
    return OnePiecePlan(
        labels=np.array(chosen, dtype=np.uint64),
        box_start=np.array(lo_all, dtype=np.int64).reshape(-1, 3),
        box_stop=np.array(hi_all, dtype=np.int64).reshape(-1, 3),
        owner=np.array(owners, dtype=np.int64),
        max_voxels=int(max_voxels),
    )


# --------------------------------------------------------------------------------------------------------
# skeletonizing


def _kimimaro_padded(
    arr: np.ndarray,
    start: np.ndarray,
    shape: np.ndarray,
    *,
    exclude: Mapping[int, tuple[np.ndarray, np.ndarray]] | None = None,
    keep: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``arr`` (read at global ``start``) copied into a Fortran-ordered array with a layer of
    background on its faces inside the volume. Returns the copy and the global index of its first voxel.

    ``exclude`` (label -> global bounding box): these labels are set to 0 (within their boxes);
    ``keep``: every other label is set to 0.

    kimimaro's ``fix_borders`` puts an end point (and the root) at the centre of every place where an
    object leaves the array. Inside the volume the object goes on (or its box ends a voxel beyond it):
    the background layer keeps kimimaro from putting end points there.
    """
    if arr.dtype == bool:
        arr = arr.view(np.uint8)
    stop = start + np.asarray(arr.shape)
    pad = [(int(a > 0), int(b < n)) for a, b, n in zip(start, stop, shape, strict=True)]
    padded_shape = tuple(n + a + b for n, (a, b) in zip(arr.shape, pad, strict=True))
    padded = np.zeros(padded_shape, arr.dtype, order="F")  # kimimaro's order: no second copy
    origin = start - np.array([a for a, _ in pad], dtype=np.int64)
    inner = padded[tuple(slice(a, a + n) for n, (a, _) in zip(arr.shape, pad, strict=True))]
    # a C-ordered copy first: transposing from a strided view (a slice of a larger array) is 2x slower
    inner[...] = arr if arr.flags.c_contiguous or arr.flags.f_contiguous else np.ascontiguousarray(arr)
    # multiplying by the mask is ~10x faster than boolean-index assignment
    if keep is not None:
        np.multiply(inner, inner == keep, out=inner)
    for label, (lo, hi) in (exclude or {}).items():
        a, b = np.maximum(lo, start) - start, np.minimum(hi, stop) - start
        if np.all(b > a):
            box = inner[tuple(slice(int(i), int(j)) for i, j in zip(a, b, strict=True))]
            np.multiply(box, box != label, out=box)
    return padded, origin


def _kimimaro(
    padded: np.ndarray, vs: Sequence[float], params: TeasarParams, *, on_volume_border: bool
) -> dict[int, Any]:
    """One kimimaro call; ``fix_borders`` only matters (and costs) where the array meets the volume's
    border: elsewhere its faces are the background layer of :func:`_kimimaro_padded`."""
    return kimimaro.skeletonize(
        padded,
        teasar_params=params.kimimaro(),
        anisotropy=vs,
        dust_threshold=0,
        progress=False,
        fix_branching=params.fix_branching,
        fix_borders=on_volume_border,
        fill_holes=False,
        parallel=1,
        in_place=True,  # our own copy
    )


def _collect(
    skeletons: Mapping[int, Any],
    origin: np.ndarray,
    vs: Sequence[float],
    write: tuple[np.ndarray, np.ndarray] | None,
) -> dict[str, np.ndarray]:
    """kimimaro's skeletons as global-index arrays; with ``write`` = (start, stop), only the edges whose
    midpoint lies in that region, with cut vertices marked (step 2 of the module docstring)."""
    vs_arr = np.asarray(vs, dtype=np.float64)
    parts_v, parts_l, parts_r, parts_e, parts_c = [], [], [], [], []
    n_total = 0
    for label, skel in skeletons.items():
        if skel.empty() or len(skel.edges) == 0:
            continue
        # kimimaro returns index * anisotropy (float32): round back to exact voxel indices.
        vertices = np.rint(np.asarray(skel.vertices, dtype=np.float64) / vs_arr).astype(np.int64) + origin
        edges = np.asarray(skel.edges, dtype=np.int64).reshape(-1, 2)
        cut = np.zeros(len(vertices), dtype=bool)
        if write is not None:
            w_start, w_stop = write
            twice_mid = vertices[edges[:, 0]] + vertices[edges[:, 1]]
            # midpoint in [start - 1/2, stop - 1/2)  <=>  2 * midpoint in [2 start - 1, 2 stop - 1)
            inside = np.all((twice_mid >= 2 * w_start - 1) & (twice_mid < 2 * w_stop - 1), axis=1)
            cut[edges[~inside].ravel()] = True
            cut |= np.any((vertices < w_start) | (vertices >= w_stop), axis=1)
            edges = edges[inside]
            if len(edges) == 0:
                continue
        used = np.unique(edges)
        remap = np.full(len(vertices), -1, dtype=np.int64)
        remap[used] = np.arange(len(used))
        parts_v.append(vertices[used])
        parts_l.append(np.full(len(used), label, dtype=np.uint64))
        radii = np.asarray(getattr(skel, "radius", np.zeros(len(vertices))), dtype=np.float32)
        parts_r.append(radii[used] if len(radii) == len(vertices) else np.zeros(len(used), np.float32))
        parts_e.append(remap[edges] + n_total)
        parts_c.append(cut[used])
        n_total += len(used)
    return {
        "vertices_vx": np.concatenate(parts_v) if parts_v else np.zeros((0, 3), np.int64),
        "vertex_labels": np.concatenate(parts_l) if parts_l else np.zeros(0, np.uint64),
        "radii_um": np.concatenate(parts_r) if parts_r else np.zeros(0, np.float32),
        "edges": np.concatenate(parts_e) if parts_e else np.zeros((0, 2), np.int64),
        "cut": np.concatenate(parts_c) if parts_c else np.zeros(0, bool),
    }


def skeletonize_block(
    labels: np.ndarray,
    *,
    block: Block,
    volume_shape: Sequence[int],
    voxel_size_um: Sequence[float],
    params: TeasarParams = TeasarParams(),
    exclude: Sequence[int] | Mapping[int, tuple[Sequence[int], Sequence[int]]] = (),
) -> BlockSkeletons:
    """Skeletonize one block's read region and keep the skeleton edges its write region owns.

    Parameters
    ----------
    labels : ndarray, shape ``block.read_shape``, integer or bool
        The label volume read over ``block.read`` (0 is background).
    block : Block
        The block, from :func:`skeleton_grid`.
    volume_shape : sequence of 3 int
        Shape of the whole volume.
    voxel_size_um : sequence of 3 float
        Voxel size in µm, (z, y, x).
    params : TeasarParams
        kimimaro settings.
    exclude : sequence of int, or mapping of int to (start, stop)
        Labels to leave out (treated as background): those skeletonized in one piece
        (:meth:`OnePiecePlan.in_region`), optionally with their global bounding boxes (only those are
        searched). The skeletons of the other labels do not change.

    Returns
    -------
    BlockSkeletons
        The owned edges (those whose midpoint lies in ``block.write``) and their vertices in global voxel
        indices.

    Raises
    ------
    TypeError
        If ``labels`` is not an integer or bool array.
    ValueError
        If ``labels`` does not have the shape of ``block.read``, or the block lies outside
        ``volume_shape``.
    """
    arr = check_array(labels, "labels", ndim=3, kinds="biu")
    if tuple(arr.shape) != tuple(block.read_shape):
        raise ValueError(
            f"labels has shape {arr.shape} but block {block.id} reads a region of shape {block.read_shape}; "
            "pass the labels of block.read"
        )
    vs = as_voxel_size(voxel_size_um)
    shape = _volume_of(block, volume_shape)
    read_start = np.array([s.start for s in block.read], dtype=np.int64)
    w_start = np.array([s.start for s in block.write], dtype=np.int64)
    w_stop = np.array([s.stop for s in block.write], dtype=np.int64)
    if not isinstance(exclude, Mapping):
        everywhere = (np.zeros(3, np.int64), shape)
        exclude = {int(label): everywhere for label in np.asarray(exclude).ravel().tolist()}
    padded, origin = _kimimaro_padded(
        arr, read_start, shape, exclude={int(k): (np.asarray(a), np.asarray(b)) for k, (a, b) in exclude.items()}
    )
    border = bool(np.any(origin == 0) or np.any(origin + np.asarray(padded.shape) == shape))
    arrays = _collect(_kimimaro(padded, vs, params, on_volume_border=border), origin, vs, (w_start, w_stop))
    return BlockSkeletons(
        block_id=int(block.id), write_start=w_start, write_stop=w_stop, volume_shape=shape, **arrays
    )


def _volume_of(block: Block, volume_shape: Sequence[int]) -> np.ndarray:
    shape = np.asarray(volume_shape, dtype=np.int64)
    if shape.shape != (3,) or np.any([s.stop > n for s, n in zip(block.read, shape, strict=True)]):
        raise ValueError(
            f"block {block.id} reads {block.read}, outside volume_shape {tuple(volume_shape)}; "
            "pass the shape of the volume the grid was made for"
        )
    return shape


def skeletonize_objects(
    read_labels: ReadLabels,
    objects: Mapping[int, tuple[Sequence[int], Sequence[int]]],
    *,
    block: Block,
    volume_shape: Sequence[int],
    voxel_size_um: Sequence[float],
    params: TeasarParams = TeasarParams(),
    max_voxels: int | None = None,
) -> BlockSkeletons:
    """Skeletonize whole objects, each in one piece: exactly as a one-block run skeletonizes them.

    Each object is skeletonized on its own bounding box (other labels masked out, one voxel of
    background added on its faces inside the volume). Objects whose boxes lie close together are read
    together, as long as the union of their boxes holds at most ``max_voxels`` voxels (an object on its
    own may exceed it).

    Parameters
    ----------
    read_labels : callable
        ``read_labels(region) -> ndarray``: the labels of a (z, y, x) tuple of slices.
    objects : mapping of int to (start, stop)
        Label -> its bounding box, global voxel indices (:meth:`OnePiecePlan.owned_by`).
    block : Block
        The owning block (its id and write region are recorded in the result).
    volume_shape : sequence of 3 int
        Shape of the whole volume.
    voxel_size_um : sequence of 3 float
        Voxel size in µm, (z, y, x).
    params : TeasarParams
        kimimaro settings.
    max_voxels : int, optional
        Largest union box to read at once; default the block's read region.

    Returns
    -------
    BlockSkeletons
        Every edge of the objects' skeletons; no vertex is cut.
    """
    vs = as_voxel_size(voxel_size_um)
    shape = _volume_of(block, volume_shape)
    limit = math.prod(block.read_shape) if max_voxels is None else int(max_voxels)
    parts: list[dict[str, np.ndarray]] = []
    for group, lo, hi in _group_boxes(objects, shape, limit):
        region = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
        arr = check_array(np.asarray(read_labels(region)), "labels", ndim=3, kinds="biu")
        if tuple(arr.shape) != tuple(int(b - a) for a, b in zip(lo, hi, strict=True)):
            raise ValueError(f"read_labels({region}) returned shape {arr.shape}; expected the region's shape")
        for label in group:  # one kimimaro call per object, on its own box: no distance field elsewhere
            o_lo, o_hi = (np.asarray(v, dtype=np.int64) for v in objects[label])
            box = arr[tuple(slice(int(a), int(b)) for a, b in zip(o_lo - lo, o_hi - lo, strict=True))]
            padded, origin = _kimimaro_padded(box, o_lo, shape, keep=label)
            border = bool(np.any(origin == 0) or np.any(origin + np.asarray(padded.shape) == shape))
            parts.append(_collect(_kimimaro(padded, vs, params, on_volume_border=border), origin, vs, None))
        del arr
    n = np.cumsum([0] + [len(p["vertices_vx"]) for p in parts])
    arrays = {
        key: np.concatenate([p[key] + (n[i] if key == "edges" else 0) for i, p in enumerate(parts)])
        if parts else _collect({}, np.zeros(3, np.int64), vs, None)[key]
        for key in ("vertices_vx", "vertex_labels", "radii_um", "edges", "cut")
    }
    return BlockSkeletons(
        block_id=int(block.id),
        write_start=np.array([s.start for s in block.write], dtype=np.int64),
        write_stop=np.array([s.stop for s in block.write], dtype=np.int64),
        volume_shape=shape,
        **arrays,
    )


def _group_boxes(
    objects: Mapping[int, tuple[Sequence[int], Sequence[int]]], shape: np.ndarray, limit: int
) -> list[tuple[list[int], np.ndarray, np.ndarray]]:
    """Group objects (in order of their box start) while the union box, grown by one voxel on its faces
    inside the volume, holds at most ``limit`` voxels. Returns (labels, union start, union stop)."""
    items = sorted(
        (tuple(int(v) for v in lo), tuple(int(v) for v in hi), int(label))
        for label, (lo, hi) in objects.items()
    )
    groups: list[tuple[list[int], np.ndarray, np.ndarray]] = []
    for lo_t, hi_t, label in items:
        lo, hi = np.asarray(lo_t, dtype=np.int64), np.asarray(hi_t, dtype=np.int64)
        if groups:
            members, g_lo, g_hi = groups[-1]
            u_lo, u_hi = np.minimum(g_lo, lo), np.maximum(g_hi, hi)
            a, b = _padded_box(u_lo, u_hi, shape)
            if int(np.prod(b - a)) <= limit:
                groups[-1] = (members + [label], u_lo, u_hi)
                continue
        groups.append(([label], lo, hi))
    return groups


# --------------------------------------------------------------------------------------------------------
# fusing


def fuse_block_skeletons(
    pieces: Iterable[BlockSkeletons],
    *,
    voxel_size_um: Sequence[float],
    tick_threshold_um: float = 0.0,
) -> dict[int, nx.Graph]:
    """Fuse the block pieces of every label into one skeleton graph (steps 3–6 of the module docstring).

    Parameters
    ----------
    pieces : iterable of BlockSkeletons
        The results of :func:`skeletonize_block` for every block of one grid.
    voxel_size_um : sequence of 3 float
        Voxel size in µm, (z, y, x).
    tick_threshold_um : float
        Passed to ``kimimaro.postprocess``: end branches shorter than this (µm) are removed from every
        skeleton. 0 (default) keeps them.

    Returns
    -------
    dict of int to networkx.Graph
        As :func:`~pipeline.skeleton.skeletonize`: nodes ``0..n-1`` with ``pos_um`` ((z, y, x) µm at
        voxel centres) and ``radius_um``; ``graph.graph`` holds ``label`` and ``voxel_size_um``.

    Raises
    ------
    ValueError
        If the pieces come from grids of different volume shapes, or a parameter is invalid.
    """
    vs = as_voxel_size(voxel_size_um)
    if not (math.isfinite(tick_threshold_um) and tick_threshold_um >= 0):
        raise ValueError(f"tick_threshold_um must be a finite number >= 0 (µm); got {tick_threshold_um!r}")
    pieces = [p for p in pieces]
    if not pieces:
        return {}
    shapes = {tuple(p.volume_shape.tolist()) for p in pieces}
    if len(shapes) > 1:
        raise ValueError(
            f"pieces come from volumes of different shapes {sorted(shapes)}; fuse one grid at a time"
        )
    shape = np.array(next(iter(shapes)), dtype=np.int64)
    vs32 = np.asarray(vs, dtype=np.float32)

    # group the pieces of each label: label -> list of (piece index, vertex mask)
    by_label: dict[int, list[tuple[int, np.ndarray]]] = defaultdict(list)
    for i, piece in enumerate(pieces):
        if len(piece.vertex_labels) == 0:
            continue
        order = np.argsort(piece.vertex_labels, kind="stable")
        sorted_labels = piece.vertex_labels[order]
        uniq, starts = np.unique(sorted_labels, return_index=True)
        bounds = np.append(starts, len(order))
        for label, a, b in zip(uniq.tolist(), bounds[:-1], bounds[1:], strict=True):
            by_label[int(label)].append((i, order[a:b]))

    graphs: dict[int, nx.Graph] = {}
    for label in sorted(by_label):
        parts = []
        for i, idx in by_label[label]:
            piece = pieces[i]
            remap = np.full(len(piece.vertices_vx), -1, dtype=np.int64)
            remap[idx] = np.arange(len(idx))
            sel = remap[piece.edges[:, 0]] >= 0
            edges = remap[piece.edges[sel]]
            parts.append(
                _Part(piece, piece.vertices_vx[idx].copy(), piece.radii_um[idx], edges, piece.cut[idx])
            )
        skeleton = _fuse_label(parts, shape, vs32, label)
        if tick_threshold_um > 0 or (len(parts) > 1 and _n_components(skeleton) > 1):
            skeleton = _postprocess(skeleton, tick_threshold_um, label)
        if skeleton.empty() or len(skeleton.edges) == 0:
            continue
        graphs[label] = skeleton_to_graph(skeleton, label=label, voxel_size_um=vs)
    return graphs


@dataclass(frozen=True, eq=False)
class _Part:
    piece: BlockSkeletons
    vertices_vx: np.ndarray
    radii_um: np.ndarray
    edges: np.ndarray
    cut: np.ndarray


def _fuse_label(parts: list[_Part], shape: np.ndarray, vs32: np.ndarray, label: int) -> Skeleton:
    """Snap seam stubs, merge duplicates (osteoid), bridge gaps and prune seam ticks."""
    if len(parts) > 1:
        _snap_stubs(parts, vs32)
    skeletons = [
        Skeleton(
            vertices=p.vertices_vx.astype(np.float32) * vs32,
            edges=p.edges.astype(np.uint32),
            radii=p.radii_um.astype(np.float32),
            segid=label,
            space="physical",
        )
        for p in parts
        if len(p.edges)
    ]
    merged = Skeleton.simple_merge(skeletons)
    merged.id = label
    merged = merged.consolidate()
    if len(parts) == 1 or merged.empty() or len(merged.edges) == 0:
        return merged
    strides = np.array([shape[1] * shape[2], shape[2], 1], dtype=np.int64)
    cut_linear = np.unique(np.concatenate([p.vertices_vx[p.cut] @ strides for p in parts]))
    is_cut = np.isin(np.rint(merged.vertices / vs32).astype(np.int64) @ strides, cut_linear)
    slack_um = 2.0 * float(vs32.max())
    edges = _join_cut_ends(merged, is_cut, slack_um)
    edges = _break_loops(merged, edges)
    edges = _prune_cut_ticks(merged, edges, is_cut, slack_um)
    out = Skeleton(
        vertices=merged.vertices,
        edges=edges.astype(np.uint32),
        radii=merged.radius,
        segid=label,
        space="physical",
    )
    return out.consolidate()


def _join_cut_ends(skeleton: Skeleton, is_cut: np.ndarray, slack_um: float) -> np.ndarray:
    """Bridge gaps the crop left: join loose cut ends to the nearest other component of the label.

    A cut end is a vertex where a block's skeleton was cut (``BlockSkeletons.cut``) that has at most
    one edge after merging. Candidate bridges (cut end -> nearest vertex of another connected
    component, within ``r_end + r_other + slack_um``) are added shortest first, each only if it still
    joins two different components (no loops). Returns the new edge array.
    """
    n = len(skeleton.vertices)
    edges = np.asarray(skeleton.edges, dtype=np.int64).reshape(-1, 2)
    degree = np.bincount(edges.ravel(), minlength=n)
    ends = np.flatnonzero(is_cut & (degree <= 1))
    if len(ends) == 0:
        return edges
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    n_comp, comp = connected_components(graph, directed=False)
    if n_comp == 1:
        return edges
    pos = np.asarray(skeleton.vertices, dtype=np.float64)
    radii = np.asarray(skeleton.radius, dtype=np.float64)
    tree = cKDTree(pos)
    candidates = []
    for v in ends:
        near = np.asarray(
            tree.query_ball_point(pos[v], radii[v] + float(radii.max()) + slack_um), dtype=np.int64
        )
        near = near[comp[near] != comp[v]]
        if len(near) == 0:
            continue
        dist = np.linalg.norm(pos[near] - pos[v], axis=1)
        ok = dist <= radii[v] + radii[near] + slack_um
        if ok.any():
            best = int(np.argmin(np.where(ok, dist, np.inf)))
            candidates.append((float(dist[best]), int(v), int(near[best])))
    parent = list(range(n_comp))

    def find(c: int) -> int:
        while parent[c] != c:
            parent[c] = parent[parent[c]]
            c = parent[c]
        return c

    bridges = []
    for _, a, b in sorted(candidates):
        ca, cb = find(int(comp[a])), find(int(comp[b]))
        if ca != cb:
            parent[ca] = cb
            bridges.append((a, b))
    if not bridges:
        return edges
    return np.concatenate([edges, np.array(bridges, dtype=np.int64)])


def _prune_cut_ticks(
    skeleton: Skeleton, edges: np.ndarray, is_cut: np.ndarray, slack_um: float
) -> np.ndarray:
    """Remove short end branches made at seams: they end, or branch off, at a cut vertex.

    Where two blocks' paths meet at a seam slightly apart, the path of one block continues a voxel or
    two past the junction and ends where the crop cut it; near a blunt end that a seam crosses, each
    block may end its path on another voxel of the end. Such an end branch (from a tip to the nearest
    branch point, with the tip or the branch point a cut vertex) is removed when it is at most
    ``r + slack_um`` long (r = radius at the branch point). Chains between two tips are kept.
    """
    n = len(skeleton.vertices)
    if len(edges) == 0:
        return edges
    pos = np.asarray(skeleton.vertices, dtype=np.float64)
    radii = np.asarray(skeleton.radius, dtype=np.float64)
    adjacency: list[list[int]] = [[] for _ in range(n)]
    for a, b in edges.tolist():
        adjacency[a].append(b)
        adjacency[b].append(a)
    degree = np.array([len(a) for a in adjacency])
    candidates: dict[int, list[tuple[float, list[int]]]] = defaultdict(list)
    for tip in np.flatnonzero(degree == 1).tolist():
        path = [tip, adjacency[tip][0]]
        length = float(np.linalg.norm(pos[path[1]] - pos[tip]))
        while degree[path[-1]] == 2:
            a, b = adjacency[path[-1]]
            nxt = b if a == path[-2] else a
            length += float(np.linalg.norm(pos[nxt] - pos[path[-1]]))
            path.append(nxt)
        base = path[-1]
        if degree[base] < 3:
            continue  # a chain between two tips
        short = length <= radii[base] + slack_um
        if short and (is_cut[tip] or is_cut[base]):
            candidates[base].append((length, path))
    drop: set[tuple[int, int]] = set()
    for base, branches in candidates.items():
        # shortest first, and never so many that the branch point becomes a tip
        for _, path in sorted(branches, key=lambda item: item[0])[: max(0, int(degree[base]) - 2)]:
            drop.update((min(a, b), max(a, b)) for a, b in zip(path[:-1], path[1:], strict=True))
    if not drop:
        return edges
    keep = [(min(a, b), max(a, b)) not in drop for a, b in edges.tolist()]
    return edges[np.array(keep, dtype=bool)]


def _snap_stubs(parts: list[_Part], vs32: np.ndarray) -> None:
    """Move stubs onto the nearest own vertex of the block that owns their position (in place).

    Targets are only vertices inside their own block's write region, which never move, so the result
    does not depend on the order of the parts.
    """
    vs = vs32.astype(np.float64)
    inside = [~_outside(p) for p in parts]
    trees = {j: cKDTree(p.vertices_vx[inside[j]] * vs) for j, p in enumerate(parts) if inside[j].any()}
    targets = {j: np.flatnonzero(inside[j]) for j in trees}
    moves: list[tuple[int, int, np.ndarray]] = []
    for k, p in enumerate(parts):
        for v in np.flatnonzero(~inside[k]):
            pos = p.vertices_vx[v]
            owners = [j for j in trees if j != k and _owns(parts[j].piece, pos)]
            best: tuple[float, int, int] | None = None
            for j in owners:  # one block owns a position; several parts only for a repeated block id
                dist, idx = trees[j].query(pos * vs)
                if best is None or dist < best[0]:
                    best = (float(dist), j, int(targets[j][idx]))
            if best is None:
                continue  # the owning block has no skeleton of this label here: a genuine tip
            dist, j, idx = best
            limit = max(float(p.radii_um[v]), float(parts[j].radii_um[idx])) + float(vs.max())
            if 0 < dist <= limit:
                moves.append((k, int(v), parts[j].vertices_vx[idx].copy()))
    for k, v, target in moves:
        parts[k].vertices_vx[v] = target


def _outside(part: _Part) -> np.ndarray:
    start, stop = part.piece.write_start, part.piece.write_stop
    return np.any((part.vertices_vx < start) | (part.vertices_vx >= stop), axis=1)


def _owns(piece: BlockSkeletons, pos: np.ndarray) -> bool:
    return bool(np.all(pos >= piece.write_start) and np.all(pos < piece.write_stop))


def _break_loops(skeleton: Skeleton, edges: np.ndarray) -> np.ndarray:
    """Break the loops fusion made, keeping the path nearer the centre line.

    A loop at a seam is two blocks' versions of the same stretch of the object, joined at both ends.
    Each loop is cut into chains between its branch points; the chain with the smallest mean radius
    (the one farther from the centre line) loses its edges. A loop without branch points loses its
    edge of smallest radius. Repeated until the skeleton is a forest. (kimimaro's ``remove_loops``
    deletes a loop without external branches entirely, which would delete such an object.)
    """
    if len(edges) == 0:
        return edges
    nodes_used = np.unique(edges)
    n_vertices = int(nodes_used.max()) + 1
    adjacency = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n_vertices, n_vertices))
    n_parts = connected_components(adjacency, directed=False)[0] - (n_vertices - len(nodes_used))
    unique_edges, first = np.unique(np.sort(edges, axis=1), axis=0, return_index=True)
    if len(unique_edges) == len(nodes_used) - n_parts and not np.any(unique_edges[:, 0] == unique_edges[:, 1]):
        return edges[np.sort(first)]  # already a forest (duplicates dropped): nothing to break
    radii = np.asarray(skeleton.radius, dtype=np.float64)
    graph = nx.Graph()
    graph.add_edges_from(map(tuple, edges.tolist()))
    # Loops live in the 2-core (what is left after repeatedly peeling degree-1 nodes); searching only it
    # keeps each find_cycle small. Branch points are judged by their degree in the whole skeleton.
    core = graph.subgraph(nx.k_core(graph, 2).nodes).copy()
    while True:
        try:
            cycle = nx.find_cycle(core)
        except nx.NetworkXNoCycle:
            break
        nodes = [a for a, _ in cycle]
        keys = [i for i, n in enumerate(nodes) if graph.degree[n] > 2]
        if len(keys) < 2:
            a, b = min(cycle, key=lambda e: radii[e[0]] + radii[e[1]])
            graph.remove_edge(a, b)
            core.remove_edge(a, b)
            continue
        chains = []
        for i, j in zip(keys, keys[1:] + [keys[0] + len(nodes)], strict=True):
            chain = [nodes[t % len(nodes)] for t in range(i, j + 1)]
            inner = chain[1:-1]
            score = float(np.mean(radii[inner])) if inner else float(radii[chain].mean())
            chains.append((score, chain))
        _, worst = min(chains, key=lambda c: c[0])
        graph.remove_edges_from(zip(worst[:-1], worst[1:], strict=True))
        core.remove_edges_from(zip(worst[:-1], worst[1:], strict=True))
    return np.array(list(graph.edges), dtype=np.int64).reshape(-1, 2)


def _n_components(skeleton: Skeleton) -> int:
    n = len(skeleton.vertices)
    if n == 0:
        return 0
    edges = np.asarray(skeleton.edges, dtype=np.int64).reshape(-1, 2)
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    return int(connected_components(graph, directed=False)[0])


def _postprocess(skeleton: Skeleton, tick_threshold_um: float, label: int) -> Skeleton:
    if skeleton.empty() or len(skeleton.edges) == 0:
        return skeleton
    out = kimimaro.postprocess(skeleton, dust_threshold=0, tick_threshold=float(tick_threshold_um))
    # kimimaro's helpers rebuild skeletons with the default 'voxel' space; the vertices are unchanged µm.
    return Skeleton(
        vertices=np.asarray(out.vertices, dtype=np.float32),
        edges=np.asarray(out.edges, dtype=np.uint32),
        radii=np.asarray(out.radius, dtype=np.float32),
        segid=label,
        space="physical",
    )


# --------------------------------------------------------------------------------------------------------
# tables and serial drivers


def object_rows(
    graphs: Mapping[int, nx.Graph],
    statistics: LabelStatistics,
    *,
    voxel_size_um: Sequence[float],
    smooth_sigma_um: float | None = None,
    exact_max_nodes: int = _EXACT_MAX_NODES,
) -> tuple[ObjectRow, ...]:
    """Per-object rows (as :func:`~pipeline.skeleton.object_table`) from fused skeletons and statistics.

    Parameters
    ----------
    graphs : mapping of int to networkx.Graph
        Skeletons from :func:`fuse_block_skeletons` (or :func:`~pipeline.skeleton.skeletonize`).
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


def skeletonize_block_with_plan(
    read_labels: ReadLabels,
    *,
    block: Block,
    plan: OnePiecePlan,
    volume_shape: Sequence[int],
    voxel_size_um: Sequence[float],
    params: TeasarParams = TeasarParams(),
) -> tuple[BlockSkeletons, BlockSkeletons]:
    """One block's share of the work: its pieces (:func:`skeletonize_block`, without the one-piece
    objects) and the one-piece objects it owns (:func:`skeletonize_objects`).

    Reads ``block.read`` once; object boxes inside it are cut from that array, others are read.
    """
    labels = np.asarray(read_labels(block.read))
    pieces = skeletonize_block(
        labels, block=block, volume_shape=volume_shape, voxel_size_um=voxel_size_um, params=params,
        exclude=plan.in_region(block.read),
    )
    start = np.array([s.start for s in block.read], dtype=np.int64)
    stop = np.array([s.stop for s in block.read], dtype=np.int64)

    def read(region: tuple[slice, slice, slice]) -> np.ndarray:
        lo = np.array([s.start for s in region], dtype=np.int64)
        hi = np.array([s.stop for s in region], dtype=np.int64)
        if np.all(lo >= start) and np.all(hi <= stop):
            return labels[tuple(slice(int(a), int(b)) for a, b in zip(lo - start, hi - start, strict=True))]
        return np.asarray(read_labels(region))

    objects = skeletonize_objects(
        read, plan.owned_by(block.id), block=block, volume_shape=volume_shape, voxel_size_um=voxel_size_um,
        params=params, max_voxels=plan.max_voxels,
    )
    return pieces, objects


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
    params: TeasarParams = TeasarParams(),
    tick_threshold_um: float = 0.0,
    dust_threshold_um3: float = 0.0,
    one_piece_max_voxels: int | None = None,
) -> dict[int, nx.Graph]:
    """Skeletonize a label volume block by block, in this process, and fuse the pieces.

    The serial counterpart of the Dask stage in :mod:`flows.analysis`; only one block's read region is
    in memory at a time (plus the skeletons).

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
    params : TeasarParams
        kimimaro settings (µm).
    tick_threshold_um : float
        End branches shorter than this are removed (``kimimaro.postprocess``); 0 keeps them.
    dust_threshold_um3 : float
        Labels whose *total* volume is at most this are dropped (kimimaro applies its dust threshold
        per connected component; per block that would drop pieces of large objects).
    one_piece_max_voxels : int, optional
        Objects that cross a seam and whose box (grown by one voxel) holds at most this many voxels are
        skeletonized in one piece (:func:`plan_one_piece`); default the largest read region, 0 never.

    Returns
    -------
    dict of int to networkx.Graph
        As :func:`~pipeline.skeleton.skeletonize`.

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
    >>> round(cable_length_um(graphs[7]))
    56
    """
    pieces, stats = _run_serial(
        read_labels, shape, voxel_size_um, block_shape, halo_um, params, one_piece_max_voxels
    )
    graphs = fuse_block_skeletons(pieces, voxel_size_um=voxel_size_um, tick_threshold_um=tick_threshold_um)
    if dust_threshold_um3 > 0:
        dust = dust_threshold_voxels(dust_threshold_um3, voxel_size_um)
        graphs = {k: g for k, g in graphs.items() if stats.n_voxels.get(k, 0) > dust}
    return graphs


def object_table_blocks(
    read_labels: ReadLabels,
    *,
    shape: Sequence[int],
    voxel_size_um: Sequence[float],
    block_shape: Sequence[int],
    halo_um: float | Sequence[float] = DEFAULT_HALO_UM,
    params: TeasarParams = TeasarParams(),
    tick_threshold_um: float = 0.0,
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
