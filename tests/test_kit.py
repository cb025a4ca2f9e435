"""The student checker kit: built from the repository, installed with pip into a fresh venv as a
student would, it checks like the grader, holds nothing that computes the solution, and is no
answer key: the grader draws inputs it has never seen."""

from __future__ import annotations

import base64
import dataclasses
import gzip
import hashlib
import json
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import REFERENCE_SOURCE, ROOT, grade_code, install_kit
from test_mutations import MUTANTS

from autograder import sandbox
from autograder.catalog import find, kit_rubric, rubric_of
from autograder.checks import run_checks
from autograder.exercises.attention import EXERCISE as ATTENTION
from autograder.exercises.attention.cases import MhaCase, SdpaCase
from autograder.exercises.attention.rubric import _other_input, _other_instance
from autograder.kit import build_kit
from autograder.oracle import Bank, digest, load_bank
from autograder.rubric import Item
from autograder.sandbox import Session
from autograder.secret import load_secret
from autograder.settings import example_seed

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
    build_kit(out, exercise=ATTENTION)
    return out


BANK = "attention-checker/autograder/kit_bank.json.gz"
PUBLIC = tuple(item.id for item in rubric_of("attention").items if item.visibility == "visible")


@pytest.fixture(scope="module")
def student_python(kit: Path) -> Iterator[Path]:
    """A plain venv (no packages but pip) with the kit installed by pip, dependencies and all,
    from the package index this machine reaches, exactly as the kit's README tells students.
    pip's own cache is used, so the wheels are fetched once per machine."""
    python = install_kit(kit)
    venv = python.parent.parent
    probe = "import sys, numpy, hypothesis, nbformat; print(sys.prefix, numpy.__file__)"
    where = run(python, "-c", probe, cwd=kit.parent)
    assert where.stdout.split() == [str(venv), where.stdout.split()[1]], where.stderr
    assert where.stdout.split()[1].startswith(str(venv)), where.stdout  # the kit's own NumPy
    yield python


def run(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), *args], capture_output=True, text=True, timeout=300, cwd=cwd
    )


def test_the_kit_holds_no_solution_and_no_oracle(kit: Path) -> None:
    with zipfile.ZipFile(kit) as archive:
        names = archive.namelist()
        sources = {n: archive.read(n).decode() for n in names if n.endswith(".py")}
    assert BANK in names and "attention-checker/autograder/kit.json" in names
    assert "attention-checker/pyproject.toml" in names
    assert not [
        n
        for n in names
        if "solutions" in n or ".drawn." in n or n.endswith("/exercises/attention/oracle.py")
    ]
    assert not [n for n in names if "/exercises/kv_cache/" in n]  # one exercise per kit
    reference = (ROOT / "solutions" / "attention.py").read_text(encoding="utf-8")
    code = {
        line.strip()
        for line in reference.splitlines()
        if len(line.strip()) > 20 and not line.strip().startswith(("#", '"', "def ", "class "))
    }
    shipped = {line for line in code if any(line in text for text in sources.values())}
    assert shipped <= SHARED_LINES, shipped


def test_the_kit_is_reproducible(kit: Path, tmp_path: Path) -> None:
    build_kit(tmp_path / "again.zip", exercise=ATTENTION)
    assert (tmp_path / "again.zip").read_bytes() == kit.read_bytes()


def bank(kit: Path) -> tuple[dict[str, object], dict[str, list[object]]]:
    with zipfile.ZipFile(kit) as archive:
        return load_bank(archive.read(BANK), kinds=ATTENTION.cases)


def test_the_kit_holds_no_trace_of_the_grading_secret(kit: Path) -> None:
    secret = load_secret()
    seeds = [example_seed(secret, item.id) for item in rubric_of("attention").items]
    traces = {
        "secret (hex)": secret.hex().encode(),
        "secret (HEX)": secret.hex().upper().encode(),
        "secret (base64)": base64.b64encode(secret),
        "secret (bytes)": secret,
        **{f"seed {n}": str(n).encode() for n in seeds},
        **{f"seed {n:x}": f"{n:x}".encode() for n in seeds},
    }
    with zipfile.ZipFile(kit) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    assert not [name for name in files if name.endswith("grading_secret.txt")]
    files[BANK] = gzip.decompress(files[BANK])
    found = [
        (what, name) for name, data in files.items() for what, t in traces.items() if t in data
    ]
    assert found == []


def test_the_grader_draws_inputs_the_kit_never_saw(kit: Path) -> None:
    """The kit's bank is its own: of the grader's random examples for each public item, at most
    a few are in it (Hypothesis draws the simplest cases under any seed; the kit leaves out
    those it finds). Before, every one of them was. That the few left give nothing away is the
    lookup attack's test below."""
    rubric = rubric_of("attention")
    seen: dict[str, list[object]] = {}

    def watched(item: Item[Any]) -> Item[Any]:
        def check(session: Session, case: object) -> None:
            seen.setdefault(item.id, []).append(case)
            item.check(session, case)

        return dataclasses.replace(item, check=check)

    public = tuple(watched(item) for item in rubric.items if item.id in PUBLIC)
    with sandbox.started([REFERENCE_SOURCE]) as (box, run):
        assert box is not None
        outcomes = run_checks(rubric.with_items(public), box, run)
    assert all(outcome.passed for outcome in outcomes)
    _, banked = bank(kit)
    for item in public:
        if item.strategy is None:  # exhaustive cases only, public by nature
            continue
        explicit = {digest("case", (case,)) for case in item.cases}
        in_bank = {digest("case", (case,)) for case in banked[item.id]}
        drawn = {digest("case", (case,)) for case in seen[item.id]} - explicit
        assert len(drawn) >= 45, item.id
        assert len(drawn & in_bank) <= 5, item.id  # measured: 0 to 3 of 50
        assert explicit <= in_bank, item.id  # the exhaustive cases are public by nature


def _array_key(*arrays: np.ndarray | None) -> str:
    """How the attack below keys an input: its arrays' bytes (the same as in the sandbox)."""
    digest = hashlib.sha256()
    for array in arrays:
        if array is None:
            digest.update(b"none;")
        else:
            array = np.ascontiguousarray(array)
            digest.update(f"{array.dtype.str}{array.shape};".encode() + array.tobytes())
    return digest.hexdigest()


def _encoded(array: np.ndarray) -> list[object]:
    array = np.ascontiguousarray(array, dtype=np.float64)
    return [list(array.shape), base64.b64encode(array.tobytes()).decode()]


WRONG = (
    REFERENCE_SOURCE.replace(" / np.sqrt(d_k)", "").replace(  # no scaling
        "return self.out_proj(concat)", "return concat"
    )  # no output projection
)


def lookup_attack(kit: Path) -> str:
    """A submission that answers from the kit's bank, keyed by input bytes, and falls back to
    `WRONG` for inputs the bank does not hold."""
    answers, banked = bank(kit)
    table: dict[str, dict[str, object]] = {"sdpa": {}, "mha": {}}
    for cases in banked.values():
        for case in cases:
            if isinstance(case, SdpaCase):
                pair = answers[digest("sdpa", (case,))]
                assert isinstance(pair, tuple)
                output, weights = pair
                key = _array_key(case.Q, case.K, case.V, case.mask)
                table["sdpa"][key] = [_encoded(output), _encoded(weights)]
            elif isinstance(case, MhaCase):
                # The checks also call a second instance and the same one on another x (the
                # kit's code shows how those inputs are derived): bank their answers too.
                for asked in (case, _other_instance(case), _other_input(case)):
                    output = answers.get(digest("mha", (asked,)))
                    if not isinstance(output, np.ndarray):
                        continue
                    heads = np.array(asked.num_heads)
                    key = _array_key(asked.x, asked.weights["q_proj.weight"], heads, asked.mask)
                    table["mha"][key] = _encoded(output)
    assert len(table["sdpa"]) > 200 and len(table["mha"]) > 100
    packed = json.dumps(table)
    return f"""{WRONG}

import base64, hashlib, json
_TABLE = json.loads({packed!r})

def _key(*arrays):
    digest = hashlib.sha256()
    for array in arrays:
        if array is None:
            digest.update(b"none;")
        else:
            array = np.ascontiguousarray(array)
            digest.update(f"{{array.dtype.str}}{{array.shape}};".encode() + array.tobytes())
    return digest.hexdigest()

def _array(shape, data):
    return np.frombuffer(base64.b64decode(data), dtype=np.float64).reshape(shape).copy()

_wrong_sdpa = scaled_dot_product_attention

def scaled_dot_product_attention(Q, K, V, mask=None):
    hit = _TABLE["sdpa"].get(_key(Q, K, V, mask))
    if hit is not None:
        return _array(*hit[0]), _array(*hit[1])
    return _wrong_sdpa(Q, K, V, mask)

_wrong_forward = MultiHeadAttention.forward

def _forward(self, x, mask=None):
    hit = _TABLE["mha"].get(_key(x, self.q_proj.weight, np.array(self.num_heads), mask))
    if hit is not None:
        return _array(*hit)
    return _wrong_forward(self, x, mask)

MultiHeadAttention.forward = MultiHeadAttention.__call__ = _forward
"""


def test_the_lookup_attack_earns_nothing_from_the_grader(kit: Path) -> None:
    attack = lookup_attack(kit)
    # The attack is real: on the inputs the kit holds, it passes the checks it was built for.
    rubric = kit_rubric(rubric_of("attention"), bank(kit)[1])
    with sandbox.started([attack]) as (box, run):
        assert box is not None
        on_the_bank = run_checks(rubric, box, run, only=("sdpa_reference", "mha_forward"))
    assert [outcome.passed for outcome in on_the_bank] == [True, True]
    # The grader draws other inputs: the attack scores what its wrong fallback scores.
    wrong = grade_code(WRONG)
    looked_up = grade_code(attack)
    assert {i: r.score for i, r in looked_up.items()} == {i: r.score for i, r in wrong.items()}
    assert wrong["sdpa_reference"].score == wrong["mha_forward"].score == 0


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
    answers, banked = bank(kit)
    live = rubric_of("attention")
    public = live.with_items([item for item in live.items if item.id in banked])
    replayed = kit_rubric(public, banked)

    def outcomes(replay: bool) -> list[tuple[str, str, str, str]]:
        checked = replayed.with_oracle(Bank(answers)) if replay else replayed
        with sandbox.started([mutant.source()]) as (box, run_):
            assert box is not None
            found = run_checks(checked, box, run_)
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
        "from autograder import catalog\n"
        "assert importlib.util.find_spec('autograder.exercises.attention.oracle') is None\n"
        "try:\n"
        "    catalog.live_oracle(catalog.find('attention'))\n"
        "except Exception as error:\n"
        "    print(type(error).__name__)\n"
    )
    done = run(student_python, "-c", probe, cwd=tmp_path)
    assert done.stdout.strip() == "ConfigError", done.stdout + done.stderr


KIT_VERDICTS = """
import json, sys
from pathlib import Path
from autograder.pipeline import grade
from autograder.catalog import rubric_of

rubric = rubric_of("attention")
found = {}
for path in sorted(Path(sys.argv[1]).glob("*.py")):
    result = grade(path, rubric=rubric, public_only=True)
    found[path.stem] = {
        item.id: [item.passed, item.failure.summary if item.failure else ""]
        for item in result.items
    }
print(json.dumps(found))
"""


def test_installed_kit_agrees_with_the_grader_on_every_mutant(
    student_python: Path, tmp_path: Path
) -> None:
    """Every mistake of the mutation table fails the same public items in the kit (its own
    inputs) as in the grader (the course's): none slips through the kit's bank."""
    folder = tmp_path / "mutants"
    folder.mkdir()
    for mutant in MUTANTS:
        (folder / f"{mutant.id}.py").write_text(mutant.source(), encoding="utf-8")
    script = tmp_path / "verdicts.py"
    script.write_text(KIT_VERDICTS, encoding="utf-8")
    kit = subprocess.Popen(  # meanwhile, the grader grades the same mutants here
        [str(student_python), str(script), str(folder)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    grader = {
        mutant.id: {
            item: result.passed for item, result in grade_code(mutant.source(), only=PUBLIC).items()
        }
        for mutant in MUTANTS
    }
    out, err = kit.communicate(timeout=900)
    assert kit.returncode == 0, err
    found: dict[str, dict[str, tuple[bool, str]]] = json.loads(out)
    in_kit = {
        m: {item: passed for item, (passed, _) in items.items()} for m, items in found.items()
    }
    assert in_kit == grader
    failing_public = [m for m, items in grader.items() if not all(items.values())]
    assert len(failing_public) >= 20, failing_public
    unchecked = [
        (m, item)
        for m, items in found.items()
        for item, (_, summary) in items.items()
        if summary.startswith("Not checked")
    ]
    assert unchecked == []


def test_a_kv_cache_kit_checks_its_own_exercise_by_default(tmp_path: Path) -> None:
    """A kit built for another exercise runs that exercise when the student names none, with
    the grader's verdicts on the sample submission."""
    out = tmp_path / "kv_cache-checker.zip"
    build_kit(out, exercise=find("kv_cache"))
    with zipfile.ZipFile(out) as archive:
        names = archive.namelist()
    assert "kv_cache-checker/autograder/kit_bank.json.gz" in names
    assert not any(name.endswith("kv_cache/oracle.py") or "/attention/" in name for name in names)
    assert "kv_cache-checker/autograder/exercises/kv_cache/rubric.py" in names
    python = install_kit(out)
    example = ROOT / "examples" / "kv_cache.ipynb"
    kit = run(python, "-m", "autograder", "check", str(example), cwd=tmp_path)
    assert kit.returncode == 0, kit.stderr
    grader = subprocess.run(
        [sys.executable, "-m", "autograder", "check", str(example), "--exercise", "kv_cache"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert verdicts(kit.stdout) == verdicts(grader.stdout), kit.stdout
    assert "Checked kv_cache.ipynb: 5 of 6 public checks pass." in kit.stdout, kit.stdout
