"""The oracle: everything a rubric's checks know about right (and typical wrong) answers.

Checks never compute an expected value themselves: they ask the oracle by name, e.g.
`ask("sdpa", case)` (`autograder.judging.ask`). A rubric carries its oracle, of one of two
kinds, chosen explicitly by `catalog.py`:

* **Live** (`LiveOracle`), in the grader: the exercise's `Answers` compute answers from its
  reference solution (and the known wrong variants that name mistakes).
* **Replay** (`Bank`), in the student checker kit (`kit.py`), which carries neither the
  reference nor the module that computes answers: a bank of answers the instructor recorded
  for the public checks' inputs. The same checks run on the same inputs and find their answers
  there; an input the bank does not hold raises `BankMiss`, and the check skips it.

While a rubric's checks run, the core makes its oracle the one `ask` consults (`consulting`).

The live oracle keeps what it answered about each case (bounded: `settings.Caches`), so a
grading process computes each answer once for all the students it grades (the cases replayed
for them are the very same objects: `drawn.py`). An answer's arrays are read-only, and every
`ask` gets containers (tuples, lists, dicts) of its own: a check that wrote into an answer
would raise at once, for every student alike, instead of changing the next one's answer.

A bank is gzip-compressed JSON: arrays travel as dtype, shape and base64 bytes; cases (the
frozen dataclasses listed in `Exercise.cases`) as their class name and fields. Nothing in it
is pickled or executed, and it can build no object of a type the exercise does not list.
"""

from __future__ import annotations

import base64
import dataclasses
import gzip
import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import numpy as np

from autograder.errors import ConfigError, GraderError
from autograder.settings import CACHES

if TYPE_CHECKING:
    from autograder.exercise import Answers

__all__ = [
    "Bank",
    "BankMiss",
    "LiveOracle",
    "Oracle",
    "ask",
    "canonical_digest",
    "consulting",
    "decode_value",
    "digest",
    "dump_bank",
    "encode_value",
    "frozen",
    "load_bank",
]


class BankMiss(GraderError):
    """The student kit's bank holds no answer for this question (an input it was not built for)."""


def _canonical(value: object, out: hashlib._Hash, *, strict: bool = True) -> None:
    """Feed a stable description of `value` into `out` (the same on every machine).

    A value of a type it does not know raises `ConfigError` when `strict`; otherwise it is fed
    as its type and repr (stable within one grader version)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        out.update(f"{type(value).__name__}:{value!r};".encode())
    elif isinstance(value, np.ndarray):
        array = np.ascontiguousarray(value)
        out.update(f"array:{array.dtype.str}:{array.shape};".encode())
        out.update(array.tobytes())
    elif isinstance(value, np.generic):
        _canonical(np.asarray(value), out, strict=strict)
    elif isinstance(value, (tuple, list)):
        out.update(f"{type(value).__name__}:{len(value)}[".encode())
        for item in value:
            _canonical(item, out, strict=strict)
        out.update(b"]")
    elif isinstance(value, Mapping):
        out.update(f"dict:{len(value)}{{".encode())
        for key in sorted(value, key=repr):  # keys of mixed types sort too
            _canonical(key, out, strict=strict)
            _canonical(value[key], out, strict=strict)
        out.update(b"}")
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        out.update(f"case:{type(value).__qualname__}(".encode())
        for item in dataclasses.fields(value):
            _canonical(item.name, out, strict=strict)
            _canonical(getattr(value, item.name), out, strict=strict)
        out.update(b")")
    elif not strict:
        out.update(f"other:{type(value).__qualname__}:{value!r};".encode())
    else:
        raise ConfigError(f"The oracle cannot key an argument of type {type(value).__name__}.")


def canonical_digest(*parts: object, strict: bool = True) -> str:
    """SHA-256 of a stable description of `parts` (see `_canonical`)."""
    out = hashlib.sha256()
    _canonical(parts, out, strict=strict)
    return out.hexdigest()


def digest(name: str, args: tuple[object, ...]) -> str:
    """The key of question `name(*args)` in a bank."""
    out = hashlib.sha256()
    _canonical(name, out)
    _canonical(args, out)
    return out.hexdigest()


class Oracle:
    """Answers questions by name. The grader's is live (`LiveOracle`), a kit's replays (`Bank`)."""

    def ask(self, name: str, *args: object) -> Any:
        raise NotImplementedError


class _Unkept(Exception):
    """An answer holds a value `_frozen` cannot make read-only (it is not kept)."""


def _frozen(value: object) -> tuple[object, int]:
    """`value` with its arrays copied read-only, and how many bytes they hold; `_Unkept` for a
    value of any other kind than arrays, scalars, tuples, lists and dicts of them."""
    if value is None or isinstance(value, (bool, int, float, str, np.generic)):
        return value, 0
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            raise _Unkept
        array = np.array(value, copy=True)
        array.flags.writeable = False
        return array, array.nbytes
    if isinstance(value, (tuple, list)):
        parts = [_frozen(item) for item in value]
        items = [part for part, _ in parts]
        return (tuple(items) if isinstance(value, tuple) else items), sum(n for _, n in parts)
    if type(value) is dict:
        total = 0
        mapping = {}
        for key, item in value.items():
            mapping[key], size = _frozen(item)
            total += size
        return mapping, total
    raise _Unkept


def _thawed(value: object) -> object:
    """A kept answer with containers of its own (its read-only arrays are shared)."""
    if isinstance(value, tuple):
        return tuple(_thawed(item) for item in value)
    if isinstance(value, list):
        return [_thawed(item) for item in value]
    if isinstance(value, dict):
        return {key: _thawed(item) for key, item in value.items()}
    return value


def frozen(value: object) -> object | None:
    """`value` as the live oracle keeps it (read-only arrays), or None if it cannot be kept."""
    try:
        return _frozen(value)[0]
    except _Unkept:
        return None


_PLAIN = (type(None), bool, int, float, str)


def _frozen_case(value: object) -> bool:
    params = getattr(type(value), "__dataclass_params__", None)
    return params is not None and bool(params.frozen)


def _question(name: str, args: tuple[object, ...]) -> tuple[object, ...] | None:
    """The key of `name(*args)` among kept answers: plain values by value, cases (frozen
    dataclasses: the same drawn case object comes back for every student) by identity; None
    for any other argument (an array, a list: computed every time, as asked)."""
    key: list[object] = [name]
    for arg in args:
        if type(arg) in _PLAIN:
            key.append((type(arg), arg))
        elif _frozen_case(arg):
            key.append(id(arg))
        else:
            return None
    return tuple(key)


def _nbytes(value: object) -> int:
    """The bytes the arrays in `value` (containers and dataclasses included) hold."""
    if isinstance(value, np.ndarray):
        return value.nbytes
    if type(value) in _PLAIN:
        return 0
    if isinstance(value, (tuple, list)):
        return sum(_nbytes(item) for item in value)
    if isinstance(value, dict):
        return sum(_nbytes(item) for item in value.values())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = getattr(value, "__dict__", None)  # its fields, unless it has slots
        if fields is not None:  # mostly arrays: sized here, without a call per field
            return sum(
                item.nbytes if type(item) is np.ndarray else _nbytes(item)
                for item in fields.values()
            )
        return sum(_nbytes(getattr(value, f.name)) for f in dataclasses.fields(value))
    return 0


class LiveOracle(Oracle):
    """Computes every answer (from the reference solution), once per question while it is
    kept (`settings.Caches`); can record what it answers."""

    def __init__(
        self, answers: Answers, *, keep: int = CACHES.answers, keep_bytes: int = CACHES.answer_bytes
    ) -> None:
        self.answers = answers
        self.recorded: dict[str, object] | None = None
        """While recording: every answer given, by key."""
        self._keep, self._keep_bytes = keep, keep_bytes
        self._kept: OrderedDict[tuple[object, ...], tuple[object, int, tuple[object, ...]]] = (
            OrderedDict()
        )
        self._bytes = 0
        self._lock = threading.Lock()

    def ask(self, name: str, *args: object) -> Any:
        try:
            function = self.answers.functions[name]
        except KeyError:
            known = ", ".join(sorted(self.answers.functions))
            raise ConfigError(f"The oracle has no question {name!r}; it answers {known}.") from None
        key = _question(name, args)
        with self._lock:
            found = self._kept.get(key) if key is not None else None
            if found is not None:
                self._kept.move_to_end(key)  # type: ignore[arg-type]
        if found is not None:
            answer = _thawed(found[0])
        else:
            answer = function(*args)
            try:
                kept, size = _frozen(answer)
            except _Unkept:
                kept, size = None, 0
            if kept is not None:
                answer = _thawed(kept)
                if key is not None:
                    self._keep_answer(key, kept, size + _nbytes(args), args)
        if self.recorded is not None:
            self.recorded[digest(name, args)] = answer
        return answer

    def _keep_answer(
        self, key: tuple[object, ...], answer: object, size: int, args: tuple[object, ...]
    ) -> None:
        if self._keep <= 0 or size > self._keep_bytes:
            return
        with self._lock:
            if key in self._kept:
                return
            self._kept[key] = (answer, size, args)
            self._bytes += size
            while len(self._kept) > self._keep or self._bytes > self._keep_bytes:
                _, (_, dropped, _) = self._kept.popitem(last=False)
                self._bytes -= dropped

    @contextmanager
    def recording(self) -> Iterator[dict[str, object]]:
        """Record every answer given meanwhile into the yielded dict (to build a kit's bank)."""
        answers: dict[str, object] = {}
        self.recorded = answers
        try:
            yield answers
        finally:
            self.recorded = None


class Bank(Oracle):
    """An oracle that only replays recorded answers (the student kit's)."""

    def __init__(self, answers: Mapping[str, object]) -> None:
        self.answers = dict(answers)

    def ask(self, name: str, *args: object) -> Any:
        try:
            return self.answers[digest(name, args)]
        except KeyError:
            raise BankMiss(f"no recorded answer for {name}") from None


_CURRENT: ContextVar[Oracle | None] = ContextVar("oracle", default=None)


@contextmanager
def consulting(oracle: Oracle | None) -> Iterator[None]:
    """Make `oracle` the one `ask` consults while a rubric's checks run (the core does this
    with the rubric's own oracle)."""
    token = _CURRENT.set(oracle)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def ask(name: str, *args: object) -> Any:
    """The answer to question `name(*args)`, from the oracle of the rubric being checked."""
    oracle = _CURRENT.get()
    if oracle is None:
        raise ConfigError(
            f"A check asked the oracle {name!r} outside a graded rubric, or its rubric has no "
            "oracle: load the exercise through autograder.catalog."
        )
    return oracle.ask(name, *args)


# --- the bank file -------------------------------------------------------------------------


def _encode(value: object, kinds: Mapping[str, type]) -> object:
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
        items = [_encode(v, kinds) for v in value]
        return {"tuple" if isinstance(value, tuple) else "list": items}
    if isinstance(value, Mapping):
        return {"dict": [[_encode(k, kinds), _encode(v, kinds)] for k, v in value.items()]}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        kind = type(value)
        if kinds.get(kind.__qualname__) is not kind:
            raise ConfigError(
                f"A bank holds the exercise's case types only ({', '.join(kinds) or 'none'}), "
                f"not {kind.__module__}.{kind.__qualname__}: list it in Exercise.cases."
            )
        fields = {f.name: _encode(getattr(value, f.name), kinds) for f in dataclasses.fields(value)}
        return {"case": kind.__qualname__, "fields": fields}
    raise ConfigError(f"A bank cannot hold a value of type {type(value).__name__}.")


def _decode(node: object, kinds: Mapping[str, type]) -> object:
    if not isinstance(node, dict):
        return node
    if "array" in node:
        raw = base64.b64decode(node["data"])
        array: np.ndarray = np.frombuffer(raw, dtype=np.dtype(node["array"])).copy()
        return array.reshape(node["shape"])
    if "tuple" in node:
        return tuple(_decode(v, kinds) for v in node["tuple"])
    if "list" in node:
        return [_decode(v, kinds) for v in node["list"]]
    if "dict" in node:
        return {_decode(k, kinds): _decode(v, kinds) for k, v in node["dict"]}
    if "case" in node:
        kind = kinds.get(str(node["case"]))
        if kind is None:
            raise ConfigError(
                f"The bank names case type {node['case']!r}, which the exercise does not "
                "list: rebuild the kit."
            )
        return kind(**{key: _decode(value, kinds) for key, value in node["fields"].items()})
    raise ConfigError("The bank holds a value it cannot read: rebuild the kit.")


def _kinds(cases: Sequence[type]) -> dict[str, type]:
    return {kind.__qualname__: kind for kind in cases}


def encode_value(value: object, *, kinds: Sequence[type]) -> object:
    """`value` (arrays, scalars, containers and the case types `kinds`) as JSON data."""
    return _encode(value, _kinds(kinds))


def decode_value(node: object, *, kinds: Sequence[type]) -> object:
    """The value `encode_value` wrote as `node`."""
    return _decode(node, _kinds(kinds))


def dump_bank(
    answers: Mapping[str, object], cases: Mapping[str, list[object]], *, kinds: Sequence[type]
) -> bytes:
    """A bank of `answers` (key -> answer) and each public item's `cases`, as bytes; `kinds`
    are the case types it may hold (the exercise's `cases`)."""
    known = _kinds(kinds)
    document = {
        "version": 2,
        "answers": {key: _encode(value, known) for key, value in sorted(answers.items())},
        "cases": {item: [_encode(case, known) for case in items] for item, items in cases.items()},
    }
    text = json.dumps(document, separators=(",", ":"), sort_keys=True)
    return gzip.compress(text.encode(), mtime=0)


def load_bank(
    data: bytes, *, kinds: Sequence[type]
) -> tuple[dict[str, object], dict[str, list[object]]]:
    """Read a bank written by `dump_bank`: (answers, cases per item)."""
    try:
        document = json.loads(gzip.decompress(data))
    except (OSError, ValueError) as error:
        raise ConfigError(f"The answer bank is unreadable ({error}): reinstall the kit.") from None
    if not isinstance(document, dict) or document.get("version") != 2:
        raise ConfigError("The answer bank has an unknown format: reinstall the kit.")
    known = _kinds(kinds)
    answers = {key: _decode(value, known) for key, value in document["answers"].items()}
    cases = {item: [_decode(c, known) for c in items] for item, items in document["cases"].items()}
    return answers, cases
