import numpy as np

MASK_VALUE = -1e9


class Linear:
    def __init__(self, in_features, out_features):
        self.weight = np.random.default_rng(1).normal(size=(in_features, out_features))
        self.bias = np.zeros(out_features)

    def forward(self, x):
        return np.einsum("...i,io->...o", x, self.weight) + self.bias

    __call__ = forward


def scaled_dot_product_attention(Q, K, V, mask=None):
    scores = np.einsum("...qd,...kd->...qk", Q, K) / np.sqrt(Q.shape[-1])
    if mask is not None:
        scores = np.where(np.asarray(mask).astype(bool), scores, MASK_VALUE)
    shifted = np.exp(scores - np.max(scores, axis=-1, keepdims=True))
    weights = shifted / np.sum(shifted, axis=-1, keepdims=True)
    return np.einsum("...qk,...kv->...qv", weights, V), weights


def create_causal_mask(seq_len):
    i, j = np.indices((seq_len, seq_len))
    return (j <= i).astype(float)


class MultiHeadAttention:
    def __init__(self, embed_dim, num_heads):
        if embed_dim % num_heads:
            raise ValueError(f"{embed_dim} is not a multiple of {num_heads}")
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.head_dim = embed_dim // num_heads
        self.q_proj, self.k_proj = Linear(embed_dim, embed_dim), Linear(embed_dim, embed_dim)
        self.v_proj, self.out_proj = Linear(embed_dim, embed_dim), Linear(embed_dim, embed_dim)

    def forward(self, x, mask=None):
        b, s, _ = x.shape
        h, d = self.num_heads, self.head_dim
        q, k, v = (
            np.einsum("bshd->bhsd", p(x).reshape(b, s, h, d))
            for p in (self.q_proj, self.k_proj, self.v_proj)
        )
        if mask is not None and np.ndim(mask) == 3:
            mask = np.expand_dims(mask, 1)
        out, _ = scaled_dot_product_attention(q, k, v, mask)
        return self.out_proj(np.einsum("bhsd->bshd", out).reshape(b, s, self.embed_dim))

    __call__ = forward
