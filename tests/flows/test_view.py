"""``neurorecon view``: the neuroglancer state of a run, its segment properties, napari, and a real browser.

The run is built by hand (a raw image, two straight tubes and a one-voxel object, skeletonized by the
real stage) at a voxel size that differs along every axis, so a swapped axis shows. The browser test
starts the command line, opens its link in headless Chromium (WebGL in software, SwiftShader), driven
over the DevTools protocol on a pipe: Chromium's own ``--screenshot --virtual-time-budget`` never
returns here, because virtual time waits for the viewer's event stream, which stays open.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from flows.stages.pyramid import pyramid_volume
from flows.stages.skeletonize import skeletonize_volume
from flows.view import (
    RunView,
    add_napari_layers,
    load_run_view,
    napari_image,
    open_in_napari,
    serve,
    viewer_state,
)
from pipeline.errors import DependencyError, InputDataError
from pipeline.io.blockstate import BlockState
from pipeline.io.layout import RunLayout
from pipeline.io.omezarr import create_label_image, image_fingerprint, open_image, write_image
from pipeline.io.skeletons import read_lengths_csv
from pipeline.pyramid.downsample import downsample_labels
from pipeline.skeleton.config import SkeletonizeConfig
from tests.flows.test_cli import REPO, run_cli

VS = (1.5, 0.5, 0.25)  # (z, y, x) µm: every axis its own, so a swap shows
SHAPE = (12, 48, 96)
DATA = "http://127.0.0.1:1/data/token"


def _labels() -> np.ndarray:
    labels = np.zeros(SHAPE, np.uint64)
    labels[6, 10:13, 8:88] = 3  # along x, 80 voxels x 0.25 µm; cross-section 1.5 x 1.5 µm
    labels[6, 16:44, 57:63] = 7  # along y, 28 voxels x 0.5 µm
    labels[10, 44, 90] = 9  # one voxel: a row in lengths.csv, no skeleton
    return labels


@pytest.fixture(scope="module", params=[False, True], ids=["per_object", "sharded"])
def run(tmp_path_factory, request) -> Path:
    """A run directory as `neurorecon run` leaves it: raw inside it (recorded by the predict stage),
    segmentation, fragments, skeletons (a file per object, or sharded) and lengths (the real skeletonize
    stage)."""
    root = tmp_path_factory.mktemp("view") / "run"
    layout = RunLayout(root)
    labels = _labels()
    rng = np.random.default_rng(0)
    raw = (rng.normal(100, 10, SHAPE) + 800 * (labels > 0)).clip(0, 65535).astype(np.uint16)
    image = write_image(root / "volume.zarr", raw, voxel_size_um=VS, chunks=(12, 48, 48), name="raw")
    recorded = layout.identify(image.path, lambda: image_fingerprint(image))  # {"in_run": "volume.zarr"}
    BlockState(layout.state, "predict").check_params({"raw": recorded})
    for path in (layout.segmentation, layout.fragments):
        create_label_image(path, shape=SHAPE, chunks=(12, 48, 48), voxel_size_um=VS)
        open_image(path, mode="r+").array[...] = labels
    # dust_threshold_um3=0 keeps the one-voxel object 9 (a row without a skeleton)
    skeletonize_volume(layout.segmentation, out=root,
                       settings=SkeletonizeConfig(block_shape=(12, 48, 96), dust_threshold_um3=0.0,
                                                  sharded_precomputed=request.param),
                       max_retries=0, progress=False)
    return root


def _properties(run: Path) -> dict:
    skeletons = RunLayout(run).skeletons_precomputed
    info = json.loads((skeletons / "info").read_text())
    return json.loads((skeletons / info["segment_properties"] / "info").read_text())


def test_state_shows_raw_segmentation_and_skeletons_at_the_voxel_size(run):
    view = load_run_view(run)
    state = viewer_state(view, data_url=DATA)
    assert [layer["name"] for layer in state["layers"]] == ["raw", "segmentation", "fragments"]
    raw, seg, fragments = state["layers"]
    assert raw == {"type": "image", "name": "raw", "source": f"zarr3://{DATA}/raw/",
                   "shaderControls": {"normalized": {"range": list(view.raw_range)}}}
    assert view.raw == run / "volume.zarr" and 50 < view.raw_range[0] < 150 < 800 < view.raw_range[1] < 1000
    assert seg["type"] == "segmentation"
    assert seg["source"] == [f"zarr3://{DATA}/run/segmentation.zarr/",  # the properties: in the skeletons
                             f"precomputed://{DATA}/run/skeletons_precomputed"]
    assert seg["segments"] == ["3", "7", "9"]
    assert fragments["visible"] is False and fragments["source"] == f"zarr3://{DATA}/run/fragments.zarr/"
    # (z, y, x) µm -> neuroglancer's x, y, z in metres
    assert state["dimensions"] == {"x": [pytest.approx(0.25e-6), "m"], "y": [pytest.approx(0.5e-6), "m"],
                                   "z": [pytest.approx(1.5e-6), "m"]}
    assert state["position"] == [48, 24, 6]  # x, y, z: the centre voxel
    assert view.notes == ()


def test_state_is_valid_neuroglancer_state(run):
    import neuroglancer

    state = viewer_state(load_run_view(run), data_url=DATA)
    back = neuroglancer.ViewerState(state).to_json()
    assert back["layers"][1]["segmentQuery"] == ">length_um |cable_length_um"
    assert back["selectedLayer"] == {"layer": "segmentation", "visible": True}
    assert back["dimensions"]["x"] == [0.25e-6, "m"]


def test_state_of_a_bare_run_and_of_skeletons_without_properties(run, tmp_path):
    bare = RunView(RunLayout(tmp_path), SHAPE, VS, None, None, False, False, False, ())
    state = viewer_state(bare, data_url=DATA)
    assert [layer["name"] for layer in state["layers"]] == ["segmentation"]
    assert state["layers"][0]["source"] == [f"zarr3://{DATA}/run/segmentation.zarr/"]
    assert "segmentQuery" not in state["layers"][0]
    older = dataclasses.replace(load_run_view(run), skeleton_properties=False)  # an older version wrote them
    assert viewer_state(older, data_url=DATA)["layers"][1]["source"][-1] == f"precomputed://{DATA}/properties"


def test_server_serves_the_files_to_any_origin_and_properties_for_older_skeletons(run):
    import urllib.request

    import neuroglancer

    older = dataclasses.replace(load_run_view(run), skeleton_properties=False)
    served = serve(older, bind="127.0.0.1", port=0)
    try:
        def get(url: str) -> tuple[bytes, str | None]:
            with urllib.request.urlopen(url, timeout=10) as reply:
                return reply.read(), reply.headers["Access-Control-Allow-Origin"]

        files = {"run/segmentation.zarr/zarr.json": "segmentation.zarr/zarr.json",
                 "run/skeletons_precomputed/info": "skeletons_precomputed/info",
                 "raw/0/zarr.json": "volume.zarr/0/zarr.json"}
        for url, path in files.items():
            assert get(f"{served.data_url}/{url}") == ((run / path).read_bytes(), "*")
        body, cors = get(f"{served.data_url}/properties/info")  # made from lengths.csv
        assert cors == "*" and json.loads(body) == _properties(run)
        assert b"<title>neuroglancer</title>" in get(served.url)[0]  # the bundled client
        sources = served.viewer.state.layers["segmentation"].source
        assert sources[-1].url == f"precomputed://{served.data_url}/properties"
    finally:
        neuroglancer.server.stop()


def _skeleton_bytes(run: Path, label: int) -> bytes:
    """An object's encoded skeleton: its file, or (sharded) its entry, read by tensorstore."""
    folder = RunLayout(run).skeletons_precomputed
    sharding = json.loads((folder / "info").read_text()).get("sharding")
    if sharding is None:
        return (folder / str(label)).read_bytes()
    import tensorstore as ts

    store = ts.KvStore.open({"driver": "neuroglancer_uint64_sharded", "base": f"file://{folder}/",
                             "metadata": sharding}).result()
    return bytes(store.read(label.to_bytes(8, "big")).result().value)


def test_segment_properties_list_every_object_with_its_lengths(run):
    rows = read_lengths_csv(RunLayout(run).lengths_csv)
    assert [r.label for r in rows] == [3, 7, 9]
    assert rows[0].length_um == pytest.approx(80 * 0.25, rel=0.2)  # the tube along x, 0.25 µm voxels
    assert rows[1].length_um == pytest.approx(28 * 0.5, rel=0.2)  # along y, 0.5 µm voxels
    assert _skeleton_bytes(run, 9) == bytes(8)  # no skeleton: an empty one
    info = _properties(run)
    assert info["@type"] == "neuroglancer_segment_properties"
    assert info["inline"]["ids"] == ["3", "7", "9"]
    by_id = {p["id"]: p for p in info["inline"]["properties"]}
    assert by_id["label"]["type"] == "label"
    assert by_id["label"]["values"] == [f"{r.length_um:.1f} µm" for r in rows]  # none touches the border
    for key in ("length_um", "cable_length_um"):
        assert by_id[key]["type"] == "number" and by_id[key]["data_type"] == "float32"
        decoded = np.asarray(by_id[key]["values"], np.float32)  # as neuroglancer stores them
        np.testing.assert_allclose(decoded, [getattr(r, key) for r in rows], rtol=1e-6)


def test_raw_image_is_found_or_refused_with_a_reason(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("volume.zarr"))
    view = load_run_view(copy)  # the recorded raw image is gone: no raw layer, and why
    assert view.raw is None and "pass --raw PATH" in view.notes[0]
    assert load_run_view(copy, raw=run / "volume.zarr").raw == run / "volume.zarr"
    other = write_image(tmp_path / "other.zarr", np.zeros((12, 48, 48), np.uint16), voxel_size_um=VS)
    with pytest.raises(InputDataError, match=r"shape \(12, 48, 48\).*pass the raw image of this run"):
        load_run_view(copy, raw=other.path)
    outside = tmp_path / "outside"  # a raw image outside the run: recorded by its fingerprint only
    shutil.copytree(run, outside)
    moved = tmp_path / "raw.zarr"
    shutil.move(outside / "volume.zarr", moved)
    state = BlockState(RunLayout(outside).state, "predict")
    shutil.rmtree(state.dir)
    state.check_params({"raw": image_fingerprint(open_image(moved))})
    assert load_run_view(outside).raw is None
    assert "records only its fingerprint" in load_run_view(outside).notes[0]
    assert load_run_view(outside, raw=moved).notes == ()
    same_shape = write_image(tmp_path / "same.zarr", np.ones(SHAPE, np.uint16), voxel_size_um=VS)
    notes = load_run_view(outside, raw=same_shape.path).notes
    assert "is not the image this run was segmented from" in notes[0]


def test_a_run_without_segmentation_is_one_clear_error(tmp_path):
    with pytest.raises(InputDataError, match="does not exist"):
        load_run_view(tmp_path / "nowhere")
    (tmp_path / "runs" / "a" / "segmentation.zarr").mkdir(parents=True)
    out = run_cli("view", str(tmp_path / "runs"))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.count("error:") == 1
    assert "has no segmentation.zarr" in out.stderr and "`neurorecon run`" in out.stderr
    assert str(tmp_path / "runs" / "a") in out.stderr  # the run inside it, named


@pytest.fixture
def napari():
    return pytest.importorskip(
        "napari", reason="napari is not installed (optional: pip install 'napari[pyqt5]'): it checks --napari"
    )


def test_napari_shows_the_same_layers_in_micrometres(run, napari):
    """The layers ``--napari`` opens, in napari's own viewer model (a window needs OpenGL)."""
    viewer = napari.components.ViewerModel()
    add_napari_layers(viewer, load_run_view(run))
    layers = {layer.name: layer for layer in viewer.layers}
    assert list(layers) == ["raw", "segmentation", "fragments", "skeletons"]
    seg = open_image(RunLayout(run).segmentation)
    for name in ("raw", "segmentation", "fragments"):
        assert tuple(layers[name].scale) == pytest.approx(VS)  # µm per voxel at level 0
    np.testing.assert_array_equal(np.asarray(layers["segmentation"].data), seg.array[...])
    assert not layers["fragments"].visible
    features = layers["segmentation"].features
    assert list(features["index"]) == [3, 7, 9]
    assert list(features["length_um"]) == [r.length_um for r in read_lengths_csv(RunLayout(run).lengths_csv)]
    vectors = np.asarray(layers["skeletons"].data)
    assert vectors.shape[1:] == (2, 3) and len(vectors) > 0
    ends = vectors[:, 0] + vectors[:, 1]
    assert ends[:, 2].max() <= SHAPE[2] * VS[2] and ends[:, 1].max() <= SHAPE[1] * VS[1]  # (z, y, x) µm


def test_napari_gets_every_level_of_a_pyramid(tmp_path, napari):
    shape = (12, 96, 192)
    labels = np.zeros(shape, np.uint64)
    labels[:, 20:40, 30:150] = 5
    labels[3:9, 50:90, 10:20] = 6
    path = tmp_path / "segmentation.zarr"
    create_label_image(path, shape=shape, chunks=(12, 48, 48), voxel_size_um=VS, pyramid=True)
    open_image(path, mode="r+").array[...] = labels
    pyramid_volume(path, name="segmentation", state_dir=tmp_path / "state", block_shape=None, max_retries=0,
                   progress=False)
    viewer = napari.components.ViewerModel()
    layer = viewer.add_labels(**napari_image(path), name="segmentation")
    assert layer.multiscale and [a.shape for a in layer.data] == [shape, (12, 48, 96)]
    assert tuple(layer.scale) == pytest.approx(VS)  # level 0's µm; napari scales the others by their shape
    np.testing.assert_array_equal(np.asarray(layer.data[1]), downsample_labels(labels, (1, 2, 2)))


def test_napari_missing_names_the_install(run, monkeypatch):
    monkeypatch.setitem(sys.modules, "napari", None)  # import napari raises ImportError
    with pytest.raises(DependencyError, match=r"pip install 'napari\[all\]'"):
        open_in_napari(load_run_view(run))


# -- the real thing: the command line, a headless browser, Ctrl-C -------------------------------------------


class Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``)."""

    def __init__(self, exe: str, *, profile: Path, log: Path, size: tuple[int, int] = (1200, 800)) -> None:
        to_chrome, self._write = os.pipe()
        self._read, from_chrome = os.pipe()
        args = [exe, "--headless=new", "--disable-gpu", "--no-sandbox", "--use-angle=swiftshader",
                "--enable-unsafe-swiftshader", "--remote-debugging-pipe", "--no-first-run",
                f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}", "about:blank"]
        on_3_and_4 = f'exec "$0" "$@" 3<&{to_chrome} 4>&{from_chrome}'  # the protocol's fds (not dash: < 10)
        with open(log, "wb") as stderr:
            self.proc = subprocess.Popen(["bash", "-c", on_3_and_4, *args], pass_fds=(to_chrome, from_chrome),
                                         stdout=subprocess.DEVNULL, stderr=stderr)
        os.close(to_chrome)
        os.close(from_chrome)
        self._buffer, self._id, self._session, self._size = b"", 0, None, size

    def call(self, method: str, params: dict | None = None, *, browser: bool = False) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if self._session and not browser:
            message["sessionId"] = self._session
        os.write(self._write, json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self._buffer:
                chunk = os.read(self._read, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed the DevTools pipe")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def open(self, url: str) -> None:
        target = self.call("Target.createTarget", {"url": url}, browser=True)["targetId"]
        self._session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True},
                                  browser=True)["sessionId"]
        width, height = self._size  # the page's own size (the window's less the browser's frame)
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})

    def evaluate(self, expression: str):
        return self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})["result"].get(
            "value")

    def screenshot(self) -> bytes:
        return base64.b64decode(self.call("Page.captureScreenshot", {"format": "png"})["data"])

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        os.close(self._write)
        os.close(self._read)


#: The viewer's layers, whether every panel has drawn all it shows, and the page's text (the segment list).
STATUS = """(() => {
  const viewer = window.viewer;
  if (!viewer) return {href: location.href, readyState: document.readyState};
  const layers = viewer.layerManager.managedLayers;
  return {names: layers.map(l => l.name), text: document.body.innerText,
          ready: viewer.display.isReady() && layers.every(l => l.isReady())};
})()"""


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium is not installed (Debian: apt install chromium): the browser test needs it")
    return exe


def test_view_in_a_headless_browser_then_ctrl_c(run, tmp_path):
    from PIL import Image

    exe = _chromium()
    env = {**os.environ, "COLUMNS": "120"}
    proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "view", str(run), "--port", "0"], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    browser = None
    try:
        first = proc.stdout.readline()
        assert first.startswith("neuroglancer: http://127.0.0.1:"), first + proc.stderr.read()
        assert proc.stdout.readline().strip() == "open this in a browser; Ctrl-C to stop"
        browser = Chromium(exe, profile=tmp_path / "profile", log=tmp_path / "chromium.log")
        browser.open(first.split()[1])
        deadline, status = time.monotonic() + 30, {}
        while time.monotonic() < deadline and not status.get("ready"):
            time.sleep(0.5)
            status = browser.evaluate(STATUS) or {}
        log = (tmp_path / "chromium.log").read_text(errors="replace")[-2000:]
        assert status.get("ready"), f"the viewer did not finish drawing in 30 s: {str(status)[:500]}\n{log}"
        assert status["names"] == ["raw", "segmentation", "fragments"]
        rows = read_lengths_csv(RunLayout(run).lengths_csv)
        for row in rows:  # the segment list shows each object's label from the segment properties
            assert f"{row.length_um:.1f} µm" in status["text"]
        png = browser.screenshot()
    finally:
        if browser is not None:
            browser.close()
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        start = time.monotonic()
        try:
            code = proc.wait(timeout=10)
        finally:
            proc.kill()
    stopped_s, stderr = time.monotonic() - start, proc.stderr.read()
    assert code == 130 and stopped_s < 3, (code, stopped_s, stderr)
    assert "interrupted (SIGINT): stopped neurorecon view" in stderr and "Traceback" not in stderr
    assert "rerun the same command" not in stderr  # nothing to resume: the viewer writes nothing
    image = Image.open(io.BytesIO(png))
    assert png.startswith(b"\x89PNG") and image.size == (1200, 800)
    colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert len(colours) > 100, f"the screenshot has {len(colours)} colours: nothing was drawn"
    xy_panel = image.convert("RGB").crop((30, 60, 400, 380))  # raw and segmentation, not just the frame
    assert len(xy_panel.getcolors(maxcolors=1 << 20)) > 20, "the xy panel is (nearly) one colour"
    (tmp_path / "view.png").write_bytes(png)

