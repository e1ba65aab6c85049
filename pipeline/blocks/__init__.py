"""Block grids over large volumes: write regions aligned to the chunk grid, read regions with a halo."""

from pipeline.blocks.grid import Block, BlockGrid, block_grid, grid_shape

__all__ = ["Block", "BlockGrid", "block_grid", "grid_shape"]
