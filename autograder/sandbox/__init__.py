"""Stage 2, the sandbox: student code runs in a child process, never in the grader's.

The child executes the submission's cells once (a "zygote"), then forks one worker per session;
a rubric item opens one session, so a hang or crash costs that item only and the top-level code
is never re-run. Requests carry plain arrays, scalars, sequences and dicts (`wire.py`); replies
are validated and decoded without pickle. Limits: wall time per call (enforced here), address
space, processes, file sizes and core dumps (set in the child before any student code runs).
How the child is confined (namespaces, or a uid of its own, Landlock and seccomp) is decided
once per grader process from what the host allows and reported in `NotebookRun.confinement`.

    with sandbox.started(cells, limits=limits) as (box, run):
        if box is not None:                      # None: the notebook never became ready
            with box.session(deadline=...) as session:
                session.call("f", np.ones(3))

The modules, in the order a grading meets them:

* `startup`: `started`, the one way to start a sandbox and close it again;
* `cpu`: the one CPU a grading keeps to while its sandbox runs;
* `modes`: which confinement mode to try, from what this host refused so far;
* `confinement`: the plan of a mode (readable folders, uid, namespaces) and leased uids;
* `launch`: the child's source text, environment and first frame;
* `forkserver`: where a process grades student after student, the Python that forks each
  child ready-made (`_server`, sent as source like the child);
* `_child`, `_jail`: the child itself (sent as source, never imported by the grader);
* `follow`: the child's reports while it runs the notebook, until it is ready;
* `notebook_run`: the record of that run (`NotebookRun`, `CellOutcome`, `Definition`);
* `box`: `Sandbox`, the running child, which forks a worker per session;
* `session`: `Session`, the calls of one item into its worker;
* `values`: what a check sees besides data (`Handle`, `Then`, `StudentRaised`, `WorkerLost`);
* `wire`: the framing and the values on the wire (also sent to the child);
* `drain`: the child's output, kept up to a limit;
* `processes`: finding and killing the child's processes.
"""

from __future__ import annotations

from autograder.sandbox.box import Sandbox
from autograder.sandbox.launch import default_secrets
from autograder.sandbox.notebook_run import CellOutcome, Definition, NotebookRun
from autograder.sandbox.session import Session
from autograder.sandbox.startup import started
from autograder.sandbox.values import Handle, StudentRaised, Then, WorkerLost
from autograder.sandbox.wire import Opaque, WireError

__all__ = [
    "CellOutcome",
    "Definition",
    "Handle",
    "NotebookRun",
    "Opaque",
    "Sandbox",
    "Session",
    "StudentRaised",
    "Then",
    "WireError",
    "WorkerLost",
    "default_secrets",
    "started",
]
