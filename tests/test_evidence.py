"""Evidence of shared wrong answers: what counts, what is kept, and that it changes no grade."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REFERENCE_SOURCE

from autograder import catalog, sandbox
from autograder.evidence import (
    Answer,
    ItemEvidence,
    Observed,
    informative,
    read_answers,
    unexplained,
    write_answers,
)
from autograder.pipeline import grade
from autograder.report import to_gradescope
from autograder.rubric import Failure
from autograder.sandbox import Handle, Opaque

RAMP = np.arange(6.0).reshape(2, 3)


@pytest.mark.parametrize(
    ("reply", "arguments", "expected"),
    [
        (None, (), False),
        (True, (), False),
        (3, (), False),
        (0.125, (), False),
        ("text", (), False),
        (Handle(1, "Model"), (), False),
        (Opaque("object", "<object>"), (), False),
        (np.zeros((2, 3)), (), False),
        (np.full((2, 3), np.nan), (), False),
        (np.array([[0.3]]), (), False),
        (RAMP.copy(), (RAMP,), False),
        (RAMP, (), True),
        ((np.zeros(3), RAMP), (), True),
        ([np.ones(4), np.zeros(2)], (), False),
        (RAMP * 0.5, (RAMP,), True),
    ],
    ids=[
        "none",
        "bool",
        "int",
        "float",
        "string",
        "handle",
        "opaque",
        "zeros",
        "all-nan",
        "one-element",
        "argument-handed-back",
        "array",
        "pair-with-one-real-array",
        "list-of-constants",
        "computed-from-argument",
    ],
)
def test_only_arrays_that_say_how_they_were_computed_are_evidence(
    reply: object, arguments: tuple[object, ...], expected: bool
) -> None:
    assert informative(reply, arguments) is expected


ANSWERS = (Answer("q1", "r1"), Answer("q2", "r2"))


@pytest.mark.parametrize(
    ("failure", "kept"),
    [
        (None, ()),
        (Failure("wrong", hint="You forgot to scale.", mistake="no-scaling"), ()),
        (Failure("wrong", hint="Row 0 sums to 2."), ANSWERS),
    ],
    ids=["passed-explained-by-reference", "named-mistake-explains", "no-named-mistake"],
)
def test_only_items_failed_with_no_named_mistake_keep_their_answers(
    failure: Failure | None, kept: tuple[Answer, ...]
) -> None:
    assert unexplained(failure, ANSWERS) == kept


def test_answers_file_round_trips_and_a_missing_or_foreign_file_is_no_evidence(
    tmp_path: Path,
) -> None:
    evidence = (ItemEvidence("a", ANSWERS), ItemEvidence("b", (Answer("q3", "r3"),)))
    write_answers(tmp_path / "s" / "answers.json", evidence)
    assert read_answers(tmp_path / "s" / "answers.json") == evidence
    assert read_answers(tmp_path / "missing.json") == ()
    (tmp_path / "old.json").write_text(json.dumps({"version": 0, "items": {}}))
    assert read_answers(tmp_path / "old.json") == ()
    (tmp_path / "garbage.json").write_text("{not json")
    assert read_answers(tmp_path / "garbage.json") == ()


@pytest.mark.slow
def test_observed_session_hashes_failing_cases_only_by_case_position_and_reply() -> None:
    with sandbox.started(["import numpy as np\ndef f(x):\n    return x * 2 + 1\n"]) as (box, run):
        assert box is not None and run.ready
        with box.session(deadline=time.monotonic() + 60) as session:
            observed = Observed(session)
            observed.begin()
            assert np.array_equal(observed.call("f", RAMP), RAMP * 2 + 1)  # it stands in
            assert observed.end("case 1", failed=False) == ()  # a passing case: dropped
            observed.begin()
            observed.call("f", RAMP)
            observed.call("f", RAMP)
            first, second = observed.end("case 1", failed=True)
            assert first.reply == second.reply  # the same reply, the same digest
            assert first.question != second.question  # its place in the case counts
            observed.begin()
            observed.call("f", RAMP)
            (other,) = observed.end("case 2", failed=True)
            assert other.reply == first.reply and other.question != first.question
            assert observed.call("f", RAMP).shape == (2, 3)  # outside a case: not kept
            assert observed.end("case 3", failed=True) == ()


PRINTING_BUG = REFERENCE_SOURCE.replace(
    "    return weights @ V, weights",
    "    print('called with', Q.shape)\n    return 0.5 * (weights @ V), weights",
)


@pytest.mark.slow
def test_gathering_evidence_changes_no_score_feedback_or_printed_output(tmp_path: Path) -> None:
    rubric = catalog.graded_rubric(catalog.find("attention"))
    path = tmp_path / "printing_bug.py"
    path.write_text(PRINTING_BUG, encoding="utf-8")
    plain = grade(path, rubric=rubric)
    gathered = grade(path, rubric=rubric, evidence=True)
    documents = [to_gradescope(result) for result in (plain, gathered)]
    for document in documents:
        document.pop("execution_time", None)
    assert documents[0] == documents[1]
    assert 0 < plain.score < 100 and "called with" in plain.output
    assert gathered.output == plain.output  # the probes ran after it was taken
    kept = {item.id: len(item.answers) for item in gathered.items if item.answers}
    assert kept and set(kept) <= {item.id for item in gathered.items if not item.passed}
    more = {item.id: len(item.answers) for item in plain.items if item.answers}
    assert all(kept[item] > more.get(item, 0) for item in kept)  # the probes add evidence
    text = json.dumps(documents[1])
    assert not any(a.reply in text or a.question in text for i in gathered.items for a in i.answers)
