#!/usr/bin/env python3
"""Hugging Face Llama import, LoRA gradients and `codexctl export` against
PyTorch (CTest label `reference`).

A tiny Llama written here from the formulas (there is no `transformers`
package): RMSNorm, rotary embeddings in HF's rotate_half layout, grouped-
query attention (4 query heads share 2 key/value heads, as HF's repeat_kv:
query head h reads key/value head h // 2), SwiGLU MLP, no biases, an untied
lm_head. Saved with HF's tensor names (`model.layers.0.self_attn.q_proj.
weight`, nn.Linear (out, in)) and a config.json with model_type "llama", in
F32 and BF16; the C side loads the folder as `model.init: DIR` does.

Modes:
  import   logits within 1e-4 (F32; BF16 and F16 against this model run in
           float64 on the rounded weights, F16 sharded in two files with an
           index; a tied-head variant); bad configs and tensors rejected by
           name.
  grads    hf_dump adds LoRA adapters (all seven targets; and k_proj +
           up_proj only) and dumps the summed loss and every LoRA gradient;
           torch autograd in float64 on the same adapters must agree within
           1e-3 per tensor (loss within 1e-5), on F32 and BF16 weights. A
           planted 1% error in one gradient must be reported for exactly
           that tensor.
  peft     `codexctl export --format peft`: names base_model.model.model.
           layers.N.self_attn.q_proj.lora_A.weight, lora_A [r, in], lora_B
           [out, r], fan_in_fan_out false, target_modules HF's names; the
           adapter applied by PEFT's formula (W + s B A) reproduces the C
           logits within 1e-4.
  merged   `codexctl export --format merged`: every weight = base + s B A
           within 1e-5, config.json of the base, and the folder re-imports
           to the same logits.

Agreement: max|c - ref| / max|ref| per tensor or logits array.
Exit: 0 all checks passed, 1 a check failed, 2 bad usage, 77 no PyTorch.
"""
import argparse
import json
import math
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_gpt2_ref as hf  # noqa: E402  (safetensors I/O, Checks, run; exits 77 without torch)

np, torch = hf.np, hf.torch

LOGITS_TOL = 1e-4
GRAD_TOL = 1e-3
LOSS_TOL = 1e-5
MERGE_TOL = 1e-5

L, NH, NKV, C, F, V, P = 2, 4, 2, 32, 48, 64, 32
HS, KV = C // NH, (C // NH) * NKV
EPS, THETA = 1e-6, 50000.0
B, T = 2, 8
# module under a layer -> (in, out)
MODULES = {"self_attn.q_proj": (C, C), "self_attn.k_proj": (C, KV), "self_attn.v_proj": (C, KV),
           "self_attn.o_proj": (C, C), "mlp.gate_proj": (C, F), "mlp.up_proj": (C, F),
           "mlp.down_proj": (F, C)}
TARGET_MODULE = {m.split(".")[1]: m for m in MODULES}  # q_proj -> self_attn.q_proj


def set_dims(**dims):
    """Other sizes for the model this module writes and runs (keys: L, NH,
    NKV, C, F, V, P, B, T), e.g. a vocabulary that matches a tokenizer;
    the derived head sizes and MODULES follow."""
    g = globals()
    for k, v in dims.items():
        if k not in ("L", "NH", "NKV", "C", "F", "V", "P", "B", "T"):
            raise KeyError(k)
        g[k] = v
    g["HS"], g["KV"] = g["C"] // g["NH"], (g["C"] // g["NH"]) * g["NKV"]
    c, kv, f = g["C"], g["KV"], g["F"]
    g["MODULES"] = {"self_attn.q_proj": (c, c), "self_attn.k_proj": (c, kv),
                    "self_attn.v_proj": (c, kv), "self_attn.o_proj": (c, c),
                    "mlp.gate_proj": (c, f), "mlp.up_proj": (c, f), "mlp.down_proj": (f, c)}


def make_weights(seed, tied=False):
    g = np.random.default_rng(seed)
    w = {"model.embed_tokens.weight": g.normal(0, 0.5, (V, C)),
         "model.norm.weight": 1 + g.normal(0, 0.1, C)}
    if not tied:
        w["lm_head.weight"] = g.normal(0, 0.3, (V, C))
    for l in range(L):
        h = "model.layers.%d." % l
        w[h + "input_layernorm.weight"] = 1 + g.normal(0, 0.1, C)
        w[h + "post_attention_layernorm.weight"] = 1 + g.normal(0, 0.1, C)
        for m, (i, o) in MODULES.items():
            w[h + m + ".weight"] = g.normal(0, 0.25, (o, i))
    return {k: v.astype(np.float32) for k, v in w.items()}


def config_json(**over):
    c = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": C,
         "num_hidden_layers": L, "num_attention_heads": NH, "num_key_value_heads": NKV,
         "intermediate_size": F, "vocab_size": V, "max_position_embeddings": P,
         "rms_norm_eps": EPS, "rope_theta": THETA, "hidden_act": "silu",
         "tie_word_embeddings": False, "attention_bias": False, "mlp_bias": False,
         "rope_scaling": None, "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32"}
    c.update(over)
    return c


def save_model(d, weights, dtype="F32", config=None):
    os.makedirs(d, exist_ok=True)
    hf.write_safetensors(os.path.join(d, "model.safetensors"), weights, dtype, {"format": "pt"})
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(config or config_json(), f, indent=2)


def bf16_values(w):
    return {k: (hf.bf16_round(v).astype(np.uint32) << 16).view("<f4") for k, v in w.items()}


def rms_norm(x, w):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + EPS) * w


def rope(x):
    """x (B, heads, T, HS): HF's apply_rotary_pos_emb with rotate_half."""
    inv = 1.0 / THETA ** (torch.arange(0, HS, 2, dtype=torch.float64) / HS)
    f = torch.arange(x.shape[2], dtype=torch.float64)[:, None] * inv[None, :]
    emb = torch.cat([f, f], dim=-1)
    x1, x2 = x[..., :HS // 2], x[..., HS // 2:]
    return x * emb.cos() + torch.cat([-x2, x1], dim=-1) * emb.sin()


def forward(w, tokens, adapters=None, scale=0.0):
    """Logits (B*T, V) as a float64 tensor. w: HF names -> arrays or tensors;
    adapters: module path ("model.layers.0.self_attn.q_proj") -> (A (r, in), B (out, r))."""
    t = {k: v if torch.is_tensor(v) else torch.from_numpy(np.asarray(v, np.float64))
         for k, v in w.items()}
    ad = {k: tuple(x if torch.is_tensor(x) else torch.from_numpy(np.asarray(x, np.float64))
                   for x in v) for k, v in (adapters or {}).items()}

    def linear(x, m):
        y = x @ t[m + ".weight"].t()
        if m in ad:
            A, Bm = ad[m]
            y = y + scale * ((x @ A.t()) @ Bm.t())
        return y

    idx = torch.from_numpy(tokens.astype(np.int64))
    x = t["model.embed_tokens.weight"][idx]
    mask = ~torch.tril(torch.ones(T, T, dtype=torch.bool))
    for l in range(L):
        h = "model.layers.%d." % l
        a = rms_norm(x, t[h + "input_layernorm.weight"])
        q = linear(a, h + "self_attn.q_proj").view(B, T, NH, HS).transpose(1, 2)
        k = linear(a, h + "self_attn.k_proj").view(B, T, NKV, HS).transpose(1, 2)
        v = linear(a, h + "self_attn.v_proj").view(B, T, NKV, HS).transpose(1, 2)
        q, k = rope(q), rope(k)
        k = k.repeat_interleave(NH // NKV, dim=1)  # repeat_kv
        v = v.repeat_interleave(NH // NKV, dim=1)
        s = (q @ k.transpose(-2, -1) / math.sqrt(HS)).masked_fill(mask, float("-inf"))
        att = (torch.softmax(s, dim=-1) @ v).transpose(1, 2).reshape(B, T, C)
        x = x + linear(att, h + "self_attn.o_proj")
        m = rms_norm(x, t[h + "post_attention_layernorm.weight"])
        g = linear(m, h + "mlp.gate_proj")
        x = x + linear(torch.nn.functional.silu(g) * linear(m, h + "mlp.up_proj"),
                       h + "mlp.down_proj")
    x = rms_norm(x, t["model.norm.weight"])
    head = t["lm_head.weight"] if "lm_head.weight" in t else t["model.embed_tokens.weight"]
    return (x @ head.t()).reshape(B * T, V)


def logits_np(w, tok, ad=None, scale=0.0):
    with torch.no_grad():
        return forward(w, tok, ad, scale).numpy()


def c_logits(path):
    return np.fromfile(path, dtype="<f4").reshape(B * T, V)


def tokens_file(d):
    tok = np.random.default_rng(7).integers(0, V, (B, T)).astype("<i4")
    path = os.path.join(d, "tokens.i32")
    tok.tofile(path)
    return tok, path


# ---------------------------------------------------------------- import


def check_import(ck, args, d):
    w = make_weights(1)
    tok, tpath = tokens_file(d)
    f32, bf = os.path.join(d, "f32"), os.path.join(d, "bf16")
    save_model(f32, w)
    save_model(bf, w, "BF16")
    for name, model, ref_w in (("F32", f32, w), ("BF16", bf, bf16_values(w))):
        out = os.path.join(d, "logits_%s.f32" % name)
        p = hf.run([args.dumper, "logits", model, tpath, str(B), str(T), out])
        if ck.ok("import %s: hf_dump runs" % name, p.returncode == 0, p.stderr.strip()):
            ck.rel("import %s: logits vs PyTorch" % name, c_logits(out), logits_np(ref_w, tok),
                   LOGITS_TOL)
    # F16 weights (numpy's half rounding is IEEE nearest-even), sharded in two files
    f16 = os.path.join(d, "f16")
    os.makedirs(f16, exist_ok=True)
    names = sorted(w)
    parts = {"model-00001-of-00002.safetensors": names[:len(names) // 2],
             "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    for fn, ns in parts.items():
        hf.write_safetensors(os.path.join(f16, fn), {n: w[n] for n in ns}, "F16", {"format": "pt"})
    with open(os.path.join(f16, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": 0},
                   "weight_map": {n: fn for fn, ns in parts.items() for n in ns}}, f)
    with open(os.path.join(f16, "config.json"), "w") as f:
        json.dump(config_json(), f)
    out = os.path.join(d, "logits_f16.f32")
    p = hf.run([args.dumper, "logits", f16, tpath, str(B), str(T), out])
    if ck.ok("import F16 sharded: hf_dump runs", p.returncode == 0, p.stderr.strip()):
        ck.rel("import F16 sharded: logits vs PyTorch", c_logits(out),
               logits_np({k: v.astype(np.float16).astype(np.float32) for k, v in w.items()}, tok),
               LOGITS_TOL)
    # a tied head: no lm_head.weight, the embedding is the head
    wt = make_weights(3, tied=True)
    tied = os.path.join(d, "tied")
    save_model(tied, wt, config=config_json(tie_word_embeddings=True))
    out = os.path.join(d, "logits_tied.f32")
    p = hf.run([args.dumper, "logits", tied, tpath, str(B), str(T), out])
    if ck.ok("import tied head: hf_dump runs", p.returncode == 0, p.stderr.strip()):
        ck.rel("import tied head: logits vs PyTorch", c_logits(out), logits_np(wt, tok),
               LOGITS_TOL)
    bad = os.path.join(d, "bad")
    cases = []
    w2 = dict(w)
    del w2["model.layers.1.mlp.up_proj.weight"]
    cases.append(("missing tensor", w2, None, "model.layers.1.mlp.up_proj.weight"))
    w3 = dict(w)
    w3["model.layers.0.self_attn.k_proj.weight"] = np.zeros((C, C), np.float32)
    cases.append(("k_proj without GQA's shape", w3, None, "model.layers.0.self_attn.k_proj"))
    cases.append(("rope_scaling dynamic", w,
                  config_json(rope_scaling={"type": "dynamic", "factor": 2.0}),
                  "rope_scaling.rope_type \"dynamic\""))
    cases.append(("hidden_act gelu", w, config_json(hidden_act="gelu"), "hidden_act"))
    cases.append(("num_key_value_heads 3", w, config_json(num_key_value_heads=3),
                  "num_key_value_heads"))
    w4 = dict(w)
    w4["model.layers.0.self_attn.q_proj.bias"] = np.zeros(C, np.float32)
    cases.append(("a bias", w4, None, "model.layers.0.self_attn.q_proj.bias"))
    for what, ww, cfg, frag in cases:
        save_model(bad, ww, config=cfg)
        p = hf.run([args.dumper, "logits", bad, tpath, str(B), str(T), os.path.join(d, "x")],
                   None)
        ck.ok("import rejects %s" % what, p.returncode == 1 and frag in p.stderr,
              p.stderr.strip())
    return w, tok, tpath, f32, bf


# ---------------------------------------------------------------- gradients


def read_c_grads(out_dir):
    """{our tensor name: (value, gradient)} from hf_dump grads."""
    g = np.fromfile(os.path.join(out_dir, "grads.f32"), dtype="<f4")
    lora = np.fromfile(os.path.join(out_dir, "lora.f32"), dtype="<f4")
    res = {}
    with open(os.path.join(out_dir, "grads.txt")) as f:
        for line in f:
            name, off, r, c = line.split()
            off, r, c = int(off), int(r), int(c)
            res[name] = (lora[off:off + r * c].reshape(r, c).astype(np.float64),
                         g[off:off + r * c].reshape(r, c).astype(np.float64))
    return res


def ref_grads(w, tok, c):
    """Loss and LoRA gradients by autograd in float64 with the C adapters."""
    params = {}
    ad = {}
    for name, (val, _) in c.items():
        mod, kind = name.rsplit(".", 1)
        hfmod = "model." + mod
        params[name] = torch.tensor(val, dtype=torch.float64, requires_grad=True)
        pair = ad.setdefault(hfmod, [None, None])
        pair[0 if kind == "lora_A" else 1] = params[name]
    return params, {k: tuple(v) for k, v in ad.items()}


def rel_err(c, ref):
    return float(np.abs(c - ref).max() / max(np.abs(ref).max(), 1e-30))


def check_grads(ck, args, d, w, tok, tpath, f32, bf):
    cases = [("all-linear", "all-linear", 4, 8.0, 0), ("k_proj+up_proj", "k_proj,up_proj", 2, 3.0, 1)]
    for wname, model, ref_w in (("F32", f32, w), ("BF16", bf, bf16_values(w))):
        for tag, targets, r, alpha, rs in cases:
            what = "grads %s %s" % (wname, tag)
            out = os.path.join(d, "grads_%s_%s" % (wname, tag.replace("+", "_")))
            os.makedirs(out, exist_ok=True)
            p = hf.run([args.dumper, "grads", model, tpath, str(B), str(T), out, targets, str(r),
                        str(alpha), str(rs)])
            if not ck.ok("%s: hf_dump runs" % what, p.returncode == 0, p.stderr.strip()):
                continue
            c = read_c_grads(out)
            want = len(MODULES) if targets == "all-linear" else len(targets.split(","))
            ck.ok("%s: %d adapted modules" % (what, want * L), len(c) == 2 * want * L,
                  "%d tensors" % len(c))
            c_loss = float(p.stdout.split()[1])
            scale = alpha / (math.sqrt(r) if rs else r)
            params, ad = ref_grads(ref_w, tok, c)
            logits = forward(ref_w, tok, ad, scale)
            tgt = torch.from_numpy(np.concatenate([tok[:, 1:], np.full((B, 1), -100)], axis=1)
                                   .reshape(-1).astype(np.int64))
            loss = torch.nn.functional.cross_entropy(logits, tgt, ignore_index=-100,
                                                     reduction="sum")
            loss.backward()
            ck.ok("%s: loss" % what, abs(c_loss - loss.item()) <= LOSS_TOL * abs(loss.item()),
                  "C %.9g ref %.9g" % (c_loss, loss.item()))
            worst, worst_name = 0.0, ""
            for name, (_, g) in c.items():
                e = rel_err(g, params[name].grad.numpy())
                if e > worst:
                    worst, worst_name = e, name
            ck.ok("%s: every LoRA gradient" % what, worst <= GRAD_TOL,
                  "worst rel %.3g at %s (tol %g)" % (worst, worst_name, GRAD_TOL))
            if wname == "F32" and targets == "all-linear":
                # the comparison can fail: plant a 1% error in one element
                victim = "layers.0.self_attn.k_proj.lora_A"
                bad = {n: g.copy() for n, (_, g) in c.items()}
                bad[victim][0, 1] += 0.01 * np.abs(bad[victim]).max()
                flagged = [n for n, g in bad.items()
                           if rel_err(g, params[n].grad.numpy()) > GRAD_TOL]
                ck.ok("grads: a planted error is reported for exactly %s" % victim,
                      flagged == [victim], "%s" % flagged)


# ---------------------------------------------------------------- export


def lora_run(args, d, model, tpath, targets, r, alpha, rs, i):
    run_dir = os.path.join(d, "run%d" % i)
    os.makedirs(run_dir, exist_ok=True)
    return run_dir, hf.run([args.dumper, "lora", model, tpath, str(B), str(T), run_dir, targets,
                            str(r), str(alpha), str(rs)])


EXPORT_CASES = [("q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj", 4, 8, 0),
                ("v_proj,down_proj", 2, 3, 1)]


def adapters_hf(tensors):
    """PEFT tensors -> {HF module path "model.layers.0.self_attn.q_proj": (A, B)}."""
    return hf.adapters_from_peft(tensors)


def check_peft(ck, args, d, w, tok, tpath, model):
    for i, (targets, r, alpha, rs) in enumerate(EXPORT_CASES):
        run_dir, p = lora_run(args, d, model, tpath, targets, r, alpha, rs, i)
        if not ck.ok("peft %d: hf_dump lora runs" % i, p.returncode == 0, p.stderr.strip()):
            continue
        out = os.path.join(d, "peft%d" % i)
        p = hf.run([args.codexctl, "export", os.path.join(run_dir, "final.h5"), "--format", "peft",
                    "-o", out])
        if not ck.ok("peft %d: codexctl export runs" % i, p.returncode == 0, p.stderr.strip()):
            continue
        with open(os.path.join(out, "adapter_config.json")) as f:
            cfg = json.load(f)
        tlist = targets.split(",")
        ck.ok("peft %d: adapter_config fields" % i,
              cfg["peft_type"] == "LORA" and cfg["r"] == r and cfg["lora_alpha"] == alpha
              and bool(cfg["use_rslora"]) == bool(rs) and cfg["fan_in_fan_out"] is False
              and sorted(cfg["target_modules"]) == sorted(tlist), json.dumps(cfg, sort_keys=True))
        tensors, _ = hf.read_safetensors(os.path.join(out, "adapter_model.safetensors"))
        names_ok = all(n.startswith("base_model.model.model.layers.") and
                       (n.endswith(".lora_A.weight") or n.endswith(".lora_B.weight"))
                       for n in tensors)
        ck.ok("peft %d: PEFT tensor names" % i, names_ok, sorted(tensors)[0])
        ad = adapters_hf(tensors)
        want = {"model.layers.%d.%s" % (l, TARGET_MODULE[t]) for l in range(L) for t in tlist}
        ck.ok("peft %d: adapted modules" % i, set(ad) == want, "%s" % sorted(ad)[:3])
        all_modules = {"model.layers.%d.%s" % (l, m) for l in range(L) for m in MODULES}
        chosen = {m for m in all_modules if hf.peft_matches(cfg["target_modules"], m)}
        ck.ok("peft %d: target_modules select exactly those" % i, chosen == want)
        shapes_ok = all(A.shape == (r, MODULES[m.split(".", 3)[3]][0]) and
                        Bm.shape == (MODULES[m.split(".", 3)[3]][1], r) for m, (A, Bm) in ad.items())
        ck.ok("peft %d: lora_A [r, in], lora_B [out, r]" % i, shapes_ok)
        scale = alpha / (math.sqrt(r) if rs else r)
        base = logits_np(w, tok)
        cl = c_logits(os.path.join(run_dir, "logits.f32"))
        ck.ok("peft %d: the adapter changes the logits" % i,
              not np.allclose(cl, base, rtol=0, atol=100 * LOGITS_TOL * np.abs(base).max()))
        # PEFT's merge: W' = W + s B A, then the plain model
        merged = dict(w)
        for m, (A, Bm) in ad.items():
            merged[m + ".weight"] = np.asarray(w[m + ".weight"], np.float64) + scale * (Bm @ A)
        ck.rel("peft %d: W + s B A logits vs C unmerged" % i, cl, logits_np(merged, tok),
               LOGITS_TOL)


def check_merged(ck, args, d, w, tok, tpath, model):
    for i, (targets, r, alpha, rs) in enumerate(EXPORT_CASES):
        tag = "merged %d" % i
        run_dir, p = lora_run(args, d, model, tpath, targets, r, alpha, rs, i + 10)
        if not ck.ok("%s: hf_dump lora runs" % tag, p.returncode == 0, p.stderr.strip()):
            continue
        out, peft = os.path.join(d, "merged%d" % i), os.path.join(d, "mpeft%d" % i)
        p = hf.run([args.codexctl, "export", run_dir, "--format", "merged", "-o", out])
        if not ck.ok("%s: codexctl export runs" % tag, p.returncode == 0, p.stderr.strip()):
            continue
        hf.run([args.codexctl, "export", run_dir, "--format", "peft", "-o", peft])
        ad = adapters_hf(hf.read_safetensors(os.path.join(peft, "adapter_model.safetensors"))[0])
        scale = alpha / (math.sqrt(r) if rs else r)
        merged, _ = hf.read_safetensors(os.path.join(out, "model.safetensors"))
        ck.ok("%s: HF names only, no extras" % tag, set(merged) == set(w),
              "%s" % sorted(set(merged) ^ set(w))[:4])
        worst, worst_name = 0.0, ""
        for name, ref in w.items():
            ref = np.asarray(ref, np.float64)
            mod = name[:-len(".weight")]
            if mod in ad:
                A, Bm = ad[mod]
                ref = ref + scale * (Bm @ A)
            e = rel_err(merged[name], ref) if name in merged and merged[name].shape == ref.shape \
                else 1.0
            if e > worst:
                worst, worst_name = e, name
        ck.ok("%s: every weight = base + s B A" % tag, worst <= MERGE_TOL,
              "worst rel %.3g at %s (tol %g)" % (worst, worst_name, MERGE_TOL))
        ck.rel("%s: merged logits vs C unmerged" % tag, logits_np(merged, tok),
               c_logits(os.path.join(run_dir, "logits.f32")), LOGITS_TOL)
        with open(os.path.join(out, "config.json")) as f:
            cfg = json.load(f)
        ck.ok("%s: config.json is the base's (llama)" % tag,
              cfg.get("model_type") == "llama" and cfg.get("num_key_value_heads") == NKV
              and cfg.get("bos_token_id") == 1, json.dumps(cfg)[:200])
        lo = os.path.join(d, "lo%d.f32" % i)
        p = hf.run([args.dumper, "logits", out, tpath, str(B), str(T), lo])
        if ck.ok("%s: re-import of the merged folder" % tag, p.returncode == 0, p.stderr.strip()):
            ck.rel("%s: re-imported logits" % tag, c_logits(lo),
                   c_logits(os.path.join(run_dir, "logits.f32")), LOGITS_TOL)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dumper", required=True)
    ap.add_argument("--codexctl")
    ap.add_argument("--keep", help="work in this directory and keep it")
    ap.add_argument("modes", nargs="+", choices=["import", "grads", "peft", "merged"])
    args = ap.parse_args()
    if set(args.modes) & {"peft", "merged"} and not args.codexctl:
        print("hf_llama_ref.py: peft and merged need --codexctl", file=sys.stderr)
        return 2
    ck = hf.Checks()
    with tempfile.TemporaryDirectory(prefix="cu_llama_") as tmp:
        d = args.keep or tmp
        os.makedirs(d, exist_ok=True)
        w, tok, tpath, f32, bf = check_import(ck, args, d)
        if "grads" in args.modes:
            check_grads(ck, args, d, w, tok, tpath, f32, bf)
        if "peft" in args.modes:
            check_peft(ck, args, d, w, tok, tpath, f32)
        if "merged" in args.modes:
            check_merged(ck, args, d, w, tok, tpath, f32)
    print("%d passed, %d failed" % (ck.passed, ck.failed))
    return 1 if ck.failed else 0


if __name__ == "__main__":
    sys.exit(main())
