"""The cases each item draws under the course's secret, computed when the zip is built.

On Gradescope every submission is graded alone, in a fresh container: nothing a process keeps
(`drawn.py`) reaches the next student. What does not depend on the student can travel in the
zip instead: for each item with random examples, the cases a fully passing run checks, in
order (Hypothesis draws them from the course secret and the item's id alone while every case
passes). `build_zip` writes them into the zip's `solutions/` (grader only: root-only on
Gradescope, like the reference and the secret; never in a student kit), and `graded_rubric`
hands them to `drawn.py`, which checks a submission on them first and falls back to the full
Hypothesis run, in a fresh worker, at the first failure.

They are used only by the grader they were built for: the file records the grader's
fingerprint (`fingerprint.py`: its files, the exercise, the reference, the secret, the versions
of Python, NumPy and Hypothesis); any other grader, a damaged file or none at all grades as if
there were none. Gradescope's image may run another Python or NumPy than the machine that
built the zip: its setup.sh runs `python -m autograder.shipped EXERCISE` (`refresh`), which
builds them again there when the shipped ones do not fit. The expected answers are not
shipped: they are computed where the grading runs, as always.

Beside each item's cases the file holds the requests a replay of them makes, frame by frame,
recorded when it is built by replaying them on the reference solution in a sandbox: a
submission's replay follows them as a script (`drawn.py`). Where no sandbox can run, or the
reference fails an item, that item ships its cases alone and is replayed one call at a time.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from autograder import drawn
from autograder.checks import explore
from autograder.exercise import Exercise
from autograder.fingerprint import grader_fingerprint
from autograder.oracle import decode_value, encode_value
from autograder.reference import solutions_dir
from autograder.rubric import Item
from autograder.secret import load_secret
from autograder.settings import LIMITS

__all__ = ["build", "drawn_cases", "file_name", "load", "preload", "refresh"]

_VERSION = 2


def file_name(exercise: Exercise) -> str:
    """The file's name in the solutions folder (and the zip's `solutions/`)."""
    return f"{exercise.name}.drawn.json.gz"


def drawn_cases(item: Item[Any], key: bytes) -> list[Any]:
    """What a run of `item` in which every case passes checks, in order."""
    cases = list(item.cases)
    explore(item, key, cases.append)
    return cases


def build(exercise: Exercise) -> bytes:
    """The file for `exercise`, under the course's secret and this grader."""
    key = load_secret()
    cases = {
        item.id: drawn_cases(item, key)
        for item in exercise.rubric.items
        if item.strategy is not None
    }
    items = {
        ident: [encode_value(case, kinds=exercise.cases) for case in drawn]
        for ident, drawn in cases.items()
    }
    requests = {
        ident: [base64.b64encode(frame).decode() for frame in frames]
        for ident, frames in _requests(exercise, cases).items()
    }
    document = {
        "version": _VERSION,
        "grader": grader_fingerprint(exercise),
        "items": items,
        "requests": requests,
    }
    text = json.dumps(document, separators=(",", ":"), sort_keys=True)
    return gzip.compress(text.encode(), mtime=0)


def _requests(
    exercise: Exercise, cases: Mapping[str, Sequence[Any]]
) -> dict[str, tuple[bytes, ...]]:
    """Per item, the requests a replay of its `cases` on the reference solution makes, where
    every case passes; {} where no sandbox runs here."""
    from autograder import catalog, sandbox
    from autograder.oracle import consulting

    rubric = exercise.rubric.with_oracle(catalog.live_oracle(exercise))
    found: dict[str, tuple[bytes, ...]] = {}
    source = exercise.reference_file().read_text(encoding="utf-8")
    try:
        with consulting(rubric.oracle), sandbox.started([source], limits=LIMITS) as (box, run):
            for item in rubric.items:
                if box is None or not run.ready or item.id not in cases:
                    continue
                deadline = time.monotonic() + LIMITS.item_seconds
                frames = drawn.requests_of(item, cases[item.id], box, deadline=deadline)
                if frames is not None:
                    found[item.id] = frames
    except Exception:  # no sandbox here (no user to run it as, no fork): cases alone
        return {}
    return found


def load(exercise: Exercise, data: bytes) -> dict[str, tuple[list[Any], list[bytes]]] | None:
    """The cases and the requests of their replay per item id in `data`, or None unless it
    was built by this very grader."""
    try:
        document = json.loads(gzip.decompress(data))
        if document.get("version") != _VERSION:
            return None
        if document.get("grader") != grader_fingerprint(exercise):
            return None
        requests = document["requests"]
        return {
            str(item): (
                [decode_value(node, kinds=exercise.cases) for node in nodes],
                [base64.b64decode(frame, validate=True) for frame in requests.get(item, [])],
            )
            for item, nodes in document["items"].items()
        }
    except Exception:  # any damage: grade as if there were no file
        return None


_DONE: dict[tuple[str, str], bool] = {}
"""Per exercise package and solutions folder: whether shipped cases were handed over."""


def preload(exercise: Exercise) -> bool:
    """Hand the shipped cases of `exercise` (if any fit this grader) to `drawn.py`, once per
    process; whether there were any."""
    folder = solutions_dir()
    path = folder / file_name(exercise)
    slot = (exercise.package, str(folder))
    if slot in _DONE:
        return _DONE[slot]
    try:
        found = load(exercise, path.read_bytes()) if path.is_file() else None
        key = load_secret() if found else b""
    except Exception:
        found = None
    if found:
        for item in exercise.rubric.items:
            if item.id in found and item.strategy is not None:
                cases, requests = found[item.id]
                drawn.remember(item, key, cases, requests)
    _DONE[slot] = bool(found)
    return bool(found)


def refresh(exercise: Exercise) -> str:
    """Make the solutions folder's file fit this grader (build it again unless it does); what
    was done, in a few words."""
    path = solutions_dir() / file_name(exercise)
    if path.is_file() and load(exercise, path.read_bytes()) is not None:
        return f"the drawn cases in {path} fit this grader"
    draft = path.with_name(f".{path.name}.{os.getpid()}")
    draft.write_bytes(build(exercise))
    os.replace(draft, path)
    return f"drew the cases again for this grader into {path}"


if __name__ == "__main__":  # setup.sh: python -m autograder.shipped EXERCISE
    from autograder import catalog

    print(f"autograder setup: {refresh(catalog.find(sys.argv[1]))}")
