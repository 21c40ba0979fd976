#!/usr/bin/env python3
"""The Hugging Face families built on Llama's block, against a float64
PyTorch reference written here from their published architectures (CTest
label `reference`; there is no `transformers` package):

  qwen2         Qwen2 / Qwen2.5-Coder: q/k/v projections with biases (added
                before the rotary embedding), rope_theta 1e6, tied head,
                use_sliding_window false (its sliding_window field present
                and ignored); BF16 weights sharded in two files
  llama3        Llama 3.1 / 3.2: rope_scaling {rope_type llama3, factor 8,
                low_freq_factor 1, high_freq_factor 4,
                original_max_position_embeddings 8192} with rope_theta 5e5,
                so the head's four frequencies fall in all three bands
                (kept, blended, divided by factor); head_dim explicit; tied
  llama_linear  CodeLlama / DeepSeek-Coder-style rope_scaling {type linear,
                factor 4}
  mistral       Mistral: sliding_window 5, so a position attends to itself
                and the 4 before it (HF's mask: i - W < j <= i), in the
                batch (T = 40) and in generate's KV cache past the window
  mistral_head_dim
                Mistral NeMo's layout: head_dim 12 given explicitly where
                hidden_size / num_attention_heads is 8, so q_proj is
                (48, 32), o_proj (32, 48); no sliding window
  starcoder2    StarCoder2: LayerNorm with bias (norm_epsilon 1e-5), biases
                on every linear (use_bias), a GELU-tanh MLP of c_fc and
                c_proj, GQA with rotary embeddings (rope_theta ~1e6), a
                sliding window of 7, tied head

For each family a tiny random model is written in its HF layout
(config.json with the family's field names, BF16 safetensors, a
Llama-3-style tokenizer.json), and:
  import    our logits within 1e-4 of the reference's on the BF16 values
  grads     LoRA on every linear: the summed loss within 1e-5 and every
            LoRA gradient within 1e-3 (hf_dump grads vs autograd)
  peft      `codexctl export --format peft`: PEFT's names and shapes; the
            adapter applied by PEFT's formula (W + s B A) gives our
            unmerged logits within 1e-4
  merged    `codexctl export --format merged`: every weight = base + s B A
            (biases copied), the base's config.json, and the folder
            re-imports to the same logits
  generate  `codexctl generate MERGED --temperature 0 --max-new-tokens 32`
            prints the prompt and the reference's greedy continuation of
            BOS + the prompt's ids on the merged weights
Plus `refuse`: folders that are not supported are refused by codex-train
with exit 2 and a message naming the field.

Agreement: max|c - ref| / max|ref| per tensor or logits array.
Exit: 0 all checks passed, 1 a check failed, 2 bad usage, 77 no PyTorch.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hf_gpt2_ref as hf  # noqa: E402  (safetensors I/O, Checks, run; exits 77 without torch)
import hf_tokenizer_json as tj  # noqa: E402  (a Llama-3-style tokenizer.json and its oracle)

np, torch = hf.np, hf.torch

LOGITS_TOL = 1e-4
GRAD_TOL = 1e-3
LOSS_TOL = 1e-5
MERGE_TOL = 1e-5
B, T = 2, 40
N_NEW = 32
L, NH, NKV, C, F = 2, 4, 2, 32, 48


def head_size(cfg):
    """HF's head_dim: the config's when given, else hidden / heads."""
    return cfg.get("head_dim") or C // NH


def modules_of(cfg):
    """Module path in a block -> (in, out) of its linear."""
    hs = head_size(cfg)
    Q, KV = NH * hs, NKV * hs
    attn = {"self_attn.q_proj": (C, Q), "self_attn.k_proj": (C, KV),
            "self_attn.v_proj": (C, KV), "self_attn.o_proj": (Q, C)}
    if cfg["model_type"] == "starcoder2":
        return dict(attn, **{"mlp.c_fc": (C, F), "mlp.c_proj": (F, C)})
    return dict(attn, **{"mlp.gate_proj": (C, F), "mlp.up_proj": (C, F),
                         "mlp.down_proj": (F, C)})


def targets_of(cfg):
    """Every linear of the blocks, as comma-separated target names."""
    return ",".join(m.split(".")[1] for m in modules_of(cfg))
PROMPT = "def add(a, b):"


def family_config(name, vocab, bos, eos):
    """config.json as the family's save_pretrained writes it (the fields its
    HF config class has, with the values of a released model where they do
    not set the size)."""
    common = {"hidden_size": C, "num_hidden_layers": L, "num_attention_heads": NH,
              "num_key_value_heads": NKV, "intermediate_size": F, "vocab_size": vocab,
              "hidden_act": "silu", "initializer_range": 0.02, "use_cache": True,
              "bos_token_id": bos, "eos_token_id": eos, "attention_dropout": 0.0,
              "torch_dtype": "bfloat16", "transformers_version": "4.46.0"}
    if name == "qwen2":
        c = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
             "max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
             "rope_scaling": None, "tie_word_embeddings": True, "use_sliding_window": False,
             "sliding_window": 32768, "max_window_layers": L}
    elif name == "llama3":
        c = {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
             "max_position_embeddings": 131072, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
             "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                              "high_freq_factor": 4.0,
                              "original_max_position_embeddings": 8192},
             "head_dim": C // NH, "tie_word_embeddings": True, "attention_bias": False,
             "mlp_bias": False, "pretraining_tp": 1}
    elif name == "llama_linear":
        c = {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
             "max_position_embeddings": 16384, "rms_norm_eps": 1e-6, "rope_theta": 100000.0,
             "rope_scaling": {"type": "linear", "factor": 4.0}, "tie_word_embeddings": False,
             "attention_bias": False, "mlp_bias": False, "pretraining_tp": 1}
    elif name == "mistral":
        c = {"architectures": ["MistralForCausalLM"], "model_type": "mistral",
             "max_position_embeddings": 32768, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
             "sliding_window": 5, "head_dim": C // NH, "tie_word_embeddings": False}
    elif name == "mistral_head_dim":
        c = {"architectures": ["MistralForCausalLM"], "model_type": "mistral",
             "max_position_embeddings": 1024000, "rms_norm_eps": 1e-5, "rope_theta": 1000000.0,
             "sliding_window": None, "head_dim": 12, "tie_word_embeddings": False}
    elif name == "starcoder2":
        c = {"architectures": ["Starcoder2ForCausalLM"], "model_type": "starcoder2",
             "max_position_embeddings": 16384, "norm_epsilon": 1e-5,
             "rope_theta": 999999.4420358813, "sliding_window": 7, "use_bias": True,
             "tie_word_embeddings": True, "residual_dropout": 0.0, "embedding_dropout": 0.0,
             "rope_scaling": None}
    else:
        raise KeyError(name)
    c.update(common)
    if name == "starcoder2":
        c["hidden_act"] = "gelu_pytorch_tanh"
    return c


def make_weights(seed, cfg):
    g = np.random.default_rng(seed)
    V = cfg["vocab_size"]
    sc2 = cfg["model_type"] == "starcoder2"
    w = {"model.embed_tokens.weight": g.normal(0, 0.5, (V, C)),
         "model.norm.weight": 1 + g.normal(0, 0.1, C)}
    if sc2:
        w["model.norm.bias"] = g.normal(0, 0.1, C)
    if not cfg["tie_word_embeddings"]:
        w["lm_head.weight"] = g.normal(0, 0.3, (V, C))
    for l in range(L):
        h = "model.layers.%d." % l
        for norm in ("input_layernorm", "post_attention_layernorm"):
            w[h + norm + ".weight"] = 1 + g.normal(0, 0.1, C)
            if sc2:
                w[h + norm + ".bias"] = g.normal(0, 0.1, C)
        for m, (i, o) in modules_of(cfg).items():
            w[h + m + ".weight"] = g.normal(0, 0.25, (o, i))
            if sc2:
                w[h + m + ".bias"] = g.normal(0, 0.2, o)
        if cfg["model_type"] == "qwen2":
            for m in ("q_proj", "k_proj", "v_proj"):
                w[h + "self_attn.%s.bias" % m] = g.normal(0, 0.3,
                                                          modules_of(cfg)["self_attn." + m][1])
    return {k: v.astype(np.float32) for k, v in w.items()}


def bf16_values(w):
    return {k: (hf.bf16_round(v).astype(np.uint32) << 16).view("<f4").astype(np.float64)
            for k, v in w.items()}


# ------------------------------------------------------------- the model


def inv_freq(cfg):
    """Rotary frequencies after rope_scaling, from HF's definitions: linear
    divides every one by factor; llama3 divides those whose wavelength
    exceeds original_max / low_freq_factor, keeps those under original_max /
    high_freq_factor and blends the band between linearly in
    original_max / wavelength."""
    hs = head_size(cfg)
    f = cfg["rope_theta"] ** (-np.arange(0, hs, 2, dtype=np.float64) / hs)
    rs = cfg.get("rope_scaling") or {}
    kind = rs.get("rope_type", rs.get("type", "default"))
    if kind == "linear":
        return f / rs["factor"]
    if kind != "llama3":
        return f
    out = []
    old, lo, hi, k = (rs["original_max_position_embeddings"], rs["low_freq_factor"],
                      rs["high_freq_factor"], rs["factor"])
    for x in f:
        wl = 2 * math.pi / x
        if wl < old / hi:
            out.append(x)
        elif wl > old / lo:
            out.append(x / k)
        else:
            s = (old / wl - lo) / (hi - lo)
            out.append((1 - s) * x / k + s * x)
    return np.array(out)


def rope(x, cfg):
    """x (B, heads, T, head size), HF's rotate_half layout."""
    ang = torch.arange(x.shape[2], dtype=torch.float64)[:, None] * \
        torch.from_numpy(inv_freq(cfg))[None, :]
    emb = torch.cat([ang, ang], dim=-1)
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return x * emb.cos() + torch.cat([-x2, x1], dim=-1) * emb.sin()


def rms_norm(x, w, eps):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * w


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def gelu_tanh(x):
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def attention_mask(n, window):
    """True where position i may not attend to j: j > i, and with a
    sliding window W also j <= i - W."""
    i = torch.arange(n)[:, None]
    j = torch.arange(n)[None, :]
    masked = j > i
    if window:
        masked = masked | (j <= i - window)
    return masked


def forward(cfg, w, tokens, adapters=None, scale=0.0):
    """Logits (B*T, V) in float64. w: HF names -> arrays or tensors;
    adapters: module path -> (A (r, in), B (out, r))."""
    t = {k: v if torch.is_tensor(v) else torch.from_numpy(np.asarray(v, np.float64))
         for k, v in w.items()}
    ad = {k: tuple(x if torch.is_tensor(x) else torch.from_numpy(np.asarray(x, np.float64))
                   for x in v) for k, v in (adapters or {}).items()}
    sc2 = cfg["model_type"] == "starcoder2"
    window = cfg.get("sliding_window") if cfg["model_type"] in ("mistral", "starcoder2") else None

    def norm(x, name):
        if sc2:
            return layer_norm(x, t[name + ".weight"], t[name + ".bias"], cfg["norm_epsilon"])
        return rms_norm(x, t[name + ".weight"], cfg["rms_norm_eps"])

    def linear(x, m):
        y = x @ t[m + ".weight"].t()
        if m + ".bias" in t:
            y = y + t[m + ".bias"]
        if m in ad:
            A, Bm = ad[m]
            y = y + scale * ((x @ A.t()) @ Bm.t())
        return y

    nb, nt = tokens.shape
    x = t["model.embed_tokens.weight"][torch.from_numpy(tokens.astype(np.int64))]
    mask = attention_mask(nt, window)
    HS = head_size(cfg)
    for l in range(L):
        h = "model.layers.%d." % l
        a = norm(x, h + "input_layernorm")
        q = linear(a, h + "self_attn.q_proj").view(nb, nt, NH, HS).transpose(1, 2)
        k = linear(a, h + "self_attn.k_proj").view(nb, nt, NKV, HS).transpose(1, 2)
        v = linear(a, h + "self_attn.v_proj").view(nb, nt, NKV, HS).transpose(1, 2)
        q, k = rope(q, cfg), rope(k, cfg)
        k = k.repeat_interleave(NH // NKV, dim=1)
        v = v.repeat_interleave(NH // NKV, dim=1)
        s = (q @ k.transpose(-2, -1) / math.sqrt(HS)).masked_fill(mask, float("-inf"))
        att = (torch.softmax(s, dim=-1) @ v).transpose(1, 2).reshape(nb, nt, NH * HS)
        x = x + linear(att, h + "self_attn.o_proj")
        m = norm(x, h + "post_attention_layernorm")
        if sc2:
            x = x + linear(gelu_tanh(linear(m, h + "mlp.c_fc")), h + "mlp.c_proj")
        else:
            g = torch.nn.functional.silu(linear(m, h + "mlp.gate_proj"))
            x = x + linear(g * linear(m, h + "mlp.up_proj"), h + "mlp.down_proj")
    x = norm(x, "model.norm")
    head = t["lm_head.weight"] if "lm_head.weight" in t else t["model.embed_tokens.weight"]
    return (x @ head.t()).reshape(nb * nt, -1)


def logits_np(cfg, w, tok, ad=None, scale=0.0):
    with torch.no_grad():
        return forward(cfg, w, tok, ad, scale).numpy()


def greedy(cfg, w, ids, n_new, eos):
    """The reference's greedy continuation of ids (stops before eos), and
    whether it is certain: False when it stopped at a near tie (top two
    logits within 1e-4 relative), where float32 may pick the other."""
    out = []
    for _ in range(n_new):
        z = logits_np(cfg, w, np.array([ids + out]))[-1]
        top = np.sort(z)[-2:]
        if top[1] - top[0] < 1e-4 * np.abs(z).max():
            return out, False
        nxt = int(np.argmax(z))
        if nxt == eos:
            break
        out.append(nxt)
    return out, True


# ---------------------------------------------------------------- folders


class Family:
    def __init__(self, name, d, tok_doc, oracle, specials):
        self.name, self.dir = name, os.path.join(d, name)
        self.oracle, self.specials = oracle, specials
        self.bos, self.eos = specials["<|begin_of_text|>"], specials["<|end_of_text|>"]
        vocab = len(oracle.model_vocab) + len(specials)
        self.cfg = family_config(name, vocab, self.bos, self.eos)
        self.w32 = make_weights(sum(map(ord, name)), self.cfg)
        self.w = bf16_values(self.w32)  # what the BF16 files hold
        self.V = vocab
        os.makedirs(self.dir)
        self.save(self.dir, tok_doc, sharded=name == "qwen2")
        g = np.random.default_rng(5)
        self.tok = g.integers(0, vocab, (B, T)).astype("<i4")
        self.tpath = os.path.join(d, name + "_tokens.i32")
        self.tok.tofile(self.tpath)

    def save(self, d, tok_doc, sharded):
        names = sorted(self.w32)
        if sharded:
            parts = {"model-00001-of-00002.safetensors": names[:len(names) // 2],
                     "model-00002-of-00002.safetensors": names[len(names) // 2:]}
            for fn, ns in parts.items():
                hf.write_safetensors(os.path.join(d, fn), {n: self.w32[n] for n in ns}, "BF16",
                                     {"format": "pt"})
            with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
                json.dump({"metadata": {"total_size": 0},
                           "weight_map": {n: fn for fn, ns in parts.items() for n in ns}}, f)
        else:
            hf.write_safetensors(os.path.join(d, "model.safetensors"), self.w32, "BF16",
                                 {"format": "pt"})
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(self.cfg, f, indent=2)
        with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
            json.dump(tok_doc, f, ensure_ascii=False)
        with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
            json.dump({"add_bos_token": True, "add_eos_token": False,
                       "bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>",
                       "tokenizer_class": "PreTrainedTokenizerFast"}, f, indent=2)

    def c_logits(self, path):
        return np.fromfile(path, dtype="<f4").reshape(B * T, self.V)


def make_tokenizer():
    corpus = [("def add_%d(a, b):\n    return a + b * %d\n\n" % (i, i)).encode()
              for i in range(40)]
    corpus.append(b"int main(void) { return 0; }\n")
    doc, oracle = tj.llama3_tokenizer(corpus, 120)
    specials = {a["content"]: a["id"] for a in doc["added_tokens"]}
    return doc, oracle, specials


def rel_err(c, ref):
    return float(np.abs(c - ref).max() / max(np.abs(ref).max(), 1e-30))


# ------------------------------------------------------------------ checks


def check_import(ck, args, fam, d):
    out = os.path.join(d, fam.name + "_logits.f32")
    p = hf.run([args.dumper, "logits", fam.dir, fam.tpath, str(B), str(T), out])
    if ck.ok("%s import: hf_dump runs" % fam.name, p.returncode == 0, p.stderr.strip()):
        ck.rel("%s import: BF16 logits vs PyTorch" % fam.name, fam.c_logits(out),
               logits_np(fam.cfg, fam.w, fam.tok), LOGITS_TOL)


def read_c_grads(out_dir):
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


def check_grads(ck, args, fam, d):
    what = "%s grads all-linear" % fam.name
    out = os.path.join(d, fam.name + "_grads")
    os.makedirs(out)
    r, alpha = 4, 8.0
    p = hf.run([args.dumper, "grads", fam.dir, fam.tpath, str(B), str(T), out,
                targets_of(fam.cfg), str(r), str(alpha), "0"])
    if not ck.ok("%s: hf_dump runs" % what, p.returncode == 0, p.stderr.strip()):
        return
    c = read_c_grads(out)
    params, ad = {}, {}
    for name, (val, _) in c.items():
        mod, kind = name.rsplit(".", 1)
        params[name] = torch.tensor(val, dtype=torch.float64, requires_grad=True)
        ad.setdefault("model." + mod, [None, None])[0 if kind == "lora_A" else 1] = params[name]
    logits = forward(fam.cfg, fam.w, fam.tok, {k: tuple(v) for k, v in ad.items()}, alpha / r)
    tgt = np.concatenate([fam.tok[:, 1:], np.full((B, 1), -100)], axis=1).reshape(-1)
    loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(tgt.astype(np.int64)),
                                             ignore_index=-100, reduction="sum")
    loss.backward()
    c_loss = float(p.stdout.split()[1])
    ck.ok("%s: loss" % what, abs(c_loss - loss.item()) <= LOSS_TOL * abs(loss.item()),
          "C %.9g ref %.9g" % (c_loss, loss.item()))
    worst, worst_name = 0.0, ""
    for name, (_, g) in c.items():
        e = rel_err(g, params[name].grad.numpy())
        if e > worst:
            worst, worst_name = e, name
    ck.ok("%s: every LoRA gradient (%d tensors)" % (what, len(c)),
          worst <= GRAD_TOL and len(c) == 2 * len(modules_of(fam.cfg)) * L,
          "worst rel %.3g at %s (tol %g)" % (worst, worst_name, GRAD_TOL))


def lora_run(args, fam, d, r, alpha):
    run_dir = os.path.join(d, fam.name + "_run")
    os.makedirs(run_dir)
    p = hf.run([args.dumper, "lora", fam.dir, fam.tpath, str(B), str(T), run_dir,
                targets_of(fam.cfg), str(r), str(alpha), "0"])
    return run_dir, p


def check_exports(ck, args, fam, d):
    """peft, merged and generate on one LoRA run (every linear adapted)."""
    r, alpha = 4, 8.0
    scale = alpha / r
    run_dir, p = lora_run(args, fam, d, r, alpha)
    if not ck.ok("%s: hf_dump lora runs" % fam.name, p.returncode == 0, p.stderr.strip()):
        return
    cl = fam.c_logits(os.path.join(run_dir, "logits.f32"))
    peft = os.path.join(d, fam.name + "_peft")
    p = hf.run([args.codexctl, "export", run_dir, "--format", "peft", "-o", peft])
    if not ck.ok("%s peft: codexctl export runs" % fam.name, p.returncode == 0, p.stderr.strip()):
        return
    with open(os.path.join(peft, "adapter_config.json")) as f:
        acfg = json.load(f)
    ck.ok("%s peft: adapter_config (LORA, r, alpha, fan_in_fan_out false, HF names)" % fam.name,
          acfg["peft_type"] == "LORA" and acfg["r"] == r and acfg["lora_alpha"] == alpha
          and acfg["fan_in_fan_out"] is False
          and sorted(acfg["target_modules"]) == sorted(targets_of(fam.cfg).split(",")),
          json.dumps(acfg, sort_keys=True)[:200])
    tensors, _ = hf.read_safetensors(os.path.join(peft, "adapter_model.safetensors"))
    ad = hf.adapters_from_peft(tensors)
    mods = modules_of(fam.cfg)
    want = {"model.layers.%d.%s" % (l, m) for l in range(L) for m in mods}
    shapes = all(ad[m][0].shape == (r, mods[m.split(".", 3)[3]][0]) and
                 ad[m][1].shape == (mods[m.split(".", 3)[3]][1], r) for m in want if m in ad)
    ck.ok("%s peft: PEFT module names, lora_A [r, in], lora_B [out, r]" % fam.name,
          set(ad) == want and shapes, "%s" % sorted(ad)[:2])
    base = logits_np(fam.cfg, fam.w, fam.tok)
    ck.ok("%s peft: the adapter changes the logits" % fam.name,
          rel_err(cl, base) > 100 * LOGITS_TOL)
    merged_ref = dict(fam.w)
    for m, (A, Bm) in ad.items():
        merged_ref[m + ".weight"] = fam.w[m + ".weight"] + scale * (Bm @ A)
    ck.rel("%s peft: W + s B A logits vs ours unmerged" % fam.name, cl,
           logits_np(fam.cfg, merged_ref, fam.tok), LOGITS_TOL)

    out = os.path.join(d, fam.name + "_merged")
    p = hf.run([args.codexctl, "export", run_dir, "--format", "merged", "-o", out])
    if not ck.ok("%s merged: codexctl export runs" % fam.name, p.returncode == 0,
                 p.stderr.strip()):
        return
    merged, _ = hf.read_safetensors(os.path.join(out, "model.safetensors"))
    ck.ok("%s merged: the family's HF tensor names, no extras" % fam.name,
          set(merged) == set(fam.w), "%s" % sorted(set(merged) ^ set(fam.w))[:4])
    worst, worst_name = 0.0, ""
    for name, ref in merged_ref.items():
        e = rel_err(merged[name], ref) if name in merged and merged[name].shape == ref.shape \
            else 1.0
        if e > worst:
            worst, worst_name = e, name
    ck.ok("%s merged: every weight = base + s B A (biases as they were)" % fam.name,
          worst <= MERGE_TOL, "worst rel %.3g at %s" % (worst, worst_name))
    with open(os.path.join(out, "config.json")) as f:
        mcfg = json.load(f)
    ck.ok("%s merged: config.json is the base's (torch_dtype float32)" % fam.name,
          {k: v for k, v in mcfg.items() if k != "torch_dtype"} ==
          {k: v for k, v in fam.cfg.items() if k != "torch_dtype"}
          and mcfg["torch_dtype"] == "float32", json.dumps(mcfg)[:160])
    lo = os.path.join(d, fam.name + "_merged_logits.f32")
    p = hf.run([args.dumper, "logits", out, fam.tpath, str(B), str(T), lo])
    if ck.ok("%s merged: re-import runs" % fam.name, p.returncode == 0, p.stderr.strip()):
        ck.rel("%s merged: re-imported logits vs ours unmerged" % fam.name, fam.c_logits(lo), cl,
               LOGITS_TOL)
    check_generate(ck, args, fam, out, merged)


def decode(fam, ids):
    byte_of = {c: b for b, c in tj.ref.bytes_to_unicode().items()}
    token = {i: t for t, i in fam.oracle.model_vocab.items()}
    specials = set(fam.specials.values())
    token.update({i: t for t, i in fam.specials.items()})
    return b"".join(token[i].encode() if i in specials else bytes(byte_of[c] for c in token[i])
                    for i in ids)


def check_generate(ck, args, fam, folder, merged_w):
    cmd = [args.codexctl, "generate", folder, "--prompt", PROMPT, "--max-new-tokens", str(N_NEW),
           "--temperature", "0"]
    g = subprocess.run(cmd, capture_output=True)
    if not ck.ok("%s generate: codexctl generate runs" % fam.name, g.returncode == 0,
                 g.stderr.decode(errors="replace").strip()):
        return
    prompt_ids = [fam.bos] + fam.oracle.encode(PROMPT.encode())
    ids, certain = greedy(fam.cfg, merged_w, prompt_ids, N_NEW, fam.eos)
    want = PROMPT.encode() + decode(fam, ids) + (b"\n" if certain else b"")
    got = g.stdout
    past = len(prompt_ids) + len(ids)
    ok = got == want if certain else got.startswith(want)
    ck.ok("%s generate: greedy %d tokens = the reference's (%d positions%s)" %
          (fam.name, len(ids), past,
           ", past the window %d" % fam.cfg["sliding_window"]
           if fam.name in ("mistral", "starcoder2") else ""),
          ok and (len(ids) == N_NEW or not certain and len(ids) >= 16),
          "%r vs %r" % (got[:60], want[:60]))


# ----------------------------------------------------------------- refusals


def check_refusals(ck, args, d, fam):
    """codex-train on a folder whose config.json is not supported: exit 2,
    the message names the field."""
    cases = [("model_type gemma", {"model_type": "gemma"}, "model_type"),
             ("rope_type yarn", {"rope_scaling": {"rope_type": "yarn", "factor": 4.0}},
              "rope_type"),
             ("quantization_config", {"quantization_config": {"quant_method": "gptq", "bits": 4}},
              "quantization_config"),
             ("num_local_experts", {"num_local_experts": 8, "num_experts_per_tok": 2},
              "num_local_experts"),
             ("qwen2 use_sliding_window", {"use_sliding_window": True}, "use_sliding_window")]
    for i, (what, over, field) in enumerate(cases):
        bad = os.path.join(d, "refused%d" % i)
        os.makedirs(bad)
        cfg = dict(fam.cfg)
        cfg.update(over)
        hf.write_safetensors(os.path.join(bad, "model.safetensors"), fam.w32, "BF16")
        with open(os.path.join(bad, "config.json"), "w") as f:
            json.dump(cfg, f)
        job = os.path.join(d, "refused%d.yaml" % i)
        with open(job, "w") as f:
            f.write("job:\n  name: refused%d\n  runs_dir: %s\nmodel:\n  init: %s\n"
                    "data:\n  source: random\ntrain:\n  max_steps: 1\n"
                    % (i, os.path.join(d, "runs"), bad))
        p = subprocess.run([args.train, job], capture_output=True, text=True)
        ck.ok("refuse %s: codex-train exits 2 naming %s" % (what, field),
              p.returncode == 2 and field in p.stderr, "exit %d: %s" % (p.returncode,
                                                                         p.stderr.strip()[-200:]))


FAMILIES = ["qwen2", "llama3", "llama_linear", "mistral", "mistral_head_dim", "starcoder2"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dumper", required=True)
    ap.add_argument("--codexctl", required=True)
    ap.add_argument("--train", required=True)
    ap.add_argument("--keep", help="work in this directory and keep it")
    ap.add_argument("families", nargs="+", choices=FAMILIES + ["refuse"])
    args = ap.parse_args()
    ck = hf.Checks()
    doc, oracle, specials = make_tokenizer()
    with tempfile.TemporaryDirectory(prefix="cu_family_") as tmp:
        d = args.keep or tmp
        os.makedirs(d, exist_ok=True)
        for name in args.families:
            if name == "refuse":
                check_refusals(ck, args, d, Family("qwen2", os.path.join(d, "r"), doc, oracle,
                                                   specials))
                continue
            fam = Family(name, d, doc, oracle, specials)
            check_import(ck, args, fam, d)
            check_grads(ck, args, fam, d)
            check_exports(ck, args, fam, d)
    print("%d passed, %d failed" % (ck.passed, ck.failed))
    return 1 if ck.failed else 0


if __name__ == "__main__":
    sys.exit(main())
