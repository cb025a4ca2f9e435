"""Stage 1, reading a submission: a notebook (nbformat 4.x) or a plain .py file, as code cells.

Only the text of code cells is read here; nothing is compiled or executed in the grader's
process. IPython syntax (magics, shell escapes) is handled by the sandboxed child.

The grader may run as root, and a submission may be a zip or git upload carrying links, so only
regular files are read: a symbolic link (to the reference, to /dev/zero), a FIFO, a device or a
socket is refused with its name and the reason, never followed or opened for reading (checked
with lstat, opened with O_NOFOLLOW and O_NONBLOCK, and checked again on the open file), and the
size limit is enforced while reading. Folders are searched without following links.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from autograder.errors import SubmissionError

__all__ = [
    "MAX_BYTES",
    "MAX_NESTING",
    "Submission",
    "find_notebook",
    "read_regular",
    "read_submission",
    "refusal",
]

MAX_BYTES = 100 << 20
"""Largest submission file read (outputs included); larger ones are refused with a message."""

MAX_NESTING = 100
"""Deepest nesting of JSON a notebook may have (real ones stay under 20); deeper is refused,
before anything recursive (the JSON parser, nbformat) could overflow the stack."""

_KINDS = {
    stat.S_IFLNK: "a symbolic link",
    stat.S_IFIFO: "a named pipe (FIFO)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a folder",
}


def refusal(path: Path, info: os.stat_result) -> str:
    """Why `path` (with lstat result `info`) is not read, or "" for a regular file."""
    if stat.S_ISREG(info.st_mode):
        return ""
    kind = _KINDS.get(stat.S_IFMT(info.st_mode), "not a regular file")
    if stat.S_ISLNK(info.st_mode):
        try:
            kind += f" (to {os.readlink(path)[:200]})"
        except OSError:
            pass
    return (
        f"{path.name} is {kind}, and the grader reads only regular files: upload the file "
        "itself (File > Download in Jupyter), not a link or a special file."
    )


def read_regular(path: Path, *, limit: int = MAX_BYTES) -> bytes:
    """The bytes of the regular file at `path`, never following a link; at most `limit` bytes.

    Raises `SubmissionError` naming the file and the reason for anything else: a link, a
    FIFO or device, a file over `limit` (even one that grows while it is read), or an error."""
    try:
        info = os.lstat(path)
        why = refusal(path, info)
        if why:
            raise SubmissionError(why)
        if info.st_size > limit:
            raise SubmissionError(_too_big(path, info.st_size, limit))
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
        descriptor = os.open(path, flags)
        try:
            opened = os.fstat(descriptor)
            if (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino) or refusal(
                path, opened
            ):
                raise SubmissionError(
                    f"{path.name} changed while it was being read: upload it again."
                )
            chunks, size = [], 0
            while chunk := os.read(descriptor, min(1 << 20, limit + 1 - size)):
                chunks.append(chunk)
                size += len(chunk)
                if size > limit:
                    raise SubmissionError(_too_big(path, size, limit))
        finally:
            os.close(descriptor)
    except OSError as error:
        raise SubmissionError(
            f"{path.name} cannot be read ({error.strerror or error}): upload it again."
        ) from None
    return b"".join(chunks)


def _too_big(path: Path, size: int, limit: int) -> str:
    return (
        f"{path.name} is {size / 2**20:.0f} MB or more, over the {limit >> 20} MB limit: "
        "clear all outputs (Kernel > Restart & Clear Output), save and upload again."
    )


@dataclass(frozen=True)
class Submission:
    """The code of a submission, one string per code cell, in notebook order."""

    path: Path
    cells: tuple[str, ...]
    notes: tuple[str, ...] = ()
    """Things worth telling the student about the file itself (e.g. "no code cells")."""


def _files(folder: Path, suffix: str) -> list[Path]:
    """Everything under `folder` named `*suffix` that is not a folder, without following links
    into other folders (a link or FIFO is listed, to be refused by name when it is read)."""
    found = []
    for root, folders, names in os.walk(folder, followlinks=False):
        folders[:] = sorted(name for name in folders if name != ".ipynb_checkpoints")
        found += [Path(root) / name for name in names if name.endswith(suffix)]
        found += [
            Path(root) / name
            for name in folders
            if name.endswith(suffix) and os.path.islink(Path(root) / name)
        ]
    return sorted(found)


def find_notebook(folder: Path, *, expected: str) -> Path:
    """Pick the submission in `folder`: the expected name, else the only notebook or .py file."""
    notebooks = _files(folder, ".ipynb")
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
    scripts = _files(folder, ".py")
    if len(scripts) == 1:
        return scripts[0]
    found = ", ".join(sorted(p.name for p in folder.iterdir())[:10]) or "nothing"
    raise SubmissionError(f"No notebook found in {folder}/ (found: {found}): upload {expected}.")


def read_submission(path: Path, *, expected: str = "submission.ipynb") -> Submission:
    """Read `path` (a notebook, a .py file, or a folder holding one) into code cells.

    Raises `SubmissionError`, and nothing else, for whatever the files are or hold."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise SubmissionError(
            f"No file or folder at {path}: check the path and upload {expected}."
        ) from None
    except OSError as error:
        raise SubmissionError(f"{path} cannot be read ({error.strerror}): check it.") from None
    if stat.S_ISDIR(info.st_mode):
        try:
            path = find_notebook(path, expected=expected)
        except OSError as error:
            raise SubmissionError(
                f"The folder {path.name} cannot be searched ({error.strerror}): upload "
                f"{expected} again."
            ) from None
    raw = read_regular(path)
    if not raw.strip():
        raise SubmissionError(
            f"{path.name} is empty ({len(raw)} bytes): save your work in Jupyter (File > Save) "
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


def _read_notebook(path: Path, text: str) -> Submission:
    """The code cells of a format-4 notebook, read from its JSON as nbformat writes it (the
    grader needs nothing else of nbformat: importing it cost every grade 0.07 s of CPU)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise SubmissionError(
            f"{path.name} is not a notebook: it is not valid JSON ({error.msg} at line "
            f"{error.lineno}). Download it again from Jupyter (File > Download) and re-upload."
        ) from None
    except RecursionError:
        raise SubmissionError(_too_deep(path)) from None
    except MemoryError:
        raise SubmissionError(
            f"{path.name} holds more JSON values than the grader can read: clear all outputs "
            "(Kernel > Restart & Clear Output), save and upload again."
        ) from None
    if _nesting(data) > MAX_NESTING:
        raise SubmissionError(_too_deep(path))
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
    cells = data.get("cells")
    if not isinstance(cells, list):
        raise SubmissionError(
            f"{path.name} has no list of cells ({_what_cells(data)}): open it in Jupyter, "
            "save it, and upload it again."
        )
    try:
        sources = tuple(
            _source(cell.get("source", "")) for cell in cells if cell.get("cell_type") == "code"
        )
    except RecursionError:
        raise SubmissionError(_too_deep(path)) from None
    except (AttributeError, TypeError, ValueError, KeyError) as error:
        raise SubmissionError(
            f"{path.name} has malformed cells ({error}): open it in Jupyter, save it, and "
            "upload it again."
        ) from None
    notes = () if sources else (f"{path.name} has no code cells: nothing of yours could run.",)
    return Submission(path, sources, notes)


def _nesting(data: object) -> int:
    """How deeply `data` nests lists and objects (iteratively: no recursion to overflow);
    stops counting once past `MAX_NESTING`."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            deepest = max(deepest, depth)
            if deepest > MAX_NESTING:
                return deepest
            children = node.values() if isinstance(node, dict) else node
            stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return deepest


def _too_deep(path: Path) -> str:
    return (
        f"{path.name} is not a notebook Jupyter saves: its JSON nests more than {MAX_NESTING} "
        "levels deep. Open your work in Jupyter, save it, and upload the notebook again."
    )


def _what_cells(data: dict[str, object]) -> str:
    """What a notebook holds instead of a list of cells, in words."""
    if "cells" not in data:
        return 'it has no "cells"'
    return f'its "cells" is a {type(data["cells"]).__name__}'


def _source(value: object) -> str:
    if isinstance(value, list):
        return "".join(str(part) for part in value)
    return str(value)
