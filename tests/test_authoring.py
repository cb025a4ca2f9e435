"""docs/AUTHORING.md does not drift from the exercise it writes (tests/exercises/softmax): its
excerpts are verbatim in the files they name, its commands parse, its sample output is what the
grader prints."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from conftest import ROOT

from autograder.cli import _parser

DOC = ROOT / "docs" / "AUTHORING.md"
BLOCK = re.compile(r"<!-- (excerpt|output): (.+?) -->\n```\w*\n(.*?)\n```", re.DOTALL)
KEY_FILES = (
    "tests/exercises/softmax/pyproject.toml",
    "tests/exercises/softmax/solutions/softmax.py",
    "tests/exercises/softmax/source/softmax/softmax.ipynb",
    "tests/exercises/softmax/softmax_exercise/__init__.py",
    "tests/exercises/softmax/softmax_exercise/oracle.py",
    "tests/exercises/softmax/softmax_exercise/rubric.py",
    "tests/exercises/softmax/softmax_exercise/strategies.py",
)


def blocks(kind: str) -> list[tuple[str, str]]:
    """(what the marker names, the block's text) for every block marked `kind`."""
    text = DOC.read_text(encoding="utf-8")
    return [(where, body) for found, where, body in BLOCK.findall(text) if found == kind]


def sources(path: Path) -> list[str]:
    """The file's text, or each code cell's source for a notebook."""
    if path.suffix == ".ipynb":
        return [cell.source for cell in nbformat.read(str(path), as_version=4).cells]
    return [path.read_text(encoding="utf-8")]


@pytest.mark.parametrize(("path", "body"), blocks("excerpt"), ids=lambda v: v[-40:])
def test_every_excerpt_is_verbatim_in_its_file(path: str, body: str) -> None:
    assert (ROOT / path).is_file(), f"AUTHORING.md quotes {path}, which does not exist"
    assert any(body in text for text in sources(ROOT / path)), (
        f"An excerpt of {path} in docs/AUTHORING.md no longer matches the file: copy the "
        f"current lines into the document.\n{body}"
    )


def test_the_key_files_are_all_shown_and_every_code_block_is_marked() -> None:
    assert {path for path, _ in blocks("excerpt")} == set(KEY_FILES)
    text = DOC.read_text(encoding="utf-8")
    python_blocks = text.count("```python\n") + text.count("```toml\n")
    assert python_blocks == len(blocks("excerpt")), "every Python/TOML block names its file"


def commands() -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    shell = re.findall(r"```bash\n(.*?)\n```", text, re.DOTALL)
    lines = [line.split("  #")[0].strip() for block in shell for line in block.splitlines()]
    return [line for line in lines if line.startswith("python -m autograder ")]


def test_every_autograder_command_in_the_tutorial_parses() -> None:
    found = commands()
    subcommands = {shlex.split(line)[3] for line in found}
    assert subcommands == {"grade", "check", "student-kit", "gradescope", "batch"}
    for line in found:
        _parser().parse_args(shlex.split(line)[3:])  # exits (fails the test) on a bad option


@pytest.mark.slow
@pytest.mark.parametrize(("command", "body"), blocks("output"))
def test_the_sample_output_is_what_the_grader_prints(
    command: str, body: str, tmp_path: Path
) -> None:
    argv = shlex.split(command)
    assert argv[:3] == ["python", "-m", "autograder"]
    done = subprocess.run(
        [sys.executable, *argv[1:], "--results", str(tmp_path / "results.json")],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env=dict(os.environ),
    )
    assert done.returncode == 0, done.stderr
    assert body in done.stdout, done.stdout
