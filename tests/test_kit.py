"""The student checker kit: built from the repository, installed with pip into a fresh venv as a
student would, it checks like the grader and holds nothing that computes the solution."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT

from autograder import oracle, sandbox
from autograder.checks import run_checks
from autograder.kit import build_kit
from autograder.kit import kit_rubric as oracle_kit_rubric
from autograder.rubric import Item, Rubric
from autograder.rubrics import load
from autograder.sandbox import Session

pytestmark = pytest.mark.slow

EXAMPLE = ROOT / "examples" / "attention.ipynb"
RELEASE = ROOT / "release" / "attention" / "attention.ipynb"
SHARED_LINES = {  # lines of solutions/attention.py that the kit may hold for other reasons
    "from __future__ import annotations",
    ") -> tuple[np.ndarray, np.ndarray]:",
    "if embed_dim % num_heads != 0:",  # the rubric's hint for a missing ValueError
}


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("kit") / "attention-checker.zip"
    build_kit(out)
    return out


@pytest.fixture(scope="module")
def student_python(kit: Path) -> Iterator[Path]:
    """A fresh venv (seeing NumPy, Hypothesis and nbformat of this machine) with the kit
    installed by pip, exactly as the kit's README tells students."""
    venv = kit.parent / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    python = venv / "bin" / "python"
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", str(kit)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    yield python


def run(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), *args], capture_output=True, text=True, timeout=300, cwd=cwd
    )


def test_the_kit_holds_no_solution_and_no_oracle(kit: Path) -> None:
    with zipfile.ZipFile(kit) as archive:
        names = archive.namelist()
        sources = {n: archive.read(n).decode() for n in names if n.endswith(".py")}
    assert "attention-checker/autograder/rubrics/attention_bank.json.gz" in names
    assert "attention-checker/pyproject.toml" in names
    assert not [n for n in names if "solutions" in n or n.endswith("_oracle.py")]
    reference = (ROOT / "solutions" / "attention.py").read_text(encoding="utf-8")
    code = {
        line.strip()
        for line in reference.splitlines()
        if len(line.strip()) > 20 and not line.strip().startswith(("#", '"', "def ", "class "))
    }
    shipped = {line for line in code if any(line in text for text in sources.values())}
    assert shipped <= SHARED_LINES, shipped


def test_the_kit_is_reproducible(kit: Path, tmp_path: Path) -> None:
    build_kit(tmp_path / "again.zip")
    assert (tmp_path / "again.zip").read_bytes() == kit.read_bytes()


def test_the_kit_holds_every_input_the_grader_checks_publicly(kit: Path) -> None:
    """So a student who passes the kit passes the grader's public items (the kit checks more)."""
    rubric = load("attention")
    seen: dict[str, list[object]] = {}

    def watched(item: Item) -> Item:
        def check(session: Session, case: object) -> None:
            seen.setdefault(item.id, []).append(case)
            item.check(session, case)

        return dataclasses.replace(item, check=check)

    public = tuple(watched(item) for item in rubric.items if item.visibility == "visible")
    reference = (ROOT / "solutions" / "attention.py").read_text(encoding="utf-8")
    box, run = sandbox.start([reference])
    assert box is not None
    with box:
        outcomes = run_checks(Rubric("attention", "attention.ipynb", public), box, run)
    assert all(outcome.passed for outcome in outcomes)
    with zipfile.ZipFile(kit) as archive:
        bank = archive.read("attention-checker/autograder/rubrics/attention_bank.json.gz")
    _, banked = oracle.load_bank(bank)
    for item in public:
        in_bank = {oracle.digest("case", (case,)) for case in banked[item.id]}
        graded = {oracle.digest("case", (case,)) for case in seen[item.id]}
        assert len(graded) >= 50 and graded <= in_bank, item.id


def verdicts(report: str) -> list[str]:
    """The report's verdict and hint lines (the inputs shown may differ in their values)."""
    keep = ("Checked ", "  [PASS]", "  [FAIL]", "    Hint:", "  note:")
    return [line for line in report.splitlines() if line.startswith(keep)]


def test_installed_kit_checks_like_the_grader(student_python: Path, tmp_path: Path) -> None:
    where = run(student_python, "-c", "import autograder; print(autograder.__file__)", cwd=tmp_path)
    assert str(student_python.parent.parent) in where.stdout, where.stdout + where.stderr
    kit = run(student_python, "-m", "autograder", "check", str(EXAMPLE), cwd=tmp_path)
    assert kit.returncode == 0, kit.stderr
    grader = subprocess.run(
        [sys.executable, "-m", "autograder", "check", str(EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert verdicts(kit.stdout) == verdicts(grader.stdout), kit.stdout
    assert "3 of 5 public checks pass" in kit.stdout
    assert "without the 1/sqrt(d_k) scaling" in kit.stdout
    assert "Smallest failing input:\n      Q: (1, 2) float64, K: (2, 2) float64" in kit.stdout


KIT_MUTANTS = (
    "softmax-over-queries",
    "softmax-over-whole-matrix",
    "k-dot-t",
    "output-from-K",
    "causal-inverted",
    "head-dim-float",
    "merge-interleaves-heads",
    "queries-from-v-proj",
    "split-along-the-sequence",
    "float16-scores",
)


@pytest.mark.parametrize("mutant_id", KIT_MUTANTS)
def test_the_kit_gives_the_grader_s_hints_on_the_same_input(kit: Path, mutant_id: str) -> None:
    """On each public item's banked inputs, the kit's bank gives the very hints (named mistakes
    and facts alike) the live oracle gives: every question a hint asks, about the failing input
    and about its probe, was recorded."""
    from test_mutations import MUTANTS

    mutant = next(m for m in MUTANTS if m.id == mutant_id)
    with zipfile.ZipFile(kit) as archive:
        data = archive.read("attention-checker/autograder/rubrics/attention_bank.json.gz")
    answers, banked = oracle.load_bank(data)
    public = tuple(item for item in load("attention").items if item.id in banked)
    rubric = Rubric("attention", "attention.ipynb", public)
    kit_rubric = oracle_kit_rubric(rubric, banked)

    def outcomes(replay: bool) -> list[tuple[str, str, str, str]]:
        saved = dict(oracle._ACTIVE)
        if replay:
            oracle._ACTIVE["attention"] = oracle.Bank(answers)
        try:
            box, run_ = sandbox.start([mutant.source()])
            assert box is not None
            with box:
                found = run_checks(kit_rubric, box, run_)
        finally:
            oracle._ACTIVE.clear()
            oracle._ACTIVE.update(saved)
        return [
            (o.item_id, o.failure.summary, o.failure.hint, o.failure.mistake)
            for o in found
            if o.failure is not None
        ]

    graded = outcomes(replay=False)
    assert any(hint for _, _, hint, _ in graded), graded
    assert outcomes(replay=True) == graded


def test_installed_kit_says_not_implemented_for_the_stubs(
    student_python: Path, tmp_path: Path
) -> None:
    done = run(student_python, "-m", "autograder", "check", str(RELEASE), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "0 of 5 public checks pass" in done.stdout
    assert done.stdout.count("Not implemented yet") == 5
    assert "Traceback" not in done.stdout + done.stderr


def test_installed_kit_cannot_grade_or_reach_the_reference(
    student_python: Path, tmp_path: Path
) -> None:
    done = run(student_python, "-m", "autograder", "grade", str(EXAMPLE), cwd=tmp_path)
    assert done.returncode == 2
    assert "This is the student checker" in done.stderr and "check NOTEBOOK" in done.stderr
    probe = (
        "import importlib.util\n"
        "from autograder.reference import load_reference\n"
        "assert importlib.util.find_spec('autograder.rubrics.attention_oracle') is None\n"
        "try:\n"
        "    load_reference('attention')\n"
        "except Exception as error:\n"
        "    print(type(error).__name__)\n"
    )
    done = run(student_python, "-c", probe, cwd=tmp_path)
    assert done.stdout.strip() == "ConfigError", done.stdout + done.stderr
