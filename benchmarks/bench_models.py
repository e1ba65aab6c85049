"""Score affinity models on phantoms they never saw, per kind of volume, with the pipeline's own metrics.

For each kind (``neurons``, ``ais``), each model and each seed: generate a phantom of that kind (training
used seed 1, validation seed 2: report on seeds used for neither, 7-9 by default), predict affinities and
segment them block by block (``flows.stages.segment.segment_raw``, the ``neurorecon segment`` path, serially
in this process), and evaluate the segmentation with ``flows.stages.evaluate.evaluate_run`` (what
``neurorecon run`` writes to ``metrics.json``). The exact ground truth, used as the segmentation, is scored
too (the ``oracle`` row: every metric perfect). Per model, the table gives the mean over seeds and a 95 %
confidence interval (Student t over the seeds), then every seed.

    python benchmarks/bench_models.py --kinds neurons ais --seeds 7 8 9 \\
        --model shipped=shipped --model bce=runs/train_{kind}_bce/checkpoints/final.pt

``--model NAME=PATH``: ``{kind}`` in PATH is replaced by the kind; ``shipped`` means the shipped model of the
kind (``pipeline.model.SHIPPED_MODELS``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

#: (metrics.json section, key, header, format) shown per kind.
COLUMNS = {
    "neurons": [
        ("skeleton", "normalized_erl", "normalized ERL", "{:.3f}"),
        ("skeleton", "splits_per_neuron", "splits / neuron", "{:.2f}"),
        ("skeleton", "merges_per_neuron", "merges / neuron", "{:.2f}"),
        ("skeleton", "merged_pct", "merged edges %", "{:.1f}"),
        ("skeleton", "gaps_bridged", "gaps bridged", "{:.2f}"),
        ("voxel", "dice", "Dice", "{:.3f}"),
    ],
    "ais": [
        ("length", "wasserstein_um", "Wasserstein µm", "{:.2f}"),
        ("length", "precision", "precision", "{:.3f}"),
        ("length", "recall", "recall", "{:.3f}"),
        ("length", "discontinuities_per_instance", "discontinuities / AIS", "{:.2f}"),
        ("skeleton", "gaps_bridged", "gaps bridged", "{:.2f}"),
        ("voxel", "dice", "Dice", "{:.3f}"),
    ],
}


def score(kind: str, seed: int, model: str | Path | None, work: Path, *, block: tuple[int, int, int],
          join: dict | None = None) -> dict:
    """metrics.json of one model (None: the ground truth itself) on one phantom, plus the seconds taken.

    With ``join`` (settings of ``skeletonize.join``), the segmentation is also scored after the pieces
    whose skeleton ends face each other across a short gap are joined (:func:`joined_metrics`): those
    metrics under ``"joined"``, with ``"n_joins"``.
    """
    from flows.preflight import check_run
    from flows.stages.evaluate import evaluate_run
    from flows.stages.segment import segment_raw
    from pipeline.config import NeuroreconConfig, OutputConfig
    from pipeline.io.phantom import write_phantom
    from pipeline.metrics.config import EvaluateConfig
    from pipeline.segment.config import SegmentConfig
    from pipeline.skeleton.config import SkeletonizeConfig
    from pipeline.synth import PhantomParams

    store = work / f"{kind}{seed}.zarr"
    if not store.exists():
        write_phantom(store, PhantomParams(kind=kind, seed=seed), progress=False)
    gt = store / "labels" / "ground_truth"
    start = time.perf_counter()
    if model is None:
        seg = gt
    else:
        cfg = SegmentConfig(raw=store, out=work / f"run_{kind}{seed}_{abs(hash(str(model)))}", model=model,
                            block_shape=block)
        config = NeuroreconConfig(segment=cfg, output=OutputConfig(root=work))
        seg = segment_raw(cfg, inputs=check_run(config, evaluate=False), max_retries=0,
                          progress=False).segmentation
    out = work / f"eval_{kind}{seed}_{abs(hash(str(model)))}"
    metrics = json.loads(evaluate_run(seg, gt, out=out, min_label_nodes=10,
                                      dust_threshold_um3=SkeletonizeConfig().dust_threshold_um3,
                                      block_shape=EvaluateConfig().block_shape, max_retries=0).read_text())
    metrics["seconds"] = time.perf_counter() - start
    if join is not None:
        metrics["joined"] = joined_metrics(seg, gt, join, work / f"join_{kind}{seed}_{abs(hash(str(model)))}")
    return metrics


def joined_metrics(seg: Path, gt: Path, join: dict, out: Path) -> dict:
    """The metrics of ``seg`` after the gap joins, as ``neurorecon run`` makes them: ``skeletonize`` with
    ``skeletonize.join`` (``join``: its settings) into ``out``, then ``evaluate``; with ``n_joins``."""
    from flows.stages.evaluate import evaluate_run
    from flows.stages.skeletonize import skeletonize_volume
    from pipeline.metrics.config import EvaluateConfig
    from pipeline.skeleton.config import SkeletonizeConfig

    settings = SkeletonizeConfig(join={"enabled": True, **join})
    skeletonize_volume(seg, out=out, settings=settings, max_retries=0, progress=False, overwrite=True)
    metrics = json.loads(evaluate_run(seg, gt, out=out, min_label_nodes=10,
                                      dust_threshold_um3=settings.dust_threshold_um3,
                                      block_shape=EvaluateConfig().block_shape, max_retries=0).read_text())
    return {**metrics, "n_joins": metrics["joins"]["n_joins"]}


def summary(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95 % confidence interval (Student t; NaN for one value)."""
    from scipy import stats

    v = np.array([x for x in values if x is not None and not math.isnan(x)], dtype=float)
    if len(v) == 0:
        return math.nan, math.nan
    if len(v) == 1:
        return float(v[0]), math.nan
    return float(v.mean()), float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v)))


def table(kind: str, results: dict[str, list[dict]]) -> str:
    cols = COLUMNS[kind]
    lines = [
        f"| {kind}: model | " + " | ".join(c[2] for c in cols) + " |",
        "|---" * (len(cols) + 1) + "|",
    ]
    for name, runs in results.items():
        cells = []
        for section, key, _, fmt in cols:
            mean, half = summary([r.get(section, {}).get(key, math.nan) for r in runs])
            cells.append("–" if math.isnan(mean) else fmt.format(mean) + ("" if math.isnan(half) else
                                                                          " ± " + fmt.format(half)))
        lines.append(f"| {name} (mean ± 95 % CI, n = {len(runs)}) | " + " | ".join(cells) + " |")
    for name, runs in results.items():
        for r in runs:
            cells = [fmt.format(r.get(s, {}).get(k)) if r.get(s, {}).get(k) is not None else "–"
                     for s, k, _, fmt in cols]
            lines.append(f"| {name}, seed {r['seed']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    from pipeline.model import SHIPPED_MODELS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kinds", nargs="+", default=["neurons", "ais"], choices=["neurons", "ais"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[7, 8, 9])
    ap.add_argument("--model", action="append", default=[], metavar="NAME=PATH",
                    help="a model to score ({kind} in PATH is the kind; PATH 'shipped' is the shipped one)")
    ap.add_argument("--block", type=int, nargs=3, default=(32, 256, 256))
    ap.add_argument("--json", type=Path, help="also write every metrics.json here")
    args = ap.parse_args()
    models = dict(m.split("=", 1) for m in (args.model or ["shipped=shipped"]))
    print(f"# bench_models  seeds={args.seeds}  block={tuple(args.block)}  models={models}\n")
    everything = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.kinds:
            results: dict[str, list[dict]] = {"oracle (ground truth)": []}
            for name in models:
                results[name] = []
            for seed in args.seeds:
                m = score(kind, seed, None, Path(tmp), block=tuple(args.block))
                results["oracle (ground truth)"].append({**m, "seed": seed})
                for name, path in models.items():
                    model = SHIPPED_MODELS[kind] if path == "shipped" else Path(path.format(kind=kind))
                    m = score(kind, seed, model, Path(tmp), block=tuple(args.block))
                    results[name].append({**m, "seed": seed})
                    print(f"  {kind} seed {seed} {name}: {m['seconds']:.0f} s", file=sys.stderr, flush=True)
            print(table(kind, results) + "\n", flush=True)
            everything[kind] = results
    if args.json:
        args.json.write_text(json.dumps(everything, indent=1, default=str))


if __name__ == "__main__":
    main()
