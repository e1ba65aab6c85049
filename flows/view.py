"""``neurorecon view``: a run directory in neuroglancer (or napari), served from this machine.

A driver: load what the run holds (:func:`load_run_view`), build the viewer's state (:func:`viewer_state`,
a pure function of what was loaded), serve (:func:`serve`). Nothing in the run directory is written.

Neuroglancer's client (bundled with the ``neuroglancer`` package, so no internet is needed) runs in the
browser and reads the files of the run itself, over HTTP from the same local server that serves the
client: ``RUN/segmentation.zarr`` and ``RUN/fragments.zarr`` as ``zarr3://`` OME-Zarr label images (voxel
size and axes from their OME metadata, so anisotropic voxels are placed right), the raw image likewise,
and ``RUN/skeletons_precomputed`` as ``precomputed://`` skeletons with their segment properties (name and
lengths of every object on hover and in the segment list, see :mod:`pipeline.io.skeletons`; for skeletons
written before those existed, the server makes them from ``lengths.csv``). A browser cannot read
``file://`` URLs, hence the server. Chunks travel as stored: nothing is decoded in Python.

The raw image is ``--raw`` or, by default, the one the predict stage recorded (``state/predict/
stage.json``) where it lies inside the run directory (the demo's ``volume.zarr``). A raw image outside
the run is recorded only by its fingerprint (:meth:`~pipeline.io.layout.RunLayout.identify`), so it is
shown only with ``--raw``; a ``--raw`` whose fingerprint differs from the recorded one is shown with a
note.
"""

from __future__ import annotations

import math
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError, DependencyError, InputDataError
from pipeline.io.blockstate import BlockState
from pipeline.io.labels import open_label_image
from pipeline.io.layout import RunLayout
from pipeline.io.omezarr import image_fingerprint, open_image, open_levels
from pipeline.io.skeletons import read_lengths_csv, segment_properties
from pipeline.skeleton.lengths import ObjectRow

__all__ = [
    "MAX_SHOWN", "RunView", "Served", "add_napari_layers", "load_run_view", "napari_image", "open_in_napari",
    "serve", "viewer_state",
]

#: Objects shown at first (the longest of ``lengths.csv``); the others are listed, one click away.
MAX_SHOWN = 500

_M_PER_UM = 1e-6


@dataclass(frozen=True)
class RunView:
    """What :func:`load_run_view` found in a run directory: what the viewer shows.

    Attributes
    ----------
    run : RunLayout
        The run directory.
    shape : tuple of 3 int
        The segmentation's (z, y, x) shape, voxels.
    voxel_size_um : tuple of 3 float
        The segmentation's (z, y, x) voxel size, µm (from its OME metadata).
    raw : Path or None
        The raw OME-Zarr image shown under the segmentation (None: none is known).
    raw_range : tuple of 2 float or None
        Raw intensities shown black and white (1st and 99.9th percentiles of a sample).
    skeletons : bool
        ``skeletons_precomputed/`` exists (written by ``neurorecon skeletonize``).
    skeleton_properties : bool
        Its ``info`` names segment properties (skeletons written before them have none).
    fragments : bool
        ``fragments.zarr`` exists.
    objects : tuple of ObjectRow
        The rows of ``lengths.csv`` (empty where there is none).
    notes : tuple of str
        What is not shown and why, for the user.
    """

    run: RunLayout
    shape: tuple[int, int, int]
    voxel_size_um: tuple[float, float, float]
    raw: Path | None
    raw_range: tuple[float, float] | None
    skeletons: bool
    skeleton_properties: bool
    fragments: bool
    objects: tuple[ObjectRow, ...]
    notes: tuple[str, ...] = ()


def load_run_view(run_dir: str | Path, *, raw: str | Path | None = None) -> RunView:
    """Find what a run directory holds for the viewer, checking it first; reads metadata only (and a
    sample of the raw image for its contrast).

    Parameters
    ----------
    run_dir : path
        The run directory (``segment.out``): its ``segmentation.zarr`` is required.
    raw : path, optional
        The raw OME-Zarr image; default the one the run recorded inside the run directory.

    Raises
    ------
    InputDataError
        If the run directory or its segmentation is missing (naming the command that writes it), the
        segmentation is not a label image, or the raw image is not a (z, y, x) image of the
        segmentation's shape.
    """
    run = RunLayout(run_dir)
    if not run.root.is_dir():
        raise InputDataError(f"run directory {run.root} does not exist; pass the output directory of "
                             "`neurorecon run` or `neurorecon segment` (segment.out)")
    if not run.segmentation.exists():
        runs = sorted(p.parent for p in run.root.glob(f"*/{run.segmentation.name}"))
        inside = f" (the runs in it: {', '.join(str(p) for p in runs)})" if runs else ""
        raise InputDataError(
            f"{run.root} has no {run.segmentation.name}: nothing to view{inside}; it is written by "
            "`neurorecon segment` or `neurorecon run` (into segment.out), or `neurorecon demo` (OUT/neurons)"
        )
    seg = open_label_image(run.segmentation)
    notes: list[str] = []
    raw_path = _raw_image(run, raw, notes)
    raw_range = None
    if raw_path is not None:
        image = open_image(raw_path)
        if image.axes != ("z", "y", "x") or image.spatial_shape != seg.spatial_shape:
            raise InputDataError(
                f"raw image {raw_path} has axes {image.axes} and shape {image.spatial_shape}; the "
                f"segmentation {run.segmentation} is (z, y, x) {seg.spatial_shape}: pass the raw image of "
                "this run with --raw"
            )
        if not all(math.isclose(a, b, rel_tol=1e-6) for a, b in zip(image.voxel_size_um,
                                                                      seg.voxel_size_um, strict=True)):
            notes.append(f"the raw image's voxel size {image.voxel_size_um} µm differs from the "
                         f"segmentation's {seg.voxel_size_um} µm; each is shown at its own")
        raw_range = _contrast(image)
    info = run.skeletons_precomputed / "info"
    skeletons = info.is_file()
    if not skeletons:
        notes.append(f"no {run.skeletons_precomputed.name}/ in {run.root}: no skeletons (written by "
                     "`neurorecon skeletonize` or `neurorecon run`)")
    objects = read_lengths_csv(run.lengths_csv) if run.lengths_csv.is_file() else ()
    if not objects:
        notes.append(f"no objects in {run.lengths_csv}: segments are shown where you double-click them "
                     "(lengths come from `neurorecon skeletonize`)")
    return RunView(
        run=run, shape=seg.spatial_shape, voxel_size_um=seg.voxel_size_um, raw=raw_path, raw_range=raw_range,
        skeletons=skeletons, skeleton_properties=skeletons and "segment_properties" in _json(info),
        fragments=(run.fragments / "zarr.json").is_file(), objects=tuple(objects), notes=tuple(notes),
    )


def _raw_image(run: RunLayout, given: str | Path | None, notes: list[str]) -> Path | None:
    """The raw image to show: ``given``, else the one the predict stage recorded inside the run."""
    recorded = BlockState(run.state, "predict").recorded_params().get("raw")
    inside = recorded.get("in_run") if isinstance(recorded, dict) else None
    if given is not None:
        given = Path(given)
        if isinstance(recorded, dict) and inside is None and recorded != image_fingerprint(open_image(given)):
            notes.append(f"--raw {given} is not the image this run was segmented from (its fingerprint "
                         "differs from the one in state/predict/stage.json); shown anyway")
        return given
    if inside is not None:
        if (run.root / inside).exists():
            return run.root / inside
        notes.append(f"the run's raw image {run.root / inside} is missing: no raw layer (pass --raw PATH)")
    elif recorded is not None:
        notes.append("the run's raw image lies outside the run directory, which records only its "
                     "fingerprint: no raw layer (pass --raw PATH to show it)")
    else:
        notes.append("the run records no raw image (no state/predict/stage.json): no raw layer (pass "
                     "--raw PATH to show it)")
    return None


def _contrast(image: Any) -> tuple[float, float]:
    from pipeline.data.normalize import intensity_range

    rng = intensity_range(image.reader)
    return float(rng.low), float(rng.high)


def _json(path: Path) -> dict[str, Any]:
    import json

    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise InputDataError(f"{path} is damaged ({exc}); rerun `neurorecon skeletonize --overwrite`"
                             ) from None
    return value if isinstance(value, dict) else {}


# -- the state: pure ----------------------------------------------------------------------------------------


def viewer_state(view: RunView, *, data_url: str) -> dict[str, Any]:
    """Neuroglancer's state (JSON) showing ``view``, its files read from ``data_url``.

    Layers ``raw`` (image; only with a raw image), ``segmentation`` (the segmentation, with the
    skeletons and segment properties as further sources; the :data:`MAX_SHOWN` longest objects shown)
    and ``fragments`` (hidden; only where present). Dimensions x, y, z in metres, the segmentation's
    voxel size, so anisotropic voxels are displayed to scale; the view at the centre voxel, zoomed to the
    volume; the segment list open, longest first.

    Parameters
    ----------
    view : RunView
        What to show.
    data_url : str
        Where the files are served (:func:`serve`): ``{data_url}/run/...`` the run directory,
        ``{data_url}/raw/...`` the raw image, ``{data_url}/properties/info`` the segment properties of
        skeletons written without them.

    Examples
    --------
    >>> view = RunView(RunLayout("r"), (64, 256, 256), (1.5, 0.5, 0.5), None, None, False, False, False, ())
    >>> state = viewer_state(view, data_url="http://127.0.0.1:8000/data/t")
    >>> state["dimensions"]["z"], [layer["name"] for layer in state["layers"]]
    ([1.5e-06, 'm'], ['segmentation'])
    """
    z, y, x = (v * _M_PER_UM for v in view.voxel_size_um)
    layers: list[dict[str, Any]] = []
    if view.raw is not None:
        raw: dict[str, Any] = {"type": "image", "name": "raw", "source": f"zarr3://{data_url}/raw/"}
        if view.raw_range is not None:
            raw["shaderControls"] = {"normalized": {"range": list(view.raw_range)}}
        layers.append(raw)
    sources: list[str] = [f"zarr3://{data_url}/run/{view.run.segmentation.name}/"]
    if view.skeletons:
        sources.append(f"precomputed://{data_url}/run/{view.run.skeletons_precomputed.name}")
    if view.objects and not view.skeleton_properties:
        sources.append(f"precomputed://{data_url}/properties")
    longest = sorted(view.objects, key=lambda r: (-r.length_um, r.label))[:MAX_SHOWN]
    segmentation: dict[str, Any] = {
        "type": "segmentation", "name": "segmentation", "source": sources, "tab": "segments",
        "segments": [str(r.label) for r in sorted(longest, key=lambda r: r.label)],
    }
    if view.objects:  # the segment list: longest first, with both lengths as columns
        segmentation["segmentQuery"] = ">length_um |cable_length_um"
    layers.append(segmentation)
    if view.fragments:
        layers.append({"type": "segmentation", "name": "fragments", "visible": False,
                       "source": f"zarr3://{data_url}/run/{view.run.fragments.name}/"})
    # at the centre voxel, zoomed so the (y, x) extent fits a panel of ~400 pixels
    extent_um = max(n * v for n, v in zip(view.shape, view.voxel_size_um, strict=True))
    per_pixel = extent_um / min(view.voxel_size_um) / 400
    return {
        "dimensions": {"x": [x, "m"], "y": [y, "m"], "z": [z, "m"]},
        "position": [n // 2 for n in view.shape[::-1]],
        "crossSectionScale": per_pixel,
        "projectionScale": 1.5 * 400 * per_pixel,
        "layers": layers,
        "selectedLayer": {"layer": "segmentation", "visible": True},
        "layout": "4panel",
    }


# -- serving -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Served:
    """A running viewer: open ``url`` in a browser; the files are served under ``data_url``. Keep the
    object: the viewer lives as long as it."""

    url: str
    data_url: str
    viewer: Any


def serve(view: RunView, *, bind: str, port: int) -> Served:
    """Serve ``view`` with neuroglancer on ``bind:port`` (0: any free port) until the process ends.

    One local HTTP server (neuroglancer's, in a background thread) serves the client, the run directory
    under ``/data/<token>/run/``, the raw image under ``/data/<token>/raw/`` and, for skeletons written
    without them, the segment properties of ``lengths.csv`` under ``/data/<token>/properties/``;
    ``<token>`` is random, as the viewer's own.

    Raises
    ------
    ConfigError
        If the address cannot be bound (a port in use, an address not of this machine).
    """
    import neuroglancer
    import tornado.web
    from neuroglancer.random_token import make_random_token
    from neuroglancer.static_file_server import CorsStaticFileHandler

    if neuroglancer.server.is_server_running():  # one run per process: a new address applies on restart
        neuroglancer.server.stop()
    neuroglancer.set_server_bind_address(bind, port)
    try:
        viewer = neuroglancer.Viewer()
        url = viewer.get_viewer_url()
    except OSError as exc:
        raise ConfigError(f"cannot serve on {bind}:{port}: {exc.strerror or exc}; choose another --port "
                          "(0: any free port) or --bind") from None
    token = make_random_token()
    properties = segment_properties(view.objects)

    class Properties(tornado.web.RequestHandler):
        def get(self) -> None:
            self.set_header("Access-Control-Allow-Origin", "*")
            self.set_header("Content-Type", "application/json")
            self.finish(properties)

    handlers: list[Any] = [
        (rf"/data/{token}/run/(.*)", CorsStaticFileHandler, {"path": str(view.run.root.resolve())}),
        (rf"/data/{token}/properties/info", Properties),
    ]
    if view.raw is not None:
        handlers.append((rf"/data/{token}/raw/(.*)", CorsStaticFileHandler,
                         {"path": str(view.raw.resolve())}))
    # neuroglancer's server has no public hook for more routes; its tornado Application takes them
    neuroglancer.server.global_server.app.add_handlers(r".*", handlers)
    origin = urllib.parse.urlsplit(url)
    data_url = f"{origin.scheme}://{origin.netloc}/data/{token}"
    viewer.set_state(neuroglancer.ViewerState(viewer_state(view, data_url=data_url)))
    return Served(url=url, data_url=data_url, viewer=viewer)


def open_in_napari(view: RunView, *, show: bool = True) -> Any:
    """Open ``view`` in napari and run its event loop until the window closes; returns the viewer.

    Layers ``raw`` (image), ``segmentation`` (labels, with ``lengths.csv`` as its features: length and
    cable on hover), ``fragments`` (labels, hidden) and ``skeletons`` (vectors: one per skeleton edge,
    µm), all in µm world coordinates (z, y, x) — the images scaled by their voxel size, with every level
    of their pyramids (napari reads the level the zoom needs). With ``show=False`` the viewer is built
    without a window and returned at once (no event loop).

    Raises
    ------
    DependencyError
        If napari is not installed.
    """
    try:
        import napari
    except ImportError:
        raise DependencyError(
            "--napari needs napari, which is not installed here: pip install 'napari[all]' (napari with "
            "a Qt backend), or leave out --napari to look at the run in a browser"
        ) from None

    viewer = napari.Viewer(title=f"neurorecon: {view.run.root}", show=show)
    add_napari_layers(viewer, view)
    if show:
        napari.run()
    return viewer


def add_napari_layers(viewer: Any, view: RunView) -> None:
    """Add the layers :func:`open_in_napari` describes to ``viewer`` (a ``napari.Viewer``, or napari's
    window-less ``ViewerModel``)."""
    from pipeline.io.skeletons import read_precomputed_skeletons

    if view.raw is not None:
        viewer.add_image(**napari_image(view.raw), name="raw", contrast_limits=view.raw_range)
    features = {
        "index": [r.label for r in view.objects],
        "length_um": [r.length_um for r in view.objects],
        "cable_length_um": [r.cable_length_um for r in view.objects],
    }
    viewer.add_labels(**napari_image(view.run.segmentation), name="segmentation", features=features)
    if view.fragments:
        viewer.add_labels(**napari_image(view.run.fragments), name="fragments", visible=False)
    if view.skeletons:
        vectors, labels = _skeleton_vectors(read_precomputed_skeletons(view.run.skeletons_precomputed))
    if view.skeletons and vectors:
        # the label as text: napari colours a categorical feature one colour per skeleton
        viewer.add_vectors(vectors, name="skeletons", features={"label": [str(v) for v in labels]},
                           edge_color="label", edge_width=1.0, vector_style="line")


def napari_image(path: Any) -> dict[str, Any]:
    """The ``data``, ``multiscale`` and ``scale`` (µm) arguments of napari's ``add_image`` / ``add_labels``
    for the OME-Zarr image at ``path``: every level of its pyramid (napari reads the one the zoom needs)."""
    image = open_image(path)
    levels = open_levels(image)
    return {"data": levels if len(levels) > 1 else levels[0], "multiscale": len(levels) > 1,
            "scale": image.voxel_size_um}


def _skeleton_vectors(graphs: dict[int, Any]) -> tuple[list[list[Sequence[float]]], list[int]]:
    """One napari vector per skeleton edge: ``[start, end - start]`` (z, y, x µm), and its label."""
    vectors, labels = [], []
    for label, graph in graphs.items():
        for a, b in graph.edges:
            p, q = graph.nodes[a]["pos_um"], graph.nodes[b]["pos_um"]
            vectors.append([list(p), [qi - pi for pi, qi in zip(p, q, strict=True)]])
            labels.append(int(label))
    return vectors, labels
