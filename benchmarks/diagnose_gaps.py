"""Why dropout gaps are not bridged (issue 16, item 1): what the training pipeline shows the network.

For a training config (default ``configs/train_neurons.yaml``) this measures, without training:

- the U-Net's receptive field per axis (its ``context``: voxels per side, and µm at the data's voxel size)
  against the dropout gap lengths the augmentation draws;
- over ``--patches`` patches sampled exactly as training samples them (``sample_patch``, the config's
  patch shape, foreground fraction and augmentation), how often the dropout augmentation fires, and how
  many voxels its gaps cover: per patch, per batch, as a fraction of the patch's labelled voxels;
- how many of those gap voxels have their whole receptive field inside the patch (what the ``same``-padded
  network can use around a gap while training, against what it has at inference);
- with a trained model (``--model``, default the shipped one of the config's kind), on the patches that
  have gaps: what the model predicts inside them, and each fine-tuning loss term's share of the gradient
  (``|∂ weight·term / ∂ logit|`` summed over the gap voxels, over all voxels) against the gaps' share of
  the voxels.

The dropout step is the training pipeline's own function (:func:`pipeline.data.augment.signal_dropout`),
applied with the config's probability, gap count and lengths to patches sampled with the other
augmentations on: ``augment_patch`` does not return its gap mask, so the gaps are made here, after the
other augmentations instead of between the flips and the intensity changes (the gaps do not depend on
intensities).

    python benchmarks/diagnose_gaps.py                      # configs/train_neurons.yaml, 400 patches
    python benchmarks/diagnose_gaps.py --config configs/train_ais.yaml
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=REPO / "configs" / "train_neurons.yaml")
    ap.add_argument("--patches", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", type=Path, default=None,
                    help="checkpoint for the gradient shares (default: the shipped model of its kind)")
    ap.add_argument("--gradient-patches", type=int, default=40,
                    help="patches with gaps used for the gradient shares (0: skip them)")
    args = ap.parse_args()
    if args.patches < 1:
        ap.error(f"--patches must be at least 1; got {args.patches}")

    import numpy as np

    from pipeline.data.augment import signal_dropout
    from pipeline.data.sampler import sample_patch
    from pipeline.io.config import load_config
    from pipeline.train.sources import open_sources
    from pipeline.train.trainer import _augmentation, _patch_spec, build_model

    config = load_config(args.config).train
    if config is None:
        ap.error(f"{args.config} has no train: section")
    model = build_model(config)
    spec = _patch_spec(config, model)
    settings = _augmentation(config)
    no_dropout = dataclasses.replace(settings, dropout_probability=0.0)
    context = tuple(int(c) for c in model.context)
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        sources = open_sources(config, out_dir=Path(tmp))
        vs = tuple(float(v) for v in sources.train[0].voxel_size_um)
        vs = (vs[0], vs[1] * spec.downscale_xy, vs[2] * spec.downscale_xy)
        fired, gap_voxels, labelled, inside = 0, [], [], []
        kept: list[tuple] = []  # patches with gaps: raw with the gaps, target, mask, gaps
        shape = None
        for _ in range(args.patches):
            patch = sample_patch(sources.train, spec=spec, augmentation=no_dropout, rng=rng)
            raw, labels = patch.raw[0], patch.labels
            shape = labels.shape
            gaps = np.zeros(labels.shape, bool)
            if settings.dropout_probability > 0 and rng.random() < settings.dropout_probability:
                fired += 1
                n = int(rng.integers(1, settings.dropout_max_gaps + 1))
                dropped = signal_dropout(raw, labels, rng=rng, voxel_size_um=vs, n_gaps=n,
                                         length_um=settings.dropout_length_um,
                                         margin_um=settings.dropout_margin_um,
                                         max_radius_um=settings.dropout_max_radius_um)
                gaps = dropped.gaps & (labels > 0)  # the object's voxels that went dark (not its halo)
                if gaps.any() and len(kept) < args.gradient_patches:
                    kept.append((dropped.raw, patch.target, patch.mask, gaps))
            gap_voxels.append(int(gaps.sum()))
            labelled.append(int((labels > 0).sum()))
            full = np.zeros(labels.shape, bool)  # voxels whose whole receptive field lies in the patch
            core = tuple(slice(c, n - c) for c, n in zip(context, labels.shape, strict=True))
            full[core] = True
            inside.append(int((gaps & full).sum()))
    gap_voxels, labelled = np.asarray(gap_voxels), np.asarray(labelled)
    total = int(np.prod(shape))
    print(f"{args.config.name}: patch {shape} voxels at {vs} µm, batch {config.data.batch_size}, "
          f"{args.patches} patches (seed {args.seed})")
    field_um = tuple(round(c * v, 1) for c, v in zip(context, vs, strict=True))
    print(f"receptive field: ±{context} voxels = ±{field_um} µm; "
          f"gap lengths {tuple(settings.dropout_length_um)} µm")
    print(f"voxels with their whole receptive field inside the patch: "
          f"{int(np.prod([max(0, n - 2 * c) for c, n in zip(context, shape, strict=True)]))} of {total}")
    print(f"dropout fired in {fired} of {args.patches} patches ({fired / args.patches:.0%}; "
          f"configured {settings.dropout_probability:.0%})")
    with_gap = gap_voxels > 0
    print(f"patches with gap voxels: {int(with_gap.sum())} ({with_gap.mean():.0%})")
    per_batch = gap_voxels.mean() * config.data.batch_size
    print(f"gap voxels per patch: mean {gap_voxels.mean():.0f}, per batch {per_batch:.0f}"
          f" ({gap_voxels.sum() / total / args.patches:.3%} of all voxels, "
          f"{gap_voxels.sum() / max(labelled.sum(), 1):.2%} of labelled voxels)")
    print(f"gap voxels whose receptive field lies inside the patch: {sum(inside)} of {int(gap_voxels.sum())}")
    print("(gap voxels: the labelled voxels a gap darkened, not its background halo)")
    if kept:
        _gradient_shares(config, args.model, kept)


def _gradient_shares(config, checkpoint, kept) -> None:
    """What the model predicts in the gaps, and each fine-tuning term's share of the gradient there."""
    import numpy as np
    import torch

    from pipeline.inference.predict import for_inference
    from pipeline.io.checkpoint import load_model
    from pipeline.model import SHIPPED_MODELS
    from pipeline.train.trainer import _apply_mask, make_loss

    kind = config.data.phantom.kind if config.data.phantom is not None else "neurons"
    checkpoint = checkpoint or SHIPPED_MODELS[kind]
    model, _ = load_model(checkpoint, device="cpu")
    model = for_inference(model)
    loss = make_loss(config, "finetune")
    weighted = {name: w for name, w in loss.weights.items() if w != 0.0}
    grads = {name: [0.0, 0.0] for name in weighted}  # |grad| at gap voxels, everywhere
    low, n_gap, n_all = 0, 0, 0
    for raw, target, mask, gaps in kept:
        x = torch.from_numpy(raw[None, None].astype(np.float32))
        with torch.no_grad():
            base = model(x)
        logits = base.detach().clone().requires_grad_(True)
        t, m = torch.from_numpy(target[None]), torch.from_numpy(mask[None])
        on = torch.from_numpy(gaps)[None, None].expand_as(logits)
        affinity = torch.sigmoid(logits.detach())
        low += int(((affinity < 0.5) & on & (t > 0)).sum())
        n_gap += int((on & (t > 0)).sum())
        n_all += logits.numel()
        for name, weight in weighted.items():
            value = weight * loss.losses[name](_apply_mask(logits, t, m), t)
            (grad,) = torch.autograd.grad(value, logits)
            g = grad.abs()
            grads[name][0] += float(g[on].sum())
            grads[name][1] += float(g.sum())
    share = int(sum(int(g.sum()) for *_, g in kept)) * 3 / n_all
    print(f"model {Path(checkpoint).name} on {len(kept)} patches with gaps:")
    print(f"  affinity < 0.5 at {low / max(n_gap, 1):.0%} of the positive affinity edges inside gaps")
    print(f"  gap voxels: {share:.3%} of these patches' voxels (x 3 channels); gradient share at them:")
    for name, (at_gaps, total) in grads.items():
        frac = at_gaps / total if total > 0 else float("nan")
        print(f"    {name} (weight {weighted[name]:g}): {frac:.3%} of its |gradient| "
              f"({frac / share:.1f}x the gaps' share of voxels)" if share > 0 else f"    {name}: {frac:.3%}")


if __name__ == "__main__":
    main()
