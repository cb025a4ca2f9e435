"""The grading pipeline: the order of the stages, in one place.

    read the submission -> run it in the sandbox -> check each item -> score -> (report)

`grade` returns a `GradeResult` and never raises for anything a student did. Reporting (writing
results.json, printing) is left to the caller, so the pipeline stays free of output I/O.
"""

from __future__ import annotations

import time
import traceback
from pathlib import Path

from autograder import sandbox
from autograder.checks import gather_evidence, run_checks
from autograder.errors import SubmissionError
from autograder.markup import code
from autograder.rubric import Failure, Rubric
from autograder.sandbox import NotebookRun
from autograder.scoring import GradeResult, ItemResult, score
from autograder.settings import LIMITS, Limits
from autograder.submission import read_submission

__all__ = ["grade", "notebook_notes", "ungraded"]


def notebook_notes(run: NotebookRun) -> tuple[str, ...]:
    """What the student should know about their notebook's top-level run."""
    notes = []
    for cell in run.cells:
        if cell.skipped:
            notes.append(f"Code cell {cell.index + 1} {cell.skipped}; it was skipped.")
        elif cell.error_type:
            where = f" ({code(cell.where)})" if cell.where else ""
            message = f": {cell.message}" if cell.message else ""
            notes.append(  # the student's words are quoted as code, never read as ours
                f"Code cell {cell.index + 1} raised {code(cell.error_type + message)}{where}; "
                "the cells after it still ran."
            )
    if run.failure:
        notes.append(run.failure)
    return tuple(notes)


def ungraded(
    rubric: Rubric, submission: str, reason: str, *, internal_error: str = "", seconds: float = 0
) -> GradeResult:
    """A result with every item at 0 and `reason` as the message (nothing could be checked)."""
    failure = Failure(f"Not checked: {reason}")
    items = tuple(
        ItemResult(item.id, item.title, 0.0, item.points, item.visibility, failure, 0)
        for item in rubric.items
    )
    return GradeResult(submission, items, (reason,), "", seconds, internal_error)


def grade(
    path: Path,
    *,
    rubric: Rubric,
    limits: Limits = LIMITS,
    public_only: bool = False,
    evidence: bool = False,
) -> GradeResult:
    """Grade the submission at `path` (a notebook, a .py file, or a folder holding one).

    `public_only` checks only the items students see before the deadline (`check` command).
    The child is kept from reading the grader, `solutions/` and `rubric.hidden` (the
    exercise's package and reference, set by `catalog.graded_rubric`). `evidence` also gathers
    the staff-only evidence of shared wrong answers (`checks.gather_evidence`; batch does).
    """
    if public_only:
        rubric = rubric.with_items([item for item in rubric.items if item.visibility == "visible"])
    began = time.monotonic()
    deadline = began + limits.total_seconds
    try:
        submission = read_submission(path, expected=rubric.notebook)
    except SubmissionError as error:
        return ungraded(rubric, path.name, str(error), seconds=time.monotonic() - began)
    name = submission.path.name
    try:
        with sandbox.started(submission.cells, limits=limits, extra_secrets=rubric.hidden) as (
            box,
            run,
        ):
            outcomes = run_checks(rubric, box, run, limits=limits, deadline=deadline)
            output = box.output() if box is not None else run.output
            if evidence:  # after the output is taken: the student's code runs again
                outcomes = gather_evidence(rubric, box, outcomes, deadline=deadline)
        items = score(rubric, outcomes)
    except Exception as error:  # a bug of ours: still a valid result, details for staff
        return ungraded(
            rubric,
            name,
            f"the autograder failed ({type(error).__name__}); your instructor has the details.",
            internal_error=traceback.format_exc(),
            seconds=time.monotonic() - began,
        )
    notes = submission.notes + notebook_notes(run)
    return GradeResult(
        name, items, notes, output, time.monotonic() - began, confinement=run.confinement
    )
