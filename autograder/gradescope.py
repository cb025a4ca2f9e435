"""Running on Gradescope: find the submission, grade it, always write results.json.

`run_autograder` calls `run(root=/autograder)`. Whatever happens (no notebook, several
notebooks, a crash of ours), `root/results/results.json` is written: a crash becomes a visible
"Autograder failed" entry with score 0 and the traceback hidden from students.
"""

from __future__ import annotations

import os
import traceback
from pathlib import Path

from autograder import catalog
from autograder.pipeline import grade, ungraded
from autograder.report import render_text, write_results
from autograder.scoring import GradeResult

__all__ = ["DEFAULT_ROOT", "run"]

DEFAULT_ROOT = Path(os.environ.get("AUTOGRADER_ROOT", "/autograder"))


def run(*, root: Path = DEFAULT_ROOT, exercise: str) -> GradeResult:
    """Grade `root/submission/` and write `root/results/results.json`; never raises.

    `exercise` names the exercise, or its package's folder (the zip's run_autograder passes
    the folder it ships)."""
    results = root / "results" / "results.json"
    try:
        found = catalog.find(exercise)
        rubric = catalog.graded_rubric(found)
    except Exception:
        reason = "The autograder could not load its rubric; your instructor has the details."
        result = GradeResult("submission", (), (reason,), internal_error=traceback.format_exc())
    else:
        try:
            result = grade(root / "submission", rubric=rubric)
        except Exception as error:
            result = ungraded(
                rubric,
                "submission",
                f"the autograder failed ({type(error).__name__}); your instructor has the details.",
                internal_error=traceback.format_exc(),
            )
    write_results(results, result)
    print(render_text(result))
    return result
