"""Shared wrong answers: students whose unexplained answers agree bit for bit, for a person to
look at.

Every student of a class is checked on the same inputs for as long as their answers agree, so
two copies of the same wrong code give the same bits on the same inputs, where independently
written wrong code almost never does. `evidence.py` keeps, per student, only the answers that
neither the reference nor a catalogued mistake explains; here they are compared:

* two students are a *pair* when they agree on at least `Likeness.min_inputs` inputs
  (`settings.LIKENESS`): the same question (the case, the call's place in it, the call), the
  same digest of the reply;
* a *group* is a connected set of pairs; its `inputs` counts the questions on which at least two
  of its members agree, `items` where they do;
* beside the evidence, the source similarity of the same students' code cells, from copydetect
  (winnowed fingerprints of normalised tokens, so renaming variables does not hide a copy;
  the released notebook's code is left out as boilerplate when given).

A group is a signal for a person to look at, never a verdict: a pair may have worked from the
same flawed example, or one may have helped the other honestly. Correct students give no
evidence, nor do students whose shared trait is a catalogued mistake, so neither can form one.

`shared_answers` is pure; `shared_wrong_answers` reads a batch's output (the class report calls
it) and returns JSON-ready dicts.
"""

from __future__ import annotations

import functools
import io
import itertools
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autograder.errors import SubmissionError
from autograder.evidence import ANSWERS_FILE, ItemEvidence, read_answers
from autograder.settings import LIKENESS, Likeness
from autograder.submission import read_submission

__all__ = [
    "Group",
    "Pair",
    "copydetect_installed",
    "shared_answers",
    "shared_wrong_answers",
    "similarity",
]


@dataclass(frozen=True)
class Pair:
    """Two students whose unexplained answers agree on `inputs` questions."""

    students: tuple[str, str]
    items: tuple[str, ...]
    inputs: int


@dataclass(frozen=True)
class Group:
    """Students linked by pairs; the evidence, for a person to look at."""

    students: tuple[str, ...]
    items: tuple[str, ...]
    """The items on which members agree, in the order first seen in the rubric's output."""
    inputs: int
    """The questions on which at least two members gave the same unexplained answer."""
    pairs: tuple[Pair, ...]


def shared_answers(
    evidence: Mapping[str, Sequence[ItemEvidence]], *, settings: Likeness = LIKENESS
) -> list[Group]:
    """The groups of students among `evidence` (student -> their unexplained answers) whose
    answers agree on at least `settings.min_inputs` questions, largest evidence first."""
    holders: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    order: dict[str, int] = {}
    for student, items in evidence.items():
        for entry in items:
            order.setdefault(entry.item, len(order))
            for answer in entry.answers:
                holders[(entry.item, answer.question, answer.reply)].add(student)
    agreed: dict[tuple[str, str], set[tuple[str, str]]] = defaultdict(set)
    for (item, question, _), students in holders.items():
        for pair in itertools.combinations(sorted(students), 2):
            agreed[pair].add((item, question))
    pairs = [
        Pair(pair, _items(questions, order), len(questions))
        for pair, questions in sorted(agreed.items())
        if len(questions) >= settings.min_inputs
    ]
    groups = []
    for members in _components(pairs):
        inside = [p for p in pairs if p.students[0] in members]
        questions = set().union(*(agreed[p.students] for p in inside))
        groups.append(
            Group(tuple(sorted(members)), _items(questions, order), len(questions), tuple(inside))
        )
    return sorted(groups, key=lambda g: (-g.inputs, g.students))


def _items(questions: set[tuple[str, str]], order: Mapping[str, int]) -> tuple[str, ...]:
    return tuple(sorted({item for item, _ in questions}, key=order.__getitem__))


def _components(pairs: Sequence[Pair]) -> list[set[str]]:
    parent: dict[str, str] = {}

    def root(student: str) -> str:
        parent.setdefault(student, student)
        while parent[student] != student:
            parent[student] = parent[parent[student]]
            student = parent[student]
        return student

    for pair in pairs:
        parent[root(pair.students[0])] = root(pair.students[1])
    members: dict[str, set[str]] = defaultdict(set)
    for student in parent:
        members[root(student)].add(student)
    return list(members.values())


def _fingerprint(code: str, boilerplate: Any, settings: Likeness) -> Any:
    from copydetect import CodeFingerprint  # the instructor extra; imported on use only

    window = settings.guarantee_tokens - settings.noise_tokens + 1
    return CodeFingerprint(
        "cells.py",
        settings.noise_tokens,
        window,
        boilerplate=boilerplate,
        fp=io.StringIO(code),
    )


@functools.lru_cache(maxsize=4)
def _boilerplate(template: str, settings: Likeness) -> Any:
    """The fingerprints of the released notebook's code, as copydetect leaves them out."""
    import numpy as np

    return np.unique(np.array(sorted(_fingerprint(template, None, settings).hashes)))


def similarity(
    first: str, second: str, *, template: str = "", settings: Likeness = LIKENESS
) -> float:
    """The source similarity of two students' code (copydetect): the share of tokens of the
    more covered of the two that also appear in the other, from 0 to 1, leaving out what is
    in `template` (the released notebook's code)."""
    boilerplate = _boilerplate(template, settings) if template.strip() else None
    return _shared(
        _fingerprint(first, boilerplate, settings), _fingerprint(second, boilerplate, settings)
    )


def _shared(one: Any, two: Any) -> float:
    """`similarity` of two fingerprints (copydetect reads them, never changes them)."""
    from copydetect import compare_files

    _, shares, _ = compare_files(one, two)
    return round(float(max(shares)), 3)


def _code(path: Path, notebook: str, limit: int) -> str | None:
    try:
        return "\n\n".join(read_submission(path, expected=notebook).cells)[:limit]
    except SubmissionError:
        return None


def copydetect_installed() -> bool:
    """Whether copydetect is installed (the instructor extra)."""
    try:
        import copydetect  # noqa: F401
    except ImportError:
        return False
    return True


def shared_wrong_answers(
    out: Path,
    students: Sequence[str],
    submissions: Mapping[str, Path],
    *,
    notebook: str = "submission.ipynb",
    template: Sequence[str] = (),
    settings: Likeness = LIKENESS,
) -> list[dict[str, object]]:
    """The groups of `students` of the batch output `out` who share wrong answers, as
    report.json's "shared_wrong_answers" holds them.

    `submissions` maps a student to what was graded (batch's `Entry.path`), to compare their
    code cells; `notebook` is the expected notebook's name (`Rubric.notebook`), `template` the
    released notebook's code cells, left out of the similarity. A student with no evidence file
    (not graded by this version) gives no evidence. Each group:
    `{"students": [NAMES], "items": [IDS], "inputs": n, "similarity": s, "pairs": [...]}`, with
    `s` the highest similarity of its pairs (None when no two members' code could be read, or
    copydetect is not installed: `pip install -e ".[instructor]"`), and each pair's own
    `students`, `items`, `inputs` and `similarity`.
    """
    evidence = {student: read_answers(out / student / ANSWERS_FILE) for student in students}
    groups = shared_answers(evidence, settings=settings)
    prints: dict[str, Any] = {}
    """Each student's code fingerprint, made once however many pairs they are in (None when
    their code cannot be read, or copydetect is not installed)."""
    released = "\n\n".join(template)[: settings.code_chars]
    comparable = bool(groups) and copydetect_installed()
    boilerplate = _boilerplate(released, settings) if comparable and released.strip() else None

    def print_of(student: str) -> Any:
        if student not in prints:
            path = submissions.get(student)
            code = (
                _code(path, notebook, settings.code_chars)
                if comparable and path is not None
                else None
            )
            prints[student] = (
                _fingerprint(code, boilerplate, settings) if code is not None else None
            )
        return prints[student]

    found: list[dict[str, object]] = []
    for group in groups:
        pairs: list[dict[str, object]] = []
        for pair in group.pairs:
            first, second = (print_of(s) for s in pair.students)
            score = _shared(first, second) if first is not None and second is not None else None
            pairs.append(
                {
                    "students": list(pair.students),
                    "items": list(pair.items),
                    "inputs": pair.inputs,
                    "similarity": score,
                }
            )
        known = [p["similarity"] for p in pairs if isinstance(p["similarity"], float)]
        found.append(
            {
                "students": list(group.students),
                "items": list(group.items),
                "inputs": group.inputs,
                "similarity": max(known) if known else None,
                "pairs": pairs,
            }
        )
    return found
