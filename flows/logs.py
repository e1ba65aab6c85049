"""One way neurorecon's processes log: Prefect's console format, libraries quiet, warnings on one line.

The command line configures its process with :func:`configure_logging`; the reconstruct flow's tasks,
which run in Dask worker processes, call :func:`one_line_warnings` so a warning raised there is one log
line of the task's run (the console and the Prefect UI) instead of a source path and a code line on the
worker's stderr.
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any

__all__ = ["DATE_FORMAT", "LOG_FORMAT", "QUIET_LOGGERS", "configure_logging", "one_line_warnings"]

#: Prefect's console format (``12:03:04.567 | INFO    | name - message``): one timestamp format for
#: the project's lines and Prefect's.
LOG_FORMAT = "%(asctime)s.%(msecs)03d | %(levelname)-7s | %(name)s - %(message)s"
DATE_FORMAT = "%H:%M:%S"
#: Libraries whose routine INFO chatter (cluster start and stop, HTTP calls, where remote inputs found their
#: credentials and endpoint) shows only with --verbose.
QUIET_LOGGERS = ("distributed", "httpx", "prefect.server", "prefect.task_runner.dask", "uvicorn", "asyncio",
                 "fontTools", "numcodecs", "botocore", "aiobotocore", "s3fs", "fsspec")


def configure_logging(*, verbose: bool = False) -> None:
    """Log at INFO (DEBUG with ``verbose``) in :data:`LOG_FORMAT`; :data:`QUIET_LOGGERS` at WARNING
    unless ``verbose``; warnings as one line each (:func:`one_line_warnings`)."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=LOG_FORMAT,
                        datefmt=DATE_FORMAT)
    # Dask sets the level of its loggers when distributed is first imported, and in every worker process,
    # from its config: set it there (the environment reaches the worker processes too). The local
    # cluster's workers are quieter still (flows.cluster.local_cluster).
    level = "debug" if verbose else "warning"
    os.environ["DASK_LOGGING__DISTRIBUTED"] = level
    import dask

    dask.config.set({"logging": {**dask.config.get("logging", {}), "distributed": level}})
    for name in QUIET_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(logging.DEBUG if verbose else logging.WARNING)
        # Prefect's logging setup (at each flow run) resets the level of every logger below "prefect" to
        # NOTSET; a filter stays
        logger.removeFilter(_below_warning)
        if not verbose and name.startswith("prefect."):
            logger.addFilter(_below_warning)
    one_line_warnings()


def _below_warning(record: logging.LogRecord) -> bool:
    """A logging filter passing warnings and errors only."""
    return record.levelno >= logging.WARNING


def one_line_warnings() -> None:
    """Show each warning as one log line, ``Category: message`` (logger ``py.warnings``; inside a Prefect
    run, the run's logger), never the file path and source line of where it was raised."""
    warnings.showwarning = _show


def _show(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None,
          line: str | None = None) -> None:
    from flows.stages.progress import _run_logger

    logger = _run_logger() or logging.getLogger("py.warnings")
    text = str(message).strip().replace("\n", " ")
    logger.warning("%s: %s", category.__name__, text)
