"""Stage 4, scoring: attach each item's points to its verdict. Totals are computed, not stored."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from autograder.checks import Outcome
from autograder.errors import ConfigError
from autograder.evidence import Answer
from autograder.rubric import Failure, Rubric, Visibility

__all__ = ["GradeResult", "ItemResult", "score"]


@dataclass(frozen=True)
class ItemResult:
    """One rubric item's result."""

    id: str
    title: str
    score: float
    max_score: float
    visibility: Visibility
    failure: Failure | None
    """Why the item lost its points; None when it passed."""
    examples: int
    """How many cases were checked."""
    answers: tuple[Answer, ...] = field(default=(), compare=False, repr=False)
    """The answers the verdict leaves unexplained (`Outcome.answers`): staff evidence, written
    apart (`evidence.write_answers`), never in results.json or the feedback."""

    @property
    def passed(self) -> bool:
        return self.failure is None


@dataclass(frozen=True)
class GradeResult:
    """Everything known about one graded submission."""

    submission: str
    """The file that was graded (its name, as the student knows it)."""
    items: tuple[ItemResult, ...]
    notes: tuple[str, ...] = ()
    """Messages about the submission as a whole (cell errors, skipped cells, ...)."""
    output: str = ""
    """What the student's code printed (truncated)."""
    seconds: float = 0.0
    internal_error: str = ""
    """A traceback when the grader itself failed (shown to staff only)."""
    confinement: str = ""
    """How the student's code was confined (the sandbox's mode, for staff; "" if it never ran)."""

    @property
    def score(self) -> float:
        return sum(item.score for item in self.items)

    @property
    def max_score(self) -> float:
        return sum(item.max_score for item in self.items)


def score(rubric: Rubric, outcomes: Sequence[Outcome]) -> tuple[ItemResult, ...]:
    """Full points for a passed item, none for a failed one; each outcome must match an item."""
    items = {item.id: item for item in rubric.items}
    results = []
    for outcome in outcomes:
        item = items.get(outcome.item_id)
        if item is None:
            raise ConfigError(
                f"Outcome for unknown item {outcome.item_id!r}; rubric {rubric.name!r} has "
                f"{', '.join(items)}."
            )
        results.append(
            ItemResult(
                item.id,
                item.title,
                item.points if outcome.passed else 0.0,
                item.points,
                item.visibility,
                outcome.failure,
                outcome.examples,
                outcome.answers,
            )
        )
    return tuple(results)
