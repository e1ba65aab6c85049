"""Versions of the software a run used, for the report."""

from __future__ import annotations

import importlib.metadata
import platform

__all__ = ["REPORTED_PACKAGES", "software_versions"]

#: Distributions listed in every report.
REPORTED_PACKAGES = (
    "neurorecon",
    "numpy",
    "torch",
    "zarr",
    "waterz",
    "kimimaro",
    "osteoid",
    "dask",
    "prefect",
    "matplotlib",
)


def software_versions(packages: tuple[str, ...] = REPORTED_PACKAGES) -> dict[str, str]:
    """Installed versions (``importlib.metadata``), ``"not installed"`` where absent, plus Python's.

    Examples
    --------
    >>> "numpy" in software_versions()
    True
    """
    out = {"python": platform.python_version()}
    for name in packages:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out
