"""Procedural neurons grown in physical space (µm): somata, branching neurites, axons with an AIS.

Every neurite is a persistent random walk (a discretised worm-like chain): at each step of length
``h`` the direction gets a Gaussian kick perpendicular to itself with standard deviation
``sqrt(h / persistence_um)`` per component, so direction correlations decay as ``exp(-s / P)``.
Walks stop at the volume box (the last edge is cut at the face, and the object is marked ``clipped``)
and when they would come closer than ``clearance_um`` to the tube of another object, so instances
never cross or cut one another (only intended contacts remain: neurites and the proximal axon on
their own soma, the axon pieces on their AIS).

Instance scheme (one label each): per neuron a soma (capsule), one object per primary neurite (all
its branches), and, for neurons that get an AIS, a proximal axon (neurite), the AIS, and a distal
axon (neurite). AIS beyond ``n_neurons`` stand alone (their soma lies outside the stained set).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import networkx as nx
import numpy as np

from pipeline.errors import ConfigError
from pipeline.synth.geometry import clip_segment
from pipeline.synth.params import AISParams, NeuronParams

__all__ = ["GrownObject", "grow_neurons", "persistent_walk"]

# SWC structure types used for the procedural skeletons.
SWC_SOMA, SWC_AXON, SWC_DENDRITE = 1, 2, 3

_KIND_RANK = {"soma": 0, "dendrite": 1, "axon_proximal": 2, "ais": 3, "axon_distal": 4}


@dataclass(frozen=True, eq=False)
class GrownObject:
    """One procedural object before labelling.

    Attributes
    ----------
    kind : str
        ``"soma"``, ``"neurite"`` or ``"ais"``.
    name : str
        ``"soma"``, ``"dendrite"``, ``"axon_proximal"``, ``"ais"`` or ``"axon_distal"``.
    neuron : int
        Index of the neuron it belongs to; -1 for a standalone AIS.
    skeleton : networkx.Graph
        A tree, nodes ``0..n-1`` (0 is the root) with ``pos_um``, ``radius_um``, ``swc_type``.
    clipped : bool
        Whether the skeleton was cut at the volume border.
    """

    kind: str
    name: str
    neuron: int
    skeleton: nx.Graph
    clipped: bool


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
    neuron: NeuronParams,
    ais: AISParams,
    rng: np.random.Generator,
) -> list[GrownObject]:
    """Grow ``n_neurons`` neurons and ``n_ais`` axon initial segments inside the volume box.

    The box is the volume's physical extent, ``[-v/2, (n - 1/2) v]`` per axis (voxel centres at
    ``index * v``). Objects come out ordered neuron by neuron (soma, neurites, proximal axon, AIS,
    distal axon), standalone AIS last.

    Raises
    ------
    ConfigError
        (a ValueError) If the somata cannot be placed without overlapping (too many for the volume).
    """
    vs = np.asarray(voxel_size_um, float)
    box_lo = -vs / 2
    box_hi = (np.asarray(shape, float) - 0.5) * vs
    max_r = max(neuron.neurite_radius_um[1], ais.radius_um[1], ais.axon_radius_um[1])
    obstacles = _Obstacles(clearance_um=neuron.clearance_um, max_radius_um=max_r)
    walker = _Walker(rng=rng, box_lo=box_lo, box_hi=box_hi, obstacles=obstacles)
    out: list[tuple[tuple[int, int, int], GrownObject]] = []
    tmp_label = iter(range(1, 1 << 62))

    somata = _place_somata(n_neurons, neuron, box_lo, box_hi, rng)
    soma_labels = []
    for i, (c, u, h, r) in enumerate(somata):
        label = next(tmp_label)
        soma_labels.append(label)
        obstacles.add_soma(c - h * u, c + h * u, r, label)
        g = nx.Graph()
        g.add_node(0, pos_um=tuple(c - h * u), radius_um=float(r), swc_type=SWC_SOMA)
        g.add_node(1, pos_um=tuple(c + h * u), radius_um=float(r), swc_type=SWC_SOMA)
        g.add_edge(0, 1)
        out.append(((i, 0, len(out)), GrownObject("soma", "soma", i, g, False)))

    axon_dirs: dict[int, np.ndarray] = {}
    for i in range(min(n_ais, n_neurons)):
        chain = _grow_axon_chain(walker, somata[i], soma_labels[i], ais, tmp_label, rng)
        if chain is None:
            continue
        axon_dirs[i] = chain[0]
        for name, obj in chain[1]:
            out.append(((i, _KIND_RANK[name], len(out)), _with_neuron(obj, i)))
    for j in range(max(n_ais - n_neurons, 0)):
        obj = _grow_standalone_ais(walker, ais, tmp_label, box_lo, box_hi, rng)
        if obj is not None:
            out.append(((n_neurons + j, _KIND_RANK["ais"], len(out)), obj))

    for i, soma in enumerate(somata):
        n_dendrites = int(rng.integers(neuron.n_neurites[0], neuron.n_neurites[1] + 1))
        dirs = [axon_dirs[i]] if i in axon_dirs else []
        for _ in range(n_dendrites):
            obj = _grow_dendrite(walker, soma, soma_labels[i], neuron, dirs, tmp_label, rng)
            if obj is not None:
                out.append(((i, _KIND_RANK["dendrite"], len(out)), _with_neuron(obj, i)))

    out.sort(key=lambda item: item[0])
    return [obj for _, obj in out]


# --------------------------------------------------------------------------------------------------


def _with_neuron(obj: GrownObject, neuron_index: int) -> GrownObject:
    return GrownObject(obj.kind, obj.name, neuron_index, obj.skeleton, obj.clipped)


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


class _Obstacles:
    """Centreline points of committed objects in a uniform grid, plus soma capsules, for collision tests."""

    def __init__(self, *, clearance_um: float, max_radius_um: float) -> None:
        self.clearance = float(clearance_um)
        self.max_r = float(max_radius_um)
        self.cell = 2 * self.max_r + self.clearance + 1e-6
        self.grid: dict[tuple[int, int, int], list[int]] = {}
        self.pts = np.zeros((0, 3))
        self.rad = np.zeros(0)
        self.lab = np.zeros(0, dtype=np.int64)
        self._n = 0
        self.soma_a = np.zeros((0, 3))
        self.soma_b = np.zeros((0, 3))
        self.soma_r = np.zeros(0)
        self.soma_lab = np.zeros(0, dtype=np.int64)

    def add_soma(self, a: np.ndarray, b: np.ndarray, r: float, label: int) -> None:
        self.soma_a = np.vstack([self.soma_a, a])
        self.soma_b = np.vstack([self.soma_b, b])
        self.soma_r = np.append(self.soma_r, r)
        self.soma_lab = np.append(self.soma_lab, label)

    def add_points(self, pts: np.ndarray, radii: np.ndarray, label: int) -> None:
        pts = np.asarray(pts, float).reshape(-1, 3)
        n = len(pts)
        if self._n + n > len(self.pts):
            cap = max(2 * len(self.pts), self._n + n, 1024)
            grown = {"pts": np.zeros((cap, 3)), "rad": np.zeros(cap), "lab": np.zeros(cap, np.int64)}
            for name, fill in grown.items():
                fill[: self._n] = getattr(self, name)[: self._n]
                setattr(self, name, fill)
        self.pts[self._n : self._n + n] = pts
        self.rad[self._n : self._n + n] = radii
        self.lab[self._n : self._n + n] = label
        keys = np.floor(pts / self.cell).astype(np.int64)
        for k, key in enumerate(map(tuple, keys.tolist())):
            self.grid.setdefault(key, []).append(self._n + k)
        self._n += n

    def hits(self, p: np.ndarray, r: float, exempt: Sequence[int]) -> bool:
        if len(self.soma_r):
            d = _point_segment_distance(p, self.soma_a, self.soma_b)
            bad = d < self.soma_r + r + self.clearance
            if bad.any() and not np.all(np.isin(self.soma_lab[bad], exempt)):
                return True
        if self._n == 0:
            return False
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
            return False
        ii = np.asarray(idx)
        d2 = np.sum((self.pts[ii] - p) ** 2, axis=1)
        bad = d2 < (self.rad[ii] + r + self.clearance) ** 2
        if not bad.any():
            return False
        return not np.all(np.isin(self.lab[ii][bad], exempt))


class _Walker:
    """Grows persistent random walks inside a box, stopping at obstacles."""

    def __init__(
        self,
        *,
        rng: np.random.Generator,
        box_lo: np.ndarray | None,
        box_hi: np.ndarray | None,
        obstacles: _Obstacles | None,
    ) -> None:
        self.rng = rng
        self.lo = box_lo
        self.hi = box_hi
        self.obstacles = obstacles

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
        exempt: Sequence[int],
        own_soma: tuple[np.ndarray, np.ndarray, float] | None = None,
    ) -> tuple[list[np.ndarray], list[float], np.ndarray, str]:
        """Walk from ``start``; returns (points incl. start, radii, last direction, stop reason).

        The reason is ``"done"`` (full length), ``"border"`` (cut at the box face),
        ``"collision"`` (next node would touch another object) or ``"soma"`` (would re-enter the own soma).
        """
        pts = [start]
        radii = [r_start]
        if length_um <= 0:
            return pts, radii, direction, "done"
        n_steps = max(1, math.ceil(length_um / step_um - 1e-9))
        h = length_um / n_steps
        sigma = math.sqrt(h / persistence_um)
        p, d = start, direction
        for k in range(n_steps):
            kick = self.rng.normal(size=3) * sigma
            kick -= np.dot(kick, d) * d
            d = _unit(d + kick)
            q = p + h * d
            r = r_start + (r_end - r_start) * (k + 1) / n_steps
            if not self.inside(q):
                interval = clip_segment(p, q, self.lo, self.hi)  # type: ignore[arg-type]
                t1 = 0.0 if interval is None else interval[1]
                if t1 * h > 1e-6:
                    pts.append(p + t1 * (q - p))
                    radii.append(r_start + (r_end - r_start) * (k + t1) / n_steps)
                return pts, radii, d, "border"
            if self.obstacles is not None and self.obstacles.hits(q, r, exempt):
                return pts, radii, d, "collision"
            if own_soma is not None:
                a, b, min_dist = own_soma
                if float(_point_segment_distance(q, a[None], b[None])[0]) < min_dist:
                    return pts, radii, d, "soma"
            pts.append(q)
            radii.append(r)
            p = q
        return pts, radii, d, "done"


def _path_graph(pts: Sequence[np.ndarray], radii: Sequence[float], swc_type: int) -> nx.Graph:
    g = nx.Graph()
    for k, (p, r) in enumerate(zip(pts, radii, strict=True)):
        g.add_node(k, pos_um=tuple(float(x) for x in p), radius_um=float(r), swc_type=swc_type)
        if k:
            g.add_edge(k - 1, k)
    return g


def _place_somata(
    n: int, params: NeuronParams, lo: np.ndarray, hi: np.ndarray, rng: np.random.Generator
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
        f"n_neurons={n}: could place only {placed} somata (radius up to {params.soma_radius_um[1]} µm) "
        f"without overlap in a volume of {tuple(round(float(e), 1) for e in extent)} µm (z, y, x); "
        "reduce n_neurons (synth.n_neurons, or NEURORECON__SYNTH__N_NEURONS) or enlarge shape"
    )


def _grow_axon_chain(
    walker: _Walker,
    soma: tuple[np.ndarray, np.ndarray, float, float],
    soma_label: int,
    params: AISParams,
    tmp_label,
    rng: np.random.Generator,
) -> tuple[np.ndarray, list[tuple[str, GrownObject]]] | None:
    """Proximal axon + AIS + distal axon from a soma; None if no AIS could be placed."""
    c, u, h, r_soma = soma
    a, b = c - h * u, c + h * u
    prox_label, ais_label, distal_label = next(tmp_label), next(tmp_label), next(tmp_label)
    obstacles = walker.obstacles
    assert obstacles is not None
    best = None
    for _ in range(50):
        w = _random_unit(rng)
        root = _capsule_surface(c, u, h, r_soma, w)
        len0 = float(rng.uniform(*params.soma_distance_um))
        r_axon = float(rng.uniform(*params.axon_radius_um))
        len_ais = float(rng.uniform(*params.length_um))
        r_ais = float(rng.uniform(*params.radius_um))
        if not walker.inside(root) or obstacles.hits(root, r_axon, (soma_label,)):
            continue
        prox = walker.run(
            root, w, length_um=len0, step_um=params.step_um, persistence_um=params.persistence_um,
            r_start=r_axon, r_end=r_axon, exempt=(soma_label, prox_label), own_soma=(a, b, r_soma),
        )
        if prox[3] != "done":
            continue
        start, d0 = prox[0][-1], prox[2]
        ais_walk = walker.run(
            start, d0, length_um=len_ais, step_um=params.step_um, persistence_um=params.persistence_um,
            r_start=r_ais, r_end=r_ais, exempt=(soma_label, prox_label, ais_label), own_soma=(a, b, r_soma),
        )
        if ais_walk[3] == "done":
            best = (w, prox, ais_walk, r_axon)
            break
        if ais_walk[3] == "border" and len(ais_walk[0]) > 1:
            achieved = len(ais_walk[0])
            if best is None or achieved > len(best[2][0]):
                best = (w, prox, ais_walk, r_axon)
    if best is None:
        return None
    w, prox, ais_walk, r_axon = best
    pieces: list[tuple[str, GrownObject]] = []
    if len(prox[0]) > 1:
        g = _path_graph(prox[0], prox[1], SWC_AXON)
        pieces.append(("axon_proximal", GrownObject("neurite", "axon_proximal", -1, g, False)))
        obstacles.add_points(np.asarray(prox[0]), np.asarray(prox[1]), prox_label)
    g = _path_graph(ais_walk[0], ais_walk[1], SWC_AXON)
    ais_clipped = ais_walk[3] == "border"
    pieces.append(("ais", GrownObject("ais", "ais", -1, g, ais_clipped)))
    obstacles.add_points(np.asarray(ais_walk[0]), np.asarray(ais_walk[1]), ais_label)
    if not ais_clipped:
        len_d = float(rng.uniform(*params.distal_axon_length_um))
        distal = walker.run(
            ais_walk[0][-1], ais_walk[2], length_um=len_d, step_um=params.step_um,
            persistence_um=params.persistence_um, r_start=r_axon, r_end=r_axon,
            exempt=(ais_label, distal_label),
        )
        if len(distal[0]) > 1:
            g = _path_graph(distal[0], distal[1], SWC_AXON)
            obj = GrownObject("neurite", "axon_distal", -1, g, distal[3] == "border")
            pieces.append(("axon_distal", obj))
            obstacles.add_points(np.asarray(distal[0]), np.asarray(distal[1]), distal_label)
    return w, pieces


def _grow_standalone_ais(
    walker: _Walker,
    params: AISParams,
    tmp_label,
    lo: np.ndarray,
    hi: np.ndarray,
    rng: np.random.Generator,
) -> GrownObject | None:
    label = next(tmp_label)
    extent = hi - lo
    margin = np.minimum(5.0, extent / 2)
    best = None
    obstacles = walker.obstacles
    assert obstacles is not None
    for _ in range(50):
        start = lo + margin + rng.random(3) * (extent - 2 * margin)
        w = _random_unit(rng)
        length = float(rng.uniform(*params.length_um))
        r = float(rng.uniform(*params.radius_um))
        if obstacles.hits(start, r, (label,)):
            continue
        res = walker.run(
            start, w, length_um=length, step_um=params.step_um, persistence_um=params.persistence_um,
            r_start=r, r_end=r, exempt=(label,),
        )
        if res[3] == "done":
            best = res
            break
        if res[3] == "border" and len(res[0]) > 1 and (best is None or len(res[0]) > len(best[0])):
            best = res
    if best is None:
        return None
    obstacles.add_points(np.asarray(best[0]), np.asarray(best[1]), label)
    g = _path_graph(best[0], best[1], SWC_AXON)
    return GrownObject("ais", "ais", -1, g, best[3] == "border")


def _grow_dendrite(
    walker: _Walker,
    soma: tuple[np.ndarray, np.ndarray, float, float],
    soma_label: int,
    params: NeuronParams,
    dirs: list[np.ndarray],
    tmp_label,
    rng: np.random.Generator,
) -> GrownObject | None:
    """One primary neurite with its branches, or None if no free start direction was found."""
    c, u, h, r_soma = soma
    a, b = c - h * u, c + h * u
    label = next(tmp_label)
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
        if walker.inside(root) and not obstacles.hits(root, r0, (soma_label, label)):
            break
    else:
        return None
    dirs.append(w)
    g = nx.Graph()
    g.add_node(0, pos_um=tuple(float(x) for x in root), radius_um=r0, swc_type=SWC_DENDRITE)
    queue = [(0, root, w, 0, r0)]
    clipped = False
    lo_a, hi_a = (math.radians(x) for x in params.branch_angle_deg)
    while queue:
        node, start, d, order, r_start = queue.pop(0)
        length = float(rng.uniform(*params.branch_length_um))
        r_end = max(r_lo, r_start * params.taper)
        pts, radii, d_end, reason = walker.run(
            start, d, length_um=length, step_um=params.step_um, persistence_um=params.persistence_um,
            r_start=r_start, r_end=r_end, exempt=(soma_label, label), own_soma=(a, b, r_soma),
        )
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
    pts_all = np.array([g.nodes[n]["pos_um"] for n in g.nodes])
    obstacles.add_points(pts_all, np.array([g.nodes[n]["radius_um"] for n in g.nodes]), label)
    return GrownObject("neurite", "dendrite", -1, g, clipped)
