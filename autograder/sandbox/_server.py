"""The fork server: a Python with NumPy already loaded that forks each sandboxed child.

Like `_child.py`, this file is not imported by the grader: `forkserver.py` sends its source
text, after the child's own, to `python -I -c ...`. The server runs no student code and holds
nothing secret: the child's program, NumPy, and the requests of the grader that started it.
Each child it forks becomes exactly what `launch.py` would have started (a new session, its
scratch folder as working folder, the child's environment, standard input from /dev/null,
its output on the pipe it was given, no other file open but its socket) and then runs the
child's `main`, which confines it as usual. What a fresh Python would have done differently
is done again: NumPy's global random state, if it was loaded, is seeded anew (Python's
`random` is, at fork). Only NumPy itself is loaded: `numpy.random` would map 9 MiB more
before any student code runs, less room under the same address-space limit.

Protocol (a SOCK_SEQPACKET socket, one JSON message each way; only the grader speaks to it):
  grader -> server  {"op": "spawn", "cwd": ..., "env": {...}, "cpus": [...]}
                    with two fds attached: the child's socket, the write end of its output
                    -> {"pid": N} or {"error": "..."}
                    {"op": "wait", "pid": N, "timeout": S}
                    -> {"code": C} (as `Popen.returncode`: -signal if killed) or {"running": true}
  A forked child returns from `serve` and runs the child's main from the program's top level,
  as a new Python would (the same frames under it). The server reaps a child only when asked
  (so its pid is not reused while the grader may still signal it), and leaves when its
  socket closes.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import traceback
from typing import Any

from autograder.sandbox._child import main  # child: provided inline

_PRELOADED = ("numpy",)
"""What the server imports once for every child (what assignment code imports first)."""

_SOCKET_FD = 3
"""The child's socket, as every child finds it (what `python -c BOOT FD` was told)."""


def _preload() -> None:
    for name in _PRELOADED:
        try:
            __import__(name)
        except Exception:  # a broken or missing NumPy: the cells' own import will say so
            pass


def _reseed() -> None:
    """What a fresh interpreter seeds from the system's entropy, seeded again."""
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        numpy_random.seed()


def _become_child(control: socket.socket, request: dict[str, Any], fds: list[int]) -> None:
    """In the forked process: become the child `launch.py` describes (its main runs next)."""
    try:
        control.detach()  # its fd is closed below: no object of ours may close it again later
        sock, out = fds
        os.setsid()
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.dup2(sock, _SOCKET_FD)
        os.closerange(_SOCKET_FD + 1, os.sysconf("SC_OPEN_MAX"))
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        cpus = request.get("cpus")
        if cpus:
            os.sched_setaffinity(0, cpus)
        _reseed()
        sys.argv = ["-c", str(_SOCKET_FD)]
    except BaseException:
        try:
            traceback.print_exc()
        finally:
            os._exit(1)


def _spawn(control: socket.socket, request: dict[str, Any], fds: list[int]) -> dict[str, Any]:
    """Fork a child; in the child, returns {"child": True} once it is made (see `serve`)."""
    if len(fds) != 2 or not isinstance(request.get("env"), dict):
        return {"error": "a spawn takes two fds and an environment"}
    try:
        pid = os.fork()
    except OSError as error:
        return {"error": f"could not fork ({error.strerror})"}
    if pid == 0:
        _become_child(control, request, fds)
        return {"child": True}
    return {"pid": pid}


def _wait(pid: int, timeout: float) -> dict[str, Any]:
    deadline, delay = time.monotonic() + max(timeout, 0.0), 0.0002
    while True:
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return {"error": f"no child {pid}"}
        if done:
            return {"code": os.waitstatus_to_exitcode(status)}
        if time.monotonic() >= deadline:
            return {"running": True}
        time.sleep(delay)
        delay = min(2 * delay, 0.01)


def serve(fd: int) -> None:
    """Answer the grader on socket `fd` until it closes (then leave); return only in a forked
    child, made ready to run the child's main with nothing of the server's on its stack."""
    control = socket.socket(fileno=fd)
    _preload()
    spawned: set[int] = set()
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(control, 1 << 16, 2)
        except OSError:
            os._exit(0)
        if not message:
            os._exit(0)
        try:
            request = json.loads(message)
            op = request.get("op")
        except (ValueError, AttributeError):
            request, op = {}, None
        if op == "spawn":
            reply = _spawn(control, request, fds)
            if reply.get("child"):
                return
            if "pid" in reply:
                spawned.add(reply["pid"])
        elif op == "wait" and request.get("pid") in spawned:
            reply = _wait(request["pid"], float(request.get("timeout") or 0.0))
            if "running" not in reply:
                spawned.discard(request["pid"])
        else:
            reply = {"error": "unknown request"}
        for received in fds:
            os.close(received)
        control.send(json.dumps(reply).encode())


if __name__ == "__autograder_server__":
    serve(int(sys.argv[1]))
    main()  # the child's main (`_child.py`), at the depth of a new Python's
