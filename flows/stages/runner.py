"""Run a stage's blocks on Dask (or serially), skipping finished blocks, retrying failed ones.

Every stage driver in :mod:`flows.stages` hands its per-block function to :func:`run_blocks`.

This is the only scheduler code in neurorecon, and it schedules nothing itself: blocks are submitted
to a ``dask.distributed`` client — a ``LocalCluster`` by default, or an existing cluster by address —
with Dask's own ``retries``, for errors :func:`worth_retrying` only (I/O, memory): a block that fails
on bad input or a bug is reported at once, not tried again. A block is marked done
(``pipeline.io.blockstate``) on the worker, after its outputs are written, so a rerun skips exactly
the finished blocks. Blocks that still fail after their retries are reported by id; the caller raises
:class:`pipeline.errors.BlockFailure` so a run never reports success with missing blocks. Blocks lost
with a worker that died running them (most often killed by its nanny for exceeding its memory limit) are
reported as such, with the stage's fix; blocks needing a worker resource (a GPU) that no worker offers
are refused before any is submitted, instead of waiting forever.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import itertools
import logging
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flows.stages.progress import BlockProgress
from pipeline.blocks import Block
from pipeline.config import DaskConfig
from pipeline.errors import BlockFailure, ConfigError, DiskFullError
from pipeline.io.blockstate import BlockState

__all__ = ["MAX_IN_FLIGHT", "MEMORY_HINT", "WAIT_FOR_WORKERS_S", "BlockRunReport", "NotRetried", "Task",
           "Tasks", "dask_client", "one_malloc_arena", "return_freed_memory", "run_blocks", "worth_retrying"]

log = logging.getLogger(__name__)


@dataclass
class BlockRunReport:
    """What happened to a stage's blocks.

    Attributes
    ----------
    stage : str
        The stage's name.
    total : int
        Number of blocks in the grid.
    skipped, done : int
        Blocks already done before the run, and done by it.
    failed : dict of int to str
        Each failed block's id and its last error (a traceback), killed blocks included.
    killed : list of int
        Ids of the failed blocks whose Dask worker died while running them (``KilledWorker``): most
        often killed by its nanny for exceeding its memory limit.
    killed_cause : str
        Why those workers most likely died, and what to change; empty if no block was killed.
    seconds : float
        Wall time of the run.
    """

    stage: str
    total: int
    skipped: int = 0
    done: int = 0
    failed: dict[int, str] = field(default_factory=dict)
    killed: list[int] = field(default_factory=list)
    killed_cause: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    def raise_if_failed(self) -> None:
        """Raise :class:`BlockFailure` if any block failed.

        The message lists first the blocks whose worker died running them (:attr:`killed`), with the
        likely cause and the fix, then the other failed block ids and the first of their errors.
        """
        if not self.failed:
            return
        parts = []
        killed = sorted(self.killed)
        if killed:
            parts.append(
                f"{len(killed)} of {self.total} blocks (block ids {_some(killed)}) were lost with their Dask "
                f"worker, which died while running them: {self.killed_cause}"
            )
        others = sorted(set(self.failed) - set(killed))
        if others:
            text = self.failed[others[0]].strip()
            first = text.splitlines()[-1] if text else "?"
            parts.append(
                f"{len(others)} of {self.total} blocks failed after retries (block ids {_some(others)}); "
                f"first error: {first}"
            )
        raise BlockFailure(
            f"stage '{self.stage}': {'; '.join(parts)}. Fix the cause and rerun: finished blocks are skipped",
            stage=self.stage, errors=self.failed,
        )


def _some(ids: list[int]) -> str:
    return f"{ids[:20]}{' ...' if len(ids) > 20 else ''}"


@dataclass(frozen=True)
class Task:
    """A unit of work :func:`run_blocks` runs that is not a block (an octree node, a shard of labels): its
    id keys its marker, as a block's does."""

    id: int


class Tasks(Sequence[Task]):
    """Tasks ``0 .. n - 1``, made on demand (10^5 of them cost no memory until they run)."""

    def __init__(self, n: int) -> None:
        self._n = int(n)

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [Task(j) for j in range(*i.indices(self._n))]
        if not -self._n <= i < self._n:
            raise IndexError(f"task {i} is outside 0..{self._n - 1}")
        return Task(i % self._n)


#: Blocks of one stage submitted to Dask at a time (more wait in the driver, as block objects only).
MAX_IN_FLIGHT = 2000

#: How long :func:`run_blocks` waits for a cluster that has no worker yet before checking ``resources``.
WAIT_FOR_WORKERS_S = 10.0

#: The fix :func:`run_blocks` suggests for blocks killed with their worker, unless given ``memory_hint``.
MEMORY_HINT = "use smaller blocks or raise dask.memory_limit"


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
    resource_hint: str | None = None,
    memory_hint: str | None = None,
    unit: str = "block",
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
        Dask worker resources each block needs, e.g. ``{"GPU": 1}``. Before any block is submitted, the
        workers the scheduler knows are checked (after waiting up to :data:`WAIT_FOR_WORKERS_S` for a
        first one): if none offers every resource in the amount asked, :class:`ConfigError` is raised
        instead of leaving the blocks waiting forever.
    progress : bool
        Report progress (:class:`flows.stages.progress.BlockProgress`: a bar on a terminal, else log
        lines; inside a Prefect run its run log and a progress artifact).
    resource_hint : str, optional
        The fix to suggest when no worker offers ``resources``, naming the caller's setting (e.g. "start
        one Dask worker per GPU ..., or set segment.device: cpu"). By default: how to start such a worker.
    memory_hint : str, optional
        The fix to suggest for blocks lost with a worker that died running them (most likely killed
        for exceeding its memory limit), naming the stage's settings (e.g. "lower segment.tile_shape or
        segment.block_shape, or raise dask.memory_limit"). By default :data:`MEMORY_HINT`.
    unit : str
        What the progress counts (``"block"``; ``"shard"`` for shards of labels).

    Returns
    -------
    BlockRunReport
        Blocks whose worker died running them are in ``failed`` and ``killed``, with ``killed_cause``.

    Raises
    ------
    ConfigError
        If ``resources`` is given with a ``client`` and no worker of that cluster offers them.

    Notes
    -----
    The check of ``resources`` is made once, before submitting. If every worker offering a resource
    leaves the cluster during the run, Dask keeps the remaining blocks waiting until such a worker joins
    again: the run does not end by itself (the scheduler logs the unrunnable tasks).

    A worker whose memory passes ``distributed.worker.memory.terminate`` (95 % of its limit) is restarted
    by its nanny, and the blocks it was running are tried elsewhere; after
    ``distributed.scheduler.allowed-failures`` such deaths a block fails with ``KilledWorker``. Those
    blocks are reported by id as ``killed``, with the worker's memory limit and, when the nanny reported
    it, the confirmation that it was killed for memory.
    """
    start = time.perf_counter()
    done_ids = state.done_ids()
    # the blocks still to do, made one at a time (a lazy grid of 10^6 blocks stays lazy)
    skipped = sum(1 for b in blocks if b.id in done_ids) if done_ids else 0
    todo = (b for b in blocks if b.id not in done_ids)
    report = BlockRunReport(stage, len(blocks), skipped=skipped)
    bar = BlockProgress(stage, len(blocks), report.skipped, show=progress, unit=unit)
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
            from distributed import KilledWorker, as_completed

            if skipped < len(blocks) and resources:
                _check_resources(client, stage, resources, hint=resource_hint)
            lost: dict[int, BaseException] = {}
            pending = todo
            futures: dict[Any, Block] = {}

            def submit(block: Block) -> Any:
                fut = client.submit(
                    _process_and_mark, process, state, block, key=f"{stage}-{block.id}-{time.time_ns()}",
                    retries=max_retries, resources=dict(resources) if resources else None, pure=False,
                )
                futures[fut] = block
                return fut

            # A bounded window of blocks in flight: 10^5-10^6 blocks never put as many futures on the
            # scheduler at once; a finished block lets the next one in.
            running = as_completed([submit(b) for b in itertools.islice(pending, MAX_IN_FLIGHT)])
            for fut in running:
                b = futures.pop(fut)
                nxt = next(pending, None)
                if nxt is not None:
                    running.add(submit(nxt))
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
                    if isinstance(exc, KilledWorker):
                        lost[b.id] = exc
                    else:
                        log.error("%s: block %d failed after %d attempts: %r", stage, b.id, max_retries + 1,
                                  exc)
                bar.update()
            if lost:
                _explain_killed(client, report, lost, hint=memory_hint or MEMORY_HINT)
    finally:
        bar.close(failed=len(report.failed))
    report.seconds = time.perf_counter() - start
    log.debug("%s: %d done, %d skipped, %d failed in %.1f s", stage, report.done, report.skipped,
              len(report.failed), report.seconds)
    return report


def _workers(client: Any) -> dict[str, dict[str, Any]]:
    """The workers the scheduler knows (all of them, not the first few), by address."""
    return dict(client.scheduler_info(n_workers=-1).get("workers", {}))


def _check_resources(client: Any, stage: str, resources: Mapping[str, float], *, hint: str | None) -> None:
    """Raise :class:`ConfigError` if no worker of ``client``'s cluster offers all of ``resources``.

    Dask would keep a task that needs a resource no worker has pending forever, without a word. A
    cluster with no worker yet (still starting) is given :data:`WAIT_FOR_WORKERS_S` to get one.
    """
    wanted = {str(k): float(v) for k, v in resources.items()}
    workers = _workers(client)
    if not workers:
        with contextlib.suppress(TimeoutError):
            client.wait_for_workers(1, timeout=WAIT_FOR_WORKERS_S)
        workers = _workers(client)
    offers = [dict(w.get("resources") or {}) for w in workers.values()]
    if any(all(o.get(k, 0) >= v for k, v in wanted.items()) for o in offers):
        return
    missing = [k for k, v in wanted.items() if not any(o.get(k, 0) >= v for o in offers)]
    what = (", ".join(f"{k}={wanted[k]:g}" for k in missing) if missing
            else f"all of {_resource_spec(wanted)} on one worker")
    offered = "; ".join(sorted({_resource_spec(o) or "no resources" for o in offers}))
    address = getattr(getattr(client, "scheduler", None), "address", None) or "<scheduler address>"
    if hint is None and set(wanted) == {"GPU"}:
        hint = (f"start one Dask worker per GPU: `CUDA_VISIBLE_DEVICES=0 dask worker {address} --resources "
                f"GPU={wanted['GPU']:g} --nthreads 1` (docker/compose.yaml: services dask-gpu-worker-0, -1, "
                "...), or run the stage on the CPU")
    elif hint is None:
        spec = _resource_spec(wanted)
        hint = f"start a Dask worker offering them: `dask worker {address} --resources '{spec}'`"
    if workers:
        seen = (f"none of the {len(workers)} Dask worker(s) of the scheduler at {address} offers {what} "
                f"(they offer: {offered})")
    else:
        seen = f"the scheduler at {address} has no Dask worker after {WAIT_FOR_WORKERS_S:g} s to offer {what}"
    raise ConfigError(
        f"stage '{stage}': resources={dict(resources)!r}, but {seen}, so its blocks would wait for such a "
        f"worker forever. Fix: {hint}"
    )


def _resource_spec(resources: Mapping[str, float]) -> str:
    """``{"GPU": 1.0}`` as the ``dask worker --resources`` option writes it: ``GPU=1``."""
    return ",".join(f"{k}={float(v):g}" for k, v in sorted(resources.items()))


def _explain_killed(
    client: Any, report: BlockRunReport, lost: Mapping[int, BaseException], *, hint: str
) -> None:
    """Record in ``report`` the blocks lost with their worker (``KilledWorker``), why and the fix.

    The worker's memory limit comes from the error (else the scheduler); the nanny's report that it
    killed the worker for memory (its ``worker-restart-memory`` event, else its log) confirms the cause.
    Diagnostics that fail (a worker without a nanny, a scheduler gone) leave the cause "most likely".
    """
    workers = [getattr(exc, "last_worker", None) for exc in lost.values()]
    addresses = {str(w.address) for w in workers if getattr(w, "address", None)}
    limits = {int(w.memory_limit) for w in workers if getattr(w, "memory_limit", None)}
    if not limits:
        with contextlib.suppress(Exception):  # diagnostics only, here and below: never hide the report
            limits = {int(w["memory_limit"]) for w in _workers(client).values() if w.get("memory_limit")}
    evidence = ""
    with contextlib.suppress(Exception):
        rss = [event["rss"] for _, event in client.get_events("worker-restart-memory")
               if isinstance(event, Mapping) and event.get("worker") in addresses and "rss" in event]
        if rss:
            peak = max(rss)
            used = f"{peak / min(limits):.0%} of it" if len(limits) == 1 else f"{peak / 2**30:.2f} GiB"
            evidence = f"its nanny measured {used} in use and restarted it"
    if not evidence:
        with contextlib.suppress(Exception):
            logs = [msg for lines in client.get_worker_logs(nanny=True).values() for _, msg in lines]
            evidence = next((f'its nanny logged "{msg}"' for msg in logs if "exceeded" in msg
                             and "memory" in msg and any(a in msg for a in addresses)), "")
    limit = f" of {' / '.join(f'{b / 2**30:.2f}' for b in sorted(limits))} GiB" if limits else ""
    if evidence:
        cause = f"it was killed for exceeding its memory limit{limit} ({evidence})"
    else:
        cause = (f"most likely it was killed for exceeding its memory limit{limit} (a Dask nanny restarts "
                 "its worker past distributed.worker.memory.terminate, 95 % of the limit; else it crashed: "
                 "see the worker and nanny logs)")
    report.killed = sorted(lost)
    report.killed_cause = f"{cause}; {hint}"
    for bid, exc in sorted(lost.items()):
        where = getattr(getattr(exc, "last_worker", None), "address", "?")
        note = f"block {bid}: its Dask worker {where} died while running it: {report.killed_cause}"
        report.failed[bid] += note + "\n"
        log.error("%s: %s", report.stage, note)


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
    dask: DaskConfig, *, n_workers: int | None = None, gpu_ids: Sequence[str] = ()
) -> Iterator[Any]:
    """A ``distributed.Client``: to the cluster at ``dask.address``, or to a new local cluster.

    The local cluster (:func:`flows.cluster.local_cluster`) uses processes (waterz and kimimaro hold the
    GIL), ``dask.n_workers`` of them unless ``n_workers`` is given, plus one worker per id in
    ``gpu_ids`` offering ``GPU=1``, and is closed on exit; a remote cluster is left running.
    """
    from distributed import Client

    from flows.cluster import local_cluster

    if dask.address:
        client = Client(dask.address)
        try:
            yield client
        finally:
            client.close()
        return
    with (
        local_cluster(n_workers=dask.n_workers if n_workers is None else n_workers,
                      threads_per_worker=dask.threads_per_worker, memory_limit=dask.memory_limit,
                      gpu_ids=gpu_ids, dashboard_address=dask.dashboard_address) as cluster,
        Client(cluster) as client,
    ):
        yield client
