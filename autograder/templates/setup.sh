#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image.
# It installs what grading needs into a venv and creates the unprivileged sandbox user.
# AUTOGRADER_ROOT (default /autograder) lets the same script run under a temp dir in tests.
set -euo pipefail

ROOT="${AUTOGRADER_ROOT:-/autograder}"
SOURCE="$ROOT/source"
PYTHON="${AUTOGRADER_PYTHON:-python3}"
SANDBOX_USER="${AUTOGRADER_SANDBOX_USER:-autograder-student}"

if ! "$PYTHON" -m venv "$ROOT/venv" 2>/dev/null; then
    # Ubuntu images may lack ensurepip: install it, then try again.
    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
    "$PYTHON" -m venv "$ROOT/venv"
fi
"$ROOT/venv/bin/python" -m pip install --quiet --no-cache-dir --disable-pip-version-check \
    -r "$SOURCE/requirements.txt"
# Compile the grader once here: each submission runs in a fresh container, which would
# otherwise compile it again for every grade.
"$ROOT/venv/bin/python" -m compileall -q "$SOURCE"

if [ "$(id -u)" = 0 ]; then
    if ! id -u "$SANDBOX_USER" >/dev/null 2>&1; then
        useradd --system --no-create-home --shell /usr/sbin/nologin "$SANDBOX_USER"
    fi
    # The sandbox user may run Python and NumPy, and nothing else of ours.
    chmod 711 "$ROOT"
    chmod -R go-rwx "$SOURCE"
    chmod -R go+rX "$ROOT/venv"
    mkdir -p "$ROOT/results" && chmod 700 "$ROOT/results"
fi

# The cases each item draws under the course's secret (autograder/shipped.py), made again here
# if the zip's were built with another Python, NumPy or Hypothesis: grading checks them first.
# It replays them on the reference in the sandbox (so after the user above exists) to record
# their requests. Grading does not need them: without, it draws them for every submission.
(cd "$SOURCE" && "$ROOT/venv/bin/python" -m autograder.shipped) ||
    echo "autograder setup: no drawn cases for this image; grading draws them"
[ "$(id -u)" = 0 ] && chmod -R go-rwx "$SOURCE"  # what it wrote, too

echo "autograder setup done: $("$ROOT/venv/bin/python" --version)"
