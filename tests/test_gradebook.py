"""Scores land in nbgrader's own gradebook, where nbgrader's tools see them."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from conftest import REFERENCE_SOURCE, ROOT

from autograder.batch import discover, grade_all
from autograder.catalog import rubric_of
from autograder.errors import ConfigError
from autograder.gradebook import record

pytestmark = pytest.mark.slow


def course(tmp_path: Path) -> Path:
    root = tmp_path / "course"
    shutil.copytree(ROOT / "source", root / "source")
    shutil.copy2(ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
    done = subprocess.run(
        [sys.executable, "-m", "nbgrader", "generate_assignment", "attention", "--force"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    release = nbformat.read(str(root / "release" / "attention" / "attention.ipynb"), as_version=4)
    for student, source in (
        ("alice", REFERENCE_SOURCE),
        ("bob", REFERENCE_SOURCE.replace(" / np.sqrt(d_k)", "")),
    ):
        nb = nbformat.v4.new_notebook()
        nb.cells = [*release.cells, nbformat.v4.new_code_cell(source)]
        folder = root / "submitted" / student / "attention"
        folder.mkdir(parents=True)
        nbformat.write(nb, str(folder / "attention.ipynb"))
    return root


def test_batch_scores_go_into_the_gradebook(tmp_path: Path) -> None:
    from nbgrader.api import Gradebook

    root = course(tmp_path)
    rubric = rubric_of("attention")
    outcomes = grade_all(
        discover(root, assignment="attention"), out=tmp_path / "out", exercise="attention", jobs=2
    )
    assert record(root / "gradebook.db", outcomes, rubric=rubric, assignment="attention") == 2
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gradebook:

        def grade(cell: str, student: str) -> Any:
            return gradebook.find_grade(cell, "attention", "attention", student)

        # bob forgot 1/sqrt(d_k): he loses the reference cell, keeps the distribution cell.
        assert grade("test_sdpa_reference", "alice").auto_score == 1.5
        assert grade("test_sdpa_reference", "bob").auto_score == 0
        assert grade("test_sdpa_distribution", "bob").auto_score == 1
        written = gradebook.find_grade("q_memory", "attention", "attention", "alice")
        assert written.auto_score is None and written.needs_manual_grade
    export = tmp_path / "grades.csv"
    done = subprocess.run(
        [sys.executable, "-m", "nbgrader", "export", "--to", str(export)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    rows = {row["student_id"]: row for row in csv.DictReader(export.open())}
    assert float(rows["alice"]["raw_score"]) == 10.0
    bob_total = {o.student: o.total for o in outcomes}["bob"]
    assert 0 < bob_total < 100
    assert float(rows["bob"]["raw_score"]) == pytest.approx(bob_total / 10)


def test_missing_gradebook_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nbgrader generate_assignment attention"):
        record(tmp_path / "gradebook.db", [], rubric=rubric_of("attention"), assignment="attention")


def test_batch_command_writes_kv_cache_scores_into_the_gradebook(tmp_path: Path) -> None:
    """The second exercise goes the whole way too: nbgrader releases it, `batch --exercise
    kv_cache --gradebook` grades the class and fills nbgrader's grade cells."""
    from nbgrader.api import Gradebook

    root = tmp_path / "course"
    shutil.copytree(ROOT / "source", root / "source")
    shutil.copy2(ROOT / "nbgrader_config.py", root / "nbgrader_config.py")
    nbgrader = [sys.executable, "-m", "nbgrader", "generate_assignment", "kv_cache", "--force"]
    done = subprocess.run(nbgrader, cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    release = nbformat.read(str(root / "release" / "kv_cache" / "kv_cache.ipynb"), as_version=4)
    reference = (ROOT / "solutions" / "kv_cache.py").read_text(encoding="utf-8")
    nb = nbformat.v4.new_notebook()
    nb.cells = [*release.cells, nbformat.v4.new_code_cell(reference)]
    for student, notebook in (("alice", nb), ("bob", None)):
        folder = root / "submitted" / student / "kv_cache"
        folder.mkdir(parents=True)
        if notebook is None:
            shutil.copy2(ROOT / "examples" / "kv_cache.ipynb", folder / "kv_cache.ipynb")
        else:
            nbformat.write(notebook, str(folder / "kv_cache.ipynb"))
    command = [sys.executable, "-m", "autograder", "batch", str(root), "--exercise", "kv_cache"]
    command += ["--out", str(tmp_path / "out"), "--gradebook", str(root / "gradebook.db")]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Wrote 2 students' scores" in done.stdout
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gradebook:

        def grade(cell: str, student: str) -> Any:
            return gradebook.find_grade(cell, "kv_cache", "kv_cache", student)

        assert grade("test_decode_chunked", "alice").auto_score == 1.5
        assert grade("test_decode_chunked", "bob").auto_score == 0
        assert grade("test_decode_steps", "bob").auto_score == 1.5
        assert grade("q_memory", "alice").needs_manual_grade
