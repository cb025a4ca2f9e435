import numpy as np

MASK_VALUE = -1e9


class Linear:
    def __init__(self, in_features, out_features):
        self.weight = np.full((in_features, out_features), 0.5)
        self.bias = np.ones(out_features)

    def forward(self, x):
        return np.dot(x, self.weight) + self.bias

    __call__ = forward


def scaled_dot_product_attention(Q, K, V, mask=None):
    axes = list(range(K.ndim))
    axes[-1], axes[-2] = axes[-2], axes[-1]
    scores = np.matmul(Q, np.transpose(K, axes)) * (1.0 / np.sqrt(Q.shape[-1]))
    if mask is not None:
        blocked = np.broadcast_to(np.logical_not(np.asarray(mask, dtype=bool)), scores.shape)
        scores = scores.copy()
        scores[blocked] = MASK_VALUE
    top = scores.max(axis=-1, keepdims=True)
    log_sum = top + np.log(np.exp(scores - top).sum(axis=-1, keepdims=True))
    weights = np.exp(scores - log_sum)
    return np.matmul(weights, V), weights


def create_causal_mask(seq_len):
    positions = np.arange(seq_len)
    return (positions[:, None] >= positions[None, :]).astype(np.int64)


class MultiHeadAttention:
    def __init__(self, embed_dim, num_heads):
        if embed_dim % num_heads != 0:
            raise ValueError(f"embed_dim={embed_dim} is not divisible by num_heads={num_heads}")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.q_proj = Linear(embed_dim, embed_dim)
        self.k_proj = Linear(embed_dim, embed_dim)
        self.v_proj = Linear(embed_dim, embed_dim)
        self.out_proj = Linear(embed_dim, embed_dim)

    def forward(self, x, mask=None):
        batch, seq = x.shape[0], x.shape[1]
        split = [
            np.stack(np.split(p(x), self.num_heads, axis=-1), axis=1)
            for p in (self.q_proj, self.k_proj, self.v_proj)
        ]
        if mask is not None:
            mask = np.asarray(mask)
            mask = mask.reshape(batch, 1, seq, seq) if mask.ndim == 3 else mask
        out, _ = scaled_dot_product_attention(*split, mask)
        return self.out_proj(np.concatenate(list(np.moveaxis(out, 1, 0)), axis=-1))

    __call__ = forward
