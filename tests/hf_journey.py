#!/usr/bin/env python3
"""A user's journey with a pre-trained Hugging Face Llama, end to end
(CTest `hf_llama_journey`, label `reference`: it needs PyTorch).

The test makes the folder a user would download, then runs the commands
docs/export.md's "A Hugging Face Llama, start to finish" lists:

  hf/  model-0000{1,2}-of-00002.safetensors (BF16) + model.safetensors.index.json,
       config.json (model_type llama, 4 query heads, 2 key/value heads, an
       untied head, vocab_size = the tokenizer's), tokenizer.json (Llama-3
       style: byte-level BPE learned from the corpus, Llama-3's Split
       pattern, ignore_merges, <|begin_of_text|> <|end_of_text|> <|eot_id|>),
       tokenizer_config.json (add_bos_token, bos_token, eos_token)
  codexctl prepare -o data.h5 --tokenizer-path hf --val val/ corpus/ val/
  mpirun -n 2 codex-train job.yaml          (model.init: hf, tokenizer from it)
  codexctl export runs/j --format peft -o peft
  codexctl export runs/j --format merged -o merged
  codexctl generate / eval on runs/j and on merged

Asserted: the dataset's ids are what the tokenizer.json gives (a Python
oracle of the same tokenizer) framed as docs/formats.md says (BOS, text,
EOS per document), with the tokenizer's hash and vocabulary; the byte
tokenizer and a context longer than config.json's are refused by name; the
job takes the architecture, sizes and tokenizer.path from the folder and
the loss falls; generate prints exactly the prompt plus PyTorch's greedy
continuation of BOS + the prompt's ids, decoded by the oracle, on the run
and on the merged folder; eval of the run's windows equals the job's final
validation loss, eval of the merged folder the run's (1e-5), the base
folder's is higher; the merged folder (exported into a folder with an
earlier model's leftovers) has the base's config.json with the dtype it
was written in and the base's tokenizer files, its weights are base +
s B A of the PEFT adapter (1e-5) and its logits in PyTorch equal the C
model's (1e-4 relative); as the next job's model.init, or the adapter as
lora.init_from, it starts at the run's final validation loss.

usage: hf_journey.py --train EXE --ctl EXE --tok-encode EXE --dumper EXE
Exit: 0 passed, 1 a check failed, 77 PyTorch or h5dump missing. The GPT-2
BPE files are not needed: the tokenizer is learned from the test's corpus.
"""
import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(HERE)  # commands run in the repository, as a user's do
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "reference"))
sys.dont_write_bytecode = True

from checks import Checks  # noqa: E402
from e2e import STEP_RE, mpirun, run, screen_lines  # noqa: E402

try:
    import torch  # noqa: F401
except ImportError:
    print("PyTorch is not installed for %s: skipping" % sys.executable)
    sys.exit(77)
if not shutil.which("h5dump"):
    print("h5dump (hdf5-tools) is not installed: skipping")
    sys.exit(77)

import hf_gpt2_ref as hf  # noqa: E402
import hf_llama_ref as llama  # noqa: E402
import hf_tokenizer_json as tj  # noqa: E402

np = hf.np

# A small code corpus: functions in Python and C with a few recurring
# shapes, so LoRA on a frozen random base has something to learn.
NAMES = ["total", "count", "value", "index", "result", "buffer", "length", "offset"]


def py_doc(k):
    a, b = NAMES[k % 8], NAMES[(k * 3 + 1) % 8]
    return "".join(
        "def add_%s_%d(%s, %s):\n    return %s + %s * %d\n\n" % (a, i, a, b, a, b, i % 5)
        for i in range(k, k + 12))


def c_doc(k):
    a, b = NAMES[k % 8], NAMES[(k * 5 + 2) % 8]
    return "".join(
        "static int add_%s_%d(int %s, int %s) {\n    return %s + %s * %d;\n}\n\n"
        % (a, i, a, b, a, b, i % 5) for i in range(k, k + 10))


def write_corpus(tmp):
    corpus, val = os.path.join(tmp, "corpus"), os.path.join(tmp, "val")
    os.makedirs(corpus)
    os.makedirs(val)
    docs = {}
    for k in range(12):
        docs[os.path.join(corpus, "m%02d.py" % k)] = py_doc(k)
        docs[os.path.join(corpus, "s%02d.c" % k)] = c_doc(k)
    docs[os.path.join(val, "held.py")] = py_doc(20) + py_doc(30)
    docs[os.path.join(val, "held.c")] = c_doc(25)
    for p, text in docs.items():
        with open(p, "w") as fh:
            fh.write(text)
    return corpus, val, docs


def make_folder(d, docs):
    """The pre-trained model folder; returns (weights, tokenizer oracle,
    special ids by name)."""
    os.makedirs(d)
    doc, oracle = tj.llama3_tokenizer([t.encode() for t in docs.values()], 300)
    specials = {a["content"]: a["id"] for a in doc["added_tokens"]}
    vocab = len(oracle.model_vocab) + len(specials)
    llama.set_dims(L=2, NH=4, NKV=2, C=32, F=64, V=vocab, P=2048)
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as fh:
        json.dump(doc, fh, ensure_ascii=False)
    with open(os.path.join(d, "tokenizer_config.json"), "w") as fh:
        json.dump({"add_bos_token": True, "add_eos_token": False,
                   "bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>",
                   "tokenizer_class": "PreTrainedTokenizerFast",
                   "model_max_length": 2048}, fh, indent=2)
    w = llama.make_weights(11)
    cfg = llama.config_json(bos_token_id=specials["<|begin_of_text|>"],
                            eos_token_id=specials["<|end_of_text|>"], torch_dtype="bfloat16")
    with open(os.path.join(d, "config.json"), "w") as fh:
        json.dump(cfg, fh, indent=2)
    names = sorted(w)
    parts = {"model-00001-of-00002.safetensors": names[:len(names) // 2],
             "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    for fn, ns in parts.items():
        hf.write_safetensors(os.path.join(d, fn), {n: w[n] for n in ns}, "BF16", {"format": "pt"})
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as fh:
        json.dump({"metadata": {"total_size": 0},
                   "weight_map": {n: fn for fn, ns in parts.items() for n in ns}}, fh)
    return llama.bf16_values(w), oracle, specials


def h5_attr(path, name):
    out = subprocess.run(["h5dump", "-a", "/" + name, path], capture_output=True,
                         text=True).stdout
    m = re.search(r"\(0\):\s*(\"[^\"]*\"|[-0-9.e+]+)", out)
    return None if not m else m.group(1).strip('"')


def h5_ints(path, dataset):
    out = subprocess.run(["h5dump", "-y", "-w", "0", "-d", dataset, path], capture_output=True,
                         text=True).stdout
    m = re.search(r"DATA \{(.*?)\}", out, re.S)
    return [int(x) for x in re.findall(r"\d+", m.group(1))] if m else None


def decode(oracle, specials, ids):
    """Ids -> bytes as the tokenizer.json decodes them: byte-level tokens
    through the inverse of bytes_to_unicode, special tokens as their text."""
    byte_of = {c: b for b, c in tj.ref.bytes_to_unicode().items()}
    token = {i: t for t, i in oracle.model_vocab.items()}
    token.update({i: t for t, i in specials.items()})
    out = b""
    for i in ids:
        out += token[i].encode() if i in specials.values() else bytes(byte_of[c] for c in token[i])
    return out


def torch_greedy(weights, ids, n_new, eos):
    """Greedy continuation of ids by the PyTorch model, stopping before eos;
    and whether it is certain: False when it stopped early at a near tie
    (top two logits within 1e-4 relative), where float32 may choose the
    other, so only the ids before it are known."""
    w = {k: np.asarray(v, np.float64) for k, v in weights.items()}
    out = []
    for _ in range(n_new):
        seq = ids + out
        llama.set_dims(B=1, T=len(seq))
        z = llama.logits_np(w, np.array([seq], dtype="<i4"))[-1]
        top = np.sort(z)[-2:]
        if top[1] - top[0] < 1e-4 * np.abs(z).max():
            llama.set_dims(B=2, T=8)
            return out, False
        nxt = int(np.argmax(z))
        if nxt == eos:
            break
        out.append(nxt)
    llama.set_dims(B=2, T=8)
    return out, True


def framed(oracle, texts, bos, eos):
    ids = []
    for t in texts:
        ids += [bos] + oracle.encode(t.encode()) + [eos]
    return ids


def st_header(path):
    """A safetensors file's JSON header."""
    with open(path, "rb") as fh:
        n = int.from_bytes(fh.read(8), "little")
        return json.loads(fh.read(n))


def metrics(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as fh:
        return [json.loads(line) for line in fh]


def val_losses(stdout):
    return [float(m.group(1)) for m in
            (re.search(r"^eval\s+\d+ \| val loss ([0-9.]+)", l) for l in screen_lines(stdout))
            if m]


def check_dataset(a, f, tmp, hfdir, data, docs, oracle, specials):
    bos, eos = specials["<|begin_of_text|>"], specials["<|end_of_text|>"]
    h = subprocess.run([a.tok_encode, "--dir", hfdir, "--hash"], capture_output=True,
                       text=True).stdout.strip()
    f.check(h5_attr(data, "tokenizer_sha256") == h and len(h) == 64,
            "the dataset's tokenizer_sha256 is the folder's tokenizer.json hash")
    f.check(h5_attr(data, "tokenizer_vocab_size") == str(llama.V),
            f"the dataset's vocabulary is the tokenizer's {llama.V} (= config.json vocab_size)")
    f.check(h5_attr(data, "eot_id") == str(eos), f"eot_id is eos_token <|end_of_text|> = {eos}")
    for split, pick in (("val", lambda p: "/val/" in p), ("train", lambda p: "/corpus/" in p)):
        want = framed(oracle, [docs[p] for p in sorted(docs) if pick(p)], bos, eos)
        got = h5_ints(data, f"/{split}/tokens")
        first = next((i for i, (x, y) in enumerate(zip(got or [], want)) if x != y), None)
        f.check(got == want, f"/{split}/tokens = <|begin_of_text|> + the oracle's ids + "
                f"<|end_of_text|> per document ({len(want)} ids; first difference at {first}, "
                f"got {len(got or [])} ids)")
        if split == "val":
            print(f"measured: val starts {got[:8] if got else None}, oracle {want[:8]}")


def main():
    ap = argparse.ArgumentParser()
    for k in ("train", "ctl", "tok_encode", "dumper"):
        ap.add_argument("--" + k.replace("_", "-"), required=True)
    ap.add_argument("--keep", help="work in this directory and keep it")
    a = ap.parse_args()
    for k in ("train", "ctl", "tok_encode", "dumper"):
        setattr(a, k, os.path.abspath(getattr(a, k)))
    f = Checks()
    with tempfile.TemporaryDirectory(prefix="cu_journey_") as tmp:
        tmp = a.keep or tmp
        os.makedirs(tmp, exist_ok=True)
        journey(a, f, tmp)
    return f.summary()


def journey(a, f, tmp):
    corpus, val, docs = write_corpus(tmp)
    hfdir = os.path.join(tmp, "hf")
    base_w, oracle, specials = make_folder(hfdir, docs)
    print(f"measured: vocabulary {llama.V} ({len(oracle.model_vocab)} BPE + {len(specials)} "
          f"special), {len(docs)} documents")
    # 1. prepare with the folder's tokenizer.json (no vocab.json/merges.txt there)
    data = os.path.join(tmp, "data.h5")
    p = run([a.ctl, "prepare", "-o", data, "--tokenizer-path", hfdir, "--val", val, corpus, val],
            cwd=SRC)
    if not f.check(p.returncode == 0, f"codexctl prepare with the folder's tokenizer.json "
                   f"(exit {p.returncode})"):
        return
    check_dataset(a, f, tmp, hfdir, data, docs, oracle, specials)
    # 2. LoRA on 2 ranks, model.init the folder; the arch comes from config.json
    steps = 40
    job = os.path.join(tmp, "job.yaml")
    with open(job, "w") as fh:
        fh.write(f"""job:
  name: journey
  runs_dir: {tmp}/runs
model:
  init: {hfdir}
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
    # left at the byte tokenizer, the job is refused before anything is written
    p = mpirun(2, [a.train, job, "tokenizer.kind=byte"], cwd=SRC)
    f.check(p.returncode == 2 and "tokenizer.kind is byte" in p.stderr and hfdir in p.stderr and
            not os.path.exists(os.path.join(tmp, "runs", "journey")),
            f"tokenizer.kind byte on the folder: exit 2 naming it (got {p.returncode})")
    p = mpirun(2, [a.train, job, "model.max_seq_len=4096"], cwd=SRC)
    f.check(p.returncode == 2 and "max_position_embeddings 2048" in p.stderr and
            "set model.max_seq_len to at most 2048" in p.stderr,
            f"a context longer than config.json's: exit 2 naming the key (got {p.returncode})")
    p = mpirun(2, [a.train, job], cwd=SRC, screen=True)
    f.check(p.returncode == 0, f"codex-train on 2 ranks exits 0 (got {p.returncode})")
    ls = [float(m.group(3)) for m in (STEP_RE.match(l) for l in p.stdout.split("\n")) if m]
    f.check(len(ls) == steps, f"{steps} steps logged ({len(ls)})")
    if len(ls) >= 8:
        first, last = sum(ls[:5]) / 5, sum(ls[-5:]) / 5
        print(f"measured: loss first 5 steps {first:.4f}, last 5 {last:.4f}")
        f.check(last < first - 0.5, f"the loss falls ({first:.3f} -> {last:.3f})")
    vl = val_losses(p.stdout)
    f.check(len(vl) == 1, f"one validation at the last step ({vl})")
    f.check(re.search(rf"^model llama L=2 H=4 \(2 KV\) C=32 V={llama.V} \|", p.stdout, re.M),
            "the banner shows the model config.json describes (llama, 2 KV heads)")
    run_dir = os.path.join(tmp, "runs", "journey")
    jy = open(os.path.join(run_dir, "job.yaml")).read() if os.path.isfile(
        os.path.join(run_dir, "job.yaml")) else ""
    f.check(re.search(r"arch: llama", jy) and re.search(r"n_kv_head: 2", jy) and
            re.search(rf"vocab_size: {llama.V}\b", jy),
            "job.yaml: arch llama, n_kv_head 2 and the vocabulary from config.json")
    f.check(re.search(r"^tokenizer:\n  kind: gpt2\n  path: %s$" % re.escape(hfdir), jy, re.M),
            "job.yaml: tokenizer.path is the model.init folder (not given in job.yaml)")
    # 3. export
    peft, merged = os.path.join(tmp, "peft"), os.path.join(tmp, "merged")
    q = run([a.ctl, "export", run_dir, "--format", "peft", "-o", peft], cwd=SRC)
    f.check(q.returncode == 0, "export --format peft")
    # merged/ held an earlier (sharded, GPT-2-style) model: its tokenizer.json
    # would stay, and its index would be read instead of model.safetensors,
    # so the export must not leave them
    os.makedirs(merged)
    for fn, text in (("vocab.json", '{"a": 0}'), ("merges.txt", "#version: 0.2\n"),
                     ("tokenizer.json", "{}"), ("special_tokens_map.json", "{}"),
                     ("model.safetensors.index.json", '{"weight_map": {}}')):
        with open(os.path.join(merged, fn), "w") as fh:
            fh.write(text)
    q2 = run([a.ctl, "export", run_dir, "--format", "merged", "-o", merged], cwd=SRC)
    f.check(q2.returncode == 0, "export --format merged")
    if q.returncode or q2.returncode:
        return
    for fn in ("tokenizer.json", "tokenizer_config.json", "config.json"):
        f.check(open(os.path.join(merged, fn), "rb").read() ==
                open(os.path.join(hfdir, fn), "rb").read() or fn == "config.json",
                f"merged folder has the base's {fn}")
    f.check(sorted(os.listdir(merged)) == ["config.json", "model.safetensors", "tokenizer.json",
                                           "tokenizer_config.json"],
            f"merged folder: no stale tokenizer or index files of an earlier model "
            f"({sorted(os.listdir(merged))})")
    # config.json: the base's, but its dtype is what the export wrote (the
    # base is BF16, the merged weights F32 unless --dtype bf16)
    merged16 = os.path.join(tmp, "merged16")
    q = run([a.ctl, "export", run_dir, "--format", "merged", "--dtype", "bf16", "-o", merged16],
            cwd=SRC)
    base_cfg = json.load(open(os.path.join(hfdir, "config.json")))
    for d, want in ((merged, ("float32", "F32")), (merged16, ("bfloat16", "BF16"))):
        cfg = json.load(open(os.path.join(d, "config.json"))) if q.returncode == 0 else {}
        dtypes = {t["dtype"] for k, t in st_header(os.path.join(d, "model.safetensors"))
                  .items() if k != "__metadata__"} if q.returncode == 0 else set()
        f.check(cfg.get("torch_dtype") == want[0] and dtypes == {want[1]} and
                {k: v for k, v in cfg.items() if k != "torch_dtype"} ==
                {k: v for k, v in base_cfg.items() if k != "torch_dtype"},
                f"{os.path.basename(d)}/config.json: the base's, torch_dtype {want[0]} as its "
                f"{dtypes} weights (got {cfg.get('torch_dtype')})")
    # 4. generate on the run and on the merged folder: the same greedy text,
    # and the text PyTorch's greedy continuation of <|begin_of_text|> +
    # the oracle's ids of the prompt decodes to
    prompt = "def add_total_3(total, count):"
    outs = []
    for what in (run_dir, merged):
        cmd = [a.ctl, "generate", what, "--prompt", prompt, "--max-new-tokens", "24",
               "--temperature", "0"]
        print("+", " ".join(cmd), flush=True)
        g = subprocess.run(cmd, cwd=SRC, capture_output=True)
        sys.stdout.write(g.stdout.decode(errors="replace") + g.stderr.decode(errors="replace"))
        outs.append(g.stdout if g.returncode == 0 else None)
        f.check(g.returncode == 0 and g.stdout.strip(), f"generate on {os.path.basename(what)}")
    f.check(outs[0] is not None and outs[0] == outs[1],
            "greedy generate prints the same text on the run and on the merged folder")
    mw, _ = hf.read_safetensors(os.path.join(merged, "model.safetensors"))
    bos, eos = specials["<|begin_of_text|>"], specials["<|end_of_text|>"]
    ids, certain = torch_greedy(mw, [bos] + oracle.encode(prompt.encode()), 24, eos)
    want = prompt.encode() + decode(oracle, specials, ids) + (b"\n" if certain else b"")
    print(f"measured: PyTorch greedy ids {ids}{'' if certain else ' (then a near tie)'}")
    f.check((certain or len(ids) >= 8) and
            (outs[0] == want if certain else (outs[0] or b"").startswith(want)),
            "generate prints the prompt and the decoded greedy continuation "
            "PyTorch computes from BOS + the prompt's ids (%r vs %r)" % (outs[0], want))
    # 5. eval: on the run, the windows the job evaluated (eval.batches x
    # global_batch_size of its val order) give its final validation loss;
    # on the whole val split, the run and the merged folder agree
    def evaluate(what, *extra):
        e = run([a.ctl, "eval", what, "--data", data, "--json", "--seq-len", "32"] + list(extra),
                cwd=SRC)
        try:
            return json.loads(e.stdout)["loss"]
        except (ValueError, KeyError):
            return None

    job_windows = evaluate(run_dir, "--max-windows", str(2 * 8))
    job_val = [o["val_loss"] for o in metrics(run_dir) if "val_loss" in o]
    if f.check(job_val and job_windows is not None, "eval on the run, the job's windows"):
        rel = abs(job_windows - job_val[-1]) / job_val[-1]
        print(f"measured: job's final val loss {job_val[-1]}, eval on the run {job_windows} "
              f"(rel {rel:.1e})")
        f.check(rel < 5e-6, "eval on the run equals the job's final validation loss "
                "(metrics.jsonl keeps 6 digits)")
    ev = [evaluate(what, "--max-windows", "0") for what in (run_dir, merged, hfdir)]
    if f.check(ev[2] is not None, "eval of the downloaded folder itself"):
        print(f"measured: val loss of the base folder {ev[2]:.4f}, of the run {ev[0]}")
        f.check(ev[0] is not None and ev[0] < ev[2] - 0.5, "the adapter lowered the val loss")
    ev = ev[:2]
    if f.check(None not in ev, "eval of the whole val split on the run and the merged folder"):
        rel = abs(ev[0] - ev[1]) / ev[0]
        print(f"measured: eval run {ev[0]:.7f}, merged {ev[1]:.7f} (rel {rel:.1e})")
        f.check(rel < 1e-5, "eval: merged equals adapted within 1e-5")
    # the merged folder as the next job's base (its tokenizer from it too):
    # untrained adapters (lr 1e-30) start at the run's final validation loss
    p = mpirun(1, [a.train, job, f"model.init={merged}", "job.name=next", "train.max_steps=1",
                   "train.lr=1e-30", "eval.every_steps=1"], cwd=SRC)
    nxt = [o["val_loss"] for o in metrics(os.path.join(tmp, "runs", "next")) if "val_loss" in o] \
        if p.returncode == 0 else []
    if f.check(nxt and job_val, f"a job on the merged folder runs (exit {p.returncode})"):
        rel = abs(nxt[0] - job_val[-1]) / job_val[-1]
        print(f"measured: next job on merged/ starts at val loss {nxt[0]}, the run ended at "
              f"{job_val[-1]} (rel {rel:.1e})")
        f.check(rel < 5e-6, "the merged folder as model.init starts where the run ended")
    # the PEFT adapter continued on the folder (lora.init_from): the same start
    p = mpirun(1, [a.train, job, f"lora.init_from={peft}", "job.name=cont", "train.max_steps=1",
                   "train.lr=1e-30", "eval.every_steps=1"], cwd=SRC)
    cont = [o["val_loss"] for o in metrics(os.path.join(tmp, "runs", "cont")) if "val_loss" in o] \
        if p.returncode == 0 else []
    f.check(cont and job_val and abs(cont[0] - job_val[-1]) <= 5e-6 * job_val[-1],
            f"lora.init_from the PEFT export starts at the run's final validation loss "
            f"({cont[:1]} vs {job_val[-1:]}, exit {p.returncode})")
    # 6. PyTorch: the merged weights are base + s B A; its logits equal C's
    ac = json.load(open(os.path.join(peft, "adapter_config.json")))
    ad = hf.adapters_from_peft(hf.read_safetensors(
        os.path.join(peft, "adapter_model.safetensors"))[0])
    scale = ac["lora_alpha"] / (math.sqrt(ac["r"]) if ac.get("use_rslora") else ac["r"])
    f.check(set(mw) == set(base_w), "merged: the base's tensor names, nothing else")
    worst = 0.0
    for name, b in base_w.items():
        ref = np.asarray(b, np.float64)
        mod = name[:-len(".weight")]
        if mod in ad:
            A, B = ad[mod]
            ref = ref + scale * (B @ A)
        got = mw.get(name)
        e = 1.0 if got is None or got.shape != ref.shape else \
            float(np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-30))
        worst = max(worst, e)
    print(f"measured: merged weights vs base + s B A, worst rel {worst:.2e}")
    f.check(worst <= 1e-5 and len(ad) == 7 * llama.L,
            f"merged = base + s B A on all {7 * llama.L} adapted modules (1e-5)")
    tok = np.random.default_rng(5).integers(0, llama.V, (llama.B, llama.T)).astype("<i4")
    tpath = os.path.join(tmp, "tokens.i32")
    tok.tofile(tpath)
    lo = os.path.join(tmp, "merged_logits.f32")
    p = hf.run([a.dumper, "logits", merged, tpath, str(llama.B), str(llama.T), lo])
    if f.check(p.returncode == 0, "hf_dump logits of the merged folder"):
        c = np.fromfile(lo, dtype="<f4").reshape(llama.B * llama.T, llama.V).astype(np.float64)
        r = llama.logits_np({k: v.astype(np.float64) for k, v in mw.items()}, tok)
        rel = float(np.abs(c - r).max() / np.abs(r).max())
        print(f"measured: merged folder logits C vs PyTorch, rel {rel:.2e}")
        f.check(rel <= 1e-4, "the merged folder's logits in PyTorch equal the C model's (1e-4)")


if __name__ == "__main__":
    sys.exit(main())
