"""What a check sees of a call into the worker, besides plain data.

A `Handle` stands for an object the worker keeps (`Session.call(keep=True)`), a `Then` asks for
a method of that object in the same round trip, and a call ends in one of two ways other than
a value: the student's code raised (`StudentRaised`, the check judges it) or the worker is gone
(`WorkerLost`, the item's session is over).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = ["Handle", "StudentRaised", "Then", "WorkerLost"]


class StudentRaised(Exception):
    """The student's code raised; carries the exception's type, base names and message."""

    def __init__(
        self, type_name: str, bases: Sequence[str], message: str, where: str, traceback: str = ""
    ) -> None:
        super().__init__(f"{type_name}: {message}" if message else type_name)
        self.type_name = type_name
        self.bases = tuple(bases)
        self.message = message
        self.where = where
        self.traceback = traceback
        """The student's frames (`<cell N>` only), as text; untrusted, for feedback."""

    def is_a(self, name: str) -> bool:
        """Whether the raised exception is (a subclass of) the builtin named `name`."""
        return name in self.bases


class WorkerLost(Exception):
    """The worker stopped answering: a timeout, a crash, or a reply that broke the protocol."""


@dataclass(frozen=True)
class Then:
    """A method to call on a kept result in the same round trip (`Session.call(then=...)`)."""

    attr: str
    args: tuple[object, ...] = ()
    kwargs: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Handle:
    """A reference to an object that lives in the worker (e.g. a student's class instance)."""

    id: int
    type_name: str
