"""TEASAR skeletons of label volumes with kimimaro, as ``networkx`` graphs in micrometres.

Axis convention (verified by ``tests/pipeline/skeleton/test_skeletonize.py``)
------------------------------------------------------------------------------
kimimaro does not reorder axes. Its documentation speaks of "(x, y, z)", but what it actually does is
pair ``anisotropy[i]`` with array axis ``i`` (it copies the volume to Fortran order, which changes the
memory layout, not the meaning of the axes) and return ``vertices[:, i] = index_i * anisotropy[i]``.
Our volumes are (z, y, x), so we pass ``anisotropy = voxel_size_um`` in (z, y, x) order unchanged and
read the vertices back as (z, y, x) positions in µm. The tests skeletonize a straight line along each
axis of a volume with voxel size (1.5, 0.5, 0.5) µm and check both the direction and the length.

Units of the TEASAR parameters
------------------------------
kimimaro compares ``const``, ``soma_detection_threshold``, ``soma_acceptance_threshold`` and
``soma_invalidation_const`` with the distance-to-boundary field, which it computes with
``edt.edt(..., anisotropy=anisotropy)``, i.e. in the physical units of ``anisotropy``. With
``anisotropy`` in µm these parameters are in µm and are passed through unchanged. ``scale``,
``soma_invalidation_scale``, ``pdrf_scale`` and ``pdrf_exponent`` are unit-free. kimimaro's
``dust_threshold`` is a voxel count; :func:`skeletonize` takes ``dust_threshold_um3`` and converts it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import kimimaro
import networkx as nx
import numpy as np
from osteoid import Skeleton

from pipeline._checks import as_voxel_size, check_array
from pipeline.skeleton.params import TeasarParams

__all__ = ["dust_threshold_voxels", "graph_to_skeleton", "skeleton_to_graph", "skeletonize"]

def dust_threshold_voxels(dust_threshold_um3: float, voxel_size_um: Sequence[float]) -> int:
    """Convert a dust threshold in µm³ to kimimaro's voxel count.

    kimimaro skips connected components with ``n_voxels <= dust_threshold``. A component's volume is
    ``n_voxels * prod(voxel_size_um)``, so ``volume_um3 <= dust_threshold_um3`` is equivalent to
    ``n_voxels <= floor(dust_threshold_um3 / voxel_volume_um3)``.

    Parameters
    ----------
    dust_threshold_um3 : float
        Largest volume (µm³) of a connected component that is *not* skeletonized; ``>= 0``.
    voxel_size_um : sequence of 3 float
        Voxel size in µm, (z, y, x).

    Returns
    -------
    int
        The equivalent voxel count.

    Examples
    --------
    >>> dust_threshold_voxels(1.5, (1.5, 0.5, 0.5))  # voxel volume 0.375 µm³
    4
    """
    vs = as_voxel_size(voxel_size_um)
    if not (math.isfinite(dust_threshold_um3) and dust_threshold_um3 >= 0):
        raise ValueError(f"dust_threshold_um3 must be a finite number >= 0 (µm³); got {dust_threshold_um3!r}")
    voxel_volume = vs[0] * vs[1] * vs[2]
    # The small relative tolerance makes exact multiples of the voxel volume land on the right integer.
    return int(math.floor(dust_threshold_um3 / voxel_volume * (1 + 1e-9)))


def skeletonize(
    labels: np.ndarray,
    *,
    voxel_size_um: Sequence[float],
    params: TeasarParams | None = None,
    dust_threshold_um3: float | None = None,
    fix_borders: bool = True,
    fill_holes: bool = False,
    parallel: int = 1,
) -> dict[int, nx.Graph]:
    """Skeletonize every non-zero label of a (z, y, x) volume with kimimaro's TEASAR.

    Parameters
    ----------
    labels : ndarray, shape (Z, Y, X), integer or bool
        Label volume; 0 is background. Each label may consist of several connected components
        (26-connectivity, as kimimaro uses); their skeletons are returned as one graph with several
        connected components.
    voxel_size_um : sequence of 3 float
        Voxel size in µm, (z, y, x). Passed to kimimaro as ``anisotropy`` unchanged (see the module
        docstring for why no reordering is needed).
    params : TeasarParams, optional
        TEASAR settings in µm (invalidation radius, centreline penalty, soma handling); default
        ``TeasarParams()``.
    dust_threshold_um3 : float, optional
        Connected components with a volume of at most this many µm³ are not skeletonized
        (converted with :func:`dust_threshold_voxels`); None (or 0) keeps every component. Per connected
        component, as kimimaro counts: ``skeletonize.dust_threshold_um3`` of the stage is per object
        (:func:`~pipeline.skeleton.blockwise.without_dust`).
    fix_borders, fill_holes : bool
        Passed to kimimaro. ``fix_borders`` places an endpoint at the centre of each place where an
        object is cut by the volume border.
    parallel : int
        Number of processes kimimaro uses (1: in this process).

    Returns
    -------
    dict of int to networkx.Graph
        One graph per skeletonized label. Nodes are ``0..n-1`` with attributes ``pos_um`` (tuple of 3
        float, (z, y, x) in µm, at voxel centres ``index * voxel_size_um``) and ``radius_um`` (float,
        kimimaro's distance to the boundary in µm). ``graph.graph`` holds ``label`` and
        ``voxel_size_um``. Labels kimimaro does not skeletonize are absent: components that are a
        single voxel, and components not larger than the dust threshold.

    Raises
    ------
    TypeError
        If ``labels`` is not an integer or bool array, or ``params`` is not a :class:`TeasarParams`.
    ValueError
        If ``labels`` is not 3-D, or ``voxel_size_um`` or ``dust_threshold_um3`` is invalid.

    Examples
    --------
    >>> labels = np.zeros((3, 3, 12), np.uint32)
    >>> labels[1, 1, 1:11] = 5
    >>> graph = skeletonize(labels, voxel_size_um=(1.0, 1.0, 0.5))[5]
    >>> graph.number_of_nodes(), graph.nodes[0]["pos_um"][0]
    (10, 1.0)
    """
    arr = check_array(labels, "labels", ndim=3, kinds="biu")
    vs = as_voxel_size(voxel_size_um)
    params = TeasarParams() if params is None else params
    if not isinstance(params, TeasarParams):
        raise TypeError(f"params must be a TeasarParams; got {type(params).__name__}")
    if not isinstance(parallel, int | np.integer):
        raise TypeError(f"parallel must be an int; got {type(parallel).__name__}")
    dust_voxels = dust_threshold_voxels(dust_threshold_um3 or 0.0, vs)
    if arr.dtype == bool:
        arr = arr.view(np.uint8)
    skeletons = kimimaro.skeletonize(
        arr,
        teasar_params=params.kimimaro(),
        anisotropy=vs,
        dust_threshold=dust_voxels,
        progress=False,
        fix_branching=params.fix_branching,
        fix_borders=fix_borders,
        fill_holes=fill_holes,
        parallel=int(parallel),
        in_place=False,
    )
    return {
        int(label): skeleton_to_graph(skel, label=int(label), voxel_size_um=vs)
        for label, skel in skeletons.items()
    }


def skeleton_to_graph(
    skeleton: Skeleton,
    *,
    label: int | None = None,
    voxel_size_um: Sequence[float] | None = None,
) -> nx.Graph:
    """Convert an osteoid/kimimaro skeleton in physical µm (z, y, x) to a ``networkx.Graph``.

    Parameters
    ----------
    skeleton : osteoid.Skeleton
        A skeleton whose ``vertices`` (N, 3) are (z, y, x) in µm, as returned by :func:`skeletonize`'s
        call to kimimaro with ``anisotropy=voxel_size_um``; ``space`` must be ``"physical"``.
    label : int, optional
        Stored as ``graph.graph["label"]`` (default: ``skeleton.id``).
    voxel_size_um : sequence of 3 float, optional
        Stored as ``graph.graph["voxel_size_um"]``.

    Returns
    -------
    networkx.Graph
        Nodes ``0..N-1`` with ``pos_um`` (tuple of 3 float) and ``radius_um`` (float); one edge per
        skeleton edge (self-loops dropped).

    Raises
    ------
    ValueError
        If the skeleton is in voxel space.
    """
    if getattr(skeleton, "space", "physical") != "physical":
        raise ValueError(
            f"skeleton is in {skeleton.space!r} space; expected 'physical' (vertices in µm). "
            "Multiply the vertices by the voxel size (z, y, x) first."
        )
    vertices = np.asarray(skeleton.vertices, dtype=np.float64).reshape(-1, 3)
    edges = np.asarray(skeleton.edges, dtype=np.int64).reshape(-1, 2)
    radii = getattr(skeleton, "radii", None)
    if radii is None or len(radii) != len(vertices):
        radii = np.zeros(len(vertices))
    radii = np.asarray(radii, dtype=np.float64)
    graph = nx.Graph()
    graph.graph["label"] = int(skeleton.id) if label is None and skeleton.id is not None else label
    if voxel_size_um is not None:
        graph.graph["voxel_size_um"] = tuple(float(v) for v in voxel_size_um)
    graph.add_nodes_from(  # plain Python floats via tolist(): per-element numpy scalars are slow
        (i, {"pos_um": tuple(p), "radius_um": r})
        for i, (p, r) in enumerate(zip(vertices.tolist(), radii.tolist(), strict=True))
    )
    graph.add_edges_from(edges[edges[:, 0] != edges[:, 1]].tolist())
    return graph


def graph_to_skeleton(graph: nx.Graph, *, label: int | None = None) -> Skeleton:
    """Convert a skeleton graph (nodes with ``pos_um``, optional ``radius_um``) to an osteoid skeleton.

    Parameters
    ----------
    graph : networkx.Graph
        Nodes carry ``pos_um`` = (z, y, x) in µm and optionally ``radius_um``.
    label : int, optional
        The skeleton id (default: ``graph.graph.get("label")``).

    Returns
    -------
    osteoid.Skeleton
        ``vertices`` float32 (N, 3) in µm (z, y, x), ``edges`` uint32 (M, 2), ``radii`` float32 (N,),
        ``space="physical"``. Vertices are in the order of ``graph.nodes``.

    Raises
    ------
    ValueError
        If a node has no ``pos_um``.
    """
    nodes = list(graph.nodes)
    index = {n: i for i, n in enumerate(nodes)}
    vertices = np.zeros((len(nodes), 3), dtype=np.float32)
    radii = np.zeros(len(nodes), dtype=np.float32)
    for i, n in enumerate(nodes):
        data = graph.nodes[n]
        if "pos_um" not in data:
            raise ValueError(f"graph node {n!r} has no 'pos_um' attribute; expected (z, y, x) in µm")
        vertices[i] = data["pos_um"]
        radii[i] = data.get("radius_um", 0.0)
    edges = np.array([(index[a], index[b]) for a, b in graph.edges if a != b], dtype=np.uint32).reshape(-1, 2)
    segid = label if label is not None else graph.graph.get("label")
    return Skeleton(vertices, edges, radii=radii, segid=segid, space="physical")
