"""Packaging: the one zip an instructor uploads to Gradescope.

The zip holds `setup.sh` and `run_autograder` at its root (Gradescope's layout), the grader
package, the exercise's package (bundled ones are inside the grader's; any other goes under
`exercise/`), its reference solution (`solutions/`), the course's grading secret (created now
if the course has none yet: see `autograder/secret.py`), the cases its items draw under that
secret (`shipped.py`: grading checks them first) and a pinned `requirements.txt`: what
grading needs and nothing else (no Jupyter, no conda, no Docker). `run_autograder` names the
exercise by the folder the zip ships it in, so the zip grades the exercise it was built for.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from autograder.errors import ConfigError
from autograder.exercise import Exercise
from autograder.secret import FILE_NAME, ensure_secret

__all__ = ["REQUIREMENTS", "build_zip", "exercise_files", "package_files", "write_zip"]

REQUIREMENTS = """\
# Installed by setup.sh into /autograder/venv. Exact pins: a rebuild grades the same way.
hypothesis==6.168.5
numpy==2.2.6; python_version < "3.11"
numpy==2.4.6; python_version >= "3.11"
nbformat==5.11.1
"""

_PACKAGE = Path(__file__).resolve().parent
_EXECUTABLE = 0o100755 << 16
_REGULAR = 0o100644 << 16
_FIXED_TIME = (2020, 1, 1, 0, 0, 0)


_BUNDLED = _PACKAGE / "exercises"


def package_files() -> dict[str, Path]:
    """The grader package's files, as `autograder/...` archive names, without caches and
    without the bundled exercises' packages (each ships with its own zip or kit:
    `exercise_files`)."""
    return {
        "autograder/" + path.relative_to(_PACKAGE).as_posix(): path
        for path in sorted(_PACKAGE.rglob("*"))
        if path.is_file()
        and "__pycache__" not in path.parts
        and path.suffix != ".pyc"
        and (_BUNDLED not in path.parents or path.parent == _BUNDLED)
    }


def exercise_files(exercise: Exercise, *, grader: bool = True) -> tuple[str, dict[str, Path]]:
    """Where `exercise`'s package goes in an archive, and its files by archive name.

    A bundled exercise keeps its place in the grader package; any other goes under
    `exercise/` (its folder is then the zip's `exercise/PACKAGE`). `grader=False` leaves out
    the files only the grader may hold (`Exercise.grader_only`)."""
    folder = exercise.folder
    if _BUNDLED in folder.parents:
        place = "autograder/" + folder.relative_to(_PACKAGE).as_posix()
    elif "." not in exercise.package:
        place = f"exercise/{exercise.package}"
    else:
        raise ConfigError(
            f"Exercise {exercise.name!r} is in package {exercise.package!r}, a subpackage: "
            "make the exercise a top-level package so it can be shipped on its own."
        )
    files = exercise.package_files(grader=grader)
    return place, {f"{place}/{name}": path for name, path in files.items()}


def write_zip(out: Path, files: dict[str, tuple[bytes, bool]]) -> None:
    """Write `files` (name -> (data, executable)) to `out`, reproducibly: the same files give
    the same bytes."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w") as archive:
        for name, (data, executable) in files.items():
            info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
            info.external_attr = _EXECUTABLE if executable else _REGULAR
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)


def _naming(template: str, command: str, added: str) -> bytes:
    """`templates/<template>` with `added` (the exercise's folder) after `command`, which it
    must hold exactly once."""
    text = (_PACKAGE / "templates" / template).read_text(encoding="utf-8")
    if text.count(command) != 1:
        raise ConfigError(f"templates/{template} must run `{command}` exactly once.")
    return text.replace(command, f"{command} {added}").encode()


def _run_autograder(place: str) -> bytes:
    """The run_autograder script, naming the folder of the exercise this zip grades."""
    return _naming(
        "run_autograder", 'gradescope-run --root "$ROOT"', f'--exercise "$ROOT/source/{place}"'
    )


def _setup(place: str) -> bytes:
    """The setup.sh script, naming the folder of the exercise whose drawn cases it refreshes."""
    return _naming("setup.sh", "-m autograder.shipped", f'"$SOURCE/{place}"')


def build_zip(out: Path, *, exercise: Exercise, drawn: bool = True) -> list[str]:
    """Write the Gradescope autograder zip for `exercise` to `out`; returns the names it holds.

    With `drawn`, `solutions/` also holds the cases each item draws when every one passes
    (`shipped.py`), which a grader identical to this one checks first instead of drawing them.
    The zip is reproducible: the same sources (and grading secret) give the same bytes.
    """
    reference = exercise.reference_file()
    if not reference.is_file():
        raise ConfigError(f"No reference solution at {reference}: add it before packaging.")
    place, shipped = exercise_files(exercise)
    files: dict[str, tuple[bytes, bool]] = {
        "setup.sh": (_setup(place), True),
        "run_autograder": (_run_autograder(place), True),
        "requirements.txt": (REQUIREMENTS.encode(), False),
        f"solutions/{reference.name}": (reference.read_bytes(), False),
        f"solutions/{FILE_NAME}": (ensure_secret().read_bytes(), False),
    }
    if reference.name == FILE_NAME:
        raise ConfigError(f"A reference solution may not be called {FILE_NAME}: rename it.")
    if drawn:
        from autograder.shipped import build, file_name  # it fingerprints the grader's files

        files[f"solutions/{file_name(exercise)}"] = (build(exercise), False)
    for name, path in {**package_files(), **shipped}.items():
        files[name] = (path.read_bytes(), path.parent.name == "templates")
    write_zip(out, files)
    return list(files)
