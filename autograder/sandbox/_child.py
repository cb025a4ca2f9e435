"""The sandboxed child: runs a submission's cells once, then forks one worker per session.

This file is not imported by the grader. `launch.py` sends it, together with `wire.py` and
`_jail.py`, as the source text of `python -I -c ...`, so the child needs nothing from the
grader's installation (on Gradescope the child's user cannot read it). Everything the child
says is untrusted: the parent validates every frame, and judges results in its own process.

Protocol on the control socket (the zygote, i.e. the child after running the cells):
  parent -> child   frame {"cells": [...], "skip": [...], "limits": {...}, "confinement": {...}}
  child  -> parent  frame {"event": "confined", ...} (or "unconfined": that mode cannot work)
                    frames {"event": "cell_start" | "cell_done" | "ready", ...}
  parent -> child   b"fork ID" with one socket fd attached -> frame {"id": ID, "pid": N}
                                                            or {"id": ID, "error": "..."}
                    b"status ID N" -> frame {"id": ID, "exited": bool, "code", "signal"}, after
                                      killing whatever the session left behind
                    b"quit"
A worker serves requests {"op": "call" | "get" | "set", ...} on its own socket until EOF.
Pids are as the child sees them (in namespace mode, its own PID namespace).
"""

from __future__ import annotations

import builtins
import inspect
import linecache
import os
import re
import resource
import signal
import socket
import sys
import traceback
import types
from typing import Any

from autograder.sandbox._jail import (  # child: provided inline
    JailError,  # child: provided inline
    deny_sockets,  # child: provided inline
    drop_capabilities,  # child: provided inline
    enter_namespaces,  # child: provided inline
    kill_descendants,  # child: provided inline
    kill_the_rest,  # child: provided inline
    scope_signals,  # child: provided inline
    trim_scratch,  # child: provided inline
)  # child: provided inline
from autograder.sandbox.wire import (  # child: provided inline
    decode,  # child: provided inline
    encode,  # child: provided inline
    recv_frame,  # child: provided inline
    send_frame,  # child: provided inline
)  # child: provided inline

_TRACE_CHARS = 2000
_INJECTED = ("get_ipython", "display")


def _apply_limits(limits: dict[str, int]) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    for name, key in (("RLIMIT_AS", "memory_bytes"), ("RLIMIT_FSIZE", "file_bytes")):
        value = limits.get(key, 0)
        if value > 0:
            resource.setrlimit(getattr(resource, name), (value, value))


def _limit_processes(limit: int) -> None:
    """Cap new processes for this user at what exists now plus `limit` (unenforced for root)."""
    if limit <= 0:
        return
    uid = os.getuid()
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    count += 1
            except OSError:
                pass
    hard = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    total = count + limit if hard == resource.RLIM_INFINITY else min(count + limit, hard)
    resource.setrlimit(resource.RLIMIT_NPROC, (total, total))


_FS_READ = (1 << 0) | (1 << 2) | (1 << 3)  # execute, read file, read dir
_FS_FILE = (1 << 0) | (1 << 1) | (1 << 2) | (1 << 14) | (1 << 15)  # rights that apply to files


def _landlock(readable: list[str], writable: list[str]) -> int:
    """Confine this process with Landlock; returns the ABI version applied (0: unavailable)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    create, add, restrict = 444, 445, 446  # the same numbers on x86_64 and aarch64
    abi = libc.syscall(create, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    if abi < 1:
        return 0
    handled = (1 << 13) - 1
    handled |= (1 << 13) if abi >= 2 else 0  # refer
    handled |= (1 << 14) if abi >= 3 else 0  # truncate
    handled |= (1 << 15) if abi >= 5 else 0  # ioctl on devices

    class Ruleset(ctypes.Structure):
        _fields_ = [("fs", ctypes.c_uint64), ("net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]

    class PathBeneath(ctypes.Structure):
        _pack_ = 1
        _fields_ = [("allowed", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]

    net = 0b11 if abi >= 4 else 0  # bind and connect TCP
    scoped = 0b11 if abi >= 6 else 0  # abstract unix sockets and signals
    ruleset = Ruleset(handled, net, scoped)
    size = 8 if abi < 4 else 16 if abi < 6 else 24
    fd = libc.syscall(create, ctypes.byref(ruleset), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if fd < 0:
        return 0
    try:
        rules = [(path, _FS_READ) for path in readable] + [(path, handled) for path in writable]
        for path, rights in rules:
            try:
                target = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                if not os.path.isdir(path):
                    rights &= _FS_FILE
                rule = PathBeneath(rights & handled, target)
                libc.syscall(add, fd, ctypes.c_int(1), ctypes.byref(rule), ctypes.c_uint32(0))
            finally:
                os.close(target)
        if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
            return 0
        if libc.syscall(restrict, fd, ctypes.c_uint32(0)) != 0:
            return 0
    finally:
        os.close(fd)
    return int(abi)


_PRELOAD = (
    "numpy.random",
    "numpy.linalg",
    "numpy.fft",
    "numpy.testing",
    "math",
    "random",
    "itertools",
    "functools",
    "collections",
    "typing",
    "dataclasses",
    "copy",
    "time",
    "warnings",
    "string",
    "operator",
    "statistics",
    "fractions",
    "decimal",
    "textwrap",
    "pprint",
)
"""What assignment code commonly imports. When the child switches user, those of these that
the cells mention are imported first: the new user may be unable to read the Python
installation (e.g. a Python under /root). Only this list: the cells never choose what is
imported with the grader's privileges."""


def _mentioned(cells: list[str]) -> list[str]:
    """The modules of `_PRELOAD` whose last name appears as a word in the cells (`np.testing`,
    `from numpy.testing import`, `import random`): importing the others would be wasted time."""
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", "\n".join(cells)))
    return [module for module in _PRELOAD if module.rsplit(".", 1)[-1] in words]


def _confine(plan: dict[str, Any], cells: list[str]) -> dict[str, Any]:
    """Apply the parent's confinement plan to this process, before any student code runs."""
    import importlib

    namespaces = plan.get("mode") == "namespaces"
    # Only what this process finds before confining itself counts: a module the grader finds
    # elsewhere (its PYTHONPATH, say) was never offered to student code.
    expected = [name for name in plan.get("importable", []) if _importable(name)]
    if plan.get("uid") is not None and not namespaces:
        for module in _mentioned(cells):
            try:
                importlib.import_module(module)
            except ImportError:
                pass
    if not namespaces:
        import ctypes

        ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: orphans come back
    abi = _landlock(plan["readable"], plan["writable"]) if plan.get("landlock") else 0
    if plan.get("uid") is not None:
        try:
            os.setgroups([])
            os.setgid(plan["gid"])
            os.setuid(plan["uid"])
        except OSError as error:
            raise _UidRefused(f"cannot switch to uid {plan['uid']}: {error}") from None
    elif plan.get("user_namespace"):
        drop_capabilities()  # those our user namespace gave us
    seccomp = deny_sockets()
    importlib.invalidate_caches()
    missing = [name for name in expected if not _importable(name)]
    return {
        "mode": plan.get("mode"),
        "landlock": abi,
        "seccomp": seccomp,
        "uid": os.getuid(),
        "missing": missing,
    }


class _UidRefused(Exception):
    """This host cannot run processes as the uid of the plan."""


def _importable(name: str) -> bool:
    """Whether this process can find and read module `name` (a first import would work)."""
    import importlib.util

    if name in sys.modules:
        return True
    try:
        spec = importlib.util.find_spec(name)
        if spec is None:
            return False
        if spec.origin and os.path.isfile(spec.origin):
            with open(spec.origin, "rb") as file:
                file.read(1)
    except (ImportError, OSError, ValueError):
        return False
    return True


def _describe_error(error: BaseException) -> dict[str, Any]:
    frames = [
        frame
        for frame in traceback.extract_tb(error.__traceback__)
        if frame.filename.startswith("<cell")
    ]
    lines = traceback.format_list(frames[-6:])
    if isinstance(error, SyntaxError):
        lines.append(f'  File "{error.filename}", line {error.lineno}\n    {error.text or ""}\n')
    try:
        message = str(error)
    except BaseException:
        message = "<unprintable message>"
    where = f"{frames[-1].filename}, line {frames[-1].lineno}" if frames else ""
    if isinstance(error, SyntaxError):
        where = f"{error.filename}, line {error.lineno}"
    return {
        "type": type(error).__name__,
        "bases": [cls.__name__ for cls in type(error).__mro__],
        "message": message[:_TRACE_CHARS],
        "where": where,
        "traceback": "".join(lines)[-_TRACE_CHARS:],
    }


class _NoIPython:
    """Stands in for `get_ipython()`: every method exists and does nothing."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


def _no_input(prompt: object = "") -> str:
    print(prompt, end="")
    return ""


def _namespace() -> dict[str, Any]:
    module = types.ModuleType("__main__")
    module.__dict__.update(
        {"get_ipython": _NoIPython, "display": print, "__builtins__": builtins}
        # the names must match _INJECTED
    )
    sys.modules["__main__"] = module
    builtins.input = _no_input
    return module.__dict__


def _leave_if_copy(owner: int) -> None:
    """End a copy of `owner` made by student code (a bare `os.fork()`): only the process that
    the grader started or forked may speak on its socket."""
    if os.getpid() != owner:
        try:
            sys.stdout.flush()
        finally:
            os._exit(0)


def _run_cells(
    control: socket.socket, cells: list[str], skip: set[int], ns: dict[str, Any]
) -> None:
    owner = os.getpid()
    for index, source in enumerate(cells):
        if index in skip:
            continue
        send_frame(control, {"event": "cell_start", "index": index})
        name = f"<cell {index + 1}>"
        linecache.cache[name] = (len(source), None, source.splitlines(True), name)
        error = None
        try:
            exec(_compile_cell(source, name), ns)
        except BaseException as raised:  # a cell's SystemExit or KeyboardInterrupt too
            error = _describe_error(raised)
        _leave_if_copy(owner)
        sys.stdout.flush()
        send_frame(control, {"event": "cell_done", "index": index, "error": error})


_RUN_BODY_MAGICS = ("%%time", "%%timeit", "%%capture", "%%prun")


def _without_ipython(source: str) -> str:
    """Neutralise IPython-only lines: magics, shell escapes and `name?` help requests."""
    lines = source.splitlines()
    if lines and lines[0].startswith("%%"):
        if lines[0].split()[0] not in _RUN_BODY_MAGICS:
            return ""
        lines[0] = ""
    for number, line in enumerate(lines):
        stripped = line.lstrip()
        if stripped.startswith(("%", "!")) or (stripped.endswith("?") and "#" not in stripped):
            lines[number] = line[: len(line) - len(stripped)] + "pass"
    return "\n".join(lines)


def _compile_cell(source: str, name: str) -> Any:
    """Compile a cell as Python; if that fails, retry without its IPython-only lines."""
    try:
        return compile(source, name, "exec")
    except SyntaxError:
        try:
            return compile(_without_ipython(source), name, "exec")
        except SyntaxError:
            pass
        raise


def _describe_names(ns: dict[str, Any]) -> list[dict[str, str]]:
    names = []
    for name, value in list(ns.items())[:500]:
        if name.startswith("_") or isinstance(value, types.ModuleType) or name in _INJECTED:
            continue
        kind = "class" if isinstance(value, type) else "function" if callable(value) else "value"
        try:
            signature = str(inspect.signature(value)) if kind != "value" else ""
        except (TypeError, ValueError):
            signature = ""
        names.append({"name": name, "kind": kind, "signature": signature[:200]})
    return names


def _resolve(target: dict[str, Any], ns: dict[str, Any], handles: dict[int, Any]) -> Any:
    if "handle" in target:
        value = handles[target["handle"]]
    else:
        name = target["name"]
        if name not in ns:
            raise NameError(f"name {name!r} is not defined")
        value = ns[name]
    for attr in filter(None, target.get("attr", "").split(".")):
        value = getattr(value, attr)
    return value


def _argument(node: Any, buffers: list[bytes], handles: dict[int, Any]) -> Any:
    """A call's argument: the object behind a handle of this worker, or decoded data."""
    if isinstance(node, dict) and node.get("t") == "handle":
        return handles[node["handle"]]
    return decode(node, buffers)


def _handle(
    header: dict[str, Any], buffers: list[bytes], ns: dict[str, Any], handles: dict[int, Any]
) -> tuple[Any, list[Any] | None]:
    op, target = header["op"], header["target"]
    if op == "get":
        attrs = header.get("attrs", [""])
        return tuple(_resolve(dict(target, attr=attr), ns, handles) for attr in attrs), None
    if op == "set":
        for attr, node in header["values"].items():
            path = attr.rsplit(".", 1)
            owner = _resolve(dict(target, attr=path[0] if len(path) == 2 else ""), ns, handles)
            setattr(owner, path[-1], decode(node, buffers))
        return None, None
    args = [_argument(node, buffers, handles) for node in header.get("args", [])]
    kwargs = {k: _argument(node, buffers, handles) for k, node in header.get("kwargs", {}).items()}
    result = _resolve(target, ns, handles)(*args, **kwargs)
    for attr, node in header.get("assign", {}).items():
        path = attr.rsplit(".", 1)
        owner = (
            _resolve({"name": "", "attr": path[0]}, {"": result}, handles)
            if len(path) == 2
            else result
        )
        setattr(owner, path[-1], decode(node, buffers))
    if header.get("keep"):
        handles[len(handles) + 1] = result
        kept = {"handle": len(handles), "type": type(result).__name__}
        then = header.get("then")
        if isinstance(then, dict):  # and call a method of what was kept, in the same trip
            method = _resolve({"handle": kept["handle"], "attr": then["attr"]}, ns, handles)
            then_args = [_argument(node, buffers, handles) for node in then.get("args", [])]
            then_kwargs = {
                k: _argument(node, buffers, handles) for k, node in then.get("kwargs", {}).items()
            }
            kept["then"] = method(*then_args, **then_kwargs)
        return kept, None
    return result, (args + list(kwargs.values())) if header.get("echo") else None


def _serve(sock: socket.socket, ns: dict[str, Any]) -> None:
    handles: dict[int, Any] = {}
    owner = os.getpid()
    while True:
        try:
            header, buffers = recv_frame(sock)
        except EOFError:
            return
        out: list[bytes] = []
        try:
            value, echoed = _handle(header, buffers, ns, handles)
            if isinstance(value, dict) and header.get("keep"):
                then = {"value": encode(value.pop("then"), out)} if "then" in value else {}
                body: dict[str, Any] = {"ok": True, "handle": value, **then}
            else:
                body = {"ok": True, "value": encode(value, out)}
            if echoed is not None:
                body["echo"] = [encode(item, out) for item in echoed]
        except BaseException as error:  # student code may raise anything, SystemExit included
            out = []
            body = {"ok": False, "error": _describe_error(error)}
        _leave_if_copy(owner)
        sys.stdout.flush()
        send_frame(sock, body, out)


def _zygote(
    control: socket.socket, ns: dict[str, Any], process_limit: int, plan: dict[str, Any]
) -> None:
    """Fork one worker per request; before and after each session, remove what was left."""
    children: set[int] = set()
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(control, 64, 4)
        except OSError:
            os._exit(0)
        words = message.decode(errors="replace").split()
        if not words or words[0] == "quit":
            os._exit(0)
        ident = words[1] if len(words) > 1 and words[1].isdigit() else ""
        if words[0] == "fork" and ident and len(fds) == 1:
            _clean_up(plan)  # every session starts with the zygote alone
            reply = _fork_worker(control, fds[0], ns, process_limit)
            os.close(fds[0])
            if "pid" in reply:
                children.add(reply["pid"])
            send_frame(control, {"id": int(ident), **reply})
        elif words[0] == "status" and ident and len(words) == 3 and words[2].isdigit():
            reply = _status(int(words[2]), children)
            _clean_up(plan)
            children.clear()
            send_frame(control, {"id": int(ident), **reply})
        else:
            for fd in fds:
                os.close(fd)
            send_frame(control, {"id": int(ident or 0), "error": "unknown request"})


def _clean_up(plan: dict[str, Any]) -> None:
    """Kill what the last session (or the top-level code) left running; in basic mode (no
    tmpfs bounds scratch), empty scratch if it holds more than it may."""
    if plan.get("sweep"):
        kill_the_rest()
    else:
        kill_descendants()
    if plan.get("mode") != "namespaces":
        trim_scratch(plan["workdir"], plan["scratch_bytes"], plan["scratch_files"])


def _fork_worker(
    control: socket.socket, fd: int, ns: dict[str, Any], process_limit: int
) -> dict[str, Any]:
    import time

    deadline = time.monotonic() + 2.0
    while True:
        try:
            pid = os.fork()
            break
        except BlockingIOError as error:  # processes of the last session still being reaped
            if time.monotonic() > deadline:
                return {"error": f"could not fork a worker ({error.strerror})"}
            time.sleep(0.01)
        except OSError as error:
            return {"error": f"could not fork a worker ({error.strerror})"}
    if pid == 0:
        try:
            control.close()
            os.setpgid(0, 0)
            scope_signals()  # the zygote, serving the other items, is out of reach
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            _limit_processes(process_limit)
            _serve(socket.socket(fileno=fd), ns)
            sys.stdout.flush()
        finally:
            os._exit(0)
    try:
        os.setpgid(pid, pid)
    except OSError:
        pass
    return {"pid": pid}


def _status(pid: int, children: set[int]) -> dict[str, Any]:
    if pid not in children:
        return {"exited": False, "code": None, "signal": None}
    import time

    # A killed worker is usually gone within a millisecond: poll often at first, then back
    # off, for half a second at most.
    delay, deadline = 0.0002, time.monotonic() + 0.5
    while True:
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            children.discard(pid)
            return {"exited": True, "code": None, "signal": None}
        if done:
            children.discard(pid)
            return {
                "exited": True,
                "code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
                "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
            }
        if time.monotonic() >= deadline:
            return {"exited": False, "code": None, "signal": None}
        time.sleep(delay)
        delay = min(2 * delay, 0.01)


def _unconfined(control: socket.socket, error: str, *, uid: bool = False) -> None:
    """Tell the grader this confinement mode (or uid) cannot work here, and leave."""
    try:
        send_frame(control, {"event": "unconfined", "error": error[:500], "uid": uid})
    finally:
        os._exit(1)


def main() -> None:
    control = socket.socket(fileno=int(sys.argv[1]))
    header, _ = recv_frame(control)
    limits, plan = header["limits"], header["confinement"]
    if plan.get("mode") == "namespaces":
        try:
            enter_namespaces(plan, control, lambda error: _unconfined(control, error))
        except (OSError, JailError) as error:
            _unconfined(control, str(error))
    _apply_limits(limits)
    try:
        confined = _confine(plan, header["cells"])
    except _UidRefused as error:
        _unconfined(control, str(error), uid=True)
    send_frame(control, {"event": "confined", **confined})
    ns = _namespace()
    _limit_processes(limits.get("processes", 0))
    _run_cells(control, header["cells"], set(header["skip"]), ns)
    send_frame(control, {"event": "ready", "names": _describe_names(ns)})
    _zygote(control, ns, limits.get("processes", 0), plan)


if __name__ == "__main__":
    main()
