"""Shared helpers: grade a piece of code as a submission through the real pipeline; install a
student kit as a student does; set up a Gradescope zip as Gradescope does."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from autograder import sandbox
from autograder.catalog import rubric_of
from autograder.checks import run_checks
from autograder.scoring import ItemResult, score
from autograder.settings import LIMITS, Limits

ROOT = Path(__file__).resolve().parent.parent
RUBRIC = rubric_of("attention")
REFERENCE_SOURCE = (ROOT / "solutions" / "attention.py").read_text(encoding="utf-8")
SCHEMA = json.loads((ROOT / "tests" / "gradescope_results.schema.json").read_text())
"""Gradescope's results.json format."""


def grade_code(
    cells: str | Sequence[str], *, only: Sequence[str] = (), limits: Limits = LIMITS
) -> dict[str, ItemResult]:
    """Grade `cells` (one source string, or one per notebook cell) on the attention rubric.

    Runs the real sandbox and checks; `only` restricts the run to some item ids.
    """
    sources = [cells] if isinstance(cells, str) else list(cells)
    with sandbox.started(sources, limits=limits) as (box, run):
        outcomes = run_checks(
            RUBRIC, box, run, limits=limits, deadline=time.monotonic() + 600, only=only
        )
    return {item.id: item for item in score(RUBRIC, outcomes)}


def install_kit(kit: Path) -> Path:
    """A fresh venv with nothing but pip, and the kit installed into it by pip, dependencies
    and all, from the package index this machine reaches, exactly as the kit's README tells
    students (pip's own cache is used, so wheels are fetched once per machine). Its python."""
    venv = kit.parent / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(kit)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return python


def gradescope_env(root: Path) -> dict[str, str]:
    """The environment the zip's scripts run in, with `root` standing for /autograder."""
    return {**os.environ, "AUTOGRADER_ROOT": str(root), "AUTOGRADER_PYTHON": sys.executable}


def run_autograder(root: Path, files: dict[str, bytes]) -> dict[str, Any]:
    """Submit `files` (name -> bytes) to the zip set up in `root` and run its run_autograder
    as Gradescope does; the results.json it wrote, checked against Gradescope's schema."""
    import jsonschema

    for folder in ("submission", "results"):
        shutil.rmtree(root / folder, ignore_errors=True)
    (root / "submission").mkdir()
    for name, data in files.items():
        (root / "submission" / name).write_bytes(data)
    done = subprocess.run(
        [str(root / "run_autograder")],
        cwd=root,
        env=gradescope_env(root),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    document: dict[str, Any] = json.loads(
        (root / "results" / "results.json").read_text(encoding="utf-8")
    )
    jsonschema.validate(document, SCHEMA)
    return document


def set_up_zip(archive: Path, root: Path) -> Path:
    """`root` laid out as Gradescope's /autograder, with `archive` unpacked into `root/source`
    and its setup.sh run, as Gradescope builds the image. Returns `root`."""
    source = root / "source"
    source.mkdir(parents=True)
    with zipfile.ZipFile(archive) as unpacking:
        unpacking.extractall(source)
    for script in ("setup.sh", "run_autograder"):
        (source / script).chmod(0o755)
    shutil.copy2(source / "run_autograder", root / "run_autograder")
    done = subprocess.run(
        ["bash", str(source / "setup.sh")],
        cwd=source,
        env=gradescope_env(root),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "autograder setup done" in done.stdout
    return root


@pytest.fixture(scope="session")
def reference_source() -> str:
    return REFERENCE_SOURCE
