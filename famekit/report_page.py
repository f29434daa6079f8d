"""One report page: an executed notebook turned into a readable, offline HTML page.

What a reader meets, top to bottom:

1. a navigation bar (the index, the previous and next page, a button that shows the code) and
   a table of contents built from the page's section headings;
2. the page's title and question, then its **Findings box** (the output of the cell tagged
   ``findings``, moved up here, its code dropped: every sentence in it is computed by
   :mod:`famekit.analysis.findings`);
3. the sections, code cells collapsed (the button shows them), figures drawn by one shared
   plotly.js.

Cells tagged ``results`` (the numbers the tests read back) are left out of the HTML; they stay
in the committed ``.ipynb`` that ``famekit report --check`` compares.
"""

from __future__ import annotations

import copy
import hashlib
import html
import json
import re
from dataclasses import dataclass

__all__ = ["FINDINGS_TAG", "RESULTS_TAG", "Neighbours", "notebook_to_html", "recorded_results",
           "script_json"]

PLOTLY_MIME = "application/vnd.plotly.v1+json"
FINDINGS_TAG = "findings"  # the cell whose output is the page's Findings box
RESULTS_TAG = "results"  # cells kept for the tests, left out of the HTML

# Inside <script> the HTML parser still looks for "</script" and "<!--" (which swallows the rest
# of the page), and U+2028/9 end a line in older JavaScript: JSON there escapes all of them.
_SCRIPT_JSON_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                        "\u2028": "\\u2028", "\u2029": "\\u2029"}
_SCRIPT_JSON_UNSAFE = re.compile("[<>&\u2028\u2029]")
_CDN_SCRIPT = re.compile(r'<script[^>]*\ssrc="https?://[^"]*"[^>]*>\s*</script>\s*')
_H2 = re.compile(r'<h2 id="([^"]+)">(.*?)</h2>', re.DOTALL)
_TAGS = re.compile(r"<[^>]+>")
_BODY = re.compile(r"<body[^>]*>")

# Code is hidden until the reader asks for it; without JavaScript it simply stays visible.
_PAGE_STYLE = """<style>
.famekit-hide-code .jp-CodeCell .jp-Cell-inputWrapper { display: none; }
.famekit-nav, .famekit-toc { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; }
.famekit-nav { display: flex; gap: 1.2em; align-items: center; flex-wrap: wrap;
  padding: 0.5em 1em; border-bottom: 1px solid #d0d7de; font-size: 0.9em; }
.famekit-nav button { font-size: 0.9em; cursor: pointer; }
.famekit-toc { padding: 0.3em 1em 0.6em 1em; font-size: 0.9em; }
.famekit-toc ul { list-style: none; margin: 0.2em 0; padding-left: 0.8em; }
.famekit-findings ul { list-style: none; }
</style>
<script>document.documentElement.classList.add("famekit-hide-code");</script>
"""
_TOGGLE = ('<button type="button" id="famekit-code-toggle">Show code</button><script>'
           '(function(){var b=document.getElementById("famekit-code-toggle");'
           'b.addEventListener("click",function(){var c=document.documentElement.classList;'
           'c.toggle("famekit-hide-code");b.textContent=c.contains("famekit-hide-code")?'
           '"Show code":"Hide code";});})();</script>')


@dataclass(frozen=True)
class Neighbours:
    """Where a page sits: the index and the previous / next pages (hrefs relative to it;
    None where there is none)."""

    index: str | None = None
    previous: str | None = None
    next_page: str | None = None


def script_json(value) -> str:
    """``value`` as JSON that is safe to place inside an HTML ``<script>`` element."""
    return _SCRIPT_JSON_UNSAFE.sub(lambda m: _SCRIPT_JSON_ESCAPES[m.group()], json.dumps(value))


def _plotly_html(figure_json: dict, number: int) -> str:
    """A div + script drawing one figure with the page's shared plotly.js. The div's id comes
    from the figure and its place on the page, so the same report gives the same bytes."""
    payload = script_json(figure_json)
    digest = hashlib.sha256(payload.encode()).hexdigest()[:8]
    div = f"plot-{number}-{digest}"
    return (
        f'<div id="{div}" class="plotly-graph-div" style="width:100%;height:100%;"></div>'
        f"<script>(function(){{var f={payload};"
        f"Plotly.newPlot('{div}', f.data || [], f.layout || {{}}, "
        f"Object.assign({{responsive: true}}, f.config || {{}}));}})();</script>"
    )


def recorded_results(nb) -> dict:
    """The dict an executed notebook recorded for the tests: the JSON printed by its code cell
    tagged ``results`` (markdown cells with that tag only introduce it)."""
    cells = [c for c in nb.cells if c.cell_type == "code" and RESULTS_TAG in _tags(c)]
    if len(cells) != 1:
        raise ValueError(f"the notebook has {len(cells)} code cells tagged {RESULTS_TAG!r}, "
                         "expected 1 (its recorded results)")
    text = "".join(o.get("text", "") for o in cells[0].get("outputs", [])
                   if o.get("output_type") == "stream")
    return json.loads(text)


def _tags(cell) -> set:
    return set(cell.get("metadata", {}).get("tags", []))


def _reading_order(nb) -> None:
    """Drop the results cells; move the Findings cell (without its code) up, after the first
    markdown cell (the title and question)."""
    cells = [c for c in nb.cells if RESULTS_TAG not in _tags(c)]
    findings = [c for c in cells if FINDINGS_TAG in _tags(c)]
    rest = [c for c in cells if FINDINGS_TAG not in _tags(c)]
    for cell in findings:
        cell.source = ""  # the box is the output; its code is one call
    at = next((i + 1 for i, c in enumerate(rest) if c.cell_type == "markdown"), 0)
    nb.cells = rest[:at] + findings + rest[at:]


def _nav(neighbours: Neighbours | None, body: str) -> str:
    links = []
    if neighbours is not None:
        for label, href in (("Index", neighbours.index), ("← Previous", neighbours.previous),
                            ("Next →", neighbours.next_page)):
            if href:
                links.append(f'<a href="{html.escape(href, quote=True)}">{label}</a>')
    links.append(_TOGGLE)
    toc = [f'<li><a href="#{html.escape(anchor, quote=True)}">'
           f"{html.escape(html.unescape(_TAGS.sub('', text)).replace('¶', '').strip())}</a></li>"
           for anchor, text in _H2.findall(body)]
    block = '<nav class="famekit-nav">' + " ".join(links) + "</nav>"
    if toc:
        block += ('<nav class="famekit-toc" aria-label="Contents"><b>Contents</b><ul>'
                  + "".join(toc) + "</ul></nav>")
    return block


def notebook_to_html(nb, plotly_src: str, title: str,
                     neighbours: Neighbours | None = None) -> str:
    """HTML of an executed notebook whose plotly figures use the shared ``plotly_src`` script,
    laid out for reading (see the module docstring)."""
    from nbconvert import HTMLExporter

    nb = copy.deepcopy(nb)
    _reading_order(nb)
    figures = 0
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if PLOTLY_MIME in data:
                figure = data[PLOTLY_MIME]
                data.clear()
                figures += 1
                data["text/html"] = _plotly_html(dict(figure), figures)
    exporter = HTMLExporter(template_name="lab")
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": title}})
    # nbconvert's lab template loads MathJax from a CDN; reports must not reach the network
    # (the notebooks use no LaTeX), so that script is dropped.
    body = _CDN_SCRIPT.sub("", body)
    script = f'<script src="{plotly_src}" charset="utf-8"></script>'
    body = body.replace("</head>", f"{script}\n{_PAGE_STYLE}</head>", 1)
    opening = _BODY.search(body)
    if opening:
        at = opening.end()
        body = body[:at] + _nav(neighbours, body) + body[at:]
    return body
