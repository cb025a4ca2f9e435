"""`python -m autograder`: see `autograder.cli`."""

import os

from autograder.settings import SINGLE_THREADED

os.environ.update(SINGLE_THREADED)  # before anything imports NumPy; see SINGLE_THREADED

from autograder.cli import main

raise SystemExit(main())
