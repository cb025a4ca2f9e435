"""The cases drawn for an item, kept for the next student: work done once, not per student.

Hypothesis draws an item's random cases from its seed (the course key and the item's id,
`settings.example_seed`), and while every case passes, what it draws next does not depend on
the answers it got: every student who passes an item is checked on the same cases, in the same
order. So once a student passed an item, this process keeps those cases (`remember`), and the
next student is checked on them first (`passes`), in a worker of their own and without
Hypothesis. If every one passes, the item passes on exactly that many examples, as it would
have. If any fails, the replay counts for nothing: the item runs again exactly as it would
without the cache, in a fresh worker (Hypothesis draws, finds the first failure and shrinks it
to the smallest input), so a failing student gets the same report either way.

A replay that passes also keeps what it asked the worker, frame by frame (`requests`): while
every case passes, those requests depend on the cases alone, so the next replay sends them
ahead as a script (`Session`, `script=`) and the worker answers them one after another while
the grader judges, instead of taking one turn per call. Should the checks ask anything else
(an answer that passes but leads them elsewhere), that replay is dropped and the item is
replayed the ordinary way in a fresh worker; a failure is a failure either way (the item runs
from scratch).

What is kept is bounded (`settings.Caches.drawn_items`, `drawn_request_bytes`) and keyed by a
hash of the key and by the item itself (the same object: a rubric rebuilt with other points or
cases holds other items, which start cold). A Gradescope zip may ship the cases and their
requests (`shipped.py`), which are then kept from the start.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from autograder.rubric import Item
from autograder.sandbox import Sandbox, Session
from autograder.settings import CACHES

__all__ = ["Drawn", "forget", "passes", "recall", "remember", "requests_of"]


@dataclass(frozen=True)
class Drawn:
    """The cases of a fully passing run of `item`, in the order they were checked (its
    exhaustive cases first)."""

    item: Item[Any]
    cases: tuple[Any, ...]
    requests: tuple[bytes, ...] = ()
    """What a replay of `cases` in which every one passed asked its worker, frame by frame
    (empty until one was seen, or when it was too large to keep)."""


_KEPT: OrderedDict[tuple[bytes, str], Drawn] = OrderedDict()
_LOCK = threading.Lock()


def _slot(item: Item[Any], key: bytes) -> tuple[bytes, str]:
    return hashlib.sha256(key).digest(), item.id


def recall(item: Item[Any], key: bytes) -> Drawn | None:
    """What this process keeps for `item` under `key`, or None."""
    if item.strategy is None:  # nothing drawn: its cases run as they are
        return None
    slot = _slot(item, key)
    with _LOCK:
        found = _KEPT.get(slot)
        if found is None or found.item is not item:
            return None
        _KEPT.move_to_end(slot)
        return found


def remember(
    item: Item[Any], key: bytes, cases: Sequence[Any], requests: Sequence[bytes] = ()
) -> None:
    """Keep `cases`, checked in this order on a run of `item` in which every one passed (and
    the `requests` a replay of them made, if known)."""
    if item.strategy is None or CACHES.drawn_items <= 0:
        return
    slot = _slot(item, key)
    with _LOCK:
        _KEPT[slot] = Drawn(item, tuple(cases), _bounded(requests))
        _KEPT.move_to_end(slot)
        while len(_KEPT) > CACHES.drawn_items:
            _KEPT.popitem(last=False)


def _bounded(requests: Sequence[bytes]) -> tuple[bytes, ...]:
    return tuple(requests) if sum(map(len, requests)) <= CACHES.drawn_request_bytes else ()


def _keep_requests(drawn: Drawn, key: bytes, requests: Sequence[bytes]) -> None:
    """Add `requests` to what is kept for `drawn`, unless something else is kept by now."""
    slot = _slot(drawn.item, key)
    with _LOCK:
        if _KEPT.get(slot) is drawn:
            _KEPT[slot] = Drawn(drawn.item, drawn.cases, _bounded(requests))


def forget() -> None:
    """Drop everything kept (a cold process)."""
    with _LOCK:
        _KEPT.clear()


def passes(drawn: Drawn, box: Sandbox, *, key: bytes, deadline: float) -> bool:
    """Whether every case of `drawn` passes, checked in order in one fresh worker (following
    its requests, when known). Anything else (a wrong answer, an exception, a lost worker, a
    missing answer) is False: the item is then checked from scratch, and nothing of this
    replay is reported. A replay that passes without a script leaves one for the next."""
    if drawn.requests:
        verdict = _replay(drawn, box, deadline, script=drawn.requests)
        if verdict is not None:
            return verdict
    record: list[bytes] | None = None if drawn.requests else []  # a script is kept already
    verdict = _replay(drawn, box, deadline, record=record)
    if verdict and record is not None:
        _keep_requests(drawn, key, record)
    return bool(verdict)


def requests_of(
    item: Item[Any], cases: Sequence[Any], box: Sandbox, *, deadline: float
) -> tuple[bytes, ...] | None:
    """What a replay of `cases` asks its worker, frame by frame, if every case passes (the
    script a Gradescope zip ships beside them: `shipped.py`); None if one does not."""
    record: list[bytes] = []
    if _replay(Drawn(item, tuple(cases)), box, deadline, record=record):
        return tuple(record)
    return None


def _replay(
    drawn: Drawn,
    box: Sandbox,
    deadline: float,
    *,
    script: Sequence[bytes] | None = None,
    record: list[bytes] | None = None,
) -> bool | None:
    """True if every case passes in a fresh worker, False if not; None if the checks left
    `script` (they asked something else, or less)."""
    session: Session | None = None
    try:
        with box.session(deadline=deadline, script=script, record=record) as session:
            for case in drawn.cases:
                drawn.item.check(session, case)
            if script is not None and not session.followed:
                return None
    except Exception:
        return None if session is not None and session.diverged else False
    return True
