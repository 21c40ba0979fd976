#!/usr/bin/env python3
"""End-to-end checks of how codex-train computes (issue 14): the real binary
under mpirun.

usage: compute_e2e.py CODEX_TRAIN SOURCE_DIR CASE

Cases:
  exact       fp32 runs that must agree bit for bit with a plain run: with
              train.activation_checkpointing true, and with train.threads 2
              (GPT-2 LoRA with dropout, Llama LoRA, GPT-2 full fine-tuning):
              the same loss at every step in metrics.jsonl and final.h5
              tensors equal under h5diff
  bf16_demo   the demo (configs/demo-base.yaml, then 200 LoRA steps of
              configs/demo.yaml) in train.precision fp32 and bf16: the final
              validation losses within 2% of each other, and the bf16 run
              says it computes on oneDNN
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

from checks import Checks
from e2e import metric_losses, mpirun, screen_lines


def tiny(runs, name, extra=()):
    return [f"job.runs_dir={runs}", f"job.name={name}", "data.source=random", "data.seq_len=24",
            "model.n_layer=3", "model.n_head=4", "model.n_embd=32", "model.max_seq_len=32",
            "train.global_batch_size=4", "train.micro_batch_size=2", "train.max_steps=8",
            "train.log_every=1", "train.lr=1e-2", "train.warmup_steps=0"] + list(extra)


def same_run(exe, src, runs, f, what, base, other, args):
    demo = os.path.join(src, "configs/demo-base.yaml")
    p = mpirun(1, [exe, demo] + tiny(runs, other, args), cwd=src)
    f.check(p.returncode == 0, f"{what}: exits 0 (got {p.returncode}) {p.stderr[-300:]}")
    a, b = metric_losses(os.path.join(runs, base)), metric_losses(os.path.join(runs, other))
    f.check(len(a) == 8 and a == b, f"{what}: the same loss at every step ({len(a)} steps)")
    h5diff = shutil.which("h5diff")
    if h5diff:
        d = subprocess.run([h5diff, os.path.join(runs, base, "final.h5"),
                            os.path.join(runs, other, "final.h5"), "/tensors"],
                           capture_output=True, text=True)
        f.check(d.returncode == 0, f"{what}: final.h5 tensors bit-identical {d.stdout[:300]}")


def case_exact(exe, src, tmp, f):
    runs = os.path.join(tmp, "runs")
    demo = os.path.join(src, "configs/demo-base.yaml")
    variants = [("gpt2 LoRA+dropout", ["lora.enabled=true", "lora.dropout=0.1"]),
                ("llama LoRA", ["model.arch=llama", "model.n_kv_head=2", "model.ffn_hidden=48",
                                "lora.enabled=true", "lora.targets=[all-linear]"]),
                ("gpt2 full", ["lora.enabled=false"])]
    for i, (what, args) in enumerate(variants):
        base = f"v{i}"
        p = mpirun(1, [exe, demo] + tiny(runs, base, args), cwd=src)
        f.check(p.returncode == 0, f"{what}: plain run exits 0 {p.stderr[-300:]}")
        same_run(exe, src, runs, f, f"{what}, activation checkpointing", base, f"v{i}_ckpt",
                 args + ["train.activation_checkpointing=true"])
        same_run(exe, src, runs, f, f"{what}, 2 threads", base, f"v{i}_t2",
                 args + ["train.threads=2"])


def final_val_loss(stdout):
    vals = [float(m.group(1)) for m in
            (re.search(r"^eval\s+\d+ \| val loss ([0-9.]+)", l) for l in screen_lines(stdout)) if m]
    return vals[-1] if vals else None


def case_bf16_demo(exe, src, tmp, f):
    runs = os.path.join(tmp, "runs")
    p = mpirun(1, [exe, os.path.join(src, "configs/demo-base.yaml"), f"job.runs_dir={runs}",
                   "train.log_every=50"], cwd=src)
    f.check(p.returncode == 0, f"demo-base exits 0 (got {p.returncode})")
    base = os.path.join(runs, "demo-base", "final.h5")
    vals = {}
    for prec in ("fp32", "bf16"):
        p = mpirun(1, [exe, os.path.join(src, "configs/demo.yaml"), f"job.runs_dir={runs}",
                       f"job.name=demo-{prec}", f"model.init={base}", "train.max_steps=200",
                       f"train.precision={prec}", "train.log_every=50", "eval.every_steps=200",
                       "eval.batches=8"], cwd=src)
        f.check(p.returncode == 0, f"{prec}: exits 0 (got {p.returncode}) {p.stderr[-300:]}")
        vals[prec] = final_val_loss(p.stdout)
        f.check(vals[prec] is not None, f"{prec}: a validation loss was printed")
        if prec == "bf16":
            f.check("precision bf16: base-weight products on oneDNN" in p.stdout,
                    "the bf16 run names its backend")
    if None not in vals.values():
        rel = abs(vals["bf16"] - vals["fp32"]) / vals["fp32"]
        print(f"measured: val loss fp32 {vals['fp32']:.4f}, bf16 {vals['bf16']:.4f}, "
              f"relative difference {rel:.2e}")
        f.check(rel <= 0.02, f"bf16 and fp32 validation losses within 2% ({rel:.2e})")
        f.check(vals["bf16"] != vals["fp32"], "bf16 really computed differently from fp32")


def main():
    if len(sys.argv) != 4:
        print(__doc__)
        return 2
    exe, src, case = sys.argv[1:]
    fn = globals().get(f"case_{case}")
    if fn is None:
        print(f"unknown case {case}")
        return 2
    f = Checks()
    with tempfile.TemporaryDirectory(prefix="cu_compute_") as tmp:
        fn(os.path.abspath(exe), src, tmp, f)
    return f.summary()


if __name__ == "__main__":
    sys.exit(main())
