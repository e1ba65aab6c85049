"""Training configuration: the ``train:`` section of a config file, as frozen pydantic models.

All shapes are (z, y, x) voxels — (y, x) for 2-D models — and physical sizes are in µm and say so.
Nothing here imports torch, so validating a config stays fast.

Example (``configs/train_tiny.yaml``)::

    train:
      seed: 0
      model: {ndim: 3, depth: 2, base_features: 4, downsample_factors: [[1, 2, 2], [1, 2, 2]]}
      data:
        phantom: {shape: [24, 96, 96], seed: 3, n_neurons: 1, n_ais: 2}
        val_phantom_seed: 4
        target: affinities
        patch_shape: [8, 48, 48]
      schedule: {pretrain_steps: 40, finetune_steps: 20, finetune_loss: supervoxel}
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from pipeline.settings import StrictModel
from pipeline.synth.params import PhantomParams

__all__ = [
    "AugmentConfig",
    "DataConfig",
    "ModelConfig",
    "ScheduleConfig",
    "TrainConfig",
    "ValidationConfig",
    "VolumeConfig",
]

PositiveInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]
FloatRange = tuple[float, float]
LossKind = Literal[
    "affinity_supervoxel", "bce_dice", "cldice", "negative_centerline", "simplified_topology", "supervoxel"
]


class VolumeConfig(StrictModel):
    """One OME-Zarr volume (raw image + a label image) to sample patches from."""

    path: Path = Field(description="OME-Zarr image store (its level-0 array is the raw)")
    labels: str = Field("ground_truth", description="name of the label image under labels/")
    roi_start: tuple[NonNegInt, NonNegInt, NonNegInt] | None = Field(
        None, description="(z, y, x) first voxel patches may use (inclusive); None = 0"
    )
    roi_stop: tuple[PositiveInt, PositiveInt, PositiveInt] | None = Field(
        None, description="(z, y, x) end of the region patches may use (exclusive); None = the volume end"
    )


class DataConfig(StrictModel):
    """Where patches come from and what they look like.

    Training data are ``volumes`` (OME-Zarr stores) or a ``phantom`` generated into
    ``OUT_DIR/data/`` on the first run. Validation patches come from ``val_volumes``, else from a second
    phantom with seed ``val_phantom_seed``, else (with a warning: not held out) from the training data.
    """

    volumes: tuple[VolumeConfig, ...] = Field((), description="training volumes")
    val_volumes: tuple[VolumeConfig, ...] = Field((), description="held-out validation volumes")
    phantom: PhantomParams | None = Field(None, description="generate a training phantom with these params")
    val_phantom_seed: NonNegInt | None = Field(
        None, description="generate a validation phantom: the training phantom's params with this seed"
    )
    target: Literal["affinities", "foreground"] = Field(
        "affinities", description="affinities (ndim channels, waterz convention) or 1 foreground channel"
    )
    patch_shape: tuple[PositiveInt, ...] = Field(
        (16, 80, 80), description="network input, (z, y, x) or (y, x) for 2-D, voxels after downscaling"
    )
    loss_shape: tuple[PositiveInt, ...] | None = Field(
        None, description="(z, y, x) or (y, x) centred region of the network output where targets are made "
        "and the loss applies, voxels after downscaling; None = the whole output. Smaller than the patch, it "
        "gives every supervised voxel real image around it instead of the U-Net's zero padding",
    )
    batch_size: PositiveInt = 2
    foreground_fraction: Fraction = Field(0.5, description="fraction of patches centred on a labelled voxel")
    downscale_xy: PositiveInt = Field(1, description="downscale y and x by this factor (AIS paper: 3)")
    normalization: Literal["percentile", "dtype"] = Field(
        "percentile", description="raw → [0, 1]: sampled per-volume percentiles, or dtype max (65535)"
    )
    percentiles: tuple[float, float] = Field((1.0, 99.9), description="(low, high) for 'percentile'")
    num_workers: NonNegInt = Field(0, description="data-loading worker processes (0 = main process)")
    prefetch_factor: PositiveInt = Field(4, description="batches each worker prepares ahead")

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        if not self.volumes and self.phantom is None:
            raise ValueError("give training data: data.volumes (OME-Zarr stores) or data.phantom (params)")
        if self.volumes and self.phantom is not None:
            raise ValueError("give either data.volumes or data.phantom, not both")
        if self.val_phantom_seed is not None and self.phantom is None:
            raise ValueError("data.val_phantom_seed needs data.phantom")
        if self.val_volumes and self.val_phantom_seed is not None:
            raise ValueError("give either data.val_volumes or data.val_phantom_seed, not both")
        lo, hi = self.percentiles
        if not 0 <= lo < hi <= 100:
            raise ValueError(
                f"percentiles must be (low, high) with 0 <= low < high <= 100; got {self.percentiles}"
            )
        if len(self.patch_shape) not in (2, 3):
            raise ValueError(f"patch_shape must have 3 (z, y, x) or 2 (y, x) entries; got {self.patch_shape}")
        if self.loss_shape is not None and len(self.loss_shape) != len(self.patch_shape):
            raise ValueError(
                f"loss_shape {self.loss_shape} must have as many entries as patch_shape {self.patch_shape}"
            )
        return self


class ModelConfig(StrictModel):
    """The U-Net (see :class:`pipeline.model.UNet`); in/out channels follow from the data."""

    ndim: Literal[2, 3] = 3
    depth: NonNegInt = 3
    base_features: PositiveInt = 12
    feature_growth: Annotated[float, Field(gt=0)] = 2.0
    downsample_factors: tuple[tuple[PositiveInt, ...], ...] | None = Field(
        None, description="one (z, y, x) or (y, x) factor per level; None = 2 along every axis"
    )
    padding: Literal["same", "valid"] = "same"
    norm: Literal["group", "batch"] | None = "group"

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        if self.downsample_factors is not None:
            if len(self.downsample_factors) != self.depth:
                raise ValueError(
                    f"downsample_factors has {len(self.downsample_factors)} entries but depth={self.depth}"
                )
            bad = [f for f in self.downsample_factors if len(f) != self.ndim]
            if bad:
                raise ValueError(
                    f"downsample_factors entries must have ndim={self.ndim} values; got {bad[0]}"
                )
        return self


class AugmentConfig(StrictModel):
    """Augmentation of training patches (see :class:`pipeline.data.Augmentation`); ranges are (min, max)."""

    enabled: bool = True
    flip: bool = Field(True, description="random flips along y and x")
    transpose: bool = Field(True, description="random y/x transpose where the voxel is square in y/x")
    intensity_scale: FloatRange = (0.8, 1.2)
    intensity_shift: FloatRange = (-0.1, 0.1)
    gamma: FloatRange = (0.8, 1.25)
    noise_sigma: FloatRange = Field((0.0, 0.05), description="Gaussian noise std, normalized units")
    dropout_probability: Fraction = Field(
        0.5, description="probability of simulated signal dropout per patch"
    )
    dropout_max_gaps: PositiveInt = 2
    dropout_length_um: FloatRange = Field((2.0, 5.0), description="gap length along the cable, µm")
    dropout_margin_um: Annotated[float, Field(ge=0)] = Field(1.0, description="dark halo around a gap, µm")
    dropout_max_radius_um: Annotated[float, Field(gt=0)] = Field(
        2.0, description="only structures at most this thick (radius, µm) get gaps"
    )


class ScheduleConfig(StrictModel):
    """The papers' schedule: pretrain with BCE (+ Dice), then fine-tune with a topology loss.

    One learning-rate schedule (linear warm-up, then cosine / step / constant) spans both phases.
    """

    pretrain_steps: NonNegInt = 300
    finetune_steps: NonNegInt = 1700
    pretrain_loss: Literal["bce_dice", "bce"] = "bce_dice"
    finetune_loss: LossKind | Literal["none"] = Field(
        "supervoxel", description="topology loss of the fine-tuning phase; 'none' keeps the pretraining loss"
    )
    loss_weights: tuple[float, float, float] | None = Field(
        None, description="(w_BCE, w_Dice, w_eval) of the fine-tuning loss; None = AIS paper Table 1"
    )
    loss_options: dict[str, bool | int | float | str | None] = Field(
        default_factory=dict, description="keyword options of the topology term, e.g. {connectivity: 4}"
    )
    lr: Annotated[float, Field(gt=0)] = 1e-3
    weight_decay: Annotated[float, Field(ge=0)] = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: NonNegInt = 50
    lr_schedule: Literal["cosine", "step", "constant"] = "cosine"
    min_lr_factor: Fraction = Field(0.05, description="cosine: final lr / lr")
    step_size: PositiveInt = Field(
        1000, description="step schedule: multiply lr by step_gamma every step_size steps"
    )
    step_gamma: Annotated[float, Field(gt=0, le=1)] = 0.5
    grad_clip_norm: Annotated[float, Field(gt=0)] | None = Field(1.0, description="None: no clipping")

    @property
    def total_steps(self) -> int:
        return self.pretrain_steps + self.finetune_steps

    @model_validator(mode="after")
    def _check(self) -> ScheduleConfig:
        if self.total_steps < 1:
            raise ValueError("pretrain_steps + finetune_steps must be at least 1")
        return self


class ValidationConfig(StrictModel):
    """Validation on a fixed, seeded set of held-out patches (no augmentation)."""

    every_steps: PositiveInt = 100
    n_patches: PositiveInt = 16
    seed: NonNegInt = 1
    threshold: Annotated[float, Field(gt=0, lt=1)] = 0.5
    connectivity: Literal[4, 8, 6, 18, 26] | None = Field(
        None, description="of the critical components; None = full (8 in 2-D, 26 in 3-D)"
    )
    foreground_fraction: Fraction | None = Field(None, description="None = data.foreground_fraction")


class TrainConfig(StrictModel):
    """Everything that determines a training run (the ``train:`` section of a config file)."""

    seed: NonNegInt = 0
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto = cuda if available")
    amp: bool = Field(True, description="mixed precision on CUDA (always off on CPU)")
    deterministic: bool = Field(False, description="deterministic cuDNN kernels (slower on GPU)")
    cpu_threads: PositiveInt | None = Field(
        None, description="torch CPU threads (None = torch's default); a resumed run matches an "
        "uninterrupted one bit for bit only with the same thread count"
    )
    checkpoint_every: PositiveInt = Field(100, description="steps between checkpoints (and one at the end)")
    log_every: PositiveInt = Field(10, description="steps between rows of log.csv")
    init_checkpoint: Path | None = Field(
        None, description="start from these weights (e.g. a pretrained model to fine-tune) at step 0; "
        "ignored when resuming a run"
    )
    model: ModelConfig = ModelConfig()
    data: DataConfig
    augment: AugmentConfig = AugmentConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    validation: ValidationConfig = ValidationConfig()

    @model_validator(mode="after")
    def _check(self) -> TrainConfig:
        if len(self.data.patch_shape) != self.model.ndim:
            raise ValueError(
                f"data.patch_shape {self.data.patch_shape} has {len(self.data.patch_shape)} entries but "
                f"model.ndim={self.model.ndim}"
            )
        if self.model.ndim == 2 and self.data.phantom is not None:
            raise ValueError("a 2-D model (model.ndim=2) cannot train on a 3-D phantom; use data.volumes")
        conn = self.validation.connectivity
        if conn is not None and conn not in ((4, 8) if self.model.ndim == 2 else (6, 18, 26)):
            raise ValueError(f"validation.connectivity={conn} does not fit model.ndim={self.model.ndim}")
        return self

    @property
    def out_channels(self) -> int:
        """``ndim`` for affinities, 1 for foreground."""
        return self.model.ndim if self.data.target == "affinities" else 1

    @property
    def architecture(self) -> dict[str, Any]:
        """The UNet keyword arguments (stored in checkpoints and checked on load)."""
        m = self.model
        factors = m.downsample_factors or tuple((2,) * m.ndim for _ in range(m.depth))
        return {
            "in_channels": 1,
            "out_channels": self.out_channels,
            "ndim": m.ndim,
            "depth": m.depth,
            "base_features": m.base_features,
            "feature_growth": float(m.feature_growth),
            "downsample_factors": [list(f) for f in factors],
            "padding": m.padding,
            "norm": m.norm,
        }
