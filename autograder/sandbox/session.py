"""A session: the calls of one rubric item into one worker, each with a deadline.

The session speaks the wire protocol (`wire.py`) with its worker and turns whatever comes back
into plain values, a `Handle`, `StudentRaised` or `WorkerLost`; a reply that breaks the
protocol loses the worker (the item's session is over), never the grader. Of the sandbox it
needs only `Zygote`: the limits, and how a lost worker ended.

A session may also follow a script: the requests, frame by frame, that an earlier session made
(`record`). It then sends them ahead, as many as the socket takes, so that the worker answers
them one after another while the grader judges; each request the checks make must be the
script's next one, byte for byte, or the session is lost as `diverged` (`drawn.py` then
replays the item the ordinary way). Calls, answers and judgement are those of an ordinary
session; only the turns are fewer.

A session may also keep a transcript: each request's frame and the SHA-256 of the reply's
frame, as it came. `repeat` makes such a request again and returns the digest of the reply,
without reading it (`transcripts.py` compares it with the transcript's).
"""

from __future__ import annotations

import hashlib
import itertools
import signal
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from autograder.sandbox.processes import kill_group, signal_name
from autograder.sandbox.values import Handle, StudentRaised, Then, WorkerLost
from autograder.sandbox.wire import WireError, decode, encode, frame, recv_frame
from autograder.settings import Limits

__all__ = ["Session", "WorkerStatus", "Zygote"]


@dataclass(frozen=True)
class WorkerStatus:
    """How a worker ended, as the zygote (its parent) saw it; None where it did not say."""

    signal: int | None = None
    """The signal that killed it."""
    code: int | None = None
    """Its exit code."""


class Zygote(Protocol):
    """What a session needs of the sandbox that forked its worker."""

    @property
    def limits(self) -> Limits:
        """The limits of every call (`call_seconds`, `item_seconds`, `message_bytes`)."""
        ...

    def worker_status(self, inner: int) -> WorkerStatus:
        """How the worker numbered `inner` by the child ended (empty if it did not say)."""
        ...


class Session:
    """Calls into one worker. Every call has a deadline; a lost worker ends the session.

    Made by `Sandbox.session`; `lost` says why the session is over ("" while it is not).
    """

    def __init__(
        self,
        zygote: Zygote,
        sock: socket.socket,
        pid: int,
        deadline: float | None,
        *,
        inner: int = 0,
        lost: str = "",
        script: Sequence[bytes] | None = None,
        record: list[bytes] | None = None,
        transcript: list[tuple[bytes, bytes]] | None = None,
    ):
        self._zygote, self._sock, self.pid = zygote, sock, pid
        self.inner = inner or pid
        """The worker's pid as the child numbers it (its PID namespace, if it has one)."""
        self._deadline = deadline
        self.lost = lost
        self._record = record
        """Where every request's frame is appended, when recording."""
        self._transcript = transcript
        """Where every request's frame and the digest of its reply are appended, if kept."""
        self._script = tuple(script) if script is not None else None
        self._outgoing = memoryview(b"".join(self._script or ()))
        self._ends = list(itertools.accumulate(map(len, self._script or ())))
        """Where each frame of the script ends in `_outgoing`."""
        self._asked = 0
        """Requests of the script made so far."""
        self._sent = 0
        """Bytes of `_outgoing` sent so far."""
        self.diverged = False
        """Whether the checks asked something else than the script's next request."""

    @property
    def followed(self) -> bool:
        """Whether the checks have made every request of the script (and nothing else)."""
        return self._script is not None and not self.diverged and self._asked == len(self._script)

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
        """Call the student's `target` (a name, or `attr` of a handle) with plain values
        (what `wire.py` carries: arrays, scalars, tuples, lists and dicts of them).

        `keep` leaves the result in the worker and returns a `Handle` to it; `assign` sets
        dotted attributes on the result first (one round trip); `then`, with `keep`, also calls
        a method of the kept result in the same round trip and returns `(handle, its value)`
        (e.g. build an instance and call its `forward`); `echo` also returns the
        arguments as they are after the call (to see in-place changes). An argument may be a
        `Handle` of this session: the worker passes the object it stands for (e.g. a student's
        cache to the student's `forward`), as an argument itself only (inside a tuple, list or
        dict it travels as an opaque value).
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
            kill_group(self.pid)
        return WorkerLost(reason)

    def _exchange(
        self, header: dict[str, Any], buffers: list[bytes]
    ) -> tuple[dict[str, Any], list[bytes]]:
        timeout, late = self._time_left()
        data = frame(header, buffers)
        if self._record is not None:
            self._record.append(data)
        hasher = hashlib.sha256() if self._transcript is not None else None
        reply, received = self._trip(data, timeout, late, hasher)
        if self._transcript is not None and hasher is not None:
            self._transcript.append((data, hasher.digest()))
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

    def repeat(self, data: bytes) -> bytes:
        """Make the request `data` (a frame as a transcript keeps it) and return the digest of
        the reply, unread: what `transcripts.py` compares with an earlier worker's. Raises
        `WorkerLost` as any call does."""
        timeout, late = self._time_left()
        hasher = hashlib.sha256()
        self._trip(data, timeout, late, hasher)
        return hasher.digest()

    def _time_left(self) -> tuple[float, str]:
        """The next call's time limit, and what to say when it runs out; raises `WorkerLost`
        when the session is over or its time is up."""
        if self.lost:
            raise WorkerLost(self.lost)
        limits = self._zygote.limits
        timeout = limits.call_seconds
        late = "the time for this check ran out"
        if self._deadline is not None:
            timeout = min(timeout, self._deadline - time.monotonic())
            if timeout <= 0:
                raise self._lose(late)
            if timeout < limits.call_seconds:
                late += f" during a call ({limits.item_seconds:g} s for all of its calls)"
        return timeout, late

    def _trip(
        self, data: bytes, timeout: float, late: str, hasher: _Hasher | None
    ) -> tuple[dict[str, Any], list[bytes]]:
        """Send request `data` and read the reply's header and buffers (fed to `hasher`, if
        any)."""
        limits = self._zygote.limits
        try:
            self._sock.settimeout(timeout)
            if self._script is None:
                self._sock.sendall(data)
            else:
                self._follow(data, timeout)
            reply, received = recv_frame(self._sock, max_total=limits.message_bytes, hasher=hasher)
        except TimeoutError:
            if timeout < limits.call_seconds:  # the item's deadline, not the call's limit
                raise self._lose(late) from None
            raise self._lose(f"a call did not return within {timeout:g} s") from None
        except WireError as broken:
            raise self._lose(f"the worker broke the protocol ({broken})") from None
        except (EOFError, OSError):
            self._sock.close()
            raise self._lose(self._crash_reason()) from None
        return reply, received

    def _follow(self, data: bytes, timeout: float) -> None:
        """Make request `data`, the script's next one: send the script up to its end (the
        worker needs it to answer), then as much more as the socket takes without waiting."""
        assert self._script is not None
        if self._asked >= len(self._script) or self._script[self._asked] != data:
            self.diverged = True
            raise self._lose("the checks left the script of an earlier session")
        needed = self._ends[self._asked]
        self._asked += 1
        if self._sent < needed:
            self._sock.sendall(self._outgoing[self._sent : needed])
            self._sent = needed
        if self._sent < len(self._outgoing):
            self._sock.setblocking(False)
            try:
                while self._sent < len(self._outgoing):
                    self._sent += self._sock.send(self._outgoing[self._sent :])
            except BlockingIOError:
                pass  # the worker has not read that far yet: it will be sent with a later call
            finally:
                self._sock.settimeout(timeout)

    def _crash_reason(self) -> str:
        status = self._zygote.worker_status(self.inner)
        if status.signal == signal.SIGKILL:
            return "the process was killed (SIGKILL), usually for using too much memory"
        if status.signal is not None:
            return f"the process crashed with signal {signal_name(status.signal)}"
        if status.code is not None:
            return f"the process exited (exit code {status.code}) instead of returning"
        return "the process stopped answering"


class _Hasher(Protocol):
    """What `recv_frame` feeds a frame to (a `hashlib` object)."""

    def update(self, data: bytes, /) -> None: ...


def _argument(value: object, buffers: list[bytes]) -> dict[str, Any]:
    """An argument on the wire: a handle by its id, anything else as data."""
    if isinstance(value, Handle):
        return {"t": "handle", "handle": value.id}
    return encode(value, buffers)
