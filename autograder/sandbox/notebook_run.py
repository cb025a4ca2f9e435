"""The record of a submission's top-level run: what each cell did and what the notebook defined.

The child reports cells and names as it runs them; the functions here turn those untrusted
reports into frozen records, cutting every string to a bounded length.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["CellOutcome", "Definition", "NotebookRun", "cell_outcome", "definitions", "ordered"]


@dataclass(frozen=True)
class CellOutcome:
    """What happened to one code cell of the submission at top level."""

    index: int
    """Position among the code cells, from 0."""
    error_type: str = ""
    """Name of the exception the cell raised, "" when it ran cleanly."""
    message: str = ""
    where: str = ""
    traceback: str = ""
    skipped: str = ""
    """Why the cell was skipped ("" when it ran): it hung or killed the child."""

    @property
    def ok(self) -> bool:
        return not self.error_type and not self.skipped


@dataclass(frozen=True)
class Definition:
    """A name the notebook defined at top level, with its kind and signature."""

    name: str
    kind: str
    signature: str


@dataclass(frozen=True)
class NotebookRun:
    """The result of running a submission's top-level code in the child."""

    cells: tuple[CellOutcome, ...]
    definitions: tuple[Definition, ...]
    output: str
    failure: str = ""
    """Why the child is unusable ("" when it is ready to answer calls)."""
    seconds: float = 0.0
    confinement: str = ""
    """How the child was confined, as it reported before running any student code."""

    @property
    def ready(self) -> bool:
        return not self.failure

    def definition(self, name: str) -> Definition | None:
        return next((d for d in self.definitions if d.name == name), None)


def cell_outcome(index: int, error: object) -> CellOutcome:
    """Cell `index` as the child reported it (`error` is its description of what was raised)."""
    if not isinstance(error, dict):
        return CellOutcome(index)
    return CellOutcome(
        index,
        error_type=str(error.get("type", "Exception"))[:100],
        message=str(error.get("message", ""))[:2000],
        where=str(error.get("where", ""))[:200],
        traceback=str(error.get("traceback", ""))[:4000],
    )


def definitions(names: object) -> tuple[Definition, ...]:
    """The top-level names as the child listed them (at most 500; malformed entries dropped)."""
    if not isinstance(names, list):
        return ()
    found = []
    for entry in names[:500]:
        if isinstance(entry, Mapping):
            found.append(
                Definition(
                    str(entry.get("name", ""))[:100],
                    str(entry.get("kind", ""))[:20],
                    str(entry.get("signature", ""))[:200],
                )
            )
    return tuple(found)


def ordered(
    cells: Sequence[str],
    skipped: Mapping[int, str],
    outcomes: Mapping[int, CellOutcome],
    definitions: tuple[Definition, ...],
    output: str,
    began: float,
    confinement: str,
) -> NotebookRun:
    """The run of `cells`: each cell's outcome in order (skipped ones say why), since `began`."""
    cell_outcomes = []
    for index in range(len(cells)):
        if index in skipped:
            cell_outcomes.append(CellOutcome(index, skipped=skipped[index]))
        elif index in outcomes:
            cell_outcomes.append(outcomes[index])
    return NotebookRun(
        tuple(cell_outcomes),
        definitions,
        output,
        seconds=time.monotonic() - began,
        confinement=confinement,
    )
