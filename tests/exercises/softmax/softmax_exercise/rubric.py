"""The softmax exercise's rubric: its items, their points and visibility, and their hints.

Nothing here computes a softmax: expected answers and the answers of known mistakes come from
the oracle (`ask`), so a student kit can ship this module without `oracle.py`. Every judgement
is made with `autograder.judging`, the public helpers for exercise authors.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from autograder.judging import (
    as_array,
    ask,
    assert_close,
    close,
    established,
    excerpt,
    fail,
    student,
)
from autograder.rubric import CheckFailed, Item, Rubric
from autograder.sandbox import Session, StudentRaised
from autograder.settings import TOLERANCE
from softmax_exercise.strategies import SoftmaxCase, axis_cases, large_cases, value_cases

__all__ = ["HINTS", "RUBRIC"]

HINTS: dict[str, str] = {
    "no-max-subtraction": "Your result matches np.exp(x) / np.exp(x).sum(...) computed as it "
    "stands: np.exp overflows to inf above about 709 (and underflows to 0 far below), and "
    "inf / inf or 0 / 0 is NaN. Subtract the maximum along the axis first: softmax(x) equals "
    "softmax(x - x.max(axis=axis, keepdims=True)), whose exponentials are at most 1.",
    "not-normalised": "Your result is exp(x) without the division: divide by its sum along "
    "the axis (exp.sum(axis=axis, keepdims=True)) so that every slice sums to 1.",
    "whole-array": "Your result is normalised over the whole array, not along one axis: pass "
    "axis=axis, keepdims=True to both max and sum.",
}
"""What to tell a student whose answer a known mistake explains, by the oracle's mistake id
(`axis-K` mistakes are worded in `_hint`)."""
HINTS["not-normalised-no-max"] = HINTS["not-normalised"]

_KEEPDIMS = (
    "The sum (or the max) lost its axis, so it no longer lines up with x: pass keepdims=True "
    "to x.max(...) and exp.sum(...)."
)
_SHAPE = (
    "softmax returns an array of the shape of x, one probability per element: a max or a sum "
    "taken without keepdims=True broadcasts against x into another shape."
)


def _hint(mistake: str, case: SoftmaxCase) -> str:
    if mistake.startswith("axis-"):
        return (
            f"Your result is the softmax along axis {mistake.removeprefix('axis-')}; "
            f"{case.call()} normalises along axis {case.along}: use the `axis` argument in "
            "both x.max(axis=axis, keepdims=True) and exp.sum(axis=axis, keepdims=True)."
        )
    return HINTS[mistake]


def _named(mistakes: Sequence[str], case: SoftmaxCase) -> str:
    """The hint for the established mistakes (several when the inputs cannot tell them apart)."""
    return " Or: ".join(dict.fromkeys(_hint(mistake, case) for mistake in mistakes))


def _same(got: object, answer: object) -> bool:
    """Whether `got` reproduces `answer`, NaN and infinities included (a wrong answer may be
    NaN where the mistake makes it NaN)."""
    if not isinstance(got, np.ndarray) or not isinstance(answer, np.ndarray):
        return False
    if got.shape != answer.shape or got.dtype.kind not in "biuf":
        return False
    with np.errstate(all="ignore"):
        return bool(
            np.isclose(got, answer, rtol=TOLERANCE.rtol, atol=TOLERANCE.atol, equal_nan=True).all()
        )


def _facts(got: np.ndarray, case: SoftmaxCase) -> str:
    """What is known when no catalogued mistake explains `got`."""
    with np.errstate(all="ignore"):
        sums = got.sum(axis=case.along)
    if not np.allclose(sums, 1.0):
        return (
            f"The slices of your result along axis {case.along} sum to {excerpt(sums)}; a "
            "softmax makes every one of them sum to 1."
        )
    return "Each slice sums to 1, but the values differ: softmax(x) is exp(x) / sum(exp(x))."


def _raised(error: StudentRaised) -> str:
    return _KEEPDIMS if "broadcast" in error.message else ""


def _call(session: Session, case: SoftmaxCase) -> object:
    with student(case.call(), hint=_raised):
        if case.axis is None:
            return session.call("softmax", case.x)
        return session.call("softmax", case.x, axis=case.axis)


def _probe(session: Session, case: SoftmaxCase) -> tuple[object, dict[str, np.ndarray], np.ndarray]:
    """The student's answer, the mistakes' answers and the right one on a second input."""
    probe = case.probe()
    try:
        got = _call(session, probe)
    except (CheckFailed, StudentRaised):
        got = None
    return got, dict(ask("variants", probe)), ask("softmax", probe)


def check_softmax(session: Session, case: SoftmaxCase) -> None:
    """The student's softmax of the case matches the reference (all three value items)."""
    expected: np.ndarray = ask("softmax", case)
    got = as_array(_call(session, case), case.call(), expected.shape, hint=_SHAPE)
    if close(got, expected):
        return

    def hint() -> str:  # runs only once the answer is known to be wrong, after shrinking
        mistakes = established(
            got, ask("variants", case), same=_same, probe=lambda _: _probe(session, case)
        )
        return _named(mistakes, case) or _facts(got, case)

    assert_close(got, expected, case.call(), hint=hint)


def check_inputs_unchanged(session: Session, case: SoftmaxCase) -> None:
    """softmax(x) leaves x as it was (judged on right answers only)."""
    with student(case.call(), hint=_raised):
        out, (after,) = session.call("softmax", case.x, echo=True)
    if not close(out, ask("softmax", case)):
        fail(
            f"{case.call()} does not return the right softmax: this item counts only for a "
            "softmax that works.",
            hint="Make softmax_values pass first.",
        )
    if not (isinstance(after, np.ndarray) and np.array_equal(after, case.x)):
        fail(
            f"{case.call()} changed x; it must leave its input as it was.",
            expected=excerpt(case.x),
            got=excerpt(after) if isinstance(after, np.ndarray) else repr(after),
            hint="`x -= x.max(...)` writes into the caller's array: compute a new one "
            "instead, x = x - x.max(axis=axis, keepdims=True).",
        )


RUBRIC = Rubric(
    name="softmax",
    notebook="softmax.ipynb",
    items=(
        Item(
            "softmax_values",
            "softmax(x) matches the reference along the last axis (1 to 3 dimensions)",
            points=40,
            check=check_softmax,
            strategy=value_cases(),
            requires=("softmax",),
            visibility="visible",
        ),
        Item(
            "softmax_axis",
            "softmax(x, axis=k) normalises along axis k, negative k included",
            points=20,
            check=check_softmax,
            strategy=axis_cases(),
            requires=("softmax",),
            visibility="visible",
        ),
        Item(
            "softmax_stability",
            "Large inputs (|x| from 1e3 to 1e4) give finite, correct probabilities",
            points=30,
            check=check_softmax,
            strategy=large_cases(),
            requires=("softmax",),
            visibility="after_due_date",
        ),
        Item(
            "softmax_inputs_unchanged",
            "softmax leaves its input unchanged (judged on right answers)",
            points=10,
            check=check_inputs_unchanged,
            strategy=value_cases(),
            requires=("softmax",),
            visibility="after_due_date",
        ),
    ),
    grade_cells={
        "test_softmax_values": ("softmax_values",),
        "test_softmax_axis": ("softmax_axis",),
        "test_softmax_stability": ("softmax_stability",),
        "test_softmax_inputs_unchanged": ("softmax_inputs_unchanged",),
    },
)
"""Four items worth 100 points; each has one autograded grade cell in the notebook."""
