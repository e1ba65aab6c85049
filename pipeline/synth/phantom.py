"""A phantom: the whole geometry (skeletons, dropout gaps) generated up front, rendered region by region.

The geometry is small (polylines), so it is generated once from the seed; any (z, y, x) region of the
image is then rendered independently by :func:`pipeline.synth.render.render_region`.

Volume kinds and instances
--------------------------
Every object has its own uint32 label (0 = background) and its own skeleton (SWC types 1 soma,
2 axon, 3 dendrite):

* ``neurons`` kind (a sparse cytosolic fill) -- one object of kind ``"neuron"`` per neuron: its soma
  (a capsule with a 5-8 µm radius), its dendrites and its whole axon (proximal axon, AIS, distal axon)
  form one tree and one label. Labels 1..N go to the ``n_neurons`` neurons inside the volume, then to
  the axons entering from somata just outside (``n_ais - n_neurons``; their skeleton is the part
  inside), then to the passing axons. Neurites of different neurons meet, run together and cross
  (see :mod:`pipeline.synth.neurons`); their tubes may touch and, at voxel scale, overlap.
* ``ais`` kind (an AIS immunostain) -- one object of kind ``"ais"`` per AIS reaching into the volume,
  nothing else labelled: somata and axons are unstained, and unlabelled fluorescent puncta make a
  punctate background.
* SWC input (``swc_files``, neurons kind) -- one object of kind ``"swc"`` per file (its part inside
  the volume, possibly several pieces), label = position of the file in ``swc_files`` + 1 (files
  that miss the crop are left out).

Overlap rule: every voxel has exactly one label
-----------------------------------------------
A voxel covered by the tubes of several objects gets the label of the object whose **centreline
is nearest** to the voxel centre (Euclidean distance to the nearest skeleton edge, µm); on an exact
tie the **lower label** wins. Tubes of one object never compete (it is one label). Labels ignore
dropout (only the raw image goes dark in a gap).

Each object's voxels are one 26-connected component (its skeleton is a tree and its tube covers
every voxel its centreline passes through), with two exceptions: (a) an object the volume border
cuts more than once (an entering or passing axon, an AIS leaving and re-entering) has a forest for a
skeleton and one component per piece; (b) a thin neurite (radius under half a voxel diagonal, kept
connected by the voxels its centreline passes through) loses such a voxel to another object whose
centreline passes nearer to that voxel's centre, which can cut it in two, each piece touching the
other object. (b) needs the tubes to overlap by about half a voxel; generated neurons stay at least
``clearance_um`` minus about 0.5 µm apart and none of the tested seeds shows it (the hand-built case is
in ``tests/pipeline/synth/test_contacts.py``).

AIS of the neurons kind are not objects: :attr:`PhantomObject.ais` says where along its neuron's
axon the AIS lies (path distance from the soma surface, and its end points, which are skeleton
nodes), which ``ais.csv`` records.

Coordinates: the voxel with index (i, j, k) has its centre at (i vz, j vy, k vx) µm, so the volume
box is ``[-v/2, (n - 1/2) v]`` per axis.
"""

from __future__ import annotations

import warnings
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import networkx as nx
import numpy as np

from pipeline._checks import as_voxel_size
from pipeline.errors import InputDataError
from pipeline.synth.dropout import DropoutGap, place_gaps, split_at_gaps
from pipeline.synth.geometry import check_skeleton, crop_graph, skeleton_lengths
from pipeline.synth.neurons import SWC_SOMA, AISSpan, Soma, grow_ais_stain, grow_neurons
from pipeline.synth.optics import psf_halo_voxels, psf_sigma_voxels
from pipeline.synth.params import ImagingParams, PhantomParams
from pipeline.synth.segments import SegmentTable, segment_table

__all__ = [
    "AIS_COLUMNS",
    "LENGTHS_COLUMNS",
    "OBJECT_KINDS",
    "AISRow",
    "AISSpan",
    "ObjectLengths",
    "Phantom",
    "PhantomObject",
    "Soma",
    "ais_table",
    "build_phantom",
    "densest_centre_um",
    "generate_phantom",
    "lengths_table",
    "make_puncta",
    "swc_objects",
]

_GEOMETRY_STREAM = 0x47656F  # "Geo"
_GAP_STREAM = 0x476170  # "Gap"
_PUNCTA_STREAM = 0x50756E  # "Pun"

#: Object kinds: a whole procedural neuron, a stained AIS (ais kind), an SWC file's skeleton.
OBJECT_KINDS = ("neuron", "ais", "swc")

#: Columns of the lengths table (``lengths.csv``).
LENGTHS_COLUMNS = ("label", "kind", "cable_length_um", "path_length_um", "n_nodes", "touches_border")

#: Columns of the AIS table (``ais.csv``): one row per object with an AIS in the volume.
AIS_COLUMNS = (
    "label", "start_path_um", "end_path_um", "length_um",
    "start_z_um", "start_y_um", "start_x_um", "end_z_um", "end_y_um", "end_x_um",
    "clipped", "soma_in_volume",
)


@dataclass(frozen=True, eq=False)
class PhantomObject:
    """One instance of a phantom.

    Attributes
    ----------
    label : int
        Instance label (> 0).
    kind : str
        ``"neuron"``, ``"ais"`` or ``"swc"`` (see :data:`OBJECT_KINDS`).
    skeleton : networkx.Graph
        The exact centreline rendered: a tree (a forest for objects the volume border cuts more than
        once) with node attributes ``pos_um`` ((z, y, x) µm, volume frame), ``radius_um``,
        ``swc_type`` (1 soma, 2 axon, 3 dendrite) and optionally ``brightness`` (relative stain).
    neuron : int
        Index of the procedural neuron it is (or whose AIS it is); -1 for SWC objects.
    name : str
        ``"neuron"``, ``"entering_axon"``, ``"passing_axon"``, ``"ais"`` or the SWC file stem.
    clipped : bool
        Whether the skeleton was cut at the volume border.
    soma : Soma or None
        The neuron's soma: part of the skeleton (neurons kind), unstained (ais kind), or outside
        the volume (entering axons); None for passing axons and SWC objects.
    ais : AISSpan or None
        Where the object's AIS lies along its axon (neurons kind: inside the neuron; ais kind: the
        whole object), if it reaches into the volume.
    """

    label: int
    kind: str
    skeleton: nx.Graph
    neuron: int = -1
    name: str = ""
    clipped: bool = False
    soma: Soma | None = None
    ais: AISSpan | None = None


@dataclass(frozen=True)
class ObjectLengths:
    """One row of the lengths table; see :data:`LENGTHS_COLUMNS`."""

    label: int
    kind: str
    cable_length_um: float
    path_length_um: float
    n_nodes: int
    touches_border: bool


@dataclass(frozen=True)
class AISRow:
    """One row of the AIS table; see :data:`AIS_COLUMNS` (path distances and positions in µm)."""

    label: int
    start_path_um: float
    end_path_um: float
    length_um: float
    start_z_um: float
    start_y_um: float
    start_x_um: float
    end_z_um: float
    end_y_um: float
    end_x_um: float
    clipped: bool
    soma_in_volume: bool


@dataclass(frozen=True, eq=False)
class Phantom:
    """Geometry plus imaging settings: everything :func:`render_region` needs.

    Attributes
    ----------
    shape : (3,) int
        (z, y, x) volume shape, voxels.
    voxel_size_um : (3,) float
        (z, y, x) voxel size, µm.
    objects : tuple of PhantomObject
        In label order.
    gaps : tuple of DropoutGap
        Dropout gaps, in label order.
    imaging : ImagingParams
        PSF, photons, camera.
    seed : int
        Seed of the camera noise.
    origin_um : (3,) float
        Position of voxel (0, 0, 0) in the source frame (the SWC files' frame; zeros for procedural).
    segments : SegmentTable
        The tubes to render (derived).
    kind : str
        ``"neurons"`` or ``"ais"`` (the volume kind).
    puncta : (m, 5) float64
        Unlabelled fluorescent puncta: (z, y, x) centre µm, radius µm, relative brightness.
    """

    shape: tuple[int, int, int]
    voxel_size_um: tuple[float, float, float]
    objects: tuple[PhantomObject, ...]
    gaps: tuple[DropoutGap, ...]
    imaging: ImagingParams
    seed: int
    origin_um: tuple[float, float, float]
    segments: SegmentTable = field(repr=False)
    kind: str = "neurons"
    puncta: np.ndarray = field(default_factory=lambda: np.zeros((0, 5)), repr=False)

    @property
    def n_objects(self) -> int:
        return len(self.objects)

    @property
    def labels(self) -> tuple[int, ...]:
        return tuple(o.label for o in self.objects)

    def object(self, label: int) -> PhantomObject:
        """The object with this label (KeyError if none)."""
        for o in self.objects:
            if o.label == label:
                return o
        raise KeyError(f"no object with label {label}; labels are {self.labels}")

    @property
    def psf_sigma_voxels(self) -> tuple[float, float, float]:
        return psf_sigma_voxels(self.imaging.psf_sigma_um, self.voxel_size_um)

    @property
    def halo_voxels(self) -> tuple[int, int, int]:
        """PSF kernel radius per axis, voxels: the context a region needs around it."""
        im = self.imaging
        return psf_halo_voxels(im.psf_sigma_um, self.voxel_size_um, truncate=im.psf_truncate)


def build_phantom(
    objects: Sequence[PhantomObject],
    *,
    shape: Sequence[int],
    voxel_size_um: Sequence[float],
    imaging: ImagingParams | None = None,
    seed: int = 0,
    gaps: Sequence[DropoutGap] = (),
    origin_um: Sequence[float] = (0.0, 0.0, 0.0),
    puncta: np.ndarray | None = None,
    kind: str = "neurons",
) -> Phantom:
    """Assemble a phantom from explicit objects (e.g. a hand-built segment for a test).

    Parameters
    ----------
    objects : sequence of PhantomObject
        The labelled objects.
    shape, voxel_size_um : (3,)
        (z, y, x) volume shape (voxels) and voxel size (µm).
    imaging : ImagingParams, optional
        PSF, photons, camera, brightness per part (default ``ImagingParams()``).
    seed : int
        Seed of the camera noise.
    gaps : sequence of DropoutGap
        Dropout gaps on the objects' edges.
    origin_um : (3,) float
        Source-frame position of voxel (0, 0, 0), µm.
    puncta : (m, 5) float array, optional
        Unlabelled fluorescent balls: (z, y, x) centre µm, radius µm, relative brightness.
    kind : str
        ``"neurons"`` or ``"ais"``, recorded on the phantom.

    Raises
    ------
    TypeError
        If an object is not a :class:`PhantomObject` or its skeleton not a graph.
    ValueError
        If shape or voxel size are invalid, labels repeat or are < 1, a kind is unknown, a skeleton
        lacks ``pos_um``/``radius_um``, a gap refers to a missing object or edge, or ``puncta`` is
        not (m, 5) with positive radii.

    Examples
    --------
    >>> g = nx.Graph()
    >>> g.add_node(0, pos_um=(10.0, 20.0, 5.0), radius_um=2.0)
    >>> g.add_node(1, pos_um=(10.0, 20.0, 25.0), radius_um=2.0)
    >>> g.add_edge(0, 1)
    >>> objects = [PhantomObject(1, "neuron", g)]
    >>> ph = build_phantom(objects, shape=(16, 64, 64), voxel_size_um=(1.5, 0.5, 0.5))
    >>> ph.n_objects
    1
    """
    shape_t = _check_shape(shape)
    vs = as_voxel_size(voxel_size_um)
    imaging = ImagingParams() if imaging is None else imaging
    if not isinstance(imaging, ImagingParams):
        raise TypeError(f"imaging must be an ImagingParams; got {type(imaging).__name__}")
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    seen: set[int] = set()
    for i, obj in enumerate(objects):
        if not isinstance(obj, PhantomObject):
            raise TypeError(f"objects[{i}] must be a PhantomObject; got {type(obj).__name__}")
        if int(obj.label) < 1 or int(obj.label) in seen:
            raise ValueError(f"objects[{i}] has label {obj.label}; labels must be unique integers >= 1")
        if obj.kind not in OBJECT_KINDS:
            raise ValueError(f"objects[{i}] has kind {obj.kind!r}; expected one of {OBJECT_KINDS}")
        check_skeleton(obj.skeleton, f"objects[{i}].skeleton (label {obj.label})")
        seen.add(int(obj.label))
    for gap in gaps:
        if gap.label not in seen:
            raise ValueError(f"a dropout gap refers to label {gap.label}, which is not among the objects")
    if kind not in ("neurons", "ais"):
        raise ValueError(f"kind must be 'neurons' or 'ais'; got {kind!r}")
    puncta_arr = np.zeros((0, 5)) if puncta is None else np.asarray(puncta, dtype=float)
    if puncta_arr.ndim != 2 or puncta_arr.shape[1] != 5 or not np.all(np.isfinite(puncta_arr)):
        raise ValueError(
            f"puncta must be a finite (m, 5) array of (z, y, x) µm, radius µm, brightness; got shape "
            f"{puncta_arr.shape}"
        )
    if len(puncta_arr) and (puncta_arr[:, 3].min() <= 0 or puncta_arr[:, 4].min() < 0):
        raise ValueError("puncta radii (column 3) must be positive and brightness (column 4) non-negative")
    brightness = {
        "ais": imaging.ais_brightness,
        "soma": imaging.soma_brightness,
        "neurite": imaging.neurite_brightness,
    }
    segments = segment_table(
        ((o.label, o.kind, o.skeleton) for o in objects),
        voxel_size_um=vs,
        brightness=brightness,
        gaps=((g.label, u, v, t0, t1) for g in gaps for u, v, t0, t1 in g.edges),
        puncta=puncta_arr,
    )
    origin = tuple(float(x) for x in origin_um)
    if len(origin) != 3:
        raise ValueError(f"origin_um must be (z, y, x) µm; got {origin_um!r}")
    return Phantom(
        shape=shape_t,
        voxel_size_um=vs,  # type: ignore[arg-type]
        objects=tuple(objects),
        gaps=tuple(gaps),
        imaging=imaging,
        seed=int(seed),
        origin_um=origin,  # type: ignore[arg-type]
        segments=segments,
        kind=kind,
        puncta=puncta_arr,
    )


def generate_phantom(params: PhantomParams, *, swc_graphs: Sequence[nx.Graph] | None = None) -> Phantom:
    """Generate the geometry of a phantom from its parameters.

    Parameters
    ----------
    params : PhantomParams
        All settings; ``params.seed`` determines everything.
    swc_graphs : sequence of networkx.Graph, optional
        Skeletons read from ``params.swc_files`` (by :func:`pipeline.io.swc.read_swc`, in the same
        order). When given, they are rendered instead of procedural neurons.

    Returns
    -------
    Phantom

    Raises
    ------
    TypeError
        If ``params`` is not a PhantomParams.
    ValueError
        If ``params.swc_files`` is set but ``swc_graphs`` is not given (or their counts differ).
    ConfigError
        (a ValueError) If the somata do not fit in the volume.
    InputDataError
        If an SWC skeleton is malformed (no positions, non-positive radii without ``swc_radius_um``).
    """
    if not isinstance(params, PhantomParams):
        raise TypeError(f"params must be a PhantomParams; got {type(params).__name__}")
    if params.swc_files and swc_graphs is None:
        raise ValueError(
            f"params.swc_files lists {len(params.swc_files)} files but swc_graphs was not given; "
            "read them with pipeline.io.swc.read_swc (pipeline.io.phantom.write_phantom does this) "
            "and pass swc_graphs"
        )
    puncta = None
    if swc_graphs is not None:
        if params.swc_files and len(swc_graphs) != len(params.swc_files):
            raise ValueError(
                f"swc_graphs has {len(swc_graphs)} graphs but params.swc_files lists "
                f"{len(params.swc_files)} files"
            )
        names = [Path(p).stem for p in params.swc_files] or None
        objects, origin = swc_objects(
            swc_graphs, shape=params.shape, voxel_size_um=params.voxel_size_um,
            centre_um=params.swc_centre_um, radius_um=params.swc_radius_um, names=names,
        )
    else:
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([params.seed, _GEOMETRY_STREAM])))
        if params.kind == "neurons":
            grown = grow_neurons(
                shape=params.shape, voxel_size_um=params.voxel_size_um, n_neurons=params.n_neurons,
                n_ais=params.n_ais, n_passing_axons=params.n_passing_axons, neuron=params.neuron,
                ais=params.ais, rng=rng,
            )
        else:
            grown = grow_ais_stain(
                shape=params.shape, voxel_size_um=params.voxel_size_um, neuron=params.neuron, ais=params.ais,
                rng=rng,
            )
            seq = np.random.SeedSequence([params.seed, _PUNCTA_STREAM])
            puncta = make_puncta(
                shape=params.shape, voxel_size_um=params.voxel_size_um,
                per_1000um3=params.ais.puncta_per_1000um3, radius_um=params.ais.puncta_radius_um,
                brightness=params.ais.puncta_brightness, rng=np.random.Generator(np.random.PCG64(seq)),
            )
        objects = [
            PhantomObject(i + 1, g.kind, g.skeleton, i, g.name, g.clipped, g.soma, g.ais)
            for i, g in enumerate(grown)
        ]
        origin = (0.0, 0.0, 0.0)
    gaps: list[DropoutGap] = []
    drop = params.dropout
    for k, obj in enumerate(objects):
        if obj.kind not in drop.kinds:
            continue
        seq = np.random.SeedSequence([params.seed, _GAP_STREAM, obj.label])
        rng = np.random.Generator(np.random.PCG64(seq))
        skeleton = obj.skeleton
        cable = skeleton.subgraph(n for n, d in skeleton.nodes(data=True) if d.get("swc_type") != SWC_SOMA)
        placed = place_gaps(
            cable, label=obj.label, kind=obj.kind, rate_per_100um=drop.rate_per_100um,
            length_um=drop.length_um, end_margin_um=drop.end_margin_um, rng=rng,
        )
        if placed:
            skeleton, placed = split_at_gaps(obj.skeleton, placed)
            objects[k] = replace(obj, skeleton=skeleton)
            gaps += placed
    return build_phantom(
        objects, shape=params.shape, voxel_size_um=params.voxel_size_um, imaging=params.imaging,
        seed=params.seed, gaps=gaps, origin_um=origin, puncta=puncta, kind=params.kind,
    )


def make_puncta(
    *,
    shape: Sequence[int],
    voxel_size_um: Sequence[float],
    per_1000um3: float,
    radius_um: Sequence[float],
    brightness: Sequence[float],
    rng: np.random.Generator,
) -> np.ndarray:
    """Unlabelled fluorescent puncta scattered uniformly over the volume box.

    Parameters
    ----------
    shape, voxel_size_um : (3,)
        (z, y, x) volume shape (voxels) and voxel size (µm).
    per_1000um3 : float
        Puncta per 1000 µm³; their number is ``round(per_1000um3 * volume / 1000)``.
    radius_um, brightness : (min, max)
        Ranges each punctum's radius (µm) and relative brightness are drawn from.
    rng : numpy.random.Generator

    Returns
    -------
    (m, 5) float64
        (z, y, x) centre µm, radius µm, brightness.
    """
    vs = np.asarray(voxel_size_um, float)
    lo = -vs / 2
    extent = np.asarray(shape, float) * vs
    n = int(round(per_1000um3 * float(np.prod(extent)) / 1000.0))
    centres = lo + rng.random((n, 3)) * extent
    radii = rng.uniform(radius_um[0], radius_um[1], size=n)
    bright = rng.uniform(brightness[0], brightness[1], size=n)
    return np.column_stack([centres, radii, bright]) if n else np.zeros((0, 5))


def swc_objects(
    graphs: Sequence[nx.Graph],
    *,
    shape: Sequence[int],
    voxel_size_um: Sequence[float],
    centre_um: Sequence[float] | None = None,
    radius_um: float | None = None,
    names: Sequence[str] | None = None,
) -> tuple[list[PhantomObject], tuple[float, float, float]]:
    """Crop SWC skeletons to the volume: one object (kind ``swc``) per graph, label = index + 1.

    Parameters
    ----------
    graphs : sequence of networkx.Graph
        Skeletons in a common source frame, nodes with ``pos_um`` (z, y, x) µm and ``radius_um``.
    shape, voxel_size_um : (3,)
        The volume.
    centre_um : (3,) float, optional
        Source-frame point placed at the volume centre; default :func:`densest_centre_um`.
    radius_um : float, optional
        Radius given to every node (e.g. for files whose radii are placeholders or zero).
    names : sequence of str, optional
        Object names (default: the graphs' ``source`` file stems).

    Returns
    -------
    objects : list of PhantomObject
        Skeletons in the volume frame, cut at the volume box; graphs missing the crop are left out
        (with a warning).
    origin_um : (3,) float
        Source-frame position of voxel (0, 0, 0).

    Raises
    ------
    InputDataError
        If a graph is not a forest, or has nodes without a finite ``pos_um`` or with a non-positive
        ``radius_um`` (and ``radius_um`` is not given).
    """
    shape_t = _check_shape(shape)
    vs = np.asarray(as_voxel_size(voxel_size_um))
    if radius_um is not None and not (np.isfinite(radius_um) and radius_um > 0):
        raise ValueError(f"radius_um must be positive (µm); got {radius_um!r}")
    checked = []
    for i, g in enumerate(graphs):
        if not isinstance(g, nx.Graph):
            raise TypeError(f"swc_graphs[{i}] must be a networkx.Graph; got {type(g).__name__}")
        src = g.graph.get("source", f"swc_graphs[{i}]")
        if radius_um is not None:
            g = g.copy()
            nx.set_node_attributes(g, float(radius_um), "radius_um")
        try:
            check_skeleton(g, f"SWC skeleton {src}")
        except ValueError as exc:
            hint = "; set synth.swc_radius_um to give every node a radius" if "radius_um" in str(exc) else ""
            raise InputDataError(f"{exc}{hint}") from None
        checked.append(g)
    extent = np.asarray(shape_t) * vs
    if centre_um is None:
        centre = np.asarray(densest_centre_um(checked, extent_um=extent))
    else:
        centre = np.asarray(centre_um, dtype=float)
        if centre.shape != (3,) or not np.all(np.isfinite(centre)):
            raise ValueError(f"centre_um must be a finite (z, y, x) point in µm; got {centre_um!r}")
    origin = centre - (np.asarray(shape_t) - 1) / 2 * vs
    box_lo, box_hi = -vs / 2, (np.asarray(shape_t) - 0.5) * vs
    objects = []
    for i, g in enumerate(checked):
        moved = nx.Graph(**g.graph)
        for n, d in g.nodes(data=True):
            shifted = np.asarray(d["pos_um"], float) - origin
            moved.add_node(n, **{**d, "pos_um": tuple(float(x) for x in shifted)})
        moved.add_edges_from(g.edges)
        cropped = crop_graph(moved, box_lo, box_hi)
        name = names[i] if names is not None else Path(str(g.graph.get("source", f"swc{i}"))).stem
        if cropped.number_of_nodes() == 0:
            warnings.warn(
                f"SWC skeleton {name!r} does not reach into the cropped volume; it is left out", stacklevel=2
            )
            continue
        n_same = cropped.number_of_nodes() == g.number_of_nodes()
        clipped = not (n_same and cropped.number_of_edges() == g.number_of_edges())
        objects.append(PhantomObject(i + 1, "swc", cropped, -1, name, bool(clipped)))
    return objects, tuple(float(x) for x in origin)  # type: ignore[return-value]


def densest_centre_um(
    graphs: Sequence[nx.Graph], *, extent_um: Sequence[float]
) -> tuple[float, float, float]:
    """The centre of the volume-sized window holding the most cable, (z, y, x) µm in the graphs' frame.

    Cable (edge midpoints weighted by edge length; node positions if there are no edges) is binned on
    a grid of a third of ``extent_um``; the best 3x3x3-bin window wins and its cable centroid is
    returned.
    """
    mids, weights = [], []
    for g in graphs:
        pos = {n: np.asarray(d["pos_um"], float) for n, d in g.nodes(data=True)}
        for u, v in g.edges:
            mids.append((pos[u] + pos[v]) / 2)
            weights.append(float(np.linalg.norm(pos[v] - pos[u])))
        if g.number_of_edges() == 0:
            for p in pos.values():
                mids.append(p)
                weights.append(1.0)
    if not mids:
        raise InputDataError("the SWC skeletons have no nodes; nothing to centre the volume on")
    pts = np.asarray(mids)
    w = np.asarray(weights) + 1e-12
    bin_um = np.asarray(extent_um, float) / 3
    idx = np.floor(pts / bin_um).astype(np.int64)
    keys, inverse = np.unique(idx, axis=0, return_inverse=True)
    inverse = inverse.ravel()
    mass = np.bincount(inverse, weights=w)
    # Encode bins as sortable integers to look up neighbours.
    base = keys.min(axis=0) - 1
    span = keys.max(axis=0) - base + 2
    code = ((keys[:, 0] - base[0]) * span[1] + (keys[:, 1] - base[1])) * span[2] + (keys[:, 2] - base[2])
    order = np.argsort(code)
    code_sorted = code[order]
    window = np.zeros(len(keys))
    for dz in (-1, 0, 1):
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                nb = ((keys[:, 0] + dz - base[0]) * span[1] + (keys[:, 1] + dy - base[1])) * span[2] + (
                    keys[:, 2] + dx - base[2]
                )
                pos_ = np.clip(np.searchsorted(code_sorted, nb), 0, len(code_sorted) - 1)
                found = code_sorted[pos_] == nb
                window[found] += mass[order[pos_[found]]]
    best = keys[int(np.argmax(window))]
    sel = np.all(np.abs(idx - best) <= 1, axis=1)
    centre = np.average(pts[sel], axis=0, weights=w[sel])
    return tuple(float(x) for x in centre)  # type: ignore[return-value]


def lengths_table(phantom: Phantom, *, border_labels: Collection[int]) -> list[ObjectLengths]:
    """True lengths of every object (one row per object, label order).

    Parameters
    ----------
    phantom : Phantom
    border_labels : collection of int
        Labels present on the volume's outer voxel layer (see
        :func:`pipeline.synth.render.border_labels`): their ``touches_border`` is True.
    """
    touching = {int(x) for x in border_labels}
    rows = []
    for obj in phantom.objects:
        lengths = skeleton_lengths(obj.skeleton)
        rows.append(
            ObjectLengths(
                obj.label, obj.kind, lengths.cable_length_um, lengths.path_length_um, lengths.n_nodes,
                obj.label in touching,
            )
        )
    return rows


def ais_table(phantom: Phantom) -> list[AISRow]:
    """Where each object's AIS lies (one row per object with an AIS in the volume, label order).

    Path distances are measured along the axon from its root on the soma surface (µm); the start and
    end positions are nodes of the object's skeleton (µm, (z, y, x)).
    """
    rows = []
    for obj in phantom.objects:
        span = obj.ais
        if span is None:
            continue
        rows.append(
            AISRow(
                obj.label, span.start_path_um, span.end_path_um, span.length_um, *span.start_um, *span.end_um,
                span.clipped, span.soma_in_volume,
            )
        )
    return rows


def _check_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    try:
        values = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(
            f"shape must be three positive integers (z, y, x) in voxels; got {shape!r}"
        ) from None
    if len(values) != 3 or min(values) < 1:
        raise ValueError(f"shape must be three positive integers (z, y, x) in voxels; got {tuple(shape)!r}")
    return values  # type: ignore[return-value]
