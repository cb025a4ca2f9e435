"""The attention exercise's oracle: expected answers and the known wrong ones (grader only).

Everything here computes attention, so it is part of the solution: the student checker kit
leaves this module out and replays recorded answers instead (see `autograder/oracle.py`).
The rubric (`attention.py`) asks these questions by name and judges the student's answers.

Wrong variants are returned as (mistake id, arrays...): the rubric turns ids into hints.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from autograder.reference import load_reference
from autograder.rubrics.attention_strategies import CausalCase, MhaCase, SdpaCase

__all__ = ["FUNCTIONS", "questions"]


def _ref() -> Any:
    return load_reference("attention")


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

    scaled = raw / np.sqrt(d_k)
    variants: list[tuple[str, Callable[[], tuple[Any, Any]]]] = [
        ("no-scaling", lambda: finish(raw, allowed)),
        ("divide-by-d_k", lambda: finish(raw / d_k, allowed)),
        ("softmax-over-queries", lambda: finish(scaled, allowed, axis=-2)),
        ("softmax-over-whole-matrix", lambda: _whole_matrix(scaled, allowed, V)),
    ]
    if allowed is not None:
        variants += [
            ("mask-ignored", lambda: finish(scaled, None)),
            ("mask-inverted", lambda: finish(scaled, ~allowed)),
            ("mask-after-softmax", lambda: _mask_after(scaled, allowed, V)),
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


def _mha_forward(case: MhaCase, mask: np.ndarray | None) -> np.ndarray:
    ref = _ref().MultiHeadAttention(case.embed_dim, case.num_heads)
    for path, value in case.weights.items():
        name, part = path.split(".")
        setattr(getattr(ref, name), part, value)
    return np.asarray(ref.forward(case.x, mask))


def mha(case: MhaCase) -> np.ndarray:
    """The reference output of MultiHeadAttention.forward(case.x, case.mask)."""
    return _mha_forward(case, case.mask)


def mha_variants(case: MhaCase) -> list[tuple[str, np.ndarray]]:
    """Known wrong versions of multi-head attention, most specific first: (mistake id, output).

    Ids of mistakes inside the attention itself are "sdpa:" + an `sdpa_variants` id.
    """
    found: list[tuple[str, np.ndarray]] = []
    if case.mask is not None and case.mask.ndim == 3 and case.batch == case.num_heads:
        found.append(("mask-applied-per-head", _mha_forward(case, case.mask[np.newaxis])))
    if case.mask is not None:
        found.append(("mask-ignored", _mha_forward(case, None)))
    e, h, b, s = case.embed_dim, case.num_heads, case.batch, case.seq
    w = case.weights
    project = [case.x @ w[f"{n}.weight"] + w[f"{n}.bias"] for n in ("q_proj", "k_proj", "v_proj")]
    mask = case.mask
    if mask is not None and mask.ndim == 3:
        mask = mask[:, np.newaxis]

    def out_proj(concat: np.ndarray) -> np.ndarray:
        return np.asarray(concat @ w["out_proj.weight"] + w["out_proj.bias"])

    wrong_split = [p.reshape(b, h, s, e // h) for p in project]
    attended, _ = _ref().scaled_dot_product_attention(*wrong_split, mask)
    found.append(("heads-split-by-reshape", out_proj(attended.reshape(b, s, e))))
    found.append(
        ("heads-split-by-reshape", out_proj(attended.transpose(0, 2, 1, 3).reshape(b, s, e)))
    )
    q, k, v = (p.reshape(b, s, h, e // h).transpose(0, 2, 1, 3) for p in project)
    attended, _ = _ref().scaled_dot_product_attention(q, k, v, mask)
    found.append(("missing-out-proj", attended.transpose(0, 2, 1, 3).reshape(b, s, e)))
    if h > 1:
        found.append(("concat-without-transpose", out_proj(attended.reshape(b, s, e))))
    for mistake, heads, _ in sdpa_variants(SdpaCase(0, q, k, v, mask)):
        if heads.shape == attended.shape:
            merged = heads.transpose(0, 2, 1, 3).reshape(b, s, e)
            found.append((f"sdpa:{mistake}", out_proj(merged)))
    return found


def questions(case: object) -> list[tuple[str, tuple[object, ...]]]:
    """Every question a check may ask about `case`, failing or not (a kit records them all)."""
    if isinstance(case, SdpaCase):
        return [("sdpa", (case,)), ("sdpa_variants", (case,))]
    if isinstance(case, MhaCase):
        return [("mha", (case,)), ("mha_variants", (case,))]
    if isinstance(case, CausalCase):
        return [("causal", (case.seq_len,))]
    return []


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sdpa": sdpa,
    "sdpa_variants": sdpa_variants,
    "causal": causal,
    "mha": mha,
    "mha_variants": mha_variants,
}
"""The questions the rubric may ask, by name."""
