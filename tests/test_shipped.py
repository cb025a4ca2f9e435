"""The cases a Gradescope zip ships: built for one grader, used by it only, never a change of
score or feedback."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import REFERENCE_SOURCE, ROOT
from test_batch import notebook

from autograder import catalog
from autograder.oracle import digest
from autograder.packaging import build_zip
from autograder.secret import load_secret
from autograder.shipped import build, drawn_cases, file_name, load

ATTENTION = catalog.find("attention")


def test_the_zip_ships_each_items_drawn_cases_beside_the_reference(tmp_path: Path) -> None:
    names = build_zip(tmp_path / "autograder.zip", exercise=ATTENTION)
    shipped = f"solutions/{file_name(ATTENTION)}"
    assert shipped in names  # root-only on Gradescope, like the reference and the secret
    with zipfile.ZipFile(tmp_path / "autograder.zip") as archive:
        found = load(ATTENTION, archive.read(shipped))
    assert found is not None
    key = load_secret()
    drawing = [item for item in ATTENTION.rubric.items if item.strategy is not None]
    assert sorted(found) == sorted(item.id for item in drawing)
    for item in drawing:
        cases, requests = found[item.id]
        assert _keys(cases) == _keys(drawn_cases(item, key))
        # and what their replay on the reference asked, which a submission's replay follows
        assert len(requests) >= len(cases) and all(b'"op"' in frame for frame in requests)
    bare = build_zip(tmp_path / "bare.zip", exercise=ATTENTION, drawn=False)
    assert shipped not in bare


def _keys(cases: list[object]) -> list[str]:
    return [digest("case", (case,)) for case in cases]


def _rewritten(change: Callable[[dict[str, object]], object]) -> Callable[[bytes], bytes]:
    def rewrite(data: bytes) -> bytes:
        document = json.loads(gzip.decompress(data))
        change(document)
        return gzip.compress(json.dumps(document).encode())

    return rewrite


@pytest.mark.parametrize(
    "spoil",
    [
        _rewritten(lambda d: d.update(grader="0" * 64)),
        _rewritten(lambda d: d.update(version=99)),
        _rewritten(lambda d: d.update(items={"sdpa_reference": [{"case": "Nothing"}]})),
        _rewritten(lambda d: d.update(requests={"sdpa_reference": ["not base64!"]})),
        _rewritten(lambda d: d.pop("requests")),
        lambda data: data[: len(data) // 2],
        lambda data: b"not gzip at all",
    ],
    ids=[
        "another-grader",
        "another-format",
        "unknown-case-type",
        "requests-not-base64",
        "no-requests",
        "truncated",
        "not-gzip",
    ],
)
def test_cases_built_for_another_grader_or_damaged_are_not_used(
    spoil: Callable[[bytes], bytes],
) -> None:
    data = build(ATTENTION)
    assert load(ATTENTION, data) is not None
    assert load(ATTENTION, spoil(data)) is None


def _grade(submission: Path, solutions: Path | None, results: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k != "AUTOGRADER_SOLUTIONS"}
    if solutions is not None:
        env["AUTOGRADER_SOLUTIONS"] = str(solutions)
    done = subprocess.run(
        [sys.executable, "-m", "autograder", "grade", str(submission), "--results", str(results)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    document = json.loads(results.read_text(encoding="utf-8"))
    document.pop("execution_time", None)
    for test in document["tests"]:
        test.pop("execution_time", None)
    return json.dumps(document, sort_keys=True)


@pytest.mark.slow
def test_grades_with_the_shipped_cases_are_those_without(tmp_path: Path) -> None:
    build_zip(tmp_path / "autograder.zip", exercise=ATTENTION)
    with zipfile.ZipFile(tmp_path / "autograder.zip") as archive:
        archive.extractall(tmp_path / "zip", [n for n in archive.namelist() if "solutions/" in n])
    solutions = tmp_path / "zip" / "solutions"
    students = {
        "right": REFERENCE_SOURCE,
        "no-scaling": REFERENCE_SOURCE.replace(" / np.sqrt(d_k)", ""),
    }
    for student, code in students.items():
        path = notebook(tmp_path / student / "attention.ipynb", code)
        shipped = _grade(path, solutions, tmp_path / f"{student}-shipped.json")
        (solutions / file_name(ATTENTION)).rename(tmp_path / "aside")
        without = _grade(path, solutions, tmp_path / f"{student}-without.json")
        (tmp_path / "aside").rename(solutions / file_name(ATTENTION))
        assert shipped == without == _grade(path, None, tmp_path / f"{student}-repo.json")
        assert ('"score": 100' in shipped) == (student == "right")
