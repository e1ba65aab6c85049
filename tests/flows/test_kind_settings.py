"""Settings per kind of volume: an AIS stain's pieces are joined across short gaps, neurons' are not.

The demo and the shipped AIS run config use :data:`pipeline.skeleton.config.AIS_JOIN` (that the joins
leave an exact AIS reconstruction alone is in ``tests/flows/stages/test_skeletonize_join.py``)."""

from __future__ import annotations

from pathlib import Path

from flows.reconstruct import demo_config
from pipeline.io.config import load_config
from pipeline.skeleton.config import AIS_JOIN, JoinConfig, SkeletonizeConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_the_demo_and_the_ais_config_join_ais_pieces_only(tmp_path):
    assert demo_config(tmp_path, "ais").skeletonize.join == AIS_JOIN and AIS_JOIN.enabled
    assert demo_config(tmp_path, "neurons").skeletonize.join == JoinConfig()
    assert not JoinConfig().enabled
    ais = load_config(CONFIGS / "segment_phantom_ais.yaml")
    assert ais.skeletonize.join == AIS_JOIN and ais.segment.model == "ais"
    assert ais.skeletonize.dust_threshold_um3 == SkeletonizeConfig().dust_threshold_um3
    assert not load_config(CONFIGS / "segment_phantom.yaml").skeletonize.join.enabled
