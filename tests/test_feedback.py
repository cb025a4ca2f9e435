"""Feedback that teaches: for common mistakes the hint names the mistake, and the snippet in
the feedback, pasted after the student's code, really reproduces the failure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from conftest import REFERENCE_SOURCE, grade_code

from autograder.exercises.attention import EXERCISE
from autograder.reference import load_reference

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Mistake:
    id: str
    item: str
    edits: tuple[tuple[str, str], ...]
    hint: str
    """A phrase the hint must contain."""


MISTAKES = [
    Mistake("no-scaling", "sdpa_reference", ((" / np.sqrt(d_k)", ""),), "1/sqrt(d_k)"),
    Mistake("divide-by-d_k", "sdpa_reference", (("np.sqrt(d_k)", "d_k"),), "divided by d_k"),
    Mistake(
        "softmax-over-queries",
        "sdpa_reference",
        (("max(axis=-1", "max(axis=-2"), ("sum(axis=-1", "sum(axis=-2")),
        "query axis",
    ),
    Mistake(
        "softmax-over-whole-matrix",
        "sdpa_distribution",
        (("max(axis=-1", "max(axis=(-2, -1)"), ("sum(axis=-1", "sum(axis=(-2, -1)")),
        "whole matrix",
    ),
    Mistake(
        "weights-returned-first",
        "sdpa_reference",
        (("return weights @ V, weights", "return weights, weights @ V"),),
        "(output, weights), in that order",
    ),
    Mistake(
        "mask-ignored",
        "sdpa_masking",
        (("scores = np.where(np.asarray(mask) != 0, scores, MASK_VALUE)", "pass"),),
        "mask ignored",
    ),
    Mistake(
        "mask-inverted",
        "sdpa_masking",
        (("np.asarray(mask) != 0", "np.asarray(mask) == 0"),),
        "inverted mask",
    ),
    Mistake(
        "mask-after-softmax",
        "sdpa_masking",
        (
            ("scores = np.where(np.asarray(mask) != 0, scores, MASK_VALUE)", "pass"),
            (
                "weights = exp / exp.sum(axis=-1, keepdims=True)",
                "weights = exp / exp.sum(axis=-1, keepdims=True)\n"
                "    if mask is not None:\n        weights = weights * mask",
            ),
        ),
        "after the softmax",
    ),
    Mistake(
        "no-max-subtraction",
        "sdpa_stability",
        (("scores = scores - scores.max(axis=-1, keepdims=True)", "pass"),),
        "without subtracting each row's maximum",
    ),
    Mistake(
        "changes-q-in-place",
        "sdpa_inputs_unchanged",
        (
            (
                "scores = Q @ np.swapaxes(K, -1, -2) / np.sqrt(d_k)",
                "Q /= np.sqrt(d_k)\n    scores = Q @ np.swapaxes(K, -1, -2)",
            ),
        ),
        "change the caller's array",
    ),
    Mistake(
        "causal-transposed", "causal_mask", (("np.tril(np.ones", "np.triu(np.ones"),), "transposed"
    ),
    Mistake(
        "causal-without-diagonal",
        "causal_mask",
        (("np.tril(np.ones((seq_len, seq_len)))", "np.tril(np.ones((seq_len, seq_len)), k=-1)"),),
        "diagonal must be 1",
    ),
    Mistake(
        "assert-instead-of-valueerror",
        "mha_init",
        (
            (
                "        if embed_dim % num_heads != 0:\n            raise ValueError(",
                "        assert embed_dim % num_heads == 0, (",
            ),
        ),
        "not `assert`",
    ),
    Mistake(
        "head-dim-float",
        "mha_init",
        (("embed_dim // num_heads", "embed_dim / num_heads"),),
        "integer division",
    ),
    Mistake(
        "mask-without-head-axis",
        "mha_mask_broadcast",
        (("            if mask.ndim == 3:", "            if False:"),),
        "mask[:, np.newaxis]",
    ),
    Mistake(
        "missing-out-proj",
        "mha_forward",
        (("return self.out_proj(concat)", "return concat"),),
        "out_proj",
    ),
    Mistake(
        "heads-split-by-reshape",
        "mha_forward",
        (
            (
                "x.reshape(batch, seq, self.num_heads, self.head_dim).transpose(0, 2, 1, 3)",
                "x.reshape(batch, self.num_heads, seq, self.head_dim)",
            ),
        ),
        "plain reshape",
    ),
    Mistake(
        "heads-concatenated-without-transpose",
        "mha_forward",
        (("attended.transpose(0, 2, 1, 3).reshape(", "attended.reshape("),),
        "without transposing back",
    ),
    Mistake(  # the attention inside is wrong: multi-head attention says so, by name
        "mha-on-unscaled-attention",
        "mha_forward",
        ((" / np.sqrt(d_k)", ""),),
        "the attention inside the heads has a mistake (see scaled_dot_product_attention). Your "
        "result matches attention without the 1/sqrt(d_k) scaling",
    ),
]


FACTS = [  # mistakes the grader cannot establish: the hint states facts, never a cause
    Mistake(
        "weights-times-K-same-size",  # d_k == d_v on the shrunk input: values, not shapes
        "sdpa_reference",
        (("return weights @ V, weights", "return weights @ (K + V) / 2, weights"),),
        "The weights are right; the output is not",
    ),
    Mistake(
        "swapaxes-of-the-batch",
        "sdpa_reference",
        (("np.swapaxes(K, -1, -2)", "np.swapaxes(K, 0, 1)"),),
        "`scores = Q @ np.swapaxes(K, 0, 1) / np.sqrt(d_k)` (a matrix product)",
    ),
    Mistake(
        "crash-in-weights-at-V",
        "sdpa_reference",
        (("return weights @ V, weights", "return weights @ V.T, weights"),),
        "`return weights @ V.T, weights` (a matrix product)",
    ),
    Mistake(
        "inverted-mask-with-neginf",
        "sdpa_masking",
        (("np.asarray(mask) != 0, scores, MASK_VALUE", "np.asarray(mask) == 0, scores, -np.inf"),),
        "`weights` is NaN or infinite in row(s) 0.",
    ),
    Mistake(
        "float16",
        "sdpa_reference",
        (("scores = Q @", "Q, K = Q.astype(np.float16), K.astype(np.float16)\n    scores = Q @"),),
        "is your weights @ V, and your weights are close to the expected ones",
    ),
]


@pytest.mark.parametrize("mistake", FACTS, ids=[m.id for m in FACTS])
def test_an_unestablished_mistake_gets_facts_only(mistake: Mistake) -> None:
    result = grade_code(buggy(mistake), only=(mistake.item,))[mistake.item]
    failure = result.failure
    assert failure is not None
    assert failure.mistake == "" and mistake.hint in failure.hint, failure.hint
    blamed = ("K.T", "1/sqrt(d_k) scaling", "query axis", "whole matrix", "before the softmax")
    assert not [text for text in blamed if text in failure.hint], failure.hint


def test_a_nan_report_labels_only_the_reference_as_expected() -> None:
    """Comparing the student's code with itself, neither side is called "Expected"."""
    from autograder.judging import assert_close
    from autograder.report import render_failure
    from autograder.rubric import CheckFailed

    nan = np.array([[np.nan]])
    with pytest.raises(CheckFailed) as raised:
        assert_close(
            nan,
            nan,
            "output",
            snippet=lambda: "out1 = out2 = np.full((1, 1), np.nan)",
            expr="out2",
            against="out1",
        )
    text = render_failure(raised.value.failure, markdown=False)
    assert "Expected" not in text and "`out1`:" in text and "`out2`:" in text, text
    assert "assert np.allclose(out2, out1" in text


def buggy(mistake: Mistake) -> str:
    source = REFERENCE_SOURCE
    for old, new in mistake.edits:
        assert source.count(old) >= 1, f"{mistake.id}: {old!r} is not in the reference"
        source = source.replace(old, new)
    return source


def reproduces(mistake: Mistake, source: str, snippet: str) -> bool:
    """Run the student's code, then the snippet, and see whether the failure shows."""
    ref = load_reference(EXERCISE.reference_file())
    ns: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(source, "<student>", "exec"), ns)
    try:
        with np.errstate(all="ignore"):
            exec(compile(snippet, "<snippet>", "exec"), ns)
    except Exception:
        return True  # the failure shows as an exception (e.g. AssertionError, not ValueError)
    if "output" in ns:
        expected = ref.scaled_dot_product_attention(ns["Q"], ns["K"], ns["V"], ns["mask"])
        got = (ns["output"], ns["weights"])
        return not all(
            g.shape == e.shape and np.allclose(g, e, rtol=1e-3, atol=1e-4)
            for g, e in zip(got, expected, strict=True)
        )
    if "out" in ns:
        student = ns["mha"]
        model = ref.MultiHeadAttention(student.embed_dim, student.num_heads)
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            getattr(model, name).weight = getattr(student, name).weight
            getattr(model, name).bias = getattr(student, name).bias
        expected = model.forward(ns["x"], ns["mask"])
        return ns["out"].shape != expected.shape or not np.allclose(ns["out"], expected)
    if mistake.item == "mha_init":  # no exception, or ValueError caught by the snippet
        if "mha" not in ns:
            return False
        mha = ns["mha"]
        head_dim = mha.embed_dim // mha.num_heads
        return (
            mha.embed_dim % mha.num_heads != 0
            or type(mha.head_dim) is not int
            or (mha.head_dim != head_dim)
        )
    mask = ns["mask"]
    return mask.shape != (len(mask),) * 2 or not np.array_equal(mask, np.tril(np.ones(mask.shape)))


def test_there_are_at_least_ten_distinct_mistakes() -> None:
    assert len({m.id for m in MISTAKES}) >= 10 and len({m.hint for m in MISTAKES}) >= 10


@pytest.mark.parametrize("mistake", MISTAKES, ids=[m.id for m in MISTAKES])
def test_hint_names_the_mistake_and_snippet_reproduces_it(mistake: Mistake) -> None:
    source = buggy(mistake)
    result = grade_code(source, only=(mistake.item,))[mistake.item]
    assert result.failure is not None, f"{mistake.id} was not caught by {mistake.item}"
    assert mistake.hint in result.failure.hint, (result.failure.summary, result.failure.hint)
    assert result.failure.snippet, result.failure
    assert reproduces(mistake, source, result.failure.snippet), result.failure.snippet
    assert not reproduces(mistake, REFERENCE_SOURCE, result.failure.snippet)


def test_feedback_doc_shows_the_current_report() -> None:
    """docs/FEEDBACK.md quotes a real `check` report; regenerate it if this fails."""
    import subprocess
    import sys

    from conftest import ROOT

    done = subprocess.run(
        [sys.executable, "-m", "autograder", "check", "examples/attention.ipynb"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip() in (ROOT / "docs" / "FEEDBACK.md").read_text(encoding="utf-8")


FLAT = (
    (
        "            if mask.ndim == 3:  # (batch, seq, seq): the same mask for every head\n"
        "                mask = mask[:, np.newaxis, :, :]\n",
        "",
    ),
    (
        "attended, _ = scaled_dot_product_attention(Q, K, V, mask)",
        "flat = (batch * self.num_heads, seq, self.head_dim)\n"
        "        attended, _ = scaled_dot_product_attention(\n"
        "            Q.reshape(flat), K.reshape(flat), V.reshape(flat), mask\n"
        "        )\n"
        "        attended = attended.reshape(batch, self.num_heads, seq, self.head_dim)",
    ),
)
LAYOUTS = [  # a (batch, seq, seq) mask without its head axis: the fix fits the student's layout
    (
        "heads-on-their-own-axis",
        (("            if mask.ndim == 3:", "            if False:"),),
        "mask[:, np.newaxis] makes it (2, 1, 4, 4)",
        "np.repeat",
    ),
    ("heads-flattened-into-the-batch", FLAT, "np.repeat(mask, num_heads, axis=0)", "np.newaxis"),
]


@pytest.mark.parametrize(
    ("edits", "fix", "not_this"), [x[1:] for x in LAYOUTS], ids=[x[0] for x in LAYOUTS]
)
def test_a_mask_hint_fits_the_student_s_layout(
    edits: tuple[tuple[str, str], ...], fix: str, not_this: str
) -> None:
    from autograder import sandbox
    from autograder.exercises.attention.cases import mha_case
    from autograder.exercises.attention.rubric import check_mha_forward
    from autograder.rubric import CheckFailed

    case = mha_case(5, 2, 4, 3, 2, layout="batch")  # batch 2 != 3 heads: broadcasting fails
    source = buggy(Mistake("layout", "mha_mask_broadcast", edits, ""))
    with sandbox.started([source]) as (box, _):
        assert box is not None
        with box.session() as session, pytest.raises(CheckFailed) as raised:
            check_mha_forward(session, case)
    assert raised.value.explain is not None
    failure = raised.value.explain(raised.value.failure)
    assert failure.mistake == "mask-without-head-axis", failure
    assert fix in failure.hint and not_this not in failure.hint, failure.hint
    assert "It failed at line" in failure.hint, failure.hint


def test_a_shape_error_hint_names_the_line_and_quotes_it_briefly() -> None:
    """The traceback comes from the sandbox: a forged or huge line is quoted, cut short."""
    from autograder.exercises.attention.cases import SdpaCase
    from autograder.exercises.attention.hints import raised_hint
    from autograder.sandbox import StudentRaised

    line = "scores = Q @ K.T + " + "x" * 5000
    error = StudentRaised(
        "ValueError",
        ["ValueError", "Exception"],
        "operands could not be broadcast together with shapes (2,3,4) (4,3,2)",
        "<cell 3>, line 7",
        f'  File "<cell 3>", line 7, in scaled_dot_product_attention\n    {line}\n',
    )
    Q = np.ones((2, 3, 4))
    hint = raised_hint(error, SdpaCase(0, Q, Q, Q, None))  # no session: nothing confirmed
    assert hint.mistake == "" and "line 7 of cell 3" in hint.text, hint
    assert "Shapes involved: (2, 3, 4), (4, 3, 2)" in hint.text
    assert "swapaxes" not in hint.text and len(hint.text) < 500, hint.text
