"""Random training patches from one or more lazily read volumes: raw, targets and loss masks.

A :class:`VolumeSource` is an open volume (raw and labels readers, voxel size, region of interest,
normalization range and foreground index); :func:`prepare_source` builds one with a single chunked pass
over the labels and a sampled pass over the raw. :func:`sample_patch` then reads only the box a patch
needs from each reader (``reader[z0:z1, y0:y1, x0:x1]``), optionally downscales it in y and x, augments
it and derives the targets; :func:`sample_batch` makes a batch that depends only on
``(seed, stream, batch_index)`` — the property that makes data loading reproducible with any number of
workers and lets an interrupted training resume mid-stream.

Geometry
--------
All shapes and positions are (z, y, x) voxels. 2-D data are stacks of (Y, X) slices read as
(1, Y, X) boxes; ``PatchSpec.ndim = 2`` drops the z axis from the arrays returned. With a downscale
factor ``f`` the box read is ``(Z, f·Y, f·X)`` voxels of the volume: raw is averaged over f×f blocks,
labels take the centre voxel of each block (nearest neighbour). ``input_shape`` is the network input
after downscaling; the targets cover the centred ``output_shape`` (smaller than the input for a
``padding="valid"`` U-Net, or a loss region chosen smaller than the output), so they are computed with
the context the network sees; simulated dropout gaps are then centred inside that region.

Foreground bias
---------------
A fraction ``foreground_fraction`` of the patches is centred on a labelled voxel drawn from the
source's :class:`~pipeline.data.index.ForegroundIndex` (shifted, by whole downscaled voxels, only as
far as needed to stay inside the region of interest); the rest are placed uniformly at random.

Targets
-------
``"affinities"``: ``ndim`` channels of nearest-neighbour affinities (waterz convention, see
:func:`pipeline.targets.affinities_from_labels`) with their mask — 0 where an edge's partner voxel lies
outside the patch read. ``"foreground"``: one channel ``labels != 0`` and a mask of ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from pipeline._checks import as_voxel_size
from pipeline.data.augment import Augmentation, augment_patch
from pipeline.data.index import ForegroundIndex, foreground_index, sample_foreground_voxel
from pipeline.data.normalize import IntensityRange, NormalizationMethod, intensity_range, normalize_intensity
from pipeline.data.volume import Box, Reader, as_stack, read_box
from pipeline.targets import affinities_from_labels

__all__ = [
    "Batch",
    "Patch",
    "PatchSpec",
    "TargetKind",
    "VolumeSource",
    "make_targets",
    "patch_seed",
    "prepare_source",
    "sample_batch",
    "sample_patch",
]

TargetKind = Literal["affinities", "foreground"]


@dataclass(frozen=True)
class PatchSpec:
    """What a patch looks like (settings, no data).

    Attributes
    ----------
    input_shape : tuple of int
        (z, y, x) network input in voxels after downscaling; z = 1 for 2-D.
    output_shape : tuple of int
        (z, y, x) network output (= ``input_shape`` for ``padding="same"``), centred in the input.
    target : {"affinities", "foreground"}
    ndim : {2, 3}
        2 drops the z axis from returned arrays (needs ``input_shape[0] == 1``).
    downscale_xy : int
        Factor by which y and x are downscaled after reading (AIS paper: 3).
    foreground_fraction : float
        Fraction of patches centred on a labelled voxel, in [0, 1].
    """

    input_shape: tuple[int, int, int]
    output_shape: tuple[int, int, int]
    target: TargetKind = "affinities"
    ndim: int = 3
    downscale_xy: int = 1
    foreground_fraction: float = 0.5

    def __post_init__(self) -> None:
        for name in ("input_shape", "output_shape"):
            shape = getattr(self, name)
            if len(shape) != 3 or min(shape) < 1:
                raise ValueError(f"{name}={shape!r}; expected three positive sizes (z, y, x)")
            object.__setattr__(self, name, tuple(int(s) for s in shape))
        if any(o > i or (i - o) % 2 for i, o in zip(self.input_shape, self.output_shape, strict=True)):
            raise ValueError(
                f"output_shape={self.output_shape} must fit centred in input_shape={self.input_shape} "
                "(each axis no larger, with an even difference)"
            )
        if self.target not in ("affinities", "foreground"):
            raise ValueError(f"target={self.target!r}; expected 'affinities' or 'foreground'")
        if self.ndim not in (2, 3):
            raise ValueError(f"ndim={self.ndim!r}; expected 2 or 3")
        if self.ndim == 2 and self.input_shape[0] != 1:
            raise ValueError(f"ndim=2 needs input_shape[0] == 1 (one z slice); got {self.input_shape}")
        if isinstance(self.downscale_xy, bool) or int(self.downscale_xy) < 1:
            raise ValueError(f"downscale_xy={self.downscale_xy!r}; expected a positive integer")
        if not 0.0 <= self.foreground_fraction <= 1.0:
            raise ValueError(f"foreground_fraction={self.foreground_fraction!r}; expected a value in [0, 1]")

    @property
    def read_shape(self) -> tuple[int, int, int]:
        """(z, y, x) box read from the volume: the input shape times the downscale factor in y and x."""
        f = self.downscale_xy
        z, y, x = self.input_shape
        return (z, y * f, x * f)

    @property
    def channels(self) -> int:
        """Target channels: ``ndim`` affinities or one foreground channel."""
        return self.ndim if self.target == "affinities" else 1


@dataclass(frozen=True)
class VolumeSource:
    """An open (z, y, x) volume to sample from: readers plus what sampling needs to know about them.

    Build it with :func:`prepare_source`. Holds readers (e.g. ``zarr.Array``), not data.

    Attributes
    ----------
    raw, labels : reader
        (Z, Y, X) readers of the same shape (2-D readers are seen as (1, Y, X)).
    voxel_size_um : tuple of float
        (z, y, x), µm, of the stored volume.
    roi : Box
        Where patches may be read.
    intensity : IntensityRange
        Raw values mapped to 0 and 1.
    index : ForegroundIndex
        Labelled voxels of the ROI.
    name : str
        For messages.
    """

    raw: Reader
    labels: Reader
    voxel_size_um: tuple[float, float, float]
    roi: Box
    intensity: IntensityRange
    index: ForegroundIndex
    name: str = ""


@dataclass(frozen=True)
class Patch:
    """One training patch, channel-first, spatial axes (z, y, x) or (y, x) for 2-D.

    Attributes
    ----------
    raw : numpy.ndarray
        (1, *input_spatial) float32 normalized and augmented intensities.
    target, mask : numpy.ndarray
        (C, *output_spatial) float32 in {0, 1}.
    labels : numpy.ndarray
        (*output_spatial) instance labels under the target (after the same flips).
    source : int
        Index of the volume it came from.
    start : tuple of int
        (z, y, x) corner of the box read, in volume voxels (before augmentation).
    focus : tuple of int or None
        (z, y, x) position, in downscaled input-patch voxels before augmentation, of the labelled voxel
        a foreground-centred patch was built around; None for a random patch.
    focus_label : int
        Label of the focus voxel (0 for a random patch).
    """

    raw: np.ndarray
    target: np.ndarray
    mask: np.ndarray
    labels: np.ndarray
    source: int
    start: tuple[int, int, int]
    focus: tuple[int, int, int] | None = None
    focus_label: int = 0


@dataclass(frozen=True)
class Batch:
    """A stack of patches: ``raw`` (B, 1, ...), ``target`` and ``mask`` (B, C, ...), ``labels`` (B, ...)."""

    raw: np.ndarray
    target: np.ndarray
    mask: np.ndarray
    labels: np.ndarray
    source: np.ndarray
    start: np.ndarray
    foreground_centred: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))

    def as_dict(self) -> dict[str, np.ndarray]:
        """The arrays by name (what a DataLoader collates into tensors)."""
        return {
            "raw": self.raw,
            "target": self.target,
            "mask": self.mask,
            "labels": self.labels,
            "source": self.source,
            "start": self.start,
            "foreground_centred": self.foreground_centred,
        }


def prepare_source(
    raw: Reader,
    labels: Reader,
    *,
    voxel_size_um: Sequence[float],
    roi: Box | None = None,
    normalization: NormalizationMethod = "percentile",
    percentiles: tuple[float, float] = (1.0, 99.9),
    index_cell_shape: Sequence[int] | None = None,
    seed: int = 0,
    name: str = "",
) -> VolumeSource:
    """Open a volume for sampling: estimate its intensity range and index its labelled voxels.

    Reads the raw in a seeded sample of blocks and the labels inside ``roi`` once, block by block
    (see :func:`~pipeline.data.normalize.intensity_range` and :func:`~pipeline.data.index.foreground_index`).

    Parameters
    ----------
    raw, labels : reader
        (Z, Y, X) or (Y, X) arrays with numpy-style slicing, of the same shape; labels integer.
    voxel_size_um : sequence of float
        (z, y, x) voxel size in µm (for 2-D data, any positive z).
    roi : Box, optional
        Region patches may come from (e.g. a train/validation split); default everything.
    normalization, percentiles
        See :func:`~pipeline.data.normalize.intensity_range`; the percentiles are estimated inside ``roi``.
    index_cell_shape : sequence of int, optional
        Cell shape of the foreground index (default the labels' chunks).
    seed : int
        Seed of the block samples.
    name : str
        Shown in messages.

    Raises
    ------
    ValueError
        If the shapes differ or ``roi`` is empty or outside the volume.
    TypeError
        If the labels are not integer.
    """
    raw_s = as_stack(raw, "raw")
    lab_s = as_stack(labels, "labels")
    if tuple(raw_s.shape) != tuple(lab_s.shape):
        raise ValueError(
            f"raw has shape {tuple(raw_s.shape)} but labels has shape {tuple(lab_s.shape)} "
            f"in {name or 'source'}; "
            "they must match"
        )
    if np.dtype(lab_s.dtype).kind not in "biu":
        raise TypeError(f"labels of {name or 'source'} have dtype {lab_s.dtype}; expected integer labels")
    vs = as_voxel_size(voxel_size_um)
    full = Box.from_shape(raw_s.shape)
    region = full if roi is None else roi
    if any(a < 0 or b > s or a >= b for a, b, s in zip(region.start, region.stop, full.stop, strict=True)):
        raise ValueError(
            f"roi {region.start}..{region.stop} of {name or 'source'} is empty or outside the volume of "
            f"shape {tuple(raw_s.shape)}"
        )
    ir = intensity_range(raw_s, method=normalization, percentiles=percentiles, roi=region, seed=seed)
    idx = foreground_index(lab_s, roi=region, cell_shape=index_cell_shape, seed=seed)
    return VolumeSource(raw_s, lab_s, vs, region, ir, idx, name)  # type: ignore[arg-type]


def patch_seed(seed: int, stream: int, batch_index: int) -> np.random.SeedSequence:
    """The seed of batch ``batch_index`` of ``stream`` (0 = training, 1 = validation, ...)."""
    return np.random.SeedSequence([int(seed), int(stream), int(batch_index)])


def sample_batch(
    sources: Sequence[VolumeSource],
    *,
    spec: PatchSpec,
    augmentation: Augmentation,
    batch_size: int,
    seed: int,
    batch_index: int,
    stream: int = 0,
) -> Batch:
    """Batch ``batch_index`` of a reproducible stream: the same arguments always give the same batch.

    Raises
    ------
    ValueError
        If ``batch_size < 1`` or a source's ROI is smaller than the patch box.
    """
    if isinstance(batch_size, bool) or int(batch_size) < 1:
        raise ValueError(f"batch_size={batch_size!r}; expected a positive integer")
    rng = np.random.default_rng(patch_seed(seed, stream, batch_index))
    patches = [
        sample_patch(sources, spec=spec, augmentation=augmentation, rng=rng) for _ in range(batch_size)
    ]
    return Batch(
        raw=np.stack([p.raw for p in patches]),
        target=np.stack([p.target for p in patches]),
        mask=np.stack([p.mask for p in patches]),
        labels=np.stack([p.labels for p in patches]),
        source=np.asarray([p.source for p in patches], np.int64),
        start=np.asarray([p.start for p in patches], np.int64),
        foreground_centred=np.asarray([p.focus is not None for p in patches], bool),
    )


def sample_patch(
    sources: Sequence[VolumeSource],
    *,
    spec: PatchSpec,
    augmentation: Augmentation,
    rng: np.random.Generator,
) -> Patch:
    """Read, downscale, normalize and augment one random patch and make its targets.

    A volume is chosen with probability proportional to its ROI size (to its labelled voxels for a
    foreground-centred patch); see the module docstring for placement and targets.

    Raises
    ------
    ValueError
        If ``sources`` is empty or a ROI is smaller than ``spec.read_shape``.
    """
    if not sources:
        raise ValueError("sources is empty; give at least one VolumeSource")
    read = spec.read_shape
    for s in sources:
        if any(r > n for r, n in zip(read, s.roi.shape, strict=True)):
            raise ValueError(
                f"source {s.name or sources.index(s)} has a region of interest of (z, y, x) shape "
                f"{s.roi.shape}, smaller than the patch box {read} (input_shape {spec.input_shape} x "
                f"downscale_xy {spec.downscale_xy}); use a smaller patch or a larger region"
            )
    want_fg = spec.foreground_fraction > 0 and rng.random() < spec.foreground_fraction
    fg_weights = np.asarray([s.index.n_foreground for s in sources], np.float64)
    if want_fg and fg_weights.sum() > 0:
        i = int(rng.choice(len(sources), p=fg_weights / fg_weights.sum()))
        source = sources[i]
        voxel = sample_foreground_voxel(source.index, rng)
        assert voxel is not None  # the source has foreground
        start, focus = _centred_start(voxel, source.roi, spec)
    else:
        sizes = np.asarray([s.roi.size for s in sources], np.float64)
        i = int(rng.choice(len(sources), p=sizes / sizes.sum()))
        source = sources[i]
        start = tuple(
            int(rng.integers(a, b - r + 1))
            for a, b, r in zip(source.roi.start, source.roi.stop, read, strict=True)
        )
        focus = None
    box = Box(start, tuple(a + r for a, r in zip(start, read, strict=True)))  # type: ignore[arg-type]
    raw = normalize_intensity(read_box(source.raw, box), low=source.intensity.low, high=source.intensity.high)
    labels = read_box(source.labels, box)
    raw, labels = _downscale(raw, labels, spec.downscale_xy)
    focus_label = int(labels[focus]) if focus is not None else 0
    f = spec.downscale_xy
    vs = (source.voxel_size_um[0], source.voxel_size_um[1] * f, source.voxel_size_um[2] * f)
    square = spec.input_shape[1] == spec.input_shape[2] and np.isclose(vs[1], vs[2], rtol=1e-6)
    crop = _crop_slices(spec.input_shape, spec.output_shape)
    raw, labels = augment_patch(
        raw, labels, rng=rng, settings=augmentation, voxel_size_um=vs, allow_transpose=square,
        gap_region=None if spec.output_shape == spec.input_shape else crop,
    )
    target, mask = make_targets(labels, kind=spec.target, output_shape=spec.output_shape)
    out_labels = labels[crop]
    if spec.ndim == 2:
        raw, target, mask, out_labels = raw[0], target[:, 0], mask[:, 0], out_labels[0]
    return Patch(
        raw=np.ascontiguousarray(raw[np.newaxis], dtype=np.float32),
        target=np.ascontiguousarray(target),
        mask=np.ascontiguousarray(mask),
        labels=np.ascontiguousarray(out_labels),
        source=i,
        start=start,  # type: ignore[arg-type]
        focus=focus,
        focus_label=focus_label,
    )


def make_targets(
    labels: np.ndarray, *, kind: TargetKind, output_shape: Sequence[int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Targets and loss mask of a (Z, Y, X) label patch, cropped centrally to ``output_shape``.

    Parameters
    ----------
    labels : numpy.ndarray
        (Z, Y, X) integer instance labels, 0 = background.
    kind : {"affinities", "foreground"}
        ``"affinities"``: 3 channels (z, y, x) for 3-D; for a one-slice stack (Z = 1) the 2 in-plane
        channels (y, x) only. ``"foreground"``: 1 channel.
    output_shape : sequence of int, optional
        (z, y, x) centred crop; default the whole patch.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        target and mask, (C, *output_shape) float32. Affinity edges whose partner voxel lies outside
        ``labels`` have mask 0; with an output smaller than ``labels`` there are none.
    """
    if labels.ndim != 3:
        raise ValueError(f"labels has ndim={labels.ndim}; expected a (z, y, x) patch")
    out = tuple(labels.shape) if output_shape is None else tuple(int(s) for s in output_shape)
    crop = _crop_slices(labels.shape, out)
    if kind == "affinities":
        if labels.shape[0] == 1:
            t = affinities_from_labels(labels[0])
            target, mask = t.affinities[:, np.newaxis], t.mask[:, np.newaxis]
        else:
            t = affinities_from_labels(labels)
            target, mask = t.affinities, t.mask
    elif kind == "foreground":
        target = (labels != 0).astype(np.float32)[np.newaxis]
        mask = np.ones_like(target)
    else:
        raise ValueError(f"kind={kind!r}; expected 'affinities' or 'foreground'")
    full = (slice(None), *crop)
    return np.ascontiguousarray(target[full]), np.ascontiguousarray(mask[full])


def _crop_slices(shape: Sequence[int], out: Sequence[int]) -> tuple[slice, ...]:
    return tuple(slice((s - o) // 2, (s - o) // 2 + o) for s, o in zip(shape, out, strict=True))


def _centred_start(
    voxel: tuple[int, int, int], roi: Box, spec: PatchSpec
) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Box start that puts ``voxel`` at the patch centre (moved as little as the ROI requires).

    Moves are whole downscaled voxels, so the voxel stays on the grid of sampled label voxels.
    Returns the start and the voxel's position in the downscaled patch.
    """
    f = spec.downscale_xy
    start, focus = [], []
    for axis, (c, n) in enumerate(zip(voxel, spec.input_shape, strict=True)):
        a = 1 if axis == 0 else f
        lo, hi = roi.start[axis], roi.stop[axis] - n * a  # valid starts: [lo, hi]
        off = a // 2
        k_min = -((-(c - off - hi)) // a)  # ceil
        k_max = (c - off - lo) // a
        k_lo, k_hi = max(k_min, 0), min(k_max, n - 1)
        if k_lo <= k_hi:
            k = min(max(n // 2, k_lo), k_hi)
            s = c - off - k * a
        else:  # the voxel cannot stay on the sampled grid (ROI barely larger than the box): stay inside
            s = min(max(c - off - (n // 2) * a, lo), hi)
            k = min(max((c - s - off) // a, 0), n - 1)
        start.append(int(s))
        focus.append(int(k))
    return tuple(start), tuple(focus)  # type: ignore[return-value]


def _downscale(raw: np.ndarray, labels: np.ndarray, f: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean over f×f (y, x) blocks for raw; the centre voxel of each block for labels."""
    if f == 1:
        return raw, labels
    z, y, x = raw.shape
    small = raw.reshape(z, y // f, f, x // f, f).mean(axis=(2, 4), dtype=np.float32)
    return small, np.ascontiguousarray(labels[:, f // 2 :: f, f // 2 :: f])
