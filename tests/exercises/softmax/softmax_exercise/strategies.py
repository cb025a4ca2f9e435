"""The inputs of the softmax exercise: small cases that describe themselves.

A case is a frozen dataclass holding the array the student's `softmax` is called with (and the
axis, when the call names one). `describe()` is what a failure report shows as the smallest
failing input; `snippet()` is code a student pastes into a cell to rerun that call.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

__all__ = ["SoftmaxCase", "axis_cases", "large_cases", "value_cases"]


@dataclass(frozen=True)
class SoftmaxCase:
    """`softmax(x)`, or `softmax(x, axis=axis)` when `axis` is not None."""

    x: np.ndarray
    axis: int | None = None

    @property
    def along(self) -> int:
        """The axis the softmax runs along, counted from 0."""
        return (-1 if self.axis is None else self.axis) % self.x.ndim

    def call(self) -> str:
        return "softmax(x)" if self.axis is None else f"softmax(x, axis={self.axis})"

    def describe(self) -> str:
        x = self.x
        where = f"axis={self.axis}" if self.axis is not None else "the default axis (-1)"
        return f"x: {x.shape} {x.dtype}, largest |x| = {np.abs(x).max():g}; along {where}"

    def snippet(self) -> str:
        body = np.array2string(self.x, separator=", ", threshold=10**6, floatmode="unique")
        return "\n".join(
            [
                "import numpy as np",
                f"x = np.array({body})",
                f"p = {self.call()}",
                "assert np.all(np.isfinite(p)), p",
                f"assert np.allclose(p.sum(axis={self.along}), 1), p.sum(axis={self.along})",
            ]
        )

    def probe(self) -> SoftmaxCase:
        """A second input for confirming a mistake: one more element along every axis, other
        values of the same typical size, the same axis."""
        rng = np.random.default_rng(self.x.size)
        shape = tuple(n + 1 for n in self.x.shape)
        offset = float(np.round(self.x.mean()))
        x = np.round(rng.standard_normal(shape) * 3, 2) + offset
        return SoftmaxCase(x, self.axis)


_SHAPES = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=5)
_VALUES = st.integers(-1000, 1000).map(lambda n: n / 100)
"""Values in [-10, 10] with two decimals: short snippets, and no overflow in exp."""
_SHIFT = st.integers(1_000, 10_000) | st.integers(-10_000, -1_000)


def _arrays(shape: st.SearchStrategy[tuple[int, ...]] = _SHAPES) -> st.SearchStrategy[np.ndarray]:
    return hnp.arrays(np.float64, shape, elements=_VALUES)


def value_cases() -> st.SearchStrategy[SoftmaxCase]:
    """Moderate values, 1 to 3 dimensions, the default axis."""
    return _arrays().map(SoftmaxCase)


@st.composite
def axis_cases(draw: st.DrawFn) -> SoftmaxCase:
    """Moderate values, 2 or 3 dimensions, an explicit axis (negative ones too)."""
    x = draw(_arrays(hnp.array_shapes(min_dims=2, max_dims=3, min_side=1, max_side=5)))
    return SoftmaxCase(x, draw(st.integers(-x.ndim, x.ndim - 1)))


@st.composite
def large_cases(draw: st.DrawFn) -> SoftmaxCase:
    """Values around ±1e3 to ±1e4, where exp overflows (or underflows to 0) in float64."""
    return SoftmaxCase(draw(_arrays()) + draw(_SHIFT))
