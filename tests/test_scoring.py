"""Scoring: points per item, totals computed, and a rubric that does not add up is refused."""

from __future__ import annotations

from dataclasses import replace

import pytest
from toy_rubric import CUBE, RUBRIC, SQUARE

from autograder.catalog import rubric_of
from autograder.checks import Outcome
from autograder.errors import ConfigError
from autograder.rubric import Failure, Item, Rubric, Visibility
from autograder.scoring import GradeResult, score


def test_passed_items_get_their_points_failed_get_none() -> None:
    outcomes = [
        Outcome("square", None, 50),
        Outcome("square_small", Failure("wrong"), 3),
        Outcome("cube", None, 50),
    ]
    items = score(RUBRIC, outcomes)
    assert [(i.id, i.score, i.max_score) for i in items] == [
        ("square", 60, 60),
        ("square_small", 0, 20),
        ("cube", 20, 20),
    ]
    result = GradeResult("square.ipynb", items)
    assert (result.score, result.max_score) == (80, 100)
    assert items[2].visibility == "after_due_date"


def test_outcome_for_an_unknown_item_is_an_error() -> None:
    with pytest.raises(ConfigError, match="unknown item 'nope'"):
        score(RUBRIC, [Outcome("nope", None, 1)])


def test_attention_points_sum_to_100() -> None:
    assert rubric_of("attention").total_points == 100


def test_points_can_be_reweighted_by_id() -> None:
    rubric = RUBRIC.with_points({"square": 10})
    assert rubric.total_points == 50 and RUBRIC.total_points == 100


BAD_RUBRICS = [
    ("duplicate-id", lambda: Rubric("r", "r.ipynb", (SQUARE, SQUARE)), "repeats an item id"),
    (
        "negative-points",
        lambda: Rubric("r", "r.ipynb", (Item("x", "x", -1, SQUARE.check, cases=(1,)),)),
        "points must be >= 0",
    ),
    (
        "no-cases",
        lambda: Rubric("r", "r.ipynb", (Item("x", "x", 1, SQUARE.check),)),
        "neither a strategy nor cases",
    ),
    ("unknown-reweight", lambda: RUBRIC.with_points({"cubes": 1}), "Unknown rubric item"),
    ("unknown-exercise", lambda: rubric_of("transformers"), "Unknown exercise 'transformers'"),
]


@pytest.mark.parametrize(
    ("make", "message"), [b[1:] for b in BAD_RUBRICS], ids=[b[0] for b in BAD_RUBRICS]
)
def test_bad_rubrics_are_refused(make: object, message: str) -> None:
    assert callable(make)
    with pytest.raises(ConfigError, match=message):
        make()


@pytest.mark.parametrize("visibility", ["visible", "hidden", "after_due_date", "after_published"])
def test_each_result_carries_its_items_visibility(visibility: Visibility) -> None:
    items = tuple(
        replace(item, visibility=visibility) if item is CUBE else item for item in RUBRIC.items
    )
    rubric = Rubric(RUBRIC.name, RUBRIC.notebook, items)
    results = score(rubric, [Outcome(item.id, None, 1) for item in items])
    assert [r.visibility for r in results] == [item.visibility for item in items]
    assert results[-1].visibility == visibility
