"""Shared fixtures. Real data is read from ../shared/data (beside the checkout) and skipped where absent."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# Tests write under the temporary directory (pytest's tmp_path): make it the output root, the way a
# deployment sets NEURORECON__OUTPUT__ROOT (outputs outside the root are refused).
os.environ.setdefault("NEURORECON__OUTPUT__ROOT", tempfile.gettempdir())

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("NEURORECON_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The ../shared/data folder; tests that use it are skipped with a clear message where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (set NEURORECON_SHARED_DATA to its location)")
    return SHARED_DATA


def shared_file(relative: str) -> Path:
    """Path of a file in ../shared/data, or skip the calling test with a message naming it."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"real data file {path} is absent (set NEURORECON_SHARED_DATA to the data folder)")
    return path


@pytest.fixture(scope="session")
def s3_endpoint():
    """A local S3-compatible server (moto's ThreadedMotoServer on a free port, as s3fs's own tests use):
    its endpoint URL. Skipped with a clear message where moto is not installed."""
    import logging

    server_module = pytest.importorskip(
        "moto.server", reason="moto is not installed: pip install 'moto[server]' to test s3:// inputs")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(s3_endpoint, monkeypatch):
    """s3fs on the local S3 server, configured as a user would: ``AWS_ENDPOINT_URL`` and credentials in the
    environment (subprocesses and Dask workers inherit it), ``~/.aws`` out of the way."""
    s3fs = pytest.importorskip("s3fs")
    for name, value in {"AWS_ENDPOINT_URL": s3_endpoint, "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                        "AWS_SHARED_CREDENTIALS_FILE": os.devnull, "AWS_CONFIG_FILE": os.devnull,
                        "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "FSSPEC_S3_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    s3fs.S3FileSystem.clear_instance_cache()  # instances made under another environment
    yield s3fs.S3FileSystem()
    s3fs.S3FileSystem.clear_instance_cache()


def upload(fs, local: Path, bucket: str, key: str) -> str:
    """Copy the local store ``local`` to ``s3://bucket/key`` (the bucket is created if missing); its URL."""
    if not fs.exists(bucket):
        fs.mkdir(bucket)
    fs.put(str(local), f"{bucket}/{key}", recursive=True)
    fs.invalidate_cache()
    return f"s3://{bucket}/{key}"
