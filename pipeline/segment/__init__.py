"""Affinities to segmentation: one waterz call per block, merge decisions by ownership, global union.

The ``segment:`` config section is :class:`pipeline.segment.config.SegmentConfig`. Names are imported
from their submodule on first use (:mod:`pipeline.lazy`).
"""

from pipeline.lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "agglomerate": ["union_lut"],
    "blockwise": ["segment_blockwise"],
    "fragments": ["waterz_segment"],
})
