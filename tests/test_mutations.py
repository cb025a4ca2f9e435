"""The mutation suite: differently written correct implementations get full marks, and each
realistic mistake (a small edit of a correct implementation) loses the item it targets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REFERENCE_SOURCE, grade_code

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

    def source(self) -> str:
        text = source(self.base)
        for old, new in self.edits:
            assert text.count(old) == 1, f"{self.id}: {old!r} must occur once in {self.base}"
            text = text.replace(old, new)
        return text


V = "reference"
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
    Mutant("raises-typeerror", V, (("raise ValueError(", "raise TypeError("),), ("mha_init",)),
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
    ),
    Mutant(
        "mha-ignores-mask",
        V,
        (("scaled_dot_product_attention(Q, K, V, mask)", "scaled_dot_product_attention(Q, K, V)"),),
        ("mha_mask_broadcast", "mha_causal"),
    ),
    Mutant(
        "loops-causal-off-by-one",
        "correct_loops",
        (("for j in range(i + 1):", "for j in range(i):"),),
        ("causal_mask",),
    ),
    Mutant(
        "loops-3d-mask-per-head",
        "correct_per_head_loop",
        (("            return mask[b]", "            return mask[h % mask.shape[0]]"),),
        ("mha_mask_broadcast",),
    ),
    Mutant(
        "loops-forget-scaling",
        "correct_loops",
        (("s = s / np.sqrt(d_k)", "s = s"),),
        ("sdpa_reference",),
    ),
]


def test_there_are_at_least_twenty_five_distinct_mutants() -> None:
    assert len({m.id for m in MUTANTS}) == len(MUTANTS) >= 25


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.id for m in MUTANTS])
def test_mutant_loses_the_item_it_targets(mutant: Mutant) -> None:
    results = grade_code(mutant.source(), only=mutant.targets)
    for target in mutant.targets:
        result = results[target]
        assert result.score == 0, f"{mutant.id} passed {target}"
        assert result.failure is not None and result.failure.summary
