"""Packaging for students: a checker kit that runs the public checks without the solution.

`python -m autograder student-kit --exercise NAME` builds NAME-checker.zip, which students
install with `pip install NAME-checker.zip`; then `python -m autograder check NOTEBOOK` runs
the public rubric items in the same sandbox, with the same checks, hints and feedback as the
grader. The kit holds the grader package and the exercise's package without the files only
the grader may hold (`Exercise.grader_only`: the module that computes answers) and without
`solutions/` (which also holds the course's grading secret). It declares itself a kit
(`autograder/kit.json`, naming its exercise) and carries a bank of answers
(`autograder/kit_bank.json.gz`, see `oracle.py`), recorded here by running every public check
on the reference solution, for each public item's inputs: its exhaustive cases (public by
nature), examples of its own, and the smallest examples of a longer run. The kit checks them
smallest first and reports the first failure: the smallest banked input that shows it (the
grader shrinks instead).

The kit's examples are drawn with a public key (`settings.KIT_EXAMPLES_KEY`), the grader's with
the course's secret, so the bank holds answers for inputs the grader does not draw and a
submission that looks answers up in it gains nothing from the grader. Hypothesis draws a few
cases under any key, though (the simplest one, the bounds of each range): the kit finds them by
drawing under `PROBES` other keys, and leaves them out of its bank.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from autograder import catalog, sandbox
from autograder.catalog import kit_item
from autograder.checks import explore, run_checks
from autograder.errors import ConfigError
from autograder.exercise import Exercise
from autograder.oracle import digest, dump_bank
from autograder.packaging import REQUIREMENTS, exercise_files, package_files, write_zip
from autograder.rubric import Item
from autograder.sandbox import Session
from autograder.settings import KIT_EXAMPLES_KEY, LIMITS, MAX_EXAMPLES

__all__ = ["build_kit"]

EXTRA_RUN, EXTRA_KEPT = 10, 2
"""Besides as many examples of its own as the grader draws, a kit holds the `EXTRA_KEPT` x
max_examples smallest of a run `EXTRA_RUN` times longer: small inputs, so that the smallest
failing input it can show is close to the one the grader's shrinking finds."""


PROBES = 16
"""Public keys under which the kit draws each public item's examples, only to find the cases
Hypothesis draws whatever the key (so the grader draws them too): the bank leaves out every case
drawn under one of them. Measured over 20 random course secrets: of the grader's 50 examples per
public item, 3 to 15 were in a bank built without this; with 16 keys 0 to 6, mostly 0 to 2
(64 keys: 0 to 4, at four times the cost). Items are all or nothing, so those few give a
submission that looks answers up nothing as long as it is wrong on any other input."""


def _key(case: object) -> str:
    return digest("case", (case,))


def _drawn_under_any_key(item: Item[Any]) -> set[str]:
    """The digests of every case the grader would draw for `item` under one of the probe keys
    (no check runs: a passing property draws exactly the examples the grader draws)."""
    drawn: set[str] = set()

    def note(case: object) -> None:
        drawn.add(_key(case))

    if item.strategy is not None:
        for number in range(PROBES):
            explore(item, KIT_EXAMPLES_KEY + f" (probe {number})".encode(), note)
    return drawn


def _size(case: object) -> tuple[int, int]:
    """How big a case is: the number of array elements it holds, then their dimensions."""
    if isinstance(case, np.ndarray):
        return int(case.size), case.ndim
    values: list[object] = []
    if isinstance(case, Mapping):
        values = list(case.values())
    elif dataclasses.is_dataclass(case) and not isinstance(case, type):
        values = [getattr(case, f.name) for f in dataclasses.fields(case)]
    sizes = [_size(value) for value in values]
    return sum(s[0] for s in sizes), sum(s[1] for s in sizes)


def _capturing(item: Item[Any], into: list[object], *, examples: int | None = None) -> Item[Any]:
    """`item`, also appending every case it checks to `into`. The property Hypothesis runs is
    the grader's own (`checks.run_item`): the same strategies, seeded with the kit's key."""
    check = item.check

    def capture(session: Session, case: Any) -> None:
        into.append(case)
        check(session, case)

    return dataclasses.replace(item, check=capture, max_examples=examples or item.max_examples)


def _record(exercise: Exercise) -> tuple[dict[str, object], dict[str, list[object]]]:
    """Run every public check on the reference solution, with the kit's own examples (as many
    as the grader draws) and with a longer run, recording the cases and the oracle's answers."""
    live = catalog.live_oracle(exercise)  # refuses in a kit, names a missing reference
    rubric = exercise.rubric.with_oracle(live)
    reference = exercise.reference_file()
    items = [item for item in rubric.items if item.visibility == "visible"]
    own: dict[str, list[object]] = {item.id: [] for item in items}
    longer: dict[str, list[object]] = {item.id: [] for item in items}
    runs = [
        (tuple(_capturing(item, own[item.id]) for item in items), KIT_EXAMPLES_KEY),
        (
            tuple(
                _capturing(item, longer[item.id], examples=EXTRA_RUN * _examples(item))
                for item in items
                if item.strategy is not None
            ),
            KIT_EXAMPLES_KEY + b" (small)",
        ),
    ]
    with sandbox.started([reference.read_text(encoding="utf-8")], limits=LIMITS) as (box, run):
        outcomes = [
            outcome
            for checked, key in runs
            for outcome in run_checks(
                rubric.with_items(checked),
                box,
                run,
                deadline=time.monotonic() + 600,
                key=key,
            )
        ]
        cases = {}
        for item in items:
            drawn = _drawn_under_any_key(item) - {_key(c) for c in item.cases}
            small = [c for c in longer[item.id] if _key(c) not in drawn]
            small = sorted(small, key=_size)[: EXTRA_KEPT * _examples(item)]
            mine = [c for c in own[item.id] if _key(c) not in drawn]
            unique = {_key(c): c for c in [*mine, *small]}
            cases[item.id] = sorted(unique.values(), key=_size)
        # Record the answers for the kept cases only (not those left out above): what the
        # checks ask when they pass, and what they may ask when they fail.
        banked = rubric.with_items([kit_item(item, cases[item.id]) for item in items])
        with live.recording() as answers:
            outcomes += run_checks(banked, box, run, deadline=time.monotonic() + 600)
            for item in items:
                for case in cases[item.id]:
                    for question, args in live.answers.questions(case):
                        live.ask(question, *args)
    failed = [o.item_id for o in outcomes if not o.passed]
    if failed:
        raise ConfigError(
            f"The reference solution fails its own public checks ({', '.join(failed)}): fix "
            f"{reference} or the rubric before building a kit."
        )
    return answers, cases


def _examples(item: Item[Any]) -> int:
    return item.max_examples or MAX_EXAMPLES


def _pyproject(exercise: Exercise, packages: list[str]) -> str:
    requirements = [
        line.split(";")[0].strip()
        for line in REQUIREMENTS.splitlines()
        if line[:1].isalpha() and "python_version >= " not in line
    ]
    requirements = [r if not r.startswith("numpy") else "numpy>=1.24,<3" for r in requirements]
    dependencies = ",\n    ".join(f'"{r}"' for r in requirements)
    include = ", ".join(f'"{name}*"' for name in packages)
    return f"""[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "{exercise.name}-checker"
version = "1.0"
description = "Check your {exercise.notebook} before you submit it."
requires-python = ">=3.10"
dependencies = [
    {dependencies},
]

[project.entry-points."{catalog.ENTRY_POINTS}"]
{exercise.name} = "{exercise.package}:EXERCISE"

[tool.setuptools.packages.find]
include = [{include}]

[tool.setuptools.package-data]
autograder = ["templates/*", "{catalog.KIT_FILE.name}", "{catalog.KIT_BANK.name}"]
"""


_README = """# Checker for {notebook}

Install it once, then check your notebook before you submit it:

    pip install {exercise}-checker.zip
    python -m autograder check {notebook}

It runs the checks that are visible before the deadline, in the same sandbox and with the same
feedback as the grader. It holds no solution: only the expected answers for the inputs it
tries.
"""


def build_kit(out: Path, *, exercise: Exercise) -> list[str]:
    """Write the student checker kit for `exercise` to `out`; returns the names it holds."""
    out.parent.mkdir(parents=True, exist_ok=True)  # a bad --out fails now, not after recording
    answers, cases = _record(exercise)
    place, shipped = exercise_files(exercise, grader=False)
    packages = ["autograder"]
    if not place.startswith("autograder/"):
        packages.append(exercise.package)
    declaration = json.dumps({"exercise": exercise.name}, indent=1) + "\n"
    files: dict[str, bytes] = {
        "pyproject.toml": _pyproject(exercise, packages).encode(),
        "README.md": _README.format(exercise=exercise.name, notebook=exercise.notebook).encode(),
        f"autograder/{catalog.KIT_FILE.name}": declaration.encode(),
        f"autograder/{catalog.KIT_BANK.name}": dump_bank(answers, cases, kinds=exercise.cases),
    }
    for name, path in {**package_files(), **shipped}.items():
        if place.startswith("exercise/"):  # a kit installs it as a top-level package
            name = name.removeprefix("exercise/")
        files[name] = path.read_bytes()
    top = f"{exercise.name}-checker"
    write_zip(out, {f"{top}/{name}": (data, False) for name, data in files.items()})
    return list(files)
