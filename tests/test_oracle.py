"""The oracle: stable keys, live and recorded answers, and a bank that round-trips exactly."""

from __future__ import annotations

import dataclasses
import gzip
import json
from typing import Any

import numpy as np
import pytest

from autograder import catalog
from autograder.errors import ConfigError
from autograder.exercise import Answers
from autograder.exercises.attention import EXERCISE
from autograder.exercises.attention.cases import (
    CausalCase,
    InitCase,
    MhaCase,
    SdpaCase,
    mha_probe,
    sdpa_probe,
    sdpa_unbatched,
)
from autograder.exercises.attention.rubric import MHA_MISTAKES, SDPA_MISTAKES
from autograder.oracle import (
    Bank,
    BankMiss,
    LiveOracle,
    ask,
    consulting,
    digest,
    dump_bank,
    load_bank,
)


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

    live = LiveOracle(Answers({"square": square}, lambda case: ()))
    assert live.ask("square", 3) == 9 and calls == [3]
    with live.recording() as recorded:
        live.ask("square", 4)
    assert recorded == {digest("square", (4,)): 16}
    live.ask("square", 5)
    assert len(recorded) == 1  # recording ended with the block
    bank = Bank(recorded)
    assert bank.ask("square", 4) == 16 and calls == [3, 4, 5]  # replayed, not computed
    with pytest.raises(BankMiss):
        bank.ask("square", 5)
    with pytest.raises(ConfigError, match="no question 'cube'; it answers square"):
        live.ask("cube", 2)


def test_checks_ask_the_oracle_of_the_rubric_being_checked() -> None:
    with consulting(Bank({digest("q", (1,)): "first"})):
        assert ask("q", 1) == "first"
        with consulting(Bank({digest("q", (1,)): "inner"})):
            assert ask("q", 1) == "inner"
        assert ask("q", 1) == "first"
    with pytest.raises(ConfigError, match="outside a graded rubric"):
        ask("q", 1)


def test_the_live_attention_oracle_records_what_a_kit_needs() -> None:
    """Every question a check may ask about a case, the failure-only ones too."""
    from autograder.exercises.attention.oracle import questions

    case = sdpa_case(mask=np.tril(np.ones((3, 3))))
    live = catalog.live_oracle(EXERCISE)
    with live.recording() as answers:
        for question, args in questions(case):
            live.ask(question, *args)
    reference: Any = answers[digest("sdpa", (case,))]
    out, weights = reference
    assert out.shape == (2, 3, 4) and np.allclose(weights.sum(-1), 1)
    variants: Any = answers[digest("sdpa_variants", (case,))]
    assert [v[0] for v in variants] == list(SDPA_MISTAKES)  # each known mistake has its hint
    probe = sdpa_probe(case)
    assert digest("sdpa", (probe,)) in answers and digest("sdpa_variants", (probe,)) in answers
    assert digest("sdpa", (sdpa_unbatched(case),)) in answers


def test_every_multi_head_variant_has_a_hint() -> None:
    from autograder.exercises.attention.oracle import mha_variants

    unmasked = dataclasses.replace(mha_probe(mha_case()), mask=None, cut=-1)
    ids = {mistake for mistake, _ in mha_variants(unmasked)}
    inside = {m[5:] for m in ids if m.startswith("sdpa:")}
    assert ids - {f"sdpa:{m}" for m in inside} == set(MHA_MISTAKES)
    assert inside and inside <= set(SDPA_MISTAKES)


def _structure(case: SdpaCase) -> tuple[object, ...]:
    mask = None if case.mask is None else (np.asarray(case.mask).shape, case.mask.dtype)
    return case.Q.shape, case.K.shape, case.V.shape, mask


SDPA_STRUCTURES = [
    ("no-batch", (), None),
    ("one-batch-axis-float-mask", (3,), np.ones((3, 2, 2))),
    ("two-batch-axes-shared-bool-mask", (2, 1), np.tril(np.ones((2, 2), dtype=bool))),
    ("size-one-mask", (2, 2), np.ones((1, 1, 2, 2))),
]


@pytest.mark.parametrize(
    ("batch", "mask"), [s[1:] for s in SDPA_STRUCTURES], ids=[s[0] for s in SDPA_STRUCTURES]
)
def test_a_probe_is_discriminating_and_keeps_only_the_structure(batch: Any, mask: Any) -> None:
    """d_k > 1, seq_q != seq_k, distinct sizes, every row sees some keys and misses some; the
    same batch axes and mask layout and kind; nothing else of the failing case."""
    rng = np.random.default_rng(3)
    cases = []
    for seed in (1, 2):
        Q, K, V = (rng.standard_normal((*batch, 2, 2)) for _ in range(3))
        cases.append(SdpaCase(seed, Q, K, V, mask))
    probes = [sdpa_probe(case) for case in cases]
    assert digest("p", (probes[0],)) == digest("p", (probes[1],))
    probe = probes[0]
    *lead, seq_q, d_k = probe.Q.shape
    seq_k, d_v = probe.V.shape[-2:]
    assert len(lead) == len(batch) and len({*lead, seq_q, seq_k, d_k, d_v}) == len(lead) + 4
    assert d_k > 1 and seq_q != seq_k
    if mask is None:
        assert probe.mask is None
        return
    given = np.asarray(mask)
    assert probe.mask is not None and probe.mask.dtype == given.dtype
    assert probe.mask.ndim == given.ndim
    assert [n == 1 for n in probe.mask.shape[:-2]] == [n == 1 for n in given.shape[:-2]]
    allowed = np.asarray(probe.mask) != 0
    if given.all():
        assert allowed.all()
    else:
        assert allowed.any(axis=-1).all() and (~allowed).any(axis=-1).all()


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
    kinds = EXERCISE.cases
    loaded_answers, loaded_cases = load_bank(dump_bank(answers, cases, kinds=kinds), kinds=kinds)
    assert {key: digest("v", (value,)) for key, value in loaded_answers.items()} == {
        key: digest("v", (value,)) for key, value in answers.items()
    }
    for item, items in cases.items():
        assert [digest("c", (c,)) for c in loaded_cases[item]] == [digest("c", (c,)) for c in items]
    assert loaded_answers["k2"][0][1].dtype == np.float32  # type: ignore[index]
    assert dump_bank(answers, cases, kinds=kinds) == dump_bank(answers, cases, kinds=kinds)


def test_a_bank_holds_no_case_of_a_type_the_exercise_does_not_list() -> None:
    with pytest.raises(ConfigError, match=r"not autograder\.exercises\.attention\.cases\.SdpaCase"):
        dump_bank({}, {"a": [sdpa_case()]}, kinds=(CausalCase,))


def bank_of(document: object) -> bytes:
    return gzip.compress(json.dumps(document).encode())


BAD_BANKS = [
    ("not-gzip", b"{}", "unreadable"),
    ("not-json", gzip.compress(b"{nope"), "unreadable"),
    ("old-version", bank_of({"version": 1, "answers": {}, "cases": {}}), "unknown format"),
    (
        "a-function-by-module-path",
        bank_of(
            {"version": 2, "answers": {}, "cases": {"a": [{"case": "os:system", "fields": {}}]}}
        ),
        "case type 'os:system', which the exercise does not list",
    ),
    (
        "a-type-of-another-exercise",
        bank_of(
            {"version": 2, "answers": {}, "cases": {"a": [{"case": "AppendCase", "fields": {}}]}}
        ),
        "case type 'AppendCase', which the exercise does not list",
    ),
]


@pytest.mark.parametrize(
    ("data", "message"), [b[1:] for b in BAD_BANKS], ids=[b[0] for b in BAD_BANKS]
)
def test_a_bad_bank_is_refused_with_a_clear_message(data: bytes, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_bank(data, kinds=EXERCISE.cases)


def test_the_course_repository_is_not_a_kit() -> None:
    assert catalog.installed_kit() is None
    assert isinstance(catalog.rubric_of("attention").oracle, LiveOracle)
