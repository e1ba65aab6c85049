from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from pipeline.errors import CheckpointError
from pipeline.io.checkpoint import (
    TrainingLog,
    check_architecture,
    load_model,
    read_checkpoint,
    save_checkpoint,
)
from pipeline.model import UNet

ARCH = {
    "in_channels": 1, "out_channels": 1, "ndim": 2, "depth": 1, "base_features": 4, "feature_growth": 2.0,
    "downsample_factors": [[2, 2]], "padding": "same", "norm": "group",
}


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    model = UNet(1, 1, ndim=2, depth=1, base_features=4, downsample_factors=[(2, 2)])
    path = save_checkpoint(tmp_path / "ckpt" / "m.pt", {
        "architecture": ARCH, "model": model.state_dict(), "step": 7,
        "metadata": {"target": "foreground", "normalization": "dtype"},
    })
    return path, model


def test_round_trip_and_load_model(checkpoint):
    path, model = checkpoint
    data = read_checkpoint(path)
    assert data["format"] == "neurorecon-checkpoint" and data["version"] == 1 and data["step"] == 7
    loaded, meta = load_model(path)
    assert not loaded.training and meta.step == 7 and meta.target == "foreground"
    assert meta.input == {"normalization": "dtype"}
    x = torch.rand(1, 1, 16, 16)
    model.eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_save_is_atomic_replacement(checkpoint):
    path, model = checkpoint
    save_checkpoint(path, {"architecture": ARCH, "model": model.state_dict(), "step": 8})
    assert read_checkpoint(path)["step"] == 8
    with pytest.raises(ValueError, match="lacks model"):
        save_checkpoint(path, {"architecture": ARCH, "step": 9})
    assert read_checkpoint(path)["step"] == 8


def test_truncated_checkpoint(checkpoint):
    path, _ = checkpoint
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"m\.pt is truncated or corrupt"):
        read_checkpoint(path)
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_model(path)


def test_random_file_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "random.pt"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(CheckpointError, match=r"random\.pt is not a neurorecon checkpoint"):
        read_checkpoint(path)
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    with pytest.raises(CheckpointError, match="is not a neurorecon checkpoint"):
        load_model(text)


def test_plain_torch_file_is_not_a_neurorecon_checkpoint(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"weight": torch.zeros(3)}, path)
    with pytest.raises(CheckpointError, match="not a neurorecon checkpoint.*without format marker"):
        read_checkpoint(path)
    torch.save([1, 2, 3], path)
    with pytest.raises(CheckpointError, match="holds a list"):
        read_checkpoint(path)


def test_missing_file_and_newer_version(tmp_path, checkpoint):
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "nope.pt")
    path, model = checkpoint
    torch.save({"format": "neurorecon-checkpoint", "version": 99, "architecture": ARCH,
                "model": model.state_dict(), "step": 1}, path)
    with pytest.raises(CheckpointError, match="version 99"):
        read_checkpoint(path)


def test_architecture_mismatch_names_every_difference(checkpoint):
    path, _ = checkpoint
    data = read_checkpoint(path)
    with pytest.raises(CheckpointError, match=r"has out_channels=1 but the config says 3$"):
        check_architecture(data, {**ARCH, "out_channels": 3}, path=path)
    with pytest.raises(CheckpointError, match=r"depth=1 but the config says 2; .*downsample_factors"):
        check_architecture(data, {**ARCH, "depth": 2, "downsample_factors": [[2, 2], [2, 2]]}, path=path)
    check_architecture(data, {**ARCH, "downsample_factors": [(2, 2)]}, path=path)  # tuples == lists


def test_weights_that_do_not_fit_their_architecture(tmp_path, checkpoint):
    _, model = checkpoint
    path = save_checkpoint(tmp_path / "bad.pt", {
        "architecture": {**ARCH, "base_features": 8}, "model": model.state_dict(), "step": 1,
    })
    with pytest.raises(CheckpointError, match="weights that do not fit its architecture"):
        load_model(path)


def test_training_log_append_and_truncate(tmp_path):
    log = TrainingLog(tmp_path / "log.csv", ["step", "loss"])
    for step in range(1, 6):
        log.append({"step": step, "loss": 1.0 / step})
    log.truncate_after(3)
    assert [r["step"] for r in log.rows()] == ["1", "2", "3"]
    assert log.rows()[1]["loss"] == "0.5"
    with pytest.raises(ValueError, match="unknown log columns"):
        log.append({"step": 4, "other": 1})
    again = TrainingLog(tmp_path / "log.csv", ["step", "loss"])  # reopening keeps the rows
    assert len(again.rows()) == 3
    changed = TrainingLog(tmp_path / "log.csv", ["step", "loss", "lr"])  # another header: fresh log
    assert changed.rows() == [] and os.path.exists(tmp_path / "log.old.csv")
