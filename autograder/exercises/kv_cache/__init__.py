"""The KV-cache exercise: a key/value cache for autoregressive decoding, and its cost.

`rubric.py` holds the items, hints and how answers are judged, `cases.py` the inputs and
`strategies.py` how Hypothesis draws them (imported only for a search), and `oracle.py`
(grader only) the expected answers, computed from the reference solution
`solutions/kv_cache.py`.
"""

from __future__ import annotations

from pathlib import Path

from autograder.exercise import Answers, Exercise
from autograder.exercises.kv_cache.cases import (
    AppendCase,
    BytesCase,
    DecodeCase,
    ErrorCase,
    NewTokensCase,
    ResetCase,
    ScoreCase,
    UnchangedCase,
)
from autograder.exercises.kv_cache.rubric import RUBRIC

__all__ = ["EXERCISE"]


def _answers() -> Answers:
    from autograder.exercises.kv_cache import oracle

    return Answers(oracle.FUNCTIONS, oracle.questions)


EXERCISE = Exercise(
    name="kv_cache",
    package=__name__,
    rubric=RUBRIC,
    reference=Path(__file__).resolve().parents[3] / "solutions" / "kv_cache.py",
    oracle=_answers,
    cases=(
        AppendCase,
        ErrorCase,
        ResetCase,
        DecodeCase,
        UnchangedCase,
        NewTokensCase,
        BytesCase,
        ScoreCase,
    ),
    description="a key/value cache for autoregressive decoding",
)
