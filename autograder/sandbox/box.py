"""The sandbox itself: a running child that executed a submission's cells (the zygote).

`Sandbox.session` forks a fresh worker from the zygote for one rubric item and kills it
afterwards; `Sandbox.close` stops the child and everything it started. `launch.py` makes one
for `started`, which closes it. A session uses only the `Zygote` part of it: `limits` and
`worker_status`.
"""

from __future__ import annotations

import itertools
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from autograder.sandbox.confinement import UidLease
from autograder.sandbox.drain import Drain
from autograder.sandbox.forkserver import Forked
from autograder.sandbox.processes import (
    children,
    inner_pid,
    kill_group,
    kill_tree,
    kill_uid,
    parent_of,
    scanned_children,
)
from autograder.sandbox.session import Session, WorkerStatus
from autograder.sandbox.wire import WireError, recv_frame
from autograder.settings import Limits

__all__ = ["Sandbox"]


@dataclass
class Sandbox:
    """A running child that executed a submission's cells; `session()` forks a fresh worker."""

    process: subprocess.Popen[bytes] | Forked
    """The child as launched (`python -I -c ...`, or forked by a fork server)."""
    control: socket.socket
    """The zygote's control socket (`_child.py` describes the protocol)."""
    drain: Drain
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
    def session(
        self,
        *,
        deadline: float | None = None,
        script: Sequence[bytes] | None = None,
        record: list[bytes] | None = None,
        transcript: list[tuple[bytes, bytes]] | None = None,
    ) -> Iterator[Session]:
        """A worker forked from the child, for the calls of one rubric item.

        If no worker can be started, the session is already lost: its calls raise WorkerLost
        (so it costs that item only). `record` collects the frame of every request; `script`
        is such a record, which the session follows; `transcript` collects every request's
        frame with the digest of its reply (`session.py`).
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
        session = Session(
            self,
            ours,
            pid,
            deadline,
            inner=inner if pid else 0,
            lost=lost,
            script=script,
            record=record,
            transcript=transcript,
        )
        try:
            yield session
        finally:
            ours.close()
            if pid:
                kill_group(pid)
                self._status(session.inner)
                self._workers.discard(pid)

    def worker_status(self, inner: int) -> WorkerStatus:
        """How the zygote's worker `inner` ended (it also removes what the session left)."""
        status = self._status(inner)
        number, code = status.get("signal"), status.get("code")
        return WorkerStatus(
            signal=number if type(number) is int else None,
            code=code if type(code) is int else None,
        )

    def output(self) -> str:
        """What the child printed so far (cut at `limits.output_bytes`)."""
        return self.drain.text()

    def close(self) -> None:
        """Stop the child and everything it started, without waiting on any of it; safe to call
        twice."""
        if self._closed:
            return
        self._closed = True
        for pid in list(self._workers):
            kill_group(pid)
        if self.mode != "namespaces" and self.lease is None:
            kill_tree(self.process.pid)  # orphans come back to the zygote, a subreaper
        try:
            self.control.close()
        finally:
            kill_group(self.process.pid)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            gone = True
            if self.lease is not None and self.mode != "namespaces":
                gone = kill_uid(self.lease.uid)
            if self.process.stdout is not None:
                self.drain.stop(wait=0.5 if gone else 0.0)
            shutil.rmtree(self.workdir.name, ignore_errors=True)
            self.workdir.cleanup()
            if self.lease is not None and gone and self.process.returncode is not None:
                self.lease.release()

    def _worker(self, inner: int) -> int:
        """The grader's pid for the zygote's child `inner` (0 if it has no such child)."""
        if not self.zygote:
            self.zygote = self._find_zygote()
        if not self.zygote:
            return 0
        if self.mode != "namespaces":
            return inner if parent_of(inner) == self.zygote else 0
        for listing in (children, scanned_children):  # the kernel's list; a full scan if short
            found = next((pid for pid in listing(self.zygote) if inner_pid(pid) == inner), 0)
            if found:
                return found
        return 0

    def _find_zygote(self) -> int:
        """The zygote's pid as the grader sees it: the launched process itself, or (namespace
        mode) pid 2 of the namespace, under the launched keeper and the namespace's init."""
        if self.mode != "namespaces":
            return self.process.pid
        for listing in (children, scanned_children):  # the kernel's list; a full scan if short
            inits = listing(self.process.pid)
            if len(inits) == 1:
                found = next((pid for pid in listing(inits[0]) if inner_pid(pid) == 2), 0)
                if found:
                    return found
        return 0

    def _reply(self, ident: int) -> dict[str, Any]:
        """The zygote's reply to request `ident`, skipping replies to requests given up on."""
        for _ in range(16):
            reply, _ = recv_frame(self.control, max_header=4096, max_total=0)
            answered = reply.get("id")
            if answered == ident:
                return reply
            if type(answered) is not int or not 0 < answered < ident:  # not a late reply
                raise WireError(f"the child answered request {str(answered)[:20]}, never asked")
        raise WireError("the child did not answer the request")

    def _status(self, inner: int) -> dict[str, Any]:
        try:
            ident = next(self._ids)
            self.control.settimeout(2.0)
            socket.send_fds(self.control, [f"status {ident} {inner}".encode()], [])
            return self._reply(ident)
        except (OSError, EOFError, WireError):
            return {}
