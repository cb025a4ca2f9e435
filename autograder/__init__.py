"""A sandboxed, property-based autograder for NumPy notebook assignments.

Stages (see `autograder.pipeline`): `submission` -> `sandbox` -> `checks` -> `scoring` ->
`report`; `packaging` and `gradescope` for Gradescope, `batch` and `gradebook` for a class,
`kit` for the students' checker (checks ask `oracle` for expected answers). An exercise is one
package described by one `exercise.Exercise` record, found by `catalog`; its rubric is written
with `rubric` and `judging`, the public authoring API. The bundled exercises live in
`autograder.exercises`; docs/AUTHORING.md writes one from scratch.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
