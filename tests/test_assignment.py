"""The assignment itself: the release is the real nbgrader's output and not stale, the notebook
validates, its solution cells agree with solutions/, and the reference agrees with PyTorch."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import pytest
from conftest import ROOT

from autograder.reference import load_reference

SOURCE = ROOT / "source" / "attention" / "attention.ipynb"
RELEASE = ROOT / "release" / "attention" / "attention.ipynb"


def nbgrader(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nbgrader", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def comparable(path: Path) -> Any:
    """The notebook as nbformat reads it (parsed, so formatting differences do not count)."""
    return nbformat.read(str(path), as_version=nbformat.NO_CONVERT)


@pytest.mark.slow
def test_committed_release_is_what_nbgrader_generates(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "source", tmp_path / "source")
    shutil.copy2(ROOT / "nbgrader_config.py", tmp_path / "nbgrader_config.py")
    done = nbgrader("generate_assignment", "attention", "--force", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    fresh = tmp_path / "release" / "attention" / "attention.ipynb"
    assert comparable(fresh) == comparable(RELEASE), (
        "release/attention/attention.ipynb is stale: run "
        "'nbgrader generate_assignment attention --force' and commit the result"
    )


@pytest.mark.slow
def test_source_validates_and_release_passes_no_test() -> None:
    done = nbgrader("validate", str(SOURCE), cwd=ROOT)
    assert done.returncode == 0 and "Success! Your notebook passes all the tests." in done.stdout
    done = nbgrader("validate", "--invert", str(RELEASE), cwd=ROOT)
    assert done.returncode == 0
    assert "Success! The notebook does not pass any tests." in done.stdout


def test_release_has_stubs_and_no_solutions_or_hidden_tests() -> None:
    text = RELEASE.read_text(encoding="utf-8")
    assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text
    assert text.count("raise NotImplementedError()") == 4  # sdpa, mask, __init__, forward
    assert "YOUR ANSWER HERE" in text


def test_grade_cells_are_the_ones_the_rubric_maps() -> None:
    from autograder.rubrics.attention import GRADE_CELLS

    notebook = comparable(SOURCE)
    graded = {
        cell.metadata["nbgrader"]["grade_id"]
        for cell in notebook.cells
        if cell.metadata.get("nbgrader", {}).get("grade") and cell.cell_type == "code"
    }
    assert graded == set(GRADE_CELLS)


def notebook_namespace() -> dict[str, Any]:
    """The notebook's given (reference-tagged) and solution cells, executed."""
    namespace: dict[str, Any] = {}
    for cell in comparable(SOURCE).cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and (
            "reference" in cell.metadata.get("tags", [])
            or (meta.get("solution") and not meta.get("grade"))
        ):
            exec(compile(cell.source, "<notebook>", "exec"), namespace)
    return namespace


def random_cases(count: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, Any]]:
    rng = np.random.default_rng(2024)
    cases = []
    for index in range(count):
        batch = tuple(rng.integers(1, 4, size=index % 3))
        seq_q, seq_k, d_k, d_v = rng.integers(1, 7, size=4)
        Q = rng.standard_normal((*batch, seq_q, d_k))
        K = rng.standard_normal((*batch, seq_k, d_k))
        V = rng.standard_normal((*batch, seq_k, d_v))
        mask: Any = None
        if index % 3:
            mask = rng.random((seq_q, seq_k)) < 0.6
            mask[:, 0] = True
            mask = mask if index % 3 == 1 else mask.astype(float)
        cases.append((Q, K, V, mask))
    return cases


def test_notebook_solution_agrees_with_solutions_module() -> None:
    ns, ref = notebook_namespace(), load_reference("attention")
    for Q, K, V, mask in random_cases(30):
        got = ns["scaled_dot_product_attention"](Q, K, V, mask)
        want = ref.scaled_dot_product_attention(Q, K, V, mask)
        for g, w in zip(got, want, strict=True):
            assert np.allclose(g, w, rtol=1e-12, atol=1e-12)
    for n in range(1, 65):
        assert np.array_equal(ns["create_causal_mask"](n), ref.create_causal_mask(n))
    rng = np.random.default_rng(7)
    for index in range(30):
        heads, head_dim = int(rng.integers(1, 5)), int(rng.integers(1, 5))
        batch, seq, e = int(rng.integers(1, 4)), int(rng.integers(1, 6)), heads * head_dim
        ours, theirs = ns["MultiHeadAttention"](e, heads), ref.MultiHeadAttention(e, heads)
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            weight, bias = rng.standard_normal((e, e)), rng.standard_normal(e)
            for model in (ours, theirs):
                getattr(model, name).weight, getattr(model, name).bias = weight, bias
        x = rng.standard_normal((batch, seq, e))
        layouts = [
            None,
            (seq, seq),
            (batch, seq, seq),
            (batch, 1, seq, seq),
            (batch, heads, seq, seq),
        ]
        shape = layouts[index % len(layouts)]
        mask = None if shape is None else np.tril(np.ones(shape)) + np.eye(seq) * 0
        assert np.allclose(ours.forward(x, mask), theirs.forward(x, mask), rtol=1e-12)


@pytest.mark.slow
def test_every_code_cell_of_the_source_runs_in_a_fresh_kernel() -> None:
    from nbclient import NotebookClient

    notebook = nbformat.read(str(SOURCE), as_version=4)
    client = NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(SOURCE.parent)}},
    )
    client.execute()
    errors = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]
    assert errors == []
    printed = json.dumps([cell.get("outputs", []) for cell in notebook.cells])
    assert "MultiHeadAttention: ok" in printed and "4096" in printed


# --- cross-check against PyTorch, which nobody here wrote -----------------------------------


@pytest.mark.slow
def test_reference_sdpa_matches_torch() -> None:
    torch = pytest.importorskip("torch", reason="torch is a test-only extra (pip install torch)")
    ref = load_reference("attention")
    for Q, K, V, mask in random_cases(40):
        out, weights = ref.scaled_dot_product_attention(Q, K, V, mask)
        attn_mask = None if mask is None else torch.from_numpy(np.asarray(mask) != 0)
        expected = torch.nn.functional.scaled_dot_product_attention(
            torch.from_numpy(Q), torch.from_numpy(K), torch.from_numpy(V), attn_mask=attn_mask
        )
        assert np.allclose(out, expected.numpy(), rtol=1e-10, atol=1e-10)
        del weights


@pytest.mark.slow
def test_reference_mha_matches_torch_multihead_attention() -> None:
    torch = pytest.importorskip("torch", reason="torch is a test-only extra (pip install torch)")
    ref = load_reference("attention")
    rng = np.random.default_rng(11)
    for index in range(20):
        heads, head_dim = int(rng.integers(1, 5)), int(rng.integers(1, 5))
        batch, seq, e = int(rng.integers(1, 4)), int(rng.integers(1, 7)), heads * head_dim
        ours = ref.MultiHeadAttention(e, heads)
        theirs = torch.nn.MultiheadAttention(e, heads, batch_first=True, dtype=torch.float64)
        weights = {
            n: (rng.standard_normal((e, e)), rng.standard_normal(e))
            for n in ("q_proj", "k_proj", "v_proj", "out_proj")
        }
        for name, (weight, bias) in weights.items():
            getattr(ours, name).weight, getattr(ours, name).bias = weight, bias
        with torch.no_grad():  # torch computes x @ W.T + b: store our weights transposed
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
        causal = index % 2 == 1
        mask = np.tril(np.ones((seq, seq))) if causal else None
        # torch's bool attn_mask is True where attention is NOT allowed.
        torch_mask = torch.from_numpy(np.triu(np.ones((seq, seq), bool), 1)) if causal else None
        tx = torch.from_numpy(x)
        expected, _ = theirs(tx, tx, tx, attn_mask=torch_mask, need_weights=False)
        assert np.allclose(ours.forward(x, mask), expected.detach().numpy(), rtol=1e-9, atol=1e-9)
