#!/usr/bin/env python3
"""End-to-end checks of the bf16 cache of an fp32/fp16 base (issue 14,
io/base_cache.h): the real codex-train under mpirun, LoRA in
train.precision bf16 over a tiny Llama written three ways with the same
values (every value is exact in bf16 and fp16): fp32 sharded with an
index.json, fp16, and bf16.

usage: base_cache_e2e.py CODEX_TRAIN

- the fp32 base is converted once (event base_cache, action converted), a
  second job reuses it (action reused); the fp16 base gets its own cache;
  losses and final.h5 tensors are bit-identical to the job on the bf16 base
  and to a job with CU_BASE_CACHE=off (each rank's private copy);
- a corrupt cache is rebuilt (action rebuilt);
- 2 ranks of one job: one conversion;
- two jobs at once on one source: the first holds the lock (test hook
  CU_TEST_BASE_CACHE_HOLD) until the second says it waits; one conversion,
  the second reuses it;
- GPT-2 (Conv1D weights stored (in, out)): an fp32 base and a bf16 base are
  each converted once (the cache holds the transposes, lent in place) and
  train bit for bit as with CU_BASE_CACHE=off.
"""
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

from checks import Checks
from e2e import env, metric_losses, mpirun

C, H, KV, FFN, L, V = 32, 4, 2, 48, 2, 260


def tensors(seed):
    rng = np.random.default_rng(seed)
    hd = C // H
    shapes = {"model.embed_tokens.weight": (V, C), "model.norm.weight": (C,),
              "lm_head.weight": (V, C)}
    for i in range(L):
        p = f"model.layers.{i}."
        shapes.update({p + "input_layernorm.weight": (C,),
                       p + "post_attention_layernorm.weight": (C,),
                       p + "self_attn.q_proj.weight": (C, C),
                       p + "self_attn.k_proj.weight": (KV * hd, C),
                       p + "self_attn.v_proj.weight": (KV * hd, C),
                       p + "self_attn.o_proj.weight": (C, C),
                       p + "mlp.gate_proj.weight": (FFN, C), p + "mlp.up_proj.weight": (FFN, C),
                       p + "mlp.down_proj.weight": (C, FFN)})
    out = {}
    for name, shape in sorted(shapes.items()):
        x = rng.standard_normal(shape).astype(np.float32) * 0.2
        if name.endswith("norm.weight"):
            x = 1.0 + 0.1 * x
        out[name] = bf16_exact(x)
    return out


def bf16_exact(x):
    # bf16-exact (8 significant bits) and within fp16's normal range
    x = (x.view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32)
    x[np.abs(x) < 2.0 ** -14] = 0.0
    return x


def gpt2_tensors(seed, positions=64):
    rng = np.random.default_rng(seed)
    shapes = {"transformer.wte.weight": (V, C), "transformer.wpe.weight": (positions, C),
              "transformer.ln_f.weight": (C,), "transformer.ln_f.bias": (C,)}
    for i in range(L):
        p = f"transformer.h.{i}."
        shapes.update({p + "ln_1.weight": (C,), p + "ln_1.bias": (C,),
                       p + "ln_2.weight": (C,), p + "ln_2.bias": (C,),
                       p + "attn.c_attn.weight": (C, 3 * C), p + "attn.c_attn.bias": (3 * C,),
                       p + "attn.c_proj.weight": (C, C), p + "attn.c_proj.bias": (C,),
                       p + "mlp.c_fc.weight": (C, 4 * C), p + "mlp.c_fc.bias": (4 * C,),
                       p + "mlp.c_proj.weight": (4 * C, C), p + "mlp.c_proj.bias": (C,)})
    out = {}
    for name, shape in sorted(shapes.items()):
        x = rng.standard_normal(shape).astype(np.float32) * 0.2
        if ".ln_" in name and name.endswith(".weight"):
            x = 1.0 + 0.1 * x
        out[name] = bf16_exact(x)
    return out


def write_gpt2_base(d, ts, dtype):
    os.makedirs(d)
    cfg = {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "n_embd": C,
           "n_layer": L, "n_head": H, "vocab_size": V, "n_positions": 64, "n_ctx": 64,
           "layer_norm_epsilon": 1e-5, "activation_function": "gelu_new",
           "torch_dtype": {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}[dtype]}
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f)
    write_st(os.path.join(d, "model.safetensors"), ts, dtype)


def write_st(path, ts, dtype):
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name, x in ts.items():
        if dtype == "BF16":
            b = (x.view(np.uint32) >> 16).astype("<u2").tobytes()
        elif dtype == "F16":
            b = x.astype("<f2").tobytes()
        else:
            b = x.astype("<f4").tobytes()
        header[name] = {"dtype": dtype, "shape": list(x.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little") + h + b"".join(blobs))


def write_base(d, ts, dtype, shards=1):
    os.makedirs(d)
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": C,
           "num_hidden_layers": L, "num_attention_heads": H, "num_key_value_heads": KV,
           "intermediate_size": FFN, "vocab_size": V, "max_position_embeddings": 64,
           "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "hidden_act": "silu",
           "tie_word_embeddings": False,
           "torch_dtype": {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}[dtype]}
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f)
    if shards == 1:
        write_st(os.path.join(d, "model.safetensors"), ts, dtype)
        return
    names = list(ts)
    wmap = {}
    for s in range(shards):
        fn = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = {n: ts[n] for n in names[s::shards]}
        write_st(os.path.join(d, fn), part, dtype)
        wmap.update({n: fn for n in part})
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": wmap}, f)


def job_args(runs, name, base):
    return [f"job.runs_dir={runs}", f"job.name={name}", f"model.init={base}",
            "model.max_seq_len=32", "data.source=random", "data.seq_len=16", "train.global_batch_size=2",
            "train.micro_batch_size=1", "train.max_steps=6", "train.log_every=1",
            "train.lr=1e-2", "train.warmup_steps=0", "train.precision=bf16",
            "lora.enabled=true", "lora.targets=[all-linear]", "lora.r=4", "lora.alpha=8",
            "eval.every_steps=0"]


def cache_events(run_dir):
    out = []
    with open(os.path.join(run_dir, "events.jsonl")) as fh:
        for line in fh:
            o = json.loads(line)
            if o["type"] == "base_cache":
                out.append(o)
    return out


class Jobs:
    def __init__(self, exe, tmp, f):
        self.exe, self.tmp, self.f = exe, tmp, f
        self.runs = os.path.join(tmp, "runs")
        self.yaml = os.path.join(tmp, "job.yaml")
        with open(self.yaml, "w") as fh:
            fh.write("job:\n  name: x\n")

    def run(self, name, base, n=1, extra_env=None):
        e = dict(os.environ)
        e.pop("CU_BASE_CACHE", None)
        e.update(extra_env or {})
        old = dict(os.environ)
        os.environ.clear()
        os.environ.update(e)
        try:
            p = mpirun(n, [self.exe, self.yaml] + job_args(self.runs, name, base), cwd=self.tmp)
        finally:
            os.environ.clear()
            os.environ.update(old)
        self.f.check(p.returncode == 0, f"{name}: exits 0 (got {p.returncode})")
        return p

    def same(self, a, b):
        ra, rb = os.path.join(self.runs, a), os.path.join(self.runs, b)
        la, lb = metric_losses(ra), metric_losses(rb)
        self.f.check(len(la) == 6 and la == lb, f"{b}: the same loss at every step as {a}")
        h5diff = shutil.which("h5diff")
        if h5diff:
            d = subprocess.run([h5diff, os.path.join(ra, "final.h5"), os.path.join(rb, "final.h5"),
                                "/tensors"], capture_output=True, text=True)
            self.f.check(d.returncode == 0, f"{b}: final.h5 tensors bit-identical to {a}")

    def action(self, name):
        ev = cache_events(os.path.join(self.runs, name))
        return ev[0].get("action") if len(ev) == 1 else f"{len(ev)} base_cache events"


def main():
    exe = os.path.abspath(sys.argv[1])
    f = Checks()
    tmp = tempfile.mkdtemp(prefix="cu_base_cache_e2e_")
    try:
        ts = tensors(5)
        b32, b16, bbf = (os.path.join(tmp, x) for x in ("fp32", "fp16", "bf16"))
        write_base(b32, ts, "F32", shards=2)
        write_base(b16, ts, "F16")
        write_base(bbf, ts, "BF16")
        j = Jobs(exe, tmp, f)

        j.run("bf16", bbf)
        f.check(j.action("bf16") == "0 base_cache events", "a bf16 base needs no cache")
        p = j.run("fp32_first", os.path.join(b32, "model.safetensors.index.json"))
        f.check(j.action("fp32_first") == "converted", "the fp32 base is converted")
        f.check("base cache: converting" in p.stdout, "the conversion shows its progress")
        j.same("bf16", "fp32_first")
        p = j.run("fp32_again", b32)
        f.check(j.action("fp32_again") == "reused", "a second job reuses the cache")
        f.check("converting" not in p.stdout, "and converts nothing")
        j.same("bf16", "fp32_again")
        caches = glob.glob(os.path.join(j.runs, ".base-cache", "*", "model.safetensors"))
        f.check(len(caches) == 1, f"one cache file under runs/.base-cache ({len(caches)})")
        j.run("fp16", b16)
        f.check(j.action("fp16") == "converted", "the fp16 base gets its own cache")
        j.same("bf16", "fp16")
        j.run("fp32_off", b32, extra_env={"CU_BASE_CACHE": "off"})
        f.check(j.action("fp32_off") == "0 base_cache events", "CU_BASE_CACHE=off: no cache")
        j.same("bf16", "fp32_off")

        # a corrupt cache is rebuilt
        with open(caches[0], "r+b") as fh:
            fh.seek(-10, os.SEEK_END)
            c = fh.read(1)
            fh.seek(-10, os.SEEK_END)
            fh.write(bytes([c[0] ^ 0x40]))
        p = j.run("fp32_corrupt", b32)
        f.check(j.action("fp32_corrupt") == "rebuilt", "a corrupt cache is rebuilt")
        f.check("is not usable" in p.stdout and "sha256" in p.stdout,
                "and the job says why")
        j.same("bf16", "fp32_corrupt")

        # 2 ranks of one job: one conversion
        c2 = os.path.join(tmp, "cache2")
        p = j.run("two_ranks", b16, n=2, extra_env={"CU_BASE_CACHE": c2})
        f.check(p.stdout.count("base cache: converted") == 1,
                f"2 ranks: one conversion ({p.stdout.count('base cache: converted')})")
        f.check(j.action("two_ranks") == "converted", "2 ranks: the event says converted")
        f.check(len(glob.glob(os.path.join(c2, "*", "model.safetensors*"))) == 1,
                "2 ranks: one file in the cache")

        # two jobs at once: the second waits for the first's lock
        c3 = os.path.join(tmp, "cache3")
        release = os.path.join(tmp, "release")
        e = env()
        e.pop("CU_BASE_CACHE", None)
        outs = [open(os.path.join(tmp, f"job{i}.out"), "w+") for i in range(2)]
        ea = dict(e, CU_BASE_CACHE=c3, CU_TEST_BASE_CACHE_HOLD=release)
        eb = dict(e, CU_BASE_CACHE=c3)
        cmd = ["mpirun", "-n", "1", "--oversubscribe", exe, j.yaml]
        pa = subprocess.Popen(cmd + job_args(j.runs, "held", b32), cwd=tmp, env=ea,
                              stdout=outs[0], stderr=subprocess.STDOUT)
        deadline = time.time() + 300  # hang guards only
        while not os.path.exists(release + ".held") and time.time() < deadline:
            time.sleep(0.05)
        f.check(os.path.exists(release + ".held"), "the first job holds the lock")
        pb = subprocess.Popen(cmd + job_args(j.runs, "waiter", b32), cwd=tmp, env=eb,
                              stdout=outs[1], stderr=subprocess.STDOUT)
        waited = False
        while not waited and time.time() < deadline and pb.poll() is None:
            with open(os.path.join(tmp, "job1.out")) as fh:
                waited = "base cache: waiting for" in fh.read()
            time.sleep(0.05)
        f.check(waited, "the second job waits for the lock")
        open(release, "w").close()
        ra, rb = pa.wait(timeout=600), pb.wait(timeout=600)
        text = []
        for o in outs:
            o.seek(0)
            text.append(o.read())
            o.close()
        sys.stdout.write(text[0][-1500:] + text[1][-1500:])
        f.check(ra == 0 and rb == 0, f"both jobs exit 0 ({ra}, {rb})")
        f.check(j.action("held") == "converted" and j.action("waiter") == "reused",
                f"one conversion: {j.action('held')}, then {j.action('waiter')}")
        f.check(sum(t.count("base cache: converted") for t in text) == 1, "converted once")
        j.same("bf16", "held")
        j.same("bf16", "waiter")

        # GPT-2: Conv1D weights transposed into the cache, lent from it
        gts = gpt2_tensors(7)
        g32, gbf = os.path.join(tmp, "gpt2_fp32"), os.path.join(tmp, "gpt2_bf16")
        write_gpt2_base(g32, gts, "F32")
        write_gpt2_base(gbf, gts, "BF16")
        j.run("gpt2_off", g32, extra_env={"CU_BASE_CACHE": "off"})
        f.check(j.action("gpt2_off") == "0 base_cache events", "GPT-2, cache off: no cache")
        j.run("gpt2_first", g32)
        f.check(j.action("gpt2_first") == "converted", "GPT-2 fp32: converted")
        j.same("gpt2_off", "gpt2_first")
        j.run("gpt2_again", g32, n=2)
        f.check(j.action("gpt2_again") == "reused", "GPT-2 fp32: a second job (2 ranks) reuses it")
        j.run("gpt2_bf16", gbf)
        f.check(j.action("gpt2_bf16") == "converted",
                "GPT-2 bf16: converted too (its Conv1D weights are transposed)")
        j.same("gpt2_off", "gpt2_bf16")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return f.summary()


if __name__ == "__main__":
    sys.exit(main())
