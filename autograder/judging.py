"""Judging helpers for rubric checks: the public authoring API every exercise builds on.

A check calls the student's code through a `Session` and judges what comes back. These helpers
turn the usual ways an answer is wrong into a `CheckFailed` whose `Failure` a student can act
on: the value's kind, shape and dtype, the first differing element with excerpts of both
sides, and hints that name a known mistake only when it is established.

    >>> import numpy as np
    >>> kind(np.zeros((2, 3)))
    'an array of shape (2, 3) and dtype float64'
    >>> first_difference(np.array([1.0, 2.0]), np.array([1.0, 2.5]))
    (1,)

Naming a mistake ("your result matches softmax without the max subtracted") is a strong claim, so
`established` names one only when its answer reproduces the student's on the failing input
*and* on a second input on which the mistake and the right answer differ. Otherwise a hint
states facts (what was observed), never a guess.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import NoReturn, TypeVar

import numpy as np

from autograder.markup import code
from autograder.oracle import ask
from autograder.rubric import CheckFailed, Failure
from autograder.sandbox import Handle, Opaque, StudentRaised
from autograder.settings import TOLERANCE, Tolerance

__all__ = [
    "Diagnose",
    "Diagnosis",
    "as_array",
    "as_integer",
    "ask",
    "assert_close",
    "assert_equal",
    "close",
    "established",
    "excerpt",
    "explained",
    "fail",
    "first_difference",
    "isclose_line",
    "kind",
    "raised",
    "student",
]

T = TypeVar("T")

Hint = str | Callable[[], str]
"""A hint, or a function computing it (called only once the answer is known to be wrong)."""


@dataclass(frozen=True)
class Diagnosis:
    """What to tell the student about a failure: a named mistake (`mistake` is its id, and
    `text` says what to change), or facts only (`mistake` empty)."""

    text: str = ""
    mistake: str = ""


Diagnose = Callable[[], "Diagnosis | str"]
"""Computes a diagnosis once the failure to explain is final (see `explained`)."""


def explained(diagnose: Diagnose) -> Callable[[Failure], Failure]:
    """An `explain` for `CheckFailed`: the core calls it once, on the smallest failure it
    reports, so a diagnosis may call the student's code again at no cost to passing work."""

    def explain(failure: Failure) -> Failure:
        found = diagnose()
        if isinstance(found, str):
            found = Diagnosis(found)
        return replace(failure, hint=found.text, mistake=found.mistake)

    return explain


def kind(value: object, *, quote: bool = False) -> str:
    """What `value` is, in a few words: "an array of shape (2, 3) and dtype float64",
    "a tuple of length 2", "a Tokenizer" (an object left in the worker), "int 3", "None".

    With `quote`, what the student's code chose (a type name, a repr) is quoted as code, so
    that Markdown shows it literally: "a `Tokenizer`", "int `3`", "NoneType `None`"."""
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    if isinstance(value, (Opaque, Handle)):
        return f"a {code(value.type_name)}" if quote else f"a {value.type_name}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of length {len(value)}"
    if isinstance(value, dict):  # as it read when dicts travelled as opaque values
        return f"a {code('dict')}" if quote else "a dict"
    if quote:
        return f"{type(value).__name__} {code(repr(value)[:100])}"
    if value is None:
        return "None"
    return f"{type(value).__name__} {value!r}"[:120]


def raised(
    what: str, error: StudentRaised, diagnose: Callable[[StudentRaised], Diagnosis | str]
) -> CheckFailed:
    """The failure "`what` raised ERROR." for an exception the student's code raised, with
    `diagnose(error)` as its (lazy) hint. Let `NotImplementedError` through before calling
    this: the core reports an unfinished stub once, for the whole item."""
    return CheckFailed(
        Failure(f"{what} raised {code(str(error))}."),
        explain=explained(lambda: diagnose(error)),
    )


def isclose_line(expr: str, where: tuple[int, ...], value: float, tol: Tolerance) -> str:
    """A line that fails, in a notebook cell, exactly when `expr[where]` is not `value`."""
    at = f"{expr}[{', '.join(map(str, where))}]"
    return f"assert np.isclose({at}, {value!r}, rtol={tol.rtol}, atol={tol.atol}), {at}"


def _hint(hint: Hint) -> str:
    return hint() if callable(hint) else hint


def fail(
    summary: str,
    *,
    hint: Hint = "",
    expected: str = "",
    got: str = "",
    inputs: str = "",
    snippet: str = "",
    mistake: str = "",
) -> NoReturn:
    """Raise `CheckFailed` with a `Failure` built from the arguments (hint computed now);
    `mistake` is the id of the known mistake the hint names ("" when it states facts)."""
    raise CheckFailed(
        Failure(
            summary,
            inputs=inputs,
            snippet=snippet,
            expected=expected,
            got=got,
            hint=_hint(hint),
            mistake=mistake,
        )
    )


@contextmanager
def student(what: str, *, hint: Callable[[StudentRaised], str] | str = "") -> Iterator[None]:
    """Run student calls; an exception they raise becomes a failure "`what` raised ...".

    `NotImplementedError` passes through (the core reports an unfinished stub once, for the
    whole item). `hint` may depend on the exception:

        with student("update(k, v)", hint="Check the shapes before storing anything."):
            session.call(cache, k, v, attr="update")
    """
    try:
        yield
    except StudentRaised as error:
        if error.is_a("NotImplementedError"):
            raise
        where = f" ({error.where})" if error.where else ""
        text = hint(error) if callable(hint) else hint
        raise CheckFailed(Failure(f"{what} raised {error}{where}.", hint=text)) from None


def as_array(value: object, name: str, shape: tuple[int, ...], *, hint: Hint = "") -> np.ndarray:
    """`value` as a float64 array of `shape`; otherwise a failure naming what it is.

    Only real numeric arrays pass (bool, integer, float): the message of a wrong one names its
    kind, shape and dtype."""
    if not isinstance(value, np.ndarray):
        default = "Return a NumPy array (np.asarray(...) converts a list)."
        if value is None:
            default = "Did you forget a `return` statement?"
        fail(
            f"`{name}` is {kind(value)}; expected a NumPy array of shape {shape}.",
            hint=_hint(hint) or default,
        )
    if value.shape != shape:
        fail(
            f"`{name}` has shape {value.shape}; expected {shape}.",
            expected=f"shape {shape}",
            got=f"shape {value.shape} (dtype {value.dtype})",
            hint=hint,
        )
    return value.astype(np.float64)


def as_integer(value: object, name: str) -> int:
    """`value` as an exact integer (int, NumPy integer, or an integral float); else a failure."""
    if isinstance(value, np.ndarray) and value.shape == () and value.dtype.kind in "iuf":
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        fail(f"`{name}` is {kind(value)}; expected an integer.", hint="Return a number (an int).")
    if isinstance(value, float) and not (np.isfinite(value) and value == int(value)):
        fail(
            f"`{name}` is {value!r}; expected a whole number.",
            hint="Count with integers: use // rather than / for divisions.",
        )
    return int(value)


def excerpt(array: np.ndarray, index: tuple[int, ...] | None = None) -> str:
    """A short printout of `array`: all of it when small, else the row holding `index`."""
    if array.size <= 36:
        return np.array2string(array, precision=5, suppress_small=True)
    if index is not None and array.ndim >= 1:
        row = array[index[:-1]] if array.ndim > 1 else array
        where = f"[{', '.join(map(str, index[:-1]))}, :]" if array.ndim > 1 else "[:]"
        return f"row {where}: " + np.array2string(row, precision=5, suppress_small=True)
    return np.array2string(array.ravel()[:12], precision=5) + " ..."


def _isclose(got: np.ndarray, expected: np.ndarray, tol: Tolerance) -> np.ndarray:
    """`np.isclose(got, expected, rtol=tol.rtol, atol=tol.atol)`, element for element; for two
    float arrays, its own formula without its argument handling (which costs more than the
    comparison on the small arrays rubrics check)."""
    if (
        type(got) is np.ndarray
        and type(expected) is np.ndarray
        and got.dtype.kind == "f"
        and expected.dtype.kind == "f"
    ):
        within = np.less_equal(np.abs(got - expected), tol.atol + tol.rtol * np.abs(expected))
        return np.asarray((within & np.isfinite(expected)) | (got == expected))
    return np.asarray(np.isclose(got, expected, rtol=tol.rtol, atol=tol.atol))


def first_difference(
    got: np.ndarray, expected: np.ndarray, tol: Tolerance = TOLERANCE
) -> tuple[int, ...] | None:
    """The index of the first element outside `tol` (NaN counts as different), or None."""
    with np.errstate(all="ignore"):
        bad = ~_isclose(got, expected, tol)
    if not bad.any():
        return None
    return tuple(int(i) for i in np.argwhere(bad)[0])


def close(got: object, expected: object, tol: Tolerance = TOLERANCE) -> bool:
    """Whether `got` is an array of `expected`'s shape, within `tol` everywhere (NaN is not)."""
    if not isinstance(got, np.ndarray) or not isinstance(expected, np.ndarray):
        return False
    if got.shape != expected.shape or got.dtype.kind not in "biuf":
        return False
    return first_difference(got.astype(np.float64), expected, tol) is None


def assert_close(
    got: np.ndarray,
    expected: np.ndarray,
    name: str,
    *,
    tol: Tolerance = TOLERANCE,
    hint: Hint = "",
    explain: Diagnose | None = None,
    snippet: Callable[[], str] | None = None,
    expr: str = "",
    against: str = "",
    mistake: str = "",
) -> None:
    """Fail unless `got` is within `tol` of `expected` (same shape); the message names the
    first differing index with both values, and shows both sides around it.

    The hint is `hint` (computed now; `mistake` is the id of the known mistake it names), or
    `explain`'s diagnosis (computed once, on the final failure: see `explained`). `snippet`
    gives lines that rebuild the call(s) in a notebook cell; the failure's snippet then ends
    with the comparison that fails, on `expr` (the variable holding `got` there, default
    `name`). `against`, when the student's code is compared with itself, names `expected`
    there: neither side is then labelled "Expected".
    """
    if got.shape != expected.shape:
        fail(
            f"`{name}` has shape {got.shape}; expected {expected.shape}.",
            expected=f"shape {expected.shape}",
            got=f"shape {got.shape}",
            hint=hint,
        )
    if np.all(np.isfinite(got)) and first_difference(got, expected, tol) is None:
        return
    if not np.all(np.isfinite(got)):
        where = tuple(int(i) for i in np.argwhere(~np.isfinite(got))[0])
        summary = f"`{name}` contains NaN or infinity (first at index {where})."
    else:
        differs = first_difference(got, expected, tol)
        assert differs is not None
        where = differs
        was = "the first call gave" if against else "expected"
        summary = (
            f"`{name}` differs from {'the first call' if against else 'the expected value'} "
            f"(first at index {where}: {was} {expected[where]:.6g}, got {got[where]:.6g})."
        )
    expr = expr or name
    lines = snippet() if snippet is not None else ""
    if lines and against:
        lines += (
            f"\nassert np.allclose({expr}, {against}, rtol={tol.rtol}, atol={tol.atol}), "
            f"np.abs({expr} - {against}).max()"
        )
    elif lines:
        lines += "\n" + isclose_line(expr, where, float(expected[where]), tol)
    failure = Failure(
        summary,
        snippet=lines,
        expected=excerpt(expected, where),
        got=excerpt(got, where),
        labels=("Expected", "Got") if not against else (f"`{against}`", f"`{expr}`"),
    )
    if explain is not None:
        raise CheckFailed(failure, explain=explained(explain))
    raise CheckFailed(replace(failure, hint=_hint(hint), mistake=mistake))


def assert_equal(got: object, expected: object, name: str, *, hint: Hint = "") -> None:
    """Fail unless `got == expected` exactly (scalars) or element for element (arrays)."""
    if isinstance(expected, np.ndarray):
        if isinstance(got, np.ndarray) and got.shape == expected.shape:
            if np.array_equal(got, expected):
                return
            where = tuple(int(i) for i in np.argwhere(got != expected)[0])
            fail(
                f"`{name}` differs from the expected value (first at index {where}).",
                expected=excerpt(expected, where),
                got=excerpt(got, where),
                hint=hint,
            )
        fail(
            f"`{name}` is {kind(got)}; expected {kind(expected)}.",
            expected=excerpt(expected),
            hint=hint,
        )
    if type(got) is not type(expected) or got != expected:
        fail(
            f"`{name}` is {got!r}; expected {expected!r}.",
            expected=repr(expected),
            got=repr(got),
            hint=hint,
        )


def established(
    got: T,
    variants: Iterable[tuple[str, T]],
    *,
    same: Callable[[T, T], bool],
    probe: Callable[[Sequence[str]], tuple[T, Mapping[str, T], T]] | None = None,
) -> tuple[str, ...]:
    """The ids of the known mistakes that explain `got`, established on a second input.

    `variants` are (mistake id, the answer that mistake gives on the failing input). A variant
    is a candidate when `same(got, answer)`. `probe(candidates)` runs the student's code on a
    second input and returns (the student's answer there, each candidate's answer there, the
    right answer there); a candidate stays only if it reproduces the student's answer on the
    probe *and* differs there from the right answer (so that matching is evidence). Without a
    probe the candidates are returned as they are (use this only when the failing input alone
    discriminates). Several ids come back when the inputs cannot tell the mistakes apart.
    """
    candidates = [mistake for mistake, answer in variants if same(got, answer)]
    if not candidates or probe is None:
        return tuple(dict.fromkeys(candidates))
    probe_got, answers, right = probe(candidates)
    confirmed = [
        mistake
        for mistake in candidates
        if mistake in answers
        and same(probe_got, answers[mistake])
        and not same(right, answers[mistake])
    ]
    return tuple(dict.fromkeys(confirmed))
