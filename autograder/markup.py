"""Text that may hold a student's words, made safe for where it goes: Markdown and terminals.

Feedback sentences are ours, but they quote what the student's code said (exception messages
and type names, printed output, reprs, names it defined), and that may be anything: HTML,
links, images, backticks, terminal escapes. The rule:

* In Markdown, a student's words appear only inside a code span (`code`) or a fenced block
  (`code_block`) whose fence is longer than any run of backticks inside, so nothing in them
  can end the span or block early (CommonMark). Everything else in a sentence is escaped
  (`escaped`): a sentence of ours renders as text, and its code spans stay code spans.
* On a terminal (`terminal`), control characters other than newline and tab (C0, DEL, C1,
  and the bidirectional overrides that reorder what is shown) appear as visible escapes such
  as `\\x1b`, so printed text cannot move the cursor, retitle the window or hide a line.
"""

from __future__ import annotations

import re

__all__ = ["code", "code_block", "escaped", "terminal"]

_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_BACKTICKS = re.compile("`+")
_SPECIAL = re.compile(r"([\\`*\[\]<>&|~@$]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")
_LINE_START = re.compile(r"(?m)^([ \t]*)([-+=#])")
_NUMBERED = re.compile(r"(?m)^([ \t]*\d+)([.)])")
_WWW = re.compile(r"(?i)\b(www)\.")


def _visible(match: re.Match[str]) -> str:
    number = ord(match.group())
    return f"\\x{number:02x}" if number < 0x100 else f"\\u{number:04x}"


def terminal(text: str) -> str:
    """`text` safe to print: controls other than newline and tab shown as escapes like `\\x1b`."""
    return _SURROGATE.sub("\ufffd", _CONTROL.sub(_visible, text))


def _fence_for(text: str, least: int) -> str:
    longest = max((len(run) for run in _BACKTICKS.findall(text)), default=0)
    return "`" * max(least, longest + 1)


def code(text: str) -> str:
    """`text` as one Markdown code span that it cannot close early (on one line)."""
    text = terminal(" ".join(text.splitlines())) or " "  # a span holds no line break
    fence = _fence_for(text, 1)
    if text.startswith("`") or text.endswith("`") or (text.startswith(" ") and text.endswith(" ")):
        text = f" {text} "  # CommonMark strips one space from each end
    return f"{fence}{text}{fence}"


def code_block(text: str, language: str = "") -> str:
    """`text` as a fenced Markdown code block that no line of it can close early."""
    text = terminal(text.rstrip())
    fence = _fence_for(text, 3)
    return f"{fence}{language}\n{text}\n{fence}"


def _escape(prose: str) -> str:
    prose = _SPECIAL.sub(r"\\\1", prose)
    prose = _NUMBERED.sub(r"\1\\\2", prose)
    prose = _LINE_START.sub(r"\1\\\2", prose)
    prose = prose.replace("://", "\\:\\/\\/")  # no bare URL for a linkifier to find
    return _WWW.sub(r"\1\\.", prose)


_HARD_BREAK = re.compile(r"  +\n")


def escaped(sentence: str) -> str:
    """A sentence of ours as Markdown: its code spans kept (re-fenced safely), the rest escaped.

    Code spans are found by CommonMark's rule (a run of n backticks up to the next run of
    exactly n); a backtick run that closes nothing is escaped like any other character. So
    whatever a quoted name or message holds, the result has no HTML, link or image in it.
    """
    sentence = terminal(sentence)
    parts: list[str] = []
    position = searched = 0
    while (opening := _BACKTICKS.search(sentence, searched)) is not None:
        closing = _closing(sentence, opening)
        if closing is None:  # a backtick run that closes nothing is literal text
            searched = opening.end()
            continue
        parts.append(_escape(sentence[position : opening.start()]))
        content = sentence[opening.end() : closing.start()].replace("\n", " ")
        if content.startswith(" ") and content.endswith(" ") and content.strip():
            content = content[1:-1]  # CommonMark strips one space from each end
        parts.append(code(content))
        position = searched = closing.end()
    parts.append(_escape(sentence[position:]))
    return _HARD_BREAK.sub(" \n", "".join(parts))  # two spaces before a newline make a <br>


def _closing(sentence: str, opening: re.Match[str]) -> re.Match[str] | None:
    """The backtick run that closes the code span `opening` starts, if any (same length)."""
    width = len(opening.group())
    for run in _BACKTICKS.finditer(sentence, opening.end()):
        if len(run.group()) == width:
            return run
    return None
