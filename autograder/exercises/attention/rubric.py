"""The attention exercise: scaled dot-product attention, a causal mask, multi-head attention.

Everything specific to this exercise lives here, in `cases.py` (the inputs, and the
discriminating probes hints are confirmed on), in `strategies.py` (how Hypothesis draws
them: each item's strategy is a function that imports it, so a grade that never searches
never loads Hypothesis), in `hints.py` (diagnosis: a mistake
is named only when it is established, otherwise facts) and in `oracle.py` (expected
answers from `solutions/attention.py`, and the known wrong ones): here are the items, their
points and visibility, and how answers are judged. Every failure carries a snippet that
rebuilds the calls and ends with the comparison that failed. Points are set in `POINTS` (they
sum to 100). Nothing here computes attention, so the student checker kit can ship this module
without its oracle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from types import ModuleType
from typing import Any

import numpy as np

from autograder.exercises.attention.cases import (
    PROBE_N,
    PROJECTIONS,
    CausalCase,
    InitCase,
    MhaCase,
    SdpaCase,
    init_grid,
    literal,
)
from autograder.exercises.attention.hints import (
    MHA_MISTAKES,
    SDPA_MISTAKES,
    Hint,
    diagnose_mha,
    diagnose_sdpa,
    mha_raised_hint,
    raised_hint,
)
from autograder.exercises.attention.settings import SCORE_GAP, STABLE
from autograder.judging import (
    ask,
    assert_close,
    excerpt,
    explained,
    kind,
    raised,
)
from autograder.markup import code
from autograder.rubric import C, CheckFailed, Failure, Item, Rubric, Visibility
from autograder.sandbox import Handle, Session, StudentRaised, Then
from autograder.settings import TOLERANCE, Tolerance

__all__ = ["GRADE_CELLS", "MHA_MISTAKES", "POINTS", "RUBRIC", "SDPA_MISTAKES", "VISIBILITY"]

SDPA = "scaled_dot_product_attention"
CAUSAL = "create_causal_mask"
MHA = "MultiHeadAttention"

POINTS: dict[str, float] = {
    "sdpa_reference": 15,
    "sdpa_distribution": 10,
    "sdpa_masking": 15,
    "sdpa_stability": 10,
    "sdpa_inputs_unchanged": 5,
    "causal_mask": 10,
    "mha_init": 10,
    "mha_forward": 10,
    "mha_mask_broadcast": 10,
    "mha_causal": 5,
}
"""Points per item, in one place."""

VISIBILITY: dict[str, Visibility] = {
    "sdpa_reference": "visible",
    "sdpa_distribution": "visible",
    "causal_mask": "visible",
    "mha_init": "visible",
    "mha_forward": "visible",
}
"""Items the released notebook already checks are visible; the rest after the due date."""

GRADE_CELLS: dict[str, tuple[str, ...]] = {f"test_{item}": (item,) for item in POINTS}
"""The notebook's autograded nbgrader cells, and the items whose points each stands for: one
cell per item, worth a tenth of its points, checking the same property on fixed inputs (so
`nbgrader autograde` and this grader fail the same items for the same mistakes)."""


# --- judging helpers ---------------------------------------------------------------------


def _pair(value: object, what: str) -> tuple[object, object]:
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return value[0], value[1]
    raise CheckFailed(
        Failure(
            f"{what} returned {kind(value, quote=True)}; expected a tuple (output, weights).",
            hint="End the function with `return output, weights`.",
            mistake="not-a-pair",
        )
    )


def _array(
    value: object, name: str, shape: tuple[int, ...], code: Callable[[], str] = str
) -> np.ndarray:
    """`value` as a real numeric array of `shape`, or a `CheckFailed` naming what was wrong;
    `code` is the call that returned it (the snippet then checks the shape)."""
    if not isinstance(value, np.ndarray):
        hint, mistake = "Return a NumPy array (np.asarray(...) converts a list).", ""
        if value is None:
            hint, mistake = "Did you forget a `return` statement?", "no-return"
        raise CheckFailed(
            Failure(
                f"`{name}` is {kind(value, quote=True)}; expected a NumPy array.",
                hint=hint,
                mistake=mistake,
            )
        )
    if value.shape != shape:
        raise CheckFailed(
            Failure(
                f"`{name}` has shape {value.shape}; expected {shape}.",
                snippet=code() and f"{code()}\nassert {name}.shape == {shape}, {name}.shape",
                expected=f"shape {shape}",
                got=f"shape {value.shape}",
            )
        )
    return value.astype(np.float64)


def _diagnose_sdpa(
    session: Session,
    case: SdpaCase,
    output: np.ndarray,
    weights: np.ndarray,
    rule: str = "",
    tol: Tolerance = TOLERANCE,
) -> Hint:
    return diagnose_sdpa(session, case, output, weights, rule=rule, tol=tol)


def _diagnose_mha(session: Session, case: MhaCase, got: np.ndarray, rule: str = "") -> Hint:
    return diagnose_mha(session, case, got, rule=rule)


def _raised_hint(error: StudentRaised, case: SdpaCase, session: Session | None = None) -> Hint:
    return raised_hint(error, case, session)


def _mha_raised_hint(error: StudentRaised, case: MhaCase, session: Session) -> Hint:
    return mha_raised_hint(error, case, session)


def _call_sdpa(session: Session, case: SdpaCase) -> tuple[np.ndarray, np.ndarray]:
    try:
        value = session.call(SDPA, case.Q, case.K, case.V, mask=case.mask)
    except StudentRaised as error:
        if error.is_a("NotImplementedError"):
            raise
        raise raised(SDPA, error, lambda e: _raised_hint(e, case, session)) from None
    return _sdpa_answer(session, case, value)


def _sdpa_answer(session: Session, case: SdpaCase, value: object) -> tuple[np.ndarray, np.ndarray]:
    """`value`, returned by the student's sdpa for `case`, as (output, weights) of the right
    shapes, or a `CheckFailed` saying what was wrong with it."""
    Q, K, V = case.Q, case.K, case.V
    output, weights = _pair(value, SDPA)
    batch = np.broadcast_shapes(Q.shape[:-2], K.shape[:-2])
    out_shape = (*batch, Q.shape[-2], V.shape[-1])
    w_shape = (*batch, Q.shape[-2], K.shape[-2])
    swapped = (getattr(output, "shape", None), getattr(weights, "shape", None))
    if out_shape != w_shape and swapped == (w_shape, out_shape):
        raise CheckFailed(
            Failure(
                f"{SDPA} returned the weights first: got shapes {swapped}, expected "
                f"(output {out_shape}, weights {w_shape}).",
                snippet=case.snippet() + f"\nassert output.shape == {out_shape}, output.shape",
                hint="Return (output, weights), in that order.",
                mistake="weights-returned-first",
            )
        )
    code = case.snippet
    weights = _array(weights, "weights", w_shape, code)
    try:
        return _array(output, "output", out_shape, code), weights
    except CheckFailed as failed:
        if not isinstance(output, np.ndarray):
            raise
        raise CheckFailed(
            failed.failure,
            explain=explained(lambda: _diagnose_sdpa(session, case, output, weights)),
        ) from None


def _against_reference(
    session: Session, case: SdpaCase, out: np.ndarray, w: np.ndarray, tol: Tolerance
) -> None:
    ref_out, ref_w = ask("sdpa", case)
    code = case.snippet

    def hint() -> Hint:
        return _diagnose_sdpa(session, case, out, w, tol=tol)

    assert_close(w, ref_w, "weights", tol=tol, explain=hint, snippet=code)
    assert_close(out, ref_out, "output", tol=tol, explain=hint, snippet=code)


# --- scaled dot-product attention ----------------------------------------------------------


def check_sdpa_reference(session: Session, case: SdpaCase) -> None:
    out, w = _call_sdpa(session, case)
    _against_reference(session, case, out, w, TOLERANCE)


def check_sdpa_distribution(session: Session, case: SdpaCase) -> None:
    out, w = _call_sdpa(session, case)
    if np.any(w < -TOLERANCE.atol) or not np.all(np.isfinite(w)):
        where = tuple(int(i) for i in np.argwhere(~(w >= -TOLERANCE.atol))[0])
        raise CheckFailed(
            Failure(
                f"`weights` has a negative or non-finite entry at {where}: {w[where]:.6g}.",
                snippet=case.snippet() + "\nassert np.all(weights >= 0), weights",
                got=excerpt(w, where),
            ),
            explain=explained(
                lambda: _diagnose_sdpa(
                    session,
                    case,
                    out,
                    w,
                    "Weights come from a softmax: exp of the scores, divided by the row sum.",
                )
            ),
        )
    sums = w.sum(axis=-1)
    if not np.allclose(sums, 1.0, rtol=0, atol=10 * TOLERANCE.atol + 1e-3):
        where = tuple(int(i) for i in np.argwhere(~np.isclose(sums, 1.0, atol=1e-3))[0])
        raise CheckFailed(
            Failure(
                f"A row of `weights` sums to {sums[where]:.6g}, not 1 (row {where}).",
                snippet=case.snippet()
                + "\nassert np.allclose(weights.sum(axis=-1), 1.0), weights.sum(axis=-1)",
                expected="every row (over the keys, axis=-1) sums to 1",
                got=excerpt(sums),
            ),
            explain=explained(
                lambda: _diagnose_sdpa(
                    session,
                    case,
                    out,
                    w,
                    "Normalise over the last axis: exp / exp.sum(axis=-1, keepdims=True).",
                )
            ),
        )
    _follows_scores(session, case, out, w)


def _follows_scores(session: Session, case: SdpaCase, out: np.ndarray, w: np.ndarray) -> None:
    """Within a row, a key with a clearly higher score gets a strictly higher weight.

    Softmax preserves the order of the scores and separates any two that differ: weights that
    are uniform, constant or random (however well normalised) are not a softmax of the scores.
    The order of the scores is read off the reference weights (a softmax of them), among the
    keys the mask allows, for pairs whose weights differ by a factor of at least 1 + SCORE_GAP.
    """
    _, ref_w = ask("sdpa", case)
    allowed = np.ones(w.shape, dtype=bool)
    if case.mask is not None:
        allowed = np.broadcast_to(np.asarray(case.mask) != 0, w.shape)
    pairs = allowed[..., :, np.newaxis] & allowed[..., np.newaxis, :]
    higher = pairs & (ref_w[..., :, np.newaxis] > ref_w[..., np.newaxis, :] * (1 + SCORE_GAP))
    wrong = higher & ~(w[..., :, np.newaxis] > w[..., np.newaxis, :])
    if not wrong.any():
        return
    found = tuple(int(i) for i in np.argwhere(wrong)[0])
    row, a, b = found[:-2], found[-2], found[-1]
    where, other = (*row, a), (*row, b)
    raise CheckFailed(
        Failure(
            f"In row {row} of `weights`, key {a} has a higher score than key {b}, but gets "
            f"weight {w[where]:.6g}, not more than key {b}'s {w[other]:.6g}; a softmax gives a "
            "higher score a higher weight.",
            snippet=case.snippet()
            + f"\nassert weights[{where}] > weights[{other}], (weights[{where}], weights[{other}])",
            expected=excerpt(ref_w, where),
            got=excerpt(w, where),
        ),
        explain=explained(
            lambda: _diagnose_sdpa(
                session,
                case,
                out,
                w,
                "The weights must come from the scores: softmax(Q @ K^T / sqrt(d_k)) over the "
                "keys. Uniform, constant or random weights are not a softmax of the scores.",
            )
        ),
    )


def check_sdpa_masking(session: Session, case: SdpaCase) -> None:
    assert case.mask is not None
    out, w = _call_sdpa(session, case)
    allowed = np.broadcast_to(np.asarray(case.mask) != 0, w.shape)
    if np.any(w[~allowed] > 1e-6):
        where = tuple(int(i) for i in np.argwhere(~allowed & (w > 1e-6))[0])
        raise CheckFailed(
            Failure(
                f"A masked key gets weight {w[where]:.3g} at index {where}; masked keys must get "
                "(almost) no weight.",
                snippet=case.snippet() + "\nhidden = np.broadcast_to(np.asarray(mask) == 0, "
                "weights.shape)\nassert np.all(weights[hidden] <= 1e-6), weights[hidden].max()",
                got=excerpt(w, where),
            ),
            explain=explained(
                lambda: _diagnose_sdpa(
                    session,
                    case,
                    out,
                    w,
                    "Where mask == 0, replace the score with MASK_VALUE before the softmax.",
                )
            ),
        )
    _against_reference(session, case, out, w, TOLERANCE)
    # A key masked for a query must not influence that query's output: change one such key
    # (and its value) and compare the rows that cannot see it.
    hidden = ~allowed
    if hidden.any():
        key = int(np.argwhere(hidden)[0][-1])
        K2, V2 = case.K.copy(), case.V.copy()
        K2[..., key, :] += 3.0
        V2[..., key, :] -= 5.0
        changed = replace(case, K=K2, V=V2)
        out2, w2 = _call_sdpa(session, changed)
        rows = hidden[..., key]

        def code() -> str:
            return "\n".join(
                [
                    case.snippet(),
                    "K2, V2 = K.copy(), V.copy()",
                    f"K2[..., {key}, :] += 3.0",
                    f"V2[..., {key}, :] -= 5.0",
                    "output2, _ = scaled_dot_product_attention(Q, K2, V2, mask=mask)",
                    f"rows = np.broadcast_to(np.asarray(mask) == 0, weights.shape)[..., {key}]",
                ]
            )

        try:
            assert_close(
                out2[rows],
                out[rows],
                f"output of the queries that cannot see key {key}",
                explain=lambda: _diagnose_sdpa(
                    session,
                    case,
                    out,
                    w,
                    "A masked key must not change the output: its weight must be exactly 0.",
                ),
                snippet=code,
                expr="output2[rows]",
                against="output[rows]",
            )
            # The other rows do see the change: each answer must be right for its own input.
            _against_reference(session, changed, out2, w2, TOLERANCE)
        except CheckFailed as failed:
            raise CheckFailed(
                _derived(failed.failure, case, f"After changing masked key {key} and its value"),
                explain=failed.explain,
            ) from None
    # A mask of all ones is the same as no mask.
    ones = replace(case, mask=np.ones_like(case.mask))
    try:
        out3, w3 = _call_sdpa(session, ones)
        _against_reference(session, ones, out3, w3, TOLERANCE)
    except CheckFailed as failed:
        raise CheckFailed(
            _derived(failed.failure, ones, "With a mask of all ones"), explain=failed.explain
        ) from None


def _derived(failure: Failure, case: SdpaCase, context: str) -> Failure:
    """`failure`, found on `case` (derived from the drawn case), described with that case."""
    return replace(
        failure,
        summary=f"{context}: {failure.summary}",
        inputs=case.describe(),
        snippet=failure.snippet or case.snippet(),
    )


def check_sdpa_stability(session: Session, case: SdpaCase) -> None:
    with np.errstate(all="ignore"):
        out, w = _call_sdpa(session, case)
    _against_reference(session, case, out, w, STABLE)


def check_sdpa_inputs_unchanged(session: Session, case: SdpaCase) -> None:
    """Inputs come back unchanged, from a call that computed the right answer: a function that
    ignores its inputs leaves them unchanged too, which is no evidence of anything."""
    try:
        value, echoed = session.call(SDPA, case.Q, case.K, case.V, mask=case.mask, echo=True)
    except StudentRaised as error:
        if error.is_a("NotImplementedError"):
            raise
        raise raised(SDPA, error, lambda e: _raised_hint(e, case, session)) from None
    names = ("Q", "K", "V", "mask")
    originals = (case.Q, case.K, case.V, case.mask)
    for name, before, after in zip(names, originals, echoed, strict=False):
        if before is None:
            continue
        if not (isinstance(after, np.ndarray) and np.array_equal(before, after)):
            lines = case.snippet().splitlines()
            lines.insert(-1, f"{name}_before = {name}.copy()")
            lines.append(f'assert np.array_equal({name}, {name}_before), "{name} was changed"')
            raise CheckFailed(
                Failure(
                    f"`{name}` was changed by your function; inputs must be left as they were.",
                    inputs=case.describe(),
                    snippet="\n".join(lines),
                    expected=excerpt(before),
                    got=excerpt(after)
                    if isinstance(after, np.ndarray)
                    else kind(after, quote=True),
                    hint="Operations like `x -= ...`, `x /= ...` or `x[...] = ...` change the "
                    "caller's array: compute new arrays instead (x = x - ...).",
                    mistake="input-changed",
                )
            )
    try:
        out, w = _sdpa_answer(session, case, value)
        _against_reference(session, case, out, w, TOLERANCE)
    except CheckFailed as failed:
        raise CheckFailed(
            replace(
                failed.failure,
                summary="The inputs were left unchanged, but this item counts only for calls "
                f"that return the right answer, and this one did not: {failed.failure.summary}",
            ),
            explain=failed.explain,
        ) from None


# --- causal mask ---------------------------------------------------------------------------


def check_causal_mask(session: Session, case: CausalCase) -> None:
    """The mask itself, exactly: the only thing `create_causal_mask` does. (Whether masked
    positions then have no influence is a property of the attention that uses the mask, which
    `sdpa_masking` and `mha_causal` check; judging it here would make this item depend on
    another function's points.)"""
    n = case.seq_len
    mask = session.call(CAUSAL, n)
    if not isinstance(mask, np.ndarray):
        raise CheckFailed(
            Failure(
                f"{CAUSAL}({n}) returned {kind(mask, quote=True)}; expected a NumPy array.",
                hint="Return an array (np.tril(np.ones((seq_len, seq_len))) is one), not a "
                "list or another type: np.asarray(...) converts a list.",
            )
        )
    expected = ask("causal", n)
    if mask.shape != (n, n) or not np.array_equal(mask.astype(np.float64), expected):
        lines = [case.snippet().splitlines()[1]]
        if n <= 8:
            lines += [
                literal("expected", expected.astype(int)),
                "assert mask.shape == expected.shape and np.array_equal(mask, expected), mask",
            ]
        else:
            lines.append(f"print(mask)  # expected {n} x {n}: 1 on and below the diagonal")
        raise CheckFailed(
            Failure(
                f"{CAUSAL}({n}) is not 1 on and below the diagonal and 0 above it.",
                snippet="import numpy as np\n" + "\n".join(lines),
                expected=excerpt(expected),
                got=excerpt(mask.astype(np.float64)) if mask.ndim <= 2 else kind(mask, quote=True),
            ),
            explain=explained(lambda: _diagnose_causal(session, n, mask)),
        )


def _diagnose_causal(session: Session, n: int, mask: np.ndarray) -> Hint:
    """Name what is wrong with the causal mask when it holds for `n` and for `PROBE_N` too."""
    probe = session.call(CAUSAL, PROBE_N)
    relations: list[tuple[str, Callable[[np.ndarray], np.ndarray], str]] = [
        (
            "causal-without-diagonal",
            lambda e: np.tril(e, -1),
            "The diagonal must be 1: each position may attend to itself.",
        ),
        (
            "causal-transposed",
            lambda e: e.T,
            "Your mask is transposed: position i may attend to keys 0..i (np.tril).",
        ),
        (
            "causal-inverted",
            lambda e: 1 - e,
            "Your mask is inverted: 1 means *may attend* (on and below the diagonal).",
        ),
    ]
    found = []
    for mistake, wrong, text in relations:
        if all(
            isinstance(m, np.ndarray)
            and m.shape == (k, k)
            and np.array_equal(m.astype(np.float64), wrong(ask("causal", k)))
            for m, k in ((mask, n), (probe, PROBE_N))
        ):
            found.append((mistake, text))
    if len(found) == 1:
        return Hint(found[0][1], found[0][0])
    if mask.shape != (n, n):
        return Hint(f"Your mask has shape {mask.shape}; it must be ({n}, {n}) for seq_len = {n}.")
    got = mask.astype(np.float64)
    bad = np.argwhere(got != ask("causal", n))
    first = tuple(int(i) for i in bad[0])
    return Hint(f"{len(bad)} of {n * n} entries are wrong, the first at (row, column) {first}.")


# --- multi-head attention ------------------------------------------------------------------


def check_mha_init(session: Session, case: InitCase) -> None:
    e, h = case.embed_dim, case.num_heads
    try:
        handle = session.call(MHA, e, h, keep=True)
    except StudentRaised as error:
        if e % h != 0 and error.is_a("ValueError"):
            return
        if error.is_a("NotImplementedError"):
            raise
        if e % h != 0:
            hint = (
                "Raise ValueError (not assert, not another exception) when "
                "embed_dim % num_heads != 0."
            )
            mistake = "wrong-exception"
            if error.is_a("AssertionError"):
                hint = "Use `raise ValueError(...)`, not `assert`: asserts vanish under python -O."
                mistake = "assert-instead-of-valueerror"
            raise CheckFailed(
                Failure(
                    f"MultiHeadAttention({e}, {h}) raised {code(error.type_name)}; "
                    "expected ValueError.",
                    hint=hint,
                    mistake=mistake,
                )
            ) from None
        raise CheckFailed(
            Failure(
                f"MultiHeadAttention({e}, {h}) raised {code(str(error))}; {e} is divisible by {h}."
            )
        ) from None
    if e % h != 0:
        raise CheckFailed(
            Failure(
                f"MultiHeadAttention({e}, {h}) did not raise; expected ValueError because "
                f"{e} % {h} = {e % h}.",
                hint="Check `if embed_dim % num_heads != 0: raise ValueError(...)` first thing.",
                mistake="no-divisibility-check",
            )
        )
    # A second instance, created before this one is read: attributes kept on the class (shared
    # by every instance) would now show the second one's values.
    second = (2, 2) if (e, h) != (2, 2) else (3, 1)
    try:
        session.call(MHA, *second, keep=True)
    except StudentRaised as error:
        if error.is_a("NotImplementedError"):
            raise
        raise CheckFailed(
            Failure(
                f"MultiHeadAttention{second} raised {code(str(error))}; {second[0]} is "
                f"divisible by {second[1]}."
            )
        ) from None
    problem = _init_problem(session, handle, e, h)
    if problem is None:
        return
    fresh = _init_problem(session, session.call(MHA, e, h, keep=True), e, h)
    if fresh is not None:  # wrong on its own, second instance or not
        raise CheckFailed(fresh)
    raise CheckFailed(
        replace(
            problem,
            summary=f"After a second instance, MultiHeadAttention{second}, was created, this "
            f"one's {problem.summary[0].lower()}{problem.summary[1:].rstrip('.')} (a new "
            "instance alone is right: a value is shared between instances).",
            snippet="\n".join(
                [
                    f"mha = MultiHeadAttention({e}, {h})",
                    f"other = MultiHeadAttention{second}",
                    "got = (mha.embed_dim, mha.num_heads, mha.head_dim)",
                    f"assert got == ({e}, {h}, {e // h}), got",
                    "for proj in (mha.q_proj, mha.k_proj, mha.v_proj, mha.out_proj):",
                    "    shapes = (proj.weight.shape, proj.bias.shape)",
                    f"    assert shapes == (({e}, {e}), ({e},)), shapes",
                ]
            ),
            hint="Store every attribute on the instance (self.head_dim = ...), not on the class "
            "(MultiHeadAttention.head_dim = ... or a class-level default that __init__ changes).",
            mistake="state-shared-between-instances",
        )
    )


def _init_problem(session: Session, handle: Handle, e: int, h: int) -> Failure | None:
    """What is wrong with the attributes of the instance `handle`, built as (e, h), or None."""
    expected = {"embed_dim": e, "num_heads": h, "head_dim": e // h}
    parts = [f"{name}.{part}" for name in PROJECTIONS for part in ("weight", "bias")]
    values = dict(zip([*expected, *parts], session.get(handle, *expected, *parts), strict=True))
    for attr, value in expected.items():
        got = values[attr]
        if type(got) is not int or got != value:
            hint, mistake = "", ""
            if attr == "head_dim" and isinstance(got, float) and got == value:
                hint = "Use integer division: head_dim = embed_dim // num_heads."
                mistake = "head-dim-float"
            return Failure(
                f"`{attr}` is {code(repr(got)[:100])}; expected {value}.",
                hint=hint,
                mistake=mistake,
            )
    for name in PROJECTIONS:
        for part, shape in (("weight", (e, e)), ("bias", (e,))):
            got = values[f"{name}.{part}"]
            if not isinstance(got, np.ndarray) or got.shape != shape:
                return Failure(
                    f"`{name}.{part}` is {kind(got, quote=True)}; expected an array of shape "
                    f"{shape}.",
                    hint=f"Create `self.{name} = Linear(embed_dim, embed_dim)`.",
                )
    return None


def _built_and_forward(
    session: Session, case: MhaCase, name: str, code: Callable[[], str]
) -> tuple[Handle, np.ndarray]:
    """A new `MultiHeadAttention` for `case` and its `forward(case.x, mask=case.mask)`, in one
    round trip; `name` is the answer's variable in `code`, the snippet that makes the calls."""
    try:
        handle, got = session.call(
            MHA,
            case.embed_dim,
            case.num_heads,
            keep=True,
            assign=case.weights,
            then=Then("forward", (case.x,), {"mask": case.mask}),
        )
    except StudentRaised as error:
        if error.is_a("NotImplementedError"):
            raise
        raise raised(
            "MultiHeadAttention", error, lambda e: _mha_raised_hint(e, case, session)
        ) from None
    assert isinstance(handle, Handle)
    return handle, _array(got, name, (case.batch, case.seq, case.embed_dim), code)


def _forward(
    session: Session, handle: Handle, case: MhaCase, name: str, code: Callable[[], str]
) -> np.ndarray:
    """`forward(case.x, mask=case.mask)` of the instance `handle`, an array of the right shape;
    `name` is the answer's variable in `code`, the snippet that makes the call."""
    try:
        got = session.call(handle, case.x, attr="forward", mask=case.mask)
    except StudentRaised as error:
        if error.is_a("NotImplementedError"):
            raise
        raise raised(
            "MultiHeadAttention", error, lambda e: _mha_raised_hint(e, case, session)
        ) from None
    return _array(got, name, (case.batch, case.seq, case.embed_dim), code)


_ROTATED = dict(zip(PROJECTIONS, (*PROJECTIONS[1:], PROJECTIONS[0]), strict=True))
"""The second instance's projections take the first one's weights in another order."""


def _other_instance(case: MhaCase) -> MhaCase:
    """`case` for a second instance: the same configuration, x and mask, and the projection
    weights of the first in another order. Only state (kept from the first instance's calls or
    shared with it) can make its answer wrong when the first one's was right."""
    weights = {
        f"{name}.{part}": case.weights[f"{source}.{part}"]
        for name, source in _ROTATED.items()
        for part in ("weight", "bias")
    }
    return replace(case, weights=weights)


def _other_input(case: MhaCase) -> MhaCase:
    """`case` with another x of the same shape (positions reversed, rescaled, shifted)."""
    return replace(case, x=np.ascontiguousarray(-0.5 * case.x[:, ::-1] + 0.25))


_STATE_HINT = (
    "A result must depend only on the call's arguments and the instance's own projections: do "
    "not keep anything from an earlier call (on self, on the class, or in a global variable), "
    "and store every parameter on self, not on the class."
)


def _later(base: MhaCase, lines: list[str]) -> Callable[[], str]:
    """The snippet of a sequence of calls that began with `base`'s."""
    return lambda: "\n".join([*base.snippet().splitlines(), *lines])


def _judge_later(
    got: np.ndarray, case: MhaCase, base: MhaCase, context: str, lines: list[str], name: str
) -> None:
    """`got` (`name` in the snippet), the answer of a later call (on `case`) in a sequence that
    began with `base`, whose first answer was right: a wrong one can only be state."""
    try:
        assert_close(got, ask("mha", case), "output", snippet=_later(base, lines), expr=name)
    except CheckFailed as failed:
        raise CheckFailed(
            replace(
                failed.failure,
                summary=f"{context}: {failed.failure.summary}",
                inputs=base.describe(),
                hint=_STATE_HINT,
                mistake="state-between-calls",
            )
        ) from None


_SECOND_LINES = [
    "other = MultiHeadAttention({e}, {h})  # a second instance, with other weights",
    "other.q_proj.weight, other.q_proj.bias = mha.k_proj.weight, mha.k_proj.bias",
    "other.k_proj.weight, other.k_proj.bias = mha.v_proj.weight, mha.v_proj.bias",
    "other.v_proj.weight, other.v_proj.bias = mha.out_proj.weight, mha.out_proj.bias",
    "other.out_proj.weight, other.out_proj.bias = mha.q_proj.weight, mha.q_proj.bias",
    "out_other = other.forward(x, mask=mask)",
]


def check_mha_forward(session: Session, case: MhaCase) -> None:
    """The reference's output, on every call of a sequence: a first instance, then a second one
    (other weights) on the same x, then the first again on another x. Each later call repeats a
    configuration already answered right, so only state kept between calls or shared between
    instances can make it wrong, and its failure says so."""
    _mha_sequence(session, case, second_instance=True)


def check_mha_mask_broadcast(session: Session, case: MhaCase) -> None:
    """The reference's output for a mask layout, from one instance called twice (another x the
    second time); state shared between instances is for `mha_forward` to catch."""
    _mha_sequence(session, case, second_instance=False)


def _mha_sequence(session: Session, case: MhaCase, *, second_instance: bool) -> None:
    first, got = _built_and_forward(session, case, "out", case.snippet)
    assert_close(
        got,
        ask("mha", case),
        "output",
        explain=lambda: _diagnose_mha(session, case, got),
        snippet=case.snippet,
        expr="out",
    )
    lines: list[str] = []
    if second_instance:
        other = _other_instance(case)
        lines = [line.format(e=case.embed_dim, h=case.num_heads) for line in _SECOND_LINES]
        _judge_later(
            _built_and_forward(session, other, "out_other", _later(case, lines))[1],
            other,
            case,
            "A second instance (other weights), created after a right first call on another "
            "instance, on the same x",
            lines,
            "out_other",
        )
    again = _other_input(case)
    lines = [*lines, "x2 = -0.5 * x[:, ::-1] + 0.25", "out2 = mha.forward(x2, mask=mask)"]
    _judge_later(
        _forward(session, first, again, "out2", _later(case, lines)),
        again,
        case,
        "The same instance called again (after a right first answer), with another x",
        lines,
        "out2",
    )


def check_mha_causal(session: Session, case: MhaCase) -> None:
    """Changing positions after `case.cut` leaves the output before it unchanged, on one
    instance called twice; both answers must also be the reference's (a constant output has
    no influence from the future either, and proves nothing), and so must a second instance's."""
    handle, out1 = _built_and_forward(session, case, "out", case.snippet)
    x2 = case.x.copy()
    x2[:, case.cut + 1 :] += 3.0
    changed = replace(case, x=x2)
    out2 = _forward(session, handle, changed, "out2", case.causal_snippet)
    keep = slice(0, case.cut + 1)
    assert_close(
        out2[:, keep],
        out1[:, keep],
        f"output at positions 0..{case.cut} when later positions change",
        explain=lambda: _diagnose_mha(
            session,
            case,
            out1,
            f"Position i may depend on positions 0..i only: positions 0..{case.cut} changed "
            "when only later ones did.",
        ),
        snippet=case.causal_snippet,
        expr=f"out2[:, :{case.cut + 1}]",
        against=f"out[:, :{case.cut + 1}]",
    )
    assert_close(
        out1,
        ask("mha", case),
        "output",
        explain=lambda: _diagnose_mha(session, case, out1),
        snippet=case.snippet,
        expr="out",
    )
    lines = ["x2 = x.copy()", f"x2[:, {case.cut + 1}:] += 3.0", "out2 = mha.forward(x2, mask=mask)"]
    _judge_later(
        out2,
        changed,
        case,
        f"The same instance called again, with x changed at positions > {case.cut}",
        lines,
        "out2",
    )
    # A second instance (other weights) on the same x: the notebook's grade cells run in one
    # kernel, so state shared between instances fails them; it fails this item too.
    other = _other_instance(case)
    lines += [line.format(e=case.embed_dim, h=case.num_heads) for line in _SECOND_LINES]
    _judge_later(
        _built_and_forward(session, other, "out_other", _later(case, lines))[1],
        other,
        case,
        "A second instance (other weights), created after right calls on another instance, "
        "on the same x",
        lines,
        "out_other",
    )


def _item(
    id: str,
    title: str,
    check: Callable[[Session, C], None],
    *,
    requires: tuple[str, ...],
    **options: Any,
) -> Item[C]:
    return Item(
        id,
        title,
        POINTS[id],
        check,
        requires=requires,
        visibility=VISIBILITY.get(id, "after_due_date"),
        **options,
    )


def _strategies() -> ModuleType:
    """The module of the strategies (`strategies.py`), imported by the first search: each item
    gets a function that builds its strategy from it (`Item.strategy`), so that a grade in
    which every item passes on its shipped cases never imports Hypothesis."""
    from autograder.exercises.attention import strategies

    return strategies


RUBRIC = Rubric(
    name="attention",
    notebook="attention.ipynb",
    grade_cells=GRADE_CELLS,
    items=(
        _item(
            "sdpa_reference",
            "Scaled dot-product attention matches the reference (random shapes, batch dims)",
            check_sdpa_reference,
            requires=(SDPA,),
            strategy=lambda: _strategies().sdpa_cases(masked=False),
        ),
        _item(
            "sdpa_distribution",
            "Attention weights are a probability distribution over the keys that follows the "
            "scores",
            check_sdpa_distribution,
            requires=(SDPA,),
            strategy=lambda: _strategies().sdpa_cases(masked=None),
        ),
        _item(
            "sdpa_masking",
            "Masking: masked keys get no weight; float, bool and broadcast masks",
            check_sdpa_masking,
            requires=(SDPA,),
            strategy=lambda: _strategies().sdpa_cases(masked=True),
        ),
        _item(
            "sdpa_stability",
            "Numerical stability: large scores give finite, correct results",
            check_sdpa_stability,
            requires=(SDPA,),
            strategy=lambda: _strategies().sdpa_cases(masked=None, stable=True),
        ),
        _item(
            "sdpa_inputs_unchanged",
            "Scaled dot-product attention leaves its inputs unchanged (judged on right answers)",
            check_sdpa_inputs_unchanged,
            requires=(SDPA,),
            strategy=lambda: _strategies().sdpa_cases(masked=None),
        ),
        _item(
            "causal_mask",
            "Causal mask: 1 on and below the diagonal, 0 above it, for n = 1..64",
            check_causal_mask,
            requires=(CAUSAL,),
            cases=tuple(CausalCase(n) for n in range(1, 65)),
        ),
        _item(
            "mha_init",
            "MultiHeadAttention: ValueError when embed_dim % num_heads != 0, head_dim otherwise",
            check_mha_init,
            requires=(MHA,),
            cases=init_grid(max_embed=16, max_heads=6),
            strategy=lambda: _strategies().init_cases(),
        ),
        _item(
            "mha_forward",
            "MultiHeadAttention.forward matches the reference with given projection weights, "
            "call after call and instance after instance",
            check_mha_forward,
            requires=(MHA,),
            strategy=lambda: _strategies().mha_cases(),
        ),
        _item(
            "mha_mask_broadcast",
            "Multi-head masks: (seq, seq), (batch, seq, seq), (batch, 1, seq, seq), "
            "(batch, heads, seq, seq)",
            check_mha_mask_broadcast,
            requires=(MHA,),
            strategy=lambda: _strategies().mha_cases(masked=True),
        ),
        _item(
            "mha_causal",
            "Causal multi-head attention: future positions have no influence",
            check_mha_causal,
            requires=(MHA,),
            strategy=lambda: _strategies().mha_cases(causal=True),
        ),
    ),
)
