"""An exercise from outside the grader, tests/exercises/softmax (the one docs/AUTHORING.md
writes), goes every way a bundled one goes: found by its entry point and by its folder, graded
and checked from the command line, shipped as a student kit installed with pip into a fresh
venv, as a Gradescope zip set up and run in a temporary AUTOGRADER_ROOT, and graded as a class
into a real nbgrader gradebook; and the student's code cannot read its oracle or reference."""

from __future__ import annotations

import csv
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import jsonschema
import nbformat
import numpy as np
import pytest
from conftest import ROOT, SCHEMA, install_kit, run_autograder, set_up_zip

from autograder import catalog
from autograder.exercise import Exercise

EXTERNAL = ROOT / "tests" / "exercises" / "softmax"
PACKAGE = EXTERNAL / "softmax_exercise"
SAMPLE = EXTERNAL / "examples" / "softmax.ipynb"
REFERENCE = EXTERNAL / "solutions" / "softmax.py"
MASTER = EXTERNAL / "source" / "softmax" / "softmax.ipynb"
SETUP = 'python -m pip install -e ".[dev]" -e tests/exercises/softmax'

SAMPLE_SCORES = {  # the sample ignores `axis`: it always normalises along the last one
    "softmax_values": 40,
    "softmax_axis": 0,
    "softmax_stability": 30,
    "softmax_inputs_unchanged": 10,
}
SAMPLE_HINT = "Your result is the softmax along axis 1; softmax(x, axis=0) normalises along axis 0"


@pytest.fixture(scope="module")
def exercise() -> Exercise:
    """The installed external exercise; without it every test here fails, saying what to run."""
    if "softmax" not in catalog.names():
        pytest.fail(
            "The external exercise tests/exercises/softmax is not installed in this environment "
            f"(no 'softmax' in the autograder.exercises entry points): run {SETUP} from the "
            "repository root, then run the tests again."
        )
    return catalog.find("softmax")


def autograder(*args: str, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "autograder", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env={**os.environ, **env},
    )


def verdicts(report: str) -> list[str]:
    """A check report's verdict and hint lines (the inputs shown may differ in their values)."""
    keep = ("Checked ", "  [PASS]", "  [FAIL]", "    Hint:", "  note:")
    return [line for line in report.splitlines() if line.startswith(keep)]


def item_scores(document: dict[str, Any]) -> dict[str, float]:
    return {test["extra_data"]["id"]: test["score"] for test in document["tests"]}


# --- finding it ------------------------------------------------------------------------------


def test_found_by_entry_point_and_by_folder_alike(exercise: Exercise) -> None:
    by_folder = catalog.find(str(PACKAGE))
    assert by_folder == exercise
    assert exercise.folder == by_folder.folder == PACKAGE
    assert exercise.package == "softmax_exercise" and exercise.reference == REFERENCE
    groups = importlib.metadata.entry_points(group=catalog.ENTRY_POINTS)
    (registered,) = [entry for entry in groups if entry.name == "softmax"]
    assert registered.value == "softmax_exercise:EXERCISE"
    assert registered.dist is not None and registered.dist.name == "softmax-exercise"
    assert (ROOT / "autograder") not in PACKAGE.parents  # outside the grader


def test_the_package_needs_nothing_the_grader_does_not_install() -> None:
    imported = set()
    for path in PACKAGE.glob("*.py"):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith(("import ", "from ")):
                imported.add(line.split()[1].split(".")[0])
    stdlib = set(sys.stdlib_module_names)
    assert imported - stdlib <= {"numpy", "hypothesis", "autograder", "softmax_exercise"}


def solution_cell() -> str:
    nb = nbformat.read(str(MASTER), as_version=4)
    (cell,) = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "softmax"]
    return str(cell.source)


def test_the_notebook_s_solution_is_the_reference() -> None:
    """The solution cell's lines between BEGIN and END SOLUTION are the reference's body, and
    both compute the same thing."""
    cell = solution_cell()
    inside = cell.split("### BEGIN SOLUTION\n")[1].split("    ### END SOLUTION")[0]
    reference = REFERENCE.read_text(encoding="utf-8")
    assert inside in reference
    namespace: dict[str, Any] = {"np": np}
    exec(compile(cell, "<solution cell>", "exec"), namespace)
    ours: dict[str, Any] = {}
    exec(compile(reference, str(REFERENCE), "exec"), ours)
    x = np.random.default_rng(0).standard_normal((3, 4, 2)) * 1e3
    for axis in (0, 1, -1):
        assert np.array_equal(namespace["softmax"](x, axis=axis), ours["softmax"](x, axis=axis))


def test_the_notebook_has_one_grade_cell_per_item_worth_a_tenth_of_it(exercise: Exercise) -> None:
    nb = nbformat.read(str(MASTER), as_version=4)
    cells = {
        meta["grade_id"]: meta.get("points")
        for meta in (c.metadata.get("nbgrader", {}) for c in nb.cells)
        if meta.get("grade") and not meta.get("solution")
    }
    rubric = exercise.rubric
    assert set(cells) == set(rubric.grade_cells)
    points = {item.id: item.points for item in rubric.items}
    assert {cell: sum(points[i] for i in ids) / 10 for cell, ids in rubric.grade_cells.items()} == (
        cells
    )
    assert rubric.total_points == 100


# --- grade and check from the command line ----------------------------------------------------


@pytest.mark.slow
def test_grade_scores_the_sample_and_names_its_mistake(exercise: Exercise, tmp_path: Path) -> None:
    done = autograder(
        "grade", str(SAMPLE), "--exercise", "softmax", "--results", str(tmp_path / "r.json")
    )
    assert done.returncode == 0, done.stderr
    document = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    jsonschema.validate(document, SCHEMA)
    assert item_scores(document) == SAMPLE_SCORES
    assert document["score"] == 80
    (failed,) = [test for test in document["tests"] if test["status"] == "failed"]
    assert SAMPLE_HINT in failed["output"]
    assert "softmax.ipynb: 80 / 100 points" in done.stdout


@pytest.mark.slow
def test_grade_gives_the_reference_full_marks(exercise: Exercise, tmp_path: Path) -> None:
    done = autograder(
        "grade", str(REFERENCE), "--exercise", "softmax", "--results", str(tmp_path / "r.json")
    )
    assert done.returncode == 0, done.stderr
    document = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert document["score"] == 100, done.stdout
    assert set(item_scores(document)) == set(SAMPLE_SCORES)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("submission", "summary", "hint"),
    [
        (SAMPLE, "Checked softmax.ipynb: 1 of 2 public checks pass.", SAMPLE_HINT),
        (REFERENCE, "Checked softmax.py: 2 of 2 public checks pass.", None),
    ],
    ids=["sample", "reference"],
)
def test_check_runs_the_public_items(
    exercise: Exercise, submission: Path, summary: str, hint: str | None
) -> None:
    done = autograder("check", str(submission), "--exercise", "softmax")
    assert done.returncode == 0, done.stderr
    assert summary in done.stdout, done.stdout
    assert "2 more items are graded after the deadline" in done.stdout
    if hint is None:
        assert "[FAIL]" not in done.stdout
    else:
        assert f"    Hint: {hint}" in done.stdout


def softmax_source(*, shift: str, normalise: str, axis: str = "axis: int = -1") -> str:
    """A student's softmax, written the way the reference is, with the given lines."""
    return f"""import numpy as np


def softmax(x, {axis}):
    x = np.asarray(x, dtype=np.float64)
    {shift}
    exp = np.exp(shifted)
    {normalise}
"""


RIGHT_SHIFT = "shifted = x - x.max(axis=axis, keepdims=True)"
RIGHT_NORMALISE = "return exp / exp.sum(axis=axis, keepdims=True)"

MISTAKES = {  # id: (the student's softmax, the items it loses, a phrase of their hint)
    "no-max-subtraction": (
        softmax_source(shift="shifted = x", normalise=RIGHT_NORMALISE),
        ("softmax_stability",),
        "Subtract the maximum along the axis first",
    ),
    "not-normalised": (
        softmax_source(shift=RIGHT_SHIFT, normalise="return exp"),
        ("softmax_values", "softmax_axis", "softmax_stability"),
        "divide by its sum along the axis",
    ),
    "over-the-whole-array": (
        softmax_source(shift="shifted = x - x.max()", normalise="return exp / exp.sum()"),
        ("softmax_values", "softmax_axis", "softmax_stability"),
        "normalised over the whole array",
    ),
    "over-the-first-axis-by-default": (
        softmax_source(shift=RIGHT_SHIFT, normalise=RIGHT_NORMALISE, axis="axis=0"),
        ("softmax_values", "softmax_stability"),
        "Your result is the softmax along axis 0",
    ),
    "changes-its-input": (
        softmax_source(
            shift="x -= x.max(axis=axis, keepdims=True)\n    shifted = x",
            normalise=RIGHT_NORMALISE,
        ),
        ("softmax_inputs_unchanged",),
        "writes into the caller's array",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("mistake", MISTAKES.values(), ids=MISTAKES.keys())
def test_each_classic_mistake_loses_its_items_with_its_hint(
    exercise: Exercise, tmp_path: Path, mistake: tuple[str, tuple[str, ...], str]
) -> None:
    """On the items a mistake fails, the hint names it; the right-answers-only item says to
    fix the values first; every other item keeps its points."""
    from autograder.pipeline import grade

    source, lost, phrase = mistake
    (tmp_path / "softmax.py").write_text(source, encoding="utf-8")
    rubric = catalog.graded_rubric(exercise)
    result = grade(tmp_path / "softmax.py", rubric=rubric)
    judged_on_right_answers = () if "softmax_values" not in lost else ("softmax_inputs_unchanged",)
    failed = {*lost, *judged_on_right_answers}
    expected = {item.id: 0 if item.id in failed else item.points for item in rubric.items}
    assert {item.id: item.score for item in result.items} == expected
    for item in result.items:
        if item.id in lost:
            assert item.failure is not None and phrase in item.failure.hint, item.failure
        elif item.id in judged_on_right_answers:
            assert item.failure is not None and "softmax_values pass first" in item.failure.hint


# --- the student kit, installed as a student would -----------------------------------------


@pytest.fixture(scope="module")
def kit(exercise: Exercise, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("kit")
    done = autograder("student-kit", "--exercise", "softmax", cwd=folder)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Wrote softmax-checker.zip" in done.stdout
    return folder / "softmax-checker.zip"


@pytest.fixture(scope="module")
def kit_python(kit: Path) -> Path:
    """A fresh venv with nothing but pip, and the kit installed into it by pip."""
    return install_kit(kit)


@pytest.mark.slow
def test_the_kit_holds_no_reference_and_no_oracle(kit: Path) -> None:
    with zipfile.ZipFile(kit) as archive:
        names = archive.namelist()
        sources = [archive.read(n).decode() for n in names if n.endswith(".py")]
    top = "softmax-checker/"
    assert f"{top}softmax_exercise/rubric.py" in names
    assert f"{top}softmax_exercise/strategies.py" in names
    assert f"{top}autograder/kit_bank.json.gz" in names
    assert f"{top}softmax_exercise/__init__.py" in names  # the package, but not its oracle:
    assert not [n for n in names if n.startswith(f"{top}softmax_exercise/oracle")]
    assert not [n for n in names if "solutions" in n or n.endswith("softmax.py")]
    assert not [n for n in names if "/exercises/attention/" in n or "/exercises/kv_cache/" in n]
    body = [
        line.strip()
        for line in REFERENCE.read_text(encoding="utf-8").splitlines()
        if line.startswith("    ") and not line.strip().startswith(('"', "#"))
    ]
    assert body and not [line for line in body if any(line in text for text in sources)]
    with zipfile.ZipFile(kit) as archive:
        pyproject = archive.read(f"{top}pyproject.toml").decode()
    assert 'softmax = "softmax_exercise:EXERCISE"' in pyproject


@pytest.mark.slow
def test_the_installed_kit_checks_its_own_exercise_like_the_grader(
    kit_python: Path, tmp_path: Path
) -> None:
    """No --exercise: the kit checks the exercise it was built for, with the grader's verdicts
    and hints on the sample; it cannot reach an oracle."""
    kit = subprocess.run(
        [str(kit_python), "-m", "autograder", "check", str(SAMPLE)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert kit.returncode == 0, kit.stderr
    grader = autograder("check", str(SAMPLE), "--exercise", "softmax")
    assert verdicts(kit.stdout) == verdicts(grader.stdout), kit.stdout
    assert "Checked softmax.ipynb: 1 of 2 public checks pass." in kit.stdout
    assert f"    Hint: {SAMPLE_HINT}" in kit.stdout
    probe = (
        "import importlib.util\n"
        "from autograder import catalog\n"
        "print(importlib.util.find_spec('softmax_exercise.oracle'), catalog.default_name())\n"
        "try:\n"
        "    catalog.live_oracle(catalog.find('softmax'))\n"
        "except Exception as error:\n"
        "    print(type(error).__name__)\n"
    )
    done = subprocess.run(
        [str(kit_python), "-c", probe], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert done.stdout.split() == ["None", "softmax", "ConfigError"], done.stdout + done.stderr


# --- the Gradescope zip -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def gradescope_root(exercise: Exercise, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The zip built by the command line, unpacked and set up as test_gradescope does it."""
    root = tmp_path_factory.mktemp("gradescope") / "autograder"
    root.mkdir()
    done = autograder("gradescope", "--exercise", "softmax", "--out", str(root / "a.zip"))
    assert done.returncode == 0, done.stdout + done.stderr
    with zipfile.ZipFile(root / "a.zip") as archive:
        names = archive.namelist()
    assert "exercise/softmax_exercise/oracle.py" in names and "solutions/softmax.py" in names
    return set_up_zip(root / "a.zip", root)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("submission", "score"), [(SAMPLE, 80), (REFERENCE, 100)], ids=["sample", "reference"]
)
def test_the_gradescope_zip_grades_the_external_exercise(
    gradescope_root: Path, submission: Path, score: float
) -> None:

    root = gradescope_root
    assert '--exercise "$ROOT/source/exercise/softmax_exercise"' in (
        root / "run_autograder"
    ).read_text(encoding="utf-8")
    document = run_autograder(root, {submission.name: submission.read_bytes()})
    assert document["score"] == score, json.dumps(document)[:3000]
    assert set(item_scores(document)) == set(SAMPLE_SCORES)
    if score < 100:
        assert item_scores(document) == SAMPLE_SCORES
        assert any(SAMPLE_HINT in test["output"] for test in document["tests"])


# --- a class, into nbgrader's gradebook -----------------------------------------------------


@pytest.mark.slow
def test_batch_grades_a_class_into_a_real_gradebook(exercise: Exercise, tmp_path: Path) -> None:
    from nbgrader.api import Gradebook

    course = tmp_path / "course"
    shutil.copytree(EXTERNAL / "source", course / "source")
    shutil.copy2(EXTERNAL / "nbgrader_config.py", course / "nbgrader_config.py")
    nbgrader = [sys.executable, "-m", "nbgrader", "generate_assignment", "softmax", "--force"]
    done = subprocess.run(nbgrader, cwd=course, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    release = nbformat.read(str(course / "release" / "softmax" / "softmax.ipynb"), as_version=4)
    answered = nbformat.v4.new_notebook()
    reference = nbformat.v4.new_code_cell(REFERENCE.read_text(encoding="utf-8"))
    answered.cells = [*release.cells, reference]
    for student in ("alice", "bob", "carol"):
        (course / "submitted" / student / "softmax").mkdir(parents=True)
    nbformat.write(answered, str(course / "submitted" / "alice" / "softmax" / "softmax.ipynb"))
    shutil.copy2(SAMPLE, course / "submitted" / "bob" / "softmax" / "softmax.ipynb")
    nbformat.write(release, str(course / "submitted" / "carol" / "softmax" / "softmax.ipynb"))
    out, database = tmp_path / "out", course / "gradebook.db"
    command = ["batch", str(course), "--exercise", "softmax", "--jobs", "2", "--out", str(out)]
    done = autograder(*command, "--gradebook", str(database))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 submissions: 3 graded" in done.stdout and "Wrote 3 students' scores" in done.stdout
    rows = {row["student"]: row for row in csv.DictReader((out / "grades.csv").open())}
    assert {student: row["total"] for student, row in rows.items()} == {
        "alice": "100",
        "bob": "80",
        "carol": "0",
    }
    assert rows["bob"]["softmax_axis"] == "0" and rows["bob"]["softmax_stability"] == "30"
    assert SAMPLE_HINT in (out / "bob" / "feedback.md").read_text(encoding="utf-8")
    with Gradebook(f"sqlite:///{database}") as gradebook:

        def grade(cell: str, student: str) -> Any:
            return gradebook.find_grade(cell, "softmax", "softmax", student)

        assert grade("test_softmax_values", "alice").auto_score == 4
        assert grade("test_softmax_axis", "alice").auto_score == 2
        assert grade("test_softmax_axis", "bob").auto_score == 0
        assert grade("test_softmax_stability", "bob").auto_score == 3
        assert grade("test_softmax_values", "carol").auto_score == 0
    export = tmp_path / "grades.csv"
    done = subprocess.run(
        [sys.executable, "-m", "nbgrader", "export", "--to", str(export)],
        cwd=course,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    exported = {row["student_id"]: row for row in csv.DictReader(export.open())}
    assert {s: float(row["raw_score"]) for s, row in exported.items()} == {
        "alice": 10.0,
        "bob": 8.0,
        "carol": 0.0,
    }
    again = autograder(*command)  # a second run resumes: nothing changed
    assert "3 submissions: 0 graded" in again.stdout, again.stdout


# --- the student's code cannot read the exercise's oracle or reference ----------------------

WRONG = """
import numpy as np

def softmax(x, axis=-1):
    return np.zeros_like(np.asarray(x, dtype=float))
"""

PEEKING = {  # each prints PEEKED if it got through, BLOCKED (and why) if it did not
    "exec-the-reference": f"""
try:
    exec(open({str(REFERENCE)!r}).read())
    print("PEEKED")
except BaseException as error:
    print("BLOCKED", type(error).__name__)
""",
    "read-the-oracle": f"""
try:
    print("PEEKED", len(open({str(PACKAGE / "oracle.py")!r}).read()))
except BaseException as error:
    print("BLOCKED", type(error).__name__)
""",
    "import-the-oracle": """
try:
    from softmax_exercise import oracle
    from softmax_exercise.strategies import SoftmaxCase
    def softmax(x, axis=-1):
        return oracle.softmax(SoftmaxCase(x, None if axis == -1 else axis))
    print("PEEKED")
except BaseException as error:
    print("BLOCKED", type(error).__name__)
""",
    "list-the-package": f"""
import os
try:
    print("PEEKED", os.listdir({str(PACKAGE)!r}))
except BaseException as error:
    print("BLOCKED", type(error).__name__)
""",
}


@pytest.mark.slow
@pytest.mark.parametrize("peek", PEEKING.values(), ids=PEEKING.keys())
def test_the_child_cannot_read_the_exercise_s_oracle_or_reference(
    exercise: Exercise, tmp_path: Path, peek: str
) -> None:
    """A wrong submission that tries to read the exercise's package or reference (by path or
    by import) is refused, and scores what it scores without trying: nothing."""
    from autograder.pipeline import grade

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(WRONG), nbformat.v4.new_code_cell(peek)]
    path = tmp_path / "softmax.ipynb"
    nbformat.write(nb, str(path))
    rubric = catalog.graded_rubric(exercise)
    assert set(rubric.hidden) == {PACKAGE, REFERENCE}  # what the child is kept from
    result = grade(path, rubric=rubric)
    assert "BLOCKED" in result.output and "PEEKED" not in result.output, result.output
    assert result.confinement, "the grade must have run in the sandbox"
    assert result.score == 0
    values = next(item for item in result.items if item.id == "softmax_values")
    assert values.failure is not None and "differs from the expected" in values.failure.summary


@pytest.mark.parametrize("mode", ["namespaces", "basic"])
def test_the_sandbox_s_plan_hides_the_package_and_the_reference(
    exercise: Exercise, tmp_path: Path, mode: str
) -> None:
    """Whatever the mode (and wherever the package is installed: in site-packages, which the
    child may read, when it is not an editable install), no folder the child may read holds
    the exercise's package or its reference."""
    from autograder.sandbox import default_secrets
    from autograder.sandbox.confinement import plan

    hidden = catalog.hidden_paths(exercise)
    assert set(hidden) == {PACKAGE, REFERENCE}
    planned = plan(workdir=tmp_path, secrets=default_secrets() + hidden, mode=mode)
    assert {str(PACKAGE), str(REFERENCE)} <= set(planned.secrets)
    for readable in map(Path, planned.readable):
        for secret in hidden:
            assert readable != secret and readable not in secret.parents, (readable, secret)
            assert secret not in readable.parents, (readable, secret)
