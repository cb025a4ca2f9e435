"""The class report's plots, drawn with matplotlib as SVG text to inline in the page.

matplotlib is an optional dependency (the `instructor` extra): `draw` raises ImportError
without it, and `MISSING` says how to install it. The figures use the Agg canvas and no pyplot
state, and draw their text as paths (no font is needed to show them). The SVG is
deterministic: the same report gives the same bytes.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from autograder.classreport.model import ClassReport

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

__all__ = ["MISSING", "draw", "load"]

MISSING = (
    "The report's plots need matplotlib, which is not installed: install the instructor extra "
    '(python -m pip install -e ".[instructor]") and run batch again.'
)

PASSED_COLOUR = "#1b7837"
FAILED_COLOUR = "#c2a5cf"
BARS_COLOUR = "#2166ac"
HISTOGRAM_BINS = 10


def load() -> None:
    """Import the parts of matplotlib `draw` uses (about a quarter of a second), ahead of
    drawing: `batch` does it in a thread while its workers grade. Raises ImportError without
    matplotlib."""
    import matplotlib.backends.backend_agg
    import matplotlib.backends.backend_svg
    import matplotlib.figure
    import matplotlib.ticker  # noqa: F401


def _svg(figure: Figure) -> str:
    import matplotlib

    text = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": "autograder report", "svg.fonttype": "path"}):
        figure.savefig(
            text,
            format="svg",
            metadata={"Date": None, "Creator": None, "Format": None, "Type": None},
        )
    document = text.getvalue()
    return document[document.index("<svg") :].strip()  # no XML prologue or DOCTYPE inline


def _figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _whole_numbers() -> MaxNLocator:
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


def _scores(report: ClassReport) -> str:
    figure = _figure(6.4, 3.2)
    axes = figure.add_subplot()
    most = report.max_score or 1.0
    axes.hist(
        list(report.scores.values()),
        bins=HISTOGRAM_BINS,
        range=(0.0, most),
        color=BARS_COLOUR,
        edgecolor="white",
    )
    axes.set_xlim(0.0, most)
    axes.set_xlabel(f"points (of {most:g})")
    axes.set_ylabel("students")
    axes.set_title(f"Scores of {len(report.results)} students")
    axes.yaxis.set_major_locator(_whole_numbers())
    return _svg(figure)


def _items(report: ClassReport) -> str:
    tallies = report.items
    figure = _figure(6.4, 0.9 + 0.32 * max(len(tallies), 1))
    axes = figure.add_subplot()
    rows = list(range(len(tallies)))
    passed = [len(tally.passed) for tally in tallies]
    failed = [len(tally.failed) for tally in tallies]
    axes.barh(rows, passed, color=PASSED_COLOUR, label="passed")
    axes.barh(rows, failed, left=passed, color=FAILED_COLOUR, label="failed")
    axes.set_yticks(rows, [tally.id for tally in tallies], parse_math=False)
    axes.invert_yaxis()  # the first item on top
    axes.set_xlim(0, max(len(report.results), 1))
    axes.set_xlabel("students")
    axes.xaxis.set_major_locator(_whole_numbers())
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    axes.set_title("Passed and failed, per rubric item")
    return _svg(figure)


def draw(report: ClassReport) -> dict[str, str]:
    """The report's figures by name ("scores", "items"), each an `<svg>` element; raises
    ImportError when matplotlib is missing (or cannot be imported)."""
    return {"scores": _scores(report), "items": _items(report)}
