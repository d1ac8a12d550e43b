"""numpy's GFLOP/s for x @ w.T on each (M, K, N) of argv[1] (JSON) and its copy GB/s.

Run by lib/bench/products.ts (`deno task bench`); prints one JSON object:
{"gflops": [per shape], "gbs": copy bandwidth}.
"""
import json, sys, time
import numpy as np
out = []
for M, K, N in json.loads(sys.argv[1]):
    x = np.random.rand(M, K).astype(np.float32); w = np.random.rand(N, K).astype(np.float32)
    n = max(1, min(200, int(2e9 / (2 * M * K * N)))); x @ w.T; ts = []
    for r in range(5):
        t0 = time.perf_counter()
        for i in range(n): x @ w.T
        ts.append((time.perf_counter() - t0) / n)
    out.append(2 * M * K * N / sorted(ts)[2] / 1e9)
a = np.ones(1 << 24, np.float32); b = np.empty_like(a); np.copyto(b, a); ts = []
for r in range(5):
    t0 = time.perf_counter(); np.copyto(b, a); ts.append(time.perf_counter() - t0)
print(json.dumps({"gflops": out, "gbs": 2 * a.nbytes / sorted(ts)[2] / 1e9}))
