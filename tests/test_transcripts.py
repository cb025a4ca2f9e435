"""Failing runs told again (`transcripts.py`): a student whose code answers as an earlier one's
gets that run's outcome without the search; anyone else gets what a cold grade gives."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import REFERENCE_SOURCE
from conftest import RUBRIC as ATTENTION
from test_drawn import KEY, LIMITS, RIGHT, RUBRIC, SQUARE, STUDENTS, outcome

from autograder import checks, drawn, sandbox, transcripts
from autograder.checks import Outcome, _data_of, _outcome_of
from autograder.evidence import Answer
from autograder.rubric import Failure
from autograder.settings import CACHES

SDPA = "sdpa_reference"
WRONG = {s: code for s, code in STUDENTS.items() if s != "right"}
SLOW_ON_LARGE = (
    "import time\ndef square(x):\n    if x > 400:\n        time.sleep(5)\n    return x * x"
)


@pytest.fixture(autouse=True)
def cold() -> Iterator[None]:
    drawn.forget()
    transcripts.forget()
    transcripts.share(None, grader="")
    yield
    drawn.forget()
    transcripts.forget()
    transcripts.share(None, grader="")


def _cold(code: str) -> Outcome:
    """What `code` gets with nothing kept, and nothing left kept afterwards."""
    found = outcome(code)
    drawn.forget()
    transcripts.forget()
    return found


def _searches(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The items Hypothesis searches, from now on."""
    searched: list[str] = []
    real = checks.explore

    def spy(item: Any, key: bytes, test: Callable[[Any], None]) -> None:
        searched.append(item.id)
        real(item, key, test)

    monkeypatch.setattr(checks, "explore", spy)
    return searched


def _same(one: Outcome, other: Outcome) -> None:
    """Equal outcomes, down to the fields that do not take part in `==` (staff evidence)."""
    assert one == other
    assert (one.unexplained, one.answers) == (other.unexplained, other.answers)


@pytest.mark.parametrize("student", list(WRONG), ids=list(WRONG))
def test_a_second_student_who_answers_alike_gets_the_first_ones_outcome_without_a_search(
    student: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cold = _cold(WRONG[student])
    assert not cold.passed
    _same(outcome(WRONG[student]), cold)  # the first: a full run, kept
    searched = _searches(monkeypatch)
    _same(outcome(WRONG[student] + "\n# written apart"), cold)  # other code, the same answers
    assert searched == []


@pytest.mark.parametrize("first", list(WRONG), ids=list(WRONG))
@pytest.mark.parametrize("student", list(STUDENTS), ids=list(STUDENTS))
def test_a_student_after_a_failing_one_gets_what_a_cold_grade_gives(
    first: str, student: str
) -> None:
    expected = _cold(STUDENTS[student])
    assert not outcome(WRONG[first]).passed  # kept: its run is told to the next student first
    _same(outcome(STUDENTS[student]), expected)


def test_a_run_in_which_a_worker_was_lost_is_not_kept() -> None:
    slow = _cold(SLOW_ON_LARGE)
    assert slow.failure is not None and "did not return" in slow.failure.summary
    assert transcripts._recall(SQUARE, KEY) == []
    outcome(SLOW_ON_LARGE)
    assert transcripts._recall(SQUARE, KEY) == []  # a timeout depends on the machine
    assert not outcome(WRONG["wrong-from-500"]).passed
    assert len(transcripts._recall(SQUARE, KEY)) == 1


def test_runs_are_kept_per_key_and_item() -> None:
    outcome(WRONG["wrong-from-500"])
    assert len(transcripts._recall(SQUARE, KEY)) == 1
    assert transcripts._recall(SQUARE, b"another course key") == []


def test_a_run_is_told_only_when_every_reply_is_the_same_bit_for_bit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    outcome(WRONG["wrong-from-500"])
    searched = _searches(monkeypatch)
    float_answers = "def square(x):\n    return float(x * x if x < 500 else x * x + 1)"
    assert outcome(float_answers).failure is not None  # 1.0 is not 1: its own run
    assert searched == ["square"]


# --- shared between the processes of a batch -----------------------------------------------


def test_runs_are_shared_through_a_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    transcripts.share(tmp_path, grader="a grader")
    cold = outcome(WRONG["state-between-calls"])
    (written,) = tmp_path.iterdir()
    assert written.stat().st_mode & 0o077 == 0  # the grader's alone
    transcripts.forget()  # another process: nothing in memory, the same folder
    drawn.forget()
    searched = _searches(monkeypatch)
    _same(outcome(WRONG["state-between-calls"]), cold)
    assert searched == []
    transcripts.forget()
    transcripts.share(tmp_path, grader="another grader")  # another grader reads none of it
    _same(outcome(WRONG["state-between-calls"]), cold)
    assert searched == ["square"]


def _rewrite(change: Callable[[dict[str, Any]], object]) -> Callable[[Path], None]:
    def rewrite(path: Path) -> None:
        document = json.loads(path.read_text())
        change(document)
        path.write_text(json.dumps(document))

    return rewrite


DAMAGED: dict[str, Callable[[Path], object]] = {
    "not-json": lambda path: path.write_text("{"),
    "not-utf8": lambda path: path.write_bytes(b"\xff\xfe"),
    "other-version": _rewrite(lambda d: d.update(version=99)),
    "other-item": _rewrite(lambda d: d.update(item="cube")),
    "bad-base64": _rewrite(lambda d: d["sessions"][0][0].__setitem__(0, "not base64!")),
    "bad-digest": _rewrite(lambda d: d["sessions"][0][0].__setitem__(1, "zz")),
    "sessions-a-string": _rewrite(lambda d: d.update(sessions="none")),
    "outcome-of-another-item": _rewrite(lambda d: d["outcome"].update(item="cube")),
    "outcome-a-list": _rewrite(lambda d: d.update(outcome=[])),
    "failure-a-string": _rewrite(lambda d: d["outcome"].update(failure="wrong")),
    "failure-missing-a-field": _rewrite(lambda d: d["outcome"]["failure"].pop("hint")),
    "examples-a-string": _rewrite(lambda d: d["outcome"].update(examples="3")),
    "answers-not-pairs": _rewrite(lambda d: d["outcome"].update(answers=[["a"]])),
}


@pytest.mark.parametrize("damage", list(DAMAGED.values()), ids=list(DAMAGED))
def test_a_damaged_shared_file_is_ignored(
    damage: Callable[[Path], object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    transcripts.share(tmp_path, grader="a grader")
    cold = outcome(WRONG["wrong-from-500"])
    (written,) = tmp_path.iterdir()
    damage(written)
    transcripts.forget()
    drawn.forget()
    searched = _searches(monkeypatch)
    _same(outcome(WRONG["wrong-from-500"]), cold)  # a full run again, the same outcome
    assert searched == ["square"]


# --- the outcome as plain data -------------------------------------------------------------

OUTCOMES = {
    "passed": Outcome("square", None, 12),
    "failed": Outcome(
        "square",
        Failure("wrong", "x = 3", "square(3)", "9", "10", "a hint", ("A", "B"), "a-mistake"),
        7,
        True,
        (Answer("q1", "r1"), Answer("q2", "r2")),
    ),
}


@pytest.mark.parametrize("kept", list(OUTCOMES.values()), ids=list(OUTCOMES))
def test_an_outcome_survives_plain_data_and_json(kept: Outcome) -> None:
    for data in (_data_of(kept), json.loads(json.dumps(_data_of(kept)))):
        back = _outcome_of(data, SQUARE)
        assert back is not None
        _same(back, kept)


def test_nothing_kept_tells_nothing_and_what_is_not_an_outcome_reads_as_none() -> None:
    assert _outcome_of(None, SQUARE) is None
    assert _outcome_of({"item": "square"}, SQUARE) is None
    assert RUBRIC.items[0] is SQUARE
    with sandbox.started([RIGHT], limits=LIMITS) as (box, _):
        assert box is not None
        assert transcripts.retold(SQUARE, KEY, box, deadline=1e12) is None  # nothing kept


ODD = REFERENCE_SOURCE.replace(" / np.sqrt(d_k)", " / np.sqrt(d_k) * 1.5")
"""A mistake no hint names: its answers are evidence (arrays the reference does not give)."""


def _evidence(code: str) -> tuple[Answer, ...]:
    with sandbox.started([code], limits=LIMITS) as (box, run):
        outcomes = checks.run_checks(ATTENTION, box, run, limits=LIMITS, key=KEY, only=[SDPA])
        (found,) = checks.gather_evidence(ATTENTION, box, outcomes, deadline=1e12, key=KEY)
    assert found.unexplained
    return found.answers


def test_the_evidence_gathered_after_a_failure_is_told_again_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cold = _evidence(ODD)
    assert len(cold) > 1  # the failing case's answer, and more from the probe
    drawn.forget()
    transcripts.forget()
    assert _evidence(ODD) == cold  # a full probe again, then kept
    searched = _searches(monkeypatch)
    assert _evidence(ODD + "\n# written apart") == cold
    assert searched == []  # neither the grade's search nor the probe's
    other = _evidence(ODD.replace("* 1.5", "* 2.5"))
    assert set(other).isdisjoint(cold) and searched  # another mistake: its own runs


# --- bounds ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bounds", "kept"),
    [
        ({"failed_runs": 0}, 0),
        ({"failed_run_bytes": 100}, 0),  # a run larger than all that may be kept
        ({"failed_runs": 1}, 1),  # the older of two runs is dropped
        ({}, 2),
    ],
    ids=["none-kept", "too-large", "one-kept", "as-set"],
)
def test_what_is_kept_is_bounded(
    bounds: dict[str, int], kept: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transcripts, "CACHES", dataclasses.replace(CACHES, **bounds))
    first, second = WRONG["wrong-from-500"], WRONG["raises-on-odd-large"]
    cold = {code: _cold(code) for code in (first, second)}
    for code in (first, second):
        _same(outcome(code), cold[code])
    runs = transcripts._recall(SQUARE, KEY)
    assert len(runs) == kept
    if kept == 1:
        searched = _searches(monkeypatch)
        _same(outcome(second), cold[second])  # the newer one is told
        assert searched == []


def test_a_full_shared_folder_takes_no_more_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transcripts, "CACHES", dataclasses.replace(CACHES, failed_runs=1))
    transcripts.share(tmp_path, grader="a grader")
    outcome(WRONG["wrong-from-500"])
    outcome(WRONG["raises-on-odd-large"])
    assert len(list(tmp_path.iterdir())) == 1
