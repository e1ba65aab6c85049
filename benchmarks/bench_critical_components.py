"""Benchmark ``pipeline.topology.critical_components`` against one cc3d pass and the slow BFS reference.

Run from the repository root::

    .venv/bin/python benchmarks/bench_critical_components.py

Cases: (a) a 512x512 ISBI12 label slice with a seeded, perturbed prediction (skipped, with a message, when
../shared/data is absent); (b, c) 128^3 and 256^3 synthetic tube volumes whose prediction has seeded breaks,
bridges, missing and spurious pieces and boundary noise, as binary masks and as instance labels. Times are
medians of repeated runs on a shared machine; the BFS reference is timed once, on a crop when the whole
input would take minutes, and extrapolated per voxel (the table says so). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import cc3d
import numpy as np
from scipy import ndimage

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from pipeline.topology import critical_components  # noqa: E402
from tests.pipeline.topology.reference import neighbours, reference_critical_components  # noqa: E402

SHARED_DATA = Path(os.environ.get("NEURORECON_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
ISBI_LABEL = SHARED_DATA / "isbi12" / "train" / "label" / "0.png"
PAPER_SECONDS_512 = 1.41  # the supervoxel paper, Figure 3: one 512x512 ISBI12 image
REFERENCE_BUDGET_VOXELS = 300_000  # the BFS reference runs whole below this size, on a crop above it


@dataclass(frozen=True)
class Case:
    name: str
    pred: np.ndarray
    target: np.ndarray
    connectivity: int


# ------------------------------------------------------------------------------------------------------
# Inputs


def ball_offsets(radius: float, ndim: int) -> np.ndarray:
    """Integer offsets of a digital ball (disc in 2-D) of ``radius`` voxels."""
    r = int(np.ceil(radius))
    grid = np.stack(np.meshgrid(*[np.arange(-r, r + 1)] * ndim, indexing="ij"), -1).reshape(-1, ndim)
    return grid[(grid**2).sum(1) <= radius**2]


def ball_points(shape: tuple[int, ...], centres: np.ndarray, radius: float) -> tuple[np.ndarray, ...]:
    """Index arrays of the voxels within ``radius`` of integer ``centres`` (N, ndim), clipped to ``shape``."""
    ndim = len(shape)
    pts = (centres[:, None, :] + ball_offsets(radius, ndim)[None]).reshape(-1, ndim)
    pts = pts[((pts >= 0) & (pts < np.array(shape))).all(1)]
    return tuple(pts.T)


def paint(mask: np.ndarray, centres: np.ndarray, radius: float, value: bool) -> None:
    """Set balls of ``radius`` around integer ``centres`` (N, ndim) to ``value``, clipped to the array."""
    if len(centres):
        mask[ball_points(mask.shape, centres, radius)] = value


def segment_points(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    n = int(np.ceil(np.abs(b - a).max())) * 2 + 1
    return np.rint(a + np.linspace(0, 1, n)[:, None] * (b - a)).astype(np.int64)


def isbi_case(rng: np.random.Generator) -> Case | None:
    """ISBI12 slice 0 (255 = cell interior) and a prediction with eroded/dilated discs and cut membranes."""
    if not ISBI_LABEL.exists():
        return None
    from PIL import Image

    target = np.asarray(Image.open(ISBI_LABEL)) == 255
    pred = target.copy()
    membrane = np.argwhere(~target)
    interior = np.argwhere(target)
    # boundary noise: small discs of membrane eroded away or grown
    paint(pred, membrane[rng.choice(len(membrane), 300)], 2.0, True)
    paint(pred, membrane[rng.choice(len(membrane), 300)], 2.5, False)
    # cut membranes (merges: false positives); draw spurious membranes across cells (splits: false negatives)
    for centre in membrane[rng.choice(len(membrane), 25)]:
        paint(pred, centre[None], 4.0, True)
    for centre in interior[rng.choice(len(interior), 25)]:
        d = rng.normal(size=2)
        d /= np.linalg.norm(d)
        pts = segment_points(centre - 12 * d, centre + 12 * d)
        paint(pred, pts, 1.0, False)
    return Case("ISBI12 512² (binary)", pred, target, 4)


def tube_volumes(shape: tuple[int, int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Instance labels of random smooth tubes (radius 2-3.5 voxels) and of a perturbed prediction.

    The prediction has seeded breaks (negatively critical), bridges between nearby tubes (positively
    critical), a missing tube, spurious blobs and boundary noise (mostly not critical); its instance labels
    are its 26-connected components, as a segmentation's would be.
    """
    size = np.array(shape)
    n_tubes = int(60 * (size.prod() / 128**3) ** (2 / 3))  # a constant foreground fraction
    target = np.zeros(shape, np.uint16)
    centrelines = []
    for label in range(1, n_tubes + 1):
        pos = rng.random(3) * size
        direction = rng.normal(size=3)
        pts = []
        for _ in range(int(2 * size.max())):
            direction = direction / np.linalg.norm(direction) + 0.15 * rng.normal(size=3)
            pos = pos + 0.7 * direction / np.linalg.norm(direction)
            if ((pos < 0) | (pos >= size)).any():
                break
            pts.append(pos.copy())
        if len(pts) < 10:
            continue
        line = np.unique(np.floor(pts).astype(np.int64), axis=0)
        radius = rng.uniform(2.0, 3.5)
        voxels = ball_points(shape, line, radius)
        free = target[voxels] == 0
        target[tuple(v[free] for v in voxels)] = label
        centrelines.append((label, line, radius))

    mask = target > 0
    pred = mask.copy()
    missing_label = centrelines[0][0]
    pred[target == missing_label] = False
    for _, line, radius in centrelines[1:]:
        for centre in line[rng.choice(len(line), min(len(line), 2), replace=False)]:
            paint(pred, centre[None], radius + 1.5, False)  # a break
    all_points = np.concatenate([line for _, line, _ in centrelines[1:]])
    owner = np.concatenate([np.full(len(line), label) for label, line, _ in centrelines[1:]])
    for _ in range(max(4, n_tubes // 3)):  # bridges between different nearby tubes
        i = rng.integers(len(all_points))
        dist = np.abs(all_points - all_points[i]).max(1)
        near = np.flatnonzero((dist > 6) & (dist < 16) & (owner != owner[i]))
        if near.size:
            paint(pred, segment_points(all_points[i], all_points[rng.choice(near)]), 1.0, True)
    paint(pred, (rng.random((n_tubes // 2, 3)) * size).astype(np.int64), 2.0, True)  # spurious blobs
    surface = np.argwhere(mask & ~ndimage.binary_erosion(mask))
    paint(pred, surface[rng.choice(len(surface), len(surface) // 50)], 1.5, True)
    paint(pred, surface[rng.choice(len(surface), len(surface) // 50)], 1.5, False)
    pred_labels = cc3d.connected_components(pred, connectivity=26).astype(np.uint32)
    return target, pred_labels


def tube_cases(shape: tuple[int, int, int], rng: np.random.Generator) -> list[Case]:
    target, pred = tube_volumes(shape, rng)
    side = "x".join(map(str, shape))
    return [
        Case(f"tubes {side} (binary)", pred > 0, target > 0, 26),
        Case(f"tubes {side} (instances)", pred, target, 26),
    ]


# ------------------------------------------------------------------------------------------------------
# Timing


def median_seconds(fns: list[Callable[[], object]], repeats: int) -> list[float]:
    """Median wall time of each function, calls interleaved so that load from other processes hits all alike."""
    for fn in fns:
        fn()  # warm-up
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, record in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            record.append(time.perf_counter() - start)
    return [statistics.median(record) for record in times]


def centre_crop(a: np.ndarray, n_voxels: int) -> np.ndarray:
    side = int(n_voxels ** (1 / a.ndim))
    sl = tuple(slice(max(0, (s - side) // 2), max(0, (s - side) // 2) + min(s, side)) for s in a.shape)
    return a[sl]


def reference_seconds(case: Case) -> tuple[float, str]:
    """Seconds of the BFS reference on the whole input, or extrapolated per voxel from a centred crop."""
    pred, target, note = case.pred, case.target, "whole"
    if target.size > REFERENCE_BUDGET_VOXELS:
        pred = centre_crop(pred, REFERENCE_BUDGET_VOXELS)
        target = centre_crop(target, REFERENCE_BUDGET_VOXELS)
        note = f"crop {'×'.join(map(str, target.shape))}, ×{case.target.size / target.size:.1f} per voxel"
    neighbours.cache_clear()  # the neighbour table is part of the reference's work
    start = time.perf_counter()
    reference_critical_components(pred, target, connectivity=case.connectivity)
    seconds = time.perf_counter() - start
    neighbours.cache_clear()
    return seconds * case.target.size / target.size, note


def run(case: Case, repeats: int) -> dict[str, object]:
    ours, one_pass = median_seconds(
        [
            lambda: critical_components(case.pred, case.target, connectivity=case.connectivity),
            lambda: cc3d.connected_components(case.target, connectivity=case.connectivity),
        ],
        repeats,
    )
    cc = critical_components(case.pred, case.target, connectivity=case.connectivity)
    fn = int(((case.target != 0) & (case.pred == 0)).sum())
    fp = int(((case.pred != 0) & (case.target == 0)).sum())
    ref, note = reference_seconds(case)
    return {
        "case": case.name,
        "conn": case.connectivity,
        "mistakes": f"{fn + fp:,} ({100 * (fn + fp) / case.target.size:.2f}%)",
        "critical": f"{int(cc.negative.sum()):,} / {int(cc.positive.sum()):,}",
        "ours": ours,
        "cc3d": one_pass,
        "ref": ref,
        "note": note,
    }


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def table(rows: list[dict[str, object]]) -> str:
    head = (
        "| case | conn. | mistaken voxels | critical voxels (neg / pos) | ours (ms) | one cc3d pass (ms) "
        "| ours / cc3d | BFS reference (s) | vs BFS | vs paper's 1.41 s |"
    )
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        ours, one, ref = float(r["ours"]), float(r["cc3d"]), float(r["ref"])
        paper = f"{PAPER_SECONDS_512 / ours:,.0f}×" if "512" in str(r["case"]) else "–"
        ref_text = f"{ref:,.1f}" + ("" if r["note"] == "whole" else f" ({r['note']})")
        lines.append(
            f"| {r['case']} | {r['conn']} | {r['mistakes']} | {r['critical']} | {1e3 * ours:.1f} | "
            f"{1e3 * one:.1f} | {ours / one:.2f}× | {ref_text} | {ref / ours:,.0f}× | {paper} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11, help="timed runs per case (median reported)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)

    cases: list[Case] = []
    isbi = isbi_case(rng)
    if isbi is None:
        print(f"skipping the ISBI12 case: {ISBI_LABEL} not found (set NEURORECON_SHARED_DATA)")
    else:
        cases.append(isbi)
    cases += tube_cases((128, 128, 128), rng)
    cases += tube_cases((256, 256, 256), rng)

    rows = []
    for case in cases:
        rows.append(run(case, args.repeats))
        print(f"done: {case.name}", file=sys.stderr, flush=True)
    print(
        f"{cpu_name()}, {os.cpu_count()} CPUs shared with other jobs; "
        f"numpy {np.__version__}, cc3d {version('connected-components-3d')}; median of {args.repeats} "
        "interleaved runs\n"
    )
    print(table(rows))


if __name__ == "__main__":
    main()
