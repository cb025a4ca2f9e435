"""Confinement: the modes the grader chooses, the pieces each relies on, and what they refuse."""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from autograder import sandbox
from autograder.errors import SandboxError
from autograder.sandbox import NotebookRun, Session, _jail, confinement, launch, modes
from autograder.sandbox.drain import Drain
from autograder.sandbox.processes import children, scanned_children, signal_name
from autograder.settings import Limits

FAST = Limits(call_seconds=3.0, cell_seconds=3.0, notebook_seconds=20.0)
ROOT = os.geteuid() == 0


def in_a_child(action: Callable[[], int]) -> int:
    """Run `action` in a forked process (confinement is for good); return its result."""
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            code = action()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@contextmanager
def a_session(cells: list[str]) -> Iterator[tuple[NotebookRun, Session]]:
    """A session of a sandbox that ran `cells` (which must leave it ready)."""
    with sandbox.started(cells, limits=FAST) as (box, run):
        assert box is not None, run.failure
        with box.session() as session:
            yield run, session


def _deny_then_try_sockets() -> int:
    """0: sockets denied and socket pairs still work; 1: a socket was created; 2: pairs broke."""
    if not _jail.deny_sockets():
        return 3
    for family, kind in (
        (socket.AF_INET, socket.SOCK_DGRAM),
        (socket.AF_INET6, socket.SOCK_DGRAM),
        (socket.AF_UNIX, socket.SOCK_STREAM),
        (socket.AF_NETLINK, socket.SOCK_RAW),
    ):
        try:
            socket.socket(family, kind).close()
            return 1
        except PermissionError:
            pass
    try:
        left, right = socket.socketpair()
        left.sendall(b"x")
        return 0 if right.recv(1) == b"x" else 2
    except OSError:
        return 2


def test_seccomp_denies_every_socket_family_but_keeps_socket_pairs() -> None:
    assert in_a_child(_deny_then_try_sockets) == 0


@pytest.mark.skipif(not ROOT, reason="uids are leased only when the grader runs as root")
def test_leased_uids_are_distinct_while_held_and_free_again_after() -> None:
    uids = range(confinement.SANDBOX_UIDS.start, confinement.SANDBOX_UIDS.start + 2)
    first = confinement.lease_uid(uids)
    second = confinement.lease_uid(uids)
    assert first.uid != second.uid
    with pytest.raises(SandboxError, match="All 2 sandbox uids are in use"):
        confinement.lease_uid(uids)
    first.release()
    third = confinement.lease_uid(uids)
    assert third.uid == first.uid
    second.release()
    third.release()


@pytest.mark.parametrize(
    ("number", "name"),
    [(9, "SIGKILL"), (11, "SIGSEGV"), (40, "SIGRTMIN+6 (signal 40)"), (200, "signal 200")],
    ids=["kill", "segv", "real-time-40", "out-of-range"],
)
def test_every_signal_number_gets_a_name(number: int, name: str) -> None:
    assert signal_name(number) == name


def test_the_output_drain_stops_while_another_process_holds_the_pipe() -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time; print('hi', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE,
    )
    assert holder.stdout is not None
    try:
        drain = Drain(holder.stdout, 1000)
        drain.start()
        time.sleep(0.5)
        began = time.monotonic()
        drain.stop(wait=0.1)
        assert time.monotonic() - began < 3
        assert not drain.is_alive() and drain.text() == "hi\n"
    finally:
        holder.kill()
        holder.wait()


def test_an_unknown_confinement_mode_is_refused_with_the_choices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AUTOGRADER_CONFINEMENT", "jail")
    with (
        pytest.raises(SandboxError, match="'jail' is not a confinement mode; use one of"),
        sandbox.started(["x = 1"], limits=FAST),
    ):
        pass


def namespaces_work() -> bool:
    """Whether this host lets us make the namespaces (and no other mode is forced)."""
    if os.environ.get("AUTOGRADER_CONFINEMENT", "namespaces") != "namespaces":
        return False
    probe = subprocess.run(
        ["unshare", "--pid", "--net", "--mount", "--fork", "true"]
        if ROOT
        else ["unshare", "--user", "--pid", "--net", "--mount", "--fork", "true"],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


@pytest.mark.skipif(not namespaces_work(), reason="this host refuses namespaces")
def test_namespaces_are_chosen_where_the_host_allows_them() -> None:
    with a_session(["import os\ndef me():\n    return os.getpid()"]) as (run, session):
        assert run.confinement.startswith("namespaces (pid, net, mount)"), run.confinement
        assert session.call("me") == session.inner != session.pid  # numbered in its namespace


@pytest.mark.skipif(not namespaces_work(), reason="this host refuses namespaces")
def test_the_child_sees_a_root_of_python_and_system_folders_only(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("42")
    os.chmod(tmp_path, 0o755)
    probe = "import os\ndef seen(paths):\n    return [os.path.exists(p) for p in paths]\n"
    visible = [sys.prefix, "/usr/lib", "/etc/passwd", "/dev/null", "/proc/self"]
    hidden = [str(tmp_path / "secret.txt"), "/run", "/var", "/home", str(Path.home() / ".bashrc")]
    with a_session([probe]) as (_, session):
        assert session.call("seen", visible) == [True] * len(visible)
        assert session.call("seen", hidden) == [False] * len(hidden)


@pytest.mark.skipif(not ROOT, reason="the child switches user only when the grader is root")
def test_without_namespaces_an_unreadable_python_is_refused_with_what_to_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = confinement.unreadable_folder("timeit")
    if folder is None:
        pytest.skip("Python is readable by other users here: basic mode can grade")
    monkeypatch.setattr(modes, "REFUSED", {})
    monkeypatch.setenv("AUTOGRADER_CONFINEMENT", "basic")
    with pytest.raises(SandboxError) as refused, sandbox.started(["x = 1"], limits=FAST):
        pass
    message = str(refused.value)
    assert f"the sandbox user cannot import timeit: {folder} is closed to other users" in message
    assert "Unset it to let the grader choose" in message


def test_when_no_mode_works_the_message_says_what_to_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(modes, "REFUSED", {"namespaces": "unshare: Operation not permitted"})
    monkeypatch.delenv("AUTOGRADER_CONFINEMENT", raising=False)
    with pytest.raises(SandboxError) as refused:
        modes.refuse(modes.Unconfined("basic", "the sandbox user cannot import timeit"))
    message = str(refused.value)
    assert "namespaces mode failed (unshare: Operation not permitted)" in message
    assert "basic mode failed (the sandbox user cannot import timeit)" in message
    assert "Allow namespaces" in message and "install Python in folders" in message


@pytest.mark.skipif(not namespaces_work(), reason="this host refuses namespaces")
def test_namespaces_through_a_user_namespace_as_without_root(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The path a grader that is not root takes: a user namespace mapping our own uid, then the
    same namespaces and root, with every capability dropped before student code runs."""
    real_plan = confinement.plan

    def without_root(**kwargs: object) -> confinement.Plan:
        made = real_plan(**kwargs)  # type: ignore[arg-type]
        return dataclasses.replace(made, uid=None, gid=None, user_namespace=True, sweep=True)

    monkeypatch.setattr(launch, "plan", without_root)
    monkeypatch.setattr(modes, "UNIQUE_UIDS", [False])
    monkeypatch.setattr(launch, "sandbox_user", lambda: None)
    monkeypatch.setenv("AUTOGRADER_CONFINEMENT", "namespaces")
    probe = (
        "import os, socket\n"
        "def me():\n"
        "    caps = [l for l in open('/proc/self/status') if l.startswith('CapEff')]\n"
        "    return os.getpid(), caps[0].split()[1], sorted(os.listdir('/proc'))[0]\n"
    )
    with a_session([probe]) as (run, session):
        assert run.confinement.startswith("namespaces"), run.confinement
        pid, capabilities, first = session.call("me")
        assert (pid, capabilities, first) == (session.inner, "0000000000000000", "1")


@pytest.mark.parametrize(
    ("files", "size", "emptied"),
    [(3, 1000, False), (3, 40_000, True), (20, 10, True)],
    ids=["within-limits", "too-many-bytes", "too-many-files"],
)
def test_scratch_over_its_bounds_is_emptied_where_no_tmpfs_bounds_it(
    tmp_path: Path, files: int, size: int, emptied: bool
) -> None:
    (tmp_path / "sub").mkdir()
    for index in range(files):
        (tmp_path / "sub" / f"f{index}").write_bytes(b"x" * size)
    assert _jail.trim_scratch(str(tmp_path), max_bytes=64_000, max_files=10) is emptied
    assert (list(tmp_path.iterdir()) == []) is emptied


def test_the_default_secrets_are_the_solutions_and_the_whole_grader_package() -> None:
    import autograder
    from autograder.reference import solutions_dir

    grader = Path(autograder.__file__).resolve().parent
    assert sandbox.default_secrets() == (solutions_dir(), grader)


@pytest.fixture
def beside_numpy() -> Iterator[Path]:
    """A world-readable file in the folder that holds NumPy (which the child may read), as an
    exercise package installed next to the grader would be."""
    folder = Path(np.__file__).resolve().parent.parent / f"_autograder_exercise_{os.getpid()}"
    folder.mkdir(mode=0o755)
    reference = folder / "reference.py"
    reference.write_text("ANSWER = 42\n")
    reference.chmod(0o644)
    try:
        yield reference
    finally:
        reference.unlink()
        folder.rmdir()


READS = (
    "def reads(path):\n"
    "    try:\n"
    "        return open(path).read()\n"
    "    except OSError:\n"
    "        return ''"
)


@pytest.mark.parametrize(
    ("hide", "seen"),
    [("nothing", "ANSWER = 42\n"), ("folder", ""), ("file", "")],
    ids=["no-extra-secret", "its-folder", "the-file-itself"],
)
def test_extra_secrets_are_unreadable_even_beside_numpy(
    beside_numpy: Path, hide: str, seen: str
) -> None:
    extra = {"nothing": (), "folder": (beside_numpy.parent,), "file": (beside_numpy,)}[hide]
    with sandbox.started([READS], limits=FAST, extra_secrets=extra) as (box, run):
        assert box is not None, run.failure
        with box.session() as session:
            assert session.call("reads", str(beside_numpy)) == seen
            assert session.call("reads", np.__file__).startswith('"""')  # NumPy stays readable


def test_children_are_the_kernels_list_and_agree_with_a_full_scan() -> None:
    """The grader finds a worker among the zygote's children: the kernel's per-thread lists
    give the same processes as reading every process's parent, and a process with none (or
    one that is gone) has none."""
    started = [
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) for _ in range(3)
    ]
    try:
        mine = sorted(children(os.getpid()))
        assert sorted(process.pid for process in started) == [
            pid for pid in mine if pid in {process.pid for process in started}
        ]
        assert mine == sorted(scanned_children(os.getpid()))
        assert children(started[0].pid) == []
    finally:
        for process in started:
            process.kill()
            process.wait()
    assert children(started[0].pid) == []  # gone: nothing, not an error
