"""The exercise record: what it refuses, the files it ships, where its reference is read."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import ROOT

from autograder.errors import ConfigError
from autograder.exercise import Answers, Exercise
from autograder.exercises.attention import EXERCISE as ATTENTION
from autograder.exercises.attention.cases import SdpaCase


class NotACase:
    pass


def record(**changes: object) -> Callable[[], Exercise]:
    fields: dict[str, object] = {
        "name": "attention",
        "package": ATTENTION.package,
        "rubric": ATTENTION.rubric,
        "reference": ATTENTION.reference,
        "oracle": lambda: Answers({}, lambda case: ()),
        "cases": (SdpaCase,),
    }
    fields.update(changes)
    return lambda: Exercise(**fields)  # type: ignore[arg-type]


BAD_RECORDS = [
    ("name-with-a-dash", record(name="self-attention"), "is not a Python identifier"),
    ("rubric-of-another-name", record(name="other"), "holds rubric 'attention'"),
    ("case-type-not-a-dataclass", record(cases=(NotACase,)), "which is not a dataclass"),
]


@pytest.mark.parametrize(
    ("make", "message"), [b[1:] for b in BAD_RECORDS], ids=[b[0] for b in BAD_RECORDS]
)
def test_a_bad_record_is_refused_with_what_to_do(
    make: Callable[[], Exercise], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        make()


def test_the_record_names_notebook_and_assignment() -> None:
    assert ATTENTION.notebook == "attention.ipynb"
    assert ATTENTION.nbgrader_assignment == "attention"
    assert record(assignment="week3")().nbgrader_assignment == "week3"


def test_a_kit_holds_the_package_without_its_grader_only_files() -> None:
    everything = ATTENTION.package_files()
    shipped = ATTENTION.package_files(grader=False)
    assert set(everything) - set(shipped) == {"oracle.py"}
    assert {"__init__.py", "rubric.py", "hints.py", "strategies.py"} <= set(shipped)
    assert not [name for name in everything if "__pycache__" in name or name.endswith(".pyc")]


def test_the_reference_is_read_from_autograder_solutions_when_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert ATTENTION.reference_file() == ROOT / "solutions" / "attention.py"
    monkeypatch.setenv("AUTOGRADER_SOLUTIONS", str(tmp_path))
    assert ATTENTION.reference_file() == tmp_path / "attention.py"


def test_the_reference_module_is_imported_once_per_place_it_is_read_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTOGRADER_SOLUTIONS", str(tmp_path / "one"))
    for place, answer in (("one", 1), ("two", 2)):
        (tmp_path / place).mkdir()
        (tmp_path / place / "attention.py").write_text(f"ANSWER = {answer}\n", encoding="utf-8")
    first = ATTENTION.reference_module()
    assert first.ANSWER == 1 and ATTENTION.reference_module() is first
    monkeypatch.setenv("AUTOGRADER_SOLUTIONS", str(tmp_path / "two"))
    assert ATTENTION.reference_module().ANSWER == 2
    monkeypatch.setenv("AUTOGRADER_SOLUTIONS", str(tmp_path / "one"))
    assert ATTENTION.reference_module() is first


def test_a_missing_reference_module_names_where_it_was_looked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTOGRADER_SOLUTIONS", str(tmp_path))
    with pytest.raises(ConfigError, match=str(tmp_path / "attention.py")):
        ATTENTION.reference_module()
