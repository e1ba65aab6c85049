"""Run reports: a self-contained HTML page and a PDF with lengths, projections, metrics and provenance.

Compute only (figures -> PNG bytes, page -> str, PDF -> bytes); :mod:`pipeline.io.report` writes the
files and :mod:`flows.stages.report` gathers a run's inputs. The ``report:`` config section is
:class:`pipeline.report.config.ReportConfig`. Names are imported from their submodule on first use
(:mod:`pipeline.lazy`).
"""

from pipeline.lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "content": ["METRICS_SCHEMA", "Summary", "summarize"],
    "figures": ["figure_png", "label_colours", "length_figure", "projection_figure"],
    "projection": ["ZProjection", "combine_projections", "tiled_projection", "z_projection"],
    "report": ["Report", "ReportData", "build_report"],
    "versions": ["software_versions"],
})
