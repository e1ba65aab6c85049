"""Write reports (HTML, PDF, PNG figures) and read/write ``metrics.json``.

``metrics.json`` holds the sections ``voxel``, ``skeleton`` and ``length`` (keys listed in
:data:`pipeline.report.METRICS_SCHEMA`), ``thresholds`` after a threshold sweep (one row per threshold),
plus ``inputs`` and ``parameters``. NaN and infinities are
written as ``null`` / ``"inf"`` so the file is strict JSON.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.errors import InputDataError
from pipeline.io.atomic import write_atomic
from pipeline.io.diskspace import write_error
from pipeline.report import Report

__all__ = ["read_metrics_json", "write_metrics_json", "write_report"]


def write_report(
    directory: str | Path, report: Report, *, name: str = "report", figures: bool = False
) -> dict[str, Path]:
    """Write ``<name>.html`` and ``<name>.pdf`` (and the figures as ``<name>_<figure>.png`` if asked).

    Returns
    -------
    dict of str to Path
        ``html``, ``pdf`` and any figure files.

    Raises
    ------
    OutputError
        If the directory cannot be created or a file cannot be written.
    """
    directory = Path(directory)
    out = {"html": directory / f"{name}.html", "pdf": directory / f"{name}.pdf"}
    try:
        directory.mkdir(parents=True, exist_ok=True)
        write_atomic(out["html"], report.html.encode("utf-8"))
        write_atomic(out["pdf"], report.pdf)
        if figures:
            for fig_name, png in report.figures.items():
                out[fig_name] = directory / f"{name}_{fig_name}.png"
                write_atomic(out[fig_name], png)
    except OSError as exc:
        raise write_error(f"cannot write the report to {directory}", exc, directory) from None
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
    if isinstance(value, Path):
        return str(value)
    return value


def write_metrics_json(path: str | Path, metrics: Mapping[str, Any]) -> Path:
    """Write a metrics dictionary as strict JSON (NaN -> null, inf -> "inf").

    Raises
    ------
    OutputError
        If the file cannot be written.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, (json.dumps(_jsonable(metrics), indent=1, allow_nan=False) + "\n").encode("utf-8"))
    except OSError as exc:
        raise write_error(f"cannot write metrics file {path}", exc, path) from None
    return path


_METRIC_SECTIONS = ("voxel", "skeleton", "length", "thresholds")


def _restore(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _restore(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_restore(v) for v in value]
    if value is None:
        return math.nan
    if value == "inf":
        return math.inf
    if value == "-inf":
        return -math.inf
    return value


def read_metrics_json(path: str | Path) -> dict[str, Any]:
    """Read ``metrics.json`` (in the metric sections null -> NaN and "inf" -> inf).

    Raises
    ------
    InputDataError
        If the file is missing or not a JSON object.
    """
    path = Path(path)
    if not path.is_file():
        raise InputDataError(f"metrics file {path} does not exist; run `neurorecon evaluate` first")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputDataError(f"metrics file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InputDataError(f"metrics file {path} must hold a JSON object; got {type(data).__name__}")
    return {k: _restore(v) if k in _METRIC_SECTIONS else v for k, v in data.items()}
