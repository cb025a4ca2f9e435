"""The KV-cache rubric's mutation suite, through the real sandbox: every correct implementation
gets 100; every catalogued mistake loses exactly the items it targets plus the ones listed in
`ALSO_LOST` (mistakes that break what other items stand on), with its hint on every target;
submissions that do nothing score exactly what they deserve (0); the failing snippets
reproduce the failure after the mutant and pass after the reference; the CLI grades and
checks the sample submission."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import nbformat
import numpy as np
import pytest

from autograder import sandbox
from autograder.catalog import rubric_of
from autograder.checks import run_checks
from autograder.exercises.kv_cache.rubric import HINTS
from autograder.scoring import ItemResult, score

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "implementations" / "kv_cache"
CORRECT = sorted(FIXTURES.glob("correct_*.py"))
REFERENCE = ROOT / "solutions" / "kv_cache.py"
RUBRIC = rubric_of("kv_cache")


def grade_kv(cells: str | Sequence[str]) -> dict[str, ItemResult]:
    """Grade `cells` on the kv_cache rubric through the real sandbox and checks."""
    sources = [cells] if isinstance(cells, str) else list(cells)
    with sandbox.started(sources) as (box, run):
        outcomes = run_checks(RUBRIC, box, run, deadline=time.monotonic() + 600)
    return {item.id: item for item in score(RUBRIC, outcomes)}


def _table() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_kv_mistakes", FIXTURES / "mistakes.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["_kv_mistakes"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


MISTAKES: tuple[Any, ...] = _table().MISTAKES


def mutant(mistake: Any) -> str:
    path = REFERENCE if mistake.base == "reference" else FIXTURES / f"{mistake.base}.py"
    text = path.read_text(encoding="utf-8")
    for old, new in mistake.edits:
        assert text.count(old) == 1, f"{mistake.id}: {old!r} must occur once in {mistake.base}"
        text = text.replace(old, new)
    return text


DECODING = ("decode_steps", "decode_chunked", "decode_inputs_unchanged", "decode_new_tokens_only")
ALSO_LOST: dict[str, tuple[str, ...]] = {
    # forward reads the cache back through get(): a wrong get() breaks cached decoding too,
    # and with chunks of different sizes it raises in the refused-update check's get().
    "append-along-heads-axis": ("cache_errors", *DECODING),
    "get-without-moving-the-sequence-axis-back": DECODING,
    # ... and its whole buffer still holds the old numbers after a (correct) reset.
    "get-returns-the-whole-buffer": ("cache_reset_isolation", *DECODING),
    # seq_len is the capacity check's count and the mask's offset.
    "seq-len-counts-updates": (
        "cache_errors",
        "decode_chunked",
        "decode_inputs_unchanged",
        "decode_new_tokens_only",
    ),
    # every cache of the session shares one list: nothing that stores works.
    "class-level-storage": ("cache_append_get", "cache_errors", *DECODING, "decode_steps"),
    # the model keeps the whole sequence itself, so a second cache breaks it.
    "returns-the-whole-sequence": ("decode_new_tokens_only",),
}
"""Items a mistake loses besides its targets (the policy is exact: no more, no fewer)."""


@pytest.mark.parametrize("path", CORRECT, ids=[p.stem for p in CORRECT])
def test_correct_implementation_gets_full_marks(path: Path) -> None:
    results = grade_kv(path.read_text(encoding="utf-8"))
    failed = {item: r.failure for item, r in results.items() if r.failure is not None}
    assert failed == {}
    assert sum(r.score for r in results.values()) == 100


def test_the_reference_gets_full_marks() -> None:
    results = grade_kv(REFERENCE.read_text(encoding="utf-8"))
    assert {item: r.score for item, r in results.items()} == {
        item.id: item.points for item in RUBRIC.items
    }


def test_the_table_is_large_enough() -> None:
    assert len(CORRECT) >= 5 and len(MISTAKES) >= 15


@pytest.mark.parametrize("mistake", MISTAKES, ids=[m.id for m in MISTAKES])
def test_mistake_loses_exactly_its_items_with_its_hint(mistake: Any) -> None:
    results = grade_kv(mutant(mistake))
    lost = {item for item, r in results.items() if r.failure is not None}
    assert lost == set(mistake.targets) | set(ALSO_LOST.get(mistake.id, ()))
    for item in mistake.targets:
        failure = results[item].failure
        assert failure is not None and mistake.hint in failure.hint, (item, failure)
    for item, r in results.items():
        assert r.score == (0 if item in lost else r.max_score)


def _snippet_fails(prelude: str, snippet: str) -> bool:
    """Whether `snippet` raises after `prelude` (our own fixtures: trusted code)."""
    namespace: dict[str, Any] = {}
    exec(compile(prelude, "<implementation>", "exec"), namespace)
    try:
        with np.errstate(all="ignore"):
            exec(compile(snippet, "<snippet>", "exec"), namespace)
    except Exception:
        return True
    return False


@pytest.mark.parametrize("mistake", MISTAKES, ids=[m.id for m in MISTAKES])
def test_failing_snippets_reproduce_after_the_mutant_and_pass_after_the_reference(
    mistake: Any,
) -> None:
    results = grade_kv(mutant(mistake))
    reference = REFERENCE.read_text(encoding="utf-8")
    for item in mistake.targets:
        failure = results[item].failure
        assert failure is not None and failure.snippet
        assert _snippet_fails(mutant(mistake), failure.snippet), (item, failure.snippet)
        assert not _snippet_fails(reference, failure.snippet), (item, failure.snippet)


def _release_cells() -> list[str]:
    notebook = nbformat.read(ROOT / "release" / "kv_cache" / "kv_cache.ipynb", as_version=4)
    return [cell.source for cell in notebook.cells if cell.cell_type == "code"]


GIVEN = REFERENCE.read_text(encoding="utf-8").split("class KVCache:")[0]
"""The notebook's given code (Linear, attention, the causal mask), from the reference."""

DO_NOTHING = {
    "release-stubs": None,  # the released notebook as it is: every answer raises
    "constants": GIVEN
    + textwrap.dedent(
        """
        class KVCache:
            def __init__(self, batch_size, num_heads, head_dim, max_seq_len):
                self.shape = (batch_size, num_heads, 0, head_dim)
            seq_len = 0
            def update(self, k, v):
                pass
            def get(self):
                return np.zeros(self.shape), np.zeros(self.shape)
            def reset(self):
                pass

        class MultiHeadAttention:
            def __init__(self, embed_dim, num_heads):
                self.embed_dim, self.num_heads = embed_dim, num_heads
                self.head_dim = embed_dim // num_heads
                e = embed_dim
                self.q_proj, self.k_proj = Linear(e, e), Linear(e, e)
                self.v_proj, self.out_proj = Linear(e, e), Linear(e, e)
            def forward(self, x, mask=None, cache=None):
                return np.zeros_like(x)

        def kv_cache_bytes(num_layers, batch_size, seq_len, num_heads, head_dim, bytes_per_value=4):
            return 8

        def decoding_score_count(seq_len, use_cache):
            return 1
        """
    ),
    "checks-but-stores-nothing": REFERENCE.read_text(encoding="utf-8")
    .replace("        self._keys[:, :, start:stop] = k\n", "")
    .replace("        self._values[:, :, start:stop] = v\n", "")
    .replace(
        "return self._keys[:, :, : self._length]", "return 0 * self._keys[:, :, : self._length]"
    )
    .replace(", self._values[:, :, : self._length]", ", 0 * self._values[:, :, : self._length]")
    .replace("        return self.out_proj(concat)\n", "        return 0 * self.out_proj(concat)\n")
    .replace("    return 2 * num_layers", "    return 0 * num_layers")
    .replace("        return sum(t for t", "        return 0 * sum(t for t")
    .replace("    return sum(t * t for t", "    return 0 * sum(t * t for t"),
}
"""Submissions with no evidence of any item: each must score exactly 0 everywhere."""


@pytest.mark.parametrize("name", sorted(DO_NOTHING))
def test_a_submission_that_does_nothing_scores_zero_everywhere(name: str) -> None:
    source = DO_NOTHING[name]
    results = grade_kv(_release_cells() if source is None else source)
    assert {item: r.score for item, r in results.items()} == {item.id: 0 for item in RUBRIC.items}


def test_the_stores_nothing_edits_all_apply() -> None:
    source = DO_NOTHING["checks-but-stores-nothing"]
    assert source is not None
    assert source.count("0 * ") == 6 and "self._keys[:, :, start:stop] = k" not in source


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "autograder", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )


def test_cli_grades_the_sample_submission_losing_only_chunked_decoding(tmp_path: Path) -> None:
    results = tmp_path / "r.json"
    done = _cli(
        "grade", "examples/kv_cache.ipynb", "--exercise", "kv_cache", "--results", str(results)
    )
    assert done.returncode == 0, done.stderr
    document = json.loads(results.read_text(encoding="utf-8"))
    lost = {test["name"] for test in document["tests"] if test["score"] < test["max_score"]}
    chunked = next(item.title for item in RUBRIC.items if item.id == "decode_chunked")
    assert document["score"] == 85 and lost == {chunked}
    assert "shift the causal mask by the cached length" in results.read_text(encoding="utf-8")


def test_cli_check_runs_the_public_items_of_the_sample(tmp_path: Path) -> None:
    done = _cli("check", "examples/kv_cache.ipynb", "--exercise", "kv_cache")
    assert "[FAIL] a prompt chunk, then steps and chunks" in done.stdout
    public = [item for item in RUBRIC.items if item.visibility == "visible"]
    assert done.stdout.count("[PASS]") == len(public) - 1
    assert "3 more items are graded after the deadline" in done.stdout


UNKNOWN = {
    # (edit of the reference, the item, the start of the fact it must state)
    "values-scaled-from-the-first-call": (
        (
            "            K, V = cache.get()\n",
            "            K, V = cache.get()\n            V = V * 1.5\n",
        ),
        "decode_steps",
        "The first call already differs.",
    ),
    "values-scaled-once-something-is-cached": (
        (
            "            K, V = cache.get()\n",
            "            K, V = cache.get()\n            V = V * 1.5 if past else V\n",
        ),
        "decode_steps",
        "The first 1 call(s) (1 token(s)) match full causal attention; the call with 1 new",
    ),
}


@pytest.mark.parametrize("name", sorted(UNKNOWN))
def test_a_mistake_no_one_catalogued_gets_facts_not_a_name(name: str) -> None:
    (old, new), item, fact = UNKNOWN[name]
    source = REFERENCE.read_text(encoding="utf-8")
    assert source.count(old) == 1
    results = grade_kv(source.replace(old, new))
    failure = results[item].failure
    assert failure is not None and failure.hint.startswith(fact), failure
    assert not any(text in failure.hint for text in HINTS.values())


def test_seq_len_written_as_a_method_is_named() -> None:
    source = REFERENCE.read_text(encoding="utf-8")
    old = "    @property\n    def seq_len(self) -> int:\n        return self._length\n"
    assert source.count(old) == 1
    method = "    def seq_len(self) -> int:\n        return self._length\n"
    source = source.replace(old, method).replace("past = cache.seq_len", "past = cache.seq_len()")
    results = grade_kv(source)
    failure = results["cache_append_get"].failure
    assert failure is not None and "cache.seq_len` after 1 update(s) is a method" in failure.summary
    assert "@property" in failure.hint
    assert results["decode_steps"].failure is None  # the student's own forward calls it right
