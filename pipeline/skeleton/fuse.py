"""Steps 3-6 of block-wise skeletonization: fuse the pieces of every label into one skeleton.

Snap seam stubs, merge duplicate vertices (osteoid), bridge gaps the crop left, break the loops fusion
made and prune seam ticks, then kimimaro's post-processing where pieces remain. See
:mod:`pipeline.skeleton.blockwise` for the whole algorithm.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import kimimaro
import networkx as nx
import numpy as np
from osteoid import Skeleton
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from pipeline._checks import as_voxel_size
from pipeline.skeleton.block import BlockSkeletons
from pipeline.skeleton.config import DEFAULT_TICK_THRESHOLD_UM
from pipeline.skeleton.teasar import skeleton_to_graph

__all__ = ["fuse_block_skeletons", "label_shards", "split_by_shard"]


def fuse_block_skeletons(
    pieces: Iterable[BlockSkeletons],
    *,
    voxel_size_um: Sequence[float],
    tick_threshold_um: float = DEFAULT_TICK_THRESHOLD_UM,
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
        As :func:`~pipeline.skeleton.teasar`: nodes ``0..n-1`` with ``pos_um`` ((z, y, x) µm at
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


def label_shards(labels: np.ndarray, *, per_shard: int) -> np.ndarray:
    """Cut sorted ``labels`` into shards of ``per_shard`` consecutive labels: the first label of each shard
    (a label ``l`` is in shard ``searchsorted(starts, l, "right") - 1``; shards are in label order).

    >>> label_shards(np.array([3, 5, 8, 9, 12]), per_shard=2).tolist()
    [3, 8, 12]
    """
    if per_shard < 1:
        raise ValueError(f"per_shard must be at least 1; got {per_shard}")
    labels = np.asarray(labels, np.uint64)
    return labels[::per_shard].copy() if labels.size else np.zeros(1, np.uint64)


def split_by_shard(piece: BlockSkeletons, starts: np.ndarray) -> dict[int, BlockSkeletons]:
    """A block's skeleton piece cut by label shard (:func:`label_shards`): shard -> the piece's vertices
    and edges of that shard's labels. Fusing the shards' pieces one shard at a time gives
    :func:`fuse_block_skeletons`' skeletons of the whole: every label is fused from its own vertices."""
    if len(piece.vertex_labels) == 0:
        return {}
    shard = np.searchsorted(np.asarray(starts, np.uint64), piece.vertex_labels, side="right") - 1
    out = {}
    for s in np.unique(shard).tolist():
        keep = np.flatnonzero(shard == s)
        remap = np.full(len(piece.vertices_vx), -1, np.int64)
        remap[keep] = np.arange(keep.size)
        edges = remap[piece.edges] if len(piece.edges) else piece.edges.reshape(0, 2)
        edges = edges[(edges >= 0).all(axis=1)]
        out[int(s)] = BlockSkeletons(
            piece.block_id, piece.write_start, piece.write_stop, piece.volume_shape,
            piece.vertices_vx[keep], piece.vertex_labels[keep], piece.radii_um[keep], edges, piece.cut[keep],
        )
    return out


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
    if len(unique_edges) == len(nodes_used) - n_parts and not np.any(
        unique_edges[:, 0] == unique_edges[:, 1]
    ):
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
