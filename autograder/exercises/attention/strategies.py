"""How the attention rubric's cases are drawn: Hypothesis strategies of shapes, seeds, options.

Hypothesis draws shapes, seeds and options; the arrays come from NumPy's `default_rng(seed)`
(`cases.py`, which also says what each case is). Shapes are bounded so that a correct
implementation written with explicit Python loops still finishes quickly. The rubric imports
this module only when an item searches (its items' strategies are functions that build them).
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from autograder.exercises.attention.cases import (
    InitCase,
    MhaCase,
    SdpaCase,
    mha_case,
    qkv,
    random_mask,
)

__all__ = ["MAX_BATCH", "MAX_DIM", "MAX_SEQ", "init_cases", "mha_cases", "sdpa_cases"]

MAX_SEQ = 6
MAX_DIM = 8
MAX_BATCH = 3

# Strategies are built once: building one inside a draw costs Hypothesis a validation each time.
_BATCH = st.lists(st.integers(1, MAX_BATCH), min_size=0, max_size=2)
_SEQ = st.integers(1, MAX_SEQ)
_DIM = st.integers(1, MAX_DIM)
_SEED = st.integers(0, 2**16)
_KIND = st.sampled_from(["float", "bool"])
_DENSITY = st.sampled_from([0.5, 0.25, 0.75])
_MAGNITUDE = st.sampled_from([1e3, 3e3, 1e4])
_LAYOUTS = {
    True: st.sampled_from(["full", "shared", "size-one"]),
    False: st.sampled_from(["full", "shared"]),
}
_HEADS = st.integers(1, 4)
_HEAD_DIM = st.integers(1, 4)
_MHA_BATCH = st.integers(1, MAX_BATCH)
_MHA_SEQ = {True: st.integers(2, 5), False: st.integers(1, 5)}
_MHA_LAYOUT = st.sampled_from(["seq", "batch", "batch-1", "batch-heads"])


@st.composite
def sdpa_cases(draw: st.DrawFn, *, masked: bool | None = False, stable: bool = False) -> SdpaCase:
    """Random sdpa inputs: 0-2 leading batch dims, independent seq_q/seq_k and d_k/d_v.

    `masked`: False for no mask, True for always a mask, None for either. With a mask, its kind
    (float 0/1 or bool) and layout (full, or one that broadcasts over the batch) vary.
    """
    batch = tuple(draw(_BATCH))
    seq_q, seq_k = draw(_SEQ), draw(_SEQ)
    d_k, d_v = draw(_DIM), draw(_DIM)
    seed = draw(_SEED)
    Q, K, V, rng = qkv(seed, batch, seq_q, seq_k, d_k, d_v)
    mask = None
    use_mask = draw(st.booleans()) if masked is None else masked
    if use_mask:
        kind = draw(_KIND)
        layout = draw(_LAYOUTS[bool(batch)])
        if layout == "full":
            shape: tuple[int, ...] = (*batch, seq_q, seq_k)
        elif layout == "shared":
            shape = (seq_q, seq_k)
        else:
            shape = (*(1 for _ in batch), seq_q, seq_k)
        mask = random_mask(rng, shape, kind, draw(_DENSITY))
    scale = 1.0
    tie = False
    if stable:
        scores = np.abs(Q @ np.swapaxes(K, -1, -2)) / np.sqrt(d_k)
        target = draw(_MAGNITUDE)
        scale = float(target / max(float(scores.max()), 1e-3))
        Q = Q * scale
        if seq_k >= 2:  # a near tie at large scores: correct results still need the scaling
            tie = True
            K = K.copy()
            noise = np.random.default_rng(seed + 1).standard_normal(d_k)
            K[..., -1, :] = K[..., 0, :] + noise / scale
    return SdpaCase(seed, Q, K, V, mask, scale, tie)


def init_cases() -> st.SearchStrategy[InitCase]:
    return st.builds(InitCase, st.integers(1, 256), st.integers(1, 32))


@st.composite
def mha_cases(draw: st.DrawFn, *, masked: bool = False, causal: bool = False) -> MhaCase:
    """Random MHA inputs; with `masked`, one of the four mask layouts (often batch == heads)."""
    num_heads = draw(_HEADS)
    head_dim = draw(_HEAD_DIM)
    same = masked and draw(st.booleans())
    batch = max(num_heads, 2) if same else draw(_MHA_BATCH)
    if same:
        num_heads = batch
    seq = draw(_MHA_SEQ[causal])
    seed = draw(_SEED)
    layout, kind, cut = None, "float", -1
    if masked:
        layout = draw(_MHA_LAYOUT)
        kind = draw(_KIND)
    if causal:
        cut = draw(st.integers(0, seq - 2))
    return mha_case(
        seed, batch, seq, num_heads, head_dim, layout=layout, kind=kind, causal=causal, cut=cut
    )
