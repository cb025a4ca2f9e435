"""Stage 5, reporting: Gradescope's results.json and a readable terminal summary.

The model (`GradeResult`) knows nothing of formats; this module renders it. The JSON follows the
Gradescope autograder specification: top-level `score`, `execution_time`, `output`, `tests`.
Text that may quote the student goes through `markup`: in Markdown it is escaped or code, on a
terminal its control characters are made visible. `write_results` always writes a valid file.
Each test's `extra_data` (never shown to students) holds the item's id and, when it failed, the
failure's raw summary, hint, mistake id and smallest input, for staff tools (`stored.py`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from autograder.atomic import write_atomically
from autograder.markup import code, code_block, escaped, terminal
from autograder.rubric import Failure
from autograder.sandbox.wire import clean_text
from autograder.scoring import GradeResult, ItemResult

__all__ = [
    "MAX_OUTPUT_CHARS",
    "render_check",
    "render_failure",
    "render_text",
    "to_gradescope",
    "write_results",
]

MAX_OUTPUT_CHARS = 6000
"""Longest feedback text per test; longer text is cut with a note."""


def _truncate(text: str, limit: int = MAX_OUTPUT_CHARS) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n\n[... {len(text) - limit} more characters not shown]"


def render_failure(failure: Failure, *, markdown: bool = True) -> str:
    """The feedback for one failed item, in Markdown (Gradescope) or plain text (terminal)."""
    parts = [escaped(failure.summary) if markdown else "    " + failure.summary]
    rows = [
        ("Smallest failing input", failure.inputs, ""),
        ("Reproduce it in a cell", failure.snippet, "python"),
        (failure.labels[0], failure.expected, ""),
        (failure.labels[1], failure.got, ""),
    ]
    for label, text, language in rows:
        if not text:
            continue
        if markdown:
            parts.append(f"**{label}:**\n\n{code_block(text, language)}")
        else:
            indented = "\n".join("      " + line for line in text.rstrip().splitlines())
            parts.append(f"    {label}:\n{indented}")
    if failure.hint:
        hint = f"**Hint:** {escaped(failure.hint)}" if markdown else f"    Hint: {failure.hint}"
        parts.append(hint)
    return _truncate("\n\n".join(parts) if markdown else "\n".join(parts))


def _staff_facts(item: ItemResult) -> dict[str, Any]:
    """The item's machine-readable facts for staff tools (the class report, regrade diffs):
    its id and, when it failed, the failure's raw text (bounded), which students see only as
    the rendered `output`."""
    facts: dict[str, Any] = {"id": item.id}
    if item.failure is not None:
        failure = item.failure
        facts.update(
            summary=_truncate(failure.summary),
            hint=_truncate(failure.hint),
            mistake=failure.mistake,
            inputs=_truncate(failure.inputs),
        )
    return facts


def _test(item: ItemResult, number: int) -> dict[str, Any]:
    if item.failure is None:
        output = f"Passed on {item.examples} checked inputs."
    else:
        output = render_failure(item.failure)
    return {
        "name": item.title,
        "number": str(number),
        "score": item.score,
        "max_score": item.max_score,
        "status": "passed" if item.passed else "failed",
        "output": output,
        "output_format": "md",
        "visibility": item.visibility,
        "extra_data": _staff_facts(item),
    }


def to_gradescope(result: GradeResult, *, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The results.json document for `result`; `extra` goes to its `extra_data`."""
    tests = [_test(item, number) for number, item in enumerate(result.items, 1)]
    if result.internal_error:
        tests.append(
            {
                "name": "Autograder failed",
                "score": 0.0,
                "max_score": 0.0,
                "status": "failed",
                "output": "The autograder itself failed while grading this submission. This is "
                "not your fault: your instructor has been given the details. Items that could "
                "not be checked score 0 until it is fixed and regraded.",
                "output_format": "md",
                "visibility": "visible",
            }
        )
        tests.append(
            {
                "name": "Autograder failure details (staff only)",
                "score": 0.0,
                "max_score": 0.0,
                "output": code_block(_truncate(result.internal_error)),
                "output_format": "md",
                "visibility": "hidden",
            }
        )
    summary = [_headline(result)]
    summary += [f"- {escaped(note)}" for note in result.notes]
    document: dict[str, Any] = {
        "score": result.score,
        "execution_time": round(result.seconds, 3),
        "output": _truncate("\n".join(summary)),
        "output_format": "md",
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
    }
    staff = {"confinement": result.confinement} if result.confinement else {}
    if extra or staff:
        document["extra_data"] = {**staff, **(extra or {})}
    return document


def _headline(result: GradeResult) -> str:
    """The first line students see at once: the total only when every item is visible.

    Gradescope hides the total while some tests are hidden (after the due date, until
    published, or always); the visible items' points minus the total would reveal the hidden
    score, so until then the line counts the visible items only."""
    name = code(result.submission)
    later = [item for item in result.items if item.visibility != "visible"]
    if not later:
        return f"{name}: {result.score:g} / {result.max_score:g} points."
    shown = [item for item in result.items if item.visibility == "visible"]
    score = sum(item.score for item in shown)
    most = sum(item.max_score for item in shown)
    count = f"{len(later)} more item{'s are' if len(later) > 1 else ' is'}"
    return (
        f"{name}: {score:g} / {most:g} points on the {len(shown)} item"
        f"{'s' if len(shown) != 1 else ''} shown now; {count} graded after the due date, and "
        "the total appears when those results are released."
    )


def _clean(node: Any) -> Any:
    """`node` with every string valid Unicode (student text may hold lone surrogates)."""
    if isinstance(node, str):
        return clean_text(node)
    if isinstance(node, list):
        return [_clean(item) for item in node]
    if isinstance(node, dict):
        return {_clean(key): _clean(value) for key, value in node.items()}
    return node


def _results_text(result: GradeResult, extra: dict[str, Any] | None) -> str:
    try:
        document = _clean(to_gradescope(result, extra=extra))
        return json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    except Exception as error:  # a bug of ours: still a valid file that says so
        failed = {
            "score": 0.0,
            "output": "The autograder could not write these results. This is not your fault: "
            "your instructor has been told. Nothing can be scored until it is fixed.",
            "output_format": "md",
            "visibility": "visible",
            "stdout_visibility": "hidden",
            "tests": [
                {
                    "name": "Autograder failed",
                    "score": 0.0,
                    "max_score": 0.0,
                    "status": "failed",
                    "output": "The results could not be written; see the staff-only details.",
                    "visibility": "visible",
                },
                {
                    "name": "Autograder failure details (staff only)",
                    "score": 0.0,
                    "max_score": 0.0,
                    "output": clean_text(f"{type(error).__name__}: {error}")[:2000],
                    "visibility": "hidden",
                },
            ],
        }
        return json.dumps(failed, indent=2, ensure_ascii=True) + "\n"


def write_results(path: Path, result: GradeResult, *, extra: dict[str, Any] | None = None) -> None:
    """Write results.json atomically (a crash never leaves half a file).

    The file is always valid JSON in UTF-8, whatever the result's text holds; should rendering
    fail (a bug of ours), it still says so in a valid file. Only the file system can fail."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = _results_text(result, extra)
    write_atomically(path, text)


def render_check(result: GradeResult, *, later: tuple[str, ...]) -> str:
    """The student's pre-submission report (terminal-safe): public items, names of later ones."""
    passed = sum(item.passed for item in result.items)
    lines = [f"Checked {result.submission}: {passed} of {len(result.items)} public checks pass."]
    lines += [f"  note: {note}" for note in result.notes]
    for item in result.items:
        lines.append(f"  [{'PASS' if item.passed else 'FAIL'}] {item.title}")
        if item.failure is not None:
            lines.append(render_failure(item.failure, markdown=False))
    if later:
        lines.append(
            f"{len(later)} more items are graded after the deadline (not run now): "
            + "; ".join(later)
            + "."
        )
    if result.internal_error:
        lines.append("The checker itself failed; tell your instructor:\n" + result.internal_error)
    return terminal("\n".join(lines))


def render_text(result: GradeResult) -> str:
    """A plain-text summary for the terminal (control characters made visible)."""
    lines = [f"{result.submission}: {result.score:g} / {result.max_score:g} points"]
    lines += [f"  note: {note}" for note in result.notes]
    if result.confinement:
        lines.append(f"  sandbox: {result.confinement}")
    for item in result.items:
        mark = "PASS" if item.passed else "FAIL"
        lines.append(f"  [{mark}] {item.score:>5g}/{item.max_score:<5g} {item.title}")
        if item.failure is not None:
            lines.append(render_failure(item.failure, markdown=False))
    if result.internal_error:
        lines.append("  The autograder itself failed:\n" + result.internal_error)
    return terminal("\n".join(lines))
