"""Refused early, and a full disk reported as such (issue 18).

The real ``neurorecon`` entry point, in this process where it refuses before any cluster starts (the
fixtures and helpers of ``test_bad_input.py``: a phantom and a finished run per case, hashed before and
after), in a subprocess where a second process or a real full file system is needed.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.errors import BlockFailure, DiskFullError, OutputError
from pipeline.io.diskspace import disk_space, is_disk_full, reserved_space, write_error
from tests.flows.test_bad_input import _run_cli, _segment_config, _snapshot, base, case_dir  # noqa: F401

REPO = Path(__file__).resolve().parents[2]


def _refused(argv, env, monkeypatch, capsys, case_dir, pattern):  # noqa: F811 - fixture name
    before = _snapshot(case_dir)
    code, err = _run_cli(argv, env, monkeypatch, capsys)
    assert code == 2, err
    assert len(re.findall(r"(?:^|[\r\n])error: ", err)) == 1 and "Traceback" not in err, err
    assert re.search(pattern, err, re.S), f"{pattern!r} not in:\n{err}"
    after = _snapshot(case_dir)  # new files (a lock) may appear; none that existed may change
    assert [k for k, v in before.items() if after.get(k) != v] == []
    return err


def test_a_memory_limit_dask_cannot_read_is_refused(case_dir, monkeypatch, capsys):  # noqa: F811
    cfg = _segment_config(case_dir)
    _refused(["segment", str(cfg)], {"NEURORECON__DASK__MEMORY_LIMIT": "lots"}, monkeypatch, capsys, case_dir,
             r"dask\.memory_limit.*must be a size such as '4GiB'.*'lots'")


def test_an_unreachable_cluster_is_refused_within_seconds(case_dir, monkeypatch, capsys):  # noqa: F811
    cfg = _segment_config(case_dir)
    start = time.monotonic()
    _refused(["segment", str(cfg)], {"NEURORECON__DASK__ADDRESS": "tcp://127.0.0.1:9"}, monkeypatch, capsys,
             case_dir, r"dask\.address 'tcp://127\.0\.0\.1:9': no Dask scheduler answered within 5 s.*"
                       r"dask\.address: null")
    assert time.monotonic() - start < 30  # Dask's own timeout is 30 s, then a traceback


def test_a_prefect_home_that_is_a_file_is_refused_before_the_server_starts(case_dir, monkeypatch,  # noqa: F811
                                                                           capsys):
    cfg = _segment_config(case_dir, out=case_dir / "new_run")
    home = case_dir / "not_a_dir"
    home.write_text("")
    start = time.monotonic()
    _refused(["run", str(cfg)], {"PREFECT_HOME": str(home), "PREFECT_API_URL": "",
                                 "NEURORECON__OUTPUT__ROOT": str(case_dir)},
             monkeypatch, capsys, case_dir, r"PREFECT_HOME .*not_a_dir exists and is not a directory.*"
                                            r"set PREFECT_HOME to a writable directory")
    assert time.monotonic() - start < 60  # it used to wait 180 s for the server, then fail


def test_the_lock_is_taken_before_the_model_is_read(case_dir, monkeypatch, capsys):  # noqa: F811
    """With the output held by another process, a run whose model is broken is refused for the lock:
    the lock came first (it used to come after loading the model, 10-26 s)."""
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import time\nfrom pipeline.io.lock import output_lock\n"
         f"with output_lock({str(case_dir / 'existing_run')!r}):\n"
         "    print('locked', flush=True)\n    time.sleep(120)\n"],
        stdout=subprocess.PIPE, text=True, cwd=REPO,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        (case_dir / "broken.pt").write_bytes(b"not a checkpoint")
        cfg = _segment_config(case_dir, model=case_dir / "broken.pt")
        for command in ("segment", "run"):
            _refused([command, str(cfg)], {"NEURORECON__OUTPUT__ROOT": str(case_dir)}, monkeypatch, capsys,
                     case_dir, rf"in use by another neurorecon run \(pid {holder.pid} on ")
    finally:
        holder.kill()
        holder.wait()


# -- a full disk ------------------------------------------------------------------------------------------


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
