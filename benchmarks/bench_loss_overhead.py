"""Topology-loss overhead per training step of a 3-D U-Net on CPU (issue 3).

For each loss of :func:`pipeline.losses.compound_loss` (and the affinity supervoxel loss) this times a
training step -- U-Net forward, loss, backward -- on one ``size``³ patch and compares it with BCE + Dice
alone. Steps of all configurations are interleaved (round robin, starting one later each round), so load
from other processes spreads evenly; the fastest of ``--steps`` steps after ``--warmup`` steps is
reported, the estimate least disturbed by other processes on a shared machine, with the median beside
it. Because the difference of two noisy step times is itself noisy, the topology term is also timed in
isolation (forward + backward of the weighted term alone on the logits of a step, best of several
runs), and so is its CPU-side mask computation (critical components, or the regions of the simplified
topology loss). The overhead estimate is term / baseline step.

The loss sees ``logits = realistic + 0.01 · net(raw)``: ``realistic`` are ±3 logits of a prediction with
the error structure of a trained model (boundary noise, gaps, spurious blobs, merges), while the gradient
still flows through the whole network so that the backward pass costs what it costs in training. The
mask time on an untrained network's output is printed separately for reference.

Usage::

    .venv/bin/python benchmarks/bench_loss_overhead.py [--size 128] [--steps 3] [--warmup 1] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import cc3d
import numpy as np
import torch
from scipy import ndimage

from pipeline.losses import (
    AffinitySupervoxelLoss,
    BCELoss,
    ClDiceLoss,
    CompoundLoss,
    NegativeCenterlineLoss,
    SoftDiceLoss,
    compound_loss,
    critical_masks,
    simplified_topology_mask,
    soft_skeleton,
    soft_skeleton_until_empty,
)
from pipeline.model import UNet

FACTORS = [(1, 2, 2), (1, 2, 2), (2, 2, 2)]


def random_tubes(rng: np.random.Generator, size: int, n: int, radius: float) -> np.ndarray:
    """Instance labels of ``n`` random straight tubes crossing a ``size``³ volume."""
    labels = np.zeros((size,) * 3, np.uint32)
    grid = np.stack(np.meshgrid(*(np.arange(size, dtype=np.float32),) * 3, indexing="ij"), axis=-1)
    for i in range(n):
        p0, p1 = rng.uniform(0, size, 3), rng.uniform(0, size, 3)
        d = (p1 - p0).astype(np.float32)
        t = np.clip(((grid - p0) @ d) / float(d @ d), 0, 1)
        dist = np.linalg.norm(grid - (p0 + t[..., None] * d), axis=-1)
        labels[dist <= radius] = i + 1
    return labels


def realistic_prediction(rng: np.random.Generator, target: np.ndarray) -> np.ndarray:
    """The target with boundary noise, a few gaps (splits), spurious blobs and bridges (merges)."""
    size = target.shape[0]
    shell = ndimage.binary_dilation(target) ^ ndimage.binary_erosion(target)
    flip = shell & (ndimage.gaussian_filter(rng.random(target.shape).astype(np.float32), 1.0) > 0.52)
    pred = target ^ flip
    fg = np.argwhere(target)
    for z, y, x in fg[rng.choice(len(fg), 6, replace=False)]:  # gaps
        pred[max(z - 3, 0) : z + 3, max(y - 3, 0) : y + 3, max(x - 3, 0) : x + 3] = False
    for z, y, x in rng.integers(4, size - 4, (6, 3)):  # blobs, some touching tubes (merges)
        pred[z - 2 : z + 2, y - 2 : y + 2, x - 2 : x + 2] = True
    return pred


def affinities(seg: np.ndarray) -> np.ndarray:
    """Waterz-convention affinities (z, y, x) of a label volume."""
    out = np.zeros((3, *seg.shape), np.float32)
    out[0, 1:] = (seg[1:] == seg[:-1]) & (seg[1:] != 0)
    out[1, :, 1:] = (seg[:, 1:] == seg[:, :-1]) & (seg[:, 1:] != 0)
    out[2, :, :, 1:] = (seg[:, :, 1:] == seg[:, :, :-1]) & (seg[:, :, 1:] != 0)
    return out


def best_time(fn: Callable[[], object], repeats: int) -> float:
    """Fastest of ``repeats`` runs: the cost of ``fn`` itself, least disturbed by other processes."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=128, help="patch edge in voxels (default 128)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per loss (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per loss first (default 1)")
    parser.add_argument("--base-features", type=int, default=8, help="U-Net top-level features (default 8)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()

    rng = np.random.default_rng(0)
    size = args.size
    labels = random_tubes(rng, size, n=max(4, size // 10), radius=2.5)
    target_np = labels > 0
    pred_np = realistic_prediction(rng, target_np)
    raw = torch.from_numpy(target_np + rng.normal(0, 0.5, target_np.shape).astype(np.float32))[None, None]
    target = torch.from_numpy(target_np).float()[None, None]
    realistic = torch.from_numpy(np.where(pred_np, 3.0, -3.0).astype(np.float32))[None, None]
    target_aff = torch.from_numpy(affinities(labels))[None]
    pred_aff = affinities(cc3d.connected_components(pred_np, connectivity=26))
    realistic_aff = torch.from_numpy(np.where(pred_aff > 0, 3.0, -3.0).astype(np.float32))[None]

    nets = {}
    for channels in (1, 3):
        torch.manual_seed(0)
        nets[channels] = UNet(
            1, channels, ndim=3, depth=3, base_features=args.base_features, downsample_factors=FACTORS
        )
    data = {1: (target, realistic), 3: (target_aff, realistic_aff)}

    bce_dice_aff = CompoundLoss({"bce": (1.0, BCELoss()), "dice": (1.0, SoftDiceLoss())})
    configs: list[tuple[str, int, torch.nn.Module, str | None]] = [
        ("bce_dice (baseline, 1 ch)", 1, compound_loss("bce_dice"), None),
        ("+ cldice (w 3)", 1, compound_loss("cldice"), "cldice"),
        ("+ negative_centerline (w 3)", 1, compound_loss("negative_centerline"), "negative_centerline"),
        ("+ simplified_topology (w 0.8)", 1, compound_loss("simplified_topology"), "simplified_topology"),
        ("+ supervoxel (w 1)", 1, compound_loss("supervoxel"), "supervoxel"),
        ("bce_dice (baseline, 3 ch aff)", 3, bce_dice_aff, None),
        (
            "+ affinity_supervoxel (w 1/3)",
            3,
            CompoundLoss({
                "bce": (1.0, BCELoss()),
                "dice": (1.0, SoftDiceLoss()),
                "affinity_supervoxel": (1.0 / 3.0, AffinitySupervoxelLoss(alpha=1.0, beta=0.5)),
            }),
            "affinity_supervoxel",
        ),
    ]

    def train_step(channels: int, loss: torch.nn.Module) -> None:
        net = nets[channels]
        tgt, real = data[channels]
        net.zero_grad(set_to_none=True)
        logits = real + 0.01 * net(raw)
        loss(logits, tgt).backward()

    step_times: dict[str, list[float]] = {name: [] for name, *_ in configs}
    for i in range(args.warmup + args.steps):
        for j in range(len(configs)):  # round robin, starting one later each round
            name, channels, loss, _ = configs[(i + j) % len(configs)]
            start = time.perf_counter()
            train_step(channels, loss)
            if i >= args.warmup:
                step_times[name].append(time.perf_counter() - start)

    # The topology term alone (forward + backward on fixed logits) and its CPU mask computation. The
    # fixed logits are those the loss sees in a step: the pooling kernels' speed depends on the values.
    with torch.no_grad():
        data = {c: (tgt, real + 0.01 * nets[c](raw)) for c, (tgt, real) in data.items()}
    realistic, realistic_aff = data[1][1], data[3][1]
    term_times: dict[str, float] = {}
    mask_times: dict[str, float] = {}
    mask_fns: dict[str, Callable[[], object]] = {
        "supervoxel": lambda: critical_masks(realistic, target, connectivity=26),
        "simplified_topology": lambda: simplified_topology_mask(realistic, target),
        "affinity_supervoxel": lambda: critical_masks(realistic_aff, target_aff, connectivity=26),
    }
    repeats = max(5, args.steps)
    for name, channels, loss, term in configs:
        tgt, real = data[channels]
        module = loss.losses[term] if term else loss
        weight = loss.weights[term] if term else 1.0

        def term_step(module=module, weight=weight, real=real, tgt=tgt) -> None:
            logits = real.clone().requires_grad_()
            (weight * module(logits, tgt)).backward()

        term_times[name] = best_time(term_step, repeats)
        if term in mask_fns:
            mask_times[name] = best_time(mask_fns[term], repeats)
    # Label-only parts precomputed, as a data-loader worker would.
    centerline = soft_skeleton_until_empty(target)
    skeleton = soft_skeleton(target, 3)
    negcl, cld = NegativeCenterlineLoss(), ClDiceLoss()

    def negcl_precomputed() -> None:
        logits = realistic.clone().requires_grad_()
        (3.0 * negcl(logits, target, centerline)).backward()

    def cldice_precomputed() -> None:
        logits = realistic.clone().requires_grad_()
        (3.0 * cld(logits, target, skeleton)).backward()

    precomputed = {
        "negative_centerline": best_time(negcl_precomputed, repeats),
        "cldice": best_time(cldice_precomputed, repeats),
        "label centerline alone": best_time(lambda: soft_skeleton_until_empty(target), repeats),
    }
    with torch.no_grad():
        untrained = nets[1](raw)
    untrained_cc = best_time(lambda: critical_masks(untrained, target, connectivity=26), 1)
    untrained_regions = best_time(lambda: simplified_topology_mask(untrained, target), 1)
    _, n_untrained = cc3d.connected_components((untrained > 0)[0, 0].numpy(), connectivity=26, return_N=True)

    net = nets[1]
    params = sum(p.numel() for p in net.parameters())
    print(
        f"U-Net 3-D: depth 3, features {net.features}, downsample {FACTORS}, GroupNorm, "
        f"{params:,} parameters (1 ch)"
    )
    print(
        f"patch {size}^3, batch 1, CPU, torch threads {torch.get_num_threads()}, "
        f"best (and median) of {args.steps} steps after {args.warmup} warm-up, round robin"
    )
    print(
        f"prediction: {int(target_np.sum()):,} foreground voxels, "
        f"{int((pred_np != target_np).sum()):,} mistaken voxels\n"
    )
    header = (
        f"{'loss':32s} {'step [s]':>14s} {'Δ step':>9s} {'term [ms]':>10s} {'term/step':>10s} "
        f"{'masks [ms]':>11s} {'mask share':>11s}"
    )
    print(header)
    print("-" * len(header))
    baseline = {}
    for name, channels, _, term in configs:
        step = min(step_times[name])
        median = statistics.median(step_times[name])
        if term is None:
            baseline[channels] = step
            overhead = "—"
        else:
            overhead = f"{100 * (step - baseline[channels]) / baseline[channels]:+.1f} %"
        base = baseline[channels]
        term_share = f"{100 * term_times[name] / base:.1f} %"
        masks = f"{1000 * mask_times[name]:.0f}" if name in mask_times else "—"
        share = f"{100 * mask_times[name] / base:.1f} %" if name in mask_times else "—"
        print(
            f"{name:32s} {step:6.2f} ({median:5.2f}) {overhead:>9s} {1000 * term_times[name]:10.0f} "
            f"{term_share:>10s} "
            f"{masks:>11s} {share:>11s}"
        )
    print(
        "\nstep: best (median) time of forward + loss + backward; Δ step: best step vs its baseline's best"
        "\n(noisy on a shared machine: a few % either way is not measurable);"
        "\nterm: the (weighted) topology term alone, forward + backward on fixed logits, best of "
        f"{repeats}; term/step: the overhead estimate, term / best baseline step;"
        "\nmasks: the CPU critical-component / region computation alone, included in term."
    )
    print(
        "with the label skeleton precomputed in the data loader: negative_centerline term "
        f"{1000 * precomputed['negative_centerline']:.0f} ms, "
        f"cldice term {1000 * precomputed['cldice']:.0f} ms "
        f"(label centerline alone {1000 * precomputed['label centerline alone']:.0f} ms)"
    )
    print(
        f"untrained network output ({n_untrained:,} foreground components): critical components "
        f"{1000 * untrained_cc:.0f} ms, simplified-topology regions {1000 * untrained_regions:.0f} ms"
    )
    print(
        f"total benchmark time {time.perf_counter() - started:.0f} s; "
        f"load average at the end {', '.join(f'{v:.1f}' for v in os.getloadavg())} on {os.cpu_count()} CPUs"
    )


if __name__ == "__main__":
    main()
