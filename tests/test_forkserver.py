"""The fork server: a child it forks is the child `python -I -c ...` would have been.

Each probe below runs in a sandboxed child started both ways; what it finds must be the same
(but for the values that differ between any two children: pids, scratch folders, leased uids).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import nbformat
import pytest
from conftest import REFERENCE_SOURCE, RUBRIC

from autograder import drawn, sandbox, transcripts
from autograder.pipeline import grade
from autograder.sandbox import forkserver
from autograder.sandbox.forkserver import Forked
from autograder.settings import Limits

pytestmark = pytest.mark.slow

FAST = Limits(call_seconds=5.0, cell_seconds=5.0, notebook_seconds=30.0)

PROBES = {  # name -> the body of a function of no arguments, run in the child's worker
    "environment": "return sorted((k, v.replace(os.getcwd(), 'SCRATCH')) "
    "for k, v in os.environ.items())",
    "open-files": "return sorted(os.listdir('/proc/self/fd'))",
    "standard-input": "st = os.fstat(0)\n    return [sys.stdin.read(), stat.S_ISCHR(st.st_mode), "
    "os.major(st.st_rdev), os.minor(st.st_rdev)]",
    "working-folder": "return os.path.basename(os.getcwd()).startswith('autograder-')",
    "resource-limits": "return [resource.getrlimit(getattr(resource, n)) for n in "
    "('RLIMIT_AS', 'RLIMIT_CORE', 'RLIMIT_FSIZE', 'RLIMIT_NOFILE')]",
    "signal-dispositions": "return [str(signal.getsignal(s)) for s in "
    "(signal.SIGINT, signal.SIGPIPE, signal.SIGCHLD, signal.SIGTERM, signal.SIGALRM)]",
    "interpreter-flags": "return [sys.flags.isolated, sys.flags.no_user_site, sys.path, "
    "sys.argv[0], sys.executable]",
    "umask": "mask = os.umask(0)\n    os.umask(mask)\n    return mask",
    "user": "return [os.getuid() == os.geteuid(), os.getuid() != 0, os.getgroups()]",
    "main-module": "import __main__\n    "
    "return sorted(k for k in vars(__main__) if not k.startswith('__'))",
    "one-blas-thread": "return sorted(os.listdir('/proc/self/task'))",
    "capabilities": "return [line for line in open('/proc/self/status') if line.startswith('Cap')]",
    "stack-depth": "frame, depth = sys._getframe(), 0\n    while frame:\n"
    "        frame, depth = frame.f_back, depth + 1\n    return [depth, sys.getrecursionlimit()]",
    "no-new-privileges": "return [line for line in open('/proc/self/status') "
    "if line.startswith(('NoNewPrivs', 'Seccomp:'))]",
}


NEAR = {  # name -> (the body, as PROBES), how far apart the two may be
    "address-space-kib": (
        "return int([line.split()[1] for line in open('/proc/self/status') "
        "if line.startswith('VmSize')][0])",
        1024,
    ),
}
"""What cannot be equal to the byte, but must be close: the room left under the address-space
limit (a preloaded `numpy.random` took 9 MiB of it)."""


def _cells() -> list[str]:
    cells = ["import os, sys, resource, signal, stat\nimport numpy as np"]
    for name, body in [*PROBES.items(), *((n, b) for n, (b, _) in NEAR.items())]:
        cells.append(f"def {name.replace('-', '_')}():\n    {body}")
    return cells


def _probed(use_server: bool) -> tuple[dict[str, Any], str, type]:
    forkserver.enable(use_server)
    try:
        with sandbox.started(_cells(), limits=FAST) as (box, run):
            assert box is not None, run.failure
            pid = box.process.pid  # as the grader sees it: a session and a group of its own
            found: dict[str, Any] = {"session": [os.getsid(pid) == pid, os.getpgid(pid) == pid]}
            for name in [*PROBES, *NEAR]:
                with box.session() as session:
                    found[name] = session.call(name.replace("-", "_"))
            return found, run.confinement, type(box.process)
    finally:
        forkserver.enable(False)


@pytest.fixture(scope="module")
def both() -> tuple[tuple[dict[str, Any], str, type], tuple[dict[str, Any], str, type]]:
    return _probed(False), _probed(True)


@pytest.mark.parametrize("probe", ["session", *PROBES])
def test_a_forked_child_finds_what_a_started_one_finds(
    both: tuple[tuple[dict[str, Any], str, type], tuple[dict[str, Any], str, type]], probe: str
) -> None:
    (started, _, started_type), (forked, _, forked_type) = both
    assert (started_type, forked_type) == (subprocess.Popen, Forked)
    assert forked[probe] == started[probe]


@pytest.mark.parametrize("probe", NEAR)
def test_a_forked_child_is_close_to_a_started_one_in_what_cannot_be_equal(
    both: tuple[tuple[dict[str, Any], str, type], tuple[dict[str, Any], str, type]], probe: str
) -> None:
    (started, _, _), (forked, _, _) = both
    assert abs(forked[probe] - started[probe]) <= NEAR[probe][1], (forked[probe], started[probe])


def test_a_forked_child_is_confined_the_same_way(
    both: tuple[tuple[dict[str, Any], str, type], tuple[dict[str, Any], str, type]],
) -> None:
    (_, started, _), (_, forked, _) = both
    assert forked == started and started


@pytest.fixture
def served() -> Iterator[None]:
    forkserver.enable()
    try:
        yield
    finally:
        forkserver.enable(False)


def _call(cells: Sequence[str], name: str) -> tuple[Any, sandbox.Sandbox]:
    with sandbox.started(cells, limits=FAST) as (box, run):
        assert box is not None, run.failure
        with box.session() as session:
            return session.call(name), box


RANDOM = [
    "import random\nimport numpy as np\ndef draw():\n    return [np.random.rand(), random.random()]"
]


def test_every_forked_child_draws_random_numbers_of_its_own(served: None) -> None:
    first, second = (_call(RANDOM, "draw")[0] for _ in range(2))
    assert first[0] != second[0], "NumPy's global random state was not seeded again"
    assert first[1] != second[1], "Python's random was not seeded again"


def test_a_forked_child_is_reaped_when_its_sandbox_closes(served: None) -> None:
    _, box = _call(["def f():\n    return 1"], "f")
    assert isinstance(box.process, Forked)
    assert box.process.returncode is not None
    assert not os.path.exists(f"/proc/{box.process.pid}"), "left a zombie behind"


def test_a_killed_server_is_replaced_and_the_next_child_starts(served: None) -> None:
    assert _call(["def f():\n    return 1"], "f")[0] == 1
    first = forkserver.server_pid()
    assert first is not None
    os.kill(first, signal.SIGKILL)
    value, box = _call(["def f():\n    return 2"], "f")
    assert value == 2 and isinstance(box.process, Forked)
    assert forkserver.server_pid() not in (None, first)


def test_where_no_server_can_be_started_children_start_directly_and_it_is_given_up(
    served: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    tried: list[int] = []

    def refuse(*args: object, **kwargs: object) -> None:
        tried.append(1)
        raise OSError("no server here")

    monkeypatch.setattr(forkserver.ForkServer, "__init__", refuse)
    monkeypatch.setitem(forkserver._state, "failures", 0)
    for number in range(forkserver.GIVE_UP + 2):
        forkserver.enable()  # as batch does for every student: it does not undo giving up
        value, box = _call([f"def f():\n    return {number}"], "f")
        assert value == number and isinstance(box.process, subprocess.Popen)
    assert len(tried) == forkserver.GIVE_UP and not forkserver.enabled()


@pytest.mark.parametrize("when", ["spawn", "wait"])
def test_a_server_that_stops_answering_costs_no_child_and_is_replaced(
    served: None, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    """A server that answers too late is given up on at once: its late reply is never read
    as the answer to a later request, and the child being started is started afresh on a
    socket of its own (one the late server may have forked for is closed)."""
    assert _call(["def f():\n    return 1"], "f")[0] == 1
    server = forkserver.server_pid()
    assert server is not None
    monkeypatch.setattr(forkserver, "REPLY_SECONDS", 0.3)
    stopped = False
    box: sandbox.Sandbox | None
    try:
        if when == "spawn":
            os.kill(server, signal.SIGSTOP)
            stopped = True
            value, box = _call(["def f():\n    return 2"], "f")
            assert value == 2 and isinstance(box.process, subprocess.Popen)
        else:
            with sandbox.started(["def f():\n    return 2"], limits=FAST) as (box, run):
                assert box is not None, run.failure
                os.kill(server, signal.SIGSTOP)  # while the sandbox closes: `wait` gets no answer
                stopped = True
            assert box.process.returncode is not None, "the child was never counted as ended"
        assert box is not None
        if box.lease is not None:
            assert box.lease.fd < 0, "the child's uid was never given back"
    finally:
        if stopped and os.path.exists(f"/proc/{server}"):
            os.kill(server, signal.SIGCONT)
    monkeypatch.setattr(forkserver, "REPLY_SECONDS", 10.0)
    time.sleep(0.5)  # a late reply, had it been kept, would be waiting now
    value, box = _call(["def f():\n    return 3"], "f")
    assert value == 3 and isinstance(box.process, Forked)
    assert forkserver.server_pid() not in (None, server)
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{server}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{server}") or _zombie(server), "the late server lives on"


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="one CPU only")
def test_a_forked_child_keeps_to_the_cpus_of_the_thread_that_asked_for_it(served: None) -> None:
    before = os.sched_getaffinity(0)
    first, second = sorted(before)[:2]
    try:
        os.sched_setaffinity(0, {first})
        _call(["def f():\n    return 1"], "f")  # the server starts on `first`
        os.sched_setaffinity(0, {second})
        cell = "import os\ndef cpus():\n    return sorted(os.sched_getaffinity(0))"
        cpus, box = _call([cell], "cpus")
    finally:
        os.sched_setaffinity(0, before)
    assert isinstance(box.process, Forked)
    assert cpus == [second]


def _server_of_a_forked_process(queue: multiprocessing.Queue[Any]) -> None:
    _call(["def f():\n    return 4"], "f")
    queue.put(forkserver.server_pid())


def test_a_process_forked_from_the_grader_starts_a_server_of_its_own(served: None) -> None:
    _call(["def f():\n    return 1"], "f")
    ours = forkserver.server_pid()
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    process = context.Process(target=_server_of_a_forked_process, args=(queue,))
    process.start()
    theirs = queue.get(timeout=60)
    process.join(timeout=30)
    assert theirs not in (None, ours)
    assert forkserver.server_pid() == ours
    assert _call(["def f():\n    return 5"], "f")[0] == 5, "the forked process broke our server"
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{theirs}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{theirs}"), "its server outlived it"


BUGGY = REFERENCE_SOURCE.replace(" / np.sqrt(d_k)", "")


@pytest.mark.parametrize("source", [REFERENCE_SOURCE, BUGGY], ids=["correct", "no-scaling"])
def test_a_grade_is_the_same_whichever_way_the_child_started(tmp_path: Path, source: str) -> None:
    path = tmp_path / "attention.ipynb"
    book = nbformat.v4.new_notebook()
    book.cells = [nbformat.v4.new_code_cell(source)]
    path.write_text(nbformat.writes(book), encoding="utf-8")
    results = []
    for use_server in (False, True):
        drawn.forget()
        transcripts.forget()
        forkserver.enable(use_server)
        try:
            result = grade(path, rubric=RUBRIC)
        finally:
            forkserver.enable(False)
        results.append((result.items, result.notes, result.output, result.confinement))
    assert results[0] == results[1]
