"""The exercises bundled with the grader, one package each (see docs/AUTHORING.md).

Each registers under the entry-point group `autograder.exercises` in pyproject.toml, exactly as
a third-party exercise package would; the core finds them there (`catalog.py`), not here.
"""

DEFAULT = "attention"
"""The exercise commands use when none is named (a student kit uses its own instead)."""
