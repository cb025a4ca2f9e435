import numpy as np

MASK_VALUE = -1e9


class Linear:
    def __init__(self, in_features, out_features):
        self.weight = np.eye(in_features, out_features)
        self.bias = np.zeros(out_features)

    def forward(self, x):
        return x @ self.weight + self.bias

    __call__ = forward


def scaled_dot_product_attention(Q, K, V, mask=None):
    d_k = Q.shape[-1]
    scores = Q @ np.moveaxis(K, -1, -2) / np.sqrt(d_k)
    if mask is not None:
        mask = np.asarray(mask, dtype=float)
        scores = scores * mask + (1 - mask) * MASK_VALUE
    scores = scores - scores.max(-1, keepdims=True)
    log_norm = np.log(np.exp(scores).sum(-1, keepdims=True))
    weights = np.exp(scores - log_norm)
    return np.matmul(weights, V), weights


def create_causal_mask(seq_len):
    mask = np.ones((seq_len, seq_len))
    mask[np.triu_indices(seq_len, k=1)] = 0
    return mask


class MultiHeadAttention:
    def __init__(self, embed_dim, num_heads):
        if not embed_dim % num_heads == 0:
            raise ValueError("embed_dim % num_heads must be 0")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.q_proj = Linear(embed_dim, embed_dim)
        self.k_proj = Linear(embed_dim, embed_dim)
        self.v_proj = Linear(embed_dim, embed_dim)
        self.out_proj = Linear(embed_dim, embed_dim)

    def head_mask(self, mask, b, h):
        if mask is None:
            return None
        mask = np.asarray(mask)
        if mask.ndim == 2:
            return mask
        if mask.ndim == 3:
            return mask[b]
        return mask[b, 0] if mask.shape[1] == 1 else mask[b, h]

    def forward(self, x, mask=None):
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        outputs = np.zeros_like(q)
        for b in range(x.shape[0]):
            for h in range(self.num_heads):
                cols = slice(h * self.head_dim, (h + 1) * self.head_dim)
                out, _ = scaled_dot_product_attention(
                    q[b, :, cols], k[b, :, cols], v[b, :, cols], self.head_mask(mask, b, h)
                )
                outputs[b, :, cols] = out
        return self.out_proj(outputs)

    __call__ = forward
