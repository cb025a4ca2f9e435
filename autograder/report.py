"""Stage 5, reporting: Gradescope's results.json and a readable terminal summary.

The model (`GradeResult`) knows nothing of formats; this module renders it. The JSON follows the
Gradescope autograder specification: top-level `score`, `execution_time`, `output`, `tests`.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from autograder.rubric import Failure
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


def _fence(text: str, language: str = "") -> str:
    return f"```{language}\n{text.rstrip()}\n```"


def render_failure(failure: Failure, *, markdown: bool = True) -> str:
    """The feedback for one failed item, in Markdown (Gradescope) or plain text (terminal)."""
    parts = [failure.summary if markdown else "    " + failure.summary]
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
            parts.append(f"**{label}:**\n\n{_fence(text, language)}")
        else:
            indented = "\n".join("      " + line for line in text.rstrip().splitlines())
            parts.append(f"    {label}:\n{indented}")
    if failure.hint:
        parts.append(f"**Hint:** {failure.hint}" if markdown else f"    Hint: {failure.hint}")
    return _truncate("\n\n".join(parts) if markdown else "\n".join(parts))


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
        "extra_data": {"id": item.id},
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
                "output": _fence(_truncate(result.internal_error)),
                "output_format": "md",
                "visibility": "hidden",
            }
        )
    summary = [f"**{result.submission}**: {result.score:g} / {result.max_score:g} points."]
    summary += [f"- {note}" for note in result.notes]
    document: dict[str, Any] = {
        "score": result.score,
        "execution_time": round(result.seconds, 3),
        "output": _truncate("\n".join(summary)),
        "output_format": "md",
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
    }
    if extra:
        document["extra_data"] = extra
    return document


def write_results(path: Path, result: GradeResult, *, extra: dict[str, Any] | None = None) -> None:
    """Write results.json atomically (a crash never leaves half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(to_gradescope(result, extra=extra), indent=2, ensure_ascii=False) + "\n"
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".results-", suffix=".json")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def render_check(result: GradeResult, *, later: tuple[str, ...]) -> str:
    """The student's pre-submission report: public items, and the names of the later ones."""
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
    return "\n".join(lines)


def render_text(result: GradeResult) -> str:
    """A plain-text summary for the terminal."""
    lines = [f"{result.submission}: {result.score:g} / {result.max_score:g} points"]
    lines += [f"  note: {note}" for note in result.notes]
    for item in result.items:
        mark = "PASS" if item.passed else "FAIL"
        lines.append(f"  [{mark}] {item.score:>5g}/{item.max_score:<5g} {item.title}")
        if item.failure is not None:
            lines.append(render_failure(item.failure, markdown=False))
    if result.internal_error:
        lines.append("  The autograder itself failed:\n" + result.internal_error)
    return "\n".join(lines)
