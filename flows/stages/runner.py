"""Run a stage's blocks on Dask (or serially), skipping finished blocks, retrying failed ones.

Every stage driver in :mod:`flows.stages` hands its per-block function to :func:`run_blocks`.

This is the only scheduler code in neurorecon, and it schedules nothing itself: blocks are submitted
to a ``dask.distributed`` client — a ``LocalCluster`` by default, or an existing cluster by address —
with Dask's own ``retries``, for errors :func:`worth_retrying` only (I/O, memory): a block that fails
on bad input or a bug is reported at once, not tried again. A block is marked done
(``pipeline.io.blockstate``) on the worker, after its outputs are written, so a rerun skips exactly
the finished blocks. Blocks that still fail after their retries are reported by id; the caller raises
:class:`pipeline.errors.BlockFailure` so a run never reports success with missing blocks.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import logging
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tqdm.auto import tqdm

from pipeline.blocks import Block
from pipeline.config import DaskConfig
from pipeline.errors import BlockFailure, DiskFullError
from pipeline.io.blockstate import BlockState

__all__ = ["BlockRunReport", "NotRetried", "dask_client", "one_malloc_arena", "return_freed_memory",
           "run_blocks", "worth_retrying"]

log = logging.getLogger(__name__)


@dataclass
class BlockRunReport:
    """What happened to a stage's blocks."""

    stage: str
    total: int
    skipped: int = 0
    done: int = 0
    failed: dict[int, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    def raise_if_failed(self) -> None:
        """Raise :class:`BlockFailure` listing the failed block ids and the first error."""
        if self.failed:
            ids = sorted(self.failed)
            first = self.failed[ids[0]].strip().splitlines()[-1] if self.failed[ids[0]].strip() else "?"
            raise BlockFailure(
                f"stage '{self.stage}': {len(ids)} of {self.total} blocks failed after retries "
                f"(block ids {ids[:20]}{' ...' if len(ids) > 20 else ''}); first error: {first}. "
                "Fix the cause and rerun: finished blocks are skipped",
                stage=self.stage, errors=self.failed,
            )


def run_blocks(
    stage: str,
    blocks: Sequence[Block],
    process: Callable[[Block], Mapping[str, Any] | None],
    *,
    state: BlockState,
    client: Any = None,
    max_retries: int,
    resources: Mapping[str, float] | None = None,
    progress: bool = True,
) -> BlockRunReport:
    """Process every block not yet done.

    Parameters
    ----------
    stage : str
        Name used in logs, keys and the report.
    blocks : sequence of Block
        The grid.
    process : callable
        ``process(block) -> info``: reads the block's inputs, computes and writes its outputs; the
        returned mapping is stored in the block's marker. Must be picklable for Dask (a module-level
        function or a ``functools.partial`` of one).
    state : BlockState
        Completion markers of this stage.
    client : distributed.Client, optional
        Where to run; serial in this process if None (debugging, tests).
    max_retries : int
        Extra attempts per block after a failure.
    resources : mapping, optional
        Dask worker resources each block needs, e.g. ``{"GPU": 1}``.
    progress : bool
        Show a progress bar over blocks.

    Returns
    -------
    BlockRunReport
    """
    start = time.perf_counter()
    done_ids = state.done_ids()
    todo = [b for b in blocks if b.id not in done_ids]
    report = BlockRunReport(stage, len(blocks), skipped=len(blocks) - len(todo))
    if report.skipped:
        log.info("%s: %d of %d blocks already done, skipped", stage, report.skipped, len(blocks))
    bar = tqdm(total=len(blocks), initial=report.skipped, desc=stage, unit="block", disable=not progress,
               leave=False)
    try:
        if client is None:
            one_malloc_arena()
            for b in todo:
                error, attempts = None, 0
                for attempts in range(1, max_retries + 2):  # noqa: B007 - reported below
                    try:
                        outcome = _process_and_mark(process, state, b)
                    except Exception:  # noqa: BLE001 - worth retrying; reported per block below
                        error = traceback.format_exc()
                        continue
                    error = outcome.traceback if isinstance(outcome, NotRetried) else None
                    break
                if error is None:
                    report.done += 1
                else:
                    report.failed[b.id] = error
                    log.error("%s: block %d failed after %d attempt(s):\n%s", stage, b.id, attempts, error)
                bar.update()
        else:
            from distributed import as_completed

            futures = {
                client.submit(
                    _process_and_mark, process, state, b, key=f"{stage}-{b.id}-{time.time_ns()}",
                    retries=max_retries, resources=dict(resources) if resources else None, pure=False,
                ): b
                for b in todo
            }
            for fut in as_completed(futures):
                b = futures[fut]
                outcome = fut.result() if fut.status == "finished" else None
                if isinstance(outcome, NotRetried):
                    report.failed[b.id] = outcome.traceback
                    log.error("%s: block %d failed (not retried): %s", stage, b.id,
                              outcome.traceback.strip().splitlines()[-1])
                elif fut.status == "finished":
                    report.done += 1
                else:
                    exc = fut.exception()
                    report.failed[b.id] = "".join(traceback.format_exception(exc)) if exc else fut.status
                    log.error("%s: block %d failed after %d attempts: %r", stage, b.id, max_retries + 1, exc)
                bar.update()
    finally:
        bar.close()
    report.seconds = time.perf_counter() - start
    log.info("%s: %d done, %d skipped, %d failed in %.1f s", stage, report.done, report.skipped,
             len(report.failed), report.seconds)
    return report


@functools.cache
def _libc() -> Any:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


@functools.cache
def one_malloc_arena() -> bool:
    """Let threads started from now on share glibc's main arena (``mallopt(M_ARENA_MAX, 1)``).

    Zarr decodes chunks on a pool of threads; with an arena per thread, a buffer freed by one thread
    is not reused by another, and a block's peak RSS carried every thread's buffers (measured on the
    segmentation benchmark: peak 260-290 MB with per-thread arenas, 180 MB with one). Applied once per
    process where blocks run — when the serial runner starts, and in a Dask worker before its first
    block — never at import. Returns whether it applied (glibc only).
    """
    libc = _libc()
    return bool(libc is not None and libc.mallopt(-8, 1))  # M_ARENA_MAX


def return_freed_memory() -> bool:
    """Give the memory freed by a finished block back to the system (glibc's ``malloc_trim(0)``).

    Blocks allocate and free buffers of tens of MB from several threads (Zarr's codec pool); glibc keeps
    freed memory in per-thread arenas, and over a long serial run the RSS crept up with the number of
    blocks. Trimming once per block bounds it and keeps glibc's adaptive thresholds, so buffers are
    reused from the heap *within* a block. (Lowering ``M_TRIM_THRESHOLD`` instead, as Dask's nanny
    does for its workers, fixes the mmap threshold at 128 KiB: every large buffer is then mapped and
    faulted in afresh, and a serial run took 1.5x as long.) Returns whether it applied (glibc only).
    """
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


def worth_retrying(exc: BaseException) -> bool:
    """Whether a block that raised ``exc`` may succeed when tried again: I/O errors (a flaky file system
    or network; not a full disk), memory errors (another worker may have room), CUDA out of memory.
    Bad input, a bad model or a bug fails the same way every time: such a block is not retried."""
    if isinstance(exc, DiskFullError):
        return False
    return isinstance(exc, OSError | MemoryError) or type(exc).__name__ == "OutOfMemoryError"


@dataclass(frozen=True)
class NotRetried:
    """What a block task returns instead of raising an error not :func:`worth_retrying` (Dask retries
    every exception): the error's traceback."""

    traceback: str


def _process_and_mark(
    process: Callable[[Block], Mapping[str, Any] | None], state: BlockState, block: Block
) -> NotRetried | None:
    one_malloc_arena()  # once per process (cached); a no-op after the first block
    try:
        info = process(block)
    except Exception as exc:
        if worth_retrying(exc):
            raise
        return NotRetried("".join(traceback.format_exception(exc)))
    finally:
        return_freed_memory()
    state.mark_done(block.id, info or {})
    return None


@contextlib.contextmanager
def dask_client(
    dask: DaskConfig, *, n_workers: int | None = None, resources: Mapping[str, float] | None = None
) -> Iterator[Any]:
    """A ``distributed.Client``: to the cluster at ``dask.address``, or to a new ``LocalCluster``.

    The local cluster uses processes (waterz and kimimaro hold the GIL), ``dask.n_workers`` of them
    unless ``n_workers`` is given, and is closed on exit; a remote cluster is left running.
    """
    from distributed import Client, LocalCluster

    if dask.address:
        client = Client(dask.address)
        try:
            yield client
        finally:
            client.close()
        return
    with (
        LocalCluster(
            n_workers=dask.n_workers if n_workers is None else n_workers,
            threads_per_worker=dask.threads_per_worker, memory_limit=dask.memory_limit, processes=True,
            dashboard_address=None, resources=dict(resources) if resources else None,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client
