import numpy as np

MASK_VALUE = -1e9


class Linear:
    def __init__(self, in_features, out_features):
        self.weight = np.zeros((in_features, out_features))
        self.bias = np.zeros(out_features)

    def forward(self, x):
        return x @ self.weight + self.bias

    __call__ = forward


def _attend(q, k, v, m):
    n_q, n_k, d_k, d_v = q.shape[0], k.shape[0], q.shape[1], v.shape[1]
    weights = np.zeros((n_q, n_k))
    out = np.zeros((n_q, d_v))
    for i in range(n_q):
        scores = []
        for j in range(n_k):
            s = 0.0
            for t in range(d_k):
                s += q[i, t] * k[j, t]
            s = s / np.sqrt(d_k)
            if m is not None and not m[i, j]:
                s = MASK_VALUE
            scores.append(s)
        top = max(scores)
        exps = [np.exp(s - top) for s in scores]
        total = sum(exps)
        for j in range(n_k):
            weights[i, j] = exps[j] / total
            for t in range(d_v):
                out[i, t] += weights[i, j] * v[j, t]
    return out, weights


def scaled_dot_product_attention(Q, K, V, mask=None):
    batch = np.broadcast_shapes(Q.shape[:-2], K.shape[:-2])
    Qb = np.broadcast_to(Q, batch + Q.shape[-2:])
    Kb = np.broadcast_to(K, batch + K.shape[-2:])
    Vb = np.broadcast_to(V, batch + V.shape[-2:])
    shape = batch + (Q.shape[-2], K.shape[-2])
    Mb = None if mask is None else np.broadcast_to(np.asarray(mask) != 0, shape)
    out = np.zeros(batch + (Q.shape[-2], V.shape[-1]))
    weights = np.zeros(shape)
    for index in np.ndindex(*batch):
        out[index], weights[index] = _attend(
            Qb[index], Kb[index], Vb[index], None if Mb is None else Mb[index]
        )
    return out, weights


def create_causal_mask(seq_len):
    mask = np.zeros((seq_len, seq_len))
    for i in range(seq_len):
        for j in range(i + 1):
            mask[i, j] = 1.0
    return mask


class MultiHeadAttention:
    def __init__(self, embed_dim, num_heads):
        if embed_dim % num_heads:
            raise ValueError("embed_dim must be divisible by num_heads")
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.head_dim = embed_dim // num_heads
        self.q_proj = Linear(embed_dim, embed_dim)
        self.k_proj = Linear(embed_dim, embed_dim)
        self.v_proj = Linear(embed_dim, embed_dim)
        self.out_proj = Linear(embed_dim, embed_dim)

    def forward(self, x, mask=None):
        batch, seq, _ = x.shape
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        concat = np.zeros((batch, seq, self.embed_dim))
        for b in range(batch):
            for h in range(self.num_heads):
                cols = slice(h * self.head_dim, (h + 1) * self.head_dim)
                m = None
                if mask is not None:
                    m = np.asarray(mask)
                    m = m if m.ndim == 2 else m[b] if m.ndim == 3 else m[b, min(h, m.shape[1] - 1)]
                qs, ks, vs = q[b][:, cols], k[b][:, cols], v[b][:, cols]
                out, _ = scaled_dot_product_attention(qs, ks, vs, m)
                concat[b][:, cols] = out
        return self.out_proj(concat)

    __call__ = forward
