"""Exercises: each module here builds one `Rubric` (`RUBRIC`). `load` finds one by name."""

from __future__ import annotations

import importlib

from autograder import oracle
from autograder.errors import ConfigError
from autograder.rubric import Rubric

__all__ = ["AVAILABLE", "load"]

AVAILABLE = ("attention", "kv_cache")


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
