"""Failing runs told again: a student whose code answers as an earlier one's did gets that
run's outcome without the search.

An item's full run (`checks.run_item`: its cases, Hypothesis's search and shrinking, the check
for state kept between calls, the diagnosis) depends on the student only through what their
code answers. The grader draws its inputs from a seed (the key and the item) and judges in its
own process, so the same replies to the same requests lead to the same next request, and in
the end to the same outcome. Textbook mistakes give identical answers whoever writes them, so
a class repeats the same failing run many times; what it costs is the grader's (mostly
Hypothesis's shrinker), not the student's.

So a full run that fails keeps its transcript (`keep`): for each session it opened, in order
(each a fresh worker), every request's frame and the digest of the reply's frame
(`Session`, `transcript=`). The next student's item is first told the kept runs (`retold`):
it opens the sessions in the same order and makes the same requests; as long as every reply
is, bit for bit, one a kept run received, the next request is that run's next one, and when
a run's transcript ends, its outcome is this student's. Until then the worker is asked exactly
what a full run would ask it, in the same order, one request at a time (nothing is sent
ahead): nothing tells the two apart. The first reply that no kept run received ends the
retelling, and the item runs in full in a fresh worker, as if nothing had been kept.

Kept only: runs in which no worker was lost (a timeout or a crash depends on the machine, not
only on the answers), of items that draw (where the search is the cost). What is kept is
bounded (`settings.Caches.failed_runs`, `failed_run_bytes`) and keyed like `drawn.py`'s cases:
by a hash of the key and by the item itself. The outcome is kept as plain data (what `checks`
makes of it), so that the processes of one batch can share their runs through a folder
(`share`): each run is one JSON file there, named by the grader's fingerprint, the key's hash
and the item, so that no other grader, key or item ever reads it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autograder.atomic import write_atomically
from autograder.rubric import Item
from autograder.sandbox import Sandbox, Session, WorkerLost
from autograder.settings import CACHES

__all__ = ["Recorder", "forget", "keep", "retold", "share"]

Exchange = tuple[bytes, bytes]
"""A request's frame and the SHA-256 of its reply's frame."""

_VERSION = 1


class Recorder:
    """Stands for the sandbox during one item's full run, and keeps the transcript of every
    session opened through it (`session` takes what `Sandbox.session` takes for it)."""

    def __init__(self, box: Sandbox) -> None:
        self.box = box
        self.sessions: list[list[Exchange]] = []
        self._opened: list[Session] = []

    @property
    def lost(self) -> bool:
        """Whether a session lost its worker (then the run is not kept)."""
        return any(session.lost for session in self._opened)

    @contextmanager
    def session(self, *, deadline: float | None = None) -> Iterator[Session]:
        exchanges: list[Exchange] = []
        self.sessions.append(exchanges)
        with self.box.session(deadline=deadline, transcript=exchanges) as session:
            self._opened.append(session)
            yield session


@dataclass(frozen=True)
class _Run:
    item: Item[Any]
    sessions: tuple[tuple[Exchange, ...], ...]
    outcome: Any
    """The run's outcome as plain data (JSON)."""
    size: int = field(compare=False)


@dataclass
class _Shared:
    folder: Path
    grader: str
    read: set[str] = field(default_factory=set)
    """The files of the folder this process has read (or written)."""


_KEPT: OrderedDict[tuple[bytes, str], list[_Run]] = OrderedDict()
_LOCK = threading.Lock()
_SHARED: list[_Shared] = []
"""The folder this process shares its runs through, if any (`share`)."""


def _slot(item: Item[Any], key: bytes, purpose: str) -> tuple[bytes, str]:
    return hashlib.sha256(key).digest(), f"{item.id}\0{purpose}"


def share(folder: Path | None, *, grader: str) -> None:
    """Share kept runs through `folder` with the other processes of a batch whose grader has
    the fingerprint `grader` (None: keep them in this process only). The folder must be the
    grader's own: what is in it is taken as the grader wrote it."""
    with _LOCK:
        if folder is None:
            _SHARED.clear()
        elif not _SHARED or (_SHARED[0].folder, _SHARED[0].grader) != (folder, grader):
            _SHARED[:] = [_Shared(folder, grader)]


def forget() -> None:
    """Drop every kept run (a cold process); a shared folder is read again from scratch."""
    with _LOCK:
        _KEPT.clear()
        for shared in _SHARED:
            shared.read.clear()


def _size(sessions: tuple[tuple[Exchange, ...], ...]) -> int:
    return sum(len(request) + 64 for exchanges in sessions for request, _ in exchanges)


def keep(
    item: Item[Any], key: bytes, recorder: Recorder, outcome: Any, *, purpose: str = "grade"
) -> None:
    """Keep the transcript of a full run of `item` under `key` that ended with `outcome`
    (plain data), unless a worker was lost in it or it is larger than all that may be kept.
    `purpose` tells apart runs of the same item that ask different things (the grade, the
    evidence gathered after it)."""
    if item.strategy is None or recorder.lost or CACHES.failed_runs <= 0:
        return
    sessions = tuple(tuple(exchanges) for exchanges in recorder.sessions)
    run = _Run(item, sessions, outcome, _size(sessions))
    if run.size > CACHES.failed_run_bytes:
        return
    with _LOCK:
        _add(_slot(item, key, purpose), run)
        shared = _SHARED[0] if _SHARED else None
    if shared is not None:
        _write(shared, item, key, purpose, run)


def _add(slot: tuple[bytes, str], run: _Run) -> None:
    """Keep `run` (the lock held), dropping the oldest runs beyond the bounds."""
    runs = [kept for kept in _KEPT.get(slot, []) if kept.item is run.item]
    _KEPT[slot] = [*runs, run]
    _KEPT.move_to_end(slot)
    count = sum(len(kept) for kept in _KEPT.values())
    size = sum(kept.size for runs in _KEPT.values() for kept in runs)
    while count > CACHES.failed_runs or size > CACHES.failed_run_bytes:
        oldest = next(iter(_KEPT))
        dropped = _KEPT[oldest].pop(0)
        count, size = count - 1, size - dropped.size
        if not _KEPT[oldest]:
            del _KEPT[oldest]


def _prefix(shared: _Shared, item: Item[Any], key: bytes, purpose: str) -> str:
    named = b"\0".join(
        (shared.grader.encode(), hashlib.sha256(key).digest(), item.id.encode(), purpose.encode())
    )
    return hashlib.sha256(named).hexdigest()[:32] + "-"


def _write(shared: _Shared, item: Item[Any], key: bytes, purpose: str, run: _Run) -> None:
    """One file for `run` in the shared folder (best effort: a run not shared is computed
    again by the others), unless the folder holds as many runs as a process may keep."""
    sessions = [
        [[base64.b64encode(request).decode("ascii"), reply.hex()] for request, reply in ex]
        for ex in run.sessions
    ]
    text = json.dumps(
        {"version": _VERSION, "item": item.id, "sessions": sessions, "outcome": run.outcome}
    )
    name = (
        _prefix(shared, item, key, purpose)
        + hashlib.sha256(text.encode()).hexdigest()[:16]
        + ".json"
    )
    with _LOCK:
        shared.read.add(name)
    try:
        if len(os.listdir(shared.folder)) < CACHES.failed_runs:
            write_atomically(shared.folder / name, text)
    except OSError:
        pass


def _load(text: str, item: Item[Any]) -> _Run | None:
    """The run a shared file holds, or None if it is not one of `item`'s."""
    try:
        document = json.loads(text)
        if document["version"] != _VERSION or document["item"] != item.id:
            return None
        sessions = tuple(
            tuple(
                (base64.b64decode(request, validate=True), bytes.fromhex(reply))
                for request, reply in ex
            )
            for ex in document["sessions"]
        )
    except (ValueError, KeyError, TypeError):
        return None
    return _Run(item, sessions, document["outcome"], _size(sessions))


def _read_shared(item: Item[Any], key: bytes, purpose: str) -> None:
    """Keep the runs of `item` other processes wrote to the shared folder since last read."""
    with _LOCK:
        shared = _SHARED[0] if _SHARED else None
    if shared is None:
        return
    prefix = _prefix(shared, item, key, purpose)
    try:
        names = [
            n for n in os.listdir(shared.folder) if n.startswith(prefix) and n.endswith(".json")
        ]
    except OSError:
        return
    with _LOCK:
        unread = sorted(set(names) - shared.read)
        shared.read.update(unread)
    for name in unread:
        try:
            run = _load((shared.folder / name).read_text(encoding="utf-8"), item)
        except (OSError, UnicodeDecodeError):
            continue
        if run is not None and run.size <= CACHES.failed_run_bytes:
            with _LOCK:
                _add(_slot(item, key, purpose), run)


def _recall(item: Item[Any], key: bytes, purpose: str = "grade") -> list[_Run]:
    _read_shared(item, key, purpose)
    slot = _slot(item, key, purpose)
    with _LOCK:
        runs = [run for run in _KEPT.get(slot, []) if run.item is item]
        if runs:
            _KEPT.move_to_end(slot)
        return runs


def retold(
    item: Item[Any], key: bytes, box: Sandbox, *, deadline: float, purpose: str = "grade"
) -> Any | None:
    """The outcome (plain data) of the kept run of `item` whose every request this student's
    code answers as that run's worker did (asked in the same order, each session in a fresh
    worker); None as soon as no kept run can be (a reply none of them received, a lost worker,
    the deadline): the item then runs in full."""
    alive = _recall(item, key, purpose)
    index = 0
    while alive:
        ended = [run for run in alive if len(run.sessions) == index]
        if ended:  # runs that agree on every reply so far end together, or the grader is not
            return ended[0].outcome if len(ended) == len(alive) else None  # deterministic
        alive = _told_session(alive, index, box, deadline)
        index += 1
    return None


def _told_session(alive: list[_Run], index: int, box: Sandbox, deadline: float) -> list[_Run]:
    """The runs of `alive` whose session `index` this student's code answers alike, in a
    fresh worker (none if it answers otherwise, or the worker is lost)."""
    with box.session(deadline=deadline) as session:
        step = 0
        while alive:
            ended = [run for run in alive if len(run.sessions[index]) == step]
            if ended:
                return alive if len(ended) == len(alive) else []
            request = alive[0].sessions[index][step][0]
            if any(run.sessions[index][step][0] != request for run in alive):
                return []  # the same replies led to different requests: trust none of them
            try:
                reply = session.repeat(request)
            except WorkerLost:
                return []
            alive = [run for run in alive if run.sessions[index][step][1] == reply]
            step += 1
    return []
