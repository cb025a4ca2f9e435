"""Reference implementation of the attention assignment (the grader's oracle)."""

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
        return x.reshape(batch, seq, self.num_heads, self.head_dim).transpose(0, 2, 1, 3)

    def forward(self, x: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        batch, seq, _ = x.shape
        Q = self._split_heads(self.q_proj(x))
        K = self._split_heads(self.k_proj(x))
        V = self._split_heads(self.v_proj(x))
        if mask is not None:
            mask = np.asarray(mask)
            if mask.ndim == 3:  # (batch, seq, seq): the same mask for every head
                mask = mask[:, np.newaxis, :, :]
        attended, _ = scaled_dot_product_attention(Q, K, V, mask)
        concat = attended.transpose(0, 2, 1, 3).reshape(batch, seq, self.embed_dim)
        return self.out_proj(concat)

    __call__ = forward
