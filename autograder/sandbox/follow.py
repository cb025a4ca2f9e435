"""Following the notebook run: the child's reports, read until it is ready to answer calls.

The child first says how it confined itself (or that its mode cannot work here), then reports
each cell as it starts and ends, then lists the names the notebook defined. Its reports are
untrusted: a report out of order or naming a cell that does not exist breaks the protocol.
Time: `_STARTUP_SECONDS` for the child to confine itself (ours, not the student's), then
`cell_seconds` a cell and `notebook_seconds` for all of them.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from autograder.sandbox.confinement import SANDBOX_UIDS, unreadable_folder
from autograder.sandbox.modes import Unconfined
from autograder.sandbox.notebook_run import CellOutcome, Definition, cell_outcome, definitions
from autograder.sandbox.wire import WireError, recv_frame
from autograder.settings import Limits

__all__ = ["Progress", "follow"]

_STARTUP_SECONDS = 30.0
"""Time for the child to start and confine itself (ours, not counted against the student)."""


@dataclass
class Progress:
    """What the child has reported so far while running the cells."""

    outcomes: dict[int, CellOutcome] = field(default_factory=dict)
    running: int | None = None
    """The cell it is running, if any (the one to skip if it hangs or dies)."""
    confinement: str = ""
    definitions: tuple[Definition, ...] | None = None
    """The names it defined; None until it is ready."""


def follow(
    control: socket.socket, mode: str, limits: Limits, spent: float, cells: int
) -> tuple[Progress, str, float]:
    """Read the child's events on `control` until it is ready.

    `spent` is the notebook time already used by earlier launches; returns the progress, a
    failure ("" when ready) and the notebook time used in total. Raises `Unconfined` when
    the child cannot apply `mode` here.
    """
    progress = Progress()
    began = cell_began = time.monotonic()
    notebook_left = limits.notebook_seconds - spent
    try:
        while progress.definitions is None:
            now = time.monotonic()
            if not progress.confinement:
                remaining = _STARTUP_SECONDS - (now - began)
            else:
                remaining = min(
                    notebook_left - (now - began), limits.cell_seconds - (now - cell_began)
                )
            if remaining <= 0:
                raise TimeoutError
            control.settimeout(remaining)
            event, _ = recv_frame(control, max_header=1 << 20, max_total=0)
            kind, index = event.get("event"), event.get("index")
            if index is not None and not (type(index) is int and 0 <= index < cells):
                raise WireError("the child reported a cell that does not exist")
            if kind == "unconfined" and not progress.confinement:
                reason = str(event.get("error", ""))[:500]
                raise Unconfined(mode, reason, uid=event.get("uid") is True)
            if kind == "confined" and not progress.confinement:
                _check_confined(mode, event)
                progress.confinement = _confinement_text(event)
                began = cell_began = time.monotonic()
            elif not progress.confinement:
                raise WireError("the child did not confine itself first")
            elif kind == "cell_start" and type(index) is int:
                progress.running, cell_began = index, time.monotonic()
            elif kind == "cell_done" and type(index) is int:
                progress.outcomes[index] = cell_outcome(index, event.get("error"))
                progress.running = None
            elif kind == "ready":
                progress.definitions = definitions(event.get("names"))
            else:
                raise WireError("unexpected event from the child")
    except TimeoutError:
        used = spent + time.monotonic() - began
        if used >= limits.notebook_seconds:
            why = f"the notebook's {limits.notebook_seconds:g} s for all top-level code"
        else:
            why = f"its time ({limits.cell_seconds:g} s a cell)"
        return progress, f"did not finish within {why}", used
    except (EOFError, OSError):
        failure = "stopped the Python process (it crashed or exited)"
    except WireError as error:
        failure = f"broke the sandbox protocol ({error})"
    else:
        failure = ""
    return progress, failure, spent + time.monotonic() - began


def _check_confined(mode: str, event: Mapping[str, Any]) -> None:
    """Accept the child's report of its confinement, or say why this mode cannot grade."""
    missing = event.get("missing")
    if isinstance(missing, list) and missing:
        name = str(missing[0])[:100]
        folder = unreadable_folder(name)
        where = f": {folder} is closed to other users" if folder is not None else ""
        raise Unconfined(mode, f"the sandbox user cannot import {name}{where}")


def _confinement_text(event: Mapping[str, Any]) -> str:
    abi, uid = event.get("landlock"), event.get("uid")
    parts = ["namespaces (pid, net, mount)" if event.get("mode") == "namespaces" else "basic"]
    parts.append(f"Landlock ABI {abi}" if type(abi) is int and abi > 0 else "no Landlock")
    parts.append("seccomp" if event.get("seccomp") is True else "no seccomp")
    if type(uid) is not int:
        parts.append("uid unknown")
    elif uid in SANDBOX_UIDS:  # which one is chance: say so without the number (regrades match)
        parts.append("a uid of its own")
    else:
        parts.append(f"uid {uid}")
    return ", ".join(parts)
