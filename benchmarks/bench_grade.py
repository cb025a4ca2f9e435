"""How fast is grading? Run by hand: `python benchmarks/bench_grade.py`.

Grades three attention submissions and two KV-cache ones, each a student notebook (the released
notebook with its answer cells filled in, so its own check cells and demos run too), each in a
fresh `python -m autograder grade` process, exactly as Gradescope would. It reports per
submission: wall time, CPU time (grader, sandbox and workers together), examples checked per
second, and peak memory of the whole process tree (sampled every 5 ms). Targets (issue 3): a
correct vectorised submission in <= 2 s wall and <= 1.5 s CPU, <= 250 MB peak; a correct
loop-based one in <= 60 s; a correct KV-cache notebook no slower than a correct attention one;
issue 18: a correct notebook in <= 0.8 s CPU with what the Gradescope zip ships (its solutions/
folder, which holds the cases each item draws: `autograder/shipped.py`). `--bare` grades
without them (the reference and the secret only), as a zip built with drawn=False would.
`--repeat N` grades each submission N times, in turns (so that a machine's drift over minutes
falls on every row alike), and reports the medians (peak memory: the largest).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = (ROOT / "solutions" / "attention.py").read_text(encoding="utf-8")

LOOPS = (ROOT / "tests" / "implementations" / "correct_loops.py").read_text(encoding="utf-8")
"""A correct implementation written with explicit Python loops (the slowest style)."""

KV_REFERENCE = (ROOT / "solutions" / "kv_cache.py").read_text(encoding="utf-8")
KV_CHUNKS = (ROOT / "tests" / "implementations" / "kv_cache" / "correct_chunk_list.py").read_text(
    encoding="utf-8"
)

SUBMISSIONS = {  # name: (exercise, the student's code)
    "correct, vectorised": ("attention", REFERENCE),
    "correct, explicit loops": ("attention", LOOPS),
    "buggy (no 1/sqrt(d_k))": ("attention", REFERENCE.replace(" / np.sqrt(d_k)", "")),
    "kv_cache: correct": ("kv_cache", KV_REFERENCE),
    "kv_cache: correct, chunk list": ("kv_cache", KV_CHUNKS),
}

ANSWER_CELLS = {  # exercise: (its release, the answer cell the code goes in, the other ones)
    "attention": (
        ROOT / "release" / "attention" / "attention.ipynb",
        "sdpa",
        ("causal_mask", "mha"),
    ),
    "kv_cache": (
        ROOT / "release" / "kv_cache" / "kv_cache.ipynb",
        "kv_cache",
        ("mha", "kv_cache_bytes", "decoding_score_count"),
    ),
}


def tree_rss(root: int) -> int:
    """Resident memory of `root` and all its descendants, in bytes."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            parents[int(entry)] = int(fields[1])
            rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    family, changed = {root}, True
    while changed:
        grown = family | {pid for pid, parent in parents.items() if parent in family}
        changed, family = grown != family, grown
    return sum(rss.get(pid, 0) for pid in family)


def student_notebook(
    source: str, path: Path, exercise: str = "attention", *, release: Path | None = None
) -> Path:
    """The released notebook (`release`, by default the committed one), with `source` in the
    first answer cell (the others say so)."""
    committed, first, others = ANSWER_CELLS[exercise]
    notebook = nbformat.read(str(release or committed), as_version=4)
    for cell in notebook.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id == first:
            cell.source = source
        elif grade_id in others:
            cell.source = "# implemented above"
    nbformat.write(notebook, str(path))
    return path


class CpuMeter:
    """CPU time of a process and everything it starts, namespaced descendants included.

    The sandbox's own init reaps the student's processes inside their PID namespace, so the
    grader's RUSAGE_CHILDREN never hears of them: where this process may create a cgroup (root,
    cgroup v1 cpuacct or v2), the graded process runs in one of its own and its usage is read
    from there; elsewhere RUSAGE_CHILDREN is the fallback (and undercounts namespace mode)."""

    def __init__(self) -> None:
        self.group: Path | None = None
        for parent, usage in (
            (Path("/sys/fs/cgroup/cpuacct"), "cpuacct.usage"),
            (Path("/sys/fs/cgroup"), "cpu.stat"),
        ):
            if (parent / usage).exists() or (parent / "cgroup.controllers").exists():
                group = parent / f"bench-grade-{os.getpid()}-{time.monotonic_ns()}"
                try:
                    group.mkdir()
                except OSError:
                    continue
                self.group, self.usage = group, group / usage
                break
        self.before = resource.getrusage(resource.RUSAGE_CHILDREN)

    def enter(self) -> None:
        """In the child, before exec: join the cgroup."""
        if self.group is not None:
            procs = "tasks" if self.usage.name == "cpuacct.usage" else "cgroup.procs"
            (self.group / procs).write_text(str(os.getpid()))

    def seconds(self) -> float:
        if self.group is None:
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            return (after.ru_utime - self.before.ru_utime) + (after.ru_stime - self.before.ru_stime)
        text = self.usage.read_text()
        if self.usage.name == "cpuacct.usage":
            used = int(text) / 1e9
        else:
            used = int(text.split("usage_usec")[1].split()[0]) / 1e6
        self.group.rmdir()
        return used


def measure(source: str, folder: Path, exercise: str = "attention") -> dict[str, float]:
    submission = student_notebook(source, folder / f"{exercise}.ipynb", exercise)
    results = folder / "results.json"
    meter = CpuMeter()
    began = time.perf_counter()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "autograder",
            "grade",
            str(submission),
            "--results",
            str(results),
            "--exercise",
            exercise,
            "--quiet",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        preexec_fn=meter.enter,
    )
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss(process.pid))
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    process.wait()
    wall = time.perf_counter() - began
    done.set()
    sampler.join()
    cpu = meter.seconds()
    document = json.loads(results.read_text(encoding="utf-8"))
    examples = sum(
        int(test["output"].split("Passed on ")[1].split()[0])
        for test in document["tests"]
        if test["output"].startswith("Passed on ")
    )
    return {
        "wall": wall,
        "cpu": cpu,
        "peak_mb": peak / 2**20,
        "score": document["score"],
        "examples": examples,
    }


def compile_like_setup() -> None:
    """Byte-compile the grader and the reference, as Gradescope's setup.sh does once per image;
    otherwise a machine that never writes bytecode (PYTHONDONTWRITEBYTECODE) would time
    compiling them into every grade."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "compileall",
            "-q",
            str(ROOT / "autograder"),
            str(ROOT / "solutions"),
        ],
        check=True,
    )


def prepare_shipped(folder: Path, *, drawn: bool = True) -> Path:
    """Build each exercise's Gradescope zip, unpack their `solutions/` into `folder/solutions`
    and point this process (and the grades it starts) at it, as run_autograder does."""
    from autograder import catalog
    from autograder.packaging import build_zip

    solutions = folder / "solutions"
    for exercise in sorted({exercise for exercise, _ in SUBMISSIONS.values()}):
        archive = folder / f"{exercise}.zip"
        build_zip(archive, exercise=catalog.find(exercise), drawn=drawn)
        with zipfile.ZipFile(archive) as opened:
            for name in opened.namelist():
                if name.startswith("solutions/"):
                    target = folder / name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(opened.read(name))
    os.environ["AUTOGRADER_SOLUTIONS"] = str(solutions)
    return solutions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--bare", action="store_true", help="grade without the drawn cases the zip ships"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, metavar="N", help="grade each one N times (medians)"
    )
    options = parser.parse_args()
    compile_like_setup()
    print(f"{'submission':28} {'score':>6} {'wall s':>7} {'cpu s':>7} {'ex/s':>7} {'peak MB':>8}")
    with tempfile.TemporaryDirectory() as scratch:
        prepare_shipped(Path(scratch), drawn=not options.bare)
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in SUBMISSIONS}
        for _ in range(max(1, options.repeat)):
            for name, (exercise, source) in SUBMISSIONS.items():
                runs[name].append(measure(source, Path(scratch), exercise))
        for name, measured in runs.items():
            row = {key: statistics.median(run[key] for run in measured) for key in measured[0]}
            row["peak_mb"] = max(run["peak_mb"] for run in measured)
            rate = row["examples"] / row["wall"] if row["examples"] else 0.0
            print(
                f"{name:28} {row['score']:6g} {row['wall']:7.2f} {row['cpu']:7.2f} "
                f"{rate:7.0f} {row['peak_mb']:8.0f}"
            )
    print(
        "\nCPU counts the grader, the sandbox and its workers (from a cgroup of its own where "
        "one can be made; else the grader's RUSAGE_CHILDREN, which misses processes reaped "
        "inside the sandbox's PID namespace). 'ex/s' counts the examples of passed items only "
        "(a failed item stops at its first, shrunk, failure)."
    )


if __name__ == "__main__":
    main()
