"""Stage 3, the checks: each rubric item is a Hypothesis property judged in the grader's process.

An item gets one sandbox session (a fresh worker forked from the executed notebook). Its
exhaustive cases run first, in order, then Hypothesis explores random cases and shrinks the
first failure to the smallest input it can find. A timeout or crash ends the item at once (no
shrinking through a dead worker) and costs that item only.

Random examples are seeded by a key and the item's id (`settings.example_seed`): in the grader
the key is the course's grading secret (`autograder.secret`), so a regrade draws the same
examples and nobody without the secret can know them in advance.

Evidence for staff (`evidence.py`): while an item runs, the replies of the student's code to
the cases it fails are kept as digests, and an item failed with no catalogued mistake keeps
them (`Outcome.answers`); `gather_evidence` (batch only, after the grade is settled) runs such
items on a few more inputs. Neither touches a verdict, a point or a word of feedback.

Work done once per process, not per student (`drawn.py`): the cases of an item every case of
which passed are kept, and the next student is checked on them first, without Hypothesis; any
failure there sends the item through the full run below, in a fresh worker, as if nothing had
been kept.

A full run that fails keeps its transcript (`transcripts.py`): the next student whose code
answers every one of its requests alike, in the same order, gets its outcome without the
search (the same failure, word for word, since the run depends on the student only through
those answers); the first reply that differs sends the item through the full run, in a fresh
worker, as if nothing had been kept.

Hypothesis itself is loaded only for a search (`explore`): an item that passes on the cases
kept for it checks them without Hypothesis, and a grade in which every item does (a Gradescope
zip ships the cases: `shipped.py`) never imports it.

Blame: a Hypothesis error is the student's only when it is flakiness of their code (a check
failed on an input, then passed or failed differently on the same input again). Any other
(an invalid strategy, an unsatisfiable filter, ...) is a bug of the rubric: it is raised as a
`ConfigError`, and the pipeline reports that the autograder failed, with the details for staff.
"""

from __future__ import annotations

import dataclasses
import difflib
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from autograder import drawn, transcripts
from autograder.errors import ConfigError
from autograder.evidence import Answer, Observed, unexplained
from autograder.markup import code
from autograder.oracle import BankMiss, consulting
from autograder.rubric import CheckFailed, Failure, Item, Rubric
from autograder.sandbox import NotebookRun, Sandbox, Session, StudentRaised, WorkerLost
from autograder.secret import load_secret
from autograder.settings import (
    LIKENESS,
    LIMITS,
    Likeness,
    Limits,
    example_seed,
    hypothesis_settings,
)

__all__ = ["Outcome", "explore", "gather_evidence", "run_checks", "run_item"]


@dataclass(frozen=True)
class Outcome:
    """The verdict on one item, before points are attached."""

    item_id: str
    failure: Failure | None
    """None when every example passed."""
    examples: int
    """How many cases were checked."""
    unexplained: bool = field(default=False, compare=False, repr=False)
    """A check judged the student's answers wrong and named no catalogued mistake: neither the
    reference nor a known mistake explains them (`gather_evidence` looks further)."""
    answers: tuple[Answer, ...] = field(default=(), compare=False, repr=False)
    """The student's answers the verdict leaves unexplained (`evidence.unexplained`): staff
    evidence of shared wrong code, never part of the grade or the feedback."""

    @property
    def passed(self) -> bool:
        return self.failure is None


class _Abort(BaseException):
    """Ends an item at once; a BaseException so that Hypothesis does not try to shrink it."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.summary)
        self.failure = failure


_NOT_IN_KIT = Failure(
    "Not checked here: this checker holds answers for the checks visible before the deadline "
    "only. The grader checks this item."
)


def _describe(case: Any) -> tuple[str, str]:
    describe = getattr(case, "describe", None)
    snippet = getattr(case, "snippet", None)
    return (
        describe() if callable(describe) else repr(case),
        snippet() if callable(snippet) else "",
    )


def _with_case(failure: Failure, case: Any) -> Failure:
    if failure.inputs:
        return failure
    inputs, snippet = _describe(case)
    return dataclasses.replace(failure, inputs=inputs, snippet=failure.snippet or snippet)


def _raised(error: StudentRaised, item: Item[Any]) -> Failure:
    if error.is_a("NotImplementedError"):
        name = f"`{item.requires[0]}`" if item.requires else "your code"
        return Failure(
            f"Not implemented yet: {name} still raises NotImplementedError.",
            hint="Replace `raise NotImplementedError()` with your implementation.",
        )
    where = f" ({code(error.where)})" if error.where else ""
    return Failure(f"Your code raised {code(str(error))}{where}.")  # its words, quoted


def _missing(name: str, run: NotebookRun) -> Failure:
    names = [d.name for d in run.definitions]
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    found = f" Found `{close[0]}`; expected `{name}`." if close else ""
    return Failure(
        f"`{name}` is not defined in your notebook.{found}",
        hint=f"Define `{name}` with the name and signature given in the assignment, and make "
        "sure the cell that defines it runs without an error.",
    )


def _flakiness(error: Exception) -> Failure | None:
    """The student's failure when `error` (an error of Hypothesis's: it is loaded) is
    flakiness of their code, else None (ours).

    Hypothesis groups the failures it saw for one input: only our verdicts on the student's
    answers (`CheckFailed`) or an abort (their worker died on the replay) are the student's.
    """
    from hypothesis.errors import FlakyBackendFailure, FlakyFailure

    if not isinstance(error, FlakyFailure) or isinstance(error, FlakyBackendFailure):
        return None
    leaves: list[BaseException] = []
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop(0)
        group = getattr(current, "exceptions", None)
        if isinstance(group, tuple):  # an exception group (a backport's on Python 3.10)
            pending.extend(group)
        else:
            leaves.append(current.__cause__ if current.__cause__ is not None else current)
    aborts = [leaf for leaf in leaves if isinstance(leaf, _Abort)]
    if aborts:
        return aborts[0].failure
    verdicts = [leaf for leaf in leaves if isinstance(leaf, CheckFailed)]
    if not verdicts or len(verdicts) != len(leaves):
        return None
    first = verdicts[0].failure
    return Failure(
        "Your code gave different results for the same input: a check failed on it once, "
        f"then not in the same way when it ran again. The first time: {first.summary}",
        first.inputs,
        first.snippet,
        first.expected,
        first.got,
        hint="Avoid randomness and state that changes between calls: the same arguments must "
        "give the same result every time.",
    )


def _broken(item: Item[Any], error: Exception) -> ConfigError:
    """The error to raise for a Hypothesis error that is not the student's doing."""
    text = str(error).strip()
    detail = f" ({text.splitlines()[0].rstrip('.!')})" if text else ""
    return ConfigError(
        f"Rubric item {item.id!r} is broken: Hypothesis raised {type(error).__name__}{detail}. "
        "This is a bug of the rubric (its strategy, filters or checks), not of the submission: "
        "fix the item; the rubric's own tests should catch it."
    )


def explore(item: Item[Any], key: bytes, test: Callable[[Any], None]) -> None:
    """Run `test` on `item`'s random examples as the grader does: its Hypothesis settings, and
    the seed of `key` and the item's id (the same examples every time, for the same key).

    Only here is Hypothesis imported, and the item's strategy built (`Item.search_strategy`)."""
    from hypothesis import given, seed, settings

    strategy = item.search_strategy()
    chosen = hypothesis_settings()
    if item.max_examples is not None:
        chosen = settings(chosen, max_examples=item.max_examples)

    @seed(example_seed(key, item.id))
    @chosen
    @given(strategy)
    def property_(case: Any) -> None:
        test(case)

    property_()


def _explained(failed: CheckFailed) -> Failure:
    """The reported failure with its hint; without it if explaining needed what is not there
    (the student's code raised or stopped on the rubric's extra input, or a kit lacks an
    answer): a hint is optional, the verdict is not."""
    if failed.explain is None:
        return failed.failure
    try:
        return failed.explain(failed.failure)
    except (StudentRaised, WorkerLost, BankMiss):
        return failed.failure


_STATE_TRIES = 3
"""When a failure does not happen again in a fresh worker, how many of the latest cases
described like it are tried, one at a time, as the earlier call that left the state behind
(before a bisection over all of them)."""

_STATE_WINDOW = 200
"""How many of the cases checked before a failure are searched for one described alike."""

_STATE_HINT = (
    "Keep no state between calls: a cache, a counter or a random generator kept in a global "
    "variable, on the class or on an object makes an answer depend on earlier calls. The same "
    "arguments must give the same result, whatever was called before."
)


class _Opens(Protocol):
    """What opens an item's sessions: the sandbox, or a `transcripts.Recorder` of it."""

    def session(self, *, deadline: float | None = ...) -> AbstractContextManager[Session]: ...


class _Passed:
    """A replay in which the last case passed."""


_PASSED = _Passed()


def _replay(
    box: _Opens, item: Item[Any], cases: Sequence[Any], deadline: float
) -> Failure | _Passed | None:
    """Check `cases` in order in a fresh worker: the last one's failure (with its case), or
    `_PASSED`; None when the replay says nothing (the code raised or stopped, or a kit lacks an
    answer). Only the last case's verdict counts."""
    try:
        with box.session(deadline=deadline) as session:
            for earlier in cases[:-1]:
                try:
                    item.check(session, earlier)
                except (CheckFailed, StudentRaised):
                    pass
            try:
                item.check(session, cases[-1])
            except CheckFailed as failed:
                return _with_case(failed.failure, cases[-1])
    except (StudentRaised, WorkerLost, BankMiss):
        return None
    return _PASSED


def _fails(box: _Opens, item: Item[Any], cases: Sequence[Any], deadline: float) -> bool:
    return isinstance(_replay(box, item, cases, deadline), Failure)


def _unless_state(
    box: _Opens,
    item: Item[Any],
    failing: Any,
    before: Sequence[Any],
    failure: Failure,
    deadline: float,
) -> Failure:
    """`failure`, found on `failing` after the cases `before` in one worker; or, when a fresh
    worker answers `failing` right, the failure of code that keeps state between calls, with a
    snippet of two calls that shows it (when one of the last cases before it does)."""
    if _replay(box, item, [failing], deadline) is not _PASSED:
        return failure  # it fails from scratch too (or the replay could not tell)
    # The earlier call that leaves the state behind: the latest cases described like the
    # failing one first (same shapes, other values: what a cache keyed on shapes confuses);
    # else bisect for the latest case whose replay, with all after it, still fails.
    described = _describe(failing)[0]
    recent = [c for c in before if c is not failing]
    alike = [c for c in reversed(recent) if _describe(c)[0] == described][:_STATE_TRIES]
    found = next((c for c in alike if _fails(box, item, [c, failing], deadline)), None)
    if found is None and _fails(box, item, [*recent, failing], deadline):
        low, high = 0, len(recent) - 1  # recent[low:] + failing fails; find the largest low
        while low < high:
            middle = (low + high + 1) // 2
            if _fails(box, item, [*recent[middle:], failing], deadline):
                low = middle
            else:
                high = middle - 1
        if _fails(box, item, [recent[low], failing], deadline):
            found = recent[low]
    if found is not None:
        again = _replay(box, item, [found, failing], deadline)
        if isinstance(again, Failure):
            first = _describe(found)[1]
            return dataclasses.replace(
                again,
                summary="Your code answers this input right as the first call in a fresh "
                "process, but wrong right after another call: it keeps state between calls. "
                f"After the other call: {again.summary}",
                snippet=f"# first, another call:\n{first}\n# then this one:\n{again.snippet}"
                if first and again.snippet
                else "",
                hint=_STATE_HINT,
                mistake="state-between-calls",
            )
    return dataclasses.replace(
        failure,
        summary="Your code answered this input wrong after the checks' earlier calls, and right "
        "as the first call in a fresh process: it keeps state between calls (no two calls "
        f"we tried show it, so there is no snippet). Then: {failure.summary}",
        snippet="",
        hint=_STATE_HINT,
        mistake="state-between-calls",
    )


_FAILURE_FIELDS = tuple(f.name for f in dataclasses.fields(Failure))


def _data_of(outcome: Outcome) -> dict[str, Any]:
    """`outcome` as plain data (JSON), as `transcripts` keeps it; `_outcome_of` reads it."""
    failure = outcome.failure
    return {
        "item": outcome.item_id,
        "failure": None if failure is None else dataclasses.asdict(failure),
        "examples": outcome.examples,
        "unexplained": outcome.unexplained,
        "answers": _answers_data(outcome.answers),
    }


def _outcome_of(data: Any, item: Item[Any]) -> Outcome | None:
    """The outcome of `item` that `data` holds (`_data_of`); None if it holds none."""
    if not isinstance(data, dict) or data.get("item") != item.id:
        return None
    failure, examples = data.get("failure"), data.get("examples")
    answers = _answers_of(data.get("answers"))
    if failure is not None:
        if not isinstance(failure, dict) or set(failure) != set(_FAILURE_FIELDS):
            return None
        labels = failure["labels"]
        texts = [failure[name] for name in _FAILURE_FIELDS if name != "labels"]
        if not (
            isinstance(labels, (list, tuple))
            and len(labels) == 2
            and all(isinstance(t, str) for t in [*texts, *labels])
        ):
            return None
        failure = Failure(**{**failure, "labels": (labels[0], labels[1])})
    if type(examples) is not int or type(data.get("unexplained")) is not bool or answers is None:
        return None
    return Outcome(item.id, failure, examples, data["unexplained"], tuple(answers))


def run_item(
    item: Item[Any],
    box: Sandbox | None,
    run: NotebookRun,
    *,
    limits: Limits,
    deadline: float,
    key: bytes | None = None,
) -> Outcome:
    """Check one item against the student's code; never raises for anything the student did.

    `key` seeds the random examples (`settings.example_seed`); by default the course's grading
    secret, read only when the item has random examples.
    """
    if box is None or not run.ready:
        return Outcome(item.id, Failure(f"Not checked: {run.failure}"), 0)
    for name in item.requires:
        if run.definition(name) is None:
            return Outcome(item.id, _missing(name, run), 0)
    if time.monotonic() >= deadline:
        return Outcome(
            item.id, Failure("Not checked: the time for grading this submission ran out."), 0
        )
    if item.strategy is not None:  # seen passing in this process: its cases again, in order
        key = load_secret() if key is None else key
        replayed = drawn.recall(item, key)
        replay_deadline = min(deadline, time.monotonic() + limits.item_seconds)
        if replayed is not None and drawn.passes(replayed, box, key=key, deadline=replay_deadline):
            return Outcome(item.id, None, len(replayed.cases))
        told = _outcome_of(transcripts.retold(item, key, box, deadline=replay_deadline), item)
        if told is not None:  # an earlier student's full run, answered alike
            return told
        recorder = transcripts.Recorder(box)
        outcome = _full_run(item, recorder, limits=limits, deadline=deadline, key=key)
        if not outcome.passed:  # for the next student whose code answers alike
            transcripts.keep(item, key, recorder, _data_of(outcome))
        return outcome
    return _full_run(item, box, limits=limits, deadline=deadline, key=key)


def _full_run(
    item: Item[Any], box: _Opens, *, limits: Limits, deadline: float, key: bytes | None
) -> Outcome:
    """`item` checked from scratch, in a fresh worker: its cases, then Hypothesis's search,
    and the first failure shrunk to the smallest input."""
    examples = 0
    item_deadline = min(deadline, time.monotonic() + limits.item_seconds)
    checked: list[Any] = []
    """The cases checked so far, in order; the last one is the reported failure's."""
    answers: list[Answer] = []
    """The student's replies to the failing cases checked so far (`evidence.Observed`)."""
    with box.session(deadline=item_deadline) as opened:
        observed = Observed(opened)
        session = cast(Session, observed)  # it stands for the session (call, get, set)

        def judge(case: Any) -> None:
            nonlocal examples
            examples += 1
            checked.append(case)
            observed.begin()
            wrong = False  # a stopped worker says nothing about the answers: only a verdict
            try:
                item.check(session, case)
            except CheckFailed as failed:
                wrong = True
                raise CheckFailed(
                    _with_case(failed.failure, case), explain=failed.explain
                ) from None
            except StudentRaised as error:
                wrong = True
                failure = _raised(error, item)
                if error.is_a("NotImplementedError"):  # a stub fails on every input
                    checked.clear()
                else:
                    failure = _with_case(failure, case)
                raise CheckFailed(failure) from None
            except WorkerLost as lost:
                raise _Abort(_with_case(Failure(f"Stopped: {lost}."), case)) from None
            except BankMiss:  # a student kit has answers for the public checks' inputs only
                raise _Abort(_NOT_IN_KIT) from None
            finally:
                answers.extend(observed.end(case, failed=wrong))

        try:
            for case in item.cases:
                judge(case)
            if item.strategy is not None:
                explore(item, load_secret() if key is None else key, judge)
                drawn.remember(item, load_secret() if key is None else key, checked)
        except CheckFailed as failed:
            reported = _explained(failed)
            if checked:  # was it the input, or what the worker kept from earlier calls?
                reported = _unless_state(
                    box,
                    item,
                    checked[-1],
                    checked[-_STATE_WINDOW:-1],
                    reported,
                    item_deadline,
                )
            kept = unexplained(reported, answers)
            return Outcome(item.id, reported, examples, not reported.mistake, kept)
        except _Abort as aborted:
            return Outcome(item.id, aborted.failure, examples)
        except Exception as error:
            if not type(error).__module__.startswith("hypothesis"):
                raise
            failure = _flakiness(error)  # Hypothesis raised it: it is loaded
            if failure is None:
                raise _broken(item, error) from error
            kept = unexplained(failure, answers)
            return Outcome(item.id, failure, examples, not failure.mistake, kept)
    return Outcome(item.id, None, examples)


def run_checks(
    rubric: Rubric,
    box: Sandbox | None,
    run: NotebookRun,
    *,
    limits: Limits = LIMITS,
    deadline: float | None = None,
    only: Sequence[str] = (),
    key: bytes | None = None,
) -> tuple[Outcome, ...]:
    """Check every item of `rubric` (or those named in `only`), in rubric order.

    `key` seeds the random examples; by default the course's grading secret (`load_secret`),
    read once, and only when an item has random examples. The checks ask the rubric's oracle.
    """
    if deadline is None:
        deadline = time.monotonic() + limits.total_seconds
    items = [item for item in rubric.items if not only or item.id in only]
    if key is None and any(item.strategy is not None for item in items):
        key = load_secret()
    with consulting(rubric.oracle):
        return tuple(
            run_item(item, box, run, limits=limits, deadline=deadline, key=key) for item in items
        )


class _Stop(BaseException):
    """Ends probing at once (the worker is gone); a BaseException, so Hypothesis lets it by."""


def _probe(
    item: Item[Any], box: Sandbox, key: bytes | None, deadline: float, examples: int
) -> list[Answer]:
    """The student's answers to the failing cases among `item`'s exhaustive cases and
    `examples` random ones drawn for evidence (seeded by `key` and the item, the same for
    every student; never shrunk); nothing a check says here reaches the grade. Told again,
    like a failing run (`transcripts.py`), to a student whose code answers alike."""
    if key is None or item.strategy is None:
        return _probed(item, box, key, deadline, examples)
    purpose = f"evidence of {examples}"
    told = _answers_of(transcripts.retold(item, key, box, deadline=deadline, purpose=purpose))
    if told is not None:
        return told
    recorder = transcripts.Recorder(box)
    answers = _probed(item, recorder, key, deadline, examples)
    transcripts.keep(item, key, recorder, _answers_data(answers), purpose=purpose)
    return answers


def _answers_data(answers: Sequence[Answer]) -> list[list[str]]:
    """`answers` as plain data (JSON); `_answers_of` reads it."""
    return [[answer.question, answer.reply] for answer in answers]


def _answers_of(data: Any) -> list[Answer] | None:
    """The answers `data` holds (`_answers_data`), or None if it holds none."""
    if not isinstance(data, list) or not all(
        isinstance(a, (list, tuple)) and len(a) == 2 and all(isinstance(d, str) for d in a)
        for a in data
    ):
        return None
    return [Answer(question, reply) for question, reply in data]


def _probed(
    item: Item[Any], box: _Opens, key: bytes | None, deadline: float, examples: int
) -> list[Answer]:
    """`_probe`, run in full."""
    answers: list[Answer] = []
    drawn = dataclasses.replace(item, id=f"{item.id}:evidence", max_examples=examples)

    def test(session: Observed, case: Any) -> None:
        session.begin()
        wrong = False
        try:
            item.check(cast(Session, session), case)
        except (CheckFailed, StudentRaised):
            wrong = True
        except (WorkerLost, BankMiss):
            raise _Stop from None
        finally:
            answers.extend(session.end(case, failed=wrong))

    try:
        with box.session(deadline=deadline) as opened:
            observed = Observed(opened)
            for case in item.cases:
                test(observed, case)
            if item.strategy is not None and key is not None and examples:
                explore(drawn, key, lambda case: test(observed, case))
    except _Stop:
        pass
    except Exception:  # evidence is best effort: it never fails a grade
        pass
    return answers


def gather_evidence(
    rubric: Rubric,
    box: Sandbox | None,
    outcomes: Sequence[Outcome],
    *,
    deadline: float,
    key: bytes | None = None,
    settings: Likeness = LIKENESS,
) -> tuple[Outcome, ...]:
    """`outcomes` with more evidence on each item whose answers a check found wrong with no
    catalogued mistake (`Outcome.unexplained`): the student's code is run once more on the
    item's exhaustive cases and `settings.probe_examples` random ones, in a fresh worker, and
    its answers to the failing ones are added. A grade stops at the first failure; the
    evidence needs more inputs than that to tell shared code from chance.

    Points, verdicts and feedback are not touched (call it after the printed output is taken:
    the student's code prints again here). It spends at most `settings.probe_seconds` and stops
    at `deadline`; correct items cost nothing.
    """
    wanted = {o.item_id for o in outcomes if o.unexplained}
    if box is None or not wanted:
        return tuple(outcomes)
    items = {item.id: item for item in rubric.items}
    if key is None and any(items[i].strategy is not None for i in wanted):
        key = load_secret()
    stop = min(deadline, time.monotonic() + settings.probe_seconds)
    gathered = []
    with consulting(rubric.oracle):
        for outcome in outcomes:
            if outcome.item_id in wanted and time.monotonic() < stop:
                more = _probe(items[outcome.item_id], box, key, stop, settings.probe_examples)
                outcome = dataclasses.replace(outcome, answers=(*outcome.answers, *more))
            gathered.append(outcome)
    return tuple(gathered)
