"""Memory and time of ``neurorecon evaluate``: block by block against the whole-volume baseline, at 1x and 8x.

For each volume factor ``f`` (the base shape times ``f`` along y and x and ``f`` along z: ``f``³ the voxels) a
neuron phantom is generated (``4 f³`` neurons, seed 11) with a segmentation made from its ground truth with
known errors (other ids, the largest neuron split in two, two neurons merged, one lost). Then, each in a fresh
process so that its peak resident memory (``VmHWM``) is its own:

* ``blocks``: :func:`flows.stages.evaluate.evaluate_run` as ``neurorecon evaluate`` runs it, serially (the
  block and object tasks in the process: its peak is the driver's plus the largest task's);
* ``whole``: the baseline — both label images read whole and scored by
  :func:`pipeline.metrics.evaluate.evaluate_arrays` (what ``evaluate`` did before it read blocks).

Both must give the same ``voxel``, ``skeleton`` and ``length`` sections (checked). Printed: the peak above
the imports, wall time, and the 8x / 1x ratios.

    python benchmarks/bench_evaluate.py                       # base 64 x 256 x 256, factors 1 and 2
    python benchmarks/bench_evaluate.py --block 64 128 128
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SECTIONS = ("voxel", "skeleton", "length")


def _status(key: str) -> int:
    """A ``/proc/self/status`` field in bytes (``VmHWM``, ``VmRSS``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def make(work: Path, factor: int, base: tuple[int, int, int]) -> tuple[Path, Path]:
    """The phantom of ``factor`` and its segmentation with errors (made once)."""
    import numpy as np

    from pipeline.io.omezarr import create_label_image, open_image
    from pipeline.io.phantom import write_phantom
    from pipeline.synth import PhantomParams

    store = work / f"neurons_x{factor}.zarr"
    gt_path = store / "labels" / "ground_truth"
    seg = work / f"segmentation_x{factor}.zarr"
    if seg.exists():
        return seg, gt_path
    shape = (base[0] * factor, base[1] * factor, base[2] * factor)
    write_phantom(
        store, PhantomParams(kind="neurons", seed=11, shape=shape, n_neurons=4 * factor**3), progress=False
    )
    gt = np.asarray(open_image(gt_path).array[...])
    ids, counts = np.unique(gt[gt != 0], return_counts=True)
    order = ids[np.argsort(-counts)]
    pred = np.where(gt != 0, gt.astype(np.uint64) * 7919 + 2**33, 0).astype(np.uint64)
    big = np.argwhere(gt == order[0])
    pred[tuple(big[big[:, 2] > np.median(big[:, 2])].T)] = 5  # split
    pred[gt == order[1]] = int(order[2]) * 7919 + 2**33  # merged with the third
    pred[gt == order[-1]] = 0  # lost
    image = open_image(gt_path)
    create_label_image(seg, shape=pred.shape, chunks=image.chunks, voxel_size_um=image.voxel_size_um)
    open_image(seg, mode="r+").array[...] = pred
    return seg, gt_path


def child(mode: str, seg: Path, gt: Path, out: Path, block: tuple[int, int, int]) -> dict:
    """One evaluation in this (fresh) process."""
    from flows.stages.evaluate import evaluate_run
    from pipeline.io.omezarr import open_image
    from pipeline.io.phantom import phantom_skeletons, read_phantom_truth
    from pipeline.io.skeletons import read_swc_folder
    from pipeline.metrics.evaluate import evaluate_arrays
    from pipeline.skeleton.config import DEFAULT_DUST_THRESHOLD_UM3

    imports = _status("VmRSS")
    start = time.perf_counter()
    if mode == "blocks":
        metrics = json.loads(
            evaluate_run(seg, gt, out=out, min_label_nodes=10, dust_threshold_um3=DEFAULT_DUST_THRESHOLD_UM3,
                         block_shape=block, max_retries=0).read_text()
        )
    else:
        import numpy as np

        pred, true = np.asarray(open_image(seg).array[...]), np.asarray(open_image(gt).array[...])
        skeletons = read_swc_folder(phantom_skeletons(gt))
        truth = read_phantom_truth(gt)
        metrics = evaluate_arrays(
            pred,
            true,
            voxel_size_um=open_image(seg).voxel_size_um,
            kind=truth.kind,
            gt_skeletons=skeletons,
            gaps=[g for g in truth.gaps if g.label in skeletons],
            min_label_nodes=10,
        )
        metrics = json.loads(json.dumps(metrics, default=str).replace("NaN", "null"))
    return {
        "seconds": time.perf_counter() - start,
        "peak": _status("VmHWM"),
        "imports": imports,
        "sections": {k: metrics.get(k) for k in SECTIONS},
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base", type=int, nargs=3, default=(64, 256, 256), help="1x shape (z y x), voxels")
    parser.add_argument(
        "--factors", type=int, nargs="+", default=(1, 2), help="per-axis factors (2: 8x volume)"
    )
    parser.add_argument(
        "--block", type=int, nargs=3, default=None, help="evaluate.block_shape (default: the config's)"
    )
    parser.add_argument("--work", type=Path, default=None, help="where the volumes go (default: a temp dir)")
    parser.add_argument("--child", nargs=4, metavar=("MODE", "SEG", "GT", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.block is None:
        from pipeline.metrics.config import EvaluateConfig

        args.block = EvaluateConfig().block_shape
    if args.child:
        mode, seg, gt, out = args.child
        print(json.dumps(child(mode, Path(seg), Path(gt), Path(out), tuple(args.block))))
        return
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_evaluate_"))
    work.mkdir(parents=True, exist_ok=True)
    print(
        f"# bench_evaluate  base={list(args.base)}  factors={list(args.factors)}  block={list(args.block)}  "
        f"work={work}"
    )
    rows = []
    for f in args.factors:
        seg, gt = make(work, f, tuple(args.base))
        result = {}
        for mode in ("blocks", "whole"):
            done = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--block",
                    *map(str, args.block),
                    "--child",
                    mode,
                    str(seg),
                    str(gt),
                    str(work / f"run_{mode}_x{f}"),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode:
                sys.exit(f"{mode} x{f} failed:\n{done.stderr[-3000:]}")
            result[mode] = json.loads(done.stdout.strip().splitlines()[-1])
        same = result["blocks"]["sections"] == result["whole"]["sections"]
        voxels = args.base[0] * args.base[1] * args.base[2] * f**3
        rows.append((f, voxels, result, same))
        print(f"x{f**3}: {voxels:,} voxels, same metrics: {same}", flush=True)

    print("\n| volume | voxels | mode | wall (s) | peak RSS (GB) | above imports (MB) | same metrics |")
    print("|---|---|---|---|---|---|---|")
    for f, voxels, result, same in rows:
        for mode in ("blocks", "whole"):
            r = result[mode]
            print(
                f"| {f**3}x | {voxels:,} | {mode} | {r['seconds']:.1f} | {r['peak'] / 2**30:.2f} | "
                f"{(r['peak'] - r['imports']) / 2**20:.0f} | {'yes' if same else 'NO'} |"
            )
    if len(rows) > 1:
        (f0, _, r0, _), (f1, _, r1, _) = rows[0], rows[-1]
        for mode in ("blocks", "whole"):
            above = [(r[mode]["peak"] - r[mode]["imports"]) for r in (r0, r1)]
            peak = r1[mode]["peak"] / r0[mode]["peak"]
            time_ratio = r1[mode]["seconds"] / r0[mode]["seconds"]
            print(
                f"{mode}: {f1**3 // f0**3}x the volume -> peak above imports x{above[1] / above[0]:.2f}, "
                f"peak x{peak:.2f}, time x{time_ratio:.2f}"
            )
        above_b = r1["blocks"]["peak"] - r1["blocks"]["imports"]
        above_w = r1["whole"]["peak"] - r1["whole"]["imports"]
        print(
            f"blocks / whole at {f1**3}x: peak above imports {above_b / above_w:.2f}, "
            f"time {r1['blocks']['seconds'] / r1['whole']['seconds']:.2f}"
        )
    if not all(same for *_, same in rows):
        sys.exit("block-wise and whole-volume metrics differ")


if __name__ == "__main__":
    main()
