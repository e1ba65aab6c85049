"""neurorecon's library: pure compute by stage, plus ``pipeline.io`` for stores and files.

Axis order is always (z, y, x); physical sizes are in micrometres and say so in their names
(``voxel_size_um``, ``length_um``).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("neurorecon")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
