"""The attention exercise: scaled dot-product attention, a causal mask, multi-head attention.

`rubric.py` holds the items and how answers are judged, `hints.py` the diagnosis of known
mistakes, `strategies.py` the inputs, and `oracle.py` (grader only) the expected answers,
computed from the reference solution `solutions/attention.py`.
"""

from __future__ import annotations

from pathlib import Path

from autograder.exercise import Answers, Exercise
from autograder.exercises.attention.rubric import RUBRIC
from autograder.exercises.attention.strategies import CausalCase, InitCase, MhaCase, SdpaCase

__all__ = ["EXERCISE"]


def _answers() -> Answers:
    from autograder.exercises.attention import oracle

    return Answers(oracle.FUNCTIONS, oracle.questions)


EXERCISE = Exercise(
    name="attention",
    package=__name__,
    rubric=RUBRIC,
    reference=Path(__file__).resolve().parents[3] / "solutions" / "attention.py",
    oracle=_answers,
    cases=(SdpaCase, CausalCase, InitCase, MhaCase),
    description="scaled dot-product attention, a causal mask and multi-head attention",
)
