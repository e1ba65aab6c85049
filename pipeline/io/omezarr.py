"""OME-Zarr 0.5 images and label images: create, open, write aligned regions, lazy dask access.

Layout of a store written here (Zarr v3, OME-NGFF 0.5)::

    volume.zarr/                 image group: ome.multiscales, axes z, y, x in micrometer
                                 (c first if channels)
    volume.zarr/0                the full-resolution array
    volume.zarr/1, 2, ...        lower resolutions, where made (``pyramid``; see below)
    volume.zarr/labels/          ome.labels = [names]
    volume.zarr/labels/<name>/   ome.multiscales + ome.image-label (source: ../../)
    volume.zarr/labels/<name>/0  integer label array, same (z, y, x) shape and scale as the image

Pyramids: an image created with ``pyramid="mean"`` (intensities) or ``"mode"`` (labels) gets the levels
:func:`pipeline.pyramid.plan_pyramid` chooses (y/x halved until the voxels are near-isotropic, then all
axes; the last level fits one chunk), each with its ``scale`` and the ``translation`` of its voxel
centres (µm), and the method as the multiscales ``type``. The lower levels are created empty with the
image and filled block by block, after level 0 is complete, by :mod:`pipeline.io.pyramid` (the phantom
writer, and the segment stage's ``pyramid`` step). Every reader here uses level 0.

Voxel sizes are read from (and written to) the ``scale`` transformation of level ``0`` and reported in
micrometres, whatever unit the file uses (nanometer and millimeter are converted). A spatial axis without
a unit is read as µm, unless its scale is over :data:`MAX_UNITLESS_SCALE` (a voxel of over 0.1 mm: most
likely nm), which is refused with a request for the unit. Multiscale metadata and image-label metadata
are written with ome-zarr-py, arrays with zarr.

Writes go through :func:`write_region`, which accepts only regions aligned to the chunk grid (a region
may end at the volume border), so concurrent block writers never share a chunk.

A new image is built under a hidden temporary name beside ``path`` (``.<name>.<pid>.creating``) and
renamed into place once its metadata is complete, so a process killed while creating it never leaves
a store that a rerun cannot open (a directory without multiscales metadata); zarr writes every chunk
and metadata file atomically itself.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import zarr
from ome_zarr.format import FormatV05
from ome_zarr.writer import write_label_metadata, write_multiscales_metadata
from zarr.codecs import BloscCodec

from pipeline import __version__
from pipeline._checks import as_voxel_size
from pipeline.errors import InputDataError, NeuroreconError, OutputError
from pipeline.io.diskspace import disk_full_error, is_disk_full, write_error
from pipeline.io.location import URL, Location, as_location, is_file, is_transient, open_group, read_json
from pipeline.pyramid import PyramidLevel, plan_pyramid

__all__ = [
    "CheckedReader",
    "OmeArray",
    "create_image",
    "create_label_image",
    "create_labels",
    "image_fingerprint",
    "list_labels",
    "open_image",
    "open_levels",
    "open_labels",
    "read_provenance",
    "write_image",
    "write_labels",
    "write_provenance",
    "write_region",
]

#: How the lower levels of a pyramid are made: the mean for intensities, the mode for labels.
PyramidMethod = Literal["mean", "mode"]
_PYRAMID_METHODS: dict[str, str] = {
    "mean": "pipeline.pyramid.downsample_mean: the mean of each window",
    "mode": "pipeline.pyramid.downsample_labels: the most frequent label of each window",
}

_UNIT_TO_UM = {"micrometer": 1.0, "nanometer": 1e-3, "millimeter": 1e3, "angstrom": 1e-4}
_SPATIAL = ("z", "y", "x")


@dataclass(frozen=True)
class OmeArray:
    """One level-0 array of an OME-Zarr image or label image, with its physical metadata.

    Attributes
    ----------
    array : zarr.Array
        The array; index it to read (only the chunks touched are loaded).
    voxel_size_um : tuple of float
        (z, y, x) voxel size in micrometres.
    axes : tuple of str
        Axis names, ``("z", "y", "x")`` or ``("c", "z", "y", "x")``.
    path : Path or URL
        The image or label group's directory, or its URL (:mod:`pipeline.io.location`; read-only).
    name : str
        The image name (multiscales ``name``) or label name.
    """

    array: zarr.Array
    voxel_size_um: tuple[float, float, float]
    axes: tuple[str, ...]
    path: Location
    name: str

    @property
    def reader(self) -> CheckedReader:
        """The array for reading, with unreadable chunks reported as :class:`InputDataError`."""
        return CheckedReader(self.array, self.path)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)

    @property
    def spatial_shape(self) -> tuple[int, int, int]:
        return tuple(self.array.shape[-3:])  # type: ignore[return-value]

    @property
    def dtype(self) -> np.dtype:
        return self.array.dtype

    @property
    def chunks(self) -> tuple[int, ...]:
        return tuple(self.array.chunks)

    def to_dask(self) -> Any:
        """A lazy ``dask.array`` over the array, chunked like the store."""
        import dask.array as da

        return da.from_zarr(self.array)


def create_image(
    path: str | Path,
    *,
    shape: Sequence[int],
    dtype: Any,
    chunks: Sequence[int],
    voxel_size_um: Sequence[float],
    name: str = "image",
    channels: int | None = None,
    overwrite: bool = False,
    exist_ok: bool = False,
    codec: Literal["zstd", "lz4"] = "zstd",
    pyramid: PyramidMethod | None = None,
) -> zarr.Array:
    """Create an OME-Zarr 0.5 image group at ``path`` and return its level-0 array for writing.

    Parameters
    ----------
    path : str or Path
        Directory of the store to create (conventionally ending ``.zarr``).
    shape, chunks : sequence of int
        (z, y, x) shape and chunk shape in voxels (without the channel axis).
    dtype : numpy dtype
        Element type, e.g. ``"uint16"``.
    voxel_size_um : sequence of float
        (z, y, x) voxel size in µm.
    name : str
        Name recorded in the multiscales metadata.
    channels : int, optional
        If given, the array gets a leading channel axis ``c`` of this length (one chunk over it).
    overwrite : bool
        Delete any existing store at ``path`` first.
    exist_ok : bool
        Reuse an existing image at ``path`` if its shape, dtype, chunks and voxel size match (so an
        interrupted block-wise run can resume); raise if they differ.
    codec : {"zstd", "lz4"}
        Chunk compression: Zarr v3's default Zstandard (smaller), or Blosc-LZ4 (Zarr v2's default;
        decodes 2-3x faster, files ~1.7x larger), for intermediates that are read many times, such as
        affinities, whose every chunk the block-wise segmentation decodes up to 27 times (halos).
    pyramid : {"mean", "mode"}, optional
        Also create the lower resolutions :func:`pipeline.pyramid.plan_pyramid` chooses (empty; fill them
        with :func:`pipeline.io.pyramid.build_pyramid` once level 0 is written), made by this method: the
        mean for intensities, the mode for labels. Not with ``channels``. An existing image reused with
        ``exist_ok`` keeps the levels it has.

    Returns
    -------
    zarr.Array
        The level-0 array, filled with zeros where nothing has been written.

    Raises
    ------
    OutputError
        If ``path`` exists and neither ``overwrite`` nor ``exist_ok`` is set, or exists with other
        shape/dtype/chunks/voxel size, or cannot be written.
    ValueError
        If shape, chunks or voxel size are invalid.
    """
    path = Path(path)
    spatial_shape = _check_shape(shape, "shape")
    spatial_chunks = _check_shape(chunks, "chunks")
    vs = as_voxel_size(voxel_size_um)
    dt = np.dtype(dtype)
    full_shape = spatial_shape if channels is None else (int(channels), *spatial_shape)
    full_chunks = spatial_chunks if channels is None else (int(channels), *spatial_chunks)
    full_chunks = tuple(min(c, s) for c, s in zip(full_chunks, full_shape, strict=True))
    if channels is not None and int(channels) < 1:
        raise ValueError(f"channels must be a positive integer; got {channels}")
    if pyramid is not None and (pyramid not in _PYRAMID_METHODS or channels is not None):
        raise ValueError(f"pyramid must be None or one of {sorted(_PYRAMID_METHODS)} (without channels); "
                         f"got {pyramid!r} with channels={channels}")

    if path.exists():
        if exist_ok and not overwrite:
            existing = open_image(path, mode="r+")
            _require_compatible(existing, full_shape, dt, full_chunks, vs, str(path))
            return existing.array
        if not overwrite:
            raise OutputError(
                f"{path} already exists; pass overwrite=True (CLI: --overwrite) to replace it, "
                "or choose another output path"
            )
        _remove_tree(path)
    if codec not in _CODECS:
        raise ValueError(f"codec must be one of {sorted(_CODECS)}; got {codec!r}")
    return _create_atomically(path, full_shape, full_chunks, dt, vs, channels=channels, name=name,
                              exist_ok=exist_ok and not overwrite, codec=codec, pyramid=pyramid)


_CODECS: dict[str, Callable[[np.dtype], Any]] = {
    "zstd": lambda dtype: "auto",
    "lz4": lambda dtype: [
        BloscCodec(cname="lz4", clevel=5, shuffle="shuffle" if dtype.itemsize > 1 else "noshuffle")
    ],
}


def _create_atomically(
    path: Path, shape: tuple[int, ...], chunks: tuple[int, ...], dtype: np.dtype, vs: Sequence[float], *,
    channels: int | None, name: str, exist_ok: bool, image_label: dict[str, Any] | None = None,
    codec: str = "zstd", pyramid: PyramidMethod | None = None, attributes: dict[str, Any] | None = None,
) -> zarr.Array:
    """Build the image group in ``.<name>.<pid>.creating`` beside ``path``, then rename it to ``path``.

    The rename is atomic: ``path`` either does not exist or holds complete metadata. Temporary
    directories left by killed creators of ``path`` are removed first (one writer per output).
    """
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.creating"):
        _remove_tree(stale)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.creating")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        group = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        has_c = channels is not None
        levels = plan_pyramid(shape, chunks=chunks, voxel_size_um=vs) if pyramid else ()
        for i, level_shape in enumerate([shape, *(lv.shape for lv in levels)]):
            group.create_array(str(i), shape=level_shape, chunks=_clip(chunks, level_shape), dtype=dtype,
                               fill_value=0, dimension_names=_axes(has_c),
                               compressors=_CODECS[codec](np.dtype(dtype)))
        _write_multiscales(group, vs, has_c, name=name, levels=levels, method=pyramid)
        if image_label is not None:
            group.attrs["ome"] = {**group.attrs["ome"], "image-label": image_label}
        if attributes:
            group.attrs.update(attributes)
        os.rename(tmp, path)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if exist_ok and (path / "zarr.json").is_file():  # created meanwhile by another writer
            existing = open_image(path, mode="r+")
            _require_compatible(existing, shape, dtype, chunks, vs, str(path))
            return existing.array
        raise write_error(f"cannot create OME-Zarr image at {path}", exc, path) from None
    return open_image(path, mode="r+").array


def create_labels(
    path: str | Path,
    name: str,
    *,
    dtype: Any = "uint32",
    chunks: Sequence[int] | None = None,
    overwrite: bool = False,
    exist_ok: bool = False,
    pyramid: bool = False,
) -> zarr.Array:
    """Create the label image ``labels/<name>`` of the OME-Zarr image at ``path``.

    The label array has the image's (z, y, x) shape and voxel size; ``chunks`` default to the
    image's spatial chunks. ``overwrite`` and ``exist_ok`` behave as in :func:`create_image`; ``pyramid``
    adds lower resolutions made by the mode (``pyramid="mode"`` of :func:`create_image`).

    Raises
    ------
    InputDataError
        If ``path`` is not an OME-Zarr image.
    TypeError
        If ``dtype`` is not an integer type.
    OutputError
        If the label image exists (without ``overwrite``/``exist_ok``) or is incompatible.
    """
    _check_name(name)
    dt = np.dtype(dtype)
    if dt.kind not in "iu":
        raise TypeError(f"label dtype must be an integer type (e.g. uint32, uint64); got {dt}")
    image = open_image(path)
    spatial_shape = image.spatial_shape
    spatial_chunks = _check_shape(chunks, "chunks") if chunks is not None else tuple(image.chunks[-3:])
    spatial_chunks = tuple(min(c, s) for c, s in zip(spatial_chunks, spatial_shape, strict=True))
    root = zarr.open_group(str(image.path), mode="r+")
    label_path = image.path / "labels" / name
    if label_path.exists():
        if exist_ok and not overwrite:
            existing = open_labels(image.path, name, mode="r+")
            _require_compatible(
                existing, spatial_shape, dt, spatial_chunks, image.voxel_size_um, str(label_path)
            )
            return existing.array
        if not overwrite:
            raise OutputError(
                f"label image {label_path} already exists; pass overwrite=True (CLI: --overwrite) "
                "to replace it"
            )
        _remove_tree(label_path)
    try:
        labels_group = root.require_group("labels")
        group = labels_group.create_group(name, overwrite=True)
        levels = (
            plan_pyramid(spatial_shape, chunks=spatial_chunks, voxel_size_um=image.voxel_size_um) if pyramid
            else ()
        )
        for i, level_shape in enumerate([spatial_shape, *(lv.shape for lv in levels)]):
            group.create_array(str(i), shape=level_shape, chunks=_clip(spatial_chunks, level_shape), dtype=dt,
                               fill_value=0, dimension_names=_SPATIAL)
        arr = group["0"]
        _write_multiscales(group, image.voxel_size_um, False, name=name, levels=levels,
                           method="mode" if pyramid else None)
        names = [n for n in labels_group.attrs.get("ome", {}).get("labels", []) if n != name]
        labels_group.attrs["ome"] = {"version": "0.5", "labels": names}
        write_label_metadata(labels_group, name, fmt=FormatV05(), source={"image": "../../"})
    except OSError as exc:
        raise write_error(f"cannot create label image {label_path}", exc, label_path) from None
    return arr


def create_label_image(
    path: str | Path,
    *,
    shape: Sequence[int],
    chunks: Sequence[int],
    voxel_size_um: Sequence[float],
    dtype: Any = "uint64",
    source: str | Path | URL | None = None,
    name: str = "segmentation",
    overwrite: bool = False,
    exist_ok: bool = False,
    pyramid: bool = False,
    attributes: dict[str, Any] | None = None,
) -> zarr.Array:
    """Create a standalone OME-Zarr 0.5 label image (a (z, y, x) integer image with ``image-label`` metadata).

    For results computed from a raw volume stored elsewhere (which is never written to): the
    ``image-label.source.image`` entry records ``source``, the image the labels lie on, as a path
    relative to the label image (``../raw.zarr``; an absolute ``source`` is made relative, as OME-Zarr
    0.5 asks), or as its URL where it is a :class:`~pipeline.io.location.URL`. Open it with
    :func:`open_image`. ``overwrite`` and ``exist_ok`` behave as in
    :func:`create_image`; ``pyramid`` adds lower resolutions made by the mode. ``attributes`` are stored
    in the group's attributes beside ``ome`` (e.g. ``{"neurorecon": {...}}``: how the labels were made);
    a reused image gets them too.

    Raises
    ------
    TypeError
        If ``dtype`` is not an integer type.
    OutputError
        As :func:`create_image`.
    """
    dt = np.dtype(dtype)
    if dt.kind not in "iu":
        raise TypeError(f"label dtype must be an integer type (e.g. uint32, uint64); got {dt}")
    path = Path(path)
    if isinstance(source, URL):  # a remote image: its URL (a URL is no path relative to the labels)
        source = str(source)
    elif source is not None and Path(source).is_absolute():
        source = os.path.relpath(Path(source).resolve(), path.absolute().parent.resolve() / path.name)
    image_label = {"version": "0.5", **({"source": {"image": str(source)}} if source else {})}
    if path.exists() and not overwrite:
        arr = create_image(path, shape=shape, dtype=dt, chunks=chunks, voxel_size_um=voxel_size_um, name=name,
                           exist_ok=exist_ok)
        group = zarr.open_group(str(path), mode="r+")
        ome = dict(group.attrs.get("ome", {}))
        if ome.get("image-label") != image_label:  # created by an older neurorecon, or the source moved
            group.attrs["ome"] = {**ome, "image-label": image_label}
        if attributes and any(group.attrs.get(k) != v for k, v in attributes.items()):
            group.attrs.update(attributes)
        return arr
    if path.exists():
        _remove_tree(path)
    spatial_shape = _check_shape(shape, "shape")
    spatial_chunks = tuple(
        min(c, s) for c, s in zip(_check_shape(chunks, "chunks"), spatial_shape, strict=True)
    )
    return _create_atomically(path, spatial_shape, spatial_chunks, dt, as_voxel_size(voxel_size_um),
                              channels=None, name=name, exist_ok=exist_ok, image_label=image_label,
                              pyramid="mode" if pyramid else None, attributes=attributes)


#: The attribute of an image group where neurorecon says how it made the image (e.g. a segmentation's
#: threshold and number of segments); outside the ``ome`` metadata, and not part of
#: :func:`image_fingerprint`.
PROVENANCE_KEY = "neurorecon"


#: The keys of :data:`PROVENANCE_KEY` that say what an image holds now (they go while it is rewritten);
#: the others (model, software version, ...) say how it is made and stay.
CONTENT_KEYS = ("threshold", "n_segments")


def write_provenance(path: str | Path, values: dict[str, Any] | None) -> None:
    """Record how the image at ``path`` was made (JSON values) in its group's attributes, beside what is
    there already; None removes the :data:`CONTENT_KEYS` (the image is being rewritten).

    Raises
    ------
    OutputError
        If the attributes cannot be written.
    """
    try:
        group = zarr.open_group(str(path), mode="r+")
        current = dict(group.attrs.get(PROVENANCE_KEY) or {})
        if values is None:
            wanted = {k: v for k, v in current.items() if k not in CONTENT_KEYS}
        else:
            wanted = {**current, **values}
        if wanted != current:
            group.attrs[PROVENANCE_KEY] = wanted
    except OSError as exc:
        raise write_error(f"cannot write the attributes of {path}", exc, path) from None


def read_provenance(path: str | Path) -> dict[str, Any]:
    """What :func:`write_provenance` recorded for the image at ``path`` (``{}`` if nothing)."""
    try:
        attrs = json.loads((Path(path) / "zarr.json").read_text()).get("attributes", {})
    except (OSError, ValueError):
        return {}
    value = attrs.get(PROVENANCE_KEY)
    return dict(value) if isinstance(value, dict) else {}


def open_image(path: str | Path | URL, *, mode: str = "r", setting: str | None = None) -> OmeArray:
    """Open the level-0 array of the OME-Zarr image at ``path``: a local path, or a URL (``s3://``,
    ``gs://``, ``https://``: :mod:`pipeline.io.location`), which is only ever read.

    ``setting`` names where the image came from (``segment.raw``) in the messages about a URL that
    cannot be read.

    Raises
    ------
    InputDataError
        If there is no Zarr group at ``path``, it has no OME multiscales metadata, its level-0 array
        is missing, its axes/scale are not (c,) z, y, x with positive sizes, or a spatial axis has no
        unit and a scale over :data:`MAX_UNITLESS_SCALE` (probably nm, read as µm); for a URL also if it
        cannot be reached or read (no such bucket, no credentials, no connection).
    OutputError
        If a URL is opened with a mode other than ``"r"``.
    """
    return _open_group_image(as_location(path), mode=mode, what="OME-Zarr image", setting=setting)


def open_levels(image: OmeArray) -> list[Any]:
    """The arrays of every level of ``image`` (:func:`open_image`), level 0 first, read-only: what a
    viewer needs to show a pyramid. A level the multiscales metadata lists but the store lacks ends the
    list (a pyramid still being written)."""
    group = open_group(image.path, mode="r")
    levels = [image.array]
    for dataset in _multiscales(image.path)[0]["datasets"][1:]:
        try:
            levels.append(group[dataset["path"]])
        except KeyError:
            break
    return levels


def image_fingerprint(image: OmeArray) -> dict[str, Any]:
    """What identifies an image wherever it lies (a run's record of an input outside the run directory).

    Shape, dtype, chunks, voxel size (µm) and the sha256 of the level-0 array's metadata and the image's
    multiscales metadata: never the path (the image may move with its run) nor the voxels (cheap on any
    size). Two copies of one image have the same fingerprint.
    """
    meta = {"array": image.array.metadata.to_dict(), "multiscales": _multiscales(image.path)}
    digest = hashlib.sha256(json.dumps(meta, sort_keys=True, default=str).encode()).hexdigest()
    return {"shape": list(image.shape), "dtype": str(image.dtype), "chunks": [int(c) for c in image.chunks],
            "voxel_size_um": list(image.voxel_size_um), "metadata_sha256": digest}


def _multiscales(path: Location) -> Any:
    attrs = read_json(path / "zarr.json").get("attributes", {})
    return (attrs.get("ome") or {}).get("multiscales") or attrs.get("multiscales")


def open_labels(path: str | Path | URL, name: str, *, mode: str = "r") -> OmeArray:
    """Open the label image ``labels/<name>`` of the OME-Zarr image at ``path`` (a local path or a URL).

    Raises
    ------
    InputDataError
        If the label image does not exist (the message lists those that do) or is malformed.
    """
    _check_name(name)
    path = as_location(path)
    label_path = path / "labels" / name
    if not is_file(label_path / "zarr.json"):
        have = list_labels(path) if is_file(path / "zarr.json") else []
        listing = ", ".join(have) if have else "none"
        raise InputDataError(f"no label image '{name}' in {path} (label images present: {listing})")
    out = _open_group_image(label_path, mode=mode, what="OME-Zarr label image")
    if out.dtype.kind not in "iu":
        raise InputDataError(f"label image {label_path} has dtype {out.dtype}; label images must be integer")
    return out


class CheckedReader:
    """Read-only view of a Zarr array whose reads name the chunks at fault when a chunk cannot be decoded.

    A truncated or overwritten chunk makes the codec raise a bare ``RuntimeError`` ("Zstd decompression
    error"); this turns it into an :class:`InputDataError` naming the store, the region and its chunk
    indices. For a store at a URL, a network or store failure (no connection, a timeout, an error
    answer) is an ``OSError`` naming the URL and the region instead: worth trying the block again
    (:func:`flows.stages.runner.worth_retrying`). Attributes (``shape``, ``dtype``, ``chunks``, ...) are
    the array's.
    """

    def __init__(self, array: zarr.Array, path: Location) -> None:
        self._array = array
        self._path = path

    def __getattr__(self, name: str) -> Any:
        return getattr(self._array, name)

    def __getitem__(self, key: Any) -> Any:
        try:
            return self._array[key]
        except (IndexError, TypeError):
            raise
        except Exception as exc:  # noqa: BLE001 - codecs raise RuntimeError, ValueError, OSError, ...
            if isinstance(self._path, URL) and is_transient(exc):
                raise OSError(f"cannot read {self._path} (region {key!r}): {type(exc).__name__}: {exc}; the "
                              "store did not answer as it should (network or store error)") from None
            keys = key if isinstance(key, tuple) else (key,)
            spans = []
            for k, size, chunk in zip(keys, self._array.shape, self._array.chunks, strict=False):
                if isinstance(k, slice):
                    start, stop, _ = k.indices(size)
                    spans.append(f"{start // chunk}..{max(stop - 1, start) // chunk}")
                else:
                    spans.append(str(int(k) // chunk) if isinstance(k, int | np.integer) else "?")
            raise InputDataError(
                f"cannot read {self._path} (region {key!r}, chunk indices {', '.join(spans)}): "
                f"{type(exc).__name__}: {exc}; a chunk there is corrupt or unreadable: restore it from a "
                "copy or rewrite the volume"
            ) from None


def list_labels(path: str | Path | URL) -> list[str]:
    """Names of the label images of the OME-Zarr image at ``path`` (empty if none)."""
    labels = as_location(path) / "labels"
    if not is_file(labels / "zarr.json"):
        return []
    group = open_group(labels, mode="r")
    return list(group.attrs.get("ome", {}).get("labels", []))


def write_region(array: zarr.Array, region: Sequence[slice], data: np.ndarray) -> None:
    """Write ``data`` into ``array[region]``; the region must be aligned to the chunk grid.

    Each slice's start must be a multiple of the chunk size along its axis, and its stop a multiple
    too or the array's end, so a region covers whole chunks and two writers of disjoint regions
    never touch the same chunk.

    Raises
    ------
    ValueError
        If the region is not aligned, is out of bounds, or ``data`` has another shape.
    DiskFullError
        If the disk (or quota) is full.
    """
    region = tuple(region)
    if len(region) != array.ndim:
        raise ValueError(f"region has {len(region)} slices but the array has {array.ndim} dimensions")
    want = []
    for axis, (sl, size, chunk) in enumerate(zip(region, array.shape, array.chunks, strict=True)):
        start, stop, step = sl.indices(size)
        if step != 1 or sl.start is not None and sl.start < 0 or sl.stop is not None and sl.stop > size:
            raise ValueError(f"region {region} is out of bounds for array shape {array.shape} (axis {axis})")
        if start % chunk or (stop % chunk and stop != size):
            raise ValueError(
                f"region {region} is not aligned to the chunk grid {array.chunks} along axis {axis}: "
                f"start and stop must be multiples of {chunk} (stop may be the array end {size})"
            )
        want.append(stop - start)
    if tuple(data.shape) != tuple(want):
        raise ValueError(f"data has shape {data.shape} but region {region} has shape {tuple(want)}")
    try:
        array[region] = data
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        where = getattr(array.store, "root", None) or exc.filename or "."
        raise disk_full_error(f"cannot write region {region} of {where}", where) from exc


def write_image(
    path: str | Path,
    data: np.ndarray,
    *,
    voxel_size_um: Sequence[float],
    chunks: Sequence[int] | None = None,
    name: str = "image",
    overwrite: bool = False,
) -> OmeArray:
    """Write an in-memory (z, y, x) or (c, z, y, x) array as a new OME-Zarr image."""
    data = np.asarray(data)
    if data.ndim not in (3, 4):
        raise ValueError(f"data has ndim={data.ndim}; expected (z, y, x) or (c, z, y, x)")
    spatial = data.shape[-3:]
    chunks = tuple(chunks) if chunks is not None else tuple(min(s, 128) for s in spatial)
    arr = create_image(
        path, shape=spatial, dtype=data.dtype, chunks=chunks, voxel_size_um=voxel_size_um, name=name,
        channels=data.shape[0] if data.ndim == 4 else None, overwrite=overwrite,
    )
    arr[...] = data
    return open_image(path)


def write_labels(
    path: str | Path,
    name: str,
    data: np.ndarray,
    *,
    chunks: Sequence[int] | None = None,
    overwrite: bool = False,
) -> OmeArray:
    """Write an in-memory (z, y, x) integer array as the label image ``labels/<name>``."""
    data = np.asarray(data)
    image = open_image(path)
    if data.shape != image.spatial_shape:
        raise ValueError(
            f"labels have shape {data.shape} but the image {path} has (z, y, x) shape {image.spatial_shape}"
        )
    arr = create_labels(path, name, dtype=data.dtype, chunks=chunks, overwrite=overwrite)
    arr[...] = data
    return open_labels(path, name)


# --------------------------------------------------------------------------------------------------


def _axes(channels: bool) -> tuple[str, ...]:
    return ("c", *_SPATIAL) if channels else _SPATIAL


def _axes_meta(channels: bool) -> list[dict[str, str]]:
    spatial = [{"name": a, "type": "space", "unit": "micrometer"} for a in _SPATIAL]
    return ([{"name": "c", "type": "channel"}] if channels else []) + spatial


def _datasets(
    vs: Sequence[float], channels: bool, levels: Sequence[PyramidLevel] = ()
) -> list[dict[str, Any]]:
    """Level 0 (``scale`` = voxel size) and the lower levels (``scale`` and ``translation``, µm)."""
    lead = [1.0] if channels else []
    out = [{"path": "0", "coordinateTransformations": [
        {"type": "scale", "scale": lead + [float(v) for v in vs]}]}]
    for i, lv in enumerate(levels, start=1):
        out.append({"path": str(i), "coordinateTransformations": [
            {"type": "scale", "scale": lead + [float(v) for v in lv.scale_um]},
            {"type": "translation", "translation": [0.0] * len(lead) + [
                float(t) for t in lv.translation_um]},
        ]})
    return out


def _write_multiscales(
    group: zarr.Group, vs: Sequence[float], channels: bool, *, name: str, levels: Sequence[PyramidLevel],
    method: PyramidMethod | None,
) -> None:
    """The multiscales metadata (ome-zarr-py's writer checks it), with the downsampling ``type``."""
    extra: dict[str, Any] = {}
    if levels and method is not None:
        extra["metadata"] = {"description": _PYRAMID_METHODS[method], "method": f"neurorecon {method}",
                             "version": __version__}
    write_multiscales_metadata(group, _datasets(vs, channels, levels), fmt=FormatV05(),
                               axes=_axes_meta(channels), name=name, **extra)
    if levels and method is not None:
        ome = dict(group.attrs["ome"])
        group.attrs["ome"] = {**ome, "multiscales": [{**ome["multiscales"][0], "type": method}]}


def _clip(chunks: Sequence[int], shape: Sequence[int]) -> tuple[int, ...]:
    return tuple(min(int(c), int(s)) for c, s in zip(chunks, shape, strict=True))


def _check_shape(shape: Any, name: str) -> tuple[int, int, int]:
    try:
        values = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be three positive integers (z, y, x); got {shape!r}") from None
    if len(values) != 3 or min(values) < 1:
        raise ValueError(f"{name} must be three positive integers (z, y, x); got {values}")
    return values  # type: ignore[return-value]


def _check_name(name: str) -> None:
    if not name or "/" in name or name.startswith(".") or name != name.strip():
        raise ValueError(f"label name must be a plain non-empty name without '/'; got {name!r}")


def _require_compatible(
    existing: OmeArray, shape: tuple[int, ...], dtype: np.dtype, chunks: tuple[int, ...],
    vs: Sequence[float], where: str,
) -> None:
    diffs = []
    if existing.shape != tuple(shape):
        diffs.append(f"shape {existing.shape} != {tuple(shape)}")
    if existing.dtype != dtype:
        diffs.append(f"dtype {existing.dtype} != {dtype}")
    if existing.chunks != tuple(chunks):
        diffs.append(f"chunks {existing.chunks} != {tuple(chunks)}")
    if not np.allclose(existing.voxel_size_um, vs, rtol=1e-6):
        diffs.append(f"voxel_size_um {existing.voxel_size_um} != {tuple(vs)}")
    if diffs:
        raise OutputError(
            f"{where} exists with different metadata ({'; '.join(diffs)}); refusing to mix outputs. "
            "Use another output path or overwrite=True (CLI: --overwrite)"
        )


def _remove_tree(path: Path) -> None:
    try:
        shutil.rmtree(path)
    except OSError as exc:
        raise OutputError(f"cannot remove existing {path}: {exc}") from None


#: A scale above this on a spatial axis without a unit is refused: as µm it would be a voxel of over 0.1 mm,
#: as nm (or another unit) it is an ordinary voxel size read 1000x too large.
MAX_UNITLESS_SCALE = 100.0


def _check_unitless_scale(
    path: Location, what: str, names: Sequence[str], scale: Sequence[Any], units: Sequence[str | None]
) -> None:
    """Refuse spatial axes without a unit whose scale is implausible in µm (> :data:`MAX_UNITLESS_SCALE`)."""
    try:
        spatial = [(n, float(s), u) for n, s, u in zip(names, scale, units, strict=True) if n != "c"]
    except (TypeError, ValueError):
        return  # a malformed scale is refused with the voxel size
    unitless = [n for n, _, u in spatial if not u]
    big = [n for n, s, u in spatial if not u and s > MAX_UNITLESS_SCALE]
    if big:
        found = tuple(s for _, s, _ in spatial)
        axes = f"axis {unitless[0]} has" if len(unitless) == 1 else f"axes {', '.join(unitless)} have"
        raise InputDataError(
            f"{what} {path}: {axes} no unit and the scale is {found} (z, y, x); read as micrometres "
            f"that is over {MAX_UNITLESS_SCALE:g} µm per voxel, so the scale is probably in nanometres. "
            'Add the unit to each axis of its multiscales metadata: "unit": "nanometer" (or '
            '"unit": "micrometer" if the scale really is in µm)'
        )


def _remote_metadata(url: URL, *, what: str, setting: str | None) -> dict[str, Any]:
    """The ``zarr.json`` of the group at ``url``; every failure one :class:`InputDataError` naming
    ``setting`` (or ``what``), the URL and the cause (no such bucket or object, no credentials, ...)."""
    named = f"{setting} {url}" if setting else f"{what} {url}"
    try:
        metadata = read_json(url / "zarr.json", what=setting or what)
    except FileNotFoundError as exc:
        if "bucket" in str(exc.strerror).lower():  # S3: "The specified bucket does not exist"
            raise InputDataError(
                f"{named} cannot be read: {exc.strerror}; check the bucket's name (and, for an S3-compatible "
                "server, its endpoint: AWS_ENDPOINT_URL or FSSPEC_S3_ENDPOINT_URL)"
            ) from None
        try:
            v2 = is_file(url / ".zgroup", what=setting or what)
        except NeuroreconError:
            v2 = False
        hint = " (a Zarr v2 store? convert it to Zarr v3 / OME-Zarr 0.5)" if v2 else ""
        raise InputDataError(
            f"{named}: no {what} there ({url / 'zarr.json'} does not exist): it is not a Zarr v3 group{hint}"
        ) from None
    except ValueError as exc:
        if isinstance(exc, NeuroreconError):
            raise
        raise InputDataError(f"{named}: cannot read {url / 'zarr.json'}: {exc}; the store's metadata is "
                             "damaged") from None
    if not isinstance(metadata, dict):
        raise InputDataError(f"{named}: {url / 'zarr.json'} is not Zarr metadata; the store is damaged")
    return metadata


def _open_group_image(path: Location, *, mode: str, what: str, setting: str | None = None) -> OmeArray:
    metadata = _remote_metadata(path, what=what, setting=setting) if isinstance(path, URL) else None
    if metadata is None:  # a local store: its files
        if not (path / "zarr.json").is_file():
            hint = (
                " (a Zarr v2 store? convert it to Zarr v3 / OME-Zarr 0.5)" if (path / ".zgroup").is_file()
                else ""
            )
            raise InputDataError(f"no {what} at {path}: it is not a Zarr v3 group{hint}")
        try:
            metadata = json.loads((path / "zarr.json").read_text())
        except (OSError, ValueError) as exc:
            raise InputDataError(
                f"cannot read {path / 'zarr.json'}: {exc}; the store's metadata is damaged"
            ) from None
    if metadata.get("node_type") == "array":
        raise InputDataError(
            f"{path} is a plain Zarr array, not an {what} (a group with OME 'multiscales' metadata); "
            "write it as OME-Zarr 0.5, e.g. with pipeline.io.omezarr.write_image or ome-zarr-py"
        )
    try:
        group = open_group(path, mode=mode, what=setting or what)
    except (OSError, ValueError) as exc:
        if isinstance(exc, NeuroreconError):
            raise
        raise InputDataError(f"cannot open {what} at {path}: {exc}") from None
    ome = group.attrs.get("ome")
    multiscales = (ome or {}).get("multiscales") or group.attrs.get("multiscales")
    if not multiscales:
        raise InputDataError(f"{path} has no OME-Zarr 'multiscales' metadata; is it an OME-Zarr 0.5 image?")
    ms = multiscales[0]
    axes = ms.get("axes", [])
    names = tuple(a["name"] if isinstance(a, dict) else str(a) for a in axes)
    if names not in (_SPATIAL, ("c", *_SPATIAL)):
        raise InputDataError(f"{path} has axes {names}; expected (z, y, x) or (c, z, y, x)")
    datasets = ms.get("datasets") or []
    if not datasets:
        raise InputDataError(f"{path} multiscales metadata lists no datasets")
    level0 = datasets[0]
    try:
        arr = group[level0["path"]]
    except KeyError:
        raise InputDataError(f"{what} {path} is missing its level-0 array '{level0['path']}'") from None
    if not isinstance(arr, zarr.Array):
        raise InputDataError(f"{path}/{level0['path']} is not an array")
    scale = [1.0] * len(names)
    for t in level0.get("coordinateTransformations", []):
        if t.get("type") == "scale":
            scale = list(t["scale"])
    given = [a.get("unit") if isinstance(a, dict) else None for a in axes]
    _check_unitless_scale(path, what, names, scale, given)
    units = [u or "micrometer" for u in given]  # an axis without a unit: its scale is read as µm
    vs = []
    for name, s, unit in zip(names, scale, units, strict=True):
        if name == "c":
            continue
        if unit not in _UNIT_TO_UM:
            raise InputDataError(
                f"{path}: axis {name} has unit {unit!r}; expected one of {sorted(_UNIT_TO_UM)}"
            )
        vs.append(float(s) * _UNIT_TO_UM[unit])
    try:
        voxel_size = as_voxel_size(vs, name=f"voxel size (scale) of {path}")
    except ValueError as exc:
        raise InputDataError(str(exc)) from None
    return OmeArray(arr, voxel_size, names, path, str(ms.get("name", path.name)))  # type: ignore[arg-type]
