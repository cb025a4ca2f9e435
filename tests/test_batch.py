"""Grading a class: layouts, CSV, feedback files, resuming, and jobs that do not change scores."""

from __future__ import annotations

import csv
import io
import json
import multiprocessing
import os
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest
from conftest import REFERENCE_SOURCE, ROOT
from test_hostile import TAMPERING, WRONG

from autograder import batch
from autograder.batch import (
    SHARED_RUNS,
    Entry,
    Outcome,
    Progress,
    discover,
    grade_all,
    summary,
    write_csv,
)
from autograder.catalog import rubric_of
from autograder.errors import SubmissionError
from autograder.sandbox import forkserver, launch


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
    assert discover(tmp_path / "submitted", assignment="attention") == entries


def test_discover_folder_per_student_and_flat(tmp_path: Path) -> None:
    notebook(tmp_path / "per" / "submission_123" / "anything.ipynb", "x = 1")
    notebook(tmp_path / "flat" / "carol.ipynb", "x = 1")
    assert discover(tmp_path / "per", assignment="attention") == [
        Entry("submission_123", tmp_path / "per" / "submission_123")
    ]
    assert [e.student for e in discover(tmp_path / "flat", assignment="attention")] == ["carol"]


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
        discover(make(tmp_path), assignment="attention")


@pytest.mark.slow
def test_a_class_is_graded_resumed_and_jobs_do_not_change_scores(tmp_path: Path) -> None:
    course = make_class(tmp_path / "course")
    entries = discover(course, assignment="attention")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("not the grader's")
    (tmp_path / "serial").mkdir()
    (tmp_path / "serial" / SHARED_RUNS).symlink_to(elsewhere)  # planted: never followed
    started: list[str] = []
    serial = grade_all(
        entries,
        out=tmp_path / "serial",
        exercise="attention",
        jobs=1,
        started=lambda: started.append("first"),
    )
    assert started == ["first"]  # once, with every submission handed to the pool
    assert (elsewhere / "keep.txt").exists() and not os.path.lexists(
        tmp_path / "serial" / SHARED_RUNS
    )
    scores = {o.student: o.total for o in serial}
    assert scores["alice"] == 100 and 0 < scores["bob"] < 100
    assert scores["mallory"] == 0 and scores["zed"] == 0

    parallel = grade_all(entries, out=tmp_path / "parallel", exercise="attention", jobs=2)
    assert [(o.student, o.scores) for o in parallel] == [(o.student, o.scores) for o in serial]

    for student in CLASS:
        document = json.loads((tmp_path / "serial" / student / "results.json").read_text())
        assert document["score"] == scores[student]
        feedback = (tmp_path / "serial" / student / "feedback.md").read_text()
        assert feedback.startswith("# Feedback on")
    assert "1/sqrt(d_k)" in (tmp_path / "serial" / "bob" / "feedback.md").read_text()

    again = grade_all(
        entries,
        out=tmp_path / "serial",
        exercise="attention",
        jobs=1,
        started=lambda: started.append("again"),
    )
    assert all(o.resumed for o in again) and [o.scores for o in again] == [o.scores for o in serial]
    assert started == ["first"]  # nothing to grade: nothing started
    notebook(course / "submitted" / "bob" / "attention" / "attention.ipynb", REFERENCE_SOURCE)
    changed = {
        o.student: o
        for o in grade_all(entries, out=tmp_path / "serial", exercise="attention", jobs=1)
    }
    assert not changed["bob"].resumed and changed["bob"].total == 100

    write_csv(tmp_path / "grades.csv", serial, rubric_of("attention"))
    rows = list(csv.DictReader((tmp_path / "grades.csv").open()))
    assert [r["student"] for r in rows] == list(CLASS)
    assert rows[0]["total"] == "100" and rows[0]["sdpa_reference"] == "15"
    assert set(rows[0]) >= {item.id for item in rubric_of("attention").items}


@pytest.mark.slow
def test_a_batch_forks_each_child_from_a_fork_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker grades one student after another: it forks each one's child from a Python that
    is ready (`forkserver`), and the grades are those of children started afresh."""
    course = make_class(tmp_path / "course")
    entries = [e for e in discover(course, assignment="attention") if e.student in ("alice", "bob")]
    fresh = grade_all(entries, out=tmp_path / "fresh", exercise="attention", jobs=1)
    kinds: list[str] = []
    real = launch._start

    def spied(cwd: str) -> tuple[object, object, bool]:
        process, ours, forked = real(cwd)
        kinds.append(type(process).__name__)
        return process, ours, forked

    monkeypatch.setattr(launch, "_start", spied)
    try:
        with ThreadPoolExecutor(1) as pool:  # the workers' code, in this process
            served = grade_all(
                entries, out=tmp_path / "served", exercise="attention", executor=pool
            )
    finally:
        forkserver.enable(False)
    assert kinds and set(kinds) == {"Forked"}, kinds
    assert [(o.student, o.scores) for o in served] == [(o.student, o.scores) for o in fresh]
    for student in ("alice", "bob"):
        assert (tmp_path / "served" / student / "feedback.md").read_text() == (
            tmp_path / "fresh" / student / "feedback.md"
        ).read_text()


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
    report = json.loads((tmp_path / "out" / "report.json").read_text(encoding="utf-8"))
    assert report["students"] == 2 and report["scores"] == {"alice": 100, "bob": 0}
    assert f"Class report: {tmp_path / 'out' / 'report.html'}" in done.stdout


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
    entries = discover(course, assignment="attention")
    first = grade_all(entries, out=tmp_path / "out", exercise="attention", jobs=1)
    again = grade_all(entries, out=tmp_path / "out", exercise="attention", jobs=1)
    assert [o.resumed for o in again] == [True, True]
    assert "2 already done" in summary(again, 1.0)

    # The same submissions, graded by a grader whose reference solution has changed.
    solutions = tmp_path / "solutions"
    solutions.mkdir()
    changed = REFERENCE_SOURCE.replace("MASK_VALUE = -1e9", "MASK_VALUE = -1e10")
    assert changed != REFERENCE_SOURCE
    (solutions / "attention.py").write_text(changed, encoding="utf-8")
    secret = (ROOT / "solutions" / "grading_secret.txt").read_bytes()
    (solutions / "grading_secret.txt").write_bytes(secret)
    monkeypatch.setenv("AUTOGRADER_SOLUTIONS", str(solutions))
    regraded = grade_all(entries, out=tmp_path / "out", exercise="attention", jobs=1)
    assert [(o.resumed, o.grader_changed) for o in regraded] == [(False, True), (False, True)]
    assert [o.scores for o in regraded] == [o.scores for o in first]
    assert "2 graded (2 because the grader changed), 0 already done" in summary(regraded, 1.0)


def _hostile_class(root: Path) -> tuple[Path, dict[str, str]]:
    """A flat class where some "notebooks" are links or FIFOs: (folder, student -> reason)."""
    secret = root / "secret"
    notebook(secret / "attention.ipynb", REFERENCE_SOURCE)
    course = root / "course"
    course.mkdir()
    (course / "mallory.ipynb").symlink_to(secret / "attention.ipynb")
    (course / "zero.ipynb").symlink_to("/dev/zero")
    os.mkfifo(course / "pipe.ipynb")
    return course, {
        "mallory": "mallory.ipynb is a symbolic link (to ",
        "zero": "zero.ipynb is a symbolic link (to /dev/zero)",
        "pipe": "pipe.ipynb is a named pipe (FIFO)",
    }


def test_discovery_lists_links_and_fifos_without_opening_them(tmp_path: Path) -> None:
    course, refused = _hostile_class(tmp_path)
    entries = discover(course, assignment="attention")
    assert sorted(e.student for e in entries) == sorted(refused)
    digests = {e.student: e.digest() for e in entries}  # returns: /dev/zero and the FIFO unread
    assert len(set(digests.values())) == 3


def test_discovery_of_linked_student_folders(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    notebook(secret / "attention.ipynb", REFERENCE_SOURCE)
    nbgrader = tmp_path / "nbgrader" / "submitted"
    notebook(nbgrader / "alice" / "attention" / "attention.ipynb", "x = 1")
    (nbgrader / "trudy").mkdir()
    (nbgrader / "trudy" / "attention").symlink_to(secret, target_is_directory=True)
    (nbgrader / "oscar").symlink_to(tmp_path / "nbgrader" / "submitted" / "alice")
    entries = {e.student: e.path for e in discover(nbgrader.parent, assignment="attention")}
    assert entries == {
        "alice": nbgrader / "alice" / "attention",
        "oscar": nbgrader / "oscar",
        "trudy": nbgrader / "trudy" / "attention",
    }
    per_student = tmp_path / "export"
    notebook(per_student / "bob" / "work.ipynb", "x = 1")
    (per_student / "eve").symlink_to(secret, target_is_directory=True)
    assert [e.student for e in discover(per_student, assignment="attention")] == ["bob", "eve"]


@pytest.mark.slow
def test_a_batch_refuses_links_and_fifos_by_name_and_writes_their_results(tmp_path: Path) -> None:
    course, refused = _hostile_class(tmp_path)
    outcomes = grade_all(
        discover(course, assignment="attention"), out=tmp_path / "out", exercise="attention", jobs=1
    )
    assert {o.student: o.total for o in outcomes} == dict.fromkeys(refused, 0.0)
    for student, reason in refused.items():
        document = json.loads((tmp_path / "out" / student / "results.json").read_text())
        assert reason in document["output"].replace("\\", ""), document["output"]


def test_feedback_quotes_student_text_as_code_and_escapes_the_rest() -> None:
    from test_report import ALLOWED_TAGS, HOSTILE_TEXT, rendered

    from autograder.batch import _feedback
    from autograder.markup import code
    from autograder.rubric import Failure
    from autograder.scoring import GradeResult, ItemResult

    for text in HOSTILE_TEXT.values():
        failure = Failure(f"Your code raised {code(text)}. {text}", got=text, hint=text)
        result = GradeResult(
            f"{text}.ipynb",
            (ItemResult("a", "Item A", 0, 10, "visible", failure, 1),),
            notes=(text,),
        )
        html = rendered(_feedback(result))
        assert html.tags <= ALLOWED_TAGS | {"h1", "h2"} and not html.comments, (text, html.tags)


def test_progress_shows_control_characters_in_names_as_escapes() -> None:
    stream = io.StringIO()
    Progress(1, stream).update(Outcome("\x1b]0;owned\x07eve\x9b2J", {}, 0, 100))
    assert stream.getvalue() == "1/1 \\x1b]0;owned\\x07eve\\x9b2J: 0/100\n"


def _cpus_after_a_while(_: int) -> tuple[int, list[int]]:
    time.sleep(0.3)  # long enough that each of the two workers takes one task
    return os.getpid(), sorted(os.sched_getaffinity(0))


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="one CPU only: nothing to spread")
def test_pool_workers_each_keep_to_a_cpu_of_their_own() -> None:
    """Two gradings at once never share a CPU while another idles: each pool worker (started as
    grade_all starts them) keeps to the next CPU, in turn."""
    with ProcessPoolExecutor(
        max_workers=2, initializer=batch._own_cpu, initargs=(multiprocessing.Value("i", 0),)
    ) as pool:
        seen = dict(pool.map(_cpus_after_a_while, [0, 1]))
    assert len(seen) == 2  # two workers
    assert all(len(cpus) == 1 for cpus in seen.values())
    assert sorted(cpus[0] for cpus in seen.values()) == sorted(os.sched_getaffinity(0))[:2]
