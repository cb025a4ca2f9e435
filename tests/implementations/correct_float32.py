import numpy as np

MASK_VALUE = -1e9


class Linear:
    def __init__(self, in_features, out_features):
        self.weight = np.zeros((in_features, out_features), dtype=np.float32)
        self.bias = np.zeros(out_features, dtype=np.float32)

    def forward(self, x):
        return x @ self.weight.astype(np.float32) + self.bias.astype(np.float32)

    __call__ = forward


def scaled_dot_product_attention(Q, K, V, mask=None):
    Q, K, V = (np.asarray(a, dtype=np.float32) for a in (Q, K, V))
    scores = np.matmul(Q, np.swapaxes(K, -2, -1)) / np.float32(np.sqrt(Q.shape[-1]))
    if mask is not None:
        scores = scores + (1.0 - np.asarray(mask, dtype=np.float32)) * np.float32(MASK_VALUE)
    scores -= scores.max(axis=-1, keepdims=True)
    weights = np.exp(scores)
    weights /= weights.sum(axis=-1, keepdims=True)
    return (weights @ V).astype(np.float32), weights.astype(np.float32)


def create_causal_mask(seq_len):
    return np.tril(np.ones((seq_len, seq_len), dtype=np.float32))


class MultiHeadAttention:
    def __init__(self, embed_dim, num_heads):
        if embed_dim % num_heads != 0:
            raise ValueError("embed_dim must be divisible by num_heads")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.q_proj = Linear(embed_dim, embed_dim)
        self.k_proj = Linear(embed_dim, embed_dim)
        self.v_proj = Linear(embed_dim, embed_dim)
        self.out_proj = Linear(embed_dim, embed_dim)

    def forward(self, x, mask=None):
        x = np.asarray(x, dtype=np.float32)
        b, s, e = x.shape

        def heads(t):
            return t.reshape(b, s, self.num_heads, self.head_dim).swapaxes(1, 2)

        q, k, v = heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x))
        if mask is not None:
            mask = np.asarray(mask, dtype=np.float32)
            if mask.ndim == 3:
                mask = mask.reshape(b, 1, s, s)
        out, _ = scaled_dot_product_attention(q, k, v, mask)
        return self.out_proj(out.swapaxes(1, 2).reshape(b, s, e))

    def __call__(self, x, mask=None):
        return self.forward(x, mask)
