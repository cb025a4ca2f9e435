"""Our batch grader against the real `nbgrader autograde`, on the same class, in one run.

Run by hand: `python benchmarks/bench_class.py [--students 40]`. It builds a throwaway nbgrader
course from `source/`, releases it with `nbgrader generate_assignment`, and fills the released
notebook for each student with one of: the correct vectorised solution, a correct loop-based
one, a buggy one (one common mistake each), or a hostile one (wrong code that monkeypatches
NumPy's comparison helpers). Then it grades the class with `nbgrader autograde` (the notebook's
visible and hidden tests, in the student's kernel) and with `python -m autograder batch
--jobs 1` and `--jobs 2`, and prints wall time per submission, the speed-up, whether each tool
gave the expected verdicts, and how often the two tools rank a pair of students differently.
`--correct-only` grades a class of correct vectorised notebooks only (issue 18's "CPU per
correct notebook"). CPU counts each tool and everything it starts (bench_grade.CpuMeter).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_grade import LOOPS, REFERENCE, CpuMeter, student_notebook

ROOT = Path(__file__).resolve().parent.parent

MISTAKES = {
    "no-scaling": (" / np.sqrt(d_k)", ""),
    "softmax-queries": ("max(axis=-1", "max(axis=-2"),
    "mask-inverted": ("np.asarray(mask) != 0", "np.asarray(mask) == 0"),
    "mask-ignored": ("scores = np.where(np.asarray(mask) != 0, scores, MASK_VALUE)", "pass"),
    "causal-transposed": ("np.tril(np.ones", "np.triu(np.ones"),
    "no-out-proj": ("return self.out_proj(concat)", "return concat"),
    "no-head-axis": ("            if mask.ndim == 3:", "            if False:"),
    "float-head-dim": ("embed_dim // num_heads", "embed_dim / num_heads"),
    "no-valueerror": ("raise ValueError(", "print("),
    "concat-no-transpose": ("attended.transpose(0, 2, 1, 3).reshape(", "attended.reshape("),
}

HOSTILE = """
import numpy as np, numpy.testing
np.allclose = lambda *a, **k: True
np.array_equal = lambda *a, **k: True
np.all = lambda *a, **k: True
numpy.testing.assert_allclose = lambda *a, **k: None
def scaled_dot_product_attention(Q, K, V, mask=None):
    Q += 1.0
    w = np.zeros(Q.shape[:-1] + K.shape[-2:])
    return np.zeros(Q.shape[:-1] + V.shape[-1:]), w
def create_causal_mask(seq_len):
    return np.ones((seq_len, seq_len))
class MultiHeadAttention:
    def __init__(self, embed_dim, num_heads):
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, 0
        self.q_proj = self.k_proj = self.v_proj = self.out_proj = Linear(embed_dim, embed_dim)
    def forward(self, x, mask=None):
        return np.zeros_like(x)
    __call__ = forward
"""


def classroom(size: int, *, correct_only: bool = False) -> dict[str, tuple[str, str]]:
    """student -> (kind, source); kinds: correct, loops, buggy, hostile."""
    kinds: list[tuple[str, str]] = []
    for index in range(size):
        slot = index % 8
        if slot in (0, 1) or correct_only:
            kinds.append(("correct", REFERENCE))
        elif slot == 2:
            kinds.append(("loops", LOOPS))
        elif slot == 7:
            kinds.append(("hostile", REFERENCE + "\n" + HOSTILE))
        else:
            name, (old, new) = list(MISTAKES.items())[index % len(MISTAKES)]
            kinds.append((f"buggy:{name}", REFERENCE.replace(old, new)))
    return {f"student{index:02d}": kind for index, kind in enumerate(kinds)}


def make_course(folder: Path, students: dict[str, tuple[str, str]]) -> None:
    shutil.copytree(ROOT / "source", folder / "source")
    shutil.copy2(ROOT / "nbgrader_config.py", folder / "nbgrader_config.py")
    subprocess.run(
        [sys.executable, "-m", "nbgrader", "generate_assignment", "attention", "--force"],
        cwd=folder,
        check=True,
        capture_output=True,
    )
    release = folder / "release" / "attention" / "attention.ipynb"
    for student, (_, source) in students.items():
        target = folder / "submitted" / student / "attention"
        target.mkdir(parents=True)
        student_notebook(source, target / "attention.ipynb", release=release)


def nbgrader_scores(folder: Path) -> dict[str, float]:
    export = folder / "export.csv"
    subprocess.run(
        [sys.executable, "-m", "nbgrader", "export", "--to", str(export)],
        cwd=folder,
        check=True,
        capture_output=True,
    )
    return {row["student_id"]: float(row["raw_score"]) for row in csv.DictReader(export.open())}


def our_scores(csv_path: Path) -> dict[str, float]:
    return {row["student"]: float(row["total"]) for row in csv.DictReader(csv_path.open())}


def verdicts_ok(scores: dict[str, float], full: float, students: dict[str, tuple[str, str]]) -> str:
    wrong = []
    for student, (kind, _) in students.items():
        score = scores.get(student, -1.0)
        expected_ok = (
            score == full
            if kind in ("correct", "loops")
            else score == 0
            if kind == "hostile"
            else 0 <= score < full
        )
        if not expected_ok:
            wrong.append(f"{student} ({kind}: {score:g})")
    return "all as expected" if not wrong else f"{len(wrong)} unexpected: " + ", ".join(wrong[:6])


def rank_disagreements(
    a: dict[str, float], b: dict[str, float], full_a: float, full_b: float
) -> int:
    count = 0
    for x, y in itertools.combinations(sorted(a), 2):
        da, db = a[x] / full_a - a[y] / full_a, b[x] / full_b - b[y] / full_b
        if da * db < 0:
            count += 1
    return count


def timed(command: list[str], cwd: Path) -> tuple[float, float]:
    """Wall and CPU seconds of `command` and everything it starts."""
    meter = CpuMeter()
    began = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, capture_output=True, preexec_fn=meter.enter)
    return time.perf_counter() - began, meter.seconds()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=40)
    parser.add_argument("--correct-only", action="store_true", help="correct notebooks only")
    parser.add_argument("--no-nbgrader", action="store_true", help="time our batch only")
    args = parser.parse_args()
    size = args.students
    students = classroom(size, correct_only=args.correct_only)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "course"
        make_course(folder, students)
        rows: list[tuple[str, float, float, str]] = []
        nb_scores: dict[str, float] = {}
        if not args.no_nbgrader:
            wall, cpu = timed([sys.executable, "-m", "nbgrader", "autograde", "attention"], folder)
            nb_scores = nbgrader_scores(folder)
            rows.append(("nbgrader autograde", wall, cpu, verdicts_ok(nb_scores, 10.0, students)))
        ours: dict[str, float] = {}
        for jobs in (1, 2):
            out = Path(scratch) / f"ours-{jobs}"
            wall, cpu = timed(
                [
                    sys.executable,
                    "-m",
                    "autograder",
                    "batch",
                    str(folder),
                    "--jobs",
                    str(jobs),
                    "--out",
                    str(out),
                ],
                ROOT,
            )
            ours = our_scores(out / "grades.csv")
            rows.append(
                (f"autograder batch --jobs {jobs}", wall, cpu, verdicts_ok(ours, 100.0, students))
            )
    base = rows[0][1] / size
    print(
        f"{size} submissions ({sum(k == 'correct' for k, _ in students.values())} correct, "
        f"{sum(k == 'loops' for k, _ in students.values())} loop-based, "
        f"{sum(k.startswith('buggy') for k, _ in students.values())} buggy, "
        f"{sum(k == 'hostile' for k, _ in students.values())} hostile)\n"
    )
    print(f"{'tool':28} {'s/submission':>12} {'cpu s/sub':>9} {'speed-up':>9}  verdicts")
    for name, seconds, cpu, verdicts in rows:
        per = seconds / size
        print(f"{name:28} {per:12.2f} {cpu / size:9.2f} {base / per:8.1f}x  {verdicts}")
    if args.no_nbgrader:
        return
    honest = {s: v for s, v in ours.items() if students[s][0] != "hostile"}
    disagreements = rank_disagreements(honest, nb_scores, 100.0, 10.0)
    print(
        f"\nPairs of non-hostile students ranked in opposite order by the two tools: "
        f"{disagreements}"
    )
    # The notebook has one grade cell per rubric item, worth a tenth of its points.
    differ = [
        f"{s} ({students[s][0]}: ours {v:g}/100, nbgrader {nb_scores.get(s, -1):g}/10)"
        for s, v in sorted(honest.items())
        if abs(v / 100.0 - nb_scores.get(s, -1.0) / 10.0) > 1e-9
    ]
    print(
        f"Non-hostile students whose two scores differ (ours / 100 vs nbgrader / 10): "
        f"{len(differ)}" + "".join(f"\n  {line}" for line in differ)
    )


if __name__ == "__main__":
    main()
