"""Loading an exercise's reference solution, in the grader only (it never runs in the sandbox)."""

from __future__ import annotations

import importlib.util
import os
from functools import cache
from pathlib import Path
from types import ModuleType

from autograder.errors import ConfigError

__all__ = ["load_reference", "solutions_dir"]


def solutions_dir() -> Path:
    """The course's solutions folder: `$AUTOGRADER_SOLUTIONS`, else `solutions/` beside the
    `autograder` package. It holds the grading secret, and the bundled exercises' references."""
    configured = os.environ.get("AUTOGRADER_SOLUTIONS")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parent.parent / "solutions"


@cache
def load_reference(path: Path) -> ModuleType:
    """Import the reference solution at `path` as a module of its own."""
    if not path.is_file():
        raise ConfigError(
            f"No reference solution at {path}: put it there or set AUTOGRADER_SOLUTIONS to the "
            "folder that holds it."
        )
    spec = importlib.util.spec_from_file_location(f"_reference_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
