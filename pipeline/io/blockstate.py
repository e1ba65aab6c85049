"""Per-block completion state, persisted next to an output so reruns skip finished blocks.

Layout: ``<state_dir>/<stage>/<block_id>.json`` holds what the block reported (e.g. its number of
fragments). A block's file is written only after all its output chunks are written, atomically
(temporary file + rename), so a killed run never leaves a block marked done whose output is partial;
a rerun redoes every block without a file. A small ``stage.json`` records the parameters the stage ran
with (grid, thresholds, ...): a rerun with other parameters is refused instead of mixing results.

Large per-block results (edge tables) are stored as ``<block_id>.npz`` beside the marker and written
before it.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import OutputError
from pipeline.io.atomic import write_atomic

__all__ = ["BlockState"]


class BlockState:
    """Completion markers of one stage's blocks.

    Parameters
    ----------
    root : str or Path
        The state directory of a run (e.g. ``<run>/state``).
    stage : str
        Stage name (``fragments``, ``edges``, ``relabel``, ...).
    """

    def __init__(self, root: str | Path, stage: str) -> None:
        self.dir = Path(root) / stage
        self.stage = stage

    # -- parameters --------------------------------------------------------------------------------
    def check_params(self, params: Mapping[str, Any], *, reset: bool = False) -> None:
        """Record the stage's parameters, or check them against those recorded by an earlier run.

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
            for stale in self.dir.glob(".*.tmp*"):
                stale.unlink(missing_ok=True)
        if meta.is_file():
            recorded = json.loads(meta.read_text())
            if recorded != wanted:
                diff = sorted(k for k in set(recorded) | set(wanted) if recorded.get(k) != wanted.get(k))
                raise OutputError(
                    f"stage '{self.stage}' in {self.dir.parent} was started with other parameters "
                    f"(differences: {', '.join(diff)}); resume with the same configuration, "
                    "or start over with --overwrite / another output directory"
                )
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        _atomic_write(meta, json.dumps(wanted, indent=1, sort_keys=True))

    # -- markers ------------------------------------------------------------------------------------
    def is_done(self, block_id: int) -> bool:
        return (self.dir / f"{block_id}.json").is_file()

    def done_ids(self) -> set[int]:
        if not self.dir.is_dir():
            return set()
        return {int(p.stem) for p in self.dir.glob("*.json") if p.stem.isdigit()}

    def mark_done(self, block_id: int, info: Mapping[str, Any] | None = None) -> None:
        """Mark a block finished; call only after all its outputs are written."""
        self.dir.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.dir / f"{block_id}.json", json.dumps(dict(info or {}), default=_jsonable))

    def info(self, block_id: int) -> dict[str, Any]:
        return json.loads((self.dir / f"{block_id}.json").read_text())

    def forget(self, block_id: int) -> None:
        """Remove a block's marker and payload (it will be redone)."""
        for suffix in (".json", ".npz"):
            (self.dir / f"{block_id}{suffix}").unlink(missing_ok=True)

    # -- payloads -----------------------------------------------------------------------------------
    def save_arrays(self, block_id: int, **arrays: np.ndarray) -> None:
        """Store a block's arrays (written before its marker)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        final = self.dir / f"{block_id}.npz"
        tmp = self.dir / f".{block_id}.{os.getpid()}.tmp.npz"
        np.savez(tmp, **arrays)
        os.replace(tmp, final)

    def load_arrays(self, block_id: int, keys: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """A block's arrays (those named in ``keys`` that it has; all if None)."""
        with np.load(self.dir / f"{block_id}.npz") as data:
            wanted = data.files if keys is None else [k for k in keys if k in data.files]
            return {k: data[k] for k in wanted}


def _atomic_write(path: Path, text: str) -> None:
    try:
        write_atomic(path, text, fsync=True)
    except OSError as exc:
        raise OutputError(f"cannot write block state {path}: {exc}") from None


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
