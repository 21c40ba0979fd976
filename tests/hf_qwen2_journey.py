#!/usr/bin/env python3
"""A Hugging Face Qwen2.5-Coder-style folder, start to finish (CTest
hf_qwen2_journey, label reference): hf_journey.py's journey for the Qwen2
family.

The folder is made here: a tiny Qwen2 (q/k/v biases, tied head, rope_theta
1e6, use_sliding_window false; BF16 weights sharded in two files) and a
Qwen2-style tokenizer.json (NFC normalizer, Qwen2's Split pattern, FIM
tokens as non-special added tokens, <|endoftext|> / <|im_start|> /
<|im_end|> special; tests/reference/hf_tokenizer_families.py), whose
vocabulary is config.json's vocab_size. Then:

  1. codexctl prepare --tokenizer-path FOLDER: every document is the
     oracle's ids + <|endoftext|> (no BOS: Qwen2 has none), the FIM markers
     written in the corpus are their token ids;
  2. codex-train, LoRA all-linear on 2 ranks: the loss falls, the banner
     and job.yaml show the folder's model;
  3. codexctl export --format peft and --format merged (config.json the
     base's: model_type qwen2, Qwen2ForCausalLM);
  4. codexctl eval of the run over the job's own validation windows equals
     its final validation loss; the merged folder's eval equals the run's;
  5. lora.init_from the PEFT export and model.init the merged folder both
     start where the run ended.

Exit: 0 all checks passed, 1 a check failed, 77 no PyTorch / h5dump.
"""
import argparse
import json
import os
import re
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "reference"))
sys.dont_write_bytecode = True

import hf_journey as hj  # noqa: E402  (exits 77 without torch or h5dump)
from checks import Checks  # noqa: E402
from e2e import STEP_RE, mpirun, run  # noqa: E402
import hf_family_ref as fam  # noqa: E402
import hf_tokenizer_families as tf  # noqa: E402
import hf_tokenizer_json as tj  # noqa: E402

hf = fam.hf
np = hf.np
SRC = hj.SRC


def fim_doc(k):
    return ("<|fim_prefix|>def scale_%d(x):\n    <|fim_suffix|>\n    return y\n"
            "<|fim_middle|>y = x * %d\n" % (k, k % 7 + 2))


def make_folder(d, docs):
    """The pre-trained Qwen2 folder; returns (BF16 weights, config, oracle,
    special ids)."""
    os.makedirs(d)
    corpus = [t.encode() for t in docs.values()]
    vocab, merges = tf.train(corpus, tf.qwen2_pieces, 200)
    doc = tf.tokenizer_doc("qwen2", vocab, merges)
    ids = {a["content"]: a["id"] for a in doc["added_tokens"]}
    V = len(vocab) + len(doc["added_tokens"])
    eos = ids["<|endoftext|>"]
    cfg = fam.family_config("qwen2", V, eos, eos)
    w = fam.make_weights(17, cfg)
    names = sorted(w)
    parts = {"model-00001-of-00002.safetensors": names[:len(names) // 2],
             "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    for fn, ns in parts.items():
        hf.write_safetensors(os.path.join(d, fn), {n: w[n] for n in ns}, "BF16", {"format": "pt"})
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as fh:
        json.dump({"metadata": {"total_size": 0},
                   "weight_map": {n: fn for fn, ns in parts.items() for n in ns}}, fh)
    with open(os.path.join(d, "config.json"), "w") as fh:
        json.dump(cfg, fh, indent=2)
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as fh:
        json.dump(doc, fh, ensure_ascii=False)
    with open(os.path.join(d, "tokenizer_config.json"), "w") as fh:
        json.dump({"add_bos_token": False, "add_prefix_space": False,
                   "eos_token": "<|endoftext|>", "pad_token": "<|endoftext|>",
                   "tokenizer_class": "Qwen2Tokenizer", "model_max_length": 32768}, fh, indent=2)
    oracle = tj.AddedOracle(tf.Oracle(vocab, merges, tf.qwen2_pieces), doc["added_tokens"])
    return fam.bf16_values(w), cfg, oracle, ids


def write_corpus(tmp):
    corpus, val, docs = hj.write_corpus(tmp)
    for k in range(6):  # FIM layouts, written as text in the files
        p = os.path.join(corpus, "fim%02d.py" % k)
        docs[p] = fim_doc(k)
        with open(p, "w") as fh:
            fh.write(docs[p])
    p = os.path.join(val, "fim_held.py")
    docs[p] = fim_doc(11) + "# caf\u00e9 r\u00e9sum\u00e9\n"
    with open(p, "w") as fh:
        fh.write(docs[p])
    return corpus, val, docs


def check_dataset(f, data, docs, oracle, ids, V):
    eos = ids["<|endoftext|>"]
    f.check(hj.h5_attr(data, "tokenizer_vocab_size") == str(V),
            f"the dataset's vocabulary is the tokenizer's {V} (= config.json vocab_size)")
    f.check(hj.h5_attr(data, "eot_id") == str(eos), f"eot_id is <|endoftext|> = {eos}")
    fim = {ids[t] for t in tf.FIM}
    for split, pick in (("val", lambda p: "/val/" in p), ("train", lambda p: "/corpus/" in p)):
        want = []
        for p in sorted(docs):
            if pick(p):
                want += oracle.encode(docs[p].encode()) + [eos]
        got = hj.h5_ints(data, f"/{split}/tokens")
        first = next((i for i, (x, y) in enumerate(zip(got or [], want)) if x != y), None)
        f.check(got == want, f"/{split}/tokens = the oracle's ids + <|endoftext|> per document "
                f"({len(want)} ids; first difference at {first}, got {len(got or [])})")
        n_fim = sum(1 for i in (got or []) if i in fim)
        f.check(n_fim >= 3, f"/{split}/tokens: the FIM markers are their token ids ({n_fim})")


def main():
    ap = argparse.ArgumentParser()
    for k in ("train", "ctl", "tok_encode", "dumper"):
        ap.add_argument("--" + k.replace("_", "-"), required=True)
    ap.add_argument("--keep", help="work in this directory and keep it")
    a = ap.parse_args()
    for k in ("train", "ctl", "tok_encode", "dumper"):
        setattr(a, k, os.path.abspath(getattr(a, k)))
    f = Checks()
    with tempfile.TemporaryDirectory(prefix="cu_qwen2_") as tmp:
        tmp = a.keep or tmp
        os.makedirs(tmp, exist_ok=True)
        journey(a, f, tmp)
    return f.summary()


def journey(a, f, tmp):
    corpus, val, docs = write_corpus(tmp)
    hfdir = os.path.join(tmp, "hf")
    base_w, cfg, oracle, ids = make_folder(hfdir, docs)
    V = cfg["vocab_size"]
    data = os.path.join(tmp, "data.h5")
    p = run([a.ctl, "prepare", "-o", data, "--tokenizer-path", hfdir, "--val", val, corpus, val],
            cwd=SRC)
    if not f.check(p.returncode == 0, f"codexctl prepare with the Qwen2 tokenizer.json "
                   f"(exit {p.returncode})"):
        return
    check_dataset(f, data, docs, oracle, ids, V)
    steps = 30
    job = os.path.join(tmp, "job.yaml")
    with open(job, "w") as fh:
        fh.write(f"""job:
  name: journey
  runs_dir: {tmp}/runs
model:
  init: {hfdir}
  max_seq_len: 64
tokenizer:
  kind: gpt2
data:
  source: hdf5
  path: {data}
  seq_len: 32
lora:
  enabled: true
  targets: [all-linear]
  r: 8
  alpha: 16
train:
  global_batch_size: 8
  micro_batch_size: 2
  max_steps: {steps}
  lr: 1e-2
  warmup_steps: 0
  log_every: 1
eval:
  every_steps: {steps}
  batches: 2
""")
    p = mpirun(2, [a.train, job], cwd=SRC, screen=True)
    f.check(p.returncode == 0, f"codex-train on 2 ranks exits 0 (got {p.returncode})")
    ls = [float(m.group(3)) for m in (STEP_RE.match(l) for l in p.stdout.split("\n")) if m]
    f.check(len(ls) == steps, f"{steps} steps logged ({len(ls)})")
    if len(ls) >= 8:
        first, last = sum(ls[:5]) / 5, sum(ls[-5:]) / 5
        print(f"measured: loss first 5 steps {first:.4f}, last 5 {last:.4f}")
        f.check(last < first - 0.5, f"the loss falls ({first:.3f} -> {last:.3f})")
    f.check(re.search(rf"^model llama L=2 H=4 \(2 KV\) C=32 V={V} \|", p.stdout, re.M),
            "the banner shows the model config.json describes")
    run_dir = os.path.join(tmp, "runs", "journey")
    peft, merged = os.path.join(tmp, "peft"), os.path.join(tmp, "merged")
    q = run([a.ctl, "export", run_dir, "--format", "peft", "-o", peft], cwd=SRC)
    q2 = run([a.ctl, "export", run_dir, "--format", "merged", "-o", merged], cwd=SRC)
    if not f.check(q.returncode == 0 and q2.returncode == 0, "export --format peft and merged"):
        return
    mcfg = json.load(open(os.path.join(merged, "config.json")))
    f.check(mcfg.get("model_type") == "qwen2" and mcfg.get("architectures") == ["Qwen2ForCausalLM"]
            and mcfg.get("use_sliding_window") is False and mcfg.get("tie_word_embeddings") is True,
            "merged config.json is the base's Qwen2 config")
    mw, _ = hf.read_safetensors(os.path.join(merged, "model.safetensors"))
    f.check(set(mw) == set(base_w) and "model.layers.0.self_attn.q_proj.bias" in mw
            and "lm_head.weight" not in mw,
            "merged weights: Qwen2's names, q/k/v biases, no lm_head (tied)")

    def evaluate(what, *extra):
        e = run([a.ctl, "eval", what, "--data", data, "--json", "--seq-len", "32"] + list(extra),
                cwd=SRC)
        try:
            return json.loads(e.stdout)["loss"]
        except (ValueError, KeyError):
            return None

    job_windows = evaluate(run_dir, "--max-windows", str(2 * 8))
    job_val = [o["val_loss"] for o in hj.metrics(run_dir) if "val_loss" in o]
    if f.check(job_val and job_windows is not None, "eval on the run, the job's windows"):
        rel = abs(job_windows - job_val[-1]) / job_val[-1]
        print(f"measured: job's final val loss {job_val[-1]}, eval on the run {job_windows} "
              f"(rel {rel:.1e})")
        f.check(rel < 5e-6, "eval on the run equals the job's final validation loss")
    ev = [evaluate(w, "--max-windows", "0") for w in (run_dir, merged)]
    if f.check(None not in ev, "eval of the whole val split on the run and the merged folder"):
        rel = abs(ev[0] - ev[1]) / ev[0]
        print(f"measured: eval run {ev[0]:.7f}, merged {ev[1]:.7f} (rel {rel:.1e})")
        f.check(rel < 1e-5, "eval: merged equals adapted within 1e-5")
    for name, over in (("cont", f"lora.init_from={peft}"), ("next", f"model.init={merged}")):
        p = mpirun(1, [a.train, job, over, f"job.name={name}", "train.max_steps=1",
                       "train.lr=1e-30", "eval.every_steps=1"], cwd=SRC)
        got = [o["val_loss"] for o in hj.metrics(os.path.join(tmp, "runs", name))
               if "val_loss" in o] if p.returncode == 0 else []
        f.check(got and job_val and abs(got[0] - job_val[-1]) <= 5e-6 * job_val[-1],
                f"{over.split('=')[0]} ({name}) starts at the run's final validation loss "
                f"({got[:1]} vs {job_val[-1:]}, exit {p.returncode})")


if __name__ == "__main__":
    sys.exit(main())
