"""The README's two commands are the ones CI runs, so a newcomer's first steps stay true."""

from __future__ import annotations

import re

from conftest import ROOT


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Two commands on a fresh machine", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)\n```", section, flags=re.DOTALL)


def test_the_readme_gives_exactly_two_commands() -> None:
    commands = readme_commands()
    assert len(commands) == 2
    assert all("\n" not in command for command in commands)
    setup, tests = commands
    assert "python3 -m venv .venv" in setup and "autograder grade examples/" in setup
    assert tests.endswith("python -m pytest")


def test_ci_runs_the_readme_commands_verbatim_in_a_fresh_venv() -> None:
    lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    for command in readme_commands():
        assert command in lines, f"{command!r} is not a line of .ci/run"
    assert "rm -rf .venv" in lines
    assert lines.index("rm -rf .venv") < lines.index(readme_commands()[0])
