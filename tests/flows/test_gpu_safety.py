"""GPU safety (issue 17): a CUDA run is refused in seconds where no GPU can run it, an existing cluster
without a ``GPU`` worker is refused before any block, and the local cluster gets one worker per GPU, each
seeing only its own device. On a machine with a usable GPU the refusals are skipped (they cannot happen
there); the cluster tests run everywhere, with device ids given by hand.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows.cluster import GPU_RESOURCE, gpu_worker_name, local_cluster
from flows.preflight import check_cluster
from pipeline.config import DaskConfig
from pipeline.errors import ConfigError
from pipeline.inference.cuda import _supported, check_cuda, cuda_devices

BIN = Path(sys.executable).parent
no_usable_gpu = pytest.mark.skipif(bool([d for d in cuda_devices() if d.supported]),
                                   reason="a usable CUDA device is present: nothing to refuse")


@pytest.mark.parametrize(("capability", "arch_list", "expected"), [
    ((8, 0), ["sm_50", "sm_80", "sm_90"], True),     # exact binary
    ((8, 6), ["sm_80", "sm_90"], True),              # sm_80 runs on 8.6 (same major, later minor)
    ((7, 5), ["sm_80", "sm_90"], False),             # older than every binary
    ((9, 0), ["sm_80", "compute_80"], True),         # PTX compiles on any later device
    ((9, 0), ["sm_80"], False),                      # no binary for major 9, no PTX
    ((12, 0), ["sm_100", "sm_120"], True),           # three-digit architectures
    ((10, 0), ["sm_120"], False),
])
def test_compute_capability_support_follows_the_builds_architectures(capability, arch_list, expected):
    assert _supported(capability, arch_list) is expected


@no_usable_gpu
def test_check_cuda_refuses_without_a_usable_gpu_naming_the_setting_and_the_way_out():
    with pytest.raises(ConfigError, match=r"^segment\.device is 'cuda' but .*(CPU-only build|sees no CUDA "
                                          r"device|no kernels).*or set segment\.device: cpu$"):
        check_cuda("cuda", what="segment.device")


@no_usable_gpu
def test_a_cuda_run_without_a_gpu_fails_in_seconds_before_anything_is_written(tmp_path):
    from pipeline.io.phantom import write_phantom
    from pipeline.synth import PhantomParams

    write_phantom(tmp_path / "raw.zarr", PhantomParams(shape=(16, 64, 64), chunks=(16, 64, 64), seed=1,
                                                      n_neurons=1, n_ais=1), progress=False)
    config = tmp_path / "cuda.yaml"
    config.write_text(f"segment:\n  raw: {tmp_path / 'raw.zarr'}\n  out: {tmp_path / 'run'}\n  device: cuda\n"
                      f"output:\n  root: {tmp_path}\n")
    for command in ("segment", "run"):
        start = time.monotonic()
        out = subprocess.run([str(BIN / "neurorecon"), command, str(config)], capture_output=True, text=True,
                             timeout=120, env={**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
        seconds = time.monotonic() - start
        assert out.returncode == 2, out.stderr
        assert out.stderr.strip().startswith("error: segment.device is 'cuda'"), out.stderr
        assert "set segment.device: cpu" in out.stderr
        assert seconds < 60, f"{command} took {seconds:.0f} s to refuse"
        assert not (tmp_path / "run" / "affinities.zarr").exists()


@no_usable_gpu
def test_gpu_check_exits_1_without_a_usable_gpu():
    out = subprocess.run([str(BIN / "neurorecon"), "gpu-check"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert out.stderr.startswith("error: device is 'cuda' but"), out.stderr


def test_the_local_cluster_gets_one_worker_per_gpu_each_seeing_only_its_own_device():
    from distributed import Client

    gpus = ["3", "GPU-5a"]  # an index and a UUID-like id, as CUDA_VISIBLE_DEVICES may list them
    with local_cluster(n_workers=1, threads_per_worker=1, memory_limit="1GiB", gpu_ids=gpus) as cluster, \
            Client(cluster) as client:
        info = client.scheduler_info(n_workers=-1)["workers"]
        workers = {w["name"]: w for w in info.values()}
        address = {w["name"]: a for a, w in info.items()}
        assert set(workers) == {0, gpu_worker_name("3"), gpu_worker_name("GPU-5a")}
        assert workers[0]["resources"] == {}
        seen = client.run(lambda: os.environ.get("CUDA_VISIBLE_DEVICES"))
        by_name = {name: seen[address[name]] for name in workers}
        assert by_name == {0: None, gpu_worker_name("3"): "3", gpu_worker_name("GPU-5a"): "GPU-5a"}
        for gpu in gpus:
            w = workers[gpu_worker_name(gpu)]
            assert w["resources"] == {GPU_RESOURCE: 1}
            assert w["nthreads"] == 1
            assert w["memory_limit"] == 2**30
        # a GPU block lands on a GPU worker only
        where = client.submit(lambda: os.environ.get("CUDA_VISIBLE_DEVICES"), resources={GPU_RESOURCE: 1},
                              pure=False).result(timeout=30)
        assert where in gpus


def test_an_existing_cluster_without_a_gpu_worker_is_refused_naming_the_resource():
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        dask = DaskConfig(address=cluster.scheduler_address)
        assert len(check_cluster(dask)) == 1  # a CPU run is fine
        start = time.monotonic()
        with pytest.raises(ConfigError, match=r"none of the 1 worker\(s\) of the Dask cluster at "
                                              r"dask\.address .* offers the 'GPU' resource .*--resources "
                                              r"GPU=1 .*or set segment\.device: cpu"):
            check_cluster(dask, gpu=True)
        assert time.monotonic() - start < 10


@no_usable_gpu
def test_an_existing_gpu_worker_that_cannot_use_cuda_is_refused_naming_the_worker():
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None,
                      resources={GPU_RESOURCE: 1}) as cluster:
        with pytest.raises(ConfigError, match=r"^Dask worker .* of dask\.address .*: segment\.device is "
                                              r"'cuda' but "):
            check_cluster(DaskConfig(address=cluster.scheduler_address), gpu=True)
