"""Regrade diffs: two batch outputs compared, on a real rubric change and on bad inputs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import ROOT
from test_classreport import KNOWN_CLASS, graded_class  # noqa: F401 (a fixture)

from autograder.batch import discover, grade_all
from autograder.cli import main
from autograder.regrade import compare, render_diff
from autograder.report import write_results
from autograder.rubric import Failure
from autograder.scoring import GradeResult, ItemResult
from autograder.stored import StoredItem, StoredResult


def result(name: str, **points: tuple[float, float]) -> StoredResult:
    """A stored result: item id -> (score, max_score)."""
    return StoredResult(
        name,
        tuple(StoredItem(i, i, score, most, score == most) for i, (score, most) in points.items()),
    )


def test_the_diff_lists_changed_items_students_in_one_output_and_a_summary() -> None:
    old = [
        result("amy", a=(10, 10), b=(0, 5)),
        result("bo", a=(10, 10), b=(5, 5)),
        result("cat", a=(0, 10), b=(5, 5)),
        result("dan", a=(0, 10), b=(0, 5)),
    ]
    new = [
        result("amy", a=(10, 10), b=(5, 5)),  # up
        result("bo", a=(0, 10), b=(5, 5)),  # down
        result("cat", a=(5, 10), b=(0, 5)),  # items changed, same total
        result("eve", a=(10, 10), b=(5, 5)),
    ]
    diff = compare(old, new)
    assert (diff.up, diff.down, diff.unchanged) == (1, 1, 1)
    assert (diff.only_old, diff.only_new) == (("dan",), ("eve",))
    assert render_diff(diff).splitlines() == [
        "amy: 10 -> 15 (+5)",
        "  b: 0 -> 5 (+5)",
        "bo: 15 -> 5 (-10)",
        "  a: 10 -> 0 (-10)",
        "cat: 5 -> 5 (+0)",
        "  a: 0 -> 5 (+5)",
        "  b: 5 -> 0 (-5)",
        "only in OLD: dan",
        "only in NEW: eve",
        "3 students in both: 1 up, 1 down, 1 unchanged; 1 only in OLD, 1 only in NEW. "
        "Something changed.",
    ]
    assert diff.anything and not compare(old, old).anything


def test_a_new_item_and_a_reweighted_one_are_changes() -> None:
    diff = compare([result("amy", a=(0, 10))], [result("amy", a=(0, 20), c=(0, 5))])
    assert render_diff(diff).splitlines()[:2] == [
        "item a: worth 10 -> 20 points",
        "item c: worth absent -> 5 points",
    ]
    assert diff.anything and diff.changed[0].items[0].item == "c"


def test_a_name_cannot_forge_a_line_of_the_diff() -> None:
    forged = "x\nmallory: 0 -> 100 (+100)\x1b[2J"
    text = render_diff(compare([result(forged, a=(0, 1))], [result(forged, a=(1, 1))]))
    assert text.splitlines()[0] == "x\\nmallory: 0 -> 100 (+100)\\x1b[2J: 0 -> 1 (+1)"


def _write(out: Path, student: str, text: str | bytes) -> None:
    (out / student).mkdir(parents=True, exist_ok=True)
    path = out / student / "results.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())


def _good(out: Path, student: str = "amy") -> Path:
    item = ItemResult("a", "A", 0, 1, "visible", Failure("Wrong."), 1)
    write_results(out / student / "results.json", GradeResult("n.ipynb", (item,)))
    return out


def _bad(text: str | bytes) -> Callable[[Path], Path]:
    def make(out: Path) -> Path:
        _good(out)
        _write(out, "bo", text)
        return out

    return make


def _linked(out: Path) -> Path:
    _good(out)
    (out / "bo").mkdir()
    (out / "bo" / "results.json").symlink_to(out / "amy" / "results.json")
    return out


def _fifo(out: Path) -> Path:
    (out / "bo").mkdir(parents=True)
    os.mkfifo(out / "bo" / "results.json")  # opening it would block: it must not be opened
    return out


def _folder(out: Path) -> Path:
    (out / "bo" / "results.json").mkdir(parents=True)
    return out


BAD_OUTPUTS = [
    ("missing-folder", lambda out: out / "nowhere", "No batch output at"),
    ("a-file", lambda out: _good(out) / "amy" / "results.json", "No batch output at"),
    ("empty-folder", lambda out: out.mkdir() or out, "holds no STUDENT/results.json"),
    ("not-json", _bad("{broken"), "is not a results file the grader wrote"),
    ("not-utf8", _bad(b'{"tests": ["\xff"]}'), "is not a results file the grader wrote"),
    ("no-tests", _bad('{"score": 1}'), "it has no list of tests"),
    ("a-test-not-an-object", _bad('{"tests": [1]}'), "a test is int, not an object"),
    (
        "score-not-a-number",
        _bad('{"tests": [{"score": "ten", "extra_data": {"id": "a"}}]}'),
        "the score of 'a' is 'ten', not a finite number",
    ),
    (
        "repeated-item",
        _bad(
            '{"tests": [{"score": 1, "extra_data": {"id": "a"}}, {"score": 1, '
            '"extra_data": {"id": "a"}}]}'
        ),
        "it repeats an item id",
    ),
    (
        "score-nan",
        _bad('{"tests": [{"score": NaN, "extra_data": {"id": "a"}}]}'),
        "the score of 'a' is nan, not a finite number",
    ),
    ("a-link", _linked, "is not a regular file"),
    ("a-fifo", _fifo, "is not a regular file"),
    ("a-folder", _folder, "is not a regular file"),
]


@pytest.mark.parametrize(
    ("make", "message"), [b[1:] for b in BAD_OUTPUTS], ids=[b[0] for b in BAD_OUTPUTS]
)
@pytest.mark.parametrize("side", ["old", "new"])
def test_an_unreadable_output_exits_2_with_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    make: Callable[[Path], Path],
    message: str,
    side: str,
) -> None:
    good = _good(tmp_path / "good")
    bad = make(tmp_path / "bad")
    pair = [str(bad), str(good)] if side == "old" else [str(good), str(bad)]
    assert main(["diff", *pair]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: ") and message in captured.err, captured.err
    assert captured.err.count("\n") == 1


REWEIGHTED = """
from dataclasses import replace

from autograder.exercises.attention import EXERCISE as ATTENTION

RUBRIC = ATTENTION.rubric.with_points({"sdpa_reference": 25, "causal_mask": 5})
EXERCISE = replace(
    ATTENTION,
    name="reweighted",
    package=__name__,
    assignment="attention",
    rubric=replace(RUBRIC, name="reweighted"),
)
"""


@pytest.mark.slow
def test_a_rubric_change_shows_in_the_diff_and_its_exit_status(
    graded_class: tuple[Path, Path],  # noqa: F811 (the fixture)
    tmp_path: Path,
) -> None:
    course, before = graded_class
    exercise = tmp_path / "exercises" / "reweighted"
    exercise.mkdir(parents=True)
    (exercise / "__init__.py").write_text(REWEIGHTED, encoding="utf-8")
    after = tmp_path / "after"
    grade_all(discover(course, assignment="attention"), out=after, exercise=str(exercise))
    assert json.loads((after / "ada" / "results.json").read_text())["score"] == 105

    def diff(old: Path, new: Path) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "autograder", "diff", str(old), str(new)]
        return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=120)

    done = diff(before, after)
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:2] == [
        "item sdpa_reference: worth 15 -> 25 points",
        "item causal_mask: worth 10 -> 5 points",
    ]
    # Correct students trade 5 points of the mask for 10 of the reference: up 5.
    for name in ("ada", "ben"):
        at = lines.index(f"{name}: 100 -> 105 (+5)")
        assert lines[at + 1 : at + 3] == [
            "  sdpa_reference: 15 -> 25 (+10)",
            "  causal_mask: 10 -> 5 (-5)",
        ]
    # Without the scaling they fail the reference item: only the mask's loss counts.
    for name in ("cy", "dee", "eve"):
        at = lines.index(f"{name}: 30 -> 25 (-5)")
        assert lines[at + 1] == "  causal_mask: 10 -> 5 (-5)"
    assert "fay: 90 -> 100 (+10)" in lines  # she fails the mask, passes the reference
    assert not any(line.startswith(("hal", "ivy")) for line in lines)  # 0 either way
    assert lines[-1] == (
        "8 students in both: 3 up, 3 down, 2 unchanged; 0 only in OLD, 0 only in NEW. "
        "Something changed."
    )
    assert len(KNOWN_CLASS) == 8

    same = tmp_path / "same"
    shutil.copytree(after, same)
    shutil.rmtree(same / "ivy")
    done = diff(after, after)
    assert (done.returncode, done.stdout.splitlines()[-1]) == (
        0,
        "8 students in both: 0 up, 0 down, 8 unchanged; 0 only in OLD, 0 only in NEW. "
        "Nothing changed.",
    )
    done = diff(after, same)
    assert done.returncode == 1 and "only in OLD: ivy" in done.stdout.splitlines()
