"""Which confinement mode the next child tries: decided once per grader process, from refusals.

The grader tries the modes of `confinement.MODES` best first. A child that cannot apply its
mode on this host says so before running any student code (`Unconfined`); the grader then
remembers the refusal for as long as it runs and tries the next mode, or says what to change
on the host when none is left. `$AUTOGRADER_CONFINEMENT` forces one mode (and a refusal of it
is an error).
"""

from __future__ import annotations

import os

from autograder.errors import SandboxError
from autograder.sandbox.confinement import MODES

__all__ = ["REFUSED", "UNIQUE_UIDS", "Unconfined", "modes", "refuse"]


class Unconfined(Exception):
    """The child could not apply a confinement mode on this host (the grader tries the next)."""

    def __init__(self, mode: str, reason: str, *, uid: bool = False) -> None:
        super().__init__(f"{mode}: {reason}")
        self.mode, self.reason = mode, reason
        self.uid = uid
        """It was the leased uid that failed (the grader then uses the named sandbox user)."""


REFUSED: dict[str, str] = {}
"""Confinement modes this host refused, with the reason (decided once per grader process)."""
UNIQUE_UIDS: list[bool] = [True]
"""Whether leased uids work here (a container may map only a few uids)."""


def modes() -> list[str]:
    """The modes still worth trying, best first (just the forced one, if one is forced)."""
    forced = os.environ.get("AUTOGRADER_CONFINEMENT", "")
    if forced:
        if forced not in MODES:
            raise SandboxError(
                f"AUTOGRADER_CONFINEMENT={forced!r} is not a confinement mode; "
                f"use one of {', '.join(MODES)}, or unset it to let the grader choose."
            )
        return [forced]
    return [mode for mode in MODES if mode not in REFUSED]


def refuse(refused: Unconfined) -> None:
    """Remember that this host cannot run `refused.mode` (or leased uids); raise when nothing
    is left to try."""
    if refused.uid and UNIQUE_UIDS[0]:
        UNIQUE_UIDS[0] = False  # try the named sandbox user instead
        return
    REFUSED[refused.mode] = refused.reason
    if os.environ.get("AUTOGRADER_CONFINEMENT"):
        raise SandboxError(
            f"AUTOGRADER_CONFINEMENT={refused.mode} cannot work here: {refused.reason}. "
            "Unset it to let the grader choose, and try again."
        )
    if not modes():
        raise SandboxError(
            "The sandbox cannot confine student code on this host: "
            + "; ".join(f"{mode} mode failed ({why})" for mode, why in REFUSED.items())
            + ". Allow namespaces (run as root, or allow unprivileged user namespaces; in "
            "Docker, --cap-add SYS_ADMIN), or install Python in folders other users may read, "
            "and try again."
        )
