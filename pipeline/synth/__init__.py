"""Procedural light-sheet phantoms: neurons, axon initial segments, PSF, noise and signal dropout.

Two volume kinds: ``neurons`` (a sparse cytosolic fill, one label per neuron) and ``ais`` (an AIS
immunostain, one label per AIS); see :mod:`pipeline.synth.phantom`.

Generate the geometry once (:func:`generate_phantom`), then render any (z, y, x) region of it
(:func:`render_region`); block-wise rendering is bit-identical to whole-volume rendering. Writing
to OME-Zarr with ground-truth SWC skeletons and length tables is :func:`pipeline.io.phantom.write_phantom`.
"""

from pipeline.synth.dropout import DropoutGap, place_gaps, split_at_gaps
from pipeline.synth.geometry import SkeletonLengths, crop_graph, skeleton_lengths, unbranched_paths
from pipeline.synth.growth import persistent_walk
from pipeline.synth.neurons import AISSpan, Soma
from pipeline.synth.optics import NOISE_TILE
from pipeline.synth.params import AISParams, DropoutParams, ImagingParams, NeuronParams, PhantomParams
from pipeline.synth.phantom import (
    AIS_COLUMNS,
    LENGTHS_COLUMNS,
    OBJECT_KINDS,
    AISRow,
    ObjectLengths,
    Phantom,
    PhantomObject,
    ais_table,
    build_phantom,
    densest_centre_um,
    generate_phantom,
    lengths_table,
    make_puncta,
    swc_objects,
)
from pipeline.synth.render import RenderedRegion, border_labels, iter_regions, render_region, render_volume

__all__ = [
    "AIS_COLUMNS",
    "AISParams",
    "AISRow",
    "AISSpan",
    "DropoutGap",
    "DropoutParams",
    "ImagingParams",
    "LENGTHS_COLUMNS",
    "NOISE_TILE",
    "NeuronParams",
    "OBJECT_KINDS",
    "ObjectLengths",
    "Phantom",
    "PhantomObject",
    "PhantomParams",
    "RenderedRegion",
    "SkeletonLengths",
    "Soma",
    "ais_table",
    "border_labels",
    "build_phantom",
    "crop_graph",
    "densest_centre_um",
    "generate_phantom",
    "iter_regions",
    "lengths_table",
    "make_puncta",
    "persistent_walk",
    "place_gaps",
    "render_region",
    "render_volume",
    "skeleton_lengths",
    "split_at_gaps",
    "swc_objects",
    "unbranched_paths",
]
