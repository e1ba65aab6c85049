from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from pipeline.errors import CheckpointError, ConfigError
from pipeline.io.checkpoint import load_model, read_checkpoint
from pipeline.model import UNet
from pipeline.train import TrainConfig, train
from tests.pipeline.train.conftest import load_train_config

pytest.importorskip("pipeline.io.phantom")

# The tiny config with a short schedule: 6 pretraining + 6 fine-tuning (supervoxel) steps.
SHORT = {
    "checkpoint_every": 4,
    "log_every": 2,
    "schedule": {"pretrain_steps": 6, "finetune_steps": 6, "warmup_steps": 2},
    "validation": {"every_steps": 6, "n_patches": 2},
}


def _weights(path):
    return read_checkpoint(path)["model"]


def _assert_same_state(a, b):
    sa, sb = read_checkpoint(a), read_checkpoint(b)
    assert sa["step"] == sb["step"]
    for key in sa["model"]:
        assert torch.equal(sa["model"][key], sb["model"][key]), key
    for pa, pb in zip(sa["optimizer"]["state"].values(), sb["optimizer"]["state"].values(), strict=True):
        for k in pa:
            assert torch.equal(torch.as_tensor(pa[k]), torch.as_tensor(pb[k])), k
    assert sa["scheduler"]["last_epoch"] == sb["scheduler"]["last_epoch"]


def _log(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    cfg = load_train_config("train_tiny.yaml", **SHORT)
    out = tmp_path_factory.mktemp("runs") / "uninterrupted"
    result = train(cfg, out_dir=out, progress=False)
    return cfg, out, result


def test_uninterrupted_run_finishes_with_checkpoint_log_and_metrics(uninterrupted):
    cfg, out, result = uninterrupted
    assert result.finished and result.step == 12
    assert result.checkpoint == out / "checkpoints" / "final.pt"
    rows = _log(out / "log.csv")
    assert [int(r["step"]) for r in rows] == [2, 4, 6, 8, 10, 12]
    assert [r["phase"] for r in rows] == ["pretrain"] * 3 + ["finetune"] * 3
    assert rows[0]["loss_topology"] == "" and float(rows[-1]["loss_topology"]) >= 0
    for r in (rows[2], rows[5]):  # validation at steps 6 and 12
        assert 0 <= float(r["val_dice"]) <= 1
        assert float(r["val_negative_critical"]) >= 0 and float(r["val_positive_critical"]) >= 0
    model, meta = load_model(result.checkpoint)
    assert isinstance(model, UNet) and not model.training
    assert meta.target == "affinities" and meta.step == 12
    assert meta.architecture["out_channels"] == 3
    assert meta.input["normalization"] == "percentile" and meta.input["patch_shape"] == [8, 48, 48]
    assert meta.input["val_held_out"] is True
    with torch.no_grad():
        assert model(torch.zeros(1, 1, 8, 48, 48)).shape == (1, 3, 8, 48, 48)


def test_train_interrupt_resume_finish_is_bit_exact(uninterrupted, tmp_path):
    cfg, ref_out, ref = uninterrupted
    out = tmp_path / "run"
    # "interrupted" after step 10 (in the fine-tuning phase); the last checkpoint is at step 8
    first = train(cfg, out_dir=out, progress=False, stop_after=10)
    assert not first.finished and first.step == 10
    assert read_checkpoint(out / "checkpoints" / "last.pt")["step"] == 8
    assert not (out / "checkpoints" / "final.pt").exists()
    second = train(cfg, out_dir=out, progress=False)
    assert second.finished and second.step == 12
    _assert_same_state(second.checkpoint, ref.checkpoint)
    # the log is the same rows (steps 9-10 were redone, not duplicated)
    rows, ref_rows = _log(out / "log.csv"), _log(ref_out / "log.csv")
    drop = {"elapsed_s"}
    assert [{k: v for k, v in r.items() if k not in drop} for r in rows] == [
        {k: v for k, v in r.items() if k not in drop} for r in ref_rows
    ]
    # a third call on the finished run does nothing
    again = train(cfg, out_dir=out, progress=False)
    assert again.finished and again.step == 12 and again.checkpoint == second.checkpoint


def test_interrupted_by_exception_in_callback_then_resumed(uninterrupted, tmp_path):
    cfg, _, ref = uninterrupted

    class Boom(RuntimeError):
        pass

    def callback(info):
        if info.step == 5:
            raise Boom("simulated crash")

    out = tmp_path / "run"
    with pytest.raises(Boom):
        train(cfg, out_dir=out, progress=False, callback=callback)
    assert read_checkpoint(out / "checkpoints" / "last.pt")["step"] == 4
    result = train(cfg, out_dir=out, progress=False)
    _assert_same_state(result.checkpoint, ref.checkpoint)


def test_workers_give_the_same_weights(tmp_path):
    kw = {
        **SHORT,
        "schedule": {"pretrain_steps": 3, "finetune_steps": 0},
        "validation": {"every_steps": 3, "n_patches": 1},
    }
    serial = train(load_train_config("train_tiny.yaml", **kw), out_dir=tmp_path / "w0", progress=False)
    kw["data"] = {"num_workers": 2}
    parallel = train(load_train_config("train_tiny.yaml", **kw), out_dir=tmp_path / "w2", progress=False)
    a, b = _weights(serial.checkpoint), _weights(parallel.checkpoint)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_false_refuses_an_existing_run(uninterrupted):
    cfg, out, _ = uninterrupted
    with pytest.raises(CheckpointError, match="already holds a training run"):
        train(cfg, out_dir=out, resume=False, progress=False)


def test_resume_with_another_architecture_is_a_clear_error(uninterrupted, tmp_path):
    cfg, out, _ = uninterrupted
    other = load_train_config("train_tiny.yaml", **SHORT, data={"target": "foreground"})
    with pytest.raises(CheckpointError, match=r"has out_channels=3 but the config says 1"):
        train(other, out_dir=out, progress=False)
    wider = load_train_config("train_tiny.yaml", **SHORT, model={"base_features": 6})
    with pytest.raises(CheckpointError, match=r"base_features=4 but the config says 6"):
        train(wider, out_dir=out, progress=False)


def test_fine_tune_from_pretrained_weights(uninterrupted, tmp_path):
    cfg, _, ref = uninterrupted
    schedule = {
        "pretrain_steps": 0,
        "finetune_steps": 2,
        "finetune_loss": "cldice",
        "loss_options": {"iterations": 2},
    }
    ft = load_train_config(
        "train_tiny.yaml", **{**SHORT, "init_checkpoint": str(ref.checkpoint), "schedule": schedule}
    )
    result = train(ft, out_dir=tmp_path / "ft", progress=False)
    assert result.finished and result.step == 2
    rows = _log(tmp_path / "ft" / "log.csv")
    assert rows[-1]["phase"] == "finetune" and rows[-1]["loss_topology"] != ""
    bad = load_train_config("train_tiny.yaml", **{**SHORT, "schedule": {"finetune_loss": "cldice",
                                                                       "loss_options": {"nonsense": 1}}})
    with pytest.raises(ConfigError, match="loss_options"):
        train(bad, out_dir=tmp_path / "bad", progress=False)


def test_loss_decreases_on_a_toy_2d_problem(disk_store, tmp_path):
    cfg = TrainConfig.model_validate({
        "seed": 0,
        "log_every": 1,
        "checkpoint_every": 100,
        "model": {"ndim": 2, "depth": 2, "base_features": 8},
        "data": {
            "volumes": [{"path": str(disk_store), "roi_stop": [4, 64, 64]}],
            "val_volumes": [{"path": str(disk_store), "roi_start": [4, 0, 0]}],
            "target": "foreground", "patch_shape": [32, 32], "batch_size": 4,
        },
        "augment": {"enabled": False},
        "schedule": {"pretrain_steps": 40, "finetune_steps": 0, "lr": 0.01, "warmup_steps": 2},
        "validation": {"every_steps": 40, "n_patches": 4, "connectivity": 4},
    })
    losses = []
    result = train(cfg, out_dir=tmp_path / "toy", progress=False, callback=lambda i: losses.append(i.loss))
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])
    assert result.val_metrics["val_dice"] > 0.7


def test_patch_shape_that_does_not_fit_the_unet(tube_store, tmp_path):
    cfg = TrainConfig.model_validate({
        "model": {"depth": 2, "base_features": 4, "downsample_factors": [[1, 2, 2], [1, 2, 2]]},
        "data": {"volumes": [{"path": str(tube_store)}], "patch_shape": [8, 30, 32]},
    })
    with pytest.raises(ConfigError, match=r"patch_shape \(8, 30, 32\) does not fit the U-Net.*smallest"):
        train(cfg, out_dir=tmp_path / "x", progress=False)


def test_valid_padding_and_downscaling(tube_store, tmp_path):
    cfg = TrainConfig.model_validate({
        "log_every": 1,
        "model": {"depth": 1, "base_features": 4, "downsample_factors": [[1, 2, 2]], "padding": "valid"},
        "data": {"volumes": [{"path": str(tube_store)}], "patch_shape": [14, 28, 28], "downscale_xy": 2},
        "schedule": {"pretrain_steps": 2, "finetune_steps": 1, "finetune_loss": "supervoxel"},
        "validation": {"every_steps": 3, "n_patches": 1},
    })
    with pytest.warns(UserWarning, match="not held out"):
        result = train(cfg, out_dir=tmp_path / "valid", progress=False)
    _, meta = load_model(result.checkpoint)
    assert meta.input["downscale_xy"] == 2 and meta.input["output_shape"] == [2, 12, 12]


@pytest.mark.slow
def test_tiny_config_trains_interrupted_and_resumed(tmp_path):
    """The whole configs/train_tiny.yaml run (~1 min): interrupted half way, resumed, finished, learned."""
    cfg = load_train_config("train_tiny.yaml")
    total = cfg.schedule.total_steps
    first = train(cfg, out_dir=tmp_path / "tiny", progress=False, stop_after=total // 2 + 3)
    assert not first.finished
    result = train(cfg, out_dir=tmp_path / "tiny", progress=False)
    assert result.finished and result.step == total
    steps = [int(r["step"]) for r in _log(tmp_path / "tiny" / "log.csv")]
    assert steps == sorted(set(steps)) and steps[-1] == total
    assert result.val_metrics["val_dice"] > 0.2  # affinities of a held-out phantom, from ~0 at the start


def test_loss_shape_puts_the_loss_on_the_patch_centre(tube_store, tmp_path):
    """``data.loss_shape``: targets cover the centred region only, the logits are cropped to it, and the
    instance-level affinity supervoxel loss trains there; a region that cannot be centred is refused."""
    from pipeline.train.trainer import _crop_to

    base = {
        "log_every": 1,
        "model": {"depth": 1, "base_features": 4, "downsample_factors": [[1, 2, 2]]},
        "data": {"volumes": [{"path": str(tube_store)}], "patch_shape": [8, 32, 32], "loss_shape": [4, 16, 16]},
        "schedule": {"pretrain_steps": 1, "finetune_steps": 2, "finetune_loss": "affinity_supervoxel"},
        "validation": {"every_steps": 3, "n_patches": 1},
    }
    cfg = TrainConfig.model_validate(base)
    seen = []
    with pytest.warns(UserWarning, match="not held out"):
        result = train(cfg, out_dir=tmp_path / "centre", progress=False, callback=seen.append)
    assert result.finished and [s.phase for s in seen] == ["pretrain", "finetune", "finetune"]
    assert "affinity_supervoxel" in seen[-1].terms
    _, meta = load_model(result.checkpoint)
    assert meta.input["patch_shape"] == [8, 32, 32] and meta.input["output_shape"] == [4, 16, 16]
    logits = torch.arange(2 * 3 * 8 * 32 * 32, dtype=torch.float32).reshape(2, 3, 8, 32, 32)
    crop = _crop_to(logits, torch.zeros(2, 3, 4, 16, 16))
    assert torch.equal(crop, logits[:, :, 2:6, 8:24, 8:24])
    with pytest.raises(ConfigError, match=r"loss_shape \(5, 16, 16\) does not fit centred"):
        bad = TrainConfig.model_validate({**base, "data": {**base["data"], "loss_shape": [5, 16, 16]}})
        train(bad, out_dir=tmp_path / "bad", progress=False)
    with pytest.raises(ValueError, match="loss_shape"):
        TrainConfig.model_validate({**base, "data": {**base["data"], "loss_shape": [16, 16]}})
