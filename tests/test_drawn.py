"""Work done once per process: an item's cases of a passing run, replayed for the next student,
and the live oracle's kept answers. Neither may change a score or a word of feedback."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import REFERENCE_SOURCE
from hypothesis import strategies as st
from test_batch import notebook
from toy_rubric import Number, check_square

from autograder import catalog, drawn, sandbox, transcripts
from autograder.batch import SHARED_RUNS, discover, grade_all
from autograder.checks import Outcome, explore, run_checks
from autograder.exercise import Answers
from autograder.oracle import LiveOracle
from autograder.pipeline import grade
from autograder.report import to_gradescope
from autograder.rubric import CheckFailed, Failure, Item, Rubric
from autograder.settings import Limits

LIMITS = Limits(call_seconds=2.0, item_seconds=20.0, cell_seconds=5.0)
KEY = b"a course key for these tests"
DRAWS: list[int] = []
"""Every value Hypothesis drew for `SQUARE`, as it draws them."""


def _counted(x: int) -> Number:
    DRAWS.append(x)
    return Number(x)


SQUARE = Item(
    "square",
    "square(x) is x*x",
    10,
    check_square,
    strategy=st.integers(0, 1000).map(_counted),
    cases=(Number(0), Number(1), Number(2)),
)
RUBRIC = Rubric("square", "square.ipynb", (SQUARE,))

RIGHT = "def square(x):\n    return x * x"
STUDENTS = {  # id: the code; every wrong one fails on drawn inputs only
    "right": RIGHT,
    "wrong-from-500": "def square(x):\n    return x * x if x < 500 else x * x + 1",
    "raises-on-odd-large": (
        "def square(x):\n    if x > 100 and x % 2:\n        raise ValueError(x)\n    return x * x"
    ),
    "state-between-calls": (
        "seen = []\ndef square(x):\n    seen.append(x)\n    return x * x if len(seen) < 30 else 0"
    ),
    "stub": "def square(x):\n    raise NotImplementedError()",
}


@pytest.fixture(autouse=True)
def cold() -> Iterator[None]:
    drawn.forget()
    transcripts.forget()
    yield
    drawn.forget()
    transcripts.forget()


def outcome(code: str) -> Outcome:
    with sandbox.started([code], limits=LIMITS) as (box, run):
        (found,) = run_checks(RUBRIC, box, run, limits=LIMITS, key=KEY)
    return found


def test_a_passing_run_keeps_its_cases_and_the_next_student_is_checked_on_them_undrawn() -> None:
    first = outcome(RIGHT)
    assert first.passed and first.examples >= 50
    kept = drawn.recall(SQUARE, KEY)
    assert kept is not None and len(kept.cases) == first.examples
    expected: list[Number] = list(SQUARE.cases)
    explore(SQUARE, KEY, expected.append)  # what Hypothesis draws when everything passes
    assert list(kept.cases) == expected
    assert drawn.recall(SQUARE, b"another course") is None
    DRAWS.clear()
    again = outcome("def square(x):\n    return x ** 2")
    assert again == first and DRAWS == []  # the same verdict and count, nothing drawn


@pytest.mark.parametrize("student", list(STUDENTS), ids=list(STUDENTS))
def test_a_student_after_a_passing_one_gets_what_a_cold_grade_gives(student: str) -> None:
    cold_outcome = outcome(STUDENTS[student])
    drawn.forget()
    assert outcome(RIGHT).passed  # warm: the next student's cases are kept
    assert outcome(RIGHT).passed  # and, replayed, its requests: the next follows them
    kept = drawn.recall(SQUARE, KEY)
    assert kept is not None and len(kept.requests) == len(kept.cases)
    warm = outcome(STUDENTS[student])
    assert warm == cold_outcome  # the verdict, the failure (its smallest input) and the count
    if student == "wrong-from-500":
        assert warm.failure is not None and "x = 500" in warm.failure.inputs
    if student != "right":
        assert drawn.recall(SQUARE, KEY) is not None  # a failure keeps what is kept


def _spied(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bool | None]]:
    """How each replay of `drawn` went: ("script" or "plain", its verdict), in order."""
    seen: list[tuple[str, bool | None]] = []
    real = drawn._replay

    def spy(kept: drawn.Drawn, box: sandbox.Sandbox, deadline: float, **how: Any) -> Any:
        verdict = real(kept, box, deadline, **how)
        seen.append(("script" if how.get("script") else "plain", verdict))
        return verdict

    monkeypatch.setattr(drawn, "_replay", spy)
    return seen


def test_a_passing_replay_keeps_its_requests_and_the_next_follows_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen = _spied(monkeypatch)
    first = outcome(RIGHT)
    assert seen == []  # a cold item runs from scratch
    assert outcome("def square(x):\n    return x ** 2") == first
    assert seen == [("plain", True)]
    kept = drawn.recall(SQUARE, KEY)
    assert kept is not None and len(kept.requests) == len(kept.cases) == first.examples
    assert all(b'"square"' in request for request in kept.requests)
    DRAWS.clear()
    assert outcome("def square(x):\n    return int(x) * int(x)") == first
    assert seen == [("plain", True), ("script", True)] and DRAWS == []
    assert drawn.recall(SQUARE, KEY) is kept  # a script that was followed stays as it was


def check_round_trip(session: Any, case: Number) -> None:
    """A check whose second request carries the first answer: passing answers of another
    type (2.0 for 2) make other requests."""
    doubled = session.call("double", case.x)
    if session.call("half", doubled) != case.x:
        raise CheckFailed(Failure(f"half(double({case.x})) is not {case.x}"))


ROUND_TRIP = Item(
    "round_trip",
    "half(double(x)) is x",
    10,
    check_round_trip,
    strategy=st.integers(0, 1000).map(Number),
)


def test_answers_that_pass_but_lead_the_checks_elsewhere_are_replayed_the_ordinary_way(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rubric = Rubric("round", "round.ipynb", (ROUND_TRIP,))
    ints = "def double(x):\n    return 2 * x\ndef half(y):\n    return y // 2"
    floats = "def double(x):\n    return 2.0 * x\ndef half(y):\n    return int(y / 2)"

    def graded(code: str) -> Outcome:
        with sandbox.started([code], limits=LIMITS) as (box, run):
            (found,) = run_checks(rubric, box, run, limits=LIMITS, key=KEY)
        return found

    cold_floats = graded(floats)
    drawn.forget()
    seen = _spied(monkeypatch)
    assert graded(ints) == graded(ints) == cold_floats  # the second replays, and records
    assert seen == [("plain", True)]
    assert graded(floats) == cold_floats
    assert seen[1:] == [("script", None), ("plain", True)]  # it left the script at once


_READS_AHEAD = """
import os, stat
def square(x):
    for fd in range(3, 64):  # whatever socket it holds: the grader's requests come in there
        try:
            if stat.S_ISSOCK(os.fstat(fd).st_mode):
                os.set_blocking(fd, {blocking})
                try:
                    os.read(fd, 1 << 16)
                finally:
                    os.set_blocking(fd, True)
        except OSError:
            pass
    return x * x
"""
"""Without a script nothing waits on the socket during a call: taking what is there takes
nothing (it passes), waiting for more waits out the call's time (it fails on the first case)."""


@pytest.mark.parametrize("blocking", [False, True], ids=["takes-what-is-there", "waits-for-more"])
def test_code_that_reads_the_requests_sent_ahead_gets_what_a_cold_grade_gives(
    blocking: bool,
) -> None:
    """Under a script the worker's socket holds the requests to come: code that reads them
    breaks its own worker, and the item is checked as it would have been without a script."""
    code = _READS_AHEAD.format(blocking=blocking)
    cold_outcome = outcome(code)
    assert cold_outcome.passed is not blocking
    drawn.forget()
    assert outcome(RIGHT).passed and outcome(RIGHT).passed
    kept = drawn.recall(SQUARE, KEY)
    assert kept is not None and kept.requests
    assert outcome(code) == cold_outcome


def test_a_rebuilt_item_starts_cold() -> None:
    assert outcome(RIGHT).passed
    other = Item(**{**SQUARE.__dict__, "points": 5})
    assert drawn.recall(SQUARE, KEY) is not None and drawn.recall(other, KEY) is None


# --- the live oracle keeps its answers -----------------------------------------------------

CALLS: list[str] = []


def _pair(x: int) -> tuple[np.ndarray, list[np.ndarray]]:
    CALLS.append(f"pair {x}")
    return np.full(3, float(x)), [np.arange(x)]


def _whatever(value: object) -> int:
    CALLS.append("whatever")
    return 1


def oracle(**options: int) -> LiveOracle:
    return LiveOracle(Answers({"pair": _pair, "whatever": _whatever}, lambda case: []), **options)


def test_the_live_oracle_computes_a_question_once_and_its_answers_are_read_only() -> None:
    CALLS.clear()
    live = oracle()
    first = live.ask("pair", 3)
    with pytest.raises(ValueError, match="read-only"):
        first[0][0] = 7.0  # a check that writes into an answer fails loudly, every time
    first[1].append("mine")  # its containers are its own: the next ask does not see this
    second = live.ask("pair", 3)
    assert CALLS == ["pair 3"]
    assert np.array_equal(second[0], [3.0, 3.0, 3.0]) and len(second[1]) == 1
    assert not second[0].flags.writeable and not second[1][0].flags.writeable
    live.ask("whatever", object())
    live.ask("whatever", object())  # an argument it cannot key is asked every time
    assert CALLS == ["pair 3", "whatever", "whatever"]


def _square(case: Number | np.ndarray) -> int:
    CALLS.append("square")
    return 9


def test_the_live_oracle_keeps_answers_about_a_case_by_the_case_object_itself() -> None:
    CALLS.clear()
    live = LiveOracle(Answers({"square": _square}, lambda case: []))
    case = Number(3)
    live.ask("square", case)
    live.ask("square", case)  # the replayed case: the very same object
    assert CALLS == ["square"]
    live.ask("square", Number(3))  # an equal case made anew is computed again
    live.ask("square", np.array([3]))  # as is an argument that could change in place
    live.ask("square", np.array([3]))
    assert CALLS == ["square"] * 4


@pytest.mark.parametrize(
    ("options", "computed"),
    [
        ({"keep": 2}, [1, 2, 3, 1]),  # the oldest goes first; 3 is still kept at the end
        ({"keep_bytes": 40}, [1, 2, 3, 1, 3]),  # 24 + 8x bytes: 3's answer is never kept
    ],
    ids=["by-count", "by-bytes"],
)
def test_the_live_oracle_keeps_a_bounded_number_of_answers(
    options: dict[str, int], computed: list[int]
) -> None:
    CALLS.clear()
    live = oracle(**options)
    for x in (1, 2, 3, 1, 3):
        live.ask("pair", x)
    assert [f"pair {x}" for x in computed] == CALLS


def test_recording_a_kit_bank_records_kept_answers_too() -> None:
    live = oracle()
    live.ask("pair", 2)
    with live.recording() as recorded:
        live.ask("pair", 2)
    (answer,) = recorded.values()
    assert isinstance(answer, tuple) and np.array_equal(answer[0], [2.0, 2.0, 2.0])


# --- the whole pipeline: regrades, order and workers ---------------------------------------


def _document(path: Path, rubric: Rubric) -> str:
    document = to_gradescope(grade(path, rubric=rubric))
    document.pop("execution_time", None)
    for test in document["tests"]:
        test.pop("execution_time", None)
    return json.dumps(document, sort_keys=True)


def _fresh_rubric() -> Rubric:
    exercise = catalog.find("attention")
    return exercise.rubric.with_oracle(LiveOracle(exercise.oracle()))


CLASS = {
    "alice": REFERENCE_SOURCE,
    "bob": REFERENCE_SOURCE.replace(" / np.sqrt(d_k)", ""),
    "carol": REFERENCE_SOURCE.replace("np.tril(np.ones", "np.triu(np.ones"),
    "dave": REFERENCE_SOURCE,
    "erin": REFERENCE_SOURCE.replace(" / np.sqrt(d_k)", "") + "\n# bob's mistake, made apart",
}


@pytest.mark.slow
def test_a_regrade_is_byte_identical_with_warm_caches_and_cold(tmp_path: Path) -> None:
    paths = {s: notebook(tmp_path / s / "attention.ipynb", code) for s, code in CLASS.items()}
    cold: dict[str, str] = {}
    for student, path in paths.items():  # each alone: a fresh oracle, nothing kept
        drawn.forget()
        transcripts.forget()
        cold[student] = _document(path, _fresh_rubric())
    rubric = _fresh_rubric()
    for order in (list(paths), list(reversed(paths))):  # warm, in either order
        assert {s: _document(paths[s], rubric) for s in order} == cold


def _results(out: Path, students: Sequence[str]) -> dict[str, Any]:
    found = {}
    for student in students:
        document = json.loads((out / student / "results.json").read_text(encoding="utf-8"))
        document.pop("execution_time", None)
        for test in document["tests"]:
            test.pop("execution_time", None)
        found[student] = (document, (out / student / "feedback.md").read_text(encoding="utf-8"))
    return found


@pytest.mark.slow
def test_batch_results_do_not_depend_on_the_order_or_the_number_of_workers(
    tmp_path: Path,
) -> None:
    for student, code in CLASS.items():
        notebook(
            tmp_path / "course" / "submitted" / student / "attention" / "attention.ipynb", code
        )
    entries = discover(tmp_path / "course", assignment="attention")
    began = time.monotonic()
    grade_all(entries, out=tmp_path / "one", exercise="attention", jobs=1)
    grade_all(list(reversed(entries)), out=tmp_path / "two", exercise="attention", jobs=2)
    assert time.monotonic() - began < 600
    one, two = _results(tmp_path / "one", list(CLASS)), _results(tmp_path / "two", list(CLASS))
    assert one == two
    assert one["alice"][0]["score"] == one["dave"][0]["score"] == 100
    assert one["bob"][0]["score"] < 100 and one["carol"][0]["score"] < 100
    assert one["erin"][0]["tests"] == one["bob"][0]["tests"]  # the same failures, word for word
    assert not (tmp_path / "one" / SHARED_RUNS).exists()  # the workers' shared runs are gone
