"""Reading a batch's output back: each `OUT/STUDENT/results.json` as facts.

The class report and the regrade diff are built from these files, never from a run's memory,
so they say the same whether a student was graded in this run or resumed from an earlier one.
A rubric item is a test whose `extra_data` has an `id` (`report.to_gradescope`); a failed
item's `extra_data` also holds the failure's summary, hint, mistake id and smallest input.
Tests without an id (the "Autograder failed" notices) are not items.
"""

from __future__ import annotations

import json
import math
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autograder.errors import ResultsError

__all__ = ["StoredItem", "StoredResult", "parse_result", "read_batch", "read_result"]

RESULTS = "results.json"


@dataclass(frozen=True)
class StoredItem:
    """One rubric item of a stored result."""

    id: str
    title: str
    score: float
    max_score: float
    passed: bool
    summary: str = ""
    """What was wrong (the failure's first sentence, as Markdown); "" when it passed."""
    hint: str = ""
    """The hint the student was given; "" when none."""
    mistake: str = ""
    """The id of the known mistake the hint names; "" when the hint states facts only."""
    inputs: str = ""
    """The smallest failing input, described; "" when none was recorded."""


@dataclass(frozen=True)
class StoredResult:
    """One student's stored result."""

    student: str
    items: tuple[StoredItem, ...]

    @property
    def score(self) -> float:
        return sum(item.score for item in self.items)

    @property
    def max_score(self) -> float:
        return sum(item.max_score for item in self.items)


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{what} is {value!r}, not a finite number")
    return float(value)


def _item(test: dict[str, Any], facts: dict[str, Any]) -> StoredItem:
    item_id = facts["id"]
    if not isinstance(item_id, str):
        raise ValueError(f"an item id is {item_id!r}, not a string")
    return StoredItem(
        id=item_id,
        title=_text(test.get("name")) or item_id,
        score=_number(test.get("score"), f"the score of {item_id!r}"),
        max_score=_number(test.get("max_score", 0.0), f"the max_score of {item_id!r}"),
        passed=test.get("status") == "passed",
        summary=_text(facts.get("summary")),
        hint=_text(facts.get("hint")),
        mistake=_text(facts.get("mistake")),
        inputs=_text(facts.get("inputs")),
    )


def parse_result(student: str, document: object) -> StoredResult:
    """The facts of one results.json document; raises `ValueError` naming what is missing."""
    if not isinstance(document, dict) or not isinstance(document.get("tests"), list):
        raise ValueError("it is not a results document: it has no list of tests")
    items = []
    for test in document["tests"]:
        if not isinstance(test, dict):
            raise ValueError(f"a test is {type(test).__name__}, not an object")
        facts = test.get("extra_data")
        if isinstance(facts, dict) and "id" in facts:
            items.append(_item(test, facts))
    ids = [item.id for item in items]
    if len(set(ids)) != len(ids):
        raise ValueError(f"it repeats an item id: {ids}")
    return StoredResult(student, tuple(items))


def read_result(path: Path, *, student: str) -> StoredResult:
    """The result stored at `path` (a regular file, never followed if it is a link)."""
    try:
        info = os.lstat(path)
        if not stat.S_ISREG(info.st_mode):
            raise ResultsError(
                f"{path} is not a regular file: results are read only from files the grader "
                "wrote. Regrade the student (delete the folder and run batch again)."
            )
        document = json.loads(path.read_text(encoding="utf-8"))
        return parse_result(student, document)
    except OSError as error:
        raise ResultsError(
            f"Cannot read {path} ({error.strerror or error}): run batch again to write it."
        ) from None
    except ValueError as error:  # JSON, UTF-8 or content
        reason = " ".join(str(error).split())
        raise ResultsError(
            f"{path} is not a results file the grader wrote ({reason}): delete it and run "
            "batch again to regrade the student."
        ) from None


def read_batch(out: Path, *, students: Sequence[str] | None = None) -> tuple[StoredResult, ...]:
    """The stored results of `students` (default: every student folder of `out` that holds a
    results.json), sorted by student."""
    if not out.is_dir():
        raise ResultsError(
            f"No batch output at {out}: give the --out folder of a batch run "
            "(it holds one STUDENT/results.json per student)."
        )
    if students is None:
        students = [
            child.name
            for child in out.iterdir()
            if not child.is_symlink() and child.is_dir() and os.path.lexists(child / RESULTS)
        ]
        if not students:
            raise ResultsError(
                f"{out} holds no STUDENT/{RESULTS}: give the --out folder of a batch run."
            )
    return tuple(
        read_result(out / student / RESULTS, student=student) for student in sorted(students)
    )
