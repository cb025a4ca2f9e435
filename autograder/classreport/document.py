"""report.json: the class report's facts as one JSON document (for scripts and other tools).

    {"exercise": NAME, "students": N, "max_score": M, "scores": {STUDENT: POINTS},
     "items": {ID: {"title": ..., "max_score": ..., "passed": n, "failed": n}},
     "misconceptions": [{"item": ID, "hint": TEXT, "mistake": ID_OR_EMPTY,
                         "students": [NAMES], "count": n, "smallest_input": TEXT,
                         "smallest_input_student": NAME}],
     "unexplained_failures": [{"item": ID, "summary": TEXT, "students": [NAMES], ...}],
     "shared_wrong_answers": [...]}

Lists are sorted as in the model: most students first.
"""

from __future__ import annotations

from typing import Any

from autograder.classreport.model import ClassReport, Group

__all__ = ["to_json"]


def _group(group: Group, text_key: str) -> dict[str, Any]:
    return {
        "item": group.item,
        text_key: group.text,
        "mistake": group.mistake,
        "students": list(group.students),
        "count": len(group.students),
        "smallest_input": group.smallest_input,
        "smallest_input_student": group.smallest_input_student,
    }


def to_json(report: ClassReport) -> dict[str, Any]:
    """The report.json document of `report`."""
    return {
        "exercise": report.exercise,
        "students": len(report.results),
        "max_score": report.max_score,
        "scores": report.scores,
        "items": {
            tally.id: {
                "title": tally.title,
                "max_score": tally.max_score,
                "passed": len(tally.passed),
                "failed": len(tally.failed),
            }
            for tally in report.items
        },
        "misconceptions": [_group(group, "hint") for group in report.misconceptions],
        "unexplained_failures": [_group(group, "summary") for group in report.unexplained],
        "shared_wrong_answers": [dict(group) for group in report.shared_wrong_answers],
    }
