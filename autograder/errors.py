"""The grader's errors: one base class, a few documented subclasses.

Every message names the value, states the rule and says what to do next.
"""

from __future__ import annotations

__all__ = ["ConfigError", "GraderError", "ResultsError", "SandboxError", "SubmissionError"]


class GraderError(Exception):
    """Base class of every error the grader raises on purpose."""


class SubmissionError(GraderError):
    """The submission cannot be read: missing, not a notebook, an unsupported format."""


class SandboxError(GraderError):
    """The sandbox could not be started (not a student's fault: a problem of the grader's host)."""


class ConfigError(GraderError, ValueError):
    """A rubric, setting or command-line option is invalid."""


class ResultsError(GraderError):
    """Stored results cannot be read: a batch's output folder is missing, or a student's
    results.json in it is not one the grader wrote."""
