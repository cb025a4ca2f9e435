"""What an exercise's rubric gives the core: items, the cases they draw, and how they fail.

The core knows nothing about any one exercise. An exercise (`exercise.py`) builds a `Rubric`:
items with points, a Hypothesis strategy of cases, or a function that builds one (and
optionally an ordered list of exhaustive cases), and a `check` that calls the student's code
through a `Session` and raises `CheckFailed` when the answer is wrong. Expected answers come
from the rubric's oracle (`judging.ask`), which the core attaches: live in the grader,
replayed in a student kit.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar, cast

from autograder.errors import ConfigError
from autograder.sandbox import Session

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

    from autograder.oracle import Oracle

__all__ = ["Case", "CheckFailed", "Failure", "Item", "Rubric", "Visibility"]

Visibility = Literal["visible", "hidden", "after_due_date", "after_published"]


class Case(Protocol):
    """An input drawn for an item; it can describe itself to a student."""

    def describe(self) -> str:
        """A short description: shapes, and values when small."""
        ...

    def snippet(self) -> str:
        """Python lines that rebuild the input in a notebook cell (NumPy only)."""
        ...


@dataclass(frozen=True)
class Failure:
    """Why an item failed, in terms a student can act on."""

    summary: str
    """One sentence: what was wrong."""
    inputs: str = ""
    """The smallest failing input, described."""
    snippet: str = ""
    """Code that reproduces the failure when pasted into the notebook."""
    expected: str = ""
    """An excerpt of the expected value."""
    got: str = ""
    """An excerpt of what the student's code returned."""
    hint: str = ""
    """The mistake, by name, when it is established; otherwise the facts known about it."""
    labels: tuple[str, str] = ("Expected", "Got")
    """How `expected` and `got` are labelled (e.g. "First call" and "Second call" when the
    student's code is compared with itself)."""
    mistake: str = ""
    """The id of the known mistake the hint names; "" when the hint states facts only."""


class CheckFailed(AssertionError):
    """Raised by an item's check when the student's answer is wrong.

    `explain`, when given, completes the failure with its hint. It may call the student's code
    again (on inputs of the rubric's choosing), so the core calls it once, on the failure it
    reports, after shrinking: diagnosis costs nothing on passing submissions.
    """

    def __init__(
        self, failure: Failure, *, explain: Callable[[Failure], Failure] | None = None
    ) -> None:
        super().__init__(failure.summary)
        self.failure = failure
        self.explain = explain


C = TypeVar("C", bound=Case)
"""The type of an item's cases (a frozen dataclass of the exercise's strategies)."""


@dataclass(frozen=True)
class Item(Generic[C]):
    """One rubric item: a property of the student's code, worth `points`, checked on cases of
    type `C`."""

    id: str
    """Stable identifier (used in CSV columns and configuration)."""
    title: str
    """Student-facing name."""
    points: float
    check: Callable[[Session, C], None]
    """Calls the student's code for one case and raises `CheckFailed` if it is wrong."""
    strategy: SearchStrategy[C] | Callable[[], SearchStrategy[C]] | None = None
    """Random cases, explored and shrunk by Hypothesis: a strategy, or a function without
    arguments that builds one. The core calls the function once, when the item first needs
    random cases (`search_strategy`), so that a module that imports Hypothesis to build it is
    loaded only then: a grade that passes on the cases shipped with the grader never does."""
    cases: Sequence[C] = ()
    """Cases run in order before the random ones (exhaustive checks of small spaces)."""
    requires: tuple[str, ...] = ()
    """Names the notebook must define for this item to run."""
    visibility: Visibility = "visible"
    max_examples: int | None = None
    """Overrides the default number of random examples."""

    def search_strategy(self) -> SearchStrategy[C]:
        """The strategy of the item's random cases (built on the first call when `strategy` is
        a function; every later call, of any item holding that function, returns the same
        one). A `ConfigError` when the item has none, or when it is not a strategy."""
        given = self.strategy
        if given is None:
            raise ConfigError(f"Item {self.id!r} has no strategy: it draws no random cases.")
        if not callable(given):  # a strategy already (Hypothesis's are never callable)
            return _checked(self, given, given)
        with _BUILDING:
            built = _BUILT.get(given)
            if built is None:
                built = _BUILT[given] = _checked(self, given, given())
        return built


_BUILT: dict[Callable[[], Any], SearchStrategy[Any]] = {}
"""The strategy each strategy-building function of an item returned (`Item.search_strategy`)."""
_BUILDING = threading.RLock()


def _checked(item: Item[C], given: object, built: object) -> SearchStrategy[C]:
    """`built`, which `item.strategy` (`given`) is or made, if it is a Hypothesis strategy."""
    from hypothesis.strategies import SearchStrategy

    if isinstance(built, SearchStrategy):
        return cast("SearchStrategy[C]", built)
    made = f"{given!r} returned {built!r}" if built is not given else f"{given!r}"
    raise ConfigError(
        f"Item {item.id!r}: its strategy {made}, which is not a Hypothesis strategy. Give a "
        "strategy (e.g. st.builds(MyCase, ...)) or a function without arguments that returns "
        "one (e.g. lambda: my_cases())."
    )


@dataclass(frozen=True)
class Rubric:
    """An exercise's items and where its submission is expected."""

    name: str
    notebook: str
    """The expected file name of a submission (e.g. "softmax.ipynb")."""
    items: tuple[Item[Any], ...]
    grade_cells: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """nbgrader grade cell id -> the item ids whose points that cell stands for."""
    oracle: Oracle | None = field(default=None, compare=False)
    """Where the checks' expected answers come from (set by the core, not by the exercise)."""
    hidden: tuple[Path, ...] = field(default=(), compare=False)
    """What the student's code must never read besides the grader and `solutions/` (set by
    the core: the exercise's package and reference, wherever they are installed)."""

    def __post_init__(self) -> None:
        ids = [item.id for item in self.items]
        if len(set(ids)) != len(ids):
            raise ConfigError(f"Rubric {self.name!r} repeats an item id: {ids}; make ids unique.")
        for cell, mapped in self.grade_cells.items():
            unknown = sorted(set(mapped) - set(ids))
            if unknown:
                raise ConfigError(
                    f"Grade cell {cell!r} maps to unknown item(s) {unknown}; known: {ids}."
                )
        for item in self.items:
            if item.points < 0:
                raise ConfigError(
                    f"Item {item.id!r} has points={item.points}; points must be >= 0."
                )
            if item.strategy is None and not item.cases:
                raise ConfigError(f"Item {item.id!r} has neither a strategy nor cases: add one.")

    @property
    def total_points(self) -> float:
        return sum(item.points for item in self.items)

    def with_points(self, points: dict[str, float]) -> Rubric:
        """A copy with some items re-weighted; unknown ids are an error."""
        unknown = sorted(set(points) - {item.id for item in self.items})
        if unknown:
            known = ", ".join(item.id for item in self.items)
            raise ConfigError(f"Unknown rubric item(s) {unknown}; known items: {known}.")
        items = tuple(replace(item, points=points.get(item.id, item.points)) for item in self.items)
        return replace(self, items=items)

    def with_items(self, items: Sequence[Item[Any]]) -> Rubric:
        """A copy holding `items` instead (e.g. the public ones only); grade cells that map to
        an item left out are dropped."""
        kept = {item.id for item in items}
        cells = {cell: ids for cell, ids in self.grade_cells.items() if set(ids) <= kept}
        return replace(self, items=tuple(items), grade_cells=cells)

    def with_oracle(self, oracle: Oracle) -> Rubric:
        """A copy whose checks ask `oracle`."""
        return replace(self, oracle=oracle)


def describe_items(items: Sequence[Item[Any]]) -> str:
    """One line per item: id, points and title (for `--help` and docs)."""
    return "\n".join(f"{item.id:32} {item.points:5g}  {item.title}" for item in items)
