"""Reporting: results.json follows the Gradescope schema; feedback is readable and bounded."""

from __future__ import annotations

import json
import re
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from autograder.markup import code, escaped
from autograder.report import (
    MAX_OUTPUT_CHARS,
    render_check,
    render_failure,
    render_text,
    to_gradescope,
    write_results,
)
from autograder.rubric import Failure
from autograder.scoring import GradeResult, ItemResult

SCHEMA = json.loads((Path(__file__).parent / "gradescope_results.schema.json").read_text())

FAILURE = Failure(
    "`weights` differs from the expected value.",
    inputs="Q: (1, 2)",
    snippet="Q = np.array([[1.0, 2.0]])",
    expected="[[0.5 0.5]]",
    got="[[1. 0.]]",
    hint="Divide the scores by np.sqrt(d_k).",
)
RESULT = GradeResult(
    "attention.ipynb",
    (
        ItemResult("a", "Item A", 10, 10, "visible", None, 50),
        ItemResult("b", "Item B", 0, 5, "after_due_date", FAILURE, 7),
    ),
    notes=("Code cell 3 raised NameError",),
    output="hello",
    seconds=1.25,
)


def validate(document: dict[str, Any]) -> None:
    jsonschema.validate(document, SCHEMA)


def test_results_follow_the_gradescope_schema() -> None:
    document = to_gradescope(RESULT)
    validate(document)
    assert document["score"] == 10 and document["execution_time"] == 1.25
    assert document["stdout_visibility"] == "hidden"
    assert [t["status"] for t in document["tests"]] == ["passed", "failed"]
    assert document["tests"][1]["visibility"] == "after_due_date"
    assert "Code cell 3 raised NameError" in document["output"]


def test_schema_rejects_what_gradescope_would_not_take() -> None:
    document = to_gradescope(RESULT)
    broken = [
        {**document, "visiblity": "visible"},
        {**document, "tests": [{**document["tests"][0], "status": "ok"}]},
        {**document, "output_format": "markdown"},
        {key: value for key, value in document.items() if key not in ("score", "tests")},
    ]
    for candidate in broken:
        with pytest.raises(jsonschema.ValidationError):
            validate(candidate)


def test_failed_item_feedback_is_markdown_with_every_part() -> None:
    output = to_gradescope(RESULT)["tests"][1]["output"]
    for part in ("Smallest failing input", "```python\nQ = np.array", "Expected", "Got", "Hint"):
        assert part in output


def test_long_feedback_is_truncated_with_a_note() -> None:
    long = GradeResult("a.ipynb", (ItemResult("a", "A", 0, 1, "visible", Failure("x" * 50000), 1),))
    output = to_gradescope(long)["tests"][0]["output"]
    assert len(output) < MAX_OUTPUT_CHARS + 100 and "more characters not shown" in output


def test_internal_error_is_visible_but_its_traceback_hidden() -> None:
    broken = GradeResult("a.ipynb", RESULT.items, internal_error="Traceback: secret path")
    document = to_gradescope(broken)
    validate(document)
    visible = [t for t in document["tests"] if t.get("visibility") == "visible"]
    assert any(t["name"] == "Autograder failed" for t in visible)
    assert all("secret path" not in t["output"] for t in visible)
    hidden = [t for t in document["tests"] if t.get("visibility") == "hidden"]
    assert "secret path" in hidden[0]["output"]


def test_write_results_is_atomic_and_valid(tmp_path: Path) -> None:
    path = tmp_path / "out" / "results.json"
    write_results(path, RESULT)
    validate(json.loads(path.read_text(encoding="utf-8")))
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]


def test_terminal_summary_shows_each_item_and_the_hint() -> None:
    text = render_text(RESULT)
    assert "attention.ipynb: 10 / 15 points" in text
    assert "[PASS]" in text and "[FAIL]" in text and "Hint: Divide" in text


HOSTILE_TEXT = {
    "html-tag": '<img src=x onerror="alert(1)">',
    "script": "<script>alert(1)</script>",
    "markdown-image": "![x](https://evil.example/p.png)",
    "markdown-link": "[click here](https://evil.example)",
    "autolink": "<https://evil.example>",
    "bare-urls": "see https://evil.example or www.evil.example",
    "backtick-breakout": "`` ` <img src=x> ` ``",
    "fence-breakout": "```\n<img src=x>\n```\n<b>bold</b>",
    "heading-and-list": "\n\n# All checks passed\n- 100 / 100 points",
    "entities": "&lt;img src=x&gt; &#x3C;b&#x3E;",
    "html-comment": "<!-- the rest is hidden",
    "table": "| a | b |\n|---|---|\n| <i>x</i> | y |",
    "our-verdict": "All checks passed",
}
ALLOWED_TAGS = {"p", "code", "pre", "strong", "ul", "li"}


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.comments = 0
        self.outside_code: list[str] = []
        self.code = ""
        self._depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self._depth += tag == "code"

    def handle_endtag(self, tag: str) -> None:
        self._depth -= tag == "code"

    def handle_comment(self, data: str) -> None:
        self.comments += 1

    def handle_data(self, data: str) -> None:
        if not self._depth:
            self.outside_code.append(data)
        else:
            self.code += data


def rendered(markdown_text: str) -> _Tags:
    mistune = pytest.importorskip("mistune")
    to_html = mistune.create_markdown(escape=False, plugins=["url", "strikethrough", "table"])
    parser = _Tags()
    parser.feed(str(to_html(markdown_text)))
    parser.close()
    return parser


@pytest.mark.parametrize("text", HOSTILE_TEXT.values(), ids=HOSTILE_TEXT.keys())
def test_student_text_cannot_inject_markdown_or_html(text: str) -> None:
    """Quoted (as code) or not, in every field, student text renders as text: no tag, link or
    image of its own, and a quoted message shows as code, never as a sentence of ours."""
    failure = Failure(
        f"Your code raised {code(text)} (<cell 1>, line 2). Also {text}",
        inputs=text,
        snippet=text,
        expected=text,
        got=text,
        hint=f"Check {code(text)}; {text}",
    )
    result = GradeResult(
        text,
        (
            ItemResult("a", "Item A", 0, 10, "visible", failure, 1),
            ItemResult("b", "Item B", 0, 5, "after_due_date", failure, 1),
        ),
        notes=(f"Code cell 2 raised {code(text)}", text),
        internal_error=text,
    )
    document = to_gradescope(result)
    validate(document)
    for output in [document["output"], *(test["output"] for test in document["tests"])]:
        html = rendered(output)
        assert html.tags <= ALLOWED_TAGS and not html.comments, (html.tags, output)
    first_line = rendered(to_gradescope(result)["tests"][0]["output"].split("\n\n")[0])
    assert "All checks passed" not in "".join(first_line.outside_code).split("Also")[0]


@pytest.mark.parametrize(
    "text",
    ["plain", "a`b", "`x", "x`", "```", " a ", "a\nb", "``", "<b>x</b>", "\x1b[2J"],
    ids=[
        "plain",
        "inner-tick",
        "leading-tick",
        "trailing-tick",
        "three",
        "spaces",
        "newline",
        "only-ticks",
        "html",
        "escape",
    ],
)
def test_a_code_span_holds_exactly_its_text(text: str) -> None:
    html = rendered(f"Raised {code(text)} here.")
    assert html.tags == {"p", "code"}
    assert "".join(html.outside_code).strip() == "Raised  here."


def test_a_lone_surrogate_still_gives_a_valid_results_file(tmp_path: Path) -> None:
    failure = Failure("Your code raised `ValueError: \ud800`.", got="\udfff")
    broken = GradeResult(
        "attention\ud83d.ipynb",
        (ItemResult("a", "A", 0, 1, "visible", failure, 1),),
        notes=("Code cell 1 raised `ValueError: \udc80`",),
        internal_error="\ud800",
    )
    path = tmp_path / "results.json"
    write_results(path, broken)
    document = json.loads(path.read_bytes().decode("utf-8"))  # strict UTF-8
    validate(document)
    assert "ValueError: \ufffd" in document["tests"][0]["output"]
    assert "\ufffd" in document["output"]


def test_results_are_written_even_when_rendering_fails(tmp_path: Path) -> None:
    """A rendering bug of ours still yields a valid file that says the autograder failed."""
    odd = GradeResult("a.ipynb", (ItemResult("a", "A", float("nan"), 1, "visible", None, 1),))
    path = tmp_path / "results.json"
    write_results(path, odd)
    document = json.loads(path.read_text(encoding="utf-8"))
    validate(document)
    assert document["score"] == 0 and document["tests"][0]["name"] == "Autograder failed"


def test_the_total_stays_hidden_while_some_items_are() -> None:
    items = (
        ItemResult("a", "A", 10, 10, "visible", None, 1),
        ItemResult("b", "B", 0, 20, "visible", FAILURE, 1),
        ItemResult("c", "C", 15, 15, "after_due_date", None, 1),
        ItemResult("d", "D", 0, 5, "hidden", FAILURE, 1),
    )
    output = to_gradescope(GradeResult("attention.ipynb", items))["output"]
    assert "10 / 30 points on the 2 items shown now" in output
    assert "2 more items are graded after the due date" in output
    for leak in ("25", "50", "15", "/ 5"):
        assert leak not in output, output
    visible = GradeResult("attention.ipynb", items[:2])
    assert "10 / 30 points." in to_gradescope(visible)["output"]


CONTROLS = "\x1b[2J\x1b]0;owned\x07\x9b31m\r\u202eevil\x00\x7f"


def test_terminal_reports_show_control_characters_as_escapes() -> None:
    failure = Failure(f"Your code raised `{CONTROLS}`.", got=CONTROLS, hint=CONTROLS)
    result = GradeResult(
        f"a{CONTROLS}.ipynb",
        (ItemResult("a", "A", 0, 1, "visible", failure, 1),),
        notes=(CONTROLS,),
        internal_error=CONTROLS,
    )
    for text in (render_text(result), render_check(result, later=(CONTROLS,))):
        assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e]", text), text
        assert "\\x1b[2J" in text and "\\u202e" in text and "\\x9b" in text


@pytest.mark.parametrize(
    "text",
    [
        "x" * 50_000,
        "a" * 50_000 + ":",
        "`" + "a`" * 25_000,
        "".join("`" * n + "a" for n in range(1, 300)),
        "1" * 50_000 + ".",
        "w" * 50_000,
    ],
    ids=["letters", "scheme-like", "many-spans", "unmatched-runs", "digits", "www-like"],
)
def test_escaping_long_student_text_is_fast(text: str) -> None:
    began = time.perf_counter()
    render_failure(Failure(text, got=text, hint=text))
    assert time.perf_counter() - began < 1.0


_MARKDOWNISH = st.lists(
    st.sampled_from([*"`*_[]()<>!&#|~:/.@$\\-+=1 \naw", "www.", "http://", "<b>", "```"]),
    max_size=25,
).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(prose=_MARKDOWNISH, quoted=_MARKDOWNISH)
@example(prose=" \n*", quoted="")  # two spaces before a newline: a hard line break
def test_no_text_escapes_its_quoting(prose: str, quoted: str) -> None:
    """Whatever the text, a sentence renders with no tag but paragraphs and code, and a quoted
    part stays one code span holding exactly that text (line breaks as spaces)."""
    html = rendered(escaped(f"{prose} {code(quoted)} {prose}"))
    assert html.tags <= {"p", "code", "pre"} and not html.comments, escaped(prose)
    span = rendered(code(quoted))
    shown = " ".join(quoted.splitlines()) if quoted else " "
    assert span.tags == {"p", "code"} and "".join(span.outside_code).strip() == ""
    assert span.code.strip() == shown.strip()


def test_the_confinement_goes_to_staff_only() -> None:
    from autograder.scoring import GradeResult

    result = GradeResult("a.ipynb", (), confinement="basic, no Landlock, seccomp, uid 65534")
    document = to_gradescope(result, extra={"submission_sha256": "x"})
    assert document["extra_data"] == {
        "confinement": "basic, no Landlock, seccomp, uid 65534",
        "submission_sha256": "x",
    }
    assert "seccomp" not in document["output"]
    assert "  sandbox: basic, no Landlock, seccomp, uid 65534" in render_text(result)
    assert "extra_data" not in to_gradescope(GradeResult("a.ipynb", ()))


def test_a_failed_items_facts_are_in_its_extra_data_for_staff_tools() -> None:
    """The class report reads a failure's summary, hint, mistake and smallest input from
    extra_data; what students see (output) is unchanged, and the file stays schema-valid."""
    named = Failure(
        "`weights` differs.", inputs="Q: (1, 2)", hint="Scale it.", mistake="no-scaling"
    )
    result = GradeResult(
        "attention.ipynb",
        (
            ItemResult("a", "Item A", 10, 10, "visible", None, 50),
            ItemResult("b", "Item B", 0, 5, "after_due_date", named, 7),
            ItemResult("c", "Item C", 0, 5, "visible", Failure("x" * 50_000), 1),
        ),
    )
    document = to_gradescope(result)
    validate(document)
    facts = [test["extra_data"] for test in document["tests"]]
    assert facts[0] == {"id": "a"}
    assert facts[1] == {
        "id": "b",
        "summary": "`weights` differs.",
        "hint": "Scale it.",
        "mistake": "no-scaling",
        "inputs": "Q: (1, 2)",
    }
    assert len(facts[2]["summary"]) < MAX_OUTPUT_CHARS + 100 and facts[2]["hint"] == ""
    assert document["tests"][1]["output"] == render_failure(named)
