"""The HTML page: one file holding its style, its figures (inline SVG) and its data.

It loads nothing: no script runs, no stylesheet, font or image is fetched, so it
opens offline and the same in every browser. The report data is embedded as JSON in
a ``<script type="application/json" id="leanfit-report-data">`` element (data, not
code), each figure is a ``<figure class="figure" id="fig-ID">`` whose
``<figcaption>`` is its title.
"""

from __future__ import annotations

import json
from html import escape

from leanfit.htmlreport.figures import Figure

STYLE = """
body { font-family: sans-serif; margin: 24px; color: #222; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; }
p.lead { color: #555; margin: 0 0 18px; }
main { display: grid; grid-template-columns: repeat(auto-fill, minmax(600px, 1fr)); gap: 18px; }
figure.figure { margin: 0; padding: 12px 14px; border: 1px solid #ddd; border-radius: 6px;
  background: #fff; overflow-x: auto; }
figcaption { font-weight: bold; font-size: 15px; margin-bottom: 8px; }
figure svg { max-width: 100%; height: auto; display: block; }
div.small { display: inline-block; width: 49%; vertical-align: top; }
table { border-collapse: collapse; font-size: 13px; margin: 0 12px 10px 0;
  display: inline-table; vertical-align: top; }
th, td { padding: 3px 8px; border-bottom: 1px solid #eee; text-align: right; }
th:first-child, td:first-child { text-align: left; }
caption { text-align: left; font-style: italic; padding-bottom: 4px; }
p.note, p.missing { color: #666; font-size: 13px; }
p.missing { padding: 24px 0; }
"""


def render(data: dict, figures: list[Figure]) -> str:
    """The whole page as text."""
    scored = (
        f"on {', '.join(data['input'])}"
        if data["scored_on"] == "data"
        else "on the training holdout"
    )
    lead = (
        f"{escape(data['model'])} model from {escape(data['bundle'])}; metrics and curves "
        f"{escape(scored)}; classes {escape(', '.join(data['classes']))}."
    )
    body = "".join(
        f'<figure class="figure" id="fig-{f.id}"><figcaption>{escape(f.title)}</figcaption>'
        f"{f.body}</figure>"
        for f in figures
    )
    embedded = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>leanfit report: {escape(data['bundle'])}</title><style>{STYLE}</style></head>"
        f'<body><h1>leanfit report</h1><p class="lead">{lead}</p><main>{body}</main>'
        f'<script type="application/json" id="leanfit-report-data">{embedded}</script>'
        "</body></html>\n"
    )
