"""The KV-cache assignment: the committed release is what the real nbgrader generates, the
notebook validates both ways, its solution cells are solutions/kv_cache.py, it runs top to
bottom, every correct implementation agrees with the reference and passes every grade cell,
every catalogued mistake loses the grade cells it names, and cached decoding agrees with
PyTorch's causal attention over the whole sequence."""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import io
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from test_assignment import (
    TORCH_REASON,
    cells_by_id,
    function_bodies,
    kernel_run,
    nbgrader_meta,
    random_projections,
    read,
    set_projections,
    top_level_run,
)

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "source" / "kv_cache" / "kv_cache.ipynb"
RELEASE = ROOT / "release" / "kv_cache" / "kv_cache.ipynb"
EXAMPLE = ROOT / "examples" / "kv_cache.ipynb"
SOLUTIONS = ROOT / "solutions" / "kv_cache.py"
IMPLEMENTATIONS = Path(__file__).parent / "implementations" / "kv_cache"
CORRECT = sorted(IMPLEMENTATIONS.glob("correct_*.py"))

GIVEN_CELLS = ("imports", "linear", "attention")
ANSWER_CELLS = ("kv_cache", "mha", "kv_cache_bytes", "decoding_score_count")
PROPOSED_POINTS = {  # the proposed rubric items (points out of 100); each has one grade cell
    "cache_append_get": 15,
    "cache_errors": 10,
    "cache_reset_isolation": 10,
    "decode_steps": 15,
    "decode_chunked": 15,
    "decode_inputs_unchanged": 5,
    "decode_new_tokens_only": 10,
    "kv_cache_bytes": 10,
    "decoding_score_count": 10,
}
AUTOGRADED_POINTS = {f"test_{item}": points / 10 for item, points in PROPOSED_POINTS.items()}
CHECKS_OK = (  # what the grade cells print when they pass, in order
    "KVCache: append and get checks ok",
    "KVCache: error checks ok",
    "KVCache: reset and isolation checks ok",
    "MultiHeadAttention: one-token decoding checks ok",
    "MultiHeadAttention: chunked decoding checks ok",
    "MultiHeadAttention: inputs-unchanged checks ok",
    "MultiHeadAttention: cached-step checks ok",
    "kv_cache_bytes: ok",
    "decoding_score_count: ok",
)
WRITTEN_POINTS = {"q_memory": 3, "q_cost": 2, "q_gqa": 2}
STUBBED = (  # the functions whose bodies the release replaces by a stub
    "__init__",
    "seq_len",
    "update",
    "get",
    "reset",
    "forward",
    "kv_cache_bytes",
    "decoding_score_count",
)
SEVEN_B_FP16_4096 = 2 * 32 * 4096 * 32 * 128 * 2  # 2 GiB, the notebook's worked example


# --- helpers ---------------------------------------------------------------------------------


@cache
def solutions() -> ModuleType:
    """solutions/kv_cache.py, imported from its path (the reference)."""
    return import_path(SOLUTIONS, "_kv_cache_solutions")


def import_path(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@cache
def mistakes() -> Any:
    """The table of mistakes, tests/implementations/kv_cache/mistakes.py."""
    return import_path(IMPLEMENTATIONS / "mistakes.py", "_kv_cache_mistakes").MISTAKES


def base_source(name: str) -> str:
    path = SOLUTIONS if name == "reference" else IMPLEMENTATIONS / f"{name}.py"
    return path.read_text(encoding="utf-8")


def apply_edits(mistake: Any) -> str:
    text = base_source(mistake.base)
    for old, new in mistake.edits:
        assert text.count(old) == 1, f"{mistake.id}: {old!r} must occur once in {mistake.base}"
        text = text.replace(old, new)
    return text


def namespace_of(source: str) -> dict[str, Any]:
    """`source` executed in a fresh namespace (our own fixtures: trusted code)."""
    namespace: dict[str, Any] = {}
    exec(compile(source, "<implementation>", "exec"), namespace)
    return namespace


def notebook_namespace() -> dict[str, Any]:
    """The source's given and solution cells, executed in order; no demos, no tests."""
    namespace: dict[str, Any] = {}
    for cell in read(SOURCE).cells:
        meta = nbgrader_meta(cell)
        is_given = "reference" in cell.metadata.get("tags", [])
        is_answer = bool(meta.get("solution")) and not meta.get("grade")
        if cell.cell_type == "code" and (is_given or is_answer):
            exec(compile(cell.source, f"<cell {meta.get('grade_id')}>", "exec"), namespace)
    return namespace


def grade_cells() -> list[tuple[str, str]]:
    """(grade_id, source) of the source's autograded cells, hidden tests included, in order."""
    return [
        (nbgrader_meta(c)["grade_id"], c.source)
        for c in read(SOURCE).cells
        if c.cell_type == "code" and nbgrader_meta(c).get("grade")
    ]


def failing_grade_cells(namespace: dict[str, Any]) -> dict[str, str]:
    """Run every grade cell in order in `namespace`, as nbgrader does; the ones that raise."""
    failed: dict[str, str] = {}
    for grade_id, source in grade_cells():
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                exec(compile(source, f"<{grade_id}>", "exec"), namespace)
        except Exception as error:  # a failing grade cell, whatever it raised
            failed[grade_id] = f"{type(error).__name__}: {error}"
    return failed


def randomise(model: Any, rng: np.random.Generator) -> None:
    weights = random_projections(rng, model.embed_dim)
    set_projections(model, {n: (w / np.sqrt(model.embed_dim), b) for n, (w, b) in weights.items()})


def chunkings(rng: np.random.Generator, total: int) -> Iterator[list[int]]:
    """One-token steps; the whole sequence at once; a prompt then steps; random chunks."""
    yield [1] * total
    yield [total]
    prompt = int(rng.integers(1, total + 1))
    yield [prompt] + [1] * (total - prompt)
    sizes: list[int] = []
    while sum(sizes) < total:
        sizes.append(int(rng.integers(1, total - sum(sizes) + 1)))
    yield sizes


def decode(model: Any, cache_type: Any, x: np.ndarray, sizes: list[int]) -> np.ndarray:
    batch, total, _ = x.shape
    kv = cache_type(batch, model.num_heads, model.head_dim, total)
    outputs, start = [], 0
    for size in sizes:
        outputs.append(model.forward(x[:, start : start + size], cache=kv))
        start += size
    assert kv.seq_len == total
    return np.concatenate(outputs, axis=1)


# --- the release and nbgrader ----------------------------------------------------------------


# Staleness and `nbgrader validate` both ways: tests/test_assignment.py, for every assignment.


def test_release_has_stubs_and_no_solutions_or_hidden_tests() -> None:
    text = RELEASE.read_text(encoding="utf-8")
    assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
    assert "HIDDEN TESTS" not in text
    released, source = cells_by_id(RELEASE), cells_by_id(SOURCE)
    stubs = "\n".join(released[name].source for name in ANSWER_CELLS)
    assert stubs.count("# YOUR CODE HERE\n") == len(STUBBED)
    assert stubs.count("raise NotImplementedError()") == len(STUBBED)
    for name in WRITTEN_POINTS:
        assert released[name].source.rstrip().endswith("YOUR ANSWER HERE")
    for name in ANSWER_CELLS:  # every signature and docstring survives; only STUBBED are stubs
        stub, full = ast.parse(released[name].source), ast.parse(source[name].source)
        signatures = [
            [
                (n.name, ast.dump(n.args), ast.get_docstring(n))
                for n in ast.walk(tree)
                if isinstance(n, ast.FunctionDef)
            ]
            for tree in (stub, full)
        ]
        assert signatures[0] == signatures[1], name
        for node in ast.walk(stub):
            if isinstance(node, ast.FunctionDef) and node.name not in STUBBED:
                assert "NotImplementedError" not in ast.unparse(node), node.name
    # The given parts of the MultiHeadAttention cell are released as they are.
    given = function_bodies(released["mha"].source)
    assert (
        given["MultiHeadAttention.__init__"]
        == function_bodies(source["mha"].source)["MultiHeadAttention.__init__"]
    )


def test_cell_metadata_is_what_nbgrader_and_the_rubric_expect() -> None:
    notebook = read(SOURCE)
    assert notebook.nbformat == 4
    ids = [cell.get("id") for cell in notebook.cells]
    assert len(set(ids)) == len(ids), "cell ids must be unique"
    cells = cells_by_id(SOURCE)
    for cell in cells.values():
        meta = nbgrader_meta(cell)
        assert meta["schema_version"] == 3
        assert {"grade", "solution", "locked", "grade_id", "task"} <= set(meta)
        assert ("points" in meta) == bool(meta["grade"]), meta["grade_id"]
        assert cell.get("id") == meta["grade_id"], "stable ids: a cell's id is its grade_id"
    for name in GIVEN_CELLS:
        meta = nbgrader_meta(cells[name])
        assert meta["locked"] and not meta["solution"] and not meta["grade"], name
        assert "reference" in cells[name].metadata.get("tags", []), name
    for name in ANSWER_CELLS:
        meta = nbgrader_meta(cells[name])
        assert cells[name].cell_type == "code" and meta["solution"] and not meta["grade"], name
        assert not meta["locked"]
    assert sum(PROPOSED_POINTS.values()) == 100
    for name, points in AUTOGRADED_POINTS.items():  # one cell per item, a tenth of its points
        cell, meta = cells[name], nbgrader_meta(cells[name])
        assert cell.cell_type == "code" and meta["grade"] and meta["locked"], name
        assert not meta["solution"] and meta["points"] == points, name
        assert "### BEGIN HIDDEN TESTS" in cell.source and "### END HIDDEN TESTS" in cell.source
        last = cell.source.strip().splitlines()[-1]
        assert last.startswith("print(") and last.endswith(' ok")'), last
    for name, points in WRITTEN_POINTS.items():
        cell, meta = cells[name], nbgrader_meta(cells[name])
        assert cell.cell_type == "markdown" and meta["grade"] and meta["solution"], name
        assert not meta["task"] and not meta["locked"] and meta["points"] == points, name
        assert "### BEGIN SOLUTION" in cell.source
    graded = [n for n, c in cells.items() if nbgrader_meta(c)["grade"]]
    assert set(graded) == set(AUTOGRADED_POINTS) | set(WRITTEN_POINTS)
    assert [n for n in graded if n in AUTOGRADED_POINTS] == list(AUTOGRADED_POINTS)
    submit = next(c for c in notebook.cells if c.get("id") == "submit_md")
    for cell in (notebook.cells[0], submit):
        assert "python -m autograder check kv_cache.ipynb" in cell.source


# --- the notebook's solution is solutions/kv_cache.py ----------------------------------------


def test_solution_cells_are_the_code_of_the_solutions_module() -> None:
    """Same statements (compared as ASTs; docstrings and type hints aside)."""
    cells = cells_by_id(SOURCE)
    notebook: dict[str, str] = {}
    for name in (*GIVEN_CELLS, *ANSWER_CELLS):
        notebook.update(function_bodies(cells[name].source))
    reference = function_bodies(SOLUTIONS.read_text(encoding="utf-8"))
    assert notebook.keys() == reference.keys()
    for name, body in reference.items():
        assert notebook[name] == body, f"{name} differs from solutions/kv_cache.py"
    assert notebook_namespace()["MASK_VALUE"] == solutions().MASK_VALUE == -1e9


def test_notebook_solution_agrees_with_solutions_module() -> None:
    ns, ref = notebook_namespace(), solutions()
    rng = np.random.default_rng(17)
    for _ in range(12):
        heads, head_dim = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        batch, total, e = int(rng.integers(1, 3)), int(rng.integers(1, 7)), heads * head_dim
        ours, theirs = ns["MultiHeadAttention"](e, heads), ref.MultiHeadAttention(e, heads)
        randomise(theirs, rng)
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            getattr(ours, name).weight = getattr(theirs, name).weight.copy()
            getattr(ours, name).bias = getattr(theirs, name).bias.copy()
        x = rng.standard_normal((batch, total, e))
        mask = ref.create_causal_mask(total)
        np.testing.assert_array_equal(ours.forward(x, mask), theirs.forward(x, mask))
        for sizes in chunkings(rng, total):
            np.testing.assert_array_equal(
                decode(ours, ns["KVCache"], x, sizes), decode(theirs, ref.KVCache, x, sizes)
            )
    for args in ((1, 1, 1, 1, 1), (32, 1, 4096, 32, 128, 2), (3, 5, 7, 2, 9, 8)):
        assert ns["kv_cache_bytes"](*args) == ref.kv_cache_bytes(*args)
    for n in range(40):
        for use in (False, True):
            assert ns["decoding_score_count"](n, use) == ref.decoding_score_count(n, use)


def test_reference_formulas_are_exact() -> None:
    ref = solutions()
    assert ref.kv_cache_bytes(32, 1, 4096, 32, 128, bytes_per_value=2) == SEVEN_B_FP16_4096
    assert SEVEN_B_FP16_4096 == 2**31
    assert ref.kv_cache_bytes(2, 3, 5, 7, 11) == 2 * 2 * 3 * 5 * 7 * 11 * 4
    for n in range(60):
        assert ref.decoding_score_count(n, use_cache=False) == n * (n + 1) * (2 * n + 1) // 6
        assert ref.decoding_score_count(n, use_cache=True) == n * (n + 1) // 2


def test_top_level_code_of_the_notebook_is_fast_and_needs_no_matplotlib() -> None:
    """The grader runs every code cell of every submission, outside Jupyter."""
    seconds, imported_matplotlib, printed = top_level_run(SOURCE)
    assert seconds < 3.0, f"the notebook's top-level code took {seconds:.2f} s"
    assert not imported_matplotlib, "outside Jupyter the notebook must not import matplotlib"
    assert [line for line in printed.splitlines() if line in CHECKS_OK] == list(CHECKS_OK)
    # The memory table: the worked example (4096 tokens, batch 1) is 2 GiB.
    assert any(row.split()[:3] == ["4096", "2.00", "GiB"] for row in printed.splitlines())
    # The demo table: cached and uncached decoding agree, and the score columns are exact.
    rows = [r.split() for r in printed.splitlines() if r.split()[:1] in (["16"], ["128"])]
    rows = [r for r in rows if len(r) == 9]
    assert [r[0] for r in rows] == ["16", "128"], printed
    for row in rows:
        n = int(row[0])
        assert row[6:8] == [f"{n * (n + 1) * (2 * n + 1) // 6:,}", f"{n * (n + 1) // 2:,}"]
        assert float(row[8]) < 1e-9, f"cached and uncached decoding differ by {row[8]}"


@pytest.mark.slow
def test_every_code_cell_of_the_source_runs_in_a_fresh_kernel(tmp_path: Path) -> None:
    printed, _ = kernel_run(SOURCE, tmp_path)
    for line in CHECKS_OK:
        assert line in printed
    assert "speed-up" in printed and "max |diff|" in printed


# --- implementations: the correct ones agree, the mistakes lose their items -------------------


def test_there_are_five_correct_implementations_and_fifteen_mistakes() -> None:
    assert len(CORRECT) >= 5
    table = mistakes()
    assert len({m.id for m in table}) == len(table) >= 15
    for mistake in table:
        assert mistake.targets and set(mistake.targets) <= set(PROPOSED_POINTS), mistake.id
        assert mistake.hint.strip().endswith("."), mistake.id
        assert mistake.base == "reference" or (IMPLEMENTATIONS / f"{mistake.base}.py").exists()


@pytest.mark.parametrize("path", CORRECT, ids=[p.stem for p in CORRECT])
def test_correct_implementation_passes_every_grade_cell(path: Path) -> None:
    assert failing_grade_cells(namespace_of(path.read_text(encoding="utf-8"))) == {}


def test_reference_passes_every_grade_cell() -> None:
    assert failing_grade_cells(namespace_of(SOLUTIONS.read_text(encoding="utf-8"))) == {}


@pytest.mark.parametrize("path", CORRECT, ids=[p.stem for p in CORRECT])
def test_correct_implementation_agrees_with_the_reference(path: Path) -> None:
    ns, ref = namespace_of(path.read_text(encoding="utf-8")), solutions()
    tol = 1e-5  # float32 storage is correct too
    rng = np.random.default_rng(5)
    for _ in range(15):  # the cache: appends, refused updates, reset
        batch, heads, dim = (int(n) for n in rng.integers(1, 4, size=3))
        capacity = int(rng.integers(1, 8))
        ours, theirs = (
            ns["KVCache"](batch, heads, dim, capacity),
            ref.KVCache(batch, heads, dim, capacity),
        )
        for step in range(8):
            t = int(rng.integers(1, 4))
            shape = [batch, heads, t, dim]
            if step % 3 == 2:  # sometimes a wrong shape
                axis = int(rng.choice([0, 1, 3]))
                shape[axis] += 1
            k, v = rng.standard_normal(shape), rng.standard_normal(shape)
            refused = []
            for kv in (ours, theirs):
                try:
                    kv.update(k, v)
                except ValueError:
                    refused.append(True)
                else:
                    refused.append(False)
            assert refused[0] == refused[1], (shape, ours.seq_len, capacity)
            assert ours.seq_len == theirs.seq_len
            for got, want in zip(ours.get(), theirs.get(), strict=True):
                assert got.shape == want.shape
                np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
        ours.reset()
        theirs.reset()
        assert ours.seq_len == theirs.seq_len == 0
    for _ in range(10):  # cached decoding in every chunking, and the uncached path
        heads, head_dim = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        batch, total, e = int(rng.integers(1, 3)), int(rng.integers(1, 8)), heads * head_dim
        ours, theirs = ns["MultiHeadAttention"](e, heads), ref.MultiHeadAttention(e, heads)
        weights = random_projections(rng, e)
        set_projections(ours, weights)
        set_projections(theirs, weights)
        x = rng.standard_normal((batch, total, e))
        mask = ref.create_causal_mask(total)
        np.testing.assert_allclose(
            ours.forward(x, mask), theirs.forward(x, mask), rtol=tol, atol=tol
        )
        np.testing.assert_allclose(ours.forward(x), theirs.forward(x), rtol=tol, atol=tol)
        for sizes in chunkings(rng, total):
            got = decode(ours, ns["KVCache"], x, sizes)
            np.testing.assert_allclose(
                got, decode(theirs, ref.KVCache, x, sizes), rtol=tol, atol=tol
            )
    with pytest.raises(ValueError):
        ns["MultiHeadAttention"](10, 3)
    for args in ((1, 1, 1, 1, 1), (32, 1, 4096, 32, 128, 2), (80, 64, 32768, 64, 128, 2)):
        assert ns["kv_cache_bytes"](*args) == ref.kv_cache_bytes(*args)
    for n in range(0, 200, 3):
        for use in (False, True):
            assert ns["decoding_score_count"](n, use) == ref.decoding_score_count(n, use)


@pytest.mark.parametrize("mistake", mistakes(), ids=[m.id for m in mistakes()])
def test_mistake_applies_and_loses_the_grade_cells_it_names(mistake: Any) -> None:
    source = apply_edits(mistake)
    assert source != base_source(mistake.base)
    failed = failing_grade_cells(namespace_of(source))
    for item in mistake.targets:
        assert f"test_{item}" in failed, f"{mistake.id} passed test_{item}"


def test_example_submission_loses_only_chunked_decoding() -> None:
    """examples/kv_cache.ipynb: the release filled in, with the chunk mask missing its offset."""
    example = read(EXAMPLE)
    released = read(RELEASE)
    assert [c.get("id") for c in example.cells] == [c.get("id") for c in released.cells]
    assert "NotImplementedError" not in "".join(
        c.source for c in example.cells if c.cell_type == "code"
    )
    namespace: dict[str, Any] = {}
    for cell in example.cells:
        meta = nbgrader_meta(cell)
        if cell.cell_type == "code" and not meta.get("grade") and cell.get("id") != "demo":
            exec(compile(cell.source, f"<{cell.get('id')}>", "exec"), namespace)
    failed = failing_grade_cells(namespace)
    assert list(failed) == ["test_decode_chunked"], failed
    assert "a chunk after 6 cached positions" in failed["test_decode_chunked"]


# --- cross-check against PyTorch, which nobody here wrote -----------------------------------


@pytest.mark.slow
def test_cached_decoding_matches_torch_causal_attention_over_the_whole_sequence() -> None:
    torch = pytest.importorskip("torch", reason=TORCH_REASON)
    functional = torch.nn.functional
    ref = solutions()
    rng = np.random.default_rng(23)
    for _ in range(20):
        heads, head_dim = int(rng.integers(1, 5)), int(rng.integers(1, 5))
        batch, total, e = int(rng.integers(1, 4)), int(rng.integers(1, 10)), heads * head_dim
        model = ref.MultiHeadAttention(e, heads)
        weights = random_projections(rng, e)
        set_projections(model, weights)
        x = rng.standard_normal((batch, total, e))

        # Ours compute x @ weight + bias with weight (in, out): the same products, in torch.
        torch_weights = {
            n: (torch.from_numpy(w), torch.from_numpy(b)) for n, (w, b) in weights.items()
        }
        tx = torch.from_numpy(x)
        q, k, v = (
            (tx @ torch_weights[n][0] + torch_weights[n][1])
            .reshape(batch, total, heads, head_dim)
            .transpose(1, 2)
            for n in ("q_proj", "k_proj", "v_proj")
        )
        attended = functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        merged = attended.transpose(1, 2).reshape(batch, total, e)
        out_weight, out_bias = torch_weights["out_proj"]
        expected = (merged @ out_weight + out_bias).numpy()
        prompt = int(rng.integers(1, total + 1))
        for sizes in ([1] * total, [prompt] + [1] * (total - prompt)):
            got = decode(model, ref.KVCache, x, sizes)
            np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9, err_msg=str(sizes))
