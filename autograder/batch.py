"""Grading a whole class: find every submission, grade them in parallel, write what staff need.

Layouts found under DIR (the first that matches):

* nbgrader: `submitted/{student}/{assignment}/*.ipynb` (DIR is the course or `submitted/`);
* one folder per student (e.g. a Gradescope "export submissions" folder): `{student}/...`;
* a flat folder of notebooks: `{student}.ipynb`.

Staff-only evidence of shared wrong answers goes to `OUT/{student}/answers.json` (`evidence.py`,
compared by `likeness.py`), never into what a student sees.

Each student gets `OUT/{student}/results.json` and `OUT/{student}/feedback.md`; `OUT/grades.csv`
(or `--csv`) has one row per student. A result records the SHA-256 of what it graded and the
fingerprint of the grader that graded it (`fingerprint.py`), so an interrupted batch resumes
without regrading what is done, and a change to the rubric, a tolerance, the reference or any
other part of the grader regrades everyone. Discovery and hashing never follow a link or open
anything but a regular file: a submission that is a link, a FIFO or a device is still listed,
and its grading says why it was refused. Grading runs on any
`concurrent.futures.Executor`: a process pool here, or a distributed engine's executor
(e.g. Dask's `client.get_executor()`, which `batch --scheduler` makes: `cluster.py`) on a
cluster, whose workers grade only if their grader has the batch's fingerprint.
"""

from __future__ import annotations

import csv
import hashlib
import json
import multiprocessing
import os
import shutil
import socket
import stat
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from autograder import catalog, transcripts
from autograder.errors import ConfigError, SubmissionError
from autograder.evidence import ANSWERS_FILE, evidence_of, write_answers
from autograder.fingerprint import grader_fingerprint
from autograder.markup import code, escaped, terminal
from autograder.pipeline import grade, ungraded
from autograder.report import render_failure, write_results
from autograder.rubric import Rubric
from autograder.sandbox import forkserver
from autograder.sandbox.cpu import keep_to
from autograder.scoring import GradeResult
from autograder.submission import read_regular, refusal

if TYPE_CHECKING:
    from multiprocessing.sharedctypes import Synchronized

__all__ = ["Entry", "Outcome", "discover", "grade_all", "write_csv"]


@dataclass(frozen=True)
class Entry:
    """One student's submission."""

    student: str
    path: Path
    """A notebook, a .py file, or a folder holding one."""

    def digest(self) -> str:
        """SHA-256 of the submitted files, to tell a regrade from a resume.

        Regular files count by name and content; anything else (a link, a FIFO, a file over
        the size limit) by name and what it is, without following or opening it."""
        digest = hashlib.sha256()
        for file in _entries(self.path):
            try:
                info = os.lstat(file)
                content = read_regular(file) if stat.S_ISREG(info.st_mode) else None
            except (OSError, SubmissionError) as error:
                content = f"\0unreadable: {error}".encode()
            if content is None:
                content = f"\0{refusal(file, info)}".encode()
            digest.update(file.name.encode("utf-8", "surrogateescape") + b"\0" + content)
        return digest.hexdigest()


def _entries(path: Path) -> list[Path]:
    """`path` itself, or everything in the folder that is not a folder, without following
    links (a link to a folder is an entry, not a folder)."""
    if not _is_folder(path):
        return [path]
    found = []
    for root, folders, names in os.walk(path, followlinks=False):
        found += [Path(root) / name for name in names]
        found += [Path(root) / name for name in folders if os.path.islink(Path(root) / name)]
    return sorted(found)


def _is_folder(path: Path) -> bool:
    """A real folder (not a link to one)."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


@dataclass(frozen=True)
class Outcome:
    """A student's scores, as written to the CSV."""

    student: str
    scores: dict[str, float]
    total: float
    max_total: float
    resumed: bool = False
    """Kept from an earlier run: same files, same grader."""
    grader_changed: bool = False
    """Graded again although the files had not changed, because the grader had."""


def _notebooks(folder: Path) -> list[Path]:
    """The `*.ipynb` entries of `folder` that are not real folders (links and FIFOs included,
    to be refused by name when graded)."""
    return sorted(
        p for p in folder.glob("*.ipynb") if not p.name.startswith(".") and not _is_folder(p)
    )


def _holds_notebook(folder: Path) -> bool:
    for _, _, names in os.walk(folder, followlinks=False):
        if any(name.endswith(".ipynb") for name in names):
            return True
    return False


def discover(folder: Path, *, assignment: str) -> list[Entry]:
    """Every submission under `folder`, sorted by student; raises when there is none."""
    if not folder.is_dir():
        raise SubmissionError(f"No folder at {folder}: give the folder of submissions.")
    submitted = folder / "submitted" if _is_folder(folder / "submitted") else folder
    nbgrader = [
        Entry(student.name, student / assignment if _is_folder(student) else student)
        for student in sorted(submitted.iterdir())
        if os.path.lexists(student / assignment)
    ]
    if nbgrader:
        return nbgrader
    per_student = [
        Entry(child.name, child)
        for child in sorted(folder.iterdir())
        if not child.name.startswith(".")
        and child.is_dir()  # a link to a folder counts: its grading refuses it, by name
        and (child.is_symlink() or _holds_notebook(child))
    ]
    if per_student:
        return per_student
    flat = [Entry(path.stem, path) for path in _notebooks(folder)]
    if flat:
        return flat
    raise SubmissionError(
        f"No submissions found in {folder}: expected submitted/STUDENT/{assignment}/*.ipynb, "
        "one folder per student, or one notebook per student."
    )


@dataclass(frozen=True)
class _Key:
    """What a stored result was graded from: the submission's files and the grader."""

    submission: str
    grader: str


def _own_cpu(turns: Synchronized[int]) -> None:
    """A pool worker keeps to a CPU of its own: the next one, in the order workers start."""
    with turns.get_lock():
        turn = turns.value
        turns.value += 1
    keep_to(turn)


SHARED_RUNS = ".transcripts"
"""The folder of OUT through which the batch's workers share failing runs (`transcripts.py`):
made when grading starts, removed when it ends."""


def _grade_one(entry: Entry, exercise: str, out: Path, key: _Key) -> GradeResult:
    """Grade one entry and write its files (runs in a worker process, which finds the
    exercise by the same name or folder, perhaps on another machine: it grades only if its
    grader is the one that started the batch, or the scores would depend on the worker).
    Failing runs are shared with the other workers through `OUT/.transcripts`: a student whose
    code answers as an earlier one's, on another worker, gets that run's outcome too."""
    found = catalog.find(exercise)
    here = grader_fingerprint(found)
    if here != key.grader:
        raise ConfigError(
            f"The grader on {socket.gethostname()} is not the one that started the batch "
            f"(fingerprint {here[:12]}, expected {key.grader[:12]}): give every worker the same "
            "grader, exercise, reference, grading secret and versions of Python, NumPy, "
            "Hypothesis and nbformat, then run the batch again."
        )
    transcripts.share(out / SHARED_RUNS, grader=key.grader)
    forkserver.enable()  # one student after another: fork each child from a ready Python
    result = grade(entry.path, rubric=catalog.graded_rubric(found), evidence=True)
    folder = out / entry.student
    _write_student(folder, result, key)
    return result


def _write_student(folder: Path, result: GradeResult, key: _Key) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "feedback.md").write_text(_feedback(result), encoding="utf-8")
    extra = {"submission_sha256": key.submission, "grader_fingerprint": key.grader}
    write_answers(folder / ANSWERS_FILE, evidence_of(result))  # staff only, before results
    write_results(folder / "results.json", result, extra=extra)


def _feedback(result: GradeResult) -> str:
    lines = [
        f"# Feedback on {code(result.submission)}",
        "",
        f"**{result.score:g} / {result.max_score:g} points**",
        "",
    ]
    lines += [f"- {escaped(note)}" for note in result.notes]
    for item in result.items:
        mark = "passed" if item.passed else "failed"
        heading = f"{escaped(item.title)} ({item.score:g}/{item.max_score:g}, {mark})"
        lines += ["", f"## {heading}", ""]
        if item.failure is not None:
            lines.append(render_failure(item.failure))
    return "\n".join(lines) + "\n"


def _done(folder: Path, key: _Key) -> Outcome | bool:
    """The stored outcome if it was graded from `key`; else whether only the grader differs."""
    path = folder / "results.json"
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        stored = document["extra_data"]
        if stored["submission_sha256"] != key.submission:
            return False
        if stored.get("grader_fingerprint") != key.grader:
            return True
        scores = {
            t["extra_data"]["id"]: float(t["score"])
            for t in document["tests"]
            if "id" in t.get("extra_data", {})
        }
        total = float(document["score"])
        max_total = sum(float(t["max_score"]) for t in document["tests"])
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return Outcome(folder.name, scores, total, max_total, resumed=True)


def _outcome(student: str, result: GradeResult, *, grader_changed: bool) -> Outcome:
    scores = {item.id: item.score for item in result.items}
    return Outcome(student, scores, result.score, result.max_score, grader_changed=grader_changed)


class Progress:
    """A progress bar on a terminal, one line per submission otherwise."""

    def __init__(self, total: int, stream: IO[str] = sys.stderr) -> None:
        self.total, self.stream, self.done = total, stream, 0
        self.tty = stream.isatty()

    def update(self, outcome: Outcome) -> None:
        self.done += 1
        note = " (already graded)" if outcome.resumed else ""
        student = terminal(outcome.student)
        if self.tty:
            filled = int(30 * self.done / max(self.total, 1))
            self.stream.write(
                f"\r[{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total} "
                f"{student[:30]:30}"
            )
            if self.done == self.total:
                self.stream.write("\n")
        else:
            self.stream.write(
                f"{self.done}/{self.total} {student}: {outcome.total:g}/"
                f"{outcome.max_total:g}{note}\n"
            )
        self.stream.flush()


def grade_all(
    entries: Sequence[Entry],
    *,
    out: Path,
    exercise: str,
    jobs: int | None = None,
    executor: Executor | None = None,
    on_done: Callable[[Outcome], None] | None = None,
    started: Callable[[], None] | None = None,
) -> list[Outcome]:
    """Grade `entries` into `out`, skipping those already graded from the same files by the
    same grader (`grader_fingerprint`).

    `started` is called once every pending submission is handed to the executor, when its
    workers are running (so this process may start a thread then: no worker is forked from
    it afterwards).

    Uses `executor` if given (any `concurrent.futures.Executor`), else a process pool of
    `jobs` workers (default: the number of cores). Results do not depend on either.
    `exercise` is the exercise's name or folder, as `catalog.find` takes it.
    """
    found = catalog.find(exercise)
    exercise = catalog.portable(exercise)  # what the workers find it by
    rubric = found.rubric
    grader = grader_fingerprint(found)
    outcomes: dict[str, Outcome] = {}
    pending: list[tuple[Entry, _Key, bool]] = []
    for entry in entries:
        key = _Key(entry.digest(), grader)
        previous = _done(out / entry.student, key)
        if isinstance(previous, Outcome):
            outcomes[entry.student] = previous
            if on_done:
                on_done(previous)
        else:
            pending.append((entry, key, previous))
    shared = out / SHARED_RUNS  # for this run's workers only: what an older one left goes
    if shared.is_symlink() or (shared.exists() and not shared.is_dir()):
        shared.unlink()  # never through a link
    shutil.rmtree(shared, ignore_errors=True)
    shared.mkdir(parents=True, exist_ok=True)
    shared.chmod(0o700)  # the grader's alone: it holds inputs and other students' feedback
    own = executor is None
    pool = executor or ProcessPoolExecutor(
        max_workers=jobs or os.cpu_count() or 1,
        initializer=_own_cpu,
        initargs=(multiprocessing.Value("i", 0),),
    )
    try:
        futures: dict[Future[GradeResult], tuple[Entry, _Key, bool]] = {
            pool.submit(_grade_one, entry, exercise, out, key): (entry, key, grader_changed)
            for entry, key, grader_changed in pending
        }
        if started is not None and futures:
            started()
        for future in as_completed(futures):
            entry, key, grader_changed = futures[future]
            result = _result_of(future, rubric, entry, out, key)
            outcomes[entry.student] = _outcome(entry.student, result, grader_changed=grader_changed)
            if on_done:
                on_done(outcomes[entry.student])
    finally:
        if own:
            pool.shutdown(cancel_futures=True)
        shutil.rmtree(shared, ignore_errors=True)
    return [outcomes[entry.student] for entry in entries]


def _result_of(
    future: Future[GradeResult], rubric: Rubric, entry: Entry, out: Path, key: _Key
) -> GradeResult:
    try:
        return future.result()
    except (BrokenProcessPool, Exception) as error:  # a worker died: record it, keep going
        result = ungraded(
            rubric,
            entry.path.name,
            f"the autograder failed ({type(error).__name__}); your instructor has the details.",
            internal_error=repr(error),
        )
        _write_student(out / entry.student, result, _Key("", key.grader))
        return result


def write_csv(path: Path, outcomes: Sequence[Outcome], rubric: Rubric) -> None:
    """One row per student: a column per rubric item, then the total."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ids = [item.id for item in rubric.items]
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(["student", *ids, "total", "max_total"])
        for outcome in outcomes:
            writer.writerow(
                [
                    outcome.student,
                    *(f"{outcome.scores.get(i, 0):g}" for i in ids),
                    f"{outcome.total:g}",
                    f"{outcome.max_total:g}",
                ]
            )


def summary(outcomes: Sequence[Outcome], seconds: float) -> str:
    graded = [o for o in outcomes if not o.resumed]
    rate = f", {seconds / len(graded):.2f} s per submission" if graded else ""
    stale = sum(o.grader_changed for o in graded)
    why = f" ({stale} because the grader changed)" if stale else ""
    return (
        f"{len(outcomes)} submissions: {len(graded)} graded{why}, "
        f"{len(outcomes) - len(graded)} already done, in {seconds:.1f} s{rate}."
    )
