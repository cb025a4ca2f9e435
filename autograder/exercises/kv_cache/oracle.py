"""The KV-cache exercise's oracle: expected answers and the known wrong ones (grader only).

Everything here computes with the reference solution (`solutions/kv_cache.py`), so it is part
of the solution: a student kit leaves this module out and replays recorded answers instead.
The rubric (`rubric.py`) asks these questions by name and judges the student's answers.
Wrong variants are returned as (mistake id, answer): the rubric turns ids into hints.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from autograder.exercises.kv_cache.cases import (
    AppendCase,
    BytesCase,
    DecodeCase,
    NewTokensCase,
    ScoreCase,
)

__all__ = ["FUNCTIONS", "questions"]

State = tuple[np.ndarray, np.ndarray, int]
"""What a cache shows after an update: (keys, values, seq_len)."""


def _ref() -> Any:
    from autograder.exercises.kv_cache import EXERCISE

    return EXERCISE.reference_module()


# --- append and get ------------------------------------------------------------------------


def _states(case: AppendCase, combine: Callable[[list[np.ndarray]], np.ndarray]) -> list[State]:
    chunks = case.chunks()
    states = []
    for n in range(1, len(chunks) + 1):
        ks, vs = [k for k, _ in chunks[:n]], [v for _, v in chunks[:n]]
        states.append((combine(ks), combine(vs), sum(case.sizes[:n])))
    return states


def append(case: AppendCase) -> list[State]:
    """What the reference cache shows after each update of the case."""
    cache = _ref().KVCache(case.batch, case.heads, case.head_dim, case.capacity)
    states = []
    for k, v in case.chunks():
        cache.update(k, v)
        keys, values = cache.get()
        states.append((np.array(keys), np.array(values), int(cache.seq_len)))
    return states


def append_variants(case: AppendCase) -> list[tuple[str, list[State]]]:
    """Known wrong caches, after each update. NaN marks positions whose value is free (the
    rest of a buffer returned whole holds whatever the student initialised it with)."""
    found: list[tuple[str, list[State]]] = []
    for axis, mistake in ((0, "batch"), (1, "heads"), (3, "head-dim")):

        def along(parts: list[np.ndarray], axis: int = axis) -> np.ndarray:
            try:
                return np.concatenate(parts, axis=axis)
            except ValueError:  # shapes the wrong axis cannot join: get() raises then
                return np.full((0,), np.nan)

        found.append((f"append-along-{mistake}-axis", _states(case, along)))
    found.append(("newest-first", _states(case, lambda parts: np.concatenate(parts[::-1], 2))))
    found.append(
        (
            "get-without-moving-the-sequence-axis-back",
            _states(case, lambda parts: np.moveaxis(np.concatenate(parts, axis=2), 2, 0)),
        )
    )

    def whole(parts: list[np.ndarray]) -> np.ndarray:
        stored = np.concatenate(parts, axis=2)
        b, h, n, d = stored.shape
        free = np.full((b, h, case.capacity - n, d), np.nan)
        return np.concatenate([stored, free], axis=2)

    found.append(("get-returns-the-whole-buffer", _states(case, whole)))
    counted = [
        (keys, values, calls) for calls, (keys, values, _) in enumerate(append(case), start=1)
    ]
    found.append(("seq-len-counts-updates", counted))
    return found


# --- cached decoding -----------------------------------------------------------------------


def _model(case: DecodeCase | NewTokensCase, weights: dict[str, np.ndarray]) -> Any:
    model = _ref().MultiHeadAttention(case.embed_dim, case.heads)
    for path, value in weights.items():
        name, part = path.split(".")
        setattr(getattr(model, name), part, value)
    return model


def decode(case: DecodeCase) -> list[np.ndarray]:
    """Full causal attention over the whole x, cut into the case's chunks."""
    model = _model(case, case.weights)
    full = np.asarray(model.forward(case.x, mask=_ref().create_causal_mask(case.length)))
    return [
        full[:, start : start + size]
        for start, size in zip(case.starts(), case.sizes, strict=False)
    ]


MaskRule = Callable[[int, int], "np.ndarray | None"]
"""The mask a (wrong) cached forward uses for `size` new tokens after `past` cached ones."""

_MASKS: dict[str, tuple[bool, MaskRule]] = {
    # id: (attends to the cached keys too, mask rule)
    "no-causal-mask-in-a-chunk": (True, lambda past, size: None),
    "causal-mask-without-offset": (True, lambda past, size: np.tri(size, past + size)),
    "chunk-mask-without-offset": (
        True,
        lambda past, size: None if size == 1 else np.tri(size, past + size),
    ),
    "query-does-not-see-itself": (True, lambda past, size: np.tri(size, past + size, past - 1)),
    "attends-only-to-the-new-keys": (False, lambda past, size: np.tri(size, size)),
}


def _decoded(case: DecodeCase, sees_cache: bool, rule: MaskRule) -> list[np.ndarray]:
    ref = _ref()
    model = _model(case, case.weights)
    b, e, h, d = case.batch, case.embed_dim, case.heads, case.head_dim

    def heads(a: np.ndarray) -> np.ndarray:
        return np.asarray(a.reshape(b, a.shape[1], h, d).transpose(0, 2, 1, 3))

    keys = np.zeros((b, h, 0, d))
    values = np.zeros((b, h, 0, d))
    outputs = []
    for start, size in zip(case.starts(), case.sizes, strict=False):
        x = case.x[:, start : start + size]
        q, k, v = heads(model.q_proj(x)), heads(model.k_proj(x)), heads(model.v_proj(x))
        keys, values = np.concatenate([keys, k], axis=2), np.concatenate([values, v], axis=2)
        seen_k, seen_v = (keys, values) if sees_cache else (k, v)
        attended, _ = ref.scaled_dot_product_attention(q, seen_k, seen_v, rule(start, size))
        outputs.append(
            np.asarray(model.out_proj(attended.transpose(0, 2, 1, 3).reshape(b, size, e)))
        )
    return outputs


def decode_variants(case: DecodeCase) -> list[tuple[str, list[np.ndarray]]]:
    """Known wrong cached forwards: (mistake id, the output of every chunk)."""
    return [(mistake, _decoded(case, *how)) for mistake, how in _MASKS.items()]


def _split(case: NewTokensCase, a: np.ndarray) -> np.ndarray:
    return np.asarray(
        a.reshape(case.batch, a.shape[1], case.heads, case.head_dim).transpose(0, 2, 1, 3)
    )


def projections(case: NewTokensCase) -> tuple[np.ndarray, np.ndarray]:
    """The prompt's keys and values under the first weights, (batch, heads, prompt, head_dim)."""
    first = _model(case, case.weights)
    prompt = case.x[:, : case.prompt]
    return (
        _split(case, np.asarray(first.k_proj(prompt))),
        _split(case, np.asarray(first.v_proj(prompt))),
    )


def projection_variants(case: NewTokensCase) -> list[tuple[str, tuple[np.ndarray, np.ndarray]]]:
    """Known wrong cache contents after the prompt: (mistake id, (keys, values))."""
    model = _model(case, case.weights)
    prompt = case.x[:, : case.prompt]
    split = _split(case, prompt)
    q = _split(case, np.asarray(model.q_proj(prompt)))
    return [
        ("caches-x-instead-of-its-projections", (split, split)),
        ("caches-the-queries", (q, _split(case, np.asarray(model.v_proj(prompt))))),
    ]


# --- the formulas --------------------------------------------------------------------------


def _width(case: BytesCase) -> int:
    return 4 if case.width is None else case.width


def memory(case: BytesCase) -> int:
    """The reference kv_cache_bytes."""
    args = (case.layers, case.batch, case.seq, case.heads, case.head_dim)
    if case.width is None:
        return int(_ref().kv_cache_bytes(*args))
    return int(_ref().kv_cache_bytes(*args, bytes_per_value=case.width))


def memory_variants(case: BytesCase) -> list[tuple[str, int]]:
    """Known wrong memory formulas: (mistake id, their answer)."""
    right = memory(case)
    per_value = right // _width(case)
    return [
        ("memory-without-the-factor-2", right // 2),
        ("memory-without-the-layers", right // case.layers),
        ("memory-in-float32-always", per_value * 4),
        ("memory-in-bits", right * 8),
    ]


def scores(case: ScoreCase) -> int:
    """The reference decoding_score_count."""
    return int(_ref().decoding_score_count(case.seq_len, case.use_cache))


def score_variants(case: ScoreCase) -> list[tuple[str, int]]:
    """Known wrong score counts: (mistake id, their answer)."""
    n = case.seq_len
    squares, triangle = n * (n + 1) * (2 * n + 1) // 6, n * (n + 1) // 2
    found = [("score-count-off-by-one", (n - 1) * n // 2 if case.use_cache else squares - n * n)]
    if case.use_cache:
        found += [
            ("squares-counted-with-the-cache-too", squares),
            ("cache-counts-the-last-step-only", n),
        ]
    else:
        found += [
            ("no-cache-counts-the-last-step-only", n * n),
            ("no-cache-counts-the-triangle", triangle * n),
        ]
    return found


def questions(case: object) -> list[tuple[str, tuple[object, ...]]]:
    """Every question a check may ask about `case`, failing or not (a kit records them all)."""
    if isinstance(case, AppendCase):
        probe = case.probe()
        return [
            ("append", (case,)),
            ("append_variants", (case,)),
            ("append", (probe,)),
            ("append_variants", (probe,)),
        ]
    if isinstance(case, DecodeCase):
        steps = case.probe()
        return [
            ("decode", (case,)),
            ("decode_variants", (case,)),
            ("decode", (steps,)),
            ("decode_variants", (steps,)),
        ]
    if isinstance(case, NewTokensCase):
        other = case.probe()
        return [
            ("projections", (case,)),
            ("projection_variants", (case,)),
            ("projections", (other,)),
            ("projection_variants", (other,)),
        ]
    if isinstance(case, BytesCase):
        sizes = case.probe()
        return [
            ("memory", (case,)),
            ("memory_variants", (case,)),
            ("memory", (sizes,)),
            ("memory_variants", (sizes,)),
        ]
    if isinstance(case, ScoreCase):
        count = case.probe()
        return [
            ("scores", (case,)),
            ("score_variants", (case,)),
            ("scores", (count,)),
            ("score_variants", (count,)),
        ]
    return []


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "append": append,
    "append_variants": append_variants,
    "decode": decode,
    "decode_variants": decode_variants,
    "projections": projections,
    "projection_variants": projection_variants,
    "memory": memory,
    "memory_variants": memory_variants,
    "scores": scores,
    "score_variants": score_variants,
}
"""The questions the rubric may ask, by name."""
