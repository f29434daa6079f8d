"""The Findings box: the computed verdicts a report page opens with.

Input: a list of :class:`famekit.analysis.findings.Finding`. The box is an object that
JupyterLab shows as HTML and the tests and ``famekit report --check`` read as plain text (one
line per finding), so its numbers are compared like every other printed number. ``famekit
report`` moves the cell tagged ``findings`` to the top of the page's HTML.
"""

from __future__ import annotations

import html

from famekit.errors import ParameterError

__all__ = ["FINDINGS_TAG", "FindingsBox", "findings_box"]

FINDINGS_TAG = "findings"  # the notebook cell whose output is the box
_MARKS = {"found": ("#1a7f37", "●"), "absent": ("#9a6700", "○"), "neutral": ("#57606a", "◦")}
_STYLE = ("border:1px solid #d0d7de;border-left:4px solid #0969da;border-radius:6px;"
          "padding:0.6em 1em;margin:0.5em 0 1em 0;background:#f6f8fa;font-size:0.95em")


class FindingsBox:
    """Findings shown as an HTML box (``_repr_html_``) and as text lines (``repr``)."""

    def __init__(self, findings, title: str = "Findings"):
        self.findings = list(findings)
        self.title = title

    def __repr__(self) -> str:
        return "\n".join([f"{self.title}:"] + [f"- {f.sentence}" for f in self.findings])

    def _repr_html_(self) -> str:
        items = []
        for finding in self.findings:
            colour, mark = _MARKS.get(finding.kind, _MARKS["neutral"])
            items.append(
                f'<li class="famekit-finding famekit-{html.escape(finding.kind)}">'
                f'<span style="color:{colour}" aria-hidden="true">{mark}</span> '
                f"<b>{html.escape(finding.verdict)}</b>: {html.escape(finding.detail)}</li>")
        return (f'<div class="famekit-findings" style="{_STYLE}">'
                f'<div style="font-weight:600;margin-bottom:0.3em">{html.escape(self.title)}'
                '</div><ul style="margin:0;padding-left:0.2em;list-style:none">' + "".join(items)
                + "</ul></div>")


def findings_box(findings, title: str = "Findings") -> FindingsBox:
    """The box of ``findings`` (computed by :mod:`famekit.analysis.findings`)."""
    findings = list(findings)
    if not findings or not all(hasattr(f, "verdict") and hasattr(f, "detail")
                                for f in findings):
        raise ParameterError(
            "findings_box needs a non-empty list of Finding objects. Fix: build them with "
            "famekit.analysis.findings (e.g. gate_uniformity(...))")
    return FindingsBox(findings, title)
