"""What can change a KV-cache grade beyond the core's settings (`autograder/settings.py`)."""

from __future__ import annotations

from autograder.settings import Tolerance

__all__ = ["KV_CACHE_EXAMPLES", "KV_CACHE_TOLERANCE"]

#: This exercise compares a cache's contents and cached decoding with the reference.
#: Both are exact in float64 up to rounding (~1e-15); a cache that stores float32, as real ones
#: store fp16 or bf16, rounds each key and value by ~6e-8 relative, which reaches the outputs as
#: ~1e-6 at most on the rubric's inputs (measured on tests/implementations/kv_cache). Every
#: catalogued mistake moves some output by more than 1e-2.
KV_CACHE_TOLERANCE = Tolerance(rtol=1e-5, atol=1e-5)

#: Random examples for each of the KV-cache exercise's stateful items (the cache and cached
#: decoding; its two formulas keep the default). One such example builds caches and a model
#: and makes 5 to 13 calls into the sandbox where an attention example makes 1 to 3, and the
#: student's code, not Hypothesis, is most of its cost: with the cases the Gradescope zip ships
#: (no drawing at grade time), 25 of them cost what attention's 50 do (measured: 1.21-1.36 s
#: CPU against 1.29-1.39 s; 30 took 1.45 s). Every catalogued mistake still fails its item.
#: Fixed cases run before them where a space is small enough to list (every kind of refused
#: update).
KV_CACHE_EXAMPLES = 25
