from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from pipeline.io.config import load_config

CONFIGS = Path(__file__).resolve().parents[3] / "configs"


def test_defaults_and_env_override():
    cfg = load_config(env={})
    assert cfg.synth.voxel_size_um == (1.5, 0.5, 0.5)
    cfg = load_config(env={"NEURORECON__SYNTH__SEED": "7", "NEURORECON__DASK__ADDRESS": "tcp://h:8786",
                           "NEURORECON__SYNTH__SHAPE": "[8, 16, 16]", "OTHER": "x"})
    assert cfg.synth.seed == 7
    assert cfg.dask.address == "tcp://h:8786"
    assert cfg.synth.shape == (8, 16, 16)


def test_config_is_frozen():
    cfg = load_config(env={})
    with pytest.raises(Exception, match="frozen"):
        cfg.synth.seed = 3  # type: ignore[misc]


def test_env_override_beats_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("synth:\n  seed: 3\n")
    assert load_config(p, env={}).synth.seed == 3
    assert load_config(p, env={"NEURORECON__SYNTH__SEED": "9"}).synth.seed == 9


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("synth:\n  seeed: 3\n",
         r"unknown key 'synth.seeed'; did you mean 'seed'\? Allowed keys in synth: .*seed"),
        ("synht:\n  seed: 3\n",
         r"unknown key 'synht'; did you mean 'synth'\? Allowed keys: dask, evaluate, output, report, "
         r"segment, skeletonize, synth, train"),
        ("synth:\n  voxel_size_um: [1, 0, 1]\n", r"synth.voxel_size_um.1: .*greater than 0"),
        ("synth:\n  shape: [4, 4]\n", r"synth.shape"),
        ("synth:\n  seed: [\n", r"not valid YAML at line"),
        ("- a\n- b\n", r"must hold a mapping"),
        ("synth:\n  dropout:\n    length_um: [5, 2]\n", r"min <= max"),
    ],
)
def test_bad_config_gives_one_clear_message(tmp_path, text, match):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=match) as info:
        load_config(p, env={})
    assert str(p) in str(info.value)


def test_missing_file_and_bad_env():
    with pytest.raises(ConfigError, match="does not exist"):
        load_config("/nonexistent/c.yaml", env={})
    with pytest.raises(ConfigError, match="unknown key 'synth.sed'"):
        load_config(env={"NEURORECON__SYNTH__SED": "1"})
    with pytest.raises(ConfigError, match="malformed"):
        load_config(env={"NEURORECON__SYNTH__": "1"})


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_are_valid(path):
    load_config(path, env={})


def test_configuration_has_no_place_for_secrets():
    """Secrets (database password, Prefect API key) come only from the environment: no config key takes
    one."""
    import re

    from pipeline.config import NeuroreconConfig

    def keys(model, prefix=""):
        for name, field in model.model_fields.items():
            yield prefix + name
            for arg in (field.annotation, *getattr(field.annotation, "__args__", ())):
                if hasattr(arg, "model_fields"):
                    yield from keys(arg, prefix + name + ".")

    names = list(keys(NeuroreconConfig))
    assert len(names) > 50
    assert not [n for n in names if re.search(r"password|secret|token|api_?key|credential", n, re.I)]


def test_a_duplicate_key_is_refused_naming_it_and_its_lines(tmp_path):
    p = tmp_path / "dup.yaml"
    p.write_text("synth:\n  seed: 3\n  shape: [16, 64, 64]\n  seed: 4\n")
    message = r"dup\.yaml: the key 'seed' appears twice in one mapping \(lines 2 and 4\)"
    with pytest.raises(ConfigError, match=message):
        load_config(p)
    p.write_text("synth:\n  seed: 3\nsynth:\n  seed: 4\n")
    with pytest.raises(ConfigError, match=r"key 'synth' appears twice .*lines 1 and 3"):
        load_config(p)


def test_an_alias_bomb_and_a_huge_file_are_refused_quickly_with_a_short_message(tmp_path):
    import time

    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8)
    ) + "synth:\n  seed: *i\n"
    p = tmp_path / "bomb.yaml"
    p.write_text(bomb)
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=r"more than 100000 values once its YAML aliases") as info:
        load_config(p)
    assert time.perf_counter() - start < 5 and len(str(info.value)) < 400
    big = tmp_path / "big.yaml"
    big.write_text("synth:\n  seed: 1\n" + "# padding\n" * 120_000)
    with pytest.raises(ConfigError, match=r"big\.yaml has \d+ bytes, more than a configuration needs"):
        load_config(big)


def test_a_long_received_value_is_echoed_as_a_short_excerpt(tmp_path):
    p = tmp_path / "long.yaml"
    p.write_text("synth:\n  seed: [" + ", ".join(["1"] * 5000) + "]\n")
    with pytest.raises(ConfigError, match=r"synth\.seed: .* \(got \[1, 1, 1.* \.\.\.\)") as info:
        load_config(p)
    assert len(str(info.value)) < 500
