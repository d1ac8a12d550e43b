"""The state-tuning step of RWKV-7 in PyTorch, for `deno task bench --vs-torch`.

    python3 scripts/bench_torch.py [--shapes tiny,0.1B] [--T 64,512] [--dtype fp32,bf16]
        [--device cpu|cuda] [--fixture PATH] [--config JSON] [--reps 3] [--check]

One step = forward over T tokens from the initial wkv state S0 (token-shift states zero), mean
next-token cross-entropy over the T positions, backward to S0 only (no weight gradients), global
gradient-norm clipping to 1 and one Adam update of S0: what `deno task bench` times as the
"state-tuning step" and `lib/train/tune.ts` runs per step. Tokens are (i·7919 + 13) mod V, the
targets the same sequence shifted by one, as in scripts/bench.ts.

The maths is lib/ref/'s (docs/MATH.md §2–3): LayerNorm eps 1e-5 with affine weights, the six token-shift
mixes, decay d = exp(-e^-1/2 σ(z)), value residual from layer 1, kk from k before its k_a update,
the WKV-7 recurrence S = S·diag(d) + (S·α)βᵀ + v kᵀ with y = S r written as a loop over T,
GroupNorm eps N·1e-5 with affine ln_x, the r_k bonus, gate, channel mix relu², ln_out and head.
The state path (S, d, and the WKV products) stays fp32 in the bf16 runs; the rest runs in the
chosen dtype.

Weights: `tiny` is the fixture checkpoint (`--fixture`, safetensors); 0.1B / 0.4B / 1.5B are
the seeded random models of lib/model/random.ts `randomWeights(OFFICIAL_SHAPES[s], 1)`, the
same numbers bit for bit (its mulberry32 stream is reproduced here with numpy); `--config` takes
a JSON RwkvConfig (seed 1) for tests.

Prints progress to stderr and one JSON line to stdout (exit status 0 either way):
{"torch": true, "version", "device", "threads", "rows": [{"shape", "T", "device", "dtype",
"tokensPerSecond", "seconds"}]}, or {"torch": false, "reason": "..."} without PyTorch.
`--check` instead prints {"torch": true, "check": [{"shape", "T", "loss", "dS0"}]} (fp32, no
Adam; dS0 flattened (L, H, N, N)) plus "logitsMaxAbsDiff" for the fixture against its
expected-logits file, for tests/bench_test.ts to compare with lib/ref.
"""
import argparse
import json
import math
import struct
import sys
import time
from pathlib import Path

FIXTURE = Path(__file__).resolve().parent.parent.parent / "shared/fixtures/models/tiny-rwkv7-834K.safetensors"
SHAPES = {  # lib/model/random.ts OFFICIAL_SHAPES: nLayer, nEmbd, (dimW, dimA, dimV, dimG)
    "0.1B": (12, 768, (64, 64, 32, 128)),
    "0.4B": (24, 1024, (64, 64, 32, 128)),
    "1.5B": (24, 2048, (96, 96, 64, 256)),
}


def official(shape):
    L, C, (dw, da, dv, dg) = SHAPES[shape]
    return {"nLayer": L, "nEmbd": C, "headSize": 64, "nHead": C // 64, "vocabSize": 65536,
            "dimW": dw, "dimA": da, "dimV": dv, "dimG": dg, "dimFfn": 4 * C}


class Filler:
    """lib/model/random.ts's seeded mulberry32 stream, vectorised (identical float32 values)."""

    def __init__(self, np, seed):
        self.np = np
        m = 0xFFFFFFFF
        h = ((((seed & m) ^ 0x9E3779B9) * 0x85EBCA6B) & m)
        h ^= h >> 13
        self.s = (h * 0xC2B2AE35) & m

    def uniform(self, n, lo, hi):
        np = self.np
        out = np.empty(n, np.float32)
        scale = (hi - lo) / 4294967296
        for a in range(0, n, 1 << 22):
            i = np.arange(a + 1, min(n, a + (1 << 22)) + 1, dtype=np.uint64)
            s = ((self.s + i * 0x6D2B79F5) & 0xFFFFFFFF).astype(np.uint32)
            t = (s ^ (s >> np.uint32(15))) * (s | np.uint32(1))
            t ^= t + (t ^ (t >> np.uint32(7))) * (t | np.uint32(61))
            u = (t ^ (t >> np.uint32(14))).astype(np.float64)
            out[a:a + len(i)] = lo + u * scale
        self.s = (self.s + n * 0x6D2B79F5) & 0xFFFFFFFF
        return out

    def around(self, n, mean, std):
        h = std * math.sqrt(3)
        return self.uniform(n, mean - h, mean + h)


def random_weights(np, cfg, seed):
    """randomWeights(cfg, seed): flat float32 arrays named as lib/model/types.ts, same order."""
    g, C, V, F = Filler(np, seed), cfg["nEmbd"], cfg["vocabSize"], cfg["dimFfn"]
    w = {"emb": g.uniform(V * C, -0.1, 0.1), "ln0_w": g.uniform(C, 0.8, 1.2),
         "ln0_b": g.uniform(C, -0.05, 0.05), "blocks": []}
    for l in range(cfg["nLayer"]):
        sq = lambda gain: g.around(C * C, 0, gain / math.sqrt(C))
        b = {}
        for k in ["ln1_w", "ln1_b", "ln2_w", "ln2_b"]:
            b[k] = g.uniform(C, 0.8, 1.2) if k.endswith("w") else g.uniform(C, -0.05, 0.05)
        for m in "rwkvag":
            b["x_" + m] = g.uniform(C, 0, 1)
        b["w0"] = g.uniform(C, -6, -0.5)
        for p, d, gain in [("w", "dimW", 0.1), ("a", "dimA", 0.1), ("g", "dimG", 1)]:
            if p == "a":
                b["a0"] = g.uniform(C, -0.1, 0.1)
            b[p + "1"] = g.around(C * cfg[d], 0, 1 / math.sqrt(C))
            b[p + "2"] = g.around(cfg[d] * C, 0, gain / math.sqrt(cfg[d]))
        b["k_k"], b["k_a"] = g.uniform(C, 0.7, 1), g.uniform(C, 0.9, 1.1)
        b["r_k"] = g.uniform(C, -0.1, 0.1)
        b["Wr"], b["Wk"], b["Wv"], b["Wo"] = sq(1), sq(1), sq(1), sq(0.5)
        b["lnx_w"], b["lnx_b"] = g.uniform(C, 0.8, 1.2), g.uniform(C, -0.05, 0.05)
        b["ffn_x_k"] = g.uniform(C, 0, 1)
        b["ffn_key"] = g.around(F * C, 0, 1 / math.sqrt(C))
        b["ffn_value"] = g.around(C * F, 0, 0.5 / math.sqrt(F))
        if l > 0:
            b["v0"] = g.uniform(C, 0.5, 1.5)
            b["v1"] = g.around(C * cfg["dimV"], 0, 1 / math.sqrt(C))
            b["v2"] = g.around(cfg["dimV"] * C, 0, 0.1 / math.sqrt(cfg["dimV"]))
        w["blocks"].append(b)
    w["ln_out_w"], w["ln_out_b"] = g.uniform(C, 0.8, 1.2), g.uniform(C, -0.05, 0.05)
    w["head"] = g.around(V * C, 0, 1 / math.sqrt(C))
    return w


KEYS = {"ln1_w": "ln1.weight", "ln1_b": "ln1.bias", "ln2_w": "ln2.weight", "ln2_b": "ln2.bias",
        "Wr": "att.receptance.weight", "Wk": "att.key.weight", "Wv": "att.value.weight",
        "Wo": "att.output.weight", "lnx_w": "att.ln_x.weight", "lnx_b": "att.ln_x.bias",
        "ffn_x_k": "ffn.x_k", "ffn_key": "ffn.key.weight", "ffn_value": "ffn.value.weight"}


def load_safetensors(np, path):
    """A safetensors checkpoint in the official key layout: (config, flat float32 weights)."""
    raw = Path(path).read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    head, base, t = json.loads(raw[8:8 + n]), 8 + n, {}
    for k, v in head.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        buf = raw[base + a:base + b]
        if v["dtype"] == "F32":
            x = np.frombuffer(buf, np.float32)
        elif v["dtype"] == "F16":
            x = np.frombuffer(buf, np.float16).astype(np.float32)
        elif v["dtype"] == "BF16":
            x = (np.frombuffer(buf, np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            raise ValueError(f"{path}: tensor {k} has dtype {v['dtype']}; expected F32, F16 or BF16")
        t[k] = (x.reshape(-1), v["shape"])
    L = 1 + max(int(k.split(".")[1]) for k in t if k.startswith("blocks."))
    V, C = t["emb.weight"][1]
    N = t["blocks.0.att.r_k"][1][-1]
    dim = lambda k: t[f"blocks.{L - 1}.att.{k}"][1][1]
    cfg = {"nLayer": L, "nEmbd": C, "headSize": N, "nHead": C // N, "vocabSize": V, "dimW": dim("w1"),
           "dimA": dim("a1"), "dimV": dim("v1") if L > 1 else 0, "dimG": dim("g1"),
           "dimFfn": t["blocks.0.ffn.key.weight"][1][0]}
    w = {"emb": t["emb.weight"][0], "ln0_w": t["blocks.0.ln0.weight"][0],
         "ln0_b": t["blocks.0.ln0.bias"][0], "ln_out_w": t["ln_out.weight"][0],
         "ln_out_b": t["ln_out.bias"][0], "head": t["head.weight"][0], "blocks": []}
    for l in range(L):
        get = lambda k: t[f"blocks.{l}.{k}"][0]
        b = {name: get(key) for name, key in KEYS.items()}
        for k in ["x_r", "x_w", "x_k", "x_v", "x_a", "x_g", "w0", "w1", "w2", "a0", "a1", "a2",
                  "g1", "g2", "k_k", "k_a", "r_k"] + (["v0", "v1", "v2"] if l > 0 else []):
            b[k] = get("att." + k)
        w["blocks"].append(b)
    return cfg, w


def wkv_sequential(t, S, logd, alpha, beta, k, v, r):
    """The recurrence token by token (eager PyTorch): y (T, H, N) from S (H, N, N) [i][j]."""
    d, ys = t.exp(logd).unsqueeze(2), []
    for i in range(logd.shape[0]):
        sa = S @ alpha[i].unsqueeze(-1)
        S = S * d[i] + sa @ beta[i].unsqueeze(1) + v[i].unsqueeze(-1) @ k[i].unsqueeze(1)
        ys.append((S @ r[i].unsqueeze(-1)).squeeze(-1))
    return t.stack(ys)


CHUNK = 16  # tokens per chunk, as lib/ref/wkv_chunked.ts (decay factors stay below 1.6e4)


def wkv_chunked(t, S, logd, alpha, beta, k, v, r):
    """The chunked form of lib/ref/wkv_chunked.ts (docs/MATH.md §3, WY form) in plain PyTorch ops:
    per chunk, decays relative to its start, the intra-chunk matrices P, Q, Pr, Qr, a unit
    triangular solve for W and U, then SA, Y and the chunk-end state. Autograd differentiates
    it; no custom kernel. Same inputs and output as wkv_sequential."""
    ys = []
    for c0 in range(0, logd.shape[0], CHUNK):
        sl = slice(c0, c0 + CHUNK)
        ld, a_, b_, k_, v_, r_ = (q[sl].transpose(0, 1) for q in (logd, alpha, beta, k, v, r))
        G = ld.cumsum(1)  # log γ_t, (H, L, N)
        ap, bh = a_ * t.exp(G - ld), b_ * t.exp(-G)
        kh, rt = k_ * t.exp(-G), r_ * t.exp(G)
        L = ld.shape[1]
        lower = t.ones(L, L, device=ld.device, dtype=t.bool).tril(-1)  # s < t, transposed
        low_eq = t.ones(L, L, device=ld.device, dtype=t.bool).tril()  # s ≤ t, transposed
        Pt = (ap @ bh.transpose(1, 2)) * lower  # Pᵀ[t, s] = b̂_s·a'_t
        Qt = (ap @ kh.transpose(1, 2)) * lower
        Prt = (rt @ bh.transpose(1, 2)) * low_eq
        Qrt = (rt @ kh.transpose(1, 2)) * low_eq
        Imp = t.eye(L, device=ld.device) - Pt
        W = t.linalg.solve_triangular(Imp, ap, upper=False, unitriangular=True)
        U = t.linalg.solve_triangular(Imp, Qt @ v_, upper=False, unitriangular=True)
        SA = W @ S.transpose(1, 2) + U  # sa_t = S_{t-1} α_t
        ys.append(rt @ S.transpose(1, 2) + Prt @ SA + Qrt @ v_)
        S = (S + SA.transpose(1, 2) @ bh + v_.transpose(1, 2) @ kh) * t.exp(G[:, -1]).unsqueeze(1)
    return t.cat(ys, 1).transpose(0, 1)


class Model:
    """The RWKV-7 of lib/ref on `dev` in `dtype` (state path fp32); `step_seconds(T)` times it.
    `form`: the WKV recurrence, "sequential" (eager, token by token) or "chunked" (pure PyTorch
    chunked form)."""

    def __init__(self, torch, cfg, w, dev, dtype, form="sequential"):
        self.t, self.cfg, self.dev, self.dtype, self.form = torch, cfg, dev, dtype, form
        C, F = cfg["nEmbd"], cfg["dimFfn"]
        shapes = {"Wr": (C, C), "Wk": (C, C), "Wv": (C, C), "Wo": (C, C), "ffn_key": (F, C),
                  "ffn_value": (C, F)}
        for p, d in [("w", "dimW"), ("a", "dimA"), ("v", "dimV"), ("g", "dimG")]:
            shapes[p + "1"], shapes[p + "2"] = (C, cfg[d]), (cfg[d], C)
        ten = lambda a, shape=(-1,): torch.from_numpy(a.copy()).reshape(shape).to(dev, dtype)
        self.emb = ten(w["emb"], (cfg["vocabSize"], C))
        self.head = ten(w["head"], (cfg["vocabSize"], C))
        self.ln0 = (ten(w["ln0_w"]), ten(w["ln0_b"]))
        self.ln_out = (ten(w["ln_out_w"]), ten(w["ln_out_b"]))
        self.layers = [{k: ten(v, shapes.get(k, (-1,))) for k, v in b.items()} for b in w["blocks"]]

    def forward(self, ids, S0):
        """Logits (T, V) from the wkv states S0 (L, H, N, N) fp32, token-shift states zero."""
        t, F, cfg = self.t, self.t.nn.functional, self.cfg
        T, C, H, N = ids.shape[0], cfg["nEmbd"], cfg["nHead"], cfg["headSize"]
        ln = lambda x, wb: F.layer_norm(x, (C,), wb[0], wb[1], 1e-5)
        shift = lambda u: F.pad(u, (0, 0, 1, 0))[:-1]  # u of the previous token, 0 at t = 0
        x = ln(self.emb[ids], self.ln0)
        v_first = None
        for l, p in enumerate(self.layers):
            u = ln(x, (p["ln1_w"], p["ln1_b"]))
            du = shift(u) - u
            xr, xw, xk, xv, xa, xg = (u + du * p["x_" + m] for m in "rwkvag")
            r, k, v = xr @ p["Wr"].T, xk @ p["Wk"].T, xv @ p["Wv"].T
            z = p["w0"] + t.tanh(xw @ p["w1"]) @ p["w2"]
            a = t.sigmoid(p["a0"] + (xa @ p["a1"]) @ p["a2"])
            g = t.sigmoid(xg @ p["g1"]) @ p["g2"]
            if l == 0:
                v_first = v
            else:
                v = v + (v_first - v) * t.sigmoid(p["v0"] + (xv @ p["v1"]) @ p["v2"])
            kk = F.normalize((k * p["k_k"]).view(T, H, N).float(), dim=-1, eps=1e-12)
            k = k * (1 + (a - 1) * p["k_a"])
            # WKV-7 (docs/MATH.md §3), fp32: S = S·diag(d) + (S·α) βᵀ + v kᵀ, y = S r; α = -kk, β = kk⊙a
            logd = (-math.exp(-0.5) * t.sigmoid(z.float())).view(T, H, N)
            kf, vf, rf = (q.float().view(T, H, N) for q in (k, v, r))
            beta = kk * a.float().view(T, H, N)
            wkv = wkv_chunked if self.form == "chunked" else wkv_sequential
            y = F.group_norm(wkv(t, S0[l], logd, -kk, beta, kf, vf, rf).reshape(T, C), H,
                             p["lnx_w"].float(), p["lnx_b"].float(), N * 1e-5)
            bonus = (rf * kf * p["r_k"].float().view(H, N)).sum(-1, keepdim=True) * vf
            o = (y + bonus.view(T, C)).to(self.dtype)
            x = x + (o * g) @ p["Wo"].T
            u = ln(x, (p["ln2_w"], p["ln2_b"]))
            u = u + (shift(u) - u) * p["ffn_x_k"]
            x = x + t.relu(u @ p["ffn_key"].T).square() @ p["ffn_value"].T
        return ln(x, self.ln_out) @ self.head.T

    def ids(self, T):
        return (self.t.arange(T + 1, device=self.dev) * 7919 + 13) % self.cfg["vocabSize"]

    def state(self):
        c = self.cfg
        shape = (c["nLayer"], c["nHead"], c["headSize"], c["headSize"])
        return self.t.zeros(shape, device=self.dev, requires_grad=True)

    def loss_and_grad(self, T):
        """(loss, dL/dS0) of one sequence from S0 = 0 (fp32 for `--check`)."""
        ids, S0 = self.ids(T), self.state()
        loss = self.t.nn.functional.cross_entropy(self.forward(ids[:-1], S0).float(), ids[1:])
        loss.backward()
        return loss.item(), S0.grad

    def step_seconds(self, T, reps):
        """Median seconds of one state-tuning step (forward, backward to S0, clip, Adam)."""
        t = self.t
        ids, S0 = self.ids(T), self.state()
        opt = t.optim.Adam([S0], lr=1e-2, betas=(0.9, 0.99), eps=1e-8)

        def step():
            opt.zero_grad(set_to_none=True)
            logits = self.forward(ids[:-1], S0)
            t.nn.functional.cross_entropy(logits.float(), ids[1:]).backward()
            t.nn.utils.clip_grad_norm_([S0], 1.0)
            opt.step()
            if self.dev == "cuda":
                t.cuda.synchronize()

        step()
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            step()
            ts.append(time.perf_counter() - t0)
        return sorted(ts)[reps // 2]


def weights_for(np, shape, a):
    if shape == "tiny":
        if not Path(a.fixture).exists():
            raise FileNotFoundError(f"fixture {a.fixture} not found; pass --fixture PATH")
        return load_safetensors(np, a.fixture)
    if shape == "custom":
        return json.loads(a.config), None
    if shape not in SHAPES:
        raise ValueError(f'unknown shape "{shape}"; expected tiny, {", ".join(SHAPES)} (or --config)')
    return official(shape), None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--T", default="64,512", help="tokens per step, comma-separated")
    ap.add_argument("--shapes", default="0.1B", help="tiny, 0.1B, 0.4B, 1.5B (comma-separated)")
    ap.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    ap.add_argument("--dtype", default="fp32,bf16", help="fp32 and/or bf16")
    ap.add_argument("--form", default="sequential",
                    help="WKV form(s): sequential (eager, token by token) and/or chunked (pure "
                         "PyTorch chunked form), comma-separated")
    ap.add_argument("--fixture", default=str(FIXTURE), help="the tiny model (safetensors)")
    ap.add_argument("--config", default=None, help='a JSON RwkvConfig (shape "custom", seed 1)')
    ap.add_argument("--reps", type=int, default=3, help="timed repetitions (median)")
    ap.add_argument("--check", action="store_true", help="print loss and dS0 instead of timing")
    ap.add_argument("--threads", type=int, default=None,
                    help="CPU threads (default: torch's own; on this 2-core host 1 thread ran "
                         "the 0.1B step 2x faster than 2)")
    a = ap.parse_args()
    try:
        import numpy as np
        import torch
    except ImportError as e:
        print(json.dumps({"torch": False, "reason": f"PyTorch is not available to {sys.executable} "
                          f"({e}); install it (pip install torch, or apt-get install python3-torch) "
                          "or pass bench --python PATH"}))
        return
    dev = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if a.threads:
        torch.set_num_threads(a.threads)
    shapes = ["custom"] if a.config else [s.strip() for s in a.shapes.split(",")]
    Ts = [int(x) for x in a.T.split(",")]
    rows, checks = [], []
    for shape in shapes:
        cfg, w = weights_for(np, shape, a)
        if w is None:
            w = random_weights(np, cfg, 1)
        if a.check:
            model = Model(torch, cfg, w, dev, torch.float32)
            chunked = Model(torch, cfg, w, dev, torch.float32, "chunked")
            for T in Ts:
                loss, g = model.loss_and_grad(T)
                loss_c, g_c = chunked.loss_and_grad(T)
                rel = ((g_c - g).norm() / g.norm().clamp_min(1e-30)).item()
                checks.append({"shape": shape, "T": T, "loss": loss, "dS0": g.flatten().tolist(),
                               "chunkedLoss": loss_c, "chunkedGradErrRatio": rel})
            exp = Path(a.fixture).with_name(Path(a.fixture).stem + ".expected-logits.json")
            if shape == "tiny" and exp.exists():
                e = json.loads(exp.read_text())
                with torch.no_grad():
                    out = model.forward(torch.tensor(e["tokens"], device=dev), model.state())[-1]
                diff = (out.double().cpu() - torch.tensor(e["logits"], dtype=torch.float64)).abs()
                checks[-1]["logitsMaxAbsDiff"] = diff.max().item()
            continue
        for form, dt in [(f.strip(), d.strip()) for f in a.form.split(",") for d in a.dtype.split(",")]:
            if dt not in ("fp32", "bf16"):
                raise ValueError(f'unknown dtype "{dt}"; expected fp32 or bf16')
            if form not in ("sequential", "chunked"):
                raise ValueError(f'unknown form "{form}"; expected sequential or chunked')
            dtype = torch.float32 if dt == "fp32" else torch.bfloat16
            model = Model(torch, cfg, w, dev, dtype, form)
            for T in Ts:
                s = model.step_seconds(T, a.reps)
                rows.append({"shape": shape, "T": T, "device": dev, "dtype": dt, "form": form,
                             "tokensPerSecond": T / s, "seconds": s})
                print(f"torch {shape} {dev} {dt} {form} T={T}: {T / s:.1f} tok/s", file=sys.stderr)
    doc = {"torch": True, "version": torch.__version__, "device": dev,
           "threads": torch.get_num_threads()}
    doc.update({"check": checks} if a.check else {"rows": rows})
    print(json.dumps(doc))


if __name__ == "__main__":
    main()
