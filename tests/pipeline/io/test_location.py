"""Inputs at URLs: the location type, config fields, and OME-Zarr images read from a local S3 server (moto)
and a local HTTPS server, with one clear error where a store cannot be read."""

from __future__ import annotations

import datetime
import functools
import http.server
import ipaddress
import socket
import ssl
import threading
from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import ConfigError, InputDataError, OutputError
from pipeline.io.config import config_from_dict
from pipeline.io.labels import image_of_labels, open_label_image
from pipeline.io.layout import RunLayout
from pipeline.io.location import URL, as_location, describe, is_url, refuse_url
from pipeline.io.omezarr import (
    CheckedReader,
    image_fingerprint,
    open_image,
    open_labels,
    write_image,
    write_labels,
)
from pipeline.io.phantom import phantom_skeletons
from pipeline.metrics.config import EvaluateConfig
from pipeline.segment.config import SegmentConfig
from tests.conftest import upload

VOXEL = (1.5, 0.5, 0.5)


# -- the location type ------------------------------------------------------------------------------------


def test_urls_and_paths_are_told_apart_and_join_children():
    url = as_location("s3://bucket/brain.zarr/")
    assert url == URL("s3://bucket/brain.zarr") and url.protocol == "s3" and url.name == "brain.zarr"
    assert str(url / "labels" / "ground_truth") == "s3://bucket/brain.zarr/labels/ground_truth"
    assert (url / "labels").parent == url and URL("s3://bucket").parent == URL("s3://bucket")
    assert as_location("HTTPS://host:8443/a/b.zarr") == URL("https://host:8443/a/b.zarr")
    assert as_location("runs/x.zarr") == Path("runs/x.zarr") and as_location("~/x.zarr") == Path("~/x.zarr")
    assert as_location("file:///data/my%20raw.zarr") == Path("/data/my raw.zarr")
    assert [is_url(v) for v in ("gs://b/k", "file:///x", "C:/data", Path("s3://b/k"))] == [True] + [False] * 3
    assert describe("s3://b/k") == "s3://b/k" and describe("rel.zarr") == str(Path("rel.zarr").resolve())
    with pytest.raises(TypeError):
        Path(url)  # a URL is never silently turned into a local directory named "s3:"
    for bad, why in [("s3:///key", "no host or bucket"), ("https://h/raw.zarr?sig=1", "no query string")]:
        with pytest.raises(ValueError, match=why):
            as_location(bad)


def test_config_fields_keep_urls_and_local_paths_as_before():
    seg = SegmentConfig(raw="s3://bucket/brain.zarr", out="runs/a")
    assert seg.raw == URL("s3://bucket/brain.zarr") and seg.out == Path("runs/a")
    assert SegmentConfig(raw="~/data/raw.zarr", out="o").raw == Path("~/data/raw.zarr")
    again = SegmentConfig.model_validate_json(seg.model_dump_json())  # Prefect parameters, overrides
    assert again == seg and seg.model_dump(mode="json")["raw"] == "s3://bucket/brain.zarr"
    assert SegmentConfig.model_validate(seg.model_dump()) == seg
    assert EvaluateConfig(gt_labels="gs://b/x.zarr/labels/gt").gt_labels == URL("gs://b/x.zarr/labels/gt")
    assert EvaluateConfig(gt_labels="x.zarr/labels/gt").gt_labels == Path("x.zarr/labels/gt")


@pytest.mark.parametrize(("section", "key", "expected"), [
    ("segment", "out", "segment.out: .*is a URL: a run directory must be local or mounted"),
    ("output", "root", "output.root: .*is a URL: a run directory must be local or mounted"),
    ("evaluate", "gt_swc", "evaluate.gt_swc: .*is a URL: this setting takes a local"),
])
def test_a_url_where_a_local_directory_must_go_is_refused_naming_the_setting(section, key, expected):
    data = {"segment": {"raw": "s3://b/raw.zarr", "out": "run"}}
    data.setdefault(section, {})[key] = "s3://b/run"
    with pytest.raises(ConfigError, match=expected):
        config_from_dict(data)
    with pytest.raises(OutputError, match=r"--out s3://b/run is a URL: a run directory must be local or mounted"):
        refuse_url(Path("s3://b/run"), what="--out")  # a command's Path option collapsed its //
    refuse_url(Path("runs/a"), what="--out")


# -- reading from S3 (moto) ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A small OME-Zarr image with a label image, on the local disk."""
    root = tmp_path_factory.mktemp("location") / "raw.zarr"
    raw = np.random.default_rng(0).integers(0, 4000, size=(8, 16, 24), dtype=np.uint16)
    write_image(root, raw, voxel_size_um=VOXEL, chunks=(4, 8, 8))
    write_labels(root, "ground_truth", (raw // 1000).astype(np.uint32))
    return root


def test_an_image_and_its_labels_read_from_s3_equal_the_local_copy(s3, store):
    url = upload(s3, store, "inputs", "volumes/raw.zarr")
    local, remote = open_image(store), open_image(url)
    assert remote.path == URL(url) and remote.voxel_size_um == VOXEL and remote.chunks == local.chunks
    np.testing.assert_array_equal(remote.reader[2:7, :, 3:20], local.array[2:7, :, 3:20])
    # a copy at a URL is the same input: a run identifies it by content, never by a relative path
    assert image_fingerprint(remote) == image_fingerprint(local)
    assert RunLayout(store.parent).identify(URL(url), lambda: "fingerprint") == "fingerprint"
    labels = open_label_image(f"{url}/labels/ground_truth", what="evaluate.gt_labels")
    np.testing.assert_array_equal(labels.array[...], open_labels(store, "ground_truth").array[...])
    assert image_of_labels(labels.path) == URL(url)
    assert phantom_skeletons(labels.path) is None  # nothing beside a remote store: evaluate.gt_swc names it
    with pytest.raises(OutputError, match="only ever read"):
        open_image(url, mode="r+")


@pytest.mark.parametrize(("url", "expected"), [
    ("s3://no-such-bucket/raw.zarr",
     r"segment.raw s3://no-such-bucket/raw.zarr cannot be read: .*bucket does not exist; check the bucket"),
    ("s3://inputs/missing.zarr",
     r"segment.raw s3://inputs/missing.zarr: no OME-Zarr image there \(s3://inputs/missing.zarr/zarr.json "
     "does not exist\\)"),
])
def test_a_missing_bucket_or_store_is_one_clear_error(s3, url, expected):
    if not s3.exists("inputs"):
        s3.mkdir("inputs")
    with pytest.raises(InputDataError, match=expected):
        open_image(url, setting="segment.raw")


def test_missing_credentials_are_named_with_the_fix(s3, store, monkeypatch):
    url = upload(s3, store, "inputs", "creds/raw.zarr")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    type(s3).clear_instance_cache()
    with pytest.raises(InputDataError, match=r"evaluate.gt_labels s3://inputs/creds/raw.zarr/.*"
                                             r"NoCredentialsError.*set AWS_ACCESS_KEY_ID"):
        open_label_image(f"{url}/labels/ground_truth", what="evaluate.gt_labels")


class _Failing:
    """An array whose every read raises ``error``."""

    shape, chunks = (4, 4, 4), (2, 2, 2)

    def __init__(self, error: Exception) -> None:
        self.error = error

    def __getitem__(self, key):
        raise self.error


def test_a_network_failure_in_a_block_is_an_io_error_worth_retrying_and_a_corrupt_chunk_is_not():
    url = URL("s3://b/raw.zarr")
    with pytest.raises(OSError, match=r"cannot read s3://b/raw.zarr \(region .*ConnectionResetError: reset"):
        CheckedReader(_Failing(ConnectionResetError("reset by peer")), url)[0:2]
    with pytest.raises(InputDataError, match=r"cannot read s3://b/raw.zarr .*corrupt or unreadable"):
        CheckedReader(_Failing(RuntimeError("Zstd decompression error")), url)[0:2]


# -- reading over HTTPS ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def https_root(store):
    """A local HTTPS server (http.server in a thread, a self-signed certificate for 127.0.0.1) over the
    folder of ``store``: its URL, and the certificate to trust."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    folder = store.parent
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                       serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{server.server_port}", folder / "cert.pem"
    server.shutdown()


def test_an_image_over_https_equals_the_local_copy(https_root, store, monkeypatch):
    import aiohttp
    import fsspec

    root, cert = https_root

    async def trusting_client(**kwargs):  # fsspec's https option get_client: trust the test certificate
        context = ssl.create_default_context(cafile=str(cert))
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context), **kwargs)

    monkeypatch.setitem(fsspec.config.conf, "https", {"get_client": trusting_client})
    remote = open_image(f"{root}/{store.name}")
    assert remote.path == URL(f"{root}/raw.zarr") and remote.voxel_size_um == VOXEL
    np.testing.assert_array_equal(remote.array[...], open_image(store).array[...])
    np.testing.assert_array_equal(open_labels(remote.path, "ground_truth").array[...],
                                  open_labels(store, "ground_truth").array[...])


def test_a_server_that_does_not_answer_is_one_clear_error():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(InputDataError, match=rf"--raw http://127.0.0.1:{port}/raw.zarr/zarr.json cannot be "
                                             "read: .*it cannot be reached"):
        open_image(f"http://127.0.0.1:{port}/raw.zarr", setting="--raw")
