"""Prefect flows: train, predict, segment, skeletonize, evaluate and the whole chain, reconstruct.

Each flow is thin: its tasks call the stage drivers of :mod:`flows.stages`, which run their blocks on
Dask. Flows take typed parameters (the config models). Tasks run on Prefect's ``DaskTaskRunner``: a
``LocalCluster`` by default, or the cluster at ``dask.address``; inside a task,
:func:`prefect_dask.get_dask_client` hands the same cluster to the block-wise stages, whose GPU blocks ask
for the worker resource ``GPU=1``. Tasks are retried only on I/O errors (``OSError`` that is not one of
neurorecon's own refusals); blocks are retried ``dask.max_retries`` times by Dask.

The run directory (``segment.out``) is laid out as :class:`pipeline.io.layout.RunLayout` says. Each flow
holds the output directory's lock (:func:`pipeline.io.lock.output_lock`) while it runs: a second run on
the same output is refused. If blocks still fail after their retries, or the disk fills up,
``reconstruct`` writes ``failed_blocks.json`` and a report page saying the run is INCOMPLETE (listing
the failed blocks by id), where it can, then fails (the command exits 3).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.interrupt import note_flow_run
from flows.logs import one_line_warnings
from flows.preflight import RunInputs, check_output, check_run, check_thresholds, require_segment
from pipeline.config import DaskConfig, NeuroreconConfig
from pipeline.errors import BlockFailure, DiskFullError, NeuroreconError
from pipeline.io.diskspace import reserved_space
from pipeline.io.layout import RunLayout, remove_outputs
from pipeline.io.location import URL
from pipeline.io.lock import output_lock
from pipeline.metrics.config import EvaluateConfig
from pipeline.report.config import ReportConfig
from pipeline.segment.config import SegmentConfig
from pipeline.skeleton.config import SkeletonizeConfig
from pipeline.train.config import TrainConfig

__all__ = [
    "dask_task_runner",
    "evaluate_flow",
    "predict_flow",
    "reconstruct_flow",
    "record_block_failure",
    "run_demo",
    "run_reconstruct",
    "segment_flow",
    "skeletonize_flow",
    "start_over",
    "train_flow",
]

log = logging.getLogger(__name__)


def retry_on_io(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a failed task only for I/O errors (a flaky file system), never for bad input."""
    try:
        state.result()
    except NeuroreconError:
        return False
    except OSError:
        return True
    except Exception:  # noqa: BLE001 - anything else is a bug or bad input: do not retry
        return False
    return False


_task = {"retries": 2, "retry_delay_seconds": 5, "retry_condition_fn": retry_on_io, "cache_policy": NO_CACHE}


def dask_task_runner(dask: DaskConfig, *, gpu_ids: Sequence[str] = ()) -> Any:
    """A ``DaskTaskRunner`` for the existing cluster at ``dask.address``, or a new local cluster
    (:func:`flows.cluster.local_cluster`: one more worker per id in ``gpu_ids``, offering ``GPU=1``).

    A flow's tasks drive the block-wise stages from a Dask worker and wait for their blocks, holding
    that worker's thread; the local cluster therefore gets one worker more than ``dask.n_workers``, so
    ``n_workers`` workers are free for blocks. (An existing cluster must have at least two workers.)
    """
    from prefect_dask import DaskTaskRunner

    if dask.address:
        return DaskTaskRunner(address=dask.address)
    return DaskTaskRunner(
        cluster_class="flows.cluster.local_cluster",
        cluster_kwargs={"n_workers": dask.n_workers + 1, "threads_per_worker": dask.threads_per_worker,
                        "memory_limit": dask.memory_limit, "gpu_ids": list(gpu_ids),
                        "dashboard_address": dask.dashboard_address},
    )


@contextlib.contextmanager
def _client() -> Iterator[Any]:
    """The Dask client of the task runner inside a task; None (serial blocks) when not on Dask."""
    from prefect_dask import get_dask_client

    one_line_warnings()  # this task's warnings: one line of its run log, not a worker's stderr
    try:
        manager = get_dask_client()
        client = manager.__enter__()
    except (RuntimeError, ValueError):  # not running on a DaskTaskRunner
        yield None
        return
    try:
        yield client
    finally:
        manager.__exit__(None, None, None)


# -- tasks ------------------------------------------------------------------------------------------------


@task(name="train", **_task)
def train_task(config: TrainConfig, out_dir: Path) -> str:
    from pipeline.train import train

    result = train(config, out_dir=out_dir, resume=True, progress=False)
    return str(result.checkpoint)


@task(name="predict", **_task)
def predict_task(segment: SegmentConfig, inputs: RunInputs, max_retries: int) -> str:
    from flows.stages.predict import predict_run

    with _client() as client:
        path = predict_run(segment, inputs=inputs, max_retries=max_retries, client=client, progress=True)
    return str(path)


@task(name="segment", **_task)
def segment_task(
    segment: SegmentConfig, affinities: str, max_retries: int, thresholds: Sequence[float] = ()
) -> str:
    from flows.stages.segment import segment_run

    with _client() as client:
        return str(segment_run(segment, affinities, max_retries=max_retries, client=client, progress=True,
                               thresholds=thresholds))


@task(name="skeletonize", **_task)
def skeletonize_task(
    segmentation: str, out: Path, settings: SkeletonizeConfig, max_retries: int, overwrite: bool = False
) -> str:
    from flows.stages.skeletonize import skeletonize_volume

    with _client() as client:
        # The flow owns its run directory: a rerun replaces the skeleton files (blocks resume from state).
        result = skeletonize_volume(segmentation, out=out, settings=settings, max_retries=max_retries,
                                    client=client, progress=True, replace_files=True, overwrite=overwrite)
    return str(result.lengths_csv)


@task(name="evaluate", **_task)
def evaluate_task(segmentation: str, out: Path, evaluate: EvaluateConfig, dust_threshold_um3: float,
                  max_retries: int) -> str:
    """``metrics.json``; ``dust_threshold_um3`` is ``skeletonize.dust_threshold_um3``: the length metrics
    count the objects ``skeletonize`` reports."""
    from flows.stages.evaluate import evaluate_run

    one_line_warnings()
    if evaluate.gt_labels is None:
        raise ValueError("evaluate.gt_labels is not set: nothing to evaluate against")
    with _client() as client:
        return str(evaluate_run(segmentation, evaluate.gt_labels, out=out, gt_swc=evaluate.gt_swc,
                                min_label_nodes=evaluate.min_label_nodes, block_shape=evaluate.block_shape,
                                dust_threshold_um3=dust_threshold_um3, client=client, max_retries=max_retries,
                                progress=True))


@task(name="report", **_task)
def report_task(run_dir: Path, segmentation: str, raw: Path | URL, report: ReportConfig) -> str:
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    from flows.stages.report import report_run
    from pipeline.io.skeletons import read_lengths_csv

    one_line_warnings()
    paths = report_run(run_dir, segmentation=segmentation, raw=raw, figures=report.figures)
    rows = read_lengths_csv(RunLayout(run_dir).lengths_csv)
    columns = ("label", "length_um", "cable_length_um", "n_voxels", "touches_border")
    table = [{k: getattr(r, k) for k in columns} for r in rows]
    create_table_artifact(table[:500], key="lengths", description=f"object lengths (µm) of {run_dir}")
    inner = [r["length_um"] for r in table if not r["touches_border"]]
    median = sorted(inner)[len(inner) // 2] if inner else float("nan")
    create_markdown_artifact(
        f"# Reconstruction of `{raw}`\n\n- objects: {len(table)} ({len(inner)} not touching the border)\n"
        f"- median length: {median:.1f} µm\n- report: `{paths['html']}`\n",
        key="reconstruction-summary", description="neurorecon run summary",
    )
    return str(paths["html"])


# -- flows ------------------------------------------------------------------------------------------------


@task(name="publish", **_task)
def publish_task(run_dir: Path, url: str) -> str:
    from pipeline.io.publish import publish_run

    return str(publish_run(run_dir, url).url)


@flow(name="train", log_prints=True)
def train_flow(config: TrainConfig, out_dir: Path) -> str:
    """Train the U-Net (pretraining, then topology-loss fine-tuning); resumes from the last checkpoint."""
    with output_lock(out_dir):
        return train_task.submit(config, out_dir).result()


def start_over(segment: SegmentConfig) -> None:
    """Remove every output of the run directory ``segment.out`` (``overwrite``: later stages derive from
    the segmentation, so all of them start over), never the raw image; call holding the output lock."""
    run = RunLayout(segment.out)
    removed = remove_outputs(run, run.run_outputs, inputs=[segment.raw])
    if removed:
        log.info("overwrite: removed %s", ", ".join(str(p) for p in removed))


@flow(name="predict", log_prints=True)
def predict_flow(config: NeuroreconConfig, overwrite: bool = False) -> str:
    """Raw OME-Zarr -> affinities, block by block (the ``segment:`` and ``dask:`` sections); ``overwrite``
    starts the run directory over (:func:`start_over`) instead of resuming."""
    inputs = check_run(config, evaluate=False)
    segment = require_segment(config, None)
    with output_lock(segment.out):
        if overwrite:
            start_over(segment)
        return predict_task.submit(segment, inputs, config.dask.max_retries).result()


@flow(name="segment", log_prints=True)
def segment_flow(
    config: NeuroreconConfig, overwrite: bool = False, thresholds: list[float] | None = None
) -> str:
    """Raw OME-Zarr -> affinities -> segmentation, block by block; ``overwrite`` starts the run directory
    over (:func:`start_over`) instead of resuming; ``thresholds`` adds a threshold sweep
    (``segmentation_t<threshold>.zarr`` each, as ``neurorecon segment --thresholds``)."""
    segment = require_segment(config, None)
    sweep = check_thresholds(thresholds, max_threshold=segment.max_threshold, name="thresholds")
    inputs = check_run(config, evaluate=False)
    with output_lock(segment.out):
        if overwrite:
            start_over(segment)
        affinities = predict_task.submit(segment, inputs, config.dask.max_retries).result()
        return segment_task.submit(segment, affinities, config.dask.max_retries, sweep).result()


@flow(name="skeletonize", log_prints=True)
def skeletonize_flow(
    segmentation: Path, out: Path, config: NeuroreconConfig | None = None, overwrite: bool = False
) -> str:
    """Segmentation -> skeletons (SWC, precomputed) and lengths.csv, with the ``skeletonize:`` section;
    ``overwrite`` resets the skeletons' block state instead of resuming it."""
    config = NeuroreconConfig() if config is None else config
    with output_lock(out):
        task = skeletonize_task.submit(str(segmentation), out, config.skeletonize, config.dask.max_retries,
                                       overwrite)
        return task.result()


@flow(name="evaluate", log_prints=True)
def evaluate_flow(segmentation: Path, out: Path, config: NeuroreconConfig) -> str:
    """Segmentation vs the ``evaluate:`` section's ground truth -> metrics.json."""
    with output_lock(out):
        return evaluate_task.submit(str(segmentation), out, config.evaluate,
                                    config.skeletonize.dust_threshold_um3, config.dask.max_retries).result()


@flow(name="reconstruct", log_prints=True)
def reconstruct_flow(
    config: NeuroreconConfig, inputs: RunInputs | None = None, overwrite: bool = False,
    thresholds: list[float] | None = None,
) -> str:
    """The whole chain: raw -> affinities -> segmentation -> skeletons -> lengths -> metrics -> report.

    Metrics are computed when ``evaluate.gt_labels`` is set. ``inputs`` is what the caller's preflight
    (:func:`flows.preflight.check_run`) established; without it the flow checks its inputs first.
    ``overwrite`` starts the run directory over (:func:`start_over`) instead of resuming. ``thresholds``
    adds a threshold sweep: ``segmentation_t<threshold>.zarr`` for each, compared in ``metrics.json``
    (with ground truth) and the report; the skeletons stay those of ``segmentation.zarr``. With
    ``output.publish`` set, the products are then published to ``<publish>/<run directory name>``
    (:mod:`pipeline.io.publish`). Returns
    the path of ``report.html``. Raises :class:`~pipeline.errors.BlockFailure` (after writing
    ``failed_blocks.json`` and a report page listing the failed blocks) if blocks still fail after their
    retries.
    """
    note_flow_run()
    segment = require_segment(config, None)
    sweep = check_thresholds(thresholds, max_threshold=segment.max_threshold, name="thresholds")
    inputs = check_run(config) if inputs is None else inputs
    run = RunLayout(segment.out)
    with output_lock(run.root):
        if overwrite:
            start_over(segment)
        with reserved_space(run.reserve) as release:
            return _reconstruct(config, segment, inputs, run, release, sweep)


def _reconstruct(
    config: NeuroreconConfig, segment: SegmentConfig, inputs: RunInputs, run: RunLayout, release: Any,
    thresholds: tuple[float, ...] = (),
) -> str:
    """The stages of :func:`reconstruct_flow`, holding its lock and reserve."""
    retries = config.dask.max_retries
    try:
        affinities = predict_task.submit(segment, inputs, retries).result()
        segmentation = segment_task.submit(segment, affinities, retries, thresholds).result()
        skeletonize_task.submit(segmentation, run.root, config.skeletonize, retries).result()
        if config.evaluate.gt_labels is not None:
            evaluate_task.submit(segmentation, run.root, config.evaluate,
                                 config.skeletonize.dust_threshold_um3, retries).result()
        report = report_task.submit(run.root, segmentation, segment.raw, config.report).result()
        if config.output.publish is not None:  # the products, for others to read
            url = publish_task.submit(run.root, f"{config.output.publish}/{run.root.name}").result()
            log.info("published %s to %s", run.root, url)
    except (BlockFailure, DiskFullError) as exc:
        release()  # room for the record, should the disk be full
        page = record_block_failure(run.root, exc)
        log.error("%s; %s", exc, f"see {page}" if page else "the failure could not be recorded")
        raise
    run.failed_blocks.unlink(missing_ok=True)
    return report


def record_block_failure(out: Path, exc: BlockFailure | DiskFullError) -> Path | None:
    """Write ``failed_blocks.json`` and a ``report.html`` saying the run is INCOMPLETE; return the page.

    Each file is written only if it can be (on a full disk it may not): returns None if the page
    could not be written. A report of an earlier state is removed either way.
    """
    import json

    from pipeline.io.atomic import write_atomic
    from pipeline.report.failure import failure_page
    from pipeline.report.versions import software_versions

    run = RunLayout(out)
    stage = getattr(exc, "stage", "")
    errors = getattr(exc, "errors", {})
    with contextlib.suppress(OSError):
        run.report_pdf.unlink(missing_ok=True)  # a report of an earlier state must not survive
    try:
        run.root.mkdir(parents=True, exist_ok=True)
        write_atomic(run.failed_blocks, json.dumps(
            {"stage": stage, "block_ids": sorted(errors), "message": str(exc),
             "errors": {str(k): v for k, v in sorted(errors.items())}}, indent=1))
    except OSError as err:
        log.error("could not write %s: %s", run.failed_blocks, err)
    try:
        return write_atomic(run.report_html, failure_page(str(run.root.resolve()), stage, errors,
                                                          software_versions(), message=str(exc)))
    except OSError as err:
        with contextlib.suppress(OSError):
            run.report_html.unlink(missing_ok=True)  # not the report of an earlier state either
        log.error("could not write %s: %s", run.report_html, err)
        return None


def run_reconstruct(
    config: NeuroreconConfig, *, overwrite: bool = False, thresholds: Sequence[float] = ()
) -> Path:
    """Lock the run's output, check its inputs once, and run :func:`reconstruct_flow` on the Dask cluster
    the config names; return the report path (``neurorecon run``). ``overwrite`` starts the run over
    (after the inputs were checked: a refused run removes nothing); ``thresholds`` adds a sweep."""
    segment = check_output(config)  # where the lock goes, before anything heavy
    with output_lock(segment.out):  # a second run on this output is refused at once
        inputs = check_run(config)  # before Prefect and Dask start: bad input fails in seconds
        with shared_prefect_api():
            runner = dask_task_runner(config.dask, gpu_ids=inputs.gpu_ids)
            flow_run = reconstruct_flow.with_options(task_runner=runner)
            return Path(flow_run(config, inputs=inputs, overwrite=overwrite, thresholds=list(thresholds)))


@contextlib.contextmanager
def shared_prefect_api() -> Iterator[None]:
    """Without a configured Prefect API, one temporary API server for this run and its Dask workers.

    Prefect without a server starts a temporary API server in each process that needs one; a local
    Dask worker running a task would start its own (seconds each), and one left by a worker killed with
    ``kill -9`` would outlive the run. Here the flow's process starts the server once and hands its
    address to the workers through ``PREFECT_API_URL`` (inherited when the ``LocalCluster`` spawns
    them). Like Prefect's own temporary server it stops when this process exits (after Prefect has sent
    its last logs); a later run in the same process reuses it. It runs in its own session, so a Ctrl-C
    reaches only this process, which records the interruption and then stops it
    (:mod:`flows.interrupt`). With ``PREFECT_API_URL`` set (a Prefect
    server or Cloud), nothing changes.
    """
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value() or os.environ.get("PREFECT_API_URL"):
        yield
        return
    from flows.interrupt import start_temporary_prefect_server
    from flows.preflight import check_prefect_home

    check_prefect_home()
    # an offline run sends no telemetry (unless the user asked for it): no "Failed to send telemetry" noise
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    server = start_temporary_prefect_server()  # in its own session: a Ctrl-C is this process's to handle
    os.environ["PREFECT_API_URL"] = server.api_url
    try:
        yield
    finally:
        os.environ.pop("PREFECT_API_URL", None)


#: The demo's phantom seed (its embedded setting; ``neurorecon demo --seed`` chooses another).
DEMO_SEED = 1
#: The kinds of volume the demo reconstructs, each into ``out/<kind>/`` with the shipped model of its kind.
DEMO_KINDS = ("neurons", "ais")


def demo_config(out: Path, kind: str) -> NeuroreconConfig:
    """The embedded configuration of the demo of one kind: the shipped model of that kind on
    ``out/volume.zarr``, evaluated against its ground truth, on a local cluster of two workers; an AIS
    stain's pieces are joined across short gaps (:data:`pipeline.skeleton.config.AIS_JOIN`)."""
    from pipeline.config import OutputConfig
    from pipeline.io.phantom import ground_truth_dir
    from pipeline.skeleton.config import AIS_JOIN, JoinConfig

    store = out / "volume.zarr"
    return NeuroreconConfig(
        segment=SegmentConfig(raw=store, out=out, model=kind, block_shape=(32, 256, 256),
                              halo_vx=(4, 16, 16)),
        skeletonize=SkeletonizeConfig(block_shape=(32, 256, 256),
                                      join=AIS_JOIN if kind == "ais" else JoinConfig()),
        evaluate=EvaluateConfig(gt_labels=store / "labels" / "ground_truth",
                                gt_swc=ground_truth_dir(store) / "skeletons"),
        dask=DaskConfig(n_workers=2, threads_per_worker=1, memory_limit="5GiB"),
        output=OutputConfig(root=out),
    )


def run_demo(out: Path, *, seed: int | None, overwrite: bool = False) -> dict[str, Path]:
    """The main job on embedded defaults: phantoms with signal dropout, reconstructed and evaluated.

    For each kind of :data:`DEMO_KINDS` writes ``out/<kind>/volume.zarr`` (raw + labels/ground_truth),
    ``out/<kind>/volume_gt/`` (true skeletons, lengths, gaps) and the reconstruction of
    :func:`reconstruct_flow` in ``out/<kind>``; returns the report path of each kind. ``seed`` is the
    phantoms' (None: the demo's own, :data:`DEMO_SEED`); ``overwrite`` starts each reconstruction over.
    """
    from pipeline.io.phantom import write_phantom
    from pipeline.synth import PhantomParams

    reports = {}
    for kind in DEMO_KINDS:
        config = demo_config(out / kind, kind)
        params = PhantomParams(kind=kind, seed=DEMO_SEED if seed is None else seed)
        write_phantom(require_segment(config, None).raw, params, overwrite=True, progress=True)
        reports[kind] = run_reconstruct(config, overwrite=overwrite)
    return reports
