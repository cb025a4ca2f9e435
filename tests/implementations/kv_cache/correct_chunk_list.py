# A student who keeps a list of the chunks it was given and concatenates them in get(); seq_len
# is a plain attribute; the cached mask compares absolute positions; the counts are loops.
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
        self.batch_size = batch_size
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.max_seq_len = max_seq_len
        self.k_chunks = []
        self.v_chunks = []
        self.seq_len = 0

    def _check(self, a, name):
        if a.ndim != 4:
            raise ValueError(f"{name} must have 4 axes, got shape {a.shape}")
        if a.shape[0] != self.batch_size or a.shape[1] != self.num_heads:
            raise ValueError(f"{name} has shape {a.shape}: wrong batch size or number of heads")
        if a.shape[3] != self.head_dim:
            raise ValueError(f"{name} has head_dim {a.shape[3]}, expected {self.head_dim}")

    def update(self, k, v):
        self._check(k, "k")
        self._check(v, "v")
        if k.shape[2] != v.shape[2]:
            raise ValueError("k and v must hold the same number of positions")
        if self.seq_len + k.shape[2] > self.max_seq_len:
            raise ValueError(f"max_seq_len {self.max_seq_len} exceeded")
        self.k_chunks.append(k)
        self.v_chunks.append(v)
        self.seq_len += k.shape[2]

    def get(self):
        if not self.k_chunks:
            empty = np.zeros((self.batch_size, self.num_heads, 0, self.head_dim))
            return empty, empty.copy()
        return np.concatenate(self.k_chunks, axis=2), np.concatenate(self.v_chunks, axis=2)

    def reset(self):
        self.k_chunks = []
        self.v_chunks = []
        self.seq_len = 0


class MultiHeadAttention:
    def __init__(self, embed_dim, num_heads):
        if embed_dim % num_heads != 0:
            raise ValueError(f"{embed_dim} is not divisible by {num_heads}")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.q_proj = Linear(embed_dim, embed_dim)
        self.k_proj = Linear(embed_dim, embed_dim)
        self.v_proj = Linear(embed_dim, embed_dim)
        self.out_proj = Linear(embed_dim, embed_dim)

    def _split_heads(self, x):
        batch, seq, _ = x.shape
        return x.reshape(batch, seq, self.num_heads, self.head_dim).transpose(0, 2, 1, 3)

    def forward(self, x, mask=None, cache=None):
        batch, seq, _ = x.shape
        Q = self._split_heads(self.q_proj(x))
        K = self._split_heads(self.k_proj(x))
        V = self._split_heads(self.v_proj(x))
        if cache is not None:
            start = cache.seq_len
            cache.update(K, V)
            K, V = cache.get()
            query_pos = np.arange(start, start + seq)
            key_pos = np.arange(start + seq)
            mask = key_pos[None, :] <= query_pos[:, None]
        elif mask is not None:
            mask = np.asarray(mask)
            if mask.ndim == 3:
                mask = mask[:, np.newaxis, :, :]
        out, _ = scaled_dot_product_attention(Q, K, V, mask)
        out = out.transpose(0, 2, 1, 3).reshape(batch, seq, self.embed_dim)
        return self.out_proj(out)

    __call__ = forward


def kv_cache_bytes(num_layers, batch_size, seq_len, num_heads, head_dim, bytes_per_value=4):
    values_per_layer = batch_size * seq_len * num_heads * head_dim
    keys_and_values = 2 * values_per_layer
    return num_layers * keys_and_values * bytes_per_value


def decoding_score_count(seq_len, use_cache):
    total = 0
    for t in range(1, seq_len + 1):
        if use_cache:
            total += t
        else:
            total += t * t
    return total
