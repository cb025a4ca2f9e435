"""A second, tiny exercise ("square"), used to test the core without the attention rubric.

That the core grades it proves the core knows nothing about attention.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

from autograder.rubric import CheckFailed, Failure, Item, Rubric
from autograder.sandbox import Session


@dataclass(frozen=True)
class Number:
    x: int

    def describe(self) -> str:
        return f"x = {self.x}"

    def snippet(self) -> str:
        return f"square({self.x})"


def check_square(session: Session, case: Number) -> None:
    got = session.call("square", case.x)
    if got != case.x * case.x:
        raise CheckFailed(Failure(f"square({case.x}) returned {got!r}", expected=str(case.x**2)))


def check_cube(session: Session, case: Number) -> None:
    got = session.call("cube", case.x)
    if got != case.x**3:
        raise CheckFailed(Failure(f"cube({case.x}) returned {got!r}"))


def check_broken(session: Session, case: Number) -> None:
    raise RuntimeError("a bug in the rubric itself")


SQUARE = Item(
    "square", "square(x) is x*x", 60, check_square, strategy=st.builds(Number, st.integers(0, 1000))
)
SQUARE_SMALL = Item(
    "square_small",
    "square(x) for x = 0..20",
    20,
    check_square,
    cases=tuple(Number(x) for x in range(21)),
)
CUBE = Item(
    "cube",
    "cube(x) is x**3",
    20,
    check_cube,
    strategy=st.builds(Number, st.integers(0, 50)),
    requires=("cube",),
    visibility="after_due_date",
)

RUBRIC = Rubric("square", "square.ipynb", (SQUARE, SQUARE_SMALL, CUBE))
BROKEN = Rubric(
    "broken",
    "square.ipynb",
    (Item("broken", "a rubric with a bug", 10, check_broken, cases=(Number(1),)), SQUARE_SMALL),
)
