#!/usr/bin/env python3
"""End-to-end tests of train.shard_optimizer (ZeRO 1) and the checkpoints
every rank writes at once (parallel HDF5).

usage: shard_e2e.py CODEX_TRAIN SOURCE_DIR CASE

Cases:
  bitwiseN  full fine-tuning of a tiny model, 20 steps, on N = 1, 2 or 4 ranks:
            sharded and unsharded give bit-identical weights (final.h5) and
            bit-identical checkpoints (tensors, AdamW moments) with the same
            sha256, although the sharded one was written by every rank at once
  resume    stopped on 4 ranks sharded at step 13; resumed on 2 ranks sharded
            and on 1 rank unsharded: both resume at 13, log every step once,
            and end within 1e-5 (losses relative, weights absolute) of the
            uninterrupted 4-rank run; on 2 ranks bit-identical to it (every
            W >= 2 adds the global micro-batches in the same order)
  bf16      bf16 full fine-tuning with an evaluation every 5 steps on 2 and 4
            ranks (GPT-2) and 2 ranks (Llama, untied head): sharded (each rank holds the fp32 master weights of its
            own slice of the matrices only) and unsharded give bit-identical
            final.h5, best.h5 (gathered piece by piece to rank 0) and
            checkpoints; the run says how much of the fp32 buffer rank 0 holds
  bf16resume stopped on 4 ranks sharded in bf16, resumed on 2 ranks sharded:
            bit-identical to the uninterrupted 4-rank run
  patience  eval.patience on 2 ranks while the validation loss improves: no
            rank stops early on its own (before, only rank 0 knew the best
            evaluation, so the others stopped after `patience` evaluations
            and left rank 0 waiting)
  corrupt   one byte changed in the slice that rank 3 wrote of the newest
            parallel checkpoint: resuming reports it (checkpoint_invalid) and
            falls back to the previous one; codexctl generate and eval read
            the intact parallel checkpoint and refuse the corrupted one
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

from checks import Checks
from e2e import metric_losses, mpirun, run


def tiny(runs, name, shard, extra=()):
    return [f"job.runs_dir={runs}", f"job.name={name}", "data.source=random", "data.seq_len=16",
            "model.n_layer=2", "model.n_head=2", "model.n_embd=32", "model.max_seq_len=16",
            "train.global_batch_size=8", "train.micro_batch_size=2", "train.max_steps=20",
            "train.log_every=1", "train.lr=1e-2", "train.warmup_steps=0", "lora.enabled=false",
            "eval.every_steps=0", "checkpoint.every_steps=5",
            f"train.shard_optimizer={'true' if shard else 'false'}"] + list(extra)


def h5_attr(path, name):
    out = subprocess.run(["h5dump", "-a", name, path], capture_output=True, text=True).stdout
    m = re.search(r'\(0\): "([^"]*)"', out)
    return m.group(1) if m else None


def h5_same(a, b, group, tol=None):
    cmd = ["h5diff"] + (["-d", str(tol)] if tol else []) + [a, b, group]
    return subprocess.run(cmd, capture_output=True, text=True)


def same_checkpoints(f, u, s, label):
    """Checks that the step-20 checkpoints of runs u and s hold the same
    tensors and moments; returns their paths."""
    cu = os.path.join(u, "checkpoints", "step_00000020.h5")
    cs = os.path.join(s, "checkpoints", "step_00000020.h5")
    for g in ("/tensors", "/adam_m", "/adam_v"):
        d = h5_same(cu, cs, g)
        f.check(d.returncode == 0, f"{label}: checkpoint {g} bit-identical")
    return cu, cs


def bitwise(exe, src, tmp, f, ranks):
    base = os.path.join(src, "configs/demo-base.yaml")
    runs = os.path.join(tmp, "runs")
    for n in ranks:
        for shard in (False, True):
            p = mpirun(n, [exe, base] + tiny(runs, f"w{n}{'s' if shard else 'u'}", shard), cwd=src,
                       timeout=120)
            f.check(p.returncode == 0, f"{n} ranks, shard {shard}: exits 0 ({p.stderr[-300:]})")
        u, s = os.path.join(runs, f"w{n}u"), os.path.join(runs, f"w{n}s")
        d = h5_same(os.path.join(u, "final.h5"), os.path.join(s, "final.h5"), "/tensors")
        f.check(d.returncode == 0, f"{n} ranks: sharded and unsharded weights bit-identical "
                                   f"after 20 steps {d.stdout[:200]}")
        cu, cs = same_checkpoints(f, u, s, f"{n} ranks")
        hu, hs = h5_attr(cu, "sha256"), h5_attr(cs, "sha256")
        print(f"measured: {n} ranks checkpoint sha256 unsharded {hu} sharded {hs}")
        f.check(hu is not None and hu == hs,
                f"{n} ranks: one writer and {n} parallel writers give the same sha256")
        f.check(h5_attr(cs, "sha256_scheme") == "sha256-chunks-4096", "chunked checksum scheme")
        with open(os.path.join(s, "events.jsonl")) as fh:
            ev = [json.loads(l) for l in fh if '"checkpoint"' in l]
        f.check(ev and ev[-1].get("writers") == n, f"{n} ranks: checkpoint event says {n} writers")


def case_bitwise1(exe, src, tmp, f):
    bitwise(exe, src, tmp, f, (1,))


def case_bitwise2(exe, src, tmp, f):
    bitwise(exe, src, tmp, f, (2,))


def case_bitwise4(exe, src, tmp, f):
    bitwise(exe, src, tmp, f, (4,))


def case_resume(exe, src, tmp, f):
    base = os.path.join(src, "configs/demo-base.yaml")
    runs = os.path.join(tmp, "runs")
    p = mpirun(4, [exe, base] + tiny(runs, "whole", True), cwd=src, timeout=120)
    f.check(p.returncode == 0, "uninterrupted 4-rank sharded run exits 0")
    p = mpirun(4, [exe, base] + tiny(runs, "a", True) + ["--stop-after", "13"], cwd=src,
               timeout=120)
    f.check(p.returncode == 75, f"stop on 4 ranks sharded exits 75 (got {p.returncode})")
    shutil.copytree(os.path.join(runs, "a"), os.path.join(runs, "b"))
    whole = metric_losses(os.path.join(runs, "whole"))
    for name, n, shard in (("a", 2, True), ("b", 1, False)):
        p = mpirun(n, [exe, base] + tiny(runs, name, shard), cwd=src, timeout=120)
        f.check(p.returncode == 0 and "resumed from step 13" in p.stdout,
                f"resumed on {n} rank(s), shard {shard} ({p.stderr[-300:]})")
        got = metric_losses(os.path.join(runs, name))
        f.check(sorted(got) == list(range(1, 21)), f"{name}: every step logged once")
        worst = max(abs(got[k] - whole[k]) / abs(whole[k]) for k in whole if k in got)
        print(f"measured: resumed on {n} rank(s) shard {shard}: worst relative loss "
              f"difference {worst:.2e}")
        f.check(worst <= 1e-5, f"{name}: losses within 1e-5 relative ({worst:.2e})")
        fin = os.path.join(runs, name, "final.h5")
        d = h5_same(os.path.join(runs, "whole", "final.h5"), fin, "/tensors", 1e-5)
        f.check(d.returncode == 0, f"{name}: weights within 1e-5 of the uninterrupted run "
                                   f"{d.stdout[:200]}")
        d6 = h5_same(os.path.join(runs, "whole", "final.h5"), fin, "/tensors", 1e-6)
        over = sum(int(x) for x in re.findall(r"(\d+) differences found", d6.stdout))
        print(f"measured: {name}: elements differing by more than 1e-6: {over}")
        if n > 1:
            d = h5_same(os.path.join(runs, "whole", "final.h5"), fin, "/tensors")
            f.check(d.returncode == 0, f"{name}: resumed on {n} ranks, weights bit-identical to "
                                       f"the 4-rank run {d.stdout[:200]}")


def master_held(out):
    m = re.search(r"fp32 master weights sharded: rank 0 holds (\d+) of (\d+)", out)
    return (int(m.group(1)), int(m.group(2))) if m else None


# a Llama with an untied head: lm_head is read only by its product, so its
# fp32 values are sharded too; embed_tokens stays whole
LLAMA = ["model.arch=llama", "model.n_head=4", "model.n_kv_head=2", "model.ffn_hidden=96",
         "model.tie_embeddings=false"]


def case_bf16(exe, src, tmp, f):
    base = os.path.join(src, "configs/demo-base.yaml")
    runs = os.path.join(tmp, "runs")
    bf16 = ["train.precision=bf16", "eval.every_steps=5", "train.lr=1e-3"]
    for arch, n, extra in (("gpt2", 2, []), ("gpt2", 4, []), ("llama", 2, LLAMA)):
        held = None
        what = f"bf16 {arch} {n} ranks"
        for shard in (False, True):
            p = mpirun(n, [exe, base] + tiny(runs, f"{arch}{n}{'s' if shard else 'u'}", shard,
                                             bf16 + extra), cwd=src, timeout=120)
            f.check(p.returncode == 0, f"{what}, shard {shard}: exits 0 ({p.stderr[-300:]})")
            if shard:
                held = master_held(p.stdout)
        u, s = os.path.join(runs, f"{arch}{n}u"), os.path.join(runs, f"{arch}{n}s")
        for name in ("final.h5", "best.h5"):
            d = h5_same(os.path.join(u, name), os.path.join(s, name), "/tensors")
            f.check(d.returncode == 0, f"{what}: {name} of the sharded run (gathered to rank 0) "
                                       f"bit-identical to the unsharded one {d.stdout[:200]}")
        same_checkpoints(f, u, s, what)
        print(f"measured: {what}: rank 0 holds {held} fp32 values (of the whole buffer)")
        f.check(held is not None and held[0] < held[1],
                f"{what}: the sharded run holds part of the fp32 buffer ({held})")


def case_bf16resume(exe, src, tmp, f):
    base = os.path.join(src, "configs/demo-base.yaml")
    runs = os.path.join(tmp, "runs")
    bf16 = ["train.precision=bf16"]
    p = mpirun(4, [exe, base] + tiny(runs, "whole", True, bf16), cwd=src, timeout=120)
    f.check(p.returncode == 0, "uninterrupted 4-rank sharded bf16 run exits 0")
    p = mpirun(4, [exe, base] + tiny(runs, "a", True, bf16) + ["--stop-after", "13"], cwd=src,
               timeout=120)
    f.check(p.returncode == 75, f"stop on 4 ranks sharded bf16 exits 75 (got {p.returncode})")
    p = mpirun(2, [exe, base] + tiny(runs, "a", True, bf16), cwd=src, timeout=120)
    f.check(p.returncode == 0 and "resumed from step 13" in p.stdout,
            f"resumed on 2 ranks sharded bf16 ({p.stderr[-300:]})")
    f.check(master_held(p.stdout) is not None, "the resumed run shards the master weights again")
    d = h5_same(os.path.join(runs, "whole", "final.h5"), os.path.join(runs, "a", "final.h5"),
                "/tensors")
    f.check(d.returncode == 0, f"resumed on 2 ranks: weights bit-identical to the 4-rank run "
                               f"{d.stdout[:200]}")


def case_patience(exe, src, tmp, f):
    base = os.path.join(src, "configs/demo-base.yaml")
    runs = os.path.join(tmp, "runs")
    # the byte corpus: the validation loss falls at every evaluation
    p = mpirun(2, [exe, base, f"job.runs_dir={runs}", "job.name=pat", "model.n_embd=32",
                   "model.n_head=2", "data.seq_len=32", "train.max_steps=40",
                   "train.log_every=10", "eval.every_steps=5", "eval.patience=2",
                   "eval.batches=2", "train.micro_batch_size=4"], cwd=src, timeout=120)
    f.check(p.returncode == 0, f"2 ranks with eval.patience exit 0 (got {p.returncode}) "
                               f"{p.stderr[-300:]}")
    evals = re.findall(r"eval +(\d+) \| val loss ([0-9.]+)", p.stdout)
    print(f"measured: evaluations {evals}")
    f.check(len(evals) == 8, f"all 8 evaluations ran: no early stop ({len(evals)})")
    f.check("no improvement" not in p.stdout, "no early stop reported")


def flip_byte(path, dataset, at):
    out = subprocess.run(["h5dump", "-p", "-H", "-d", dataset, path], capture_output=True,
                         text=True).stdout
    m = re.search(r"CONTIGUOUS\s+SIZE\s+\d+\s+OFFSET\s+(\d+)", out)
    if not m:
        return False
    with open(path, "r+b") as fh:
        fh.seek(int(m.group(1)) + at)
        b = fh.read(1)
        fh.seek(int(m.group(1)) + at)
        fh.write(bytes([b[0] ^ 0x40]))
    return True


def case_corrupt(exe, src, tmp, f):
    base = os.path.join(src, "configs/demo-base.yaml")
    runs = os.path.join(tmp, "runs")
    ctl = os.path.join(os.path.dirname(exe), "codexctl")
    p = mpirun(4, [exe, base] + tiny(runs, "c", True) + ["--stop-after", "13"], cwd=src,
               timeout=120)
    f.check(p.returncode == 75, f"stop on 4 ranks sharded exits 75 (got {p.returncode})")
    ck = os.path.join(runs, "c", "checkpoints", "step_00000013.h5")
    data = os.path.join(tmp, "d.h5")
    q = run([ctl, "prepare", "-o", data, "--val", os.path.join(src, "configs/corpus/python.txt"),
             os.path.join(src, "configs/corpus/base.txt")], cwd=src)
    f.check(q.returncode == 0, "a dataset for eval")
    readers = {"generate": [ctl, "generate", ck, "--prompt", "ab", "--max-new-tokens", "4"],
               "eval": [ctl, "eval", ck, "--data", data,
                        "--max-windows", "2"]}
    for name, argv in readers.items():
        q = run(argv, cwd=src)
        f.check(q.returncode == 0, f"{name} reads the intact parallel checkpoint ({q.stderr[-300:]})")
    # ln_f.bias is the last tensor of the buffer: rank 3's slice on 4 ranks
    f.check(flip_byte(ck, "/adam_v/ln_f.bias", 9), "changed one byte of rank 3's slice")
    for name, argv in readers.items():
        q = run(argv, cwd=src)
        f.check(q.returncode != 0 and "checksum mismatch" in q.stderr,
                f"{name} refuses the corrupted parallel checkpoint (exit {q.returncode})")
    p = mpirun(4, [exe, base] + tiny(runs, "c", True) + ["--stop-after", "1"], cwd=src,
               timeout=120)
    f.check(p.returncode == 75 and "resumed from step 10" in p.stdout,
            f"resumed from the previous checkpoint, step 10 (exit {p.returncode}) "
            f"{p.stderr[-300:]}")
    f.check("checksum mismatch" in p.stderr, "the corrupted checkpoint is named on stderr")
    with open(os.path.join(runs, "c", "events.jsonl")) as fh:
        inv = [json.loads(l) for l in fh if '"checkpoint_invalid"' in l]
    f.check(len(inv) == 1 and inv[0]["step"] == 13 and "checksum mismatch" in inv[0]["message"],
            f"one checkpoint_invalid event for step 13: {inv}")


def main():
    if len(sys.argv) != 4:
        print(__doc__)
        return 2
    exe, src, case = sys.argv[1:]
    fn = globals().get(f"case_{case}")
    if fn is None:
        print(f"unknown case {case}")
        return 2
    if not shutil.which("h5diff") or not shutil.which("h5dump"):
        print("h5diff/h5dump not found")
        return 77
    f = Checks()
    with tempfile.TemporaryDirectory(prefix="cu_shard_") as tmp:
        fn(os.path.abspath(exe), src, tmp, f)
    return f.summary()


if __name__ == "__main__":
    sys.exit(main())
