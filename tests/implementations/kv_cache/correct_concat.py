# A student who concatenates on every update (no preallocation), writes the cached attention
# with einsum and an explicit -inf mask, and computes the memory with np.prod.
import numpy as np

MASK_VALUE = -1e9


class Linear:
    def __init__(self, in_features, out_features):
        rng = np.random.default_rng(0)
        bound = 1.0 / np.sqrt(in_features)
        self.weight = rng.uniform(-bound, bound, size=(in_features, out_features))
        self.bias = np.zeros(out_features)

    def forward(self, x):
        return x @ self.weight + self.bias

    __call__ = forward


def scaled_dot_product_attention(Q, K, V, mask=None):
    d_k = Q.shape[-1]
    scores = Q @ np.swapaxes(K, -1, -2) / np.sqrt(d_k)
    if mask is not None:
        scores = np.where(np.asarray(mask) != 0, scores, MASK_VALUE)
    scores = scores - scores.max(axis=-1, keepdims=True)
    exp = np.exp(scores)
    weights = exp / exp.sum(axis=-1, keepdims=True)
    return weights @ V, weights


def create_causal_mask(seq_len):
    return np.tril(np.ones((seq_len, seq_len)))


class KVCache:
    def __init__(self, batch_size, num_heads, head_dim, max_seq_len):
        self.shape = (batch_size, num_heads, head_dim)
        self.max_seq_len = max_seq_len
        self.keys = np.empty((batch_size, num_heads, 0, head_dim))
        self.values = np.empty((batch_size, num_heads, 0, head_dim))

    @property
    def seq_len(self):
        return self.keys.shape[2]

    def update(self, k, v):
        k = np.asarray(k)
        v = np.asarray(v)
        if k.ndim != 4 or v.ndim != 4:
            raise ValueError("k and v must be 4-dimensional")
        if k.shape != v.shape:
            raise ValueError(f"k {k.shape} and v {v.shape} differ")
        if (k.shape[0], k.shape[1], k.shape[3]) != self.shape:
            raise ValueError(f"expected (batch, heads, head_dim) = {self.shape}, got {k.shape}")
        if self.seq_len + k.shape[2] > self.max_seq_len:
            raise ValueError("the cache would overflow")
        self.keys = np.concatenate([self.keys, k], axis=2)
        self.values = np.concatenate([self.values, v], axis=2)

    def get(self):
        return self.keys, self.values

    def reset(self):
        batch_size, num_heads, head_dim = self.shape
        self.keys = np.empty((batch_size, num_heads, 0, head_dim))
        self.values = np.empty((batch_size, num_heads, 0, head_dim))


class MultiHeadAttention:
    def __init__(self, embed_dim, num_heads):
        if embed_dim % num_heads:
            raise ValueError("embed_dim % num_heads must be 0")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.q_proj = Linear(embed_dim, embed_dim)
        self.k_proj = Linear(embed_dim, embed_dim)
        self.v_proj = Linear(embed_dim, embed_dim)
        self.out_proj = Linear(embed_dim, embed_dim)

    def _split_heads(self, x):
        b, n, _ = x.shape
        return x.reshape(b, n, self.num_heads, self.head_dim).transpose(0, 2, 1, 3)

    def forward(self, x, mask=None, cache=None):
        b, n, _ = x.shape
        q = self._split_heads(self.q_proj(x))
        k = self._split_heads(self.k_proj(x))
        v = self._split_heads(self.v_proj(x))
        if cache is None:
            if mask is not None:
                mask = np.asarray(mask)
                if mask.ndim == 3:
                    mask = mask[:, None, :, :]
            out, _ = scaled_dot_product_attention(q, k, v, mask)
        else:
            offset = cache.seq_len
            cache.update(k, v)
            keys, values = cache.get()
            scores = np.einsum("bhqd,bhkd->bhqk", q, keys) / np.sqrt(self.head_dim)
            total = offset + n
            allowed = np.tril(np.ones((total, total), dtype=bool))[offset:]
            scores = np.where(allowed, scores, -np.inf)
            scores -= scores.max(axis=-1, keepdims=True)
            weights = np.exp(scores)
            weights /= weights.sum(axis=-1, keepdims=True)
            out = np.einsum("bhqk,bhkd->bhqd", weights, values)
        out = out.transpose(0, 2, 1, 3).reshape(b, n, self.embed_dim)
        return self.out_proj(out)

    __call__ = forward


def kv_cache_bytes(num_layers, batch_size, seq_len, num_heads, head_dim, bytes_per_value=4):
    return int(np.prod([2, num_layers, batch_size, seq_len, num_heads, head_dim, bytes_per_value]))


def decoding_score_count(seq_len, use_cache):
    steps = range(1, seq_len + 1)
    return sum(steps) if use_cache else sum(t**2 for t in steps)
