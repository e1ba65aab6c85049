"""The local Dask cluster a run starts when ``dask.address`` is unset: CPU workers, plus one worker per GPU.

A ``distributed.LocalCluster`` of ``n_workers`` processes; when the run's device is CUDA, one more
worker for each usable GPU, each seeing only its own device (``CUDA_VISIBLE_DEVICES``) and offering the
worker resource ``GPU=1`` that GPU blocks ask for — what dask-cuda's ``LocalCUDACluster`` does, with
the memory limit and threads of the other workers. Nothing here schedules: Dask does.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from typing import Any

__all__ = ["GPU_RESOURCE", "gpu_worker_name", "local_cluster"]

#: The Dask worker resource every GPU block asks for (``dask worker ... --resources GPU=1``).
GPU_RESOURCE = "GPU"


def gpu_worker_name(gpu_id: str) -> str:
    """The name of the local worker that owns GPU ``gpu_id``."""
    return f"gpu-{gpu_id}"


def _worker_log_level() -> int | bool:
    """ERROR for the local workers' ``distributed`` loggers unless this process logs them below WARNING
    (``--verbose``): their warnings ("unmanaged memory use is high" on every predict block: the model's
    activations) are routine here, since the preflight sizes tiles to the memory limit and a worker
    killed for memory is reported with its blocks; and they carry Dask's own timestamp format."""
    verbose = logging.getLogger("distributed").getEffectiveLevel() < logging.WARNING
    return False if verbose else logging.ERROR


def local_cluster(
    *, n_workers: int, threads_per_worker: int, memory_limit: str, gpu_ids: Sequence[str] = (),
    dashboard_address: str | None = None, asynchronous: bool = False,
) -> Any:
    """Start a ``LocalCluster`` (processes, no dashboard unless asked) with one more worker per id in
    ``gpu_ids``.

    Parameters
    ----------
    n_workers, threads_per_worker : int
        The CPU workers.
    memory_limit : str
        Per worker (every worker, GPU ones included), e.g. ``"4GiB"`` or ``"auto"``.
    gpu_ids : sequence of str
        ``CUDA_VISIBLE_DEVICES`` value of each GPU worker (:func:`pipeline.inference.cuda.visible_gpu_ids`);
        each such worker has one thread and the resource ``GPU=1``.
    dashboard_address : str, optional
        Serve the dashboard there (e.g. ``":8787"``); without it there is none, and the scheduler's HTTP
        endpoints (health, metrics) take a free port instead of claiming 8787 (Dask's default).
    asynchronous : bool
        Passed to ``LocalCluster`` (Prefect's task runner starts it synchronously).

    Returns
    -------
    distributed.LocalCluster
        Started, with every worker running; close it (or use it as a context manager).
    """
    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=n_workers, threads_per_worker=threads_per_worker,
                           memory_limit=memory_limit, processes=True, dashboard_address=dashboard_address,
                           scheduler_kwargs=None if dashboard_address else {"dashboard_address": ":0"},
                           silence_logs=_worker_log_level(), asynchronous=asynchronous)
    if gpu_ids and not asynchronous:
        for gpu in gpu_ids:
            spec = copy.deepcopy(cluster.new_spec)
            spec["options"] = {**spec["options"], "nthreads": 1, "resources": {GPU_RESOURCE: 1},
                               "env": {"CUDA_VISIBLE_DEVICES": str(gpu)}}
            cluster.worker_spec[gpu_worker_name(str(gpu))] = spec
        cluster.scale(len(cluster.worker_spec))
        cluster.wait_for_workers(len(cluster.worker_spec), timeout=120)  # blocks asking for GPU=1 find them
    return cluster
