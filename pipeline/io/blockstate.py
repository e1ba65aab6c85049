"""Per-block completion state and block records, persisted next to an output so reruns skip finished blocks.

Layout of a stage's state (``<state_dir>/<stage>/``):

* ``<block_id>.json`` — the block's *marker*: what the block reported (e.g. its number of fragments).
  Written only after all the block's outputs are written, atomically and flushed to disk, so a killed
  run never leaves a block marked done whose output is partial; a rerun redoes every block without one.
* ``<block_id>.npz`` — the block's *records*, written before the marker (:meth:`BlockState.save_records`).
* ``<name>.npz`` — records of the stage as a whole (a plan, a lookup table), under a non-numeric name.
* ``stage.json`` — the parameters the stage ran with (grid, thresholds, ...): a rerun with other
  parameters is refused instead of mixing results. Nothing in it depends on where the run directory
  lies: images inside the run are named relative to it (``"affinities.zarr"``), inputs outside it by
  what they hold (:func:`pipeline.io.omezarr.image_fingerprint`, a checkpoint's sha256), so a moved or
  copied run directory resumes.

Records
-------
A *record* is a dataclass whose fields are numpy arrays, ints, floats, bools, other records, ``None``
(an absent optional record) or tuples of those — the compute layer's result types
(:class:`pipeline.skeleton.BlockSkeletons`, :class:`pipeline.segment.blockwise.BlockDecisions`, ...). A
bare numpy array is a record too. This module is the one place that turns records into ``.npz``
members and back: member names are the field paths (``pieces.vertices_vx``, ``decisions.upper.1.index``),
and any nested record can be read alone by its path (:meth:`BlockState.load_record`), reading only its
members from disk.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import types
import typing
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from pipeline.errors import InputDataError, OutputError
from pipeline.io.atomic import TMP_GLOB, write_arrays_atomic, write_atomic
from pipeline.io.diskspace import write_error

__all__ = ["START_OVER", "BlockState", "record_arrays", "record_from_arrays"]

R = TypeVar("R")

#: How to start a run over, in the refusal of a rerun that cannot resume: every command that resumes block
#: state (``segment``, ``run``, ``skeletonize``, ``demo``) has ``--overwrite``; the Prefect flows (the
#: batch's included) have the parameter ``overwrite``.
START_OVER = (
    "start over with --overwrite (a Prefect flow such as the batch: overwrite=true), which replaces this "
    "run's outputs, or write to another output directory"
)


class BlockState:
    """Completion markers and records of one stage's blocks.

    Parameters
    ----------
    root : str or Path
        The state directory of a run (e.g. ``<run>/state``).
    stage : str
        Stage name (``blocks``, ``faces``, ``relabel``, ``skeletonize``, ...).
    """

    def __init__(self, root: str | Path, stage: str) -> None:
        self.dir = Path(root) / stage
        self.stage = stage

    # -- parameters --------------------------------------------------------------------------------
    def check_params(self, params: Mapping[str, Any], *, reset: bool = False) -> None:
        """Record the stage's parameters, or check them against those recorded by an earlier run.

        ``reset`` removes the stage's state first (its blocks are redone).

        Raises
        ------
        OutputError
            If an earlier run recorded different parameters (and ``reset`` is False).
        """
        meta = self.dir / "stage.json"
        wanted = json.loads(json.dumps(dict(params), default=str))
        if reset and self.dir.exists():
            shutil.rmtree(self.dir)
        if self.dir.is_dir():  # temporary files of a killed run (one writer per output: none is live)
            for stale in self.dir.glob(TMP_GLOB + "*"):
                stale.unlink(missing_ok=True)
        if meta.is_file():
            recorded = json.loads(meta.read_text())
            if recorded != wanted:
                diff = sorted(k for k in set(recorded) | set(wanted) if recorded.get(k) != wanted.get(k))
                if recorded.get("state_format") != wanted.get("state_format"):
                    raise OutputError(
                        f"stage '{self.stage}' in {self.dir.parent} was written by another version of "
                        f"neurorecon (state format {recorded.get('state_format', 'unnumbered')}; this "
                        f"version reads {wanted.get('state_format')}) and cannot be resumed; {START_OVER}"
                    )
                raise OutputError(
                    f"stage '{self.stage}' in {self.dir.parent} was started with other parameters "
                    f"(differences: {', '.join(diff)}); resume with the same configuration, or {START_OVER}"
                )
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        _write(meta, lambda: write_atomic(meta, json.dumps(wanted, indent=1, sort_keys=True), fsync=True))

    def recorded_params(self) -> dict[str, Any]:
        """The parameters the stage recorded (``stage.json``), or ``{}`` where it has not run; read only.

        Raises
        ------
        InputDataError
            If ``stage.json`` is damaged (not a JSON object).
        """
        meta = self.dir / "stage.json"
        if not meta.is_file():
            return {}
        try:
            recorded = json.loads(meta.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
            recorded = exc
        if not isinstance(recorded, dict):
            raise InputDataError(f"{meta} is damaged ({str(recorded)[:120]}); rerun the stage '{self.stage}' "
                                 "with --overwrite to rewrite it")
        return recorded

    def differs(self, params: Mapping[str, Any]) -> bool:
        """Whether an earlier run recorded parameters other than ``params`` (False if none recorded)."""
        recorded = self.recorded_params()
        return bool(recorded) and recorded != json.loads(json.dumps(dict(params), default=str))

    def remove(self) -> None:
        """Remove the stage's state: its parameters, markers and records (all its blocks will be redone)."""
        if self.dir.exists():
            shutil.rmtree(self.dir)

    # -- markers ------------------------------------------------------------------------------------
    def is_done(self, block_id: int) -> bool:
        return (self.dir / f"{block_id}.json").is_file()

    def done_ids(self) -> set[int]:
        """The ids of the finished blocks. The folder is streamed (``os.scandir``), not listed: a stage of
        10^6 blocks holds 2 x 10^6 files, and ``Path.glob`` would hold an entry object for each at once."""
        if not self.dir.is_dir():
            return set()
        done = set()
        with os.scandir(self.dir) as entries:
            for entry in entries:
                stem, dot, suffix = entry.name.partition(".")
                if dot and suffix == "json" and stem.isdigit():
                    done.add(int(stem))
        return done

    def mark_done(self, block_id: int, info: Mapping[str, Any] | None = None) -> None:
        """Mark a block finished; call only after all its outputs are written."""
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / f"{block_id}.json"
        text = json.dumps(dict(info or {}), default=_jsonable)
        _write(path, lambda: write_atomic(path, text, fsync=True))

    def info(self, block_id: int) -> dict[str, Any]:
        """What the block reported when it was marked done."""
        return json.loads((self.dir / f"{block_id}.json").read_text())

    def forget(self, block_id: int) -> None:
        """Remove a block's marker and records (it will be redone)."""
        for suffix in (".json", ".npz"):
            (self.dir / f"{block_id}{suffix}").unlink(missing_ok=True)

    # -- records ------------------------------------------------------------------------------------
    def save_records(self, key: int | str, **records: Any) -> None:
        """Store named records of block ``key`` (an id), or of the stage (a non-numeric name).

        Written atomically and flushed to disk; a block's records are written before its marker.
        """
        self.dir.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {}
        for name, record in records.items():
            arrays.update(record_arrays(record, prefix=name))
        path = self._path(key)
        _write(path, lambda: write_arrays_atomic(path, arrays, fsync=True))

    def load_record(self, key: int | str, cls: type[R], name: str, *, optional: bool = False) -> R:
        """The record ``name`` (a field path such as ``decisions.upper.1``) of block or stage ``key``.

        Only that record's members are read. With ``optional``, an absent record gives None (also when
        ``key`` has saved no record at all).

        Raises
        ------
        OutputError
            If the file is damaged, or (not ``optional``) missing or lacking the record.
        """
        path = self._path(key)
        if optional and not path.is_file():
            return None  # type: ignore[return-value]
        try:
            with np.load(path) as data:
                if optional and not any(k == name or k.startswith(name + ".") for k in data.files):
                    return None  # type: ignore[return-value]
                return record_from_arrays(cls, data, prefix=name)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            # (an EOFError must not escape: the command line would take it for Ctrl-D and say "interrupted")
            if isinstance(key, int):
                fix = f"delete {self.dir / f'{key}.json'} and this file and rerun: just that block is redone"
            else:
                fix = "delete it and rerun: it is made again from the blocks"
            raise OutputError(
                f"block state {path} is missing or damaged ({type(exc).__name__}: {exc}); {fix}"
            ) from None

    def _path(self, key: int | str) -> Path:
        if isinstance(key, str) and key.isdigit():
            raise ValueError(f"a stage record needs a non-numeric name; got {key!r}")
        return self.dir / f"{key}.npz"


# -- records <-> arrays ------------------------------------------------------------------------------------


def record_arrays(record: Any, *, prefix: str) -> dict[str, np.ndarray]:
    """Flatten a record into ``{field path: array}`` (``None`` fields are left out).

    Examples
    --------
    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Piece:
    ...     block_id: int
    ...     edges: np.ndarray
    >>> sorted(record_arrays(Piece(3, np.zeros((0, 2), np.int64)), prefix="piece"))
    ['piece.block_id', 'piece.edges']
    """
    out: dict[str, np.ndarray] = {}
    _flatten(record, prefix, out)
    return out


def record_from_arrays(cls: type[R], arrays: Mapping[str, np.ndarray], *, prefix: str) -> R:
    """Rebuild a record of type ``cls`` from :func:`record_arrays` output (or an open ``.npz``).

    Raises
    ------
    KeyError
        If a required member is missing.
    """
    return _decode(cls, arrays, prefix)


def _flatten(value: Any, key: str, out: dict[str, np.ndarray]) -> None:
    if value is None:
        return
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            _flatten(getattr(value, f.name), f"{key}.{f.name}", out)
    elif isinstance(value, tuple):
        for i, item in enumerate(value):
            _flatten(item, f"{key}.{i}", out)
    elif isinstance(value, bool | np.bool_):
        out[key] = np.asarray(value, dtype=bool)
    elif isinstance(value, int | np.integer):
        out[key] = np.asarray(value, dtype=np.int64)
    else:
        out[key] = np.asarray(value)


def _decode(tp: Any, arrays: Mapping[str, np.ndarray], key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        present = key in arrays or any(k.startswith(key + ".") for k in _names(arrays))
        if not present and len(args) < len(typing.get_args(tp)):
            return None
        return _decode(args[0], arrays, key)
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            n = 0
            while any(k == f"{key}.{n}" or k.startswith(f"{key}.{n}.") for k in _names(arrays)):
                n += 1
            return tuple(_decode(args[0], arrays, f"{key}.{i}") for i in range(n))
        return tuple(_decode(a, arrays, f"{key}.{i}") for i, a in enumerate(args))
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        return tp(
            **{f.name: _decode(hints[f.name], arrays, f"{key}.{f.name}") for f in dataclasses.fields(tp)}
        )
    value = arrays[key]
    if tp is bool:
        return bool(value)
    if tp is int:
        return int(value)
    if tp is float:
        return float(value)
    return np.asarray(value)


def _names(arrays: Mapping[str, np.ndarray]) -> list[str]:
    return list(getattr(arrays, "files", None) or arrays.keys())


def _write(path: Path, write: Any) -> None:
    try:
        write()
    except OSError as exc:
        raise write_error(f"cannot write block state {path}", exc, path) from None


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
