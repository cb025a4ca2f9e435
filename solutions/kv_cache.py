"""Reference implementation of the KV-cache assignment (the grader's oracle).

The first four definitions are the notebook's given code, carried over from the attention
assignment; the rest are the student's work.
"""

from __future__ import annotations

import numpy as np

MASK_VALUE = -1e9


class Linear:
    """A dense layer: ``forward(x) = x @ weight + bias``."""

    def __init__(self, in_features: int, out_features: int) -> None:
        rng = np.random.default_rng(0)
        bound = 1.0 / np.sqrt(in_features)
        self.weight = rng.uniform(-bound, bound, size=(in_features, out_features))
        self.bias = np.zeros(out_features)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x @ self.weight + self.bias

    __call__ = forward


def scaled_dot_product_attention(
    Q: np.ndarray, K: np.ndarray, V: np.ndarray, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    d_k = Q.shape[-1]
    scores = Q @ np.swapaxes(K, -1, -2) / np.sqrt(d_k)
    if mask is not None:
        scores = np.where(np.asarray(mask) != 0, scores, MASK_VALUE)
    scores = scores - scores.max(axis=-1, keepdims=True)
    exp = np.exp(scores)
    weights = exp / exp.sum(axis=-1, keepdims=True)
    return weights @ V, weights


def create_causal_mask(seq_len: int) -> np.ndarray:
    return np.tril(np.ones((seq_len, seq_len)))


class KVCache:
    """The keys and values of every position decoded so far, for one attention layer."""

    def __init__(self, batch_size: int, num_heads: int, head_dim: int, max_seq_len: int) -> None:
        self.batch_size = batch_size
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.max_seq_len = max_seq_len
        shape = (batch_size, num_heads, max_seq_len, head_dim)
        self._keys = np.zeros(shape)
        self._values = np.zeros(shape)
        self._length = 0

    @property
    def seq_len(self) -> int:
        return self._length

    def update(self, k: np.ndarray, v: np.ndarray) -> None:
        expected = (self.batch_size, self.num_heads, self.head_dim)
        if k.shape != v.shape:
            raise ValueError(f"k has shape {k.shape} but v has shape {v.shape}: they must agree")
        if k.ndim != 4 or (k.shape[0], k.shape[1], k.shape[3]) != expected:
            raise ValueError(
                f"k and v have shape {k.shape}; expected (batch_size, num_heads, t, head_dim) "
                f"with (batch_size, num_heads, head_dim) = {expected}"
            )
        start, stop = self._length, self._length + k.shape[2]
        if stop > self.max_seq_len:
            raise ValueError(
                f"cannot append {k.shape[2]} positions to {start}: "
                f"the cache holds at most max_seq_len = {self.max_seq_len}"
            )
        self._keys[:, :, start:stop] = k
        self._values[:, :, start:stop] = v
        self._length = stop

    def get(self) -> tuple[np.ndarray, np.ndarray]:
        return self._keys[:, :, : self._length], self._values[:, :, : self._length]

    def reset(self) -> None:
        self._length = 0


class MultiHeadAttention:
    def __init__(self, embed_dim: int, num_heads: int) -> None:
        if embed_dim % num_heads != 0:
            raise ValueError(
                f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})"
            )
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.q_proj = Linear(embed_dim, embed_dim)
        self.k_proj = Linear(embed_dim, embed_dim)
        self.v_proj = Linear(embed_dim, embed_dim)
        self.out_proj = Linear(embed_dim, embed_dim)

    def _split_heads(self, x: np.ndarray) -> np.ndarray:
        batch, seq, _ = x.shape
        return np.swapaxes(x.reshape(batch, seq, self.num_heads, self.head_dim), 1, 2)

    def forward(
        self, x: np.ndarray, mask: np.ndarray | None = None, cache: KVCache | None = None
    ) -> np.ndarray:
        batch, seq, _ = x.shape
        Q = self._split_heads(self.q_proj(x))
        K = self._split_heads(self.k_proj(x))
        V = self._split_heads(self.v_proj(x))
        if cache is not None:
            if mask is not None:
                raise ValueError("pass a mask or a cache, not both: the cached path is causal")
            past = cache.seq_len
            cache.update(K, V)
            K, V = cache.get()
            # Rows past..past+seq-1 of the causal mask over all positions: the new query at
            # absolute position p sees keys 0..p, also inside a chunk of several new tokens.
            mask = create_causal_mask(past + seq)[past:]
        elif mask is not None:
            mask = np.asarray(mask)
            if mask.ndim == 3:  # (batch, seq, seq): the same mask for every head
                mask = mask[:, np.newaxis, :, :]
        attended, _ = scaled_dot_product_attention(Q, K, V, mask)
        concat = attended.transpose(0, 2, 1, 3).reshape(batch, seq, self.embed_dim)
        return self.out_proj(concat)

    __call__ = forward


def kv_cache_bytes(
    num_layers: int,
    batch_size: int,
    seq_len: int,
    num_heads: int,
    head_dim: int,
    bytes_per_value: int = 4,
) -> int:
    # A key and a value (the 2) for every layer, sequence, position, head and dimension.
    return 2 * num_layers * batch_size * seq_len * num_heads * head_dim * bytes_per_value


def decoding_score_count(seq_len: int, use_cache: bool) -> int:
    # Step t (1-based) has t positions. Without a cache it reruns attention over all of them:
    # t queries times t keys. With a cache only the newest query is new: t scores.
    if use_cache:
        return sum(t for t in range(1, seq_len + 1))
    return sum(t * t for t in range(1, seq_len + 1))
