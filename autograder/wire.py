"""Moved to `autograder.sandbox.wire`: kept only for the rubrics that still import `Opaque` here.

Import `Opaque` from `autograder.sandbox` instead; this module goes once nothing imports it.
"""

from __future__ import annotations

from autograder.sandbox.wire import Opaque

__all__ = ["Opaque"]
