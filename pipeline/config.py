"""Configuration models: frozen pydantic models, unknown keys rejected.

Configuration is read once, at the edge (the command line or a flow's entry), by
:func:`pipeline.io.config.load_config`; library functions take plain keyword arguments. Physical units
are explicit in the field names (``voxel_size_um`` is (z, y, x) in micrometres).

Each stage owns its section model beside its code (``pipeline.synth.PhantomParams``); this module
assembles them into :class:`NeuroreconConfig`, the schema of the YAML files in ``configs/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline.segment.config import SegmentConfig
from pipeline.synth.params import PhantomParams
from pipeline.train.config import TrainConfig

__all__ = ["DaskConfig", "NeuroreconConfig", "OutputConfig", "StrictModel"]


class StrictModel(BaseModel):
    """Base of every config model: immutable, and unknown keys are an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class DaskConfig(StrictModel):
    """Where block-wise work runs.

    With ``address`` unset a ``LocalCluster`` is started on this machine; otherwise the scheduler at
    ``address`` (e.g. ``tcp://scheduler:8786``) of an existing cluster is used and the local settings
    are ignored.
    """

    address: str | None = Field(None, description="scheduler address of an existing Dask cluster")
    n_workers: Annotated[int, Field(ge=1)] = 2
    threads_per_worker: Annotated[int, Field(ge=1)] = 1
    memory_limit: str = Field("4GiB", description="per local worker, as Dask parses it")


class OutputConfig(StrictModel):
    """Where results go. Every output path (``segment.out``, every command's ``--out``, the batch flow's
    run directories) must resolve inside ``root``, symbolic links and ``..`` included; the default is
    the working directory. Deployments set it, e.g. ``NEURORECON__OUTPUT__ROOT=/data/runs``.
    """

    root: Path = Field(Path("."), description="directory every output must stay inside")


class NeuroreconConfig(StrictModel):
    """The whole configuration; every section has working defaults."""

    synth: PhantomParams = PhantomParams()
    train: TrainConfig | None = Field(None, description="training run; required by `neurorecon train`")
    segment: SegmentConfig | None = Field(None, description="required by `neurorecon segment`")
    dask: DaskConfig = DaskConfig()
    output: OutputConfig = OutputConfig()

    @model_validator(mode="after")
    def _outputs_inside_root(self) -> NeuroreconConfig:
        if self.segment is not None:
            from pipeline.io.lock import confine

            try:
                confine(self.segment.out, self.output.root, what="segment.out")
            except OSError as exc:  # OutputError: reported as a configuration error naming the key
                raise ValueError(str(exc)) from None
        return self
