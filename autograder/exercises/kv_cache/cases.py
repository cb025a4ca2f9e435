"""What a case of the KV-cache rubric is: the inputs, how they describe and rebuild themselves.

The arrays come from NumPy's `default_rng(seed)` in a fixed order, so that every case prints a
snippet that rebuilds it exactly (and asserts the property the check judged). Arrays are
random normal, never exactly zero, so the contents of a cache can be recognised whatever
layout it returns them in. Nothing here imports Hypothesis: the rubric and the oracle need the
cases, and a grade in which every item passes on the cases shipped with the grader never
searches (`strategies.py`, how Hypothesis draws them, is imported only for a search).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "BYTES_GRID",
    "ERROR_GRID",
    "PROJECTIONS",
    "SCORE_GRID",
    "WRONG",
    "AppendCase",
    "BytesCase",
    "DecodeCase",
    "ErrorCase",
    "NewTokensCase",
    "ResetCase",
    "ScoreCase",
    "UnchangedCase",
    "decode_case",
    "kv_pair",
    "new_tokens_case",
    "projection_weights",
]

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "out_proj")


def kv_pair(rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """One (k, v) pair: k first, then v, from `rng` (the snippets draw in the same order)."""
    return rng.standard_normal(shape), rng.standard_normal(shape)


def _config(batch: int, heads: int, head_dim: int, capacity: int) -> str:
    return f"KVCache({batch}, {heads}, {head_dim}, {capacity})"


# --- append and get ------------------------------------------------------------------------


@dataclass(frozen=True)
class AppendCase:
    """A cache of `capacity` positions, filled by updates of `sizes` positions each."""

    seed: int
    batch: int
    heads: int
    head_dim: int
    capacity: int
    sizes: tuple[int, ...]

    def chunks(self) -> list[tuple[np.ndarray, np.ndarray]]:
        rng = np.random.default_rng(self.seed)
        return [kv_pair(rng, (self.batch, self.heads, t, self.head_dim)) for t in self.sizes]

    def probe(self) -> AppendCase:
        """A second input of the same shapes, on which the known mistakes differ."""
        return AppendCase(self.seed + 1, self.batch, self.heads, self.head_dim, 6, (2, 2))

    def describe(self) -> str:
        return (
            f"{_config(self.batch, self.heads, self.head_dim, self.capacity)}, then updates of "
            f"{', '.join(map(str, self.sizes))} position(s)"
        )

    def snippet(self) -> str:
        b, h, d = self.batch, self.heads, self.head_dim
        return "\n".join(
            [
                "import numpy as np",
                f"rng = np.random.default_rng({self.seed})",
                f"cache = {_config(b, h, d, self.capacity)}",
                "ks, vs = [], []",
                f"for t in {self.sizes}:",
                f"    ks.append(rng.standard_normal(({b}, {h}, t, {d})))",
                f"    vs.append(rng.standard_normal(({b}, {h}, t, {d})))",
                "    cache.update(ks[-1], vs[-1])",
                "    keys, values = cache.get()",
                "    n = sum(k.shape[2] for k in ks)",
                "    assert cache.seq_len == n, (cache.seq_len, n)",
                f"    assert keys.shape == values.shape == ({b}, {h}, n, {d}), keys.shape",
                "    assert np.allclose(keys, np.concatenate(ks, axis=2))",
                "    assert np.allclose(values, np.concatenate(vs, axis=2))",
            ]
        )


# --- refused updates -----------------------------------------------------------------------

WRONG = ("batch", "heads", "head_dim")
"""The axes of k and v that must match the cache (the sequence axis is free)."""


@dataclass(frozen=True)
class ErrorCase:
    """A cache holding `prefill` positions, then an update it must refuse.

    `fault` says what is wrong with the update: "batch", "heads" or "head_dim" (of `which`:
    "k", "v" or "both"), "length" (v has more positions than k), "overflow" (`size` positions
    do not fit), or "fill" (an update that fills the cache exactly, which must be accepted,
    followed by one more position, which must be refused).
    """

    seed: int
    batch: int
    heads: int
    head_dim: int
    capacity: int
    prefill: int
    fault: str
    which: str = "both"
    size: int = 1

    @property
    def dims(self) -> tuple[int, int, int]:
        return self.batch, self.heads, self.head_dim

    def shapes(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The shapes of the refused update's k and v."""
        b, h, d = self.batch, self.heads, self.head_dim
        good = (b, h, self.size, d)
        if self.fault in WRONG:
            axis = {"batch": 0, "heads": 1, "head_dim": 3}[self.fault]
            bad = list(good)
            bad[axis] += 1
            wrong = tuple(bad)
            k = wrong if self.which in ("k", "both") else good
            v = wrong if self.which in ("v", "both") else good
            return k, v
        if self.fault == "length":
            return good, (b, h, self.size + 1, d)
        return good, good

    def arrays(self) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
        """(prefill k, v) and (refused k, v), in the snippet's order."""
        rng = np.random.default_rng(self.seed)
        prefill = kv_pair(rng, (self.batch, self.heads, self.prefill, self.head_dim))
        k_shape, v_shape = self.shapes()
        return prefill, (rng.standard_normal(k_shape), rng.standard_normal(v_shape))

    @property
    def room(self) -> int:
        return self.capacity - self.prefill

    def describe(self) -> str:
        text = f"{_config(*self.dims, self.capacity)} holding {self.prefill} position(s); "
        if self.fault == "fill":
            return text + f"an update of {self.room} (exactly full), then one more position"
        k, v = self.shapes()
        return text + f"then update(k, v) with k: {k}, v: {v}"

    def snippet(self) -> str:
        b, h, d = self.dims
        lines = [
            "import numpy as np",
            f"rng = np.random.default_rng({self.seed})",
            f"cache = {_config(b, h, d, self.capacity)}",
            f"cache.update(rng.standard_normal(({b}, {h}, {self.prefill}, {d})), "
            f"rng.standard_normal(({b}, {h}, {self.prefill}, {d})))",
        ]
        if self.fault == "fill":
            lines += [
                f"cache.update(np.ones(({b}, {h}, {self.room}, {d})), "
                f"np.ones(({b}, {h}, {self.room}, {d})))  # exactly full: must be accepted",
                f"k = v = np.ones(({b}, {h}, 1, {d}))  # one position too many",
            ]
        else:
            k, v = self.shapes()
            lines += [f"k = rng.standard_normal({k})", f"v = rng.standard_normal({v})"]
        lines += [
            "before = [np.array(a) for a in cache.get()], cache.seq_len",
            "try:",
            "    cache.update(k, v)",
            "    raise AssertionError('no error: expected ValueError')",
            "except ValueError:",
            "    after = [np.array(a) for a in cache.get()], cache.seq_len",
            "    assert after[1] == before[1], 'seq_len changed'",
            "    assert all(np.array_equal(a, b) for a, b in zip(after[0], before[0])), "
            "'contents changed'",
        ]
        return "\n".join(lines)


ERROR_GRID = (
    ErrorCase(1, 2, 3, 4, 5, 2, "fill"),
    ErrorCase(2, 2, 3, 4, 5, 2, "overflow", size=4),
    ErrorCase(3, 2, 3, 4, 5, 5, "overflow", size=1),
    *(
        ErrorCase(4 + index, 2, 3, 4, 5, 2, fault, which, size=1 + index % 2)
        for index, (fault, which) in enumerate(
            (fault, which) for fault in WRONG for which in ("both", "k", "v")
        )
    ),
    ErrorCase(13, 2, 3, 4, 5, 2, "length"),
)
"""Fixed cases first: the capacity boundary, overflows, every wrong axis of k, v or both,
and k and v of different lengths."""


# --- reset and isolation -------------------------------------------------------------------


@dataclass(frozen=True)
class ResetCase:
    """Two caches alike: `first` positions into cache A, `second` into B, then A is reset and
    given `refill` = capacity - 1 positions, more than fit without the reset (an exactly full
    cache is `cache_errors`' boundary). With `early`, B exists before A's update; otherwise
    after it."""

    seed: int
    batch: int
    heads: int
    head_dim: int
    capacity: int
    first: int
    second: int
    early: bool

    @property
    def dims(self) -> tuple[int, int, int]:
        return self.batch, self.heads, self.head_dim

    @property
    def refill(self) -> int:
        return self.capacity - 1

    def arrays(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """(k, v) for A's update, B's update and A's refill, in the snippet's order."""
        rng = np.random.default_rng(self.seed)
        b, h, d = self.dims
        return [kv_pair(rng, (b, h, t, d)) for t in (self.first, self.second, self.refill)]

    def describe(self) -> str:
        made = "before" if self.early else "after"
        return (
            f"caches A and B = {_config(*self.dims, self.capacity)} (B made {made} A's update): "
            f"{self.first} position(s) into A, {self.second} into B, then A.reset() and "
            f"{self.refill} positions into A"
        )

    def snippet(self) -> str:
        b, h, d = self.dims
        make = f"{_config(b, h, d, self.capacity)}"
        lines = ["import numpy as np", f"rng = np.random.default_rng({self.seed})"]
        lines.append(f"A = {make}")
        if self.early:
            lines.append(f"B = {make}")
        shapes = [(b, h, t, d) for t in (self.first, self.second, self.refill)]
        lines += [
            f"k{i}, v{i} = (rng.standard_normal({s}) for _ in range(2))"
            for i, s in enumerate(shapes, start=1)
        ]
        lines.append("A.update(k1, v1)")
        if not self.early:
            lines.append(f"B = {make}")
        lines += [
            f"assert B.seq_len == 0 and B.get()[0].shape == ({b}, {h}, 0, {d}), 'B is not empty'",
            "B.update(k2, v2)",
            "assert np.allclose(A.get()[0], k1), 'A changed when B was updated'",
            "A.reset()",
            f"assert A.seq_len == 0 and A.get()[0].shape == ({b}, {h}, 0, {d}), 'A not empty'",
            "A.update(k3, v3)  # every position is free again",
            "assert np.allclose(A.get()[0], k3) and np.allclose(A.get()[1], v3)",
        ]
        return "\n".join(lines)


# --- cached decoding -----------------------------------------------------------------------


def projection_weights(rng: np.random.Generator, e: int) -> dict[str, np.ndarray]:
    """The four projections' weights and biases from `rng`, in the snippets' order."""
    weights = {}
    for name in PROJECTIONS:
        weights[f"{name}.weight"] = rng.standard_normal((e, e)) / np.sqrt(e)
        weights[f"{name}.bias"] = rng.standard_normal(e) * 0.5
    return weights


_WEIGHT_LINES = (
    "for proj in (mha.q_proj, mha.k_proj, mha.v_proj, mha.out_proj):",
    "    proj.weight = rng.standard_normal(({e}, {e})) / np.sqrt({e})",
    "    proj.bias = rng.standard_normal({e}) * 0.5",
)


@dataclass(frozen=True)
class DecodeCase:
    """Multi-head attention decoding `x` with a cache, in chunks of `sizes` new tokens."""

    seed: int
    batch: int
    heads: int
    head_dim: int
    sizes: tuple[int, ...]
    extra: int
    x: np.ndarray = field(repr=False)
    weights: dict[str, np.ndarray] = field(repr=False)

    @property
    def embed_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def length(self) -> int:
        return sum(self.sizes)

    @property
    def capacity(self) -> int:
        return self.length + self.extra

    def starts(self) -> list[int]:
        return [sum(self.sizes[:i]) for i in range(len(self.sizes))]

    def probe(self) -> DecodeCase:
        """A second input of the same shapes, on which the known mistakes differ: four steps
        (for one-token cases), else a prompt of 2, a step and a chunk of 2."""
        sizes = (1, 1, 1, 1) if set(self.sizes) == {1} else (2, 1, 2)
        return decode_case(self.seed + 1, self.batch, self.heads, self.head_dim, sizes, 1)

    def describe(self) -> str:
        return (
            f"MultiHeadAttention({self.embed_dim}, {self.heads}), x: {tuple(self.x.shape)}, "
            f"decoded in chunks of {', '.join(map(str, self.sizes))} token(s) with "
            f"{_config(self.batch, self.heads, self.head_dim, self.capacity)}"
        )

    def snippet(self) -> str:
        e, b = self.embed_dim, self.batch
        return "\n".join(
            [
                "import numpy as np",
                f"rng = np.random.default_rng({self.seed})",
                f"mha = MultiHeadAttention({e}, {self.heads})",
                *(line.format(e=e) for line in _WEIGHT_LINES),
                f"x = rng.standard_normal(({b}, {self.length}, {e}))",
                f"full = mha.forward(x, mask=create_causal_mask({self.length}))",
                f"cache = {_config(b, self.heads, self.head_dim, self.capacity)}",
                "start = 0",
                f"for size in {self.sizes}:",
                "    out = mha.forward(x[:, start : start + size], cache=cache)",
                f"    assert out.shape == ({b}, size, {e}), out.shape",
                "    assert np.allclose(out, full[:, start : start + size]), start",
                "    start += size",
            ]
        )


def decode_case(
    seed: int, batch: int, heads: int, head_dim: int, sizes: tuple[int, ...], extra: int
) -> DecodeCase:
    """A decoding case whose weights and x come from `seed` (in the snippet's order)."""
    rng = np.random.default_rng(seed)
    weights = projection_weights(rng, heads * head_dim)
    x = rng.standard_normal((batch, sum(sizes), heads * head_dim))
    return DecodeCase(seed, batch, heads, head_dim, sizes, extra, x, weights)


@dataclass(frozen=True)
class UnchangedCase(DecodeCase):
    """Cached decoding as in `DecodeCase`, then `k` and `v` into a fresh cache of their size."""

    k: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((1, 1, 1, 1)))
    v: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((1, 1, 1, 1)))

    def describe(self) -> str:
        return f"{super().describe()}; then update(k, v) with k, v: {tuple(self.k.shape)}"

    def snippet(self) -> str:
        e, b, t = self.embed_dim, self.batch, self.k.shape[2]
        lines = [
            "import numpy as np",
            f"rng = np.random.default_rng({self.seed})",
            f"mha = MultiHeadAttention({e}, {self.heads})",
            *(line.format(e=e) for line in _WEIGHT_LINES),
            f"x = rng.standard_normal(({b}, {self.length}, {e}))",
            f"k, v = (rng.standard_normal(({b}, {self.heads}, {t}, {self.head_dim})) "
            "for _ in range(2))",
            "x_before, k_before, v_before = x.copy(), k.copy(), v.copy()",
            "weights_before = [p.weight.copy() for p in "
            "(mha.q_proj, mha.k_proj, mha.v_proj, mha.out_proj)]",
            f"cache = {_config(b, self.heads, self.head_dim, self.capacity)}",
            "start = 0",
            f"for size in {self.sizes}:",
            "    mha.forward(x[:, start : start + size], cache=cache)",
            "    start += size",
            "assert np.array_equal(x, x_before), 'forward changed x'",
            "assert all(np.array_equal(p.weight, w) for p, w in zip("
            "(mha.q_proj, mha.k_proj, mha.v_proj, mha.out_proj), weights_before)), 'weights'",
            f"{_config(b, self.heads, self.head_dim, t + 1)}.update(k, v)",
            "assert np.array_equal(k, k_before) and np.array_equal(v, v_before), 'k or v changed'",
        ]
        return "\n".join(lines)


@dataclass(frozen=True)
class NewTokensCase:
    """A prompt decoded under `weights`, then new tokens under `later` weights."""

    seed: int
    batch: int
    heads: int
    head_dim: int
    prompt: int
    new: int
    x: np.ndarray = field(repr=False)
    weights: dict[str, np.ndarray] = field(repr=False)
    later: dict[str, np.ndarray] = field(repr=False)

    @property
    def embed_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def capacity(self) -> int:
        return self.prompt + self.new + 1

    def probe(self) -> NewTokensCase:
        """A second input of the same shapes (other weights and tokens)."""
        return new_tokens_case(
            self.seed + 1, self.batch, self.heads, self.head_dim, self.prompt, self.new
        )

    def describe(self) -> str:
        return (
            f"MultiHeadAttention({self.embed_dim}, {self.heads}), x: {tuple(self.x.shape)}: a "
            f"prompt of {self.prompt} token(s) with "
            f"{_config(self.batch, self.heads, self.head_dim, self.capacity)}, new projection "
            f"weights, then {self.new} new token(s)"
        )

    def snippet(self) -> str:
        e, b, h, p = self.embed_dim, self.batch, self.heads, self.prompt
        split = f"lambda a: a.reshape({b}, a.shape[1], {h}, {self.head_dim}).transpose(0, 2, 1, 3)"
        return "\n".join(
            [
                "import numpy as np",
                f"rng = np.random.default_rng({self.seed})",
                f"mha = MultiHeadAttention({e}, {h})",
                *(line.format(e=e) for line in _WEIGHT_LINES),
                f"x = rng.standard_normal(({b}, {self.prompt + self.new}, {e}))",
                f"heads = {split}",
                f"cache = {_config(b, h, self.head_dim, self.capacity)}",
                f"mha.forward(x[:, :{p}], cache=cache)",
                "keys, values = cache.get()",
                f"assert np.allclose(keys, heads(mha.k_proj(x[:, :{p}]))), 'keys: not k_proj(x)'",
                f"assert np.allclose(values, heads(mha.v_proj(x[:, :{p}]))), 'values'",
                f"by_hand = {_config(b, h, self.head_dim, self.capacity)}",
                "by_hand.update(keys.copy(), values.copy())",
                *(line.format(e=e) for line in _WEIGHT_LINES),
                f"out = mha.forward(x[:, {p}:], cache=cache)",
                f"expected = mha.forward(x[:, {p}:], cache=by_hand)",
                "assert np.allclose(out, expected), 'the cached step recomputed old positions'",
            ]
        )


def new_tokens_case(
    seed: int, batch: int, heads: int, head_dim: int, prompt: int, new: int
) -> NewTokensCase:
    """A case whose weights, x and later weights come from `seed` (in the snippet's order)."""
    rng = np.random.default_rng(seed)
    e = heads * head_dim
    weights = projection_weights(rng, e)
    x = rng.standard_normal((batch, prompt + new, e))
    later = projection_weights(rng, e)
    return NewTokensCase(seed, batch, heads, head_dim, prompt, new, x, weights, later)


# --- the formulas --------------------------------------------------------------------------


@dataclass(frozen=True)
class BytesCase:
    """Arguments of `kv_cache_bytes`; `width` None leaves bytes_per_value at its default."""

    layers: int
    batch: int
    seq: int
    heads: int
    head_dim: int
    width: int | None = None
    keyword: bool = True

    def probe(self) -> BytesCase:
        """A second input on which the known mistakes all differ."""
        return BytesCase(3, 2, 5, 7, 11, 2)

    def call(self) -> str:
        args = f"{self.layers}, {self.batch}, {self.seq}, {self.heads}, {self.head_dim}"
        if self.width is None:
            return f"kv_cache_bytes({args})"
        if self.keyword:
            return f"kv_cache_bytes({args}, bytes_per_value={self.width})"
        return f"kv_cache_bytes({args}, {self.width})"

    def describe(self) -> str:
        return self.call()

    def snippet(self) -> str:
        return f"print({self.call()})"


BYTES_GRID = (
    BytesCase(1, 1, 1, 1, 1),
    BytesCase(1, 1, 1, 1, 1, 2),
    BytesCase(32, 1, 4096, 32, 128, 2),
    BytesCase(2, 3, 5, 7, 11, 1, keyword=False),
    BytesCase(1, 1, 0, 1, 1),
)


@dataclass(frozen=True)
class ScoreCase:
    """Arguments of `decoding_score_count`."""

    seq_len: int
    use_cache: bool
    keyword: bool = True

    def probe(self) -> ScoreCase:
        """A second input on which the known mistakes all differ."""
        return ScoreCase(5, self.use_cache)

    def call(self) -> str:
        flag = f"use_cache={self.use_cache}" if self.keyword else str(self.use_cache)
        return f"decoding_score_count({self.seq_len}, {flag})"

    def describe(self) -> str:
        return self.call()

    def snippet(self) -> str:
        return f"print({self.call()})"


SCORE_GRID = tuple(ScoreCase(n, cached) for n in (1, 2, 3, 4) for cached in (False, True))
