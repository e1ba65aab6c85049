"""The one base of every settings model: immutable, and unknown keys are an error.

Every section of a configuration file (``synth:``, ``train:``, ``segment:``, ``skeletonize:``,
``evaluate:``, ``report:``, ``dask:``, ``output:``) and every settings object the library takes
(:class:`pipeline.skeleton.TeasarParams`) derives from :class:`StrictModel`. Nothing here touches the
file system: checks against files run in the preflight of a run, not in validators.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["StrictModel"]


class StrictModel(BaseModel):
    """A frozen pydantic model that rejects unknown keys (``extra="forbid"``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
