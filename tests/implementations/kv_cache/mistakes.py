"""Realistic KV-cache mistakes, each a small text edit of one correct implementation.

`base` names the file the edits apply to: "reference" is solutions/kv_cache.py, any other
name a `correct_<name>.py` of this folder. Every `old` string occurs exactly once in the text
it is applied to (edits apply in order). `targets` names the proposed rubric items (the
notebook's grade cells, without the `test_` prefix) the mistake must lose, and `hint` is the
feedback a student who made it should read.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mistake:
    id: str
    base: str
    edits: tuple[tuple[str, str], ...]
    targets: tuple[str, ...]
    hint: str


R = "reference"

MISTAKES: tuple[Mistake, ...] = (
    Mistake(
        "append-along-heads-axis",
        "correct_chunk_list",
        (
            (
                "np.concatenate(self.k_chunks, axis=2), np.concatenate(self.v_chunks, axis=2)",
                "np.concatenate(self.k_chunks, axis=1), np.concatenate(self.v_chunks, axis=1)",
            ),
        ),
        ("cache_append_get",),
        "get() returned the positions stacked along the wrong axis: keys and values are "
        "(batch_size, num_heads, seq_len, head_dim), so append along axis 2, the sequence axis.",
    ),
    Mistake(
        "get-without-moving-the-sequence-axis-back",
        "correct_seq_first",
        (
            (
                "keys = np.moveaxis(self.k_store[: self.length], 0, 2)",
                "keys = self.k_store[: self.length]",
            ),
            (
                "values = np.moveaxis(self.v_store[: self.length], 0, 2)",
                "values = self.v_store[: self.length]",
            ),
        ),
        ("cache_append_get",),
        "get() must return (batch_size, num_heads, seq_len, head_dim) whatever layout you store "
        "internally: move the sequence axis back to axis 2.",
    ),
    Mistake(
        "get-returns-the-whole-buffer",
        R,
        (
            (
                "return self._keys[:, :, : self._length], self._values[:, :, : self._length]",
                "return self._keys, self._values",
            ),
        ),
        ("cache_append_get",),
        "get() returned max_seq_len positions: return only the seq_len positions stored so "
        "far, buffer[:, :, :seq_len].",
    ),
    Mistake(
        "seq-len-counts-updates",
        "correct_chunk_list",
        (("self.seq_len += k.shape[2]", "self.seq_len += 1"),),
        ("cache_append_get",),
        "seq_len counts positions, not calls: an update with t positions adds t to it.",
    ),
    Mistake(
        "capacity-check-off-by-one",
        R,
        (("if stop > self.max_seq_len:", "if stop >= self.max_seq_len:"),),
        ("cache_errors",),
        "A cache may be filled to exactly max_seq_len positions: refuse an update only when "
        "seq_len + t > max_seq_len.",
    ),
    Mistake(
        "capacity-overflows-by-one",
        "correct_chunk_list",
        (
            (
                "if self.seq_len + k.shape[2] > self.max_seq_len:",
                "if self.seq_len + k.shape[2] > self.max_seq_len + 1:",
            ),
        ),
        ("cache_errors",),
        "update accepted more than max_seq_len positions: raise ValueError when "
        "seq_len + t > max_seq_len.",
    ),
    Mistake(
        "stores-k-before-checking-v",
        "correct_chunk_list",
        (
            (
                'self._check(k, "k")\n        self._check(v, "v")',
                'self._check(k, "k")\n        self.k_chunks.append(k)\n        self._check(v, "v")',
            ),
            (
                "self.k_chunks.append(k)\n        self.v_chunks.append(v)",
                "self.v_chunks.append(v)",
            ),
        ),
        ("cache_errors",),
        "After a ValueError the cache must be exactly as before: check k, v and the capacity "
        "first, and only then store anything.",
    ),
    Mistake(
        "head-dim-not-checked",
        "correct_chunk_list",
        (("        if a.shape[3] != self.head_dim:\n", "        if False:\n"),),
        ("cache_errors",),
        "update accepted keys or values whose head_dim differs from the cache's: raise "
        "ValueError when batch size, number of heads or head_dim do not match.",
    ),
    Mistake(
        "k-and-v-lengths-not-compared",
        "correct_chunk_list",
        (("        if k.shape[2] != v.shape[2]:\n", "        if False:\n"),),
        ("cache_errors",),
        "update accepted k and v of different shapes: they must agree exactly (the same number "
        "of new positions), or raise ValueError.",
    ),
    Mistake(
        "class-level-storage",
        "correct_chunk_list",
        (
            (
                "class KVCache:\n",
                "class KVCache:\n    k_chunks = []\n    v_chunks = []\n\n",
            ),
            (
                "self.max_seq_len = max_seq_len\n"
                "        self.k_chunks = []\n"
                "        self.v_chunks = []\n",
                "self.max_seq_len = max_seq_len\n",
            ),
        ),
        ("cache_reset_isolation",),
        "Two caches shared their contents: create the storage on self in __init__; a list "
        "written in the class body is one list shared by every instance.",
    ),
    Mistake(
        "reset-keeps-the-contents",
        "correct_chunk_list",
        (
            (
                "def reset(self):\n        self.k_chunks = []\n        self.v_chunks = []\n",
                "def reset(self):\n",
            ),
        ),
        ("cache_reset_isolation",),
        "After reset() the cache still returned old keys and values: empty the storage, not "
        "only the counter.",
    ),
    Mistake(
        "reset-keeps-the-length",
        "correct_chunk_list",
        (
            (
                "        self.v_chunks = []\n        self.seq_len = 0\n\n\nclass",
                "        self.v_chunks = []\n\n\nclass",
            ),
        ),
        ("cache_reset_isolation",),
        "After reset() seq_len must be 0 and all max_seq_len positions free again.",
    ),
    Mistake(
        "attends-only-to-the-new-keys",
        R,
        (
            ("            K, V = cache.get()\n", "            cache.get()\n"),
            ("mask = create_causal_mask(past + seq)[past:]", "mask = create_causal_mask(seq)"),
        ),
        ("decode_steps", "decode_chunked"),
        "The new queries must attend to every cached key and value, not only to the new ones: "
        "after update, read all of them back with get().",
    ),
    Mistake(
        "no-causal-mask-in-a-chunk",
        R,
        (("mask = create_causal_mask(past + seq)[past:]", "mask = None"),),
        ("decode_chunked",),
        "Inside a chunk of several new tokens (the prompt, say), a new token must not see the "
        "tokens after it: the cached path needs the causal mask too.",
    ),
    Mistake(
        "causal-mask-without-offset",
        R,
        (("create_causal_mask(past + seq)[past:]", "create_causal_mask(past + seq)[:seq]"),),
        ("decode_steps", "decode_chunked"),
        "The new queries sit at absolute positions past .. past + t_new - 1: take the last "
        "t_new rows of the causal mask over all positions, not the first.",
    ),
    Mistake(
        "chunk-mask-without-offset",
        "correct_preallocated",
        (
            (
                "mask = np.tri(t_new, past + t_new, k=past)",
                "mask = None if t_new == 1 else np.tri(t_new, past + t_new)",
            ),
        ),
        ("decode_chunked",),
        "A chunk that arrives after cached positions: its new query i is at absolute position "
        "past + i and sees keys 0 .. past + i, so shift the causal mask by the cached length.",
    ),
    Mistake(
        "query-does-not-see-itself",
        "correct_preallocated",
        (("np.tri(t_new, past + t_new, k=past)", "np.tri(t_new, past + t_new, k=past - 1)"),),
        ("decode_steps", "decode_chunked"),
        "The new query at position p attends to keys 0 .. p, its own key included.",
    ),
    Mistake(
        "returns-the-whole-sequence",
        R,
        (
            (
                "            K, V = cache.get()\n",
                "            K, V = cache.get()\n"
                "            seen = getattr(self, 'seen', None)\n"
                "            self.seen = x if past == 0 else np.concatenate([seen, x], axis=1)\n"
                "            Q = self._split_heads(self.q_proj(self.seen))\n"
                "            seq, past = self.seen.shape[1], 0\n",
            ),
        ),
        ("decode_steps", "decode_chunked"),
        "With a cache, forward returns the outputs of the new tokens only, "
        "(batch, t_new, embed_dim), not of the whole sequence.",
    ),
    Mistake(
        "caches-x-instead-of-its-projections",
        R,
        (
            (
                "            cache.update(K, V)\n            K, V = cache.get()\n",
                "            cache.update(self._split_heads(x), self._split_heads(x))\n"
                "            seen = np.swapaxes(cache.get()[0], 1, 2).reshape(batch, -1, "
                "self.embed_dim)\n"
                "            K = self._split_heads(self.k_proj(seen))\n"
                "            V = self._split_heads(self.v_proj(seen))\n",
            ),
        ),
        ("decode_new_tokens_only",),
        "The cache must hold keys and values, k_proj(x) and v_proj(x) split into heads, not x: "
        "a cached step projects only the new tokens and never recomputes the old ones.",
    ),
    Mistake(
        "update-rounds-its-inputs-in-place",
        "correct_float32",
        (
            (
                "        k = np.asarray(k, dtype=np.float32)\n",
                "        k[...] = k.astype(np.float32)\n",
            ),
        ),
        ("decode_inputs_unchanged",),
        "update changed the k it was given: convert into a new array (k.astype(np.float32)) "
        "or copy into your buffer, never write into the caller's array.",
    ),
    Mistake(
        "memory-without-the-factor-2",
        R,
        (("return 2 * num_layers * batch_size", "return num_layers * batch_size"),),
        ("kv_cache_bytes",),
        "The cache holds a key and a value for every position: multiply by 2.",
    ),
    Mistake(
        "memory-without-the-layers",
        R,
        (("return 2 * num_layers * batch_size", "return 2 * batch_size"),),
        ("kv_cache_bytes",),
        "Every layer has its own cache: multiply by num_layers.",
    ),
    Mistake(
        "memory-in-float32-always",
        R,
        (("head_dim * bytes_per_value", "head_dim * 4"),),
        ("kv_cache_bytes",),
        "Use bytes_per_value (2 for fp16, 4 for float32) rather than a fixed size.",
    ),
    Mistake(
        "squares-counted-with-the-cache-too",
        R,
        (("return sum(t for t in", "return sum(t * t for t in"),),
        ("decoding_score_count",),
        "With a cache only the newest query is new: step t computes t scores, not t * t.",
    ),
    Mistake(
        "score-count-off-by-one",
        "correct_preallocated",
        (("return n * (n + 1) // 2", "return n * (n - 1) // 2"),),
        ("decoding_score_count",),
        "Step t of 1 .. seq_len has t positions (the first step already has one score): sum "
        "t for t = 1 .. seq_len.",
    ),
)
