"""Multiscale pyramids of images and label images: which levels to make, and the downsampling itself.

:func:`plan_pyramid` chooses the levels from the volume's shape, chunks and voxel size (near-isotropic
levels for anisotropic light-sheet voxels); :func:`downsample_labels` (mode) and :func:`downsample_mean`
make one level from the one above. Storing and building the levels block by block is
:mod:`pipeline.io.pyramid`.
"""

from pipeline.pyramid.downsample import downsample_labels, downsample_mean
from pipeline.pyramid.levels import MIN_LEVEL_EXTENT_VX, PyramidLevel, level_factors, plan_pyramid

__all__ = [
    "MIN_LEVEL_EXTENT_VX", "PyramidLevel", "downsample_labels", "downsample_mean", "level_factors",
    "plan_pyramid",
]
