"""The command line: a thin layer over the library. `python -m autograder --help`.

What it prints may quote a student (file names, messages, printed output): every report goes
through `markup.terminal`, so no control sequence reaches the terminal.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from autograder import rubrics
from autograder.batch import Progress, discover, grade_all, summary, write_csv
from autograder.errors import ConfigError, GraderError
from autograder.gradescope import DEFAULT_ROOT
from autograder.gradescope import run as run_gradescope
from autograder.markup import terminal
from autograder.oracle import is_kit
from autograder.packaging import build_zip
from autograder.pipeline import grade, ungraded
from autograder.report import render_check, render_text, write_results
from autograder.secret import ensure_secret
from autograder.submission import read_submission

__all__ = ["main"]

_EXAMPLES = """examples:
  python -m autograder check attention.ipynb
  python -m autograder grade attention.ipynb --results results.json
  python -m autograder grade submissions/alice/ --results alice.json
"""


_EXERCISE_HELP = f"which exercise (default: {rubrics.DEFAULT}; in a student kit, the kit's own)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m autograder",
        description="Grade NumPy notebook assignments with sandboxed property-based checks.",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    grade_parser = commands.add_parser(
        "grade",
        help="grade one submission and write a Gradescope results.json",
        description="Grade one submission (a .ipynb, a .py, or a folder holding one). Exits 0 "
        "whenever a results file was written, whatever the score.",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    grade_parser.add_argument("submission", type=Path, help="notebook, .py file or folder")
    grade_parser.add_argument(
        "--results", type=Path, default=Path("results.json"), help="where to write results.json"
    )
    grade_parser.add_argument(
        "--exercise", default=None, choices=rubrics.AVAILABLE, help=_EXERCISE_HELP
    )
    grade_parser.add_argument("--quiet", action="store_true", help="print only the total")

    check_parser = commands.add_parser(
        "check",
        help="students: run the public checks on your notebook before you submit",
        description="Run the checks you can see before the deadline, in the same sandbox the "
        "grader uses, and explain any failure: the smallest failing input, what was expected, "
        "and the likely mistake.",
        epilog="example:\n  python -m autograder check attention.ipynb",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check_parser.add_argument("notebook", type=Path, help="your notebook (saved)")
    check_parser.add_argument(
        "--exercise", default=None, choices=rubrics.AVAILABLE, help=_EXERCISE_HELP
    )

    batch_parser = commands.add_parser(
        "batch",
        help="grade a whole class into per-student results, feedback and a CSV",
        description="Grade every submission under DIR: nbgrader's submitted/STUDENT/ASSIGNMENT/"
        " layout, one folder per student, or one notebook per student. Resumes: a student "
        "whose files have not changed since the last run is not graded again.",
        epilog="examples:\n  python -m autograder batch course/ --jobs 2 --csv grades.csv\n"
        "  python -m autograder batch course/ --gradebook course/gradebook.db",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    batch_parser.add_argument("folder", type=Path, help="the submissions (or the nbgrader course)")
    batch_parser.add_argument(
        "--jobs",
        type=_positive,
        default=os.cpu_count() or 1,
        help="parallel gradings (default: the number of cores)",
    )
    batch_parser.add_argument(
        "--out",
        type=Path,
        default=Path("batch_results"),
        help="per-student results.json and feedback.md go here",
    )
    batch_parser.add_argument("--csv", type=Path, help="the grades table (default: OUT/grades.csv)")
    batch_parser.add_argument(
        "--exercise", default=None, choices=rubrics.AVAILABLE, help=_EXERCISE_HELP
    )
    batch_parser.add_argument(
        "--gradebook", type=Path, help="also write the scores into this nbgrader gradebook.db"
    )

    zip_parser = commands.add_parser(
        "gradescope",
        help="build the autograder zip to upload to Gradescope",
        description="Build the Gradescope autograder zip: setup.sh, run_autograder, the "
        "grader, the reference solution, the course's grading secret (solutions/"
        "grading_secret.txt, created on first use; it seeds the random examples, so local "
        "grades and Gradescope's agree) and pinned requirements.",
        epilog="example:\n  python -m autograder gradescope --out autograder.zip",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    zip_parser.add_argument("--out", type=Path, default=Path("autograder.zip"))
    zip_parser.add_argument(
        "--exercise", default=None, choices=rubrics.AVAILABLE, help=_EXERCISE_HELP
    )

    kit_parser = commands.add_parser(
        "student-kit",
        help="build the checker students install to run the public checks (no solution inside)",
        description="Build a pip-installable checker for students: the grader without the "
        "reference solution or anything that computes it, plus the expected answers for the "
        "inputs of the public checks. Students run: pip install KIT.zip, then python -m "
        "autograder check NOTEBOOK.",
        epilog="example:\n  python -m autograder student-kit --out attention-checker.zip",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    kit_parser.add_argument(
        "--out", type=Path, default=None, help="the zip to write (default: EXERCISE-checker.zip)"
    )
    kit_parser.add_argument(
        "--exercise", default=None, choices=rubrics.AVAILABLE, help=_EXERCISE_HELP
    )

    run_parser = commands.add_parser(
        "gradescope-run",
        help="grade ROOT/submission into ROOT/results/results.json (run_autograder calls this)",
    )
    run_parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    run_parser.add_argument(
        "--exercise", default=None, choices=rubrics.AVAILABLE, help=_EXERCISE_HELP
    )
    return parser


def _grade(args: argparse.Namespace) -> int:
    rubric = rubrics.load(args.exercise)
    ensure_secret()  # the examples are seeded by it, here as in the Gradescope zip
    try:
        result = grade(args.submission, rubric=rubric)
    except Exception as error:  # a bug of ours: the results file still says so
        result = ungraded(
            rubric,
            args.submission.name,
            f"the autograder failed ({type(error).__name__}); your instructor has the details.",
            internal_error=traceback.format_exc(),
        )
    write_results(args.results, result)
    if args.quiet:
        print(f"{result.score:g}/{result.max_score:g}")
    else:
        print(render_text(result))
        print(f"\nResults written to {args.results}")
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"--jobs must be at least 1, got {value}")
    return value


def _batch(args: argparse.Namespace) -> int:
    rubric = rubrics.load(args.exercise)
    ensure_secret()  # before the workers start, which only read it
    entries = discover(args.folder, assignment=args.exercise)
    progress = Progress(len(entries))
    began = time.monotonic()
    outcomes = grade_all(
        entries, out=args.out, exercise=args.exercise, jobs=args.jobs, on_done=progress.update
    )
    csv_path = args.csv or args.out / "grades.csv"
    write_csv(csv_path, outcomes, rubric)
    print(summary(outcomes, time.monotonic() - began))
    print(terminal(f"Grades: {csv_path}; per-student results and feedback: {args.out}/"))
    if args.gradebook is not None:
        from autograder.gradebook import record

        count = record(args.gradebook, outcomes, rubric=rubric, assignment=args.exercise)
        print(f"Wrote {count} students' scores into {args.gradebook}.")
    return 0


def _check(args: argparse.Namespace) -> int:
    rubric = rubrics.load(args.exercise)
    read_submission(args.notebook, expected=rubric.notebook)  # a bad path: one clear error
    if not is_kit(args.exercise):  # in the course repository: the grader's own examples
        ensure_secret()
    result = grade(args.notebook, rubric=rubric, public_only=True)
    later = tuple(item.title for item in rubric.items if item.visibility != "visible")
    print(render_check(result, later=later))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = _parser().parse_args(argv)
    if args.exercise is None:
        args.exercise = rubrics.default_exercise()
    try:
        if args.command != "check" and is_kit(args.exercise):
            raise ConfigError(
                f"This is the student checker, which runs only the checks visible before the "
                f"deadline, so it cannot {args.command}: run python -m autograder check "
                "NOTEBOOK instead."
            )
        if args.command == "grade":
            return _grade(args)
        if args.command == "batch":
            return _batch(args)
        if args.command == "check":
            return _check(args)
        if args.command == "gradescope":
            names = build_zip(args.out, exercise=args.exercise)
            print(
                f"Wrote {args.out} ({len(names)} files). Upload it to Gradescope as the "
                "autograder of a programming assignment."
            )
            return 0
        if args.command == "student-kit":
            from autograder.kit import build_kit

            args.out = args.out or Path(f"{args.exercise}-checker.zip")
            names = build_kit(args.out, exercise=args.exercise)
            print(
                f"Wrote {args.out} ({len(names)} files). Give it to students: pip install "
                f"{args.out.name}, then python -m autograder check NOTEBOOK."
            )
            return 0
        if args.command == "gradescope-run":
            run_gradescope(root=args.root, exercise=args.exercise)
            return 0
    except GraderError as error:
        print(terminal(f"error: {error}"), file=sys.stderr)
        return 2
    except OSError as error:
        print(terminal(f"error: {error.strerror}: {error.filename}"), file=sys.stderr)
        return 1
    raise AssertionError(f"unhandled command {args.command}")
