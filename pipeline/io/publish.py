"""A finished run's products, published to object storage (``s3://``, ``gs://``, ...) for others to read.

A run directory stays local (or on a mounted file system): its block state and its lock rely on atomic
renames and exclusive file creation, which object stores do not offer. What others read — the OME-Zarr
label images with their pyramids, the skeletons (SWC and neuroglancer precomputed), ``lengths.csv``,
``metrics.json`` and the report — is copied to a URL by :func:`publish_run` (``neurorecon publish RUN
URL``, or ``output.publish`` at the end of every ``neurorecon run`` and batch volume). Published OME-Zarr
stores are then opened through zarr's ``FsspecStore`` (:func:`pipeline.io.omezarr.open_image`), as any
reader will, and checked against the run's.

The copy is safe to interrupt and to repeat:

- ``PUBLISHED.json`` (what was published, its files and bytes, neurorecon's version) is removed first
  and written last: it is there only while the publication is complete;
- every Zarr metadata document (``zarr.json``) and the neuroglancer ``info`` files go after the chunks
  they describe, so a reader of an unfinished copy finds no image whose chunks are still missing;
- a file copied earlier and unchanged since (same size and modification time here, and still at the
  URL) is not copied again: a rerun after an interruption copies the rest; after ``--overwrite`` and a
  new run, only what changed;
- keys at the URL under a published product that the run no longer has (a chunk that became empty, an
  object that is gone) are removed, so the copy reads exactly like the run. Nothing else at the URL is
  touched.

Credentials and endpoints are fsspec's (:mod:`pipeline.io.location`): for S3 ``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY`` or ``AWS_PROFILE``, ``AWS_ENDPOINT_URL`` for an S3-compatible server.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline import __version__
from pipeline.errors import InputDataError, OutputError
from pipeline.io.atomic import read_json_or_empty, write_atomic
from pipeline.io.layout import RunLayout
from pipeline.io.location import URL, _filesystem, as_location, remote_error

__all__ = ["PUBLISHED", "Published", "check_publish_url", "products", "publish_run"]

log = logging.getLogger(__name__)

#: The file written last at the URL: the publication is complete while it is there.
PUBLISHED = "PUBLISHED.json"
#: Protocols that can be written (``http(s)://`` is read-only).
WRITABLE = ("s3", "s3a", "gs", "gcs", "az", "abfs", "memory")
#: Files per upload batch (each batch is copied concurrently by the file system, then recorded).
BATCH = 256
#: Seconds between progress lines.
PROGRESS_EVERY_S = 20.0


@dataclass(frozen=True)
class Published:
    """What :func:`publish_run` did: the URL, how many files and bytes the publication holds, how many
    of them it copied now (the others were there already), and how many stale keys it removed."""

    url: URL
    files: int
    bytes: int
    copied: int
    removed: int


def check_publish_url(value: Any, *, what: str = "the publication URL") -> URL:
    """``value`` as a URL that can be written (``s3://``, ``gs://``, ``az://``, ...).

    Raises
    ------
    OutputError
        If it is a local path (a run directory already is one) or a read-only URL (``https://``).
    """
    location = as_location(value) if isinstance(value, str | os.PathLike | URL) else None
    if not isinstance(location, URL):
        raise OutputError(f"{what} {value!r} is not a URL: publish to s3://bucket/prefix, gs://bucket/prefix "
                          "or az://container/prefix (a local run directory needs no publishing)")
    if location.protocol not in WRITABLE:
        raise OutputError(f"{what} {location} cannot be written: {location.protocol}:// is read-only here; "
                          "publish to s3://, gs:// or az://")
    return location


def products(run: RunLayout, *, affinities: bool = False) -> list[Path]:
    """The outputs of ``run`` that are published, those present: the segmentation (and a sweep's),
    fragments, skeletons, lengths, metrics and the report (with ``affinities``, the affinities too)."""
    items = [run.segmentation, *run.swept_segmentations().values(), run.fragments,
             *((run.affinities,) if affinities else ()), run.skeletons, run.skeletons_precomputed,
             run.lengths_csv, run.skeletonize_json, run.metrics_json, *run.report_outputs]
    return [p for p in items if p.exists()]


def publish_run(run_dir: str | Path, url: Any, *, affinities: bool = False) -> Published:
    """Copy the products of the run directory ``run_dir`` to ``url`` (see the module docstring).

    Parameters
    ----------
    run_dir : path
        A run directory whose segmentation is finished (the caller holds its lock).
    url : str or URL
        Where the products go: ``<url>/segmentation.zarr``, ``<url>/report.html``, ...
    affinities : bool
        Publish ``affinities.zarr`` too (the largest output; rarely needed by readers).

    Raises
    ------
    InputDataError
        If the run has no finished segmentation, or records failed blocks.
    OutputError
        If ``url`` cannot be written (no credentials, no bucket, no access, no connection).
    """
    run = RunLayout(run_dir)
    target = check_publish_url(url)
    _check_finished(run)
    files = _files(run, products(run, affinities=affinities))
    fs, root = _filesystem(target, what="publish")
    record_path = run.state / "publish" / f"{hashlib.sha256(str(target).encode()).hexdigest()[:16]}.json"
    record = read_json_or_empty(record_path)
    try:
        remote = {_relative(k, root): int(v.get("size") or 0)
                  for k, v in fs.find(root, detail=True).items()} if fs.exists(root) else {}
        if PUBLISHED in remote:
            fs.rm(f"{root}/{PUBLISHED}")
        todo = [(rel, st) for rel, st in files
                if not (record.get(rel) == [st.st_size, st.st_mtime_ns] and remote.get(rel) == st.st_size)]
        total = sum(st.st_size for _, st in files)
        log.info("publish %s: %d files, %.1f MB to %s (%d already there)", run.root, len(files), total / 1e6,
                 target, len(files) - len(todo))
        _copy(fs, run.root, root, todo, record, record_path)
        keep = {rel for rel, _ in files}
        owned = tuple(f"{p.relative_to(run.root).as_posix()}/" for p in products(run, affinities=True)
                      if p.is_dir())
        stale = [rel for rel in remote if rel not in keep and rel.startswith(owned)]
        if stale:
            fs.rm([f"{root}/{rel}" for rel in stale])
        summary = {"run": run.root.name, "neurorecon": __version__, "files": len(files), "bytes": total,
                   "published_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        _verify(run, target, files)
        fs.pipe_file(f"{root}/{PUBLISHED}", json.dumps(summary, indent=2).encode())
    except OSError as exc:
        if isinstance(exc, OutputError):
            raise
        raise remote_error(target, exc, what="publish", writing=True) from None
    except Exception as exc:  # noqa: BLE001 - botocore / gcsfs errors are no OSError
        if isinstance(exc, InputDataError | OutputError):
            raise
        raise remote_error(target, exc, what="publish", writing=True) from None
    log.info("published %s to %s: %d files copied, %d stale removed", run.root, target, len(todo), len(stale))
    return Published(url=target, files=len(files), bytes=total, copied=len(todo), removed=len(stale))


def _check_finished(run: RunLayout) -> None:
    from pipeline.io.omezarr import read_provenance

    if run.failed_blocks.exists():
        raise InputDataError(f"{run.root} records failed blocks ({run.failed_blocks}): its results are "
                             "incomplete; rerun it to finish them, then publish")
    seg = run.segmentation
    record = read_provenance(seg) if (seg / "zarr.json").is_file() else None
    # finished: it records its number of segments; a run of a version that recorded nothing has its report
    finished = record is not None and ("n_segments" in record or (not record and run.report_html.is_file()))
    if not finished:
        raise InputDataError(f"{run.root} has no finished segmentation.zarr: run `neurorecon segment` or "
                             "`neurorecon run` to the end first, then publish")


def _files(run: RunLayout, paths: list[Path]) -> list[tuple[str, os.stat_result]]:
    """Every file of ``paths`` (relative to the run, POSIX), metadata last: chunks, then each Zarr
    ``zarr.json`` deepest first (arrays before their groups), then neuroglancer ``info`` files."""
    found: list[tuple[str, os.stat_result]] = []
    for path in paths:
        walk = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for p in walk:
            rel = p.relative_to(run.root).as_posix()
            if any(part.startswith(".") for part in rel.split("/")):  # temporaries of a killed writer
                continue
            found.append((rel, p.stat()))

    def order(item: tuple[str, os.stat_result]) -> tuple[int, int, str]:
        rel = item[0]
        name = rel.rsplit("/", 1)[-1]
        if name == "zarr.json":
            return (1, -rel.count("/"), rel)
        return (2, -rel.count("/"), rel) if name == "info" else (0, 0, rel)

    return sorted(found, key=order)


def _copy(fs: Any, local: Path, root: str, todo: list[tuple[str, os.stat_result]], record: dict[str, Any],
          record_path: Path) -> None:
    """Upload ``todo`` in batches (each copied concurrently by ``fs``), recording each finished batch."""
    last = time.monotonic()
    done = 0
    for start in range(0, len(todo), BATCH):
        batch = todo[start:start + BATCH]
        fs.put([str(local / rel) for rel, _ in batch], [f"{root}/{rel}" for rel, _ in batch])
        for rel, st in batch:
            record[rel] = [st.st_size, st.st_mtime_ns]
        _write_record(record_path, record)
        done += len(batch)
        if time.monotonic() - last > PROGRESS_EVERY_S:
            log.info("publish: %d/%d files copied", done, len(todo))
            last = time.monotonic()


def _verify(run: RunLayout, target: URL, files: list[tuple[str, os.stat_result]]) -> None:
    """Open every published OME-Zarr image through zarr's ``FsspecStore``, as a reader will: same shape,
    dtype and voxel size as the run's."""
    from pipeline.io.omezarr import open_image

    stores = sorted({rel.split("/", 1)[0] for rel, _ in files if rel.split("/", 1)[0].endswith(".zarr")})
    for name in stores:
        here, there = open_image(run.root / name), open_image(target / name)
        if (here.shape, here.dtype, here.voxel_size_um) != (there.shape, there.dtype, there.voxel_size_um):
            raise OutputError(f"the published {target / name} reads as {there.shape} {there.dtype} at "
                              f"{there.voxel_size_um} µm but the run's is {here.shape} {here.dtype} at "
                              f"{here.voxel_size_um} µm; publish again")


def _relative(key: str, root: str) -> str:
    return key[len(root):].lstrip("/") if key.startswith(root) else key


def _write_record(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(record))
