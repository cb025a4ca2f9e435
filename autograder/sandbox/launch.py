"""Launching the child: its program, its environment, its confinement plan, its first frame.

The child's program is `wire.py`, `_jail.py` and `_child.py` of this folder joined into one
script (their imports of each other dropped), so the child needs nothing from the grader's
installation. The grader compiles it once per process; the child is `python -I -c BOOT FD`,
where BOOT reads the compiled program from its socket (FD) and runs it (the same interpreter
wrote it: `sys.executable`). Where this process uses a fork server (`forkserver.py`), the
child is forked from it instead, with the program already in it, and made the same child. It
starts in a fresh scratch folder, with a uid of its own where the grader is root, and is told
the cells, the limits and the plan in one frame.
"""

from __future__ import annotations

import functools
import marshal
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from autograder.errors import SandboxError
from autograder.memory import child_memory_bytes
from autograder.sandbox import forkserver, modes
from autograder.sandbox.box import Sandbox
from autograder.sandbox.confinement import lease_uid, plan, sandbox_user
from autograder.sandbox.drain import Drain
from autograder.sandbox.forkserver import Forked, python_on_socket
from autograder.sandbox.processes import kill_uid, processes_of
from autograder.sandbox.wire import send_frame
from autograder.settings import SINGLE_THREADED, Limits

__all__ = [
    "CHILD_FILES",
    "SERVER_FILES",
    "child_program",
    "child_source",
    "default_secrets",
    "launch",
    "server_program",
]

CHILD_FILES = ("wire.py", "_jail.py", "_child.py")
"""The files of this folder the child runs, in order: the wire, the jail, then its main."""

_INLINE_MARK = "# child: provided inline"
"""Marks the lines of `_child.py` that import what the source text already holds."""

_GRADER = Path(__file__).resolve().parents[1]
"""The grader package (`autograder/`), which holds the rubrics and so must stay unreadable."""


def default_secrets() -> tuple[Path, ...]:
    """What the child must never read: the reference solutions and the grader itself."""
    from autograder.reference import solutions_dir

    return (solutions_dir(), _GRADER)


def child_source(files: Sequence[str] = CHILD_FILES) -> str:
    """The child's program: `files` of this folder (`CHILD_FILES`) as one script."""
    here = Path(__file__).parent
    parts = []
    for name in files:
        text = (here / name).read_text(encoding="utf-8")
        lines = [
            line
            for line in text.splitlines()
            if _INLINE_MARK not in line and line != "from __future__ import annotations"
        ]
        parts.append("\n".join(lines))
    return "from __future__ import annotations\n" + "\n".join(parts)


_BOOT = """\
import marshal, os, sys
def read(fd, size):
    data = b""
    while len(data) < size:
        chunk = os.read(fd, size - len(data))
        if not chunk:
            raise SystemExit("the grader closed the socket before it sent the program")
        data += chunk
    return data
fd = int(sys.argv[1])
exec(marshal.loads(read(fd, int.from_bytes(read(fd, 8), "big"))))
"""
"""What `python -c` runs: read the program from the socket FD (its length in 8 bytes, then its
code object, marshalled), exactly that many bytes and not one more (the start frame follows
it), then run it as `__main__`."""


@functools.cache
def child_program() -> bytes:
    """The child's program, compiled: what the socket carries to `_BOOT` (once per process)."""
    code = marshal.dumps(compile(child_source(), "<autograder child>", "exec", dont_inherit=True))
    return len(code).to_bytes(8, "big") + code


SERVER_FILES = (*CHILD_FILES, "_server.py")
"""The fork server's program (`forkserver.py`): the child's, then the server's loop."""


@functools.cache
def server_program() -> bytes:
    """The fork server's program, compiled and marshalled (once per process)."""
    source = child_source(SERVER_FILES)
    return marshal.dumps(compile(source, "<autograder child>", "exec", dont_inherit=True))


def _child_env(home: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": home,
        "TMPDIR": home,
        "LANG": "C.UTF-8",
        "MPLBACKEND": "Agg",
        **SINGLE_THREADED,
    }


def launch(
    cells: Sequence[str], skip: set[int], limits: Limits, secrets: tuple[Path, ...], mode: str
) -> Sandbox:
    """Start a child that runs `cells` but those in `skip`, confined in `mode`, unable to read
    `secrets`; raises `SandboxError` when it cannot even be started."""
    workdir = tempfile.TemporaryDirectory(prefix="autograder-")
    os.chmod(workdir.name, 0o700)
    lease = lease_uid() if os.geteuid() == 0 and modes.UNIQUE_UIDS[0] else None
    user = (lease.uid, lease.uid) if lease is not None else sandbox_user()
    if lease is not None and processes_of(lease.uid):
        kill_uid(lease.uid)  # left by a grader that died
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
    try:
        process, ours, forked = _start(workdir.name)
    except OSError as error:
        workdir.cleanup()
        if lease is not None:
            lease.release()
        raise SandboxError(
            f"Could not start the sandbox with {sys.executable}: {error}. "
            "Check that the Python running the grader can be executed."
        ) from None
    assert process.stdout is not None
    drain = Drain(process.stdout, limits.output_bytes)
    drain.start()
    box = Sandbox(process, ours, drain, workdir, limits, mode=mode, lease=lease)
    try:
        if not forked:  # a forked child has its program already
            ours.sendall(child_program())
        send_frame(ours, _start_frame(cells, skip, limits, confinement.as_message()))
    except OSError as error:
        box.close()
        raise SandboxError(
            f"The sandbox exited before it could be told what to run ({error}); its output "
            f"was: {box.output()[-2000:] or '(nothing)'}"
        ) from None
    return box


def _start(cwd: str) -> tuple[subprocess.Popen[bytes] | Forked, socket.socket, bool]:
    """The child, in `cwd`, and the grader's end of its socket: forked by this process's fork
    server if it uses one (then True: it holds its program already), else `python -I -c
    BOOT`."""
    env = _child_env(cwd)
    forked = forkserver.spawn(cwd=cwd, env=env, program=server_program)
    if forked is not None:
        return forked[0], forked[1], True
    process, ours = python_on_socket(
        _BOOT,
        kind=socket.SOCK_STREAM,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=cwd,
        env=env,
    )
    return process, ours, False


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
