"""Run reports: a self-contained HTML page and a PDF with lengths, projections, metrics and provenance.

Compute only (figures -> PNG bytes, page -> str, PDF -> bytes); :mod:`pipeline.io.report` writes the
files and :mod:`flows.analysis` gathers a run's inputs.
"""

from pipeline.report.content import METRICS_SCHEMA, Summary, summarize
from pipeline.report.figures import figure_png, label_colours, length_figure, projection_figure
from pipeline.report.projection import ZProjection, combine_projections, z_projection
from pipeline.report.report import Report, ReportData, build_report
from pipeline.report.versions import software_versions

__all__ = [
    "METRICS_SCHEMA",
    "Report",
    "ReportData",
    "Summary",
    "ZProjection",
    "build_report",
    "combine_projections",
    "figure_png",
    "label_colours",
    "length_figure",
    "projection_figure",
    "software_versions",
    "summarize",
    "z_projection",
]
