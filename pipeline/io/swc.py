"""SWC skeleton files in physical units, as networkx graphs.

An SWC line is ``id type x y z radius parent`` (parent -1 for a root). In memory a skeleton is a
``networkx.Graph`` (a forest) whose nodes are the SWC ids and carry

* ``pos_um``: (z, y, x) position in µm — note the reordering from the file's x, y, z;
* ``radius_um``: radius in µm;
* ``swc_type``: the SWC structure type (0 undefined, 1 soma, 2 axon, 3 dendrite, ...).

``# OFFSET x y z`` headers (as MouseLight consensus files have) are added to every coordinate on
reading, so positions are absolute; the offset is kept in ``graph.graph["offset_um"]`` (z, y, x).
Files are written with absolute coordinates and no offset, and say their unit in the header line
:data:`UNITS_HEADER` (``# Meta: {"units": "micrometer"}``): the JSON ``# Meta:`` line navis reads into a
neuron's attributes (``navis.read_swc``, ``read_meta=True`` by default), so navis measures our skeletons
in µm instead of dimensionless units.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import networkx as nx
import numpy as np

from pipeline.errors import InputDataError
from pipeline.io.atomic import write_atomic
from pipeline.io.diskspace import write_error

__all__ = ["UNITS_HEADER", "read_swc", "write_swc"]

#: The header line that gives the unit of an SWC file's coordinates and radii (navis's ``# Meta:`` JSON).
UNITS_HEADER = '# Meta: {"units": "micrometer"}'


def read_swc(path: str | Path) -> nx.Graph:
    """Read an SWC file into a graph with ``pos_um`` (z, y, x), ``radius_um`` and ``swc_type`` nodes.

    Raises
    ------
    InputDataError
        If the file is missing, a line does not have 7 numeric fields, an id repeats, a parent id
        refers to no node or to the node itself, or the parents form a cycle.
    """
    path = Path(path)
    if not path.is_file():
        raise InputDataError(f"SWC file {path} does not exist")
    offset = np.zeros(3)
    rows: list[tuple[int, int, float, float, float, float, int]] = []
    comments: list[str] = []
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise InputDataError(f"SWC file {path} cannot be read: {exc}") from None
    for lineno, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            text = line[1:].strip()
            if text.upper().startswith("OFFSET"):
                try:
                    offset = np.array([float(v) for v in text.split()[1:4]])
                except ValueError:
                    raise InputDataError(f"{path}:{lineno}: malformed OFFSET header {line!r}") from None
                if offset.shape != (3,):
                    raise InputDataError(f"{path}:{lineno}: OFFSET needs three numbers x y z; got {line!r}")
            else:
                comments.append(text)
            continue
        fields = line.split()
        if len(fields) < 7:
            raise InputDataError(
                f"{path}:{lineno}: expected 7 fields 'id type x y z radius parent'; "
                f"got {len(fields)}: {line!r}"
            )
        try:
            rows.append(
                (int(fields[0]), int(float(fields[1])), float(fields[2]), float(fields[3]), float(fields[4]),
                 float(fields[5]), int(fields[6]))
            )
        except ValueError:
            raise InputDataError(f"{path}:{lineno}: non-numeric field in {line!r}") from None
    graph = nx.Graph(offset_um=(float(offset[2]), float(offset[1]), float(offset[0])), comments=comments,
                     source=str(path))
    for node, swc_type, x, y, z, radius, _ in rows:
        if node in graph:
            raise InputDataError(f"{path}: node id {node} appears more than once")
        pos = (z + offset[2], y + offset[1], x + offset[0])
        if not np.all(np.isfinite(pos)):
            raise InputDataError(f"{path}: node {node} has a non-finite coordinate")
        graph.add_node(node, pos_um=tuple(float(v) for v in pos), radius_um=float(radius), swc_type=swc_type)
    root = {node: node for node in graph}  # union-find over the edges so far: a cycle closes within one tree

    def find(n: int) -> int:
        while root[n] != n:
            root[n] = root[root[n]]
            n = root[n]
        return n

    for node, *_, parent in rows:
        if parent == -1:
            continue
        if parent == node:
            raise InputDataError(f"{path}: node {node} is its own parent; a root has parent -1")
        if parent not in graph:
            raise InputDataError(f"{path}: node {node} has parent {parent}, which is not in the file")
        a, b = find(parent), find(node)
        if a == b:
            cycle = nx.shortest_path(graph, parent, node)
            raise InputDataError(
                f"{path}: the parents of node {node} form a cycle ({' -> '.join(map(str, [node, *cycle]))}); "
                "an SWC file holds trees: every chain of parents must end at a root (parent -1)"
            )
        root[a] = b
        graph.add_edge(parent, node)
    return graph


def write_swc(path: str | Path, graph: nx.Graph, *, comments: Iterable[str] = ()) -> None:
    """Write a skeleton forest to an SWC file in µm (the header says so: :data:`UNITS_HEADER`).

    Nodes are renumbered 1..n in depth-first order from each component's smallest node, so parents
    always precede children. ``radius_um`` defaults to 1.0 and ``swc_type`` to 0 where absent.

    Raises
    ------
    ValueError
        If the graph has a cycle or a node without ``pos_um``.
    OutputError
        If the file cannot be written.
    """
    if not nx.is_forest(graph) and graph.number_of_nodes() > 0:
        raise ValueError("graph has a cycle; SWC can only hold trees (a forest)")
    missing = [n for n, d in graph.nodes(data=True) if "pos_um" not in d]
    if missing:
        raise ValueError(f"nodes {missing[:5]} have no 'pos_um' attribute; every node needs (z, y, x) µm")
    lines = [f"# {c}" for c in comments]
    lines.append(UNITS_HEADER)
    lines.append("# id type x y z radius parent  (x, y, z in micrometres)")
    new_id: dict[object, int] = {}
    for component in sorted(nx.connected_components(graph), key=lambda c: min(map(_sort_key, c))):
        root = min(component, key=_sort_key)
        for parent, child in [(None, root), *nx.dfs_edges(graph, root)]:
            node = child
            new_id[node] = len(new_id) + 1
            data = graph.nodes[node]
            z, y, x = data["pos_um"]
            parent_id = -1 if parent is None else new_id[parent]
            lines.append(
                f"{new_id[node]} {int(data.get('swc_type', 0))} {x:.6f} {y:.6f} {z:.6f} "
                f"{float(data.get('radius_um', 1.0)):.6f} {parent_id}"
            )
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, "\n".join(lines) + "\n")
    except OSError as exc:
        raise write_error(f"cannot write SWC file {path}", exc, path) from None


def _sort_key(node: object) -> tuple[int, str]:
    return (0, f"{node:020d}") if isinstance(node, int | np.integer) else (1, str(node))
