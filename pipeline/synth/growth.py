"""Growing neurites among other neurons: obstacles with a clearance, contacts that fasciculate or cross.

Every neurite is a persistent random walk (a discretised worm-like chain, :class:`Walker`): at each
step of length ``h`` the direction gets a Gaussian kick perpendicular to itself with standard
deviation ``sqrt(h / persistence_um)`` per component, so direction correlations decay as
``exp(-s / P)``. Walks stop at the box they grow in (the last edge is cut at the face).

Contacts
--------
Everything grown so far is an obstacle (:class:`Obstacles`). A walk whose next node comes within
``clearance_um + contact_range_um`` (surface to surface, tested at the obstacle's nodes) of an
unbranched stretch of *another* neuron's neurite **meets** it (once per stretch), and then
(:class:`Contacts`)

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
neuron, stops (self-avoidance).

What is grown where (somata, axons with their AIS, dendrites) is :mod:`pipeline.synth.neurons`;
turning the walks into skeleton graphs is :mod:`pipeline.synth.polylines`.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.synth.geometry import clip_segment

__all__ = [
    "Contacts",
    "Obstacles",
    "Walker",
    "capsule_surface",
    "persistent_walk",
    "random_unit",
    "register_walks",
    "unit",
]

#: Smallest angle between a crossing neurite and the one it crosses, and the departure angle of a fascicle.
_CROSSING_MIN_ANGLE = math.radians(30.0)
_DEPARTURE_ANGLE = math.radians(25.0)
#: How much closer than the clearance a fascicle or crossing may come to the neurite it follows or
#: crosses (where that neurite curves) before it stops, µm.
_WINDOW_TOLERANCE_UM = 0.25


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
    walk = Walker(rng=rng, box_lo=None, box_hi=None, obstacles=None)
    pts, _, _, _ = walk.run(
        np.asarray(start_um, float), unit(np.asarray(direction, float)), length_um=length_um,
        step_um=step_um, persistence_um=persistence_um, r_start=1.0, r_end=1.0, exempt=(),
    )
    return np.asarray(pts)


def unit(v: np.ndarray) -> np.ndarray:
    """v scaled to unit length; ValueError if v is zero."""
    n = float(np.sqrt(np.dot(v, v)))
    if n == 0.0:
        raise ValueError("direction must be a non-zero vector")
    return v / n


def random_unit(rng: np.random.Generator) -> np.ndarray:
    """A unit vector drawn uniformly from the sphere."""
    while True:
        v = rng.normal(size=3)
        n = float(np.sqrt(np.dot(v, v)))
        if n > 1e-9:
            return v / n


def _perpendicular(v: np.ndarray) -> np.ndarray:
    """A unit vector perpendicular to the unit vector v (deterministic)."""
    axis = np.zeros(3)
    axis[int(np.argmin(np.abs(v)))] = 1.0
    return unit(np.cross(v, axis))


def _point_segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distances from p (3,) to segments a (n, 3) -> b (n, 3)."""
    d = b - a
    l2 = np.sum(d * d, axis=-1)
    t = np.where(l2 > 0, np.sum((p - a) * d, axis=-1) / np.where(l2 > 0, l2, 1.0), 0.0)
    t = np.clip(t, 0.0, 1.0)
    q = a + t[..., None] * d
    return np.sqrt(np.sum((p - q) ** 2, axis=-1))


def capsule_surface(c: np.ndarray, u: np.ndarray, h: float, r: float, w: np.ndarray) -> np.ndarray:
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
    path: int  # index into Obstacles.paths (-1 for a soma)
    index: int  # node index within that path
    gap: float  # surface-to-surface distance (negative: overlap), µm


@dataclass(frozen=True)
class _Window:
    """Nodes of one path, between two arc lengths, that a fascicle or crossing may come close to."""

    path: int
    lo_um: float
    hi_um: float


class Obstacles:
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
        """Add the soma capsule of axis a -- b and radius r."""
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
        """Add one walk (an unbranched polyline: its nodes and their radii)."""
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
        tangent = unit(b - a) if np.any(b != a) else _perpendicular(np.array([1.0, 0.0, 0.0]))
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
        tangent = unit(b - a) if np.any(b != a) else _perpendicular(np.array([1.0, 0.0, 0.0]))
        return a + t * (b - a), tangent, float(radii[j] + t * (radii[j + 1] - radii[j]))


def register_walks(
    obstacles: Obstacles, walks: Sequence[tuple[Sequence, Sequence]], *, neuron: int, piece: int
) -> None:
    """Add the walks ((points, radii) each) with at least one edge to the obstacles."""
    for pts, radii in walks:
        if len(pts) > 1:
            obstacles.add_path(np.asarray(pts), np.asarray(radii), neuron=neuron, piece=piece)


@dataclass(frozen=True)
class Contacts:
    """What a walk does on meeting another neuron's neurite (see the module docstring)."""

    fasciculation_probability: float
    crossing_probability: float
    fasciculation_length_um: tuple[float, float]


@dataclass
class _Plan:
    """Forced next nodes of a walk (a fascicle or a crossing) and the stretch of neurite it may approach."""

    nodes: list[np.ndarray]
    direction_after: np.ndarray
    window: _Window


class Walker:
    """Grows persistent random walks inside a box; meets obstacles as the module docstring says.

    ``box_lo``, ``box_hi`` and ``obstacles`` may be None (no box, no obstacles). Without
    ``contacts`` a walk never fasciculates or crosses: it carries on past other neurons'
    neurites and stops within the clearance.
    """

    def __init__(
        self,
        *,
        rng: np.random.Generator,
        box_lo: np.ndarray | None,
        box_hi: np.ndarray | None,
        obstacles: Obstacles | None,
        contacts: Contacts | None = None,
    ) -> None:
        self.rng = rng
        self.lo = box_lo
        self.hi = box_hi
        self.obstacles = obstacles
        self.contacts = contacts

    def inside(self, p: np.ndarray) -> bool:
        """Whether p lies in the box (always, without one)."""
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
                d_new = plan.direction_after if not plan.nodes else (unit(q - p) if np.any(q != p) else d)
            else:
                kick = self.rng.normal(size=3) * sigma
                kick -= np.dot(kick, d) * d
                d_new = unit(d + kick)
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
            e = unit(np.cross(m, tau))
            s_e = float(np.dot(n_hat, e))  # p's offset from the guide along e, per unit dp
            a0, b0 = float(np.dot(d, tau)), float(np.dot(d, e))
            want = -1.0 if s_e > 1e-12 else (1.0 if s_e < -1e-12 else (1.0 if b0 >= 0 else -1.0))
            b0 = want * abs(b0)
            norm = math.hypot(a0, b0)
            a0, b0 = (a0 / norm, b0 / norm) if norm > 1e-9 else (0.0, want)
            if abs(b0) < min_sin:
                b0 = want * min_sin
                a0 = math.copysign(math.cos(_CROSSING_MIN_ANGLE), a0)
            d_new = unit(a0 * tau + b0 * e)
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
            n_hat = unit(n_hat) if float(np.linalg.norm(n_hat)) > 1e-9 else _perpendicular(tangent)
            target = r_at(k + j) + radius_other + obstacles.clearance
            excess = max(dist0 - target, 0.0) * max(0.0, 1.0 - j / n_approach)
            nodes.append(gj + (target + excess) * n_hat)
        d_out = unit(math.cos(_DEPARTURE_ANGLE) * tangent + math.sin(_DEPARTURE_ANGLE) * n_hat)
        gap = 2 * (r_at(k + n_follow) + radius_other) + obstacles.clearance + obstacles.range + 2 * h
        n_depart = math.ceil(gap / (h * math.sin(_DEPARTURE_ANGLE)))
        last = nodes[-1]
        nodes += [last + (j * h) * d_out for j in range(1, n_depart + 1)]
        s1 = s0 + sign * (n_follow * h + n_depart * h * math.cos(_DEPARTURE_ANGLE))
        margin = 2 * (r_at(k) + radius_other) + obstacles.clearance + obstacles.range + 2 * h
        return _Plan(nodes, d_out, _Window(hit.path, min(s0, s1) - margin, max(s0, s1) + margin))
