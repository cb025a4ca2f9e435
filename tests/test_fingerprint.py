"""The grader's fingerprint covers everything that can change a grade, and only that."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REFERENCE_SOURCE, ROOT

from autograder.exercises.attention import EXERCISE as ATTENTION
from autograder.fingerprint import GRADING_PACKAGES, fingerprint_inputs, grader_fingerprint
from autograder.packaging import package_files


def test_it_covers_every_grader_file_the_reference_and_the_packages() -> None:
    inputs = fingerprint_inputs(ATTENTION)
    for name in package_files():
        assert name in inputs, name
    assert inputs["autograder/settings.py"] == (ROOT / "autograder/settings.py").read_bytes()
    rubric = ROOT / "autograder/exercises/attention/rubric.py"
    assert inputs["exercise/rubric.py"] == rubric.read_bytes()
    assert "exercise/oracle.py" in inputs and "exercise/settings.py" in inputs
    assert inputs["reference"] == REFERENCE_SOURCE.encode()
    assert inputs["grading secret"] == (ROOT / "solutions" / "grading_secret.txt").read_bytes()
    assert set(GRADING_PACKAGES) <= set(inputs) and "python" in inputs


def test_it_is_stable_and_changes_with_the_reference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = grader_fingerprint(ATTENTION)
    assert grader_fingerprint(ATTENTION) == before
    (tmp_path / "attention.py").write_text(REFERENCE_SOURCE + "\n# edited\n", encoding="utf-8")
    monkeypatch.setenv("AUTOGRADER_SOLUTIONS", str(tmp_path))
    assert grader_fingerprint(ATTENTION) != before


def test_a_new_grading_secret_changes_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "attention.py").write_text(REFERENCE_SOURCE, encoding="utf-8")
    monkeypatch.setenv("AUTOGRADER_SOLUTIONS", str(tmp_path))
    without = grader_fingerprint(ATTENTION)
    (tmp_path / "grading_secret.txt").write_text("ab" * 32 + "\n", encoding="utf-8")
    first = grader_fingerprint(ATTENTION)
    (tmp_path / "grading_secret.txt").write_text("cd" * 32 + "\n", encoding="utf-8")
    assert len({without, first, grader_fingerprint(ATTENTION)}) == 3
