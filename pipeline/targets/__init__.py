"""Training targets derived from instance labels: nearest-neighbour affinities (waterz convention)."""

from pipeline.targets.affinities import AffinityTargets, affinities_from_labels

__all__ = ["AffinityTargets", "affinities_from_labels"]
