"""A torch ``IterableDataset`` of training batches and the ``DataLoader`` that runs it in worker processes.

The dataset yields whole batches: batch ``b`` is :func:`~pipeline.data.sampler.sample_batch` with
``batch_index=b``, seeded by ``(seed, stream, b)`` alone. With ``W`` workers, worker ``w`` makes batches
``start + w, start + w + W, ...`` and the loader returns them in order, so the stream of batches is the
same for any number of workers (0 included), and a run resumed at step ``k`` gets exactly the batches
an uninterrupted run would have seen from step ``k`` on (``start=k``). Each worker process is also
seeded distinctly and reproducibly (torch, numpy and ``random`` from the loader's seeded generator plus
the worker id) in case anything inside it draws from a global generator.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from pipeline.data.augment import Augmentation
from pipeline.data.sampler import PatchSpec, VolumeSource, sample_batch

__all__ = ["PatchDataset", "make_loader"]


class PatchDataset(IterableDataset):
    """Batches ``start, start + 1, ...`` (up to ``stop``, or forever) of a seeded patch stream.

    Parameters
    ----------
    sources : sequence of VolumeSource
        Volumes to sample from (readers are shared with forked workers, not copied into memory).
    spec : PatchSpec
    augmentation : Augmentation
    batch_size : int
    seed : int
        Base seed of the stream.
    start : int
        First batch index (the training step to resume from).
    stop : int, optional
        One past the last batch index; None for an endless stream.
    stream : int
        Stream id (0 training, 1 validation), so streams with the same seed differ.

    Yields
    ------
    dict of str to numpy.ndarray
        ``Batch.as_dict()``: raw (B, 1, ...), target and mask (B, C, ...), labels, source, start,
        foreground_centred.
    """

    def __init__(
        self,
        sources: Sequence[VolumeSource],
        *,
        spec: PatchSpec,
        augmentation: Augmentation,
        batch_size: int,
        seed: int,
        start: int = 0,
        stop: int | None = None,
        stream: int = 0,
    ) -> None:
        super().__init__()
        if not sources:
            raise ValueError("sources is empty; give at least one VolumeSource")
        if start < 0 or (stop is not None and stop < start):
            raise ValueError(f"start={start}, stop={stop}; expected 0 <= start <= stop")
        self.sources = tuple(sources)
        self.spec = spec
        self.augmentation = augmentation
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.start = int(start)
        self.stop = None if stop is None else int(stop)
        self.stream = int(stream)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        info = get_worker_info()
        worker, n_workers = (0, 1) if info is None else (info.id, info.num_workers)
        b = self.start + worker
        while self.stop is None or b < self.stop:
            yield sample_batch(
                self.sources,
                spec=self.spec,
                augmentation=self.augmentation,
                batch_size=self.batch_size,
                seed=self.seed,
                batch_index=b,
                stream=self.stream,
            ).as_dict()
            b += n_workers


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32  # the loader's seeded base seed + worker_id
    np.random.seed(seed)
    random.seed(seed)
    torch.set_num_threads(1)


def make_loader(
    dataset: PatchDataset,
    *,
    num_workers: int = 0,
    pin_memory: bool = False,
    prefetch_factor: int = 4,
    seed: int | None = None,
) -> DataLoader:
    """A ``DataLoader`` over ``dataset`` that passes its batches through (``batch_size=None``).

    Parameters
    ----------
    dataset : PatchDataset
    num_workers : int
        Worker processes (0: load in the main process). Workers use 1 torch thread each.
    pin_memory : bool
        Pin batches for faster host-to-GPU copies (CUDA only).
    prefetch_factor : int
        Batches each worker prepares ahead (ignored with ``num_workers=0``).
    seed : int, optional
        Seed of the loader's generator (worker seeds derive from it); default ``dataset.seed``. The
        global torch generator is not touched.

    Returns
    -------
    torch.utils.data.DataLoader
        Yields dicts of tensors: numpy arrays converted without copying.
    """
    if isinstance(num_workers, bool) or int(num_workers) < 0:
        raise ValueError(f"num_workers={num_workers!r}; expected an integer >= 0")
    generator = torch.Generator()
    generator.manual_seed(dataset.seed if seed is None else int(seed))
    kwargs: dict[str, Any] = {}
    if num_workers > 0:
        # Spawned, not forked: the trainer may run inside a process that already has threads (Prefect's
        # API client, Dask), and forking a multi-threaded process can leave the child broken.
        kwargs.update(
            prefetch_factor=int(prefetch_factor), worker_init_fn=_seed_worker, persistent_workers=False,
            multiprocessing_context="spawn",
        )
    return DataLoader(
        dataset,
        batch_size=None,
        num_workers=int(num_workers),
        pin_memory=pin_memory,
        generator=generator,
        **kwargs,
    )
