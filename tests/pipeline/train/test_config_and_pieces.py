from __future__ import annotations

import numpy as np
import pytest
import yaml
from pydantic import ValidationError

from pipeline.train import TrainConfig
from pipeline.train.schedule import lr_factor
from pipeline.train.validation import count_critical_components, validation_counts
from tests.pipeline.train.conftest import CONFIGS


@pytest.mark.parametrize("name", ["train_tiny.yaml", "train_neurons.yaml", "train_ais.yaml", "train_isbi12.yaml"])
def test_shipped_configs_validate(name):
    data = yaml.safe_load((CONFIGS / name).read_text())
    assert set(data) == {"train"}
    cfg = TrainConfig.model_validate(data["train"])
    assert cfg.schedule.total_steps > 0
    assert TrainConfig.model_validate(cfg.model_dump(mode="json")) == cfg  # what checkpoints store


def test_isbi12_config_is_2d_foreground():
    cfg = TrainConfig.model_validate(yaml.safe_load((CONFIGS / "train_isbi12.yaml").read_text())["train"])
    assert cfg.model.ndim == 2 and cfg.out_channels == 1 and cfg.data.target == "foreground"


def test_config_errors():
    base = {"data": {"volumes": [{"path": "v.zarr"}], "patch_shape": [8, 32, 32]}}
    with pytest.raises(ValidationError, match="extra"):
        TrainConfig.model_validate({**base, "epochs": 3})
    with pytest.raises(ValidationError, match="give training data"):
        TrainConfig.model_validate({"data": {"patch_shape": [8, 32, 32]}})
    with pytest.raises(ValidationError, match="model.ndim=2"):
        TrainConfig.model_validate({**base, "model": {"ndim": 2}})
    with pytest.raises(ValidationError, match="downsample_factors has 1 entries but depth=2"):
        TrainConfig.model_validate({**base, "model": {"depth": 2, "downsample_factors": [[1, 2, 2]]}})
    with pytest.raises(ValidationError, match="finetune_loss"):
        TrainConfig.model_validate({**base, "schedule": {"finetune_loss": "topoloss"}})
    cfg = TrainConfig.model_validate(base)
    with pytest.raises(ValidationError):
        cfg.seed = 3  # frozen
    assert cfg.architecture["downsample_factors"] == [[2, 2, 2]] * 3


def test_lr_factor():
    f = [lr_factor(s, total_steps=10, warmup_steps=2) for s in range(11)]
    assert f[0] == pytest.approx(1 / 3) and f[2] == 1.0 and f[10] == pytest.approx(0.0)
    assert all(a >= b for a, b in zip(f[2:-1], f[3:], strict=True))
    assert lr_factor(5, total_steps=10, kind="constant") == 1.0
    assert lr_factor(2500, total_steps=3000, kind="step", step_size=1000, step_gamma=0.5) == 0.25


def test_count_critical_components_by_hand():
    target = np.zeros((5, 9), bool)
    target[2] = True
    pred = target.copy()
    pred[2, 3] = pred[2, 6] = False  # two breaks: two negatively critical components
    pred[0, 0] = True  # one spurious object
    assert count_critical_components(pred, target, connectivity=4) == (2, 1)
    assert count_critical_components(target, target, connectivity=8) == (0, 0)


def test_validation_counts_dice_and_mask():
    target = np.zeros((1, 1, 4, 4), np.float32)
    target[0, 0, 1:3, 1:3] = 1
    probs = target.copy()
    probs[0, 0, 0, 0] = 0.9  # one false positive, a spurious component
    counts = validation_counts(probs, target, connectivity=4)  # (0, 0) touches the square only diagonally
    assert counts.dice == pytest.approx(8 / 9)
    assert counts.positive_critical == 1 and counts.negative_critical == 0
    mask = np.ones_like(target)
    mask[0, 0, 0, 0] = 0
    masked = validation_counts(probs, target, mask, connectivity=4)
    assert masked.dice == 1.0 and masked.positive_critical == 0
    total = counts + masked
    assert total.patches == 2 and total.positive_critical == 1
