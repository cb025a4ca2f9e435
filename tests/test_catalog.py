"""Finding exercises: by entry point or by folder, the same record either way; bad names and
bad packages refused with a message that says what to do; a core that knows no exercise."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import ROOT

from autograder import catalog
from autograder.errors import ConfigError
from autograder.exercise import Exercise
from autograder.oracle import LiveOracle

CORE = sorted(
    p
    for p in (ROOT / "autograder").rglob("*.py")
    if "exercises" not in p.relative_to(ROOT / "autograder").parts
)


def test_the_bundled_exercises_register_as_entry_points() -> None:
    assert {"attention", "kv_cache"} <= set(catalog.names())
    for name in ("attention", "kv_cache"):
        exercise = catalog.find(name)
        assert isinstance(exercise, Exercise) and exercise.name == name
        assert exercise.folder == ROOT / "autograder" / "exercises" / name


@pytest.mark.parametrize("name", ["attention", "kv_cache"])
def test_a_folder_names_the_same_exercise_as_its_name(name: str) -> None:
    folder = ROOT / "autograder" / "exercises" / name
    assert catalog.find(str(folder)) is catalog.find(name)


def test_a_bare_name_is_a_name_even_beside_a_folder_of_that_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An nbgrader course has source/attention/ and release/attention/: from there, the
    default exercise is still found by name, and `./attention` would name the folder."""
    (tmp_path / "attention").mkdir()
    monkeypatch.chdir(tmp_path)
    assert catalog.find("attention") is catalog.find(str(ROOT / "autograder/exercises/attention"))
    with pytest.raises(ConfigError, match=r"has no __init__\.py"):
        catalog.find("./attention")


def test_the_grader_attaches_the_live_oracle_once() -> None:
    rubric = catalog.rubric_of("attention")
    assert isinstance(rubric.oracle, LiveOracle)
    assert catalog.rubric_of("attention").oracle is rubric.oracle
    assert catalog.find("attention").rubric.oracle is None  # the record itself holds none


def test_the_child_is_told_to_hide_the_package_and_the_reference() -> None:
    exercise = catalog.find("kv_cache")
    assert catalog.hidden_paths(exercise) == (exercise.folder, ROOT / "solutions" / "kv_cache.py")
    assert catalog.graded_rubric(exercise).hidden == catalog.hidden_paths(exercise)


def package(root: Path, name: str, init: str) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text(textwrap.dedent(init), encoding="utf-8")
    return folder


BAD_PACKAGES = [
    ("no-exercise-record", "VALUE = 1\n", "defines EXERCISE|not an autograder.exercise.Exercise"),
    ("record-of-the-wrong-type", "EXERCISE = {'name': 'x'}\n", "is dict, not an autograder"),
    ("fails-to-import", "raise RuntimeError('broken on purpose')\n", "broken on purpose"),
]


@pytest.mark.parametrize(
    ("init", "message"), [b[1:] for b in BAD_PACKAGES], ids=[b[0] for b in BAD_PACKAGES]
)
def test_a_bad_exercise_package_is_refused_by_name(
    tmp_path: Path, init: str, message: str, request: pytest.FixtureRequest
) -> None:
    name = "bad_exercise_" + request.node.callspec.id.replace("-", "_")
    folder = package(tmp_path, name, init)
    with pytest.raises(ConfigError, match=message):
        catalog.find(str(folder))


BAD_SPECS = [
    ("unknown-name", "transformers", "Unknown exercise 'transformers'; installed: attention"),
    ("not-a-package", "{tmp}", "has no __init__.py"),
]


@pytest.mark.parametrize(
    ("spec", "message"), [b[1:] for b in BAD_SPECS], ids=[b[0] for b in BAD_SPECS]
)
def test_a_bad_exercise_name_or_folder_is_refused(tmp_path: Path, spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        catalog.find(spec.format(tmp=tmp_path))


def test_a_folder_shadowed_by_another_package_of_its_name_is_refused(tmp_path: Path) -> None:
    folder = package(tmp_path, "autograder", "EXERCISE = None\n")  # not the real autograder
    with pytest.raises(ConfigError, match="another package of that name is installed"):
        catalog.find(str(folder))


def test_the_course_repository_is_not_a_kit() -> None:
    assert catalog.installed_kit() is None
    assert not catalog.KIT_FILE.exists() and not catalog.KIT_BANK.exists()


def test_the_core_holds_no_word_of_an_exercise() -> None:
    """Outside autograder/exercises/, no file of the grader names a bundled exercise."""
    words = ("attention", "kv_cache", "kv cache", "kvcache")
    found = [
        (path.relative_to(ROOT).as_posix(), word)
        for path in CORE
        for word in words
        if word in path.read_text(encoding="utf-8").lower()
    ]
    assert found == []


@pytest.mark.slow
def test_every_core_module_imports_alone_and_imports_no_exercise() -> None:
    """No import cycle whatever module comes first, and the core loads an exercise only when
    asked to: importing it leaves autograder.exercises.* unimported."""
    modules = [
        "autograder." + ".".join(p.relative_to(ROOT / "autograder").with_suffix("").parts)
        for p in CORE
        if p.name not in ("__init__.py", "__main__.py", "_child.py")
    ]
    for module in modules:
        probe = (
            f"import sys, {module}\n"
            "loaded = [m for m in sys.modules if m.startswith('autograder.exercises.')]\n"
            "assert not loaded, loaded\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=60
        )
        assert done.returncode == 0, (module, done.stderr[-2000:])
