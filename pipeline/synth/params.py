"""Parameters of the light-sheet phantom (the ``synth`` section of a config)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, model_validator

__all__ = ["DropoutParams", "PhantomParams"]

PositiveInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]
Triple = tuple[PositiveFloat, PositiveFloat, PositiveFloat]


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DropoutParams(_Params):
    """Signal dropout: short gaps along neurites where intensity falls to background."""

    rate_per_100um: Annotated[float, Field(ge=0)] = 1.0
    length_um: tuple[PositiveFloat, PositiveFloat] = (2.0, 5.0)

    @model_validator(mode="after")
    def _ordered(self) -> DropoutParams:
        lo, hi = self.length_um
        if lo > hi:
            raise ValueError(f"length_um must be (min, max) with min <= max; got {self.length_um}")
        return self


class PhantomParams(_Params):
    """Everything that determines a phantom; the same params and seed give the same volume."""

    shape: tuple[PositiveInt, PositiveInt, PositiveInt] = (64, 256, 256)
    voxel_size_um: Triple = (1.5, 0.5, 0.5)
    chunks: tuple[PositiveInt, PositiveInt, PositiveInt] = (32, 128, 128)
    seed: int = 0
    n_neurons: NonNegInt = 4
    n_ais: NonNegInt = 4
    dropout: DropoutParams = DropoutParams()
    swc_files: tuple[Path, ...] = ()
