"""Procedural neurons grown in physical space (µm): somata, branching neurites, axons with an AIS.

Every neurite is a persistent random walk (a discretised worm-like chain): at each step of length
``h`` the direction gets a Gaussian kick perpendicular to itself with standard deviation
``sqrt(h / persistence_um)`` per component, so direction correlations decay as ``exp(-s / P)``.
Walks stop at the box they grow in (the last edge is cut at the face, and the object is marked
``clipped``).

Contacts
--------
Everything grown so far is an obstacle. A walk whose next node comes within ``clearance_um +
contact_range_um`` (surface to surface, tested at the obstacle's nodes) of an unbranched stretch of
*another* neuron's neurite **meets** it (once per stretch), and then

* **fasciculates** (probability ``fasciculation_probability``): it converges onto that neurite and
  runs alongside it, its centreline at exactly ``r + r_other + clearance_um`` from the other's, for a
  length drawn from ``fasciculation_length_um`` (or until the stretch ends), then departs at 25°;
* **crosses** (probability ``crossing_probability``): it turns (by as little as it can) onto a straight
  line whose closest approach to the other neurite's centreline is exactly ``r + r_other +
  clearance_um`` and that makes at least 30° with it, and follows it past the other neurite;
* otherwise **carries on**, and stops if it would come closer than ``clearance_um``.

So ``clearance_um`` is the smallest surface gap between different neurons everywhere (up to the
curvature of the other neurite over a few µm, and to the node spacing), and 0 makes fascicles and
crossings touch (they stop if they would come more than 0.25 µm closer where the other neurite
curves). A walk that comes within ``clearance_um`` of a soma, or of a neurite of its own
neuron, stops (self-avoidance). Somata are placed without overlap.

Instances
---------
:func:`grow_neurons` (``neurons`` kind) returns one :class:`GrownNeuron` per neuron: its soma
(a capsule, SWC type 1, a chain of collinear nodes along the capsule axis), its dendrites (type 3)
and its axon (type 2: proximal axon, AIS, distal axon), joined into one tree; every neurite's root
lies on the soma surface and is joined to the soma node on the axis nearest to it. Then come the
axons of neurons whose soma lies just outside the volume (grown from that soma, cut at the volume
border), then axons of distant neurons that pass through (grown in from a face).

:func:`grow_ais_stain` (``ais`` kind) places neurons (soma, proximal axon, AIS; no dendrites) in
and around the volume and returns one object per AIS reaching into the volume: the AIS alone, as
an AnkG immunostain shows it.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import networkx as nx
import numpy as np

from pipeline.errors import ConfigError
from pipeline.synth.geometry import clip_segment
from pipeline.synth.params import AISParams, NeuronParams

__all__ = ["AISSpan", "GrownNeuron", "Soma", "grow_ais_stain", "grow_neurons", "persistent_walk"]

# SWC structure types used for the procedural skeletons.
SWC_SOMA, SWC_AXON, SWC_DENDRITE = 1, 2, 3

#: Smallest angle between a crossing neurite and the one it crosses, and the departure angle of a fascicle.
_CROSSING_MIN_ANGLE = math.radians(30.0)
_DEPARTURE_ANGLE = math.radians(25.0)
#: How much closer than the clearance a fascicle or crossing may come to the neurite it follows or
#: crosses (where that neurite curves) before it stops, µm.
_WINDOW_TOLERANCE_UM = 0.25


@dataclass(frozen=True)
class Soma:
    """A soma capsule: all points within ``radius_um`` of the segment ``a_um`` -- ``b_um`` ((z, y, x) µm)."""

    a_um: tuple[float, float, float]
    b_um: tuple[float, float, float]
    radius_um: float

    @property
    def centre_um(self) -> tuple[float, float, float]:
        """(z, y, x) centre, µm."""
        return tuple((a + b) / 2 for a, b in zip(self.a_um, self.b_um, strict=True))  # type: ignore[return-value]


@dataclass(frozen=True)
class AISSpan:
    """Where an axon's AIS lies (its part inside the volume).

    Attributes
    ----------
    start_path_um, end_path_um : float
        Path distance along the axon from its root on the soma surface to the AIS start (the end
        nearer the soma) and to its end, µm. For an AIS cut by the volume border these are the ends
        of its visible part.
    start_um, end_um : (3,) float
        (z, y, x) positions of those two points, µm; both are nodes of the object's skeleton.
    clipped : bool
        Whether the volume border cuts the AIS (then ``length_um`` is less than its true length).
    soma_in_volume : bool
        Whether the neuron's soma centre lies inside the volume.
    """

    start_path_um: float
    end_path_um: float
    start_um: tuple[float, float, float]
    end_um: tuple[float, float, float]
    clipped: bool
    soma_in_volume: bool

    @property
    def length_um(self) -> float:
        """Length along the axon of the (visible) AIS, µm."""
        return self.end_path_um - self.start_path_um


@dataclass(frozen=True, eq=False)
class GrownNeuron:
    """One procedural object before labelling.

    Attributes
    ----------
    kind : str
        ``"neuron"`` or ``"ais"``.
    name : str
        ``"neuron"`` (soma inside the volume), ``"entering_axon"`` (soma just outside, its axon with
        the AIS enters), ``"passing_axon"`` (a distant neuron's axon) or ``"ais"`` (ais kind).
    skeleton : networkx.Graph
        A tree (a forest only if the volume border cuts a cropped object in several pieces), nodes
        with ``pos_um``, ``radius_um``, ``swc_type`` (and ``brightness`` for stained AIS).
    clipped : bool
        Whether the skeleton was cut at the volume border.
    soma : Soma or None
        The neuron's soma (rendered in the neurons kind, unstained in the ais kind); None for
        passing axons.
    ais : AISSpan or None
        The neuron's AIS, if it reaches into the volume.
    """

    kind: str
    name: str
    skeleton: nx.Graph
    clipped: bool
    soma: Soma | None = None
    ais: AISSpan | None = None


def persistent_walk(
    start_um: Sequence[float],
    direction: Sequence[float],
    *,
    length_um: float,
    step_um: float,
    persistence_um: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Points of a persistent random walk of exactly ``length_um`` (no box, no obstacles).

    Parameters
    ----------
    start_um : (3,) float
        (z, y, x) start, µm.
    direction : (3,) float
        Initial direction (normalised here).
    length_um, step_um, persistence_um : float
        Total length, nominal step (the steps are equal, at most ``step_um``), persistence length; µm.
    rng : numpy.random.Generator
        Source of randomness.

    Returns
    -------
    (n, 3) float64
        Node positions in µm, the start first; consecutive nodes are equally spaced.
    """
    walk = _Walker(rng=rng, box_lo=None, box_hi=None, obstacles=None)
    pts, _, _, _ = walk.run(
        np.asarray(start_um, float), _unit(np.asarray(direction, float)), length_um=length_um,
        step_um=step_um, persistence_um=persistence_um, r_start=1.0, r_end=1.0, exempt=(),
    )
    return np.asarray(pts)


def grow_neurons(
    *,
    shape: Sequence[int],
    voxel_size_um: Sequence[float],
    n_neurons: int,
    n_ais: int,
    n_passing_axons: int,
    neuron: NeuronParams,
    ais: AISParams,
    rng: np.random.Generator,
) -> list[GrownNeuron]:
    """Grow the neurons of a ``neurons`` phantom inside the volume box.

    The box is the volume's physical extent, ``[-v/2, (n - 1/2) v]`` per axis (voxel centres at
    ``index * v``). Grown in this order (which sets who meets whom): somata, the axons of the first
    ``min(n_ais, n_neurons)`` neurons, the ``n_ais - n_neurons`` axons entering from somata just
    outside the volume, the dendrites, the passing axons. Returned in label order: the
    ``n_neurons`` neurons, the entering axons, the passing axons (those that could not be placed
    are left out).

    Raises
    ------
    ConfigError
        (a ValueError) If the somata cannot be placed without overlapping (too many for the volume).
    """
    vs = np.asarray(voxel_size_um, float)
    box_lo = -vs / 2
    box_hi = (np.asarray(shape, float) - 0.5) * vs
    max_r = max(neuron.neurite_radius_um[1], ais.radius_um[1], ais.axon_radius_um[1])
    obstacles = _Obstacles(
        clearance_um=neuron.clearance_um, max_radius_um=max_r, contact_range_um=neuron.contact_range_um
    )
    contacts = _Contacts(
        neuron.fasciculation_probability, neuron.crossing_probability, neuron.fasciculation_length_um
    )
    walker = _Walker(rng=rng, box_lo=box_lo, box_hi=box_hi, obstacles=obstacles, contacts=contacts)
    pieces = iter(range(1 << 62))

    somata = _place_somata(
        n_neurons, neuron, box_lo, box_hi, rng, what=f"n_neurons={n_neurons}",
        hint="reduce n_neurons (synth.n_neurons, or NEURORECON__SYNTH__N_NEURONS) or enlarge shape",
    )
    soma_pieces = []
    for i, (c, u, h, r) in enumerate(somata):
        soma_pieces.append(next(pieces))
        obstacles.add_soma(c - h * u, c + h * u, r, neuron=i, piece=soma_pieces[-1])

    neurites: list[list[nx.Graph]] = [[] for _ in somata]
    spans: list[AISSpan | None] = [None] * len(somata)
    axon_dirs: dict[int, np.ndarray] = {}
    for i in range(min(n_ais, n_neurons)):
        chain = _grow_axon_chain(walker, somata[i], soma_pieces[i], ais, pieces, rng, neuron_id=i)
        if chain is None:
            continue
        _register(obstacles, chain.walks, neuron=i, piece=chain.piece)
        axon_dirs[i] = chain.direction
        axon = _path_graph(chain.pts, chain.radii, SWC_AXON)
        axon.graph["clipped"] = chain.reached_border
        neurites[i].append(axon)
        spans[i] = AISSpan(
            chain.ais_start_um, chain.ais_end_um, tuple(map(float, chain.pts[chain.ais_nodes[0]])),  # type: ignore[arg-type]
            tuple(map(float, chain.pts[chain.ais_nodes[1]])), chain.ais_clipped, True,  # type: ignore[arg-type]
        )

    entering: list[GrownNeuron] = []
    margin = neuron.soma_radius_um[1] + neuron.soma_half_length_um[1] + ais.soma_distance_um[1] + 2.0
    outer = _Walker(
        rng=rng, box_lo=box_lo - margin, box_hi=box_hi + margin, obstacles=obstacles, contacts=contacts
    )
    for j in range(max(n_ais - n_neurons, 0)):
        obj = _grow_entering_axon(
            outer, neuron, ais, pieces, box_lo, box_hi, rng, neuron_id=n_neurons + j
        )
        if obj is not None:
            entering.append(obj)

    for i, soma in enumerate(somata):
        n_dendrites = int(rng.integers(neuron.n_neurites[0], neuron.n_neurites[1] + 1))
        dirs = [axon_dirs[i]] if i in axon_dirs else []
        for _ in range(n_dendrites):
            g = _grow_dendrite(walker, soma, soma_pieces[i], neuron, dirs, pieces, rng, neuron_id=i)
            if g is not None:
                neurites[i].append(g)

    passing = []
    first_passing = n_neurons + max(n_ais - n_neurons, 0)
    for j in range(n_passing_axons):
        obj = _grow_passing_axon(walker, ais, pieces, box_lo, box_hi, rng, neuron_id=first_passing + j)
        if obj is not None:
            passing.append(obj)

    out = []
    for i, (c, u, h, r) in enumerate(somata):
        soma = Soma(tuple(map(float, c - h * u)), tuple(map(float, c + h * u)), float(r))  # type: ignore[arg-type]
        graph, clipped = _assemble_neuron(soma, neurites[i])
        out.append(GrownNeuron("neuron", "neuron", graph, clipped, soma, spans[i]))
    return out + entering + passing


def grow_ais_stain(
    *,
    shape: Sequence[int],
    voxel_size_um: Sequence[float],
    neuron: NeuronParams,
    ais: AISParams,
    rng: np.random.Generator,
) -> list[GrownNeuron]:
    """Grow the AIS of an ``ais`` phantom: one object (kind ``"ais"``) per AIS reaching into the volume.

    ``round(ais.density_per_mm3 * V)`` neurons are placed without overlap, uniformly in the volume
    box grown by the farthest an AIS *start* can lie from its soma centre (largest soma radius and
    half length plus the longest proximal axon), a box of volume ``V``, so AIS also enter from
    outside. Each gets a proximal axon and an AIS grown as in :func:`grow_neurons` (kept
    ``ais.clearance_um`` apart from everything grown before, without contacts). Only the AIS is
    kept, cut at the volume border; its soma is recorded (unstained). Each AIS gets a stain
    intensity from ``ais.stain_brightness`` (node attribute ``brightness``).

    Raises
    ------
    ConfigError
        (a ValueError) If the somata cannot be placed without overlapping (density too high).
    """
    vs = np.asarray(voxel_size_um, float)
    box_lo = -vs / 2
    box_hi = (np.asarray(shape, float) - 0.5) * vs
    reach = neuron.soma_radius_um[1] + neuron.soma_half_length_um[1] + ais.soma_distance_um[1]
    lo, hi = box_lo - reach, box_hi + reach
    n = int(round(ais.density_per_mm3 * float(np.prod(hi - lo)) * 1e-9))
    max_r = max(ais.radius_um[1], ais.axon_radius_um[1])
    obstacles = _Obstacles(clearance_um=ais.clearance_um, max_radius_um=max_r)
    walker = _Walker(rng=rng, box_lo=lo, box_hi=hi, obstacles=obstacles)
    pieces = iter(range(1 << 62))
    somata = _place_somata(
        n, neuron, lo, hi, rng,
        what=f"ais.density_per_mm3={ais.density_per_mm3} ({n} neurons in and around the volume)",
        hint="reduce synth.ais.density_per_mm3 (or NEURORECON__SYNTH__AIS__DENSITY_PER_MM3)",
    )
    soma_pieces = []
    for i, (c, u, h, r) in enumerate(somata):
        soma_pieces.append(next(pieces))
        obstacles.add_soma(c - h * u, c + h * u, r, neuron=i, piece=soma_pieces[-1])
    no_distal = ais.model_copy(update={"distal_axon_length_um": (0.0, 0.0)})
    out = []
    for i, (c, u, h, r) in enumerate(somata):
        chain = _grow_axon_chain(walker, somata[i], soma_pieces[i], no_distal, pieces, rng, neuron_id=i)
        if chain is None:
            continue
        _register(obstacles, chain.walks, neuron=i, piece=chain.piece)
        brightness = float(rng.uniform(*ais.stain_brightness))
        k0, k1 = chain.ais_nodes
        cut = _crop_polyline(chain.pts[k0 : k1 + 1], chain.radii[k0 : k1 + 1], chain.path_um[k0 : k1 + 1],
                             box_lo, box_hi)
        if not cut:
            continue
        graph = _forest_graph(cut, SWC_AXON, brightness=brightness)
        clipped = chain.ais_clipped or len(cut) > 1 or cut[0][2][0] > chain.path_um[k0] or (
            cut[-1][2][-1] < chain.path_um[k1]
        )
        span = AISSpan(
            float(cut[0][2][0]), float(cut[-1][2][-1]), tuple(map(float, cut[0][0][0])),  # type: ignore[arg-type]
            tuple(map(float, cut[-1][0][-1])), bool(clipped),  # type: ignore[arg-type]
            bool(np.all(c >= box_lo) and np.all(c <= box_hi)),
        )
        soma = Soma(tuple(map(float, c - h * u)), tuple(map(float, c + h * u)), float(r))  # type: ignore[arg-type]
        out.append(GrownNeuron("ais", "ais", graph, bool(clipped), soma, span))
    return out


# --------------------------------------------------------------------------------------------------


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.sqrt(np.dot(v, v)))
    if n == 0.0:
        raise ValueError("direction must be a non-zero vector")
    return v / n


def _random_unit(rng: np.random.Generator) -> np.ndarray:
    while True:
        v = rng.normal(size=3)
        n = float(np.sqrt(np.dot(v, v)))
        if n > 1e-9:
            return v / n


def _perpendicular(v: np.ndarray) -> np.ndarray:
    """A unit vector perpendicular to the unit vector v (deterministic)."""
    axis = np.zeros(3)
    axis[int(np.argmin(np.abs(v)))] = 1.0
    return _unit(np.cross(v, axis))


def _point_segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distances from p (3,) to segments a (n, 3) -> b (n, 3)."""
    d = b - a
    l2 = np.sum(d * d, axis=-1)
    t = np.where(l2 > 0, np.sum((p - a) * d, axis=-1) / np.where(l2 > 0, l2, 1.0), 0.0)
    t = np.clip(t, 0.0, 1.0)
    q = a + t[..., None] * d
    return np.sqrt(np.sum((p - q) ** 2, axis=-1))


def _capsule_surface(c: np.ndarray, u: np.ndarray, h: float, r: float, w: np.ndarray) -> np.ndarray:
    """The point where the ray c + s w (s > 0) leaves the capsule of axis c +- h u and radius r."""
    wu = float(np.dot(w, u))
    perp = math.sqrt(max(1.0 - wu * wu, 0.0))
    if perp > 0 and (r / perp) * abs(wu) <= h:
        s = r / perp
    else:
        s = h * abs(wu) + math.sqrt(max((h * wu) ** 2 - h * h + r * r, 0.0))
    return c + s * w


@dataclass(frozen=True)
class _Hit:
    """The nearest obstacle to a proposed node (within the contact range)."""

    neuron: int
    piece: int
    soma: bool
    path: int  # index into _Obstacles.paths (-1 for a soma)
    index: int  # node index within that path
    gap: float  # surface-to-surface distance (negative: overlap), µm


@dataclass(frozen=True)
class _Window:
    """Nodes of one path, between two arc lengths, that a fascicle or crossing may come close to."""

    path: int
    lo_um: float
    hi_um: float


class _Obstacles:
    """Centreline nodes of committed walks in a uniform grid, plus soma capsules, for collision tests.

    Every node knows its neuron, its piece (a soma, an axon, a primary dendrite with its branches,
    ...), its path (one walk, an unbranched polyline kept whole for fasciculation) and its arc
    length along that path. Distances are tested at the nodes (spaced a step apart).
    """

    def __init__(self, *, clearance_um: float, max_radius_um: float, contact_range_um: float = 0.0) -> None:
        self.clearance = float(clearance_um)
        self.range = float(contact_range_um)
        self.max_r = float(max_radius_um)
        self.cell = 2 * self.max_r + self.clearance + self.range + 1e-6
        self.grid: dict[tuple[int, int, int], list[int]] = {}
        self._n = 0
        self._cols = {
            "pts": np.zeros((0, 3)), "rad": np.zeros(0), "arc": np.zeros(0), "neuron": np.zeros(0, np.int64),
            "piece": np.zeros(0, np.int64), "path": np.zeros(0, np.int64), "index": np.zeros(0, np.int64),
        }
        self.paths: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (points, radii, arc length)
        self.soma_a = np.zeros((0, 3))
        self.soma_b = np.zeros((0, 3))
        self.soma_r = np.zeros(0)
        self.soma_neuron = np.zeros(0, dtype=np.int64)
        self.soma_piece = np.zeros(0, dtype=np.int64)

    def add_soma(self, a: np.ndarray, b: np.ndarray, r: float, *, neuron: int, piece: int) -> None:
        self.soma_a = np.vstack([self.soma_a, a])
        self.soma_b = np.vstack([self.soma_b, b])
        self.soma_r = np.append(self.soma_r, r)
        self.soma_neuron = np.append(self.soma_neuron, neuron)
        self.soma_piece = np.append(self.soma_piece, piece)

    def pop_soma(self) -> None:
        """Remove the soma added last."""
        self.soma_a, self.soma_b, self.soma_r = self.soma_a[:-1], self.soma_b[:-1], self.soma_r[:-1]
        self.soma_neuron, self.soma_piece = self.soma_neuron[:-1], self.soma_piece[:-1]

    def add_path(self, pts: np.ndarray, radii: np.ndarray, *, neuron: int, piece: int) -> None:
        pts = np.asarray(pts, float).reshape(-1, 3)
        radii = np.asarray(radii, float).reshape(-1)
        n = len(pts)
        if n == 0:
            return
        path_id = len(self.paths)
        seg = np.sqrt(np.sum(np.diff(pts, axis=0) ** 2, axis=1))
        arc = np.concatenate([[0.0], np.cumsum(seg)])
        self.paths.append((pts, radii, arc))
        cols = self._cols
        if self._n + n > len(cols["rad"]):
            cap = max(2 * len(cols["rad"]), self._n + n, 1024)
            for name, old in cols.items():
                grown = np.zeros((cap, *old.shape[1:]), dtype=old.dtype)
                grown[: self._n] = old[: self._n]
                cols[name] = grown
        sl = slice(self._n, self._n + n)
        cols["pts"][sl] = pts
        cols["rad"][sl] = radii
        cols["arc"][sl] = arc
        cols["neuron"][sl] = neuron
        cols["piece"][sl] = piece
        cols["path"][sl] = path_id
        cols["index"][sl] = np.arange(n)
        keys = np.floor(pts / self.cell).astype(np.int64)
        for k, key in enumerate(map(tuple, keys.tolist())):
            self.grid.setdefault(key, []).append(self._n + k)
        self._n += n

    def hit(
        self, p: np.ndarray, r: float, exempt: Collection[int], window: _Window | None = None
    ) -> _Hit | None:
        """The nearest obstacle within ``clearance + contact range`` of a tube node at p of radius r.

        Pieces in ``exempt`` and the nodes in ``window`` are ignored. A soma within reach comes
        first; among nodes, the smallest surface gap wins (then the node added first).
        """
        reach = r + self.clearance + self.range
        if len(self.soma_r):
            d = _point_segment_distance(p, self.soma_a, self.soma_b)
            gap = d - self.soma_r
            bad = (gap < reach) & ~np.isin(self.soma_piece, list(exempt))
            if bad.any():
                k = int(np.flatnonzero(bad)[np.argmin(gap[bad])])
                neuron, piece = int(self.soma_neuron[k]), int(self.soma_piece[k])
                return _Hit(neuron, piece, True, -1, -1, float(gap[k]) - r)
        if self._n == 0:
            return None
        kz, ky, kx = (int(math.floor(x / self.cell)) for x in p)
        idx: list[int] = []
        grid = self.grid
        for dz in (-1, 0, 1):
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    cell = grid.get((kz + dz, ky + dy, kx + dx))
                    if cell:
                        idx.extend(cell)
        if not idx:
            return None
        ii = np.asarray(idx)
        cols = self._cols
        d = np.sqrt(np.sum((cols["pts"][ii] - p) ** 2, axis=1))
        gap = d - cols["rad"][ii]
        bad = gap < reach
        if not bad.any():
            return None
        if exempt:
            bad &= ~np.isin(cols["piece"][ii], list(exempt))
        if window is not None:
            # The stretch a fascicle or crossing runs along: only a real intrusion counts.
            arc = cols["arc"][ii]
            inside = (cols["path"][ii] == window.path) & (arc >= window.lo_um) & (arc <= window.hi_um)
            bad &= ~inside | (gap - r < self.clearance - _WINDOW_TOLERANCE_UM)
        if not bad.any():
            return None
        sel = np.flatnonzero(bad)
        j = sel[np.argmin(gap[sel])]
        k = int(ii[j])
        return _Hit(
            int(cols["neuron"][k]), int(cols["piece"][k]), False, int(cols["path"][k]), int(cols["index"][k]),
            float(gap[j]) - r,
        )

    def hits(self, p: np.ndarray, r: float, exempt: Collection[int]) -> bool:
        """Whether a tube node at p of radius r would come closer than the clearance to an obstacle."""
        hit = self.hit(p, r, exempt)
        return hit is not None and hit.gap < self.clearance

    def nearest_on_path(
        self, path: int, index: int, p: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, float, float]:
        """Nearest point to p on the path's edges next to node ``index``.

        Returns (point, unit tangent, radius, arc length there).
        """
        pts, radii, cum = self.paths[path]
        if len(pts) < 2:
            return pts[0], _perpendicular(np.array([1.0, 0.0, 0.0])), float(radii[0]), 0.0
        best = None
        for j in range(max(index - 2, 0), min(index + 2, len(pts) - 1)):
            a, b = pts[j], pts[j + 1]
            ab = b - a
            l2 = float(np.dot(ab, ab))
            t = 0.0 if l2 == 0 else min(max(float(np.dot(p - a, ab)) / l2, 0.0), 1.0)
            q = a + t * ab
            dist = float(np.sum((p - q) ** 2))
            if best is None or dist < best[0]:
                best = (dist, j, t)
        assert best is not None
        _, j, t = best
        a, b = pts[j], pts[j + 1]
        tangent = _unit(b - a) if np.any(b != a) else _perpendicular(np.array([1.0, 0.0, 0.0]))
        radius = float(radii[j] + t * (radii[j + 1] - radii[j]))
        return a + t * (b - a), tangent, radius, float(cum[j] + t * (cum[j + 1] - cum[j]))

    def point_on_path(self, path: int, s: float) -> tuple[np.ndarray, np.ndarray, float]:
        """(point, unit tangent, radius) at arc length s along a path (clamped to it)."""
        pts, radii, cum = self.paths[path]
        s = min(max(s, 0.0), float(cum[-1]))
        j = min(int(np.searchsorted(cum, s, side="right")) - 1, len(pts) - 2)
        j = max(j, 0)
        seg = float(cum[j + 1] - cum[j])
        t = 0.0 if seg == 0 else (s - float(cum[j])) / seg
        a, b = pts[j], pts[j + 1]
        tangent = _unit(b - a) if np.any(b != a) else _perpendicular(np.array([1.0, 0.0, 0.0]))
        return a + t * (b - a), tangent, float(radii[j] + t * (radii[j + 1] - radii[j]))


@dataclass(frozen=True)
class _Contacts:
    fasciculation_probability: float
    crossing_probability: float
    fasciculation_length_um: tuple[float, float]


@dataclass
class _Plan:
    """Forced next nodes of a walk (a fascicle or a crossing) and the stretch of neurite it may approach."""

    nodes: list[np.ndarray]
    direction_after: np.ndarray
    window: _Window


class _Walker:
    """Grows persistent random walks inside a box; meets obstacles as the module docstring says."""

    def __init__(
        self,
        *,
        rng: np.random.Generator,
        box_lo: np.ndarray | None,
        box_hi: np.ndarray | None,
        obstacles: _Obstacles | None,
        contacts: _Contacts | None = None,
    ) -> None:
        self.rng = rng
        self.lo = box_lo
        self.hi = box_hi
        self.obstacles = obstacles
        self.contacts = contacts

    def inside(self, p: np.ndarray) -> bool:
        return self.lo is None or bool(np.all(p >= self.lo) and np.all(p <= self.hi))

    def run(
        self,
        start: np.ndarray,
        direction: np.ndarray,
        *,
        length_um: float,
        step_um: float,
        persistence_um: float,
        r_start: float,
        r_end: float,
        exempt: Collection[int],
        own_soma: tuple[np.ndarray, np.ndarray, float] | None = None,
        neuron: int = -1,
    ) -> tuple[list[np.ndarray], list[float], np.ndarray, str]:
        """Walk from ``start``; returns (points incl. start, radii, last direction, stop reason).

        The reason is ``"done"`` (full length), ``"border"`` (cut at the box face),
        ``"collision"`` (stopped within the clearance of an obstacle) or ``"soma"`` (would re-enter
        the own soma).
        """
        pts = [start]
        radii = [r_start]
        if length_um <= 0:
            return pts, radii, direction, "done"
        n_steps = max(1, math.ceil(length_um / step_um - 1e-9))
        h = length_um / n_steps
        sigma = math.sqrt(h / persistence_um)
        p, d = start, direction
        exempt = frozenset(exempt)
        obstacles = self.obstacles
        clearance = 0.0 if obstacles is None else obstacles.clearance
        plan: _Plan | None = None
        window: _Window | None = None  # nodes the current or last plan may approach
        window_steps = 0
        met: set[int] = set()  # paths met (a decision was drawn) by this walk

        def r_at(j: int) -> float:
            return r_start + (r_end - r_start) * j / n_steps

        k = 0
        while k < n_steps:
            r = r_at(k + 1)
            if plan is not None:
                q = plan.nodes.pop(0)
                d_new = plan.direction_after if not plan.nodes else (_unit(q - p) if np.any(q != p) else d)
            else:
                kick = self.rng.normal(size=3) * sigma
                kick -= np.dot(kick, d) * d
                d_new = _unit(d + kick)
                q = p + h * d_new
            if not self.inside(q):
                interval = clip_segment(p, q, self.lo, self.hi)  # type: ignore[arg-type]
                t1 = 0.0 if interval is None else interval[1]
                if t1 * float(np.linalg.norm(q - p)) > 1e-6:
                    pts.append(p + t1 * (q - p))
                    radii.append(r_start + (r_end - r_start) * (k + t1) / n_steps)
                return pts, radii, d_new, "border"
            if obstacles is not None:
                hit = obstacles.hit(q, r, exempt, window if window_steps > 0 else None)
                if hit is not None:
                    meets = (
                        self.contacts is not None and plan is None and not hit.soma and neuron >= 0
                        and hit.neuron != neuron and hit.path not in met
                    )
                    if meets:
                        met.add(hit.path)
                        plan = self._meet(hit, p, d, r_at=r_at, k=k, n_steps=n_steps, h=h)
                        if plan is not None:
                            window, window_steps = plan.window, len(plan.nodes) + 1
                            continue
                    if hit.gap < clearance:
                        return pts, radii, d, "collision"
            if own_soma is not None:
                a, b, min_dist = own_soma
                if float(_point_segment_distance(q, a[None], b[None])[0]) < min_dist:
                    return pts, radii, d_new, "soma"
            pts.append(q)
            radii.append(r)
            p, d = q, d_new
            k += 1
            window_steps -= 1
            if plan is not None and not plan.nodes:
                plan = None
        return pts, radii, d, "done"

    def _meet(
        self, hit: _Hit, p: np.ndarray, d: np.ndarray, *, r_at, k: int, n_steps: int, h: float
    ) -> _Plan | None:
        """What a walk at p heading d does on meeting ``hit`` (another neuron's neurite): a plan, or None."""
        c = self.contacts
        assert c is not None
        u = float(self.rng.random())
        if u < c.fasciculation_probability:
            length = float(self.rng.uniform(*c.fasciculation_length_um))
            plan = self._fascicle(hit, p, d, r_at=r_at, k=k, n_steps=n_steps, h=h, length_um=length)
            return plan if plan is not None else self._crossing(hit, p, d, r=r_at(k + 1), h=h)
        if u < c.fasciculation_probability + c.crossing_probability:
            return self._crossing(hit, p, d, r=r_at(k + 1), h=h)
        return None

    def _crossing(self, hit: _Hit, p: np.ndarray, d: np.ndarray, *, r: float, h: float) -> _Plan:
        """A straight pass over the neurite hit, its closest approach exactly r + r_other + clearance."""
        obstacles = self.obstacles
        assert obstacles is not None
        g, tau, rg, s_g = obstacles.nearest_on_path(hit.path, hit.index, p)
        gap = r + rg + obstacles.clearance
        n = p - g
        n = n - np.dot(n, tau) * tau
        dp = float(np.linalg.norm(n))
        n_hat = n / dp if dp > 1e-9 else _perpendicular(tau)
        dp = max(dp, 1e-9)
        c = min(1.0, gap / dp)
        b_hat = np.cross(tau, n_hat)
        best = None
        min_sin = math.sin(_CROSSING_MIN_ANGLE)
        for sign in (1.0, -1.0):
            m = c * n_hat + sign * math.sqrt(max(1.0 - c * c, 0.0)) * b_hat  # the common normal
            e = _unit(np.cross(m, tau))
            s_e = float(np.dot(n_hat, e))  # p's offset from the guide along e, per unit dp
            a0, b0 = float(np.dot(d, tau)), float(np.dot(d, e))
            want = -1.0 if s_e > 1e-12 else (1.0 if s_e < -1e-12 else (1.0 if b0 >= 0 else -1.0))
            b0 = want * abs(b0)
            norm = math.hypot(a0, b0)
            a0, b0 = (a0 / norm, b0 / norm) if norm > 1e-9 else (0.0, want)
            if abs(b0) < min_sin:
                b0 = want * min_sin
                a0 = math.copysign(math.cos(_CROSSING_MIN_ANGLE), a0)
            d_new = _unit(a0 * tau + b0 * e)
            s_closest = -dp * s_e / b0
            score = float(np.dot(d, d_new))
            if best is None or score > best[0]:
                best = (score, d_new, s_closest, abs(b0), a0)
        assert best is not None
        _, d_new, s_closest, sin_a, cos_a = best
        past = s_closest + (2 * (r + rg) + obstacles.clearance + obstacles.range + 2 * h) / sin_a
        n_plan = max(1, math.ceil(past / h))
        nodes = [p + (j * h) * d_new for j in range(1, n_plan + 1)]
        # The guide nodes the straight pass comes near: around the closest approach, +- its length.
        reach = 2 * (r + rg) + obstacles.clearance + obstacles.range
        along = abs(cos_a) * (abs(s_closest) + n_plan * h) + reach
        return _Plan(nodes, d_new, _Window(hit.path, s_g - along - h, s_g + along + h))

    def _fascicle(
        self, hit: _Hit, p: np.ndarray, d: np.ndarray, *, r_at, k: int, n_steps: int, h: float,
        length_um: float,
    ) -> _Plan | None:
        """Nodes along the neurite hit at r + r_other + clearance, then departing; None if too short."""
        obstacles = self.obstacles
        assert obstacles is not None
        g, tau, _, s0 = obstacles.nearest_on_path(hit.path, hit.index, p)
        sign = 1.0 if float(np.dot(d, tau)) >= 0 else -1.0
        total = float(obstacles.paths[hit.path][2][-1])
        available = total - s0 if sign > 0 else s0
        n_follow = min(int(length_um // h), int(available // h) - 1, n_steps - k - 1)
        if n_follow < 2:
            return None
        n = p - g
        n = n - np.dot(n, tau) * tau
        dist0 = float(np.linalg.norm(n))
        n_hat = n / dist0 if dist0 > 1e-9 else _perpendicular(tau)
        nodes = []
        tangent = tau * sign
        radius_other = 0.0
        n_approach = 3  # converge from the current distance to the fascicle's over this many steps
        for j in range(1, n_follow + 1):
            gj, tj, radius_other = obstacles.point_on_path(hit.path, s0 + sign * j * h)
            tangent = tj * sign
            n_hat = n_hat - np.dot(n_hat, tangent) * tangent
            n_hat = _unit(n_hat) if float(np.linalg.norm(n_hat)) > 1e-9 else _perpendicular(tangent)
            target = r_at(k + j) + radius_other + obstacles.clearance
            excess = max(dist0 - target, 0.0) * max(0.0, 1.0 - j / n_approach)
            nodes.append(gj + (target + excess) * n_hat)
        d_out = _unit(math.cos(_DEPARTURE_ANGLE) * tangent + math.sin(_DEPARTURE_ANGLE) * n_hat)
        gap = 2 * (r_at(k + n_follow) + radius_other) + obstacles.clearance + obstacles.range + 2 * h
        n_depart = math.ceil(gap / (h * math.sin(_DEPARTURE_ANGLE)))
        last = nodes[-1]
        nodes += [last + (j * h) * d_out for j in range(1, n_depart + 1)]
        s1 = s0 + sign * (n_follow * h + n_depart * h * math.cos(_DEPARTURE_ANGLE))
        margin = 2 * (r_at(k) + radius_other) + obstacles.clearance + obstacles.range + 2 * h
        return _Plan(nodes, d_out, _Window(hit.path, min(s0, s1) - margin, max(s0, s1) + margin))


def _register(
    obstacles: _Obstacles, walks: Sequence[tuple[Sequence, Sequence]], *, neuron: int, piece: int
) -> None:
    for pts, radii in walks:
        if len(pts) > 1:
            obstacles.add_path(np.asarray(pts), np.asarray(radii), neuron=neuron, piece=piece)


def _path_graph(pts: Sequence[np.ndarray], radii: Sequence[float], swc_type: int) -> nx.Graph:
    g = nx.Graph()
    for k, (p, r) in enumerate(zip(pts, radii, strict=True)):
        g.add_node(k, pos_um=tuple(float(x) for x in p), radius_um=float(r), swc_type=swc_type)
        if k:
            g.add_edge(k - 1, k)
    return g


def _forest_graph(
    pieces: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    swc_type: int,
    *,
    brightness: float | None = None,
) -> nx.Graph:
    """One graph of several polylines (each (points, radii, arc length)), nodes numbered 0..n-1."""
    g = nx.Graph()
    for pts, radii, _ in pieces:
        first = g.number_of_nodes()
        for k, (p, r) in enumerate(zip(pts, radii, strict=True)):
            attrs = {"pos_um": tuple(float(x) for x in p), "radius_um": float(r), "swc_type": swc_type}
            if brightness is not None:
                attrs["brightness"] = brightness
            g.add_node(first + k, **attrs)
            if k:
                g.add_edge(first + k - 1, first + k)
    return g


def _crop_polyline(
    pts: np.ndarray, radii: np.ndarray, path_um: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The parts of a polyline inside the box [lo, hi]: (points, radii, arc length) each, >= 2 nodes.

    Edges crossing a face are cut there, with a new node (radius and arc length interpolated).
    """
    pts = np.asarray(pts, float)
    radii = np.asarray(radii, float)
    path_um = np.asarray(path_um, float)
    out: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    cur: list[int | tuple[int, float]] = []  # node index, or (edge index, t) for a cut point

    def close() -> None:
        if len(cur) >= 2:
            p, r, s = [], [], []
            for item in cur:
                if isinstance(item, tuple):
                    j, t = item
                    p.append(pts[j] + t * (pts[j + 1] - pts[j]))
                    r.append(radii[j] + t * (radii[j + 1] - radii[j]))
                    s.append(path_um[j] + t * (path_um[j + 1] - path_um[j]))
                else:
                    p.append(pts[item])
                    r.append(radii[item])
                    s.append(path_um[item])
            out.append((np.asarray(p), np.asarray(r), np.asarray(s)))
        cur.clear()

    for j in range(len(pts) - 1):
        interval = clip_segment(pts[j], pts[j + 1], lo, hi)
        if interval is None or interval[1] <= interval[0]:
            close()
            continue
        t0, t1 = interval
        if not cur:
            cur.append(j if t0 == 0.0 else (j, t0))
        elif t0 > 0.0:
            close()
            cur.append((j, t0))
        cur.append(j + 1 if t1 == 1.0 else (j, t1))
        if t1 < 1.0:
            close()
    close()
    return out


def _assemble_neuron(soma: Soma, neurites: Sequence[nx.Graph]) -> tuple[nx.Graph, bool]:
    """One tree: soma nodes along the capsule axis, each neurite's root (node 0) joined to the nearest one."""
    a = np.asarray(soma.a_um)
    b = np.asarray(soma.b_um)
    ab = b - a
    l2 = float(np.dot(ab, ab))
    ts = []
    for g in neurites:
        root = np.asarray(g.nodes[0]["pos_um"])
        ts.append(0.0 if l2 == 0 else min(max(float(np.dot(root - a, ab)) / l2, 0.0), 1.0))
    axis_ts = [0.0] if l2 == 0 else sorted({0.0, 1.0, *ts})
    out = nx.Graph()
    for k, t in enumerate(axis_ts):
        pos = a + t * ab
        out.add_node(k, pos_um=tuple(float(x) for x in pos), radius_um=soma.radius_um, swc_type=SWC_SOMA)
        if k:
            out.add_edge(k - 1, k)
    clipped = False
    for g, t in zip(neurites, ts, strict=True):
        offset = out.number_of_nodes()
        for n, data in g.nodes(data=True):
            out.add_node(offset + n, **data)
        out.add_edges_from((offset + u, offset + v) for u, v in g.edges)
        out.add_edge(axis_ts.index(t), offset)
        clipped |= bool(g.graph.get("clipped", False))
    return out, clipped


def _place_somata(
    n: int, params: NeuronParams, lo: np.ndarray, hi: np.ndarray, rng: np.random.Generator, *, what: str,
    hint: str,
) -> list[tuple[np.ndarray, np.ndarray, float, float]]:
    extent = hi - lo
    spacing = 2 * params.neurite_radius_um[1] + params.clearance_um + 2.0
    placed = 0
    for _restart in range(20):
        somata: list[tuple[np.ndarray, np.ndarray, float, float]] = []
        for _ in range(n):
            for _try in range(100):
                r = float(rng.uniform(*params.soma_radius_um))
                h = float(rng.uniform(*params.soma_half_length_um))
                u = _random_unit(rng)
                margin = np.minimum(r + h + 2.0, extent / 2)
                c = lo + margin + rng.random(3) * (extent - 2 * margin)
                if all(np.linalg.norm(c - c2) >= r + h + r2 + h2 + spacing for c2, _, h2, r2 in somata):
                    somata.append((c, u, h, r))
                    break
            else:
                break
        if len(somata) == n:
            return somata
        placed = max(placed, len(somata))
    raise ConfigError(
        f"{what}: could place only {placed} of {n} somata (radius up to {params.soma_radius_um[1]} µm) "
        f"without overlap in a box of {tuple(round(float(e), 1) for e in extent)} µm (z, y, x); {hint}"
    )


@dataclass(frozen=True)
class _AxonChain:
    """An axon grown from a soma: one polyline (proximal axon, AIS, distal axon)."""

    pts: np.ndarray  # (n, 3) µm
    radii: np.ndarray  # (n,) µm
    path_um: np.ndarray  # (n,) arc length from the root on the soma surface
    ais_nodes: tuple[int, int]  # first and last AIS node
    ais_clipped: bool  # the AIS walk stopped at the box border
    reached_border: bool  # the AIS or the distal axon stopped at the box border
    walks: tuple[tuple[list, list], ...]  # the walks, for the obstacles
    piece: int
    direction: np.ndarray  # initial direction at the soma

    @property
    def ais_start_um(self) -> float:
        return float(self.path_um[self.ais_nodes[0]])

    @property
    def ais_end_um(self) -> float:
        return float(self.path_um[self.ais_nodes[1]])


def _grow_axon_chain(
    walker: _Walker,
    soma: tuple[np.ndarray, np.ndarray, float, float],
    soma_piece: int,
    params: AISParams,
    pieces,
    rng: np.random.Generator,
    *,
    neuron_id: int,
    direction: np.ndarray | None = None,
) -> _AxonChain | None:
    """Proximal axon + AIS + distal axon from a soma (not yet registered); None if no AIS could be placed.

    ``direction``: a preferred initial direction (tries within 60° of it), else any.
    """
    c, u, h, r_soma = soma
    a, b = c - h * u, c + h * u
    piece = next(pieces)
    obstacles = walker.obstacles
    assert obstacles is not None
    exempt = (soma_piece, piece)
    best = None
    for _ in range(50):
        w = _random_unit(rng)
        if direction is not None:
            w = _unit(direction + 0.6 * w)
            if float(np.dot(w, direction)) < 0.5:
                continue
        root = _capsule_surface(c, u, h, r_soma, w)
        len0 = float(rng.uniform(*params.soma_distance_um))
        r_axon = float(rng.uniform(*params.axon_radius_um))
        len_ais = float(rng.uniform(*params.length_um))
        r_ais = float(rng.uniform(*params.radius_um))
        if not walker.inside(root) or obstacles.hits(root, r_axon, (soma_piece,)):
            continue
        prox = walker.run(
            root, w, length_um=len0, step_um=params.step_um, persistence_um=params.persistence_um,
            r_start=r_axon, r_end=r_axon, exempt=exempt, own_soma=(a, b, r_soma), neuron=neuron_id,
        )
        if prox[3] != "done":
            continue
        ais_walk = walker.run(
            prox[0][-1], prox[2], length_um=len_ais, step_um=params.step_um,
            persistence_um=params.persistence_um, r_start=r_ais, r_end=r_ais, exempt=exempt,
            own_soma=(a, b, r_soma), neuron=neuron_id,
        )
        if ais_walk[3] == "done":
            best = (w, prox, ais_walk, r_axon)
            break
        if ais_walk[3] == "border" and len(ais_walk[0]) > 1:
            if best is None or len(ais_walk[0]) > len(best[2][0]):
                best = (w, prox, ais_walk, r_axon)
    if best is None:
        return None
    w, prox, ais_walk, r_axon = best
    pts = list(prox[0])
    radii = list(prox[1][:-1]) + [ais_walk[1][0]]
    k0 = len(pts) - 1
    pts += list(ais_walk[0][1:])
    radii += list(ais_walk[1][1:])
    k1 = len(pts) - 1
    walks = [(prox[0], prox[1]), (ais_walk[0], ais_walk[1])]
    ais_clipped = ais_walk[3] == "border"
    reached_border = ais_clipped
    if not ais_clipped and params.distal_axon_length_um[1] > 0:
        len_d = float(rng.uniform(*params.distal_axon_length_um))
        distal = walker.run(
            ais_walk[0][-1], ais_walk[2], length_um=len_d, step_um=params.step_um,
            persistence_um=params.persistence_um, r_start=r_axon, r_end=r_axon, exempt=(piece,),
            neuron=neuron_id,
        )
        pts += list(distal[0][1:])
        radii += list(distal[1][1:])
        walks.append((distal[0], distal[1]))
        reached_border = distal[3] == "border"
    arr = np.asarray(pts, float)
    seg = np.sqrt(np.sum(np.diff(arr, axis=0) ** 2, axis=1))
    return _AxonChain(
        arr, np.asarray(radii, float), np.concatenate([[0.0], np.cumsum(seg)]), (k0, k1), ais_clipped,
        reached_border, tuple(walks), piece, w,
    )


def _grow_entering_axon(
    walker: _Walker,
    neuron: NeuronParams,
    params: AISParams,
    pieces,
    box_lo: np.ndarray,
    box_hi: np.ndarray,
    rng: np.random.Generator,
    *,
    neuron_id: int,
) -> GrownNeuron | None:
    """The axon (with its AIS) of a neuron whose soma lies just outside the volume, cut at the volume border.

    ``walker`` grows in a box larger than the volume. Tries up to 50 soma positions; prefers an axon
    that stays one piece inside the volume with its AIS visible.
    """
    obstacles = walker.obstacles
    assert obstacles is not None
    extent = box_hi - box_lo
    areas = np.array([extent[1] * extent[2], extent[0] * extent[2], extent[0] * extent[1]])
    best = None
    for _ in range(50):
        axis = int(rng.choice(3, p=areas / areas.sum()))
        side = 1.0 if rng.random() < 0.5 else -1.0
        face = box_lo + rng.random(3) * extent
        face[axis] = box_hi[axis] if side > 0 else box_lo[axis]
        normal = np.zeros(3)
        normal[axis] = side
        r = float(rng.uniform(*neuron.soma_radius_um))
        h = float(rng.uniform(*neuron.soma_half_length_um))
        u = _random_unit(rng)
        c = face + normal * (r + h + float(rng.uniform(0.5, max(params.soma_distance_um[1], 0.5))))
        if not walker.inside(c) or obstacles.hits(c, r + h, ()):
            continue
        soma_piece = next(pieces)
        obstacles.add_soma(c - h * u, c + h * u, r, neuron=neuron_id, piece=soma_piece)
        chain = _grow_axon_chain(
            walker, (c, u, h, r), soma_piece, params, pieces, rng, neuron_id=neuron_id, direction=-normal
        )
        obstacles.pop_soma()
        if chain is None:
            continue
        cut = _crop_polyline(chain.pts, chain.radii, chain.path_um, box_lo, box_hi)
        s_a, s_b = chain.ais_start_um, chain.ais_end_um
        visible = [(p, rr, s) for p, rr, s in cut if s[0] < s_b and s[-1] > s_a]
        if not visible:
            continue
        score = (len(cut) == 1, sum(float(s[-1] - s[0]) for _, _, s in cut))
        if best is None or score > best[0]:
            best = (score, (c, u, h, r), soma_piece, chain, cut)
        if len(cut) == 1:
            break
    if best is None:
        return None
    _, (c, u, h, r), soma_piece, chain, cut = best
    obstacles.add_soma(c - h * u, c + h * u, r, neuron=neuron_id, piece=soma_piece)
    _register(obstacles, chain.walks, neuron=neuron_id, piece=chain.piece)
    # Make the AIS ends nodes of the cut polyline (they are nodes of the chain, kept unless cut away).
    s_a, s_b = chain.ais_start_um, chain.ais_end_um
    span = None
    for p, _, s in cut:
        lo_s, hi_s = max(s_a, float(s[0])), min(s_b, float(s[-1]))
        if lo_s >= hi_s:
            continue
        k0 = int(np.argmin(np.abs(s - lo_s)))
        k1 = int(np.argmin(np.abs(s - hi_s)))
        clipped = lo_s > s_a or hi_s < s_b or chain.ais_clipped
        span = AISSpan(
            float(s[k0]), float(s[k1]), tuple(map(float, p[k0])), tuple(map(float, p[k1])),  # type: ignore[arg-type]
            bool(clipped), False,
        )
        break
    graph = _forest_graph(cut, SWC_AXON)
    soma = Soma(tuple(map(float, c - h * u)), tuple(map(float, c + h * u)), float(r))  # type: ignore[arg-type]
    return GrownNeuron("neuron", "entering_axon", graph, True, soma, span)


def _grow_passing_axon(
    walker: _Walker,
    params: AISParams,
    pieces,
    box_lo: np.ndarray,
    box_hi: np.ndarray,
    rng: np.random.Generator,
    *,
    neuron_id: int,
) -> GrownNeuron | None:
    """An axon of a distant neuron: enters through a face and runs until it leaves (or stops)."""
    obstacles = walker.obstacles
    assert obstacles is not None
    extent = box_hi - box_lo
    areas = np.array([extent[1] * extent[2], extent[0] * extent[2], extent[0] * extent[1]])
    piece = next(pieces)
    max_length = 3.0 * float(np.linalg.norm(extent))
    best = None
    for _ in range(20):
        axis = int(rng.choice(3, p=areas / areas.sum()))
        side = 1.0 if rng.random() < 0.5 else -1.0
        start = box_lo + rng.random(3) * extent
        start[axis] = box_hi[axis] if side > 0 else box_lo[axis]
        inward = np.zeros(3)
        inward[axis] = -side
        w = _unit(inward + 0.8 * _random_unit(rng))
        if float(np.dot(w, inward)) < 0.5:
            continue
        r = float(rng.uniform(*params.axon_radius_um))
        if obstacles.hits(start, r, ()):
            continue
        walk = walker.run(
            start, w, length_um=max_length, step_um=params.step_um, persistence_um=params.persistence_um,
            r_start=r, r_end=r, exempt=(piece,), neuron=neuron_id,
        )
        if len(walk[0]) < 2:
            continue
        length = float(np.sum(np.linalg.norm(np.diff(np.asarray(walk[0]), axis=0), axis=1)))
        if best is None or length > best[0]:
            best = (length, walk)
        if length >= min(20.0, float(extent.min())):
            break
    if best is None:
        return None
    _, walk = best
    _register(obstacles, [(walk[0], walk[1])], neuron=neuron_id, piece=piece)
    return GrownNeuron("neuron", "passing_axon", _path_graph(walk[0], walk[1], SWC_AXON), True)


def _grow_dendrite(
    walker: _Walker,
    soma: tuple[np.ndarray, np.ndarray, float, float],
    soma_piece: int,
    params: NeuronParams,
    dirs: list[np.ndarray],
    pieces,
    rng: np.random.Generator,
    *,
    neuron_id: int,
) -> nx.Graph | None:
    """One primary neurite with its branches (registered), or None if no free start direction was found.

    Node 0 is the root on the soma surface; ``graph.graph["clipped"]`` says whether it reached the border.
    """
    c, u, h, r_soma = soma
    a, b = c - h * u, c + h * u
    piece = next(pieces)
    r_lo, r_hi = params.neurite_radius_um
    obstacles = walker.obstacles
    assert obstacles is not None
    min_cos = math.cos(math.radians(50.0))
    for _ in range(100):
        w = _random_unit(rng)
        r0 = float(rng.uniform((r_lo + r_hi) / 2, r_hi))
        if any(float(np.dot(w, d)) > min_cos for d in dirs):
            continue
        root = _capsule_surface(c, u, h, r_soma, w)
        if walker.inside(root) and not obstacles.hits(root, r0, (soma_piece, piece)):
            break
    else:
        return None
    dirs.append(w)
    g = nx.Graph()
    g.add_node(0, pos_um=tuple(float(x) for x in root), radius_um=r0, swc_type=SWC_DENDRITE)
    queue = [(0, root, w, 0, r0)]
    clipped = False
    walks = []
    lo_a, hi_a = (math.radians(x) for x in params.branch_angle_deg)
    while queue:
        node, start, d, order, r_start = queue.pop(0)
        length = float(rng.uniform(*params.branch_length_um))
        r_end = max(r_lo, r_start * params.taper)
        pts, radii, d_end, reason = walker.run(
            start, d, length_um=length, step_um=params.step_um, persistence_um=params.persistence_um,
            r_start=r_start, r_end=r_end, exempt=(soma_piece, piece), own_soma=(a, b, r_soma),
            neuron=neuron_id,
        )
        walks.append((pts, radii))
        prev = node
        for p, r in zip(pts[1:], radii[1:], strict=True):
            k = g.number_of_nodes()
            g.add_node(k, pos_um=tuple(float(x) for x in p), radius_um=float(r), swc_type=SWC_DENDRITE)
            g.add_edge(prev, k)
            prev = k
        clipped |= reason == "border"
        if reason == "done" and order < params.max_branch_order and rng.random() < params.branch_probability:
            e = rng.normal(size=3)
            e -= np.dot(e, d_end) * d_end
            e = _unit(e)
            for sign in (1.0, -1.0):
                theta = float(rng.uniform(lo_a, hi_a))
                child = _unit(math.cos(theta) * d_end + sign * math.sin(theta) * e)
                queue.append((prev, pts[-1], child, order + 1, radii[-1]))
    if g.number_of_nodes() < 2:
        return None
    _register(obstacles, walks, neuron=neuron_id, piece=piece)
    g.graph["clipped"] = clipped
    return g
