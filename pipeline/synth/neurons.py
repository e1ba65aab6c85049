"""Procedural neurons grown in physical space (µm): somata, branching neurites, axons with an AIS.

Every neurite is a persistent random walk (a discretised worm-like chain) that stops at the box it
grows in (the last edge is cut at the face, and the object is marked ``clipped``). Everything grown
so far is an obstacle: a walk that meets a neurite of another neuron fasciculates with it, crosses
it or carries on, always at least ``clearance_um`` from it, and a walk that comes within
``clearance_um`` of a soma, or of a neurite of its own neuron, stops. Somata are placed without
overlap. The walk, the obstacles and the contacts are :mod:`pipeline.synth.growth` (whose
docstring gives the rules exactly); the walks become skeleton graphs, cropped to the volume, with
:mod:`pipeline.synth.polylines`.

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
from collections.abc import Sequence
from dataclasses import dataclass

import networkx as nx
import numpy as np

from pipeline.errors import ConfigError
from pipeline.synth.growth import (
    Contacts,
    Obstacles,
    Walker,
    capsule_surface,
    random_unit,
    register_walks,
    unit,
)
from pipeline.synth.params import AISParams, NeuronParams
from pipeline.synth.polylines import crop_polyline, forest_graph, path_graph

__all__ = ["AISSpan", "GrownNeuron", "Soma", "grow_ais_stain", "grow_neurons"]

# SWC structure types used for the procedural skeletons.
SWC_SOMA, SWC_AXON, SWC_DENDRITE = 1, 2, 3


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
    obstacles = Obstacles(
        clearance_um=neuron.clearance_um, max_radius_um=max_r, contact_range_um=neuron.contact_range_um
    )
    contacts = Contacts(
        neuron.fasciculation_probability, neuron.crossing_probability, neuron.fasciculation_length_um
    )
    walker = Walker(rng=rng, box_lo=box_lo, box_hi=box_hi, obstacles=obstacles, contacts=contacts)
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
        register_walks(obstacles, chain.walks, neuron=i, piece=chain.piece)
        axon_dirs[i] = chain.direction
        axon = path_graph(chain.pts, chain.radii, SWC_AXON)
        axon.graph["clipped"] = chain.reached_border
        neurites[i].append(axon)
        spans[i] = AISSpan(
            chain.ais_start_um, chain.ais_end_um, tuple(map(float, chain.pts[chain.ais_nodes[0]])),  # type: ignore[arg-type]
            tuple(map(float, chain.pts[chain.ais_nodes[1]])), chain.ais_clipped, True,  # type: ignore[arg-type]
        )

    entering: list[GrownNeuron] = []
    margin = neuron.soma_radius_um[1] + neuron.soma_half_length_um[1] + ais.soma_distance_um[1] + 2.0
    outer = Walker(
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
    obstacles = Obstacles(clearance_um=ais.clearance_um, max_radius_um=max_r)
    walker = Walker(rng=rng, box_lo=lo, box_hi=hi, obstacles=obstacles)
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
        register_walks(obstacles, chain.walks, neuron=i, piece=chain.piece)
        brightness = float(rng.uniform(*ais.stain_brightness))
        k0, k1 = chain.ais_nodes
        cut = crop_polyline(chain.pts[k0 : k1 + 1], chain.radii[k0 : k1 + 1], chain.path_um[k0 : k1 + 1],
                             box_lo, box_hi)
        if not cut:
            continue
        graph = forest_graph(cut, SWC_AXON, brightness=brightness)
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
                u = random_unit(rng)
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
    walker: Walker,
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
        w = random_unit(rng)
        if direction is not None:
            w = unit(direction + 0.6 * w)
            if float(np.dot(w, direction)) < 0.5:
                continue
        root = capsule_surface(c, u, h, r_soma, w)
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
    walker: Walker,
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
        u = random_unit(rng)
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
        cut = crop_polyline(chain.pts, chain.radii, chain.path_um, box_lo, box_hi)
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
    register_walks(obstacles, chain.walks, neuron=neuron_id, piece=chain.piece)
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
    graph = forest_graph(cut, SWC_AXON)
    soma = Soma(tuple(map(float, c - h * u)), tuple(map(float, c + h * u)), float(r))  # type: ignore[arg-type]
    return GrownNeuron("neuron", "entering_axon", graph, True, soma, span)


def _grow_passing_axon(
    walker: Walker,
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
        w = unit(inward + 0.8 * random_unit(rng))
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
    register_walks(obstacles, [(walk[0], walk[1])], neuron=neuron_id, piece=piece)
    return GrownNeuron("neuron", "passing_axon", path_graph(walk[0], walk[1], SWC_AXON), True)


def _grow_dendrite(
    walker: Walker,
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
        w = random_unit(rng)
        r0 = float(rng.uniform((r_lo + r_hi) / 2, r_hi))
        if any(float(np.dot(w, d)) > min_cos for d in dirs):
            continue
        root = capsule_surface(c, u, h, r_soma, w)
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
            e = unit(e)
            for sign in (1.0, -1.0):
                theta = float(rng.uniform(lo_a, hi_a))
                child = unit(math.cos(theta) * d_end + sign * math.sin(theta) * e)
                queue.append((prev, pts[-1], child, order + 1, radii[-1]))
    if g.number_of_nodes() < 2:
        return None
    register_walks(obstacles, walks, neuron=neuron_id, piece=piece)
    g.graph["clipped"] = clipped
    return g
