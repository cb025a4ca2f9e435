"""Writing the class report: OUT/report.json and OUT/report.html, from OUT/STUDENT/results.json.

The only part of the report that touches files. Each file is written atomically. Without
matplotlib the page is still written, without its plots and with a note saying how to get
them (`plots.MISSING`); report.json never needs it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autograder.atomic import write_atomically
from autograder.classreport import plots
from autograder.classreport.document import to_json
from autograder.classreport.model import build_report
from autograder.classreport.page import render_html
from autograder.errors import ResultsError
from autograder.stored import read_batch

__all__ = ["REPORT_HTML", "REPORT_JSON", "Written", "write_class_report"]

REPORT_JSON = "report.json"
REPORT_HTML = "report.html"


@dataclass(frozen=True)
class Written:
    """What `write_class_report` wrote."""

    json: Path
    html: Path
    note: str = ""
    """Why the page has no plots ("" when it has them)."""


def _write(path: Path, text: str) -> None:
    if os.path.lexists(path) and (path.is_symlink() or not path.is_file()):
        raise ResultsError(
            f"{path} exists and is not a regular file (a student's folder of that name?): "
            f"move it away, or write the batch into another --out folder."
        )
    write_atomically(path, text)


def write_class_report(
    out: Path,
    *,
    students: Sequence[str],
    exercise: str,
    shared_wrong_answers: Sequence[Mapping[str, Any]] = (),
) -> Written:
    """Build the report of `students` from their results in `out`, and write both files."""
    report = build_report(
        read_batch(out, students=students),
        exercise=exercise,
        shared_wrong_answers=shared_wrong_answers,
    )
    figures: dict[str, str] | None = None
    note = ""
    try:
        figures = plots.draw(report)
    except ImportError:
        note = plots.MISSING
    document = json.dumps(to_json(report), indent=2, ensure_ascii=False, allow_nan=False)
    written = Written(out / REPORT_JSON, out / REPORT_HTML, note)
    _write(written.json, document + "\n")
    _write(written.html, render_html(report, plots=figures, note=note))
    return written
