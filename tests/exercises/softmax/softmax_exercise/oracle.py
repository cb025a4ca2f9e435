"""The softmax exercise's oracle: right answers and known wrong ones (grader only).

It computes with the reference solution, so it is part of the solution: `Exercise.grader_only`
lists this file, a student kit leaves it out and replays answers recorded from it instead.
The rubric asks these questions by name (`ask("softmax", case)`); a wrong variant is a
(mistake id, answer) pair, and the rubric turns mistake ids into hints.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from autograder.exercise import Question
from softmax_exercise.strategies import SoftmaxCase

__all__ = ["FUNCTIONS", "questions"]


def _reference() -> Any:
    from softmax_exercise import EXERCISE

    return EXERCISE.reference_module()


def softmax(case: SoftmaxCase) -> np.ndarray:
    """The reference softmax of the case."""
    if case.axis is None:
        return np.asarray(_reference().softmax(case.x))
    return np.asarray(_reference().softmax(case.x, axis=case.axis))


def variants(case: SoftmaxCase) -> list[tuple[str, np.ndarray]]:
    """What the classic mistakes return on the case: (mistake id, answer)."""
    x, axis = case.x, case.along
    with np.errstate(all="ignore"):  # the naive formula overflows: that is the point
        naive = np.exp(x) / np.exp(x).sum(axis=axis, keepdims=True)
        unnormalised = np.exp(x - x.max(axis=axis, keepdims=True))
        found = [
            ("no-max-subtraction", naive),
            ("not-normalised", unnormalised),
            ("not-normalised-no-max", np.exp(x)),
            ("whole-array", np.exp(x - x.max()) / np.exp(x - x.max()).sum()),
        ]
    reference = _reference()
    for other in range(x.ndim):
        if other != axis:
            found.append((f"axis-{other}", np.asarray(reference.softmax(x, axis=other))))
    return found


def questions(case: object) -> list[Question]:
    """Every question a check may ask about `case`, failing or not (a kit records them all)."""
    if not isinstance(case, SoftmaxCase):
        return []
    probe = case.probe()
    return [
        ("softmax", (case,)),
        ("variants", (case,)),
        ("softmax", (probe,)),
        ("variants", (probe,)),
    ]


FUNCTIONS: dict[str, Callable[..., Any]] = {"softmax": softmax, "variants": variants}
"""The questions the rubric may ask, by name."""
