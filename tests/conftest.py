"""Shared helpers: grade a piece of code as a submission, through the real pipeline."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from autograder import sandbox
from autograder.catalog import rubric_of
from autograder.checks import run_checks
from autograder.scoring import ItemResult, score
from autograder.settings import LIMITS, Limits

ROOT = Path(__file__).resolve().parent.parent
RUBRIC = rubric_of("attention")
REFERENCE_SOURCE = (ROOT / "solutions" / "attention.py").read_text(encoding="utf-8")


def grade_code(
    cells: str | Sequence[str], *, only: Sequence[str] = (), limits: Limits = LIMITS
) -> dict[str, ItemResult]:
    """Grade `cells` (one source string, or one per notebook cell) on the attention rubric.

    Runs the real sandbox and checks; `only` restricts the run to some item ids.
    """
    sources = [cells] if isinstance(cells, str) else list(cells)
    with sandbox.started(sources, limits=limits) as (box, run):
        outcomes = run_checks(
            RUBRIC, box, run, limits=limits, deadline=time.monotonic() + 600, only=only
        )
    return {item.id: item for item in score(RUBRIC, outcomes)}


@pytest.fixture(scope="session")
def reference_source() -> str:
    return REFERENCE_SOURCE
