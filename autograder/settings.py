"""Everything in the core that can change a grade: Hypothesis settings, limits, tolerances.

Change a value here and every stage sees it; nothing else in the core hard-codes one. What is
particular to one exercise (its own tolerances, example counts) is in that exercise's
`settings.py`, which builds on these.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hypothesis import settings as HypothesisSettings
    from hypothesis.internal.constants_ast import Constants

__all__ = [
    "CACHES",
    "KIT_EXAMPLES_KEY",
    "LIKENESS",
    "LIMITS",
    "MAX_EXAMPLES",
    "ONE_CPU",
    "SINGLE_THREADED",
    "TOLERANCE",
    "Caches",
    "Likeness",
    "Limits",
    "Tolerance",
    "example_seed",
    "hypothesis_settings",
]

#: Random examples per rubric item, unless the item says otherwise (`Item.max_examples`).
MAX_EXAMPLES = 50


@functools.cache
def hypothesis_settings() -> HypothesisSettings:
    """The Hypothesis settings of every rubric item's search.

    Built on first use, not at import: a grade in which every item passes on the cases shipped
    with it (`shipped.py`, `drawn.py`) never searches, and then never loads Hypothesis (about
    0.1 s of the grader's own 0.9 s of CPU for a correct notebook). Building them also turns
    off Hypothesis's literals of "local" modules (see `_no_local_constants`), so that no
    search runs without that.

    Examples are not derandomised (that would make them a function of the property alone,
    which anyone holding the grader's code can replay): `checks.run_item` seeds every item
    with `example_seed`, so a regrade sees the same inputs; no database, so nothing carries
    over between runs; no deadline (student code is judged by `Limits`, not by Hypothesis); no
    explain phase (it re-runs examples for reports we build ourselves).
    """
    from hypothesis import HealthCheck, Phase, Verbosity, settings
    from hypothesis.internal.conjecture import providers

    providers._get_local_constants = _no_local_constants
    return settings(
        derandomize=False,
        database=None,
        deadline=None,
        max_examples=MAX_EXAMPLES,
        phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink),
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
        print_blob=False,
        verbosity=Verbosity.quiet,
    )


def example_seed(key: bytes, item_id: str) -> int:
    """The Hypothesis seed of item `item_id`'s random examples under `key`.

    The grader's key is the course's grading secret (`autograder.secret`), so its examples are
    the same on every regrade and unknown to anyone without the secret; a keyed hash, so that
    knowing the seed of one item (or the kit's) tells nothing about another's.
    """
    digest = hmac.new(key, b"examples:" + item_id.encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:16], "big")


#: The key of the student kit's own examples (`kit.py`): public, and so different from any
#: course's grading secret. The kit banks answers for these examples, never for the grader's.
KIT_EXAMPLES_KEY = b"autograder student kit: public examples"


@functools.cache
def _no_local_constants() -> Constants:
    """No literals at all: Hypothesis's hook for those of "local" modules, replaced.

    Hypothesis also seeds its examples with number literals it finds in the source of "local"
    modules: whichever modules are loaded, judged by where they are installed (the grader in
    /autograder/source counts, the same grader in site-packages does not). That would make the
    examples, hence grades, depend on the install location and on unrelated literals in our
    code, and it caches the literals in a `.hypothesis/` folder it creates in the current
    directory. Examples must be a function of the property alone, so the grader turns it off
    (`hypothesis_settings`, before any search). Hypothesis is pinned exactly
    (packaging.REQUIREMENTS); tests/test_checks.py fails loudly if an upgrade moves this hook.
    """
    from hypothesis.internal.constants_ast import Constants

    return Constants()


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
    """Address space of the child (RLIMIT_AS) at most; a larger allocation raises MemoryError.
    The child gets less where less is available (`autograder.memory.child_memory_bytes`)."""
    memory_headroom_bytes: int = 256 << 20
    """Memory kept out of the child's limit for the grader (about 150 MB: Python, NumPy,
    Hypothesis) and for writing the results, when the limit is derived from the container's
    (Gradescope's default: 768 MB for both, so the child gets 512 MB)."""
    memory_floor_bytes: int = 192 << 20
    """The child's limit is never set lower: Python with NumPy needs about 120 MB of address
    space just to start."""
    processes: int = 16
    """New processes the child may create beyond those of its user when it starts."""
    file_bytes: int = 32 << 20
    """Largest file the child may write (RLIMIT_FSIZE); a larger write fails with EFBIG."""
    scratch_bytes: int = 64 << 20
    """What the scratch folder may hold in all (a tmpfs of that size, in namespace mode)."""
    scratch_files: int = 4096
    """Files and folders the scratch folder may hold (namespace mode)."""
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


@dataclass(frozen=True)
class Caches:
    """What a grading process keeps for the next student (the same for every student, so no
    grade depends on these sizes: a smaller cache only computes again what it dropped)."""

    drawn_items: int = 256
    """Items whose cases of a fully passing run are kept (`autograder.drawn`), per course key."""
    drawn_request_bytes: int = 16 << 20
    """The most bytes of requests kept to replay one item's cases as a script (`drawn.py`)."""
    failed_runs: int = 256
    """Full runs of items that failed, kept to tell the next student whose code answers alike
    (`autograder.transcripts`)."""
    failed_run_bytes: int = 64 << 20
    """The most bytes of requests those runs keep, all together."""
    answers: int = 8192
    """Answers of the reference kept by the live oracle (`oracle.LiveOracle`)."""
    answer_bytes: int = 64 << 20
    """The arrays of those answers hold at most this much; the oldest are dropped first."""


@dataclass(frozen=True)
class Likeness:
    """When students' wrong answers count as shared (`likeness.py`); it never changes a grade,
    it decides which students a person is asked to look at."""

    min_inputs: int = 5
    """Two students are a pair when they gave the same unexplained answer (bit for bit, arrays
    of at least two distinct values) on at least this many inputs. One agreeing answer is
    already unlikely by chance; five keep out pairs whose different bugs happen to agree on the
    first failing input or two (the shrinker's path then follows each one's answers)."""
    probe_examples: int = 10
    """Random inputs an item failed with no named mistake is run on again, for evidence only
    (`checks.gather_evidence`): grading stops at the first failure, which is too little."""
    probe_seconds: float = 20.0
    """Wall time for those runs, all items of one submission together."""
    noise_tokens: int = 25
    """copydetect's noise threshold: shorter matches of code tokens are ignored."""
    guarantee_tokens: int = 30
    """copydetect's guarantee threshold: matches this long are always found."""
    code_chars: int = 200_000
    """Code compared per student, at most (a notebook's first characters): a hostile notebook
    with megabytes of code cannot stall the class report."""


LIMITS = Limits()

#: While a submission is graded, the grader's thread and its sandbox keep to one CPU
#: (`sandbox.cpu`): they take turns, so a second CPU only adds the cost of moving between them.
#: It never changes a verdict: only how fast the same work is done.
ONE_CPU = True
TOLERANCE = Tolerance()
CACHES = Caches()
LIKENESS = Likeness()
