#!/usr/bin/env python3
"""The PyTorch peer of bench_train_step --precision bf16: the same LoRA
training step (forward, backward, gradient clipping, AdamW on the adapters)
at the same shapes, under torch.autocast("cpu", dtype=torch.bfloat16), the
way a PyTorch user trains in bf16 on a CPU. The frozen base weights are held
in bf16 (so autocast does not re-cast them every step), the adapters and
their optimizer state in fp32, attention through scaled_dot_product_attention.

bench_train_step runs it (with OPENBLAS_CORETYPE unset) and prints the ratio
of its own bf16 tokens/s to the figure here. Lines it reads:
  torch T=<T> bf16 autocast step <ms> ms/step <tokens> tokens/s

usage: bench_train_step_torch.py [--threads N] [--T 64,256] [--steps N] [--llama]
"""
import argparse
import math
import time

import torch
import torch.nn.functional as F


def causal_attention(q, k, v):
    """scaled_dot_product_attention where torch has it (2.0+), else the
    same product written out."""
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    T = q.shape[-2]
    s = (q @ k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    s = s.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    return torch.softmax(s.float(), dim=-1).to(v.dtype) @ v


def lora_linear(x, w, a, b, scale, bias=None):
    y = F.linear(x, w, bias)
    return y + scale * F.linear(F.linear(x, a), b)


class Model:
    def __init__(self, llama, r=8, alpha=16.0):
        g = torch.Generator().manual_seed(1)
        self.llama = llama
        if llama:
            self.L, self.C, self.H, self.KVH, self.F, self.V = 12, 768, 12, 4, 2048, 32000
        else:
            self.L, self.C, self.H, self.V = 12, 768, 12, 50257
        self.scale = alpha / r
        C, hs = self.C, self.C // self.H

        def w(o, i):
            return (0.02 * torch.randn(o, i, generator=g)).to(torch.bfloat16)

        def lora(o, i):
            a = (torch.rand(r, i, generator=g) * 2 - 1) / math.sqrt(i)
            return [a.requires_grad_(), torch.zeros(o, r).requires_grad_()]

        if llama:
            kv = self.KVH * hs
            dims = {"q": (C, C), "k": (kv, C), "v": (kv, C), "o": (C, C),
                    "gate": (self.F, C), "up": (self.F, C), "down": (C, self.F)}
        else:
            dims = {"qkv": (3 * C, C), "proj": (C, C), "fc": (4 * C, C), "fcproj": (C, 4 * C)}
        self.blocks = []
        self.adapters = []
        for _ in range(self.L):
            blk = {name: w(*d) for name, d in dims.items()}
            ad = {name: lora(*d) for name, d in dims.items()}
            self.adapters += [t for pair in ad.values() for t in pair]
            blk["ad"] = ad
            if not llama:
                for name, (o, _) in dims.items():
                    blk[name + "_b"] = torch.zeros(o, dtype=torch.bfloat16)
            self.blocks.append(blk)
        self.wte = w(self.V, C)
        self.head = self.wte if not llama else w(self.V, C)
        self.ln = torch.ones(C)

    def lin(self, x, blk, name):
        a, b = blk["ad"][name]
        return lora_linear(x, blk[name], a, b, self.scale, blk.get(name + "_b"))

    def loss(self, inp, tgt):
        B, T = inp.shape
        C, H = self.C, self.H
        hs = C // H
        x = self.wte[inp].float()
        for blk in self.blocks:
            if self.llama:
                h = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5)
                q = self.lin(h, blk, "q").view(B, T, H, hs).transpose(1, 2)
                k = self.lin(h, blk, "k").view(B, T, self.KVH, hs).transpose(1, 2)
                v = self.lin(h, blk, "v").view(B, T, self.KVH, hs).transpose(1, 2)
                k = k.repeat_interleave(H // self.KVH, 1)
                v = v.repeat_interleave(H // self.KVH, 1)
                att = causal_attention(q, k, v)
                x = x + self.lin(att.transpose(1, 2).reshape(B, T, C), blk, "o")
                h = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5)
                m = F.silu(self.lin(h, blk, "gate")) * self.lin(h, blk, "up")
                x = x + self.lin(m, blk, "down")
            else:
                h = F.layer_norm(x, (C,))
                q, k, v = self.lin(h, blk, "qkv").split(C, dim=2)
                q, k, v = (z.reshape(B, T, H, hs).transpose(1, 2) for z in (q, k, v))
                att = causal_attention(q, k, v)
                x = x + self.lin(att.transpose(1, 2).reshape(B, T, C), blk, "proj")
                h = F.layer_norm(x, (C,))
                x = x + self.lin(F.gelu(self.lin(h, blk, "fc"), approximate="tanh"), blk,
                                 "fcproj")
        x = F.layer_norm(x, (C,))
        logits = F.linear(x, self.head)
        return F.cross_entropy(logits.float().view(B * T, -1), tgt.view(B * T))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--T", default="64,256")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--llama", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    B = 4
    m = Model(args.llama)
    opt = torch.optim.AdamW(m.adapters, lr=1e-4, weight_decay=0.0)
    print("torch %s, %d thread(s), oneDNN/bf16 available: %s, CPU capability %s" %
          (torch.__version__, torch.get_num_threads(), torch.backends.mkldnn.is_available(),
           torch.backends.cpu.get_cpu_capability()
           if hasattr(torch.backends, "cpu") else "?"))
    for T in (int(t) for t in args.T.split(",")):
        idx = torch.arange(B * T).view(B, T)
        inp, tgt = (idx * 7919) % m.V, (idx * 104729 + 1) % m.V
        best = math.inf
        for s in range(args.steps + 1):
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = m.loss(inp, tgt)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(m.adapters, 1.0)
            opt.step()
            dt = time.perf_counter() - t0
            if s > 0:
                best = min(best, dt)
        print("torch T=%d bf16 autocast step %.1f ms/step %.0f tokens/s" %
              (T, best * 1e3, B * T / best), flush=True)


if __name__ == "__main__":
    main()
