"""Hints for the attention exercise: a mistake is named only when it is established.

A known mistake (a wrong variant from `oracle.py`) is named only when it reproduces
the student's answer on the failing input and also on a discriminating input
(`cases.sdpa_probe`, `mha_probe`) on which the student's code is called once
more: on a small input several mistakes give the same numbers, on the probe they do not.
Otherwise the hint states only facts: which quantity is wrong, where, and by how much. A
shape error is described from the student's own traceback: the line and the operation that
failed, and the shapes involved.

Nothing here computes attention (the student kit ships this module): the reference and the
variants are the oracle's answers, asked by name; every question asked here is listed in the
oracle's `questions(case)`, so a kit holds its answer.
"""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np

from autograder.exercises.attention.cases import (
    MhaCase,
    SdpaCase,
    mha_probe,
    mha_stages,
    sdpa_probe,
    sdpa_unbatched,
)
from autograder.judging import Diagnosis, ask
from autograder.sandbox import Handle, Session, StudentRaised
from autograder.settings import TOLERANCE, Tolerance

__all__ = [
    "MHA_MISTAKES",
    "SDPA_MISTAKES",
    "Hint",
    "diagnose_mha",
    "diagnose_sdpa",
    "mha_raised_hint",
    "named",
    "raised_hint",
]

SDPA = "scaled_dot_product_attention"
MHA = "MultiHeadAttention"


Hint = Diagnosis
"""What to tell the student: a named mistake (`mistake` is its id), or facts only."""


def named(mistake: str, text: str) -> Hint:
    return Hint(text, mistake)


SDPA_MISTAKES: dict[str, str] = {
    "no-scaling": "Your result matches attention without the 1/sqrt(d_k) scaling: divide the "
    "scores by np.sqrt(d_k), where d_k = Q.shape[-1].",
    "divide-by-d_k": "Your result matches scores divided by d_k instead of sqrt(d_k).",
    "softmax-over-queries": "Your weights equal a softmax over the query axis: softmax must run "
    "over the keys, the last axis (axis=-1).",
    "softmax-over-whole-matrix": "Your weights equal a softmax over the whole matrix: normalise "
    "each row (axis=-1, keepdims=True) instead.",
    "sum-over-whole-matrix": "Your weights are divided by the sum over the whole matrix: divide "
    "each row by its own sum, exp.sum(axis=-1, keepdims=True).",
    "unnormalised-weights": "Your weights are exp(scores) without the division by the row sum: "
    "divide by exp.sum(axis=-1, keepdims=True).",
    "no-max-subtraction": "Your result matches a softmax without subtracting each row's maximum: "
    "np.exp overflows for scores above about 709. Subtract scores.max(axis=-1, keepdims=True) "
    "before np.exp (softmax does not change when you shift a row).",
    "weights-returned-first": "You return (weights, output): return (output, weights), in that "
    "order.",
    "output-from-K": "Your output is weights @ K: the output is weights @ V.",
    "mask-ignored": "Your result matches attention with the mask ignored: set the scores where "
    "mask == 0 to MASK_VALUE before the softmax.",
    "mask-inverted": "Your result matches an inverted mask: 1/True means *may attend*, 0/False "
    "means masked.",
    "mask-after-softmax": "Your result matches masking applied after the softmax without "
    "renormalising: mask the scores, then take the softmax.",
    "mask-multiplies-scores": "Your result matches scores multiplied by the mask: a masked score "
    "becomes 0, which still gets weight. Set masked scores to MASK_VALUE (np.where(mask, scores, "
    "MASK_VALUE)).",
    "mask-value-positive": "Your result matches masked scores set to +1e9: masked keys then get "
    "all the weight. Use MASK_VALUE = -1e9 (a large negative number).",
    "weights-before-masking": "Your output is right but the weights you return are from before "
    "the mask was applied: return the weights the output was computed with.",
}
"""The oracle's ids of known wrong sdpa variants, and what to tell the student."""

_LAYOUTS = (
    "In a (batch, heads, seq, seq) layout that is mask[:, np.newaxis]; with the heads "
    "flattened into (batch*heads, seq, seq), np.repeat(mask, num_heads, axis=0)."
)

MHA_MISTAKES: dict[str, str] = {
    "mask-ignored": "Your output matches multi-head attention with the mask ignored: pass mask "
    "to scaled_dot_product_attention for every head.",
    "mask-applied-per-head": "Your (batch, seq, seq) mask was applied by head, not by batch "
    "element: head h got mask[h]. Every head of batch element b needs mask[b]. " + _LAYOUTS,
    "mask-tiled-flat": "With the heads flattened into (batch*heads, seq, seq), row "
    "b*num_heads + h belongs to batch element b, but your mask rows follow np.tile's order: "
    "use np.repeat(mask, num_heads, axis=0), not np.tile.",
    "mask-first-head-only": "Only the first head is masked: the other heads see every position. "
    "Pass the mask to the attention of every head.",
    "projection-bias-missing": "Projections stage: your q/k/v projections leave out the bias. "
    "A Linear layer computes x @ weight + bias: call self.q_proj(x) (and k_proj, v_proj).",
    "projections-transposed": "Projections stage: your projections use weight.T. A Linear layer "
    "here computes x @ weight + bias (weight has shape (in, out)): call self.q_proj(x).",
    "queries-from-v-proj": "Projections stage: your queries come from v_proj: Q = q_proj(x).",
    "keys-from-q-proj": "Projections stage: your keys come from q_proj: K = k_proj(x).",
    "values-from-k-proj": "Projections stage: your values come from k_proj: V = v_proj(x).",
    "keys-values-swapped": "Projections stage: keys and values are swapped: K = k_proj(x), "
    "V = v_proj(x).",
    "heads-split-by-reshape": "Head split: a plain reshape to (batch, heads, seq, head_dim) mixes "
    "positions into the heads: reshape to (batch, seq, heads, head_dim) first, then "
    "transpose(0, 2, 1, 3).",
    "heads-split-and-merged-by-reshape": "Head split and merge: a plain reshape between (batch, "
    "seq, embed_dim) and (batch, heads, seq, head_dim) mixes positions into the heads: split "
    "with reshape(batch, seq, heads, head_dim).transpose(0, 2, 1, 3), and merge with the "
    "inverse transpose before the reshape.",
    "split-without-transpose": "Head split: your heads stay on axis 2, (batch, seq, heads, "
    "head_dim), so attention runs across the heads instead of the positions: transpose(0, 2, "
    "1, 3) after the reshape (and back before merging).",
    "scaled-by-embed-dim": "Attention inside the heads: the scores are scaled by "
    "1/sqrt(embed_dim); each head's attention scales by 1/sqrt(head_dim) (what "
    "scaled_dot_product_attention does with the per-head Q).",
    "concat-without-transpose": "Merge: heads were concatenated without transposing back: "
    "transpose(0, 2, 1, 3) before reshaping to (batch, seq, embed_dim).",
    "merge-interleaves-heads": "Merge: your merge interleaves the heads' features (transpose(0, "
    "2, 3, 1)); each position must hold head 0's features, then head 1's, ...: "
    "transpose(0, 2, 1, 3), then reshape to (batch, seq, embed_dim).",
    "missing-out-proj": "Output projection: your output is missing the final output projection: "
    "apply self.out_proj to the merged heads.",
    "out-proj-bias-missing": "Output projection: the bias of out_proj is missing: "
    "self.out_proj(concat) computes concat @ weight + bias.",
    "out-proj-per-head": "Output projection: applied per head, so its bias is added num_heads "
    "times: merge the heads first, then apply out_proj once.",
    "residual-added": "Your output is the expected output plus x: multi-head attention adds no "
    "residual connection here: return the output projection alone.",
}
"""The oracle's ids of known wrong multi-head variants ("sdpa:ID" for one inside attention)."""


def _same(got: object, expected: np.ndarray, tol: Tolerance = TOLERANCE) -> bool:
    """Equal shapes and values (NaN and infinity where the other has them too)."""
    if not isinstance(got, np.ndarray) or got.shape != expected.shape:
        return False
    with np.errstate(all="ignore"):
        return bool(
            np.allclose(
                got.astype(np.float64), expected, rtol=tol.rtol, atol=tol.atol, equal_nan=True
            )
        )


def _single(ids: list[str]) -> str:
    """The one mistake `ids` name ("" when none, or when several differ)."""
    unique = list(dict.fromkeys(ids))
    if set(unique) == {"mask-applied-per-head", "mask-tiled-flat"}:
        unique = ["mask-applied-per-head"]  # batch == heads: one mistake, its fix fits both
    return unique[0] if len(unique) == 1 else ""


# --- scaled dot-product attention ----------------------------------------------------------


def _sdpa_answer(session: Session, case: SdpaCase) -> tuple[np.ndarray, np.ndarray] | None:
    """The student's (output, weights) for `case`, or None if the call raised or returned
    something else (nothing is then confirmed)."""
    try:
        value = session.call(SDPA, case.Q, case.K, case.V, mask=case.mask)
    except StudentRaised:
        return None
    if not (isinstance(value, (tuple, list)) and len(value) == 2):
        return None
    output, weights = value
    if not (isinstance(output, np.ndarray) and isinstance(weights, np.ndarray)):
        return None
    return output, weights


def _sdpa_matches(
    variants: list[tuple[str, np.ndarray, np.ndarray]],
    output: np.ndarray,
    weights: np.ndarray,
    tol: Tolerance,
) -> list[str]:
    return [
        mistake
        for mistake, out, w in variants
        if _same(output, out, tol) and _same(weights, w, tol)
    ]


def diagnose_sdpa(
    session: Session,
    case: SdpaCase,
    output: np.ndarray,
    weights: np.ndarray,
    *,
    tol: Tolerance = TOLERANCE,
    rule: str = "",
) -> Hint:
    """The known mistake that reproduces (output, weights) on `case` and on its probe, or the
    facts (followed by `rule`, what the result must satisfy)."""
    here = _sdpa_matches(ask("sdpa_variants", case), output, weights, tol)
    if here:
        probe = sdpa_probe(case)
        answer = _sdpa_answer(session, probe)
        if answer is not None:
            there = set(_sdpa_matches(ask("sdpa_variants", probe), *answer, tol))
            mistake = _single([m for m in here if m in there])
            if mistake:
                return named(mistake, SDPA_MISTAKES[mistake])
    facts = _sdpa_facts(case, output, weights, tol)
    return Hint(" ".join(part for part in (facts, rule) if part))


def _index(where: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, where)) + ")"


def _rows(bad: np.ndarray) -> str:
    rows = [tuple(int(i) for i in r) for r in np.argwhere(bad)]
    shown = ", ".join(str(r[0]) if len(r) == 1 else _index(r) for r in rows[:4])
    return shown + (f" and {len(rows) - 4} more" if len(rows) > 4 else "")


def _score_factor(weights: np.ndarray, ref_w: np.ndarray) -> float | None:
    """c when the weights are a softmax of c times the expected scores (c != 1), else None."""
    with np.errstate(all="ignore"):
        if not np.allclose(weights.sum(axis=-1), 1.0, atol=1e-6):
            return None
        seen = ref_w > 1e-12
        if not np.array_equal(seen, weights > 1e-12):
            return None
        mine, theirs = np.log(np.where(seen, weights, 1.0)), np.log(np.where(seen, ref_w, 1.0))
        count = seen.sum(axis=-1, keepdims=True)
        mine = np.where(seen, mine - mine.sum(axis=-1, keepdims=True) / count, 0.0)
        theirs = np.where(seen, theirs - theirs.sum(axis=-1, keepdims=True) / count, 0.0)
        norm = float((theirs * theirs).sum())
        if norm < 1e-8:
            return None
        factor = float((mine * theirs).sum()) / norm
        fits = np.allclose(mine, factor * theirs, rtol=1e-4, atol=1e-6)
    return factor if fits and abs(factor - 1.0) > 1e-2 else None


def _sdpa_facts(case: SdpaCase, output: np.ndarray, weights: np.ndarray, tol: Tolerance) -> str:
    """What is known about a wrong sdpa answer: which quantity is wrong, where, by how much."""
    ref_out, ref_w = ask("sdpa", case)
    facts: list[str] = []
    with np.errstate(all="ignore"):
        finite = np.isfinite(weights)
        if not finite.all():
            bad = ~finite.all(axis=-1)
            facts.append(f"`weights` is NaN or infinite in row(s) {_rows(bad)}.")
            scores = np.abs(case.Q @ np.swapaxes(case.K, -1, -2)) / np.sqrt(case.Q.shape[-1])
            top = float(scores.max())
            if top > 709:
                facts.append(
                    f"The scores here reach {top:.3g}; np.exp overflows to infinity above "
                    "about 709."
                )
            if case.mask is not None:
                allowed = np.broadcast_to(np.asarray(case.mask) != 0, weights.shape)
                if np.any(bad & ~allowed.any(axis=-1)):
                    facts.append("Those rows have no key allowed by the mask.")
            return " ".join(facts)
        if _same(weights, ref_w, tol):
            if _same(output, ref_out, tol) or output.shape != ref_out.shape:
                return ""
            if not np.all(np.isfinite(output)):
                bad = ~np.isfinite(output).all(axis=-1)
                return (
                    f"The weights are right, but the output is NaN or infinite in row(s) "
                    f"{_rows(bad)}: the output is weights @ V."
                )
            diff = np.abs(output - ref_out)
            where = tuple(int(i) for i in np.unravel_index(np.argmax(diff), diff.shape))
            off = f"off by up to {diff.max():.3g}, at index {_index(where)}"
            mine = weights @ case.V.astype(np.float64) if weights.ndim >= 2 else None
            exact = Tolerance(rtol=1e-6, atol=1e-9)
            if mine is not None and _same(output, np.broadcast_to(mine, output.shape), exact):
                return (
                    f"Your output ({off}) is your weights @ V, and your weights are close to "
                    f"the expected ones (off by up to {np.abs(weights - ref_w).max():.3g}): "
                    "the product with V makes their error larger than the tolerance."
                )
            return f"The weights are right; the output is not ({off}): the output is weights @ V."
        sums = weights.sum(axis=-1)
        if not np.allclose(sums, 1.0, atol=1e-3):
            facts.append(
                f"Rows of `weights` sum to between {sums.min():.4g} and {sums.max():.4g}, not 1."
            )
        if case.mask is not None:
            masked = ~np.broadcast_to(np.asarray(case.mask) != 0, weights.shape)
            if masked.any() and weights[masked].max() > 1e-6:
                facts.append(f"Masked keys get weight up to {weights[masked].max():.3g}.")
        factor = _score_factor(weights, ref_w)
        if factor is not None:
            facts.append(
                f"Your weights are a softmax of the expected scores times {factor:.4g} (the "
                "expected scores are Q @ K^T / sqrt(d_k), masked)."
            )
        diff = np.abs(weights - ref_w)
        where = tuple(int(i) for i in np.unravel_index(np.argmax(diff), diff.shape))
        facts.append(
            f"The weights differ from the expected ones by up to {diff.max():.3g} (at index "
            f"{_index(where)})."
        )
        if (
            output.shape == ref_out.shape
            and weights.shape[-1] == case.V.shape[-2]
            and _same(output, weights @ case.V.astype(np.float64), tol)
        ):
            facts.append(
                "Your output is your weights @ V, so the mistake is in the weights: the "
                "scores, the mask or the softmax."
            )
    return " ".join(facts)


# --- errors the student's code raised ------------------------------------------------------

_FRAME = re.compile(r'File "<cell (\d+)>", line (\d+), in (\S+)\n(?: {4}(.*)\n)?')
_SOURCE_CHARS = 160
"""Longest line of the student's code quoted in a hint (the text comes from the sandbox)."""
_SHAPE = re.compile(r"\((\d+(?:,\s*\d+)*),?\)")


def _frames(error: StudentRaised) -> list[tuple[str, str]]:
    """(where, source line) of the student's frames, innermost last."""
    found = []
    for cell, line, function, source in _FRAME.findall(error.traceback):
        source = source.strip()
        if len(source) > _SOURCE_CHARS:
            source = source[: _SOURCE_CHARS - 3] + "..."
        found.append((f"line {line} of cell {cell} (in {function[:80]})", source))
    return found


def _failing_line(error: StudentRaised) -> tuple[str, str] | None:
    """(where, source line) of the innermost frame of the student's code, if known."""
    frames = _frames(error)
    return frames[-1] if frames else None


def _shapes(message: str) -> list[tuple[int, ...]]:
    return [
        tuple(int(n) for n in found.split(",") if n.strip()) for found in _SHAPE.findall(message)
    ]


def _operation(source: str, message: str) -> str:
    text = message.lower()
    if "matmul" in text or "aligned" in text or "core dimension" in text:
        return "a matrix product"
    if "broadcast" in text:
        if "np.where" in source or "where(" in source:
            return "np.where, which broadcasts its arguments"
        return "an operation that broadcasts its operands"
    if "reshape" in text:
        return "a reshape"
    if "axes don't match" in text or "transpose" in text:
        return "a transpose"
    return ""


def _error_facts(error: StudentRaised) -> str:
    place = _failing_line(error)
    if place is None:
        return ""
    where, source = place
    operation = _operation(source, error.message)
    text = f"It failed at {where}"
    text += f": `{source}`" if source else ""
    text += f" ({operation})" if operation else ""
    frames = _frames(error)
    if len(frames) > 1:
        caller, called_as = frames[-2]
        text += f", called from {caller}" + (f": `{called_as}`" if called_as else "")
    text += "."
    shapes = _shapes(error.message)
    if shapes:
        text += " Shapes involved: " + ", ".join(str(s) for s in shapes) + "."
    return text


def raised_hint(error: StudentRaised, case: SdpaCase, session: Session | None = None) -> Hint:
    """Facts about an error in the student's sdpa: the line, the operation and the shapes.

    `.T` is blamed only when the failing line uses it, the input has batch dimensions, and the
    same call on the first batch element alone (no batch dimensions) gives the right answer.
    """
    facts = _error_facts(error)
    inputs = f"The inputs: Q {case.Q.shape}, K {case.K.shape}, V {case.V.shape}"
    inputs += "." if case.mask is None else f", mask {np.shape(case.mask)}."
    facts = f"{facts} {inputs}".strip()
    place = _failing_line(error)
    if session is not None and place is not None and ".T" in place[1] and case.K.ndim > 2:
        single = sdpa_unbatched(case)
        answer = _sdpa_answer(session, single)
        ref_out, ref_w = ask("sdpa", single)
        if answer is not None and _same(answer[0], ref_out) and _same(answer[1], ref_w):
            return named(
                "k-dot-t",
                f"{facts} The same call without batch dimensions works. `.T` reverses every "
                "axis, so it breaks inputs with batch dimensions: transpose only the last two "
                "axes, np.swapaxes(K, -1, -2).",
            )
    return Hint(facts)


def mha_raised_hint(error: StudentRaised, case: MhaCase, session: Session | None = None) -> Hint:
    """Facts about an error in the student's forward, and a mask fix fitting the student's
    layout when the failing shapes show it, or when the student's forward, given the same
    (batch, seq, seq) mask with a head axis, answers right on this input and on its probe."""
    facts = _error_facts(error)
    mask = case.mask
    shapes = _shapes(error.message)
    b, h, s = case.batch, case.num_heads, case.seq
    if mask is not None and mask.ndim == 3 and tuple(mask.shape) in shapes:
        if (b, h, s, s) in shapes:
            return named(
                "mask-without-head-axis",
                f"{facts} Your scores are (batch, heads, seq, seq) = {(b, h, s, s)} and the "
                f"mask {tuple(mask.shape)} has no head axis: mask[:, np.newaxis] makes it "
                f"{(b, 1, s, s)}, the same mask for every head.".strip(),
            )
        if (b * h, s, s) in shapes and b * h != b:
            return named(
                "mask-without-head-axis",
                f"{facts} Your heads are flattened into (batch*heads, seq, seq) = "
                f"{(b * h, s, s)}, and the mask {tuple(mask.shape)} has one row per batch "
                "element: np.repeat(mask, num_heads, axis=0) gives each head of batch element "
                "b the mask mask[b].".strip(),
            )
    if mask is not None and mask.ndim == 3 and session is not None:
        cases = (case, mha_probe(case))
        if all(
            _same(_mha_answer(session, replace(c, mask=c.mask[:, np.newaxis])), ask("mha", c))
            for c in cases
            if c.mask is not None and c.mask.ndim == 3
        ):
            return Hint(  # a fact: also true when the axis is added in the wrong place
                f"{facts} Given the same mask with a head axis, mask[:, np.newaxis] of shape "
                f"{(b, 1, s, s)}, your forward gives the right answer: a (batch, seq, seq) mask "
                "is the same for every head and needs that axis before it meets the scores of "
                "shape (batch, heads, seq, seq).".strip(),
            )
    return Hint(facts)


# --- multi-head attention ------------------------------------------------------------------


def _mha_answer(session: Session, case: MhaCase) -> np.ndarray | None:
    try:
        handle = session.call(MHA, case.embed_dim, case.num_heads, keep=True, assign=case.weights)
        assert isinstance(handle, Handle)
        got = session.call(handle, case.x, attr="forward", mask=case.mask)
    except StudentRaised:
        return None
    return got if isinstance(got, np.ndarray) else None


def _mha_mistake(mistake: str) -> str:
    if mistake.startswith("sdpa:"):
        where = "scaled_dot_product_attention"
        if mistake.startswith("sdpa:mask") or mistake == "sdpa:weights-before-masking":
            where += ", or the mask forward gives it"
        return (
            "The projections, head split and merge are right, but the attention inside the "
            f"heads has a mistake (see {where}). {SDPA_MISTAKES[mistake[5:]]}"
        )
    return MHA_MISTAKES[mistake]


def diagnose_mha(session: Session, case: MhaCase, got: np.ndarray, *, rule: str = "") -> Hint:
    """The known multi-head mistake (its stage and what it does) that reproduces `got` on
    `case` and on its probe, or the facts."""
    here = [m for m, out in ask("mha_variants", case) if _same(got, out)]
    if here:
        probe = mha_probe(case)
        answer = _mha_answer(session, probe)
        if answer is not None:
            there = {m for m, out in ask("mha_variants", probe) if _same(answer, out)}
            mistake = _single([m for m in here if m in there])
            if mistake:
                return named(mistake, _mha_mistake(mistake))
    expected = ask("mha", case)
    facts = ""
    with np.errstate(all="ignore"):
        if got.shape == expected.shape:
            if not np.all(np.isfinite(got)):
                bad = ~np.isfinite(got).all(axis=-1)
                facts = f"The output has NaN or infinity at (batch, position) {_rows(bad)}."
            else:
                diff = np.abs(got - expected)
                where = tuple(int(i) for i in np.unravel_index(np.argmax(diff), diff.shape))
                wrong = np.argwhere(
                    ~np.isclose(got, expected, rtol=TOLERANCE.rtol, atol=TOLERANCE.atol).any(
                        axis=(0, 2)
                    )
                ).ravel()
                facts = (
                    f"The output differs from the expected one by up to {diff.max():.3g} (at "
                    f"batch {where[0]}, position {where[1]}, feature {where[2]}); wrong "
                    f"positions: {', '.join(map(str, wrong.tolist()))} (seq = {case.seq})."
                )
    stage = _first_wrong_stage(session, case)
    return Hint(" ".join(part for part in (facts, stage, rule) if part))


def _first_wrong_stage(session: Session, case: MhaCase) -> str:
    """Facts from projection weights of the grader's choosing: the first stage that is wrong."""
    right: list[str] = []
    for text, stage in mha_stages(case):
        answer = _mha_answer(session, stage)
        if answer is None:
            return ""
        if not _same(answer, ask("mha", stage)):
            size = (
                f"Run again by the grader (batch {stage.batch}, seq {stage.seq}, "
                f"{stage.num_heads} heads of size {stage.head_dim}), your output is"
            )
            if not right:
                return f"{size} wrong even {text}."
            return f"{size} right {right[-1]}, but wrong {text}."
        right.append(text)
    return ""
