"""Reading submissions: notebooks, .py files and folders; clear errors for everything else."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest

from autograder.errors import SubmissionError
from autograder.submission import read_regular, read_submission


def notebook(*cells: str, markdown: str = "# Title", minor: int = 5) -> str:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(markdown)]
    nb.cells += [nbformat.v4.new_code_cell(source) for source in cells]
    nb.nbformat_minor = minor
    return str(nbformat.writes(nb))


def test_reads_code_cells_in_order(tmp_path: Path) -> None:
    path = tmp_path / "attention.ipynb"
    path.write_text(notebook("x = 1", "%time y = 2\nprint(x)"), encoding="utf-8")
    submission = read_submission(path)
    assert submission.cells == ("x = 1", "%time y = 2\nprint(x)")
    assert submission.notes == ()


@pytest.mark.parametrize("minor", [0, 2, 4, 5])
def test_any_nbformat_4_minor_is_read(tmp_path: Path, minor: int) -> None:
    path = tmp_path / "a.ipynb"
    path.write_text(notebook("z = 3", minor=minor), encoding="utf-8")
    assert read_submission(path).cells == ("z = 3",)


def test_source_as_list_of_lines_is_joined(tmp_path: Path) -> None:
    data = json.loads(notebook("unused"))
    data["cells"][1]["source"] = ["a = 1\n", "b = 2"]
    path = tmp_path / "a.ipynb"
    path.write_text(json.dumps(data), encoding="utf-8")
    assert read_submission(path).cells == ("a = 1\nb = 2",)


def test_reads_a_python_file(tmp_path: Path) -> None:
    path = tmp_path / "attention.py"
    path.write_text("def f():\n    return 1\n", encoding="utf-8")
    assert read_submission(path).cells == ("def f():\n    return 1\n",)


def test_notebook_without_code_cells_gets_a_note(tmp_path: Path) -> None:
    path = tmp_path / "attention.ipynb"
    path.write_text(notebook(), encoding="utf-8")
    submission = read_submission(path)
    assert submission.cells == ()
    assert "no code cells" in submission.notes[0]


def test_notebook_without_any_cell_gets_a_note(tmp_path: Path) -> None:
    path = tmp_path / "attention.ipynb"
    path.write_text(nbformat.writes(nbformat.v4.new_notebook()), encoding="utf-8")
    submission = read_submission(path)
    assert submission.cells == ()
    assert submission.notes == ("attention.ipynb has no code cells: nothing of yours could run.",)


def test_folder_prefers_the_expected_name(tmp_path: Path) -> None:
    (tmp_path / "notes.ipynb").write_text(notebook("a = 1"), encoding="utf-8")
    (tmp_path / "attention.ipynb").write_text(notebook("b = 2"), encoding="utf-8")
    submission = read_submission(tmp_path, expected="attention.ipynb")
    assert submission.path.name == "attention.ipynb"


def test_folder_with_one_notebook_of_any_name(tmp_path: Path) -> None:
    (tmp_path / "my work (1).ipynb").write_text(notebook("a = 1"), encoding="utf-8")
    checkpoints = tmp_path / ".ipynb_checkpoints"
    checkpoints.mkdir()
    (checkpoints / "old-checkpoint.ipynb").write_text(notebook("old"), encoding="utf-8")
    assert read_submission(tmp_path, expected="attention.ipynb").cells == ("a = 1",)


def _write(name: str, content: bytes) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / name
        path.write_bytes(content)
        return path

    return make


def _several(folder: Path) -> Path:
    for name in ("a.ipynb", "b.ipynb"):
        (folder / name).write_text(notebook("x = 1"), encoding="utf-8")
    return folder


def _empty_folder(folder: Path) -> Path:
    (folder / "readme.txt").write_text("hello", encoding="utf-8")
    return folder


V3 = json.dumps({"nbformat": 3, "nbformat_minor": 0, "worksheets": [], "metadata": {}}).encode()

BAD = [
    ("missing", lambda folder: folder / "nope.ipynb", "No file or folder at"),
    ("empty-file", _write("attention.ipynb", b""), "is empty"),
    ("blank-py-file", _write("attention.py", b"\n  \n"), "is empty"),
    ("several-notebooks", _several, "Found 2 notebooks"),
    ("no-notebook", _empty_folder, "No notebook found"),
    ("not-json", _write("a.ipynb", b"{not json"), "not valid JSON"),
    ("json-not-notebook", _write("a.ipynb", b'{"hello": 1}'), "not a Jupyter notebook"),
    ("json-list", _write("a.ipynb", b"[1, 2]"), "not a Jupyter notebook"),
    ("nbformat-3", _write("a.ipynb", V3), "format 3"),
    ("not-utf8", _write("a.ipynb", b'{"cells": "\xff\xfe"}'), "not UTF-8"),
    ("zip", _write("attention.zip", b"PK\x03\x04rest"), "zip archive"),
    ("bad-cells", _write("a.ipynb", b'{"nbformat": 4, "cells": [1, 2]}'), "malformed cells"),
    (
        "cells-not-a-list",
        _write("a.ipynb", b'{"nbformat": 4, "cells": "x"}'),
        'no list of cells (its "cells" is a str)',
    ),
    (
        "v4-worksheets",
        _write("a.ipynb", b'{"nbformat": 4, "worksheets": []}'),
        'no list of cells (it has no "cells")',
    ),
]


@pytest.mark.parametrize(("make", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_submissions_get_a_clear_error(
    tmp_path: Path, make: Callable[[Path], Path], message: str
) -> None:
    with pytest.raises(SubmissionError, match=re.escape(message)) as raised:
        read_submission(make(tmp_path), expected="attention.ipynb")
    assert (
        "attention.ipynb" in str(raised.value)
        or "upload" in str(raised.value).lower()
        or ("again" in str(raised.value))
    )


def test_notebook_with_50_mb_of_outputs_is_read(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x = 1")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="y" * (50 << 20))]
    nb.cells = [cell, nbformat.v4.new_code_cell("z = 2")]
    path = tmp_path / "attention.ipynb"
    path.write_text(nbformat.writes(nb), encoding="utf-8")
    assert path.stat().st_size > 50 << 20
    assert read_submission(path).cells == ("x = 1", "z = 2")


def test_reading_a_notebook_loads_neither_nbformat_nor_jsonschema(tmp_path: Path) -> None:
    """The grader reads a notebook's code cells from its JSON: a grade pays for no import of
    nbformat, jsonschema or the format checkers they pull in (0.07 s of CPU or more)."""
    path = tmp_path / "attention.ipynb"
    path.write_text(notebook("x = 1"), encoding="utf-8")
    probe = (
        "import sys\n"
        "from pathlib import Path\n"
        "from autograder.submission import read_submission\n"
        f"print(read_submission(Path({str(path)!r})).cells)\n"
        "print(sorted(m for m in ('nbformat', 'jsonschema', 'fastjsonschema') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["('x = 1',)", "[]"]


def _within(seconds: float, action: Callable[[], object]) -> BaseException | object:
    """Run `action` in a thread; fail (instead of hanging) when it takes over `seconds`."""
    box: list[object] = []

    def target() -> None:
        try:
            box.append(action())
        except BaseException as error:  # handed back to the test
            box.append(error)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert box, f"reading did not finish within {seconds} s"
    return box[0]


def _secret(folder: Path) -> Path:
    secret = folder / "secret"
    secret.mkdir()
    (secret / "attention.ipynb").write_text(notebook("SOLUTION = 1"), encoding="utf-8")
    (secret / "attention.py").write_text("SOLUTION = 1\n", encoding="utf-8")
    return secret


def _link(name: str, target: Callable[[Path], Path | str]) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        path = folder / "upload" / name
        path.parent.mkdir()
        path.symlink_to(target(folder))
        return path

    return make


def _fifo(folder: Path) -> Path:
    path = folder / "attention.ipynb"
    os.mkfifo(path)
    return path


def _socket(folder: Path) -> Path:
    path = folder / "attention.ipynb"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.close()
    return path


def _in_folder(make: Callable[[Path], Path]) -> Callable[[Path], Path]:
    def folder_of(folder: Path) -> Path:
        return make(folder).parent

    return folder_of


def _linked_folder(folder: Path) -> Path:
    upload = folder / "upload"
    upload.mkdir()
    (upload / "work").symlink_to(_secret(folder), target_is_directory=True)
    return upload


def _nested(depth: int) -> Callable[[Path], Path]:
    def make(folder: Path) -> Path:
        data = json.loads(notebook("x = 1"))
        metadata: dict[str, object] = {}
        data["cells"][1]["metadata"] = metadata
        for _ in range(depth):
            metadata["a"] = metadata = {}
        path = folder / "attention.ipynb"
        path.write_text(json.dumps(data), encoding="utf-8")
        return path

    return make


def _deep_lists(folder: Path) -> Path:
    path = folder / "attention.ipynb"
    path.write_bytes(b'{"nbformat": 4, "cells": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    return path


HOSTILE = [
    (
        "link-to-reference",
        _link("attention.ipynb", lambda f: _secret(f) / "attention.ipynb"),
        "attention.ipynb is a symbolic link (to ",
    ),
    (
        "link-to-reference-py",
        _link("attention.py", lambda f: _secret(f) / "attention.py"),
        "attention.py is a symbolic link",
    ),
    (
        "link-to-dev-zero",
        _link("attention.ipynb", lambda f: "/dev/zero"),
        "attention.ipynb is a symbolic link (to /dev/zero)",
    ),
    ("dangling-link", _link("attention.ipynb", lambda f: f / "gone"), "is a symbolic link"),
    ("fifo", _fifo, "attention.ipynb is a named pipe (FIFO)"),
    ("socket", _socket, "attention.ipynb is a socket"),
    (
        "link-in-folder",
        _in_folder(_link("attention.ipynb", lambda f: "/dev/zero")),
        "attention.ipynb is a symbolic link (to /dev/zero)",
    ),
    ("fifo-in-folder", _in_folder(_fifo), "attention.ipynb is a named pipe (FIFO)"),
    ("folder-is-a-link", _link("course", lambda f: _secret(f)), "course is a symbolic link"),
    ("link-to-a-folder-inside", _linked_folder, "No notebook found"),
    ("json-100000-deep", _deep_lists, "nests more than 100 levels deep"),
    ("json-900-deep-for-nbformat", _nested(900), "nests more than 100 levels deep"),
]


@pytest.mark.parametrize(("make", "message"), [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
def test_hostile_files_are_refused_by_name_with_the_reason(
    tmp_path: Path, make: Callable[[Path], Path], message: str
) -> None:
    path = make(tmp_path)
    raised = _within(10, lambda: read_submission(path, expected="attention.ipynb"))
    assert isinstance(raised, SubmissionError), raised
    assert message in str(raised)


def test_a_notebook_nested_50_deep_is_still_read(tmp_path: Path) -> None:
    assert read_submission(_nested(50)(tmp_path)).cells == ("x = 1",)


def test_the_size_limit_holds_while_reading(tmp_path: Path) -> None:
    """/proc files claim size 0: the limit must be counted on what is read, not on stat."""
    assert os.lstat("/proc/self/maps").st_size == 0
    with pytest.raises(SubmissionError, match="over the 0 MB limit"):
        read_regular(Path("/proc/self/maps"), limit=16)
    big = tmp_path / "big.py"
    big.write_bytes(b"#" * 100)
    with pytest.raises(SubmissionError, match=r"big\.py is 0 MB or more, over"):
        read_regular(big, limit=99)
    assert read_regular(big, limit=100) == b"#" * 100


def test_a_notebook_too_big_to_parse_is_refused_not_fatal(tmp_path: Path) -> None:
    """90 MB of tiny JSON values need gigabytes as Python objects: under a memory limit the
    reader refuses the file with a message instead of dying."""
    path = tmp_path / "attention.ipynb"
    with path.open("wb") as stream:
        stream.write(b'{"nbformat": 4, "cells": [], "metadata": {"x": [0')
        stream.write(b",0" * (45 << 20))
        stream.write(b"]}}")
    probe = (
        "import resource, sys\n"
        "from pathlib import Path\n"
        "from autograder.errors import SubmissionError\n"
        "from autograder.submission import read_submission\n"
        "used = int(open('/proc/self/statm').read().split()[0]) * resource.getpagesize()\n"
        "resource.setrlimit(resource.RLIMIT_AS, (used + (400 << 20),) * 2)\n"
        "try:\n"
        "    read_submission(Path(sys.argv[1]))\n"
        "except SubmissionError as error:\n"
        "    print(error)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "holds more JSON values than the grader can read" in done.stdout
