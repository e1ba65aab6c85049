"""Does topology-aware training bridge signal dropout? A controlled comparison (issue 16, item 3).

For each kind (``neurons``, ``ais``) and each training seed, every *arm* trains the same U-Net on the same
phantom (seed 1; validation seed 2) with the same step budget and learning-rate schedule; arms differ only
in the fine-tuning loss and, with ``+context``, in where the loss applies:

- ``bce_dice``: BCE + Dice throughout (the baseline of the same budget);
- ``supervoxel``: per-channel critical components (Definition 4 of the supervoxel paper, channel by channel);
- ``affinity_supervoxel``: critical edges of the decoded instances (``pipeline.losses.affinity_supervoxel``);
- ``cldice``, ``negative_centerline``, ``simplified_topology``: the AIS paper's terms (Table 1 weights);
- ``<loss>+context``: the same loss on the centre of each patch only (``data.loss_shape``, half the patch
  along each axis: every supervised voxel has real image around it instead of the U-Net's zero padding),
  with every patch given 1-3 simulated dropout gaps centred in that region;
- ``<loss>+mask``: a critical-component loss (``supervoxel``, ``affinity_supervoxel``) normalized by the
  critical voxels (``loss_options: {normalization: mask}``: the mean BCE over them, a term as strong as the
  BCE however few they are) instead of by all voxels (a critical voxel then weighs only 1.5 ordinary ones).
  Modifiers combine: ``affinity_supervoxel+context+mask``.

Every model is then run through the pipeline (``neurorecon segment``'s block-wise path, then
``evaluate_run``, what ``neurorecon run`` writes to ``metrics.json``) on phantoms of seeds used neither for
training nor for validation (``--eval-seeds``, default 7-11), and scored with the metrics of its kind. The
best arm is chosen on other phantoms (``--select-seeds``, default 2, the validation phantom's seed) by
normalized ERL (``neurons``) or the length Wasserstein distance (``ais``), never on the reported seeds.

Two ways to start, both the same for every arm of a run:

- ``--init pretrain`` (the papers' recipe): per training seed, one BCE + Dice pretraining of
  ``--pretrain-steps`` is shared by all arms; each arm resumes from its checkpoint with its own fine-tuning
  loss for ``--finetune-steps`` more steps, in the same learning-rate schedule (no restart);
- ``--init shipped``: every arm fine-tunes the shipped model of the kind for ``--finetune-steps`` steps
  (lr ``--lr``, 20 warm-up steps, cosine): a cheaper pilot, asking whether more steps of a loss beat as many
  steps of BCE + Dice from the same weights.

Everything is kept under ``--work`` (checkpoints, eval phantoms, one JSON of metrics per model and eval
seed), so an interrupted run resumes where it stopped and a rerun prints the table without training again.
Tables: per arm, the mean over training seeds of each training seed's mean over eval seeds, ± the half
width of its 95 % confidence interval (Student t over training seeds; over eval seeds when there is one
training seed), then one row per training seed.

With ``--join`` every segmentation is also scored after the gap joins (``skeletonize.join``) merged the
pieces whose skeleton ends face each other across a short gap (issue 16, item 5): rows ``+ gap joins``,
reported apart from the training's effect, for every arm and for the shipped model.

    python benchmarks/bench_topology_gain.py --kinds neurons --arms bce_dice affinity_supervoxel \\
        bce_dice+context affinity_supervoxel+context --init shipped --finetune-steps 300 --train-seeds 0 \\
        --work runs/topology_gain
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_models import COLUMNS, score, summary  # noqa: E402

#: How the best arm is chosen on the selection phantoms: (metrics.json section, key, "higher" | "lower").
SELECT_BY = {"neurons": ("skeleton", "normalized_erl", "higher"),
             "ais": ("length", "wasserstein_um", "lower")}

LOSSES = ("bce_dice", "supervoxel", "affinity_supervoxel", "cldice", "negative_centerline",
          "simplified_topology")


def arm_config(kind: str, arm: str, *, seed: int, init: str, pretrain_steps: int, finetune_steps: int,
               lr: float) -> dict:
    """The ``train:`` section of one arm (a plain dict, validated by the trainer)."""
    from pipeline.model import SHIPPED_MODELS

    loss, *modifiers = arm.split("+")
    critical = loss in ("supervoxel", "affinity_supervoxel")
    if loss not in LOSSES or set(modifiers) - {"context", "mask"} or ("mask" in modifiers and not critical):
        raise SystemExit(f"--arms: {arm!r} is not an arm; expected LOSS, LOSS+context, LOSS+mask (critical-"
                         f"component losses) or LOSS+context+mask, LOSS one of {', '.join(LOSSES)}")
    cfg = yaml.safe_load((REPO / "configs" / f"train_{kind}.yaml").read_text())["train"]
    cfg["seed"] = seed
    cfg["cpu_threads"] = 2
    s = cfg["schedule"]
    s["finetune_loss"] = "none" if loss == "bce_dice" else loss
    if init == "shipped":
        cfg["init_checkpoint"] = str(SHIPPED_MODELS[kind])
        s.update(pretrain_steps=0, finetune_steps=finetune_steps, lr=lr, warmup_steps=20)
    else:  # a checkpoint must fall on the last pretraining step: the arms start from it
        s.update(pretrain_steps=pretrain_steps, finetune_steps=finetune_steps)
        cfg["checkpoint_every"] = math.gcd(int(cfg.get("checkpoint_every", 100)), pretrain_steps) or 100
    cfg["validation"]["every_steps"] = 100
    if "mask" in modifiers:
        s["loss_options"] = {"normalization": "mask"}
    if "context" in modifiers:
        cfg["data"]["loss_shape"] = [n // 2 for n in cfg["data"]["patch_shape"]]
        cfg["augment"].update(dropout_probability=1.0, dropout_max_gaps=3)
    return cfg


def train_arm(kind: str, arm: str, seed: int, work: Path, args: argparse.Namespace) -> Path:
    """Train (or resume) one arm; returns its final checkpoint."""
    from pipeline.io.checkpoint import read_checkpoint
    from pipeline.train import TrainConfig, train

    out = work / kind / f"{arm}_s{seed}"
    final = out / "checkpoints" / "final.pt"
    if final.is_file():
        return final
    cfg = TrainConfig.model_validate(arm_config(
        kind, arm, seed=seed, init=args.init, pretrain_steps=args.pretrain_steps,
        finetune_steps=args.finetune_steps, lr=args.lr))
    if args.init == "pretrain":
        shared = work / kind / f"pretrain_s{seed}"
        base = TrainConfig.model_validate(arm_config(
            kind, "bce_dice", seed=seed, init="pretrain", pretrain_steps=args.pretrain_steps,
            finetune_steps=args.finetune_steps, lr=args.lr))
        last = shared / "checkpoints" / "last.pt"
        if not last.is_file() or read_checkpoint(last)["step"] < args.pretrain_steps:
            t = time.perf_counter()  # (resuming a finished pretraining would run one step past it)
            result = train(base, out_dir=shared, progress=False, stop_after=args.pretrain_steps)
            if result.step != args.pretrain_steps:
                raise SystemExit(f"pretraining in {shared} stopped at step {result.step}")
            print(f"  {kind} pretrain seed {seed}: {time.perf_counter() - t:.0f} s", file=sys.stderr,
                  flush=True)
        if not (out / "checkpoints" / "last.pt").is_file():
            (out / "checkpoints").mkdir(parents=True, exist_ok=True)
            shutil.copy2(shared / "checkpoints" / "last.pt", out / "checkpoints" / "last.pt")
            shutil.copy2(shared / "log.csv", out / "log.csv")
        if not (out / "data").exists():
            (out / "data").symlink_to((shared / "data").resolve())
    t = time.perf_counter()
    with warnings.catch_warnings():  # the arm resumes the shared pretraining with its own loss: expected
        warnings.filterwarnings("ignore", message="resuming from")
        result = train(cfg, out_dir=out, progress=False)
    print(f"  {kind} {arm} seed {seed}: trained in {time.perf_counter() - t:.0f} s", file=sys.stderr,
          flush=True)
    return result.checkpoint


def evaluate_arm(kind: str, name: str, model: Path | None, seeds: list[int], work: Path,
                 block: tuple[int, int, int], join: dict | None = None) -> list[dict]:
    """metrics.json of ``model`` on each eval seed (with ``join``: also after the gap joins, under
    ``"joined"``), cached in ``work/kind/scores``."""
    scores = work / kind / "scores"
    scores.mkdir(parents=True, exist_ok=True)
    out = []
    for e in seeds:
        path = scores / f"{name}_e{e}.json"
        if not path.is_file() or (join is not None and json.loads(path.read_text()).get("join") != join):
            m = {**score(kind, e, model, work / "eval", block=block, join=join), "join": join}
            path.write_text(json.dumps(m, default=str))
            for done in [*(work / "eval").glob("run_*"), *(work / "eval").glob("eval_*")]:
                shutil.rmtree(done, ignore_errors=True)  # the segmentation and its scores: GBs over a run
            print(f"  {kind} {name} eval seed {e}: {m['seconds']:.0f} s", file=sys.stderr, flush=True)
        out.append({**json.loads(path.read_text()), "seed": e})
    return out


def table(kind: str, results: dict[str, dict[int, list[dict]]]) -> str:
    """Rows per arm (mean over training seeds of the per-seed means, ± 95 % CI), then per training seed."""
    cols = COLUMNS[kind]
    head = [f"| {kind}: arm | " + " | ".join(c[2] for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]

    def cell(values: list[float], fmt: str) -> str:
        mean, half = summary(values)
        if math.isnan(mean):
            return "–"
        return fmt.format(mean) + ("" if math.isnan(half) else " ± " + fmt.format(half))

    def get(r: dict, section: str, key: str) -> float:
        v = r.get(section, {}).get(key)
        return math.nan if v is None else float(v)

    rows, per_seed = [], []
    for arm, by_seed in results.items():
        cells = []
        for section, key, _, fmt in cols:
            means = [summary([get(r, section, key) for r in runs])[0] for runs in by_seed.values()]
            if len(by_seed) == 1:  # one training seed: the spread over eval seeds
                means = [get(r, section, key) for r in next(iter(by_seed.values()))]
            cells.append(cell(means, fmt))
        n = f"{len(by_seed)} training seed{'s' if len(by_seed) > 1 else ''}"
        rows.append(f"| {arm} ({n}) | " + " | ".join(cells) + " |")
        for t, runs in by_seed.items():
            cells = [cell([get(r, s, k) for r in runs], fmt) for s, k, _, fmt in cols]
            evals = ", ".join(str(r["seed"]) for r in runs)
            per_seed.append(f"| {arm}, training seed {t} (eval seeds {evals}) | " + " | ".join(cells) + " |")
    return "\n".join(head + rows + per_seed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kinds", nargs="+", default=["neurons", "ais"], choices=["neurons", "ais"])
    ap.add_argument("--arms", nargs="+", default=list(LOSSES), metavar="ARM",
                    help="LOSS[+context][+mask], LOSS one of " + ", ".join(LOSSES))
    ap.add_argument("--train-seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--eval-seeds", type=int, nargs="+", default=[7, 8, 9, 10, 11])
    ap.add_argument("--select-seeds", type=int, nargs="+", default=[2],
                    help="phantoms the arm is chosen on (2: the validation phantom's seed)")
    ap.add_argument("--init", choices=["pretrain", "shipped"], default="pretrain")
    ap.add_argument("--pretrain-steps", type=int, default=400)
    ap.add_argument("--finetune-steps", type=int, default=1000)
    ap.add_argument("--lr", type=float, default=5e-4, help="learning rate with --init shipped")
    ap.add_argument("--block", type=int, nargs=3, default=(32, 256, 256))
    ap.add_argument("--join", action="store_true",
                    help="also score every segmentation after joining skeleton ends across short gaps "
                         "(skeletonize.join; --join-max-gap-um, --join-max-angle-deg)")
    ap.add_argument("--join-max-gap-um", type=float, default=6.0)
    ap.add_argument("--join-max-angle-deg", type=float, default=60.0)
    ap.add_argument("--work", type=Path, default=REPO / "runs" / "topology_gain")
    args = ap.parse_args()
    if set(args.eval_seeds) & ({1, 2} | set(args.select_seeds)):  # training seeds seed the model and batches
        raise SystemExit(f"--eval-seeds {args.eval_seeds}: seed 1 is the training phantom and "
                         f"{args.select_seeds} select the arm; report on seeds used for neither")
    work = args.work / args.init
    join = ({"max_gap_um": args.join_max_gap_um, "max_angle_deg": args.join_max_angle_deg}
            if args.join else None)
    print(f"# bench_topology_gain  init={args.init}  pretrain={args.pretrain_steps}  "
          f"finetune={args.finetune_steps}  arms={args.arms}  train seeds={args.train_seeds}  "
          f"eval seeds={args.eval_seeds}\n", flush=True)
    for kind in args.kinds:
        results: dict[str, dict[int, list[dict]]] = {
            "oracle (ground truth)": {0: evaluate_arm(kind, "oracle", None, args.eval_seeds, work,
                                                      tuple(args.block))}}
        if args.init == "shipped":
            results["shipped (start of every arm)"] = {0: evaluate_arm(
                kind, "shipped", _shipped(kind), args.eval_seeds, work, tuple(args.block), join)}
        selection: dict[str, dict[int, list[dict]]] = {}
        for arm in args.arms:
            results[arm], selection[arm] = {}, {}
            for seed in args.train_seeds:
                ckpt = train_arm(kind, arm, seed, work, args)
                selection[arm][seed] = evaluate_arm(kind, f"{arm}_s{seed}", ckpt, args.select_seeds, work,
                                                    tuple(args.block))
                results[arm][seed] = evaluate_arm(kind, f"{arm}_s{seed}", ckpt, args.eval_seeds, work,
                                                  tuple(args.block), join)
        section, key, better = SELECT_BY[kind]
        score_of = {arm: summary([r[section][key] for runs in by.values() for r in runs])[0]
                    for arm, by in selection.items()}
        chosen = (max if better == "higher" else min)(score_of, key=lambda a: score_of[a])
        print(f"## {kind}: selection on phantom seeds {args.select_seeds} (not reported below)\n")
        print(table(kind, selection))
        print(f"\nselected by {key} ({better} is better): **{chosen}**\n")
        if join is not None:  # the same models and phantoms, then the gap joins (reported apart)
            for name in [n for n in results if not n.startswith("oracle")]:
                results[f"{name} + gap joins"] = {
                    t: [{**r["joined"], "seed": r["seed"]} for r in runs]
                    for t, runs in results[name].items()}
        print(f"## {kind}: unseen phantom seeds {args.eval_seeds}\n")
        print(table(kind, results) + "\n", flush=True)
        if join is not None:
            joins = {n: [r["joined"]["n_joins"] for runs in by.values() for r in runs]
                     for n, by in results.items() if not n.startswith("oracle") and "gap joins" not in n}
            print("gap joins per phantom: " + ", ".join(f"{n} {np.mean(v):.1f}" for n, v in joins.items()))


def _shipped(kind: str) -> Path:
    from pipeline.model import SHIPPED_MODELS

    return Path(SHIPPED_MODELS[kind])


if __name__ == "__main__":
    main()
