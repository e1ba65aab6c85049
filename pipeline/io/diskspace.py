"""A full disk, reported as such: what could not be written, how much space is left and where.

Any write that fails with ``ENOSPC`` (or ``EDQUOT``, a full quota) becomes a
:class:`~pipeline.errors.DiskFullError` whose message names the file, the free and total space of its
file system and its mount point. The command line exits with status 3 for it, like for failed blocks:
the run is incomplete but resumable, once there is space again.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from pipeline.errors import DiskFullError, OutputError

__all__ = ["DISK_FULL_ERRNOS", "RESERVE_BYTES", "disk_full_error", "disk_space", "is_disk_full",
           "reserved_space", "write_error"]

#: ``errno`` values that mean "no space": the device is full, or the user's quota is.
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
#: Space a run keeps allocated for recording its own failure (:func:`reserved_space`).
RESERVE_BYTES = 256 * 1024


def is_disk_full(exc: BaseException | None) -> bool:
    """Whether ``exc``, or an exception it was raised from, is a full disk or quota."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, DiskFullError) or (isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _existing(path: Path) -> Path:
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _mount_point(path: Path) -> Path:
    path = _existing(path)
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def disk_space(path: str | Path) -> str:
    """``"<free> free of <total> on <mount point>"`` for the file system holding ``path``.

    Examples
    --------
    >>> "free of" in disk_space("/")
    True
    """
    try:
        usage = shutil.disk_usage(_existing(Path(path)))
    except OSError:
        return f"free space unknown on {_mount_point(Path(path))}"
    return f"{_size(usage.free)} free of {_size(usage.total)} on {_mount_point(Path(path))}"


def disk_full_error(what: str, path: str | Path) -> DiskFullError:
    """The :class:`DiskFullError` for ``what`` (e.g. ``"cannot write SWC file x.swc"``) at ``path``."""
    return DiskFullError(
        f"{what}: no space left on the device ({disk_space(path)}); free space there (or raise the quota), "
        "then rerun the same command: finished work is kept"
    )


def write_error(what: str, exc: OSError, path: str | Path) -> OutputError:
    """The error for a failed write of ``path``: :class:`DiskFullError` when the disk or quota is full,
    otherwise an :class:`OutputError` ``"<what>: <exc>"``."""
    if is_disk_full(exc):
        return exc if isinstance(exc, DiskFullError) else disk_full_error(what, path)
    return OutputError(f"{what}: {exc}")


@contextlib.contextmanager
def reserved_space(path: str | Path, nbytes: int = RESERVE_BYTES) -> Iterator[Callable[[], None]]:
    """Keep ``nbytes`` allocated in the file ``path`` while the block runs, so that a run that fills its
    disk can still record why it stopped.

    Yields ``release()``, which frees the space (call it before writing the failure record); the file
    is removed on leaving the block in any case. If the space cannot be allocated (the disk is already
    full) nothing is reserved and the run goes on.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(fd, 0, nbytes)
            else:  # pragma: no cover - macOS
                os.write(fd, bytes(nbytes))
        finally:
            os.close(fd)
    except OSError:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)

    def release() -> None:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)

    try:
        yield release
    finally:
        release()
