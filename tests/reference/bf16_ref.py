#!/usr/bin/env python3
"""train.precision bf16 against PyTorch's own bf16 autocast (CTest label
`reference`).

tests/ref_dump.c runs the tiny GPT-2 (mode bf16_lora) or the tiny Llama
(bf16_llama_lora: 4 query heads over 2 key/value heads, SwiGLU, untied head)
with LoRA on every linear in bf16 compute, and dumps weights, batch, loss and
LoRA gradients. This script runs the same model with the same weights in
float32 under torch.autocast("cpu", dtype=torch.bfloat16) - the way a PyTorch
user trains in bf16 - and requires

  loss                       |c - ref| / |ref|               <= 1e-2
  each LoRA gradient tensor  ||c - ref||_2 / ||ref||_2       <= 5e-2

It also requires that the C run really computed in bf16: its loss must differ
from the same model's loss in float64 by more than 1e-6 relative (fp32 agrees
with float64 to ~1e-7 on this problem), so a precision switch that silently
stays fp32 fails. --max-isa ISA runs the C side (only: PyTorch uses oneDNN
too) with DNNL_MAX_CPU_ISA=ISA, as on a CPU without AVX-512 BF16;
--expect-kernel WORD requires the kernel the C side reports (meta.json
"kernel") to contain WORD, e.g. "emulated" for --max-isa AVX2.

Usage: bf16_ref.py --dumper PATH [--max-isa ISA] [--expect-kernel WORD] MODE...
Exit: 0 all passed, 1 a check failed, 2 bad usage, 77 no PyTorch.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpt2_lora_ref as g2  # noqa: E402  (exits 77 without torch)

np, torch, F = g2.np, g2.torch, g2.F

LOSS_TOL = 1e-2
GRAD_TOL = 5e-2
BF16_MIN_DIFF = 1e-6


# ------------------------------------------------------------ tiny Llama


def up(x):
    """x in float32 at least (HF upcasts norms and softmax), float64 kept."""
    return x if x.dtype == torch.float64 else x.float()


def rms_norm(x, w, eps):
    x32 = up(x)
    return w * (x32 * torch.rsqrt((x32 * x32).mean(-1, keepdim=True) + eps))


def rope(x, theta):
    """x (B, heads, T, hs), Hugging Face's rotate_half layout."""
    hs = x.shape[-1]
    inv = 1.0 / theta ** (torch.arange(0, hs, 2, dtype=torch.float64) / hs)
    f = torch.arange(x.shape[2], dtype=torch.float64)[:, None] * inv[None, :]
    emb = torch.cat([f, f], dim=-1)
    cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)
    x1, x2 = x[..., :hs // 2], x[..., hs // 2:]
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


def llama_loss(meta, p, ad, scale, inputs, targets):
    mc = meta["model"]
    L, NH, NKV, C = mc["n_layer"], mc["n_head"], mc["n_kv_head"], mc["n_embd"]
    eps, theta = mc["norm_eps"], mc["rope_theta"]
    hs = C // NH
    B, T = inputs.shape

    def linear(x, name):
        y = x @ p["layers.%s.weight" % name].t()
        if name in ad:
            A, Bm = ad[name]
            y = y + scale * ((x @ A.t()) @ Bm.t())
        return y

    x = p["embed_tokens.weight"][inputs]
    mask = ~torch.tril(torch.ones(T, T, dtype=torch.bool))
    for l in range(L):
        h = "%d." % l
        a = rms_norm(x, p["layers.%sinput_layernorm.weight" % h], eps)
        q = linear(a, h + "self_attn.q_proj").view(B, T, NH, hs).transpose(1, 2)
        k = linear(a, h + "self_attn.k_proj").view(B, T, NKV, hs).transpose(1, 2)
        v = linear(a, h + "self_attn.v_proj").view(B, T, NKV, hs).transpose(1, 2)
        q, k = rope(q, theta), rope(k, theta)
        k = k.repeat_interleave(NH // NKV, dim=1)
        v = v.repeat_interleave(NH // NKV, dim=1)
        s = (q @ k.transpose(-2, -1) / math.sqrt(hs)).masked_fill(mask, float("-inf"))
        att = (torch.softmax(up(s), dim=-1) @ v).transpose(1, 2).reshape(B, T, C)
        x = x + linear(att, h + "self_attn.o_proj")
        m = rms_norm(x, p["layers.%spost_attention_layernorm.weight" % h], eps)
        g = linear(m, h + "mlp.gate_proj")
        x = x + linear(F.silu(g) * linear(m, h + "mlp.up_proj"), h + "mlp.down_proj")
    x = rms_norm(x, p["norm.weight"], eps)
    logits = x @ p["lm_head.weight"].t()
    return F.cross_entropy(up(logits.reshape(B * T, -1)), targets.reshape(B * T),
                           ignore_index=-1, reduction="mean")


# ------------------------------------------------------------- one dump


def load(d):
    with open(os.path.join(d, "meta.json")) as f:
        meta = json.load(f)
    pt, lt = meta["param_tensors"], meta["lora_tensors"]
    params = g2.split_buffer(g2.read_array(d, "params.f32", "<f4", g2.buffer_size(pt)), pt)
    lora = g2.split_buffer(g2.read_array(d, "lora.f32", "<f4", g2.buffer_size(lt)), lt)
    grads = g2.split_buffer(g2.read_array(d, "grads.f32", "<f4", g2.buffer_size(lt)), lt)
    n = meta["B"] * meta["T"]
    shape = (meta["B"], meta["T"])
    inputs = torch.from_numpy(g2.read_array(d, "inputs.i32", "<i4", n).astype(np.int64)).view(shape)
    targets = torch.from_numpy(
        g2.read_array(d, "targets.i32", "<i4", n).astype(np.int64)).view(shape)
    return meta, params, lora, grads, inputs, targets


def reference(meta, params, lora, inputs, targets, dtype, autocast):
    """Loss and LoRA gradients of the dumped model, computed in dtype (with
    bf16 autocast when asked)."""
    lc = meta["lora"]
    scale = lc["alpha"] / (math.sqrt(lc["r"]) if lc["rslora"] else lc["r"])
    p = {k: v.to(dtype) for k, v in params.items()}
    leaves = {k: v.to(dtype).clone().requires_grad_(True) for k, v in lora.items()}
    ad = {}
    for name in leaves:
        if name.endswith(".lora_A"):
            module = name[:-len(".lora_A")]
            key = module[len("layers."):] if meta.get("arch") == "llama" else module
            ad[key] = (leaves[name], leaves[module + ".lora_B"])
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        if meta.get("arch") == "llama":
            loss = llama_loss(meta, p, ad, scale, inputs, targets)
        else:
            mc = meta["model"]
            model = g2.Gpt2Lora(mc["n_layer"], mc["n_head"], scale)
            loss = model.loss(p, ad, inputs, targets)
    loss.backward()
    return float(loss), {k: v.grad.double() for k, v in leaves.items()}


def check_mode(args, mode, tmp, rep):
    d = os.path.join(tmp, mode)
    env = dict(os.environ)
    if args.max_isa:
        env["DNNL_MAX_CPU_ISA"] = args.max_isa
    p = subprocess.run([args.dumper, mode, d], capture_output=True, text=True, env=env)
    if p.returncode != 0:
        print("%s: ref_dump failed: %s" % (mode, p.stderr.strip()))
        rep.failed.append((mode, "ref_dump"))
        return
    meta, params, lora, grads, inputs, targets = load(d)
    rep.mode = mode
    print("\n== %s (%s, kernel: %s)" % (mode, meta.get("arch", "gpt2"), meta.get("kernel")))
    if args.expect_kernel:
        ok = args.expect_kernel in meta.get("kernel", "")
        print("kernel contains %r  %s" % (args.expect_kernel, rep.record(ok, "kernel", "kernel")))
    loss_bf, g_bf = reference(meta, params, lora, inputs, targets, torch.float32, True)
    loss_64, _ = reference(meta, params, lora, inputs, targets, torch.float64, False)
    rep.scalar("loss", "loss vs autocast", meta["loss"], loss_bf, LOSS_TOL)
    far = abs(meta["loss"] - loss_64) / abs(loss_64)
    ok = far > BF16_MIN_DIFF
    print("loss differs from float64 by %.2e (> %.0e: bf16 really used)  %s" %
          (far, BF16_MIN_DIFF, rep.record(ok, "bf16", "bf16 used")))
    for name in sorted(g_bf):
        got, ref = grads[name].double(), g_bf[name]
        rel = float((got - ref).norm() / ref.norm()) if float(ref.norm()) > 0 else math.inf
        ok = math.isfinite(rel) and rel <= GRAD_TOL
        print("%-44s ||ref|| %.3e  rel-norm %.2e  %s" % (name, float(ref.norm()), rel,
                                                         rep.record(ok, "grad", name)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dumper", required=True)
    ap.add_argument("--expect-kernel", default="")
    ap.add_argument("--max-isa", default="")
    ap.add_argument("modes", nargs="+")
    args = ap.parse_args()
    rep = g2.Report()
    with tempfile.TemporaryDirectory() as tmp:
        for mode in args.modes:
            check_mode(args, mode, tmp, rep)
    print("\n%d passed, %d failed" % (rep.passed, len(rep.failed)))
    for mode, subject in rep.failed:
        print("  FAILED %s: %s" % (mode, subject))
    return 1 if rep.failed else 0


if __name__ == "__main__":
    sys.exit(main())
