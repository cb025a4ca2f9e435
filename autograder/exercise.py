"""The exercise record: everything the core needs to know about one exercise, in one place.

An exercise is one Python package. Its `__init__.py` builds one `Exercise` (conventionally
named `EXERCISE`) and registers it under the entry-point group `autograder.exercises`, the
way any third-party package would:

    [project.entry-points."autograder.exercises"]
    softmax = "softmax_exercise:EXERCISE"

The core finds it by that name (or by the package's folder, `--exercise PATH`: see
`catalog.py`) and never imports anything of the exercise by convention. See docs/AUTHORING.md
for a whole exercise written from scratch.
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from autograder.errors import ConfigError
from autograder.reference import load_reference
from autograder.rubric import Rubric

__all__ = ["Answers", "Exercise", "Question"]

Question = tuple[str, tuple[object, ...]]
"""A question to the oracle: its name and its arguments, e.g. ("softmax", (case,))."""


@dataclass(frozen=True)
class Answers:
    """A live oracle: the questions a rubric may ask, answered from the reference solution.

    `functions` answers a question by name. `questions(case)` lists every question the
    rubric's checks may ask about `case`, failing or not: a student kit records their answers
    (it carries no oracle), so a question missing from that list is one the kit cannot answer.
    """

    functions: Mapping[str, Callable[..., object]]
    questions: Callable[[Any], Iterable[Question]]


@dataclass(frozen=True)
class Exercise:
    """One exercise: its rubric, its reference solution and its oracle, and where its
    notebook and nbgrader assignment are."""

    name: str
    """How commands name it (`--exercise NAME`) and how a kit is called (NAME-checker.zip)."""
    package: str
    """The dotted name of the package that holds it (write `__name__` in its __init__.py):
    the kit and the Gradescope zip ship that package's files."""
    rubric: Rubric
    """The items, points, visibility and grade cells (without an oracle: the core attaches the
    live one in the grader, a recorded one in a kit)."""
    reference: Path
    """The reference solution, a Python file outside the package (it is never shipped to
    students). `$AUTOGRADER_SOLUTIONS`, when set, names the folder to find it in instead."""
    oracle: Callable[[], Answers]
    """Builds the live oracle (grader only). It may import a module of the package that
    computes answers: list that module's file in `grader_only`, and a kit leaves it out."""
    cases: tuple[type, ...] = ()
    """The case classes (frozen dataclasses) the rubric's items draw: a kit's bank of answers
    may hold these and nothing else."""
    assignment: str = ""
    """The nbgrader assignment (default: `name`)."""
    grader_only: tuple[str, ...] = ("oracle.py",)
    """Files of the package (relative to it) that only the grader may hold: a kit leaves them
    out, and the sandboxed child never reads any of the package."""
    description: str = ""
    """One line for students, e.g. in the kit's README."""

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ConfigError(
                f"Exercise name {self.name!r} is not a Python identifier: use letters, digits "
                "and underscores (it names files and command options)."
            )
        if self.rubric.name != self.name:
            raise ConfigError(
                f"Exercise {self.name!r} holds rubric {self.rubric.name!r}: give both one name."
            )
        for kind in self.cases:
            if not hasattr(kind, "__dataclass_fields__"):
                raise ConfigError(
                    f"Exercise {self.name!r} lists case type {kind.__qualname__}, which is not "
                    "a dataclass: cases must be frozen dataclasses."
                )

    @property
    def notebook(self) -> str:
        """The file name a submission is expected under (e.g. "softmax.ipynb")."""
        return self.rubric.notebook

    @property
    def nbgrader_assignment(self) -> str:
        return self.assignment or self.name

    @property
    def folder(self) -> Path:
        """The folder of the exercise's package."""
        module = importlib.import_module(self.package)
        location = getattr(module, "__file__", None)
        if location is None:
            raise ConfigError(
                f"Exercise {self.name!r}: package {self.package!r} has no __init__.py; make it "
                "a regular package."
            )
        return Path(location).resolve().parent

    def reference_file(self) -> Path:
        """Where the reference solution is read from here."""
        return _placed(os.environ.get("AUTOGRADER_SOLUTIONS", ""), self.reference)

    def reference_module(self) -> ModuleType:
        """The reference solution, imported from `reference_file()` once per place it is
        read from (an oracle's functions call it for every question they answer)."""
        return _imported(os.environ.get("AUTOGRADER_SOLUTIONS", ""), self.reference)

    def package_files(self, *, grader: bool = True) -> dict[str, Path]:
        """The package's files by their path relative to it, without caches; with
        `grader=False`, without `grader_only` too (what a kit may hold)."""
        folder = self.folder
        files = {}
        for path in sorted(folder.rglob("*")):
            if not path.is_file() or "__pycache__" in path.parts or path.suffix == ".pyc":
                continue
            relative = path.relative_to(folder).as_posix()
            if not grader and relative in self.grader_only:
                continue
            files[relative] = path
        return files


def _placed(configured: str, reference: Path) -> Path:
    """Where `reference` is read from: in the `configured` solutions folder, if any."""
    return Path(configured) / reference.name if configured else reference


@functools.cache
def _imported(configured: str, reference: Path) -> ModuleType:
    return load_reference(_placed(configured, reference))
