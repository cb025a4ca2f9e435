"""The course's grading secret: one file beside the reference, created once, read strictly."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from autograder.errors import ConfigError
from autograder.secret import ensure_secret, load_secret, secret_path

HEX = "0123456789abcdef" * 4


@pytest.fixture
def solutions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A course whose solutions folder (and so its secret) is a temporary one."""
    monkeypatch.setenv("AUTOGRADER_SOLUTIONS", str(tmp_path / "solutions"))
    return tmp_path / "solutions"


def test_the_secret_lives_beside_the_reference(solutions: Path) -> None:
    assert secret_path() == solutions / "grading_secret.txt"


def test_ensure_creates_a_private_secret_once(solutions: Path) -> None:
    path = ensure_secret()
    first = path.read_bytes()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(load_secret()) == 32
    assert ensure_secret() == path and path.read_bytes() == first  # kept, not replaced
    assert sorted(p.name for p in solutions.iterdir()) == ["grading_secret.txt"]


def test_two_courses_get_different_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    found = []
    for course in ("a", "b"):
        monkeypatch.setenv("AUTOGRADER_SOLUTIONS", str(tmp_path / course))
        ensure_secret()
        found.append(load_secret())
    assert found[0] != found[1]


def test_comments_and_blank_lines_are_ignored(solutions: Path) -> None:
    solutions.mkdir()
    (solutions / "grading_secret.txt").write_text(f"# a note\n\n  {HEX}  \n# another\n")
    assert load_secret() == bytes.fromhex(HEX)


BAD = {
    "not-hex": ("zz" * 32, "not one line of at least 32 hex digits"),
    "too-short": ("ab" * 8, "not one line of at least 32 hex digits"),
    "two-values": (f"{HEX}\n{HEX}", "not one line of at least 32 hex digits"),
    "only-comments": ("# nothing here\n", "not one line of at least 32 hex digits"),
}


@pytest.mark.parametrize(("text", "message"), BAD.values(), ids=BAD.keys())
def test_a_damaged_secret_is_a_clear_error(solutions: Path, text: str, message: str) -> None:
    solutions.mkdir()
    (solutions / "grading_secret.txt").write_text(text)
    for read in (load_secret, ensure_secret):
        with pytest.raises(ConfigError, match=message) as error:
            read()
        assert str(solutions / "grading_secret.txt") in str(error.value)
        assert "delete the file to make a new one" in str(error.value)
    assert (solutions / "grading_secret.txt").read_text() == text  # never overwritten


def test_a_missing_secret_says_which_command_makes_one(solutions: Path) -> None:
    with pytest.raises(ConfigError, match="No grading secret at") as error:
        load_secret()
    assert "python -m autograder gradescope" in str(error.value)
    assert not solutions.exists()  # reading never creates one
