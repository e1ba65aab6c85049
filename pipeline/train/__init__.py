"""Training: the papers' schedule (BCE + Dice pretraining, topology-loss fine-tuning), checkpoints, resume.

============================  ================================================================================
entry point                   :func:`train` ``(config, *, out_dir, resume=True, progress=True, ...)``
configuration                 :class:`TrainConfig` (the ``train:`` section of a config file) and its
                              sections (:mod:`pipeline.train.config`)
inference                     :func:`load_model` ``(checkpoint_path, *, device=None)``
                              ``-> (UNet, ModelMetadata)``
pieces                        :func:`build_model`, :func:`make_loss`, :func:`lr_factor`,
                              :func:`validation_counts`
============================  ================================================================================

``pipeline.train.config`` imports no torch, so configs validate fast; the rest is imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline.train.config import (
    AugmentConfig,
    DataConfig,
    ModelConfig,
    ScheduleConfig,
    TrainConfig,
    ValidationConfig,
    VolumeConfig,
)

if TYPE_CHECKING:
    from pipeline.io.checkpoint import ModelMetadata, load_model
    from pipeline.train.schedule import lr_factor
    from pipeline.train.trainer import StepInfo, TrainResult, build_model, make_loss, train
    from pipeline.train.validation import ValidationCounts, validation_counts

__all__ = [
    "AugmentConfig",
    "DataConfig",
    "ModelConfig",
    "ModelMetadata",
    "ScheduleConfig",
    "StepInfo",
    "TrainConfig",
    "TrainResult",
    "ValidationConfig",
    "ValidationCounts",
    "VolumeConfig",
    "build_model",
    "load_model",
    "lr_factor",
    "make_loss",
    "train",
    "validation_counts",
]

_LAZY = {
    "ModelMetadata": "pipeline.io.checkpoint",
    "load_model": "pipeline.io.checkpoint",
    "lr_factor": "pipeline.train.schedule",
    "StepInfo": "pipeline.train.trainer",
    "TrainResult": "pipeline.train.trainer",
    "build_model": "pipeline.train.trainer",
    "make_loss": "pipeline.train.trainer",
    "train": "pipeline.train.trainer",
    "ValidationCounts": "pipeline.train.validation",
    "validation_counts": "pipeline.train.validation",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pipeline.train' has no attribute {name!r}")
