"""The public judging helpers: what each accepts, and the failure it raises otherwise."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from autograder.judging import (
    as_array,
    as_integer,
    assert_close,
    assert_equal,
    close,
    established,
    excerpt,
    fail,
    first_difference,
    kind,
    student,
)
from autograder.rubric import CheckFailed, Failure
from autograder.sandbox import Handle, Opaque, StudentRaised
from autograder.settings import Tolerance


def failure_of(call: Callable[[], Any]) -> Failure:
    with pytest.raises(CheckFailed) as raised:
        call()
    return raised.value.failure


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (np.zeros((2, 3)), "an array of shape (2, 3) and dtype float64"),
        (np.zeros(4, dtype=np.float32), "an array of shape (4,) and dtype float32"),
        ((1, 2), "a tuple of length 2"),
        ([np.zeros(1)], "a list of length 1"),
        (Opaque("KVCache", "<KVCache>"), "a KVCache"),
        (Opaque("dict", "{'k': 1}"), "a dict"),
        ({"k": np.zeros(1)}, "a dict"),
        (Handle(3, "KVCache"), "a KVCache"),
        (None, "None"),
        (3, "int 3"),
        ("x" * 500, "str '" + "x" * 115),
    ],
    ids=[
        "array",
        "float32",
        "tuple",
        "list",
        "opaque",
        "opaque-dict",
        "dict",
        "handle",
        "none",
        "int",
        "long-str",
    ],
)
def test_kind_names_what_a_value_is(value: object, text: str) -> None:
    assert kind(value) == text


@pytest.mark.parametrize(
    ("value", "summary", "hint"),
    [
        (None, "`out` is None; expected a NumPy array of shape (2, 2).", "forget a `return`"),
        ([[1, 2], [3, 4]], "`out` is a list of length 2; expected a NumPy array", "np.asarray"),
        (np.zeros((2, 3)), "`out` has shape (2, 3); expected (2, 2).", ""),
        (Opaque("Tensor", "t"), "`out` is a Tensor; expected a NumPy array", "np.asarray"),
    ],
    ids=["none", "list", "wrong-shape", "object"],
)
def test_as_array_fails_naming_kind_shape_and_dtype(value: object, summary: str, hint: str) -> None:
    failure = failure_of(lambda: as_array(value, "out", (2, 2)))
    assert failure.summary.startswith(summary)
    assert hint in failure.hint
    if isinstance(value, np.ndarray):
        assert failure.got == "shape (2, 3) (dtype float64)" and failure.expected == "shape (2, 2)"


def test_as_array_accepts_ints_and_bools_as_float64() -> None:
    got = as_array(np.array([[1, 0], [0, 1]], dtype=bool), "mask", (2, 2))
    assert got.dtype == np.float64 and got.tolist() == [[1.0, 0.0], [0.0, 1.0]]


def test_as_array_hint_may_be_computed_only_on_failure() -> None:
    calls: list[int] = []

    def hint() -> str:
        calls.append(1)
        return "named"

    as_array(np.zeros(2), "x", (2,), hint=hint)
    assert calls == []
    assert failure_of(lambda: as_array(np.zeros(3), "x", (2,), hint=hint)).hint == "named"
    assert calls == [1]


@pytest.mark.parametrize(
    ("value", "expected"),
    [(8, 8), (np.array(8), 8), (np.array(8, dtype=np.uint8), 8), (8.0, 8), (2**62, 2**62)],
    ids=["int", "numpy-int", "uint8", "integral-float", "large"],
)
def test_as_integer_accepts_exact_whole_numbers(value: object, expected: int) -> None:
    assert as_integer(value, "n") == expected and type(as_integer(value, "n")) is int


@pytest.mark.parametrize(
    ("value", "summary"),
    [
        (8.5, "`n` is 8.5; expected a whole number."),
        (float("nan"), "`n` is nan; expected a whole number."),
        (True, "`n` is bool True; expected an integer."),
        (None, "`n` is None; expected an integer."),
        (np.zeros(2), "`n` is an array of shape (2,) and dtype float64; expected an integer."),
        ("8", "`n` is str '8'; expected an integer."),
    ],
    ids=["fraction", "nan", "bool", "none", "array", "string"],
)
def test_as_integer_refuses_anything_else(value: object, summary: str) -> None:
    assert failure_of(lambda: as_integer(value, "n")).summary == summary


def test_first_difference_is_the_first_index_outside_the_tolerance() -> None:
    tol = Tolerance(rtol=0, atol=0.1)
    expected = np.zeros((2, 3))
    got = expected.copy()
    assert first_difference(got, expected, tol) is None
    got[1, 2], got[1, 0] = 0.5, 0.05
    assert first_difference(got, expected, tol) == (1, 2)
    got[0, 1] = np.nan
    assert first_difference(got, expected, tol) == (0, 1)


def test_close_wants_the_same_shape_and_a_numeric_array() -> None:
    assert close(np.ones(2), np.ones(2))
    assert not close(np.ones(3), np.ones(2))
    assert not close([1.0, 1.0], np.ones(2))
    assert not close(np.array([1.0, np.nan]), np.array([1.0, np.nan]))


def test_assert_close_reports_the_first_difference_with_both_sides() -> None:
    expected = np.arange(6.0).reshape(2, 3)
    got = expected.copy()
    got[1, 1] = 9.0
    failure = failure_of(lambda: assert_close(got, expected, "output", hint="look"))
    assert failure.summary == (
        "`output` differs from the expected value (first at index (1, 1): expected 4, got 9)."
    )
    assert "9." in failure.got and "4." in failure.expected and failure.hint == "look"


@pytest.mark.parametrize(
    ("got", "summary"),
    [
        (np.array([1.0, np.inf]), "`w` contains NaN or infinity (first at index (1,))."),
        (np.zeros(3), "`w` has shape (3,); expected (2,)."),
    ],
    ids=["infinite", "shape"],
)
def test_assert_close_names_non_finite_values_and_shapes(got: np.ndarray, summary: str) -> None:
    assert failure_of(lambda: assert_close(got, np.ones(2), "w")).summary == summary


def test_assert_close_passes_within_the_tolerance() -> None:
    assert_close(np.ones(3) + 1e-7, np.ones(3), "x", tol=Tolerance(rtol=1e-6, atol=0))


@pytest.mark.parametrize(
    ("got", "expected", "summary"),
    [
        (3, 4, "`n` is 3; expected 4."),
        (4.0, 4, "`n` is 4.0; expected 4."),
        (np.array([1, 2]), np.array([1, 3]), "`a` differs from the expected value (first at "),
        (np.zeros(3), np.zeros(2), "`a` is an array of shape (3,) and dtype float64; expected"),
    ],
    ids=["int", "float-for-int", "array-value", "array-shape"],
)
def test_assert_equal_is_exact(got: object, expected: object, summary: str) -> None:
    name = "a" if isinstance(expected, np.ndarray) else "n"
    assert failure_of(lambda: assert_equal(got, expected, name)).summary.startswith(summary)


def test_excerpt_shows_small_arrays_whole_and_the_row_of_a_large_one() -> None:
    assert excerpt(np.array([1.0, 2.0])) == "[1. 2.]"
    big = np.arange(100.0).reshape(10, 10)
    assert excerpt(big, (3, 4)).startswith("row [3, :]: [30. 31.")


def raised(type_name: str, *bases: str) -> StudentRaised:
    return StudentRaised(type_name, [type_name, *bases, "Exception"], "boom", "<cell 2>, line 4")


def test_student_turns_an_exception_into_a_failure_with_its_hint() -> None:
    def call() -> None:
        with student("update(k, v)", hint=lambda error: f"hint for {error.type_name}"):
            raise raised("IndexError", "LookupError")

    failure = failure_of(call)
    assert failure.summary == "update(k, v) raised IndexError: boom (<cell 2>, line 4)."
    assert failure.hint == "hint for IndexError"


def test_student_lets_an_unfinished_stub_through() -> None:
    with pytest.raises(StudentRaised), student("update(k, v)"):
        raise raised("NotImplementedError", "RuntimeError")


def test_fail_raises_the_failure_it_describes() -> None:
    failure = failure_of(lambda: fail("wrong", hint=lambda: "computed", expected="1", got="2"))
    assert failure == Failure("wrong", expected="1", got="2", hint="computed")


def same(a: int | None, b: int | None) -> bool:
    return a == b


def test_established_names_a_mistake_only_when_the_probe_confirms_it() -> None:
    variants = [("half", 4), ("double", 16), ("also-half", 4)]
    right_on_probe = 10

    def probe(student_answer: int) -> Callable[[object], tuple[int, dict[str, int], int]]:
        answers = {"half": 5, "double": 20, "also-half": 10}
        return lambda _: (student_answer, answers, right_on_probe)

    # the failing answer 4 matches "half" and "also-half"; on the probe the student gives 5
    assert established(4, variants, same=same, probe=probe(5)) == ("half",)
    # a probe answer no candidate gives: nothing is established
    assert established(4, variants, same=same, probe=probe(7)) == ()
    # "also-half" agrees with the right answer on the probe: matching there is no evidence
    assert established(4, variants, same=same, probe=probe(10)) == ()
    # no candidate at all: the probe is not even run
    assert established(3, variants, same=same, probe=lambda _: pytest.fail("ran")) == ()


def test_established_without_a_probe_returns_every_candidate_once() -> None:
    variants = [("a", 1), ("b", 1), ("a", 1), ("c", 2)]
    assert established(1, variants, same=same) == ("a", "b")


_SPECIAL = st.sampled_from([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e308, 5e-324])


@st.composite
def _pairs(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, Tolerance]:
    """Two float arrays of one shape (float32 or float64 each), with NaN, infinities, ties and
    values at the edge of the tolerance mixed in, and a tolerance."""
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, max_side=4))
    expected = draw(hnp.arrays(draw(st.sampled_from([np.float32, np.float64])), shape))
    noise = draw(hnp.arrays(np.float64, shape, elements=st.floats(-3e-3, 3e-3)))
    with np.errstate(all="ignore"):
        got = (expected * (1 + noise)).astype(draw(st.sampled_from([np.float32, np.float64])))
    for side in (got, expected):  # specials on either side, where the other is ordinary
        flat = side.reshape(-1)
        for index in draw(st.lists(st.integers(0, max(flat.size - 1, 0)), max_size=3)):
            if flat.size:
                with np.errstate(all="ignore"):  # 1e308 is infinite as a float32
                    flat[index] = draw(_SPECIAL)
    tol = Tolerance(
        rtol=draw(st.sampled_from([2e-3, 1e-6, 0.0])), atol=draw(st.sampled_from([2e-4, 0.0]))
    )
    return got, expected, tol


@settings(max_examples=300, deadline=None, database=None)
@given(_pairs())
def test_first_difference_agrees_with_numpy_isclose_element_for_element(
    pair: tuple[np.ndarray, np.ndarray, Tolerance],
) -> None:
    """The comparison's own fast formula gives exactly NumPy's verdict, NaN and infinities
    included, so no grade moves with it."""
    got, expected, tol = pair
    with np.errstate(all="ignore"):
        numpy_bad = ~np.isclose(got, expected, rtol=tol.rtol, atol=tol.atol)
    wanted = tuple(int(i) for i in np.argwhere(numpy_bad)[0]) if numpy_bad.any() else None
    assert first_difference(got, expected, tol) == wanted
