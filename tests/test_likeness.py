"""Shared wrong answers: who forms a group, on what evidence, and the code similarity beside it."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest
from conftest import REFERENCE_SOURCE
from test_batch import notebook

from autograder.batch import discover, grade_all
from autograder.evidence import ANSWERS_FILE, Answer, ItemEvidence, read_answers, write_answers
from autograder.likeness import Group, Pair, shared_answers, shared_wrong_answers, similarity
from autograder.settings import LIKENESS, Likeness

SETTINGS = Likeness(min_inputs=3)


def answers(item: str, replies: Mapping[str, str]) -> ItemEvidence:
    return ItemEvidence(item, tuple(Answer(q, r) for q, r in replies.items()))


SAME = {"q1": "x1", "q2": "x2", "q3": "x3"}


@pytest.mark.parametrize(
    ("evidence", "expected"),
    [
        (
            {"ann": [answers("a", SAME)], "ben": [answers("a", SAME)]},
            [Group(("ann", "ben"), ("a",), 3, (Pair(("ann", "ben"), ("a",), 3),))],
        ),
        (
            {"ann": [answers("a", SAME)], "ben": [answers("a", {"q1": "x1", "q2": "x2"})]},
            [],
        ),
        (
            {
                "ann": [answers("a", SAME)],
                "ben": [answers("a", {"q1": "y1", "q2": "y2", "q3": "y3"})],
            },
            [],
        ),
        (
            {"ann": [answers("a", SAME)], "ben": [answers("b", SAME)]},
            [],
        ),
        (
            {
                "ann": [answers("a", {"q1": "x1", "q2": "x2"}), answers("b", {"q9": "z"})],
                "ben": [answers("a", {"q1": "x1", "q2": "x2"}), answers("b", {"q9": "z"})],
            },
            [Group(("ann", "ben"), ("a", "b"), 3, (Pair(("ann", "ben"), ("a", "b"), 3),))],
        ),
        (
            {
                "ann": [answers("a", SAME)],
                "ben": [answers("a", {**SAME, "q4": "x4", "q5": "x5", "q6": "x6"})],
                "cy": [answers("a", {"q1": "other", "q4": "x4", "q5": "x5", "q6": "x6"})],
                "dee": [answers("a", {"q1": "x1", "q4": "d4"})],
                "eve": [],
            },
            [
                Group(
                    ("ann", "ben", "cy"),
                    ("a",),
                    6,
                    (Pair(("ann", "ben"), ("a",), 3), Pair(("ben", "cy"), ("a",), 3)),
                )
            ],
        ),
    ],
    ids=[
        "pair-agrees-on-enough-inputs",
        "too-few-inputs",
        "same-inputs-different-answers",
        "same-digests-on-other-items",
        "inputs-of-several-items-add-up",
        "pairs-link-into-one-group",
    ],
)
def test_groups_are_students_agreeing_on_enough_unexplained_answers(
    evidence: Mapping[str, Sequence[ItemEvidence]], expected: list[Group]
) -> None:
    assert shared_answers(evidence, settings=SETTINGS) == expected


# --- a generated class, graded for real -----------------------------------------------------

HALF = REFERENCE_SOURCE.replace(  # an uncatalogued bug: the output scaled by 0.5
    "return weights @ V, weights", "return 0.5 * (weights @ V), weights"
)
RENAMES = {  # a copy with every name of its own changed (NumPy's left alone)
    "scores": "logits",
    "weights": "attn",
    "exp": "numer",
    "d_k": "depth",
    "Linear": "Dense",
    "MASK_VALUE": "NEG_BIG",
    "batch": "b",
    "seq": "n",
    "attended": "ctx",
    "concat": "merged",
    "bound": "limit",
    "rng": "gen",
    "_split_heads": "_heads",
}


def renamed(text: str) -> str:
    for old, new in RENAMES.items():
        text = re.sub(rf"(?<!np\.)\b{old}\b", new, text)
    return text


COPY = renamed(HALF)
SQUARED = REFERENCE_SOURCE.replace(  # another uncatalogued bug: the weights squared
    "    return weights @ V, weights", "    weights = weights**2\n    return weights @ V, weights"
)
NO_SCALING = REFERENCE_SOURCE.replace(" / np.sqrt(d_k)", "")  # catalogued: "no-scaling"

INDEPENDENT = """import numpy as np

NEG = -1e9


def _softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def scaled_dot_product_attention(Q, K, V, mask=None):
    scale = np.sqrt(Q.shape[-1])
    logits = np.matmul(Q, np.swapaxes(K, -1, -2)) / scale
    if mask is not None:
        logits = np.where(np.asarray(mask) == 0, NEG, logits)
    probs = _softmax(logits)
    out = np.matmul(probs, V) * 0.5
    return out, probs


def create_causal_mask(seq_len):
    m = np.zeros((seq_len, seq_len))
    for i in range(seq_len):
        m[i, : i + 1] = 1.0
    return m


class Linear:
    def __init__(self, n_in, n_out):
        lim = 1 / np.sqrt(n_in)
        self.weight = np.random.default_rng(0).uniform(-lim, lim, (n_in, n_out))
        self.bias = np.zeros(n_out)

    def forward(self, x):
        return x @ self.weight + self.bias

    __call__ = forward


class MultiHeadAttention:
    def __init__(self, embed_dim, num_heads):
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.head_dim = embed_dim // num_heads
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (
            Linear(embed_dim, embed_dim) for _ in range(4)
        )

    def heads(self, t):
        b, n, _ = t.shape
        return np.transpose(t.reshape(b, n, self.num_heads, self.head_dim), (0, 2, 1, 3))

    def forward(self, x, mask=None):
        b, n, _ = x.shape
        q, k, v = (self.heads(p(x)) for p in (self.q_proj, self.k_proj, self.v_proj))
        if mask is not None:
            mask = np.asarray(mask)
            if mask.ndim == 3:
                mask = np.expand_dims(mask, 1)
        ctx, _ = scaled_dot_product_attention(q, k, v, mask)
        merged = np.transpose(ctx, (0, 2, 1, 3)).reshape(b, n, self.embed_dim)
        return self.out_proj(merged)

    __call__ = forward
"""

CLASS = {
    "ann": HALF,
    "ben": COPY,
    "cy": SQUARED,
    "dan": NO_SCALING,
    "eve": NO_SCALING,
    "fay": NO_SCALING,
    "gus": REFERENCE_SOURCE,
    "hal": REFERENCE_SOURCE,
    "ida": INDEPENDENT,  # the same bug as ann's, written independently
}


@pytest.fixture(scope="module")
def graded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    root = tmp_path_factory.mktemp("likeness")
    for student, source in CLASS.items():
        notebook(root / "course" / student / "attention.ipynb", source)
    entries = discover(root / "course", assignment="attention")
    grade_all(entries, out=root / "out", exercise="attention", jobs=2)
    return root / "out", {entry.student: entry.path for entry in entries}


def scores(out: Path, student: str) -> dict[str, float]:
    document = json.loads((out / student / "results.json").read_text(encoding="utf-8"))
    return {t["extra_data"]["id"]: t["score"] for t in document["tests"] if "extra_data" in t}


@pytest.mark.slow
def test_a_pair_sharing_an_uncatalogued_wrong_answer_is_the_only_group(
    graded: tuple[Path, dict[str, Path]],
) -> None:
    out, submissions = graded
    students = [s for s in CLASS if s != "ida"]
    groups = shared_wrong_answers(out, students, submissions, notebook="attention.ipynb")

    assert [g["students"] for g in groups] == [["ann", "ben"]]
    (group,) = groups
    failed = [item for item, score in scores(out, "ann").items() if score == 0]
    assert group["items"] == failed and "sdpa_reference" in failed
    evidence = read_answers(out / "ann" / ANSWERS_FILE)
    assert evidence == read_answers(out / "ben" / ANSWERS_FILE)  # the same bits, input by input
    questions = {(entry.item, a.question) for entry in evidence for a in entry.answers}
    assert group["inputs"] == len(questions) >= LIKENESS.min_inputs
    assert isinstance(group["similarity"], float) and group["similarity"] >= 0.9

    # the catalogued mistake explains the three alike; the correct two give no evidence
    for student in ("dan", "eve", "fay", "gus", "hal"):
        assert read_answers(out / student / ANSWERS_FILE) == ()
    assert read_answers(out / "cy" / ANSWERS_FILE) != ()  # its own bug: evidence, no partner
    assert scores(out, "dan") == scores(out, "eve") == scores(out, "fay")
    assert scores(out, "dan")["sdpa_reference"] == 0 < scores(out, "gus")["sdpa_reference"]


@pytest.mark.slow
def test_the_same_bug_written_independently_still_groups_with_a_low_similarity(
    graded: tuple[Path, dict[str, Path]],
) -> None:
    out, submissions = graded
    (group,) = shared_wrong_answers(out, list(CLASS), submissions, notebook="attention.ipynb")
    assert group["students"] == ["ann", "ben", "ida"]
    pairs = group["pairs"]
    assert isinstance(pairs, list)
    by_students = {tuple(p["students"]): p for p in pairs}
    copied, independent = by_students[("ann", "ben")], by_students[("ann", "ida")]
    assert "sdpa_reference" in independent["items"]
    assert independent["inputs"] >= LIKENESS.min_inputs
    assert copied["similarity"] >= 0.9 > 0.5 > independent["similarity"]


def test_similarity_sees_through_renamed_variables_and_leaves_the_template_out() -> None:
    assert similarity(HALF, COPY) >= 0.9
    assert similarity(HALF, INDEPENDENT) < 0.5
    assert similarity(HALF, REFERENCE_SOURCE, template=REFERENCE_SOURCE) < 0.5


def _batch_output(root: Path) -> tuple[Path, dict[str, Path]]:
    """A batch output where ann and ben agree on five answers, and cy agrees with no one."""
    replies = {f"q{n}": f"x{n}" for n in range(LIKENESS.min_inputs)}
    evidence = {"ann": replies, "ben": replies, "cy": {"q0": "other"}}
    submissions = {}
    for student, answered in evidence.items():
        write_answers(root / "out" / student / ANSWERS_FILE, [answers("sdpa", answered)])
        submissions[student] = root / f"{student}.py"
        submissions[student].write_text(HALF if student != "cy" else SQUARED, encoding="utf-8")
    return root / "out", submissions


def test_the_report_gets_json_ready_groups_from_a_batch_output(tmp_path: Path) -> None:
    out, submissions = _batch_output(tmp_path)
    groups = shared_wrong_answers(out, ["ann", "ben", "cy", "dan"], submissions)
    assert json.loads(json.dumps(groups)) == groups
    assert groups == [
        {
            "students": ["ann", "ben"],
            "items": ["sdpa"],
            "inputs": LIKENESS.min_inputs,
            "similarity": 1.0,
            "pairs": [
                {
                    "students": ["ann", "ben"],
                    "items": ["sdpa"],
                    "inputs": LIKENESS.min_inputs,
                    "similarity": 1.0,
                }
            ],
        }
    ]


@pytest.mark.parametrize(
    "hide",
    ["copydetect-not-installed", "submission-unreadable"],
)
def test_similarity_is_none_when_it_cannot_be_computed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hide: str
) -> None:
    out, submissions = _batch_output(tmp_path)
    if hide == "copydetect-not-installed":
        monkeypatch.setitem(sys.modules, "copydetect", None)  # import raises ImportError
    else:
        submissions["ben"].write_bytes(b"")
    (group,) = shared_wrong_answers(out, ["ann", "ben", "cy"], submissions)
    assert group["students"] == ["ann", "ben"] and group["similarity"] is None


@pytest.mark.slow
def test_the_batch_command_reports_the_pair_in_report_json(tmp_path: Path) -> None:
    """Through the command line: the class report's `shared_wrong_answers` holds the copied
    pair, and neither the correct students nor those sharing a catalogued mistake."""
    import subprocess

    course = tmp_path / "course"
    for student, code in {
        "ann": HALF,
        "ben": COPY,
        "dan": NO_SCALING,
        "eve": NO_SCALING,
        "gil": REFERENCE_SOURCE,
        "hal": REFERENCE_SOURCE,
    }.items():
        notebook(course / "submitted" / student / "attention" / "attention.ipynb", code)
    out = tmp_path / "out"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "autograder",
            "batch",
            str(course),
            "--out",
            str(out),
            "--jobs",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    groups = report["shared_wrong_answers"]
    assert [group["students"] for group in groups] == [["ann", "ben"]]
    assert groups[0]["inputs"] >= LIKENESS.min_inputs and groups[0]["similarity"] >= 0.9
