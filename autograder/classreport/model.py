"""The class report's facts: built from the students' stored results, totals computed.

Pure: no file, no plotting. `build_report` takes the stored results (`stored.read_batch`) and,
from another analysis, the shared wrong answers as JSON-ready dicts, which it passes through.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from autograder.errors import ConfigError
from autograder.stored import StoredItem, StoredResult

__all__ = ["ClassReport", "Group", "ItemTally", "build_report"]


@dataclass(frozen=True)
class ItemTally:
    """How the class did on one rubric item."""

    id: str
    title: str
    max_score: float
    passed: tuple[str, ...]
    """The students who passed it, sorted."""
    failed: tuple[str, ...]
    """The students who failed it, sorted."""


@dataclass(frozen=True)
class Group:
    """Students who failed one item the same way: given the same hint, or (without a hint)
    the same message."""

    item: str
    title: str
    text: str
    """The hint, or the failure's summary when there was no hint."""
    mistake: str
    """The known mistake the hint names ("" for a hint of facts only, or no hint)."""
    students: tuple[str, ...]
    """Sorted."""
    smallest_input: str
    """The shortest description of a failing input among them ("" when none was recorded)."""
    smallest_input_student: str
    """Whose failing input that is."""


def _smallest(failures: Sequence[tuple[str, StoredItem]]) -> tuple[str, str]:
    """(input, student): the shortest recorded input description, ties by text then name."""
    recorded = [(len(item.inputs), item.inputs, student) for student, item in failures]
    best = min((entry for entry in recorded if entry[1]), default=(0, "", ""))
    return best[1], best[2]


@dataclass(frozen=True)
class ClassReport:
    """The facts of one class: its students' results and the shared wrong answers found."""

    exercise: str
    results: tuple[StoredResult, ...]
    """Sorted by student."""
    shared_wrong_answers: tuple[Mapping[str, Any], ...] = ()
    """Groups of students whose wrong answers agree (supplied by that analysis, as JSON-ready
    dicts; reported as they are)."""

    @property
    def students(self) -> tuple[str, ...]:
        return tuple(result.student for result in self.results)

    @property
    def scores(self) -> dict[str, float]:
        return {result.student: result.score for result in self.results}

    @property
    def max_score(self) -> float:
        """The most points a student could earn (the largest maximum among the results)."""
        return max((result.max_score for result in self.results), default=0.0)

    def _item_ids(self) -> list[str]:
        """Every item id, in the order the results list them."""
        return list(dict.fromkeys(item.id for result in self.results for item in result.items))

    def _failures(self) -> Iterable[tuple[str, StoredItem]]:
        for result in self.results:
            for item in result.items:
                if not item.passed:
                    yield result.student, item

    @property
    def items(self) -> tuple[ItemTally, ...]:
        """One tally per rubric item, in rubric order."""
        found: dict[str, list[tuple[str, StoredItem]]] = {i: [] for i in self._item_ids()}
        for result in self.results:
            for item in result.items:
                found[item.id].append((result.student, item))
        return tuple(
            ItemTally(
                item_id,
                entries[0][1].title,
                max(item.max_score for _, item in entries),
                tuple(sorted(student for student, item in entries if item.passed)),
                tuple(sorted(student for student, item in entries if not item.passed)),
            )
            for item_id, entries in found.items()
        )

    def _groups(self, *, hinted: bool) -> tuple[Group, ...]:
        order = {item_id: number for number, item_id in enumerate(self._item_ids())}
        grouped: dict[tuple[str, str, str], list[tuple[str, StoredItem]]] = {}
        for student, item in self._failures():
            if bool(item.hint) != hinted:
                continue
            text = item.hint if hinted else item.summary
            grouped.setdefault((item.id, text, item.mistake), []).append((student, item))
        groups = [
            Group(
                item_id,
                failures[0][1].title,
                text,
                mistake,
                tuple(sorted(student for student, _ in failures)),
                *_smallest(failures),
            )
            for (item_id, text, mistake), failures in grouped.items()
        ]
        groups.sort(key=lambda g: (-len(g.students), order[g.item], g.text, g.mistake))
        return tuple(groups)

    @property
    def misconceptions(self) -> tuple[Group, ...]:
        """Every hint given, grouped by item and hint text: most students first, then rubric
        order, then by text."""
        return self._groups(hinted=True)

    @property
    def unexplained(self) -> tuple[Group, ...]:
        """Failures given no hint, grouped by item and message, sorted the same way."""
        return self._groups(hinted=False)


def _json_ready(group: object, number: int) -> dict[str, Any]:
    if not isinstance(group, Mapping):
        raise ConfigError(
            f"Shared wrong answer {number} is {type(group).__name__}: give each group as a "
            "dict of JSON values."
        )
    try:
        copied = json.loads(json.dumps(dict(group), allow_nan=False))
    except (TypeError, ValueError) as error:
        raise ConfigError(
            f"Shared wrong answer {number} is not JSON-ready ({error}): use only str, int, "
            "float, bool, None, lists and dicts with str keys."
        ) from None
    assert isinstance(copied, dict)
    return copied


def build_report(
    results: Sequence[StoredResult],
    *,
    exercise: str,
    shared_wrong_answers: Sequence[Mapping[str, Any]] = (),
) -> ClassReport:
    """The report of a class from its stored results; `shared_wrong_answers` are copied (each
    must be a dict of JSON values) and reported as given."""
    students = [result.student for result in results]
    if len(set(students)) != len(students):
        raise ConfigError(f"A student appears twice among the results: {sorted(students)}.")
    shared = tuple(_json_ready(group, n) for n, group in enumerate(shared_wrong_answers, 1))
    ordered = tuple(sorted(results, key=lambda result: result.student))
    return ClassReport(exercise, ordered, shared)
