"""Time the in-memory search index (peer/core/search.py): N messages of 20 random words, 2-term queries.

.venv/bin/python scripts/measure_search.py [N]
"""

from __future__ import annotations

import random
import sys
import time

from peer.core.search import SearchIndex


def main(n: int) -> None:
    rng = random.Random(1)
    words = [f"w{i}" for i in range(5000)]
    texts = [" ".join(rng.choice(words) for _ in range(20)) for _ in range(n)]
    index = SearchIndex()
    t0 = time.perf_counter()
    for i, text in enumerate(texts):
        index.put(("a" * 32, i), text)
    built = time.perf_counter() - t0
    t0 = time.perf_counter()
    for q in range(100):
        index.query(f"w{q} w{q + 1}")
    per_query = (time.perf_counter() - t0) / 100
    print(f"{n:,} messages: index built in {built * 1000:.0f} ms, {per_query * 1000:.2f} ms per 2-term query")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
