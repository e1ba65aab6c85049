"""The skeletonize stage: a label image -> skeletons and lengths, block by block on Dask.

Load -> compute -> save around :mod:`pipeline.skeleton` (the algorithm is in
:mod:`pipeline.skeleton.blockwise`). Two block passes: ``skeleton labels`` (label counts and boxes of
every block, :class:`~pipeline.skeleton.BlockLabels` records) and, after the one-piece plan
(:class:`~pipeline.skeleton.OnePiecePlan`, a stage record), ``skeletonize`` (each block's pieces and
the one-piece objects it owns, as :class:`~pipeline.skeleton.BlockSkeletons` records cut by shard of
labels: ``state/skeleton_parts/<shard>/<block>.npz``). Then ``fuse skeletons``: one task per shard of
:data:`LABELS_PER_SHARD` labels fuses its objects' pieces, measures them and writes their files, so no
process holds more than one shard's skeletons. The driver writes what lists every object. In the run
directory (:class:`~pipeline.io.layout.RunLayout`): ``skeletons/<label>.swc`` (µm),
``skeletons_precomputed/`` (neuroglancer, nm), ``lengths.csv`` and ``skeletonize.json``; per-block and
per-shard state in ``state/``.

With ``skeletonize.join.enabled``, each fusion task also records the ends of its skeletons
(:class:`~pipeline.skeleton.EndTable`); the driver matches them (:func:`~pipeline.skeleton.match_ends`:
O(ends), never a skeleton) and writes ``joins.csv``. Then ``join skeletons``: one task per
:data:`LABELS_PER_SHARD` groups of joined pieces replaces their files and rows by one object each
(:func:`~pipeline.skeleton.join_graphs`, the group's smallest label). A task stages its groups' skeletons
as SWC in ``state/skeleton_join/staged-<task>/`` before any file of the run changes, so a task killed
while it rewrites them resumes to the same files.

Label images are named by path: a standalone one (``RUN/segmentation.zarr``) or a label group inside an
image store (``volume.zarr/labels/NAME``), see :func:`pipeline.io.labels.open_label_image`.
"""

from __future__ import annotations

import functools
import json
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np

from flows.stages.runner import Task, Tasks, run_blocks
from pipeline.blocks import Block
from pipeline.errors import InputDataError, OutputError
from pipeline.io.atomic import write_atomic
from pipeline.io.blockstate import BlockState
from pipeline.io.diskspace import write_error
from pipeline.io.labels import open_label_image, voxel_size_of
from pipeline.io.layout import RunLayout
from pipeline.io.location import URL, Location, describe, is_url
from pipeline.io.omezarr import image_fingerprint, open_image
from pipeline.io.skeletons import (
    precomputed_sharding,
    prepare_dir,
    segment_properties,
    shard_file,
    shard_numbers,
    write_joins_csv,
    write_lengths_csv,
    write_precomputed_info,
    write_precomputed_objects,
    write_precomputed_shard,
    write_swc_files,
)
from pipeline.io.swc import read_swc
from pipeline.skeleton import (
    BlockLabels,
    BlockSkeletons,
    EndTable,
    LabelStatistics,
    ObjectRow,
    OnePiecePlan,
    TeasarParams,
    block_labels,
    check_max_voxels,
    concat_end_tables,
    end_table,
    fuse_block_skeletons,
    join_graphs,
    join_table,
    label_shards,
    label_statistics,
    match_ends,
    object_rows,
    plan_one_piece,
    skeleton_grid,
    skeletonize_block_with_plan,
    split_by_shard,
    without_dust,
)
from pipeline.skeleton.config import JoinConfig, SkeletonizeConfig

__all__ = ["SkeletonizeOutputs", "read_skeletonize_record", "recorded_segmentation", "skeletonize_volume"]

log = logging.getLogger(__name__)

_PLAN = "plan"  # the one-piece plan, a stage record of "skeletonize"
_SHARDS = "shards"  # the first label of each shard of labels, a stage record of "skeletonize"
#: Labels per fusion task (objects fused and written by one task of the stage ``skeleton_fuse``).
LABELS_PER_SHARD = 2000
#: 3: block records through pipeline.io.blockstate; 4: the segmentation recorded where the run directory
#: does not matter (relative inside it, a fingerprint outside); 5: dust_threshold_um3 recorded
_STATE_FORMAT = 5


@dataclass(frozen=True)
class SkeletonizeOutputs:
    """What :func:`skeletonize_volume` wrote."""

    swc_dir: Path
    precomputed_dir: Path
    lengths_csv: Path
    params_json: Path
    n_objects: int
    n_skeletons: int
    n_joins: int = 0


def skeletonize_volume(
    segmentation: str | Path | URL,
    *,
    out: str | Path,
    settings: SkeletonizeConfig,
    max_retries: int,
    voxel_size_um: Sequence[float] | None = None,
    client: Any = None,
    progress: bool = True,
    overwrite: bool = False,
    replace_files: bool = False,
) -> SkeletonizeOutputs:
    """Skeletonize a label image block by block and write SWC, precomputed skeletons and ``lengths.csv``.

    Parameters
    ----------
    segmentation : path or URL
        OME-Zarr label image (see :func:`~pipeline.io.labels.open_label_image`).
    out : path
        Run directory (see the module docstring for what is written there).
    settings : SkeletonizeConfig
        The ``skeletonize:`` section: block shape (clipped to the volume), halo (µm), TEASAR settings,
        tick threshold, dust threshold (µm³: smaller objects get no skeleton and no row) and the
        one-piece bound.
    max_retries : int
        Extra attempts per failed block (``dask.max_retries``).
    voxel_size_um : sequence of 3 float, optional
        Override the voxel size recorded in the image (µm, z, y, x).
    client : distributed.Client, optional
        Dask client; serial in this process if None.
    overwrite : bool
        Start over: replace earlier outputs and reset their block state in ``out``.
    replace_files : bool
        Replace the skeleton files of an earlier run but resume its block state (a flow that owns its
        run directory and writes them again on every run).

    Returns
    -------
    SkeletonizeOutputs

    Raises
    ------
    InputDataError
        If the segmentation is missing or not an integer (z, y, x) label image, or the voxel size is
        invalid.
    OutputError
        If outputs exist (without ``overwrite``) or an interrupted run used other parameters.
    BlockFailure
        If blocks still fail after their retries.
    ValueError
        If the halo does not fit the blocks or ``one_piece_max_voxels`` is invalid.
    """
    seg = open_label_image(segmentation)
    vs = voxel_size_of(seg, voxel_size_um)
    shape = seg.spatial_shape
    blocks_shape = tuple(min(int(b), s) for b, s in zip(settings.block_shape, shape, strict=True))
    run = RunLayout(out)
    if not (overwrite or replace_files):
        existing = [p for p in (run.skeletons, run.skeletons_precomputed, run.lengths_csv) if p.exists()]
        if existing:
            raise OutputError(
                f"{existing[0]} already exists; pass --overwrite to replace the skeletons in {run.root}, "
                "or choose another --out"
            )
    check_max_voxels(settings.one_piece_max_voxels, "one_piece_max_voxels")
    grid = skeleton_grid(shape, block_shape=blocks_shape, voxel_size_um=vs, halo_um=settings.halo_um)
    inside = run.relative(segmentation)
    record = {  # skeletonize.json: the segmentation relative to the run if inside it (moves with it)
        "segmentation": inside if inside is not None else describe(segmentation),
        "shape": list(shape),
        "voxel_size_um": list(vs),
        "block_shape": list(blocks_shape),
        "halo_um": float(settings.halo_um),
        "teasar": settings.teasar.model_dump(),
        "tick_threshold_um": float(settings.tick_threshold_um),
        "dust_threshold_um3": float(settings.dust_threshold_um3),
        "one_piece_max_voxels": settings.one_piece_max_voxels,
        "state_format": _STATE_FORMAT,
    }
    # the stage parameters: the segmentation relative to the run, or by its fingerprint (a moved run resumes)
    params = {**record, "segmentation": run.identify(segmentation, lambda: image_fingerprint(seg))}
    # stage 1: label counts and bounding boxes per block (write regions only)
    labels_state = BlockState(run.state, "skeleton_labels")
    labels_state.check_params(
        {k: params[k] for k in ("segmentation", "shape", "block_shape", "state_format")}, reset=overwrite
    )
    state = BlockState(run.state, "skeletonize")
    state.check_params(params, reset=overwrite)
    run_blocks(
        "skeleton labels", grid,
        functools.partial(_skeleton_labels_task, segmentation=str(segmentation), state_root=str(run.state)),
        state=labels_state, client=client, max_retries=max_retries, progress=progress,
    ).raise_if_failed()
    stats = label_statistics(
        (labels_state.load_record(b.id, BlockLabels, "labels") for b in grid), volume_shape=shape
    )
    # stage 2: every block skeletonizes its pieces and the one-piece objects it owns
    plan = plan_one_piece(stats, grid, max_voxels=settings.one_piece_max_voxels)
    state.save_records(_PLAN, plan=plan)  # a function of stage 1 and the parameters: rewriting is a no-op
    # the label shards each fusion task takes (the blocks cut their pieces by them), from the same
    all_labels = np.fromiter(stats.n_voxels, np.uint64, len(stats.n_voxels))
    state.save_records(_SHARDS, starts=label_shards(all_labels, per_shard=LABELS_PER_SHARD))
    log.info("skeletonize: %d objects cross a seam and are skeletonized in one piece", len(plan.labels))
    task = functools.partial(
        _skeletonize_block_task, segmentation=str(segmentation), volume_shape=shape, voxel_size_um=vs,
        teasar=settings.teasar, state_root=str(run.state),
    )
    redone = len(state.done_ids()) < len(grid)  # blocks of stage 2 run: the fusion is redone
    if not state.done_ids():  # a fresh stage 2: pieces of an earlier one go
        shutil.rmtree(run.state / "skeleton_parts", ignore_errors=True)
    run_blocks(
        "skeletonize", grid, task, state=state, client=client, max_retries=max_retries, progress=progress,
        memory_hint="use a smaller skeletonize.block_shape or skeletonize.halo_um, or raise "
                    "dask.memory_limit",
    ).raise_if_failed()

    # stage 3: each shard of labels fused and written by one task, from the pieces the blocks cut by shard
    kept = without_dust(stats, dust_threshold_um3=settings.dust_threshold_um3, voxel_size_um=vs)
    if len(kept.n_voxels) < len(stats.n_voxels):
        log.info("skeletonize: %d objects of at most %g µm³ dropped as dust (skeletonize.dust_threshold_um3)",
                 len(stats.n_voxels) - len(kept.n_voxels), settings.dust_threshold_um3)
    fuse = BlockState(run.state, "skeleton_fuse")
    missing = not (run.skeletons.is_dir() and run.skeletons_precomputed.is_dir())  # removed: written anew
    join = settings.join if settings.join.enabled else None
    sharded = settings.sharded_precomputed
    # the joins rewrite the fused files: other join settings (or none) fuse them anew; as does the format
    fuse_params = {**params, "join": join.model_dump() if join is not None else None, "sharded": sharded}
    per_object = None if sharded else str(run.skeletons_precomputed)  # files per object, or shards at the end
    fuse.check_params(fuse_params, reset=overwrite or redone or missing or fuse.differs(fuse_params))
    starts = state.load_record(_SHARDS, np.ndarray, "starts")
    if not fuse.done_ids():  # a fresh fusion: new folders (a resumed one keeps the files of its shards)
        prepare_dir(run.skeletons, overwrite=True, what="SWC")
        prepare_dir(run.skeletons_precomputed, overwrite=True, what="precomputed skeleton")
        _save_shard_statistics(fuse, kept, starts)
    comments = [f"neurorecon skeletonize {record['segmentation']}", "coordinates: µm, volume frame"]
    fused_before = len(fuse.done_ids())
    run_blocks(
        "fuse skeletons", Tasks(len(starts)),
        functools.partial(_fuse_shard_task, state_root=str(run.state), voxel_size_um=vs,
                          tick_threshold_um=settings.tick_threshold_um, swc_dir=str(run.skeletons),
                          precomputed_dir=per_object, comments=tuple(comments),
                          tangent_um=join.tangent_um if join is not None else None),
        state=fuse, client=client, max_retries=max_retries, progress=progress,
        memory_hint="an object's skeleton is fused by one task: raise dask.memory_limit", unit="shard",
    ).raise_if_failed()
    rows = [row for i in range(len(starts)) for row in _shard_rows(fuse, i)]  # in label order
    n_skeletons = sum(fuse.info(i)["n_skeletons"] for i in range(len(starts)))
    n_joins = 0
    joined_before = len(BlockState(run.state, _JOIN).done_ids())
    if join is not None:
        rows, n_skeletons, n_joins = _join_pieces(
            run, fuse, len(starts), join, rows, n_skeletons, params=fuse_params,
            fused=fused_before < len(starts), voxel_size_um=vs, comments=tuple(comments), client=client,
            max_retries=max_retries, progress=progress, precomputed_dir=per_object)
    else:
        run.joins_csv.unlink(missing_ok=True)  # of an earlier run with joins: the files were fused anew
        BlockState(run.state, _JOIN).remove()
    sharding = None
    if sharded:  # the shard files, from the final SWC files (after the joins)
        joined_now = len(BlockState(run.state, _JOIN).done_ids())
        rewritten = fused_before < len(starts) or joined_now != joined_before
        sharding = _write_shards(run, rows, params={**fuse_params, "n_joins": n_joins}, client=client,
                                 max_retries=max_retries, progress=progress, reset=rewritten)
    write_precomputed_info(run.skeletons_precomputed, properties=segment_properties(rows), sharding=sharding)
    lengths = write_lengths_csv(run.lengths_csv, rows)
    record["join"] = join.model_dump() if join is not None else None
    record["sharded_precomputed"] = sharded
    try:
        write_atomic(run.skeletonize_json, json.dumps(
            {**record, "n_objects": len(rows), "n_skeletons": n_skeletons, "n_joins": n_joins}, indent=1))
    except OSError as exc:
        raise write_error(f"cannot write {run.skeletonize_json}", exc, run.skeletonize_json) from None
    log.info("skeletonize: %d objects, %d skeletons -> %s", len(rows), n_skeletons, run.root)
    return SkeletonizeOutputs(run.skeletons, run.skeletons_precomputed, lengths, run.skeletonize_json,
                              len(rows), n_skeletons, n_joins)


_JOIN = "skeleton_join"  # the stage whose records hold the joined skeletons


def _join_pieces(
    run: RunLayout, fuse: BlockState, n_shards: int, join: JoinConfig, rows: list[ObjectRow],
    n_skeletons: int, *, params: dict[str, Any], fused: bool, voxel_size_um: tuple[float, ...],
    comments: tuple[str, ...], client: Any, max_retries: int, progress: bool, precomputed_dir: str | None,
) -> tuple[list[ObjectRow], int, int]:
    """Join the fused pieces whose ends face each other across a gap: the driver matches the ends the
    fusion recorded and writes ``joins.csv``; tasks of :data:`LABELS_PER_SHARD` groups each write their
    groups' files and rows. Returns the rows, the number of skeletons and of joins."""
    state = BlockState(run.state, _JOIN)
    state.check_params(params, reset=fused or state.differs(params))  # fused anew: joined anew
    ends = concat_end_tables([fuse.load_record(i, EndTable, "ends") for i in range(n_shards)])
    matched = match_ends(ends, max_gap_um=join.max_gap_um, max_angle_deg=join.max_angle_deg,
                         min_gap_um=join.min_gap_um)
    a, b = (np.array([m[k] for m in matched], np.int64) for k in (0, 1))
    table = join_table(zip(ends.labels[a].tolist(), ends.labels[b].tolist(), strict=True))
    write_joins_csv(run.joins_csv, _joins_rows(ends, matched, table))
    groups = sorted(set(table.values()))
    batch = {group: i // LABELS_PER_SHARD for i, group in enumerate(groups)}  # a task per batch of groups
    of_join = np.array([batch[table[int(label)]] for label in ends.labels[a]], np.int64)
    of_piece = np.array([batch[group] for group in table.values()], np.int64)
    pieces = np.array(list(table), np.uint64)
    by_label = {r.label: r for r in rows}
    n_batches = -(-len(groups) // LABELS_PER_SHARD)
    for k in range(n_batches):  # what each task needs: its joins and its pieces' statistics
        if not state.is_done(k):
            here, members = of_join == k, pieces[of_piece == k]
            state.save_records(
                f"joins-{k}", label_a=ends.labels[a[here]], pos_a=ends.pos_um[a[here]],
                label_b=ends.labels[b[here]], pos_b=ends.pos_um[b[here]], members=members,
                n_voxels=np.array([by_label[int(m)].n_voxels for m in members], np.int64),
                border=np.array([by_label[int(m)].touches_border for m in members], bool))
    run_blocks(
        "join skeletons", Tasks(n_batches),
        functools.partial(_join_task, state_root=str(run.state), swc_dir=str(run.skeletons),
                          precomputed_dir=precomputed_dir, comments=comments, voxel_size_um=voxel_size_um),
        state=state, client=client, max_retries=max_retries, progress=progress,
        memory_hint="a group of joined pieces is written by one task: raise dask.memory_limit", unit="batch",
    ).raise_if_failed()
    joined = {r.label: r for k in range(n_batches) for r in _shard_rows(state, k)}
    out = [joined.get(r.label, r) for r in rows if table.get(r.label, r.label) == r.label]
    log.info("skeletonize: %d joins across gaps of at most %g µm merged %d pieces into %d objects",
             len(matched), join.max_gap_um, len(table), len(groups))
    return out, n_skeletons - (len(table) - len(groups)), len(matched)


def _write_shards(
    run: RunLayout, rows: list[ObjectRow], *, params: dict[str, Any], client: Any, max_retries: int,
    progress: bool, reset: bool,
) -> dict[str, Any]:
    """Write ``skeletons_precomputed/`` as shard files (:func:`~pipeline.io.skeletons.precomputed_sharding`):
    a task per shard reads its objects' SWC files and writes the shard (all of them again after ``reset``:
    SWC files were rewritten). Returns the sharding."""
    labels = np.array([r.label for r in rows], np.uint64)
    sharding = precomputed_sharding(int(labels.max()) if len(labels) else 0)
    numbers = shard_numbers(labels, sharding)
    shards = np.unique(numbers)
    state = BlockState(run.state, _SHARDS_STAGE)
    wanted = {**params, "sharding": sharding, "n_objects": len(rows)}
    state.check_params(wanted, reset=reset or state.differs(wanted))
    for k, number in enumerate(shards.tolist()):
        if state.is_done(k) and not shard_file(run.skeletons_precomputed, number, sharding).is_file():
            state.forget(k)  # its file was lost: written again
        if not state.is_done(k):
            state.save_records(f"labels-{k}", labels=labels[numbers == number], shard=np.int64(number))
    run_blocks(
        "write skeleton shards", Tasks(len(shards)),
        functools.partial(_shard_task, state_root=str(run.state), swc_dir=str(run.skeletons),
                          precomputed_dir=str(run.skeletons_precomputed), sharding=sharding),
        state=state, client=client, max_retries=max_retries, progress=progress, unit="shard",
        memory_hint="a shard's skeletons are written by one task: raise dask.memory_limit",
    ).raise_if_failed()
    return sharding


_SHARDS_STAGE = "skeleton_shards"  # the stage writing the shard files of a sharded precomputed folder


def _shard_task(task: Task, *, state_root: str, swc_dir: str, precomputed_dir: str,
                sharding: dict[str, Any]) -> dict[str, Any]:
    state = BlockState(state_root, _SHARDS_STAGE)
    labels = state.load_record(f"labels-{task.id}", np.ndarray, "labels").tolist()
    graphs = {}
    for label in labels:  # an object without a skeleton (a few voxels) gets an empty one, as unsharded
        path = Path(swc_dir) / f"{label}.swc"
        graphs[int(label)] = read_swc(path) if path.is_file() else nx.Graph()
    write_precomputed_shard(precomputed_dir, graphs, sharding=sharding,
                            shard=int(state.load_record(f"labels-{task.id}", int, "shard")))
    return {"n_objects": len(graphs)}


def _joins_rows(ends: EndTable, matched: list[tuple[int, int, float, float, float]],
                table: dict[int, int]) -> list[tuple[float, ...]]:
    """The rows of ``joins.csv`` (:data:`~pipeline.io.skeletons.JOINS_COLUMNS`), ``label_a < label_b``."""
    rows = []
    for a, b, d, angle_a, angle_b in matched:
        if int(ends.labels[b]) < int(ends.labels[a]):
            a, b, angle_a, angle_b = b, a, angle_b, angle_a
        la, lb = int(ends.labels[a]), int(ends.labels[b])
        rows.append((la, lb, table[la], *ends.pos_um[a], *ends.pos_um[b], d, angle_a, angle_b))
    return rows


def _join_task(
    task: Task, *, state_root: str, swc_dir: str, precomputed_dir: str | None, comments: tuple[str, ...],
    voxel_size_um: tuple[float, ...],
) -> dict[str, Any]:
    """One batch of groups: each group's skeleton (its pieces' and one edge per join) is staged in the
    state as SWC before any file of the run changes, then replaces its pieces' files; its row is
    measured as the fusion measures one."""
    state = BlockState(state_root, _JOIN)
    record = {name: state.load_record(f"joins-{task.id}", np.ndarray, name) for name in
              ("label_a", "pos_a", "label_b", "pos_b", "members", "n_voxels", "border")}
    pairs = [(int(la), tuple(pa), int(lb), tuple(pb)) for la, pa, lb, pb in
             zip(record["label_a"], record["pos_a"], record["label_b"], record["pos_b"], strict=True)]
    table = join_table([(la, lb) for la, _, lb, _ in pairs])
    staged = state.dir / f"staged-{task.id}"
    if state.load_record(f"staged-{task.id}", np.ndarray, "groups", optional=True) is None:
        pieces = {label: read_swc(Path(swc_dir) / f"{label}.swc") for label in table}
        prepare_dir(staged, overwrite=True, what="staged joined skeleton")  # a killed attempt's files go
        write_swc_files(staged, join_graphs(pieces, pairs), comments=comments)
        state.save_records(f"staged-{task.id}", groups=np.array(sorted(set(table.values())), np.uint64))
    merged = {group: read_swc(staged / f"{group}.swc") for group in sorted(set(table.values()))}
    write_swc_files(swc_dir, merged, comments=comments)
    if precomputed_dir is not None:  # else (sharded) the shards are written from the SWC files at the end
        write_precomputed_objects(precomputed_dir, merged)
    for label in sorted(label for label, group in table.items() if label != group):
        (Path(swc_dir) / f"{label}.swc").unlink(missing_ok=True)  # now part of its group's file
        if precomputed_dir is not None:
            (Path(precomputed_dir) / str(label)).unlink(missing_ok=True)
    stats = LabelStatistics(
        {group: 0 for group in merged}, frozenset(table[int(m)] for m in record["members"][record["border"]]))
    for member, count in zip(record["members"].tolist(), record["n_voxels"].tolist(), strict=True):
        stats.n_voxels[table[member]] += count
    rows = object_rows(merged, stats, voxel_size_um=voxel_size_um)
    state.save_records(task.id, **{name: np.array([getattr(r, name) for r in rows]) for name in _ROW_FIELDS})
    return {"n_groups": len(merged)}


def read_skeletonize_record(run_dir: str | Path) -> dict[str, Any]:
    """The ``skeletonize.json`` of a run (inputs and parameters), or ``{}`` where there is none.

    Its ``segmentation`` is a path relative to the run directory where the segmentation lies inside it
    (it moves with the run); :func:`recorded_segmentation` gives the path to open.

    Raises
    ------
    InputDataError
        If the file is damaged (truncated, not JSON), naming it and the command that rewrites it.
    """
    path = RunLayout(run_dir).skeletonize_json
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise InputDataError(
            f"{path} is damaged ({type(exc).__name__}: {str(exc)[:120]}); rerun `neurorecon skeletonize` (or "
            "`neurorecon run`) on this run directory to rewrite it"
        ) from None
    if not isinstance(record, dict):
        raise InputDataError(f"{path} is not a skeletonize record (a JSON object); rerun `neurorecon "
                             "skeletonize` on this run directory to rewrite it")
    return record


def recorded_segmentation(run_dir: str | Path, record: dict[str, Any]) -> Location | None:
    """The segmentation a ``skeletonize.json`` record names, as a path (or URL) to open (None if it names
    none)."""
    if "segmentation" not in record:
        return None
    named = str(record["segmentation"])
    return URL(named) if is_url(named) else RunLayout(run_dir).root / named  # an absolute path stays as it is


# -- per-block tasks (module level so Dask can pickle them) --------------------------------------------


def _skeleton_labels_task(block: Block, *, segmentation: str, state_root: str) -> dict[str, Any]:
    piece = block_labels(np.asarray(open_image(segmentation).array[block.write]), block=block)
    BlockState(state_root, "skeleton_labels").save_records(block.id, labels=piece)
    return {"n_labels": int(len(piece.labels))}


def _skeletonize_block_task(
    block: Block,
    *,
    segmentation: str,
    volume_shape: tuple[int, int, int],
    voxel_size_um: tuple[float, ...],
    teasar: TeasarParams,
    state_root: str,
) -> dict[str, Any]:
    image = open_image(segmentation)
    state = BlockState(state_root, "skeletonize")
    plan = state.load_record(_PLAN, OnePiecePlan, "plan")
    pieces, objects = skeletonize_block_with_plan(
        lambda region: np.asarray(image.array[region]),
        block=block,
        plan=plan,
        volume_shape=volume_shape,
        voxel_size_um=voxel_size_um,
        params=teasar,
    )
    starts = state.load_record(_SHARDS, np.ndarray, "starts")
    cut_pieces, cut_objects = split_by_shard(pieces, starts), split_by_shard(objects, starts)
    for shard in sorted(set(cut_pieces) | set(cut_objects)):  # a record per kind the shard has
        records = {"pieces": cut_pieces.get(shard), "objects": cut_objects.get(shard)}
        BlockState(state_root, f"skeleton_parts/{shard}").save_records(
            block.id, **{name: r for name, r in records.items() if r is not None})
    return {"n_vertices": int(len(pieces.vertices_vx)), "n_one_piece_vertices": int(len(objects.vertices_vx))}


_ROW_FIELDS = ("label", "length_um", "cable_length_um", "n_voxels", "touches_border", "n_endpoints")


def _save_shard_statistics(fuse: BlockState, kept: LabelStatistics, starts: np.ndarray) -> None:
    """Each shard's objects (those kept), their voxel counts and border flags, as records of ``fuse``."""
    labels = np.fromiter(kept.n_voxels, np.uint64, len(kept.n_voxels))
    counts = np.fromiter(kept.n_voxels.values(), np.int64, len(kept.n_voxels))
    border = np.isin(labels, np.fromiter(kept.border_labels, np.uint64, len(kept.border_labels)))
    shard = np.searchsorted(starts, labels, side="right") - 1
    for i in range(len(starts)):
        here = shard == i
        fuse.save_records(f"stats-{i}", labels=labels[here], n_voxels=counts[here], border=border[here])


def _fuse_shard_task(
    shard: Task, *, state_root: str, voxel_size_um: tuple[float, ...], tick_threshold_um: float,
    swc_dir: str, precomputed_dir: str | None, comments: tuple[str, ...], tangent_um: float | None = None,
) -> dict[str, Any]:
    parts = BlockState(state_root, f"skeleton_parts/{shard.id}")
    blocks = sorted(int(p.stem) for p in parts.dir.glob("*.npz") if p.stem.isdigit())
    pieces = [parts.load_record(b, BlockSkeletons, name, optional=True) for b in blocks
              for name in ("pieces", "objects")]
    pieces = [p for p in pieces if p is not None]
    graphs = fuse_block_skeletons(pieces, voxel_size_um=voxel_size_um, tick_threshold_um=tick_threshold_um)
    fuse = BlockState(state_root, "skeleton_fuse")
    labels = fuse.load_record(f"stats-{shard.id}", np.ndarray, "labels")
    stats = LabelStatistics(
        dict(zip(labels.tolist(), fuse.load_record(f"stats-{shard.id}", np.ndarray, "n_voxels").tolist(),
                 strict=True)),
        frozenset(labels[fuse.load_record(f"stats-{shard.id}", np.ndarray, "border")].tolist()),
    )
    graphs = {label: g for label, g in graphs.items() if label in stats.n_voxels}
    rows = object_rows(graphs, stats, voxel_size_um=voxel_size_um)
    write_swc_files(swc_dir, graphs, comments=comments)
    if precomputed_dir is not None:  # else (sharded) the shards are written from the SWC files at the end
        write_precomputed_objects(precomputed_dir, graphs,
                                  empty=[r.label for r in rows if r.label not in graphs])
    ends = {"ends": end_table(graphs, tangent_um=tangent_um)} if tangent_um is not None else {}
    fuse.save_records(shard.id, **{name: np.array([getattr(r, name) for r in rows]) for name in _ROW_FIELDS},
                      **ends)
    return {"n_objects": len(rows), "n_skeletons": len(graphs)}


def _shard_rows(state: BlockState, task: int) -> list[ObjectRow]:
    """The rows a fusion (or join) task saved."""
    columns = [state.load_record(task, np.ndarray, name) for name in _ROW_FIELDS]
    return [ObjectRow(int(a), float(b), float(c), int(d), bool(e), int(f))
            for a, b, c, d, e, f in zip(*columns, strict=True)]
