"""The command line, as a user types it: exit codes, messages, files written."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest
from conftest import REFERENCE_SOURCE, ROOT


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "autograder", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def test_help_lists_commands_with_examples() -> None:
    done = run("grade", "--help")
    assert done.returncode == 0
    assert "python -m autograder grade attention.ipynb --results results.json" in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [(("frobnicate",), "invalid choice"), (("grade",), "required: submission")],
    ids=["unknown-command", "missing-argument"],
)
def test_bad_usage_exits_2_with_a_message(args: tuple[str, ...], message: str) -> None:
    done = run(*args)
    assert done.returncode == 2 and message in done.stderr


def test_missing_submission_still_writes_results(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    done = run("grade", str(tmp_path / "nope.ipynb"), "--results", str(results))
    assert done.returncode == 0, done.stderr
    document = json.loads(results.read_text(encoding="utf-8"))
    assert document["score"] == 0 and "No file or folder" in document["output"]


@pytest.mark.parametrize(
    "args",
    [
        ("grade", "nope.ipynb", "--results", "{blocked}/r.json"),
        ("gradescope", "--out", "{blocked}/autograder.zip"),
        ("student-kit", "--out", "{blocked}/attention-checker.zip"),
    ],
    ids=["grade-results", "gradescope-zip", "student-kit"],
)
def test_unwritable_output_path_is_a_clear_error(tmp_path: Path, args: tuple[str, ...]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    done = run(*(arg.format(blocked=blocker) for arg in args), cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("error:") and str(blocker) in done.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["file"]


@pytest.mark.slow
def test_grade_prints_a_summary_and_writes_results(tmp_path: Path) -> None:
    submission = tmp_path / "attention.py"
    submission.write_text(REFERENCE_SOURCE.replace("axis=-1, keepdims", "axis=-2, keepdims"))
    results = tmp_path / "results.json"
    done = run("grade", str(submission), "--results", str(results))
    assert done.returncode == 0, done.stderr
    assert "[FAIL]" in done.stdout and "query axis" in done.stdout
    assert json.loads(results.read_text(encoding="utf-8"))["score"] < 100


@pytest.mark.slow
def test_check_on_the_released_stubs_says_not_implemented_per_function() -> None:
    done = run("check", "release/attention/attention.ipynb")
    assert done.returncode == 0, done.stderr
    for name in ("scaled_dot_product_attention", "create_causal_mask", "MultiHeadAttention"):
        assert f"Not implemented yet: `{name}`" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
    assert "0 of 5 public checks pass" in done.stdout
    assert "5 more items are graded after the deadline (not run now)" in done.stdout


def test_check_on_a_missing_notebook_is_one_clear_error(tmp_path: Path) -> None:
    done = run("check", str(tmp_path / "attention.ipynb"))
    assert done.returncode == 2 and done.stdout == ""
    assert "No file or folder at" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_student_kit_command_writes_the_kit_and_says_how_to_use_it(tmp_path: Path) -> None:
    done = run("student-kit", "--out", str(tmp_path / "attention-checker.zip"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "attention-checker.zip").is_file()
    assert "pip install attention-checker.zip" in done.stdout
    assert "python -m autograder check NOTEBOOK" in done.stdout


_START = {
    "python -m autograder": "runpy.run_module('autograder', run_name='__main__')",
    "attention-autograder": "sys.exit(next(e for e in entry_points(group='console_scripts')"
    " if e.name == 'attention-autograder').load()())",
}


@pytest.mark.parametrize("start", list(_START.values()), ids=list(_START))
def test_every_entry_point_pins_one_blas_thread_and_freezes_what_it_imported(start: str) -> None:
    probe = (
        "import gc, os, runpy, sys\n"
        "from importlib.metadata import entry_points\n"
        "sys.argv = ['autograder', 'grade', '--help']\n"
        f"try:\n    {start}\n"
        "except SystemExit:\n    pass\n"
        "print(os.environ['OPENBLAS_NUM_THREADS'], os.environ['OMP_NUM_THREADS'],"
        " gc.get_freeze_count() > 10_000)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "OPENBLAS_NUM_THREADS": "8"},
    )
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout
    assert done.stdout.splitlines()[-1] == "1 1 True"


def test_grading_leaves_nothing_in_the_current_folder(tmp_path: Path) -> None:
    submission = tmp_path / "in" / "attention.py"
    submission.parent.mkdir()
    submission.write_text(REFERENCE_SOURCE, encoding="utf-8")
    here = tmp_path / "here"
    here.mkdir()
    done = run("grade", str(submission), "--results", str(tmp_path / "r.json"), cwd=here)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))["score"] == 100
    assert list(here.iterdir()) == []  # Hypothesis keeps no `.hypothesis/` cache here


@pytest.mark.slow
def test_grade_makes_the_course_secret_once_then_keeps_it(tmp_path: Path) -> None:
    solutions = tmp_path / "solutions"
    solutions.mkdir()
    (solutions / "attention.py").write_text(REFERENCE_SOURCE, encoding="utf-8")
    submission = tmp_path / "attention.py"
    submission.write_text(REFERENCE_SOURCE.replace("axis=-1, keepdims", "axis=-2, keepdims"))
    made = []
    for results in ("first.json", "second.json"):
        done = subprocess.run(
            [sys.executable, "-m", "autograder", "grade", str(submission), "--results", results],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=300,
            env={**os.environ, "AUTOGRADER_SOLUTIONS": str(solutions)},
        )
        assert done.returncode == 0, done.stderr
        made.append((solutions / "grading_secret.txt").read_bytes())
    assert made[0] == made[1] and b"# The grading secret of this course" in made[0]
    first, second = (
        json.loads((tmp_path / name).read_text()) for name in ("first.json", "second.json")
    )
    assert first["tests"] == second["tests"] and 0 < first["score"] < 100


@pytest.mark.slow
def test_check_in_the_course_repository_makes_the_secret_too(tmp_path: Path) -> None:
    solutions = tmp_path / "solutions"
    solutions.mkdir()
    (solutions / "attention.py").write_text(REFERENCE_SOURCE, encoding="utf-8")
    submission = tmp_path / "attention.py"
    submission.write_text(REFERENCE_SOURCE, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "autograder", "check", str(submission)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
        env={**os.environ, "AUTOGRADER_SOLUTIONS": str(solutions)},
    )
    assert done.returncode == 0, done.stderr
    assert "5 of 5 public checks pass" in done.stdout, done.stdout
    assert (solutions / "grading_secret.txt").is_file()


SCHEMA = json.loads((Path(__file__).parent / "gradescope_results.schema.json").read_text())


def _fifo(folder: Path) -> Path:
    os.mkfifo(folder / "attention.ipynb")
    return folder / "attention.ipynb"


def _link_to_reference(folder: Path) -> Path:
    (folder / "attention.py").symlink_to(ROOT / "solutions" / "attention.py")
    return folder / "attention.py"


def _link_to_dev_zero(folder: Path) -> Path:
    (folder / "attention.ipynb").symlink_to("/dev/zero")
    return folder


def _deep(folder: Path) -> Path:
    path = folder / "attention.ipynb"
    path.write_bytes(b'{"nbformat": 4, "cells": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    return path


UNREADABLE = {
    "fifo": (_fifo, "attention.ipynb is a named pipe (FIFO)"),
    "link-to-reference": (_link_to_reference, "attention.py is a symbolic link (to "),
    "folder-with-link-to-dev-zero": (_link_to_dev_zero, "is a symbolic link (to /dev/zero)"),
    "json-100000-deep": (_deep, "nests more than 100 levels deep"),
}


@pytest.mark.parametrize(("make", "message"), UNREADABLE.values(), ids=UNREADABLE.keys())
def test_unreadable_submissions_still_get_a_valid_results_file(
    tmp_path: Path, make: Callable[[Path], Path], message: str
) -> None:
    results = tmp_path / "out" / "results.json"
    done = run("grade", str(make(tmp_path)), "--results", str(results))
    assert done.returncode == 0, done.stderr
    document = json.loads(results.read_text(encoding="utf-8"))
    jsonschema.validate(document, SCHEMA)
    assert document["score"] == 0
    assert message in document["output"].replace("\\", ""), document["output"]
    assert message in done.stdout


def test_error_messages_show_control_characters_as_escapes(tmp_path: Path) -> None:
    done = run("check", str(tmp_path / "\x1b]0;owned\x07\x1b[2J.ipynb"))
    assert done.returncode == 2
    assert "\x1b" not in done.stderr and "\\x1b]0;owned\\x07\\x1b[2J.ipynb" in done.stderr


NOISY_TEXT = (
    'print("\\x1b]0;owned\\x07\\x1b[2J\\x9b31m")\n'
    'raise ValueError("\\x1b[31m red \\ud800 <img src=x>")\n'
)


@pytest.mark.slow
@pytest.mark.parametrize("command", ["grade", "check"])
def test_student_escapes_and_surrogates_never_reach_the_terminal(
    tmp_path: Path, command: str
) -> None:
    submission = tmp_path / "attention.py"
    submission.write_text(REFERENCE_SOURCE + "\n" + NOISY_TEXT, encoding="utf-8")
    results = tmp_path / "results.json"
    extra = ("--results", str(results)) if command == "grade" else ()
    done = subprocess.run(
        [sys.executable, "-m", "autograder", command, str(submission), *extra],
        capture_output=True,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout.decode("utf-8") + done.stderr.decode("utf-8")  # strict UTF-8
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f]", out), out
    assert "raised `ValueError: \\x1b[31m red \ufffd <img src=x>`" in out
    if command == "grade":
        document = json.loads(results.read_bytes().decode("utf-8"))
        jsonschema.validate(document, SCHEMA)
        assert document["score"] == 100 and "\ufffd" in document["output"]


def test_a_grade_by_folder_reads_no_entry_points_but_help_lists_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only help names the installed exercises: a grade of an exercise named by its folder
    (what the Gradescope zip runs) never scans the installed packages' entry points."""
    from autograder import catalog, cli

    def unread() -> dict[str, object]:
        raise AssertionError("a grade read the installed entry points")

    monkeypatch.setattr(catalog, "_registered", unread)
    folder = str(ROOT / "autograder" / "exercises" / "attention")
    results = tmp_path / "results.json"
    code = cli.main(
        [
            "grade",
            str(tmp_path / "none.ipynb"),
            "--exercise",
            folder,
            "--results",
            str(results),
            "--quiet",
        ]
    )
    assert code == 0 and json.loads(results.read_text(encoding="utf-8"))["score"] == 0
    with pytest.raises(AssertionError, match="entry points"):
        cli.main(["grade", "--help"])
