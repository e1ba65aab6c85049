"""Scheduled batch processing: reconstruct every volume in an input folder that has not been done yet.

``batch_flow(input_dir, output_root, config)`` looks for OME-Zarr images (``*.zarr``) directly in
``input_dir``; a volume is done when ``<output_root>/<name>/COMPLETE`` exists (written last, after the
report, atomically). Finished volumes are skipped, so the flow is idempotent and safe to run on a
schedule; a volume whose run was interrupted is resumed (its blocks' state is kept). A volume that fails
(bad input, blocks failing after retries) does not stop the others; the flow then fails at the end with
the error that failed the first of them (a bad input stays a bad input: exit status 2, failed blocks 3),
naming every failed volume. The deployment with its cron schedule is defined in ``prefect.yaml`` and
registered with ``prefect deploy --all``.

The config (:class:`~pipeline.config.BatchConfig`) needs no ``segment.raw`` / ``segment.out``: they are
each volume's. ``output_root`` is the output root (``output.root``) unless the config, or
``NEURORECON__OUTPUT__ROOT``, sets one; then ``output_root`` must lie inside it. ``overwrite`` starts each
unfinished volume over instead of resuming it (finished volumes stay skipped): the way out when a volume
was started with other parameters; pass it for one run, not in the deployment's defaults.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from prefect import flow, get_run_logger

from flows.preflight import check_run, check_thresholds
from flows.reconstruct import dask_task_runner, reconstruct_flow
from pipeline.errors import InputDataError, NeuroreconError
from pipeline.io.atomic import write_atomic
from pipeline.io.layout import RunLayout
from pipeline.io.lock import confine
from pipeline.metrics.config import EvaluateConfig

__all__ = ["batch_flow", "pending_volumes"]


def pending_volumes(input_dir: Path, output_root: Path) -> list[Path]:
    """OME-Zarr images in ``input_dir`` without ``<output_root>/<name>/COMPLETE``, in name order."""
    if not input_dir.is_dir():
        raise InputDataError(f"input_dir {input_dir} does not exist or is not a directory")
    stores = sorted(p for p in input_dir.glob("*.zarr") if (p / "zarr.json").is_file())
    return [p for p in stores if not RunLayout(output_root / p.stem).complete.is_file()]


@flow(name="batch", log_prints=True)
def batch_flow(
    input_dir: Path, output_root: Path, config: Path | None = None, overwrite: bool = False,
    thresholds: list[float] | None = None,
) -> list[str]:
    """Reconstruct each unprocessed volume of ``input_dir`` into ``output_root/<name>/``.

    Parameters
    ----------
    input_dir : Path
        Folder of OME-Zarr raw images (``*.zarr``).
    output_root : Path
        Where run directories are created; the output root, unless the config sets ``output.root``
        (then ``output_root`` must lie inside it).
    config : Path, optional
        A YAML config whose ``segment:`` section (without raw/out: they are set per volume) and other
        sections apply to every volume (ground truth in ``evaluate:`` is not used: it belongs to one
        volume); defaults otherwise.
    overwrite : bool
        Start every unfinished volume over (its earlier outputs and block state removed) instead of
        resuming it; finished volumes are still skipped.
    thresholds : list of float, optional
        A threshold sweep for every volume processed: ``segmentation_t<threshold>.zarr`` beside
        ``segmentation.zarr``, compared in the report (finished volumes are skipped: sweep one of them
        with ``neurorecon run CONFIG --thresholds ...``).

    Returns
    -------
    list of str
        The report paths of the volumes processed by this run.

    Raises
    ------
    NeuroreconError
        Of the class of the first volume's failure, naming every failed volume, if any failed.
    """
    from pipeline.config import BatchConfig, NeuroreconConfig, OutputConfig
    from pipeline.io.config import load_config
    from pipeline.segment.config import SegmentConfig

    logger = get_run_logger()
    cfg = load_config(config, model=BatchConfig)
    if "root" not in cfg.output.model_fields_set:  # no output.root configured: the batch's own is the root
        cfg = cfg.model_copy(update={"output": OutputConfig(root=Path(output_root))})
    confine(output_root, cfg.output.root, what="output_root")
    base = cfg.segment.model_dump() if cfg.segment is not None else {}
    max_threshold = base.get("max_threshold", SegmentConfig.model_fields["max_threshold"].default)
    sweep = list(check_thresholds(thresholds, max_threshold=max_threshold, name="thresholds"))
    shared = {name: getattr(cfg, name) for name in NeuroreconConfig.model_fields}
    todo = pending_volumes(Path(input_dir), Path(output_root))
    logger.info("%d volume(s) to process in %s", len(todo), input_dir)
    reports: list[str] = []
    failed: dict[str, NeuroreconError] = {}
    for store in todo:
        run = RunLayout(Path(output_root) / store.stem)
        start = time.time()
        try:
            volume = NeuroreconConfig(**{
                **shared, "segment": SegmentConfig.model_validate({**base, "raw": store, "out": run.root}),
                "evaluate": EvaluateConfig(),
            })
            inputs = check_run(volume)
            runner = dask_task_runner(cfg.dask, gpu_ids=inputs.gpu_ids)
            flow_run = reconstruct_flow.with_options(task_runner=runner)
            report = flow_run(volume, inputs=inputs, overwrite=overwrite, thresholds=sweep)
        except NeuroreconError as exc:  # bad volume or failed blocks: go on with the others, fail at the end
            logger.error("%s failed: %s", store.name, exc)
            failed[store.name] = exc
            continue
        write_atomic(run.complete, json.dumps({"report": str(report), "seconds": time.time() - start}))
        logger.info("%s done: %s", store.name, report)
        reports.append(str(report))
    if failed:
        first = next(iter(failed.values()))
        message = (
            f"{len(failed)} of {len(todo)} volume(s) failed: "
            + "; ".join(f"{name}: {exc}" for name, exc in failed.items())
            + ". The others finished; fix the causes and rerun (finished volumes are skipped)"
        )
        raise _like(first, message)
    return reports


def _like(exc: NeuroreconError, message: str) -> NeuroreconError:
    """An error of the class of ``exc`` (its exit status) with ``message`` (and its failed blocks)."""
    from pipeline.errors import BlockFailure

    if isinstance(exc, BlockFailure):
        return BlockFailure(message, stage=exc.stage, errors=exc.errors)
    try:
        return type(exc)(message)
    except TypeError:  # an error class with another constructor
        return NeuroreconError(message)
