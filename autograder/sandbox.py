"""Stage 2, the sandbox: student code runs in a child process, never in the grader's.

The child executes the submission's cells once (a "zygote"), then forks one worker per session;
a rubric item opens one session, so a hang or crash costs that item only and the top-level code
is never re-run. Requests carry plain arrays and scalars (`wire.py`); replies are validated and
decoded without pickle. Limits: wall time per call (enforced here), address space, processes,
file sizes and core dumps (set in the child before any student code runs). How the child is
confined (namespaces, or a uid of its own, Landlock and seccomp) is decided once per grader
process from what the host allows (`confinement.py`) and reported in `NotebookRun.confinement`.
"""

from __future__ import annotations

import itertools
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autograder.confinement import (
    MODES,
    SANDBOX_UIDS,
    UidLease,
    lease_uid,
    plan,
    sandbox_user,
    unreadable_folder,
)
from autograder.errors import SandboxError
from autograder.memory import child_memory_bytes
from autograder.settings import LIMITS, SINGLE_THREADED, Limits
from autograder.wire import WireError, decode, encode, recv_frame, send_frame

__all__ = [
    "CellOutcome",
    "Definition",
    "Handle",
    "NotebookRun",
    "Sandbox",
    "Session",
    "StudentRaised",
    "Then",
    "WorkerLost",
    "start",
]

_INLINE_MARK = "# child: provided inline"


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


@dataclass(frozen=True)
class CellOutcome:
    """What happened to one code cell of the submission at top level."""

    index: int
    """Position among the code cells, from 0."""
    error_type: str = ""
    """Name of the exception the cell raised, "" when it ran cleanly."""
    message: str = ""
    where: str = ""
    traceback: str = ""
    skipped: str = ""
    """Why the cell was skipped ("" when it ran): it hung or killed the child."""

    @property
    def ok(self) -> bool:
        return not self.error_type and not self.skipped


@dataclass(frozen=True)
class Definition:
    """A name the notebook defined at top level, with its kind and signature."""

    name: str
    kind: str
    signature: str


@dataclass(frozen=True)
class NotebookRun:
    """The result of running a submission's top-level code in the child."""

    cells: tuple[CellOutcome, ...]
    definitions: tuple[Definition, ...]
    output: str
    failure: str = ""
    """Why the child is unusable ("" when it is ready to answer calls)."""
    seconds: float = 0.0
    confinement: str = ""
    """How the child was confined, as it reported before running any student code."""

    @property
    def ready(self) -> bool:
        return not self.failure

    def definition(self, name: str) -> Definition | None:
        return next((d for d in self.definitions if d.name == name), None)


def _child_source() -> str:
    here = Path(__file__).parent
    parts = []
    for name in ("wire.py", "_jail.py", "_child.py"):
        text = (here / name).read_text(encoding="utf-8")
        lines = [
            line
            for line in text.splitlines()
            if _INLINE_MARK not in line and line != "from __future__ import annotations"
        ]
        parts.append("\n".join(lines))
    return "from __future__ import annotations\n" + "\n".join(parts)


class _Drain(threading.Thread):
    """Reads the child's stdout/stderr, keeping the first `limit` bytes and counting the rest.

    `stop` ends it at once, even while a process that escaped the kill still holds the pipe.
    """

    def __init__(self, stream: Any, limit: int) -> None:
        super().__init__(daemon=True)
        self.stream, self.limit = stream, limit
        self.kept = bytearray()
        self.dropped = 0
        self._wake_read, self._wake_write = os.pipe()

    def run(self) -> None:
        fd = self.stream.fileno()
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            selector.register(self._wake_read, selectors.EVENT_READ)
            while True:
                ready = {key.fd for key, _ in selector.select()}
                if self._wake_read in ready:
                    return
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    return
                if not chunk:
                    return
                room = self.limit - len(self.kept)
                self.kept += chunk[: max(room, 0)]
                self.dropped += max(len(chunk) - max(room, 0), 0)

    def stop(self, wait: float) -> None:
        """Read what is already there for at most `wait` s, then stop and close the pipe."""
        self.join(timeout=wait)
        os.write(self._wake_write, b"x")
        self.join(timeout=2)
        if not self.is_alive():
            self.stream.close()
            os.close(self._wake_read)
        os.close(self._wake_write)

    def text(self) -> str:
        text = self.kept.decode("utf-8", errors="replace")
        if self.dropped:
            text += f"\n[... {self.dropped} more bytes of output were dropped]"
        return text


def _parent_of(pid: int) -> int | None:
    """The parent pid of `pid`, read from the kernel (/proc), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _children(parent: int) -> list[int]:
    """The processes whose parent is `parent`, read from the kernel (/proc)."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and _parent_of(int(entry.name)) == parent:
            found.append(int(entry.name))
    return found


def _inner_pid(pid: int) -> int | None:
    """The pid of process `pid` as its own (innermost) PID namespace numbers it."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as status:
            for line in status:
                if line.startswith("NSpid:"):
                    return int(line.split()[-1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _signal_name(number: int) -> str:
    """A readable name for signal `number`, real-time signals included (never raises)."""
    try:
        return signal.Signals(number).name
    except ValueError:
        pass
    if signal.SIGRTMIN <= number <= signal.SIGRTMAX:
        return f"SIGRTMIN+{number - signal.SIGRTMIN} (signal {number})"
    return f"signal {number}"


def _kill_group(pid: int) -> None:
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _kill_tree(root: int) -> None:
    """Kill every process below `root` (the process tree as /proc has it)."""
    for _ in range(3):
        parents = {
            pid: _parent_of(pid) for pid in map(int, filter(str.isdigit, os.listdir("/proc")))
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


def _processes_of(uid: int) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat(follow_symlinks=False).st_uid == uid:
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def _kill_uid(uid: int) -> bool:
    """Kill every process of `uid` (ours alone: a leased uid); True when none is left."""
    for _ in range(3):
        if not _processes_of(uid):
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
    return not _processes_of(uid)


def _child_env(home: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": home,
        "TMPDIR": home,
        "LANG": "C.UTF-8",
        "MPLBACKEND": "Agg",
        **SINGLE_THREADED,
    }


@dataclass
class Sandbox:
    """A running child that executed a submission's cells; `session()` forks a fresh worker."""

    process: subprocess.Popen[bytes]
    control: socket.socket
    drain: _Drain
    workdir: tempfile.TemporaryDirectory[str]
    limits: Limits
    mode: str = "basic"
    lease: UidLease | None = None
    zygote: int = 0
    """The zygote's pid as the grader sees it (0 until the first session looks it up)."""
    _workers: set[int] = field(default_factory=set)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _closed: bool = False

    @contextmanager
    def session(self, *, deadline: float | None = None) -> Iterator[Session]:
        """A worker forked from the child, for the calls of one rubric item.

        If no worker can be started, the session is already lost: its calls raise WorkerLost
        (so it costs that item only).
        """
        ours, theirs = socket.socketpair()
        pid = inner = 0
        lost = ""
        try:
            ident = next(self._ids)
            self.control.settimeout(5.0)
            socket.send_fds(self.control, [f"fork {ident}".encode()], [theirs.fileno()])
            theirs.close()
            reply = self._reply(ident)
            if "error" in reply:
                raise WireError(str(reply["error"])[:200])
            named = reply.get("pid")
            inner = named if type(named) is int and named > 1 else 0
            # The child is untrusted: only ever signal a process it really forked, never
            # whatever pid it names (it could name the grader).
            pid = self._worker(inner) if inner else 0
            if not pid:
                raise WireError("the child did not report a worker of its own")
        except (OSError, EOFError, WireError) as error:
            theirs.close()
            ours.close()
            lost = f"the sandbox could not start a worker ({error})"
        if pid:
            self._workers.add(pid)
        session = Session(self, ours, pid, deadline, inner=inner if pid else 0)
        session.lost = lost
        try:
            yield session
        finally:
            ours.close()
            if pid:
                _kill_group(pid)
                self._status(session.inner)
                self._workers.discard(pid)

    def _worker(self, inner: int) -> int:
        """The grader's pid for the zygote's child `inner` (0 if it has no such child)."""
        if not self.zygote:
            self.zygote = _find_zygote(self)
        if not self.zygote:
            return 0
        if self.mode != "namespaces":
            return inner if _parent_of(inner) == self.zygote else 0
        return next((pid for pid in _children(self.zygote) if _inner_pid(pid) == inner), 0)

    def _reply(self, ident: int) -> dict[str, Any]:
        """The zygote's reply to request `ident`, skipping replies to requests given up on."""
        for _ in range(16):
            reply, _ = recv_frame(self.control, max_header=4096, max_total=0)
            if reply.get("id") == ident:
                return reply
        raise WireError("the child did not answer the request")

    def _status(self, inner: int) -> dict[str, Any]:
        try:
            ident = next(self._ids)
            self.control.settimeout(2.0)
            socket.send_fds(self.control, [f"status {ident} {inner}".encode()], [])
            return self._reply(ident)
        except (OSError, EOFError, WireError):
            return {}

    def output(self) -> str:
        return self.drain.text()

    def close(self) -> None:
        """Stop the child and everything it started, without waiting on any of it; safe to call
        twice."""
        if self._closed:
            return
        self._closed = True
        for pid in list(self._workers):
            _kill_group(pid)
        if self.mode != "namespaces" and self.lease is None:
            _kill_tree(self.process.pid)  # orphans come back to the zygote, a subreaper
        try:
            self.control.close()
        finally:
            _kill_group(self.process.pid)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            gone = True
            if self.lease is not None and self.mode != "namespaces":
                gone = _kill_uid(self.lease.uid)
            if self.process.stdout is not None:
                self.drain.stop(wait=0.5 if gone else 0.0)
            shutil.rmtree(self.workdir.name, ignore_errors=True)
            self.workdir.cleanup()
            if self.lease is not None and gone and self.process.returncode is not None:
                self.lease.release()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Session:
    """Calls into one worker. Every call has a deadline; a lost worker ends the session."""

    def __init__(
        self,
        box: Sandbox,
        sock: socket.socket,
        pid: int,
        deadline: float | None,
        *,
        inner: int = 0,
    ):
        self._box, self._sock, self.pid = box, sock, pid
        self.inner = inner or pid
        """The worker's pid as the child numbers it (its PID namespace, if it has one)."""
        self._deadline = deadline
        self.lost: str = ""

    def call(
        self,
        target: str | Handle,
        *args: object,
        attr: str = "",
        keep: bool = False,
        echo: bool = False,
        assign: Mapping[str, object] | None = None,
        then: Then | None = None,
        **kwargs: object,
    ) -> Any:
        """Call the student's `target` (a name, or `attr` of a handle) with plain values.

        `keep` leaves the result in the worker and returns a `Handle` to it; `assign` sets
        dotted attributes on the result first (one round trip); `then`, with `keep`, also calls
        a method of the kept result in the same round trip and returns `(handle, its value)`
        (e.g. build an instance and call its `forward`); `echo` also returns the
        arguments as they are after the call (to see in-place changes). An argument may be a
        `Handle` of this session: the worker passes the object it stands for (e.g. a student's
        cache to the student's `forward`).
        """
        header: dict[str, Any] = {"op": "call", "target": self._target(target, attr)}
        buffers: list[bytes] = []
        header["args"] = [_argument(a, buffers) for a in args]
        header["kwargs"] = {k: _argument(v, buffers) for k, v in kwargs.items()}
        header["assign"] = {k: encode(v, buffers) for k, v in (assign or {}).items()}
        header["keep"], header["echo"] = keep, echo
        if then is not None:
            if not keep:
                raise ValueError("`then` calls a method of a kept result: pass keep=True too")
            header["then"] = {
                "attr": then.attr,
                "args": [_argument(a, buffers) for a in then.args],
                "kwargs": {k: _argument(v, buffers) for k, v in then.kwargs.items()},
            }
        reply, received = self._exchange(header, buffers)
        if keep:
            handle = reply.get("handle")
            if not isinstance(handle, dict) or type(handle.get("handle")) is not int:
                raise self._lose("the worker sent a malformed handle")
            kept = Handle(handle["handle"], str(handle.get("type", "?"))[:100])
            if then is not None:
                return kept, self._decode(reply.get("value"), received)
            return kept
        value = self._decode(reply.get("value"), received)
        if echo:
            echoed = reply.get("echo")
            if not isinstance(echoed, list):
                raise self._lose("the worker did not echo the arguments")
            return value, [self._decode(node, received) for node in echoed]
        return value

    def get(self, target: str | Handle, *attrs: str) -> tuple[Any, ...]:
        """Read dotted attributes (e.g. `head_dim`, `q_proj.weight`) in one round trip."""
        header = {"op": "get", "target": self._target(target, ""), "attrs": list(attrs) or [""]}
        reply, received = self._exchange(header, [])
        values = self._decode(reply.get("value"), received)
        if not isinstance(values, tuple) or len(values) != len(header["attrs"]):
            raise self._lose("the worker sent a malformed reply to a read")
        return values

    def set(self, target: Handle, values: Mapping[str, object]) -> None:
        """Assign values to dotted attributes of a worker object (e.g. `q_proj.weight`)."""
        buffers: list[bytes] = []
        nodes = {attr: encode(value, buffers) for attr, value in values.items()}
        self._exchange({"op": "set", "target": self._target(target, ""), "values": nodes}, buffers)

    @staticmethod
    def _target(target: str | Handle, attr: str) -> dict[str, Any]:
        if isinstance(target, Handle):
            return {"handle": target.id, "attr": attr}
        return {"name": target, "attr": attr}

    def _decode(self, node: object, buffers: list[bytes]) -> object:
        try:
            return decode(node, buffers)
        except WireError as error:
            raise self._lose(f"the worker sent an invalid value ({error})") from None

    def _lose(self, reason: str) -> WorkerLost:
        self.lost = reason
        if self.pid:
            _kill_group(self.pid)
        return WorkerLost(reason)

    def _exchange(
        self, header: dict[str, Any], buffers: list[bytes]
    ) -> tuple[dict[str, Any], list[bytes]]:
        if self.lost:
            raise WorkerLost(self.lost)
        limits = self._box.limits
        timeout = limits.call_seconds
        late = "the time for this check ran out"
        if self._deadline is not None:
            timeout = min(timeout, self._deadline - time.monotonic())
            if timeout <= 0:
                raise self._lose(late)
            if timeout < limits.call_seconds:
                late += f" during a call ({limits.item_seconds:g} s for all of its calls)"
        try:
            self._sock.settimeout(timeout)
            send_frame(self._sock, header, buffers)
            reply, received = recv_frame(self._sock, max_total=limits.message_bytes)
        except TimeoutError:
            if timeout < limits.call_seconds:  # the item's deadline, not the call's limit
                raise self._lose(late) from None
            raise self._lose(f"a call did not return within {timeout:g} s") from None
        except WireError as broken:
            raise self._lose(f"the worker broke the protocol ({broken})") from None
        except (EOFError, OSError):
            self._sock.close()
            raise self._lose(self._crash_reason()) from None
        if reply.get("ok") is True:
            return reply, received
        raised = reply.get("error")
        if reply.get("ok") is not False or not isinstance(raised, dict):
            raise self._lose("the worker sent a malformed reply")
        bases = raised.get("bases")
        raise StudentRaised(
            str(raised.get("type", "Exception"))[:100],
            [str(b)[:100] for b in bases] if isinstance(bases, list) else [],
            str(raised.get("message", ""))[:2000],
            str(raised.get("where", ""))[:200],
            str(raised.get("traceback", ""))[-4000:],
        )

    def _crash_reason(self) -> str:
        status = self._box._status(self.inner)
        if status.get("signal") == signal.SIGKILL:
            return "the process was killed (SIGKILL), usually for using too much memory"
        if type(status.get("signal")) is int:
            return f"the process crashed with signal {_signal_name(status['signal'])}"
        if type(status.get("code")) is int:
            return f"the process exited (exit code {status['code']}) instead of returning"
        return "the process stopped answering"


class _Unconfined(Exception):
    """The child could not apply a confinement mode on this host (the grader tries the next)."""

    def __init__(self, mode: str, reason: str, *, uid: bool = False) -> None:
        super().__init__(f"{mode}: {reason}")
        self.mode, self.reason = mode, reason
        self.uid = uid
        """It was the leased uid that failed (the grader then uses the named sandbox user)."""


_REFUSED: dict[str, str] = {}
"""Confinement modes this host refused, with the reason (decided once per grader process)."""
_UNIQUE_UIDS: list[bool] = [True]
"""Whether leased uids work here (a container may map only a few uids)."""


def _modes() -> list[str]:
    forced = os.environ.get("AUTOGRADER_CONFINEMENT", "")
    if forced:
        if forced not in MODES:
            raise SandboxError(
                f"AUTOGRADER_CONFINEMENT={forced!r} is not a confinement mode; "
                f"use one of {', '.join(MODES)}, or unset it to let the grader choose."
            )
        return [forced]
    return [mode for mode in MODES if mode not in _REFUSED]


def _argument(value: object, buffers: list[bytes]) -> dict[str, Any]:
    """An argument on the wire: a handle by its id, anything else as data."""
    if isinstance(value, Handle):
        return {"t": "handle", "handle": value.id}
    return encode(value, buffers)


def _launch(
    cells: Sequence[str], skip: set[int], limits: Limits, secrets: tuple[Path, ...], mode: str
) -> Sandbox:
    workdir = tempfile.TemporaryDirectory(prefix="autograder-")
    os.chmod(workdir.name, 0o700)
    lease = lease_uid() if os.geteuid() == 0 and _UNIQUE_UIDS[0] else None
    user = (lease.uid, lease.uid) if lease is not None else sandbox_user()
    if lease is not None and _processes_of(lease.uid):
        _kill_uid(lease.uid)  # left by a grader that died
    confinement = plan(
        workdir=Path(workdir.name),
        secrets=secrets,
        mode=mode,
        user=user,
        own_user=lease is not None,
        limits=limits,
    )
    if user is not None:
        os.chown(workdir.name, *user)
    ours, theirs = socket.socketpair()
    try:
        process = subprocess.Popen(
            [sys.executable, "-I", "-c", _child_source(), str(theirs.fileno())],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            pass_fds=[theirs.fileno()],
            cwd=workdir.name,
            env=_child_env(workdir.name),
            start_new_session=True,
        )
    except OSError as error:
        ours.close()
        workdir.cleanup()
        if lease is not None:
            lease.release()
        raise SandboxError(
            f"Could not start the sandbox with {sys.executable}: {error}. "
            "Check that the Python running the grader can be executed."
        ) from None
    finally:
        theirs.close()
    assert process.stdout is not None
    drain = _Drain(process.stdout, limits.output_bytes)
    drain.start()
    box = Sandbox(process, ours, drain, workdir, limits, mode=mode, lease=lease)
    try:
        send_frame(ours, _start_frame(cells, skip, limits, confinement.as_message()))
    except OSError as error:
        box.close()
        raise SandboxError(
            f"The sandbox exited before it could be told what to run ({error}); its output "
            f"was: {box.output()[-2000:] or '(nothing)'}"
        ) from None
    return box


def _start_frame(
    cells: Sequence[str], skip: set[int], limits: Limits, confinement: dict[str, object]
) -> dict[str, object]:
    return {
        "cells": list(cells),
        "skip": sorted(skip),
        "limits": {
            "memory_bytes": child_memory_bytes(limits),  # what fits this machine or container
            "processes": limits.processes,
            "file_bytes": limits.file_bytes,
        },
        "confinement": confinement,
    }


def _find_zygote(box: Sandbox) -> int:
    """The zygote's pid as the grader sees it: the launched process itself, or (namespace
    mode) pid 2 of the namespace, under the launched keeper and the namespace's init."""
    if box.mode != "namespaces":
        return box.process.pid
    inits = _children(box.process.pid)
    if len(inits) != 1:
        return 0
    return next((pid for pid in _children(inits[0]) if _inner_pid(pid) == 2), 0)


def default_secrets() -> tuple[Path, ...]:
    """What the child must never read: the reference solutions and the grader itself."""
    from autograder.reference import solutions_dir

    return (solutions_dir(), Path(__file__).resolve().parent)


@dataclass
class _Progress:
    """What the child has reported so far while running the cells."""

    outcomes: dict[int, CellOutcome] = field(default_factory=dict)
    running: int | None = None
    confinement: str = ""
    definitions: tuple[Definition, ...] | None = None


_STARTUP_SECONDS = 30.0
"""Time for the child to start and confine itself (ours, not counted against the student)."""


def _follow(box: Sandbox, limits: Limits, spent: float, cells: int) -> tuple[_Progress, str, float]:
    """Read the child's events until it is ready.

    `spent` is the notebook time already used by earlier launches; returns the progress, a
    failure ("" when ready) and the notebook time used in total.
    """
    progress = _Progress()
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
            box.control.settimeout(remaining)
            event, _ = recv_frame(box.control, max_header=1 << 20, max_total=0)
            kind, index = event.get("event"), event.get("index")
            if index is not None and not (type(index) is int and 0 <= index < cells):
                raise WireError("the child reported a cell that does not exist")
            if kind == "unconfined" and not progress.confinement:
                reason = str(event.get("error", ""))[:500]
                raise _Unconfined(box.mode, reason, uid=event.get("uid") is True)
            if kind == "confined" and not progress.confinement:
                _check_confined(box, event)
                progress.confinement = _confinement_text(event)
                began = cell_began = time.monotonic()
            elif not progress.confinement:
                raise WireError("the child did not confine itself first")
            elif kind == "cell_start" and type(index) is int:
                progress.running, cell_began = index, time.monotonic()
            elif kind == "cell_done" and type(index) is int:
                progress.outcomes[index] = _cell_outcome(index, event.get("error"))
                progress.running = None
            elif kind == "ready":
                progress.definitions = _definitions(event.get("names"))
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


def _check_confined(box: Sandbox, event: Mapping[str, Any]) -> None:
    """Accept the child's report of its confinement, or say why this mode cannot grade."""
    missing = event.get("missing")
    if isinstance(missing, list) and missing:
        name = str(missing[0])[:100]
        folder = unreadable_folder(name)
        where = f": {folder} is closed to other users" if folder is not None else ""
        raise _Unconfined(box.mode, f"the sandbox user cannot import {name}{where}")


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


def _refuse(refused: _Unconfined) -> None:
    """Remember that this host cannot run `refused.mode` (or leased uids); raise when nothing
    is left to try."""
    if refused.uid and _UNIQUE_UIDS[0]:
        _UNIQUE_UIDS[0] = False  # try the named sandbox user instead
        return
    _REFUSED[refused.mode] = refused.reason
    if os.environ.get("AUTOGRADER_CONFINEMENT"):
        raise SandboxError(
            f"AUTOGRADER_CONFINEMENT={refused.mode} cannot work here: {refused.reason}. "
            "Unset it to let the grader choose, and try again."
        )
    if not _modes():
        raise SandboxError(
            "The sandbox cannot confine student code on this host: "
            + "; ".join(f"{mode} mode failed ({why})" for mode, why in _REFUSED.items())
            + ". Allow namespaces (run as root, or allow unprivileged user namespaces; in "
            "Docker, --cap-add SYS_ADMIN), or install Python in folders other users may read, "
            "and try again."
        )


def start(
    cells: Sequence[str],
    *,
    limits: Limits = LIMITS,
    secrets: tuple[Path, ...] | None = None,
) -> tuple[Sandbox | None, NotebookRun]:
    """Run `cells` in a fresh child; return the ready sandbox (or None) and what happened.

    A cell that hangs past its time or kills the child is skipped and the child is started
    again without it, at most `limits.cell_restarts` times, as a student would restart the
    kernel and skip the cell. Raises `SandboxError` when the child cannot even start.
    """
    began = time.monotonic()
    hidden = default_secrets() if secrets is None else secrets
    skipped: dict[int, str] = {}
    spent = 0.0
    while True:
        modes = _modes()
        box = _launch(cells, set(skipped), limits, hidden, modes[0] if modes else "basic")
        try:
            progress, failure, spent = _follow(box, limits, spent, len(cells))
        except _Unconfined as refused:
            box.close()
            _refuse(refused)
            continue
        if not failure:
            assert progress.definitions is not None
            return box, _notebook_run(
                cells,
                skipped,
                progress.outcomes,
                progress.definitions,
                box,
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
            run = _notebook_run(cells, skipped, progress.outcomes, (), None, began, "")
            where = f"cell {running + 1}" if running is not None else "the notebook"
            return None, NotebookRun(
                run.cells, (), output, f"The top-level code in {where} {failure}.", run.seconds
            )
        skipped[running] = failure


def _cell_outcome(index: int, error: object) -> CellOutcome:
    if not isinstance(error, dict):
        return CellOutcome(index)
    return CellOutcome(
        index,
        error_type=str(error.get("type", "Exception"))[:100],
        message=str(error.get("message", ""))[:2000],
        where=str(error.get("where", ""))[:200],
        traceback=str(error.get("traceback", ""))[:4000],
    )


def _definitions(names: object) -> tuple[Definition, ...]:
    if not isinstance(names, list):
        return ()
    found = []
    for entry in names[:500]:
        if isinstance(entry, Mapping):
            found.append(
                Definition(
                    str(entry.get("name", ""))[:100],
                    str(entry.get("kind", ""))[:20],
                    str(entry.get("signature", ""))[:200],
                )
            )
    return tuple(found)


def _notebook_run(
    cells: Sequence[str],
    skipped: Mapping[int, str],
    outcomes: Mapping[int, CellOutcome],
    definitions: tuple[Definition, ...],
    box: Sandbox | None,
    began: float,
    confinement: str,
) -> NotebookRun:
    ordered = []
    for index in range(len(cells)):
        if index in skipped:
            ordered.append(CellOutcome(index, skipped=skipped[index]))
        elif index in outcomes:
            ordered.append(outcomes[index])
    return NotebookRun(
        tuple(ordered),
        definitions,
        box.output() if box is not None else "",
        seconds=time.monotonic() - began,
        confinement=confinement,
    )
