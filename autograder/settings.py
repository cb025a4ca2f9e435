"""Everything that can change a grade, in one place: Hypothesis settings, limits, tolerances.

Change a value here and every stage sees it; nothing else in the grader hard-codes one.
"""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import HealthCheck, Phase, Verbosity, settings
from hypothesis.internal.conjecture import providers as _providers
from hypothesis.internal.constants_ast import Constants as _Constants

__all__ = [
    "HYPOTHESIS",
    "KV_CACHE_EXAMPLES",
    "KV_CACHE_TOLERANCE",
    "LIMITS",
    "SINGLE_THREADED",
    "TOLERANCE",
    "Limits",
    "Tolerance",
]

#: Hypothesis settings for every rubric item. `derandomize` makes the examples a function of
#: the property alone, so a regrade sees the same inputs; no database, so nothing carries over
#: between runs; no deadline (student code is judged by `Limits`, not by Hypothesis); no
#: explain phase (it re-runs examples for reports we build ourselves).
HYPOTHESIS = settings(
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=50,
    phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink),
    suppress_health_check=list(HealthCheck),
    report_multiple_bugs=False,
    print_blob=False,
    verbosity=Verbosity.quiet,
)


_NO_CONSTANTS = _Constants()


def _no_local_constants() -> _Constants:
    return _NO_CONSTANTS


# Hypothesis also seeds its examples with number literals it finds in the source of "local"
# modules: whichever modules are loaded, judged by where they are installed (the grader in
# /autograder/source counts, the same grader in site-packages does not). That would make the
# examples, hence grades, depend on the install location and on unrelated literals in our
# code, and it caches the literals in a `.hypothesis/` folder it creates in the current
# directory. Examples must be a function of the property alone, so the grader turns it off.
# Hypothesis is pinned exactly (packaging.REQUIREMENTS); tests/test_checks.py fails loudly if
# an upgrade moves this hook.
_providers._get_local_constants = _no_local_constants


@dataclass(frozen=True)
class Limits:
    """Resource limits for the sandboxed student code."""

    call_seconds: float = 10.0
    """Wall time for one call of a student function."""
    item_seconds: float = 60.0
    """Wall time for all calls of one rubric item."""
    notebook_seconds: float = 60.0
    """Wall time for the notebook's top-level code (all cells together, restarts included)."""
    cell_seconds: float = 15.0
    """Wall time for one top-level cell; a slower cell is skipped (see `cell_restarts`)."""
    total_seconds: float = 420.0
    """Wall time for grading one submission, well under Gradescope's 10 minutes."""
    memory_bytes: int = 1 << 30
    """Address space of the child (RLIMIT_AS); a larger allocation raises MemoryError."""
    processes: int = 16
    """New processes the child may create beyond those of its user when it starts."""
    output_bytes: int = 32 * 1024
    """Printed output kept per submission; the rest is counted and dropped."""
    message_bytes: int = 64 << 20
    """Largest reply the grader accepts from the child."""
    cell_restarts: int = 3
    """Top-level cells that hang or kill the child are skipped at most this many times."""


@dataclass(frozen=True)
class Tolerance:
    """How close a student's result must be to the reference: |a-b| <= atol + rtol*|b|.

    Wide enough for float32 arithmetic, explicit loops, einsum and `-inf` masking; narrow enough
    that a missing 1/sqrt(d_k) or a softmax over the wrong axis is caught on every example.
    """

    rtol: float = 2e-3
    atol: float = 2e-4


#: Environment for one BLAS/OpenMP thread, set for the grader (before NumPy loads) and the
#: sandbox child. Grading is thousands of small array operations: a BLAS thread pool only burns
#: CPU waiting (measured: ~0.15 s of a 1.3 s grade here; Gradescope's half vCPU has no second
#: core to use), and one thread keeps floating-point sums independent of thread scheduling.
SINGLE_THREADED = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

LIMITS = Limits()
TOLERANCE = Tolerance()

#: The KV-cache exercise compares a cache's contents and cached decoding with the reference.
#: Both are exact in float64 up to rounding (~1e-15); a cache that stores float32, as real ones
#: store fp16 or bf16, rounds each key and value by ~6e-8 relative, which reaches the outputs as
#: ~1e-6 at most on the rubric's inputs (measured on tests/implementations/kv_cache). Every
#: catalogued mistake moves some output by more than 1e-2.
KV_CACHE_TOLERANCE = Tolerance(rtol=1e-5, atol=1e-5)

#: Random examples for each of the KV-cache exercise's stateful items (the cache and cached
#: decoding; its two formulas keep the default). One such example builds caches and a model
#: and makes 5 to 13 calls into the sandbox where an attention example makes 1 to 3, so 30 of
#: them cost what attention's 50 do (a full grade stays within attention's time). Fixed cases
#: run before them where a space is small enough to list (every kind of refused update).
KV_CACHE_EXAMPLES = 30
