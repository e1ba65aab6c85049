"""Whole-file writes that a kill cannot leave half done: a temporary file beside the target, then a rename."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["write_atomic"]


def write_atomic(path: str | Path, data: bytes | str, *, fsync: bool = False) -> Path:
    """Write ``data`` to ``path`` via ``.<name>.<pid>.tmp`` and ``os.replace``; readers see old or new, never part.

    ``fsync`` flushes the file to disk before the rename (markers that later work trusts).
    Raises ``OSError`` as the file system does (callers name the file in their own error).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data.encode("utf-8") if isinstance(data, str) else data)
        if fsync:
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path
