"""Stage 1, reading a submission: a notebook (nbformat 4.x) or a plain .py file, as code cells.

Only the text of code cells is read here; nothing is compiled or executed in the grader's
process. IPython syntax (magics, shell escapes) is handled by the sandboxed child.
"""

from __future__ import annotations

import importlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from autograder.errors import SubmissionError

__all__ = ["MAX_BYTES", "Submission", "find_notebook", "read_submission"]

MAX_BYTES = 100 << 20
"""Largest submission file read (outputs included); larger ones are refused with a message."""


@dataclass(frozen=True)
class Submission:
    """The code of a submission, one string per code cell, in notebook order."""

    path: Path
    cells: tuple[str, ...]
    notes: tuple[str, ...] = ()
    """Things worth telling the student about the file itself (e.g. "no code cells")."""


def find_notebook(folder: Path, *, expected: str) -> Path:
    """Pick the submission in `folder`: the expected name, else the only notebook or .py file."""
    notebooks = sorted(p for p in folder.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    for candidate in notebooks:
        if candidate.name == expected:
            return candidate
    if len(notebooks) == 1:
        return notebooks[0]
    if notebooks:
        names = ", ".join(str(p.relative_to(folder)) for p in notebooks)
        raise SubmissionError(
            f"Found {len(notebooks)} notebooks in {folder}/ ({names}) and none named "
            f"{expected}: upload only your {expected}."
        )
    scripts = sorted(folder.rglob("*.py"))
    if len(scripts) == 1:
        return scripts[0]
    found = ", ".join(sorted(p.name for p in folder.iterdir())[:10]) or "nothing"
    raise SubmissionError(f"No notebook found in {folder}/ (found: {found}): upload {expected}.")


def read_submission(path: Path, *, expected: str = "submission.ipynb") -> Submission:
    """Read `path` (a notebook, a .py file, or a folder holding one) into code cells."""
    if not path.exists():
        raise SubmissionError(f"No file or folder at {path}: check the path and upload {expected}.")
    if path.is_dir():
        path = find_notebook(path, expected=expected)
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise SubmissionError(
            f"{path.name} is {size / 2**20:.0f} MB, over the {MAX_BYTES >> 20} MB limit: "
            "clear all outputs (Kernel > Restart & Clear Output), save and upload again."
        )
    raw = path.read_bytes()
    if not raw.strip():
        raise SubmissionError(
            f"{path.name} is empty ({size} bytes): save your work in Jupyter (File > Save) "
            f"and upload {expected} again."
        )
    if path.suffix == ".zip" or raw[:4] == b"PK\x03\x04":
        raise SubmissionError(
            f"{path.name} is a zip archive: upload the notebook itself ({expected}), not a zip."
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise SubmissionError(
            f"{path.name} is not UTF-8 text (byte {error.start} is not valid): "
            f"save it again from Jupyter and upload {expected}."
        ) from None
    if path.suffix == ".py":
        return Submission(path, (text,))
    return _read_notebook(path, text)


_UNUSED_FORMAT_CHECKERS = (
    "rfc3987_syntax",
    "rfc3987",
    "rfc3986_validator",
    "rfc3339_validator",
    "fqdn",
    "idna",
    "webcolors",
    "jsonpointer",
    "uri_template",
    "isoduration",
)
"""Optional packages jsonschema imports for its string-format checks. nbformat never asks for
format checking, yet importing them costs each grading process 0.07 s of CPU, and 2 s when
rfc3987-syntax is installed (Jupyter installs pull it in: it compiles a grammar at import)."""


def _import_nbformat() -> ModuleType:
    """Import nbformat without the format checkers it never uses; others may import them later."""
    blocked = [name for name in _UNUSED_FORMAT_CHECKERS if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]  # `import name` raises ImportError
    try:
        return importlib.import_module("nbformat")
    finally:
        for name in blocked:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]


def _read_notebook(path: Path, text: str) -> Submission:
    nbformat = _import_nbformat()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise SubmissionError(
            f"{path.name} is not a notebook: it is not valid JSON ({error.msg} at line "
            f"{error.lineno}). Download it again from Jupyter (File > Download) and re-upload."
        ) from None
    if not isinstance(data, dict) or ("cells" not in data and "worksheets" not in data):
        raise SubmissionError(
            f"{path.name} is JSON but not a Jupyter notebook (it has no cells): "
            "upload the .ipynb file you worked in."
        )
    version = data.get("nbformat")
    if version != 4:
        raise SubmissionError(
            f"{path.name} uses notebook format {version}; this grader reads format 4 "
            "(every Jupyter since 2015): open it in Jupyter, save it, and upload it again."
        )
    try:
        notebook = nbformat.from_dict(data)
        cells = notebook.cells
        sources = tuple(
            _source(cell.get("source", "")) for cell in cells if cell.get("cell_type") == "code"
        )
    except (AttributeError, TypeError) as error:
        raise SubmissionError(
            f"{path.name} has malformed cells ({error}): open it in Jupyter, save it, and "
            "upload it again."
        ) from None
    notes = () if sources else (f"{path.name} has no code cells: nothing of yours could run.",)
    return Submission(path, sources, notes)


def _source(value: object) -> str:
    if isinstance(value, list):
        return "".join(str(part) for part in value)
    return str(value)
