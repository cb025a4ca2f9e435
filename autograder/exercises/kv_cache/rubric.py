"""The KV-cache exercise: a cache of keys and values, cached decoding, its memory and its cost.

Everything specific to this exercise lives here, in `cases.py` (the inputs), in
`strategies.py` (how Hypothesis draws them: each item's strategy is a function that imports
it, so a grade that never searches never loads Hypothesis) and in `oracle.py` (expected
answers from `solutions/kv_cache.py`, and the known wrong ones): the items, their points
and visibility (`POINTS`, `VISIBILITY`), how answers are judged (with `autograder.judging`),
and the hints that name the common mistakes. Nothing here computes an answer, so a student
kit can ship this module without its oracle.

The student's objects stay in the sandbox worker behind handles; arrays cross the wire as
fresh copies both ways, so no check depends on whether `get()` returns views or copies, or on
the cache keeping the arrays it was given. A cache's contents are read only through `get()` and
`seq_len`: its layout is judged by `cache_append_get` alone; reset and isolation compare the
numbers it holds (every drawn value is nonzero), whatever their arrangement.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import numpy as np

from autograder.exercises.kv_cache.cases import (
    BYTES_GRID,
    ERROR_GRID,
    PROJECTIONS,
    SCORE_GRID,
    WRONG,
    AppendCase,
    BytesCase,
    DecodeCase,
    ErrorCase,
    NewTokensCase,
    ResetCase,
    ScoreCase,
    UnchangedCase,
)
from autograder.exercises.kv_cache.settings import KV_CACHE_EXAMPLES
from autograder.exercises.kv_cache.settings import KV_CACHE_TOLERANCE as TOL
from autograder.judging import (
    as_array,
    as_integer,
    ask,
    assert_close,
    close,
    established,
    excerpt,
    fail,
    kind,
    student,
)
from autograder.rubric import C, CheckFailed, Item, Rubric, Visibility
from autograder.sandbox import Handle, Opaque, Session, StudentRaised

__all__ = ["GRADE_CELLS", "HINTS", "POINTS", "RUBRIC", "VISIBILITY"]

CACHE = "KVCache"
MHA = "MultiHeadAttention"
BYTES = "kv_cache_bytes"
SCORES = "decoding_score_count"

POINTS: dict[str, float] = {
    "cache_append_get": 15,
    "cache_errors": 10,
    "cache_reset_isolation": 10,
    "decode_steps": 15,
    "decode_chunked": 15,
    "decode_inputs_unchanged": 5,
    "decode_new_tokens_only": 10,
    "kv_cache_bytes": 10,
    "decoding_score_count": 10,
}
"""Points per item, in one place (they sum to 100)."""

VISIBILITY: dict[str, Visibility] = {
    "cache_append_get": "visible",
    "cache_errors": "after_due_date",
    "cache_reset_isolation": "visible",
    "decode_steps": "visible",
    "decode_chunked": "visible",
    "decode_inputs_unchanged": "after_due_date",
    "decode_new_tokens_only": "after_due_date",
    "kv_cache_bytes": "visible",
    "decoding_score_count": "visible",
}
"""Who sees each item when: the released notebook checks the visible ones already."""

GRADE_CELLS: dict[str, tuple[str, ...]] = {f"test_{item}": (item,) for item in POINTS}
"""The notebook's autograded nbgrader cells: one per item, named `test_<item>`."""

_AXIS = (
    "get() returned the positions stacked along the wrong axis: keys and values are "
    "(batch_size, num_heads, seq_len, head_dim), so append along axis 2, the sequence axis."
)
_CAPACITY = (
    "A cache may be filled to exactly max_seq_len positions: refuse an update only when "
    "seq_len + t > max_seq_len."
)
_OVERFLOW = (
    "update accepted more than max_seq_len positions: raise ValueError when "
    "seq_len + t > max_seq_len."
)
_PARTIAL = (
    "After a ValueError the cache must be exactly as before: check k, v and the capacity "
    "first, and only then store anything."
)
_SHARED = (
    "Two caches shared their contents: create the storage on self in __init__; a list "
    "written in the class body is one list shared by every instance."
)
_KEEPS_CONTENTS = (
    "After reset() the cache still returned old keys and values: empty the storage, not "
    "only the counter."
)
_KEEPS_LENGTH = "After reset() seq_len must be 0 and all max_seq_len positions free again."
_WHOLE_SEQUENCE = (
    "With a cache, forward returns the outputs of the new tokens only, "
    "(batch, t_new, embed_dim), not of the whole sequence."
)
_RECOMPUTES = (
    "The cache must hold keys and values, k_proj(x) and v_proj(x) split into heads, not x: "
    "a cached step projects only the new tokens and never recomputes the old ones."
)

HINTS: dict[str, str] = {
    "append-along-batch-axis": _AXIS,
    "append-along-heads-axis": _AXIS,
    "append-along-head-dim-axis": _AXIS,
    "newest-first": "get() returned the updates newest first: append each update after what is "
    "stored, so that position 0 is the oldest.",
    "get-without-moving-the-sequence-axis-back": "get() must return (batch_size, num_heads, "
    "seq_len, head_dim) whatever layout you store internally: move the sequence axis back to "
    "axis 2.",
    "get-returns-the-whole-buffer": "get() returned max_seq_len positions: return only the "
    "seq_len positions stored so far, buffer[:, :, :seq_len].",
    "seq-len-counts-updates": "seq_len counts positions, not calls: an update with t positions "
    "adds t to it.",
    "attends-only-to-the-new-keys": "The new queries must attend to every cached key and value, "
    "not only to the new ones: after update, read all of them back with get().",
    "no-causal-mask-in-a-chunk": "Inside a chunk of several new tokens (the prompt, say), a new "
    "token must not see the tokens after it: the cached path needs the causal mask too.",
    "causal-mask-without-offset": "The new queries sit at absolute positions past .. past + "
    "t_new - 1: take the last t_new rows of the causal mask over all positions, not the first.",
    "chunk-mask-without-offset": "A chunk that arrives after cached positions: its new query i "
    "is at absolute position past + i and sees keys 0 .. past + i, so shift the causal mask by "
    "the cached length.",
    "query-does-not-see-itself": "The new query at position p attends to keys 0 .. p, its own "
    "key included.",
    "caches-x-instead-of-its-projections": _RECOMPUTES,
    "caches-the-queries": "The cache holds the queries' projection where the keys belong: "
    "store k_proj(x) and v_proj(x), split into heads.",
    "memory-without-the-factor-2": "The cache holds a key and a value for every position: "
    "multiply by 2.",
    "memory-without-the-layers": "Every layer has its own cache: multiply by num_layers.",
    "memory-in-float32-always": "Use bytes_per_value (2 for fp16, 4 for float32) rather than a "
    "fixed size.",
    "memory-in-bits": "The answer is in bytes: bytes_per_value is already the size of one value "
    "in bytes, so do not multiply by 8.",
    "squares-counted-with-the-cache-too": "With a cache only the newest query is new: step t "
    "computes t scores, not t * t.",
    "score-count-off-by-one": "Step t of 1 .. seq_len has t positions (the first step already "
    "has one score): sum t for t = 1 .. seq_len.",
    "cache-counts-the-last-step-only": "Count the scores of every step, not only the last: with "
    "a cache step t computes t, so the total is 1 + 2 + ... + seq_len.",
    "no-cache-counts-the-last-step-only": "Count the scores of every step, not only the last: "
    "without a cache step t computes t * t, so the total is 1 + 4 + ... + seq_len**2.",
    "no-cache-counts-the-triangle": "Without a cache step t recomputes the t * t scores of the "
    "whole prefix: sum t * t over the steps.",
}
"""What to tell a student whose answer a known mistake explains, by the oracle's mistake id."""

_RULE = (
    "With a cache, x holds only the new tokens: append their keys and values, then let the new "
    "query at absolute position p attend to the cached and new positions 0 .. p."
)


def _named(mistakes: Sequence[str]) -> str:
    """The hint for the established mistakes: one, or several the inputs cannot tell apart."""
    return " Or: ".join(dict.fromkeys(HINTS[mistake] for mistake in mistakes))


def _same(got: object, answer: object) -> bool:
    """Whether `got` reproduces a (wrong) `answer`: arrays within tolerance where the answer is
    defined (NaN marks values left free), scalars equal, sequences element by element."""
    if isinstance(answer, np.ndarray):
        if not isinstance(got, np.ndarray) or got.shape != answer.shape:
            return False
        if got.dtype.kind not in "biuf":
            return False
        free = np.isnan(answer)
        return close(np.where(free, 0.0, got), np.where(free, 0.0, answer), TOL)
    if isinstance(answer, (tuple, list)):
        return (
            isinstance(got, (tuple, list))
            and len(got) == len(answer)
            and all(_same(g, a) for g, a in zip(got, answer, strict=False))
        )
    return type(got) is type(answer) and got == answer


# --- talking to the student's objects ------------------------------------------------------


def _cache(session: Session, batch: int, heads: int, head_dim: int, capacity: int) -> Handle:
    made = f"{CACHE}({batch}, {heads}, {head_dim}, {capacity})"
    with student(made):
        handle = session.call(CACHE, batch, heads, head_dim, capacity, keep=True)
    assert isinstance(handle, Handle)
    return handle


def _get(
    session: Session, cache: Handle, when: str, *, length: bool = True
) -> tuple[object, object, object]:
    """What the cache shows: (keys, values, seq_len), as the student's code returns them;
    seq_len is None unless `length` (one round trip less)."""
    with student(f"get() {when}"):
        pair = session.call(cache, attr="get")
    stored: object = None
    if length:
        with student(f"seq_len {when}"):
            (stored,) = session.get(cache, "seq_len")
    if isinstance(stored, np.ndarray) and stored.shape == () and stored.dtype.kind in "iu":
        stored = int(stored)  # a NumPy integer
    if isinstance(stored, Opaque) and stored.type_name == "method":
        fail(
            f"`cache.seq_len` {when} is a method; expected the number of positions stored.",
            hint="Make seq_len an attribute, or a property (@property above def seq_len), so "
            "that cache.seq_len is a number without parentheses.",
        )
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
        fail(
            f"get() {when} returned {kind(pair)}; expected a pair (keys, values).",
            hint="End get() with `return keys, values`.",
        )
    return pair[0], pair[1], stored


def _refused_hint(error: StudentRaised, filled: int, capacity: int) -> str:
    if error.is_a("ValueError") and filled == capacity:
        return _CAPACITY
    if error.is_a("ValueError"):
        return (
            f"This update fits: its k and v match the cache and {filled} <= max_seq_len = "
            f"{capacity}. Raise ValueError only for a wrong shape or when it does not fit."
        )
    return ""


def _update(
    session: Session, cache: Handle, k: np.ndarray, v: np.ndarray, *, stored: int, capacity: int
) -> None:
    """A valid update (it fits and its shapes match): it must not raise."""
    filled = stored + k.shape[2]
    with student(
        f"update(k, v) with k, v: {k.shape}, after {stored} stored position(s)",
        hint=lambda error: _refused_hint(error, filled, capacity),
    ):
        session.call(cache, k, v, attr="update")


# --- append and get ------------------------------------------------------------------------


def _run_appends(session: Session, case: AppendCase) -> tuple[object, object, object]:
    """What the cache shows after all the case's updates (the state after the last one tells
    every catalogued mistake apart; the snippet asserts after each)."""
    cache = _cache(session, case.batch, case.heads, case.head_dim, case.capacity)
    stored = 0
    for k, v in case.chunks():
        _update(session, cache, k, v, stored=stored, capacity=case.capacity)
        stored += k.shape[2]
    return _get(session, cache, f"after {len(case.sizes)} update(s)")


def _append_probe(session: Session, case: AppendCase) -> tuple[object, dict[str, object], object]:
    probe = case.probe()
    try:
        got: object = _run_appends(session, probe)
    except (CheckFailed, StudentRaised):
        got = None
    variants = {mistake: states[-1] for mistake, states in ask("append_variants", probe)}
    return got, variants, ask("append", probe)[-1]


def check_cache_append_get(session: Session, case: AppendCase) -> None:
    got = _run_appends(session, case)
    expected = ask("append", case)[-1]
    if _same(got, expected):
        return

    def hint() -> str:
        variants = [(m, states[-1]) for m, states in ask("append_variants", case)]
        mistakes = established(
            got, variants, same=_same, probe=lambda _: _append_probe(session, case)
        )
        return _named(mistakes) or (
            "keys and values are (batch_size, num_heads, seq_len, head_dim): everything "
            "appended so far, oldest first, along axis 2; seq_len counts the positions."
        )

    keys, values, length = got
    want_keys, want_values, want_length = expected
    when = f"after updates of {', '.join(map(str, case.sizes))} position(s)"
    for name, value, want in (("keys", keys, want_keys), ("values", values, want_values)):
        array = as_array(value, f"{name} {when}", want.shape, hint=hint)
        assert_close(array, want, f"{name} {when}", tol=TOL, hint=hint)
    fail(
        f"seq_len {when} is {length!r}; expected {want_length}.",
        expected=str(want_length),
        got=repr(length),
        hint=hint,
    )


# --- refused updates -----------------------------------------------------------------------


def _accepted_hint(case: ErrorCase) -> str:
    if case.fault in WRONG:
        what = {"batch": "batch size", "heads": "number of heads", "head_dim": "head_dim"}
        return (
            f"update accepted keys or values whose {what[case.fault]} differs from the cache's: "
            "raise ValueError when batch size, number of heads or head_dim do not match."
        )
    if case.fault == "length":
        return (
            "update accepted k and v of different shapes: they must agree exactly (the same "
            "number of new positions), or raise ValueError."
        )
    return _OVERFLOW


def _snapshot(session: Session, cache: Handle, when: str) -> tuple[object, object, object]:
    keys, values, length = _get(session, cache, when)
    for name, value in (("keys", keys), ("values", values)):
        if not isinstance(value, np.ndarray):
            fail(f"get() {when} returned {name} as {kind(value)}; expected an array.")
    return keys, values, length


def check_cache_errors(session: Session, case: ErrorCase) -> None:
    b, h, d = case.dims
    (pk, pv), (k, v) = case.arrays()
    cache = _cache(session, b, h, d, case.capacity)
    _update(session, cache, pk, pv, stored=0, capacity=case.capacity)
    if case.fault == "fill":
        full = np.ones((b, h, case.room, d))
        _update(session, cache, full, full.copy(), stored=case.prefill, capacity=case.capacity)
        k, v = np.ones((b, h, 1, d)), np.ones((b, h, 1, d))
    before = _snapshot(session, cache, "before the refused update")
    held = [pk] if case.fault != "fill" else [pk, np.ones((b, h, case.room, d))]
    if not _holds(before[0], *held):
        fail(
            "Before the refused update, get() does not return the keys stored so far: this item "
            "counts only for a cache that stores what it accepts.",
            got=excerpt(before[0]) if isinstance(before[0], np.ndarray) else kind(before[0]),
            hint="Make cache_append_get pass first.",
        )
    why = f"k: {k.shape}, v: {v.shape} into {CACHE}({b}, {h}, {d}, {case.capacity})"
    try:
        session.call(cache, k, v, attr="update")
    except StudentRaised as error:
        if error.is_a("NotImplementedError"):
            raise
        if not error.is_a("ValueError"):
            hint = "Raise ValueError(...) with a message saying what does not fit."
            if error.is_a("AssertionError"):
                hint = "Use `raise ValueError(...)`, not `assert`: asserts vanish under python -O."
            fail(f"update({why}) raised {error.type_name}; expected ValueError.", hint=hint)
    else:
        fail(f"update({why}) did not raise; expected ValueError.", hint=_accepted_hint(case))
    try:
        after = _snapshot(session, cache, "after the refused update")
    except CheckFailed as failed:
        fail(f"After the refused update: {failed.failure.summary}", hint=_PARTIAL)
    for name, was, now in zip(("keys", "values", "seq_len"), before, after, strict=False):
        if isinstance(was, np.ndarray):
            same = isinstance(now, np.ndarray) and now.shape == was.shape
            same = same and bool(np.array_equal(now, was))  # type: ignore[arg-type]
        else:
            same = type(now) is type(was) and now == was
        if not same:
            fail(
                f"The refused update changed the cache: {name} before and after differ.",
                expected=excerpt(was) if isinstance(was, np.ndarray) else repr(was),
                got=excerpt(now) if isinstance(now, np.ndarray) else repr(now),
                hint=_PARTIAL,
            )


# --- reset and isolation -------------------------------------------------------------------


def _numbers(value: object) -> np.ndarray | None:
    """The nonzero values an array holds, sorted (None for anything but a numeric array)."""
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "biuf":
        return None
    flat = value.astype(np.float64).ravel()
    return np.sort(flat[flat != 0])


def _holds(got: object, *parts: np.ndarray) -> bool:
    """Whether `got` holds exactly the numbers of `parts` (any layout, zero padding allowed)."""
    numbers = _numbers(got)
    want = np.sort(np.concatenate([p.ravel() for p in parts])) if parts else np.zeros(0)
    return numbers is not None and numbers.shape == want.shape and close(numbers, want, TOL)


def _expect_holding(
    state: tuple[object, object, object],
    keys: Sequence[np.ndarray],
    values: Sequence[np.ndarray],
    length: int | None,
    what: str,
    *,
    hint: Callable[[], str] | str = "",
) -> None:
    """Fail unless `state` holds exactly `keys` and `values` (and `length` positions, unless
    None: not read)."""
    got_keys, got_values, got_length = state
    if length is not None and (type(got_length) is not int or got_length != length):
        fail(f"{what}: seq_len is {got_length!r}; expected {length}.", hint=hint)
    for name, got, want in (("keys", got_keys, keys), ("values", got_values, values)):
        if not _holds(got, *want):
            held = "no positions" if not want else f"exactly the {name} given to it"
            fail(
                f"{what}: get() must return {held}; it returned {kind(got)} holding other numbers.",
                got=excerpt(got) if isinstance(got, np.ndarray) else kind(got),
                hint=hint,
            )


def _more(state: tuple[object, object, object], given: np.ndarray) -> Callable[[], str]:
    """The shared-storage hint, if a cache holds all it was given and numbers it was not (an
    earlier cache's: every drawn number is distinct)."""

    def hint() -> str:
        numbers = _numbers(state[0])
        if numbers is None or numbers.size <= given.size:
            return ""
        rounded = numbers.astype(np.float32)
        return _SHARED if bool(np.isin(given.astype(np.float32), rounded).all()) else ""

    return hint


def check_cache_reset_isolation(session: Session, case: ResetCase) -> None:
    (k1, v1), (k2, v2), (k3, v3) = case.arrays()
    dims, cap = case.dims, case.capacity
    first = _cache(session, *dims, cap)
    second = _cache(session, *dims, cap) if case.early else None
    _update(session, first, k1, v1, stored=0, capacity=cap)
    if second is None:
        second = _cache(session, *dims, cap)
    state = _get(session, first, "of A", length=False)
    _expect_holding(state, [k1], [v1], None, "A after its update", hint=_more(state, k1))

    def shared(state: tuple[object, object, object]) -> Callable[[], str]:
        return lambda: _SHARED if _holds(state[0], k1) or _holds(state[0], k1, k2) else ""

    state = _get(session, second, "of B")
    _expect_holding(state, [], [], 0, "B, new, after A's update", hint=shared(state))
    _update(session, second, k2, v2, stored=0, capacity=cap)
    with student("get() of A after B's update"):
        pair = session.call(first, attr="get")
    keys = pair[0] if isinstance(pair, (tuple, list)) and len(pair) == 2 else pair
    if not _holds(keys, k1):
        fail(
            "A after B's update: get() must return exactly the keys given to A; it returned "
            f"{kind(keys)} holding other numbers.",
            got=excerpt(keys) if isinstance(keys, np.ndarray) else kind(keys),
            hint=_SHARED if _holds(keys, k1, k2) or _holds(keys, k2) else "",
        )
    with student("reset()"):
        session.call(first, attr="reset")
    state = _get(session, first, "after reset()")
    if state[2] != 0:
        fail(f"After reset() seq_len is {state[2]!r}; expected 0.", hint=_KEEPS_LENGTH)
    whole = int(np.prod(dims)) * cap

    def kept() -> str:
        if isinstance(state[0], np.ndarray) and state[0].size == whole:
            return HINTS["get-returns-the-whole-buffer"]
        return _KEEPS_CONTENTS if _holds(state[0], k1) else ""

    _expect_holding(state, [], [], 0, "After reset()", hint=kept)
    with student(
        f"update of {case.refill} positions after reset() (max_seq_len = {cap})",
        hint=lambda error: _KEEPS_LENGTH if error.is_a("ValueError") else "",
    ):
        session.call(first, k3, v3, attr="update")
    state = _get(session, first, "after reset() and a new update", length=False)
    _expect_holding(
        state,
        [k3],
        [v3],
        None,
        "After reset() and an update",
        hint=lambda: _KEEPS_CONTENTS if _holds(state[0], k1, k3) else "",
    )


# --- cached decoding -----------------------------------------------------------------------


def _model(session: Session, case: DecodeCase | NewTokensCase) -> Handle:
    with student(f"{MHA}({case.embed_dim}, {case.heads})"):
        handle = session.call(MHA, case.embed_dim, case.heads, keep=True, assign=case.weights)
    assert isinstance(handle, Handle)
    return handle


def _chunk_text(start: int, size: int) -> str:
    return f"forward(x[:, {start}:{start + size}], cache=cache)"


def _run_decode(
    session: Session, case: DecodeCase
) -> tuple[list[object], StudentRaised | None, str]:
    """The outputs of every chunk; stops at the first exception (returned with its call)."""
    model = _model(session, case)
    cache = _cache(session, case.batch, case.heads, case.head_dim, case.capacity)
    outputs: list[object] = []
    for start, size in zip(case.starts(), case.sizes, strict=False):
        try:
            outputs.append(
                session.call(model, case.x[:, start : start + size], attr="forward", cache=cache)
            )
        except StudentRaised as error:
            if error.is_a("NotImplementedError"):
                raise
            return outputs, error, _chunk_text(start, size)
    return outputs, None, ""


def _decode_probe(session: Session, case: DecodeCase) -> tuple[object, dict[str, object], object]:
    probe = case.probe()
    outputs, error, _ = _run_decode(session, probe)
    got = None if error is not None else outputs
    return got, dict(ask("decode_variants", probe)), ask("decode", probe)


def _facts(case: DecodeCase, count: int) -> str:
    """What is known when no catalogued mistake explains the outputs: which chunks were right."""
    right = count - 1
    if right == 0:
        return f"The first call already differs. {_RULE}"
    tokens = sum(case.sizes[:right])
    return (
        f"The first {right} call(s) ({tokens} token(s)) match full causal attention; the call "
        f"with {case.sizes[right]} new token(s) after {tokens} cached position(s) does not. "
        + _RULE
    )


def check_decode(session: Session, case: DecodeCase) -> None:
    outputs, error, call = _run_decode(session, case)
    right = ask("decode", case)
    b, e = case.batch, case.embed_dim
    for index, (got, start, size) in enumerate(
        zip(outputs, case.starts(), case.sizes, strict=False)
    ):
        where = "the first chunk" if start == 0 else f"after {start} cached position(s)"
        name = f"output of {_chunk_text(start, size)} ({where})"
        if isinstance(got, np.ndarray) and start and got.shape == (b, start + size, e):
            fail(
                f"The {name} has shape {got.shape}; expected {(b, size, e)}.",
                expected=f"shape {(b, size, e)}",
                got=f"shape {got.shape}",
                hint=_WHOLE_SEQUENCE,
            )
        array = as_array(got, name, (b, size, e))
        if close(array, right[index], TOL):
            continue
        seen = [*outputs[:index], array]

        def hint(seen: list[object] = seen, count: int = index + 1) -> str:
            variants = [(m, outs[:count]) for m, outs in ask("decode_variants", case)]
            mistakes = established(
                seen, variants, same=_same, probe=lambda _: _decode_probe(session, case)
            )
            return _named(mistakes) or _facts(case, count)

        assert_close(array, right[index], name, tol=TOL, hint=hint)
    if error is not None:
        fail(f"{call} raised {error}.", hint=_RULE)


def check_decode_inputs_unchanged(session: Session, case: UnchangedCase) -> None:
    model = _model(session, case)
    cache = _cache(session, case.batch, case.heads, case.head_dim, case.capacity)
    first = ask("decode", case)[0]
    for start, size in zip(case.starts(), case.sizes, strict=False):
        x = case.x[:, start : start + size]
        with student(_chunk_text(start, size)):
            out, echoed = session.call(model, x, attr="forward", cache=cache, echo=True)
        if not (isinstance(echoed[0], np.ndarray) and np.array_equal(echoed[0], x)):
            fail(
                f"{_chunk_text(start, size)} changed x; inputs must be left as they were.",
                expected=excerpt(x),
                got=excerpt(echoed[0]) if isinstance(echoed[0], np.ndarray) else kind(echoed[0]),
                hint="Operations like `x -= ...` or `x[...] = ...` change the caller's array: "
                "compute new arrays instead (x = x - ...).",
            )
        if start == 0 and not close(out, first, TOL):
            fail(
                f"The first cached step, {_chunk_text(0, 1)}, does not give full attention's "
                "output: this item counts only for a cached forward that works.",
                hint="Make decode_steps pass first.",
            )
    paths = [f"{name}.{part}" for name in PROJECTIONS for part in ("weight", "bias")]
    with student("reading the projections"):
        after = session.get(model, *paths)
    for path, now in zip(paths, after, strict=False):
        before = case.weights[path]
        if not (isinstance(now, np.ndarray) and np.array_equal(now, before)):
            fail(
                f"forward changed `{path}`; it must leave the weights as they were.",
                hint="Compute new arrays (w = w * ...), never write into a weight in place.",
            )
    t = case.k.shape[2]
    fresh = _cache(session, case.batch, case.heads, case.head_dim, t + 1)
    with student(f"update(k, v) with k, v: {case.k.shape}"):
        _, (k_after, v_after) = session.call(fresh, case.k, case.v, attr="update", echo=True)
    for name, before, now in (("k", case.k, k_after), ("v", case.v, v_after)):
        if not (isinstance(now, np.ndarray) and np.array_equal(now, before)):
            fail(
                f"update changed the {name} it was given; inputs must be left as they were.",
                expected=excerpt(before),
                got=excerpt(now) if isinstance(now, np.ndarray) else kind(now),
                hint=f"update changed the {name} it was given: convert into a new array "
                f"({name}.astype(np.float32)) or copy into your buffer, never write into the "
                "caller's array.",
            )


def _prompt_contents(session: Session, case: NewTokensCase, model: Handle, cache: Handle) -> Any:
    x = case.x[:, : case.prompt]
    with student(f"forward(x[:, :{case.prompt}], cache=cache)"):
        session.call(model, x, attr="forward", cache=cache)
    keys, values, _ = _get(session, cache, "after the prompt", length=False)
    return keys, values


def _new_tokens_probe(session: Session, case: NewTokensCase) -> tuple[object, Any, object]:
    probe = case.probe()
    model = _model(session, probe)
    cache = _cache(session, probe.batch, probe.heads, probe.head_dim, probe.capacity)
    try:
        got: object = _prompt_contents(session, probe, model, cache)
    except (CheckFailed, StudentRaised):
        got = None
    old_k, old_v = ask("projections", probe)
    return got, dict(ask("projection_variants", probe)), (old_k, old_v)


def check_decode_new_tokens_only(session: Session, case: NewTokensCase) -> None:
    old_k, old_v = ask("projections", case)
    model = _model(session, case)
    dims = (case.batch, case.heads, case.head_dim, case.capacity)
    decoded, by_hand = _cache(session, *dims), _cache(session, *dims)
    keys, values = _prompt_contents(session, case, model, decoded)

    def hint() -> str:
        mistakes = established(
            (keys, values),
            ask("projection_variants", case),
            same=_same,
            probe=lambda _: _new_tokens_probe(session, case),
        )
        return _named(mistakes) or (
            "After forward(x, cache=cache), get() returns the keys k_proj(x) and the values "
            "v_proj(x), each split into heads: (batch, num_heads, t, head_dim)."
        )

    for name, got, want in (("keys", keys, old_k), ("values", values, old_v)):
        label = f"{name} in the cache after forward(x[:, :{case.prompt}], cache=cache)"
        assert_close(as_array(got, label, want.shape, hint=hint), want, label, tol=TOL, hint=hint)
    _update(session, by_hand, old_k, old_v, stored=0, capacity=case.capacity)
    with student("setting new projection weights"):
        session.set(model, case.later)
    new = case.x[:, case.prompt :]
    step = f"forward(x[:, {case.prompt}:], cache=cache)"
    with student(step):
        out = session.call(model, new, attr="forward", cache=decoded)
    with student(f"{step} on a cache filled by hand with the same keys and values"):
        same_step = session.call(model, new, attr="forward", cache=by_hand)
    shape = (case.batch, case.new, case.embed_dim)
    got = as_array(out, f"output of {step}", shape)
    want = as_array(same_step, f"output of {step} on a cache filled by hand", shape)
    if not close(got, want, TOL):
        assert_close(
            got,
            want,
            f"output of {step} after new projection weights (expected: the same step on a cache "
            "you filled by hand with the prompt's keys and values)",
            tol=TOL,
            hint=_RECOMPUTES,
        )


# --- the formulas --------------------------------------------------------------------------


def _memory(session: Session, case: BytesCase) -> object:
    args = (case.layers, case.batch, case.seq, case.heads, case.head_dim)
    if case.width is None:
        return session.call(BYTES, *args)
    if case.keyword:
        return session.call(BYTES, *args, bytes_per_value=case.width)
    return session.call(BYTES, *args, case.width)


def _formula_probe(
    session: Session, probe: BytesCase | ScoreCase, call: Callable[[], object], asked: str
) -> tuple[object, dict[str, object], object]:
    try:
        got = call()
    except StudentRaised:
        got = None
    if isinstance(got, np.ndarray) and got.shape == ():
        got = got.item()
    if isinstance(got, float) and got == int(got):
        got = int(got)
    return got, dict(ask(_VARIANTS[asked], probe)), ask(asked, probe)


_VARIANTS = {"memory": "memory_variants", "scores": "score_variants"}


def _check_formula(
    session: Session,
    case: Any,
    value_of: Callable[[Session, Any], object],
    asked: str,
    rule: str,
) -> None:
    """The student's formula for `case` (`value_of` calls it) equals the oracle's `asked`;
    else a failure stating `rule`, naming a variant only when the probe confirms it."""
    with student(case.call()):
        value = value_of(session, case)
    got = as_integer(value, case.call())
    right = ask(asked, case)
    if got == right:
        return
    probe = case.probe()
    fail(
        f"{case.call()} returned {got}; expected {right} ({rule}).",
        expected=str(right),
        got=str(got),
        snippet=f"assert {case.call()} == {right}",
        hint=lambda: _named(
            established(
                got,
                ask(_VARIANTS[asked], case),
                same=_same,
                probe=lambda _: _formula_probe(
                    session, probe, lambda: value_of(session, probe), asked
                ),
            )
        ),
    )


def check_kv_cache_bytes(session: Session, case: BytesCase) -> None:
    _check_formula(
        session,
        case,
        _memory,
        "memory",
        "2 * layers * batch * seq * heads * head_dim * bytes_per_value",
    )


def _scores(session: Session, case: ScoreCase) -> object:
    if case.keyword:
        return session.call(SCORES, case.seq_len, use_cache=case.use_cache)
    return session.call(SCORES, case.seq_len, case.use_cache)


def check_decoding_score_count(session: Session, case: ScoreCase) -> None:
    rule = "sum of t for t = 1 .. seq_len" if case.use_cache else "sum of t * t"
    _check_formula(session, case, _scores, "scores", f"the {rule}")


# --- the rubric ----------------------------------------------------------------------------


def _item(
    id: str,
    title: str,
    check: Callable[[Session, C], None],
    *,
    requires: tuple[str, ...],
    **options: Any,
) -> Item[C]:
    return Item(
        id, title, POINTS[id], check, requires=requires, visibility=VISIBILITY[id], **options
    )


def _strategies() -> ModuleType:
    """The module of the strategies (`strategies.py`), imported by the first search: each item
    gets a function that builds its strategy from it (`Item.strategy`), so that a grade in
    which every item passes on its shipped cases never imports Hypothesis."""
    from autograder.exercises.kv_cache import strategies

    return strategies


RUBRIC = Rubric(
    name="kv_cache",
    notebook="kv_cache.ipynb",
    grade_cells=GRADE_CELLS,
    items=(
        _item(
            "cache_append_get",
            "update appends along the sequence axis; get returns everything, oldest first; "
            "seq_len counts positions",
            check_cache_append_get,
            requires=(CACHE,),
            strategy=lambda: _strategies().append_cases(),
            max_examples=KV_CACHE_EXAMPLES,
        ),
        _item(
            "cache_errors",
            "update raises ValueError exactly on wrong batch/heads/head_dim, k≠v shapes, or "
            "overflow (filling to exactly max_seq_len is fine), and leaves the cache unchanged",
            check_cache_errors,
            requires=(CACHE,),
            cases=ERROR_GRID,
            strategy=lambda: _strategies().error_cases(),
            max_examples=KV_CACHE_EXAMPLES,
        ),
        _item(
            "cache_reset_isolation",
            "reset empties the cache and frees its capacity; instances share nothing",
            check_cache_reset_isolation,
            requires=(CACHE,),
            strategy=lambda: _strategies().reset_cases(),
            max_examples=KV_CACHE_EXAMPLES,
        ),
        _item(
            "decode_steps",
            "one-token cached decoding equals full causal attention",
            check_decode,
            requires=(MHA, CACHE),
            strategy=lambda: _strategies().step_cases(),
            max_examples=KV_CACHE_EXAMPLES,
        ),
        _item(
            "decode_chunked",
            "a prompt chunk, then steps and chunks, equals full causal attention (the mask is "
            "offset by the cached length)",
            check_decode,
            requires=(MHA, CACHE),
            strategy=lambda: _strategies().chunked_cases(),
            max_examples=KV_CACHE_EXAMPLES,
        ),
        _item(
            "decode_inputs_unchanged",
            "forward leaves x and the weights unchanged; update leaves k and v unchanged",
            check_decode_inputs_unchanged,
            requires=(MHA, CACHE),
            strategy=lambda: _strategies().unchanged_cases(),
            max_examples=KV_CACHE_EXAMPLES,
        ),
        _item(
            "decode_new_tokens_only",
            "the cache holds k_proj(x)/v_proj(x) split into heads; a cached step projects only "
            "the new tokens",
            check_decode_new_tokens_only,
            requires=(MHA, CACHE),
            strategy=lambda: _strategies().new_tokens_cases(),
            max_examples=KV_CACHE_EXAMPLES,
        ),
        _item(
            "kv_cache_bytes",
            "exactly 2·layers·batch·seq·heads·head_dim·bytes",
            check_kv_cache_bytes,
            requires=(BYTES,),
            cases=BYTES_GRID,
            strategy=lambda: _strategies().bytes_cases(),
        ),
        _item(
            "decoding_score_count",
            "exactly Σt² without a cache, Σt with one",
            check_decoding_score_count,
            requires=(SCORES,),
            cases=SCORE_GRID,
            strategy=lambda: _strategies().score_cases(),
        ),
    ),
)
