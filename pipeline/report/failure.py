"""The page a run writes instead of its report when it did not finish: which blocks, why, what to do."""

from __future__ import annotations

from collections.abc import Mapping

from pipeline.report.html import data_table, esc, page, section

__all__ = ["failure_page"]


def failure_page(
    run: str, stage: str, errors: Mapping[int, str], versions: Mapping[str, str], *, message: str = ""
) -> str:
    """A self-contained HTML page saying that a run is INCOMPLETE and why.

    Lists the failed blocks of ``stage`` with each one's last error; ``message`` is the error that
    stopped the run where no block failed (e.g. a full disk while writing skeletons).

    Examples
    --------
    >>> html = failure_page("/runs/a", "blocks", {3: "Traceback ...\\nValueError: bad chunk"}, {})
    >>> "INCOMPLETE" in html and "bad chunk" in html
    True
    >>> "no space left" in failure_page("/runs/a", "skeletonize", {}, {}, message="no space left")
    True
    """
    ids = sorted(errors)
    rows = [(i, _last_line(errors[i])) for i in ids]
    rerun = ("Fix the cause and rerun the same command: finished blocks are kept and skipped.")
    if ids:
        body = section(
            "Run INCOMPLETE: blocks failed",
            f"<p><strong>{len(ids)} block(s) of stage {esc(stage)} failed after their retries.</strong> "
            "No lengths or metrics were computed from this run: they would be missing those blocks. "
            "Fix the cause (the errors below; full tracebacks in the log and in failed_blocks.json) and "
            "rerun the same command: finished blocks are kept and skipped.</p>"
            + data_table(["block id", "last error"], rows, numeric=[True, False]),
        )
    else:
        body = section(
            f"Run INCOMPLETE: stage {esc(stage)} failed" if stage else "Run INCOMPLETE",
            f"<p><strong>{esc(message or 'the run stopped')}</strong></p><p>{rerun}</p>",
        )
    body += section("Software", data_table(["", ""], sorted(versions.items()), css_class="kv"))
    return page(title="neurorecon run INCOMPLETE", subtitle=run, body=body,
                footer="neurorecon: this run did not finish")


def _last_line(text: str) -> str:
    lines = [ln for ln in str(text).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "?"
