"""The whole pipeline: any submission, however broken, yields a valid result."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import nbformat
import pytest
from conftest import REFERENCE_SOURCE, ROOT
from test_submission import BAD
from toy_rubric import BROKEN, RUBRIC

from autograder.catalog import rubric_of
from autograder.pipeline import grade
from autograder.report import to_gradescope
from autograder.settings import Limits

SCHEMA = json.loads((Path(__file__).parent / "gradescope_results.schema.json").read_text())
ATTENTION = rubric_of("attention")
FAST = Limits(call_seconds=2.0, cell_seconds=2.0, item_seconds=10.0)


def write_notebook(path: Path, *cells: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    path.write_text(nbformat.writes(nb), encoding="utf-8")
    return path


def test_a_notebook_is_graded_cell_by_cell(tmp_path: Path) -> None:
    path = write_notebook(
        tmp_path / "square.ipynb", "def square(x):\n    return x * x", "oops(", "x = 1/0"
    )
    result = grade(path, rubric=RUBRIC, limits=FAST)
    assert result.score == 80 and result.max_score == 100
    assert any("Code cell 2 raised `SyntaxError" in note for note in result.notes)
    assert any("Code cell 3 raised `ZeroDivisionError" in note for note in result.notes)
    jsonschema.validate(to_gradescope(result), SCHEMA)


@pytest.mark.parametrize(("make", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_unreadable_submission_scores_zero_with_the_reason(
    tmp_path: Path, make: Callable[[Path], Path], message: str
) -> None:
    result = grade(make(tmp_path), rubric=ATTENTION, limits=FAST)
    assert result.score == 0 and result.max_score == 100
    assert message in result.notes[0]
    assert all(item.failure is not None for item in result.items)
    document = to_gradescope(result)
    jsonschema.validate(document, SCHEMA)
    assert message in document["output"]
    assert all(message in test["output"] for test in document["tests"])


@pytest.mark.parametrize(
    "cells", [[], ["# only a comment"]], ids=["notebook-without-cells", "no-code-to-run"]
)
def test_a_notebook_with_nothing_to_run_scores_zero_and_says_why(
    tmp_path: Path, cells: list[str]
) -> None:
    path = write_notebook(tmp_path / "attention.ipynb", *cells)
    result = grade(path, rubric=ATTENTION, limits=FAST)
    assert result.score == 0
    document = to_gradescope(result)
    jsonschema.validate(document, SCHEMA)
    for test in document["tests"]:
        assert "is not defined in your notebook" in test["output"], test


def test_a_bug_of_ours_still_gives_a_valid_result(tmp_path: Path) -> None:
    path = write_notebook(tmp_path / "square.ipynb", "def square(x):\n    return x * x")
    result = grade(path, rubric=BROKEN, limits=FAST)
    assert result.score == 0 and "RuntimeError: a bug in the rubric itself" in result.internal_error
    document = to_gradescope(result)
    jsonschema.validate(document, SCHEMA)
    assert document["tests"][-2]["name"] == "Autograder failed"


def without_timing(document: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in document.items() if key != "execution_time"}


@pytest.mark.slow
def test_reference_scores_full_marks_and_regrades_are_identical(tmp_path: Path) -> None:
    path = tmp_path / "attention.py"
    path.write_text(REFERENCE_SOURCE, encoding="utf-8")
    first = to_gradescope(grade(path, rubric=rubric_of("attention")))
    assert first["score"] == 100, json.dumps(first, indent=1)[:3000]
    # Staff can see how the student's code was confined (Gradescope shows extra_data to staff).
    assert first["extra_data"]["confinement"].startswith(("namespaces", "basic"))
    buggy = tmp_path / "buggy.py"
    buggy.write_text(REFERENCE_SOURCE.replace(" / np.sqrt(d_k)", ""), encoding="utf-8")
    one = json.dumps(without_timing(to_gradescope(grade(buggy, rubric=rubric_of("attention")))))
    two = json.dumps(without_timing(to_gradescope(grade(buggy, rubric=rubric_of("attention")))))
    assert one == two
    assert 0 < json.loads(one)["score"] < 100


@pytest.mark.slow
def test_source_notebook_scores_full_and_released_stubs_zero() -> None:
    source = ROOT / "source" / "attention" / "attention.ipynb"
    release = ROOT / "release" / "attention" / "attention.ipynb"
    full = grade(source, rubric=rubric_of("attention"))
    assert full.score == 100, [(i.id, i.failure) for i in full.items if i.failure]
    stubs = grade(release, rubric=rubric_of("attention"))
    assert stubs.score == 0
    not_implemented = [
        i for i in stubs.items if i.failure and "Not implemented" in i.failure.summary
    ]
    assert len(not_implemented) == len(stubs.items)
