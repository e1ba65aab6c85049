"""kimimaro's TEASAR settings in physical units: the one home of these settings.

kimimaro compares ``const``, ``soma_detection_threshold``, ``soma_acceptance_threshold`` and
``soma_invalidation_const`` with its distance-to-boundary field, computed with ``anisotropy`` = the voxel
size in µm, so they are in µm and are passed through unchanged; ``scale``, ``soma_invalidation_scale``,
``pdrf_scale`` and ``pdrf_exponent`` are unit-free (see :mod:`pipeline.skeleton.teasar`).
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import Field, field_validator

from pipeline.settings import StrictModel

__all__ = ["TeasarParams"]

NonNegFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class TeasarParams(StrictModel):
    """kimimaro's TEASAR settings in physical units (µm); the ``skeletonize.teasar`` config section.

    The one home of these settings: :func:`skeletonize`, the block-wise skeletonization and the
    ``neurorecon skeletonize`` options all take them from here. ``const_um`` and the soma thresholds are
    compared by kimimaro with its distance-to-boundary field, computed with ``anisotropy`` = the voxel size
    in µm, so they are in µm (see the module docstring).

    Attributes
    ----------
    scale, const_um : float
        Rolling-ball invalidation radius ``scale * DBF + const_um`` (DBF = distance to the boundary, µm).
        Side branches shorter than about this radius are not traced.
    pdrf_scale : float
        Weight of the penalty that keeps paths near the centreline (unit-free).
    pdrf_exponent : int
        Exponent of that penalty.
    soma : bool
        Enable kimimaro's soma handling; off (thresholds at infinity) suits axon initial segments and
        other thin processes.
    soma_detection_threshold_um, soma_acceptance_threshold_um : float
        DBF (µm) above which a soma is looked for / accepted; kimimaro's defaults converted to µm.
    soma_invalidation_scale, soma_invalidation_const_um : float
        Invalidation radius around an accepted soma root, ``scale * DBF + const_um``.
    fix_branching : bool
        kimimaro's ``fix_branching``.
    """

    scale: NonNegFloat = 1.5
    const_um: NonNegFloat = 1.0
    pdrf_scale: NonNegFloat = 100000.0
    pdrf_exponent: int = 4
    soma: bool = False
    soma_detection_threshold_um: NonNegFloat = 0.75  # kimimaro's 750 nm
    soma_acceptance_threshold_um: NonNegFloat = 3.5  # kimimaro's 3500 nm
    soma_invalidation_scale: NonNegFloat = 2.0
    soma_invalidation_const_um: NonNegFloat = 0.3  # kimimaro's 300 nm
    fix_branching: bool = True

    @field_validator("pdrf_exponent")
    @classmethod
    def _positive_exponent(cls, value: int) -> int:
        if value < 1:
            raise ValueError(f"pdrf_exponent must be a positive integer; got {value!r}")
        return value

    def kimimaro(self) -> dict[str, Any]:
        """The ``teasar_params`` dictionary for ``kimimaro.skeletonize`` (anisotropy in µm)."""
        return {
            "scale": float(self.scale),
            "const": float(self.const_um),
            "pdrf_scale": float(self.pdrf_scale),
            "pdrf_exponent": int(self.pdrf_exponent),
            "soma_invalidation_scale": float(self.soma_invalidation_scale),
            "soma_invalidation_const": float(self.soma_invalidation_const_um),
            "soma_detection_threshold": float(self.soma_detection_threshold_um) if self.soma else math.inf,
            "soma_acceptance_threshold": float(self.soma_acceptance_threshold_um) if self.soma else math.inf,
        }
