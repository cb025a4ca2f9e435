import numpy as np

MASK_VALUE = -1e9


class Linear:
    def __init__(self, in_features, out_features):
        self.weight = np.ones((in_features, out_features)) / in_features
        self.bias = np.zeros(out_features)

    def forward(self, x):
        return x @ self.weight + self.bias

    __call__ = forward


def softmax(scores):
    top = np.max(scores, axis=-1, keepdims=True)
    exp = np.exp(scores - top)
    return exp / exp.sum(axis=-1, keepdims=True)


def scaled_dot_product_attention(Q, K, V, mask=None):
    d_k = K.shape[-1]
    scores = (Q @ K.swapaxes(-1, -2)) / d_k**0.5
    if mask is not None:
        keep = np.asarray(mask) == 1 if np.asarray(mask).dtype != bool else np.asarray(mask)
        scores = np.where(keep, scores, -np.inf)
    weights = softmax(scores)
    return weights @ V, weights


def create_causal_mask(seq_len):
    return np.tri(seq_len, dtype=bool)


class MultiHeadAttention:
    def __init__(self, embed_dim, num_heads):
        if embed_dim % num_heads != 0:
            raise ValueError(f"cannot split {embed_dim} dimensions into {num_heads} heads")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.q_proj = Linear(embed_dim, embed_dim)
        self.k_proj = Linear(embed_dim, embed_dim)
        self.v_proj = Linear(embed_dim, embed_dim)
        self.out_proj = Linear(embed_dim, embed_dim)

    def forward(self, x, mask=None):
        batch, seq, _ = x.shape
        shape = (batch, seq, self.num_heads, self.head_dim)
        q = np.transpose(self.q_proj(x).reshape(shape), (0, 2, 1, 3))
        k = np.transpose(self.k_proj(x).reshape(shape), (0, 2, 1, 3))
        v = np.transpose(self.v_proj(x).reshape(shape), (0, 2, 1, 3))
        if mask is not None:
            mask = np.asarray(mask)
            if mask.ndim == 3:
                mask = mask[:, None]
        out, _ = scaled_dot_product_attention(q, k, v, mask)
        out = np.transpose(out, (0, 2, 1, 3)).reshape(batch, seq, self.embed_dim)
        return self.out_proj(out)

    __call__ = forward
