"""How the KV-cache rubric's cases are drawn: Hypothesis strategies of shapes, lengths, seeds.

Hypothesis draws the shapes, lengths, chunkings and a seed; the arrays come from NumPy's
`default_rng(seed)` (`cases.py`, which also says what each case is). The rubric imports this
module only when an item searches (its items' strategies are functions that build them).
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from autograder.exercises.kv_cache.cases import (
    WRONG,
    AppendCase,
    BytesCase,
    DecodeCase,
    ErrorCase,
    NewTokensCase,
    ResetCase,
    ScoreCase,
    UnchangedCase,
    decode_case,
    kv_pair,
    new_tokens_case,
    projection_weights,
)

__all__ = [
    "append_cases",
    "bytes_cases",
    "chunked_cases",
    "error_cases",
    "new_tokens_cases",
    "reset_cases",
    "score_cases",
    "step_cases",
    "unchanged_cases",
]

_BATCH = st.integers(1, 3)
_HEADS = st.integers(1, 3)
_HEAD_DIM = st.integers(1, 4)
_SEED = st.integers(0, 2**16)
_EXTRA = st.integers(1, 3)
_CHUNK = st.integers(1, 3)
_UPDATES = st.integers(1, 4)
_COUNT = st.integers(1, 3)
"""How many updates, steps or chunks (drawn as a count, then each: cheaper than st.lists)."""


@st.composite
def append_cases(draw: st.DrawFn) -> AppendCase:
    sizes = tuple(draw(_CHUNK) for _ in range(draw(_UPDATES)))
    return AppendCase(
        draw(_SEED),
        draw(_BATCH),
        draw(_HEADS),
        draw(_HEAD_DIM),
        sum(sizes) + draw(_EXTRA),
        sizes,
    )


_FAULTS = st.sampled_from([*WRONG, "length", "overflow", "fill"])
_WHICH = st.sampled_from(["both", "k", "v"])


@st.composite
def error_cases(draw: st.DrawFn) -> ErrorCase:
    fault = draw(_FAULTS)
    capacity = draw(st.integers(2, 6))
    if fault == "overflow":
        prefill = draw(st.integers(1, capacity))
        size = capacity - prefill + draw(st.integers(1, 2))
    else:  # room for the update: a refusal can only be for its shape
        prefill = draw(st.integers(1, capacity - 1))
        size = draw(st.integers(1, capacity - prefill))
    which = draw(_WHICH) if fault in WRONG else "both"
    return ErrorCase(
        draw(_SEED),
        draw(_BATCH),
        draw(_HEADS),
        draw(_HEAD_DIM),
        capacity,
        prefill,
        fault,
        which,
        size,
    )


@st.composite
def reset_cases(draw: st.DrawFn) -> ResetCase:
    capacity = draw(st.integers(3, 6))
    return ResetCase(
        draw(_SEED),
        draw(_BATCH),
        draw(_HEADS),
        draw(_HEAD_DIM),
        capacity,
        draw(st.integers(2, capacity - 1)),
        draw(st.integers(1, capacity - 1)),
        draw(st.booleans()),
    )


_STEPS = st.integers(2, 7)
_PROMPT = st.integers(2, 4)


@st.composite
def step_cases(draw: st.DrawFn) -> DecodeCase:
    """One token at a time, 2 to 7 steps."""
    n = draw(_STEPS)
    return decode_case(
        draw(_SEED), draw(_BATCH), draw(_HEADS), draw(_HEAD_DIM), (1,) * n, draw(_EXTRA)
    )


@st.composite
def chunked_cases(draw: st.DrawFn) -> DecodeCase:
    """A prompt of 2 to 4 tokens, then 1 to 3 steps or chunks, at least one of them a chunk."""
    prompt = draw(_PROMPT)
    later = [draw(_CHUNK) for _ in range(draw(_COUNT))]
    if max(later) < 2:
        later[-1] = 2
    return decode_case(
        draw(_SEED),
        draw(_BATCH),
        draw(_HEADS),
        draw(_HEAD_DIM),
        (prompt, *later),
        draw(_EXTRA),
    )


@st.composite
def unchanged_cases(draw: st.DrawFn) -> UnchangedCase:
    """A first single token (its output is the evidence), then steps or chunks; then an
    update of 1 to 3 positions into a fresh cache."""
    later = tuple(draw(_CHUNK) for _ in range(draw(_COUNT)))
    seed, batch, heads, head_dim = draw(_SEED), draw(_BATCH), draw(_HEADS), draw(_HEAD_DIM)
    base = decode_case(seed, batch, heads, head_dim, (1, *later), draw(_EXTRA))
    rng = np.random.default_rng(seed)
    projection_weights(rng, base.embed_dim)
    rng.standard_normal(base.x.shape)  # the snippet draws x before k and v
    k, v = kv_pair(rng, (batch, heads, draw(st.integers(1, 3)), head_dim))
    return UnchangedCase(
        seed, batch, heads, head_dim, base.sizes, base.extra, base.x, base.weights, k, v
    )


@st.composite
def new_tokens_cases(draw: st.DrawFn) -> NewTokensCase:
    seed, batch, heads, head_dim = draw(_SEED), draw(_BATCH), draw(_HEADS), draw(_HEAD_DIM)
    return new_tokens_case(
        seed, batch, heads, head_dim, draw(st.integers(1, 4)), draw(st.integers(1, 2))
    )


def bytes_cases() -> st.SearchStrategy[BytesCase]:
    return st.builds(
        BytesCase,
        st.integers(1, 96),
        st.integers(1, 64),
        st.integers(0, 1 << 15),
        st.integers(1, 64),
        st.integers(1, 256),
        st.sampled_from([None, 1, 2, 4, 8]),
        st.booleans(),
    )


def score_cases() -> st.SearchStrategy[ScoreCase]:
    return st.builds(ScoreCase, st.integers(0, 5000), st.booleans(), st.booleans())
