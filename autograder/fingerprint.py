"""A fingerprint of everything that can change a grade, other than the submission itself.

`batch` stores it beside each result and regrades a student whose stored fingerprint differs:
a change to the rubric, its points or hints, a tolerance, a limit, the Hypothesis settings, the
reference solution, the grading secret, any other file of the grader, or the version of a
package that computes or draws examples makes every earlier result stale.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import sys

from autograder.exercise import Exercise
from autograder.packaging import package_files
from autograder.secret import secret_path

__all__ = ["GRADING_PACKAGES", "fingerprint_inputs", "grader_fingerprint"]

GRADING_PACKAGES = ("numpy", "hypothesis", "nbformat")
"""Packages whose version can change examples, arithmetic or how a notebook is read."""


@functools.cache
def _version(package: str) -> str:
    """The installed version of `package`, read once per process (what a process imported
    does not change under it; reading package metadata costs a few milliseconds, and `batch`
    fingerprints its grader once per student)."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def fingerprint_inputs(exercise: Exercise) -> dict[str, bytes]:
    """What the fingerprint covers, by label: the versions of Python and of
    `GRADING_PACKAGES`, every file of the grader package and of the exercise's package,
    `exercise`'s reference and the course's grading secret."""
    inputs = {"python": f"{sys.version_info.major}.{sys.version_info.minor}".encode()}
    inputs.update({package: _version(package).encode() for package in GRADING_PACKAGES})
    inputs.update({name: path.read_bytes() for name, path in package_files().items()})
    inputs.update(
        {f"exercise/{name}": path.read_bytes() for name, path in exercise.package_files().items()}
    )
    reference = exercise.reference_file()
    inputs["reference"] = reference.read_bytes() if reference.is_file() else b""
    secret = secret_path()  # it seeds the examples; only this hash of it is ever stored
    inputs["grading secret"] = secret.read_bytes() if secret.is_file() else b""
    return inputs


def grader_fingerprint(exercise: Exercise) -> str:
    """SHA-256 over `fingerprint_inputs(exercise)`."""
    digest = hashlib.sha256()
    for label, data in sorted(fingerprint_inputs(exercise).items()):
        digest.update(f"{label}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()
