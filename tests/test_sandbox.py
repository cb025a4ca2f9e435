"""The sandbox, for real: a child process runs the cells once and forks a worker per session."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from autograder import sandbox
from autograder.sandbox import NotebookRun, Opaque, Sandbox, StudentRaised, WorkerLost, _child
from autograder.sandbox.confinement import sandbox_user
from autograder.settings import LIMITS, Limits

FAST = Limits(call_seconds=2.0, cell_seconds=2.0, notebook_seconds=20.0)


@contextmanager
def ready(cells: Sequence[str], limits: Limits = FAST) -> Iterator[tuple[Sandbox, NotebookRun]]:
    with sandbox.started(cells, limits=limits) as (box, run):
        assert box is not None, run.failure
        yield box, run


@pytest.fixture
def box() -> Iterator[Sandbox]:
    cells = [
        "import numpy as np, os, time\nopen('ran.txt', 'a').write('x')",
        "def double(a, scale=2):\n    return a * scale, a.sum()",
        "def runs():\n    return len(open('ran.txt').read())",
        "def hang():\n    while True: pass",
        "def die():\n    os._exit(7)",
        "def boom():\n    raise KeyError('k')",
        "def shout():\n    print('x' * 100000)\n    return 1",
        "def grow(a):\n    a += 1\n    return None",
        "class Box:\n    def __init__(self, n):\n        self.n = n\n"
        "        self.w = np.zeros(n)\n    def total(self):\n        return self.w.sum() + self.n",
        "def huge():\n    return np.ones(2**40)",
    ]
    with ready(cells) as (started_box, _):
        yield started_box


def test_calls_pass_arrays_both_ways(box: Sandbox) -> None:
    with box.session() as session:
        out, total = session.call("double", np.arange(3.0), scale=3)
    assert np.array_equal(out, [0.0, 3.0, 6.0]) and total == 3.0


def test_top_level_code_runs_once_for_every_session(box: Sandbox) -> None:
    for _ in range(3):
        with box.session() as session:
            assert session.call("runs") == 1


def test_student_exception_is_reported_with_its_type(box: Sandbox) -> None:
    with box.session() as session, pytest.raises(StudentRaised) as raised:
        session.call("boom")
    assert raised.value.type_name == "KeyError" and raised.value.is_a("LookupError")
    assert "<cell 6>" in raised.value.where


def test_missing_name_raises_name_error(box: Sandbox) -> None:
    with box.session() as session, pytest.raises(StudentRaised, match="NameError"):
        session.call("nope")


def test_hang_costs_the_session_only(box: Sandbox) -> None:
    began = time.monotonic()
    with box.session() as session:
        with pytest.raises(WorkerLost, match="did not return within 2 s"):
            session.call("hang")
        with pytest.raises(WorkerLost):
            session.call("runs")  # the session is over
    assert time.monotonic() - began < 6
    with box.session() as session:
        assert session.call("runs") == 1


def test_crash_is_reported_and_next_session_works(box: Sandbox) -> None:
    with box.session() as session, pytest.raises(WorkerLost, match="exit code 7"):
        session.call("die")
    with box.session() as session:
        assert session.call("runs") == 1


def test_item_deadline_limits_the_session(box: Sandbox) -> None:
    began = time.monotonic()
    with box.session(deadline=began + 0.5) as session:
        with pytest.raises(WorkerLost, match="the time for this check ran out during a call"):
            session.call("hang")
        assert time.monotonic() - began < 1.5  # the item's 0.5 s, not the call's 2 s
        with pytest.raises(WorkerLost, match="the time for this check ran out"):
            session.call("runs")


def test_printing_does_not_disturb_the_protocol(box: Sandbox) -> None:
    with box.session() as session:
        assert session.call("shout") == 1
    time.sleep(0.2)
    assert len(box.output()) < FAST.output_bytes + 200


def test_echo_shows_arguments_changed_in_place(box: Sandbox) -> None:
    with box.session() as session:
        result, (after,) = session.call("grow", np.zeros(2), echo=True)
    assert result is None and np.array_equal(after, [1.0, 1.0])


def test_objects_stay_in_the_worker_behind_handles(box: Sandbox) -> None:
    with box.session() as session:
        handle = session.call("Box", 2, keep=True)
        session.set(handle, {"w": np.array([1.0, 2.0])})
        assert session.get(handle, "n", "w.size") == (2, 2)
        assert session.call(handle, attr="total") == 5.0


def test_memory_limit_turns_huge_allocation_into_memory_error(box: Sandbox) -> None:
    with box.session() as session, pytest.raises(StudentRaised) as raised:
        session.call("huge")
    assert raised.value.is_a("MemoryError")


def test_child_runs_numpy_with_one_blas_thread() -> None:
    cell = "import os\ndef threads():\n    return os.environ.get('OPENBLAS_NUM_THREADS')"
    with ready([cell]) as (box, _), box.session() as session:
        assert session.call("threads") == "1"


def test_cell_errors_are_reported_and_later_cells_still_run() -> None:
    cells = ["a = 1", "b = 1/0", "def f(:", "import sys; sys.exit(3)", "c = a + 1"]
    with ready(cells) as (_, run):
        assert [cell.error_type for cell in run.cells] == [
            "",
            "ZeroDivisionError",
            "SyntaxError",
            "SystemExit",
            "",
        ]
        assert run.cells[1].where == "<cell 2>, line 1"
        assert {d.name for d in run.definitions} >= {"a", "c"}


def test_ipython_syntax_is_skipped_not_fatal() -> None:
    cells = [
        "%matplotlib inline\nimport numpy as np\n!pip install foo\nnp.sum?\nx = input('name? ')",
        "%%bash\nrm -rf /",
        "%%time\ny = 2",
        "get_ipython().run_line_magic('load_ext', 'autoreload')",
    ]
    with ready(cells) as (box, run), box.session() as session:
        assert all(cell.ok for cell in run.cells), run.cells
        assert session.get("x") == ("",)
        assert session.get("y") == (2,)


def world_readable(path: Path) -> bool:
    """Whether every folder down to `path` lets other users in (as a sandbox user needs)."""
    return all(p.stat().st_mode & stat.S_IXOTH for p in [*path.parents, path] if p.is_dir())


def test_matplotlib_runs_headless_when_installed() -> None:
    """Even where the sandbox user could not read the Python installation (here, under a
    /root of mode 0700): the child sees it through its own root, or the grader refuses."""
    matplotlib = pytest.importorskip("matplotlib")
    cell = "import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.savefig('p.png')\nok = True"
    with ready([cell]) as (_, run):
        assert run.cells[0].ok, run.cells[0].message
    if sandbox_user() is not None and not world_readable(Path(matplotlib.__file__).parent):
        assert run.confinement.startswith("namespaces"), run.confinement


def test_common_imports_work_at_call_time_whoever_runs_the_child() -> None:
    """Imports the cells make only inside functions still work after the switch of user,
    even where that user cannot read the Python installation."""
    cell = (
        "import numpy as np\n"
        "def f():\n"
        "    from numpy.testing import assert_allclose\n"
        "    import statistics, fractions\n"
        "    assert_allclose(np.fft.fft(np.ones(2))[0], 2)\n"
        "    return statistics.mean([1, 2]) + float(fractions.Fraction(1, 2))"
        " + np.random.default_rng(0).random() * 0"
    )
    with ready([cell]) as (box, _), box.session() as session:
        assert session.call("f") == 2.0


@pytest.mark.parametrize(
    ("cells", "preloaded"),
    [
        (["import numpy as np\nx = np.zeros(3)"], []),
        (["np.testing.assert_allclose(a, b)"], ["numpy.testing"]),
        (["def f():\n    from numpy.random import default_rng"], ["numpy.random", "random"]),
        (["import math", "import copy"], ["math", "copy"]),
        (["print('os.system, antigravity, this')"], []),
    ],
    ids=["numpy-only", "np-testing", "import-in-function", "two-cells", "not-on-the-list"],
)
def test_only_common_modules_the_cells_mention_are_preloaded(
    cells: list[str], preloaded: list[str]
) -> None:
    assert _child._mentioned(cells) == preloaded


def test_hanging_top_level_cell_is_skipped_and_the_rest_runs() -> None:
    with ready(["a = 1", "while True: pass", "b = a + 1"]) as (box, run), box.session() as session:
        assert "did not finish" in run.cells[1].skipped
        assert session.get("b") == (2,)


def test_top_level_exit_of_the_process_is_skipped() -> None:
    with ready(["import os", "os._exit(0)", "b = 5"]) as (box, run), box.session() as session:
        assert run.cells[1].skipped and session.get("b") == (5,)


def test_too_many_bad_cells_leave_the_notebook_unusable() -> None:
    limits = Limits(cell_seconds=0.5, notebook_seconds=20.0, cell_restarts=1)
    with sandbox.started(["while True: pass", "while True: pass"], limits=limits) as (box, run):
        assert box is None and not run.ready
        assert "cell 2" in run.failure


def test_notebook_time_limit_is_total() -> None:
    limits = Limits(cell_seconds=5.0, notebook_seconds=1.0)
    began = time.monotonic()
    with sandbox.started(["import time\ntime.sleep(30)"], limits=limits) as (box, run):
        assert box is None and "did not finish" in run.failure
    assert time.monotonic() - began < 10


@pytest.mark.skipif(
    os.geteuid() == 0 and sandbox_user() is None,
    reason="the child would run as root, for whom RLIMIT_NPROC is not enforced",
)
def test_process_limit_stops_a_fork_bomb() -> None:
    cells = ["import os\ndef bomb():\n    while True:\n        os.fork()"]
    with ready(cells, Limits(call_seconds=5.0)) as (box, _):
        with box.session() as session, pytest.raises(StudentRaised) as raised:
            session.call("bomb")
        assert raised.value.is_a("BlockingIOError"), raised.value  # fork: no more processes
        with box.session() as session:  # the bomb's processes are gone: a worker forks again
            assert session.call("os", attr="getpid") == session.inner


def test_file_size_limit_turns_a_huge_file_into_an_error() -> None:
    cells = ["def write(n):\n    with open('big', 'wb') as file:\n        file.write(b'x' * n)"]
    with (
        ready(cells) as (box, _),
        box.session() as session,
        pytest.raises(StudentRaised) as raised,
    ):
        session.call("write", FAST.file_bytes + 1)
    assert raised.value.is_a("OSError") and "File too large" in raised.value.message


def test_default_limits_are_generous_enough_for_numpy() -> None:
    cell = "import numpy as np\nx = np.ones((1000, 1000)) @ np.ones((1000, 10))"
    with ready([cell], LIMITS) as (_, run):
        assert run.cells[0].ok, run.cells[0].message


DICT_CELLS = [
    "import collections\nimport numpy as np",
    "def cache(n):\n"
    "    return {'k': np.ones((n, 2)), 'v': np.zeros((n, 2), dtype=np.float32), 'len': n}",
    "def doubled(d):\n    return {key: value * 2 for key, value in d.items()}",
    "def kind(value):\n    return type(value).__name__",
    "def fill(d):\n    d['new'] = np.ones(1)",
    "class Keeper:\n    def __init__(self):\n        self.state = {'k': np.arange(3.0)}",
    "class Liar(dict):\n"
    "    __class__ = property(lambda self: dict)\n"
    "    def items(self):\n        raise RuntimeError('items')\n"
    "    def keys(self):\n        raise RuntimeError('keys')\n"
    "    def __hash__(self):\n        raise RuntimeError('hash')\n"
    "    def __eq__(self, other):\n        return True\n"
    "    def __repr__(self):\n        raise RuntimeError('repr')",
    "RETURNS = {\n"
    "    'ordered': lambda: collections.OrderedDict(k=np.ones(1)),\n"
    "    'defaultdict': lambda: collections.defaultdict(list),\n"
    "    'subclass': lambda: Liar(k=1),\n"
    "    'tuple-key': lambda: {(0, 1): np.ones(1)},\n"
    "    'self-containing': lambda: (lambda d: d.update(me=d) or d)({}),\n"
    "}\n"
    "def returns(what):\n    return RETURNS[what]()",
]


@pytest.fixture(scope="module")
def dicts() -> Iterator[Sandbox]:
    with ready(DICT_CELLS) as (box, _):
        yield box


def test_a_dict_of_arrays_returned_by_the_student_arrives_as_a_dict(dicts: Sandbox) -> None:
    with dicts.session() as session:
        got = session.call("cache", 2)
    assert isinstance(got, dict) and list(got) == ["k", "v", "len"]
    assert got["k"].dtype == np.float64 and np.array_equal(got["k"], np.ones((2, 2)))
    assert got["v"].dtype == np.float32 and got["v"].shape == (2, 2) and got["len"] == 2


def test_a_dict_argument_arrives_in_the_student_s_code_as_a_dict(dicts: Sandbox) -> None:
    with dicts.session() as session:
        assert session.call("kind", {"k": np.ones(1)}) == "dict"
        got = session.call("doubled", {"k": np.arange(2.0), 3: 1.5})
        _, (after,) = session.call("fill", {"old": 1}, echo=True)
    assert list(got) == ["k", 3] and np.array_equal(got["k"], [0.0, 2.0]) and got[3] == 3.0
    assert list(after) == ["old", "new"] and np.array_equal(after["new"], [1.0])


def test_a_dict_attribute_is_read_and_set_as_a_dict(dicts: Sandbox) -> None:
    with dicts.session() as session:
        keeper = session.call("Keeper", keep=True)
        (state,) = session.get(keeper, "state")
        session.set(keeper, {"state": {"k": np.zeros(1), "n": 1}})
        (changed,) = session.get(keeper, "state")
    assert isinstance(state, dict) and np.array_equal(state["k"], [0.0, 1.0, 2.0])
    assert list(changed) == ["k", "n"] and np.array_equal(changed["k"], [0.0])


@pytest.mark.parametrize(
    ("what", "type_name", "text"),
    [
        ("ordered", "collections.OrderedDict", "OrderedDict("),
        ("defaultdict", "collections.defaultdict", "defaultdict(<class 'list'>, {})"),
        ("subclass", "Liar", "<unprintable>"),
        ("tuple-key", "dict", "{(0, 1): array([1.])}"),
    ],
    ids=["ordered-dict", "defaultdict", "subclass-with-lying-methods", "tuple-key"],
)
def test_a_dict_the_wire_does_not_carry_arrives_opaque_and_the_worker_goes_on(
    dicts: Sandbox, what: str, type_name: str, text: str
) -> None:
    with dicts.session() as session:
        got = session.call("returns", what)
        assert session.call("kind", 1) == "int"  # the same worker still answers
    assert isinstance(got, Opaque) and (got.type_name, got.repr[: len(text)]) == (type_name, text)


def test_a_dict_that_holds_itself_arrives_cut_at_the_depth_limit(dicts: Sandbox) -> None:
    with dicts.session() as session:
        got = session.call("returns", "self-containing")
    for _ in range(6):
        assert isinstance(got, dict) and list(got) == ["me"]
        got = got["me"]
    assert got == Opaque("dict", "{'me': {...}}")


@pytest.mark.skipif(
    len(os.sched_getaffinity(0)) < 2, reason="one CPU only: there is nothing to keep to"
)
def test_a_grading_keeps_to_one_cpu_and_gives_the_others_back() -> None:
    """The grader's thread and every process of the sandbox share one CPU while it runs (they
    take turns); the thread may use all its CPUs again once the sandbox is closed."""
    before = os.sched_getaffinity(0)
    cell = "import os\ndef cpus():\n    return sorted(os.sched_getaffinity(0))"
    with sandbox.started([cell]) as (box, run):
        assert box is not None, run.failure
        ours = os.sched_getaffinity(0)
        with box.session() as session:
            theirs = session.call("cpus")
    assert len(ours) == 1 and ours <= before
    assert theirs == sorted(ours)
    assert os.sched_getaffinity(0) == before


# --- a session that follows a script: an earlier session's requests, sent ahead ------------

SCRIPTED = [
    "import time\ncalls = []",
    "def stamp(x):\n    calls.append(x)\n    return time.monotonic(), x, len(calls)",
]


def _stamps(box: Sandbox, **how: object) -> list[tuple[float, float, int, int]]:
    """Five calls of stamp(x), a pause before each after the first: (asked at, answered at, x,
    calls seen by then)."""
    out = []
    with box.session(**how) as session:  # type: ignore[arg-type]
        for x in range(5):
            if x:
                time.sleep(0.3)
            asked = time.monotonic()
            answered, echoed, seen = session.call("stamp", x)
            out.append((asked, answered, echoed, seen))
        assert session.followed is ("script" in how)
    return out


def test_a_script_is_sent_ahead_and_answered_as_the_session_it_was_recorded_in() -> None:
    with ready(SCRIPTED) as (box, _):
        record: list[bytes] = []
        plain = _stamps(box, record=record)
        assert len(record) == 5
        assert all(answered > asked for asked, answered, _, _ in plain)  # one turn per call
        scripted = _stamps(box, script=record)
    assert (
        [row[2:] for row in scripted]
        == [row[2:] for row in plain]
        == [(x, x + 1) for x in range(5)]
    )
    # Every call after the first was answered before the checks asked for it, in the pause.
    assert all(answered < asked for asked, answered, _, _ in scripted[1:])


COUNTED = ["calls = []", "def count(x):\n    calls.append(x)\n    return x, len(calls)"]


def test_a_transcript_keeps_each_request_and_its_reply_digest_and_repeat_makes_it_again() -> None:
    with ready(COUNTED) as (box, _):
        transcript: list[tuple[bytes, bytes]] = []
        with box.session(transcript=transcript) as session:
            for x in (0, 1, 2):
                assert session.call("count", x) == (x, x + 1)
        assert len(transcript) == 3 and len({reply for _, reply in transcript}) == 3
        with box.session() as session:  # a fresh worker asked the same: the same replies...
            replies = [session.repeat(request) for request, _ in transcript[:2]]
            assert replies == [reply for _, reply in transcript[:2]]
            # ... and a request made again in the same worker: another reply (its count)
            assert session.repeat(transcript[0][0]) != transcript[0][1]
        with (
            box.session(deadline=time.monotonic() - 1) as session,
            pytest.raises(WorkerLost, match="time for this check ran out"),
        ):
            session.repeat(transcript[0][0])


@pytest.mark.parametrize(
    ("calls", "diverged"),
    [((0, 1, 7), True), ((0, 1, 2, 3), True), ((0, 1), False)],
    ids=["another-request", "one-request-more", "fewer-requests"],
)
def test_a_session_that_leaves_its_script_is_lost_or_not_followed(
    calls: tuple[int, ...], diverged: bool
) -> None:
    with ready(SCRIPTED) as (box, _):
        record: list[bytes] = []
        with box.session(record=record) as session:
            for x in (0, 1, 2):
                session.call("stamp", x)
        with box.session(script=record) as session:
            for x in calls[:2]:
                assert session.call("stamp", x)[1:] == (x, x + 1)
            if diverged:
                with pytest.raises(WorkerLost, match="left the script"):
                    for x in calls[2:]:
                        session.call("stamp", x)
            assert session.diverged is diverged and not session.followed
