"""The class report `batch` writes beside the grades: OUT/report.json and OUT/report.html.

What the class got right and wrong, built from the students' stored results (so it is the same
whether a student was graded in this run or resumed): the score distribution, per rubric item
how many passed and failed, every hint given grouped by item and text (the misconceptions),
the failures without a hint grouped by item and message, and the shared wrong answers another
analysis supplies. The stages, in order:

* `model`: the facts (`build_report`), pure;
* `document`: report.json's document (`to_json`);
* `plots`: the figures, drawn with matplotlib (optional) as SVG;
* `page`: report.html (`render_html`), escaping every student's text;
* `files`: reading the results and writing both files (`write_class_report`).
"""

from __future__ import annotations

from autograder.classreport.document import to_json
from autograder.classreport.files import REPORT_HTML, REPORT_JSON, Written, write_class_report
from autograder.classreport.model import ClassReport, Group, ItemTally, build_report
from autograder.classreport.page import render_html

__all__ = [
    "REPORT_HTML",
    "REPORT_JSON",
    "ClassReport",
    "Group",
    "ItemTally",
    "Written",
    "build_report",
    "render_html",
    "to_json",
    "write_class_report",
]
