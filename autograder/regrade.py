"""Regrade diffs: what changed between two batch outputs (before and after a rubric change).

    python -m autograder diff OLD_OUT NEW_OUT

`compare` is pure: per student, the items whose points changed and by how much; the items
whose worth changed; the students found in only one output; a summary (up, down, unchanged).
Exit status of the command: 0 when nothing changed, 1 when something did, 2 on bad input.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from autograder.markup import terminal
from autograder.stored import StoredResult

__all__ = ["Diff", "ItemChange", "StudentChange", "compare", "render_diff"]


@dataclass(frozen=True)
class ItemChange:
    """An item whose points (or worth) differ; None where the item is absent."""

    item: str
    old: float | None
    new: float | None

    @property
    def delta(self) -> float:
        return (self.new or 0.0) - (self.old or 0.0)


@dataclass(frozen=True)
class StudentChange:
    """A student graded in both outputs, with the items whose points changed."""

    student: str
    old_score: float
    new_score: float
    items: tuple[ItemChange, ...]

    @property
    def delta(self) -> float:
        return self.new_score - self.old_score


@dataclass(frozen=True)
class Diff:
    """Two batch outputs compared."""

    students: tuple[StudentChange, ...]
    """Every student found in both, sorted (those with no changed item included)."""
    worth: tuple[ItemChange, ...]
    """Items whose maximum points changed (or that one rubric lacks)."""
    only_old: tuple[str, ...]
    only_new: tuple[str, ...]

    @property
    def changed(self) -> tuple[StudentChange, ...]:
        return tuple(student for student in self.students if student.items)

    @property
    def up(self) -> int:
        return sum(student.delta > 0 for student in self.students)

    @property
    def down(self) -> int:
        return sum(student.delta < 0 for student in self.students)

    @property
    def unchanged(self) -> int:
        return sum(student.delta == 0 for student in self.students)

    @property
    def anything(self) -> bool:
        """Whether anything changed: a point, an item's worth, or who was graded."""
        return bool(self.changed or self.worth or self.only_old or self.only_new)


def _points(result: StoredResult) -> dict[str, float]:
    return {item.id: item.score for item in result.items}


def _changes(old: dict[str, float], new: dict[str, float]) -> tuple[ItemChange, ...]:
    ids = list(dict.fromkeys([*old, *new]))
    return tuple(
        ItemChange(item, old.get(item), new.get(item))
        for item in ids
        if old.get(item) != new.get(item)
    )


def _worth(results: Sequence[StoredResult]) -> dict[str, float]:
    worth: dict[str, float] = {}
    for result in results:
        for item in result.items:
            worth[item.id] = max(worth.get(item.id, 0.0), item.max_score)
    return worth


def compare(old: Sequence[StoredResult], new: Sequence[StoredResult]) -> Diff:
    """What changed from `old` to `new` (each one batch output's stored results)."""
    before = {result.student: result for result in old}
    after = {result.student: result for result in new}
    both = sorted(set(before) & set(after))
    students = tuple(
        StudentChange(
            student,
            before[student].score,
            after[student].score,
            _changes(_points(before[student]), _points(after[student])),
        )
        for student in both
    )
    return Diff(
        students,
        _changes(_worth(old), _worth(new)),
        tuple(sorted(set(before) - set(after))),
        tuple(sorted(set(after) - set(before))),
    )


def _name(student: str) -> str:
    """A student's name on one line: line breaks and tabs shown as escapes too."""
    return student.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")


def _signed(value: float) -> str:
    return f"{value:+g}"


def _value(value: float | None) -> str:
    return "absent" if value is None else f"{value:g}"


def render_diff(diff: Diff) -> str:
    """The diff as plain text, one line per fact (terminal-safe: names quote students)."""
    lines = [
        f"item {change.item}: worth {_value(change.old)} -> {_value(change.new)} points"
        for change in diff.worth
    ]
    for student in diff.changed:
        lines.append(
            f"{_name(student.student)}: {student.old_score:g} -> {student.new_score:g} "
            f"({_signed(student.delta)})"
        )
        lines += [
            f"  {change.item}: {_value(change.old)} -> {_value(change.new)} "
            f"({_signed(change.delta)})"
            for change in student.items
        ]
    lines += [f"only in OLD: {_name(student)}" for student in diff.only_old]
    lines += [f"only in NEW: {_name(student)}" for student in diff.only_new]
    lines.append(
        f"{len(diff.students)} students in both: {diff.up} up, {diff.down} down, "
        f"{diff.unchanged} unchanged; {len(diff.only_old)} only in OLD, {len(diff.only_new)} "
        f"only in NEW. {'Something changed.' if diff.anything else 'Nothing changed.'}"
    )
    return terminal("\n".join(lines))
