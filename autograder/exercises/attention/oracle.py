"""The attention exercise's oracle: expected answers and the known wrong ones (grader only).

Everything here computes attention, so it is part of the solution: the student checker kit
leaves this module out and replays recorded answers instead (see `autograder/oracle.py`).
The rubric (`rubric.py`) asks these questions by name and judges the student's answers.

Wrong variants are returned as (mistake id, arrays...): the rubric turns ids into hints.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from autograder.exercises.attention.cases import (
    PROBE_N,
    CausalCase,
    MhaCase,
    SdpaCase,
    mha_probe,
    mha_stages,
    sdpa_probe,
    sdpa_unbatched,
)

__all__ = ["FUNCTIONS", "questions"]


def _ref() -> Any:
    from autograder.exercises.attention import EXERCISE

    return EXERCISE.reference_module()


def sdpa(case: SdpaCase) -> tuple[np.ndarray, np.ndarray]:
    """The reference (output, weights)."""
    out, weights = _ref().scaled_dot_product_attention(case.Q, case.K, case.V, case.mask)
    return np.asarray(out), np.asarray(weights)


def causal(seq_len: int) -> np.ndarray:
    """The reference causal mask."""
    return np.asarray(_ref().create_causal_mask(seq_len), dtype=np.float64)


def _softmax(scores: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = scores - scores.max(axis=axis, keepdims=True)
    exp = np.exp(shifted)
    return np.asarray(exp / exp.sum(axis=axis, keepdims=True))


def _whole_matrix(scores: np.ndarray, allowed: np.ndarray | None, V: np.ndarray) -> Any:
    if allowed is not None:
        scores = np.where(allowed, scores, -1e9)
    exp = np.exp(scores - scores.max(axis=(-1, -2), keepdims=True))
    weights = exp / exp.sum(axis=(-1, -2), keepdims=True)
    return weights @ V, weights


def _whole_sum(scores: np.ndarray, allowed: np.ndarray | None, V: np.ndarray) -> Any:
    """Each row shifted by its own maximum, then divided by the sum over the whole matrix."""
    if allowed is not None:
        scores = np.where(allowed, scores, -1e9)
    exp = np.exp(scores - scores.max(axis=-1, keepdims=True))
    weights = exp / exp.sum(axis=(-1, -2), keepdims=True)
    return weights @ V, weights


def _mask_after(scores: np.ndarray, allowed: np.ndarray, V: np.ndarray) -> Any:
    weights = _softmax(scores) * allowed
    return weights @ V, weights


def sdpa_variants(case: SdpaCase) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Known wrong versions of sdpa for this case: (mistake id, output, weights)."""
    Q, K, V, mask = case.Q, case.K, case.V, case.mask
    d_k = Q.shape[-1]
    raw = Q @ np.swapaxes(K, -1, -2)
    allowed = None if mask is None else np.asarray(mask) != 0

    def finish(scores: np.ndarray, where: np.ndarray | None, axis: int = -1) -> tuple[Any, Any]:
        if where is not None:
            scores = np.where(where, scores, -1e9)
        weights = _softmax(scores, axis)
        return weights @ V, weights

    def unshifted(scores: np.ndarray) -> tuple[Any, Any]:
        if allowed is not None:
            scores = np.where(allowed, scores, -1e9)
        exp = np.exp(scores)
        weights = exp / exp.sum(axis=-1, keepdims=True)
        return weights @ V, weights

    def unnormalised(scores: np.ndarray) -> tuple[Any, Any]:
        if allowed is not None:
            scores = np.where(allowed, scores, -1e9)
        weights = np.exp(scores - scores.max(axis=-1, keepdims=True))
        return weights @ V, weights

    scaled = raw / np.sqrt(d_k)
    right = finish(scaled, allowed)
    variants: list[tuple[str, Callable[[], tuple[Any, Any]]]] = [
        ("no-scaling", lambda: finish(raw, allowed)),
        ("divide-by-d_k", lambda: finish(raw / d_k, allowed)),
        ("softmax-over-queries", lambda: finish(scaled, allowed, axis=-2)),
        ("softmax-over-whole-matrix", lambda: _whole_matrix(scaled, allowed, V)),
        ("sum-over-whole-matrix", lambda: _whole_sum(scaled, allowed, V)),
        ("unnormalised-weights", lambda: unnormalised(scaled)),
        ("no-max-subtraction", lambda: unshifted(scaled)),
        ("weights-returned-first", lambda: (right[1], right[0])),
        ("output-from-K", lambda: (right[1] @ K, right[1])),
    ]
    if allowed is not None:
        variants += [
            ("mask-ignored", lambda: finish(scaled, None)),
            ("mask-inverted", lambda: finish(scaled, ~allowed)),
            ("mask-after-softmax", lambda: _mask_after(scaled, allowed, V)),
            ("mask-multiplies-scores", lambda: finish(scaled * allowed, None)),
            ("mask-value-positive", lambda: finish(np.where(allowed, scaled, 1e9), None)),
            ("weights-before-masking", lambda: (right[0], finish(scaled, None)[1])),
        ]
    found = []
    for mistake, compute in variants:
        try:
            with np.errstate(all="ignore"):
                output, weights = compute()
        except (ValueError, IndexError):
            continue
        found.append((mistake, np.asarray(output), np.asarray(weights)))
    return found


@functools.cache
def _reference_mha(embed_dim: int, num_heads: int) -> Any:
    """One reference instance per configuration: building one draws weights that every use
    replaces (the reference keeps no state between calls)."""
    return _ref().MultiHeadAttention(embed_dim, num_heads)


def _mha_forward(case: MhaCase, mask: np.ndarray | None) -> np.ndarray:
    ref = _reference_mha(case.embed_dim, case.num_heads)
    for path, value in case.weights.items():
        name, part = path.split(".")
        setattr(getattr(ref, name), part, value)
    return np.asarray(ref.forward(case.x, mask))


def mha(case: MhaCase) -> np.ndarray:
    """The reference output of MultiHeadAttention.forward(case.x, case.mask)."""
    return _mha_forward(case, case.mask)


def _head_masks(mask: np.ndarray | None, b: int, h: int, how: str) -> np.ndarray | None:
    """The (batch, heads, seq, seq)-broadcastable mask a forward with mask handling `how` uses."""
    if mask is None or how == "ignored":
        return None
    mask = np.asarray(mask)
    if mask.ndim == 3:
        if how == "per-head":  # mask[i] on head i (a 3-D mask broadcast against the heads)
            return np.asarray(np.stack([mask[np.arange(h) % mask.shape[0]]] * b))
        if how == "tiled-flat":  # (batch*heads, ...) rows b*heads + i got mask[(b*heads+i) % batch]
            index = np.arange(b * h).reshape(b, h) % mask.shape[0]
            return np.asarray(mask[index])
        mask = mask[:, np.newaxis]
    if how == "first-head-only":
        full = np.broadcast_to(mask != 0, (b, h, *mask.shape[-2:])).copy()
        full[:, 1:] = True
        return np.asarray(full)
    return np.asarray(mask)


def _staged(case: MhaCase, **mistake: Any) -> np.ndarray:
    """Multi-head attention written stage by stage, with the mistake named by the options."""
    e, h, b, s = case.embed_dim, case.num_heads, case.batch, case.seq
    d = e // h
    w = case.weights
    x = case.x

    def project(name: str) -> np.ndarray:
        weight = w[f"{name}.weight"]
        if mistake.get("transposed"):
            weight = weight.T
        bias = 0.0 if mistake.get("no_bias") else w[f"{name}.bias"]
        return np.asarray(x @ weight + bias)

    sources = mistake.get("sources", ("q_proj", "k_proj", "v_proj"))
    projected = [project(name) for name in sources]
    split = mistake.get("split", "right")
    if split == "reshape":
        q, k, v = (p.reshape(b, h, s, d) for p in projected)
    elif split == "no-transpose":  # (batch, seq, heads, head_dim): attention across the heads
        q, k, v = (p.reshape(b, s, h, d) for p in projected)
    else:
        q, k, v = (p.reshape(b, s, h, d).transpose(0, 2, 1, 3) for p in projected)
    mask = _head_masks(case.mask, b, h, mistake.get("mask", "right"))
    if split == "no-transpose" and mask is not None:
        raise ValueError("a mask does not fit attention across the heads")
    if mistake.get("scale"):
        q = q * np.sqrt(d / e)
    attention = mistake.get("attention")
    if attention is None:
        attended, _ = _ref().scaled_dot_product_attention(q, k, v, mask)
    else:
        attended = attention(SdpaCase(0, q, k, v, mask))
    merge = mistake.get("merge", "transpose" if split == "right" else "reshape")
    if merge == "transpose":
        concat = attended.transpose(0, 2, 1, 3).reshape(b, s, e)
    elif merge == "interleave":  # features ordered (head_dim, heads) instead of (heads, head_dim)
        concat = attended.transpose(0, 2, 3, 1).reshape(b, s, e)
    else:
        concat = attended.reshape(b, s, e)
    out = mistake.get("out", "right")
    if out == "missing":
        return np.asarray(concat)
    bias = w["out_proj.bias"]
    if out == "no-bias":
        bias = 0.0 * bias
    elif out == "per-head":  # each head's slice projected with its block of rows, bias each time
        bias = h * bias
    weight = w["out_proj.weight"].T if mistake.get("transposed") else w["out_proj.weight"]
    result = concat @ weight + bias
    if mistake.get("residual"):
        result = result + x
    return np.asarray(result)


MHA_VARIANTS: dict[str, dict[str, Any]] = {
    "mask-ignored": {"mask": "ignored"},
    "mask-applied-per-head": {"mask": "per-head"},
    "mask-tiled-flat": {"mask": "tiled-flat"},
    "mask-first-head-only": {"mask": "first-head-only"},
    "projection-bias-missing": {"no_bias": True},
    "projections-transposed": {"transposed": True},
    "queries-from-v-proj": {"sources": ("v_proj", "k_proj", "v_proj")},
    "keys-from-q-proj": {"sources": ("q_proj", "q_proj", "v_proj")},
    "values-from-k-proj": {"sources": ("q_proj", "k_proj", "k_proj")},
    "keys-values-swapped": {"sources": ("q_proj", "v_proj", "k_proj")},
    "heads-split-by-reshape": {"split": "reshape", "merge": "transpose"},
    "heads-split-and-merged-by-reshape": {"split": "reshape"},
    "split-without-transpose": {"split": "no-transpose"},
    "scaled-by-embed-dim": {"scale": True},
    "concat-without-transpose": {"merge": "reshape"},
    "merge-interleaves-heads": {"merge": "interleave"},
    "missing-out-proj": {"out": "missing"},
    "out-proj-bias-missing": {"out": "no-bias"},
    "out-proj-per-head": {"out": "per-head"},
    "residual-added": {"residual": True},
}
"""Known wrong multi-head forwards, by mistake id: the options of `_staged` that make them."""


def mha_variants(case: MhaCase) -> list[tuple[str, np.ndarray]]:
    """Known wrong versions of multi-head attention: (mistake id, output).

    Ids of mistakes inside the attention itself are "sdpa:" + an `sdpa_variants` id.
    """
    found: list[tuple[str, np.ndarray]] = []
    for mistake, options in MHA_VARIANTS.items():
        try:
            with np.errstate(all="ignore"):
                found.append((mistake, _staged(case, **options)))
        except (ValueError, IndexError):
            continue
    # Inside multi-head attention only the output counts, and a mask ignored by the attention
    # is the multi-head "mask-ignored" itself.
    same = {"mask-ignored", "weights-before-masking", "weights-returned-first"}
    ids = [mistake for mistake, _, _ in sdpa_variants(_small_case()) if mistake not in same]
    for sdpa_id in ids:

        def inside(inner: SdpaCase, sdpa_id: str = sdpa_id) -> np.ndarray:
            chosen = {v[0]: v for v in sdpa_variants(inner)}
            if sdpa_id not in chosen:
                raise ValueError(sdpa_id)
            return chosen[sdpa_id][1]

        try:
            with np.errstate(all="ignore"):
                output = _staged(case, attention=inside)
        except (ValueError, IndexError):
            continue
        if output.shape == (case.batch, case.seq, case.embed_dim):
            found.append((f"sdpa:{sdpa_id}", output))
    return found


def _small_case() -> SdpaCase:
    """An sdpa case with a mask, so that every sdpa variant id is listed."""
    one = np.ones((1, 2, 2))
    return SdpaCase(0, one, one, one, np.ones((2, 2)))


def questions(case: object) -> list[tuple[str, tuple[object, ...]]]:
    """Every question a check may ask about `case`, failing or not (a kit records them all)."""
    if isinstance(case, SdpaCase):
        probe = sdpa_probe(case)
        asked: list[tuple[str, tuple[object, ...]]] = [
            ("sdpa", (case,)),
            ("sdpa_variants", (case,)),
            ("sdpa", (probe,)),
            ("sdpa_variants", (probe,)),
        ]
        if case.Q.ndim > 2:
            asked.append(("sdpa", (sdpa_unbatched(case),)))
        return asked
    if isinstance(case, MhaCase):
        mha_input = mha_probe(case)
        return [
            ("mha", (case,)),
            ("mha_variants", (case,)),
            ("mha", (mha_input,)),
            ("mha_variants", (mha_input,)),
            *(("mha", (stage,)) for _, stage in mha_stages(case)),
        ]
    if isinstance(case, CausalCase):
        return [("causal", (case.seq_len,)), ("causal", (PROBE_N,))]
    return []


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sdpa": sdpa,
    "sdpa_variants": sdpa_variants,
    "causal": causal,
    "mha": mha,
    "mha_variants": mha_variants,
}
"""The questions the rubric may ask, by name."""
