"""Exercises: each module here builds one `Rubric` (`RUBRIC`). `load` finds one by name."""

from __future__ import annotations

import importlib

from autograder import oracle
from autograder.errors import ConfigError
from autograder.rubric import Rubric

__all__ = ["AVAILABLE", "DEFAULT", "default_exercise", "load"]

AVAILABLE = ("attention", "kv_cache")

DEFAULT = "attention"
"""The exercise commands grade when none is named (in a student kit: the kit's own)."""


def default_exercise() -> str:
    """The exercise this installation grades when none is named: in a student kit, the one it
    was built for (the only one with a bank of answers); else `DEFAULT`."""
    kits = [name for name in AVAILABLE if oracle.is_kit(name)]
    return kits[0] if len(kits) == 1 else DEFAULT


def load(name: str) -> Rubric:
    """The rubric of exercise `name` (e.g. "attention")."""
    if name not in AVAILABLE:
        raise ConfigError(f"Unknown exercise {name!r}: choose one of {', '.join(AVAILABLE)}.")
    module = importlib.import_module(f"autograder.rubrics.{name}")
    rubric = module.RUBRIC
    assert isinstance(rubric, Rubric)
    if oracle.is_kit(name):  # a student kit: public items check the inputs it holds answers for
        from autograder.kit import kit_rubric

        rubric = kit_rubric(rubric, oracle.banked_cases(name))
    return rubric
