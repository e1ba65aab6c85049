"""Affinity prediction over volumes, block by block, with the network's context."""

from pipeline.inference.predict import plan_tiles, predict_region, read_with_context

__all__ = ["plan_tiles", "predict_region", "read_with_context"]
