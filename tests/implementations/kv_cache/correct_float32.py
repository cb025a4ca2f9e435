# A student who stores the cache in float32 (converting on update) and computes in float64.
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
    # float32 storage: half the memory of float64, as real caches store fp16 or bf16.
    def __init__(self, batch_size, num_heads, head_dim, max_seq_len):
        self.batch_size = batch_size
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.max_seq_len = max_seq_len
        shape = (batch_size, num_heads, max_seq_len, head_dim)
        self.keys = np.zeros(shape, dtype=np.float32)
        self.values = np.zeros(shape, dtype=np.float32)
        self.n = 0

    @property
    def seq_len(self):
        return self.n

    def update(self, k, v):
        k = np.asarray(k, dtype=np.float32)
        v = np.asarray(v, dtype=np.float32)
        if k.shape != v.shape or k.ndim != 4:
            raise ValueError("k and v must be two arrays of the same 4-d shape")
        b, h, t, d = k.shape
        if b != self.batch_size or h != self.num_heads or d != self.head_dim:
            raise ValueError("k and v do not match the cache's batch_size, num_heads, head_dim")
        if self.n + t > self.max_seq_len:
            raise ValueError("not enough room in the cache")
        self.keys[:, :, self.n : self.n + t] = k
        self.values[:, :, self.n : self.n + t] = v
        self.n += t

    def get(self):
        return self.keys[:, :, : self.n].copy(), self.values[:, :, : self.n].copy()

    def reset(self):
        self.n = 0


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

    def _split_heads(self, x):
        batch, seq, _ = x.shape
        return x.reshape(batch, seq, self.num_heads, self.head_dim).transpose(0, 2, 1, 3)

    def forward(self, x, mask=None, cache=None):
        batch, seq, _ = x.shape
        Q = self._split_heads(self.q_proj(x))
        K = self._split_heads(self.k_proj(x))
        V = self._split_heads(self.v_proj(x))
        if cache is not None:
            past = cache.seq_len
            cache.update(K, V)
            K, V = cache.get()
            K, V = K.astype(np.float64), V.astype(np.float64)
            full = create_causal_mask(past + seq)
            mask = full[past : past + seq]
        elif mask is not None:
            mask = np.asarray(mask)
            if mask.ndim == 3:
                mask = np.expand_dims(mask, 1)
        out, _ = scaled_dot_product_attention(Q, K, V, mask)
        out = out.transpose(0, 2, 1, 3).reshape(batch, seq, self.embed_dim)
        return self.out_proj(out)

    __call__ = forward


def kv_cache_bytes(num_layers, batch_size, seq_len, num_heads, head_dim, bytes_per_value=4):
    return num_layers * 2 * batch_size * seq_len * num_heads * head_dim * bytes_per_value


def decoding_score_count(seq_len, use_cache):
    counts = [t if use_cache else t * t for t in range(1, seq_len + 1)]
    return sum(counts)
