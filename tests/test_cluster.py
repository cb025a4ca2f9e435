"""Grading on Dask (`batch --scheduler`): same files, same scores, resume, and clear errors."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from conftest import REFERENCE_SOURCE, ROOT
from test_batch import CLASS, make_class, notebook

from autograder.batch import Outcome, discover, grade_all, write_csv
from autograder.catalog import rubric_of
from autograder.cluster import dask_executor
from autograder.errors import ConfigError


@pytest.fixture
def distributed() -> Any:
    return pytest.importorskip("distributed")


def batch(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "autograder", "batch", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        timeout=600,
    )


def stable(results: Path) -> dict[str, Any]:
    """A results.json without what differs between two gradings of the same files: the time
    taken and the uid the sandbox leased."""
    document: dict[str, Any] = json.loads(results.read_text(encoding="utf-8"))
    document.pop("execution_time")
    extra = document.get("extra_data", {})
    if "confinement" in extra:
        extra["confinement"] = re.sub(r"uid \d+", "uid N", extra["confinement"])
    return document


@pytest.fixture
def flat_class(tmp_path: Path) -> Path:
    course = tmp_path / "flat"
    notebook(course / "alice.ipynb", REFERENCE_SOURCE)
    return course


@pytest.fixture
def without_dask(tmp_path: Path) -> dict[str, str]:
    """An environment in which `import distributed` fails as it does where Dask is absent."""
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "distributed.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'distributed'\", name='distributed')\n",
        encoding="utf-8",
    )
    return {"PYTHONPATH": str(shadow)}


@pytest.mark.parametrize("scheduler", ["local", "tcp://127.0.0.1:8786"], ids=["local", "address"])
def test_without_dask_the_flag_says_how_to_install_it(
    flat_class: Path, tmp_path: Path, without_dask: dict[str, str], scheduler: str
) -> None:
    out = tmp_path / "out"
    done = batch(str(flat_class), "--out", str(out), "--scheduler", scheduler, env=without_dask)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("error: batch --scheduler needs Dask, which is not installed")
    assert 'pip install -e ".[dask]"' in done.stderr
    assert not (tmp_path / "out").exists()


@pytest.fixture
def refusing_port() -> Any:
    """A 127.0.0.1 port that refuses connections: bound by us, never listening."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.mark.parametrize(
    ("address", "message", "advice"),
    [
        (
            "nonsense",
            "--scheduler 'nonsense' is not a Dask scheduler's address (missing port",
            "give tcp://HOST:PORT (or tls://HOST:PORT), or local to start a cluster here.",
        ),
        (
            "udp://127.0.0.1:1",
            "--scheduler 'udp://127.0.0.1:1' is not a Dask scheduler's address (unknown address",
            "give tcp://HOST:PORT (or tls://HOST:PORT), or local to start a cluster here.",
        ),
        (
            "tcp://127.0.0.1:{port}",
            "Could not reach the Dask scheduler at tcp://127.0.0.1:{port} (Timed out",
            "(and, for tls://, Dask's TLS configuration), or use --scheduler local.",
        ),
    ],
    ids=["no-port", "unknown-protocol", "nobody-listens"],
)
def test_a_bad_scheduler_is_one_clear_error(
    distributed: Any,
    flat_class: Path,
    tmp_path: Path,
    refusing_port: int,
    address: str,
    message: str,
    advice: str,
) -> None:
    address = address.format(port=refusing_port)
    out = tmp_path / "out"
    quick = {"DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "1s"}
    done = batch(str(flat_class), "--out", str(out), "--scheduler", address, env=quick)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith(f"error: {message.format(port=refusing_port)}"), done.stderr
    assert done.stderr.endswith(f"{advice}\n"), done.stderr


def test_a_scheduler_without_workers_is_one_clear_error(distributed: Any) -> None:
    with distributed.LocalCluster(n_workers=0, host="127.0.0.1", dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        with (
            pytest.raises(ConfigError, match=f"The Dask scheduler at {address} has no worker"),
            dask_executor(address, workers=1, wait_seconds=0.5),
        ):
            pass


def test_workers_with_several_threads_are_refused(distributed: Any) -> None:
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=2, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        (worker,) = cluster.scheduler_info["workers"]
        with (
            pytest.raises(ConfigError, match=f"The Dask worker {worker} of .* runs several"),
            dask_executor(cluster.scheduler_address, workers=1),
        ):
            pass


@pytest.mark.slow
def test_dask_grades_a_class_as_the_process_pool_does_and_resumes(
    distributed: Any, tmp_path: Path
) -> None:
    course = make_class(tmp_path / "course")
    pool = grade_all(
        discover(course, assignment="attention"),
        out=tmp_path / "pool",
        exercise="attention",
        jobs=2,
    )
    write_csv(tmp_path / "pool.csv", pool, rubric_of("attention"))

    args = (str(course), "--scheduler", "local", "--jobs", "2", "--out", str(tmp_path / "dask"))
    first = batch(*args)
    assert first.returncode == 0, first.stderr
    assert "4 submissions: 4 graded, 0 already done" in first.stdout, first.stdout
    assert "Warning" not in first.stderr, first.stderr
    for student in CLASS:
        ours, theirs = tmp_path / "dask" / student, tmp_path / "pool" / student
        assert stable(ours / "results.json") == stable(theirs / "results.json"), student
        assert (ours / "feedback.md").read_text() == (theirs / "feedback.md").read_text()
    assert (tmp_path / "dask" / "grades.csv").read_text() == (tmp_path / "pool.csv").read_text()

    again = batch(*args)
    assert again.returncode == 0, again.stderr
    assert "4 submissions: 0 graded, 4 already done" in again.stdout, again.stdout
    assert (tmp_path / "dask" / "grades.csv").read_text() == (tmp_path / "pool.csv").read_text()

    # A cluster that runs already, reached by its address.
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, host="127.0.0.1", dashboard_address=None
    ) as cluster:
        remote = batch(
            str(course), "--scheduler", cluster.scheduler_address, "--out", str(tmp_path / "remote")
        )
    assert remote.returncode == 0, remote.stderr
    assert "4 submissions: 4 graded, 0 already done" in remote.stdout, remote.stdout
    for student in CLASS:
        ours, theirs = tmp_path / "remote" / student, tmp_path / "pool" / student
        assert stable(ours / "results.json") == stable(theirs / "results.json"), student


SLEEPER = "import time\ntime.sleep(10)"
"""A top-level cell that keeps its grading running long enough to kill its worker."""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("allowed_failures", "bob"),
    [(0, 0.0), (3, 100.0)],
    ids=["not-retried-recorded-as-failed", "retried-on-the-restarted-worker"],
)
def test_a_dead_worker_costs_its_student_at_most_and_the_batch_goes_on(
    distributed: Any, tmp_path: Path, allowed_failures: int, bob: float
) -> None:
    course = tmp_path / "flat"
    notebook(course / "alice.ipynb", REFERENCE_SOURCE)
    notebook(course / "bob.ipynb", SLEEPER, REFERENCE_SOURCE)
    notebook(course / "carol.ipynb", REFERENCE_SOURCE)
    entries = discover(course, assignment="attention")
    dask = pytest.importorskip("dask")
    alice_done = threading.Event()

    def on_done(outcome: Outcome) -> None:
        if outcome.student == "alice":
            alice_done.set()

    # One worker running one grading at a time, in submission order. A task whose worker dies
    # runs again on the restarted worker up to allowed-failures times (Dask's default is 3);
    # past that, the student whose grading was running is recorded as failed.
    config = {
        "distributed.scheduler.allowed-failures": allowed_failures,
        "distributed.scheduler.worker-saturation": 1.0,
    }
    with (
        dask.config.set(config),
        distributed.LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as client,
    ):
        (pid,) = client.run(os.getpid).values()

        def kill_bobs_worker() -> None:
            assert alice_done.wait(300)
            deadline = time.monotonic() + 60
            while not any(client.processing().values()) and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(2)  # bob's grading has begun: his notebook sleeps for 10 s
            os.kill(pid, signal.SIGKILL)

        killer = threading.Thread(target=kill_bobs_worker, daemon=True)
        killer.start()
        outcomes = grade_all(
            entries,
            out=tmp_path / "out",
            exercise="attention",
            executor=client.get_executor(pure=False),
            on_done=on_done,
        )
        killer.join(5)
    assert {o.student: o.total for o in outcomes} == {"alice": 100, "bob": bob, "carol": 100}
    document = json.loads((tmp_path / "out" / "bob" / "results.json").read_text())
    failed = "the autograder failed (KilledWorker)" in document["output"]
    assert failed == (bob == 0), document["output"]

    # Only a student recorded as failed is graded again by the next run.
    again = grade_all(entries, out=tmp_path / "out", exercise="attention", jobs=1)
    assert [(o.student, o.resumed, o.total) for o in again] == [
        ("alice", True, 100),
        ("bob", not failed, 100),
        ("carol", True, 100),
    ]


@pytest.mark.slow
def test_a_worker_with_another_grader_grades_nobody(tmp_path: Path) -> None:
    """Workers that see another grading secret (so they would draw other examples) refuse to
    grade, and nothing they did is taken for a result."""
    course = tmp_path / "flat"
    notebook(course / "alice.ipynb", REFERENCE_SOURCE)
    notebook(course / "bob.ipynb", "x = 1")
    entries = discover(course, assignment="attention")
    other = tmp_path / "other-solutions"
    other.mkdir()
    (other / "attention.py").write_text(REFERENCE_SOURCE, encoding="utf-8")
    (other / "grading_secret.txt").write_text("0" * 64 + "\n", encoding="utf-8")
    moved = ("AUTOGRADER_SOLUTIONS", str(other))
    with ProcessPoolExecutor(1, initializer=os.environ.__setitem__, initargs=moved) as elsewhere:
        outcomes = grade_all(
            entries, out=tmp_path / "out", exercise="attention", executor=elsewhere
        )
    assert [(o.student, o.total) for o in outcomes] == [("alice", 0), ("bob", 0)]
    for student in ("alice", "bob"):
        document = json.loads((tmp_path / "out" / student / "results.json").read_text())
        assert "the autograder failed (ConfigError)" in document["output"]
        details = document["tests"][-1]["output"]
        assert "is not the one that started the batch" in details, details
    # Nothing was stored as graded: the next run (with the right grader) grades both.
    regraded = grade_all(entries, out=tmp_path / "out", exercise="attention", jobs=1)
    assert [(o.student, o.resumed, o.total) for o in regraded] == [
        ("alice", False, 100),
        ("bob", False, 0),
    ]
