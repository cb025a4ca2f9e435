"""A fork server for a process that grades one student after another (batch's workers).

Starting a child with `python -I -c ...` costs a Python's start and, with the first cell,
NumPy's import: about 0.1 s of CPU per student, the same for every student. A process that
`enable`s the fork server starts one Python (`_server.py`) that has imported NumPy and holds
the child's program, and asks it to fork each child. The forked child makes itself exactly
what `launch.py` starts (its own session, scratch folder, environment, standard streams, no
other file open, NumPy's random state seeded anew) and then confines itself as usual, before
any student code runs; so nothing about a grade depends on which way it was started.

The server runs as the grader's user, never runs student code and holds nothing secret. It
reaps a child only when the grader asks (`Forked.wait`), so a pid the grader may still signal
is never reused meanwhile. When it cannot be started or stops answering, it is started again
once; after that, children are started with `python -I -c ...` as before. A process forked
from one that holds a server starts its own (`os.register_at_fork`).
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from typing import IO, Any

__all__ = ["ForkServer", "Forked", "enable", "enabled", "server_pid", "spawn"]

_REPLY_SECONDS = 30.0
"""How long the server may take to answer (its first answer waits for NumPy's import)."""

_BOOT = """\
import marshal, sys
exec(marshal.loads(sys.stdin.buffer.read()), {"__name__": "__autograder_server__"})
"""
"""What `python -c` runs: the server's program, marshalled, from standard input until EOF."""


class ServerGone(OSError):
    """The fork server did not answer as it should (it is then replaced)."""


class ForkServer:
    """One running fork server and the socket to it."""

    def __init__(self, program: bytes, env: dict[str, str]) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._lock = threading.Lock()
        self.owner = os.getpid()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-I", "-c", _BOOT, str(theirs.fileno())],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=[theirs.fileno()],
                cwd="/",
                env=env,
                start_new_session=True,
            )
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        self.socket = ours
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(program)
            self.process.stdin.close()
        except OSError:
            self.close()
            raise

    def _ask(self, request: dict[str, Any], fds: Sequence[int] = ()) -> dict[str, Any]:
        with self._lock:
            self.socket.settimeout(_REPLY_SECONDS + float(request.get("timeout", 0.0)))
            socket.send_fds(self.socket, [json.dumps(request).encode()], list(fds))
            reply = self.socket.recv(1 << 16)
        if not reply:
            raise ServerGone("the fork server closed its socket")
        try:
            answer = json.loads(reply)
        except ValueError:
            raise ServerGone("the fork server's reply is not JSON") from None
        if not isinstance(answer, dict):
            raise ServerGone("the fork server's reply is not an object")
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
        still running after `timeout` s (or if the server that started it is gone)."""
        if self.returncode is not None:
            return self.returncode
        try:
            code = self.server.wait(self.pid, 3600.0 if timeout is None else timeout)
        except OSError:
            code = None  # whoever reaps it now, it is no longer ours to wait for
        if code is None:
            raise subprocess.TimeoutExpired(f"fork server child {self.pid}", timeout or 0.0)
        self.returncode = code
        return code


_state: dict[str, Any] = {
    "enabled": False,
    "server": None,
    "failures": 0,
    "lock": threading.Lock(),
}
"""This process's server (None until the first spawn), whether it uses one, how often one
could not be had, and the lock that makes one spawn at a time."""


def enable(on: bool = True) -> None:
    """Start this process's sandboxed children through a fork server from now on (or not)."""
    if on and not _state["enabled"]:
        from multiprocessing import util

        util.Finalize(None, _stop, exitpriority=0)  # a pool worker leaves without atexit
    _state["enabled"] = on
    if not on:
        _stop()


def enabled() -> bool:
    """Whether this process starts its children through a fork server."""
    return bool(_state["enabled"])


def server_pid() -> int | None:
    """The pid of this process's fork server, if it has one running."""
    server = _state["server"]
    return server.process.pid if server is not None else None


def spawn(
    *, cwd: str, env: dict[str, str], sock: int, program: Callable[[], bytes]
) -> Forked | None:
    """A child forked by this process's server (started with `program` if there is none
    yet), or None when the fork server is off or cannot be had: then start it directly."""
    if not _state["enabled"]:
        return None
    with _state["lock"]:
        for _ in range(2):
            server = _state["server"]
            if server is None:
                try:
                    server = _state["server"] = ForkServer(program(), _server_env(env))
                except OSError:
                    break
            read, write = os.pipe()
            try:
                pid = server.spawn(cwd=cwd, env=env, sock=sock, out=write)
            except OSError:
                os.close(read)
                _stop()
                continue
            finally:
                os.close(write)
            return Forked(server, pid, open(read, "rb"))
        _state["failures"] += 1
        _state["enabled"] = _state["failures"] < 2  # twice unable: start children directly
        return None


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
