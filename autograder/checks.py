"""Stage 3, the checks: each rubric item is a Hypothesis property judged in the grader's process.

An item gets one sandbox session (a fresh worker forked from the executed notebook). Its
exhaustive cases run first, in order, then Hypothesis explores random cases and shrinks the
first failure to the smallest input it can find. A timeout or crash ends the item at once (no
shrinking through a dead worker) and costs that item only.
"""

from __future__ import annotations

import dataclasses
import difflib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hypothesis import given
from hypothesis import settings as hypothesis_settings

from autograder.oracle import BankMiss
from autograder.rubric import CheckFailed, Failure, Item, Rubric
from autograder.sandbox import NotebookRun, Sandbox, StudentRaised, WorkerLost
from autograder.settings import HYPOTHESIS, LIMITS, Limits

__all__ = ["Outcome", "run_checks", "run_item"]


@dataclass(frozen=True)
class Outcome:
    """The verdict on one item, before points are attached."""

    item_id: str
    failure: Failure | None
    """None when every example passed."""
    examples: int
    """How many cases were checked."""

    @property
    def passed(self) -> bool:
        return self.failure is None


class _Abort(BaseException):
    """Ends an item at once; a BaseException so that Hypothesis does not try to shrink it."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.summary)
        self.failure = failure


_NOT_IN_KIT = Failure(
    "Not checked here: this checker holds answers for the checks visible before the deadline "
    "only. The grader checks this item."
)


def _describe(case: Any) -> tuple[str, str]:
    describe = getattr(case, "describe", None)
    snippet = getattr(case, "snippet", None)
    return (
        describe() if callable(describe) else repr(case),
        snippet() if callable(snippet) else "",
    )


def _with_case(failure: Failure, case: Any) -> Failure:
    if failure.inputs:
        return failure
    inputs, snippet = _describe(case)
    return dataclasses.replace(failure, inputs=inputs, snippet=failure.snippet or snippet)


def _raised(error: StudentRaised, item: Item) -> Failure:
    if error.is_a("NotImplementedError"):
        name = f"`{item.requires[0]}`" if item.requires else "your code"
        return Failure(
            f"Not implemented yet: {name} still raises NotImplementedError.",
            hint="Replace `raise NotImplementedError()` with your implementation.",
        )
    where = f" ({error.where})" if error.where else ""
    return Failure(f"Your code raised {error}{where}.")


def _missing(name: str, run: NotebookRun) -> Failure:
    names = [d.name for d in run.definitions]
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    found = f" Found `{close[0]}`; expected `{name}`." if close else ""
    return Failure(
        f"`{name}` is not defined in your notebook.{found}",
        hint=f"Define `{name}` with the name and signature given in the assignment, and make "
        "sure the cell that defines it runs without an error.",
    )


def _explained(failed: CheckFailed) -> Failure:
    """The reported failure with its hint; without it if explaining needed what is not there
    (the student's code raised or stopped on the rubric's extra input, or a kit lacks an
    answer): a hint is optional, the verdict is not."""
    if failed.explain is None:
        return failed.failure
    try:
        return failed.explain(failed.failure)
    except (StudentRaised, WorkerLost, BankMiss):
        return failed.failure


def run_item(
    item: Item, box: Sandbox | None, run: NotebookRun, *, limits: Limits, deadline: float
) -> Outcome:
    """Check one item against the student's code; never raises for anything the student did."""
    if box is None or not run.ready:
        return Outcome(item.id, Failure(f"Not checked: {run.failure}"), 0)
    for name in item.requires:
        if run.definition(name) is None:
            return Outcome(item.id, _missing(name, run), 0)
    if time.monotonic() >= deadline:
        return Outcome(
            item.id, Failure("Not checked: the time for grading this submission ran out."), 0
        )
    examples = 0
    with box.session(deadline=min(deadline, time.monotonic() + limits.item_seconds)) as session:

        def judge(case: Any) -> None:
            nonlocal examples
            examples += 1
            try:
                item.check(session, case)
            except CheckFailed as failed:
                raise CheckFailed(
                    _with_case(failed.failure, case), explain=failed.explain
                ) from None
            except StudentRaised as error:
                failure = _raised(error, item)
                if not error.is_a("NotImplementedError"):  # a stub fails on every input
                    failure = _with_case(failure, case)
                raise CheckFailed(failure) from None
            except WorkerLost as lost:
                raise _Abort(_with_case(Failure(f"Stopped: {lost}."), case)) from None
            except BankMiss:  # a student kit has answers for the public checks' inputs only
                raise _Abort(_NOT_IN_KIT) from None

        try:
            for case in item.cases:
                judge(case)
            if item.strategy is not None:
                chosen = HYPOTHESIS
                if item.max_examples is not None:
                    chosen = hypothesis_settings(HYPOTHESIS, max_examples=item.max_examples)

                @chosen
                @given(item.strategy)
                def property_(case: Any) -> None:
                    judge(case)

                property_()
        except CheckFailed as failed:
            return Outcome(item.id, _explained(failed), examples)
        except _Abort as aborted:
            return Outcome(item.id, aborted.failure, examples)
        except Exception as error:
            if type(error).__module__.startswith("hypothesis"):
                return Outcome(
                    item.id,
                    Failure(
                        "Your code gave different results for the same input "
                        f"({type(error).__name__}).",
                        hint="Avoid randomness and state that changes between calls.",
                    ),
                    examples,
                )
            raise
    return Outcome(item.id, None, examples)


def run_checks(
    rubric: Rubric,
    box: Sandbox | None,
    run: NotebookRun,
    *,
    limits: Limits = LIMITS,
    deadline: float | None = None,
    only: Sequence[str] = (),
) -> tuple[Outcome, ...]:
    """Check every item of `rubric` (or those named in `only`), in rubric order."""
    if deadline is None:
        deadline = time.monotonic() + limits.total_seconds
    return tuple(
        run_item(item, box, run, limits=limits, deadline=deadline)
        for item in rubric.items
        if not only or item.id in only
    )
