"""The command line: a thin layer over the library. `python -m autograder --help`.

What it prints may quote a student (file names, messages, printed output): every report goes
through `markup.terminal`, so no control sequence reaches the terminal.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

from autograder import catalog
from autograder.errors import ConfigError, GraderError
from autograder.exercise import Exercise
from autograder.gradescope import DEFAULT_ROOT
from autograder.gradescope import run as run_gradescope
from autograder.markup import terminal
from autograder.pipeline import grade, ungraded
from autograder.report import render_check, render_text, write_results
from autograder.secret import ensure_secret
from autograder.submission import read_submission

__all__ = ["main"]


def _default_notebook() -> str:
    try:
        return catalog.find(catalog.default_name()).notebook
    except GraderError:
        return "NOTEBOOK.ipynb"


def _examples() -> str:
    notebook = _default_notebook()
    return f"""examples:
  python -m autograder check {notebook}
  python -m autograder grade {notebook} --results results.json
  python -m autograder grade submissions/alice/ --results alice.json
  python -m autograder grade NOTEBOOK.ipynb --exercise NAME_OR_PACKAGE_FOLDER
"""


def _exercise_help() -> str:
    installed = ", ".join(catalog.names()) or "none"
    return (
        f"the exercise: an installed one's name ({installed}) or the folder of an exercise "
        f"package (default: {catalog.default_name()})"
    )


def _parser(*, helpful: bool = True) -> argparse.ArgumentParser:
    """The parser; `helpful` fills its help texts with the installed exercises, which takes
    reading every installed package's entry points (so only when help is asked for)."""
    examples = _examples() if helpful else ""
    exercise_help = _exercise_help() if helpful else "the exercise"
    parser = argparse.ArgumentParser(
        prog="python -m autograder",
        description="Grade NumPy notebook assignments with sandboxed property-based checks.",
        epilog=examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    grade_parser = commands.add_parser(
        "grade",
        help="grade one submission and write a Gradescope results.json",
        description="Grade one submission (a .ipynb, a .py, or a folder holding one). Exits 0 "
        "whenever a results file was written, whatever the score.",
        epilog=examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    grade_parser.add_argument("submission", type=Path, help="notebook, .py file or folder")
    grade_parser.add_argument(
        "--results", type=Path, default=Path("results.json"), help="where to write results.json"
    )
    grade_parser.add_argument("--exercise", default=None, help=exercise_help)
    grade_parser.add_argument("--quiet", action="store_true", help="print only the total")

    check_parser = commands.add_parser(
        "check",
        help="students: run the public checks on your notebook before you submit",
        description="Run the checks you can see before the deadline, in the same sandbox the "
        "grader uses, and explain any failure: the smallest failing input, what was expected, "
        "and the likely mistake.",
        epilog=f"example:\n  python -m autograder check {_default_notebook()}" if helpful else "",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check_parser.add_argument("notebook", type=Path, help="your notebook (saved)")
    check_parser.add_argument("--exercise", default=None, help=exercise_help)

    batch_parser = commands.add_parser(
        "batch",
        help="grade a whole class into per-student results, feedback, a CSV and a class report",
        description="Grade every submission under DIR: nbgrader's submitted/STUDENT/ASSIGNMENT/"
        " layout, one folder per student, or one notebook per student. Resumes: a student "
        "whose files have not changed since the last run is not graded again. Also writes "
        "OUT/report.html (open it in a browser) and OUT/report.json: the scores, each item's "
        "passes and failures, and the hints given, grouped.",
        epilog="examples:\n  python -m autograder batch course/ --jobs 2 --csv grades.csv\n"
        "  python -m autograder batch course/ --gradebook course/gradebook.db\n"
        "  python -m autograder batch course/ --scheduler tcp://head:8786",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    batch_parser.add_argument("folder", type=Path, help="the submissions (or the nbgrader course)")
    batch_parser.add_argument(
        "--jobs",
        type=_positive,
        default=os.cpu_count() or 1,
        help="parallel gradings (default: the number of cores); with --scheduler local, the "
        "number of Dask workers",
    )
    batch_parser.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="grade on a Dask cluster: a running scheduler's address (tcp://HOST:8786), or "
        'local to start one here; needs pip install -e ".[dask]"',
    )
    batch_parser.add_argument(
        "--out",
        type=Path,
        default=Path("batch_results"),
        help="per-student results.json and feedback.md go here",
    )
    batch_parser.add_argument("--csv", type=Path, help="the grades table (default: OUT/grades.csv)")
    batch_parser.add_argument("--exercise", default=None, help=exercise_help)
    batch_parser.add_argument(
        "--gradebook", type=Path, help="also write the scores into this nbgrader gradebook.db"
    )

    diff_parser = commands.add_parser(
        "diff",
        help="compare two batch outputs: whose points changed, by how much",
        description="Compare two batch outputs (e.g. before and after a rubric or tolerance "
        "change): per student the items whose points changed and by how much, items whose "
        "worth changed, students in only one of them, and how many went up, down or stayed. "
        "Exits 0 when nothing changed, 1 when something did, 2 when an output cannot be read.",
        epilog="example:\n  python -m autograder diff old_results/ batch_results/ || echo changed",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    diff_parser.add_argument("old", type=Path, help="the earlier batch's --out folder")
    diff_parser.add_argument("new", type=Path, help="the later batch's --out folder")

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
    zip_parser.add_argument("--exercise", default=None, help=exercise_help)

    kit_parser = commands.add_parser(
        "student-kit",
        help="build the checker students install to run the public checks (no solution inside)",
        description="Build a pip-installable checker for students: the grader without the "
        "reference solution or anything that computes it, plus the expected answers for the "
        "inputs of the public checks. Students run: pip install KIT.zip, then python -m "
        "autograder check NOTEBOOK.",
        epilog="example:\n  python -m autograder student-kit --exercise NAME",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    kit_parser.add_argument(
        "--out", type=Path, default=None, help="the zip to write (default: EXERCISE-checker.zip)"
    )
    kit_parser.add_argument("--exercise", default=None, help=exercise_help)

    run_parser = commands.add_parser(
        "gradescope-run",
        help="grade ROOT/submission into ROOT/results/results.json (run_autograder calls this)",
    )
    run_parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    run_parser.add_argument("--exercise", default=None, help=exercise_help)
    return parser


def _grade(args: argparse.Namespace, exercise: Exercise) -> int:
    rubric = catalog.graded_rubric(exercise)
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


def _load_report_modules() -> None:
    """Import what the class report and the shared-answer analysis use (matplotlib,
    copydetect: about half a second), so that the report is written as soon as grading ends.
    Best effort: what fails here is imported, and reported, where it is used."""
    try:
        from autograder.classreport import plots
        from autograder.likeness import copydetect_installed

        copydetect_installed()  # imports copydetect, when it is
        plots.load()
    except Exception:
        pass


def _batch(args: argparse.Namespace, exercise: Exercise) -> int:
    from autograder.batch import Progress, discover, grade_all, summary, write_csv
    from autograder.cluster import dask_executor  # here: `grade` needs neither

    rubric = exercise.rubric
    ensure_secret()  # before the workers start, which only read it
    entries = discover(args.folder, assignment=exercise.nbgrader_assignment)
    progress = Progress(len(entries))
    began = time.monotonic()
    ahead = threading.Thread(target=_load_report_modules, name="report imports", daemon=True)
    with ExitStack() as stack:
        executor = (  # Dask's, closed when grading ends; None: grade_all's process pool
            stack.enter_context(dask_executor(args.scheduler, workers=args.jobs))
            if args.scheduler is not None
            else None
        )
        outcomes = grade_all(
            entries,
            out=args.out,
            exercise=args.exercise,
            jobs=args.jobs,
            executor=executor,
            on_done=progress.update,
            started=ahead.start,  # while the workers grade, this process only waits
        )
    if ahead.is_alive():
        ahead.join()
    csv_path = args.csv or args.out / "grades.csv"
    write_csv(csv_path, outcomes, rubric)
    print(summary(outcomes, time.monotonic() - began))
    print(terminal(f"Grades: {csv_path}; per-student results and feedback: {args.out}/"))
    from autograder.classreport import write_class_report  # batch only: grade stays lean
    from autograder.likeness import shared_wrong_answers

    students = [o.student for o in outcomes]
    shared = shared_wrong_answers(
        args.out,
        students,
        {entry.student: entry.path for entry in entries},
        notebook=exercise.notebook,
    )
    report = write_class_report(
        args.out, students=students, exercise=exercise.name, shared_wrong_answers=shared
    )
    print(terminal(f"Class report: {report.html} (open it in a browser) and {report.json}."))
    if report.note:
        print(terminal(report.note), file=sys.stderr)
    if args.gradebook is not None:
        from autograder.gradebook import record

        assignment = exercise.nbgrader_assignment
        count = record(args.gradebook, outcomes, rubric=rubric, assignment=assignment)
        print(f"Wrote {count} students' scores into {args.gradebook}.")
    return 0


def _diff(args: argparse.Namespace) -> int:
    from autograder.regrade import compare, render_diff
    from autograder.stored import read_batch

    found = compare(read_batch(args.old), read_batch(args.new))
    print(render_diff(found))
    return 1 if found.anything else 0


def _check(args: argparse.Namespace, exercise: Exercise) -> int:
    read_submission(args.notebook, expected=exercise.notebook)  # a bad path: one clear error
    if catalog.installed_kit() is None:  # in the course repository: the grader's own examples
        ensure_secret()
    rubric = catalog.graded_rubric(exercise)
    result = grade(args.notebook, rubric=rubric, public_only=True)
    later = tuple(item.title for item in rubric.items if item.visibility != "visible")
    print(render_check(result, later=later))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser(helpful=any(arg in ("-h", "--help") for arg in argv)).parse_args(argv)
    try:
        if args.command != "check" and catalog.installed_kit() is not None:
            raise ConfigError(
                f"This is the student checker, which runs only the checks visible before the "
                f"deadline, so it cannot {args.command}: run python -m autograder check "
                "NOTEBOOK instead."
            )
        if args.command == "diff":
            return _diff(args)
        spec = args.exercise = args.exercise or catalog.default_name()
        if args.command == "gradescope-run":  # never raises: results.json says what failed
            run_gradescope(root=args.root, exercise=spec)
            return 0
        exercise = catalog.find(spec)
        if args.command == "grade":
            return _grade(args, exercise)
        if args.command == "batch":
            return _batch(args, exercise)
        if args.command == "check":
            return _check(args, exercise)
        if args.command == "gradescope":
            from autograder.packaging import build_zip

            names = build_zip(args.out, exercise=exercise)
            print(
                f"Wrote {args.out} ({len(names)} files). Upload it to Gradescope as the "
                "autograder of a programming assignment."
            )
            return 0
        if args.command == "student-kit":
            from autograder.kit import build_kit

            args.out = args.out or Path(f"{exercise.name}-checker.zip")
            names = build_kit(args.out, exercise=exercise)
            print(
                f"Wrote {args.out} ({len(names)} files). Give it to students: pip install "
                f"{args.out.name}, then python -m autograder check NOTEBOOK."
            )
            return 0
    except GraderError as error:
        print(terminal(f"error: {error}"), file=sys.stderr)
        return 2
    except OSError as error:
        print(terminal(f"error: {error.strerror}: {error.filename}"), file=sys.stderr)
        return 1
    raise AssertionError(f"unhandled command {args.command}")
