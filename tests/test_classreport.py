"""The class report: its facts from a class whose mistakes are known, its JSON, and a page that
shows every student's text as text and its plots in a real browser."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import REFERENCE_SOURCE, ROOT
from test_batch import notebook
from test_mutations import MUTANTS
from test_report import HOSTILE_TEXT

from autograder.batch import discover, grade_all
from autograder.classreport import build_report, render_html, to_json, write_class_report
from autograder.classreport import plots as plotting
from autograder.errors import ConfigError, ResultsError
from autograder.markup import terminal
from autograder.stored import StoredItem, StoredResult

MUTANT = {mutant.id: mutant for mutant in MUTANTS}
NO_SCALING = "Your result matches attention without the 1/sqrt(d_k) scaling"


def passed(item: str, points: float = 10) -> StoredItem:
    return StoredItem(item, item.upper(), points, points, True)


def failed(
    item: str, *, hint: str = "", summary: str = "Wrong.", inputs: str = "", mistake: str = ""
) -> StoredItem:
    return StoredItem(item, item.upper(), 0, 10, False, summary, hint, mistake, inputs)


def student(name: str, *items: StoredItem) -> StoredResult:
    return StoredResult(name, items)


def test_groups_are_counted_named_and_sorted_by_students_affected() -> None:
    report = build_report(
        [
            student("zoe", failed("a", hint="H1", inputs="Q: (2, 2)"), failed("b", hint="H2")),
            student("amy", failed("a", hint="H1", inputs="Q: (1, 2)"), passed("b")),
            student("bo", failed("a", hint="H1", inputs="Q: (1, 2)"), failed("b", hint="H2")),
            student("cat", failed("a", summary="Raised."), failed("b", summary="Raised.")),
            student("dan", passed("a"), failed("b", summary="Raised.")),
        ],
        exercise="toy",
    )
    assert report.students == ("amy", "bo", "cat", "dan", "zoe")
    assert [(t.id, t.passed, t.failed) for t in report.items] == [
        ("a", ("dan",), ("amy", "bo", "cat", "zoe")),
        ("b", ("amy",), ("bo", "cat", "dan", "zoe")),
    ]
    assert [(g.item, g.text, g.students) for g in report.misconceptions] == [
        ("a", "H1", ("amy", "bo", "zoe")),
        ("b", "H2", ("bo", "zoe")),
    ]
    # The shortest input description wins; a tie goes to the first name.
    first = report.misconceptions[0]
    assert (first.smallest_input, first.smallest_input_student) == ("Q: (1, 2)", "amy")
    assert (
        report.misconceptions[1].smallest_input,
        report.misconceptions[1].smallest_input_student,
    ) == ("", "")
    assert [(g.item, g.text, g.students) for g in report.unexplained] == [
        ("b", "Raised.", ("cat", "dan")),
        ("a", "Raised.", ("cat",)),
    ]
    document = to_json(report)
    assert document["students"] == 5
    assert document["items"]["a"] == {"title": "A", "max_score": 10, "passed": 1, "failed": 4}
    assert document["misconceptions"][0] == {
        "item": "a",
        "hint": "H1",
        "mistake": "",
        "students": ["amy", "bo", "zoe"],
        "count": 3,
        "smallest_input": "Q: (1, 2)",
        "smallest_input_student": "amy",
    }
    assert document["unexplained_failures"][0]["summary"] == "Raised."
    assert document["shared_wrong_answers"] == []


def test_shared_wrong_answers_are_an_input_passed_through() -> None:
    groups = [{"students": ["amy", "bo"], "items": ["a"], "inputs": 40, "similarity": 0.9}]
    report = build_report(
        [student("amy", passed("a"))], exercise="toy", shared_wrong_answers=groups
    )
    groups[0]["inputs"] = 0  # copied: the caller's dict does not change the report
    assert to_json(report)["shared_wrong_answers"] == [
        {"students": ["amy", "bo"], "items": ["a"], "inputs": 40, "similarity": 0.9}
    ]
    page = render_html(report, plots=None)
    assert "never a verdict" in page and "amy, bo" in page


@pytest.mark.parametrize(
    ("shared", "message"),
    [
        ([["amy", "bo"]], "Shared wrong answer 1 is list: give each group as a dict"),
        ([{"students": {"amy"}}], "Shared wrong answer 1 is not JSON-ready"),
        ([{}, {"inputs": float("nan")}], "Shared wrong answer 2 is not JSON-ready"),
    ],
    ids=["not-a-dict", "a-set", "nan"],
)
def test_shared_wrong_answers_that_are_not_json_are_refused(shared: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_report([], exercise="toy", shared_wrong_answers=shared)


class _Page(HTMLParser):
    """The tags and attributes of a page, and its text (outside `<style>`)."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.attributes: set[str] = set()
        self.text: list[str] = []
        self._style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attributes.update(name for name, _ in attrs)
        self._style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._style = False

    def handle_data(self, data: str) -> None:
        if not self._style:
            self.text.append(data)


def parsed(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    parser.close()
    return parser


PAGE_TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "section"}
PAGE_TAGS |= {"table", "thead", "tbody", "tr", "th", "td", "pre", "div", "figure", "figcaption"}
SVG_TAGS = {"svg", "defs", "g", "path", "use", "clippath", "rect", "text", "tspan"}
PAGE_ATTRIBUTES = {"lang", "charset", "http-equiv", "content", "name", "id", "class"}
SVG_ATTRIBUTES = {"xmlns", "xmlns:xlink", "width", "height", "viewbox", "version", "type"}
SVG_ATTRIBUTES |= {"d", "style", "clip-path", "transform", "x", "y", "xlink:href", "href"}
HOSTILE = {
    **HOSTILE_TEXT,
    "close-the-table": "</td></tr></table><script>alert(1)</script>",
    "attribute-breakout": '"><svg onload=alert(1)>',
    "close-the-style": "</style><script>alert(1)</script>",
    "bidi-override": "\u202eevil\u202c",
    "controls": "\x1b[2J\x00",
}


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
def test_student_text_on_the_page_is_text(text: str) -> None:
    """Names, hints, messages, inputs and shared-answer fields render as text: no tag or
    attribute of their own, and the text is shown (controls as escapes)."""
    item = failed("a", hint=text, summary=text, inputs=text, mistake=text)
    results = [
        student(text, item, failed("b", summary=text, inputs=text)),
        student(f"x{text}", item, passed("b")),
    ]
    shared = [{"students": [text, f"x{text}"], "items": [text], text: text}]
    report = build_report(results, exercise=text, shared_wrong_answers=shared)
    for figures in (None, {"scores": "<svg></svg>", "items": "<svg></svg>"}):
        page = parsed(render_html(report, plots=figures, note=text))
        assert page.tags <= PAGE_TAGS | {"svg"}, page.tags
        assert page.attributes <= PAGE_ATTRIBUTES, page.attributes
        shown = "".join(page.text)
        assert terminal(text) in shown and terminal(f"x{text}") in shown


FOLDER_NAMES = {
    "script": "<script>alert(1)</script>",
    "image": '<img src=x onerror="alert(1)">',
    "entity": "&lt;b&gt;",
    "newline": "a\n<h1>b</h1>",
    "bidi": "\u202egnp.exe",
}


def test_hostile_student_folders_are_read_and_shown_as_text(tmp_path: Path) -> None:
    out = _results(tmp_path / "out", "amy", *FOLDER_NAMES.values())
    written = write_class_report(out, students=["amy", *FOLDER_NAMES.values()], exercise="toy")
    document = json.loads(written.json.read_text(encoding="utf-8"))
    assert set(document["scores"]) == {"amy", *FOLDER_NAMES.values()}
    page = parsed(written.html.read_text(encoding="utf-8"))
    assert page.tags <= PAGE_TAGS | SVG_TAGS and "script" not in page.tags, page.tags
    assert page.attributes <= PAGE_ATTRIBUTES | SVG_ATTRIBUTES, page.attributes - PAGE_ATTRIBUTES


def test_hostile_item_ids_in_the_plots_stay_text() -> None:
    pytest.importorskip("matplotlib")
    hostile = "--><script>alert(1)</script><!--"
    report = build_report(
        [student("amy", failed(hostile)), student("bo", passed(hostile))], exercise="toy"
    )
    page = parsed(render_html(report, plots=plotting.draw(report)))
    assert page.tags <= PAGE_TAGS | SVG_TAGS, page.tags - PAGE_TAGS - SVG_TAGS
    assert "script" not in page.tags


def test_the_page_is_self_contained() -> None:
    pytest.importorskip("matplotlib")
    report = build_report(
        [student("amy", failed("a", hint="H")), student("bo", passed("a"))], exercise="toy"
    )
    page = render_html(report, plots=plotting.draw(report))
    assert page.count("<svg") == 2
    assert not re.search(r"""(?i)(src|href)\s*=\s*["']?\s*(https?:|//|file:)""", page)
    assert not re.search(r"(?i)<(script|link|img|iframe|object|embed)\b|@import|@font-face", page)
    assert not re.search(r"(?i)url\(\s*['\"]?(?!#)", page)  # only the SVG's own url(#clip)
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    again = render_html(report, plots=plotting.draw(report))
    assert again == page  # deterministic: a resumed class gives the same bytes


def test_without_matplotlib_the_json_is_written_and_the_page_says_how_to_get_plots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    from autograder.report import write_results
    from autograder.rubric import Failure
    from autograder.scoring import GradeResult, ItemResult

    failure = Failure("Wrong.", hint="Scale it.", inputs="Q: (1, 2)")
    for name, item_failure in (("amy", failure), ("bo", None)):
        score = 0.0 if item_failure else 10.0
        item = ItemResult("a", "A", score, 10, "visible", item_failure, 1)
        write_results(out / name / "results.json", GradeResult("n.ipynb", (item,)))
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    written = write_class_report(out, students=["amy", "bo"], exercise="toy")
    assert written.note == plotting.MISSING and 'pip install -e ".[instructor]"' in written.note
    document = json.loads(written.json.read_text(encoding="utf-8"))
    assert document["items"] == {"a": {"title": "A", "max_score": 10, "passed": 1, "failed": 1}}
    assert document["misconceptions"][0]["students"] == ["amy"]
    page = written.html.read_text(encoding="utf-8")
    assert "<svg" not in page and "need matplotlib" in page


def test_batch_without_matplotlib_writes_the_report_and_says_how_to_get_plots(
    tmp_path: Path,
) -> None:
    course = tmp_path / "course"
    course.mkdir()
    (course / "amy.ipynb").write_text("{broken", encoding="utf-8")  # graded without a sandbox
    out = tmp_path / "out"
    blocked = (
        "import sys; sys.modules['matplotlib'] = None; from autograder.__main__ import run; "
        f"raise SystemExit(run(['batch', {str(course)!r}, '--jobs', '1', '--out', {str(out)!r}]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", blocked], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert plotting.MISSING in done.stderr
    assert json.loads((out / "report.json").read_text(encoding="utf-8"))["students"] == 1
    assert "need matplotlib" in (out / "report.html").read_text(encoding="utf-8")


def _results(out: Path, *names: str) -> Path:
    from autograder.report import write_results
    from autograder.scoring import GradeResult, ItemResult

    for name in names:
        item = ItemResult("a", "A", 10, 10, "visible", None, 1)
        write_results(out / name / "results.json", GradeResult("n.ipynb", (item,)))
    return out


@pytest.mark.parametrize("name", ["report.json", "report.html"])
def test_a_student_named_like_a_report_file_is_refused_by_name(tmp_path: Path, name: str) -> None:
    out = _results(tmp_path / "out", "amy", name)
    with pytest.raises(ResultsError, match=f"{name} exists and is not a regular file"):
        write_class_report(out, students=["amy", name], exercise="toy")
    assert (out / name / "results.json").is_file()  # the student's results are untouched


# A class whose mistakes are known: two correct, three without the scaling, one whose causal
# mask has an extra axis (a mistake the grader does not name), two unreadable notebooks.
KNOWN_CLASS = {
    "ada": REFERENCE_SOURCE,
    "ben": REFERENCE_SOURCE,
    "cy": MUTANT["no-scaling"].source(),
    "dee": MUTANT["no-scaling"].source(),
    "eve": MUTANT["no-scaling"].source(),
    "fay": MUTANT["causal-with-batch-axis"].source(),
    "hal": None,
    "ivy": None,
}


def make_known_class(folder: Path) -> Path:
    for name, source in KNOWN_CLASS.items():
        if source is None:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{name}.ipynb").write_text("{broken", encoding="utf-8")
        else:
            notebook(folder / f"{name}.ipynb", source)
    return folder


@pytest.fixture(scope="module")
def graded_class(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(course, out): the known class graded once."""
    root = tmp_path_factory.mktemp("known-class")
    course = make_known_class(root / "course")
    grade_all(discover(course, assignment="attention"), out=root / "out", exercise="attention")
    return course, root / "out"


@pytest.mark.slow
def test_the_report_of_a_class_with_known_mistakes(graded_class: tuple[Path, Path]) -> None:
    _, out = graded_class
    written = write_class_report(out, students=list(KNOWN_CLASS), exercise="attention")
    document = json.loads(written.json.read_text(encoding="utf-8"))
    assert document["students"] == 8
    assert document["scores"]["ada"] == document["scores"]["ben"] == 100
    assert document["items"]["sdpa_reference"] == {
        "title": document["items"]["sdpa_reference"]["title"],
        "max_score": 15,
        "passed": 3,  # ada, ben, fay
        "failed": 5,  # cy, dee, eve, hal, ivy
    }
    assert document["items"]["causal_mask"]["passed"] == 5  # all but fay, hal, ivy

    # The named mistake heads the list: three students on each item it breaks.
    named = [m for m in document["misconceptions"] if m["mistake"] == "no-scaling"]
    assert {m["item"] for m in named} >= {"sdpa_reference", "sdpa_masking"}
    assert all(m["students"] == ["cy", "dee", "eve"] and m["count"] == 3 for m in named)
    assert all(m["hint"].startswith(NO_SCALING) for m in named)
    first = document["misconceptions"][0]
    assert (first["item"], first["mistake"], first["smallest_input_student"]) == (
        "sdpa_reference",
        "no-scaling",
        "cy",
    )
    assert first["smallest_input"].startswith("Q: (1, 2)")
    counts = [m["count"] for m in document["misconceptions"]]
    assert counts == sorted(counts, reverse=True)
    # The unnamed mistake: a hint of facts (no mistake id), for fay alone.
    fay = [m for m in document["misconceptions"] if "fay" in m["students"]]
    assert [(m["item"], m["mistake"], m["students"]) for m in fay] == [("causal_mask", "", ["fay"])]
    assert fay[0]["smallest_input"] == "seq_len = 1"
    # Unreadable notebooks: no hint, one group per item and message.
    unexplained = document["unexplained_failures"]
    assert {student for group in unexplained for student in group["students"]} == {"hal", "ivy"}
    assert all(group["summary"].startswith("Not checked") for group in unexplained)
    assert len({group["item"] for group in unexplained}) == 10

    page = written.html.read_text(encoding="utf-8")
    assert written.note == "" and page.count("<svg") == 2
    assert "cy, dee, eve" in page and "seq_len = 1" in page


@pytest.mark.slow
def test_the_report_is_the_same_whether_students_were_graded_or_resumed(
    graded_class: tuple[Path, Path], tmp_path: Path
) -> None:
    course, graded = graded_class
    out = tmp_path / "out"
    shutil.copytree(graded, out)
    first = write_class_report(out, students=list(KNOWN_CLASS), exercise="attention")
    before = (first.json.read_bytes(), first.html.read_bytes())
    # Resume everyone but eve, whose notebook is saved again (same code, new bytes).
    path = course / "eve.ipynb"
    original = path.read_bytes()
    try:
        path.write_bytes(original + b"\n")
        outcomes = grade_all(
            discover(course, assignment="attention"), out=out, exercise="attention"
        )
    finally:
        path.write_bytes(original)
    assert [o.student for o in outcomes if not o.resumed] == ["eve"]
    again = write_class_report(out, students=[o.student for o in outcomes], exercise="attention")
    assert (again.json.read_bytes(), again.html.read_bytes()) == before


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip(
        "Chromium is not installed, so the page cannot be checked in a browser: install it "
        "(Debian/Ubuntu: apt-get install chromium; .ci/run does so when run as root)."
    )


def _screenshot(page: Path, tmp_path: Path) -> np.ndarray[Any, Any]:
    from matplotlib.image import imread

    shot = tmp_path / f"{page.stem}.png"
    done = subprocess.run(
        [
            _chromium(),
            "--headless",
            "--no-sandbox",  # as root (CI); the page runs no script and loads nothing
            "--disable-gpu",
            "--hide-scrollbars",
            "--force-color-profile=srgb",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1280,2000",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert shot.is_file(), done.stderr[-2000:]
    pixels = imread(shot)
    return np.asarray(np.round(pixels[..., :3] * 255), dtype=np.int64)


def _pixels_of(image: np.ndarray[Any, Any], colour: str) -> int:
    rgb = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(image - rgb).max(axis=-1) <= 6).sum())


@pytest.mark.slow
def test_a_browser_shows_the_plots(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    _chromium()
    results = [
        student(
            f"s{n}",
            *(passed(i) if (n + k) % 3 else failed(i, hint="H") for k, i in enumerate("abcd")),
        )
        for n in range(12)
    ]
    report = build_report(results, exercise="toy")
    with_plots = tmp_path / "with.html"
    with_plots.write_text(render_html(report, plots=plotting.draw(report)), encoding="utf-8")
    without = tmp_path / "without.html"
    without.write_text(render_html(report, plots=None), encoding="utf-8")

    shown, control = _screenshot(with_plots, tmp_path), _screenshot(without, tmp_path)
    assert shown.shape[:2] == (2000, 1280)
    for colour in (plotting.BARS_COLOUR, plotting.PASSED_COLOUR, plotting.FAILED_COLOUR):
        assert _pixels_of(shown, colour) > 2000, colour  # bars drawn, at a visible size
        assert _pixels_of(control, colour) == 0, colour  # and only by the plots
