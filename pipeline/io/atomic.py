"""The one way neurorecon writes a whole file: a temporary file beside the target, then a rename.

Readers see the old file or the new one, never part of one, and a kill leaves at most a temporary
``.<name>.<pid>.tmp`` behind (removed on any failure that Python sees, and by the next run of a stage
that owns the directory). Every whole-file output goes through :func:`atomic_file` or
:func:`write_atomic`: reports, metrics, SWC files, lengths tables, checkpoints, training logs, block
markers and payloads, plans and lookup tables.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

__all__ = [
    "TMP_GLOB", "atomic_file", "fsync_dir", "read_json_or_empty", "write_arrays_atomic", "write_atomic",
]

#: Glob matching the temporaries :func:`atomic_file` makes (for cleaning up after killed writers).
TMP_GLOB = ".*.tmp"


@contextlib.contextmanager
def atomic_file(
    path: str | Path, mode: str = "wb", *, fsync: bool = False, **open_kwargs: Any
) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on leaving the block without error, rename it to ``path``.

    Parameters
    ----------
    path : str or Path
        The file to (re)place. Its directory must exist.
    mode : {"wb", "w"}
        Binary or text; ``open_kwargs`` (``encoding``, ``newline``) are passed to :func:`open`.
    fsync : bool
        Flush the file to disk before the rename, and the directory after it (files later work trusts:
        block markers and payloads, checkpoints).

    Raises
    ------
    OSError
        As the file system does; the temporary is removed and ``path`` is left as it was. Callers
        name the file in their own error.

    Examples
    --------
    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "table.csv"
    >>> with atomic_file(target, "w", encoding="utf-8") as fh:
    ...     _ = fh.write("label,length_um\\n")
    >>> target.read_text()
    'label,length_um\\n'
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w'; got {mode!r}")
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, mode, **open_kwargs) as fh:
            yield fh
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fsync:
        fsync_dir(path.parent)


def write_atomic(path: str | Path, data: bytes | str, *, fsync: bool = False) -> Path:
    """Write ``data`` (UTF-8 if ``str``) to ``path`` through :func:`atomic_file`; returns ``path``."""
    with atomic_file(path, fsync=fsync) as fh:
        fh.write(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)


def read_json_or_empty(path: str | Path) -> dict[str, Any]:
    """The JSON object in ``path`` (a cache or record written with :func:`write_atomic`), or ``{}`` when
    the file is missing, unreadable or holds no object: the caller rebuilds it."""
    import json

    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def write_arrays_atomic(path: str | Path, arrays: Mapping[str, np.ndarray], *, fsync: bool = False) -> Path:
    """Write named arrays as an uncompressed ``.npz`` file through :func:`atomic_file`."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return write_atomic(path, buffer.getvalue(), fsync=fsync)


def fsync_dir(directory: str | Path) -> None:
    """Flush a directory's entries (a rename in it) to disk where the platform allows it."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
