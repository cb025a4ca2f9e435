"""How the sandboxed child is confined, decided at run time from what this host offers.

Independent layers, each used when available (SECURITY.md says what each guarantees):

* **Namespaces** (mode "namespaces": root, or an unprivileged user namespace). The child gets
  its own PID, network, mount, IPC and UTS namespaces and a new root file system that holds
  only the Python installation and system folders (read-only), a size-limited scratch folder
  and a private /proc. Everything it starts dies with it; it has no network at all.
* **A user of its own.** When the grader runs as root, each grading gets a uid no other process
  uses (leased from `SANDBOX_UIDS` with a lock file; no /etc/passwd entry needed), so its
  process limit and "kill every process of that user" concern that grading only. Where such a
  uid cannot be used, the child drops to `$AUTOGRADER_SANDBOX_USER`, else `autograder-student`,
  else `nobody`, shared by concurrent gradings.
* **Landlock** (Linux >= 5.13, no root needed). The child may read only the Python
  installation and system folders, write only its own scratch folder, open no TCP connection,
  and signal no process outside its sandbox. Folders holding the reference solution, the
  grader, or the results are never among the readable ones.
* **Seccomp**: creating a socket or an io_uring fails.

Mode "basic" (no namespaces) keeps the last three. This module only plans and leases uids;
`_child.py` and `_jail.py` apply the plan in the child.
"""

from __future__ import annotations

import fcntl
import functools
import importlib.util
import os
import pwd
import stat
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from autograder.errors import SandboxError
from autograder.settings import LIMITS, Limits

__all__ = [
    "MODES",
    "SANDBOX_UIDS",
    "Plan",
    "UidLease",
    "expected_modules",
    "lease_uid",
    "plan",
    "sandbox_user",
    "unreadable_folder",
]

MODES = ("namespaces", "basic")
"""Confinement modes, best first; `$AUTOGRADER_CONFINEMENT` forces one."""

SANDBOX_UIDS = range(1_900_000_000, 1_900_000_000 + 4096)
"""Uids leased to gradings when the grader runs as root: far above any real user's."""

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

    mode: str = "basic"
    """One of `MODES`."""
    workdir: str = ""
    """The scratch folder (the child's working and home folder)."""
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
    sweep: bool = False
    """After each session, kill every other process the zygote may signal: only where all of
    them belong to this grading (its own uid, or its own PID namespace)."""
    importable: tuple[str, ...] = ()
    """Modules the child must be able to import once confined (else the mode cannot grade)."""
    scratch_bytes: int = LIMITS.scratch_bytes
    scratch_files: int = LIMITS.scratch_files
    user_namespace: bool = False
    """Namespace mode without root: make a user namespace first (mapping our own uid only)."""

    def as_message(self) -> dict[str, object]:
        return {
            "mode": self.mode,
            "user_namespace": self.user_namespace,
            "workdir": self.workdir,
            "uid": self.uid,
            "gid": self.gid,
            "readable": list(self.readable),
            "writable": list(self.writable),
            "landlock": self.landlock,
            "sweep": self.sweep,
            "importable": list(self.importable),
            "scratch_bytes": self.scratch_bytes,
            "scratch_files": self.scratch_files,
        }


@dataclass
class UidLease:
    """A uid this grading alone uses, held by a lock on its file until `release`."""

    uid: int
    fd: int

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _lease_folder() -> Path:
    folder = Path(tempfile.gettempdir()) / f"autograder-uids-{os.geteuid()}"
    try:
        folder.mkdir(mode=0o700)
    except FileExistsError:
        pass
    info = folder.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise SandboxError(
            f"{folder} must be a folder only you can use (it is {stat.filemode(info.st_mode)}, "
            f"owner uid {info.st_uid}). Remove it and try again."
        )
    return folder


def lease_uid(uids: range = SANDBOX_UIDS) -> UidLease:
    """Lease a uid of `uids` that no other grading holds (their locks are per process)."""
    folder = _lease_folder()
    first = os.getpid() % len(uids)
    for step in range(len(uids)):
        uid = uids[(first + step) % len(uids)]
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(folder / str(uid), flags, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return UidLease(uid, fd)
    raise SandboxError(
        f"All {len(uids)} sandbox uids are in use: too many gradings at once. "
        "Run fewer at a time (batch --jobs) and try again."
    )


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


@functools.cache
def expected_modules() -> tuple[str, ...]:
    """What a submission may import and the confined child must therefore be able to read: a
    few standard modules that are rarely loaded already, and the optional packages the grader's
    Python offers (matplotlib)."""
    optional = tuple(name for name in ("matplotlib",) if importlib.util.find_spec(name))
    return ("timeit", "locale", *optional)


def unreadable_folder(module: str) -> Path | None:
    """The first folder on the way to `module` (as the grader finds it) that other users may
    not enter, e.g. /root for a Python under /root/.pyenv; None if there is none."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin:
        return None
    origin = Path(spec.origin)
    for folder in [*reversed(origin.parents), origin.parent]:
        try:
            if not folder.stat().st_mode & stat.S_IXOTH:
                return folder
        except OSError:
            return folder
    return None


@functools.cache
def _readable(secrets: tuple[Path, ...]) -> tuple[str, ...]:
    readable: list[str] = []
    for folder in [*map(Path, _SYSTEM_READABLE), *_python_folders()]:
        readable += _allow(folder, secrets)
    return tuple(dict.fromkeys(readable))


def plan(
    *,
    workdir: Path,
    secrets: tuple[Path, ...],
    mode: str = "basic",
    user: tuple[int, int] | None = None,
    own_user: bool = False,
    landlock: bool = True,
    limits: Limits = LIMITS,
) -> Plan:
    """The confinement for a child working in `workdir` that must not see `secrets`.

    `user` is the (uid, gid) to switch to (root only); `own_user` says that no other process
    uses it (a leased uid), which lets the child clean up after each session.
    """
    resolved = tuple(secret.resolve() for secret in secrets)
    return Plan(
        mode=mode,
        workdir=str(workdir),
        uid=user[0] if user else None,
        gid=user[1] if user else None,
        readable=_readable(resolved),
        writable=(str(workdir),),
        landlock=landlock,
        secrets=tuple(map(str, resolved)),
        sweep=mode == "namespaces" or own_user,
        importable=expected_modules(),
        scratch_bytes=limits.scratch_bytes,
        scratch_files=limits.scratch_files,
        user_namespace=mode == "namespaces" and os.geteuid() != 0,
    )
