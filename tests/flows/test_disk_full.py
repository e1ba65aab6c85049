"""A full disk, reported as such (issue 18): the messages, the space kept for the failure record, and a
real ``neurorecon run`` on a small tmpfs that fills up, then completes once the disk is larger."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.errors import BlockFailure, DiskFullError, OutputError
from pipeline.io.diskspace import disk_space, is_disk_full, reserved_space, write_error

REPO = Path(__file__).resolve().parents[2]


def test_disk_full_errors_name_the_file_and_the_free_space(tmp_path):
    full = OSError(errno.ENOSPC, "No space left on device")
    err = write_error(f"cannot write SWC file {tmp_path / 'a.swc'}", full, tmp_path / "a.swc")
    assert isinstance(err, DiskFullError)
    swc = re.escape(str(tmp_path / "a.swc"))
    size = r"[0-9.]+ [KMGT]?i?B"
    assert re.fullmatch(rf"cannot write SWC file {swc}: no space left on the device \({size} free of {size} "
                        r"on /\S*\); free space there \(or raise the quota\), then rerun the same command: "
                        r"finished work is kept", str(err))
    other = write_error("cannot write x", PermissionError(errno.EACCES, "Permission denied"), tmp_path)
    assert type(other) is OutputError and str(other) == "cannot write x: [Errno 13] Permission denied"
    try:
        try:
            raise full
        except OSError as exc:
            raise RuntimeError("wrapped") from exc
    except RuntimeError as exc:
        assert is_disk_full(exc)
    assert not is_disk_full(ValueError("x")) and not is_disk_full(None)
    assert "free of" in disk_space(tmp_path / "not" / "yet")  # the nearest existing folder counts


def test_space_is_reserved_for_the_failure_record_and_released(tmp_path):
    path = tmp_path / ".reserve"
    with reserved_space(path, 64 * 1024) as release:
        assert path.stat().st_size == 64 * 1024
        release()
        assert not path.exists()
        release()  # twice is fine
    with reserved_space(path, 1024):
        assert path.exists()
    assert not path.exists()


def test_a_full_disk_is_recorded_as_an_incomplete_run(tmp_path):
    from flows.reconstruct import record_block_failure

    out = tmp_path / "run"
    out.mkdir()
    (out / "report.pdf").write_text("an earlier report")
    full = DiskFullError("cannot write SWC file s/1.swc: no space left on the device")
    page = record_block_failure(out, full)
    html = page.read_text()
    assert "Run INCOMPLETE" in html and "no space left on the device" in html
    record = json.loads((out / "failed_blocks.json").read_text())
    assert record["block_ids"] == [] and "no space left" in record["message"]
    assert not (out / "report.pdf").exists()
    # blocks that failed: listed by id, as before
    record_block_failure(out, BlockFailure("2 blocks failed", stage="predict", errors={3: "E", 1: "E"}))
    assert json.loads((out / "failed_blocks.json").read_text())["block_ids"] == [1, 3]


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 300 KiB tmpfs (root only; skipped elsewhere), unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("a full-disk test needs to mount a small tmpfs (root, `mount`)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(mount)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.slow
def test_a_run_that_fills_its_disk_exits_3_with_an_incomplete_report_and_resumes(tmp_path, small_tmpfs):
    from pipeline.io.phantom import write_phantom
    from pipeline.synth import PhantomParams

    raw = tmp_path / "phantom.zarr"
    write_phantom(raw, PhantomParams(shape=(32, 64, 128), chunks=(16, 32, 32), seed=3), progress=False)
    out = small_tmpfs / "run"
    cfg = tmp_path / "run.yaml"
    cfg.write_text(json.dumps({
        "segment": {"raw": str(raw), "out": str(out), "block_shape": [32, 64, 64]},
        "evaluate": {"gt_labels": str(raw / "labels" / "ground_truth")},
        "dask": {"n_workers": 1, "max_retries": 0}, "output": {"root": str(small_tmpfs)},
    }))
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    cmd = [str(Path(sys.executable).with_name("neurorecon")), "run", str(cfg)]
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, cwd=REPO)
    assert first.returncode == 3, first.stderr[-3000:]
    errors = re.findall(r"^error: .*$", first.stderr, re.M)
    where = re.escape(str(small_tmpfs))
    assert len(errors) == 1, first.stderr[-3000:]
    assert re.search(rf"no space left on the device \(.* free of 300\.0 KiB on {where}\)", errors[0]), errors
    assert "Traceback (most recent call last)" not in first.stderr  # Prefect's (Dask logs one line)
    assert "Run INCOMPLETE" in (out / "report.html").read_text()
    assert "no space left" in json.loads((out / "failed_blocks.json").read_text())["message"]
    assert [p.name for p in out.rglob("*") if ".tmp" in p.name or p.name == ".neurorecon.reserve"] == []
    # more space: the same command resumes and finishes
    subprocess.run(["mount", "-o", "remount,size=16m", str(small_tmpfs)], check=True)
    second = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, cwd=REPO)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "INCOMPLETE" not in (out / "report.html").read_text() and (out / "metrics.json").is_file()
    assert not (out / "failed_blocks.json").exists()
