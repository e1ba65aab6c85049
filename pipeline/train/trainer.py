"""The training loop: BCE (+ Dice) pretraining, topology-loss fine-tuning, validation, checkpoints, resume.

Run directory (``out_dir``)::

    checkpoints/last.pt    written every ``checkpoint_every`` steps and at the end (atomically)
    checkpoints/final.pt   the finished model (same content as the last last.pt)
    log.csv                step, phase, loss terms, lr, validation metrics, elapsed time
    data/                  generated phantoms (when ``data.phantom`` is set)

:func:`remove_training` removes the checkpoints and the log (``neurorecon train --overwrite``), keeping
``data/`` (regenerated identically from the config otherwise) and any other file.

Resume
------
``train(config, out_dir=d)`` on a directory with ``checkpoints/last.pt`` continues from its step:
model, optimizer, LR scheduler, AMP scaler and RNG states are restored, and the data stream restarts at
batch ``step`` — batches depend only on ``(seed, batch index)`` (see :mod:`pipeline.data.dataset`), not
on any generator state, so the resumed run sees exactly the batches the uninterrupted run saw. On CPU
the result is bit-identical to an uninterrupted run with the same number of torch threads (tested;
``cpu_threads`` pins it — reductions in other thread counts round differently); on CUDA it is as
deterministic as the kernels (``deterministic: true`` asks cuDNN for deterministic ones). A checkpoint is a
consistent state *between* steps; the steps done after the last checkpoint are redone.
"""

from __future__ import annotations

import math
import random
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline.data import Augmentation, PatchDataset, PatchSpec, make_loader, sample_batch
from pipeline.errors import CheckpointError, ConfigError
from pipeline.io.checkpoint import TrainingLog, check_architecture, read_checkpoint, save_checkpoint
from pipeline.losses import CompoundLoss, compound_loss
from pipeline.model import UNet
from pipeline.model.unet import center_crop
from pipeline.train.config import TrainConfig
from pipeline.train.schedule import lr_factor
from pipeline.train.sources import TrainingSources, open_sources
from pipeline.train.validation import ValidationCounts, validation_counts

__all__ = ["LOG_COLUMNS", "TRAINING_OUTPUTS", "StepInfo", "TrainResult", "build_model", "make_loss",
           "remove_training", "train"]

#: Columns of ``log.csv``.
LOG_COLUMNS = (
    "step",
    "phase",
    "loss",
    "loss_bce",
    "loss_dice",
    "loss_topology",
    "lr",
    "val_loss",
    "val_dice",
    "val_negative_critical",
    "val_positive_critical",
    "elapsed_s",
)

_MASKED_LOGIT = 30.0  # masked-out voxels are set to a confident correct logit: no gradient, no mistake


@dataclass(frozen=True)
class StepInfo:
    """What a ``callback`` receives after every optimizer step."""

    step: int
    phase: str
    loss: float
    terms: dict[str, float]
    lr: float
    val_metrics: dict[str, float] | None = None


@dataclass(frozen=True)
class TrainResult:
    """Outcome of :func:`train`.

    Attributes
    ----------
    checkpoint : Path or None
        ``checkpoints/final.pt`` when finished, else the last checkpoint written (None if none).
    step : int
        Steps done.
    finished : bool
        Whether all ``pretrain_steps + finetune_steps`` steps are done.
    val_metrics : dict
        The last validation metrics.
    log : Path
        The CSV log.
    """

    checkpoint: Path | None
    step: int
    finished: bool
    val_metrics: dict[str, float] = field(default_factory=dict)
    log: Path = Path("log.csv")


#: What a training run writes in its run directory (beside ``data/``): what starting over removes.
TRAINING_OUTPUTS = ("checkpoints", "log.csv", "log.old.csv")


def remove_training(out_dir: str | Path) -> list[Path]:
    """Remove the checkpoints and the log of the training run in ``out_dir`` (to start it over); return
    those that existed. Call while holding the directory's output lock."""
    import shutil

    removed = []
    for name in TRAINING_OUTPUTS:
        path = Path(out_dir) / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        else:
            continue
        removed.append(path)
    return removed


def build_model(config: TrainConfig) -> UNet:
    """The U-Net of ``config`` (in_channels 1, out_channels from the target kind)."""
    arch = dict(config.architecture)
    arch["downsample_factors"] = [tuple(f) for f in arch["downsample_factors"]]
    return UNet(**arch)


def make_loss(config: TrainConfig, phase: str) -> CompoundLoss:
    """The loss of ``phase`` ("pretrain" or "finetune") as a :class:`~pipeline.losses.CompoundLoss`.

    Pretraining: BCE + Dice (AIS paper Table 1 baseline) or BCE alone. Fine-tuning: the AIS paper's
    ``w_BCE · BCE + w_Dice · Dice + w_eval · topology`` with ``schedule.loss_weights`` (default Table 1)
    and ``schedule.loss_options``; ``finetune_loss: none`` keeps the pretraining loss. On affinities each
    channel is a binary image, so ``supervoxel`` is Definition 4 of the supervoxel paper averaged over
    channels.

    Raises
    ------
    ConfigError
        If ``schedule.loss_options`` are not options of the chosen topology term.
    """
    s = config.schedule
    if phase == "pretrain" or s.finetune_loss == "none":
        return compound_loss("bce_dice", weights=(1.0, 0.0, 0.0) if s.pretrain_loss == "bce" else None)
    try:
        return compound_loss(s.finetune_loss, weights=s.loss_weights, **dict(s.loss_options))
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"train.schedule.loss_options {dict(s.loss_options)} do not fit "
            f"finetune_loss={s.finetune_loss!r}: {exc}"
        ) from None


def train(
    config: TrainConfig,
    *,
    out_dir: str | Path,
    resume: bool = True,
    progress: bool = True,
    stop_after: int | None = None,
    callback: Callable[[StepInfo], None] | None = None,
) -> TrainResult:
    """Train a U-Net as ``config`` says, writing checkpoints and a CSV log to ``out_dir``.

    Parameters
    ----------
    config : TrainConfig
        The ``train:`` section of a config file.
    out_dir : str or Path
        Run directory (created if needed); see the module docstring for its layout.
    resume : bool
        Continue from ``out_dir/checkpoints/last.pt`` if it exists (a finished run returns at once).
        With False, an existing run in ``out_dir`` is an error.
    progress : bool
        Show a tqdm progress bar.
    stop_after : int, optional
        Stop after this many steps in total, as if interrupted: no checkpoint is written at the stop
        (the steps since the last checkpoint are redone on resume). For tests and time-boxed runs.
    callback : callable, optional
        Called with a :class:`StepInfo` after every step; an exception it raises ends training like
        an interruption.

    Returns
    -------
    TrainResult

    Raises
    ------
    CheckpointError
        If the checkpoint to resume from (or ``init_checkpoint``) is unreadable or was trained with
        another architecture; or if ``resume=False`` and ``out_dir`` already holds a run.
    ConfigError
        If the patch shape does not fit the U-Net, or the loss options do not fit the loss.
    InputDataError
        If a training volume cannot be opened.

    Examples
    --------
    >>> import yaml
    >>> data = yaml.safe_load(open("configs/train_tiny.yaml"))["train"]  # doctest: +SKIP
    >>> cfg = TrainConfig.model_validate(data)  # doctest: +SKIP
    >>> result = train(cfg, out_dir="runs/tiny")  # doctest: +SKIP
    >>> model, meta = load_model(result.checkpoint)  # doctest: +SKIP
    """
    out = Path(out_dir)
    ckpt_dir = out / "checkpoints"
    last_path, final_path = ckpt_dir / "last.pt", ckpt_dir / "final.pt"
    total = config.schedule.total_steps
    device = _device(config.device)
    use_amp = bool(config.amp and device.type == "cuda")
    if config.cpu_threads is not None:
        torch.set_num_threads(config.cpu_threads)
    _seed_everything(config.seed, deterministic=config.deterministic)

    model = build_model(config).to(device)
    spec = _patch_spec(config, model)
    arch = config.architecture
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.schedule.lr, weight_decay=config.schedule.weight_decay,
        betas=config.schedule.betas,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(config))
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    losses = {"pretrain": make_loss(config, "pretrain"), "finetune": make_loss(config, "finetune")}

    step = 0
    elapsed_before = 0.0
    val_metrics: dict[str, float] = {}
    if last_path.is_file():
        if not resume:
            raise CheckpointError(
                f"{out} already holds a training run ({last_path}); pass resume=True to continue it or "
                "choose another output directory"
            )
        state = read_checkpoint(last_path)  # on CPU; load_state_dict moves tensors to the model's device
        check_architecture(state, arch, path=last_path)
        _warn_config_changes(state.get("config", {}), config, last_path)
        model.load_state_dict(state["model"])
        _load_states(state, optimizer=optimizer, scheduler=scheduler, scaler=scaler, path=last_path)
        step = int(state["step"])
        elapsed_before = float(state.get("elapsed_s", 0.0))
        val_metrics = dict(state.get("val_metrics", {}) or {})
        if step >= total:
            if not final_path.is_file():  # interrupted between the last checkpoint and final.pt
                save_checkpoint(final_path, state)
            return TrainResult(final_path, step, True, val_metrics, out / "log.csv")
    elif config.init_checkpoint is not None:
        init = read_checkpoint(config.init_checkpoint)
        check_architecture(init, arch, path=config.init_checkpoint)
        model.load_state_dict(init["model"])

    sources = open_sources(config, out_dir=out, progress=progress)
    log = TrainingLog(out / "log.csv", LOG_COLUMNS)
    log.truncate_after(step)
    val_batches = _validation_batches(config, spec, sources)
    metadata = _metadata(config, spec, sources)

    dataset = PatchDataset(
        sources.train, spec=spec, augmentation=_augmentation(config), batch_size=config.data.batch_size,
        seed=config.seed, start=step, stop=total,
    )
    loader = make_loader(
        dataset, num_workers=config.data.num_workers, pin_memory=device.type == "cuda",
        prefetch_factor=config.data.prefetch_factor,
    )

    def checkpoint(path: Path) -> Path:
        return save_checkpoint(path, {
            "architecture": arch,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(),
            "step": step,
            "phase": _phase(config, max(step - 1, 0)),
            "total_steps": total,
            "rng": _rng_state(),
            "config": config.model_dump(mode="json"),
            "metadata": metadata,
            "val_metrics": val_metrics,
            "elapsed_s": time.perf_counter() - t0,
        })

    bar = _progress_bar(progress, total, step)
    t0 = time.perf_counter() - elapsed_before  # the log's elapsed_s continues across resumes
    last_written: Path | None = last_path if last_path.is_file() else None
    try:
        for batch in loader:
            phase = _phase(config, step)
            model.train()
            loss, terms = _train_step(
                model, losses[phase], batch, optimizer=optimizer, scaler=scaler, device=device, amp=use_amp,
                clip=config.schedule.grad_clip_norm,
            )
            lr = optimizer.param_groups[0]["lr"]
            scheduler.step()
            step += 1
            row: dict[str, Any] | None = None
            if step % config.log_every == 0 or step == total:
                row = {"step": step, "phase": phase, "loss": loss, "lr": lr, **_term_columns(terms)}
            new_val = None
            if step % config.validation.every_steps == 0 or step == total:
                new_val = _validate(
                    model, losses[phase], val_batches, config=config, device=device, amp=use_amp
                )
                val_metrics = new_val
                row = {**(row or {"step": step, "phase": phase, "lr": lr}), **new_val}
            if row is not None:
                row["elapsed_s"] = time.perf_counter() - t0
                log.append(row)
            if step % config.checkpoint_every == 0 or step == total:
                last_written = checkpoint(last_path)
            if bar is not None:
                shown = {"phase": phase, "loss": f"{loss:.4f}"}
                if "val_dice" in val_metrics:
                    shown["val_dice"] = f"{val_metrics['val_dice']:.3f}"
                bar.set_postfix(shown, refresh=False)
                bar.update(1)
            if callback is not None:
                callback(StepInfo(step, phase, loss, terms, lr, new_val))
            if stop_after is not None and step >= stop_after and step < total:
                break
    finally:
        if bar is not None:
            bar.close()
        del loader
    finished = step >= total
    if finished:
        final = checkpoint(final_path)
        return TrainResult(final, step, True, val_metrics, log.path)
    return TrainResult(last_written, step, False, val_metrics, log.path)


# ------------------------------------------------------------------------------------------------------
# Steps


def _train_step(
    model: nn.Module,
    loss_fn: CompoundLoss,
    batch: Mapping[str, torch.Tensor],
    *,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    device: torch.device,
    amp: bool,
    clip: float | None,
) -> tuple[float, dict[str, float]]:
    raw = batch["raw"].to(device, non_blocking=True)
    target = batch["target"].to(device, non_blocking=True)
    mask = batch["mask"].to(device, non_blocking=True)
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
        logits = _crop_to(model(raw), target)
    total, terms = _loss_terms(loss_fn, _apply_mask(logits.float(), target, mask), target)
    if not torch.isfinite(total):
        raise FloatingPointError(
            f"the training loss is {float(total)} (terms {terms}); lower schedule.lr or enable grad clipping"
        )
    scaler.scale(total).backward()
    if clip is not None:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    scaler.step(optimizer)
    scaler.update()
    return float(total.detach()), terms


def _loss_terms(
    loss_fn: CompoundLoss, logits: torch.Tensor, target: torch.Tensor
) -> tuple[torch.Tensor, dict[str, float]]:
    """The weighted total and each (unweighted) term, evaluating every term once."""
    total: torch.Tensor | None = None
    terms: dict[str, float] = {}
    for name, fn in loss_fn.losses.items():
        weight = loss_fn.weights[name]
        if weight == 0.0:
            continue
        value = fn(logits, target)
        terms[name] = float(value.detach())
        total = weight * value if total is None else total + weight * value
    assert total is not None  # a CompoundLoss from make_loss always has a weighted term
    return total, terms


def _crop_to(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The centred part of ``logits`` with the spatial shape of ``target`` (``data.loss_shape``)."""
    return logits if logits.shape[2:] == target.shape[2:] else center_crop(logits, target.shape[2:])


def _apply_mask(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Where ``mask`` is 0, replace the logits by a confident correct constant (no gradient, no error)."""
    if bool((mask > 0).all()):
        return logits
    return torch.where(mask > 0, logits, (2.0 * target - 1.0) * _MASKED_LOGIT)


def _term_columns(terms: Mapping[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, value in terms.items():
        key = {"bce": "loss_bce", "dice": "loss_dice"}.get(name, "loss_topology")
        out[key] = value
    return out


@torch.no_grad()
def _validate(
    model: nn.Module,
    loss_fn: CompoundLoss,
    batches: list[dict[str, torch.Tensor]],
    *,
    config: TrainConfig,
    device: torch.device,
    amp: bool,
) -> dict[str, float]:
    model.eval()
    counts = ValidationCounts()
    loss_sum, n = 0.0, 0
    for batch in batches:
        raw = batch["raw"].to(device)
        target = batch["target"].to(device)
        mask = batch["mask"].to(device)
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
            logits = _crop_to(model(raw), target)
        logits = _apply_mask(logits.float(), target, mask)
        total, _ = _loss_terms(loss_fn, logits, target)
        loss_sum += float(total) * raw.shape[0]
        n += raw.shape[0]
        counts = counts + validation_counts(
            torch.sigmoid(logits).cpu().numpy(), target.cpu().numpy(), mask.cpu().numpy(),
            threshold=config.validation.threshold, connectivity=config.validation.connectivity,
        )
    model.train()
    return {
        "val_loss": loss_sum / max(n, 1),
        "val_dice": counts.dice,
        "val_negative_critical": float(counts.negative_critical),
        "val_positive_critical": float(counts.positive_critical),
    }


# ------------------------------------------------------------------------------------------------------
# Setup helpers


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device is 'cuda' but no CUDA device is available; use 'auto' or 'cpu'")
    return torch.device(name)


def _seed_everything(seed: int, *, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic


def _patch_spec(config: TrainConfig, model: UNet) -> PatchSpec:
    d = config.data
    shape = tuple(d.patch_shape)
    try:
        out_shape = model.output_shape(shape)
    except ValueError as exc:
        raise ConfigError(f"train.data.patch_shape {shape} does not fit the U-Net: {exc}") from None
    if d.loss_shape is not None:
        loss_shape = tuple(d.loss_shape)
        if any(s > o or (o - s) % 2 for s, o in zip(loss_shape, out_shape, strict=True)):
            raise ConfigError(
                f"train.data.loss_shape {loss_shape} does not fit centred in the network output "
                f"{tuple(out_shape)} (patch_shape {shape}): give each axis at most the output's size, "
                "differing from it by an even number of voxels"
            )
        out_shape = loss_shape
    if config.model.ndim == 2:
        shape, out_shape = (1, *shape), (1, *out_shape)
    return PatchSpec(
        input_shape=shape,  # type: ignore[arg-type]
        output_shape=out_shape,  # type: ignore[arg-type]
        target=d.target,
        ndim=config.model.ndim,
        downscale_xy=d.downscale_xy,
        foreground_fraction=d.foreground_fraction,
    )


def _augmentation(config: TrainConfig) -> Augmentation:
    a = config.augment
    if not a.enabled:
        return Augmentation.off()
    return Augmentation(**a.model_dump(exclude={"enabled"}))


def _lr_lambda(config: TrainConfig) -> Callable[[int], float]:
    s = config.schedule

    def factor(step: int) -> float:
        return lr_factor(
            step, total_steps=s.total_steps, warmup_steps=s.warmup_steps, kind=s.lr_schedule,
            min_factor=s.min_lr_factor, step_size=s.step_size, step_gamma=s.step_gamma,
        )

    return factor


def _phase(config: TrainConfig, step: int) -> str:
    """Phase of the step that starts with ``step`` steps done."""
    return "pretrain" if step < config.schedule.pretrain_steps else "finetune"


def _validation_batches(
    config: TrainConfig, spec: PatchSpec, sources: TrainingSources
) -> list[dict[str, torch.Tensor]]:
    """The fixed validation set: ``n_patches`` seeded, unaugmented patches, in batches of ``batch_size``."""
    v = config.validation
    vspec = PatchSpec(
        input_shape=spec.input_shape, output_shape=spec.output_shape, target=spec.target, ndim=spec.ndim,
        downscale_xy=spec.downscale_xy,
        foreground_fraction=(
            spec.foreground_fraction if v.foreground_fraction is None else v.foreground_fraction
        ),
    )
    out = []
    bs = config.data.batch_size
    for b in range(math.ceil(v.n_patches / bs)):
        n = min(bs, v.n_patches - b * bs)
        batch = sample_batch(
            sources.val, spec=vspec, augmentation=Augmentation.off(), batch_size=n, seed=v.seed,
            batch_index=b, stream=1,
        )
        out.append({k: torch.from_numpy(batch.as_dict()[k]) for k in ("raw", "target", "mask")})
    return out


def _metadata(config: TrainConfig, spec: PatchSpec, sources: TrainingSources) -> dict[str, Any]:
    s0 = sources.train[0]
    drop_z = config.model.ndim == 2
    return {
        "target": config.data.target,
        "normalization": config.data.normalization,
        "percentiles": list(config.data.percentiles),
        "downscale_xy": config.data.downscale_xy,
        "voxel_size_um": list(s0.voxel_size_um),
        "patch_shape": list(spec.input_shape[1:] if drop_z else spec.input_shape),
        # where the loss applied: the network's output, or data.loss_shape
        "output_shape": list(spec.output_shape[1:] if drop_z else spec.output_shape),
        "intensity_ranges": [[s.intensity.low, s.intensity.high] for s in sources.train],
        "val_held_out": sources.held_out,
    }


def _progress_bar(progress: bool, total: int, initial: int) -> Any:
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="train", unit="step", dynamic_ncols=True)


# ------------------------------------------------------------------------------------------------------
# State


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "kind": np_state[0],
            "keys": torch.from_numpy(np.asarray(np_state[1], np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    if "python" in state:
        py = state["python"]
        random.setstate((py[0], tuple(py[1]), py[2]))
    if "numpy" in state:
        s = state["numpy"]
        keys = s["keys"].cpu().numpy() if isinstance(s["keys"], torch.Tensor) else s["keys"]
        keys = np.asarray(keys, np.uint32)
        np.random.set_state((s["kind"], keys, s["pos"], s["has_gauss"], s["cached_gaussian"]))
    if "torch" in state:
        torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([t.cpu() for t in state["cuda"]])


def _load_states(
    state: Mapping[str, Any],
    *,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    path: Path,
) -> None:
    missing = [k for k in ("optimizer", "scheduler", "rng") if k not in state]
    if missing:
        raise CheckpointError(
            f"checkpoint {path} has no {', '.join(missing)} state: it is an inference-only checkpoint and "
            "cannot be resumed; set train.init_checkpoint to start from its weights instead"
        )
    try:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"])
    except (KeyError, ValueError, RuntimeError, TypeError) as exc:
        raise CheckpointError(
            f"checkpoint {path} has an optimizer/scheduler state that does not fit: {exc}"
        ) from None


def _warn_config_changes(saved: Mapping[str, Any], config: TrainConfig, path: Path) -> None:
    now = config.model_dump(mode="json")
    changed = sorted(_diff_keys(saved, now))
    if changed:
        warnings.warn(
            f"resuming from {path}, whose run used other settings for {', '.join(changed)}; the resumed run "
            "uses the current config and will not match an uninterrupted run",
            stacklevel=3,
        )


def _diff_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    ignore = {"data.num_workers", "data.prefetch_factor", "device", "cpu_threads"}
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        out: list[str] = []
        for key in set(a) | set(b):
            out += _diff_keys(a.get(key), b.get(key), f"{prefix}{key}.")
        return out
    key = prefix.rstrip(".")
    return [] if key in ignore or a == b else [key]
