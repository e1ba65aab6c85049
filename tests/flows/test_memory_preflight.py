"""Memory-aware defaults (issue 17): the forward pass's memory is measured per voxel for the model in use,
the estimate of a predict task matches a real one, and the preflight refuses a tile that does not fit a
worker (with the numbers and the settings to change) or picks one that fits when none was set.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from flows.preflight import MEMORY_BUDGET_FRACTION, check_memory, forward_memory_key, model_memory
from pipeline.config import NeuroreconConfig
from pipeline.errors import ConfigError
from pipeline.inference.memory import ForwardMemory, predict_task_bytes, tile_for_budget
from pipeline.io.checkpoint import load_model
from pipeline.model import SHIPPED_MODELS

MODEL = SHIPPED_MODELS["neurons"]
GIB = 2**30


@pytest.fixture(scope="module")
def net():
    return load_model(MODEL)[0]


@pytest.fixture
def known_memory(tmp_path, monkeypatch):
    """A cache holding fixed figures for the shipped model: the preflight reads them instead of measuring."""
    import torch

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    figures = ForwardMemory(runtime_bytes=400 * 2**20, bytes_per_voxel=500.0, device="cpu",
                            torch=torch.__version__)
    cache = tmp_path / "neurorecon" / "forward_memory.json"
    cache.parent.mkdir()
    key = forward_memory_key(MODEL)
    cache.write_text(json.dumps({key: json.loads(figures.to_json())}))
    return figures


def _config(tile=None, *, memory_limit="4GiB", block=(32, 256, 256), threads=1):
    return NeuroreconConfig.model_validate({
        "segment": {"raw": "raw.zarr", "out": "run", "tile_shape": tile, "block_shape": block},
        "dask": {"memory_limit": memory_limit, "threads_per_worker": threads},
    })


def test_tile_for_budget_halves_the_longest_axis_until_the_tile_fits():
    def fits_voxels(limit):
        return lambda t: math.prod(t) <= limit

    default, m = (32, 256, 256), (2, 8, 8)
    assert tile_for_budget(default, fits=fits_voxels(32 * 256 * 256), multiple=m) == (32, 256, 256)
    assert tile_for_budget(default, fits=fits_voxels(32 * 256 * 128), multiple=m) == (32, 256, 128)
    assert tile_for_budget(default, fits=fits_voxels(32 * 128 * 128), multiple=m) == (32, 128, 128)
    # (32, 128, 128) is 16 multiples long on every axis: ties halve the last of them (x, then y)
    assert tile_for_budget(default, fits=fits_voxels(32 * 128 * 64), multiple=m) == (32, 128, 64)
    assert tile_for_budget(default, fits=fits_voxels(32 * 64 * 64), multiple=m) == (32, 64, 64)
    # halves are rounded up to the multiple: 40 -> 24 (not 20)
    assert tile_for_budget((8, 40, 8), fits=fits_voxels(8 * 24 * 8), multiple=(8, 8, 8)) == (8, 24, 8)
    assert tile_for_budget((4, 16, 16), fits=lambda t: False, multiple=(2, 8, 8)) is None


def test_a_predict_task_adds_runtime_activations_and_block_buffers():
    memory = ForwardMemory(runtime_bytes=1000, bytes_per_voxel=10.0, device="cpu", torch="x")
    # 1000 + 10 x 50 x 2 tiles + 4 x 30 read + (4 + 1) x 3 channels x 20 written
    assert predict_task_bytes(memory, tile_input_voxels=50, batch_size=2, block_read_voxels=30,
                              block_voxels=20) == 1000 + 1000 + 120 + 300


@pytest.mark.slow
def test_the_measured_figures_predict_a_real_inference_peak(tmp_path, monkeypatch, net):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    memory = model_memory(MODEL)  # measured in a fresh process, then cached
    assert 200 < memory.bytes_per_voxel < 2000, memory
    assert 100 * 2**20 < memory.runtime_bytes < 2 * GIB, memory
    assert model_memory(MODEL) == memory  # the second call reads the cache
    assert len(json.loads((tmp_path / "neurorecon" / "forward_memory.json").read_text())) == 1

    tile = (16, 128, 192)
    script = (
        "import numpy as np\n"
        "from pipeline.inference.memory import peak_rss_bytes\n"
        "from pipeline.io.checkpoint import load_model\n"
        "from pipeline.inference import predict_region\n"
        f"model, _ = load_model({str(MODEL)!r})\n"
        f"vol = np.random.default_rng(0).random({tile}, dtype=np.float32)\n"
        f"predict_region(model, lambda r: vol[r], volume_shape=vol.shape, region=tuple(slice(0, n) for n in "
        f"vol.shape), tile_shape={tile}, batch_size=1, device='cpu')\n"
        "print(peak_rss_bytes())\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         check=True)
    actual = int(out.stdout.strip().splitlines()[-1])
    padded = tuple(t + 2 * int(c) for t, c in zip(tile, net.context, strict=True))
    estimate = predict_task_bytes(memory, tile_input_voxels=math.prod(net.valid_input_shape(padded)),
                                  batch_size=1, block_read_voxels=math.prod(padded),
                                  block_voxels=math.prod(tile))
    assert 0.8 < estimate / actual < 1.4, (estimate, actual, memory)


def test_a_tile_that_does_not_fit_is_refused_with_the_numbers_and_the_settings(known_memory, net):
    with pytest.raises(ConfigError) as err:
        check_memory(_config((32, 256, 256), memory_limit="1GiB"), net=net, model=MODEL,
                     volume_shape=(64, 512, 512), workers=None)
    message = str(err.value)
    assert message.startswith("segment.tile_shape (32, 256, 256): a predict task needs about ")
    assert "500 B per input voxel (measured for neurons_affinities.pt)" in message
    assert f"{MEMORY_BUDGET_FRACTION:.0%} of its 1.0 GiB limit" in message
    assert "set segment.tile_shape to (" in message and "or raise dask.memory_limit to at least" in message
    # the suggested tile and the suggested limit do fit
    suggested = tuple(int(v) for v in message.split("tile_shape to (")[1].split(")")[0].split(","))
    assert check_memory(_config(suggested, memory_limit="1GiB"), net=net, model=MODEL,
                        volume_shape=(64, 512, 512), workers=None) is None
    limit = message.split("at least ")[1].split("GiB")[0]
    assert check_memory(_config((32, 256, 256), memory_limit=f"{float(limit) + 0.1:.1f}GiB"), net=net,
                        model=MODEL, volume_shape=(64, 512, 512), workers=None) is None


def test_without_a_tile_setting_the_largest_tile_that_fits_is_chosen(known_memory, net):
    assert check_memory(_config(memory_limit="8GiB"), net=net, model=MODEL, volume_shape=(64, 512, 512),
                        workers=None) is None  # the default fits
    chosen = check_memory(_config(memory_limit="2GiB"), net=net, model=MODEL, volume_shape=(64, 512, 512),
                          workers=None)
    assert chosen is not None and math.prod(chosen) < 32 * 256 * 256
    assert check_memory(_config(chosen, memory_limit="2GiB"), net=net, model=MODEL,
                        volume_shape=(64, 512, 512), workers=None) is None
    # two tasks per worker need room for two tiles: a smaller one
    two = check_memory(_config(memory_limit="2GiB", threads=2), net=net, model=MODEL,
                       volume_shape=(64, 512, 512), workers=None)
    assert two is not None and math.prod(two) < math.prod(chosen)


def test_an_existing_clusters_smallest_worker_sets_the_budget(known_memory, net):
    workers = [{"memory_limit": 16 * GIB, "resources": {}},
               {"memory_limit": 2 * GIB, "resources": {"GPU": 1}}]
    shape = (64, 512, 512)
    assert check_memory(_config(), net=net, model=MODEL, volume_shape=shape, workers=workers) is not None
    assert check_memory(_config(), net=net, model=MODEL, volume_shape=shape, workers=workers[:1]) is None


def test_small_volumes_need_no_measurement(tmp_path, monkeypatch, net):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert check_memory(_config(block=(16, 64, 64)), net=net, model=MODEL, volume_shape=(16, 64, 64),
                        workers=None) is None
    assert not (tmp_path / "neurorecon").exists()


def test_a_block_too_large_for_a_watershed_task_is_refused(known_memory, net):
    with pytest.raises(ConfigError, match=r"^segment\.block_shape \(64, 1024, 1024\) with halo_vx "
                                          r"\(4, 16, 16\): a watershed task needs about .* GiB .*use smaller "
                                          r"segment\.block_shape or raise dask\.memory_limit$"):
        check_memory(_config((16, 64, 64), memory_limit="4GiB", block=(64, 1024, 1024)), net=net, model=MODEL,
                     volume_shape=(64, 1024, 1024), workers=None)
