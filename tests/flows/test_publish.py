"""`neurorecon publish`: a finished run's products copied to a local S3 server (moto) read exactly like the
run, through zarr's stores; a rerun copies nothing, a changed run only what changed; bad targets and
unfinished runs are one clear error each."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr

from flows.stages.skeletonize import skeletonize_volume
from pipeline.errors import InputDataError, OutputError
from pipeline.io.layout import RunLayout
from pipeline.io.omezarr import create_label_image, open_image, write_provenance
from pipeline.io.publish import PUBLISHED, publish_run
from pipeline.skeleton.config import SkeletonizeConfig
from tests.flows.test_cli import run_cli

VS = (1.5, 0.5, 0.5)
SHAPE = (12, 48, 96)


@pytest.fixture
def run(tmp_path) -> RunLayout:
    """A finished run directory: segmentation (3 objects, 4 chunks), fragments, skeletons, lengths,
    metrics and a report; block state that must not be published."""
    layout = RunLayout(tmp_path / "run")
    labels = np.zeros(SHAPE, np.uint64)
    labels[6, 10:13, 8:88] = 3
    labels[6, 16:44, 57:63] = 7
    labels[2:5, 30:33, 10:14] = 9
    for path in (layout.segmentation, layout.fragments):
        create_label_image(path, shape=SHAPE, chunks=(12, 24, 48), voxel_size_um=VS)
        open_image(path, mode="r+").array[...] = labels
    write_provenance(layout.segmentation, {"version": "test", "threshold": 0.5, "n_segments": 3})
    skeletonize_volume(layout.segmentation, out=layout.root,
                       settings=SkeletonizeConfig(block_shape=SHAPE, dust_threshold_um3=0.0),
                       max_retries=0, progress=False)
    layout.metrics_json.write_text(json.dumps({"kind": "neurons"}))
    layout.report_html.write_text("<html>report</html>")
    return layout


def _published(fs, bucket: str) -> dict[str, bytes]:
    fs.invalidate_cache()
    return {key[len(bucket) + 1:]: fs.cat_file(key) for key in fs.find(bucket)}


def _local(run: RunLayout) -> dict[str, bytes]:
    names = ["segmentation.zarr", "fragments.zarr", "skeletons", "skeletons_precomputed", "lengths.csv",
             "skeletonize.json", "metrics.json", "report.html"]
    files = {}
    for name in names:
        path = run.root / name
        for p in [path] if path.is_file() else path.rglob("*"):
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(run.root).parts):
                files[p.relative_to(run.root).as_posix()] = p.read_bytes()
    return files


def test_a_run_is_published_readable_resumable_and_exact(run, s3):
    s3.mkdir("pub1")
    first = publish_run(run.root, "s3://pub1/runs/brain1")
    there = _published(s3, "pub1/runs/brain1")
    summary = json.loads(there.pop(PUBLISHED))
    assert there == _local(run)  # byte for byte; no block state, no temporaries
    assert not any(k.startswith("state/") for k in there)
    assert summary["files"] == first.files == len(there) and first.copied == len(there)
    # readers open it through zarr's FsspecStore, as a local copy
    seg = open_image("s3://pub1/runs/brain1/segmentation.zarr")
    np.testing.assert_array_equal(seg.array[...], open_image(run.segmentation).array[...])
    assert seg.voxel_size_um == VS

    again = publish_run(run.root, "s3://pub1/runs/brain1")  # nothing changed: nothing copied
    assert again.copied == 0 and again.removed == 0

    # the run changes (object 9 gone: its chunk is empty now, so it is deleted; its SWC goes)
    assert len(list(run.segmentation.rglob("c/0/1/0"))) == 1  # the chunk of object 9 alone
    seg_rw = open_image(run.segmentation, mode="r+").array
    labels = seg_rw[...]
    labels[labels == 9] = 0
    seg_rw[...] = labels
    assert len(list(run.segmentation.rglob("c/0/1/0"))) == 0  # zarr removed the chunk that became empty
    for swc in run.skeletons.glob("9*.swc"):
        swc.unlink()
    changed = publish_run(run.root, "s3://pub1/runs/brain1")
    there = _published(s3, "pub1/runs/brain1")
    there.pop(PUBLISHED)
    assert there == _local(run)
    assert 0 < changed.copied < first.copied and changed.removed >= 1
    np.testing.assert_array_equal(open_image("s3://pub1/runs/brain1/segmentation.zarr").array[...], labels)


def test_unfinished_runs_and_unwritable_targets_are_refused(run, s3, tmp_path):
    with pytest.raises(OutputError, match=r"https://host/x cannot be written: https:// is read-only"):
        publish_run(run.root, "https://host/x")
    with pytest.raises(OutputError, match=r"is not a URL: publish to s3://"):
        publish_run(run.root, str(tmp_path / "copy"))
    with pytest.raises(OutputError, match=r"no-such-bucket/x cannot be written: .*bucket does not exist"):
        publish_run(run.root, "s3://no-such-bucket/x")
    run.failed_blocks.write_text("{}")
    with pytest.raises(InputDataError, match=r"records failed blocks"):
        publish_run(run.root, "s3://lab/x")
    run.failed_blocks.unlink()
    write_provenance(run.segmentation, None)  # being rewritten: no n_segments
    with pytest.raises(InputDataError, match=r"has no finished segmentation\.zarr"):
        publish_run(run.root, "s3://lab/x")
    run.report_html.unlink()  # a run of an older version records nothing: finished once it has its report
    group = zarr.open_group(str(run.segmentation), mode="r+")
    group.attrs.pop("neurorecon")
    with pytest.raises(InputDataError, match=r"has no finished segmentation\.zarr"):
        publish_run(run.root, "s3://lab/x")
    run.report_html.write_text("<html>report</html>")
    s3.mkdir("pub2")
    assert publish_run(run.root, "s3://pub2/old").files > 0


def test_publish_command(run, s3):
    s3.mkdir("pub3")
    out = run_cli("publish", str(run.root), "s3://pub3/brain2")
    assert out.returncode == 0, out.stderr
    assert "s3://pub3/brain2" in out.stdout and "files" in out.stdout
    assert (s3.cat_file("pub3/brain2/report.html")) == run.report_html.read_bytes()
    bad = run_cli("publish", str(run.root), "https://example.org/x")
    assert bad.returncode == 2 and bad.stderr.count("error:") == 1 and "read-only" in bad.stderr
