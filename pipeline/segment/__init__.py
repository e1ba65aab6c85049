"""Affinities to segmentation: waterz fragments per block, cross-block edges, global agglomeration."""

from pipeline.segment.agglomerate import agglomerate_edges
from pipeline.segment.blockwise import segment_blockwise
from pipeline.segment.fragments import watershed_fragments
from pipeline.segment.rag import EdgeTable, merge_edge_tables, rag_edges

__all__ = [
    "EdgeTable",
    "agglomerate_edges",
    "merge_edge_tables",
    "rag_edges",
    "segment_blockwise",
    "watershed_fragments",
]
