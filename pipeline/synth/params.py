"""Parameters of the light-sheet phantom (the ``synth`` section of a config).

Every size is physical and says its unit in its name (``_um`` micrometres, ``_deg`` degrees,
``_photons``, ``_adu`` camera counts); every (z, y, x) triple is in that axis order. A ``(min, max)``
pair is a range a value is drawn from uniformly. The same params (seed included) always give the same
phantom, bit for bit, however it is rendered (whole volume or block by block, any block shape).

Two kinds of volume (``kind``; the config key ``synth.kind``):

* ``"neurons"`` -- a sparse cytosolic fill (ExaSPIM / MouseLight-like): one label per neuron (soma,
  dendrites, whole axon with its AIS); axons of neurons whose soma lies outside the volume enter it.
  Sections ``neuron`` and ``ais`` (its axon and AIS geometry) apply.
* ``"ais"`` -- an AIS immunostain (AnkG, as in the AIS continuity paper): one label per AIS, somata
  and axons unstained, punctate background. Section ``ais`` applies (``density_per_mm3``, the puncta).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, PositiveFloat, model_validator

from pipeline.settings import StrictModel

__all__ = ["AISParams", "DropoutParams", "ImagingParams", "NeuronParams", "PhantomParams"]

PositiveInt = Annotated[int, Field(gt=0)]
NonNegInt = Annotated[int, Field(ge=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]
Triple = tuple[PositiveFloat, PositiveFloat, PositiveFloat]
NonNegTriple = tuple[NonNegFloat, NonNegFloat, NonNegFloat]
PositiveRange = tuple[PositiveFloat, PositiveFloat]
NonNegRange = tuple[NonNegFloat, NonNegFloat]

#: Smallest number of voxels a storage chunk may hold (unless the whole volume is smaller).
MIN_CHUNK_VOXELS = 512


class _Params(StrictModel):
    def _check_ranges(self, *names: str) -> None:
        for name in names:
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"{name} must be (min, max) with min <= max; got {getattr(self, name)}")


class DropoutParams(_Params):
    """Signal dropout: short gaps along neurites and AIS where the raw intensity falls to background.

    Only the raw image loses signal; the ground-truth labels and skeletons stay continuous across a
    gap. Gaps lie inside one unbranched stretch of neurite or AIS cable (never on a soma), at least
    ``end_margin_um`` from its ends, and never overlap. Their number per object is Poisson with mean
    ``rate_per_100um`` x cable/100 µm. Both ends of every gap are nodes of the object's skeleton.
    """

    rate_per_100um: Annotated[float, Field(ge=0)] = Field(
        1.0, description="mean number of gaps per 100 µm of cable"
    )
    length_um: tuple[PositiveFloat, PositiveFloat] = Field(
        (2.0, 5.0), description="(min, max) gap length along the centreline, µm"
    )
    kinds: tuple[Literal["neuron", "ais", "swc"], ...] = Field(
        ("neuron", "ais", "swc"),
        description="object kinds that get gaps (neurons and SWC objects on their neurites; never on somata)",
    )
    end_margin_um: NonNegFloat = Field(
        2.0, description="minimum distance of a gap from the ends of its unbranched stretch, µm"
    )

    @model_validator(mode="after")
    def _ordered(self) -> DropoutParams:
        self._check_ranges("length_um")
        return self


class NeuronParams(_Params):
    """Procedural neurons: a soma (capsule) and branching neurites grown as persistent random walks.

    Each neuron is one instance (soma, dendrites and axon). A neurite's radius tapers linearly along
    each branch by ``taper`` (never below the minimum of ``neurite_radius_um``); primary neurites
    start with a radius from the upper half of ``neurite_radius_um``.

    Contacts between neurons: a growing neurite that comes within ``clearance_um + contact_range_um``
    (surface to surface) of a neurite of another neuron *meets* it (once per stretch of that neurite).
    With probability ``fasciculation_probability`` it joins it and runs alongside it (a fascicle, for
    a length drawn from ``fasciculation_length_um``), with probability ``crossing_probability`` it
    crosses it; in both cases at exactly ``clearance_um`` surface to surface. Otherwise it carries on,
    and stops if it would come closer than ``clearance_um``. So ``clearance_um`` is the smallest gap
    between different neurons everywhere (0: fascicles and crossings touch), ``contact_range_um``
    sets how often neurites meet, and the two probabilities what they do then. A neurite never
    crosses a soma or a neurite of its own neuron (it stops there). Generated neurons stay at least
    ``clearance_um`` minus about 0.5 µm apart (distances are tested at nodes 1-1.5 µm apart); a
    clearance above a voxel diagonal (e.g. 3 µm) gives neurons whose voxels never touch. With both
    probabilities 0, neurites never run along or cross another neuron, they stop at it.
    """

    soma_radius_um: PositiveRange = Field((5.0, 8.0), description="(min, max) soma radius, µm")
    soma_half_length_um: NonNegRange = Field(
        (0.5, 3.0), description="(min, max) half length of the soma capsule's axis (0 = sphere), µm"
    )
    n_neurites: tuple[PositiveInt, PositiveInt] = Field(
        (3, 6), description="(min, max) number of primary neurites (dendrites) per neuron, inclusive"
    )
    neurite_radius_um: PositiveRange = Field((0.5, 2.0), description="(min, max) neurite radius, µm")
    branch_length_um: PositiveRange = Field(
        (15.0, 50.0), description="(min, max) length of one unbranched neurite stretch, µm"
    )
    max_branch_order: NonNegInt = Field(3, description="how many times a neurite may bifurcate along a path")
    branch_probability: Fraction = Field(0.6, description="probability that a stretch ends in a bifurcation")
    branch_angle_deg: tuple[NonNegFloat, NonNegFloat] = Field(
        (25.0, 60.0), description="(min, max) angle between a daughter and its parent's direction, degrees"
    )
    taper: Annotated[float, Field(gt=0, le=1)] = Field(
        0.8, description="radius at the end of a stretch / radius at its start (dimensionless)"
    )
    persistence_um: PositiveFloat = Field(
        50.0, description="persistence length of the random walk (larger = straighter), µm"
    )
    step_um: PositiveFloat = Field(1.5, description="centreline node spacing, µm")
    clearance_um: NonNegFloat = Field(
        0.0,
        description=(
            "smallest gap between the tube surfaces of different neurons, fascicles and crossings included "
            "(0 = they touch), µm"
        ),
    )
    contact_range_um: NonNegFloat = Field(
        3.0,
        description="surface gap (beyond clearance_um) at which a growing neurite meets another neuron's, µm",
    )
    fasciculation_probability: Fraction = Field(
        0.3, description="probability that a neurite meeting another neuron's neurite runs along it"
    )
    crossing_probability: Fraction = Field(
        0.4, description="probability that a neurite meeting another neuron's neurite crosses it"
    )
    fasciculation_length_um: PositiveRange = Field(
        (10.0, 40.0), description="(min, max) length a neurite runs along another neuron's neurite, µm"
    )

    @model_validator(mode="after")
    def _ordered(self) -> NeuronParams:
        self._check_ranges(
            "soma_radius_um", "soma_half_length_um", "n_neurites", "neurite_radius_um", "branch_length_um",
            "branch_angle_deg", "fasciculation_length_um",
        )
        if self.branch_angle_deg[1] > 180:
            raise ValueError(f"branch_angle_deg must be within [0, 180] degrees; got {self.branch_angle_deg}")
        total = self.fasciculation_probability + self.crossing_probability
        if total > 1:
            raise ValueError(
                f"fasciculation_probability + crossing_probability must be at most 1 (the rest is the "
                f"probability of carrying on); got {self.fasciculation_probability} + "
                f"{self.crossing_probability} = {total}"
            )
        return self


class AISParams(_Params):
    """Axon initial segments: a thick, straight-ish stretch of axon some distance from the soma.

    An AIS is preceded by a thin proximal axon from the soma surface (``soma_distance_um`` long) and
    followed by a thin distal axon. In the ``neurons`` kind all three are part of their neuron's
    label. In the ``ais`` kind (an AnkG immunostain) only the AIS is stained and labelled, one label
    each: neurons (soma + proximal axon + AIS, all but the AIS invisible) are placed at
    ``density_per_mm3`` in and around the volume, every AIS reaching into the volume is an object,
    and ``puncta_per_1000um3`` unlabelled bright dots make the punctate background of the stain.
    """

    length_um: PositiveRange = Field(
        (20.0, 60.0), description="(min, max) AIS length along its centreline, µm"
    )
    radius_um: PositiveRange = Field((1.0, 1.5), description="(min, max) AIS radius (constant along it), µm")
    soma_distance_um: NonNegRange = Field(
        (3.0, 16.0),
        description="(min, max) distance along the axon from the soma surface to the AIS start, µm",
    )
    axon_radius_um: PositiveRange = Field(
        (0.5, 0.7), description="(min, max) radius of the proximal and distal axon, µm"
    )
    distal_axon_length_um: NonNegRange = Field(
        (20.0, 80.0), description="(min, max) length of axon drawn beyond the AIS (0 = none), µm"
    )
    persistence_um: PositiveFloat = Field(
        200.0, description="persistence length of the axon's random walk, µm"
    )
    step_um: PositiveFloat = Field(1.0, description="centreline node spacing, µm")
    density_per_mm3: NonNegFloat = Field(
        3700.0,
        description=(
            "ais kind: stained neurons (one AIS each) per mm³, placed in the volume and as far around it as "
            "an AIS can start outside it (the default gives 10-15 AIS, about half of them whole, in a "
            "64 x 256 x 256 volume of 1.5 x 0.5 x 0.5 µm voxels)"
        ),
    )
    clearance_um: NonNegFloat = Field(
        1.0, description="ais kind: smallest gap between AIS (and unstained somata) of different neurons, µm"
    )
    stain_brightness: tuple[NonNegFloat, NonNegFloat] = Field(
        (0.6, 1.0),
        description="ais kind: (min, max) stain intensity of one AIS, times imaging.ais_brightness",
    )
    puncta_per_1000um3: NonNegFloat = Field(
        0.5, description="ais kind: unlabelled fluorescent puncta (background) per 1000 µm³"
    )
    puncta_radius_um: PositiveRange = Field((0.3, 0.7), description="ais kind: (min, max) punctum radius, µm")
    puncta_brightness: tuple[NonNegFloat, NonNegFloat] = Field(
        (0.3, 1.0), description="ais kind: (min, max) relative fluorescence of a punctum (dimensionless)"
    )

    @model_validator(mode="after")
    def _ordered(self) -> AISParams:
        self._check_ranges(
            "length_um", "radius_um", "soma_distance_um", "axon_radius_um", "distal_axon_length_um",
            "stain_brightness", "puncta_radius_um", "puncta_brightness",
        )
        return self


class ImagingParams(_Params):
    """How labels become a light-sheet image: fluorescence, anisotropic Gaussian PSF, camera noise.

    The expected photon count of a voxel is ``background_photons + signal_photons * (PSF * f)`` where
    ``f`` is the fluorescence at each voxel: the largest brightness of the tubes covering it (0 in
    background and where every covering tube is in a dropout gap). The camera reports
    ``offset_adu + gain_adu_per_photon * Poisson + Normal(0, read_noise_adu)``, rounded and clipped
    to uint16.
    """

    psf_sigma_um: NonNegTriple = Field(
        (1.2, 0.35, 0.35), description="(z, y, x) standard deviation of the Gaussian PSF, µm (0 = no blur)"
    )
    psf_truncate: PositiveFloat = Field(3.0, description="the PSF kernel is cut at this many sigmas")
    signal_photons: NonNegFloat = Field(
        400.0, description="expected photons per voxel from fully bright (brightness 1) unblurred structure"
    )
    background_photons: NonNegFloat = Field(50.0, description="expected background photons per voxel")
    gain_adu_per_photon: PositiveFloat = Field(2.0, description="camera gain, ADU per photon")
    offset_adu: NonNegFloat = Field(100.0, description="camera offset (dark level), ADU")
    read_noise_adu: NonNegFloat = Field(3.0, description="standard deviation of the Gaussian read noise, ADU")
    noise: bool = Field(True, description="draw Poisson-Gaussian noise (False: the noise-free expectation)")
    ais_brightness: NonNegFloat = Field(
        1.0, description="relative fluorescence of the stained AIS of the ais kind (dimensionless)"
    )
    soma_brightness: NonNegFloat = Field(
        0.8, description="relative fluorescence of somata (neurons kind, SWC soma nodes; dimensionless)"
    )
    neurite_brightness: NonNegFloat = Field(
        0.6, description="relative fluorescence of neurites, axons and AIS of a cytosolic fill"
    )


class PhantomParams(_Params):
    """Everything that determines a phantom; the same params and seed give the same volume.

    ``kind`` picks the volume: ``"neurons"`` (a sparse cytosolic fill, one label per neuron) or
    ``"ais"`` (an AIS immunostain, one label per AIS). Procedural neurons are generated unless
    ``swc_files`` is set, in which case those skeletons (µm, one object per file) are rendered
    instead, cropped to the volume around ``swc_centre_um`` (neurons kind only).
    """

    shape: tuple[PositiveInt, PositiveInt, PositiveInt] = Field(
        (64, 256, 256), description="(z, y, x) volume shape, voxels"
    )
    voxel_size_um: Triple = Field((1.5, 0.5, 0.5), description="(z, y, x) voxel size, µm")
    chunks: tuple[PositiveInt, PositiveInt, PositiveInt] = Field(
        (32, 128, 128),
        description="(z, y, x) storage chunk and write-block shape, voxels (clipped to shape)",
    )
    seed: NonNegInt = Field(0, description="random seed of the geometry, the dropout and the noise")
    kind: Literal["neurons", "ais"] = Field(
        "neurons",
        description=(
            "neurons: a sparse cytosolic fill, one label per neuron; "
            "ais: an AIS immunostain, one label per AIS"
        ),
    )
    n_neurons: NonNegInt = Field(
        4, description="neurons kind: neurons with their soma inside the volume (soma, dendrites, axon)"
    )
    n_ais: NonNegInt = Field(
        4,
        description=(
            "neurons kind: axons with an AIS; the first n_neurons are those of the neurons inside (neurons "
            "beyond n_ais have no axon), the rest belong to neurons whose soma lies just outside the "
            "volume and enter it (one label each)"
        ),
    )
    n_passing_axons: NonNegInt = Field(
        2, description="neurons kind: axons of distant neurons that cross the volume (one label each, no AIS)"
    )
    neuron: NeuronParams = Field(NeuronParams(), description="procedural neurons: somata and neurites (µm)")
    ais: AISParams = Field(AISParams(), description="axon initial segments and the axon around them (µm)")
    imaging: ImagingParams = Field(
        ImagingParams(), description="PSF (µm), photons, camera gain and noise (ADU)"
    )
    dropout: DropoutParams = Field(
        DropoutParams(), description="signal dropout gaps along neurites and AIS (µm)"
    )
    swc_files: tuple[Path, ...] = Field(
        (), description="SWC files (µm) to render instead of procedural neurons"
    )
    swc_centre_um: tuple[float, float, float] | None = Field(
        None,
        description=(
            "(z, y, x) point of the SWC frame placed at the volume centre, µm; None = the densest part"
        ),
    )
    swc_radius_um: PositiveFloat | None = Field(
        None, description="radius given to every SWC node, µm; None = the radii in the files"
    )

    @model_validator(mode="after")
    def _check(self) -> PhantomParams:
        if self.kind == "ais" and self.swc_files:
            raise ValueError(
                "swc_files are rendered as neurons (one label per file) and need kind='neurons'; "
                "got kind='ais'"
            )
        chunks = self.effective_chunks
        n_chunk = chunks[0] * chunks[1] * chunks[2]
        n_volume = self.shape[0] * self.shape[1] * self.shape[2]
        if n_chunk < min(MIN_CHUNK_VOXELS, n_volume):
            raise ValueError(
                f"chunks {self.chunks} hold only {n_chunk} voxels each; expected at least {MIN_CHUNK_VOXELS} "
                "(e.g. (32, 128, 128)): tiny chunks make millions of files and slow block-wise writing"
            )
        n_blocks = 1
        for s, c in zip(self.shape, chunks, strict=True):
            n_blocks *= -(-s // c)
        if n_blocks > 1_000_000:
            warnings.warn(
                f"shape {self.shape} with chunks {self.chunks} makes {n_blocks} chunks; "
                "larger chunks write faster",
                stacklevel=2,
            )
        return self

    @property
    def effective_chunks(self) -> tuple[int, int, int]:
        """``chunks`` clipped to ``shape`` (what the stores are written with)."""
        pairs = zip(self.chunks, self.shape, strict=True)
        return tuple(min(c, s) for c, s in pairs)  # type: ignore[return-value]

    @property
    def extent_um(self) -> tuple[float, float, float]:
        """(z, y, x) physical size of the volume, µm."""
        pairs = zip(self.shape, self.voxel_size_um, strict=True)
        return tuple(n * v for n, v in pairs)  # type: ignore[return-value]
