"""The oracle: everything a rubric's checks know about right (and typical wrong) answers.

Checks never compute an expected value themselves: they ask the oracle by name, e.g.
`ask("attention", "sdpa", case)`. There are two kinds of oracle:

* **Live**, in the grader: `autograder.rubrics.<exercise>_oracle` computes answers from the
  reference solution in `solutions/` (and the known wrong variants that name mistakes).
* **Replay**, in the student checker kit (`kit.py`), which carries neither the reference nor the
  oracle module: a bank of answers the instructor recorded for the public checks' inputs. The
  same checks run on the same inputs and find their answers there; an input the bank does not
  hold raises `BankMiss`, and the check skips it.

A bank is gzip-compressed JSON: arrays travel as dtype, shape and base64 bytes; cases (frozen
dataclasses of the exercise's strategies module) as their class name and fields. Nothing in it
is pickled or executed.
"""

from __future__ import annotations

import base64
import dataclasses
import gzip
import hashlib
import importlib
import importlib.util
import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from autograder.errors import ConfigError, GraderError

__all__ = [
    "Bank",
    "BankMiss",
    "Oracle",
    "ask",
    "bank_path",
    "banked_cases",
    "digest",
    "dump_bank",
    "is_kit",
    "load_bank",
    "recording",
]

_RUBRICS = "autograder.rubrics"


class BankMiss(GraderError):
    """The student kit's bank holds no answer for this question (an input it was not built for)."""


def _canonical(value: object, out: hashlib._Hash) -> None:
    """Feed a stable description of `value` into `out` (the same on every machine)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        out.update(f"{type(value).__name__}:{value!r};".encode())
    elif isinstance(value, np.ndarray):
        array = np.ascontiguousarray(value)
        out.update(f"array:{array.dtype.str}:{array.shape};".encode())
        out.update(array.tobytes())
    elif isinstance(value, np.generic):
        _canonical(np.asarray(value), out)
    elif isinstance(value, (tuple, list)):
        out.update(f"{type(value).__name__}:{len(value)}[".encode())
        for item in value:
            _canonical(item, out)
        out.update(b"]")
    elif isinstance(value, Mapping):
        out.update(f"dict:{len(value)}{{".encode())
        for key in sorted(value):
            _canonical(key, out)
            _canonical(value[key], out)
        out.update(b"}")
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        out.update(f"case:{type(value).__qualname__}(".encode())
        for item in dataclasses.fields(value):
            _canonical(item.name, out)
            _canonical(getattr(value, item.name), out)
        out.update(b")")
    else:
        raise ConfigError(f"The oracle cannot key an argument of type {type(value).__name__}.")


def digest(name: str, args: tuple[object, ...]) -> str:
    """The key of question `name(*args)` in a bank."""
    out = hashlib.sha256()
    _canonical(name, out)
    _canonical(args, out)
    return out.hexdigest()


class Oracle:
    """Answers questions by name; live, recording or replaying."""

    def __init__(self, functions: Mapping[str, Callable[..., Any]]) -> None:
        self.functions = dict(functions)
        self.recorded: dict[str, object] | None = None
        """While recording: every answer given, by key."""

    def ask(self, name: str, *args: object) -> Any:
        answer = self.functions[name](*args)
        if self.recorded is not None:
            self.recorded[digest(name, args)] = answer
        return answer


class Bank(Oracle):
    """An oracle that only replays recorded answers (the student kit's)."""

    def __init__(self, answers: Mapping[str, object]) -> None:
        super().__init__({})
        self.answers = dict(answers)

    def ask(self, name: str, *args: object) -> Any:
        try:
            return self.answers[digest(name, args)]
        except KeyError:
            raise BankMiss(f"no recorded answer for {name}") from None


_ACTIVE: dict[str, Oracle] = {}


def bank_path(exercise: str) -> Path:
    """Where a student kit keeps the answers for `exercise`."""
    return Path(__file__).resolve().parent / "rubrics" / f"{exercise}_bank.json.gz"


def is_kit(exercise: str) -> bool:
    """Whether this installation is a student kit for `exercise` (a bank, no live oracle)."""
    live = importlib.util.find_spec(f"{_RUBRICS}.{exercise}_oracle")
    return live is None and bank_path(exercise).is_file()


def _oracle(exercise: str) -> Oracle:
    if exercise not in _ACTIVE:
        if is_kit(exercise):
            _ACTIVE[exercise] = Bank(_installed_bank(exercise)[0])
        else:
            module = importlib.import_module(f"{_RUBRICS}.{exercise}_oracle")
            _ACTIVE[exercise] = Oracle(module.FUNCTIONS)
    return _ACTIVE[exercise]


def ask(exercise: str, name: str, *args: object) -> Any:
    """The answer to question `name(*args)` about `exercise`."""
    return _oracle(exercise).ask(name, *args)


@contextmanager
def recording(exercise: str) -> Iterator[dict[str, object]]:
    """Record every answer the live oracle gives into the yielded dict."""
    oracle = _oracle(exercise)
    if isinstance(oracle, Bank):
        raise ConfigError("A student kit cannot record answers: build kits from the course repo.")
    answers: dict[str, object] = {}
    oracle.recorded = answers
    try:
        yield answers
    finally:
        oracle.recorded = None


# --- the bank file -------------------------------------------------------------------------


def _encode(value: object) -> object:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        value = np.asarray(value)
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise ConfigError(f"A bank holds numeric arrays only, not dtype {value.dtype}.")
        array = np.ascontiguousarray(value)
        data = base64.b64encode(array.tobytes()).decode()
        return {"array": array.dtype.str, "shape": list(array.shape), "data": data}
    if isinstance(value, (tuple, list)):
        return {"tuple" if isinstance(value, tuple) else "list": [_encode(v) for v in value]}
    if isinstance(value, Mapping):
        return {"dict": [[_encode(k), _encode(v)] for k, v in value.items()]}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        kind = type(value)
        if not kind.__module__.startswith(_RUBRICS):
            raise ConfigError(f"A bank holds cases of {_RUBRICS} only, not {kind.__module__}.")
        fields = {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"case": f"{kind.__module__}:{kind.__qualname__}", "fields": fields}
    raise ConfigError(f"A bank cannot hold a value of type {type(value).__name__}.")


def _decode(node: object) -> object:
    if not isinstance(node, dict):
        return node
    if "array" in node:
        raw = base64.b64decode(node["data"])
        array: np.ndarray = np.frombuffer(raw, dtype=np.dtype(node["array"])).copy()
        return array.reshape(node["shape"])
    if "tuple" in node:
        return tuple(_decode(v) for v in node["tuple"])
    if "list" in node:
        return [_decode(v) for v in node["list"]]
    if "dict" in node:
        return {_decode(k): _decode(v) for k, v in node["dict"]}
    if "case" in node:
        module_name, _, name = str(node["case"]).partition(":")
        if not module_name.startswith(_RUBRICS + "."):
            raise ConfigError(f"The bank names a case outside {_RUBRICS}: {module_name}.")
        kind = getattr(importlib.import_module(module_name), name)
        if not (isinstance(kind, type) and dataclasses.is_dataclass(kind)):
            raise ConfigError(f"The bank names {node['case']}, which is not a case class.")
        return kind(**{key: _decode(value) for key, value in node["fields"].items()})
    raise ConfigError("The bank holds a value it cannot read: rebuild the kit.")


def dump_bank(answers: Mapping[str, object], cases: Mapping[str, list[object]]) -> bytes:
    """A bank of `answers` (key -> answer) and each public item's `cases`, as bytes."""
    document = {
        "version": 1,
        "answers": {key: _encode(value) for key, value in sorted(answers.items())},
        "cases": {item: [_encode(case) for case in items] for item, items in cases.items()},
    }
    text = json.dumps(document, separators=(",", ":"), sort_keys=True)
    return gzip.compress(text.encode(), mtime=0)


def load_bank(data: bytes) -> tuple[dict[str, object], dict[str, list[object]]]:
    """Read a bank written by `dump_bank`: (answers, cases per item)."""
    try:
        document = json.loads(gzip.decompress(data))
    except (OSError, ValueError) as error:
        raise ConfigError(f"The answer bank is unreadable ({error}): reinstall the kit.") from None
    if not isinstance(document, dict) or document.get("version") != 1:
        raise ConfigError("The answer bank has an unknown format: reinstall the kit.")
    answers = {key: _decode(value) for key, value in document["answers"].items()}
    cases = {item: [_decode(c) for c in items] for item, items in document["cases"].items()}
    return answers, cases


@cache
def _installed_bank(exercise: str) -> tuple[dict[str, object], dict[str, list[object]]]:
    return load_bank(bank_path(exercise).read_bytes())


def banked_cases(exercise: str) -> dict[str, list[object]]:
    """In a student kit: the inputs recorded for each public item of `exercise`."""
    return _installed_bank(exercise)[1]
