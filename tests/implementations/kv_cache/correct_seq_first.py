# A student who stores the cache sequence-first, (seq, batch, heads, dim), builds the cached
# mask row by row and attends one head at a time.
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
    # Stored sequence-first, (max_seq_len, batch, heads, head_dim), as some engines do.
    def __init__(self, batch_size, num_heads, head_dim, max_seq_len):
        self.batch_size = batch_size
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.max_seq_len = max_seq_len
        self.k_store = np.zeros((max_seq_len, batch_size, num_heads, head_dim))
        self.v_store = np.zeros((max_seq_len, batch_size, num_heads, head_dim))
        self.length = 0

    @property
    def seq_len(self):
        return self.length

    def update(self, k, v):
        want = (self.batch_size, self.num_heads, self.head_dim)
        for name, a in (("k", k), ("v", v)):
            if a.ndim != 4 or (a.shape[0], a.shape[1], a.shape[3]) != want:
                raise ValueError(f"{name} has shape {a.shape}; (batch, heads, dim) must be {want}")
        if k.shape[2] != v.shape[2]:
            raise ValueError("k and v have different lengths")
        t = k.shape[2]
        if self.length + t > self.max_seq_len:
            raise ValueError(f"{self.length} + {t} positions exceed max_seq_len {self.max_seq_len}")
        self.k_store[self.length : self.length + t] = np.moveaxis(k, 2, 0)
        self.v_store[self.length : self.length + t] = np.moveaxis(v, 2, 0)
        self.length += t

    def get(self):
        keys = np.moveaxis(self.k_store[: self.length], 0, 2)
        values = np.moveaxis(self.v_store[: self.length], 0, 2)
        return keys, values

    def reset(self):
        self.length = 0
        self.k_store[:] = 0
        self.v_store[:] = 0


class MultiHeadAttention:
    def __init__(self, embed_dim, num_heads):
        if embed_dim % num_heads != 0:
            raise ValueError(f"embed_dim={embed_dim} not divisible by num_heads={num_heads}")
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
        seq = x.shape[1]
        Q = self._split_heads(self.q_proj(x))
        K = self._split_heads(self.k_proj(x))
        V = self._split_heads(self.v_proj(x))
        if cache is not None:
            n_before = cache.seq_len
            cache.update(K, V)
            K, V = cache.get()
            rows = []
            for i in range(seq):  # new token i sits at position n_before + i
                row = np.zeros(n_before + seq)
                row[: n_before + i + 1] = 1
                rows.append(row)
            mask = np.array(rows)
        elif mask is not None and np.ndim(mask) == 3:
            mask = np.asarray(mask)[:, np.newaxis]
        heads = []
        for h in range(self.num_heads):  # one head at a time
            m = mask
            if m is not None and np.ndim(m) == 4:
                m = np.asarray(m)[:, h if np.shape(m)[1] > 1 else 0]
            out, _ = scaled_dot_product_attention(Q[:, h], K[:, h], V[:, h], m)
            heads.append(out)
        concat = np.concatenate(heads, axis=-1)
        return self.out_proj(concat)

    __call__ = forward


def kv_cache_bytes(num_layers, batch_size, seq_len, num_heads, head_dim, bytes_per_value=4):
    elements = num_layers * batch_size * seq_len * num_heads * head_dim
    return elements * 2 * bytes_per_value


def decoding_score_count(seq_len, use_cache):
    if use_cache:
        return seq_len * (seq_len + 1) // 2
    return sum(t * t for t in range(seq_len + 1))
