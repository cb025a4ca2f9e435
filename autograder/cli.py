"""The command line: a thin layer over the library. `python -m autograder --help`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from autograder import rubrics
from autograder.errors import GraderError
from autograder.pipeline import grade
from autograder.report import render_text, write_results

__all__ = ["main"]

_EXAMPLES = """examples:
  python -m autograder grade attention.ipynb --results results.json
  python -m autograder grade submissions/alice/ --results alice.json
"""


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
        "--exercise", default="attention", choices=rubrics.AVAILABLE, help="which rubric"
    )
    grade_parser.add_argument("--quiet", action="store_true", help="print only the total")
    return parser


def _grade(args: argparse.Namespace) -> int:
    rubric = rubrics.load(args.exercise)
    result = grade(args.submission, rubric=rubric)
    write_results(args.results, result)
    if args.quiet:
        print(f"{result.score:g}/{result.max_score:g}")
    else:
        print(render_text(result))
        print(f"\nResults written to {args.results}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "grade":
            return _grade(args)
    except GraderError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"error: {error.strerror}: {error.filename}", file=sys.stderr)
        return 1
    raise AssertionError(f"unhandled command {args.command}")
