"""Reporting: results.json follows the Gradescope schema; feedback is readable and bounded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from autograder.report import MAX_OUTPUT_CHARS, render_text, to_gradescope, write_results
from autograder.rubric import Failure
from autograder.scoring import GradeResult, ItemResult

SCHEMA = json.loads((Path(__file__).parent / "gradescope_results.schema.json").read_text())

FAILURE = Failure(
    "`weights` differs from the expected value.",
    inputs="Q: (1, 2)",
    snippet="Q = np.array([[1.0, 2.0]])",
    expected="[[0.5 0.5]]",
    got="[[1. 0.]]",
    hint="Divide the scores by np.sqrt(d_k).",
)
RESULT = GradeResult(
    "attention.ipynb",
    (
        ItemResult("a", "Item A", 10, 10, "visible", None, 50),
        ItemResult("b", "Item B", 0, 5, "after_due_date", FAILURE, 7),
    ),
    notes=("Code cell 3 raised NameError",),
    output="hello",
    seconds=1.25,
)


def validate(document: dict[str, Any]) -> None:
    jsonschema.validate(document, SCHEMA)


def test_results_follow_the_gradescope_schema() -> None:
    document = to_gradescope(RESULT)
    validate(document)
    assert document["score"] == 10 and document["execution_time"] == 1.25
    assert document["stdout_visibility"] == "hidden"
    assert [t["status"] for t in document["tests"]] == ["passed", "failed"]
    assert document["tests"][1]["visibility"] == "after_due_date"
    assert "Code cell 3 raised NameError" in document["output"]


def test_schema_rejects_what_gradescope_would_not_take() -> None:
    document = to_gradescope(RESULT)
    broken = [
        {**document, "visiblity": "visible"},
        {**document, "tests": [{**document["tests"][0], "status": "ok"}]},
        {**document, "output_format": "markdown"},
        {key: value for key, value in document.items() if key not in ("score", "tests")},
    ]
    for candidate in broken:
        with pytest.raises(jsonschema.ValidationError):
            validate(candidate)


def test_failed_item_feedback_is_markdown_with_every_part() -> None:
    output = to_gradescope(RESULT)["tests"][1]["output"]
    for part in ("Smallest failing input", "```python\nQ = np.array", "Expected", "Got", "Hint"):
        assert part in output


def test_long_feedback_is_truncated_with_a_note() -> None:
    long = GradeResult("a.ipynb", (ItemResult("a", "A", 0, 1, "visible", Failure("x" * 50000), 1),))
    output = to_gradescope(long)["tests"][0]["output"]
    assert len(output) < MAX_OUTPUT_CHARS + 100 and "more characters not shown" in output


def test_internal_error_is_visible_but_its_traceback_hidden() -> None:
    broken = GradeResult("a.ipynb", RESULT.items, internal_error="Traceback: secret path")
    document = to_gradescope(broken)
    validate(document)
    visible = [t for t in document["tests"] if t.get("visibility") == "visible"]
    assert any(t["name"] == "Autograder failed" for t in visible)
    assert all("secret path" not in t["output"] for t in visible)
    hidden = [t for t in document["tests"] if t.get("visibility") == "hidden"]
    assert "secret path" in hidden[0]["output"]


def test_write_results_is_atomic_and_valid(tmp_path: Path) -> None:
    path = tmp_path / "out" / "results.json"
    write_results(path, RESULT)
    validate(json.loads(path.read_text(encoding="utf-8")))
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]


def test_terminal_summary_shows_each_item_and_the_hint() -> None:
    text = render_text(RESULT)
    assert "attention.ipynb: 10 / 15 points" in text
    assert "[PASS]" in text and "[FAIL]" in text and "Hint: Divide" in text
