"""Running items: Hypothesis finds and shrinks failures; hangs and crashes cost one item."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT
from hypothesis import strategies as st
from test_batch import notebook
from toy_rubric import CUBE, RUBRIC, SQUARE, SQUARE_SMALL, Number, check_square

from autograder import catalog, sandbox
from autograder import drawn as drawn_cache
from autograder.checks import Outcome, explore, run_checks, run_item
from autograder.errors import ConfigError
from autograder.pipeline import grade
from autograder.rubric import CheckFailed, Failure, Item, Rubric
from autograder.sandbox import Session
from autograder.secret import load_secret, secret_path
from autograder.settings import KIT_EXAMPLES_KEY, Limits
from autograder.shipped import build, drawn_cases, file_name

LIMITS = Limits(call_seconds=2.0, item_seconds=10.0, cell_seconds=5.0)


def outcomes(
    code: Sequence[str], rubric: Rubric = RUBRIC, *, key: bytes | None = None
) -> dict[str, Outcome]:
    with sandbox.started(code, limits=LIMITS) as (box, run):
        found = run_checks(rubric, box, run, limits=LIMITS, key=key)
    return {outcome.item_id: outcome for outcome in found}


def test_correct_code_passes_every_item_on_many_examples() -> None:
    found = outcomes(["def square(x):\n    return x * x", "def cube(x):\n    return x ** 3"])
    assert all(outcome.passed for outcome in found.values())
    assert found["square"].examples >= 50
    assert found["square_small"].examples == 21


def test_failure_is_shrunk_to_the_smallest_input() -> None:
    found = outcomes(["def square(x):\n    return x * x if x <= 10 else x + x"])
    failure = found["square"].failure
    assert failure is not None
    assert failure.inputs == "x = 11" and failure.snippet == "square(11)"
    assert failure.expected == "121"


def test_exhaustive_cases_report_the_first_failure() -> None:
    found = outcomes(["def square(x):\n    return x * x if x < 7 or x > 9 else 0"])
    failure = found["square_small"].failure
    assert failure is not None and failure.inputs == "x = 7"


def test_missing_function_names_a_close_match() -> None:
    found = outcomes(["def square(x):\n    return x * x", "def cubed(x):\n    return x ** 3"])
    failure = found["cube"].failure
    assert failure is not None
    assert "`cube` is not defined" in failure.summary
    assert "Found `cubed`; expected `cube`" in failure.summary
    assert found["cube"].examples == 0


def test_stub_is_reported_as_not_implemented() -> None:
    found = outcomes(["def square(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()"])
    failure = found["square"].failure
    assert failure is not None and "Not implemented yet" in failure.summary


def test_student_exception_names_type_and_cell() -> None:
    found = outcomes(["a = 1", "def square(x):\n    return {}[x]"])
    failure = found["square"].failure
    assert failure is not None
    assert "KeyError" in failure.summary and "<cell 2>, line 2" in failure.summary


def test_hang_costs_only_that_item() -> None:
    code = [
        "def square(x):\n    while x > 5:\n        pass\n    return x * x",
        "def cube(x):\n    return x ** 3",
    ]
    began = time.monotonic()
    found = outcomes(code)
    assert time.monotonic() - began < 20
    failure = found["square"].failure
    assert failure is not None and "did not return within 2 s" in failure.summary
    assert found["cube"].passed and found["square_small"].failure is not None


def test_crash_costs_only_that_item() -> None:
    code = [
        "import os\ndef square(x):\n    if x == 3:\n        os._exit(0)\n    return x * x",
        "def cube(x):\n    return x ** 3",
    ]
    found = outcomes(code)
    assert found["cube"].passed
    failure = found["square_small"].failure
    assert failure is not None
    assert "exit code 0" in failure.summary and failure.inputs == "x = 3"


def test_unusable_notebook_fails_every_item_with_the_reason() -> None:
    hangs = Limits(cell_seconds=0.5, cell_restarts=0)
    with sandbox.started(["while True: pass"], limits=hangs) as (box, run):
        assert box is None
        found = run_checks(RUBRIC, box, run, limits=LIMITS)
    assert all(o.failure is not None and "Not checked" in o.failure.summary for o in found)


def test_total_deadline_stops_remaining_items() -> None:
    with sandbox.started(["def square(x):\n    return x * x"], limits=LIMITS) as (box, run):
        assert box is not None
        found = run_checks(
            RUBRIC, box, run, limits=LIMITS, deadline=time.monotonic() - 1, only=("square",)
        )
    assert found[0].failure is not None and "ran out" in found[0].failure.summary


def test_same_code_gives_identical_outcomes() -> None:
    code = ["def square(x):\n    return x * x if x % 7 else 1"]
    assert outcomes(code) == outcomes(code)


def test_only_runs_the_named_items() -> None:
    with sandbox.started(["def square(x):\n    return x * x"], limits=LIMITS) as (box, run):
        assert box is not None
        found = run_checks(RUBRIC, box, run, limits=LIMITS, only=("square_small",))
    assert [o.item_id for o in found] == ["square_small"]


@pytest.mark.parametrize("item", [SQUARE, SQUARE_SMALL, CUBE], ids=lambda i: i.id)
def test_run_item_on_missing_everything(item: Item[Any]) -> None:
    with sandbox.started(["pass"], limits=LIMITS) as (box, run):
        assert box is not None
        outcome = run_item(item, box, run, limits=LIMITS, deadline=time.monotonic() + 30)
    assert outcome.failure is not None and "is not defined" in outcome.failure.summary


def test_examples_ignore_literals_in_loaded_modules() -> None:
    """Hypothesis's own hook for literals in "local" modules answers nothing in the grader, so
    examples do not depend on where the grader is installed or on literals in its code."""
    from hypothesis.internal.conjecture.providers import HypothesisProvider

    from autograder import settings

    explore(SQUARE, KIT_EXAMPLES_KEY, lambda case: None)  # the grader's search replaces it first
    provider = HypothesisProvider(None)
    constants = provider._local_constants
    assert constants is settings._no_local_constants()
    assert not any(constants.set_for_type(kind) for kind in (int, float, bytes, str))


# --- seeding: the same examples on every regrade, and only for the same key ---------------


def drawn(key: bytes, item: Item[Any] = SQUARE) -> list[int]:
    seen: list[int] = []
    explore(item, key, lambda case: seen.append(case.x))
    return seen


def test_examples_are_a_function_of_the_key_and_the_item() -> None:
    assert drawn(b"course A") == drawn(b"course A")
    assert drawn(b"course A") != drawn(b"course B")
    assert drawn(b"course A") != drawn(b"course A", dataclasses.replace(SQUARE, id="other"))


def test_the_grader_draws_with_the_course_secret_not_the_kit_key() -> None:
    seen: list[int] = []

    def watched(session: Session, case: Number) -> None:
        seen.append(case.x)
        check_square(session, case)

    item = dataclasses.replace(SQUARE, check=watched)
    found = outcomes(
        ["def square(x):\n    return x * x"], Rubric("square", "square.ipynb", (item,))
    )
    assert found["square"].passed
    assert seen == drawn(load_secret()) != drawn(KIT_EXAMPLES_KEY)


# --- a strategy given as a function: built once, and only for a search ---------------------


def test_a_strategy_given_as_a_function_is_built_once_and_only_for_a_search() -> None:
    built: list[str] = []

    def numbers() -> st.SearchStrategy[Number]:
        built.append("built")
        return st.builds(Number, st.integers(0, 1000))  # SQUARE's strategy

    lazy = dataclasses.replace(SQUARE, strategy=numbers)
    kept = drawn_cases(SQUARE, KIT_EXAMPLES_KEY)  # what a zip ships: drawn by the eager item
    deadline = time.monotonic() + 120
    try:
        with sandbox.started(["def square(x):\n    return x * x"], limits=LIMITS) as (box, run):
            drawn_cache.remember(lazy, KIT_EXAMPLES_KEY, kept)
            replayed = run_item(
                lazy, box, run, limits=LIMITS, deadline=deadline, key=KIT_EXAMPLES_KEY
            )
            assert replayed == Outcome("square", None, len(kept))  # the kept cases, undrawn
            assert built == []
            drawn_cache.forget()
            searched = run_item(
                lazy, box, run, limits=LIMITS, deadline=deadline, key=KIT_EXAMPLES_KEY
            )
            assert searched.passed and built == ["built"]
            drawn_cache.forget()
            copy = dataclasses.replace(lazy, points=1)  # e.g. a rubric with other points
            again = run_item(copy, box, run, limits=LIMITS, deadline=deadline, key=KIT_EXAMPLES_KEY)
    finally:
        drawn_cache.forget()
    assert again == searched and built == ["built"]
    assert drawn_cases(lazy, KIT_EXAMPLES_KEY) == kept and built == ["built"]  # the same draws


_GRADE_AND_REPORT = (
    "import atexit, runpy, sys\n"
    "atexit.register(lambda: print('hypothesis loaded:', 'hypothesis' in sys.modules))\n"
    "sys.argv = ['autograder', *sys.argv[1:]]\n"
    "runpy.run_module('autograder', run_name='__main__', alter_sys=True)\n"
)
"""`python -m autograder ARGS`, then whether Hypothesis was ever imported (at exit)."""


@pytest.fixture(scope="module")
def shipped_solutions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A solutions folder as a Gradescope zip unpacks it: the references, the grading secret
    and each bundled exercise's drawn cases (`shipped.build`, as `build_zip` writes them)."""
    folder = tmp_path_factory.mktemp("zip") / "solutions"
    folder.mkdir()
    shutil.copy(secret_path(), folder / secret_path().name)
    for name in ("attention", "kv_cache"):
        exercise = catalog.find(name)
        shutil.copy(exercise.reference_file(), folder / exercise.reference.name)
        (folder / file_name(exercise)).write_bytes(build(exercise))
    return folder


@pytest.mark.parametrize(
    ("exercise", "edit", "searched", "failed"),
    [
        ("attention", ("", ""), False, {}),
        ("kv_cache", ("", ""), False, {}),
        (
            "attention",
            (" / np.sqrt(d_k)", ""),
            True,
            {"sdpa_reference": "Q: (1, 2) float64, K: (2, 2) float64, V: (2, 1) float64\n"},
        ),
    ],
    ids=["attention-correct", "kv_cache-correct", "attention-no-scaling"],
)
def test_a_grade_that_passes_on_the_shipped_cases_never_imports_hypothesis(
    exercise: str,
    edit: tuple[str, str],
    searched: bool,
    failed: dict[str, str],
    shipped_solutions: Path,
    tmp_path: Path,
) -> None:
    """As on Gradescope: a fresh `grade` process, with the cases the zip ships. A correct
    notebook passes every item on them, without Hypothesis; a wrong one sends its failing items
    through Hypothesis, which shrinks the failure (here, to the smallest inputs on which a
    missing 1/sqrt(d_k) shows: two keys of dimension 2)."""
    source = (ROOT / "solutions" / f"{exercise}.py").read_text(encoding="utf-8")
    assert edit[0] in source
    path = notebook(tmp_path / f"{exercise}.ipynb", source.replace(*edit))
    results = tmp_path / "results.json"
    command = ["grade", str(path), "--exercise", exercise, "--results", str(results)]
    done = subprocess.run(
        [sys.executable, "-c", _GRADE_AND_REPORT, *command],
        cwd=tmp_path,
        env={**os.environ, "AUTOGRADER_SOLUTIONS": str(shipped_solutions)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == f"hypothesis loaded: {searched}"
    tests = json.loads(results.read_text(encoding="utf-8"))["tests"]
    wrong = {t["name"]: t["output"] for t in tests if t["score"] < t["max_score"]}
    names = {item.id: item.title for item in catalog.find(exercise).rubric.items}
    assert bool(wrong) == searched  # only a failing item searches
    for item, inputs in failed.items():
        assert f"**Smallest failing input:**\n\n```\n{inputs}" in wrong[names[item]]


def _not_a_strategy() -> int:
    return 42


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (_not_a_strategy, "its strategy <function _not_a_strategy at 0x"),
        ([Number(1)], "its strategy [Number(x=1)], which is not a Hypothesis strategy"),
    ],
    ids=["function-returns-no-strategy", "cases-given-as-strategy"],
)
def test_a_strategy_that_is_no_strategy_is_a_bug_of_the_rubric(given: object, message: str) -> None:
    item = Item("broken", "an item with a bug", 10, check_square, strategy=given)  # type: ignore[arg-type]
    with pytest.raises(ConfigError) as error:
        outcomes(["def square(x):\n    return x * x"], Rubric("s", "s.ipynb", (item,)))
    assert str(error.value).startswith(f"Item 'broken': {message}")
    assert "Give a strategy (e.g. st.builds(MyCase, ...)) or a function" in str(error.value)
    if callable(given):
        assert "returned 42, which is not a Hypothesis strategy" in str(error.value)


# --- blame: only flakiness of the student's code is the student's -------------------------


def test_code_that_answers_one_input_two_ways_is_told_so() -> None:
    code = (
        "calls = 0\n"
        "def square(x):\n"
        "    global calls\n"
        "    calls += 1\n"
        "    return -1 if calls == 3 else x * x"
    )
    found = outcomes([code], Rubric("square", "square.ipynb", (SQUARE,)))
    failure = found["square"].failure
    assert failure is not None
    assert failure.summary.startswith("Your code gave different results for the same input")
    assert "returned -1" in failure.summary and failure.inputs.startswith("x = ")
    assert "the same arguments must give the same result" in failure.hint


def _fails_once(message: str) -> Any:
    """A check with a bug of ours that shows once, then never again."""
    calls = itertools.count()

    def check(session: Session, case: Number) -> None:
        if next(calls) == 3:
            raise RuntimeError(message)
        check_square(session, case)

    return check


def _draws_differently() -> st.SearchStrategy[Number]:
    """A strategy with state of its own: it draws another kind of value every other time."""
    flips = itertools.count()

    @st.composite
    def unstable(draw: st.DrawFn) -> Number:
        if next(flips) % 2:
            return Number(draw(st.integers(0, 10)))
        return Number(int(draw(st.booleans())))

    return unstable()


def _broken_items() -> dict[str, tuple[Item[Any], str]]:
    def item(**options: Any) -> Item[Any]:
        return Item(
            "broken", "an item with a bug", 10, options.pop("check", check_square), **options
        )

    return {
        "invalid-strategy": (
            item(strategy=st.builds(Number, st.integers(5, 1))),
            "InvalidArgument (Cannot have max_value=1 < min_value=5)",
        ),
        "unsatisfiable-filter": (
            item(strategy=st.builds(Number, st.integers(0, 9)).filter(lambda n: False)),
            "Unsatisfiable",
        ),
        "check-of-ours-fails-once": (
            item(check=_fails_once("ours"), strategy=st.builds(Number, st.integers(0, 99))),
            "FlakyFailure",
        ),
        "strategy-draws-differently": (item(strategy=_draws_differently()), "FlakyFailure"),
    }


@pytest.mark.parametrize("case", list(_broken_items()), ids=list(_broken_items()))
def test_a_hypothesis_error_of_the_rubric_is_ours_not_the_students(
    case: str, tmp_path: Path
) -> None:
    item, raised = _broken_items()[case]  # fresh state for each run
    rubric = Rubric("square", "square.ipynb", (SQUARE_SMALL, item))
    correct = ["def square(x):\n    return x * x"]
    with pytest.raises(ConfigError) as error:
        outcomes(correct, rubric)
    assert str(error.value).startswith(
        f"Rubric item 'broken' is broken: Hypothesis raised {raised}"
    )
    assert "not of the submission" in str(error.value)

    item, raised = _broken_items()[case]
    path = tmp_path / "square.py"
    path.write_text(correct[0], encoding="utf-8")
    result = grade(
        path, rubric=Rubric("square", "square.ipynb", (SQUARE_SMALL, item)), limits=LIMITS
    )
    assert result.score == 0
    for checked in result.items:
        assert checked.failure is not None
        assert checked.failure.summary == (
            "Not checked: the autograder failed (ConfigError); your instructor has the details."
        )
    assert f"Hypothesis raised {raised}" in result.internal_error
    assert "different results" not in repr(result)


def _explained_square(calls: list[int]) -> Item[Any]:
    """SQUARE, whose failures are explained by calling the student's code once more."""

    def check(session: sandbox.Session, case: Number) -> None:
        got = session.call("square", case.x)
        if got != case.x * case.x:

            def explain(failure: Failure) -> Failure:
                calls.append(case.x)
                again = session.call("square", case.x + 1)
                return dataclasses.replace(failure, hint=f"square({case.x + 1}) = {again}")

            raise CheckFailed(Failure(f"square({case.x}) returned {got!r}"), explain=explain)

    return dataclasses.replace(SQUARE, check=check)


def test_a_failure_is_explained_once_after_shrinking_and_a_pass_never() -> None:
    calls: list[int] = []
    rubric = Rubric("square", "square.ipynb", (_explained_square(calls),))
    found = outcomes(["def square(x):\n    return x * x if x <= 10 else x + x"], rubric)
    failure = found["square"].failure
    assert failure is not None and failure.inputs == "x = 11"
    assert calls == [11] and failure.hint == "square(12) = 24"  # the student's code, again
    calls.clear()
    assert outcomes(["def square(x):\n    return x * x"], rubric)["square"].passed
    assert calls == []


def test_an_explanation_that_cannot_run_leaves_the_verdict_without_a_hint() -> None:
    calls: list[int] = []
    rubric = Rubric("square", "square.ipynb", (_explained_square(calls),))
    code = (
        "def square(x):\n    if x == 12:\n        raise ValueError(x)\n"
        "    return x * x if x <= 10 else x + x"
    )
    failure = outcomes([code], rubric)["square"].failure
    assert failure is not None and failure.summary == "square(11) returned 22"
    assert calls == [11] and failure.hint == ""


# --- state kept between calls: told apart from a wrong answer, with two calls that show it ---

STATEFUL = [
    (
        "answers-the-previous-input",
        "_previous = [None]\ndef square(x):\n    before, _previous[0] = _previous[0], x\n"
        "    return x * x if before is None else before * before",
        "state-between-calls",
        2,
    ),
    (
        "wrong-from-the-fifth-call-on",
        "_calls = [0]\ndef square(x):\n    _calls[0] += 1\n    return x * x + (_calls[0] > 4)",
        "state-between-calls",
        0,
    ),
    ("wrong-from-scratch", "def square(x):\n    return x * x + (x > 3)", "", 1),
]


@pytest.mark.parametrize(
    ("code", "mistake", "calls"), [s[1:] for s in STATEFUL], ids=[s[0] for s in STATEFUL]
)
def test_a_failure_a_fresh_worker_does_not_repeat_is_reported_as_state(
    code: str, mistake: str, calls: int
) -> None:
    """A snippet of `calls` calls reproduces it (0: none does, and the report says so)."""
    found = outcomes([code], Rubric("square", "square.ipynb", (SQUARE_SMALL,)))["square_small"]
    failure = found.failure
    assert failure is not None and failure.mistake == mistake, failure
    assert failure.snippet.count("square(") == calls, failure.snippet
    if mistake:
        assert "keeps state between calls" in failure.summary
    if not calls:
        assert "there is no snippet" in failure.summary
    if not mistake:
        assert "state" not in failure.summary
