"""Finding and killing the child's processes, as the kernel (/proc) lists them.

Nothing here believes a pid the child names: the grader finds the child's processes itself,
by parent (the process tree), by PID namespace number, or by the uid leased to this grading.
"""

from __future__ import annotations

import os
import signal
import time

__all__ = [
    "children",
    "inner_pid",
    "kill_group",
    "kill_tree",
    "kill_uid",
    "parent_of",
    "processes_of",
    "scanned_children",
    "signal_name",
]


def parent_of(pid: int) -> int | None:
    """The parent pid of `pid`, read from the kernel (/proc), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def children(parent: int) -> list[int]:
    """The processes whose parent is `parent`, read from the kernel (/proc): from its
    `task/*/children` lists where the kernel has them (one small read per thread), else by
    reading every process's parent."""
    listed = _listed_children(parent)
    return listed if listed is not None else scanned_children(parent)


def scanned_children(parent: int) -> list[int]:
    """`children`, always by reading the parent of every process (slower, but needs nothing
    of the kernel beyond /proc/PID/stat)."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and parent_of(int(entry.name)) == parent:
            found.append(int(entry.name))
    return found


def _listed_children(parent: int) -> list[int] | None:
    """The kernel's own lists of `parent`'s children (CONFIG_PROC_CHILDREN), or None where
    there are none to read."""
    try:
        threads = os.listdir(f"/proc/{parent}/task")
    except OSError:
        return [] if not os.path.exists(f"/proc/{parent}") else None
    found: list[int] = []
    for thread in threads:
        try:
            with open(f"/proc/{parent}/task/{thread}/children", encoding="ascii") as listed:
                found += [int(pid) for pid in listed.read().split()]
        except FileNotFoundError:
            if os.path.exists(f"/proc/{parent}/task/{thread}"):
                return None  # this kernel does not list children: scan instead
        except (OSError, ValueError):
            return None
    return found


def inner_pid(pid: int) -> int | None:
    """The pid of process `pid` as its own (innermost) PID namespace numbers it."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("NSpid:"):
                    return int(line.split()[-1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def signal_name(number: int) -> str:
    """A readable name for signal `number`, real-time signals included (never raises)."""
    try:
        return signal.Signals(number).name
    except ValueError:
        pass
    if signal.SIGRTMIN <= number <= signal.SIGRTMAX:
        return f"SIGRTMIN+{number - signal.SIGRTMIN} (signal {number})"
    return f"signal {number}"


def kill_group(pid: int) -> None:
    """Kill the process group led by `pid`, and `pid` itself (never raises)."""
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def kill_tree(root: int) -> None:
    """Kill every process below `root` (the process tree as /proc has it)."""
    for _ in range(3):
        parents = {
            pid: parent_of(pid) for pid in map(int, filter(str.isdigit, os.listdir("/proc")))
        }
        below: list[int] = []
        frontier = {root}
        while frontier:
            frontier = {pid for pid, parent in parents.items() if parent in frontier}
            below += frontier
        if not below:
            return
        for pid in below:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def processes_of(uid: int) -> list[int]:
    """The processes that run as `uid`."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat(follow_symlinks=False).st_uid == uid:
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def kill_uid(uid: int) -> bool:
    """Kill every process of `uid` (ours alone: a leased uid); True when none is left."""
    for _ in range(3):
        if not processes_of(uid):
            return True
        killer = os.fork()
        if killer == 0:  # as that user, "every process I may signal" is exactly those
            try:
                os.setgroups([])
                os.setresgid(uid, uid, uid)
                os.setresuid(uid, uid, uid)
                for _ in range(1000):
                    os.kill(-1, signal.SIGKILL)
            finally:
                os._exit(0)
        os.waitpid(killer, 0)
        time.sleep(0.01)
    return not processes_of(uid)
