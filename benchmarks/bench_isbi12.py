"""ISBI12 loss comparison: BCE + Dice baseline vs topology losses fine-tuned from the same pretrained U-Net.

Protocol (supervoxel paper, 2-D experiments): 3-fold cross-validation by slice — fold k holds out slices
10k .. 10k+9 and trains on the other 20. Per fold, one U-Net is pretrained with BCE + Dice for
``--pretrain-steps``; from those weights, each loss is fine-tuned for ``--finetune-steps`` with the same
network, data stream, seed and learning-rate schedule:

    bce_dice              the baseline (pretraining loss continued: same budget)
    supervoxel            BCE + Dice + supervoxel (critical components, α = 1, β = 0.5, 4-connected)
    cldice                BCE + Dice + 3 · clDice
    negative_centerline   BCE + Dice + 3 · Negative Centerline
    simplified_topology   BCE + Dice + 0.8 · Simplified Topology (4-connected)

(weights: AIS paper Table 1). Foreground = cells (label 255); membranes (0) are background. Held-out
slices are predicted whole (512 x 512) and thresholded at 0.5. Metrics (:mod:`pipeline.metrics`):
Dice of the foreground; ARI and VOI (bits, split + merge) of the 4-connected cells of the prediction
against the 4-connected cells of the label, over the label's cells; Betti error |Δβ0| and |Δβ1| of the
foreground (4-connected cells, 8-connected background) averaged over 64 x 64 tiles, as the supervoxel
paper reports it. The table shows mean ± std over folds of the per-fold means over held-out slices.

Run from the repository root. The defaults (pretrain 300, fine-tune 200 steps per loss, 256² patches,
batch 4, depth-4 U-Net with 16 base features: ~0.45 s per step on 2 idle CPU cores, 3 x (300 + 5 x 200)
steps) take ~30-45 min on 2 CPU cores; finished runs are kept under ``--work`` and reused by a rerun with
the same budget::

    .venv/bin/python benchmarks/bench_isbi12.py
    .venv/bin/python benchmarks/bench_isbi12.py --pretrain-steps 5 --finetune-steps 5   # smoke test
    .venv/bin/python benchmarks/bench_isbi12.py --device cuda --pretrain-steps 2000 --finetune-steps 2000 \\
        --patch 256 --base-features 32 --batch-size 8 --workers 6                       # on a GPU

``--prepare-only`` just writes the OME-Zarr stack used by ``configs/train_isbi12.yaml``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from pathlib import Path

import cc3d
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from pipeline.io.omezarr import open_image, open_labels, write_image, write_labels  # noqa: E402
from pipeline.metrics import (  # noqa: E402
    adjusted_rand_index,
    dice,
    patchwise_betti_error,
    variation_of_information,
)

SHARED_DATA = Path(os.environ.get("NEURORECON_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
ISBI_DIR = SHARED_DATA / "isbi12" / "train"
VOXEL_SIZE_UM = (0.05, 0.004, 0.004)  # ssTEM, 4 x 4 x 50 nm
LOSSES = ("bce_dice", "supervoxel", "cldice", "negative_centerline", "simplified_topology")
LOSS_OPTIONS = {"supervoxel": {"connectivity": 4}, "simplified_topology": {"connectivity": 4}}
N_SLICES = 30
FOLD_SIZE = 10
CONNECTIVITY = 4  # cells are separated by 1-pixel membranes


def prepare_store(data_dir: Path, store: Path) -> Path:
    """Write the 30 ISBI12 PNG slices as an OME-Zarr (30, 512, 512) stack: raw uint8, 4-connected cells."""
    if (store / "labels" / "ground_truth" / "zarr.json").is_file():
        return store
    from PIL import Image

    images, labels = [], []
    next_label = 1
    for i in range(N_SLICES):
        img = np.asarray(Image.open(data_dir / "image" / f"{i}.png"))
        lab = np.asarray(Image.open(data_dir / "label" / f"{i}.png"))
        if img.ndim != 2 or lab.shape != img.shape:
            raise SystemExit(f"unexpected ISBI12 slice {i}: image {img.shape}, label {lab.shape}")
        cells, n = cc3d.connected_components(
            (lab == 255).astype(np.uint8), connectivity=CONNECTIVITY, return_N=True
        )
        cells = cells.astype(np.uint32)
        cells[cells > 0] += next_label - 1
        next_label += n
        images.append(img)
        labels.append(cells)
    store.parent.mkdir(parents=True, exist_ok=True)
    write_image(store, np.stack(images), voxel_size_um=VOXEL_SIZE_UM, chunks=(1, 512, 512), name="isbi12",
                overwrite=True)
    write_labels(store, "ground_truth", np.stack(labels))
    return store


def fold_rois(fold: int) -> tuple[list[tuple[int, int]], tuple[int, int]]:
    """Training slice ranges and the held-out range of ``fold``."""
    val = (fold * FOLD_SIZE, (fold + 1) * FOLD_SIZE)
    train = [(a, b) for a, b in ((0, val[0]), (val[1], N_SLICES)) if b > a]
    return train, val


def make_config(
    args: argparse.Namespace, store: Path, fold: int, *, loss: str | None, init: Path | None
) -> dict:
    """The ``train:`` mapping of one run: pretraining (``loss=None``) or fine-tuning with ``loss``."""
    train_rois, val = fold_rois(fold)
    vol = lambda a, b: {"path": str(store), "roi_start": [a, 0, 0], "roi_stop": [b, 512, 512]}  # noqa: E731
    steps = args.pretrain_steps if loss is None else args.finetune_steps
    schedule = {
        "pretrain_steps": steps if loss is None else 0,
        "finetune_steps": 0 if loss is None else steps,
        "pretrain_loss": "bce_dice",
        "finetune_loss": loss or "none",
        "loss_options": LOSS_OPTIONS.get(loss or "", {}),
        "lr": args.lr,
        "warmup_steps": max(1, steps // 10),
        "lr_schedule": "cosine",
    }
    return {
        "seed": args.seed,
        "device": args.device,
        "cpu_threads": args.threads,
        "checkpoint_every": max(steps, 1),
        "log_every": max(1, steps // 10),
        "init_checkpoint": str(init) if init else None,
        "model": {"ndim": 2, "depth": args.depth, "base_features": args.base_features, "padding": "same",
                  "norm": "group"},
        "data": {
            "volumes": [vol(a, b) for a, b in train_rois],
            "val_volumes": [vol(*val)],
            "target": "foreground",
            "patch_shape": [args.patch, args.patch],
            "batch_size": args.batch_size,
            "foreground_fraction": 0.0,
            "num_workers": args.workers,
        },
        "augment": {"dropout_probability": 0.0},
        "schedule": schedule,
        "validation": {"every_steps": max(steps, 1), "n_patches": 4, "connectivity": CONNECTIVITY},
    }


def predict_slices(checkpoint: Path, store: Path, slices: range, device: str) -> np.ndarray:
    """Foreground probabilities of whole slices, (n, 512, 512) float32."""
    import torch

    from pipeline.data import normalize_intensity
    from pipeline.train import load_model

    model, meta = load_model(checkpoint, device=None if device == "auto" else device)
    if device == "auto" and torch.cuda.is_available():
        model.cuda()
    dev = next(model.parameters()).device
    low, high = meta.input["intensity_ranges"][0]
    raw = open_image(store).array
    out = []
    with torch.no_grad():
        for z in slices:
            x = normalize_intensity(np.asarray(raw[z]), low=low, high=high)
            logits = model(torch.from_numpy(x)[None, None].to(dev))
            out.append(torch.sigmoid(logits)[0, 0].float().cpu().numpy())
    return np.stack(out)


def evaluate(probs: np.ndarray, labels: np.ndarray, *, tile: int) -> dict[str, float]:
    """Mean over slices of Dice, ARI, VOI and tile-wise Betti errors."""
    rows = []
    for p, lab in zip(probs, labels, strict=True):
        pred = p > 0.5
        true = lab != 0
        pred_cells = cc3d.connected_components(pred.astype(np.uint8), connectivity=CONNECTIVITY)
        true_cells = cc3d.connected_components(true.astype(np.uint8), connectivity=CONNECTIVITY)
        betti = patchwise_betti_error(pred, true, patch_size=tile, connectivity=CONNECTIVITY)
        rows.append({
            "dice": dice(pred, true),
            "ari": adjusted_rand_index(pred_cells, true_cells),
            "voi": variation_of_information(pred_cells, true_cells).total,
            "betti0": betti.per_dimension[0],
            "betti1": betti.per_dimension[1],
            "betti": betti.total,
        })
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ISBI_DIR, help="folder of image/ and label/ PNGs 0..29")
    parser.add_argument("--work", type=Path, default=REPO_ROOT / "runs" / "isbi12", help="store and runs")
    parser.add_argument("--pretrain-steps", type=int, default=300)
    parser.add_argument("--finetune-steps", type=int, default=200)
    parser.add_argument("--patch", type=int, default=256, help="square training patch, multiple of 2**depth")
    parser.add_argument("--base-features", type=int, default=16)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu")
    parser.add_argument("--workers", type=int, default=0, help="data-loading worker processes")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--losses", default=",".join(LOSSES), help="comma-separated subset of the default")
    parser.add_argument("--folds", default="0,1,2", help="comma-separated folds to run")
    parser.add_argument("--tile", type=int, default=64, help="tile size of the Betti error")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fresh", action="store_true", help="retrain: delete runs with the same budget")
    parser.add_argument("--prepare-only", action="store_true", help="only write WORK/isbi12.zarr")
    args = parser.parse_args(argv)

    losses = [s for s in args.losses.split(",") if s]
    unknown = set(losses) - set(LOSSES)
    if unknown:
        parser.error(f"unknown losses {sorted(unknown)}; choose from {', '.join(LOSSES)}")
    folds = [int(f) for f in args.folds.split(",") if f]
    if not (args.data / "image" / "0.png").is_file():
        print(f"ISBI12 data not found at {args.data} (set --data or NEURORECON_SHARED_DATA)", file=sys.stderr)
        return 2
    store = prepare_store(args.data, args.work / "isbi12.zarr")
    if args.prepare_only:
        print(f"wrote {store}")
        return 0
    # One folder per budget: a rerun with the same settings reuses (or resumes) its finished runs.
    budget = (
        f"p{args.pretrain_steps}_f{args.finetune_steps}_patch{args.patch}_d{args.depth}"
        f"_b{args.base_features}_bs{args.batch_size}_lr{args.lr:g}_s{args.seed}"
    )
    if args.fresh:
        import shutil

        shutil.rmtree(args.work / budget, ignore_errors=True)

    from pipeline.train import TrainConfig, train

    labels = open_labels(store, "ground_truth").array
    results: dict[str, list[dict[str, float]]] = {loss: [] for loss in losses}
    timings: dict[str, float] = {}
    t_start = time.perf_counter()
    for fold in folds:
        run = args.work / budget / f"fold{fold}"
        t0 = time.perf_counter()
        pre = train(TrainConfig.model_validate(make_config(args, store, fold, loss=None, init=None)),
                    out_dir=run / "pretrain", progress=False)
        timings["pretrain"] = timings.get("pretrain", 0.0) + time.perf_counter() - t0
        _, val = fold_rois(fold)
        held_out = range(*val)
        true = np.asarray(labels[val[0] : val[1]])
        for loss in losses:
            t0 = time.perf_counter()
            cfg = TrainConfig.model_validate(make_config(args, store, fold, loss=loss, init=pre.checkpoint))
            result = train(cfg, out_dir=run / loss, progress=False)
            timings[loss] = timings.get(loss, 0.0) + time.perf_counter() - t0
            probs = predict_slices(result.checkpoint, store, held_out, args.device)
            metrics = evaluate(probs, true, tile=args.tile)
            results[loss].append(metrics)
            values = "  ".join(f"{k}={v:.4f}" for k, v in metrics.items())
            print(f"fold {fold} {loss:20s} {values}", flush=True)

    print()
    print(f"## ISBI12, {len(folds)}-fold by slice; pretrain {args.pretrain_steps} steps (BCE + Dice), "
          f"fine-tune {args.finetune_steps} steps per loss; patch {args.patch}², batch {args.batch_size}, "
          f"U-Net depth {args.depth}, base {args.base_features} features; device {args.device}")
    print()
    cols = ("dice", "ari", "voi", "betti0", "betti1", "betti")
    heads = ("Dice ↑", "ARI ↑", "VOI ↓", "Betti β0 err ↓", "Betti β1 err ↓", "Betti err ↓")
    print("| loss | " + " | ".join(heads) + " | train s/fold |")
    print("|---" * (len(cols) + 2) + "|")
    for loss in losses:
        rows = results[loss]
        cells = []
        for c in cols:
            v = np.array([r[c] for r in rows])
            cells.append(f"{v.mean():.4f} ± {v.std():.4f}")
        print(f"| {loss} | " + " | ".join(cells) + f" | {timings[loss] / len(folds):.0f} |")
    print()
    print(f"pretraining: {timings['pretrain'] / len(folds):.0f} s/fold; total wall time "
          f"{time.perf_counter() - t_start:.0f} s")
    print("command: " + " ".join(shlex.quote(a) for a in [".venv/bin/python", "benchmarks/bench_isbi12.py",
                                                           *(sys.argv[1:] if argv is None else argv)]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
