"""Progress of a stage's blocks, where the user looks: a bar on a terminal, log lines elsewhere, and in a
Prefect run its run log and a progress artifact in the UI.

A stage driver called from a command (``neurorecon segment``) runs in the user's process: a tqdm bar on a
terminal, else a log line every :data:`LOG_EVERY_S` seconds. Inside the reconstruct flow the driver runs as
a Prefect task on a Dask worker, whose own loggers print nothing: the lines go to the task's run logger
(the console and the Prefect UI) and the percentage to a progress artifact. Each stage reports the blocks
resumed from an earlier run, then blocks done / total with the rate and the time left, and ends with one
summary line.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from typing import Any

from tqdm.auto import tqdm

__all__ = ["LOG_EVERY_S", "BlockProgress", "eta_text"]

log = logging.getLogger(__name__)

#: Seconds between two progress lines (first and last lines excepted).
LOG_EVERY_S = 20.0


def eta_text(seconds: float) -> str:
    """A duration for people: ``"42 s"``, ``"3 min"``, ``"2 h 05 min"``.

    Examples
    --------
    >>> eta_text(42.3), eta_text(150), eta_text(7500)
    ('42 s', '3 min', '2 h 05 min')
    """
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    hours, minutes = divmod(round(seconds / 60), 60)
    return f"{hours} h {minutes:02d} min"


def _run_logger() -> logging.Logger | logging.LoggerAdapter | None:
    """The Prefect run logger when called inside a flow or task run, else None."""
    try:
        from prefect.context import FlowRunContext, TaskRunContext
        from prefect.logging import get_run_logger

        if TaskRunContext.get() is None and FlowRunContext.get() is None:
            return None
        return get_run_logger()
    except Exception:  # noqa: BLE001 - progress never breaks a run
        return None


class BlockProgress:
    """Progress of one stage over its blocks.

    Parameters
    ----------
    stage : str
        The stage's name, as in its log lines.
    total : int
        Blocks in the grid.
    resumed : int
        Blocks already done by an earlier run (counted as done, reported once).
    show : bool
        Report at all (False: the summary line only, at DEBUG level).
    unit : str
        What is counted: "block" (a stage over the grid), "shard" (shards of labels).
    """

    def __init__(
        self, stage: str, total: int, resumed: int, *, show: bool = True, unit: str = "block"
    ) -> None:
        self.stage, self.total, self.resumed, self.show = stage, total, resumed, show
        self.unit, self.units = unit, f"{unit}s"
        self.done = resumed
        self.start = self.last_line = time.monotonic()
        self.run_logger = _run_logger() if show else None
        self.logger: Any = self.run_logger or log
        self.bar = None
        self.artifact = None
        if not show:
            return
        if resumed:
            self.logger.info("%s: %d of %d %s already done (resumed)", stage, resumed, total, self.units)
        if self.run_logger is None and sys.stderr.isatty():
            self.bar = tqdm(total=total, initial=resumed, desc=stage, unit=unit, leave=False)
        if self.run_logger is not None:
            with contextlib.suppress(Exception):  # the UI's progress bar; never breaks a run
                from prefect.artifacts import create_progress_artifact

                self.artifact = create_progress_artifact(
                    progress=100.0 * resumed / max(total, 1), key=_artifact_key(stage),
                    description=f"{stage}: {self.units} done")

    def line(self) -> str:
        """``"predict: 5/8 blocks, 0.42 blocks/s, 7 s left"``."""
        elapsed = time.monotonic() - self.start
        new = self.done - self.resumed
        text = f"{self.stage}: {self.done}/{self.total} {self.units}"
        if new and elapsed > 0:
            rate = new / elapsed
            text += f", {rate:.3g} {self.units}/s, {eta_text((self.total - self.done) / rate)} left"
        return text

    def update(self, n: int = 1) -> None:
        """``n`` more blocks finished (done or failed)."""
        self.done += n
        if not self.show:
            return
        if self.bar is not None:
            self.bar.update(n)
        now = time.monotonic()
        if self.bar is None and now - self.last_line >= LOG_EVERY_S and self.done < self.total:
            self.logger.info("%s", self.line())
            self.last_line = now
        if self.artifact is not None:
            with contextlib.suppress(Exception):
                from prefect.artifacts import update_progress_artifact

                update_progress_artifact(self.artifact, progress=100.0 * self.done / max(self.total, 1))

    def close(self, *, failed: int = 0) -> None:
        """Close the bar and log the stage's summary line."""
        if self.bar is not None:
            self.bar.close()
        seconds = time.monotonic() - self.start
        new = self.done - self.resumed
        done = f"{self.stage}: {self.total - failed} of {self.total} {self.units} done"
        text = f"{self.stage}: {self.total} {self.units} done" if not failed else f"{done}, {failed} failed"
        detail = [f"{new} in {eta_text(seconds)}"] if new else []
        if self.resumed:
            detail.append(f"{self.resumed} resumed")
        self.logger.log(logging.INFO if self.show else logging.DEBUG, "%s%s", text,
                        f" ({', '.join(detail)})" if detail else "")


def _artifact_key(stage: str) -> str:
    """A Prefect artifact key (lowercase letters, digits, dashes) for ``stage``."""
    return "".join(c if c.isalnum() else "-" for c in stage.lower()).strip("-") + "-progress"
