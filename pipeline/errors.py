"""The project's exception hierarchy.

Every failure caused by the user's input or environment derives from :class:`NeuroreconError`, so the
command line can print its message (which names the problem and the fix) without a traceback and exit
non-zero. Wrong types still raise :class:`TypeError` and wrong values :class:`ValueError` at the public
entry points; the classes below subclass those too where that is what they are.
"""

from __future__ import annotations


class NeuroreconError(Exception):
    """Base class of every domain failure neurorecon reports to its users."""


class ConfigError(NeuroreconError, ValueError):
    """A configuration file or environment override is invalid."""


class InputDataError(NeuroreconError, ValueError):
    """Input data (a volume, a store, an SWC file) is missing, malformed or inconsistent."""


class CheckpointError(NeuroreconError, ValueError):
    """A model checkpoint is corrupt or does not match the configured architecture."""


class DependencyError(NeuroreconError, ImportError):
    """An optional package that an option needs is not installed (the message names what to install)."""


class OutputError(NeuroreconError, OSError):
    """An output location cannot be written safely (read-only, locked, outside the output root, ...)."""


class DiskFullError(OutputError):
    """A disk (or quota) holding an output is full: the run is incomplete, and resumable once there is
    space. The command line exits with status 3 for it, as for failed blocks."""


class BlockFailure(NeuroreconError, RuntimeError):
    """One or more blocks failed after their retries; the run is incomplete.

    ``stage`` names the stage, ``errors`` maps each failed block id to its last error (a traceback).
    The command line exits with status 3 for it (2 is bad input or configuration).
    """

    def __init__(self, message: str, *, stage: str = "", errors: dict[int, str] | None = None) -> None:
        super().__init__(message)
        self.stage = stage
        self.errors = dict(errors or {})

    def __reduce__(self):  # type: ignore[no-untyped-def]  # keep stage/errors across processes (Dask, Prefect)
        return (_rebuild_block_failure, (str(self), self.stage, self.errors))


def _rebuild_block_failure(message: str, stage: str, errors: dict[int, str]) -> BlockFailure:
    return BlockFailure(message, stage=stage, errors=errors)
