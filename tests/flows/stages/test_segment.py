"""The Zarr/Dask segmentation path: equals the in-memory algorithm, resumes bit-identically, reports
failures."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import random

import numpy as np
import pytest
import zarr

from flows.stages.runner import dask_client, run_blocks
from flows.stages.segment import segment_run, segment_volume
from pipeline.blocks import block_grid
from pipeline.config import DaskConfig
from pipeline.errors import BlockFailure, OutputError
from pipeline.io.blockstate import BlockState
from pipeline.io.layout import RunLayout
from pipeline.io.omezarr import open_image, read_provenance, write_image
from pipeline.segment import segment_blockwise
from pipeline.segment.config import SegmentConfig
from tests.pipeline.segment.test_segment import noisy_affinities, tube_labels

SHAPE = (16, 32, 32)
BLOCK = (8, 16, 16)


@pytest.fixture(scope="module")
def volume(tmp_path_factory):
    root = tmp_path_factory.mktemp("seg")
    labels = tube_labels(SHAPE, 6, seed=21)
    aff = noisy_affinities(labels, seed=22, noise=0.1)
    quantized = np.round(aff * 255).astype(np.uint8)
    write_image(root / "aff.zarr", quantized, voxel_size_um=(1.5, 0.5, 0.5), chunks=(8, 8, 8),
                name="affinities")
    expected = segment_blockwise(quantized.astype(np.float32) / np.float32(255), block_shape=BLOCK,
                                 threshold=0.5)
    return root, expected


def run(root, name, **kwargs):
    """Segment the module's affinities into <root>/<name>_{fragments,segmentation}.zarr."""
    args = {"block_shape": BLOCK, "halo_vx": (4, 16, 16), "threshold": 0.5, "background_threshold": 0.5,
            "max_threshold": 1.0, "max_retries": 2, "progress": False,
            "state_dir": root / f"{name}_state"} | kwargs
    return segment_volume(root / "aff.zarr", fragments_out=root / f"{name}_fragments.zarr",
                          segmentation_out=root / f"{name}_segmentation.zarr", **args)


def segmentation(root, name):
    return open_image(root / f"{name}_segmentation.zarr").array[...]


def test_serial_zarr_path_equals_in_memory_algorithm(volume):
    root, expected = volume
    out = run(root, "serial")
    np.testing.assert_array_equal(open_image(out).array[...], expected)
    meta = dict(zarr.open_group(str(out), mode="r").attrs)["ome"]
    assert meta["image-label"]["source"]["image"].endswith("aff.zarr")
    assert open_image(out).voxel_size_um == (1.5, 0.5, 0.5)


def test_dask_run_equals_serial_and_resumes_bit_identically(volume):
    root, expected = volume
    state = root / "dask_state"
    with dask_client(DaskConfig(n_workers=2, memory_limit="2GiB")) as client:
        run(root, "dask", client=client)
        first = segmentation(root, "dask")
        np.testing.assert_array_equal(first, expected)
        # Forget half of the finished blocks of every stage, then rerun: same bits.
        rng = random.Random(0)
        for stage in ("blocks", "faces", "relabel"):
            st = BlockState(state, stage)
            ids = sorted(st.done_ids())
            for bid in rng.sample(ids, len(ids) // 2):
                st.forget(bid)
        run(root, "dask", client=client)
    np.testing.assert_array_equal(segmentation(root, "dask"), first)


def test_rerun_with_other_parameters_is_refused_and_changes_nothing(volume):
    root, expected = volume
    run(root, "params")
    for kwargs, what in [({"block_shape": (16, 16, 16)}, "block_shape"),
                         ({"background_threshold": 0.4}, "background_threshold"),
                         ({"max_threshold": 0.9}, "max_threshold")]:
        with pytest.raises(OutputError, match=f"other parameters .*{what}"):
            run(root, "params", **kwargs)
    with pytest.raises(ValueError, match=r"threshold must be in \[0, 1\].*got 1.5"):
        run(root, "params", sweep={1.5: root / "params_t1.5.zarr"})
    with pytest.raises(ValueError, match=r"threshold must be in \[0, 0.6\].*max_threshold.*got 0.7"):
        run(root, "params", max_threshold=0.6, sweep={0.7: root / "params_t0.7.zarr"})
    with pytest.raises(ValueError, match=r"segment.threshold 0.8 is above segment.max_threshold 0.6"):
        SegmentConfig(raw=root / "raw.zarr", out=root / "run", threshold=0.8, max_threshold=0.6)
    np.testing.assert_array_equal(segmentation(root, "params"), expected)


def test_a_new_segment_threshold_resets_the_skeletons_derived_from_segmentation_zarr(volume):
    """``neurorecon run`` with a new segment.threshold: segmentation.zarr is relabelled, so the skeletons'
    block state must not be resumed (the same sweep or threshold keeps it)."""
    root, _ = volume
    cfg = SegmentConfig(raw=root / "raw.zarr", out=root / "run", block_shape=BLOCK, halo_vx=(4, 16, 16))
    skeleton_state = RunLayout(cfg.out).skeletonize_state
    segment_run(cfg, root / "aff.zarr", max_retries=0, progress=False)
    for stage in skeleton_state:
        stage.mkdir(parents=True)
    segment_run(cfg, root / "aff.zarr", max_retries=0, progress=False, thresholds=[0.3])
    assert all(stage.is_dir() for stage in skeleton_state)  # segmentation.zarr unchanged
    segment_run(cfg.model_copy(update={"threshold": 0.3}), root / "aff.zarr", max_retries=0, progress=False)
    assert not any(stage.exists() for stage in skeleton_state)
    np.testing.assert_array_equal(open_image(RunLayout(cfg.out).segmentation).array[...],
                                  open_image(RunLayout(cfg.out).segmentation_at(0.3)).array[...])


def _files(*folders):
    """Every file under ``folders`` and its modification time (ns)."""
    return {p: p.stat().st_mtime_ns for folder in folders for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_sweep_equals_fresh_runs_and_a_new_threshold_redoes_only_union_and_relabel(volume):
    """Issue 19: one watershed, a segmentation per threshold, each bit-identical (ids included) to a fresh run
    at that threshold; a rerun with a new threshold touches neither the fragments nor the region graph."""
    root, expected = volume
    sweep = {0.3: root / "sweep_t0.3.zarr", 0.7: root / "sweep_t0.7.zarr"}
    run(root, "sweep", sweep=sweep)
    np.testing.assert_array_equal(segmentation(root, "sweep"), expected)
    fresh = {}
    for t, out in sweep.items():
        run(root, f"fresh{t}", threshold=t)
        fresh[t] = segmentation(root, f"fresh{t}")
        np.testing.assert_array_equal(open_image(out).array[...], fresh[t])
        made = read_provenance(out)
        assert {k: made[k] for k in ("threshold", "n_segments")} == {
            "threshold": t, "n_segments": int(fresh[t].max())}
    counts = [int(fresh[0.3].max()), int(expected.max()), int(fresh[0.7].max())]
    assert counts[0] > counts[1] > counts[2] >= 1, counts  # the thresholds do differ
    state = root / "sweep_state"
    assert sorted(p.name for p in state.iterdir()) == [
        "blocks", "faces", "relabel", "relabel_t0.3", "relabel_t0.7", "union_t0.3", "union_t0.5",
        "union_t0.7",
    ]

    # A rerun at a new segment threshold (0.7 for segmentation_out) and a new sweep threshold (0.6)
    untouched = _files(state / "blocks", state / "faces", root / "sweep_fragments.zarr")
    reused = _files(state / "union_t0.7", state / "relabel_t0.3")
    run(root, "sweep", threshold=0.7, sweep={0.3: sweep[0.3], 0.6: root / "sweep_t0.6.zarr"})
    assert _files(state / "blocks", state / "faces", root / "sweep_fragments.zarr") == untouched
    assert _files(state / "union_t0.7", state / "relabel_t0.3") == reused
    np.testing.assert_array_equal(segmentation(root, "sweep"), fresh[0.7])
    assert read_provenance(root / "sweep_segmentation.zarr")["threshold"] == 0.7  # as the user wrote it
    run(root, "fresh0.6", threshold=0.6)
    np.testing.assert_array_equal(open_image(root / "sweep_t0.6.zarr").array[...],
                                  segmentation(root, "fresh0.6"))
    # each threshold's relabel resumes on its own: forget blocks of one, the others are left alone
    BlockState(state, "relabel_t0.6").forget(0)
    before = _files(state / "relabel", state / "relabel_t0.3")
    run(root, "sweep", threshold=0.7, sweep={0.3: sweep[0.3], 0.6: root / "sweep_t0.6.zarr"})
    assert _files(state / "relabel", state / "relabel_t0.3") == before
    assert BlockState(state, "relabel_t0.6").is_done(0)
    # a watershed block redone: every threshold's table is of an older region graph, and goes
    BlockState(state, "blocks").forget(3)
    run(root, "sweep", threshold=0.7)
    assert sorted(p.name for p in state.iterdir()) == ["blocks", "faces", "relabel", "union_t0.7"]
    np.testing.assert_array_equal(segmentation(root, "sweep"), fresh[0.7])


def _flaky(block, *, bad):
    if block.id in bad:
        raise RuntimeError(f"disk on fire in block {block.id}")
    return {"ok": True}


def test_failed_blocks_are_reported_by_id_and_done_ones_kept(tmp_path):
    blocks = block_grid((4, 4, 4), block_shape=(2, 2, 2))
    state = BlockState(tmp_path, "stage")
    report = run_blocks("stage", blocks, functools.partial(_flaky, bad={1, 5}), state=state, max_retries=1,
                        progress=False)
    assert sorted(report.failed) == [1, 5] and report.done == 6
    with pytest.raises(BlockFailure, match=r"2 of 8 blocks failed.*\[1, 5\].*disk on fire"):
        report.raise_if_failed()
    assert state.done_ids() == {0, 2, 3, 4, 6, 7}
    again = run_blocks("stage", blocks, functools.partial(_flaky, bad=set()), state=state, max_retries=2,
                       progress=False)
    assert again.skipped == 6 and again.done == 2 and again.ok


def _counted(block, *, log, error):
    """Append the block id to ``log`` (one line per attempt), then fail with ``error``."""
    with open(log, "a") as fh:
        fh.write(f"{block.id}\n")
    raise error


@pytest.mark.parametrize("where", ["serial", "dask"])
def test_only_errors_worth_retrying_are_retried(tmp_path, where):
    """I/O and memory errors are tried 1 + max_retries times; bad input or a bug fails at once (issue 17:
    Dask retried every error, so bad input cost max_retries + 1 attempts per block)."""
    blocks = block_grid((2, 2, 4), block_shape=(2, 2, 2))
    cases = {"io": OSError("NFS hiccup"), "memory": MemoryError(), "input": ValueError("bad voxel size"),
             "bug": KeyError("x")}
    with contextlib.ExitStack() as stack:
        client = None
        if where == "dask":
            client = stack.enter_context(dask_client(DaskConfig(n_workers=1, memory_limit="1GiB")))
        for name, error in cases.items():
            log = tmp_path / f"{where}-{name}.log"
            report = run_blocks(name, blocks, functools.partial(_counted, log=str(log), error=error),
                                state=BlockState(tmp_path / where, name), client=client, max_retries=2,
                                progress=False)
            attempts = sorted(int(x) for x in log.read_text().split())
            expected = 3 if name in ("io", "memory") else 1
            assert attempts == [0] * expected + [1] * expected, (name, attempts)
            assert sorted(report.failed) == [0, 1]
            assert type(error).__name__ in report.failed[0]


@pytest.mark.slow
def test_on_a_phantom_only_block_shape_changed_changes_no_bit(tmp_path):
    """Issue 18: at default settings the block-wise result must not depend on ``segment.block_shape``
    (it did: the inference tile followed the block, and segment ids followed the block grid)."""
    from flows.preflight import check_run
    from flows.stages.segment import segment_raw
    from pipeline.config import NeuroreconConfig, OutputConfig
    from pipeline.io.phantom import write_phantom
    from pipeline.segment.config import SegmentConfig
    from pipeline.synth import PhantomParams

    raw = tmp_path / "phantom.zarr"
    write_phantom(raw, PhantomParams(shape=(32, 64, 128), chunks=(16, 32, 32), seed=3), progress=False)
    outs = []
    for block in [(16, 32, 64), (32, 64, 128)]:
        cfg = NeuroreconConfig(segment=SegmentConfig(raw=raw, out=tmp_path / "x".join(map(str, block)),
                                                     block_shape=block, halo_vx=(4, 16, 16)),
                               output=OutputConfig(root=tmp_path))
        done = segment_raw(cfg.segment, inputs=check_run(cfg, evaluate=False), max_retries=0, progress=False)
        outs.append([open_image(p).array[...] for p in (done.affinities, done.segmentation)])
    (aff_a, seg_a), (aff_b, seg_b) = outs
    np.testing.assert_array_equal(aff_a, aff_b)
    assert seg_a.max() >= 3
    np.testing.assert_array_equal(seg_a, seg_b)


def test_label_images_lie_beside_their_raw_with_provenance_and_a_pyramid(tmp_path):
    """source.image is relative and resolves to the raw image; the model, thresholds and version are named;
    the lower levels are the mode of level 0 and are made again when level 0 is rewritten."""
    from ome_zarr_models.v05.image_label import ImageLabel

    from pipeline import __version__
    from pipeline.pyramid import downsample_labels

    shape = (8, 128, 64)
    labels = tube_labels(shape, 4, seed=5)
    aff = np.round(noisy_affinities(labels, seed=6, noise=0.05) * 255).astype(np.uint8)
    inputs, out = tmp_path / "inputs", tmp_path / "run"
    write_image(inputs / "raw.zarr", labels.astype(np.uint16), voxel_size_um=(1.5, 0.5, 0.5),
                chunks=(8, 32, 32))
    write_image(out / "affinities.zarr", aff, voxel_size_um=(1.5, 0.5, 0.5), chunks=(8, 32, 32))
    (inputs / "model.pt").write_bytes(b"weights")
    kwargs = dict(fragments_out=out / "fragments.zarr", segmentation_out=out / "segmentation.zarr",
                  state_dir=out / "state", block_shape=(8, 64, 64), halo_vx=(4, 16, 16), threshold=0.5,
                  background_threshold=0.5, max_threshold=1.0, max_retries=0, progress=False,
                  raw=inputs / "raw.zarr",
                  model=inputs / "model.pt")
    seg = segment_volume(out / "affinities.zarr", **kwargs)
    group = zarr.open_group(str(seg), mode="r")
    meta = ImageLabel.from_zarr(group).attributes.ome
    assert meta.image_label.source.image == "../../inputs/raw.zarr"
    assert (seg / meta.image_label.source.image).resolve() == (inputs / "raw.zarr").resolve()
    made = dict(group.attrs)["neurorecon"]
    assert made["threshold"] == 0.5 and made["version"] == __version__
    assert made["affinities"] == "../affinities.zarr"
    assert made["model"] == {"path": str((inputs / "model.pt").resolve()),
                             "sha256": hashlib.sha256(b"weights").hexdigest()}
    assert [d.path for d in meta.multiscales[0].datasets] == ["0", "1"]
    level0 = group["0"][...]
    np.testing.assert_array_equal(group["1"][...], downsample_labels(level0, (1, 2, 2)))
    frag = zarr.open_group(str(out / "fragments.zarr"), mode="r")
    np.testing.assert_array_equal(frag["1"][...], downsample_labels(frag["0"][...], (1, 2, 2)))
    # a redone watershed block recomputes the union: relabel and the pyramid are redone
    zarr.open_group(str(seg), mode="r+")["1"][...] = 0
    BlockState(out / "state", "blocks").forget(0)
    segment_volume(out / "affinities.zarr", **kwargs)
    np.testing.assert_array_equal(group["1"][...], downsample_labels(level0, (1, 2, 2)))
