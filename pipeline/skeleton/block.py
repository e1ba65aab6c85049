"""Steps 1-2 of block-wise skeletonization: kimimaro on a block's read region, cut by edge ownership.

:func:`skeletonize_block` skeletonizes a block's read region (with the one-piece objects masked out)
and keeps the skeleton edges its write region owns; :func:`skeletonize_objects` skeletonizes whole
objects each on its own box; :func:`skeletonize_block_with_plan` does both for one block. Results are
:class:`BlockSkeletons` in global voxel indices. See :mod:`pipeline.skeleton.blockwise` for the whole
algorithm.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import kimimaro
import numpy as np

from pipeline._checks import as_voxel_size, check_array
from pipeline.blocks import Block
from pipeline.skeleton.plan import OnePiecePlan, padded_box
from pipeline.skeleton.teasar import TeasarParams

__all__ = [
    "BlockSkeletons",
    "ReadLabels",
    "skeletonize_block",
    "skeletonize_block_with_plan",
    "skeletonize_objects",
]

#: ``read_labels(region) -> ndarray``: the labels of a (z, y, x) tuple of slices.
ReadLabels = Callable[[tuple[slice, slice, slice]], np.ndarray]


@dataclass(frozen=True, eq=False)
class BlockSkeletons:
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
    padded: np.ndarray, vs: Sequence[float], params: TeasarParams | None, *, on_volume_border: bool
) -> dict[int, Any]:
    """One kimimaro call; ``fix_borders`` only matters (and costs) where the array meets the volume's
    border: elsewhere its faces are the background layer of :func:`_kimimaro_padded`."""
    params = TeasarParams() if params is None else params
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
    params: TeasarParams | None = None,
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
    params : TeasarParams, optional
        kimimaro settings; default ``TeasarParams()``.
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
    boxes = {int(k): (np.asarray(a), np.asarray(b)) for k, (a, b) in exclude.items()}
    padded, origin = _kimimaro_padded(arr, read_start, shape, exclude=boxes)
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
    params: TeasarParams | None = None,
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
    params : TeasarParams, optional
        kimimaro settings; default ``TeasarParams()``.
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
            a, b = padded_box(u_lo, u_hi, shape)
            if int(np.prod(b - a)) <= limit:
                groups[-1] = (members + [label], u_lo, u_hi)
                continue
        groups.append(([label], lo, hi))
    return groups


def skeletonize_block_with_plan(
    read_labels: ReadLabels,
    *,
    block: Block,
    plan: OnePiecePlan,
    volume_shape: Sequence[int],
    voxel_size_um: Sequence[float],
    params: TeasarParams | None = None,
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
