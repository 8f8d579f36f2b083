"""PIN hashing cost: median and p99 of Argon2id verify with the production parameters.

    .venv/bin/python bench/pins.py [--n 200]

Prints the verify time beside a plain HMAC-SHA256 of the same input (the baseline,
measured in the same run) and the ratio. The budget is 100 ms per verify.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.kernel.pins import PinHasher  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200)
    n = parser.parse_args().n
    hasher = PinHasher(b"bench-pepper-0123456789")
    digest = hasher.hash("4826")
    argon, plain = [], []
    for i in range(n):
        pin = "4826" if i % 2 else "7391"
        t = time.perf_counter()
        hasher.verify(digest, pin)
        argon.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        hmac.new(b"bench-pepper-0123456789", pin.encode(), hashlib.sha256).digest()
        plain.append((time.perf_counter() - t) * 1000)
    q = statistics.quantiles(argon, n=100)
    print(
        f"argon2id verify: median {statistics.median(argon):.1f} ms, p99 {q[98]:.1f} ms (budget 100 ms)"
    )
    print(f"hmac-sha256 only: median {statistics.median(plain) * 1000:.1f} us")
    print(f"ratio argon2id/hmac: {statistics.median(argon) / statistics.median(plain):,.0f}x")


if __name__ == "__main__":
    main()
