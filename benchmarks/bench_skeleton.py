"""Block-wise skeletonization benchmarks (issue 6).

(a) throughput: :func:`pipeline.skeleton.blockwise.skeletonize_blocks` (serial, in this process) vs one
    ``kimimaro.skeletonize`` call on the same whole volume with the same TEASAR parameters (target
    <= 1.2x its time), on a light-sheet phantom and on a crop of the real EM segmentation
    (../shared/data/em/connectomics.npy.ckl.gz, 16 x 16 x 40 nm);
(b) agreement: per-object total cable length, block-wise vs whole volume (median and 95th percentile
    of the relative difference, fraction within 2 %), next to the same numbers for the whole volume
    against the whole volume mirrored along x: TEASAR's own sensitivity to where it starts, the floor
    any block-wise scheme is measured against. For the phantom also the smoothed cable of the AIS and
    neurites inside the volume, as ``lengths.csv`` reports it.

    python benchmarks/bench_skeleton.py                  # phantom 64x512x512 and EM crop 256^3
    python benchmarks/bench_skeleton.py --em-crop 128    # faster
    python benchmarks/bench_skeleton.py --skip-em        # phantom only
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
EM = (
    Path(os.environ.get("NEURORECON_SHARED_DATA", REPO.parent / "shared" / "data"))
    / "em"
    / "connectomics.npy.ckl.gz"
)


def whole_volume(labels: np.ndarray, vs, params) -> tuple[dict, float, dict]:
    """One kimimaro.skeletonize call as skeletonize_blocks makes it per block (µm, fix_borders).

    Returns cable per label (µm), seconds, and the skeletons as graphs.
    """
    import kimimaro

    from pipeline.skeleton import skeleton_to_graph

    start = time.perf_counter()
    skeletons = kimimaro.skeletonize(
        labels,
        teasar_params=params.kimimaro(),
        anisotropy=vs,
        dust_threshold=0,
        progress=False,
        fix_branching=params.fix_branching,
        fix_borders=True,
        parallel=1,
        in_place=False,
    )
    seconds = time.perf_counter() - start
    graphs = {int(k): skeleton_to_graph(s, label=int(k)) for k, s in skeletons.items()}
    return {int(k): float(s.cable_length()) for k, s in skeletons.items()}, seconds, graphs


def block_wise(labels: np.ndarray, vs, params, block_shape, halo_um) -> tuple[dict, float, dict]:
    from pipeline.skeleton import cable_length_um
    from pipeline.skeleton.blockwise import skeletonize_blocks

    start = time.perf_counter()
    graphs = skeletonize_blocks(
        labels.__getitem__,
        shape=labels.shape,
        voxel_size_um=vs,
        block_shape=block_shape,
        halo_um=halo_um,
        params=params,
    )
    seconds = time.perf_counter() - start
    return {k: cable_length_um(g) for k, g in graphs.items()}, seconds, graphs


def interleaved(fns: list, repeats: int) -> list[tuple]:
    """Call each of ``fns`` in turn, ``repeats`` rounds (so load from other processes hits all alike).

    Returns, per function, its result with the smallest time (its second item) and all its times.
    """
    runs: list[list] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, out in zip(fns, runs, strict=True):
            out.append(fn())
    return [(min(out, key=lambda r: r[1]), [r[1] for r in out]) for out in runs]


def smoothed_cable(graphs: dict, labels: set, sigma_um: float) -> dict:
    from pipeline.skeleton import cable_length_um, smooth_skeleton

    return {
        k: cable_length_um(smooth_skeleton(g, sigma_um=sigma_um)) for k, g in graphs.items() if k in labels
    }


def agreement(test: dict, reference: dict, min_cable_um: float = 0.0, only: set | None = None) -> dict:
    labels = [k for k, v in reference.items() if v > 0 and v >= min_cable_um and (only is None or k in only)]
    rel = np.array([abs(test.get(k, 0.0) - reference[k]) / reference[k] for k in labels])
    if len(rel) == 0:
        return {"n": 0, "median": float("nan"), "p95": float("nan"), "within": float("nan"),
                "max": float("nan"), "identical": float("nan")}
    return {
        "n": len(rel),
        "median": float(np.median(rel)) * 100,
        "p95": float(np.percentile(rel, 95)) * 100,
        "max": float(rel.max()) * 100,
        "within": float(np.mean(rel <= 0.02)) * 100,
        "identical": float(np.mean(rel <= 1e-6)) * 100,
    }


def categories(labels: np.ndarray, vs, block_shape, halo_um) -> dict[str, set]:
    """Objects inside the volume in one block or skeletonized in one piece / fused from blocks; on the border."""
    from pipeline.skeleton import block_labels, label_statistics, plan_one_piece, skeleton_grid

    grid = skeleton_grid(labels.shape, block_shape=block_shape, voxel_size_um=vs, halo_um=halo_um)
    stats = label_statistics([block_labels(labels[b.write], block=b) for b in grid], volume_shape=labels.shape)
    one = {int(k) for k in plan_one_piece(stats, grid).labels} | {k for k, n in stats.n_blocks.items() if n == 1}
    inside = set(stats.n_voxels) - stats.border_labels
    return {"one": inside & one, "fused": inside - one, "border": set(stats.border_labels)}


def run_case(
    name, labels, vs, params, block_shapes, halo_um, min_cable_um, thin_interior=None, repeats=1
) -> list[dict]:
    """Time and compare one volume; ``thin_interior`` (labels) adds the smoothed-cable row;
    ``repeats`` interleaved runs of each (several for sub-second runs)."""
    fns = [lambda: whole_volume(labels, vs, params)]
    fns += [lambda b=b: block_wise(labels, vs, params, b, halo_um) for b in block_shapes]
    results = interleaved(fns, repeats)
    (whole, t_whole, whole_graphs), whole_times = results[0]
    floor, _, floor_graphs = whole_volume(np.ascontiguousarray(labels[:, :, ::-1]), vs, params)
    rows = []
    for block_shape, ((cables, t_block, graphs), block_times) in zip(block_shapes, results[1:], strict=True):
        row = {
            "case": name,
            "shape": labels.shape,
            "block": tuple(block_shape),
            "halo_um": halo_um,
            "t_whole": t_whole,
            "t_block": t_block,
            "t_whole_median": float(np.median(whole_times)),
            "t_block_median": float(np.median(block_times)),
            "n_objects": len(whole),
            "repeats": repeats,
            "all": agreement(cables, whole),
            "long": agreement(cables, whole, min_cable_um),
            "floor_all": agreement(floor, whole),
            "floor_long": agreement(floor, whole, min_cable_um),
            "min_cable_um": min_cable_um,
        }
        cats = categories(labels, vs, block_shape, halo_um)
        for key, members in cats.items():
            row[f"cat_{key}"] = agreement(cables, whole, only=members)
            row[f"floor_cat_{key}"] = agreement(floor, whole, only=members)
        if thin_interior is not None:  # smoothing the large EM skeletons takes minutes: phantom only
            sigma = max(1.0, *vs)
            row["cat_fused_smoothed"] = agreement(
                smoothed_cable(graphs, cats["fused"], sigma), smoothed_cable(whole_graphs, cats["fused"], sigma)
            )
        if thin_interior is not None:
            sigma = max(1.0, *vs)
            reference = smoothed_cable(whole_graphs, thin_interior, sigma)
            row["thin"] = agreement(smoothed_cable(graphs, thin_interior, sigma), reference, min_cable_um)
            row["floor_thin"] = agreement(
                smoothed_cable(floor_graphs, thin_interior, sigma), reference, min_cable_um
            )
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--phantom-shape", type=int, nargs=3, default=(64, 512, 512))
    ap.add_argument(
        "--em-crop", type=int, default=256, help="edge of the (z, y, x) EM crop, voxels (512: all)"
    )
    ap.add_argument("--skip-em", action="store_true")
    args = ap.parse_args()

    from importlib.metadata import version

    from pipeline.skeleton import TeasarParams
    from pipeline.synth import PhantomParams, generate_phantom, render_volume

    print(
        f"# bench_skeleton  cpus={os.cpu_count()}  numpy={np.__version__}  kimimaro={version('kimimaro')}"
        f"  OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}\n"
    )
    rows = []
    shape = tuple(args.phantom_shape)
    n = max(4, int(4 * np.prod(shape) / (64 * 256 * 256)))
    params_ph = PhantomParams(shape=shape, seed=7, n_neurons=n, n_ais=n)
    phantom = generate_phantom(params_ph)
    labels = render_volume(phantom, noise=False).labels
    faces = np.concatenate([np.take(labels, i, axis=a).ravel() for a in range(3) for i in (0, -1)])
    # thin: the objects without a soma in the volume (axons)
    thin = {o.label for o in phantom.objects if o.name != "neuron"} - set(np.unique(faces).tolist())
    rows += run_case(
        "phantom (light sheet)",
        labels,
        params_ph.voxel_size_um,
        TeasarParams(),
        [(32, 128, 128), (64, 256, 256)],
        3.0,
        30.0,
        thin_interior=thin,
        repeats=7,
    )
    if args.skip_em:
        pass
    elif not EM.is_file():
        print(f"EM rows skipped: {EM} not found (set NEURORECON_SHARED_DATA)\n")
    else:
        import crackle

        em = crackle.load(str(EM)).T  # stored (x, y, z) in Fortran order -> (z, y, x)
        c = args.em_crop
        crop = np.ascontiguousarray(em[:c, :c, :c])
        del em
        rows += run_case(
            f"EM crop {c}^3",
            crop,
            (0.04, 0.016, 0.016),
            TeasarParams(const_um=0.3),  # kimimaro: 300 nm
            [(c // 2, c, c), (c // 2, c // 2, c // 2)],
            0.4,
            5.0,
        )

    print("## (a) throughput: block-wise (serial, in process) vs one kimimaro.skeletonize call")
    print(
        "| volume | shape (z, y, x) | objects | block (z, y, x) | halo | runs | kimimaro whole (s): best / median "
        "| block-wise (s): best / median | ratio of best / of medians (target <= 1.2) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['case']} | {r['shape']} | {r['n_objects']} | {r['block']} | {r['halo_um']:g} µm "
            f"| {r['repeats']} | {r['t_whole']:.2f} / {r['t_whole_median']:.2f} "
            f"| {r['t_block']:.2f} / {r['t_block_median']:.2f} "
            f"| {r['t_block'] / r['t_whole']:.2f} / {r['t_block_median'] / r['t_whole_median']:.2f} |"
        )
    print("\n## (b) per-object total cable length vs the whole-volume run (relative difference)")
    print(
        "| volume | block | objects | median | 95th pct | within 2 % "
        "| whole vs mirrored whole: median / 95th / within 2 % |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        for key, floor_key, what in (
            ("all", "floor_all", "all, raw cable"),
            ("long", "floor_long", f">= {r['min_cable_um']:g} µm, raw cable"),
            ("thin", "floor_thin", f"AIS + neurites inside, >= {r['min_cable_um']:g} µm, smoothed"),
        ):
            if key not in r:
                continue
            a = r[key]
            floor = "–"
            if floor_key is not None:
                f = r[floor_key]
                floor = f"{f['median']:.2f} % / {f['p95']:.1f} % / {f['within']:.0f} %"
            print(
                f"| {r['case']} | {r['block']} | {what} (n={a['n']}) | {a['median']:.2f} % "
                f"| {a['p95']:.1f} % | {a['within']:.0f} % | {floor} |"
            )
    print("\n## (c) the same by how each object is skeletonized (raw cable unless noted)")
    print(
        "| volume | block | objects | identical | within 2 % | median / 95th pct / max "
        "| whole vs mirrored whole: within 2 % |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        for key, what in (
            ("cat_one", "inside the volume, in one block or in one piece"),
            ("cat_fused", "inside the volume, fused from blocks (larger than a read region)"),
            ("cat_fused_smoothed", "inside the volume, fused from blocks, smoothed cable"),
            ("cat_border", "on the volume border"),
        ):
            if key not in r or r[key]["n"] == 0:
                continue
            a = r[key]
            f = r.get("floor_" + key)
            floor = f"{f['within']:.0f} %" if f and f["n"] else "–"
            print(
                f"| {r['case']} | {r['block']} | {what} (n={a['n']}) | {a['identical']:.0f} % | {a['within']:.0f} % "
                f"| {a['median']:.2f} % / {a['p95']:.1f} % / {a['max']:.1f} % | {floor} |"
            )
    print(
        "\nRaw cable: TEASAR's skeleton as is; smoothed: after smooth_skeleton (sigma = max(1 µm, voxel "
        "size)), "
        "as lengths.csv reports it. Times: 7 interleaved runs for the phantom, one run for EM. "
        "Identical: the same cable to 1e-6."
    )


if __name__ == "__main__":
    main()
