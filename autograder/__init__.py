"""A sandboxed, property-based autograder for NumPy notebook assignments.

Stages (see `autograder.pipeline`): `submission` -> `sandbox` -> `checks` -> `scoring` ->
`report`; `packaging` and `gradescope` for Gradescope, `batch` and `gradebook` for a class,
`kit` for the students' checker (checks ask `oracle` for expected answers). Exercises live in
`autograder.rubrics`.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
