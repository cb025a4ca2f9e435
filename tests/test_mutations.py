"""The mutation suite: differently written correct implementations get full marks, each
realistic mistake (a small edit of a correct implementation) loses the item it targets, and
submissions that compute nothing (stubs, constants, garbage) earn exactly what they deserve."""

from __future__ import annotations

import contextlib
import functools
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import REFERENCE_SOURCE, grade_code

from autograder.exercises.attention.rubric import MHA_MISTAKES, SDPA_MISTAKES
from autograder.scoring import ItemResult

pytestmark = pytest.mark.slow

IMPLEMENTATIONS = Path(__file__).parent / "implementations"
CORRECT = sorted(IMPLEMENTATIONS.glob("correct_*.py"))


def source(name: str) -> str:
    """A correct implementation by name; "reference" is solutions/attention.py itself."""
    if name == "reference":
        return REFERENCE_SOURCE
    return (IMPLEMENTATIONS / f"{name}.py").read_text(encoding="utf-8")


@pytest.mark.parametrize("path", CORRECT, ids=[p.stem for p in CORRECT])
def test_correct_implementation_gets_full_marks(path: Path) -> None:
    results = grade_code(path.read_text(encoding="utf-8"))
    failed = {item: r.failure for item, r in results.items() if r.failure is not None}
    assert failed == {}
    assert sum(r.score for r in results.values()) == 100


def test_there_are_at_least_six_correct_implementations() -> None:
    assert len(CORRECT) >= 6


@dataclass(frozen=True)
class Mutant:
    id: str
    base: str
    edits: tuple[tuple[str, str], ...]
    targets: tuple[str, ...]
    hints: tuple[str, ...] = ()
    """Per target, the id of the mistake its hint must name, or "" where the hint may only
    state facts (the mistake is not one the grader can establish); default: `id` for all."""

    def source(self) -> str:
        text = source(self.base)
        for old, new in self.edits:
            assert text.count(old) == 1, f"{self.id}: {old!r} must occur once in {self.base}"
            text = text.replace(old, new)
        return text

    def expected(self, target: str) -> str:
        hints = self.hints or (self.id,) * len(self.targets)
        return hints[self.targets.index(target)]


V = "reference"
HEAD_AXIS = (
    "            if mask.ndim == 3:  # (batch, seq, seq): the same mask for every head\n"
    "                mask = mask[:, np.newaxis, :, :]\n"
)
MUTANTS = [
    Mutant("no-scaling", V, ((" / np.sqrt(d_k)", ""),), ("sdpa_reference",)),
    Mutant("divide-by-d_k", V, (("/ np.sqrt(d_k)", "/ d_k"),), ("sdpa_reference",)),
    Mutant(
        "softmax-over-queries",
        V,
        (("scores.max(axis=-1", "scores.max(axis=-2"), ("exp.sum(axis=-1", "exp.sum(axis=-2")),
        ("sdpa_reference", "sdpa_distribution"),
    ),
    Mutant(
        "softmax-over-whole-matrix",
        V,
        (("exp.sum(axis=-1, keepdims=True)", "exp.sum(axis=(-2, -1), keepdims=True)"),),
        ("sdpa_distribution",),
        hints=("sum-over-whole-matrix",),
    ),
    Mutant(
        "unnormalised-weights",
        V,
        (("weights = exp / exp.sum(axis=-1, keepdims=True)", "weights = exp"),),
        ("sdpa_distribution",),
    ),
    Mutant(
        "no-max-subtraction",
        V,
        (("scores = scores - scores.max(axis=-1, keepdims=True)", "pass"),),
        ("sdpa_stability",),
    ),
    Mutant("k-dot-t", V, (("np.swapaxes(K, -1, -2)", "K.T"),), ("sdpa_reference",)),
    Mutant(
        "mask-ignored",
        V,
        (("scores = np.where(np.asarray(mask) != 0, scores, MASK_VALUE)", "pass"),),
        ("sdpa_masking",),
    ),
    Mutant(
        "mask-inverted", V, (("np.asarray(mask) != 0", "np.asarray(mask) == 0"),), ("sdpa_masking",)
    ),
    Mutant(
        "mask-after-softmax",
        V,
        (
            ("scores = np.where(np.asarray(mask) != 0, scores, MASK_VALUE)", "pass"),
            (
                "    return weights @ V, weights",
                "    if mask is not None:\n        weights = weights * mask\n"
                "    return weights @ V, weights",
            ),
        ),
        ("sdpa_masking",),
    ),
    Mutant(
        "mask-multiplies-scores",
        V,
        (
            (
                "scores = np.where(np.asarray(mask) != 0, scores, MASK_VALUE)",
                "scores = scores * np.asarray(mask)",
            ),
        ),
        ("sdpa_masking",),
    ),
    Mutant(
        "mask-value-positive",
        V,
        (("scores, MASK_VALUE)", "scores, -MASK_VALUE)"),),
        ("sdpa_masking",),
    ),
    Mutant(
        "weights-returned-first",
        V,
        (("return weights @ V, weights", "return weights, weights @ V"),),
        ("sdpa_reference",),
    ),
    Mutant(
        "only-output-returned",
        V,
        (
            ("    return weights @ V, weights", "    return weights @ V"),
            (
                "attended, _ = scaled_dot_product_attention(",
                "attended = scaled_dot_product_attention(",
            ),
        ),
        ("sdpa_reference", "sdpa_distribution"),
        hints=("not-a-pair", "not-a-pair"),
    ),
    Mutant(
        "scales-q-in-place",
        V,
        (
            (
                "scores = Q @ np.swapaxes(K, -1, -2) / np.sqrt(d_k)",
                "Q /= np.sqrt(d_k)\n    scores = Q @ np.swapaxes(K, -1, -2)",
            ),
        ),
        ("sdpa_inputs_unchanged",),
        hints=("input-changed",),
    ),
    Mutant(
        "masks-in-place",
        V,
        (
            (
                "scores = np.where(np.asarray(mask) != 0, scores, MASK_VALUE)",
                "mask[...] = np.asarray(mask) != 0\n"
                "        scores = np.where(mask, scores, MASK_VALUE)\n"
                "        mask[...] = 0",
            ),
        ),
        ("sdpa_inputs_unchanged",),
        hints=("input-changed",),
    ),
    Mutant("causal-transposed", V, (("np.tril(np.ones", "np.triu(np.ones"),), ("causal_mask",)),
    Mutant(
        "causal-without-diagonal",
        V,
        (("np.tril(np.ones((seq_len, seq_len)))", "np.tril(np.ones((seq_len, seq_len)), k=-1)"),),
        ("causal_mask",),
    ),
    Mutant(
        "causal-inverted",
        V,
        (
            (
                "return np.tril(np.ones((seq_len, seq_len)))",
                "return 1 - np.tril(np.ones((seq_len, seq_len)))",
            ),
        ),
        ("causal_mask",),
    ),
    Mutant(
        "causal-with-batch-axis",
        V,
        (("np.tril(np.ones((seq_len, seq_len)))", "np.tril(np.ones((1, seq_len, seq_len)))"),),
        ("causal_mask",),
        hints=("",),
    ),
    Mutant(
        "assert-instead-of-valueerror",
        V,
        (
            (
                "        if embed_dim % num_heads != 0:\n            raise ValueError(",
                "        assert embed_dim % num_heads == 0, (",
            ),
        ),
        ("mha_init",),
    ),
    Mutant(
        "no-divisibility-check",
        V,
        (("        if embed_dim % num_heads != 0:\n", "        if False:\n"),),
        ("mha_init",),
    ),
    Mutant(
        "raises-typeerror",
        V,
        (("raise ValueError(", "raise TypeError("),),
        ("mha_init",),
        hints=("wrong-exception",),
    ),
    Mutant(
        "head-dim-float", V, (("embed_dim // num_heads", "embed_dim / num_heads"),), ("mha_init",)
    ),
    Mutant(
        "heads-split-by-reshape",
        V,
        (
            (
                "x.reshape(batch, seq, self.num_heads, self.head_dim).transpose(0, 2, 1, 3)",
                "x.reshape(batch, self.num_heads, seq, self.head_dim)",
            ),
        ),
        ("mha_forward",),
    ),
    Mutant(
        "missing-out-proj",
        V,
        (("return self.out_proj(concat)", "return concat"),),
        ("mha_forward",),
    ),
    Mutant(
        "concat-without-transpose",
        V,
        (("attended.transpose(0, 2, 1, 3).reshape(", "attended.reshape("),),
        ("mha_forward",),
    ),
    Mutant(
        "keys-from-q-proj",
        V,
        (("K = self._split_heads(self.k_proj(x))", "K = self._split_heads(self.q_proj(x))"),),
        ("mha_forward",),
    ),
    Mutant(
        "scaled-by-embed-dim",
        V,
        (
            (
                "Q = self._split_heads(self.q_proj(x))",
                "Q = self._split_heads(self.q_proj(x)) * np.sqrt(self.head_dim / self.embed_dim)",
            ),
        ),
        ("mha_forward",),
    ),
    Mutant(
        "mask-without-head-axis",
        V,
        (("            if mask.ndim == 3:", "            if False:"),),
        ("mha_mask_broadcast",),
        hints=("",),
    ),
    Mutant(
        "mha-ignores-mask",
        V,
        (("scaled_dot_product_attention(Q, K, V, mask)", "scaled_dot_product_attention(Q, K, V)"),),
        ("mha_mask_broadcast", "mha_causal"),
        hints=("mask-ignored", "mask-ignored"),
    ),
    Mutant(
        "loops-causal-off-by-one",
        "correct_loops",
        (("for j in range(i + 1):", "for j in range(i):"),),
        ("causal_mask",),
        hints=("causal-without-diagonal",),
    ),
    Mutant(
        "loops-3d-mask-per-head",
        "correct_per_head_loop",
        (("            return mask[b]", "            return mask[h % mask.shape[0]]"),),
        ("mha_mask_broadcast",),
        hints=("mask-applied-per-head",),
    ),
    # State carried between calls (issue 13.2): every answer must depend on its arguments only.
    Mutant(
        "forward-caches-keys-and-values-on-the-instance",
        V,
        (
            (
                "        K = self._split_heads(self.k_proj(x))\n"
                "        V = self._split_heads(self.v_proj(x))\n",
                "        if not hasattr(self, '_kv'):  # a 'KV cache': stale on the next call\n"
                "            self._kv = (self._split_heads(self.k_proj(x)), "
                "self._split_heads(self.v_proj(x)))\n"
                "        K, V = self._kv\n",
            ),
        ),
        ("mha_forward", "mha_mask_broadcast", "mha_causal"),
        hints=("state-between-calls", "state-between-calls", "state-between-calls"),
    ),
    Mutant(
        "class-level-memo-shared-between-instances",
        V,
        (
            (
                "class MultiHeadAttention:\n",
                "class MultiHeadAttention:\n    _memo = {}  # a class attribute: one for all\n",
            ),
            (
                "    def forward(self, x: np.ndarray, mask: np.ndarray | None = None) "
                "-> np.ndarray:\n",
                "    def forward(self, x, mask=None):\n"
                "        key = (x.tobytes(), np.asarray(mask).tobytes())\n"
                "        if key not in self._memo:\n"
                "            self._memo[key] = self._forward(x, mask)\n"
                "        return self._memo[key]\n\n"
                "    def _forward(self, x, mask=None):\n",
            ),
        ),
        ("mha_forward", "mha_causal"),
        hints=("state-between-calls", "state-between-calls"),
    ),
    Mutant(
        "head-dim-stored-on-the-class",
        V,
        (("        self.head_dim = embed_dim", "        type(self).head_dim = embed_dim"),),
        ("mha_init",),
        hints=("state-shared-between-instances",),
    ),
    Mutant(
        "query-projection-stored-on-the-class",
        V,
        (("        self.q_proj = Linear(", "        MultiHeadAttention.q_proj = Linear("),),
        ("mha_init", "mha_forward"),
        hints=("state-shared-between-instances", "state-between-calls"),
    ),
    Mutant(
        "sdpa-caches-scores-by-shape-in-a-global",
        V,
        (
            (
                "    d_k = Q.shape[-1]\n    scores = Q @ np.swapaxes(K, -1, -2) / np.sqrt(d_k)\n",
                "    d_k = Q.shape[-1]\n    key = (Q.shape, K.shape)\n"
                "    if key not in _SCORES:  # a module-level cache, keyed by shape only\n"
                "        _SCORES[key] = Q @ np.swapaxes(K, -1, -2) / np.sqrt(d_k)\n"
                "    scores = _SCORES[key]\n",
            ),
            ("MASK_VALUE = -1e9\n", "MASK_VALUE = -1e9\n_SCORES = {}\n"),
        ),
        ("sdpa_reference", "sdpa_distribution", "sdpa_masking", "sdpa_inputs_unchanged"),
        hints=(
            "state-between-calls",
            "state-between-calls",
            "state-between-calls",
            "state-between-calls",
        ),
    ),
    Mutant(
        "loops-forget-scaling",
        "correct_loops",
        (("s = s / np.sqrt(d_k)", "s = s"),),
        ("sdpa_reference",),
        hints=("no-scaling",),
    ),
    # scaled dot-product attention, more as students write it
    Mutant(
        "output-from-K",
        V,
        (("return weights @ V, weights", "return weights @ K, weights"),),
        ("sdpa_reference",),
    ),
    Mutant(
        "weights-before-masking",
        V,
        (
            (
                "    if mask is not None:\n        scores = np.where",
                "    raw = scores\n    if mask is not None:\n        scores = np.where",
            ),
            (
                "    return weights @ V, weights",
                "    plain = np.exp(raw - raw.max(axis=-1, keepdims=True))\n"
                "    return weights @ V, plain / plain.sum(axis=-1, keepdims=True)",
            ),
        ),
        ("sdpa_masking",),
    ),
    Mutant(
        "float16-scores",
        V,
        (
            (
                "scores = Q @ np.swapaxes(K, -1, -2) / np.sqrt(d_k)",
                "scores = (Q.astype(np.float16) @ np.swapaxes(K, -1, -2).astype(np.float16))"
                " / np.float16(np.sqrt(d_k))",
            ),
        ),
        ("sdpa_reference",),
        hints=("",),
    ),
    Mutant(
        "swapaxes-of-the-batch",
        V,
        (("np.swapaxes(K, -1, -2)", "np.swapaxes(K, 0, 1)"),),
        ("sdpa_reference",),
        hints=("",),
    ),
    Mutant(
        "v-transposed",
        V,
        (("return weights @ V, weights", "return weights @ V.T, weights"),),
        ("sdpa_reference",),
        hints=("",),
    ),
    # multi-head attention, as students write it
    Mutant(
        "merge-interleaves-heads",
        V,
        (("attended.transpose(0, 2, 1, 3).reshape(", "attended.transpose(0, 2, 3, 1).reshape("),),
        ("mha_forward",),
    ),
    Mutant(
        "out-proj-per-head",
        "correct_per_head_loop",
        (
            (
                "outputs[b, :, cols] = out",
                "outputs[b] += out @ self.out_proj.weight[cols] + self.out_proj.bias",
            ),
            ("return self.out_proj(outputs)", "return outputs"),
        ),
        ("mha_forward",),
    ),
    Mutant(
        "out-proj-inside-head-loop",
        "correct_per_head_loop",
        (
            ("outputs[b, :, cols] = out", "outputs[b, :, cols] = self.out_proj(out)"),
            ("return self.out_proj(outputs)", "return outputs"),
        ),
        ("mha_forward",),
        hints=("",),
    ),
    Mutant(
        "queries-from-v-proj",
        V,
        (("Q = self._split_heads(self.q_proj(x))", "Q = self._split_heads(self.v_proj(x))"),),
        ("mha_forward",),
    ),
    Mutant(
        "keys-values-swapped",
        V,
        (
            ("K = self._split_heads(self.k_proj(x))", "K = self._split_heads(self.v_proj(x))"),
            ("V = self._split_heads(self.v_proj(x))", "V = self._split_heads(self.k_proj(x))"),
        ),
        ("mha_forward",),
    ),
    Mutant(
        "split-along-the-sequence",
        V,
        (
            (
                "return x.reshape(batch, seq, self.num_heads, self.head_dim).transpose(0, 2, 1, 3)",
                "return np.stack(np.split(x, self.num_heads, axis=1), axis=1)",
            ),
        ),
        ("mha_forward",),
        hints=("",),
    ),
    Mutant(
        "split-without-transpose",
        V,
        (
            (
                "x.reshape(batch, seq, self.num_heads, self.head_dim).transpose(0, 2, 1, 3)",
                "x.reshape(batch, seq, self.num_heads, self.head_dim)",
            ),
            ("attended.transpose(0, 2, 1, 3).reshape(", "attended.reshape("),
        ),
        ("mha_forward",),
    ),
    Mutant(
        "projection-bias-missing",
        V,
        (
            ("self._split_heads(self.q_proj(x))", "self._split_heads(x @ self.q_proj.weight)"),
            ("self._split_heads(self.k_proj(x))", "self._split_heads(x @ self.k_proj.weight)"),
            ("self._split_heads(self.v_proj(x))", "self._split_heads(x @ self.v_proj.weight)"),
        ),
        ("mha_forward",),
    ),
    Mutant(
        "projections-transposed",
        V,
        (
            (
                "self._split_heads(self.q_proj(x))",
                "self._split_heads(x @ self.q_proj.weight.T + self.q_proj.bias)",
            ),
            (
                "self._split_heads(self.k_proj(x))",
                "self._split_heads(x @ self.k_proj.weight.T + self.k_proj.bias)",
            ),
            (
                "self._split_heads(self.v_proj(x))",
                "self._split_heads(x @ self.v_proj.weight.T + self.v_proj.bias)",
            ),
            (
                "return self.out_proj(concat)",
                "return concat @ self.out_proj.weight.T + self.out_proj.bias",
            ),
        ),
        ("mha_forward",),
    ),
    Mutant(
        "out-proj-bias-missing",
        V,
        (("return self.out_proj(concat)", "return concat @ self.out_proj.weight"),),
        ("mha_forward",),
    ),
    Mutant(
        "residual-added",
        V,
        (("return self.out_proj(concat)", "return self.out_proj(concat) + x"),),
        ("mha_forward",),
    ),
    Mutant(
        "mask-first-head-only",
        "correct_per_head_loop",
        (
            (
                "self.head_mask(mask, b, h)\n",
                "self.head_mask(mask, b, h) if h == 0 else None\n",
            ),
        ),
        ("mha_mask_broadcast", "mha_causal"),
    ),
    Mutant(
        "mask-tiled-flat",
        V,
        (
            (
                HEAD_AXIS,
                "            if mask.ndim == 3:\n"
                "                mask = np.tile(mask, (self.num_heads, 1, 1))\n"
                "            elif mask.ndim == 4:\n"
                "                mask = np.broadcast_to(mask, (batch, self.num_heads, seq, seq))\n"
                "                mask = mask.reshape(-1, seq, seq)\n",
            ),
            (
                "attended, _ = scaled_dot_product_attention(Q, K, V, mask)",
                "flat = (batch * self.num_heads, seq, self.head_dim)\n"
                "        attended, _ = scaled_dot_product_attention(\n"
                "            Q.reshape(flat), K.reshape(flat), V.reshape(flat), mask\n"
                "        )\n"
                "        attended = attended.reshape(batch, self.num_heads, seq, self.head_dim)",
            ),
        ),
        ("mha_mask_broadcast",),
        hints=("mask-applied-per-head",),
    ),
    Mutant(
        "flat-mask-without-repeat",
        V,
        (
            (
                HEAD_AXIS,
                "            if mask.ndim == 4:\n"
                "                mask = np.broadcast_to(mask, (batch, self.num_heads, seq, seq))\n"
                "                mask = mask.reshape(-1, seq, seq)\n",
            ),
            (
                "attended, _ = scaled_dot_product_attention(Q, K, V, mask)",
                "flat = (batch * self.num_heads, seq, self.head_dim)\n"
                "        attended, _ = scaled_dot_product_attention(\n"
                "            Q.reshape(flat), K.reshape(flat), V.reshape(flat), mask\n"
                "        )\n"
                "        attended = attended.reshape(batch, self.num_heads, seq, self.head_dim)",
            ),
        ),
        ("mha_mask_broadcast",),
        hints=("mask-without-head-axis",),
    ),
    Mutant(
        "mask-head-axis-in-the-wrong-place",
        V,
        (("mask = mask[:, np.newaxis, :, :]", "mask = mask[:, :, np.newaxis, :]"),),
        ("mha_mask_broadcast",),
        hints=("",),
    ),
    Mutant(
        "mha-softmax-over-queries",
        V,
        (("scores.max(axis=-1", "scores.max(axis=-2"), ("exp.sum(axis=-1", "exp.sum(axis=-2")),
        ("mha_forward",),
        hints=("sdpa:softmax-over-queries",),
    ),
    Mutant(
        "mha-mask-inverted",
        V,
        (
            (
                "mask = mask[:, np.newaxis, :, :]",
                "mask = mask[:, np.newaxis, :, :]\n                mask = 1 - mask",
            ),
        ),
        ("mha_mask_broadcast",),
        hints=("sdpa:mask-inverted",),
    ),
    Mutant(
        "mask-inverted-with-neginf",
        V,
        (("np.asarray(mask) != 0, scores, MASK_VALUE", "np.asarray(mask) == 0, scores, -np.inf"),),
        ("sdpa_masking",),
        hints=("",),
    ),
]


def test_there_are_at_least_twenty_five_distinct_mutants() -> None:
    assert len({m.id for m in MUTANTS}) == len(MUTANTS) >= 25


MHA_ITEMS = {"mha_forward", "mha_mask_broadcast", "mha_causal"}


def test_the_table_holds_at_least_twenty_multi_head_mistakes() -> None:
    assert len([m for m in MUTANTS if MHA_ITEMS & set(m.targets)]) >= 20


@functools.cache
def graded(mutant_id: str) -> dict[str, ItemResult]:
    """The mutant's results on its target items (graded once per test session)."""
    mutant = next(m for m in MUTANTS if m.id == mutant_id)
    return grade_code(mutant.source(), only=mutant.targets)


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.id for m in MUTANTS])
def test_mutant_loses_the_item_it_targets_with_the_expected_hint(mutant: Mutant) -> None:
    results = graded(mutant.id)
    for target in mutant.targets:
        result = results[target]
        assert result.score == 0, f"{mutant.id} passed {target}"
        failure = result.failure
        assert failure is not None and failure.summary
        assert failure.mistake == mutant.expected(target), (target, failure.summary, failure.hint)
        if failure.mistake:
            assert failure.hint, failure


# --- submissions that compute nothing (issue 13.1) ------------------------------------------

PRELUDE = """
import numpy as np
MASK_VALUE = -1e9

class Linear:
    def __init__(self, in_features, out_features):
        self.weight = np.zeros((in_features, out_features))
        self.bias = np.zeros(out_features)
    def forward(self, x):
        return x @ self.weight + self.bias
    __call__ = forward

def _shapes(Q, K, V):
    batch = np.broadcast_shapes(Q.shape[:-2], K.shape[:-2])
    return (*batch, Q.shape[-2], V.shape[-1]), (*batch, Q.shape[-2], K.shape[-2])
"""

SDPA_STUB = """
def scaled_dot_product_attention(Q, K, V, mask=None):
    raise NotImplementedError()
"""
MASK_STUB = """
def create_causal_mask(seq_len):
    raise NotImplementedError()
"""
MASK_RIGHT = """
def create_causal_mask(seq_len):
    return np.tril(np.ones((seq_len, seq_len)))
"""
INIT_RIGHT = """
class MultiHeadAttention:
    def __init__(self, embed_dim, num_heads):
        if embed_dim % num_heads:
            raise ValueError("embed_dim must be divisible by num_heads")
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.q_proj, self.k_proj = Linear(embed_dim, embed_dim), Linear(embed_dim, embed_dim)
        self.v_proj, self.out_proj = Linear(embed_dim, embed_dim), Linear(embed_dim, embed_dim)
"""
INIT_NO_CHECK = INIT_RIGHT.replace(
    '        if embed_dim % num_heads:\n            raise ValueError("embed_dim must be divisible '
    'by num_heads")\n',
    "",
)
MHA_STUB = """
class MultiHeadAttention:
    def __init__(self, embed_dim, num_heads):
        raise NotImplementedError()
    def forward(self, x, mask=None):
        raise NotImplementedError()
"""
ZEROS_AND_UNIFORM = (
    """
def scaled_dot_product_attention(Q, K, V, mask=None):
    out, w = _shapes(Q, K, V)
    return np.zeros(out), np.full(w, 1.0 / w[-1])

def create_causal_mask(seq_len):
    return np.ones((seq_len, seq_len))
"""
    + INIT_NO_CHECK
    + """
    def forward(self, x, mask=None):
        return np.zeros_like(x)
"""
)
WRONG_SHAPES = """
def scaled_dot_product_attention(Q, K, V, mask=None):
    return np.zeros(Q.shape[-1:]), np.ones(K.shape[:-1])

def create_causal_mask(seq_len):
    return np.ones(seq_len)

class MultiHeadAttention:
    def __init__(self, embed_dim, num_heads):
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim
        self.q_proj = self.k_proj = self.v_proj = self.out_proj = Linear(1, 1)
    def forward(self, x, mask=None):
        return x[:, :1]
"""
RANDOM_GARBAGE = (
    """
def scaled_dot_product_attention(Q, K, V, mask=None):
    rng = np.random.default_rng(Q.size)  # deterministic garbage: random rows that sum to 1
    out, w = _shapes(Q, K, V)
    weights = rng.random(w)
    return rng.standard_normal(out), weights / weights.sum(axis=-1, keepdims=True)

def create_causal_mask(seq_len):
    return (np.random.default_rng(seq_len).random((seq_len, seq_len)) < 0.5) * 1.0
"""
    + INIT_NO_CHECK
    + """
    def forward(self, x, mask=None):
        return np.random.default_rng(x.size).standard_normal(x.shape)
"""
)
UNIFORM_SOFTMAX_OF_NOTHING = """
def scaled_dot_product_attention(Q, K, V, mask=None):
    out, w = _shapes(Q, K, V)
    allowed = np.ones(w) if mask is None else np.broadcast_to(np.asarray(mask) != 0, w) * 1.0
    weights = allowed / allowed.sum(axis=-1, keepdims=True)  # uniform over the allowed keys
    return weights @ V, weights
"""
RIGHT_WEIGHTS_ZERO_OUTPUT = """
def scaled_dot_product_attention(Q, K, V, mask=None):
    scores = Q @ np.swapaxes(K, -1, -2) / np.sqrt(Q.shape[-1])
    if mask is not None:
        scores = np.where(np.asarray(mask) != 0, scores, MASK_VALUE)
    exp = np.exp(scores - scores.max(axis=-1, keepdims=True))
    weights = exp / exp.sum(axis=-1, keepdims=True)
    return np.zeros(_shapes(Q, K, V)[0]), weights
"""
CONSTANT_FORWARD = """
    def forward(self, x, mask=None):
        return np.ones_like(x)
"""


@dataclass(frozen=True)
class Submission:
    id: str
    source: str
    scores: dict[str, float]
    """The items that earn points, and how many; every other item earns 0."""
    messages: dict[str, str]
    """A phrase the failure of some items must contain."""


DO_NOTHING = [
    Submission("stubs", PRELUDE + SDPA_STUB + MASK_STUB + MHA_STUB, {}, {}),
    Submission(
        "zeros-and-uniform-weights",
        PRELUDE + ZEROS_AND_UNIFORM,
        {},
        {
            "sdpa_distribution": "a softmax gives a higher score a higher weight",
            "sdpa_inputs_unchanged": "counts only for calls that return the right answer",
            "mha_causal": "`output` differs from the expected value",
        },
    ),
    Submission(
        "wrong-shapes",
        PRELUDE + WRONG_SHAPES,
        {},
        {"sdpa_inputs_unchanged": "has shape", "causal_mask": "is not 1 on and below"},
    ),
    Submission(
        "random-garbage",
        PRELUDE + RANDOM_GARBAGE,
        {},
        {
            "sdpa_distribution": "a softmax gives a higher score a higher weight",
            "sdpa_inputs_unchanged": "counts only for calls that return the right answer",
        },
    ),
    Submission(
        "uniform-weights-over-the-allowed-keys",
        PRELUDE + UNIFORM_SOFTMAX_OF_NOTHING + MASK_STUB + MHA_STUB,
        {},
        {"sdpa_distribution": "a softmax gives a higher score a higher weight"},
    ),
    Submission(
        "only-the-causal-mask",
        PRELUDE + SDPA_STUB + MASK_RIGHT + MHA_STUB,
        {"causal_mask": 10},
        {"sdpa_reference": "Not implemented yet"},
    ),
    Submission(
        "causal-mask-and-constant-attention",
        PRELUDE + ZEROS_AND_UNIFORM.replace("np.ones((seq_len, seq_len))", "np.tri(seq_len)"),
        {"causal_mask": 10},
        {"sdpa_inputs_unchanged": "counts only for calls that return the right answer"},
    ),
    Submission(
        "right-weights-zero-output",
        PRELUDE + RIGHT_WEIGHTS_ZERO_OUTPUT + MASK_STUB + MHA_STUB,
        {"sdpa_distribution": 10},
        {"sdpa_reference": "`output` differs", "sdpa_inputs_unchanged": "`output` differs"},
    ),
    Submission(
        "constructor-only-constant-forward",
        PRELUDE + SDPA_STUB + MASK_STUB + INIT_RIGHT + CONSTANT_FORWARD,
        {"mha_init": 10},
        {"mha_causal": "`output` differs", "mha_mask_broadcast": "`output` differs"},
    ),
]


@pytest.mark.parametrize("submission", DO_NOTHING, ids=[s.id for s in DO_NOTHING])
def test_a_submission_that_computes_nothing_earns_exactly_what_it_deserves(
    submission: Submission,
) -> None:
    results = grade_code(submission.source)
    earned = {item: r.score for item, r in results.items() if r.score}
    assert earned == submission.scores, {i: r.failure for i, r in results.items() if r.score}
    for item, result in results.items():
        if item not in submission.scores:
            assert result.failure is not None and result.failure.summary, item
    for item, phrase in submission.messages.items():
        failure = results[item].failure
        assert failure is not None and phrase in failure.summary, (item, failure)


NAMED_TEXTS = [*SDPA_MISTAKES.values(), *MHA_MISTAKES.values()]


def test_no_hint_on_the_table_names_a_mistake_that_was_not_made() -> None:
    """Every failing item's hint names the mistake made, or states facts only."""
    named = facts = 0
    wrong: list[tuple[str, str, str]] = []
    for mutant in MUTANTS:
        for target, result in graded(mutant.id).items():
            failure = result.failure
            assert failure is not None, (mutant.id, target)
            if not failure.mistake:
                facts += 1
                quoted = [text for text in NAMED_TEXTS if text in failure.hint]
                assert not quoted, (mutant.id, target, failure.hint)
            elif failure.mistake == mutant.expected(target):
                named += 1
            else:
                wrong.append((mutant.id, target, failure.mistake))
    print(
        f"hints on {named + facts + len(wrong)} failing items: {named} named the mistake, "
        f"{facts} stated facts only, {len(wrong)} named a mistake not made"
    )
    assert wrong == []
    assert named >= 3 * facts  # most known mistakes are named


def _runs(code: str, snippet: str) -> BaseException | None:
    """Run `code` then `snippet` as a notebook would; the exception that stopped it, if any."""
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(code, "<student>", "exec"), namespace)
    try:
        with np.errstate(all="ignore"), contextlib.redirect_stdout(io.StringIO()):
            exec(compile(snippet, "<snippet>", "exec"), namespace)
    except Exception as error:
        return error
    return None


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.id for m in MUTANTS])
def test_the_snippet_reproduces_the_failure(mutant: Mutant) -> None:
    """Pasted after the mutant's code the snippet fails; after the reference it runs cleanly."""
    for target, result in graded(mutant.id).items():
        assert result.failure is not None
        snippet = result.failure.snippet
        assert snippet, (target, result.failure)
        assert _runs(mutant.source(), snippet) is not None, (target, snippet)
        assert _runs(REFERENCE_SOURCE, snippet) is None, (target, snippet)
