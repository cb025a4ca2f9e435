"""Grading a class: layouts, CSV, feedback files, resuming, and jobs that do not change scores."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from conftest import REFERENCE_SOURCE, ROOT
from test_hostile import TAMPERING, WRONG

from autograder.batch import Entry, discover, grade_all, summary, write_csv
from autograder.errors import SubmissionError
from autograder.rubrics import load


def notebook(path: Path, *cells: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(cell) for cell in cells]
    path.write_text(nbformat.writes(nb), encoding="utf-8")
    return path


CLASS = {
    "alice": (REFERENCE_SOURCE,),
    "bob": (REFERENCE_SOURCE.replace(" / np.sqrt(d_k)", ""),),
    "mallory": (WRONG, TAMPERING["write-fake-results"], TAMPERING["kill-the-parent"]),
    "zed": None,  # not a notebook at all
}


def make_class(root: Path) -> Path:
    for student, cells in CLASS.items():
        path = root / "submitted" / student / "attention" / "attention.ipynb"
        if cells is None:
            path.parent.mkdir(parents=True)
            path.write_text("{broken", encoding="utf-8")
        else:
            notebook(path, *cells)
    return root


def test_discover_nbgrader_layout(tmp_path: Path) -> None:
    entries = discover(make_class(tmp_path), assignment="attention")
    assert [e.student for e in entries] == ["alice", "bob", "mallory", "zed"]
    assert discover(tmp_path / "submitted") == entries


def test_discover_folder_per_student_and_flat(tmp_path: Path) -> None:
    notebook(tmp_path / "per" / "submission_123" / "anything.ipynb", "x = 1")
    notebook(tmp_path / "flat" / "carol.ipynb", "x = 1")
    assert discover(tmp_path / "per") == [
        Entry("submission_123", tmp_path / "per" / "submission_123")
    ]
    assert [e.student for e in discover(tmp_path / "flat")] == ["carol"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing", "No folder at"),
        (lambda p: p, "No submissions found"),
    ],
    ids=["missing-folder", "empty-folder"],
)
def test_discover_refuses_what_holds_no_submission(
    tmp_path: Path, make: object, message: str
) -> None:
    assert callable(make)
    with pytest.raises(SubmissionError, match=message):
        discover(make(tmp_path))


@pytest.mark.slow
def test_a_class_is_graded_resumed_and_jobs_do_not_change_scores(tmp_path: Path) -> None:
    course = make_class(tmp_path / "course")
    entries = discover(course)
    serial = grade_all(entries, out=tmp_path / "serial", jobs=1)
    scores = {o.student: o.total for o in serial}
    assert scores["alice"] == 100 and 0 < scores["bob"] < 100
    assert scores["mallory"] == 0 and scores["zed"] == 0

    parallel = grade_all(entries, out=tmp_path / "parallel", jobs=2)
    assert [(o.student, o.scores) for o in parallel] == [(o.student, o.scores) for o in serial]

    for student in CLASS:
        document = json.loads((tmp_path / "serial" / student / "results.json").read_text())
        assert document["score"] == scores[student]
        feedback = (tmp_path / "serial" / student / "feedback.md").read_text()
        assert feedback.startswith("# Feedback on")
    assert "1/sqrt(d_k)" in (tmp_path / "serial" / "bob" / "feedback.md").read_text()

    again = grade_all(entries, out=tmp_path / "serial", jobs=1)
    assert all(o.resumed for o in again) and [o.scores for o in again] == [o.scores for o in serial]
    notebook(course / "submitted" / "bob" / "attention" / "attention.ipynb", REFERENCE_SOURCE)
    changed = {o.student: o for o in grade_all(entries, out=tmp_path / "serial", jobs=1)}
    assert not changed["bob"].resumed and changed["bob"].total == 100

    write_csv(tmp_path / "grades.csv", serial, load("attention"))
    rows = list(csv.DictReader((tmp_path / "grades.csv").open()))
    assert [r["student"] for r in rows] == list(CLASS)
    assert rows[0]["total"] == "100" and rows[0]["sdpa_reference"] == "15"
    assert set(rows[0]) >= {item.id for item in load("attention").items}


@pytest.mark.slow
def test_batch_command_prints_plain_progress_when_not_a_tty(tmp_path: Path) -> None:
    course = tmp_path / "flat"
    notebook(course / "alice.ipynb", REFERENCE_SOURCE)
    notebook(course / "bob.ipynb", "x = 1")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "autograder",
            "batch",
            str(course),
            "--jobs",
            "2",
            "--out",
            str(tmp_path / "out"),
            "--csv",
            str(tmp_path / "grades.csv"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "alice: 100/100" in done.stderr and "bob: 0/100" in done.stderr
    assert "2 submissions: 2 graded" in done.stdout
    assert (tmp_path / "grades.csv").is_file()


def test_batch_command_rejects_zero_jobs(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "autograder", "batch", str(tmp_path), "--jobs", "0"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 2 and "--jobs must be at least 1" in done.stderr


@pytest.mark.slow
def test_a_changed_grader_regrades_everyone_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    course = tmp_path / "flat"
    notebook(course / "alice.ipynb", REFERENCE_SOURCE)
    notebook(course / "bob.ipynb", "x = 1")
    entries = discover(course)
    first = grade_all(entries, out=tmp_path / "out", jobs=1)
    again = grade_all(entries, out=tmp_path / "out", jobs=1)
    assert [o.resumed for o in again] == [True, True]
    assert "2 already done" in summary(again, 1.0)

    # The same submissions, graded by a grader whose reference solution has changed.
    solutions = tmp_path / "solutions"
    solutions.mkdir()
    changed = REFERENCE_SOURCE.replace("MASK_VALUE = -1e9", "MASK_VALUE = -1e10")
    assert changed != REFERENCE_SOURCE
    (solutions / "attention.py").write_text(changed, encoding="utf-8")
    monkeypatch.setenv("AUTOGRADER_SOLUTIONS", str(solutions))
    regraded = grade_all(entries, out=tmp_path / "out", jobs=1)
    assert [(o.resumed, o.grader_changed) for o in regraded] == [(False, True), (False, True)]
    assert [o.scores for o in regraded] == [o.scores for o in first]
    assert "2 graded (2 because the grader changed), 0 already done" in summary(regraded, 1.0)
