"""Finding an exercise, and giving its rubric the oracle this installation has.

    find("softmax")              # by name: the entry-point group `autograder.exercises`
    find("course/softmax_ex")    # by folder: a package whose __init__.py defines EXERCISE

Bundled exercises register under the entry-point group exactly as a third-party package does,
so the core lists no exercise and imports none by convention. An installation is one of two
kinds, and it says which: the course's grader (live oracle, computed from the reference), or a
student kit, whose `autograder/kit.json` (written by `kit.py`, and only there) names the one
exercise it checks and its bank of recorded answers (`Bank`, the replaying oracle).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

from autograder.errors import ConfigError
from autograder.exercise import Exercise
from autograder.oracle import Bank, LiveOracle, load_bank
from autograder.rubric import Item, Rubric

__all__ = [
    "ENTRY_POINTS",
    "KIT_BANK",
    "KIT_FILE",
    "Kit",
    "default_name",
    "find",
    "graded_rubric",
    "hidden_paths",
    "installed_kit",
    "kit_item",
    "kit_rubric",
    "live_oracle",
    "names",
    "portable",
    "rubric_of",
]

ENTRY_POINTS = "autograder.exercises"
"""The entry-point group exercises register under: `NAME = "package:EXERCISE"`."""

_PACKAGE = Path(__file__).resolve().parent
KIT_FILE = _PACKAGE / "kit.json"
"""Present only in a student kit: which exercise it checks."""
KIT_BANK = _PACKAGE / "kit_bank.json.gz"
"""In a student kit: the recorded answers."""


@dataclass(frozen=True)
class Kit:
    """What a student kit declares about itself."""

    exercise: str


@cache
def installed_kit() -> Kit | None:
    """This installation's kit declaration, or None in the course's grader."""
    if not KIT_FILE.is_file():
        return None
    try:
        document = json.loads(KIT_FILE.read_text(encoding="utf-8"))
        return Kit(exercise=str(document["exercise"]))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ConfigError(
            f"The kit's {KIT_FILE.name} is unreadable ({error}): reinstall it."
        ) from None


@cache
def _registered() -> dict[str, importlib.metadata.EntryPoint]:
    """The installed exercises' entry points (read once: scanning them costs ~20 ms)."""
    return {entry.name: entry for entry in importlib.metadata.entry_points(group=ENTRY_POINTS)}


def names() -> list[str]:
    """The names of the installed exercises."""
    return sorted(_registered())


def default_name() -> str:
    """The exercise commands use when none is named: a kit's own; else the bundled default
    (`autograder.exercises.DEFAULT`)."""
    kit = installed_kit()
    if kit is not None:
        return kit.exercise
    from autograder.exercises import DEFAULT

    return DEFAULT


def _looks_like_path(spec: str) -> bool:
    """A folder is named with a separator (`./softmax_exercise`, `/course/ex`); a bare word is
    always a name, even where a folder of that name happens to be the current one's."""
    return "/" in spec or spec.startswith((".", "~"))


def portable(spec: str) -> str:
    """`spec` as another process finds the same exercise by: a folder made absolute."""
    return str(Path(spec).expanduser().resolve()) if _looks_like_path(spec) else spec


def find(spec: str) -> Exercise:
    """The exercise `spec` names: a registered name, or the folder of its package."""
    exercise = _from_folder(Path(spec).expanduser()) if _looks_like_path(spec) else _by_name(spec)
    kit = installed_kit()
    if kit is not None and exercise.name != kit.exercise:
        raise ConfigError(
            f"This checker was built for {kit.exercise!r}, not {exercise.name!r}: ask for the "
            f"checker of {exercise.name!r}."
        )
    return exercise


def _by_name(name: str) -> Exercise:
    entry = _registered().get(name)
    if entry is None:
        known = ", ".join(names()) or "none"
        raise ConfigError(
            f"Unknown exercise {name!r}; installed: {known}. Install the package that provides "
            "it, or name its folder (--exercise PATH)."
        )
    try:
        exercise = entry.load()
    except Exception as error:
        raise ConfigError(
            f"Exercise {name!r} ({entry.value}) failed to load: {type(error).__name__}: {error}"
        ) from error
    return _checked(exercise, f"entry point {name!r} ({entry.value})")


def _from_folder(folder: Path) -> Exercise:
    folder = folder.resolve()
    init = folder / "__init__.py"
    if not init.is_file():
        raise ConfigError(
            f"{folder} is not an exercise package: it has no __init__.py. Name the folder of a "
            "package whose __init__.py defines EXERCISE."
        )
    parts, root = [folder.name], folder.parent
    while (root / "__init__.py").is_file():  # a subpackage keeps its dotted name
        parts.insert(0, root.name)
        root = root.parent
    dotted = ".".join(parts)
    if _origin(dotted) != init:
        sys.path.insert(0, str(root))
        importlib.invalidate_caches()
        if _origin(dotted) != init:
            sys.path.remove(str(root))
            raise ConfigError(
                f"Cannot import {folder} as package {dotted!r}: another package of that name "
                "is installed. Rename one of them."
            )
    try:
        module = importlib.import_module(dotted)
    except Exception as error:
        raise ConfigError(
            f"Exercise package {dotted!r} failed to import: {type(error).__name__}: {error}"
        ) from error
    return _checked(getattr(module, "EXERCISE", None), f"{init}'s EXERCISE")


def _origin(dotted: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(dotted)
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).resolve()


def _checked(exercise: object, where: str) -> Exercise:
    if not isinstance(exercise, Exercise):
        raise ConfigError(
            f"{where} is {type(exercise).__name__}, not an autograder.exercise.Exercise: "
            "define EXERCISE = Exercise(...) in the package's __init__.py."
        )
    return exercise


_LIVE: dict[str, LiveOracle] = {}


def live_oracle(exercise: Exercise) -> LiveOracle:
    """The grader's oracle for `exercise` (built once per process: it may cache answers)."""
    if installed_kit() is not None:
        raise ConfigError(
            "This is the student checker: it holds no reference solution, so it cannot "
            "compute answers. Build kits and grade from the course repository."
        )
    if exercise.package not in _LIVE:
        reference = exercise.reference_file()
        if not reference.is_file():
            raise ConfigError(
                f"No reference solution for {exercise.name!r} at {reference}: put it there or "
                "set AUTOGRADER_SOLUTIONS to the folder that holds it."
            )
        _LIVE[exercise.package] = LiveOracle(exercise.oracle())
    return _LIVE[exercise.package]


def kit_item(item: Item[Any], cases: Sequence[object]) -> Item[Any]:
    """`item` checking exactly `cases`, in order (no random examples)."""
    return replace(item, cases=tuple(cases), strategy=None)


def kit_rubric(rubric: Rubric, cases: Mapping[str, Sequence[object]]) -> Rubric:
    """The rubric as a kit runs it: public items check their banked cases; the others are kept
    (to be named) but can only report that the grader checks them."""
    items = [kit_item(item, cases[item.id]) if item.id in cases else item for item in rubric.items]
    return replace(rubric, items=tuple(items))


def graded_rubric(exercise: Exercise) -> Rubric:
    """`exercise`'s rubric with this installation's oracle (live in the grader; in a kit, the
    recorded answers, its public items checking the inputs recorded for them), and the paths
    the student's code must never read (`hidden_paths`)."""
    if installed_kit() is None:
        from autograder.shipped import preload  # the cases a zip ships, if any fit

        preload(exercise)
        rubric = exercise.rubric.with_oracle(live_oracle(exercise))
    else:
        answers, cases = load_bank(KIT_BANK.read_bytes(), kinds=exercise.cases)
        rubric = kit_rubric(exercise.rubric, cases).with_oracle(Bank(answers))
    return replace(rubric, hidden=hidden_paths(exercise))


def rubric_of(spec: str) -> Rubric:
    """The rubric, with this installation's oracle, of the exercise `spec` names."""
    return graded_rubric(find(spec))


def hidden_paths(exercise: Exercise) -> tuple[Path, ...]:
    """What the student's code must never read, besides the grader and `solutions/`: the
    exercise's package and its reference solution."""
    return (exercise.folder, exercise.reference_file())
