"""Configuration models: the schema of the YAML files in ``configs/``.

Configuration is read once, at the edge (the command line or a flow's entry), by
:func:`pipeline.io.config.load_config`; library functions take plain keyword arguments. Physical units
are explicit in the field names (``voxel_size_um`` is (z, y, x) in micrometres).

Each stage owns its section model beside its code — ``synth:`` :class:`pipeline.synth.PhantomParams`,
``train:`` :class:`pipeline.train.config.TrainConfig`, ``segment:``
:class:`pipeline.segment.config.SegmentConfig`, ``skeletonize:``
:class:`pipeline.skeleton.config.SkeletonizeConfig`, ``evaluate:``
:class:`pipeline.metrics.config.EvaluateConfig`, ``report:`` :class:`pipeline.report.config.ReportConfig`
— and every setting has its one default there (the command-line options read it, never restate it).
This module assembles them into :class:`NeuroreconConfig` and adds the run-wide ``dask:`` and
``output:`` sections. Validators here never touch the file system: checks against files run in the
preflight of a run (:mod:`flows.preflight`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator

from pipeline.io.location import OutputDir
from pipeline.metrics.config import EvaluateConfig
from pipeline.report.config import ReportConfig
from pipeline.segment.config import SegmentConfig, SegmentSettings
from pipeline.settings import StrictModel
from pipeline.skeleton.config import SkeletonizeConfig
from pipeline.synth.params import PhantomParams
from pipeline.train.config import TrainConfig

__all__ = ["BatchConfig", "DaskConfig", "NeuroreconConfig", "OutputConfig", "StrictModel"]


class DaskConfig(StrictModel):
    """Where block-wise work runs, and how often a failed block is tried again.

    With ``address`` unset a ``LocalCluster`` is started on this machine; otherwise the scheduler at
    ``address`` (e.g. ``tcp://scheduler:8786``) of an existing cluster is used and the local settings
    (``n_workers``, ``threads_per_worker``, ``memory_limit``) are ignored.
    """

    address: str | None = Field(None, description="scheduler address of an existing Dask cluster")
    n_workers: Annotated[int, Field(ge=1)] = 2
    threads_per_worker: Annotated[int, Field(ge=1)] = 1
    memory_limit: str = Field("4GiB", description="per local worker: a size ('4GiB', '16 GB') or 'auto'")
    max_retries: Annotated[int, Field(ge=0)] = Field(
        2, description="extra attempts per block failed by an I/O or memory error, every stage")
    dashboard_address: str | None = Field(
        None, description="the local cluster's dashboard, e.g. ':8787' (null: none; the scheduler's HTTP "
                          "endpoints then take a free port)")

    @field_validator("memory_limit")
    @classmethod
    def _a_size(cls, value: str) -> str:
        """A size Dask understands (checked here, not when the cluster starts), or 'auto'."""
        from dask.utils import parse_bytes

        if value.strip().lower() == "auto":
            return value
        try:
            size = parse_bytes(value)
        except (ValueError, TypeError):
            raise ValueError("must be a size such as '4GiB', '16 GB' or '512MiB', or 'auto'") from None
        if size < 2**28:
            raise ValueError("must be at least 256MiB per worker (the U-Net alone needs more)")
        return value

    @field_validator("address")
    @classmethod
    def _an_address(cls, value: str | None) -> str | None:
        """``[protocol://]host:port``; whether a scheduler answers there is checked by the preflight."""
        if value is None or value.startswith("inproc://"):  # in-process clusters have no port
            return value
        rest = value.split("://", 1)[-1]
        host, _, port = rest.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError("must be a scheduler address such as 'tcp://scheduler:8786' (protocol://host:port)")
        return value


class OutputConfig(StrictModel):
    """Where results go. Every output path (``segment.out``, every command's ``--out``, the batch flow's
    run directories) must resolve inside ``root``, symbolic links and ``..`` included; the default is
    the working directory. Deployments set it, e.g. ``NEURORECON__OUTPUT__ROOT=/data/runs``.
    """

    root: OutputDir = Field(Path("."), description="directory every output must stay inside")
    publish: str | None = Field(
        None, description="publish every finished run's products to <publish>/<run directory name> "
                          "(s3://, gs://, az://; `neurorecon publish`)")

    @field_validator("publish")
    @classmethod
    def _writable_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from pipeline.io.publish import check_publish_url

        try:
            return str(check_publish_url(value, what="output.publish"))
        except OSError as exc:  # OutputError: pydantic reports a ValueError with the parameter's name
            raise ValueError(str(exc)) from None


class NeuroreconConfig(StrictModel):
    """The whole configuration; every section has working defaults."""

    synth: PhantomParams = PhantomParams()
    train: TrainConfig | None = Field(None, description="training run; required by `neurorecon train`")
    segment: SegmentConfig | None = Field(None, description="required by `neurorecon segment` and `run`")
    skeletonize: SkeletonizeConfig = SkeletonizeConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    report: ReportConfig = ReportConfig()
    dask: DaskConfig = DaskConfig()
    output: OutputConfig = OutputConfig()


class BatchConfig(NeuroreconConfig):
    """The configuration of the batch flow (:func:`flows.batch.batch_flow`): its ``segment:`` section
    holds the settings of every volume, without ``raw`` and ``out`` (the batch sets them per volume:
    ``raw`` is each image of its input folder, ``out`` its run directory). ``raw`` and ``out`` of an
    older batch config (placeholders, once required) are ignored."""

    segment: SegmentSettings | None = Field(None, description="settings of every volume (no raw, no out)")

    @model_validator(mode="before")
    @classmethod
    def _volume_keys_are_the_batchs(cls, data: Any) -> Any:
        segment = data.get("segment") if isinstance(data, dict) else None
        if isinstance(segment, dict) and ("raw" in segment or "out" in segment):
            data = {**data, "segment": {k: v for k, v in segment.items() if k not in ("raw", "out")}}
        return data
