"""The oracle: stable keys, live and recorded answers, and a bank that round-trips exactly."""

from __future__ import annotations

import gzip
import json
from typing import Any

import numpy as np
import pytest

from autograder import oracle
from autograder.errors import ConfigError
from autograder.oracle import Bank, BankMiss, Oracle, digest, dump_bank, load_bank
from autograder.rubrics.attention_strategies import CausalCase, InitCase, MhaCase, SdpaCase


def sdpa_case(seed: int = 1, mask: Any = None) -> SdpaCase:
    rng = np.random.default_rng(seed)
    Q, K, V = (rng.standard_normal((2, 3, 4)) for _ in range(3))
    return SdpaCase(seed, Q, K, V, mask)


def mha_case() -> MhaCase:
    weights = {f"{n}.weight": np.eye(4) for n in ("q_proj", "k_proj", "v_proj", "out_proj")}
    mask = np.tril(np.ones((3, 3), dtype=bool))
    return MhaCase(7, 1, 3, 2, 2, np.ones((1, 3, 4)), weights, mask, cut=1)


def test_keys_are_stable_and_tell_inputs_apart() -> None:
    case = sdpa_case()
    assert digest("sdpa", (case,)) == digest("sdpa", (sdpa_case(),))
    assert digest("sdpa", (case,)) != digest("sdpa_variants", (case,))
    assert digest("sdpa", (case,)) != digest("sdpa", (sdpa_case(seed=2),))
    float_mask, bool_mask = np.ones((3, 3)), np.ones((3, 3), dtype=bool)
    assert digest("sdpa", (sdpa_case(mask=float_mask),)) != digest(
        "sdpa", (sdpa_case(mask=bool_mask),)
    )
    assert digest("x", (np.zeros((2, 3)),)) != digest("x", (np.zeros((3, 2)),))
    assert digest("x", ({"a": 1, "b": 2},)) == digest("x", ({"b": 2, "a": 1},))
    assert digest("causal", (3,)) != digest("causal", (3.0,))


def test_a_key_refuses_what_it_cannot_describe() -> None:
    with pytest.raises(ConfigError, match="cannot key an argument of type object"):
        digest("x", (object(),))


def test_recording_keeps_every_answer_and_a_bank_replays_them() -> None:
    calls: list[int] = []

    def square(x: int) -> int:
        calls.append(x)
        return x * x

    live = Oracle({"square": square})
    assert live.ask("square", 3) == 9 and calls == [3]
    live.recorded = {}
    live.ask("square", 4)
    assert live.recorded == {digest("square", (4,)): 16}
    bank = Bank(live.recorded)
    assert bank.ask("square", 4) == 16 and calls == [3, 4]  # replayed, not computed
    with pytest.raises(BankMiss):
        bank.ask("square", 5)


def test_the_live_attention_oracle_records_what_a_kit_needs() -> None:
    """Every question a check may ask about a case, the failure-only ones too."""
    from autograder.rubrics.attention_oracle import questions

    case = sdpa_case(mask=np.tril(np.ones((3, 3))))
    with oracle.recording("attention") as answers:
        for question, args in questions(case):
            oracle.ask("attention", question, *args)
    reference: Any = answers[digest("sdpa", (case,))]
    out, weights = reference
    assert out.shape == (2, 3, 4) and np.allclose(weights.sum(-1), 1)
    variants: Any = answers[digest("sdpa_variants", (case,))]
    assert [v[0] for v in variants] == [
        "no-scaling",
        "divide-by-d_k",
        "softmax-over-queries",
        "softmax-over-whole-matrix",
        "mask-ignored",
        "mask-inverted",
        "mask-after-softmax",
    ]


def test_a_bank_round_trips_answers_and_cases_exactly() -> None:
    cases: dict[str, list[object]] = {
        "a": [sdpa_case(), sdpa_case(mask=np.ones((3, 3), dtype=bool))],
        "b": [mha_case(), CausalCase(5), InitCase(6, 4)],
    }
    answers: dict[str, object] = {
        "k1": (np.arange(6.0).reshape(2, 3), np.array([True, False])),
        "k2": [("no-scaling", np.ones(2, np.float32), np.zeros((1, 2)))],
        "k3": np.tril(np.ones((2, 2))),
    }
    loaded_answers, loaded_cases = load_bank(dump_bank(answers, cases))
    assert {key: digest("v", (value,)) for key, value in loaded_answers.items()} == {
        key: digest("v", (value,)) for key, value in answers.items()
    }
    for item, items in cases.items():
        assert [digest("c", (c,)) for c in loaded_cases[item]] == [digest("c", (c,)) for c in items]
    assert loaded_answers["k2"][0][1].dtype == np.float32  # type: ignore[index]
    assert dump_bank(answers, cases) == dump_bank(answers, cases)  # reproducible bytes


def bank_of(document: object) -> bytes:
    return gzip.compress(json.dumps(document).encode())


BAD_BANKS = [
    ("not-gzip", b"{}", "unreadable"),
    ("not-json", gzip.compress(b"{nope"), "unreadable"),
    ("wrong-version", bank_of({"version": 2, "answers": {}, "cases": {}}), "unknown format"),
    (
        "case-outside-the-rubrics",
        bank_of(
            {
                "version": 1,
                "answers": {},
                "cases": {"a": [{"case": "os:system", "fields": {}}]},
            }
        ),
        "outside autograder.rubrics",
    ),
    (
        "name-that-is-not-a-case",
        bank_of(
            {
                "version": 1,
                "answers": {},
                "cases": {"a": [{"case": "autograder.rubrics.attention:np", "fields": {}}]},
            }
        ),
        "not a case class",
    ),
]


@pytest.mark.parametrize(
    ("data", "message"), [b[1:] for b in BAD_BANKS], ids=[b[0] for b in BAD_BANKS]
)
def test_a_bad_bank_is_refused_with_a_clear_message(data: bytes, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_bank(data)


def test_the_course_repository_is_not_a_kit() -> None:
    assert not oracle.is_kit("attention")
