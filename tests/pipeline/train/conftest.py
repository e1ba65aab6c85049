"""Training tests: single-threaded torch (shared machine) and small stores written once per session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pipeline.io.omezarr import write_image, write_labels
from pipeline.train import TrainConfig
from tests.pipeline.data.volumes import tube_volume

REPO_ROOT = Path(__file__).resolve().parents[3]
CONFIGS = REPO_ROOT / "configs"


# One torch thread for the whole session (set at import, before any fixture runs): the machine is
# shared, and bit-exact comparisons between runs need the same thread count.
torch.set_num_threads(1)


def load_train_config(name: str, **updates) -> TrainConfig:
    """``configs/<name>``'s ``train:`` section, with top-level sections updated (merged one level deep)."""
    data = yaml.safe_load((CONFIGS / name).read_text())["train"]
    for key, value in updates.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return TrainConfig.model_validate(data)


@pytest.fixture(scope="session")
def disk_store(tmp_path_factory) -> Path:
    """A (6, 64, 64) stack of 2-D slices with thick bright tubes: an easy foreground problem."""
    path = tmp_path_factory.mktemp("stores") / "disks.zarr"
    raw, labels = tube_volume((6, 64, 64), n_tubes=6, radius=4.0, seed=1, noise=20.0)
    write_image(path, raw, voxel_size_um=(1.0, 1.0, 1.0), chunks=(1, 64, 64))
    write_labels(path, "ground_truth", labels)
    return path


@pytest.fixture(scope="session")
def tube_store(tmp_path_factory) -> Path:
    """A (16, 64, 64) 3-D volume of tubes (anisotropic voxel 1.5 x 0.5 x 0.5 µm)."""
    path = tmp_path_factory.mktemp("stores") / "tubes.zarr"
    raw, labels = tube_volume((16, 64, 64), n_tubes=6, radius=2.5, seed=2)
    write_image(path, raw, voxel_size_um=(1.5, 0.5, 0.5), chunks=(8, 32, 32))
    write_labels(path, "ground_truth", labels.astype(np.uint32))
    return path
