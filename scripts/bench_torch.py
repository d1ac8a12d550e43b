"""State-tuning step (forward + backward to the initial WKV state S0) of a seeded random RWKV-7
in PyTorch, for `deno task bench --vs-torch`.

    python3 scripts/bench_torch.py [--T 64,512] [--shapes 0.1B] [--device cpu|cuda] [--dtype fp32,bf16]

Prints progress to stderr and one JSON line to stdout:
{"torch": true, "rows": [{"shape", "T", "device", "dtype", "tokensPerSecond"}]}, or
{"torch": false, "reason": "..."} when PyTorch is not installed (exit status 0 either way).

The model follows the same RWKV-7 definition as lib/ref/ (time mix with the WKV-7 recurrence
written as a plain loop over T, channel mix, head, cross-entropy); only S0 requires grad.
"""
import argparse
import json
import sys
import time

SHAPES = {  # nLayer, C, (dimW, dimA, dimV, dimG) as lib/model/random.ts OFFICIAL_SHAPES
    "0.1B": (12, 768, (64, 64, 32, 128)),
    "0.4B": (24, 1024, (64, 64, 32, 128)),
    "1.5B": (24, 2048, (96, 96, 64, 256)),
}
V, N = 65536, 64


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--T", default="64,512")
    ap.add_argument("--shapes", default="0.1B")
    ap.add_argument("--device", default=None)
    ap.add_argument("--dtype", default="fp32,bf16")
    a = ap.parse_args()
    try:
        import torch
    except ImportError:
        print(json.dumps({"torch": False, "reason": "PyTorch is not installed (pip install torch)"}))
        return
    dev = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    rows = []
    for shape in a.shapes.split(","):
        for dt in a.dtype.split(","):
            dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dt]
            model = Model(torch, *SHAPES[shape], dev, dtype)
            for T in [int(t) for t in a.T.split(",")]:
                s = model.step_seconds(T)
                rows.append({"shape": shape, "T": T, "device": dev, "dtype": dt, "tokensPerSecond": T / s})
                print(f"torch {shape} {dev} {dt} T={T}: {T / s:.1f} tok/s", file=sys.stderr)
    print(json.dumps({"torch": True, "rows": rows}))


class Model:
    """Seeded random weights of one shape; `step_seconds(T)` times loss.backward() to S0."""

    def __init__(self, torch, L, C, dims, dev, dtype):
        self.t, self.L, self.C, self.H = torch, L, C, C // N
        self.dev, self.dtype = dev, dtype
        g = torch.Generator().manual_seed(1)
        r = lambda *s, sc=0.02: (torch.randn(*s, generator=g) * sc).to(dev, dtype)
        dW, dA, dV, dG = dims
        self.emb, self.head = r(V, C, sc=0.1), r(V, C)
        self.layers = []
        for _ in range(L):
            self.layers.append({
                "x": r(6, C, sc=0.3).abs(), "W": [r(C, C) for _ in range(4)],
                "w1": r(C, dW), "w2": r(dW, C), "w0": r(C, sc=0.5) - 0.5,
                "a1": r(C, dA), "a2": r(dA, C), "a0": r(C),
                "v1": r(C, dV), "v2": r(dV, C), "v0": r(C),
                "g1": r(C, dG), "g2": r(dG, C), "k_k": r(C, sc=0.5) + 1, "k_a": r(C, sc=0.5) + 1,
                "r_k": r(self.H, N), "fx": r(C, sc=0.3).abs(), "fk": r(4 * C, C), "fv": r(C, 4 * C),
            })

    def forward(self, ids, S0):
        t, F = self.t, self.t.nn.functional
        T, C, H = ids.shape[0], self.C, self.H
        x = F.layer_norm(self.emb[ids], (C,))
        v_first = None
        for l, p in enumerate(self.layers):
            u = F.layer_norm(x, (C,))
            dx = F.pad(u, (0, 0, 1, 0))[:-1] - u
            xr, xw, xk, xv, xa, xg = (u + dx * p["x"][i] for i in range(6))
            rr, k, v = xr @ p["W"][0].T, xk @ p["W"][1].T, xv @ p["W"][2].T
            w = -F.softplus(-(p["w0"] + t.tanh(xw @ p["w1"]) @ p["w2"])) - 0.5
            a = t.sigmoid(p["a0"] + (xa @ p["a1"]) @ p["a2"])
            g = t.sigmoid(xg @ p["g1"]) @ p["g2"]
            if l == 0:
                v_first = v
            else:
                v = v + (v_first - v) * t.sigmoid(p["v0"] + (xv @ p["v1"]) @ p["v2"])
            kk = F.normalize((k * p["k_k"]).view(T, H, N), dim=-1)
            k = k * (1 + (a - 1) * p["k_a"])
            S = S0[l].to(self.dtype)
            ys = []
            for i in range(T):  # WKV-7: S = S·diag(exp(-exp(w))) + S·(-kk)ᵀ(kk·a) + v kᵀ
                d = t.exp(-t.exp(w[i].view(H, 1, N).float())).to(self.dtype)
                ki, vi, ri = k[i].view(H, 1, N), v[i].view(H, N, 1), rr[i].view(H, N, 1)
                kki = kk[i].view(H, N, 1)
                S = S * d + (S @ -kki) @ (kki * a[i].view(H, N, 1)).transpose(1, 2) + vi @ ki
                ys.append((S @ ri).view(C))
            y = F.group_norm(t.stack(ys), H, eps=64e-5)
            bonus = ((rr.view(T, H, N) * k.view(T, H, N) * p["r_k"]).sum(-1, keepdim=True)
                     * v.view(T, H, N)).view(T, C)
            x = x + ((y + bonus) * g) @ p["W"][3].T
            u = F.layer_norm(x, (C,))
            u = u + (F.pad(u, (0, 0, 1, 0))[:-1] - u) * p["fx"]
            x = x + (t.relu(u @ p["fk"].T) ** 2) @ p["fv"].T
        return F.layer_norm(x, (C,)) @ self.head.T

    def step_seconds(self, T, reps=3):
        t = self.t
        ids = t.arange(T + 1, device=self.dev) * 7919 % V
        S0 = t.zeros(self.L, self.H, N, N, device=self.dev, requires_grad=True)
        def step():
            S0.grad = None
            logits = self.forward(ids[:-1], S0)
            t.nn.functional.cross_entropy(logits.float(), ids[1:]).backward()
            if self.dev == "cuda":
                t.cuda.synchronize()
        step()
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            step()
            ts.append(time.perf_counter() - t0)
        return sorted(ts)[reps // 2]


if __name__ == "__main__":
    main()
