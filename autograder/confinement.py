"""How the sandboxed child is confined, decided at run time from what this host offers.

Two independent layers, each used when available (SECURITY.md says what each guarantees):

* **Another user.** When the grader runs as root (Gradescope, CI), the child drops to an
  unprivileged user (`$AUTOGRADER_SANDBOX_USER`, else `autograder-student`, else `nobody`)
  after Python and NumPy are loaded and before any student code runs. Process limits are only
  enforced for users other than root, and that user cannot read or write root's files.
* **Landlock** (Linux >= 5.13, no root needed). The child may read only the Python
  installation and system folders, write only its own scratch folder, open no TCP connection,
  and signal no process outside its sandbox. Folders holding the reference solution, the
  grader, or the results are never among the readable ones.

This module only plans; `_child.py` applies the plan to itself.
"""

from __future__ import annotations

import os
import pwd
import sys
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Plan", "plan", "sandbox_user"]

_SYSTEM_READABLE = (
    "/usr",
    "/lib",
    "/lib64",
    "/lib32",
    "/bin",
    "/sbin",
    "/etc",
    "/dev",
    "/proc",
    "/sys",
)
_DEFAULT_USERS = ("autograder-student", "nobody")


@dataclass(frozen=True)
class Plan:
    """What the child does to itself before running student code."""

    uid: int | None = None
    """Switch to this user (None: stay as we are, i.e. the grader's own user)."""
    gid: int | None = None
    readable: tuple[str, ...] = ()
    """Landlock: folders (and files) the child may read and execute."""
    writable: tuple[str, ...] = ()
    """Landlock: folders the child may write."""
    landlock: bool = True
    """Try Landlock (the child reports whether the kernel applied it)."""
    secrets: tuple[str, ...] = field(default=(), repr=False)
    """Paths that must stay unreadable (kept for tests and reports)."""

    def as_message(self) -> dict[str, object]:
        return {
            "uid": self.uid,
            "gid": self.gid,
            "readable": list(self.readable),
            "writable": list(self.writable),
            "landlock": self.landlock,
        }


def sandbox_user() -> tuple[int, int] | None:
    """(uid, gid) of the user to run student code as, when we are root; else None."""
    if os.geteuid() != 0:
        return None
    configured = os.environ.get("AUTOGRADER_SANDBOX_USER")
    for name in (configured,) if configured else _DEFAULT_USERS:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        if entry.pw_uid != 0:
            return entry.pw_uid, entry.pw_gid
    return None


def _contains(folder: Path, path: Path) -> bool:
    return folder == path or folder in path.parents


def _allow(path: Path, secrets: tuple[Path, ...], depth: int = 0) -> list[str]:
    """`path` itself if it holds no secret; else its children that hold none (recursively)."""
    if not path.exists() or any(_contains(secret, path) for secret in secrets):
        return []
    if not any(_contains(path, secret) for secret in secrets):
        return [str(path)]
    if depth > 6 or not path.is_dir():
        return []
    allowed = []
    for child in sorted(path.iterdir()):
        allowed += _allow(child, secrets, depth + 1)
    return allowed


def _python_folders() -> list[Path]:
    import numpy

    folders = {Path(sys.base_prefix), Path(sys.prefix), Path(sys.executable).resolve().parent}
    folders.add(Path(numpy.__file__).resolve().parent.parent)  # numpy's site-packages
    return sorted(folders)


def plan(*, workdir: Path, secrets: tuple[Path, ...], landlock: bool = True) -> Plan:
    """The confinement for a child working in `workdir` that must not see `secrets`."""
    resolved = tuple(secret.resolve() for secret in secrets)
    readable: list[str] = []
    for folder in [*map(Path, _SYSTEM_READABLE), *_python_folders()]:
        readable += _allow(folder, resolved)
    user = sandbox_user()
    return Plan(
        uid=user[0] if user else None,
        gid=user[1] if user else None,
        readable=tuple(dict.fromkeys(readable)),
        writable=(str(workdir),),
        landlock=landlock,
        secrets=tuple(map(str, resolved)),
    )
