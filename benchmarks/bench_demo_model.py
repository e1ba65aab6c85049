"""Evaluate the shipped affinity model on fresh phantoms (issue 4's acceptance figure).

For each seed: generate a phantom the model never saw (training used seeds 1 and 2), predict affinities
and segment them with waterz block by block (the `neurorecon segment` path), and score the segmentation
against the ground-truth labels:

* per-object recall: for each ground-truth object, the fraction of its voxels in the single predicted
  segment that overlaps it most; reported as the mean over objects (target >= 0.8);
* per-object precision: the same from the predicted segments' side (segments of >= 10 voxels);
* VOI split/merge (bits) and ARI over the ground-truth foreground (pipeline.metrics).

    python benchmarks/bench_demo_model.py --seeds 7 8 9
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def best_match_fraction(a: np.ndarray, b: np.ndarray, *, min_size: int = 1) -> np.ndarray:
    """For each non-zero label of ``a`` (>= min_size voxels): max over labels of ``b`` of |a_i ∩ b_j| / |a_i|.

    Voxels where ``b`` is 0 count as missed.
    """
    fg = a != 0
    ai, bi = a[fg].astype(np.int64), b[fg].astype(np.int64)
    ids, inv, sizes = np.unique(ai, return_inverse=True, return_counts=True)
    keep = bi != 0
    pair = inv[keep].astype(np.int64) * (int(bi.max()) + 1 if bi.size else 1) + bi[keep]
    pairs, counts = np.unique(pair, return_counts=True)
    best = np.zeros(ids.size)
    np.maximum.at(best, pairs // (int(bi.max()) + 1 if bi.size else 1), counts)
    frac = best / sizes
    return frac[sizes >= min_size]


def evaluate(seed: int, model: Path, work: Path, *, block: tuple[int, int, int]) -> dict:
    from flows.preflight import check_run
    from flows.stages.segment import segment_raw
    from pipeline.config import NeuroreconConfig, OutputConfig
    from pipeline.io.omezarr import open_image, open_labels
    from pipeline.io.phantom import write_phantom
    from pipeline.metrics import adjusted_rand_index, variation_of_information
    from pipeline.segment.config import SegmentConfig
    from pipeline.synth import PhantomParams

    store = work / f"phantom{seed}.zarr"
    write_phantom(store, PhantomParams(seed=seed), overwrite=True, progress=False)
    cfg = SegmentConfig(raw=store, out=work / f"seg{seed}", model=model, block_shape=block)
    t = time.perf_counter()
    config = NeuroreconConfig(segment=cfg, output=OutputConfig(root=work))
    out = segment_raw(cfg, inputs=check_run(config, evaluate=False), max_retries=config.dask.max_retries,
                      progress=False)
    seconds = time.perf_counter() - t
    gt = np.asarray(open_labels(store, "ground_truth").array[...]).astype(np.int64)
    seg = np.asarray(open_image(out.segmentation).array[...]).astype(np.int64)
    recall = best_match_fraction(gt, seg)
    precision = best_match_fraction(seg, gt, min_size=10)
    voi = variation_of_information(seg, gt)
    return {
        "seed": seed, "objects": int(recall.size), "segments": int(len(np.unique(seg)) - 1),
        "recall": float(recall.mean()), "recall_min": float(recall.min()), "precision": float(precision.mean()),
        "voi_split": voi.split, "voi_merge": voi.merge, "ari": float(adjusted_rand_index(seg, gt)),
        "seconds": seconds,
    }


def main() -> None:
    from pipeline.model import DEMO_MODEL

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, default=DEMO_MODEL)
    ap.add_argument("--seeds", type=int, nargs="+", default=[7, 8, 9])
    ap.add_argument("--block", type=int, nargs=3, default=(32, 128, 128))
    args = ap.parse_args()
    print(f"# bench_demo_model  model={args.model}\n")
    print("| phantom seed | GT objects | segments | mean recall | min recall | mean precision | VOI split / merge (bits) | ARI | time (s) |")
    print("|---|---|---|---|---|---|---|---|---|")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            r = evaluate(seed, args.model, Path(tmp), block=tuple(args.block))
            rows.append(r)
            print(f"| {r['seed']} | {r['objects']} | {r['segments']} | {r['recall']:.3f} | {r['recall_min']:.3f} | "
                  f"{r['precision']:.3f} | {r['voi_split']:.3f} / {r['voi_merge']:.3f} | {r['ari']:.3f} | "
                  f"{r['seconds']:.1f} |", flush=True)
    print(f"\nmean per-object recall over {len(rows)} phantoms: {np.mean([r['recall'] for r in rows]):.3f} "
          "(target >= 0.8)")


if __name__ == "__main__":
    main()
