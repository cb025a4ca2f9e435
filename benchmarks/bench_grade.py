"""How fast is grading? Run by hand: `python benchmarks/bench_grade.py`.

Grades three submissions, each in a fresh `python -m autograder grade` process, exactly as a
user would, and reports per submission: wall time, CPU time (grader, sandbox and workers
together), examples checked per second, and peak memory of the whole process tree (sampled
every 5 ms). Targets (issue 3): a correct vectorised submission in <= 2 s wall and <= 1.5 s
CPU, <= 250 MB peak; a correct loop-based one in <= 60 s.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = (ROOT / "solutions" / "attention.py").read_text(encoding="utf-8")

LOOPS = """
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
"""

SUBMISSIONS = {
    "correct, vectorised": REFERENCE,
    "correct, explicit loops": LOOPS,
    "buggy (no 1/sqrt(d_k))": REFERENCE.replace(" / np.sqrt(d_k)", ""),
}


def tree_rss(root: int) -> int:
    """Resident memory of `root` and all its descendants, in bytes."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            parents[int(entry)] = int(fields[1])
            rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    family, changed = {root}, True
    while changed:
        grown = family | {pid for pid, parent in parents.items() if parent in family}
        changed, family = grown != family, grown
    return sum(rss.get(pid, 0) for pid in family)


def measure(source: str, folder: Path) -> dict[str, float]:
    submission = folder / "attention.py"
    submission.write_text(source, encoding="utf-8")
    results = folder / "results.json"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "autograder",
            "grade",
            str(submission),
            "--results",
            str(results),
            "--quiet",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss(process.pid))
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    process.wait()
    wall = time.perf_counter() - began
    done.set()
    sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    document = json.loads(results.read_text(encoding="utf-8"))
    examples = sum(
        int(test["output"].split("Passed on ")[1].split()[0])
        for test in document["tests"]
        if test["output"].startswith("Passed on ")
    )
    return {
        "wall": wall,
        "cpu": cpu,
        "peak_mb": peak / 2**20,
        "score": document["score"],
        "examples": examples,
    }


def main() -> None:
    print(f"{'submission':28} {'score':>6} {'wall s':>7} {'cpu s':>7} {'ex/s':>7} {'peak MB':>8}")
    with tempfile.TemporaryDirectory() as scratch:
        for name, source in SUBMISSIONS.items():
            row = measure(source, Path(scratch))
            rate = row["examples"] / row["wall"] if row["examples"] else 0.0
            print(
                f"{name:28} {row['score']:6g} {row['wall']:7.2f} {row['cpu']:7.2f} "
                f"{rate:7.0f} {row['peak_mb']:8.0f}"
            )
    print(
        "\nCPU counts the grader, the sandbox and its workers. 'ex/s' counts the examples of "
        "passed items only (a failed item stops at its first, shrunk, failure)."
    )


if __name__ == "__main__":
    main()
