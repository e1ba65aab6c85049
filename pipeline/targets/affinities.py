"""Nearest-neighbour affinities from instance labels, in the waterz convention.

For a (z, y, x) label volume, channel ``d`` (0 = z, 1 = y, 2 = x) of the affinity array at voxel ``p``
describes the edge between ``p`` and ``p - e_d``: ``aff[0, z, y, x]`` links (z, y, x) with (z-1, y, x).
An edge is 1 iff both voxels belong to the same non-zero object. Edges leaving the volume (the first
plane of each channel) have no partner: their value is 0 and their mask is 0.

A mask of labelled voxels (``labelled``, e.g. False where nobody annotated) propagates to the edges: an
edge is masked out unless both of its voxels are labelled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline._checks import check_array, check_same_shape

__all__ = ["AffinityTargets", "affinities_from_labels"]


@dataclass(frozen=True)
class AffinityTargets:
    """Affinity targets and their loss mask.

    Attributes
    ----------
    affinities : numpy.ndarray
        (3, Z, Y, X) float32 (or (2, Y, X) for 2-D labels) in {0, 1}.
    mask : numpy.ndarray
        Same shape, float32 in {0, 1}: 1 where the edge is inside the volume and both voxels labelled.
    """

    affinities: np.ndarray
    mask: np.ndarray


def affinities_from_labels(labels: np.ndarray, *, labelled: np.ndarray | None = None) -> AffinityTargets:
    """Nearest-neighbour affinities of an instance label volume.

    Parameters
    ----------
    labels : numpy.ndarray
        (Z, Y, X) or (Y, X) integer instance labels, 0 = background.
    labelled : numpy.ndarray of bool, optional
        Same shape; False where the labels are unknown. Defaults to everywhere known.

    Returns
    -------
    AffinityTargets
        ``affinities`` and ``mask``, each (ndim, *labels.shape) float32.

    Examples
    --------
    >>> t = affinities_from_labels(np.array([[1, 1, 0, 2]]))
    >>> t.affinities[1].tolist()  # x edges: (1,1) same object, (1,0) and (0,2) not
    [[0.0, 1.0, 0.0, 0.0]]
    >>> t.mask[1].tolist()        # the first x edge leaves the volume
    [[0.0, 1.0, 1.0, 1.0]]
    """
    labels = check_array(labels, "labels", ndim=(2, 3), kinds="biu")
    known = None
    if labelled is not None:
        known = check_array(labelled, "labelled", ndim=labels.ndim, kinds="biu").astype(bool)
        check_same_shape(labels, "labels", known, "labelled")
    ndim = labels.ndim
    aff = np.zeros((ndim, *labels.shape), np.float32)
    mask = np.zeros((ndim, *labels.shape), np.float32)
    for d in range(ndim):
        here = [slice(None)] * ndim
        prev = [slice(None)] * ndim
        here[d], prev[d] = slice(1, None), slice(None, -1)
        a, b = labels[tuple(here)], labels[tuple(prev)]
        aff[(d, *here)] = (a == b) & (a != 0)
        if known is None:
            mask[(d, *here)] = 1.0
        else:
            mask[(d, *here)] = known[tuple(here)] & known[tuple(prev)]
    return AffinityTargets(aff, mask)
