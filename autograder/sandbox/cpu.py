"""One CPU per grading: the grader's thread and the sandbox it starts keep to the same CPU.

A check and the student's code take turns: the grader sends a call and waits, the worker
answers and waits, the grader judges. On a machine with several CPUs every turn would wake the
other side on another CPU, with cold caches (and, in a virtual machine, an interrupt between
virtual CPUs). Measured on this 2-core VM, the CPU time of a grade fell by 11 to 15% (7% for a
failing one, whose time is mostly Hypothesis's), and its wall time with it, since the two
sides never run at once anyway. Nothing about a verdict depends on it (`settings.ONE_CPU`).

The CPU is the one the thread runs on when grading starts, and the thread's previous CPUs come
back when the sandbox is closed. A process that grades one student after another beside others
(batch's pool workers) takes a CPU of its own for good instead (`keep_to`), so that two
gradings never share one while another CPU idles.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from autograder.settings import ONE_CPU

__all__ = ["current_cpu", "keep_to", "one_cpu"]


def current_cpu() -> int | None:
    """The CPU this thread is running on (from /proc), or None where that cannot be read."""
    try:
        with open("/proc/thread-self/stat", encoding="ascii", errors="replace") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[36])
    except (OSError, IndexError, ValueError):
        return None


def _choice(enabled: bool) -> list[int]:
    """The CPUs this thread may use, in order, when there is one to choose; else none."""
    if not enabled:
        return []
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return []
    return allowed if len(allowed) > 1 else []


def _keep_to(cpus: set[int]) -> bool:
    """Whether this thread now keeps to `cpus`."""
    try:
        os.sched_setaffinity(0, cpus)
    except OSError:
        return False
    return True


@contextmanager
def one_cpu(enabled: bool = ONE_CPU) -> Iterator[int | None]:
    """Keep this thread, and every process or thread it starts meanwhile, to one of the CPUs
    it may use; yields that CPU (None where there is nothing to choose or it cannot be set)."""
    allowed = _choice(enabled)
    cpu = current_cpu() if allowed else None
    chosen = cpu if cpu in allowed else allowed[0] if allowed else None
    if chosen is None or not _keep_to({chosen}):
        yield None
        return
    try:
        yield chosen
    finally:
        _keep_to(set(allowed))


def keep_to(turn: int, enabled: bool = ONE_CPU) -> int | None:
    """Keep this process (and all it starts) to the `turn`-th of the CPUs it may use, counting
    round; returns that CPU (None where there is nothing to choose or it cannot be set)."""
    allowed = _choice(enabled)
    if not allowed:
        return None
    chosen = allowed[turn % len(allowed)]
    return chosen if _keep_to({chosen}) else None
