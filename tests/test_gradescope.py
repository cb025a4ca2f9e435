"""The Gradescope zip end to end: build, unpack into an /autograder-shaped tree, run setup.sh
into a fresh venv from the pinned requirements, then run_autograder on real submissions."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import nbformat
import pytest
from conftest import REFERENCE_SOURCE, ROOT, SCHEMA, gradescope_env, run_autograder, set_up_zip
from test_hostile import TAMPERING, WRONG

from autograder.catalog import find, rubric_of
from autograder.exercises.attention import EXERCISE as ATTENTION
from autograder.packaging import build_zip
from autograder.secret import secret_path

pytestmark = pytest.mark.slow

IS_ROOT = os.geteuid() == 0


def test_zip_has_gradescope_layout_and_is_reproducible(tmp_path: Path) -> None:
    names = build_zip(tmp_path / "a.zip", exercise=ATTENTION)
    build_zip(tmp_path / "b.zip", exercise=ATTENTION)
    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()
    assert {"setup.sh", "run_autograder", "requirements.txt", "solutions/attention.py"} <= set(
        names
    )
    assert "autograder/__main__.py" in names and not any("__pycache__" in n for n in names)
    with zipfile.ZipFile(tmp_path / "a.zip") as archive:
        modes = {info.filename: info.external_attr >> 16 for info in archive.infolist()}
        requirements = archive.read("requirements.txt").decode()
    assert modes["run_autograder"] & stat.S_IXUSR and modes["setup.sh"] & stat.S_IXUSR
    for forbidden in ("jupyter", "notebook", "nbgrader", "torch", "conda"):
        assert forbidden not in requirements.replace("nbformat", "")
    assert all("==" in line for line in requirements.splitlines() if line[:1].isalpha())


def test_zip_carries_the_course_secret(tmp_path: Path) -> None:
    build_zip(tmp_path / "a.zip", exercise=ATTENTION)
    with zipfile.ZipFile(tmp_path / "a.zip") as archive:
        assert archive.read("solutions/grading_secret.txt") == secret_path().read_bytes()


def test_zip_of_a_course_without_a_secret_makes_one_and_keeps_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    solutions = tmp_path / "solutions"
    solutions.mkdir()
    shutil.copy2(Path(__file__).parent.parent / "solutions" / "attention.py", solutions)
    monkeypatch.setenv("AUTOGRADER_SOLUTIONS", str(solutions))
    build_zip(tmp_path / "a.zip", exercise=ATTENTION)
    made = (solutions / "grading_secret.txt").read_bytes()
    build_zip(tmp_path / "b.zip", exercise=ATTENTION)
    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()
    with zipfile.ZipFile(tmp_path / "a.zip") as archive:
        assert archive.read("solutions/grading_secret.txt") == made
    assert made != (Path(__file__).parent.parent / "solutions" / "grading_secret.txt").read_bytes()


env = gradescope_env


def unpacked(root: Path, exercise: str) -> Path:
    """`root` laid out as Gradescope's /autograder, with the zip for `exercise` set up in it."""
    root.mkdir(parents=True)
    build_zip(root / "autograder.zip", exercise=find(exercise))
    return set_up_zip(root / "autograder.zip", root)


@pytest.fixture(scope="module")
def autograder_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    yield unpacked(tmp_path_factory.mktemp("gradescope") / "autograder", "attention")


def submit(root: Path, cells: list[str], name: str = "my attention.ipynb") -> dict[str, object]:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(cell) for cell in cells]
    return run_autograder(root, {name: nbformat.writes(nb).encode()})


def test_setup_compiles_the_grader_once_for_every_submission(autograder_root: Path) -> None:
    package = autograder_root / "source" / "autograder"
    modules = {path.stem for path in package.glob("*.py")}
    compiled = {path.name.split(".")[0] for path in (package / "__pycache__").glob("*.pyc")}
    assert modules and modules <= compiled


def test_correct_notebook_scores_full_marks(autograder_root: Path) -> None:
    document = submit(autograder_root, [REFERENCE_SOURCE])
    assert document["score"] == 100, json.dumps(document)[:2000]
    assert document["stdout_visibility"] == "hidden"


def test_buggy_notebook_scores_partially(autograder_root: Path) -> None:
    buggy = REFERENCE_SOURCE.replace(" / np.sqrt(d_k)", "")
    document = submit(autograder_root, [buggy])
    assert isinstance(document["score"], float | int) and 0 < document["score"] < 100
    tests = document["tests"]
    assert isinstance(tests, list)
    visibilities = {test["visibility"] for test in tests}
    assert visibilities == {"visible", "after_due_date"}
    assert any("sqrt" in test["output"] for test in tests if test["status"] == "failed")


DRAWN = """
import json
from autograder.checks import explore
from autograder.oracle import digest
from autograder.catalog import rubric_of
from autograder.secret import load_secret

found = {}
for item in rubric_of("autograder/exercises/attention").items:  # the zip has no entry points
    if item.strategy is None:  # exhaustive cases only: nothing drawn
        continue
    seen = []
    explore(item, load_secret(), lambda case: seen.append(digest("case", (case,))))
    found[item.id] = seen
print(json.dumps(found))
"""


def test_gradescope_and_local_grading_draw_the_same_examples(autograder_root: Path) -> None:
    """The zip carries the course's secret, so a local `grade` and Gradescope grade alike."""
    where = {"local": ROOT, "gradescope": autograder_root / "source"}
    python = {
        "local": sys.executable,
        "gradescope": str(autograder_root / "venv" / "bin" / "python"),
    }
    drawn = {}
    for side, cwd in where.items():
        done = subprocess.run(
            [python[side], "-c", DRAWN],
            cwd=cwd,
            env={**env(autograder_root), "PYTHONPATH": str(cwd)},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        drawn[side] = json.loads(done.stdout)
    assert drawn["local"] == drawn["gradescope"]
    assert all(len(cases) >= 45 for cases in drawn["local"].values())


FITS = """
from autograder import catalog, shipped
print(shipped.preload(catalog.find("autograder/exercises/attention")))
"""


def test_setup_leaves_drawn_cases_that_fit_the_image_and_draws_them_again_if_not(
    autograder_root: Path,
) -> None:
    source = autograder_root / "source"
    python = str(autograder_root / "venv" / "bin" / "python")
    assert '-m autograder.shipped "$SOURCE/autograder/exercises/attention"' in (
        source / "setup.sh"
    ).read_text(encoding="utf-8")

    def run(*args: str) -> str:
        done = subprocess.run(
            [python, *args], cwd=source, env=env(autograder_root), capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    path = source / "solutions" / "attention.drawn.json.gz"
    assert run("-c", FITS) == "True"  # the zip's, or those setup.sh drew for this image
    path.write_bytes(b"damaged")
    assert run("-c", FITS) == "False"  # grading would draw them, as without the file
    assert "drew the cases again" in run(
        "-m", "autograder.shipped", "autograder/exercises/attention"
    )
    assert run("-c", FITS) == "True"


def test_tampering_notebook_scores_nothing(autograder_root: Path) -> None:
    tamper = [TAMPERING["write-fake-results"], TAMPERING["read-the-reference"]]
    document = submit(autograder_root, [WRONG, *tamper])
    assert document["score"] == 0


def test_several_notebooks_get_a_clear_message(autograder_root: Path) -> None:
    submit(autograder_root, ["x = 1"], name="attention (1).ipynb")
    nb = nbformat.v4.new_notebook()
    (autograder_root / "submission" / "scratch.ipynb").write_text(nbformat.writes(nb))
    shutil.rmtree(autograder_root / "results")
    subprocess.run([str(autograder_root / "run_autograder")], env=env(autograder_root), check=True)
    document = json.loads((autograder_root / "results" / "results.json").read_text())
    jsonschema.validate(document, SCHEMA)
    assert document["score"] == 0 and "Found 2 notebooks" in document["output"]


def test_broken_setup_still_writes_valid_results(autograder_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "autograder"
    shutil.copytree(autograder_root / "source", root / "source")
    shutil.copy2(autograder_root / "run_autograder", root / "run_autograder")
    (root / "submission").mkdir()
    done = subprocess.run([str(root / "run_autograder")], env=env(root), timeout=60)
    assert done.returncode == 0
    document = json.loads((root / "results" / "results.json").read_text(encoding="utf-8"))
    jsonschema.validate(document, SCHEMA)
    assert document["score"] == 0 and "Autograder failed" in json.dumps(document)


@pytest.mark.skipif(not IS_ROOT, reason="the privilege drop needs root, as on Gradescope and CI")
def test_student_code_runs_unprivileged_and_sees_nothing_of_ours(autograder_root: Path) -> None:
    source = autograder_root / "source"
    assert stat.S_IMODE(source.stat().st_mode) & 0o077 == 0
    assert stat.S_IMODE((autograder_root / "results").stat().st_mode) & 0o077 == 0
    probe = f"""
import os
CHECKS = {{
    "root": os.getuid() == 0,
    "read-source": os.access({str(source / "solutions" / "attention.py")!r}, os.R_OK),
    "read-secret": os.access({str(source / "solutions" / "grading_secret.txt")!r}, os.R_OK),
    "list-source": os.access({str(source)!r}, os.R_OK),
    "write-results": os.access({str(autograder_root / "results")!r}, os.W_OK),
}}
LEAKS = sorted(name for name, bad in CHECKS.items() if bad)
if LEAKS:
    raise SystemExit("leak: " + ", ".join(LEAKS))
"""
    document = submit(autograder_root, [REFERENCE_SOURCE, probe])
    assert document["score"] == 100
    assert "leak" not in str(document["output"]), document["output"]


def test_a_zip_grades_the_exercise_it_was_built_for(tmp_path: Path) -> None:
    root = unpacked(tmp_path / "autograder", "kv_cache")
    script = (root / "run_autograder").read_text(encoding="utf-8")
    assert '--exercise "$ROOT/source/autograder/exercises/kv_cache"' in script
    shipped = {p.name for p in (root / "source" / "autograder" / "exercises").iterdir()}
    assert "kv_cache" in shipped and "attention" not in shipped  # only its own exercise
    example = (ROOT / "examples" / "kv_cache.ipynb").read_bytes()
    document = run_autograder(root, {"kv_cache.ipynb": example})
    ids = {test["extra_data"]["id"]: test["score"] for test in document["tests"]}
    assert set(ids) == {item.id for item in rubric_of("kv_cache").items}
    assert document["score"] == 85 and ids["decode_chunked"] == 0
