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

What is kept is bounded (`settings.Caches.drawn_items`) and keyed by a hash of the key and by
the item itself (the same object: a rubric rebuilt with other points or cases holds other
items, which start cold). A Gradescope zip may ship the cases (`shipped.py`), which are then
kept from the start.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from autograder.rubric import Item
from autograder.sandbox import Sandbox
from autograder.settings import CACHES

__all__ = ["Drawn", "forget", "passes", "recall", "remember"]


@dataclass(frozen=True)
class Drawn:
    """The cases of a fully passing run of `item`, in the order they were checked (its
    exhaustive cases first)."""

    item: Item[Any]
    cases: tuple[Any, ...]


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


def remember(item: Item[Any], key: bytes, cases: Sequence[Any]) -> None:
    """Keep `cases`, checked in this order on a run of `item` in which every one passed."""
    if item.strategy is None or CACHES.drawn_items <= 0:
        return
    slot = _slot(item, key)
    with _LOCK:
        _KEPT[slot] = Drawn(item, tuple(cases))
        _KEPT.move_to_end(slot)
        while len(_KEPT) > CACHES.drawn_items:
            _KEPT.popitem(last=False)


def forget() -> None:
    """Drop everything kept (a cold process)."""
    with _LOCK:
        _KEPT.clear()


def passes(drawn: Drawn, box: Sandbox, *, deadline: float) -> bool:
    """Whether every case of `drawn` passes, checked in order in one fresh worker. Anything
    else (a wrong answer, an exception, a lost worker, a missing answer) is False: the item is
    then checked from scratch, and nothing of this replay is reported."""
    try:
        with box.session(deadline=deadline) as session:
            for case in drawn.cases:
                drawn.item.check(session, case)
    except Exception:
        return False
    return True
