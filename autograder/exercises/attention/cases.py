"""What a case of the attention rubric is: the inputs, how they describe and rebuild themselves.

A case holds the seed its arrays come from (NumPy's `default_rng(seed)`, fast, and a snippet
can rebuild it exactly), the sizes and options, and the arrays. Nothing here imports
Hypothesis: the rubric, its hints and the oracle need the cases, and a grade in which every
item passes on the cases shipped with the grader never searches (`strategies.py`, how
Hypothesis draws them, is imported only for a search). The discriminating inputs hints are
confirmed on are here too: they are built, never drawn.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

__all__ = [
    "MHA_STAGES",
    "PROBE_N",
    "PROJECTIONS",
    "SMALL",
    "CausalCase",
    "InitCase",
    "MhaCase",
    "SdpaCase",
    "init_grid",
    "literal",
    "mha_case",
    "mha_probe",
    "mha_stages",
    "qkv",
    "random_mask",
    "sdpa_probe",
    "sdpa_unbatched",
    "shape_text",
]

SMALL = 24
"""Arrays with at most this many elements are shown in full in feedback."""


def literal(name: str, array: np.ndarray) -> str:
    """A line `name = np.array(...)` that rebuilds `array` exactly."""
    if array.dtype == bool:
        body = np.array2string(array.astype(int), separator=", ", threshold=10**6)
        return f"{name} = np.array({body}, dtype=bool)"
    if array.dtype.kind in "iu":
        body = np.array2string(array, separator=", ", threshold=10**6)
        return f"{name} = np.array({body})"
    body = np.array2string(array, separator=", ", threshold=10**6, floatmode="unique")
    return f"{name} = np.array({body})"


def shape_text(array: np.ndarray | None) -> str:
    """An array's shape and dtype for feedback, e.g. "(2, 3) float64"."""
    return "None" if array is None else f"{tuple(array.shape)} {array.dtype}"


def random_mask(
    rng: np.random.Generator, shape: tuple[int, ...], kind: str, density: float
) -> np.ndarray:
    """A 0/1 mask of `shape` in which every query row may attend to at least one key."""
    allowed = rng.random(shape) < density
    keep = rng.integers(0, shape[-1], size=shape[:-1])
    np.put_along_axis(allowed, keep[..., np.newaxis], True, axis=-1)
    return allowed if kind == "bool" else allowed.astype(np.float64)


@dataclass(frozen=True)
class SdpaCase:
    """Inputs for `scaled_dot_product_attention`."""

    seed: int
    Q: np.ndarray = field(repr=False)
    K: np.ndarray = field(repr=False)
    V: np.ndarray = field(repr=False)
    mask: np.ndarray | None = field(repr=False)
    scale: float = 1.0
    """Factor applied to Q after drawing (stability cases use scores of magnitude >= 1e3)."""
    tie: bool = False
    """The last key is the first plus noise of size 1/scale: for every query the two scores,
    about 1e3, differ by about 1, so the weights between them still depend on the scaling."""

    def describe(self) -> str:
        lines = [f"Q: {shape_text(self.Q)}, K: {shape_text(self.K)}, V: {shape_text(self.V)}"]
        lines.append(f"mask: {shape_text(self.mask)}")
        if self.scale != 1.0:
            lines.append(f"Q scaled by {self.scale:g}, so scores reach about ±1e3 or more")
        if self.tie:
            lines.append("the last key is almost the first: their scores differ by about 1")
        return "\n".join(lines)

    def snippet(self) -> str:
        lines = ["import numpy as np"]
        small = max(self.Q.size, self.K.size, self.V.size) <= SMALL and self.scale == 1.0
        if small:
            lines += [literal("Q", self.Q), literal("K", self.K), literal("V", self.V)]
        else:
            lines += [
                f"rng = np.random.default_rng({self.seed})",
                f"Q = rng.standard_normal({self.Q.shape})"
                + (f" * {self.scale!r}" if self.scale != 1.0 else ""),
                f"K = rng.standard_normal({self.K.shape})",
                f"V = rng.standard_normal({self.V.shape})",
            ]
            if self.tie:
                lines.append(
                    f"K[..., -1, :] = K[..., 0, :] + np.random.default_rng({self.seed + 1})"
                    f".standard_normal({self.K.shape[-1]}) / {self.scale!r}"
                )
        lines.append("mask = None" if self.mask is None else literal("mask", self.mask))
        lines.append("output, weights = scaled_dot_product_attention(Q, K, V, mask=mask)")
        return "\n".join(lines)


def qkv(
    seed: int, batch: tuple[int, ...], seq_q: int, seq_k: int, d_k: int, d_v: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.random.Generator]:
    """Q, K and V of these sizes from `seed`, in that order, and the generator (what is drawn
    next, such as a mask, comes from it)."""
    rng = np.random.default_rng(seed)
    Q = rng.standard_normal((*batch, seq_q, d_k))
    K = rng.standard_normal((*batch, seq_k, d_k))
    V = rng.standard_normal((*batch, seq_k, d_v))
    return Q, K, V, rng


@dataclass(frozen=True)
class CausalCase:
    """A sequence length for `create_causal_mask`."""

    seq_len: int

    def describe(self) -> str:
        return f"seq_len = {self.seq_len}"

    def snippet(self) -> str:
        return f"import numpy as np\nmask = create_causal_mask({self.seq_len})\nprint(mask)"


@dataclass(frozen=True)
class InitCase:
    """An (embed_dim, num_heads) pair for the MultiHeadAttention constructor."""

    embed_dim: int
    num_heads: int

    def describe(self) -> str:
        return f"embed_dim = {self.embed_dim}, num_heads = {self.num_heads}"

    def snippet(self) -> str:
        e, h = self.embed_dim, self.num_heads
        if e % h == 0:
            return (
                f"mha = MultiHeadAttention({e}, {h})\n"
                "got = (mha.embed_dim, mha.num_heads, mha.head_dim)\n"
                f"assert got == ({e}, {h}, {e // h}) and type(mha.head_dim) is int, got"
            )
        return (
            "try:\n"
            f"    mha = MultiHeadAttention({e}, {h})\n"
            "except ValueError as error:\n"
            "    print('ValueError, as expected:', error)\n"
            "else:\n"
            f"    raise AssertionError('no error, but {e} % {h} != 0: expected ValueError')"
        )


def init_grid(max_embed: int = 24, max_heads: int = 8) -> tuple[InitCase, ...]:
    """Every pair up to the bounds, smallest first (the exhaustive part of the item)."""
    return tuple(InitCase(e, h) for e in range(1, max_embed + 1) for h in range(1, max_heads + 1))


@dataclass(frozen=True)
class MhaCase:
    """Inputs and projection weights for `MultiHeadAttention.forward`."""

    seed: int
    batch: int
    seq: int
    num_heads: int
    head_dim: int
    x: np.ndarray = field(repr=False)
    weights: dict[str, np.ndarray] = field(repr=False)
    mask: np.ndarray | None = field(repr=False, default=None)
    cut: int = -1
    """For causality cases: positions after `cut` are perturbed."""

    @property
    def embed_dim(self) -> int:
        return self.num_heads * self.head_dim

    def describe(self) -> str:
        text = (
            f"embed_dim = {self.embed_dim}, num_heads = {self.num_heads}, x: {shape_text(self.x)}"
            f", mask: {shape_text(self.mask)}"
        )
        if self.cut >= 0:
            text += f"; x changed at positions > {self.cut}"
        return text

    def snippet(self) -> str:
        e = self.embed_dim
        lines = [
            "import numpy as np",
            f"rng = np.random.default_rng({self.seed})",
            f"mha = MultiHeadAttention({e}, {self.num_heads})",
            "for proj in (mha.q_proj, mha.k_proj, mha.v_proj, mha.out_proj):",
            f"    proj.weight = rng.standard_normal(({e}, {e})) / np.sqrt({e})",
            f"    proj.bias = rng.standard_normal({e}) * 0.1",
            f"x = rng.standard_normal(({self.batch}, {self.seq}, {e}))",
            "mask = None" if self.mask is None else literal("mask", self.mask),
            "out = mha.forward(x, mask=mask)",
        ]
        return "\n".join(lines)

    def causal_snippet(self) -> str:
        """`snippet`, then the second call, on x changed after position `cut`."""
        return "\n".join(
            [
                self.snippet(),
                "x2 = x.copy()",
                f"x2[:, {self.cut + 1}:] += 3.0",
                "out2 = mha.forward(x2, mask=mask)",
            ]
        )


PROJECTIONS = ("q_proj", "k_proj", "v_proj", "out_proj")


def mha_case(
    seed: int,
    batch: int,
    seq: int,
    num_heads: int,
    head_dim: int,
    *,
    layout: str | None = None,
    kind: str = "float",
    causal: bool = False,
    cut: int = -1,
) -> MhaCase:
    """The case these sizes and options build (weights, x and mask all drawn from `seed`)."""
    e = num_heads * head_dim
    rng = np.random.default_rng(seed)
    weights = {}
    for name in PROJECTIONS:
        weights[f"{name}.weight"] = rng.standard_normal((e, e)) / np.sqrt(e)
        weights[f"{name}.bias"] = rng.standard_normal(e) * 0.1
    x = rng.standard_normal((batch, seq, e))
    mask = None
    if layout is not None:
        shape = {
            "seq": (seq, seq),
            "batch": (batch, seq, seq),
            "batch-1": (batch, 1, seq, seq),
            "batch-heads": (batch, num_heads, seq, seq),
        }[layout]
        mask = random_mask(rng, shape, kind, 0.5)
    if causal:
        mask = np.tril(np.ones((seq, seq)))
    return MhaCase(seed, batch, seq, num_heads, head_dim, x, weights, mask, cut)


# --- discriminating inputs ---------------------------------------------------------------
# A hint may name a mistake only if the mistake reproduces the student's answer on the failing
# input and also on a second input, drawn for the purpose: larger, with distinct dimensions
# (d_k > 1, seq_q != seq_k, batch sizes unlike the other axes), random values (no ties), and
# masks in which every query sees some keys and misses others. It keeps the structure of the
# failing input (number of batch axes, mask kind and layout, score magnitude), so that a
# mistake tied to that structure shows on it too, and depends on nothing else: a handful of
# probes serve every failing input (the student kit records their answers once).

PROBE_SEED = 20151
PROBE_N = 5
"""The second sequence length a causal-mask hint must hold for."""
PROBE_BATCH = (2, 3)
PROBE_SEQ_Q, PROBE_SEQ_K, PROBE_D_K, PROBE_D_V = 4, 5, 6, 7


def _probe_mask(rng: np.random.Generator, shape: tuple[int, ...], kind: str) -> np.ndarray:
    """A mask of `shape` in which every row allows at least one key and masks at least one."""
    allowed = rng.random(shape) < 0.5
    keys = shape[-1]
    keep = rng.integers(0, keys, size=shape[:-1])
    drop = (keep + rng.integers(1, keys, size=shape[:-1])) % keys
    np.put_along_axis(allowed, keep[..., np.newaxis], True, axis=-1)
    np.put_along_axis(allowed, drop[..., np.newaxis], False, axis=-1)
    return allowed if kind == "bool" else allowed.astype(np.float64)


def sdpa_probe(case: SdpaCase) -> SdpaCase:
    """The discriminating input for a failing sdpa `case` (see above)."""
    nbatch = case.Q.ndim - 2
    batch = PROBE_BATCH[:nbatch]
    Q, K, V, rng = qkv(PROBE_SEED, batch, PROBE_SEQ_Q, PROBE_SEQ_K, PROBE_D_K, PROBE_D_V)
    mask = None
    if case.mask is not None:
        given = np.asarray(case.mask)
        kind = "bool" if given.dtype == bool else "float"
        lead = given.shape[:-2]
        shape = (
            *(
                b if n != 1 else 1
                for b, n in zip(batch[len(batch) - len(lead) :], lead, strict=True)
            ),
            PROBE_SEQ_Q,
            PROBE_SEQ_K,
        )
        if np.all(given != 0):
            mask = np.ones(shape, dtype=bool if kind == "bool" else np.float64)
        else:
            mask = _probe_mask(rng, shape, kind)
    scale = 1.0
    if case.scale != 1.0:
        reached = np.abs(case.Q @ np.swapaxes(case.K, -1, -2)).max() / np.sqrt(case.Q.shape[-1])
        scores = np.abs(Q @ np.swapaxes(K, -1, -2)) / np.sqrt(PROBE_D_K)
        scale = float(reached / scores.max())
        Q = Q * scale
    return SdpaCase(PROBE_SEED, Q, K, V, mask, scale)


def sdpa_unbatched(case: SdpaCase) -> SdpaCase:
    """The first batch element of `case`, without batch dimensions (the same mask layout)."""
    first = (0,) * (case.Q.ndim - 2)
    mask = None if case.mask is None else np.asarray(case.mask)
    if mask is not None and mask.ndim > 2:
        mask = mask[(0,) * (mask.ndim - 2)]
    return SdpaCase(case.seed, case.Q[first], case.K[first], case.V[first], mask, case.scale)


def mha_probe(case: MhaCase) -> MhaCase:
    """The discriminating input for a failing multi-head `case` (see above).

    A (batch, seq, seq) mask with batch == heads keeps batch == heads (3 of each), the only way
    a mask without a head axis broadcasts; otherwise batch 2, 3 heads of size 4, seq 5.
    """
    mask = case.mask
    layout: str | None = None
    kind = "float"
    if mask is not None and case.cut < 0:
        layout = {2: "seq", 3: "batch"}.get(mask.ndim) or (
            "batch-1" if mask.shape[1] == 1 else "batch-heads"
        )
        kind = "bool" if mask.dtype == bool else "float"
    batch, heads, head_dim, seq = 2, 3, 4, 5
    if layout == "batch" and case.batch == case.num_heads:
        batch, heads, head_dim, seq = 3, 3, 2, 4
    causal = case.cut >= 0
    return mha_case(
        PROBE_SEED,
        batch,
        seq,
        heads,
        head_dim,
        layout=layout,
        kind=kind,
        causal=causal,
        cut=1 if causal else -1,
    )


MHA_STAGES = (
    (
        "with q_proj = k_proj = 0 (every position a query may see gets the same weight), "
        "v_proj = out_proj = identity and all biases 0",
        (),
    ),
    ("once v_proj has random weights and bias", ("v_proj",)),
    ("once q_proj and k_proj have random weights and biases too", ("v_proj", "q_proj", "k_proj")),
    ("once out_proj is random too", ("v_proj", "q_proj", "k_proj", "out_proj")),
)
"""Projection weights of the grader's choosing, one stage more at a time: the first stage at
which a student's output goes wrong says where to look (stated as a fact, not a cause)."""


def mha_stages(case: MhaCase) -> list[tuple[str, MhaCase]]:
    """The stage inputs for a failing multi-head `case`: its probe, with the projections of
    `MHA_STAGES` (random ones from the probe, the others zero or the identity)."""
    probe = mha_probe(case)
    e = probe.embed_dim
    stages = []
    for text, random in MHA_STAGES:
        weights = dict(probe.weights)
        for name in PROJECTIONS:
            if name in random:
                continue
            identity = name in ("v_proj", "out_proj")
            weights[f"{name}.weight"] = np.eye(e) if identity else np.zeros((e, e))
            weights[f"{name}.bias"] = np.zeros(e)
        stages.append((text, replace(probe, weights=weights)))
    return stages
