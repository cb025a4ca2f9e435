"""Hostile and broken submissions: they earn nothing undeserved and lose nothing deserved.

Each tampering case is appended to WRONG, an implementation that honestly scores 0: with the
tampering it must still score exactly what WRONG alone scores. Honest-but-noisy cases are
appended to the reference and must keep full marks. Every case runs through the real pipeline
(reading, sandbox, checks, scoring, results.json).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import nbformat
import pytest
from conftest import REFERENCE_SOURCE, ROOT

from autograder.catalog import rubric_of
from autograder.pipeline import grade
from autograder.report import write_results
from autograder.sandbox import forkserver, modes, started
from autograder.sandbox.confinement import SANDBOX_UIDS, UidLease, lease_uid, sandbox_user
from autograder.scoring import GradeResult
from autograder.settings import Limits

pytestmark = pytest.mark.slow

RUBRIC = rubric_of("attention")
SCHEMA = json.loads((Path(__file__).parent / "gradescope_results.schema.json").read_text())
LIMITS = Limits(call_seconds=3.0, cell_seconds=3.0, notebook_seconds=30.0, item_seconds=20.0)
CHILD_IS_ROOT = os.geteuid() == 0 and sandbox_user() is None

WRONG = """
import numpy as np
MASK_VALUE = -1e9

class Linear:
    def __init__(self, n_in, n_out):
        self.weight = np.zeros((n_in, n_out))
        self.bias = np.zeros(n_out)
    def forward(self, x):
        return x @ self.weight + self.bias
    __call__ = forward

def scaled_dot_product_attention(Q, K, V, mask=None):
    Q += 1.0  # also changes the caller's array
    shape = np.broadcast_shapes(Q.shape[:-2], K.shape[:-2])
    out = np.zeros((*shape, Q.shape[-2], V.shape[-1]))
    return out, np.zeros((*shape, Q.shape[-2], K.shape[-2]))

def create_causal_mask(seq_len):
    return np.ones((seq_len, seq_len))

class MultiHeadAttention:
    def __init__(self, embed_dim, num_heads):
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, 0
        self.q_proj = self.k_proj = self.v_proj = self.out_proj = Linear(embed_dim, embed_dim)
    def forward(self, x, mask=None):
        return np.zeros_like(x)
    __call__ = forward
"""


def notebook(path: Path, cells: Sequence[str]) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(cell) for cell in cells]
    path.write_text(nbformat.writes(nb), encoding="utf-8")
    return path


def graded(tmp_path: Path, cells: Sequence[str]) -> GradeResult:
    path = notebook(tmp_path / "attention.ipynb", cells)
    result = grade(path, rubric=RUBRIC, limits=LIMITS)
    results = tmp_path / "results" / "results.json"
    write_results(results, result)
    jsonschema.validate(json.loads(results.read_text(encoding="utf-8")), SCHEMA)
    return result


def scores(result: GradeResult) -> dict[str, float]:
    return {item.id: item.score for item in result.items}


@pytest.fixture(scope="module")
def honest_wrong(tmp_path_factory: pytest.TempPathFactory) -> dict[str, float]:
    result = graded(tmp_path_factory.mktemp("wrong"), [WRONG])
    assert result.score == 0, scores(result)
    return scores(result)


MARKER = "/tmp/autograder-tamper-marker"

TAMPERING = {
    "patch-numpy-comparisons": """
import numpy as np, numpy.testing
np.allclose = lambda *a, **k: True
np.isclose = lambda a, b, *r, **k: np.ones(np.broadcast(a, b).shape, bool)
np.array_equal = lambda *a, **k: True
numpy.testing.assert_allclose = lambda *a, **k: None
""",
    "patch-builtins": """
import builtins
builtins.isinstance = lambda *a: True
builtins.abs = lambda x: 0
builtins.len = lambda x: 0
""",
    "replace-test-modules": """
import sys, types
for name in ("hypothesis", "numpy.testing", "unittest", "pytest", "autograder"):
    fake = types.ModuleType(name)
    fake.__getattr__ = lambda attr: (lambda *a, **k: True)
    sys.modules[name] = fake
""",
    "read-the-reference": f"""
import glob, os
found = []
roots = ["/autograder/source", {str(ROOT)!r}, os.path.expanduser("~")]
roots.append("/proc/%d/cwd" % os.getppid())
for root in roots:
    for path in glob.glob(root + "/**/solutions/attention.py", recursive=True):
        try:
            exec(open(path).read(), globals())
            found.append(path)
        except OSError:
            pass
try:
    import autograder.reference
    exec(open(autograder.reference.solutions_dir() / "attention.py").read(), globals())
except BaseException:
    pass
""",
    "read-the-checks": f"""
try:
    source = open({str(ROOT / "autograder" / "exercises" / "attention" / "rubric.py")!r}).read()
    exec(source.split("# --- judging helpers")[0])
except OSError:
    pass
""",
    "inspect-the-caller": """
import inspect, numpy as np
_honest = scaled_dot_product_attention
def scaled_dot_product_attention(Q, K, V, mask=None):
    for frame in inspect.stack():
        for name, value in frame.frame.f_locals.items():
            if name in ("expected", "ref_out", "reference") and isinstance(value, tuple):
                return value
    return _honest(Q, K, V, mask)
""",
    "lying-ndarray-subclass": """
import numpy as np
class Yes(np.ndarray):
    def __eq__(self, other): return True
    __ne__ = lambda self, other: False
    def __array_function__(self, *a, **k): return True
_honest = scaled_dot_product_attention
def scaled_dot_product_attention(Q, K, V, mask=None):
    out, w = _honest(Q, K, V, mask)
    return out.view(Yes), w.view(Yes)
""",
    "code-in-reduce-array-del": f"""
import os
PARENT = os.getppid()
class Payload:
    def _fire(self, *a):
        if os.getpid() == PARENT:
            open({MARKER!r}, "w").write("ran in the grader")
        return (print, ("x",))
    __reduce__ = __reduce_ex__ = _fire
    __array__ = lambda self, *a, **k: self._fire()
    __del__ = _fire
    __eq__ = lambda self, other: True
def create_causal_mask(seq_len):
    return Payload()
""",
    "write-fake-results": """
import json, os
fake = json.dumps({"score": 100, "tests": []})
for path in ("/autograder/results/results.json", "results.json", "/tmp/results.json",
             os.path.expanduser("~/results.json")):
    try:
        open(path, "w").write(fake)
    except OSError:
        pass
print(fake)
import sys; sys.stderr.write(fake)
""",
    "fake-protocol-on-stdout": """
import sys, struct, json
msg = json.dumps({"ok": True, "value": {"t": "int", "v": 100}}).encode()
sys.stdout.write(str(struct.pack("!I", len(msg)) + msg))
sys.stdout.buffer.write(struct.pack("!I", len(msg)) + msg)
sys.stdout.flush()
""",
    "exit-at-top-level": "import sys\nsys.exit(0)",
    "os-exit-in-a-call": """
import os
def scaled_dot_product_attention(Q, K, V, mask=None):
    os._exit(0)
""",
    "kill-the-parent": """
import os, signal
for target in (os.getppid(), -os.getpgid(os.getppid()), -1):
    try:
        os.kill(target, signal.SIGKILL)
    except (OSError, ValueError):
        pass
""",
    "hijack-the-sockets": """
import os, socket
for fd in range(3, 64):
    try:
        s = socket.socket(fileno=os.dup(fd))
        s.sendall(b"\\x00\\x00\\x00\\x02{}")
    except OSError:
        pass
""",
    "close-the-sockets": "import os\nos.closerange(3, 256)",
    "background-writer": """
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(1.5)
        try:
            open(os.environ.get("RESULTS", "/autograder/results/results.json"), "w").write("{}")
        finally:
            os._exit(0)
    os._exit(0)
""",
    "detect-the-grader": """
import os, sys
SEEN = sorted(k for k in os.environ if "GRAD" in k.upper() or "HYPOTHESIS" in k.upper())
SEEN += sorted(m for m in sys.modules if m.split(".")[0] in ("hypothesis", "autograder", "pytest"))
if SEEN:
    raise SystemExit("grader detected: " + ", ".join(SEEN))
""",
}


@pytest.mark.parametrize("tamper", TAMPERING.values(), ids=TAMPERING.keys())
def test_tampering_earns_exactly_the_honest_score(
    tmp_path: Path, honest_wrong: dict[str, float], tamper: str
) -> None:
    if "kill-the-parent" in tamper and CHILD_IS_ROOT:
        pytest.skip("the child would run as root")
    Path(MARKER).unlink(missing_ok=True)
    result = graded(tmp_path, [WRONG, tamper])
    assert scores(result) == honest_wrong, [i.failure for i in result.items if i.score]
    assert not Path(MARKER).exists(), "student code ran in the grader's process"
    time.sleep(0.1)


def test_background_process_cannot_touch_results(tmp_path: Path) -> None:
    result = graded(tmp_path, [REFERENCE_SOURCE, TAMPERING["background-writer"]])
    time.sleep(2.0)
    document = json.loads((tmp_path / "results" / "results.json").read_text(encoding="utf-8"))
    assert document["score"] == result.score == 100


def test_grader_is_not_detectable(tmp_path: Path) -> None:
    result = graded(tmp_path, [REFERENCE_SOURCE, TAMPERING["detect-the-grader"]])
    assert result.score == 100 and not any("grader detected" in n for n in result.notes)


NOISY = {  # honest code, then a noisy cell 2: (the cell, what the student is told about it)
    "print-a-million-lines": ("for i in range(10**6):\n    print(i)", ""),
    "hang-at-top-level": (
        "while True:\n    pass",
        "Code cell 2 did not finish within its time (3 s a cell); it was skipped.",
    ),
    "sleep-at-top-level": (
        "import time\ntime.sleep(3600)",
        "Code cell 2 did not finish within its time (3 s a cell); it was skipped.",
    ),
    "allocate-1-tib": (
        "import numpy as np\nbig = np.ones(2**40 // 8)",
        "Code cell 2 raised `MemoryError",
    ),
    "deep-recursion": (
        "def f(n):\n    return f(n + 1)\nf(0)",
        "Code cell 2 raised `RecursionError",
    ),
    "crash-with-deep-recursion": (
        "import sys\nsys.setrecursionlimit(10**8)\ndef f(n):\n    return f(n + 1)\nf(0)",
        # Python 3.10 overflows the C stack and crashes; 3.11+ recurses on the heap until the
        # cell runs out of time (or memory): either way the cell is skipped, and says why.
        (
            "Code cell 2 stopped the Python process (it crashed or exited); it was skipped.",
            "Code cell 2 did not finish within its time (3 s a cell); it was skipped.",
            "Code cell 2 raised `MemoryError",
        ),
    ),
    "syntax-error-cell": ("def broken(:\n    pass", "Code cell 2 raised `SyntaxError"),
    "input-and-magics": ("%matplotlib inline\nname = input('Your name? ')\n!ls\n", ""),
    "exit-in-a-cell": ("import sys\nsys.exit('bye')", "Code cell 2 raised `SystemExit: bye`"),
    # A copy of the zygote must never serve the grader (it would answer the next item too).
    "bare-fork-at-top-level": ("import os\nos.fork()", ""),
    # Python may sit where the sandbox user cannot read it (here: under /root, mode 0700).
    "import-timeit-at-top-level": (
        "import timeit, locale\nSTARTED = timeit.default_timer()",
        "",
    ),
}


@pytest.mark.parametrize(("noise", "note"), NOISY.values(), ids=NOISY.keys())
def test_noisy_but_correct_keeps_full_marks(
    tmp_path: Path, noise: str, note: str | tuple[str, ...]
) -> None:
    result = graded(tmp_path, [REFERENCE_SOURCE, noise, "AFTER = 1"])
    assert result.score == 100, [(i.id, i.failure) for i in result.items if i.failure]
    assert len(result.output) < LIMITS.output_bytes + 200
    if note:
        assert len(result.notes) == 1 and result.notes[0].startswith(note), result.notes
        assert result.notes[0].endswith(("the cells after it still ran.", "it was skipped."))
    else:
        assert result.notes == ()


def test_a_million_printed_lines_are_cut_with_a_note(tmp_path: Path) -> None:
    result = graded(tmp_path, [REFERENCE_SOURCE, NOISY["print-a-million-lines"][0]])
    assert result.output.startswith("0\n1\n2\n")
    assert "more bytes of output were dropped]" in result.output


@pytest.mark.skipif(CHILD_IS_ROOT, reason="the child would run as root: no process limit")
def test_fork_bomb_at_top_level_is_contained(tmp_path: Path) -> None:
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    result = graded(tmp_path, [REFERENCE_SOURCE, bomb, "AFTER = 1"])
    assert result.score == 100, [(i.id, i.failure) for i in result.items if i.failure]
    assert result.notes == (
        "Code cell 2 did not finish within its time (3 s a cell); it was skipped.",
    )


BROKEN_RETURNS = {
    "returns-a-list": ("return [out.tolist(), w.tolist()]", "expected a NumPy array"),
    "returns-none": ("return None", "expected a tuple (output, weights)"),
    "returns-one-value": ("return out", "expected a tuple (output, weights)"),
    "returns-three-values": ("return out, w, w", "expected a tuple (output, weights)"),
    "returns-complex": ("return out.astype(complex), w", "ndarray of dtype complex128"),
    "returns-object-array": ("return out.astype(object), w", "ndarray of dtype object"),
    "returns-nan": ("return out * np.nan, w", "contains NaN"),
    "returns-weights-first": ("return w, out", "(output, weights), in that order"),
}


@pytest.mark.parametrize(
    ("statement", "message"), BROKEN_RETURNS.values(), ids=BROKEN_RETURNS.keys()
)
def test_bad_return_values_get_a_clear_message(
    tmp_path: Path, statement: str, message: str
) -> None:
    source = REFERENCE_SOURCE.replace(
        "    return weights @ V, weights", "    out, w = weights @ V, weights\n    " + statement
    )
    assert source != REFERENCE_SOURCE
    result = graded(tmp_path, [source])
    failure = {i.id: i.failure for i in result.items}["sdpa_reference"]
    assert failure is not None and message in failure.summary + failure.hint, failure


def test_wrong_name_is_named(tmp_path: Path) -> None:
    source = REFERENCE_SOURCE.replace(
        "def scaled_dot_product_attention(", "def scaled_dot_prod_attention("
    ).replace(
        "attended, _ = scaled_dot_product_attention(", "attended, _ = scaled_dot_prod_attention("
    )
    result = graded(tmp_path, [source])
    failure = {i.id: i.failure for i in result.items}["sdpa_reference"]
    assert failure is not None
    assert "found `scaled_dot_prod_attention`; expected `scaled_dot_product_attention`" in (
        failure.summary.replace("Found", "found")
    )
    assert result.score == 45  # the causal mask and the four MultiHeadAttention items still pass


def test_wrong_signature_is_reported(tmp_path: Path) -> None:
    source = REFERENCE_SOURCE.replace(
        "def create_causal_mask(seq_len: int)", "def create_causal_mask(seq_len: int, batch: int)"
    )
    result = graded(tmp_path, [source])
    failure = {i.id: i.failure for i in result.items}["causal_mask"]
    assert failure is not None and "missing 1 required positional argument" in failure.summary


def test_a_lying_child_cannot_make_the_grader_kill_another_process(tmp_path: Path) -> None:
    """Top-level code replaces the fork handler to report the grader's own pid as a worker."""
    lie = """
import json, os, socket, struct
_real = socket.recv_fds
def recv_fds(sock, size, count, *rest):
    message, fds, flags, address = _real(sock, size, count, *rest)
    if message.startswith(b"fork"):
        for fd in fds:
            os.close(fd)
        body = json.dumps({"pid": os.getppid(), "lengths": []}).encode()
        sock.sendall(struct.pack("!I", len(body)) + body)
        return b"noop", [], flags, address
    return message, fds, flags, address
socket.recv_fds = recv_fds
"""
    result = graded(tmp_path, [REFERENCE_SOURCE, lie])
    assert result.score == 0  # no worker could be started: nothing of ours was killed
    assert all(item.failure is not None for item in result.items)
    # An answer to a request never made is a lie: each item stops at once, not after waiting
    # out the zygote's timeout (5 s an item, a minute in all).
    assert all("never asked" in item.failure.summary for item in result.items if item.failure)


FORGE = """
import os, stat, struct
def _forge():
    for fd in range(3, 256):
        try:
            if stat.S_ISSOCK(os.fstat(fd).st_mode):
                os.write(fd, struct.pack("!I", len(HEADER)) + HEADER + PAYLOAD)
        except OSError:
            pass
_honest_mask = create_causal_mask
def create_causal_mask(seq_len):
    _forge()
    return _honest_mask(seq_len)
"""

# A worker forges the reply to one call (in `create_causal_mask`, used by one item only):
# (header bytes, raw payload, what the student is told). It costs that item, nothing else.
FORGED_REPLIES = {
    "dtype-numpy-rejects": (
        b'{"ok":true,"value":{"t":"array","dtype":"f1","shape":[2],"buf":0},"lengths":[2]}',
        b"\\0\\0",
        "the worker sent an invalid value (dtype 'f1' is not a real number or bool)",
    ),
    "shape-product-wraps-to-0": (
        b'{"ok":true,"value":{"t":"array","dtype":"<f8","shape":[4294967296,4294967296],'
        b'"buf":0},"lengths":[0]}',
        b"",
        "needs 147573952589676412928 bytes, got 0",
    ),
    "shape-overflows-int64": (
        b'{"ok":true,"value":{"t":"array","dtype":"<f8","shape":[4611686018427387904,4],'
        b'"buf":0},"lengths":[0]}',
        b"",
        "the worker sent an invalid value (shape [4611686018427387904, 4]",
    ),
    "nan-in-header": (
        b'{"ok":true,"value":{"t":"float","v":NaN},"lengths":[]}',
        b"",
        "the worker broke the protocol (header holds NaN",
    ),
    "utf16-header": (
        '{"ok":true,"value":{"t":"none"}}'.encode("utf-16"),
        b"",
        "broke the protocol",
    ),
    "huge-buffer-length": (b'{"ok":true,"lengths":[1099511627776]}', b"", "broke the protocol"),
    "lone-surrogates-in-an-error": (
        b'{"ok":false,"error":{"type":"\\ud800","message":"\\udfff <img src=x>",'
        b'"bases":["Exception"]},"lengths":[]}',
        b"",
        "\ufffd: \ufffd <img src=x>",
    ),
}


@pytest.mark.parametrize(
    ("header", "payload", "message"), FORGED_REPLIES.values(), ids=FORGED_REPLIES.keys()
)
def test_a_forged_reply_costs_only_its_item(
    tmp_path: Path, header: bytes, payload: bytes, message: str
) -> None:
    forge = f"HEADER = {header!r}\nPAYLOAD = {payload!r}\n" + FORGE
    result = graded(tmp_path, [REFERENCE_SOURCE, forge])
    lost = {item.id: item.failure for item in result.items if item.failure is not None}
    assert list(lost) == ["causal_mask"], lost
    assert message in lost["causal_mask"].summary, lost["causal_mask"]
    assert result.score == 90 and not result.internal_error
    document = json.loads((tmp_path / "results" / "results.json").read_bytes().decode("utf-8"))
    assert "autograder failed" not in json.dumps(document).lower()


def test_a_submission_over_the_containers_memory_gets_memory_error_in_its_item(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In a (faked) 700 MB container the child may use 700 - 256 MB: allocating 600 MB in one
    function raises MemoryError there, instead of taking the container (and results) down."""
    from autograder import memory

    root = tmp_path / "cgroup"
    root.mkdir()
    (root / "memory.max").write_text(str(700 << 20), encoding="ascii")
    (tmp_path / "proc-cgroup").write_text("0::/\n", encoding="ascii")
    monkeypatch.setattr(memory, "CGROUP_ROOT", root)
    monkeypatch.setattr(memory, "PROC_CGROUP", tmp_path / "proc-cgroup")
    assert memory.child_memory_bytes(LIMITS) == (700 - 256) << 20
    greedy = """
import numpy as np
_honest_mask = create_causal_mask
def create_causal_mask(seq_len):
    hog = np.ones(600 * 2**20 // 8)
    return _honest_mask(seq_len) + 0 * hog[0]
"""
    result = graded(tmp_path, [REFERENCE_SOURCE, greedy])
    lost = {item.id: item.failure for item in result.items if item.failure is not None}
    assert list(lost) == ["causal_mask"], lost
    assert "MemoryError" in lost["causal_mask"].summary, lost["causal_mask"]
    assert result.score == 90


RENAMED = """
Passed = type("All checks passed", (Exception,), {})
def scaled_dot_product_attention(Q, K, V, mask=None):
    raise Passed("100 / 100 points <img src=x onerror=alert(1)>")
"""

# Student text that tries to pass for ours, inject Markdown/HTML, or break the results file:
# (cells after the reference, the score, a piece of it that must render only as code).
STUDENT_TEXT = {
    "lone-surrogate-at-top-level": ('raise ValueError("\\ud800 bad")', 100, "\ufffd bad"),
    "lone-surrogate-in-a-call": (
        'def create_causal_mask(seq_len):\n    raise ValueError("\\udfff" * 3)',
        90,
        "ValueError: \ufffd\ufffd\ufffd",
    ),
    "exception-class-named-like-our-verdict": (RENAMED, 20, "All checks passed"),
    "html-links-images-in-a-message": (
        'raise ValueError("<img src=x onerror=alert(1)> [x](https://e.example) '
        '![i](https://e.example/i.png) https://e.example")',
        100,
        "e.example",
    ),
    "backticks-to-break-out": ('raise ValueError("`` ` <b>loud</b> ` ``")', 100, "loud"),
    "terminal-escapes": (
        'print("\\x1b]0;owned\\x07\\x1b[2J")\nraise ValueError("\\x1b[31mred\\x9b")',
        100,
        "red",
    ),
}


@pytest.mark.parametrize(
    ("cells", "expected", "marker"), STUDENT_TEXT.values(), ids=STUDENT_TEXT.keys()
)
def test_student_text_is_quoted_never_rendered(
    tmp_path: Path, cells: str, expected: float, marker: str
) -> None:
    from test_report import ALLOWED_TAGS, rendered

    from autograder.report import render_text

    result = graded(tmp_path, [REFERENCE_SOURCE, cells])  # writes and validates results.json
    assert result.score == expected, [(i.id, i.failure) for i in result.items if i.failure]
    document = json.loads((tmp_path / "results" / "results.json").read_bytes().decode("utf-8"))
    outputs = [document["output"], *(test["output"] for test in document["tests"])]
    assert any(marker in output for output in outputs)
    for output in outputs:
        html = rendered(output)
        assert html.tags <= ALLOWED_TAGS and not html.comments, (html.tags, output)
        assert marker not in "".join(html.outside_code), output
    assert "\x1b" not in render_text(result) and "\x9b" not in render_text(result)


def _linked_reference(folder: Path) -> None:
    reference = notebook(folder.parent / "reference.ipynb", [REFERENCE_SOURCE])
    (folder / "attention.ipynb").symlink_to(reference)


def _linked_zero(folder: Path) -> None:
    (folder / "attention.ipynb").symlink_to("/dev/zero")


def _fifo(folder: Path) -> None:
    os.mkfifo(folder / "attention.ipynb")


def _linked_folder(folder: Path) -> None:
    elsewhere = folder.parent / "elsewhere"
    elsewhere.mkdir()
    notebook(elsewhere / "attention.ipynb", [REFERENCE_SOURCE])
    (folder / "work").symlink_to(elsewhere, target_is_directory=True)


# Upload folders (the Gradescope layout: ROOT/submission/) whose files are not what they seem:
# (how to make it, what the student is told). Each scores 0 and says which file and why.
UPLOADS = {
    "link-to-the-reference": (_linked_reference, "attention.ipynb is a symbolic link (to "),
    "link-to-dev-zero": (_linked_zero, "attention.ipynb is a symbolic link (to /dev/zero)"),
    "fifo": (_fifo, "attention.ipynb is a named pipe (FIFO)"),
    "link-to-a-folder": (_linked_folder, "No notebook found"),
}


@pytest.mark.parametrize(("make", "message"), UPLOADS.values(), ids=UPLOADS.keys())
def test_uploads_that_are_links_or_special_files_earn_nothing(
    tmp_path: Path, make: Callable[[Path], None], message: str
) -> None:
    upload = tmp_path / "submission"
    upload.mkdir()
    make(upload)
    began = time.monotonic()
    result = grade(upload, rubric=RUBRIC, limits=LIMITS)
    assert time.monotonic() - began < 10  # no FIFO wait, no /dev/zero read
    write_results(tmp_path / "results.json", result)
    jsonschema.validate(json.loads((tmp_path / "results.json").read_text("utf-8")), SCHEMA)
    assert result.score == 0 and message in result.notes[0], result.notes


def test_a_worker_killed_by_a_real_time_signal_costs_that_item_only(tmp_path: Path) -> None:
    source = REFERENCE_SOURCE.replace(
        "def create_causal_mask(seq_len: int) -> np.ndarray:\n",
        "def create_causal_mask(seq_len: int) -> np.ndarray:\n"
        "    import os\n    os.kill(os.getpid(), 40)\n",
    )
    assert source != REFERENCE_SOURCE
    result = graded(tmp_path, [source])
    failures = {item.id: item.failure for item in result.items if item.failure}
    assert list(failures) == ["causal_mask"], failures
    assert "signal SIGRTMIN+6 (signal 40)" in failures["causal_mask"].summary
    assert result.score == 100 - {i.id: i.points for i in RUBRIC.items}["causal_mask"]


KILL_THE_ZYGOTE = {  # what a worker runs (in create_causal_mask): the items it may cost
    "kill-its-parent": ("os.kill(os.getppid(), 9)", ["causal_mask"]),
    "kill-everything-it-may": ("os.kill(-1, 9)", []),  # reaches nothing outside itself
    "kill-its-parents-group": ("os.killpg(os.getpgid(os.getppid()), 9)", ["causal_mask"]),
}


@pytest.mark.parametrize(("kill", "lost"), KILL_THE_ZYGOTE.values(), ids=KILL_THE_ZYGOTE.keys())
def test_a_worker_that_kills_the_zygote_costs_that_item_only(
    tmp_path: Path, kill: str, lost: list[str]
) -> None:
    source = REFERENCE_SOURCE.replace(
        "def create_causal_mask(seq_len: int) -> np.ndarray:\n",
        f"def create_causal_mask(seq_len: int) -> np.ndarray:\n    import os\n    {kill}\n",
    )
    result = graded(tmp_path, [source])
    failures = {item.id: item.failure for item in result.items if item.failure}
    assert list(failures) == lost, failures
    assert result.score == 100 - sum(i.points for i in RUBRIC.items if i.id in lost)


def sandbox_processes(uids: Sequence[int] = SANDBOX_UIDS) -> list[int]:
    """Processes running as one of `uids` (by default any uid leased to gradings; none of a
    grading's own once it ends)."""
    found = []
    for entry in os.scandir("/proc"):
        try:
            if entry.name.isdigit() and entry.stat().st_uid in uids:
                found.append(int(entry.name))
        except OSError:
            pass
    return found


@dataclass
class Bait:
    """What an escaping submission would reach: sockets and a folder of the test's own."""

    udp4: socket.socket
    udp6: socket.socket
    unix: socket.socket
    unix_path: str
    abstract: str
    abstract_sock: socket.socket
    outside: Path

    def fields(self) -> dict[str, object]:
        return {
            "udp4": self.udp4.getsockname()[1],
            "udp6": self.udp6.getsockname()[1],
            "unix_path": self.unix_path,
            "abstract": self.abstract,
            "outside": str(self.outside),
            "grader": os.getpid(),
        }

    def reached(self) -> list[str]:
        """What the submission managed to reach (nothing, if the sandbox held)."""
        found = []
        for name, sock in (("udp4", self.udp4), ("udp6", self.udp6)):
            try:
                found.append(f"{name}: {sock.recv(100)!r}")
            except BlockingIOError:
                pass
        for name, sock in (("unix", self.unix), ("abstract", self.abstract_sock)):
            try:
                found.append(f"{name}: {sock.accept()}")
            except BlockingIOError:
                pass
        found += [f"file {path}" for path in self.outside.iterdir()]
        return found


@pytest.fixture
def bait(tmp_path: Path) -> Iterator[Bait]:
    udp4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp4.bind(("127.0.0.1", 0))
    udp6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    udp6.bind(("::1", 0))
    unix_path = f"/tmp/autograder-bait-{os.getpid()}.sock"
    Path(unix_path).unlink(missing_ok=True)
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(unix_path)
    os.chmod(unix_path, 0o777)
    unix.listen()
    abstract = f"autograder-bait-{os.getpid()}"
    abstract_sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    abstract_sock.bind("\0" + abstract)
    abstract_sock.listen()
    outside = tmp_path / "outside"
    outside.mkdir()
    os.chmod(tmp_path, 0o777)
    os.chmod(outside, 0o777)  # writable by anyone: only the sandbox can stop a write here
    for sock in (udp4, udp6, unix, abstract_sock):
        sock.setblocking(False)
    yield Bait(udp4, udp6, unix, unix_path, abstract, abstract_sock, outside)
    for sock in (udp4, udp6, unix, abstract_sock):
        sock.close()
    Path(unix_path).unlink(missing_ok=True)


ESCAPED = 'raise SystemExit("ESCAPED: " + {what})'

# Each attack runs at top level after the reference solution; it raises SystemExit("ESCAPED")
# only if it got through. The test also checks, from outside, that nothing reached the bait.
ESCAPES = {
    "udp-ipv4-loopback": """
import socket
try:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(b"escaped", ("127.0.0.1", {udp4}))
except OSError:
    pass
""",
    "udp-ipv6-loopback": """
import socket
try:
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.sendto(b"escaped", ("::1", {udp6}))
except OSError:
    pass
""",
    "unix-socket-of-the-host": """
import socket
for address in ({unix_path!r}, "\\0" + {abstract!r}):
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(address)
        s.sendall(b"escaped")
    except OSError:
        pass
""",
    "netlink-lists-interfaces": """
import socket
try:
    names = [name for _, name in socket.if_nameindex() if name != "lo"]
except OSError:
    names = []
if names:
    raise SystemExit("ESCAPED: sees the interfaces " + ", ".join(names))
""",
    "read-other-processes": """
import os
seen = []
for entry in os.listdir("/proc"):
    if entry.isdigit():
        try:
            seen.append(open("/proc/%s/cmdline" % entry, "rb").read())
        except OSError:
            pass
try:
    seen.append(open("/proc/{grader}/cmdline", "rb").read())
except OSError:
    pass
if any(b"pytest" in line for line in seen):
    raise SystemExit("ESCAPED: read the grader's command line")
if {server} != os.getpid() and os.path.exists("/proc/{server}/cmdline"):
    raise SystemExit("ESCAPED: sees the process the sandbox was forked from")
""",
    "read-the-fork-server": """
for what in ("mem", "environ", "maps", "fd/0"):
    try:
        open("/proc/{server}/" + what, "rb").read(1)
        raise SystemExit("ESCAPED: read /proc/{server}/" + what)
    except OSError:
        pass
""",
    "signal-the-grader": """
import os
for target in ({grader}, {server}):
    try:
        os.kill(target, 0)
        raise SystemExit("ESCAPED: may signal pid %d" % target)
    except OSError:
        pass
""",
    "ptrace-the-grader": """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
for target in ({grader}, {server}, 1):
    if libc.ptrace(16, target, None, None) == 0:  # PTRACE_ATTACH
        libc.ptrace(17, target, None, None)
        raise SystemExit("ESCAPED: attached to pid %d" % target)
""",
    "write-outside-scratch": """
import os
for path in ({outside!r} + "/escaped", "/tmp/autograder-escaped", "/dev/shm/escaped",
             "/var/tmp/autograder-escaped"):
    try:
        open(path, "w").write("x")
        raise SystemExit("ESCAPED: wrote " + path)
    except OSError:
        pass
""",
    "fill-the-disk": f"""
written = 0
try:
    for index in range(25):  # 200 MiB in files of 8 MiB: more than scratch may hold
        with open("fill-%d" % index, "wb") as file:
            for _ in range(8):
                file.write(b"x" * (1 << 20))
                written += 1 << 20
except OSError:
    pass
if written > {LIMITS.scratch_bytes}:
    raise SystemExit("ESCAPED: wrote %d bytes" % written)
""",
    "keep-a-process-alive": """
import os, socket, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(2)
        try:
            open({outside!r} + "/late", "w").write("x")
        except OSError:
            pass
        time.sleep(60)
    os._exit(0)
""",
}


HELD_WITH_NAMESPACES_ONLY = {"read-other-processes", "fill-the-disk"}
"""What basic mode does not prevent (SECURITY.md): it shares /proc, and bounds each file, not
the whole of scratch while an item runs."""


def namespace_mode() -> bool:
    return (
        os.environ.get("AUTOGRADER_CONFINEMENT", "namespaces") == "namespaces"
        and "namespaces" not in modes.REFUSED
    )


@pytest.fixture(params=["by-python", "by-fork-server"])
def forker(request: pytest.FixtureRequest) -> Iterator[int]:
    """How the sandbox starts its child: `python -I -c ...`, or forked by a fork server (as
    batch's workers do); yields the pid of the process the child is started from."""
    if request.param == "by-python":
        yield os.getpid()
        return
    forkserver.enable()
    try:
        with started(["pass"], limits=LIMITS):
            pass
        server = forkserver.server_pid()
        assert server is not None
        yield server
        assert forkserver.server_pid() == server, "the submission replaced the fork server"
        os.kill(server, 0)  # still there
    finally:
        forkserver.enable(False)


@pytest.mark.skipif(CHILD_IS_ROOT, reason="the child would run as root")
@pytest.mark.parametrize("attack", ESCAPES.values(), ids=ESCAPES.keys())
def test_escape_attempts_fail_and_cost_nothing(
    tmp_path: Path,
    bait: Bait,
    attack: str,
    forker: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    held_only_there = {ESCAPES[name] for name in HELD_WITH_NAMESPACES_ONLY}
    if attack in held_only_there and not namespace_mode():
        pytest.skip("basic mode does not prevent this (SECURITY.md)")
    leased: list[int] = []  # this grading's own uids: other gradings may run meanwhile

    def recorded(*args: Any, **options: Any) -> UidLease:
        lease = lease_uid(*args, **options)
        leased.append(lease.uid)
        return lease

    monkeypatch.setattr("autograder.sandbox.launch.lease_uid", recorded)
    began = time.monotonic()
    fields = {**bait.fields(), "server": forker}
    result = graded(tmp_path, [REFERENCE_SOURCE, attack.format(**fields)])
    took = time.monotonic() - began
    assert result.score == 100, [(i.id, i.failure) for i in result.items if i.failure]
    assert not [note for note in result.notes if "ESCAPED" in note], result.notes
    assert took < 30, "grading waited for a process the submission left behind"
    if os.geteuid() == 0:
        assert leased, "the grading ran under a uid of its own"
        assert sandbox_processes(leased) == [], "a process of the submission outlived its grading"
    time.sleep(2.5 if "keep-a-process-alive" in attack else 0.1)
    assert bait.reached() == []


WRONG_MASKING = REFERENCE_SOURCE.replace(
    "    scores = scores - scores.max(axis=-1, keepdims=True)\n",
    "    scores = scores - scores.max(axis=-1, keepdims=True)\n"
    "    unmasked = Q @ np.swapaxes(K, -1, -2) / np.sqrt(d_k)\n"
    "    early = np.exp(unmasked - unmasked.max(axis=-1, keepdims=True))\n",
).replace(
    "    return weights @ V, weights",
    "    return weights @ V, early / early.sum(-1, keepdims=True)",
)

HOLD_PROCESSES = """
import os, time
try:
    while True:
        if os.fork() == 0:
            time.sleep(2)
            os._exit(0)
except OSError:
    pass
"""

STRESSED = {  # submission -> its cells
    "weights-before-masking": [WRONG_MASKING],
    "correct": [REFERENCE_SOURCE],
    "fork-bomb": [REFERENCE_SOURCE, HOLD_PROCESSES],
}


def _grade_on_the_command_line(folder: Path, name: str) -> dict[str, tuple[float, str]]:
    path = notebook(folder / f"{name}.ipynb", STRESSED[name])
    results = folder / f"{name}.json"
    subprocess.run(
        [sys.executable, "-m", "autograder", "grade", str(path), "--results", str(results)],
        check=False,
        capture_output=True,
        timeout=300,
    )
    document = json.loads(results.read_text(encoding="utf-8"))
    return {test["name"]: (test["score"], test.get("output", "")) for test in document["tests"]}


def test_concurrent_gradings_give_identical_results(tmp_path: Path) -> None:
    """Two gradings at a time, one of them holding every process it may have: each submission
    gets the same result every time (13.4: a spurious 0/100, every item WorkerLost)."""
    rounds = 4
    jobs = [(tmp_path / f"{name}-{n}", name) for n in range(rounds) for name in STRESSED]
    for folder, _ in jobs:
        folder.mkdir()
    with ThreadPoolExecutor(2) as pool:
        graded_all = list(pool.map(lambda job: (job[1], _grade_on_the_command_line(*job)), jobs))
    seen: dict[str, list[dict[str, tuple[float, str]]]] = {}
    for name, tests in graded_all:
        seen.setdefault(name, []).append(tests)
    for name, results in seen.items():
        assert all(result == results[0] for result in results), name
        assert "WorkerLost" not in json.dumps(results[0]), name
    total = {name: sum(score for score, _ in results[0].values()) for name, results in seen.items()}
    assert total["correct"] == total["fork-bomb"] == 100
    assert 0 < total["weights-before-masking"] < 100
