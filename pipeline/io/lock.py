"""One writer per output directory, and output paths confined to the configured root.

:func:`output_lock` takes an exclusive advisory lock (``fcntl.flock`` through the ``filelock``
package) on ``<out>/.neurorecon.lock`` for the whole run. A second run on the same output fails at
once with :class:`~pipeline.errors.OutputError` naming the holder (host, pid, command, start time);
runs never cooperate on one output, they exclude each other. The operating system releases the lock
when the holding process dies, even by ``kill -9``, so a crash never leaves a stale lock; the next run
resumes from the per-block state. Dask workers write blocks on the lock holder's behalf; they are
children of a local run, or belong to the holder's cluster.

On a shared file system (a cluster's NFS or Lustre), ``flock`` is honoured across hosts where the
file system supports it (NFSv4, Lustre with ``flock`` mounted); the holder file makes a conflict
visible in any case.

:func:`confine` keeps output paths inside ``output.root`` (symbolic links and ``..`` resolved first), and
refuses a URL: outputs are local or mounted directories.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from pipeline.errors import OutputError
from pipeline.io.atomic import write_atomic
from pipeline.io.location import refuse_url

__all__ = ["LOCK_NAME", "check_writable_dir", "confine", "holds_lock", "output_lock"]

LOCK_NAME = ".neurorecon.lock"
_HOLDER_NAME = ".neurorecon.lock.json"
_held: dict[Path, int] = {}  # re-entrant within one process: a flow inside a locked command


def confine(path: str | Path, root: str | Path, *, what: str = "output") -> Path:
    """Return ``path`` resolved, or raise if it is not inside ``root``.

    Parameters
    ----------
    path : str or Path
        An output location (relative paths are relative to the working directory).
    root : str or Path
        The configured output root (``output.root``).
    what : str
        How the path is named in the error (e.g. ``segment.out``).

    Raises
    ------
    OutputError
        If ``path`` resolves outside ``root``, or is a URL (outputs are local or mounted directories:
        :func:`pipeline.io.location.refuse_url`).

    Examples
    --------
    >>> confine("/data/runs/a", "/data/runs").as_posix()
    '/data/runs/a'
    """
    refuse_url(path, what=what)
    resolved = Path(path).expanduser().resolve()
    base = Path(root).expanduser().resolve()
    if resolved != base and base not in resolved.parents:
        raise OutputError(
            f"{what} {path} resolves to {resolved}, outside the output root {base}; write inside it, or set "
            "output.root in the config (or NEURORECON__OUTPUT__ROOT) to a directory that contains it"
        )
    return resolved


def check_writable_dir(out: str | Path, *, what: str = "output directory") -> None:
    """Raise :class:`OutputError` unless ``out`` is, or can be created as, a directory this user can write.

    Creates nothing: the nearest existing ancestor must be writable.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{what} {out} exists and is not a directory; choose a directory path")
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(
            f"{what} {out} is not writable ({existing} is read-only for this user); fix its permissions "
            "or choose another output directory"
        )


@contextlib.contextmanager
def output_lock(out: str | Path) -> Iterator[Path]:
    """Hold the exclusive lock of output directory ``out`` (created if missing) for the block.

    Re-entrant within one process. Yields the lock file's path.

    Raises
    ------
    OutputError
        If another process holds the lock, or ``out`` cannot be created or written.
    """
    directory = Path(out).expanduser().resolve()
    if directory in _held:
        _held[directory] += 1
        try:
            yield directory / LOCK_NAME
        finally:
            _held[directory] -= 1
        return
    check_writable_dir(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create output directory {directory}: {exc.strerror or exc}; "
                          "choose a writable location") from None
    lock = FileLock(directory / LOCK_NAME, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise OutputError(
            f"output directory {directory} is in use by another neurorecon run ({_holder(directory)}); "
            "wait for it to finish or stop it, or write to another output directory"
        ) from None
    except OSError as exc:
        raise OutputError(f"cannot lock output directory {directory}: {exc.strerror or exc}") from None
    holder = directory / _HOLDER_NAME
    info = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "command": " ".join(Path(a).name if i == 0 else a for i, a in enumerate(sys.argv))[:300]}
    write_atomic(holder, json.dumps(info))
    _held[directory] = 1
    try:
        yield directory / LOCK_NAME
    finally:
        del _held[directory]
        holder.unlink(missing_ok=True)
        lock.release()


def holds_lock(out: str | Path) -> bool:
    """Whether this process holds the lock of output directory ``out`` (:func:`output_lock`)."""
    return Path(out).expanduser().resolve() in _held


def _holder(directory: Path) -> str:
    try:
        info = json.loads((directory / _HOLDER_NAME).read_text())
        return f"pid {info['pid']} on {info['host']}, started {info['started']}: {info['command']}"
    except (OSError, ValueError, KeyError):
        return "holder unknown"
