"""A fork server for a process that grades one student after another (batch's workers).

Starting a child with `python -I -c ...` costs a Python's start and, with the first cell,
NumPy's import: about 0.1 s of CPU per student, the same for every student. A process that
`enable`s the fork server starts one Python (`_server.py`) that has imported NumPy and holds
the child's program, and asks it to fork each child. The forked child makes itself exactly
what `launch.py` starts (its own session, scratch folder, environment, standard streams, no
other file open, the same frames under its main) and then confines itself as usual, before
any student code runs; so nothing about a grade depends on which way it was started.

The server runs as the grader's user, never runs student code and holds nothing secret. It
reaps a child only when the grader asks (`Forked.wait`), so a pid the grader may still signal
is never reused meanwhile. Any exchange with it that goes wrong (no answer in time, a closed
socket, a reply that is not one) ends that server: no later request can read a late reply.
The child being started then is started as a new Python instead, on a socket of its own;
after `GIVE_UP` such failures in a row, this process starts all its children that way. A
process forked from one that holds a server starts its own (`os.register_at_fork`).
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import IO, Any

__all__ = [
    "GIVE_UP",
    "ForkServer",
    "Forked",
    "ServerGone",
    "enable",
    "enabled",
    "python_on_socket",
    "server_pid",
    "spawn",
]

REPLY_SECONDS = 10.0
"""How long the server may take to answer (its first answer waits for NumPy's import)."""

GIVE_UP = 2
"""Failures in a row after which this process stops using a fork server."""

_BOOT = """\
import marshal, sys
exec(marshal.loads(sys.stdin.buffer.read()), {"__name__": "__autograder_server__"})
"""
"""What `python -c` runs: the server's program, marshalled, from standard input until EOF."""


def python_on_socket(
    boot: str, *, kind: int, stdin: int, stdout: int, stderr: int, cwd: str, env: dict[str, str]
) -> tuple[subprocess.Popen[bytes], socket.socket]:
    """`python -I -c BOOT FD` in a session of its own, FD its end of a new socket pair of
    `kind`; returns it and our end."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, kind)
    try:
        process = subprocess.Popen(
            [sys.executable, "-I", "-c", boot, str(theirs.fileno())],
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            pass_fds=[theirs.fileno()],
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
    except OSError:
        ours.close()
        raise
    finally:
        theirs.close()
    return process, ours


class ServerGone(OSError):
    """The fork server did not answer as it should (it is then stopped and replaced)."""


class ForkServer:
    """One running fork server and the socket to it."""

    def __init__(self, program: bytes, env: dict[str, str]) -> None:
        self._lock = threading.Lock()
        self.owner = os.getpid()
        self.broken = False
        self.process, ours = python_on_socket(
            _BOOT,
            kind=socket.SOCK_SEQPACKET,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd="/",
            env=env,
        )
        self.socket = ours
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(program)
            self.process.stdin.close()
        except OSError:
            self.close()
            raise

    def _ask(self, request: dict[str, Any], fds: Sequence[int] = ()) -> dict[str, Any]:
        """The server's answer to `request`; any failure ends this server (`ServerGone`)."""
        with self._lock:
            if self.broken:
                raise ServerGone("the fork server was given up on")
            try:
                self.socket.settimeout(REPLY_SECONDS + float(request.get("timeout", 0.0)))
                socket.send_fds(self.socket, [json.dumps(request).encode()], list(fds))
                reply = self.socket.recv(1 << 16)
                answer = json.loads(reply) if reply else None
            except (OSError, ValueError) as error:
                answer, failure = None, str(error)
            else:
                failure = "it closed its socket" if not reply else "its reply is not an object"
            if not isinstance(answer, dict):
                self.broken = True  # whatever it answers later must never be read
                self.socket.close()
                raise ServerGone(f"the fork server failed: {failure}")
            return answer

    def spawn(self, *, cwd: str, env: dict[str, str], sock: int, out: int) -> int:
        """Fork a child that runs the child's program on socket `sock` with its output on
        `out`, in `cwd` with `env`, on this thread's CPUs; returns its pid."""
        cpus = sorted(os.sched_getaffinity(0))
        reply = self._ask({"op": "spawn", "cwd": cwd, "env": env, "cpus": cpus}, [sock, out])
        pid = reply.get("pid")
        if type(pid) is not int or pid <= 1:
            raise ServerGone(f"the fork server could not fork: {str(reply)[:200]}")
        return pid

    def wait(self, pid: int, timeout: float) -> int | None:
        """The return code of child `pid` (as `Popen.returncode`), reaping it; None if it is
        still running after `timeout` s."""
        reply = self._ask({"op": "wait", "pid": pid, "timeout": timeout})
        code = reply.get("code")
        if type(code) is int:
            return code
        if reply.get("running") is True:
            return None
        raise ServerGone(f"the fork server cannot wait for {pid}: {str(reply)[:200]}")

    def close(self) -> None:
        """Stop the server (it leaves when its socket closes) and reap it."""
        self.broken = True
        self.socket.close()
        try:
            self.process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Forked:
    """A child the fork server started: what `Sandbox` needs of a `subprocess.Popen`."""

    def __init__(self, server: ForkServer, pid: int, stdout: IO[bytes]) -> None:
        self.server, self.pid, self.stdout = server, pid, stdout
        self.returncode: int | None = None

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the child to end and reap it; raises `subprocess.TimeoutExpired` if it is
        still running after `timeout` s.

        If its server is gone, the child is no longer anyone's to reap here: it counts as
        ended (-9) once the kernel shows it gone or a zombie (so its pid cannot be reused)."""
        if self.returncode is not None:
            return self.returncode
        limit = 3600.0 if timeout is None else timeout
        try:
            code = self.server.wait(self.pid, limit)
        except ServerGone:
            if self.server.owner == os.getpid():
                self.server.close()  # its children go to init, which reaps them
            code = -9 if _ended(self.pid, limit) else None
        if code is None:
            raise subprocess.TimeoutExpired(f"fork server child {self.pid}", limit)
        self.returncode = code
        return code


def _ended(pid: int, timeout: float) -> bool:
    """Whether process `pid` is gone or a zombie within `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    return True
        except (OSError, IndexError):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)


_state: dict[str, Any] = {
    "enabled": False,
    "server": None,
    "failures": 0,
    "lock": threading.Lock(),
}
"""This process's server (None until the first spawn), whether it uses one, the failures in
a row so far, and the lock that makes one spawn at a time."""


def enable(on: bool = True) -> None:
    """Start this process's sandboxed children through a fork server from now on (or not).
    Enabling again does not undo giving up (`GIVE_UP`)."""
    if on and not _state["enabled"]:
        from multiprocessing import util

        util.Finalize(None, _stop, exitpriority=0)  # a pool worker leaves without atexit
    _state["enabled"] = on
    if not on:
        _stop()


def enabled() -> bool:
    """Whether this process starts its children through a fork server."""
    return bool(_state["enabled"]) and _state["failures"] < GIVE_UP


def server_pid() -> int | None:
    """The pid of this process's fork server, if it has one running."""
    server = _state["server"]
    return server.process.pid if server is not None and not server.broken else None


def spawn(
    *, cwd: str, env: dict[str, str], program: Callable[[], bytes]
) -> tuple[Forked, socket.socket] | None:
    """A child forked by this process's server (started with `program` if there is none
    yet) and the grader's end of its socket; None when the fork server is off or failed
    (then start the child directly, on a socket of its own: a child the failed server may
    still have forked holds the other one, which is closed here)."""
    if not enabled():
        return None
    with _state["lock"]:
        server = _state["server"]
        if server is None or server.broken or server.process.poll() is not None:
            _stop()  # none yet, given up on, or seen dead: a new one
            try:
                server = _state["server"] = ForkServer(program(), _server_env(env))
            except OSError:
                _state["failures"] += 1
                return None
        ours, theirs = socket.socketpair()
        read, write = os.pipe()
        try:
            pid = server.spawn(cwd=cwd, env=env, sock=theirs.fileno(), out=write)
        except OSError:
            ours.close()
            os.close(read)
            _stop()
            _state["failures"] += 1
            return None
        finally:
            theirs.close()
            os.close(write)
        _state["failures"] = 0
        return Forked(server, pid, open(read, "rb")), ours


def _server_env(env: dict[str, str]) -> dict[str, str]:
    """The server's environment: a child's, with no student's folder in it."""
    return {**env, "HOME": "/", "TMPDIR": "/tmp"}


def _stop() -> None:
    server, _state["server"] = _state["server"], None
    if server is not None and server.owner == os.getpid():
        server.close()


def _forget() -> None:
    """In a forked process: the parent's server is the parent's (never close it from here)."""
    _state["server"] = None
    _state["lock"] = threading.Lock()  # another thread may have held it at the fork


os.register_at_fork(after_in_child=_forget)
atexit.register(_stop)
