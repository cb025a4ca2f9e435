"""The KV-cache oracle as a student kit needs it: every question a check asks about a case,
failing or not, is listed by `questions(case)`, and the answers and cases survive a bank."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest
from test_kv_cache_mutations import MISTAKES, REFERENCE, mutant

from autograder import catalog, sandbox
from autograder.catalog import rubric_of
from autograder.checks import run_checks
from autograder.exercises.kv_cache import EXERCISE
from autograder.exercises.kv_cache.oracle import FUNCTIONS, questions
from autograder.oracle import digest, dump_bank, load_bank
from autograder.sandbox import Session

pytestmark = pytest.mark.slow

RUBRIC = rubric_of("kv_cache")


def asked_and_listed(source: str) -> tuple[set[str], set[str], dict[str, list[Any]]]:
    """Grade `source`, recording what the checks asked the oracle and which questions
    `questions(case)` lists for the cases they were given."""
    cases: dict[str, list[Any]] = {item.id: [] for item in RUBRIC.items}

    def capturing(item: Any) -> Any:
        def check(session: Session, case: Any) -> None:
            cases[item.id].append(case)
            item.check(session, case)

        return dataclasses.replace(item, check=check)

    rubric = RUBRIC.with_items([capturing(i) for i in RUBRIC.items])
    live = catalog.live_oracle(EXERCISE)
    with sandbox.started([source]) as (box, run), live.recording() as answers:
        run_checks(rubric, box, run, deadline=time.monotonic() + 600)
    listed = {
        digest(question, args)
        for drawn in cases.values()
        for case in drawn
        for question, args in questions(case)
    }
    return set(answers), listed, cases


PICKED = (
    "causal-mask-without-offset",
    "caches-x-instead-of-its-projections",
    "memory-without-the-factor-2",
    "score-count-off-by-one",
    "get-returns-the-whole-buffer",
)


@pytest.mark.parametrize("name", ["reference", *PICKED])
def test_every_question_a_check_asks_is_listed_for_its_case(name: str) -> None:
    if name == "reference":
        source = REFERENCE.read_text(encoding="utf-8")
    else:
        source = mutant(next(m for m in MISTAKES if m.id == name))
    asked, listed, _ = asked_and_listed(source)
    assert asked and asked <= listed


def test_answers_and_cases_survive_a_bank() -> None:
    answers_keys, _, cases = asked_and_listed(mutant(MISTAKES[0]))
    answers = {}
    for drawn in cases.values():
        for case in drawn[:3]:
            for question, args in questions(case):
                answers[digest(question, args)] = FUNCTIONS[question](*args)
    kinds = EXERCISE.cases
    banked, banked_cases = load_bank(
        dump_bank(answers, {item: drawn[:3] for item, drawn in cases.items()}, kinds=kinds),
        kinds=kinds,
    )
    assert set(banked) == set(answers) and answers_keys
    for item, drawn in cases.items():
        assert [digest("case", (c,)) for c in banked_cases[item]] == [
            digest("case", (c,)) for c in drawn[:3]
        ]
