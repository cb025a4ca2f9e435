"""The assignment itself: the committed release is what the real nbgrader generates from the
source, the notebook validates both ways, its solution cells are (and behave like)
solutions/attention.py, it runs top to bottom in a fresh kernel, and the reference agrees with
PyTorch."""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import io
import json
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import nbformat
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "source" / "attention" / "attention.ipynb"
RELEASE = ROOT / "release" / "attention" / "attention.ipynb"
SOLUTIONS = ROOT / "solutions" / "attention.py"

ANSWER_CELLS = ("sdpa", "causal_mask", "mha")
GIVEN_CELLS = ("imports", "linear")
AUTOGRADED_POINTS = {  # one grade cell per rubric item, worth a tenth of the item's points
    "test_sdpa_reference": 1.5,
    "test_sdpa_distribution": 1,
    "test_sdpa_masking": 1.5,
    "test_sdpa_stability": 1,
    "test_sdpa_inputs_unchanged": 0.5,
    "test_causal_mask": 1,
    "test_mha_init": 1,
    "test_mha_forward": 1,
    "test_mha_mask_broadcast": 1,
    "test_mha_causal": 0.5,
}
CHECKS_OK = (  # what the grade cells print when they pass
    "scaled_dot_product_attention: reference checks ok",
    "scaled_dot_product_attention: distribution checks ok",
    "scaled_dot_product_attention: mask checks ok",
    "scaled_dot_product_attention: stability checks ok",
    "scaled_dot_product_attention: inputs-unchanged checks ok",
    "create_causal_mask: ok",
    "MultiHeadAttention: constructor checks ok",
    "MultiHeadAttention: forward checks ok",
    "MultiHeadAttention: mask checks ok",
    "MultiHeadAttention: causal checks ok",
)
WRITTEN_POINTS = {"q_memory": 3, "q_heads": 2, "q_causal": 2}
STUBBED = (  # the functions whose bodies the release replaces by a stub
    "scaled_dot_product_attention",
    "create_causal_mask",
    "__init__",
    "_split_heads",
    "forward",
)
TORCH_REASON = "torch is the optional cross-check extra (pip install '.[crosscheck]')"


# --- helpers ---------------------------------------------------------------------------------


def read(path: Path) -> Any:
    """The notebook as nbformat parses it (so JSON formatting differences do not count)."""
    return nbformat.read(str(path), as_version=nbformat.NO_CONVERT)


def nbgrader_meta(cell: Any) -> dict[str, Any]:
    meta: dict[str, Any] = cell.metadata.get("nbgrader", {})
    return meta


def cells_by_id(path: Path) -> dict[str, Any]:
    return {nbgrader_meta(c)["grade_id"]: c for c in read(path).cells if nbgrader_meta(c)}


def nbgrader(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nbgrader", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


@cache
def solutions() -> ModuleType:
    """solutions/attention.py, imported from its path (the oracle)."""
    spec = importlib.util.spec_from_file_location("_attention_solutions", SOLUTIONS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def notebook_namespace() -> dict[str, Any]:
    """The source's given (`reference`-tagged) cells and solution cells, executed in order in a
    fresh namespace; nothing else (no demos, no tests)."""
    namespace: dict[str, Any] = {}
    for cell in read(SOURCE).cells:
        meta = nbgrader_meta(cell)
        is_given = "reference" in cell.metadata.get("tags", [])
        is_answer = bool(meta.get("solution")) and not meta.get("grade")
        if cell.cell_type == "code" and (is_given or is_answer):
            exec(compile(cell.source, f"<cell {meta.get('grade_id')}>", "exec"), namespace)
    return namespace


def function_bodies(source: str) -> dict[str, str]:
    """`name` or `Class.name` -> the AST of each function's body, its docstring left out, and
    `Class.<other>` for class-level statements (`__call__ = forward`)."""

    def body(node: ast.FunctionDef) -> str:
        statements = node.body
        first = statements[0]
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
            statements = statements[1:]
        return "\n".join(ast.dump(s) for s in statements)

    found: dict[str, str] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef):
            found[node.name] = body(node)
        elif isinstance(node, ast.ClassDef):
            for member in node.body:
                if isinstance(member, ast.FunctionDef):
                    found[f"{node.name}.{member.name}"] = body(member)
                elif not isinstance(member, ast.Expr):  # skip the class docstring
                    found[f"{node.name}.<{ast.dump(member)}>"] = ""
    return found


def random_mask(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """A random bool mask, True = may attend, in which every query may see at least one key."""
    mask = rng.random(shape) < 0.6
    rows = np.arange(shape[-2])
    mask[..., rows, rng.integers(0, shape[-1], size=shape[-2])] = True
    return mask


SdpaCase = tuple[np.ndarray, np.ndarray, np.ndarray, "np.ndarray | None"]


def sdpa_cases(count: int, seed: int) -> Iterator[SdpaCase]:
    """Q, K, V with 0-2 batch axes, seq_q != seq_k and d_k != d_v in general, and no mask, or a
    bool or float mask of a shape that broadcasts (shared, per batch element, or with 1s)."""
    rng = np.random.default_rng(seed)
    for index in range(count):
        batch = tuple(int(b) for b in rng.integers(1, 4, size=index % 3))
        seq_q, seq_k, d_k, d_v = (int(n) for n in rng.integers(1, 7, size=4))
        Q = rng.standard_normal((*batch, seq_q, d_k))
        K = rng.standard_normal((*batch, seq_k, d_k))
        V = rng.standard_normal((*batch, seq_k, d_v))
        mask = None
        kind = index % 4
        if kind:
            lead = batch if kind == 2 else tuple(1 for _ in batch) if kind == 3 else ()
            mask = random_mask(rng, (*lead, seq_q, seq_k))
            if index % 8 >= 4:
                mask = mask.astype(float)
        yield Q, K, V, mask


MHA_LAYOUTS = (
    "none",
    "(seq, seq)",
    "(batch, seq, seq)",
    "(batch, 1, seq, seq)",
    "(batch, H, seq, seq)",
)


def mha_mask(rng: np.random.Generator, layout: str, batch: int, heads: int, seq: int) -> Any:
    shapes = {
        "(seq, seq)": (seq, seq),
        "(batch, seq, seq)": (batch, seq, seq),
        "(batch, 1, seq, seq)": (batch, 1, seq, seq),
        "(batch, H, seq, seq)": (batch, heads, seq, seq),
    }
    return None if layout == "none" else random_mask(rng, shapes[layout])


def set_projections(model: Any, weights: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    for name, (weight, bias) in weights.items():
        getattr(model, name).weight, getattr(model, name).bias = weight.copy(), bias.copy()


def random_projections(
    rng: np.random.Generator, embed_dim: int
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {
        name: (rng.standard_normal((embed_dim, embed_dim)), rng.standard_normal(embed_dim))
        for name in ("q_proj", "k_proj", "v_proj", "out_proj")
    }


# --- the release and nbgrader ----------------------------------------------------------------


ASSIGNMENTS = ("attention", "kv_cache")
"""Every assignment of the course: its master notebook is `source/NAME/NAME.ipynb`."""


@pytest.mark.slow
@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_committed_release_is_what_nbgrader_generates(tmp_path: Path, name: str) -> None:
    shutil.copytree(ROOT / "source", tmp_path / "source")
    shutil.copy2(ROOT / "nbgrader_config.py", tmp_path / "nbgrader_config.py")
    done = nbgrader("generate_assignment", name, "--force", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    fresh = tmp_path / "release" / name / f"{name}.ipynb"
    # nbgrader 0.9.6's output is deterministic (cell checksums are hashes of the cells), so
    # nothing is normalised: the parsed notebooks must be equal.
    assert read(fresh) == read(ROOT / "release" / name / f"{name}.ipynb"), (
        f"release/{name}/{name}.ipynb is stale: from the repository root run "
        f"'nbgrader generate_assignment {name} --force' and commit the result"
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", ASSIGNMENTS)
def test_source_validates_and_release_passes_no_test(name: str) -> None:
    # nbgrader validate exits 0 even when validation fails: the verdict is in the text.
    done = nbgrader("validate", str(ROOT / "source" / name / f"{name}.ipynb"), cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "Success! Your notebook passes all the tests." in done.stdout, done.stdout
    assert "FAILED" not in done.stdout
    release = ROOT / "release" / name / f"{name}.ipynb"
    done = nbgrader("validate", "--invert", str(release), cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "Success! The notebook does not pass any tests." in done.stdout, done.stdout
    assert "PASSED" not in done.stdout


def test_release_has_stubs_and_no_solutions_or_hidden_tests() -> None:
    text = RELEASE.read_text(encoding="utf-8")
    assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
    assert "HIDDEN TESTS" not in text
    released = cells_by_id(RELEASE)
    stubs = "\n".join(released[name].source for name in ANSWER_CELLS)
    assert stubs.count("# YOUR CODE HERE\n") == len(STUBBED)
    assert stubs.count("raise NotImplementedError()") == len(STUBBED)
    for name in WRITTEN_POINTS:
        assert released[name].source.rstrip().endswith("YOUR ANSWER HERE")
    # The stubs still parse and keep every signature and docstring of the source.
    source = cells_by_id(SOURCE)
    for name in ANSWER_CELLS:
        stub, full = ast.parse(released[name].source), ast.parse(source[name].source)
        signatures = [
            (n.name, ast.dump(n.args), ast.get_docstring(n))
            for tree in (stub, full)
            for n in ast.walk(tree)
            if isinstance(n, ast.FunctionDef)
        ]
        half = len(signatures) // 2
        assert signatures[:half] == signatures[half:], name
        stubbed = [n.name for n in ast.walk(stub) if isinstance(n, ast.FunctionDef)]
        assert all(n in STUBBED for n in stubbed), stubbed


def test_cell_metadata_is_what_nbgrader_and_the_grader_expect() -> None:
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
    for name in GIVEN_CELLS:
        meta = nbgrader_meta(cells[name])
        assert meta["locked"] and not meta["solution"] and not meta["grade"], name
        assert "reference" in cells[name].metadata.get("tags", []), name
    for name in ANSWER_CELLS:
        meta = nbgrader_meta(cells[name])
        assert cells[name].cell_type == "code" and meta["solution"] and not meta["grade"], name
        assert not meta["locked"]
    for name, points in AUTOGRADED_POINTS.items():
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
    graded = {n for n, c in cells.items() if nbgrader_meta(c)["grade"]}
    assert graded == set(AUTOGRADED_POINTS) | set(WRITTEN_POINTS)
    assert "python -m autograder check attention.ipynb" in notebook.cells[0].source


def test_grade_cells_are_the_ones_the_rubric_maps() -> None:
    """One cell per rubric item, worth a tenth of its points: nbgrader and our grader then
    give the same score, on scales of 10 and 100, whenever their checks fail the same items."""
    from autograder.exercises.attention.rubric import GRADE_CELLS, POINTS

    assert set(GRADE_CELLS) == set(AUTOGRADED_POINTS)
    for cell, items in GRADE_CELLS.items():
        assert AUTOGRADED_POINTS[cell] == sum(POINTS[item] for item in items) / 10, cell


# --- the notebook's solution is solutions/attention.py -----------------------------------------


def test_solution_cells_are_the_code_of_the_solutions_module() -> None:
    """Same statements (compared as ASTs; docstrings and type hints aside)."""
    cells = cells_by_id(SOURCE)
    notebook = {}
    for name in (*GIVEN_CELLS, *ANSWER_CELLS):
        notebook.update(function_bodies(cells[name].source))
    reference = function_bodies(SOLUTIONS.read_text(encoding="utf-8"))
    assert notebook.keys() == reference.keys()
    for name, body in reference.items():
        assert notebook[name] == body, f"{name} differs from solutions/attention.py"
    namespace = notebook_namespace()
    assert namespace["MASK_VALUE"] == solutions().MASK_VALUE == -1e9


def test_notebook_solution_agrees_with_solutions_module() -> None:
    ns, ref = notebook_namespace(), solutions()
    for Q, K, V, mask in sdpa_cases(36, seed=2024):
        got = ns["scaled_dot_product_attention"](Q, K, V, mask)
        want = ref.scaled_dot_product_attention(Q, K, V, mask)
        for g, w, what in zip(got, want, ("output", "weights"), strict=True):
            assert g.shape == w.shape, what
            np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12, err_msg=what)
    for n in range(1, 65):
        assert np.array_equal(ns["create_causal_mask"](n), ref.create_causal_mask(n)), n
    rng = np.random.default_rng(7)
    for index in range(30):
        heads, head_dim = int(rng.integers(1, 5)), int(rng.integers(1, 5))
        batch, seq, e = int(rng.integers(1, 4)), int(rng.integers(1, 6)), heads * head_dim
        ours, theirs = ns["MultiHeadAttention"](e, heads), ref.MultiHeadAttention(e, heads)
        assert (ours.embed_dim, ours.num_heads, ours.head_dim) == (e, heads, head_dim)
        weights = random_projections(rng, e)
        set_projections(ours, weights)
        set_projections(theirs, weights)
        x = rng.standard_normal((batch, seq, e))
        layout = MHA_LAYOUTS[index % len(MHA_LAYOUTS)]
        mask = mha_mask(rng, layout, batch, heads, seq)
        got, want = ours(x, mask), theirs.forward(x, mask)
        assert got.shape == want.shape == (batch, seq, e), layout
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=layout)
    for embed_dim, num_heads in ((10, 3), (7, 2), (4, 8)):
        for cls in (ns["MultiHeadAttention"], ref.MultiHeadAttention):
            with pytest.raises(ValueError, match="divisible"):
                cls(embed_dim, num_heads)


def top_level_run(source: Path) -> tuple[float, bool, str]:
    """Every code cell of the notebook `source`, run in order outside Jupyter as the grader
    runs a submission: (seconds taken, whether matplotlib got imported, what was printed)."""
    program = textwrap.dedent(
        f"""
        import json, sys, time
        import nbformat
        cells = [c.source for c in nbformat.read({str(source)!r}, as_version=4).cells
                 if c.cell_type == "code"]
        began = time.perf_counter()
        namespace = {{}}
        for source in cells:
            exec(compile(source, "<cell>", "exec"), namespace)
        print(json.dumps([time.perf_counter() - began, "matplotlib" in sys.modules]))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    seconds, imported_matplotlib = json.loads(done.stdout.strip().splitlines()[-1])
    return seconds, imported_matplotlib, done.stdout


def test_top_level_code_of_the_notebook_is_fast_and_needs_no_matplotlib() -> None:
    """The grader runs every code cell of every submission, outside Jupyter."""
    seconds, imported_matplotlib, printed = top_level_run(SOURCE)
    assert seconds < 2.0, f"the notebook's top-level code took {seconds:.2f} s"
    assert not imported_matplotlib, "outside Jupyter the notebook must not import matplotlib"
    for line in CHECKS_OK:
        assert line in printed


def kernel_run(source: Path, folder: Path) -> tuple[str, list[Any]]:
    """Every code cell of the notebook `source`, run in a fresh Jupyter kernel in `folder`; no
    cell may raise. What the cells printed, and all their outputs."""
    from nbclient import NotebookClient

    notebook = nbformat.read(str(source), as_version=4)
    client = NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(folder)}},
    )
    client.execute()
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    errors = [o for o in outputs if o.get("output_type") == "error"]
    assert errors == [], errors
    printed = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    return printed, outputs


@pytest.mark.slow
def test_every_code_cell_of_the_source_runs_in_a_fresh_kernel(tmp_path: Path) -> None:
    printed, outputs = kernel_run(SOURCE, tmp_path)
    for line in CHECKS_OK:
        assert line in printed
    for seq_len, elements in ((128, "16,384"), (2048, "4,194,304"), (4096, "16,777,216")):
        assert any(row.split()[:2] == [str(seq_len), elements] for row in printed.splitlines()), (
            f"memory table row for {seq_len}"
        )
    if importlib.util.find_spec("matplotlib") is not None:
        assert any("image/png" in o.get("data", {}) for o in outputs), "no heatmap drawn"


# --- cross-check against PyTorch, which nobody here wrote -----------------------------------


@pytest.mark.slow
def test_reference_sdpa_matches_torch() -> None:
    torch = pytest.importorskip("torch", reason=TORCH_REASON)
    ref = solutions()
    for Q, K, V, mask in sdpa_cases(48, seed=99):
        out, weights = ref.scaled_dot_product_attention(Q, K, V, mask)
        # Our mask: 1/True = may attend. torch's bool attn_mask here: True = takes part.
        attn_mask = None if mask is None else torch.from_numpy(np.asarray(mask) != 0)
        tq, tk, tv = (torch.from_numpy(a) for a in (Q, K, V))
        expected = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, attn_mask=attn_mask)
        np.testing.assert_allclose(out, expected.numpy(), rtol=1e-10, atol=1e-10)
        # The weights: torch's softmax of the masked, scaled scores.
        scores = tq @ tk.transpose(-1, -2) / np.sqrt(Q.shape[-1])
        if attn_mask is not None:
            scores = scores.masked_fill(~attn_mask, float("-inf"))
        np.testing.assert_allclose(weights, torch.softmax(scores, dim=-1).numpy(), atol=1e-12)


@pytest.mark.slow
def test_reference_mha_matches_torch_multihead_attention() -> None:
    torch = pytest.importorskip("torch", reason=TORCH_REASON)
    ref = solutions()
    rng = np.random.default_rng(11)
    for index in range(30):
        heads, head_dim = int(rng.integers(1, 5)), int(rng.integers(1, 5))
        batch, seq, e = int(rng.integers(1, 4)), int(rng.integers(1, 7)), heads * head_dim
        ours = ref.MultiHeadAttention(e, heads)
        theirs = torch.nn.MultiheadAttention(e, heads, batch_first=True, dtype=torch.float64)
        weights = random_projections(rng, e)
        set_projections(ours, weights)
        with torch.no_grad():  # torch computes x @ W.T + b: store our (in, out) weights transposed
            theirs.in_proj_weight.copy_(
                torch.from_numpy(
                    np.concatenate([weights[n][0].T for n in ("q_proj", "k_proj", "v_proj")])
                )
            )
            theirs.in_proj_bias.copy_(
                torch.from_numpy(
                    np.concatenate([weights[n][1] for n in ("q_proj", "k_proj", "v_proj")])
                )
            )
            theirs.out_proj.weight.copy_(torch.from_numpy(weights["out_proj"][0].T))
            theirs.out_proj.bias.copy_(torch.from_numpy(weights["out_proj"][1]))
        x = rng.standard_normal((batch, seq, e))
        kind = ("none", "causal", "(batch, seq, seq)", "(batch, H, seq, seq)")[index % 4]
        mask: np.ndarray | None = None
        torch_mask = None  # torch's bool attn_mask for nn.MultiheadAttention: True = NOT allowed
        if kind == "causal":
            mask = ref.create_causal_mask(seq)
            torch_mask = torch.from_numpy(np.triu(np.ones((seq, seq), dtype=bool), k=1))
        elif kind == "(batch, seq, seq)":
            mask = random_mask(rng, (batch, seq, seq))
            # torch wants (batch * num_heads, seq, seq), row b * num_heads + h for head h
            torch_mask = torch.from_numpy(~np.repeat(mask, heads, axis=0))
        elif kind == "(batch, H, seq, seq)":
            mask = random_mask(rng, (batch, heads, seq, seq))
            torch_mask = torch.from_numpy(~mask.reshape(batch * heads, seq, seq))
        tx = torch.from_numpy(x)
        expected, _ = theirs(tx, tx, tx, attn_mask=torch_mask, need_weights=False)
        np.testing.assert_allclose(
            ours.forward(x, mask), expected.detach().numpy(), rtol=1e-9, atol=1e-9, err_msg=kind
        )


# --- the notebook's grade cells and the grader fail the same items -----------------------------


def grade_cell_verdicts(submission: str) -> dict[str, bool]:
    """Each autograded cell of the source (hidden tests included), run in order after the given
    cells and `submission`, as `nbgrader autograde` runs them: cell id -> whether it passed."""
    namespace: dict[str, Any] = {}
    verdicts: dict[str, bool] = {}
    with contextlib.redirect_stdout(io.StringIO()), np.errstate(all="ignore"):
        for cell in read(SOURCE).cells:
            meta = nbgrader_meta(cell)
            if "reference" in cell.metadata.get("tags", []):
                exec(compile(cell.source, "<given>", "exec"), namespace)
        exec(compile(submission, "<submission>", "exec"), namespace)
        for cell in read(SOURCE).cells:
            meta = nbgrader_meta(cell)
            if meta.get("grade_id") in AUTOGRADED_POINTS:
                try:
                    exec(compile(cell.source, meta["grade_id"], "exec"), namespace)
                except Exception:
                    verdicts[meta["grade_id"]] = False
                else:
                    verdicts[meta["grade_id"]] = True
    return verdicts


def agreement_cases() -> dict[str, str]:
    """Submissions whose grade the notebook and the grader must agree on, cell by item. The policy
    for what a function returns, in both: a pair may be a tuple or a list; an array must be a
    NumPy array (a list where an array is due fails the item)."""
    from test_mutations import DO_NOTHING, MUTANTS

    reference = SOLUTIONS.read_text(encoding="utf-8")
    cases = {"reference": reference}
    cases["causal-mask-returned-as-a-list"] = reference.replace(
        "return np.tril(np.ones((seq_len, seq_len)))",
        "return np.tril(np.ones((seq_len, seq_len))).tolist()",
    )
    cases["sdpa-returns-a-list-of-two-arrays"] = reference.replace(
        "return weights @ V, weights", "return [weights @ V, weights]"
    )
    cases["sdpa-returns-nested-lists"] = reference.replace(
        "return weights @ V, weights", "return (weights @ V).tolist(), weights.tolist()"
    ).replace(
        "attended, _ = scaled_dot_product_attention(Q, K, V, mask)",
        "attended = np.asarray(scaled_dot_product_attention(Q, K, V, mask)[0])",
    )
    cases.update({s.id: s.source for s in DO_NOTHING})
    stateful = {
        "forward-caches-keys-and-values-on-the-instance",
        "class-level-memo-shared-between-instances",
        "head-dim-stored-on-the-class",
        "query-projection-stored-on-the-class",
    }
    # Textbook mistakes, whose grade-cell scores the class benchmark compares with nbgrader's.
    textbook = {"no-scaling", "divide-by-d_k", "mask-after-softmax", "mask-without-head-axis"}
    cases.update({m.id: m.source() for m in MUTANTS if m.id in stateful | textbook})
    return cases


AGREEMENT = agreement_cases()


@pytest.mark.slow
@pytest.mark.parametrize("submission", AGREEMENT.values(), ids=AGREEMENT.keys())
def test_grade_cells_and_grader_fail_the_same_items(submission: str) -> None:
    """The README's promise: `nbgrader autograde` (one grade cell per item) and this grader fail
    the same items, including for a list returned where an array is due, code that computes
    nothing, and state kept between calls."""
    from conftest import grade_code

    from autograder.exercises.attention.rubric import GRADE_CELLS

    results = grade_code(submission)
    grader = {
        cell: all(results[item].failure is None for item in items)
        for cell, items in GRADE_CELLS.items()
    }
    assert grade_cell_verdicts(submission) == grader
