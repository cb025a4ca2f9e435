"""Handles as arguments: one object the worker holds can be passed to another's method."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from autograder import sandbox
from autograder.sandbox import Handle, Sandbox, StudentRaised
from autograder.settings import Limits

FAST = Limits(call_seconds=5.0, cell_seconds=5.0, notebook_seconds=20.0)

CELLS = [
    "import numpy as np",
    "class Store:\n    def __init__(self):\n        self.items = []\n"
    "    def add(self, a):\n        self.items.append(a)\n        return len(self.items)",
    "def put(a, store=None):\n    return store.add(a)",
    "def kind(value):\n    return type(value).__name__",
]


@pytest.fixture(scope="module")
def box() -> Iterator[Sandbox]:
    with sandbox.started(CELLS, limits=FAST) as (started, run):
        assert started is not None, run.failure
        yield started


def test_a_handle_argument_is_the_object_itself(box: Sandbox) -> None:
    with box.session() as session:
        store = session.call("Store", keep=True)
        assert isinstance(store, Handle)
        assert session.call("put", np.ones(2), store=store) == 1
        assert session.call("put", np.zeros(3), store) == 2
        (items,) = session.get(store, "items")
    assert [a.shape for a in items] == [(2,), (3,)]


def test_a_handle_argument_is_the_object_not_a_description(box: Sandbox) -> None:
    with box.session() as session:
        store = session.call("Store", keep=True)
        assert session.call("kind", store) == "Store"
        assert session.call("kind", np.ones(1)) == "ndarray"


def test_a_handle_of_another_session_is_refused_by_the_worker(box: Sandbox) -> None:
    with box.session() as session:
        session.call("Store", keep=True)
    with box.session() as session, pytest.raises(StudentRaised, match="KeyError"):
        session.call("kind", Handle(7, "Store"))


def test_a_kept_result_s_method_runs_in_the_same_round_trip(box: Sandbox) -> None:
    from autograder.sandbox import Then

    with box.session() as session:
        store, count = session.call("Store", keep=True, then=Then("add", (np.ones(2),)))
        assert isinstance(store, Handle) and count == 1
        assert session.call(store, np.zeros(1), attr="add") == 2  # the same object, kept
        with pytest.raises(StudentRaised, match="AttributeError"):
            session.call("Store", keep=True, then=Then("missing"))
        with pytest.raises(ValueError, match="keep=True"):
            session.call("Store", then=Then("add", (1,)))
