"""Starting a sandbox and closing it again: `started`, the one way in.

`started` launches the child in the best confinement mode this host allows, follows the
notebook's top-level run, restarts the child without a cell that hung or killed it (as a
student would restart the kernel and skip the cell), and closes whatever it started when the
`with` block ends, however it ends. Meanwhile the calling thread and the child keep to one CPU
(`cpu.py`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from autograder.errors import SandboxError
from autograder.sandbox import modes
from autograder.sandbox.box import Sandbox
from autograder.sandbox.cpu import one_cpu
from autograder.sandbox.follow import follow
from autograder.sandbox.launch import default_secrets, launch
from autograder.sandbox.notebook_run import NotebookRun, ordered
from autograder.settings import LIMITS, Limits

__all__ = ["started"]


@contextmanager
def started(
    cells: Sequence[str], *, limits: Limits = LIMITS, extra_secrets: Sequence[Path] = ()
) -> Iterator[tuple[Sandbox | None, NotebookRun]]:
    """Run `cells` in a fresh child; yield the ready sandbox (None if the notebook could not be
    made ready: `NotebookRun.failure` says why) and what happened, and close it afterwards.

    The child never reads `default_secrets()` nor any of `extra_secrets` (e.g. an exercise's
    folder and its reference file, when they live outside the grader package). Raises
    `SandboxError` when the child cannot even start (a problem of the host, not the student's).

        with sandbox.started(["def f(x):\\n    return x + 1"]) as (box, run):
            if box is not None:
                with box.session() as session:
                    assert session.call("f", 1) == 2
    """
    secrets = tuple(dict.fromkeys((*default_secrets(), *extra_secrets)))
    with one_cpu():  # the grader and the student's code take turns: see `cpu`
        box, run = _start(cells, limits, secrets)
        try:
            yield box, run
        finally:
            if box is not None:
                box.close()


def _start(
    cells: Sequence[str], limits: Limits, secrets: tuple[Path, ...]
) -> tuple[Sandbox | None, NotebookRun]:
    """The ready sandbox (or None) and what happened; each cell that hangs past its time or
    kills the child is skipped and the child started again without it, at most
    `limits.cell_restarts` times."""
    began = time.monotonic()
    skipped: dict[int, str] = {}
    spent = 0.0
    while True:
        tried = modes.modes()
        box = launch(cells, set(skipped), limits, secrets, tried[0] if tried else "basic")
        try:
            progress, failure, spent = follow(box.control, box.mode, limits, spent, len(cells))
        except modes.Unconfined as refused:
            box.close()
            modes.refuse(refused)
            continue
        except BaseException:
            box.close()
            raise
        if not failure:
            assert progress.definitions is not None
            return box, ordered(
                cells,
                skipped,
                progress.outcomes,
                progress.definitions,
                box.output(),
                began,
                progress.confinement,
            )
        output = box.output()
        box.close()
        if not progress.confinement:
            raise SandboxError(
                f"The sandbox could not start: the child {failure} before running any cell. "
                f"Its output was: {output[-2000:] or '(nothing)'}"
            )
        running = progress.running
        out_of_time = spent >= limits.notebook_seconds
        if running is None or len(skipped) >= limits.cell_restarts or out_of_time:
            run = ordered(cells, skipped, progress.outcomes, (), "", began, "")
            where = f"cell {running + 1}" if running is not None else "the notebook"
            return None, NotebookRun(
                run.cells, (), output, f"The top-level code in {where} {failure}.", run.seconds
            )
        skipped[running] = failure
