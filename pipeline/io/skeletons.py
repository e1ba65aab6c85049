"""Skeleton outputs: a folder of SWC files, neuroglancer precomputed skeletons, and the lengths table.

Layout written by ``neurorecon skeletonize`` (see :mod:`flows.stages.skeletonize`)::

    RUN/skeletons/<label>.swc              one SWC file per object, µm, volume frame (x y z in the file)
    RUN/skeletons_precomputed/info         {"@type": "neuroglancer_skeletons", ...}
    RUN/skeletons_precomputed/<label>      one binary skeleton per object (encoding below), or
    RUN/skeletons_precomputed/<n>.shard    with sharded_precomputed: those of 2,048 labels per file
    RUN/skeletons_precomputed/segment_properties/info   every object's name and lengths (below)
    RUN/lengths.csv                        label, length_um, cable_length_um, n_voxels, touches_border,
                                           n_endpoints

Neuroglancer precomputed skeletons (unsharded)
----------------------------------------------
The ``info`` file holds ``"@type": "neuroglancer_skeletons"``, ``"transform"`` (a row-major 3 x 4
affine from stored vertex coordinates to nanometres: the identity here, because vertices are stored
in nm) and ``"vertex_attributes": [{"id": "radius", "data_type": "float32", "num_components": 1}]``
(radius in nm). Each object's file is little-endian::

    uint32 num_vertices, uint32 num_edges,
    float32 vertices[num_vertices][3]   (x, y, z) in nm, voxel centres
    uint32  edges[num_edges][2]         vertex indices
    float32 radius[num_vertices]        nm

This is osteoid's ``Skeleton.to_precomputed()`` encoding, which writes it (and
``Skeleton.from_precomputed`` reads it).

Sharded (``skeletonize.sharded_precomputed``)
---------------------------------------------
For millions of objects the folder holds shard files instead (:func:`precomputed_sharding`): the
``info`` adds ``"sharding"``, neuroglancer's ``neuroglancer_uint64_sharded_v1`` with the identity hash,
``preshift_bits`` 6 and ``minishard_bits`` 5, so that ``<shard>.shard`` (hexadecimal) holds the skeletons
(same encoding, gzipped) of 2,048 consecutive labels. tensorstore's ``neuroglancer_uint64_sharded`` driver
writes and reads them (:func:`write_precomputed_shard`); the segment properties list the objects.

Segment properties
------------------
With the objects of ``lengths.csv``, the ``info`` file also names ``"segment_properties":
"segment_properties"``, a folder whose ``info`` is neuroglancer's inline segment-property map
(:func:`segment_properties`): ``"@type": "neuroglancer_segment_properties"``, the ids of every object
(decimal strings) and, in the same order, a ``label`` (its length, shown on hover and in the segment
list) and the numbers ``length_um`` and ``cable_length_um`` (µm, float32). A viewer that loads the
skeletons gets them. A listed object without a skeleton (a few voxels) gets an empty one (no vertices),
so a viewer finds a file for every object it shows (neuroglancer waits forever on a missing one);
:func:`read_precomputed_skeletons` leaves empty skeletons out.

Neuroglancer reads the folder over HTTP, never from a ``file://`` URL (a browser refuses those): ``neurorecon
view RUN`` serves the run directory and opens it with the segmentation (:mod:`flows.view`); any static
HTTP server that sends ``Access-Control-Allow-Origin: *`` works too, with the source
``precomputed://http://HOST:PORT/skeletons_precomputed`` in a segmentation layer.

In memory a skeleton is a ``networkx.Graph`` with ``pos_um`` (z, y, x) and ``radius_um`` node
attributes, as :func:`pipeline.skeleton.teasar` returns; the axis reordering to x, y, z and the
µm -> nm conversion happen only here.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
from osteoid import Skeleton

from pipeline.errors import InputDataError, OutputError
from pipeline.io.atomic import atomic_file, write_atomic
from pipeline.io.diskspace import write_error
from pipeline.io.swc import read_swc, write_swc
from pipeline.skeleton.lengths import ObjectRow

__all__ = [
    "JOINS_COLUMNS",
    "LENGTHS_COLUMNS",
    "PRECOMPUTED_INFO",
    "SEGMENT_PROPERTIES_DIR",
    "precomputed_sharding",
    "read_joins_csv",
    "read_lengths_csv",
    "read_precomputed_skeletons",
    "read_swc_folder",
    "prepare_dir",
    "segment_properties",
    "shard_file",
    "shard_numbers",
    "write_joins_csv",
    "write_lengths_csv",
    "write_precomputed_info",
    "write_precomputed_objects",
    "write_precomputed_shard",
    "write_precomputed_skeletons",
    "write_swc_files",
    "write_swc_folder",
]

#: Columns of ``lengths.csv`` written by :func:`write_lengths_csv` (the fields of ``ObjectRow``).
LENGTHS_COLUMNS = ("label", "length_um", "cable_length_um", "n_voxels", "touches_border", "n_endpoints")

#: The ``info`` file of a precomputed skeleton folder written here.
PRECOMPUTED_INFO = {
    "@type": "neuroglancer_skeletons",
    "transform": [1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0],
    "vertex_attributes": [{"id": "radius", "data_type": "float32", "num_components": 1}],
}

#: The segment-property folder inside a precomputed skeleton folder (named by its ``info`` file).
SEGMENT_PROPERTIES_DIR = "segment_properties"

_UM_TO_NM = 1000.0


def prepare_dir(directory: Path, *, overwrite: bool, what: str) -> None:
    """Create ``directory``; an existing non-empty one is emptied with ``overwrite``, else refused."""
    if directory.exists():
        if not overwrite and any(directory.iterdir()):
            raise OutputError(
                f"{what} folder {directory} already exists and is not empty; pass overwrite=True "
                "(CLI: --overwrite) to replace it, or choose another output directory"
            )
        if overwrite:
            shutil.rmtree(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(f"cannot create {what} folder {directory}", exc, directory) from None


def _label_of(name: str) -> int | None:
    return int(name) if name.isdigit() else None


# -- SWC folder ---------------------------------------------------------------------------------------


def write_swc_folder(
    directory: str | Path,
    graphs: Mapping[int, nx.Graph],
    *,
    overwrite: bool = False,
    comments: Iterable[str] = (),
) -> list[Path]:
    """Write one ``<label>.swc`` per skeleton (µm, parents before children).

    Parameters
    ----------
    directory : str or Path
        The folder to create (e.g. ``RUN/skeletons``).
    graphs : mapping of int to networkx.Graph
        Label -> skeleton with ``pos_um`` (z, y, x) and ``radius_um`` node attributes; each must be a
        forest (kimimaro skeletons are).
    overwrite : bool
        Replace an existing non-empty folder.
    comments : iterable of str
        Header comment lines written to every file (e.g. the source and voxel size).

    Returns
    -------
    list of Path
        The files written, in label order.

    Raises
    ------
    OutputError
        If the folder exists and is not empty (without ``overwrite``) or cannot be written.
    ValueError
        If a skeleton has a cycle or a node without ``pos_um``.
    """
    directory = Path(directory)
    prepare_dir(directory, overwrite=overwrite, what="SWC")
    return write_swc_files(directory, graphs, comments=comments)


def write_swc_files(directory: str | Path, graphs: Mapping[int, nx.Graph], *,
                    comments: Iterable[str] = ()) -> list[Path]:
    """Write ``<label>.swc`` for each skeleton of ``graphs`` into ``directory`` (which must exist), as
    :func:`write_swc_folder` does, leaving its other files: shards of the objects can be written by
    different tasks into one folder. Returns the files, in label order."""
    header = list(comments)
    written = []
    for label in sorted(graphs):
        path = Path(directory) / f"{int(label)}.swc"
        write_swc(path, graphs[label], comments=[*header, f"label {int(label)}"])
        written.append(path)
    return written


def read_swc_folder(directory: str | Path) -> dict[int, nx.Graph]:
    """Read every ``<label>.swc`` of a folder (other files are ignored).

    Raises
    ------
    InputDataError
        If the folder does not exist, holds no ``<integer>.swc`` file, or a file is malformed.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise InputDataError(f"SWC folder {directory} does not exist; expected a folder of <label>.swc files")
    graphs = {}
    for path in sorted(directory.glob("*.swc")):
        label = _label_of(path.stem)
        if label is not None:
            graphs[label] = read_swc(path)
    if not graphs:
        raise InputDataError(f"SWC folder {directory} holds no <label>.swc file (e.g. 12.swc)")
    return dict(sorted(graphs.items()))


# -- neuroglancer precomputed -------------------------------------------------------------------------------


def _to_osteoid(graph: nx.Graph, label: int) -> Skeleton:
    nodes = list(graph.nodes)
    index = {n: i for i, n in enumerate(nodes)}
    zyx_um = np.array([graph.nodes[n]["pos_um"] for n in nodes], dtype=np.float64).reshape(-1, 3)
    vertices = np.ascontiguousarray(zyx_um[:, ::-1] * _UM_TO_NM, dtype="<f4")
    radii = np.array([graph.nodes[n].get("radius_um", 0.0) for n in nodes], dtype=np.float64) * _UM_TO_NM
    edges = np.array([(index[a], index[b]) for a, b in graph.edges if a != b], dtype="<u4").reshape(-1, 2)
    skeleton = Skeleton(
        vertices,
        edges,
        segid=int(label),
        space="physical",
        extra_attributes=[dict(a) for a in PRECOMPUTED_INFO["vertex_attributes"]],  # type: ignore[arg-type]
    )
    skeleton.radius = np.ascontiguousarray(radii, dtype="<f4")
    return skeleton


def write_precomputed_skeletons(
    directory: str | Path,
    graphs: Mapping[int, nx.Graph],
    *,
    overwrite: bool = False,
    objects: Iterable[ObjectRow] | None = None,
) -> list[Path]:
    """Write skeletons as an unsharded neuroglancer precomputed skeleton folder (see the module docstring).

    Parameters
    ----------
    directory : str or Path
        The folder to create (e.g. ``RUN/skeletons_precomputed``).
    graphs : mapping of int to networkx.Graph
        Label -> skeleton with ``pos_um`` (z, y, x) and optionally ``radius_um`` node attributes.
    overwrite : bool
        Replace an existing non-empty folder.
    objects : iterable of ObjectRow, optional
        The rows of ``lengths.csv``: written as the folder's segment properties
        (:func:`segment_properties`, ``segment_properties/info``) and named in its ``info``. Objects
        without a skeleton are listed too, and get an empty skeleton file.

    Returns
    -------
    list of Path
        The ``info`` file, the segment properties' ``info`` (with ``objects``), then the per-label files
        in label order.

    Raises
    ------
    OutputError
        If the folder exists and is not empty (without ``overwrite``) or cannot be written.
    ValueError
        If a label is negative or a node lacks ``pos_um``.
    """
    directory = Path(directory)
    properties = segment_properties(objects) if objects is not None else None
    listed = [int(i) for i in properties["inline"]["ids"]] if properties is not None else []
    _check_graphs(graphs)
    prepare_dir(directory, overwrite=overwrite, what="precomputed skeleton")
    written = write_precomputed_info(directory, properties=properties)
    return written + write_precomputed_objects(directory, graphs,
                                               empty=[label for label in listed if label not in graphs])


def _check_graphs(graphs: Mapping[int, nx.Graph]) -> None:
    for label in graphs:
        if int(label) < 0:
            raise ValueError(f"skeleton labels must be non-negative integers; got {label}")
        missing = [n for n, d in graphs[label].nodes(data=True) if "pos_um" not in d]
        if missing:
            raise ValueError(f"skeleton {label} has nodes {missing[:5]} without 'pos_um' (z, y, x) µm")


def write_precomputed_info(
    directory: str | Path, *, properties: dict[str, Any] | None = None, sharding: dict[str, Any] | None = None
) -> list[Path]:
    """Write the ``info`` of a precomputed skeleton folder (which must exist) and, with ``properties``
    (:func:`segment_properties`), its segment properties; with ``sharding`` (:func:`precomputed_sharding`)
    the folder is sharded. Returns the files written."""
    directory = Path(directory)
    info = dict(PRECOMPUTED_INFO)
    if properties is not None:
        info["segment_properties"] = SEGMENT_PROPERTIES_DIR
    if sharding is not None:
        info["sharding"] = sharding
    written = [directory / "info"]
    try:
        write_atomic(written[0], (json.dumps(info, indent=1) + "\n").encode())
        if properties is not None:
            written.append(directory / SEGMENT_PROPERTIES_DIR / "info")
            written[-1].parent.mkdir(exist_ok=True)
            write_atomic(written[-1], (json.dumps(properties, indent=1, ensure_ascii=False) + "\n").encode())
    except OSError as exc:
        raise write_error(f"cannot write precomputed skeletons to {directory}", exc, directory) from None
    return written


def write_precomputed_objects(
    directory: str | Path, graphs: Mapping[int, nx.Graph], *, empty: Iterable[int] = ()
) -> list[Path]:
    """Write the skeleton file of each label of ``graphs`` into a precomputed folder (which must exist),
    and an empty skeleton file for each label of ``empty`` (listed objects without a skeleton); returns
    the files, in label order. Each file is written alone: shards of the objects can be written by
    different tasks into one folder (:func:`write_precomputed_info` writes its ``info``)."""
    directory = Path(directory)
    _check_graphs(graphs)
    written = []
    try:
        for label, graph in sorted({**{int(e): nx.Graph() for e in empty}, **graphs}.items()):
            path = directory / str(int(label))
            write_atomic(path, _to_osteoid(graph, int(label)).to_precomputed())
            written.append(path)
    except OSError as exc:
        raise write_error(f"cannot write precomputed skeletons to {directory}", exc, directory) from None
    return written


#: Labels per shard file of sharded precomputed skeletons: 2 ** (PRESHIFT_BITS + MINISHARD_BITS)
#: consecutive labels (a minishard holds 2 ** PRESHIFT_BITS of them).
PRESHIFT_BITS, MINISHARD_BITS = 6, 5
#: At most 2 ** MAX_SHARD_BITS shard files; labels beyond share them (the identity hash wraps around).
MAX_SHARD_BITS = 20


def precomputed_sharding(max_label: int) -> dict[str, Any]:
    """The sharding of a precomputed skeleton folder whose labels are at most ``max_label``.

    Neuroglancer's ``neuroglancer_uint64_sharded_v1`` with the identity hash: a shard file holds the
    skeletons of 2 ** (:data:`PRESHIFT_BITS` + :data:`MINISHARD_BITS`) = 2,048 consecutive labels
    (:func:`shard_numbers`), gzipped, so that a million objects make about 500 files instead of a
    million; ``shard_bits`` is the fewest that give each label range a file of its own (at most
    :data:`MAX_SHARD_BITS`).

    Examples
    --------
    >>> spec = precomputed_sharding(5000)
    >>> spec["shard_bits"], spec["hash"]
    (2, 'identity')
    """
    if max_label < 0:
        raise ValueError(f"skeleton labels must be non-negative integers; got {max_label}")
    shard_bits = min(int(max_label >> (PRESHIFT_BITS + MINISHARD_BITS)).bit_length(), MAX_SHARD_BITS)
    return {"@type": "neuroglancer_uint64_sharded_v1", "preshift_bits": PRESHIFT_BITS, "hash": "identity",
            "minishard_bits": MINISHARD_BITS, "shard_bits": shard_bits, "minishard_index_encoding": "gzip",
            "data_encoding": "gzip"}


def shard_numbers(labels: np.ndarray, sharding: Mapping[str, Any]) -> np.ndarray:
    """The shard file (its number) of each label under an identity-hash ``sharding``."""
    if sharding.get("hash") != "identity":
        raise ValueError(f"only the identity hash is supported; got {sharding.get('hash')!r}")
    hashed = np.asarray(labels, dtype=np.uint64) >> np.uint64(sharding["preshift_bits"])
    return (hashed >> np.uint64(sharding["minishard_bits"])) & np.uint64((1 << sharding["shard_bits"]) - 1)


def shard_file(directory: str | Path, shard: int, sharding: Mapping[str, Any]) -> Path:
    """The file of shard number ``shard``: its number in hexadecimal, zero-padded to a digit per 4 shard
    bits, ``.shard``."""
    width = -(-int(sharding["shard_bits"]) // 4)
    return Path(directory) / f"{int(shard):0{width}x}.shard"


def _sharded_store(directory: Path, sharding: Mapping[str, Any]) -> Any:
    import tensorstore as ts

    return ts.KvStore.open({"driver": "neuroglancer_uint64_sharded", "base": f"file://{directory.resolve()}/",
                            "metadata": dict(sharding)}).result()


def write_precomputed_shard(
    directory: str | Path, graphs: Mapping[int, nx.Graph], *, sharding: Mapping[str, Any], shard: int
) -> Path:
    """Write the shard file ``shard`` of a sharded precomputed folder (which must exist) with the skeletons
    ``graphs`` (every label of that shard; an empty graph gives an empty skeleton). The file is replaced
    whole (tensorstore's ``neuroglancer_uint64_sharded`` driver writes it, in one transaction); returns it.

    Raises
    ------
    ValueError
        If a label belongs to another shard, or a node lacks ``pos_um``.
    OutputError
        If the file cannot be written.
    """
    import tensorstore as ts

    directory = Path(directory)
    _check_graphs(graphs)
    labels = np.fromiter(graphs, np.uint64, len(graphs))
    other = labels[shard_numbers(labels, sharding) != np.uint64(shard)]
    if len(other):
        raise ValueError(f"labels {other[:5].tolist()} are not in shard {shard}")
    path = shard_file(directory, shard, sharding)
    try:
        path.unlink(missing_ok=True)  # the task owns the whole file: no merge with an older one
        store = _sharded_store(directory, sharding)
        txn = ts.Transaction()
        for label, graph in sorted(graphs.items()):
            encoded = _to_osteoid(graph, int(label)).to_precomputed()
            store.with_transaction(txn)[int(label).to_bytes(8, "big")] = encoded  # keys: big-endian uint64
        txn.commit_async().result()
    except (OSError, ValueError) as exc:
        raise write_error(f"cannot write precomputed skeleton shard {path}", exc, directory) from None
    return path


def segment_properties(objects: Iterable[ObjectRow]) -> dict[str, Any]:
    """Neuroglancer's inline segment-property map of the objects of ``lengths.csv``.

    Ids in label order, as decimal strings (uint64); properties ``label`` (the object's length, and
    whether it touches the volume border: its length is then a lower bound), ``length_um`` and
    ``cable_length_um`` (µm, float32, as in ``lengths.csv``).

    Examples
    --------
    >>> info = segment_properties([ObjectRow(12, 45.6273, 48.7896, 264, False, 4)])
    >>> info["inline"]["ids"], info["inline"]["properties"][0]["values"]
    (['12'], ['45.6 µm'])

    Raises
    ------
    ValueError
        If a label is negative or repeated, or a length is not finite.
    """
    rows = sorted(objects, key=lambda r: int(r.label))
    labels = [int(r.label) for r in rows]
    if labels and labels[0] < 0:
        raise ValueError(f"segment ids must be non-negative integers; got {labels[0]}")
    if len(set(labels)) != len(labels):
        raise ValueError("segment properties list each object once; a label is repeated")
    bad = [r.label for r in rows if not (math.isfinite(r.length_um) and math.isfinite(r.cable_length_um))]
    if bad:
        raise ValueError(f"objects {bad[:5]} have a non-finite length; segment properties need finite values")
    names = [f"{r.length_um:.1f} µm" + (", touches the border" if r.touches_border else "") for r in rows]

    def number(key: str, description: str) -> dict[str, Any]:
        values = [round(float(getattr(r, key)), 4) for r in rows]
        return {"id": key, "type": "number", "data_type": "float32", "description": description,
                "values": values}

    return {
        "@type": "neuroglancer_segment_properties",
        "inline": {
            "ids": [str(label) for label in labels],
            "properties": [
                {"id": "label", "type": "label", "values": names},
                number("length_um", "path length: the skeleton's longest path, µm"),
                number("cable_length_um", "cable length: all of the skeleton's edges, µm"),
            ],
        },
    }


def _skeleton_files(
    directory: Path, info: Mapping[str, Any], sharding: Any
) -> Iterable[tuple[int, Path, Any]]:
    """(label, where, read bytes) of every skeleton of a folder: its files, or (sharded) the objects its
    segment properties list."""
    if not sharding:
        for path in sorted(directory.iterdir()):
            label = _label_of(path.name)
            if label is not None:
                yield label, path, path.read_bytes
        return
    props = directory / str(info.get("segment_properties", SEGMENT_PROPERTIES_DIR)) / "info"
    if not props.is_file():
        raise InputDataError(f"{directory} is sharded but has no segment properties ({props}): the objects "
                             "it holds are listed there")
    store = _sharded_store(directory, sharding)
    for label in sorted(int(i) for i in json.loads(props.read_text())["inline"]["ids"]):
        key = label.to_bytes(8, "big")
        yield label, shard_file(directory, int(shard_numbers(np.array([label]), sharding)[0]), sharding), (
            lambda key=key, label=label: _read_key(store, key, label, directory))


def _read_key(store: Any, key: bytes, label: int, directory: Path) -> bytes:
    value = store.read(key).result()
    if value.state != "value":
        raise InputDataError(f"{directory} lists object {label} but its shard holds no skeleton for it")
    return bytes(value.value)


def read_precomputed_skeletons(directory: str | Path) -> dict[int, nx.Graph]:
    """Read a neuroglancer precomputed skeleton folder, unsharded or sharded, into graphs in µm (z, y, x).

    The ``transform`` of the ``info`` file is applied (vertices -> nm); ``radius`` (nm) becomes
    ``radius_um`` if present. Empty skeletons (objects listed without one) are left out. A sharded folder
    is read with tensorstore, for the objects its segment properties list.

    Raises
    ------
    InputDataError
        If ``info`` is missing, is not a ``neuroglancer_skeletons`` info, or a file is truncated.
    """
    directory = Path(directory)
    info_path = directory / "info"
    if not info_path.is_file():
        raise InputDataError(
            f"{directory} has no info file; expected a neuroglancer precomputed skeleton folder"
        )
    try:
        info = json.loads(info_path.read_text())
    except (OSError, ValueError) as exc:
        raise InputDataError(f"{info_path} is not valid JSON: {exc}") from None
    if info.get("@type") != "neuroglancer_skeletons":
        raise InputDataError(
            f"{info_path} has @type {info.get('@type')!r}; expected 'neuroglancer_skeletons'"
        )
    sharding = info.get("sharding")
    transform = np.asarray(info.get("transform", PRECOMPUTED_INFO["transform"]), dtype=np.float64).reshape(
        3, 4
    )
    attributes = info.get("vertex_attributes", [])
    graphs: dict[int, nx.Graph] = {}
    for label, path, read in _skeleton_files(directory, info, sharding):
        try:
            skeleton = Skeleton.from_precomputed(read(), segid=label, vertex_attributes=attributes)
        except Exception as exc:  # osteoid (and tensorstore) raise their own decode errors
            raise InputDataError(f"precomputed skeleton {label} in {path} cannot be decoded: {exc}") from None
        if len(skeleton.vertices) == 0:
            continue
        xyz_nm = (
            np.asarray(skeleton.vertices, dtype=np.float64).reshape(-1, 3) @ transform[:, :3].T
            + transform[:, 3]
        )
        zyx_um = xyz_nm[:, ::-1] / _UM_TO_NM
        radius = (
            getattr(skeleton, "radius", None) if any(a.get("id") == "radius" for a in attributes) else None
        )
        radii = (
            np.asarray(radius, dtype=np.float64) / _UM_TO_NM if radius is not None else np.zeros(len(zyx_um))
        )
        graph = nx.Graph(label=label)
        graph.add_nodes_from(
            (i, {"pos_um": (float(p[0]), float(p[1]), float(p[2])), "radius_um": float(r)})
            for i, (p, r) in enumerate(zip(zyx_um, radii, strict=True))
        )
        graph.add_edges_from(map(tuple, np.asarray(skeleton.edges, dtype=np.int64).reshape(-1, 2).tolist()))
        graphs[label] = graph
    return dict(sorted(graphs.items()))


# -- lengths table -------------------------------------------------------------------------------------------


def write_lengths_csv(path: str | Path, rows: Iterable[ObjectRow]) -> Path:
    """Write per-object rows as ``lengths.csv`` (:data:`LENGTHS_COLUMNS`; lengths in µm, 4 decimals).

    Raises
    ------
    OutputError
        If the file cannot be written.
    """
    return _write_csv(path, LENGTHS_COLUMNS, (
        [r.label, f"{r.length_um:.4f}", f"{r.cable_length_um:.4f}", r.n_voxels, int(r.touches_border),
         r.n_endpoints] for r in rows), what="lengths table")


def _write_csv(path: str | Path, columns: Sequence[str], rows: Iterable[Sequence[Any]], *, what: str) -> Path:
    """Write ``columns`` and ``rows`` as a CSV file atomically (its folder made if missing)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(columns)
            writer.writerows(rows)
    except OSError as exc:
        raise write_error(f"cannot write {what} {path}", exc, path) from None
    return path


def read_lengths_csv(path: str | Path) -> tuple[ObjectRow, ...]:
    """Read a ``lengths.csv`` written by :func:`write_lengths_csv`.

    Raises
    ------
    InputDataError
        If the file is missing, lacks a column, or has a malformed value.
    """
    path = Path(path)
    if not path.is_file():
        raise InputDataError(f"lengths table {path} does not exist; run `neurorecon skeletonize` first")
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in LENGTHS_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise InputDataError(f"{path} lacks the columns {missing}; expected {', '.join(LENGTHS_COLUMNS)}")
        rows = []
        for lineno, rec in enumerate(reader, start=2):
            try:
                row = ObjectRow(
                    label=int(rec["label"]),
                    length_um=float(rec["length_um"]),
                    cable_length_um=float(rec["cable_length_um"]),
                    n_voxels=int(rec["n_voxels"]),
                    touches_border=rec["touches_border"].strip().lower() in ("1", "true", "yes"),
                    n_endpoints=int(rec["n_endpoints"]),
                )
            except (TypeError, ValueError):
                raise InputDataError(f"{path}:{lineno}: malformed row {dict(rec)}") from None
            if not (math.isfinite(row.length_um) and math.isfinite(row.cable_length_um)):
                raise InputDataError(f"{path}:{lineno}: non-finite length in {dict(rec)}")
            rows.append(row)
    return tuple(rows)


#: Columns of ``joins.csv`` (``skeletonize.join``): the two labels joined (``label_a < label_b``), the label
#: of their group (its smallest), each end's (z, y, x) position in µm, the gap in µm and the angle at each
#: end in degrees.
JOINS_COLUMNS = ("label_a", "label_b", "joined_label", "a_z_um", "a_y_um", "a_x_um", "b_z_um", "b_y_um",
                 "b_x_um", "distance_um", "angle_a_deg", "angle_b_deg")


def write_joins_csv(path: str | Path, rows: Iterable[Sequence[float]]) -> Path:
    """Write ``joins.csv`` (:data:`JOINS_COLUMNS`, one row per join; labels as integers, µm and degrees
    with 4 and 2 decimals).

    Raises
    ------
    OutputError
        If the file cannot be written.
    """
    return _write_csv(path, JOINS_COLUMNS, (
        [int(r[0]), int(r[1]), int(r[2]), *(f"{float(v):.4f}" for v in r[3:10]), f"{float(r[10]):.2f}",
         f"{float(r[11]):.2f}"] for r in rows), what="joins table")


def read_joins_csv(path: str | Path) -> dict[int, int]:
    """The relabelling of a ``joins.csv``: every joined label → its group's label.

    Raises
    ------
    InputDataError
        If the file is missing, lacks a column or has a malformed label.
    """
    path = Path(path)
    if not path.is_file():
        raise InputDataError(f"joins table {path} does not exist; run `neurorecon skeletonize` with "
                             "skeletonize.join.enabled: true")
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in JOINS_COLUMNS[:3] if c not in (reader.fieldnames or [])]
        if missing:
            raise InputDataError(f"{path} lacks the columns {missing}; expected {', '.join(JOINS_COLUMNS)}")
        table = {}
        for lineno, rec in enumerate(reader, start=2):
            try:
                group = int(rec["joined_label"])
                table[int(rec["label_a"])] = table[int(rec["label_b"])] = group
            except (TypeError, ValueError):
                raise InputDataError(f"{path}, line {lineno}: a label is not an integer; rerun "
                                     "`neurorecon skeletonize` to rewrite it") from None
    return table
