"""How much memory the sandboxed child may use: what the machine or container really has.

A container's memory limit covers the grader and the child together (Gradescope's default is
768 MB), and a child allowed more than is there gets the whole container killed, results and
all. So the child's address-space limit is the smaller of `Limits.memory_bytes` and what is
available minus `Limits.memory_headroom_bytes` (kept for the grader, about 150 MB, and for
writing the results): the tightest cgroup limit on this process's path (cgroup v2
`memory.max`, v1 `memory.limit_in_bytes`), else the physical memory. A student's allocation
beyond it raises MemoryError in their own code, which costs the item it happened in.
"""

from __future__ import annotations

import os
from pathlib import Path

from autograder.settings import Limits

__all__ = ["CGROUP_ROOT", "PROC_CGROUP", "available_bytes", "cgroup_limit", "child_memory_bytes"]

CGROUP_ROOT = Path("/sys/fs/cgroup")
"""Where the cgroup file systems are mounted (v2 directly, v1 per controller: `memory/`)."""
PROC_CGROUP = Path("/proc/self/cgroup")
"""This process's cgroup memberships, one `id:controllers:path` line each."""

_UNLIMITED = 1 << 60
"""Limits at or above this mean "no limit" (v1 writes 9223372036854771712, v2 writes "max")."""


def _read_limit(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    if not text.isdigit():
        return None  # "max", or something this reader does not understand
    value = int(text)
    return value if 0 < value < _UNLIMITED else None


def _memberships(proc_cgroup: Path) -> list[tuple[str, str]]:
    """(version, path) for the v2 group and the v1 memory group of this process."""
    try:
        lines = proc_cgroup.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if parts[0] == "0" and controllers == "":
            found.append(("v2", path))
        elif "memory" in controllers.split(","):
            found.append(("v1", path))
    return found


def _ancestors(mount: Path, path: str) -> list[Path]:
    """`mount` joined with `path` and each of its parents, up to `mount` itself."""
    parts = [part for part in path.split("/") if part and part not in (".", "..")]
    return [mount.joinpath(*parts[:end]) for end in range(len(parts), -1, -1)]


def cgroup_limit(*, root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> int | None:
    """The tightest memory limit of the cgroups this process is in, or None when unlimited.

    Limits nest (a group cannot use more than any ancestor allows), so every level from the
    process's group up to the mount's root counts; in a container the mount's root is usually
    the container's own group."""
    limits = []
    for version, path in _memberships(proc_cgroup):
        if version == "v2":
            mounts, name = [root, root / "unified"], "memory.max"
        else:
            mounts, name = [root / "memory"], "memory.limit_in_bytes"
        for mount in mounts:
            for folder in _ancestors(mount, path):
                limit = _read_limit(folder / name)
                if limit is not None:
                    limits.append(limit)
    return min(limits, default=None)


def _physical_bytes() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError):
        return _UNLIMITED


def available_bytes(*, root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> int:
    """Memory this process tree may use: the cgroup limit if there is one, else physical memory."""
    limit = cgroup_limit(root=root, proc_cgroup=proc_cgroup)
    physical = _physical_bytes()
    return physical if limit is None else min(limit, physical)


def child_memory_bytes(limits: Limits, *, available: int | None = None) -> int:
    """The child's address-space limit: `limits.memory_bytes` at most, and never more than
    `available` (default: `available_bytes()`) minus `limits.memory_headroom_bytes`, but not
    below `limits.memory_floor_bytes`, without which Python and NumPy cannot start."""
    if available is None:
        available = available_bytes(root=CGROUP_ROOT, proc_cgroup=PROC_CGROUP)
    fits = available - limits.memory_headroom_bytes
    return max(min(limits.memory_bytes, fits), limits.memory_floor_bytes)
