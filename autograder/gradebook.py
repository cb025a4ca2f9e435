"""nbgrader integration: write batch scores into nbgrader's gradebook, through nbgrader's API.

Each of the notebook's autograded grade cells gets the share of its points that the rubric
items mapped onto it earned (`Rubric.grade_cells`); manually graded cells (written answers)
are left for the instructor. `nbgrader formgrade` and `nbgrader export` then show the scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from autograder.batch import Outcome
from autograder.errors import ConfigError
from autograder.rubric import Rubric

__all__ = ["record"]


def record(
    database: Path,
    outcomes: Sequence[Outcome],
    *,
    rubric: Rubric,
    assignment: str,
    notebook: str | None = None,
) -> int:
    """Write `outcomes` into the gradebook at `database`; returns how many students."""
    from nbgrader.api import Gradebook, MissingEntry

    if not database.is_file():
        raise ConfigError(
            f"No gradebook at {database}: run 'nbgrader generate_assignment {assignment}' in "
            "the course folder first (it creates gradebook.db)."
        )
    if not rubric.grade_cells:
        raise ConfigError(f"Rubric {rubric.name!r} maps no items onto nbgrader grade cells.")
    notebook = notebook or Path(rubric.notebook).stem
    points = {item.id: item.points for item in rubric.items}
    with Gradebook(f"sqlite:///{database}") as gradebook:
        try:
            gradebook.find_assignment(assignment)
        except MissingEntry:
            raise ConfigError(
                f"Assignment {assignment!r} is not in {database}: run 'nbgrader "
                f"generate_assignment {assignment}' first."
            ) from None
        for outcome in outcomes:
            gradebook.update_or_create_student(outcome.student)
            try:
                gradebook.find_submission(assignment, outcome.student)
            except MissingEntry:
                gradebook.add_submission(assignment, outcome.student)
            for cell, items in rubric.grade_cells.items():
                grade: Any = gradebook.find_grade(cell, notebook, assignment, outcome.student)
                possible = sum(points[item] for item in items)
                earned = sum(outcome.scores.get(item, 0.0) for item in items)
                grade.auto_score = grade.max_score * earned / possible if possible else 0.0
                grade.needs_manual_grade = False
        gradebook.db.commit()
    return len(outcomes)
