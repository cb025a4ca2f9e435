"""The softmax exercise: a numerically stable `softmax(x, axis=-1)` in NumPy.

`rubric.py` holds the items and their hints, `strategies.py` the inputs, and `oracle.py`
(grader only) the expected answers, computed from the reference solution
`solutions/softmax.py` beside this package. docs/AUTHORING.md writes it step by step.
"""

from __future__ import annotations

from pathlib import Path

from autograder.exercise import Answers, Exercise
from softmax_exercise.rubric import RUBRIC
from softmax_exercise.strategies import SoftmaxCase

__all__ = ["EXERCISE"]


def _answers() -> Answers:
    from softmax_exercise import oracle  # imported in the grader only: a kit has no oracle.py

    return Answers(oracle.FUNCTIONS, oracle.questions)


EXERCISE = Exercise(
    name="softmax",
    package=__name__,
    rubric=RUBRIC,
    reference=Path(__file__).resolve().parent.parent / "solutions" / "softmax.py",
    oracle=_answers,
    cases=(SoftmaxCase,),
    grader_only=("oracle.py",),
    description="a numerically stable softmax",
)
