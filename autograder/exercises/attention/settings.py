"""What can change an attention grade beyond the core's settings (`autograder/settings.py`)."""

from __future__ import annotations

from autograder.settings import Tolerance

__all__ = ["SCORE_GAP", "STABLE"]

#: Two scores of a row count as different when their softmax weights differ by at least this
#: factor minus one (scores 0.001 apart): the higher one must then get a strictly higher
#: weight. Far above float32 rounding (about 1e-7), so every correct implementation passes.
SCORE_GAP = 1e-3

#: Stability cases: scores of magnitude 1e3-1e4 in float32 carry rounding of about 1e-3 into
#: the weights.
STABLE = Tolerance(rtol=1e-2, atol=1e-2)
