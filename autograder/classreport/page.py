"""report.html: the class report as one self-contained page (it opens offline).

Student names, hints, messages and inputs are untrusted text: every one goes through `_text`,
which escapes HTML and shows control and bidirectional-override characters as escapes (as on a
terminal), so nothing in them can add markup or reorder what is shown. The plots are inline
SVG drawn by matplotlib from numbers and item ids; the page loads nothing (no script, font,
style sheet or image from elsewhere), and its content security policy forbids it to.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from autograder.classreport.model import ClassReport, Group
from autograder.markup import terminal

__all__ = ["SHARED_CAVEAT", "render_html"]

SHARED_CAVEAT = (
    "A shared wrong answer is a signal for a person to look at, never a verdict: students "
    "may have worked together as allowed, or made the same uncatalogued mistake."
)

_POLICY = "default-src 'none'; style-src 'unsafe-inline'"

_STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 70em; padding: 0 1em;
       color: #1a1a1a; background: #ffffff; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; width: 100%; }
th, td { border: 1px solid #bbbbbb; padding: 0.3em 0.5em; text-align: left;
         vertical-align: top; }
th { background: #eeeeee; }
td.number, th.number { text-align: right; }
pre { white-space: pre-wrap; margin: 0; font-size: 0.9em; }
div.prose { white-space: pre-wrap; }
figure { margin: 1em 0; }
figure svg { max-width: 100%; height: auto; }
.note { background: #fff4ce; border: 1px solid #d8c27a; padding: 0.5em 1em; }
"""


def _text(value: object) -> str:
    """Any value as HTML text: escaped, with controls shown as escapes."""
    return html.escape(terminal(str(value)), quote=True)


def _table(
    headings: Sequence[str], rows: Iterable[Sequence[str]], *, numbers: Sequence[int] = ()
) -> str:
    """A table of already-escaped cells; `numbers` are the columns aligned right."""

    def cell(tag: str, column: int, content: str) -> str:
        kind = ' class="number"' if column in numbers else ""
        return f"<{tag}{kind}>{content}</{tag}>"

    head = "".join(cell("th", n, _text(heading)) for n, heading in enumerate(headings))
    body = "\n".join(
        "<tr>" + "".join(cell("td", n, content) for n, content in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def _names(names: Sequence[str]) -> str:
    return _text(", ".join(names))


def _block(text: str) -> str:
    """Code-like text (an input), its line breaks kept."""
    return f"<pre>{_text(text)}</pre>" if text else ""


def _prose(text: str) -> str:
    """A sentence (a hint, a message), its line breaks kept."""
    return f'<div class="prose">{_text(text)}</div>' if text else ""


def _groups(groups: Sequence[Group], heading: str, none: str) -> str:
    if not groups:
        return f"<p>{_text(none)}</p>"
    rows = [
        (
            _text(group.item),
            _prose(group.text),
            _text(group.mistake),
            _text(len(group.students)),
            _names(group.students),
            _block(group.smallest_input)
            + (f" ({_text(group.smallest_input_student)})" if group.smallest_input else ""),
        )
        for group in groups
    ]
    columns = ("Item", heading, "Mistake", "Students", "Who", "Smallest failing input (whose)")
    return _table(columns, rows, numbers=(3,))


def _figure(plots: Mapping[str, str] | None, name: str, caption: str) -> str:
    if plots is None or name not in plots:
        return ""
    return (
        f'<figure id="plot-{name}">{plots[name]}<figcaption>{_text(caption)}</figcaption></figure>'
    )


def _shared(report: ClassReport) -> str:
    if not report.shared_wrong_answers:
        return "<p>No shared wrong answers were reported.</p>"
    keys = list(dict.fromkeys(key for group in report.shared_wrong_answers for key in group))

    def shown(value: Any) -> str:
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return _names(value)
        if isinstance(value, str):
            return _text(value)
        return _text(json.dumps(value, ensure_ascii=False, sort_keys=True))

    rows = [[shown(group.get(key, "")) for key in keys] for group in report.shared_wrong_answers]
    return f'<p class="note">{_text(SHARED_CAVEAT)}</p>\n' + _table(keys, rows)


def render_html(report: ClassReport, *, plots: Mapping[str, str] | None, note: str = "") -> str:
    """The page for `report`; `plots` are the figures as SVG (`plots.draw`), or None when they
    could not be drawn, and `note` then says why (shown at the top)."""
    scores = sorted(report.scores.values())
    median = (scores[(len(scores) - 1) // 2] + scores[len(scores) // 2]) / 2 if scores else 0.0
    mean = sum(scores) / len(scores) if scores else 0.0
    title = f"Class report: {report.exercise}"
    tallies = report.items
    item_rows = [
        (
            _text(tally.id),
            _text(tally.title),
            _text(f"{tally.max_score:g}"),
            _text(len(tally.passed)),
            _text(len(tally.failed)),
        )
        for tally in tallies
    ]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{_POLICY}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_text(title)}</title>",
        f"<style>{_STYLE}</style>",
        "</head>",
        "<body>",
        f"<h1>{_text(title)}</h1>",
        f'<p class="note">{_text(note)}</p>' if note else "",
        f"<p>{len(report.results)} students; mean {mean:.4g}, median {median:.4g} of "
        f"{report.max_score:g} points.</p>",
        '<section id="scores">',
        "<h2>Scores</h2>",
        _figure(plots, "scores", "How many students scored how many points."),
        "</section>",
        '<section id="items">',
        "<h2>Rubric items</h2>",
        _figure(plots, "items", "How many students passed and failed each item."),
        _table(("Item", "Title", "Points", "Passed", "Failed"), item_rows, numbers=(2, 3, 4)),
        "</section>",
        '<section id="misconceptions">',
        "<h2>Misconceptions: the hints given</h2>",
        _groups(report.misconceptions, "Hint", "No hint was given: no item failed with one."),
        "</section>",
        '<section id="unexplained">',
        "<h2>Failures without a hint</h2>",
        _groups(report.unexplained, "Message", "Every failure came with a hint."),
        "</section>",
        '<section id="shared">',
        "<h2>Shared wrong answers</h2>",
        _shared(report),
        "</section>",
        "</body>",
        "</html>",
    ]
    return "\n".join(part for part in parts if part) + "\n"
