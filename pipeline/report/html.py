"""The self-contained HTML page: inline CSS, figures embedded as base64 PNG, no external resources."""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from string import Template

__all__ = ["PAGE_TEMPLATE", "card", "data_table", "embed_png", "page", "section"]

PAGE_TEMPLATE = Template("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="neurorecon">
<title>$title</title>
<style>
  :root { --ink: #1f2933; --muted: #52606d; --line: #d9e2ec; --pred: #d1495b; --true: #00798c; }
  * { box-sizing: border-box; }
  body { margin: 0; background: #f2f4f7; color: var(--ink);
         font: 14px/1.45 "Segoe UI", Roboto, "Helvetica Neue", "DejaVu Sans", Arial, sans-serif; }
  main { max-width: 1180px; margin: 0 auto; padding: 28px 32px 56px; }
  header h1 { margin: 0 0 4px; font-size: 24px; font-weight: 650; letter-spacing: -0.01em; }
  header p { margin: 0; color: var(--muted); font-size: 13px; }
  .cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(165px, 1fr)); gap: 12px;
           margin-top: 18px; }
  .card { background: #fff; border-radius: 8px; padding: 12px 14px 11px; border-top: 3px solid var(--line);
          box-shadow: 0 1px 2px rgba(16, 24, 40, .06); }
  .card.seg { border-top-color: var(--pred); } .card.gt { border-top-color: var(--true); }
  .card .label { font-size: 11px; color: var(--muted); text-transform: uppercase; letter-spacing: .05em; }
  .card .value { font-size: 23px; font-weight: 650; margin-top: 2px; font-variant-numeric: tabular-nums; }
  .card .sub { font-size: 12px; color: var(--muted); }
  section { background: #fff; border-radius: 8px; padding: 16px 20px 18px; margin-top: 18px;
            box-shadow: 0 1px 2px rgba(16, 24, 40, .06); }
  section h2 { margin: 0 0 4px; font-size: 17px; font-weight: 650; }
  section > p.note, p.note { margin: 0 0 10px; color: var(--muted); font-size: 12.5px; }
  .grid3 { display: grid; grid-template-columns: repeat(auto-fit, minmax(320px, 1fr)); gap: 18px; }
  .grid3 h3 { margin: 4px 0 6px; font-size: 14px; }
  img.figure { display: block; width: 100%; height: auto; margin-top: 6px; }
  table { border-collapse: collapse; width: 100%; font-size: 12.5px; }
  th { text-align: left; font-weight: 600; color: var(--muted); background: #f5f7fa;
       border-bottom: 1px solid var(--line); padding: 6px 8px; position: sticky; top: 0; }
  td { padding: 5px 8px; border-bottom: 1px solid #eef1f4; vertical-align: top; }
  td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
  td.def { color: var(--muted); font-size: 12px; }
  tr.border td { color: #9aa5b1; }
  .scroll { max-height: 460px; overflow: auto; border: 1px solid var(--line); border-radius: 6px; }
  .kv td:first-child { color: var(--muted); width: 38%; }
  footer { margin-top: 22px; color: var(--muted); font-size: 12px; text-align: center; }
</style>
</head>
<body>
<main>
<header>
  <h1>$title</h1>
  <p>$subtitle</p>
</header>
$body
<footer>$footer</footer>
</main>
</body>
</html>
""")


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def embed_png(png: bytes, alt: str) -> str:
    """An ``<img>`` with the PNG inlined as a data URI."""
    data = base64.b64encode(png).decode("ascii")
    return f'<img class="figure" alt="{esc(alt)}" src="data:image/png;base64,{data}">'


def card(label: str, value: str, sub: str = "", kind: str = "") -> str:
    cls = f"card {kind}".strip()
    sub_html = f'<div class="sub">{esc(sub)}</div>' if sub else ""
    return (
        f'<div class="{cls}"><div class="label">{esc(label)}</div>'
        f'<div class="value">{esc(value)}</div>{sub_html}</div>'
    )


def data_table(
    header: Sequence[str],
    rows: Sequence[Sequence[object]],
    *,
    numeric: Sequence[bool] | None = None,
    row_classes: Sequence[str] | None = None,
    css_class: str = "",
    definitions: bool = False,
) -> str:
    """An HTML table; ``numeric`` right-aligns columns; the last column is muted when ``definitions``."""
    numeric = list(numeric) if numeric is not None else [False] * len(header)
    head = "".join(
        f'<th class="{"num" if n else ""}">{esc(h)}</th>' for h, n in zip(header, numeric, strict=True)
    )
    body = []
    for i, row in enumerate(rows):
        cells = []
        for j, (value, n) in enumerate(zip(row, numeric, strict=True)):
            cls = "num" if n else ("def" if definitions and j == len(row) - 1 else "")
            cells.append(f'<td class="{cls}">{esc(value)}</td>')
        rc = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        body.append(f"<tr{rc}>{''.join(cells)}</tr>")
    cls = f' class="{css_class}"' if css_class else ""
    thead = f"<thead><tr>{head}</tr></thead>" if any(header) else ""  # key-value tables have no header
    return f"<table{cls}>{thead}<tbody>{''.join(body)}</tbody></table>"


def section(title: str, content: str, note: str = "") -> str:
    note_html = f'<p class="note">{esc(note)}</p>' if note else ""
    return f"<section><h2>{esc(title)}</h2>{note_html}{content}</section>"


def page(*, title: str, subtitle: str, body: str, footer: str) -> str:
    """The whole page from already-escaped ``body`` HTML."""
    return PAGE_TEMPLATE.substitute(title=esc(title), subtitle=esc(subtitle), body=body, footer=esc(footer))


def key_value_table(values: Mapping[str, object]) -> str:
    return data_table(["", ""], [(k, v) for k, v in values.items()], css_class="kv")
