"""skeletonize.sharded_precomputed: neuroglancer sharded skeleton files (a file per 2,048 labels) holding the
same skeletons as the per-object files, in the format neuroglancer's specification defines (read here by
hand, and by tensorstore)."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from osteoid import Skeleton

import flows.stages.skeletonize as stage
from pipeline.io.omezarr import create_label_image, open_image
from pipeline.io.skeletons import (
    PRECOMPUTED_INFO,
    precomputed_sharding,
    read_lengths_csv,
    read_precomputed_skeletons,
    shard_file,
)
from pipeline.skeleton.config import SkeletonizeConfig

VS = (1.5, 0.5, 0.5)
LABELS = (3, 5, 2050, 2100, 9000)  # shards 0, 1, 1, 4 and 0 (9000 >> 11 = 4)


@pytest.fixture(scope="module")
def labels(tmp_path_factory):
    """Rods along x and y with labels spread over three shards, and a one-voxel speck (no skeleton)."""
    seg = np.zeros((8, 48, 96), np.uint32)
    seg[3:5, 10:13, 5:40] = 3
    seg[3:5, 10:13, 49:90] = 5
    seg[3:5, 20:23, 5:40] = 2050
    seg[3:5, 30:46, 70:73] = 2100
    seg[2, 40, 10] = 9000
    path = tmp_path_factory.mktemp("seg") / "segmentation.zarr"
    create_label_image(path, shape=seg.shape, chunks=(8, 24, 48), voxel_size_um=VS, dtype="uint32")
    open_image(path, mode="r+").array[...] = seg
    return path


def run(path, out, *, sharded: bool, **kwargs):
    settings = SkeletonizeConfig(block_shape=(8, 24, 48), sharded_precomputed=sharded,
                                 dust_threshold_um3=0.1)
    return stage.skeletonize_volume(path, out=out, settings=settings, max_retries=0, progress=False,
                                    **kwargs)


def _files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _read_shard_by_hand(path, spec) -> dict[int, bytes]:
    """The neuroglancer_uint64_sharded_v1 format, as its specification states it: a shard index of
    2**minishard_bits [start, end) uint64le offsets (from the end of the index) of the minishard indices;
    each (gzip) a 3 x n uint64le array of delta-coded ids, delta-coded data offsets (each from the end of
    the previous chunk, the first from the end of the index) and sizes; the chunks gzip-encoded."""
    data = path.read_bytes()
    n_minishards = 1 << spec["minishard_bits"]
    index = np.frombuffer(data[:16 * n_minishards], "<u8").reshape(-1, 2)
    base = 16 * n_minishards
    chunks = {}
    for start, end in index.tolist():
        if start == end:
            continue
        table = np.frombuffer(gzip.decompress(data[base + start:base + end]), "<u8").reshape(3, -1)
        ids = np.cumsum(table[0])
        position = 0
        for chunk_id, delta, size in zip(ids.tolist(), table[1].tolist(), table[2].tolist(), strict=True):
            position += delta
            chunks[chunk_id] = gzip.decompress(data[base + position:base + position + size])
            position += size
    return chunks


def _geometry(graph):
    nodes = sorted(tuple(round(c, 3) for c in d["pos_um"]) for _, d in graph.nodes(data=True))
    return nodes, graph.number_of_edges()


def test_sharded_files_hold_the_skeletons_of_the_per_object_files(labels, tmp_path):
    plain = run(labels, tmp_path / "plain", sharded=False)
    sharded = run(labels, tmp_path / "sharded", sharded=True)
    assert sharded.n_objects == plain.n_objects == len(LABELS) and sharded.n_skeletons == 4
    assert read_lengths_csv(sharded.lengths_csv) == read_lengths_csv(plain.lengths_csv)
    folder = tmp_path / "sharded" / "skeletons_precomputed"
    info = json.loads((folder / "info").read_text())
    spec = precomputed_sharding(9000)
    assert info == {**PRECOMPUTED_INFO, "segment_properties": "segment_properties", "sharding": spec}
    assert spec["shard_bits"] == 3
    assert sorted(_files(folder)) == ["0.shard", "1.shard", "4.shard", "info", "segment_properties/info"]
    assert (folder / "segment_properties" / "info").read_bytes() == (
        tmp_path / "plain" / "skeletons_precomputed" / "segment_properties" / "info").read_bytes()

    a = read_precomputed_skeletons(tmp_path / "plain" / "skeletons_precomputed")
    b = read_precomputed_skeletons(folder)
    assert sorted(a) == sorted(b) == [3, 5, 2050, 2100]  # 9000 has an empty skeleton in both
    for label in a:
        assert _geometry(a[label]) == _geometry(b[label])

    # the files follow the specification: read by hand, they hold every object of their shard
    by_hand = {}
    for shard in (0, 1, 4):
        assert shard_file(folder, shard, spec).name == f"{shard}.shard"
        by_hand.update({label: (shard, chunk) for label, chunk in
                        _read_shard_by_hand(folder / f"{shard}.shard", spec).items()})
    assert {label: shard for label, (shard, _) in by_hand.items()} == {3: 0, 5: 0, 2050: 1, 2100: 1, 9000: 4}
    for label, (_, chunk) in by_hand.items():
        skeleton = Skeleton.from_precomputed(chunk, segid=label,
                                             vertex_attributes=PRECOMPUTED_INFO["vertex_attributes"])
        if label in a:
            assert len(skeleton.vertices) == a[label].number_of_nodes()
        else:
            assert len(skeleton.vertices) == 0


def test_a_rerun_changes_nothing_and_switching_format_rewrites_the_folder(labels, tmp_path):
    out = tmp_path / "run"
    run(labels, out, sharded=True)
    before = _files(out / "skeletons_precomputed")
    run(labels, out, sharded=True, replace_files=True)
    assert _files(out / "skeletons_precomputed") == before
    (out / "skeletons_precomputed" / "1.shard").unlink()  # lost: the folder is written anew
    run(labels, out, sharded=True, replace_files=True)
    assert _files(out / "skeletons_precomputed") == before
    run(labels, out, sharded=False, replace_files=True)
    assert sorted(_files(out / "skeletons_precomputed")) == sorted(
        ["info", "segment_properties/info", *map(str, LABELS)])
    assert json.loads((out / "skeletonize.json").read_text())["sharded_precomputed"] is False
