"""Kernel confinement the sandboxed child applies to itself: namespaces, a new root, seccomp.

Like `_child.py`, this file is not imported by the grader: `launch.py` sends its source text to
the child, so it uses only the standard library (ctypes for the system calls Python 3.10 lacks).

Namespace mode, the process tree (pids as the child sees them):

    grader -> keeper (the launched python; outside the new PID namespace, runs no student code)
                -> init (pid 1: builds the new root, then only reaps; never runs student code)
                     -> zygote (pid 2: drops privileges, runs the cells, forks the workers)

When the zygote exits, init exits, and the kernel kills whatever else is left in the namespace:
nothing a submission starts outlives its grading. The new root holds only the folders the plan
allows (bound read-only at their usual paths, whatever the modes of their parent folders), a
size-limited scratch tmpfs, a few device files and a /proc that shows only the namespace. The
network namespace has only a loopback interface, which stays down.
"""

from __future__ import annotations

import ctypes
import os
import platform
import signal
from typing import Any

_NEWNS, _NEWUTS, _NEWIPC = 0x00020000, 0x04000000, 0x08000000
_NEWUSER, _NEWPID, _NEWNET = 0x10000000, 0x20000000, 0x40000000
_RDONLY, _NOSUID, _NODEV, _NOEXEC = 1, 2, 4, 8
_REMOUNT, _BIND, _REC, _PRIVATE = 32, 4096, 16384, 1 << 18
_NOATIME, _NODIRATIME, _RELATIME = 1024, 2048, 1 << 21
_DETACH = 2
_DEVICES = ("null", "zero", "full", "random", "urandom")

_ARCH = {  # machine -> (AUDIT_ARCH, pivot_root, socket, io_uring_setup, enter, register)
    "x86_64": (0xC000003E, 155, 41, 425, 426, 427),
    "aarch64": (0xC00000B7, 41, 198, 425, 426, 427),
}


class JailError(Exception):
    """The kernel refused a step of the confinement (the grader then uses another mode)."""


def _libc() -> Any:
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        number = ctypes.get_errno()
        raise JailError(f"{what}: {os.strerror(number)}")


def _bytes(text: str | None) -> bytes | None:
    return text.encode() if text is not None else None


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    result = _libc().mount(
        _bytes(source), _bytes(target), _bytes(fstype), ctypes.c_ulong(flags), _bytes(data or None)
    )
    _check(result, f"mount {source or ''} on {target}")


_STATVFS_TO_MOUNT = {
    2: _NOSUID,
    4: _NODEV,
    8: _NOEXEC,
    1024: _NOATIME,
    2048: _NODIRATIME,
    4096: _RELATIME,
}


def _kept_flags(path: str) -> int:
    """The flags of the mount holding `path` that a read-only remount must keep (in a user
    namespace the kernel refuses to clear them)."""
    found = os.statvfs(path).f_flag
    return sum(flag for bit, flag in _STATVFS_TO_MOUNT.items() if found & bit)


def _bind(source: str, target: str) -> None:
    """Bind `source` at `target` read-only (and follow a symbolic link by recreating it)."""
    if os.path.islink(source):
        os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
        os.symlink(os.readlink(source), target)
        return
    if os.path.isdir(source):
        os.makedirs(target, mode=0o755, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
        with open(target, "w"):
            pass
    _mount(source, target, None, _BIND | _REC)
    try:
        _mount(None, target, None, _REMOUNT | _BIND | _RDONLY | _NOSUID | _kept_flags(source))
    except JailError:
        pass  # still unwritable for the sandbox user (file permissions and Landlock)


def _outermost(paths: list[str]) -> list[str]:
    """`paths` without those inside another of them (binding the outer one shows them)."""
    kept: list[str] = []
    for path in sorted(set(paths), key=len):
        if not any(path == outer or path.startswith(outer.rstrip("/") + "/") for outer in kept):
            kept.append(path)
    return sorted(kept)


def _build_root(root: str, plan: dict[str, Any]) -> None:
    """Make `root` (a fresh tmpfs) the whole file system the sandbox will see, and pivot."""
    special = {"/proc", "/dev", "/sys"}
    for path in _outermost([p for p in plan["readable"] if p not in special]):
        if os.path.lexists(path):
            _bind(path, root + path)
    if os.path.isdir("/sys"):
        _bind("/sys", root + "/sys")
    os.makedirs(root + "/dev", mode=0o755)
    for device in _DEVICES:
        if os.path.exists("/dev/" + device):
            _bind("/dev/" + device, f"{root}/dev/{device}")
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0")):
        os.symlink(target, f"{root}/dev/{name}")
    os.symlink("/proc/self/fd/1", root + "/dev/stdout")
    os.symlink("/proc/self/fd/2", root + "/dev/stderr")
    os.makedirs(root + "/proc", mode=0o555)
    _mount("proc", root + "/proc", "proc", _NOSUID | _NODEV | _NOEXEC)
    scratch = plan["workdir"]
    os.makedirs(root + scratch, mode=0o755)
    owner = f",uid={plan['uid']},gid={plan['gid']}" if plan.get("uid") is not None else ""
    _mount(
        "tmpfs",
        root + scratch,
        "tmpfs",
        _NOSUID | _NODEV,
        f"size={plan['scratch_bytes']},nr_inodes={plan['scratch_files']},mode=0700{owner}",
    )
    os.chmod(root, 0o755)
    os.chdir(root)
    pivot = _ARCH[platform.machine()][1]
    _check(_libc().syscall(pivot, b".", b"."), "pivot_root")
    _check(_libc().umount2(b".", _DETACH), "detach the old root")
    os.chdir("/")
    try:
        _mount(None, "/", None, _REMOUNT | _BIND | _RDONLY | _NOSUID | _NODEV)
    except JailError:
        pass
    os.chdir(scratch)


def _map_user(uid: int, gid: int) -> None:
    """In a new user namespace, keep our own uid and gid (and no supplementary groups); they
    must be read before the namespace is made (in it, unmapped, they read as 65534)."""
    maps = (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1"))
    for name, text in maps:
        try:
            with open(f"/proc/self/{name}", "w") as file:
                file.write(text)
        except OSError as error:
            raise JailError(f"write {text!r} to /proc/self/{name}: {error.strerror}") from None


def _init(zygote: int) -> None:
    """Pid 1 of the namespace: reap every orphan; leave (killing the rest) with the zygote."""
    while True:
        try:
            pid, _ = os.wait()
        except ChildProcessError:
            os._exit(0)
        except InterruptedError:
            continue
        if pid == zygote:
            os._exit(0)


def enter_namespaces(plan: dict[str, Any], control: Any, report: Any) -> None:
    """Move into new PID, network, mount, IPC and UTS namespaces; return in the zygote only.

    Raises `JailError` (before anything was changed for good) when the kernel refuses; a later
    failure is sent with `report` and ends the child, so the grader can choose another mode.
    """
    flags = _NEWNS | _NEWPID | _NEWNET | _NEWIPC | _NEWUTS
    if plan.get("user_namespace"):
        flags |= _NEWUSER
    if platform.machine() not in _ARCH:
        raise JailError(f"no system call table for {platform.machine()}")
    uid, gid = os.geteuid(), os.getegid()
    _check(_libc().unshare(ctypes.c_int(flags)), "unshare")
    if flags & _NEWUSER:
        _map_user(uid, gid)
    init = os.fork()
    if init:  # the keeper: wait for the namespace to end, then leave with it
        control.close()
        while True:
            try:
                _, status = os.waitpid(init, 0)
                os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
            except InterruptedError:
                continue
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        _libc().prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG: die with the keeper
        os.umask(0o022)
        _mount(None, "/", None, _REC | _PRIVATE)
        root = plan["workdir"]
        _mount("tmpfs", root, "tmpfs", _NOSUID | _NODEV, "size=4m,mode=0755")
        _build_root(root, plan)
    except (OSError, JailError) as error:
        report(f"{error}")
        os._exit(1)
    zygote = os.fork()
    if zygote:
        control.close()
        _init(zygote)


def drop_capabilities() -> None:
    """Drop every capability (those a user namespace grants its creator, in particular)."""

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [
            ("effective", ctypes.c_uint32),
            ("permitted", ctypes.c_uint32),
            ("inheritable", ctypes.c_uint32),
        ]

    header = Header(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (Data * 2)()
    _check(_libc().capset(ctypes.byref(header), ctypes.byref(data)), "capset")


def deny_sockets() -> bool:
    """Seccomp: creating a socket or an io_uring fails with EPERM; other architectures' system
    calls fail too (no bypass through a compatibility ABI). Returns whether it was applied."""
    arch = _ARCH.get(platform.machine())
    if arch is None:
        return False
    audit, _, *denied = arch

    class Instruction(ctypes.Structure):
        _fields_ = [
            ("code", ctypes.c_uint16),
            ("jt", ctypes.c_uint8),
            ("jf", ctypes.c_uint8),
            ("k", ctypes.c_uint32),
        ]

    class Program(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(Instruction))]

    load, jump_eq, jump_set, ret = 0x20, 0x15, 0x45, 0x06
    allow, deny = 0x7FFF0000, 0x00050000 | 1  # SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO | EPERM
    code = [(load, 0, 0, 4), (jump_eq, 1, 0, audit), (ret, 0, 0, deny), (load, 0, 0, 0)]
    if audit == 0xC000003E:  # x32 system calls on x86_64
        code.append((jump_set, len(denied) + 1, 0, 0x40000000))
    for index, number in enumerate(denied):
        code.append((jump_eq, len(denied) - index, 0, number))
    code += [(ret, 0, 0, allow), (ret, 0, 0, deny)]
    instructions = (Instruction * len(code))(*(Instruction(*item) for item in code))
    program = Program(len(code), instructions)
    libc = _libc()
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        return False
    return bool(libc.prctl(22, 2, ctypes.byref(program), 0, 0) == 0)  # PR_SET_SECCOMP, FILTER


def scope_signals() -> bool:
    """Landlock (ABI >= 6): from now on, signal no process outside this one's descendants.

    A worker applies it to itself, so it cannot kill the zygote that serves the other items.
    Returns whether the kernel applied it.
    """
    libc = _libc()
    create, restrict = 444, 446
    abi = libc.syscall(create, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    if abi < 6:
        return False

    class Ruleset(ctypes.Structure):
        _fields_ = [("fs", ctypes.c_uint64), ("net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]

    ruleset = Ruleset(0, 0, 0b11)  # abstract UNIX sockets and signals
    fd = libc.syscall(create, ctypes.byref(ruleset), ctypes.c_size_t(24), ctypes.c_uint32(0))
    if fd < 0:
        return False
    try:
        if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
            return False
        return bool(libc.syscall(restrict, fd, ctypes.c_uint32(0)) == 0)
    finally:
        os.close(fd)


def kill_the_rest() -> None:
    """Kill every process this one may signal but itself, and reap our children.

    Only for a sandbox user of our own (a fresh uid, or inside our PID namespace): then that is
    exactly what the submission started.
    """
    for _ in range(200):
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            break
        except PermissionError:
            break
        _reap()
        os.sched_yield()
    _reap()


def descendants(root: int) -> list[int]:
    """The processes below `root` in the process tree, read from /proc."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as file:
                    parents[int(entry)] = int(file.read().rsplit(b")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    found: list[int] = []
    frontier = [root]
    while frontier:
        below = [pid for pid, parent in parents.items() if parent in frontier]
        found += below
        frontier = below
    return found


def kill_descendants() -> None:
    """Kill every process below this one (orphans come back to it: it is a subreaper), for a
    sandbox user that other processes share (then `kill_the_rest` would hit them too)."""
    for _ in range(5):
        below = descendants(os.getpid())
        if not below:
            break
        for pid in below:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        _reap()
    _reap()


def trim_scratch(folder: str, max_bytes: int, max_files: int) -> bool:
    """Empty `folder` if it holds more than `max_bytes` or `max_files` (where no tmpfs bounds
    it); returns whether it had to."""
    import shutil

    used, files = 0, 0
    for top, dirs, names in os.walk(folder):
        for name in dirs + names:
            files += 1
            try:
                used += os.lstat(os.path.join(top, name)).st_blocks * 512
            except OSError:
                pass
        if used > max_bytes or files > max_files:
            for entry in os.listdir(folder):
                path = os.path.join(folder, entry)
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    try:
                        os.unlink(path)
                    except OSError:
                        pass
            return True
    return False


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if not pid:
            return
