"""Silence C++ code that prints progress to the process's stdout (waterz does, for every call)."""

from __future__ import annotations

import contextlib
import io
import os
import sys
import threading
from collections.abc import Iterator

_lock = threading.Lock()


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """Redirect file descriptor 1 to /dev/null for the duration (set NEURORECON_VERBOSE_WATERZ=1 to keep it).

    Process-wide: concurrent threads' stdout is silenced too while it is active, so it is held under
    a lock; Dask workers run one thread per process for CPU-bound stages anyway.
    """
    if os.environ.get("NEURORECON_VERBOSE_WATERZ"):
        yield
        return
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # replaced stdout without a descriptor
        with contextlib.redirect_stdout(io.StringIO()):
            yield
        return
    with _lock, contextlib.redirect_stdout(io.StringIO()):
        sys.stdout.flush()
        saved = os.dup(fd)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, fd)
            yield
        finally:
            os.dup2(saved, fd)
            os.close(saved)
            os.close(devnull)
