"""Evidence for shared wrong answers: digests of what a student's code answered, for staff.

Every student is checked on the same inputs for as long as their answers agree (the examples
are seeded by the course secret and the item, `settings.example_seed`), so two copies of the
same wrong code answer the same inputs with the same bits. This module keeps the trace that
shows it, and nothing else:

* While an item runs (`checks.run_item`), the session its check calls through is observed
  (`Observed`): each call or read and its decoded reply are kept, by reference, for as long as
  one case is being checked.
* When the case passes, they are dropped unhashed: the reference explains a right answer
  (and a correct notebook pays one list append per call, nothing more). When the case fails,
  each reply is hashed canonically (arrays by dtype, shape and bytes) into an `Answer`: the
  digest of the question (the case, the call's place in it, the target, attribute and
  arguments) and of the reply.
* A verdict that names a catalogued mistake (`Failure.mistake`) explains the item's answers
  too: textbook mistakes give identical outputs whoever writes them. Only an item failed with
  no named mistake keeps its answers (`unexplained`).
* Replies that say little about how they were computed are never evidence: anything without
  an array (`None`, numbers, strings, handles, opaque objects), arrays of one repeated value
  (zeros, NaN, a 1x1 result) and an argument handed back unchanged (`informative`).

Batch writes a student's evidence to `OUT/STUDENT/answers.json` (`write_answers`), staff-only
data next to results.json, never in it; `likeness.py` compares students. Nothing here changes a
score or a word of feedback.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from autograder.oracle import canonical_digest
from autograder.rubric import Failure
from autograder.sandbox import Handle, Session

if TYPE_CHECKING:
    from autograder.scoring import GradeResult

__all__ = [
    "ANSWERS_FILE",
    "Answer",
    "ItemEvidence",
    "Observed",
    "evidence_of",
    "informative",
    "read_answers",
    "unexplained",
    "write_answers",
]

ANSWERS_FILE = "answers.json"
"""A student's evidence, in their batch output folder (staff only)."""

_VERSION = 1


@dataclass(frozen=True)
class Answer:
    """One reply of the student's code to a failing case, as digests."""

    question: str
    """SHA-256 of the case, the call's position in it, and the call (target and arguments)."""
    reply: str
    """SHA-256 of the decoded reply."""


@dataclass(frozen=True)
class ItemEvidence:
    """One item's unexplained answers, in the order they were given."""

    item: str
    answers: tuple[Answer, ...]


def _digest(*parts: object) -> str:
    """SHA-256 of `parts`, as the oracle keys its questions; a value of a kind neither the
    wire nor a case holds is described by its type and repr rather than refused."""
    return canonical_digest(*parts, strict=False)


def _constant(array: np.ndarray) -> bool:
    flat = array.reshape(-1)
    if flat.size <= 1:
        return True
    first = flat[0]
    return bool(np.all(flat == first)) or bool(np.all(flat != flat))  # one value, or all NaN


def _arrays(value: object) -> Iterator[np.ndarray]:
    if isinstance(value, np.ndarray):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _arrays(item)


def informative(reply: object, arguments: Sequence[object]) -> bool:
    """Whether `reply` says something about how it was computed: it holds an array that is
    neither one repeated value nor one of `arguments` handed back unchanged. A lone number
    does not count: a wrong count or formula gives the same number whoever writes it."""
    given = {_digest(a) for a in arguments if isinstance(a, np.ndarray)}
    return any(not _constant(array) and _digest(array) not in given for array in _arrays(reply))


@dataclass(frozen=True)
class _Reply:
    """A call or read and its decoded reply, kept by reference until its case is judged."""

    op: str
    target: object
    arguments: tuple[object, ...]
    options: Mapping[str, object]
    reply: object


class Observed:
    """A `Session` whose calls and reads are kept while a case runs (`begin` ... `end`).

    It stands for the session it wraps (same `call`, `get` and `set`; anything else is the
    session's own), so a check cannot tell the difference.
    """

    def __init__(self, session: Session) -> None:
        self._session = session
        self._pending: list[_Reply] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._session, name)

    def call(self, target: str | Handle, *args: object, **kwargs: Any) -> Any:
        value = self._session.call(target, *args, **kwargs)
        if self._pending is not None:
            self._pending.append(_Reply("call", target, args, kwargs, value))
        return value

    def get(self, target: str | Handle, *attrs: str) -> tuple[Any, ...]:
        values = self._session.get(target, *attrs)
        if self._pending is not None:
            self._pending.append(_Reply("get", target, attrs, {}, values))
        return values

    def set(self, target: Handle, values: Mapping[str, object]) -> None:
        self._session.set(target, values)

    def begin(self) -> None:
        """Keep the replies from now on (a case starts)."""
        self._pending = []

    def end(self, case: object, *, failed: bool) -> tuple[Answer, ...]:
        """Stop keeping replies; their digests if the case `failed`, else nothing (a passing
        case's replies are dropped unhashed)."""
        pending, self._pending = self._pending or [], None
        if not failed or not pending:
            return ()
        where = _digest(case)
        answers = []
        for number, kept in enumerate(pending):
            arguments = (*kept.arguments, *kept.options.values())
            if not informative(_value_of(kept), arguments):
                continue
            question = _digest(where, number, kept.op, kept.target, kept.arguments, kept.options)
            answers.append(Answer(question, _digest(_value_of(kept))))
        return tuple(answers)


def _value_of(kept: _Reply) -> object:
    """The student's part of a reply: without the handle of a kept result (a counter the
    worker assigns, the same for everyone)."""
    reply = kept.reply
    if isinstance(reply, Handle):
        return None
    if isinstance(reply, tuple) and len(reply) == 2 and isinstance(reply[0], Handle):
        return reply[1]  # keep=True with then=...: (handle, the method's value)
    return reply


def unexplained(failure: Failure | None, answers: Sequence[Answer]) -> tuple[Answer, ...]:
    """The answers of an item that stay evidence under its verdict: none when it passed (the
    reference explains them) or when its failure names a catalogued mistake; all of them when
    it failed with no named mistake."""
    if failure is None or failure.mistake:
        return ()
    return tuple(answers)


def evidence_of(result: GradeResult) -> tuple[ItemEvidence, ...]:
    """The unexplained answers of a graded submission, per item that has any."""
    return tuple(ItemEvidence(item.id, item.answers) for item in result.items if item.answers)


def write_answers(path: Path, evidence: Sequence[ItemEvidence]) -> None:
    """Write a student's evidence (staff only; replaced atomically)."""
    document = {
        "version": _VERSION,
        "items": {entry.item: [[a.question, a.reply] for a in entry.answers] for entry in evidence},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(document, separators=(",", ":")), encoding="utf-8")
    os.replace(partial, path)


def read_answers(path: Path) -> tuple[ItemEvidence, ...]:
    """A student's evidence as `write_answers` wrote it; none when the file is missing or
    not in this format (an output folder from before evidence was kept)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        if document.get("version") != _VERSION:
            return ()
        return tuple(
            ItemEvidence(str(item), tuple(Answer(str(q), str(r)) for q, r in answers))
            for item, answers in document["items"].items()
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return ()
