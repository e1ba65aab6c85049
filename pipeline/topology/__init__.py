"""Topology of segmentations: the critical components of the supervoxel loss.

Pure compute on arrays: no I/O, no torch. Axis order is (y, x) in 2-D and (z, y, x) in 3-D.
"""

from pipeline.topology.critical import CriticalComponents, critical_components

__all__ = ["CriticalComponents", "critical_components"]
