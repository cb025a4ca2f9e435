"""The attention exercise: scaled dot-product attention, a causal mask, multi-head attention.

`rubric.py` holds the items and how answers are judged, `hints.py` the diagnosis of known
mistakes, `cases.py` the inputs and `strategies.py` how Hypothesis draws them (imported only
for a search), and `oracle.py` (grader only) the expected answers, computed from the
reference solution `solutions/attention.py`.
"""

from __future__ import annotations

from pathlib import Path

from autograder.exercise import Answers, Exercise
from autograder.exercises.attention.cases import CausalCase, InitCase, MhaCase, SdpaCase
from autograder.exercises.attention.rubric import RUBRIC

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
