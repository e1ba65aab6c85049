"""Training data: lazy patch sampling with foreground bias, augmentation, targets, a torch data loader.

Pure compute on array-likes: readers are anything with ``shape``, ``dtype`` and numpy-style slicing
(numpy, ``zarr.Array`` from :mod:`pipeline.io.omezarr`, ...); only the boxes a patch needs are read.
Axis order is (z, y, x); 2-D data are (1, Y, X) stacks of slices.

=========================  ===============================================================================
volumes                    :class:`Box`, :func:`as_stack`, :func:`iter_blocks`
normalization              :func:`intensity_range` (sampled percentiles or dtype range),
                           :func:`normalize_intensity`
foreground index           :func:`foreground_index`, :func:`sample_foreground_voxel`
augmentation               :class:`Augmentation`, :func:`augment_patch`, :func:`flip_transpose`,
                           :func:`adjust_intensity`, :func:`add_gaussian_noise`, :func:`signal_dropout`
patches and batches        :class:`PatchSpec`, :class:`VolumeSource`, :func:`prepare_source`,
                           :func:`sample_patch`, :func:`sample_batch`, :func:`make_targets`
torch                      :class:`PatchDataset`, :func:`make_loader`
=========================  ===============================================================================
"""

from pipeline.data.augment import (
    Augmentation,
    Dropout,
    add_gaussian_noise,
    adjust_intensity,
    augment_patch,
    flip_transpose,
    signal_dropout,
)
from pipeline.data.dataset import PatchDataset, make_loader
from pipeline.data.index import ForegroundIndex, foreground_index, sample_foreground_voxel
from pipeline.data.normalize import IntensityRange, intensity_range, normalize_intensity
from pipeline.data.sampler import (
    Batch,
    Patch,
    PatchSpec,
    TargetKind,
    VolumeSource,
    make_targets,
    patch_seed,
    prepare_source,
    sample_batch,
    sample_patch,
)
from pipeline.data.volume import Box, as_stack, iter_blocks, read_box

__all__ = [
    "Augmentation",
    "Batch",
    "Box",
    "Dropout",
    "ForegroundIndex",
    "IntensityRange",
    "Patch",
    "PatchDataset",
    "PatchSpec",
    "TargetKind",
    "VolumeSource",
    "add_gaussian_noise",
    "adjust_intensity",
    "as_stack",
    "augment_patch",
    "flip_transpose",
    "foreground_index",
    "intensity_range",
    "iter_blocks",
    "make_loader",
    "make_targets",
    "normalize_intensity",
    "patch_seed",
    "prepare_source",
    "read_box",
    "sample_batch",
    "sample_foreground_voxel",
    "sample_patch",
    "signal_dropout",
]
