"""Affinities to segmentation: one waterz call per block, merge decisions by ownership, global union."""

from pipeline.segment.agglomerate import union_lut
from pipeline.segment.blockwise import segment_blockwise
from pipeline.segment.fragments import waterz_segment

__all__ = ["segment_blockwise", "union_lut", "waterz_segment"]
