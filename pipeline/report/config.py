"""The ``report:`` section of a config: what the report writes besides ``report.html`` and ``report.pdf``."""

from __future__ import annotations

from pydantic import Field

from pipeline.settings import StrictModel

__all__ = ["ReportConfig"]


class ReportConfig(StrictModel):
    """Settings of ``neurorecon report`` (whose options override them) and of the ``run`` chain."""

    figures: bool = Field(False, description="also write each figure as a PNG file beside the report")
