#!/usr/bin/env python3
"""Hugging Face GPT-2 import and `codexctl export` against PyTorch
(CTest label `reference`).

This script builds a tiny GPT-2 the way Hugging Face stores one: tensor
names `transformer.h.0.attn.c_attn.weight`, Conv1D weights (in, out), the
attention-mask buffers `attn.bias` / `attn.masked_bias`, a tied
`lm_head.weight`, a config.json; it writes the safetensors file itself (no
`safetensors` package: 8-byte little-endian header length, JSON header,
raw bytes). Its own float64 forward is written from the GPT-2 definition in
Conv1D orientation (y = x W + b), not from the C code.

Modes (each a group of checks):
  import   hf_dump loads the model (F32, and BF16 compared with this model
           run on the BF16-rounded weights); logits within 1e-4, and the
           importer's sha256 equals hashlib's; a missing tensor, a wrong
           shape and a wrong layer_norm_epsilon are rejected by name.
  peft     hf_dump adds deterministic LoRA adapters and saves a final.h5;
           `codexctl export --format peft` writes the adapter; applied here
           by PEFT's formula (W x + b + s * B(A x), s = lora_alpha / r or
           / sqrt(r) with use_rslora, fan_in_fan_out: W is (in, out)) the
           logits equal the C model's with the adapter unmerged within 1e-4.
           target_modules, matched as PEFT matches them (name == t or ends
           with "." + t), must select exactly the adapted modules.
  merged   `codexctl export --format merged` from the run directory (base:
           the HF folder of model.init; config.json and tokenizer files
           copied) and from a run whose model.init is a full-weights .h5
           (config.json generated): every weight equals base + s * (B A)^T
           within 1e-5 and the merged model's logits equal the C model's.
  train    codex-train runs a LoRA job from random weights and a full job
           of the same seed whose weights cannot move (lr 1e-30); the LoRA
           run exported merged (its base rebuilt from the seed) equals the
           full run's weights plus the exported adapter within 1e-5.

Agreement: max|c - ref| / max|ref| per tensor or logits array.
Exit: 0 all checks passed, 1 a check failed, 2 bad usage, 77 no PyTorch.
"""
import argparse
import hashlib
import json
import math
import os
import struct
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import torch
except ImportError as e:  # depends on the machine: CTest reports a skip
    print("hf_gpt2_ref.py: %s for %s; run it with Debian's /usr/bin/python3" %
          (e, sys.executable), file=sys.stderr)
    sys.exit(77)

LOGITS_TOL = 1e-4
MERGE_TOL = 1e-5

L, NH, C, V, P = 2, 2, 32, 64, 16
B, T = 2, 8
CONV1D = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
MODULE_DIMS = {"attn.c_attn": (C, 3 * C), "attn.c_proj": (C, C), "mlp.c_fc": (C, 4 * C),
               "mlp.c_proj": (4 * C, C)}  # (in, out)
TARGET_MODULE = {"qkv": "attn.c_attn", "attn_proj": "attn.c_proj", "mlp_fc": "mlp.c_fc",
                 "mlp_proj": "mlp.c_proj"}

# ---------------------------------------------------------------- safetensors


def bf16_round(a):
    """float32 array -> float32 values rounded to bfloat16 (nearest even)."""
    bits = np.ascontiguousarray(a, dtype="<f4").view("<u4").astype(np.uint64)
    r = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint32)
    return r


def write_safetensors(path, tensors, dtype="F32", metadata=None):
    header, blobs, off = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, a in tensors.items():
        a = np.ascontiguousarray(a, dtype="<f4")
        if dtype == "BF16":
            raw = bf16_round(a).astype("<u2").tobytes()
        elif dtype == "F16":
            raw = a.astype("<f2").tobytes()
        else:
            raw = a.tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    out = {}
    for name, e in header.items():
        b, en = e["data_offsets"]
        raw = data[base + b:base + en]
        if e["dtype"] == "F32":
            a = np.frombuffer(raw, dtype="<f4")
        elif e["dtype"] == "BF16":
            a = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view("<f4")
        else:
            raise ValueError("%s: dtype %s" % (name, e["dtype"]))
        out[name] = a.reshape(e["shape"]).astype(np.float64)
    return out, meta


# ---------------------------------------------------------------- the model


def make_weights(seed):
    """HF GPT-2 tensors (float32 numpy), Conv1D weights (in, out)."""
    g = np.random.default_rng(seed)
    w = {"transformer.wte.weight": g.normal(0, 0.3, (V, C)),
         "transformer.wpe.weight": g.normal(0, 0.1, (P, C)),
         "transformer.ln_f.weight": 1 + g.normal(0, 0.1, C),
         "transformer.ln_f.bias": g.normal(0, 0.1, C)}
    for l in range(L):
        h = "transformer.h.%d." % l
        for ln in ("ln_1", "ln_2"):
            w[h + ln + ".weight"] = 1 + g.normal(0, 0.1, C)
            w[h + ln + ".bias"] = g.normal(0, 0.1, C)
        for m in CONV1D:
            i, o = MODULE_DIMS[m]
            w[h + m + ".weight"] = g.normal(0, 0.2, (i, o))
            w[h + m + ".bias"] = g.normal(0, 0.1, o)
    return {k: v.astype(np.float32) for k, v in w.items()}


def hf_buffers():
    """What GPT2LMHeadModel.state_dict() also holds (ignored on import)."""
    out = {}
    for l in range(L):
        out["transformer.h.%d.attn.bias" % l] = np.tril(np.ones((P, P), np.float32))[None, None]
        out["transformer.h.%d.attn.masked_bias" % l] = np.array(-1e4, np.float32)
    return out


def config_json(**over):
    c = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "n_layer": L, "n_head": NH,
         "n_embd": C, "vocab_size": V, "n_positions": P, "n_ctx": P, "n_inner": None,
         "layer_norm_epsilon": 1e-5, "activation_function": "gelu_new",
         "tie_word_embeddings": True, "bos_token_id": V - 1, "eos_token_id": V - 1}
    c.update(over)
    return c


def save_model(d, weights, dtype="F32", config=None, extra=True):
    os.makedirs(d, exist_ok=True)
    t = dict(weights)
    if extra:
        t.update(hf_buffers())
        t["lm_head.weight"] = weights["transformer.wte.weight"]
    write_safetensors(os.path.join(d, "model.safetensors"), t, dtype, {"format": "pt"})
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(config or config_json(), f, indent=2)


def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def layer_norm(x, w, b):
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + 1e-5) * w + b


def forward(w, tokens, adapters=None, scale=0.0):
    """Logits (B*T, V) in float64. w: HF names -> arrays (Conv1D (in, out));
    adapters: module path ("transformer.h.0.attn.c_attn") -> (A (r, in), B (out, r))."""
    t = {k: torch.from_numpy(np.asarray(v, dtype=np.float64)) for k, v in w.items()}
    ad = {k: tuple(torch.from_numpy(np.asarray(x, np.float64)) for x in v)
          for k, v in (adapters or {}).items()}

    def conv1d(x, m):
        y = x @ t[m + ".weight"] + t[m + ".bias"]  # fan_in_fan_out: W is (in, out)
        if m in ad:
            A, Bm = ad[m]
            y = y + scale * ((x @ A.t()) @ Bm.t())
        return y

    idx = torch.from_numpy(tokens.astype(np.int64))
    x = t["transformer.wte.weight"][idx] + t["transformer.wpe.weight"][:T]
    hs = C // NH
    for l in range(L):
        h = "transformer.h.%d." % l
        a = layer_norm(x, t[h + "ln_1.weight"], t[h + "ln_1.bias"])
        q, k, v = conv1d(a, h + "attn.c_attn").split(C, dim=2)
        q, k, v = (z.view(B, T, NH, hs).transpose(1, 2) for z in (q, k, v))
        s = q @ k.transpose(-2, -1) / math.sqrt(hs)
        s = s.masked_fill(~torch.tril(torch.ones(T, T, dtype=torch.bool)), float("-inf"))
        att = torch.softmax(s, dim=-1) @ v
        x = x + conv1d(att.transpose(1, 2).reshape(B, T, C), h + "attn.c_proj")
        m = layer_norm(x, t[h + "ln_2.weight"], t[h + "ln_2.bias"])
        x = x + conv1d(gelu_tanh(conv1d(m, h + "mlp.c_fc")), h + "mlp.c_proj")
    x = layer_norm(x, t["transformer.ln_f.weight"], t["transformer.ln_f.bias"])
    return (x @ t["transformer.wte.weight"].t()).reshape(B * T, V).numpy()


# ---------------------------------------------------------------- checks


class Checks:
    def __init__(self):
        self.passed = self.failed = 0

    def rel(self, what, c, ref, tol):
        c, ref = np.asarray(c, np.float64), np.asarray(ref, np.float64)
        if c.shape != ref.shape:
            return self.ok(what, False, "shape %s vs %s" % (c.shape, ref.shape))
        r = float(np.abs(c - ref).max() / max(np.abs(ref).max(), 1e-30))
        return self.ok(what, r <= tol, "rel %.3g (tol %g)" % (r, tol))

    def ok(self, what, cond, detail=""):
        print("%-4s %-58s %s" % ("ok" if cond else "FAIL", what, detail))
        if cond:
            self.passed += 1
        else:
            self.failed += 1
        return cond


def run(cmd, expect=0):
    p = subprocess.run(cmd, capture_output=True, text=True)
    if expect is not None and p.returncode != expect:
        print("command %s exited %d (expected %d):\n%s%s" %
              (" ".join(cmd), p.returncode, expect, p.stdout, p.stderr), file=sys.stderr)
    return p


def tokens_file(d):
    tok = np.random.default_rng(7).integers(0, V, (B, T)).astype("<i4")
    path = os.path.join(d, "tokens.i32")
    tok.tofile(path)
    return tok, path


def c_logits(path):
    return np.fromfile(path, dtype="<f4").reshape(B * T, V)


def check_import(ck, args, d):
    w = make_weights(1)
    tok, tpath = tokens_file(d)
    f32, bf = os.path.join(d, "f32"), os.path.join(d, "bf16")
    save_model(f32, w)
    save_model(bf, w, "BF16")
    for name, model, ref_w in (("F32", f32, w),
                               ("BF16", bf, {k: (bf16_round(v).astype(np.uint32) << 16).view("<f4")
                                             for k, v in w.items()})):
        out = os.path.join(d, "logits_%s.f32" % name)
        p = run([args.dumper, "logits", model, tpath, str(B), str(T), out])
        if not ck.ok("import %s: hf_dump runs" % name, p.returncode == 0, p.stderr.strip()):
            continue
        ck.rel("import %s: logits vs PyTorch" % name, c_logits(out), forward(ref_w, tok),
               LOGITS_TOL)
        with open(os.path.join(model, "model.safetensors"), "rb") as f:
            sha = hashlib.sha256(f.read()).hexdigest()
        ck.ok("import %s: sha256 of the weights" % name, ("sha256 " + sha) in p.stdout)
    # F16 weights (numpy's half rounding is IEEE nearest-even)
    f16 = os.path.join(d, "f16")
    save_model(f16, w, "F16")
    out = os.path.join(d, "logits_f16.f32")
    p = run([args.dumper, "logits", f16, tpath, str(B), str(T), out])
    if ck.ok("import F16: hf_dump runs", p.returncode == 0, p.stderr.strip()):
        ck.rel("import F16: logits vs PyTorch", c_logits(out),
               forward({k: v.astype(np.float16).astype(np.float32) for k, v in w.items()}, tok), LOGITS_TOL)
    # sharded: two shards and an index; sha256 over index + shards in order
    sh = os.path.join(d, "sharded")
    os.makedirs(sh, exist_ok=True)
    names = sorted(w)
    parts = {"model-00001-of-00002.safetensors": names[:len(names) // 2],
             "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    wmap = {}
    for fn, ns in parts.items():
        write_safetensors(os.path.join(sh, fn), {n: w[n] for n in ns}, "F32", {"format": "pt"})
        wmap.update({n: fn for n in ns})
    with open(os.path.join(sh, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": 0}, "weight_map": wmap}, f)
    with open(os.path.join(sh, "config.json"), "w") as f:
        json.dump(config_json(), f)
    out = os.path.join(d, "logits_sharded.f32")
    p = run([args.dumper, "logits", sh, tpath, str(B), str(T), out])
    if ck.ok("import sharded: hf_dump runs", p.returncode == 0, p.stderr.strip()):
        ck.rel("import sharded: logits vs PyTorch", c_logits(out), forward(w, tok), LOGITS_TOL)
        hsh = hashlib.sha256()
        for fn in ["model.safetensors.index.json"] + list(parts):
            with open(os.path.join(sh, fn), "rb") as f:
                hsh.update(f.read())
        ck.ok("import sharded: sha256 of index + shards", ("sha256 " + hsh.hexdigest()) in p.stdout)
    # a trainer's shorter context: the first T rows of wpe
    out = os.path.join(d, "logits_short.f32")
    p = run([args.dumper, "logits", f32, tpath, str(B), str(T), out, str(T)])
    if ck.ok("import with max_seq_len %d < n_positions %d" % (T, P), p.returncode == 0,
             p.stderr.strip()):
        ck.rel("import max_seq_len %d: logits" % T, c_logits(out), forward(w, tok), LOGITS_TOL)
    p = run([args.dumper, "logits", f32, tpath, str(B), str(T), out, str(P + 1)], None)
    ck.ok("import rejects max_seq_len > n_positions", p.returncode == 1 and "n_positions" in p.stderr,
          p.stderr.strip())
    # rejections, each naming what is wrong
    bad = os.path.join(d, "bad")
    cases = []
    w2 = dict(w)
    del w2["transformer.h.1.mlp.c_fc.bias"]
    cases.append(("missing tensor", w2, None, "transformer.h.1.mlp.c_fc.bias"))
    w3 = dict(w)
    w3["transformer.h.0.attn.c_attn.weight"] = w["transformer.h.0.attn.c_attn.weight"].T.copy()
    cases.append(("Conv1D weight in (out, in)", w3, None, "h.0.attn.c_attn.weight"))
    cases.append(("layer_norm_epsilon 1e-6", w, config_json(layer_norm_epsilon=1e-6),
                  "layer_norm_epsilon"))
    w4 = dict(w)
    w4["transformer.h.0.attn.q_proj.weight"] = np.zeros((C, C), np.float32)
    cases.append(("unexpected tensor", w4, None, "transformer.h.0.attn.q_proj.weight"))
    for what, ww, cfg, frag in cases:
        save_model(bad, ww, config=cfg)
        p = run([args.dumper, "logits", bad, tpath, str(B), str(T), os.path.join(d, "x")], None)
        ck.ok("import rejects %s" % what, p.returncode == 1 and frag in p.stderr,
              p.stderr.strip())
    # names without the transformer. prefix, no buffers, no lm_head
    plain = os.path.join(d, "plain")
    save_model(plain, {k[len("transformer."):]: v for k, v in w.items()}, extra=False)
    out = os.path.join(d, "logits_plain.f32")
    p = run([args.dumper, "logits", plain, tpath, str(B), str(T), out])
    if ck.ok("import without the transformer. prefix", p.returncode == 0, p.stderr.strip()):
        ck.rel("import without prefix: logits", c_logits(out), forward(w, tok), LOGITS_TOL)
    return w, tok, tpath, f32


LORA_CASES = [  # targets, r, alpha, rslora
    ("qkv,attn_proj,mlp_fc,mlp_proj", 4, 8, 0),
    ("qkv,mlp_proj", 2, 3, 1),
]


def peft_matches(target_modules, module):
    return any(module == t or module.endswith("." + t) for t in target_modules)


def adapters_from_peft(tensors):
    """PEFT names -> {module path: (A, B)} (module path with transformer.)."""
    ad = {}
    pre = "base_model.model."
    for name, a in tensors.items():
        assert name.startswith(pre), name
        for kind in ("lora_A", "lora_B"):
            suffix = "." + kind + ".weight"
            if name.endswith(suffix):
                mod = name[len(pre):-len(suffix)]
                pair = ad.setdefault(mod, [None, None])
                pair[0 if kind == "lora_A" else 1] = a
    return {k: tuple(v) for k, v in ad.items()}


def lora_run(args, d, model, tpath, case, i, h5=False):
    targets, r, alpha, rs = case
    run_dir = os.path.join(d, "run%d%s" % (i, "_h5" if h5 else ""))
    os.makedirs(run_dir, exist_ok=True)
    cmd = [args.dumper, "lora", model, tpath, str(B), str(T), run_dir, targets, str(r), str(alpha),
           str(rs)] + (["h5"] if h5 else [])
    p = run(cmd)
    return run_dir, p


def check_peft(ck, args, d, w, tok, tpath, model):
    for i, case in enumerate(LORA_CASES):
        targets, r, alpha, rs = case
        run_dir, p = lora_run(args, d, model, tpath, case, i)
        if not ck.ok("peft %d: hf_dump lora runs" % i, p.returncode == 0, p.stderr.strip()):
            continue
        out = os.path.join(d, "peft%d" % i)
        p = run([args.codexctl, "export", os.path.join(run_dir, "final.h5"), "--format", "peft",
                 "-o", out])
        if not ck.ok("peft %d: codexctl export runs" % i, p.returncode == 0, p.stderr.strip()):
            continue
        with open(os.path.join(out, "adapter_config.json")) as f:
            cfg = json.load(f)
        ck.ok("peft %d: adapter_config fields" % i,
              cfg["peft_type"] == "LORA" and cfg["task_type"] == "CAUSAL_LM" and cfg["r"] == r
              and cfg["lora_alpha"] == alpha and bool(cfg["use_rslora"]) == bool(rs)
              and cfg["fan_in_fan_out"] is True and cfg["bias"] == "none"
              and cfg["base_model_name_or_path"] == model
              and cfg["lora_dropout"] == 0.05, json.dumps(cfg, sort_keys=True))
        tensors, _ = read_safetensors(os.path.join(out, "adapter_model.safetensors"))
        ad = adapters_from_peft(tensors)
        want = {"transformer.h.%d.%s" % (l, TARGET_MODULE[t]) for l in range(L)
                for t in targets.split(",")}
        ck.ok("peft %d: adapted modules" % i, set(ad) == want, "%s" % sorted(ad))
        all_modules = {"transformer.h.%d.%s" % (l, m) for l in range(L) for m in CONV1D}
        chosen = {m for m in all_modules if peft_matches(cfg["target_modules"], m)}
        ck.ok("peft %d: target_modules select exactly those" % i, chosen == want,
              "%s" % cfg["target_modules"])
        shapes_ok = all(A.shape == (r, MODULE_DIMS[m.split(".", 3)[3]][0]) and
                        Bm.shape == (MODULE_DIMS[m.split(".", 3)[3]][1], r)
                        for m, (A, Bm) in ad.items())
        ck.ok("peft %d: lora_A [r, in], lora_B [out, r]" % i, shapes_ok)
        scale = cfg["lora_alpha"] / (math.sqrt(cfg["r"]) if cfg["use_rslora"] else cfg["r"])
        # the comparison can fail: without the adapter the logits are far off
        ck.ok("peft %d: the adapter changes the logits" % i,
              not np.allclose(c_logits(os.path.join(run_dir, "logits.f32")), forward(w, tok),
                              rtol=0, atol=100 * LOGITS_TOL * np.abs(forward(w, tok)).max()))
        ck.rel("peft %d: PEFT-applied logits vs C unmerged" % i,
               c_logits(os.path.join(run_dir, "logits.f32")), forward(w, tok, ad, scale),
               LOGITS_TOL)


def check_merged_weights(ck, tag, merged, base_w, ad, scale):
    worst_ok = True
    for name, ref in base_w.items():
        if name not in merged:
            ck.ok("%s: %s present" % (tag, name), False)
            worst_ok = False
            continue
        ref = np.asarray(ref, np.float64)
        mod = name[:-len(".weight")]
        if mod in ad:
            A, Bm = ad[mod]
            ref = ref + scale * (np.asarray(Bm, np.float64) @ np.asarray(A, np.float64)).T
        c = merged[name]
        r = float(np.abs(c - ref).max() / max(np.abs(ref).max(), 1e-30)) if c.shape == ref.shape else 1.0
        if r > MERGE_TOL:
            ck.ok("%s: %s" % (tag, name), False, "rel %.3g" % r)
            worst_ok = False
    ck.ok("%s: every weight = base + s (B A)^T" % tag, worst_ok,
          "%d tensors, tol %g" % (len(base_w), MERGE_TOL))


def check_merged(ck, args, d, w, tok, tpath, model):
    # tokenizer files beside the base are carried along
    for fn in ("vocab.json", "merges.txt"):
        with open(os.path.join(model, fn), "w") as f:
            f.write("{}\n" if fn.endswith(".json") else "#version: 0.2\n")
    for i, case in enumerate(LORA_CASES):
        for h5 in (False, True):
            tag = "merged %d%s" % (i, " (h5 base)" if h5 else "")
            run_dir, p = lora_run(args, d, model, tpath, case, i + 10, h5)
            if not ck.ok("%s: hf_dump lora runs" % tag, p.returncode == 0, p.stderr.strip()):
                continue
            out = os.path.join(d, "merged%d%s" % (i, "_h5" if h5 else ""))
            p = run([args.codexctl, "export", run_dir, "--format", "merged", "-o", out])
            if not ck.ok("%s: codexctl export runs" % tag, p.returncode == 0, p.stderr.strip()):
                continue
            peft = os.path.join(d, "mpeft%d%s" % (i, "_h5" if h5 else ""))
            run([args.codexctl, "export", run_dir, "--format", "peft", "-o", peft])
            ad = adapters_from_peft(read_safetensors(os.path.join(peft,
                                                                  "adapter_model.safetensors"))[0])
            targets, r, alpha, rs = case
            scale = alpha / (math.sqrt(r) if rs else r)
            merged, meta = read_safetensors(os.path.join(out, "model.safetensors"))
            ck.ok("%s: HF names only, no extras" % tag, set(merged) == set(w),
                  "%s" % sorted(set(merged) ^ set(w))[:4])
            check_merged_weights(ck, tag, merged, w, ad, scale)
            ck.rel("%s: merged logits vs C unmerged" % tag, forward(merged, tok),
                   c_logits(os.path.join(run_dir, "logits.f32")), LOGITS_TOL)
            with open(os.path.join(out, "config.json")) as f:
                cfg = json.load(f)
            ck.ok("%s: config.json" % tag,
                  all(cfg.get(k) == v for k, v in (("n_layer", L), ("n_head", NH), ("n_embd", C),
                                                   ("vocab_size", V), ("n_positions", P),
                                                   ("model_type", "gpt2"))), json.dumps(cfg))
            if not h5:
                ck.ok("%s: config.json copied from the base" % tag,
                      cfg.get("bos_token_id") == V - 1)
                ck.ok("%s: tokenizer files copied" % tag,
                      all(os.path.exists(os.path.join(out, fn))
                          for fn in ("vocab.json", "merges.txt")))
            # the merged folder is itself a model our importer reads
            lo = os.path.join(d, "lo%d%d.f32" % (i, h5))
            p = run([args.dumper, "logits", out, tpath, str(B), str(T), lo])
            if ck.ok("%s: re-import of the merged folder" % tag, p.returncode == 0,
                     p.stderr.strip()):
                ck.rel("%s: re-imported logits" % tag, c_logits(lo),
                       c_logits(os.path.join(run_dir, "logits.f32")), LOGITS_TOL)
    # errors: peft of nothing, bad format
    p = run([args.codexctl, "export", d, "--format", "peft", "-o", os.path.join(d, "none")], None)
    ck.ok("export of a non-run directory exits 2", p.returncode == 2 and "final.h5" in p.stderr,
          p.stderr.strip())
    p = run([args.codexctl, "export", d, "--format", "gguf", "-o", os.path.join(d, "none")], None)
    ck.ok("export --format gguf exits 2", p.returncode == 2, p.stderr.strip())


TRAIN_JOB = """job: {name: %(name)s, runs_dir: %(runs)s}
model: {n_layer: 2, n_head: 2, n_embd: 32, max_seq_len: 32}
data: {seq_len: 16}
train: {global_batch_size: 4, micro_batch_size: 2, max_steps: %(steps)d, lr: %(lr)s, min_lr: 0.0}
lora: {enabled: %(lora)s, r: 4, alpha: 8, targets: [qkv, mlp_proj]}
eval: {every_steps: 0}
safety: {enabled: false}
"""


def check_train(ck, args, d):
    """Real codex-train output: a LoRA run from random weights exported
    merged must equal the base rebuilt from the seed plus the adapter. The
    base comes from a full fine-tuning run of the same seed with lr 1e-30
    (its weights do not move), exported merged too."""
    runs = os.path.join(d, "runs")
    env = dict(os.environ, CU_BLAS_NO_REEXEC="1")
    for name, lora, steps, lr in (("lorarun", "true", 3, "0.001"), ("fullrun", "false", 1, "1.0e-30")):
        job = os.path.join(d, name + ".yaml")
        with open(job, "w") as f:
            f.write(TRAIN_JOB % dict(name=name, runs=runs, lora=lora, steps=steps, lr=lr))
        p = subprocess.run([args.codex_train, job], capture_output=True, text=True, env=env)
        if not ck.ok("train: codex-train %s" % name, p.returncode == 0, p.stderr.strip()[-300:]):
            return
    outs = {}
    for what, src, fmt in (("merged", "lorarun", "merged"), ("base", "fullrun", "merged"),
                           ("peft", "lorarun", "peft")):
        out = os.path.join(d, "train_" + what)
        p = run([args.codexctl, "export", os.path.join(runs, src), "--format", fmt, "-o", out])
        if not ck.ok("train: export %s %s" % (src, fmt), p.returncode == 0, p.stderr.strip()):
            return
        outs[what] = out
    latest = os.path.join(runs, "lorarun", "checkpoints")
    with open(os.path.join(latest, "latest")) as f:
        ckpt = os.path.join(latest, f.read().strip())
    p = run([args.codexctl, "export", ckpt, "--format", "peft", "-o", os.path.join(d, "train_ck")])
    ck.ok("train: export of a checkpoint file", p.returncode == 0, p.stderr.strip())
    p = run([args.codexctl, "export", os.path.join(runs, "fullrun"), "--format", "peft", "-o",
             os.path.join(d, "train_x")], None)
    ck.ok("train: peft of a full fine-tuning run exits 2", p.returncode == 2, p.stderr.strip())
    merged = read_safetensors(os.path.join(outs["merged"], "model.safetensors"))[0]
    base = read_safetensors(os.path.join(outs["base"], "model.safetensors"))[0]
    ad = adapters_from_peft(read_safetensors(os.path.join(outs["peft"],
                                                          "adapter_model.safetensors"))[0])
    ck.ok("train: adapters trained (B nonzero)", all(np.abs(b).max() > 0 for _, b in ad.values()))
    # biases moved by ~1e-30 in the lr-1e-30 run: compare with an absolute floor
    base = {k: np.where(np.abs(v) < 1e-20, 0.0, v) for k, v in base.items()}
    merged = {k: np.where(np.abs(v) < 1e-20, 0.0, v) for k, v in merged.items()}
    check_merged_weights(ck, "train", merged, base, ad, 8 / 4)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dumper", required=True)
    ap.add_argument("--codexctl")
    ap.add_argument("--codex-train")
    ap.add_argument("--keep", help="work in this directory and keep it")
    ap.add_argument("modes", nargs="+", choices=["import", "peft", "merged", "train"])
    args = ap.parse_args()
    if set(args.modes) & {"peft", "merged", "train"} and not args.codexctl:
        print("hf_gpt2_ref.py: peft, merged and train need --codexctl", file=sys.stderr)
        return 2
    if "train" in args.modes and not args.codex_train:
        print("hf_gpt2_ref.py: train needs --codex-train", file=sys.stderr)
        return 2
    ck = Checks()
    with tempfile.TemporaryDirectory(prefix="cu_hf_") as tmp:
        d = args.keep or tmp
        os.makedirs(d, exist_ok=True)
        if set(args.modes) & {"import", "peft", "merged"}:  # the fixtures come from import
            w, tok, tpath, model = check_import(ck, args, d)
        if "peft" in args.modes:
            check_peft(ck, args, d, w, tok, tpath, model)
        if "merged" in args.modes:
            check_merged(ck, args, d, w, tok, tpath, model)
        if "train" in args.modes:
            check_train(ck, args, d)
    print("%d passed, %d failed" % (ck.passed, ck.failed))
    return 1 if ck.failed else 0


if __name__ == "__main__":
    sys.exit(main())
