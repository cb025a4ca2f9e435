"""The course's grading secret, which seeds the grader's random examples.

A regrade must draw the same examples, or grades would not be reproducible. Students must not
know them in advance, or a submission could look expected answers up instead of computing them
(the checker kit banks the answers for the examples *it* checks). So Hypothesis draws each
item's examples from a seed derived from this secret and the item's id
(`settings.example_seed`); the kit draws its own from a public key.

The secret lives in exactly one place: the file `grading_secret.txt` in the solutions folder
(`solutions/`, or `$AUTOGRADER_SOLUTIONS`), beside the reference solution, which is as secret
as it is. The sandbox may not read that folder, the Gradescope zip carries it (only root may
read it there, once `setup.sh` ran), and the student kit leaves it out: so `grade` and `batch`
on the instructor's machine and the grader on Gradescope draw the same examples, and students
never see them. Keep it in the course repository (private, like the solutions); a new secret
draws new examples, which may change a borderline grade.

The instructor commands that need it (`grade`, `batch`, `gradescope`) create it, with 256
random bits, the first time; grading itself only reads it (a Gradescope container never makes
one of its own).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from autograder.errors import ConfigError
from autograder.reference import solutions_dir

__all__ = ["FILE_NAME", "ensure_secret", "load_secret", "secret_path"]

FILE_NAME = "grading_secret.txt"
_MIN_HEX = 32
"""At least 128 bits; new secrets have 256."""
_HEADER = """\
# The grading secret of this course: it seeds the grader's random examples, so that a regrade
# draws the same ones and students cannot know them in advance (see autograder/secret.py).
# Keep it as private as the reference solution beside it, and keep it: a new secret draws
# new examples, which may change a borderline grade.
"""


def secret_path() -> Path:
    """Where the course keeps its grading secret: `grading_secret.txt` in the solutions folder."""
    return solutions_dir() / FILE_NAME


def load_secret() -> bytes:
    """The course's grading secret; a `ConfigError` saying how to make one when it is missing."""
    path = secret_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"No grading secret at {path}: run `python -m autograder grade` or `python -m "
            "autograder gradescope` in the course repository once (they create it), and keep "
            "the file beside the reference solution."
        ) from None
    lines = [line.strip() for line in text.splitlines()]
    values = [line for line in lines if line and not line.startswith("#")]
    try:
        if len(values) != 1 or len(values[0]) < _MIN_HEX:
            raise ValueError
        return bytes.fromhex(values[0])
    except ValueError:
        raise ConfigError(
            f"The grading secret in {path} is not one line of at least {_MIN_HEX} hex digits: "
            "restore it from the course repository, or delete the file to make a new one (new "
            "examples, which may change borderline grades)."
        ) from None


def ensure_secret() -> Path:
    """Create the course's grading secret if there is none yet; returns its path.

    Safe when several processes race: the file appears whole, and the first one wins.
    """
    path = secret_path()
    if path.exists():
        load_secret()  # a damaged one is an error now, not at the first grade
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    draft = path.with_name(f".{FILE_NAME}.{os.getpid()}")
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        out.write(_HEADER + secrets.token_hex(32) + "\n")
    try:
        os.link(draft, path)
    except FileExistsError:
        pass
    finally:
        draft.unlink()
    load_secret()
    return path
