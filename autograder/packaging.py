"""Packaging: the one zip an instructor uploads to Gradescope.

The zip holds `setup.sh` and `run_autograder` at its root (Gradescope's layout), the grader
package, the exercise's reference solution, the course's grading secret (created now if the
course has none yet: see `autograder/secret.py`) and a pinned `requirements.txt`: what grading
needs and nothing else (no Jupyter, no conda, no Docker).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from autograder.errors import ConfigError
from autograder.reference import solutions_dir
from autograder.rubrics import AVAILABLE, DEFAULT
from autograder.secret import FILE_NAME, ensure_secret

__all__ = ["REQUIREMENTS", "build_zip", "package_files", "write_zip"]

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


def package_files(*, skip: tuple[str, ...] = ()) -> dict[str, Path]:
    """The grader package's files, as `autograder/...` archive names, without caches and without
    files whose names end with one of `skip`."""
    return {
        "autograder/" + path.relative_to(_PACKAGE).as_posix(): path
        for path in sorted(_PACKAGE.rglob("*"))
        if path.is_file()
        and "__pycache__" not in path.parts
        and path.suffix != ".pyc"
        and not path.name.endswith(skip)
    }


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


_RUN = 'gradescope-run --root "$ROOT"'


def _run_autograder(exercise: str) -> bytes:
    """The run_autograder script, naming the exercise this zip grades."""
    text = (_PACKAGE / "templates" / "run_autograder").read_text(encoding="utf-8")
    if text.count(_RUN) != 1:
        raise ConfigError("templates/run_autograder must call `gradescope-run` exactly once.")
    return text.replace(_RUN, f"{_RUN} --exercise {exercise}").encode()


def build_zip(out: Path, *, exercise: str = DEFAULT) -> list[str]:
    """Write the Gradescope autograder zip to `out`; returns the names it holds.

    The zip is reproducible: the same sources (and grading secret) give the same bytes.
    """
    if exercise not in AVAILABLE:
        raise ConfigError(f"Unknown exercise {exercise!r}: choose one of {', '.join(AVAILABLE)}.")
    reference = solutions_dir() / f"{exercise}.py"
    if not reference.is_file():
        raise ConfigError(f"No reference solution at {reference}: add it before packaging.")
    files: dict[str, tuple[bytes, bool]] = {
        "setup.sh": ((_PACKAGE / "templates" / "setup.sh").read_bytes(), True),
        "run_autograder": (_run_autograder(exercise), True),
        "requirements.txt": (REQUIREMENTS.encode(), False),
        f"solutions/{exercise}.py": (reference.read_bytes(), False),
        f"solutions/{FILE_NAME}": (ensure_secret().read_bytes(), False),
    }
    for name, path in package_files().items():
        files[name] = (path.read_bytes(), path.parent.name == "templates")
    write_zip(out, files)
    return list(files)
