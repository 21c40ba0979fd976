#!/usr/bin/env python3
"""End-to-end tests of PiSSA/OLoRA training, their export, and codexctl
resize / merge: the real binaries, under mpirun.

usage: adapter_e2e.py BUILD_DIR SOURCE_DIR CASE

Cases:
  pissa_ranks    lora.init=pissa on 2 ranks trains, starts from the base
                 model's loss, factorises on a 1 x 2 grid and ends with
                 bit-identical weights on both ranks; olora likewise on 1 rank;
                 pissa with full fine-tuning is a config error (exit 2)
  pissa_resume   stopped on 2 ranks and resumed on 1: the same /lora_init bits,
                 losses within 1e-5 relative of the uninterrupted run, and no
                 new factorisation; resumed on 2 ranks: bit-identical weights
  pissa_export   the PEFT export (rank 2r, plain LoRA) applied to the original
                 base, the merged export and the run itself give the same
                 logits
  resize_merge   resize and merge (1 rank and mpirun -n 2) against numpy's SVD
                 of the combined update: energy kept per module, the rank-R
                 error equals the discarded energy, full rank changes nothing;
                 bad usage exits 2 and leaves nothing behind
"""
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np

import e2e
from checks import Checks
from e2e import STEP_RE, metric_losses


# Every command's stdout is read as the screen shows it.
def run(cmd, cwd, timeout=600):
    return e2e.run(cmd, cwd, timeout, screen=True, tail=3000)


def mpirun(n, argv, cwd, timeout=600):
    return e2e.mpirun(n, argv, cwd, timeout, screen=True, tail=3000)


def losses(stdout):
    return {int(m.group(1)): float(m.group(3))
            for m in (STEP_RE.match(line) for line in stdout.split("\n")) if m}


def events(run_dir, kind):
    with open(os.path.join(run_dir, "events.jsonl")) as fh:
        return [e for e in map(json.loads, fh) if e["type"] == kind]


def read_safetensors(path):
    """{name: float32 array} of a safetensors file (F32 only)."""
    with open(path, "rb") as fh:
        n = struct.unpack("<Q", fh.read(8))[0]
        header = json.loads(fh.read(n))
        data = fh.read()
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        assert e["dtype"] == "F32", e["dtype"]
        b, en = e["data_offsets"]
        out[name] = np.frombuffer(data[b:en], dtype="<f4").reshape(e["shape"])
    return out


def read_adapter(d):
    with open(os.path.join(d, "adapter_config.json")) as fh:
        cfg = json.load(fh)
    t = read_safetensors(os.path.join(d, "adapter_model.safetensors"))
    r, alpha = cfg["r"], cfg["lora_alpha"]
    scale = alpha / (r ** 0.5 if cfg.get("use_rslora") else r)
    return cfg, scale, t


def updates(d, weight=1.0):
    """{module: weight * s * B @ A} in float64."""
    cfg, s, t = read_adapter(d)
    out = {}
    for name in t:
        if ".lora_A." in name:
            b = t[name.replace(".lora_A.", ".lora_B.")].astype(np.float64)
            out[name] = weight * s * b @ t[name].astype(np.float64)
    return out


class Env:
    """A small base model (demo-base, shortened) shared by the cases."""

    def __init__(self, build, src, tmp):
        self.train = os.path.join(build, "jobs", "codex-train")
        self.ctl = os.path.join(build, "jobs", "codexctl")
        self.logits_exe = os.path.join(build, "tests", "lora_logits")
        self.src, self.tmp = src, tmp
        self.runs = os.path.join(tmp, "runs")
        p = mpirun(1, [self.train, os.path.join(src, "configs/demo-base.yaml"),
                       f"job.runs_dir={self.runs}", "job.name=base", "train.max_steps=40",
                       "train.log_every=40"], cwd=src)
        assert p.returncode == 0, "the base model trains"
        self.base = os.path.join(self.runs, "base", "final.h5")

    def lora_args(self, name, *extra):
        return [os.path.join(self.src, "configs/demo.yaml"), f"job.runs_dir={self.runs}",
                f"job.name={name}", f"model.init={self.base}", "train.max_steps=20",
                "train.log_every=1", "train.warmup_steps=5", "train.micro_batch_size=4",
                "eval.every_steps=0"] + list(extra)

    def logits(self, *args):
        p = run([self.logits_exe] + list(args), cwd=self.src)
        assert p.returncode == 0, f"lora_logits {args}: {p.stderr}"
        return np.array([float(x) for x in p.stdout.split()])


def close(a, b, tol=1e-4):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1.0)) <= tol


def case_pissa_ranks(e, f):
    p = mpirun(1, [e.train] + e.lora_args("kaiming"), cwd=e.src)
    f.check(p.returncode == 0, "kaiming run exits 0")
    base_loss = losses(p.stdout)[1]
    p = mpirun(2, [e.train] + e.lora_args("pissa", "lora.init=pissa"), cwd=e.src)
    f.check(p.returncode == 0, "pissa on 2 ranks exits 0")
    f.check("bit-identical on all 2 ranks" in p.stdout, "weights bit-identical on both ranks")
    ls = losses(p.stdout)
    print(f"measured: step-1 loss kaiming {base_loss:.6f}, pissa {ls.get(1, -1):.6f}")
    f.check(abs(ls.get(1, 0) - base_loss) <= 1e-3 * base_loss,
            "pissa starts from the base model's loss (the residual + adapters = base)")
    fin = os.path.join(e.runs, "pissa", "final.h5")
    d = subprocess.run([shutil.which("h5diff"), "-q", fin, fin, "/tensors", "/lora_init"])
    f.check(d.returncode == 1, "training moved the adapters away from A0, B0 (/tensors vs /lora_init)")
    ev = events(os.path.join(e.runs, "pissa"), "lora_init")
    f.check(len(ev) == 1 and ev[0]["grid"] == [1, 2], f"factorised once on a 1 x 2 grid ({ev})")
    p = mpirun(1, [e.train] + e.lora_args("olora", "lora.init=olora"), cwd=e.src)
    f.check(p.returncode == 0, "olora exits 0")
    ls = losses(p.stdout)
    f.check(abs(ls.get(1, 0) - base_loss) <= 1e-3 * base_loss, "olora starts from the base's loss")
    p = mpirun(1, [e.train] + e.lora_args("full", "lora.enabled=false", "lora.init=pissa"),
               cwd=e.src)
    f.check(p.returncode == 2 and "lora.init" in p.stderr and "full fine-tuning" in p.stderr,
            f"pissa with full fine-tuning is a config error naming the key (exit {p.returncode})")


def case_pissa_resume(e, f):
    args = ("lora.init=pissa", "checkpoint.every_steps=5")
    p = mpirun(2, [e.train] + e.lora_args("whole", *args), cwd=e.src)
    f.check(p.returncode == 0, "uninterrupted pissa run on 2 ranks")
    p = mpirun(2, [e.train] + e.lora_args("split", *args) + ["--stop-after", "10"], cwd=e.src)
    f.check(p.returncode == 75, f"--stop-after 10 exits 75 ({p.returncode})")
    p = mpirun(1, [e.train] + e.lora_args("split", *args), cwd=e.src)
    f.check(p.returncode == 0 and "resumed from step 10" in p.stdout, "resumed on 1 rank")
    split_dir = os.path.join(e.runs, "split")
    f.check(len(events(split_dir, "lora_init")) == 1, "no second factorisation on resume")
    whole, split = metric_losses(os.path.join(e.runs, "whole")), metric_losses(split_dir)
    worst = max(abs(split[k] - whole[k]) / whole[k] for k in whole)
    print(f"measured: worst relative loss difference after resuming on 1 rank {worst:.2e}")
    f.check(sorted(split) == sorted(whole) and worst <= 1e-5,
            f"losses within 1e-5 relative after resuming on 1 rank ({worst:.2e})")
    h5diff = shutil.which("h5diff")
    wf, sf = os.path.join(e.runs, "whole", "final.h5"), os.path.join(split_dir, "final.h5")
    d = subprocess.run([h5diff, wf, sf, "/lora_init"], capture_output=True, text=True)
    f.check(d.returncode == 0, f"/lora_init bit-identical after resume on 1 rank {d.stdout[:200]}")
    p = mpirun(2, [e.train] + e.lora_args("same", *args) + ["--stop-after", "7"], cwd=e.src)
    p = mpirun(2, [e.train] + e.lora_args("same", *args), cwd=e.src)
    f.check(p.returncode == 0 and "resumed from step 7" in p.stdout, "resumed on 2 ranks")
    for group in ("/tensors", "/lora_init"):
        d = subprocess.run([h5diff, wf, os.path.join(e.runs, "same", "final.h5"), group],
                           capture_output=True, text=True)
        f.check(d.returncode == 0, f"same world size: final.h5 {group} bit-identical {d.stdout[:200]}")


def case_pissa_export(e, f):
    p = mpirun(2, [e.train] + e.lora_args("exp", "lora.init=pissa", "lora.rslora=true"),
               cwd=e.src)
    f.check(p.returncode == 0, "pissa + rslora run exits 0")
    run_dir = os.path.join(e.runs, "exp")
    out = {k: os.path.join(e.tmp, k) for k in ("peft", "merged", "hfbase")}
    for args in (["export", run_dir, "--format", "peft", "-o", out["peft"]],
                 ["export", run_dir, "--format", "merged", "-o", out["merged"]],
                 ["export", os.path.join(e.runs, "base"), "--format", "merged", "-o", out["hfbase"]]):
        p = run([e.ctl] + args, cwd=e.src)
        f.check(p.returncode == 0, " ".join(args[:4]) + " exits 0")
    cfg, scale, _ = read_adapter(out["peft"])
    f.check(cfg["r"] == 32 and abs(cfg["lora_alpha"] - 32 * 2 ** 0.5) < 1e-4 and cfg["use_rslora"],
            f"plain adapter: r doubled, alpha times sqrt(2) with rslora ({cfg['r']}, {cfg['lora_alpha']})")
    trained = e.logits("run", run_dir)
    merged = e.logits("hf", out["merged"])
    peft = e.logits("peft", out["hfbase"], out["peft"])
    original = e.logits("hf", out["hfbase"])
    for what, got in (("merged export", merged), ("PEFT export on the original base", peft)):
        err = float(np.max(np.abs(got - trained)) / np.max(np.abs(trained)))
        print(f"measured: {what} vs the trained model: max logit difference {err:.2e} relative")
        f.check(err <= 1e-4, f"{what} reproduces the trained model's logits ({err:.2e})")
    f.check(not close(original, trained, 1e-3), "the trained model differs from the base (the check can fail)")


def resize_oracle(f, inputs, weights, out_dir, rank, printed):
    """The output's s' B' A' against numpy's SVD of sum w_i s_i B_i A_i."""
    total = None
    for d, w in zip(inputs, weights):
        u = updates(d, w)
        total = u if total is None else {k: total[k] + u[k] for k in total}
    got = updates(out_dir)
    worst_energy = worst_err = 0.0
    for name, delta in total.items():
        sv = np.linalg.svd(delta, compute_uv=False)
        kept = float(np.sum(sv[:rank] ** 2) / np.sum(sv ** 2))
        short = name.replace("base_model.model.", "").split(".lora_A.")[0]
        worst_energy = max(worst_energy, abs(kept * 100 - printed.get(short, -1)))
        err2 = float(np.sum((delta - got[name]) ** 2) / np.sum(delta ** 2))
        worst_err = max(worst_err, abs(err2 - (1 - kept)))
    print(f"measured: energy kept vs numpy {worst_energy:.2e} percentage points, "
          f"rank-{rank} error vs discarded energy {worst_err:.2e}")
    f.check(len(got) == len(total), "every module written")
    f.check(worst_energy < 1e-3, f"energy kept per module matches numpy's SVD ({worst_energy:.2e})")
    f.check(worst_err < 1e-4, f"the rank-{rank} error is the discarded energy ({worst_err:.2e})")


def printed_energy(stdout):
    out = {}
    for line in stdout.split("\n"):
        m = re.match(r"^(\S+)\s+rank\s+\d+ -> \d+\s+energy kept\s+([0-9.]+)%", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def case_resize_merge(e, f):
    adapters = []
    for i, init in enumerate(("kaiming", "gaussian")):
        p = mpirun(1, [e.train] + e.lora_args(f"a{i}", f"lora.init={init}", f"job.seed={7 + i}",
                                              "lora.r=8", "lora.alpha=16"), cwd=e.src)
        d = os.path.join(e.tmp, f"a{i}")
        run([e.ctl, "export", os.path.join(e.runs, f"a{i}"), "--format", "peft", "-o", d], cwd=e.src)
        adapters.append(d)
    rs = os.path.join(e.tmp, "resized")
    p = run([e.ctl, "resize", adapters[0], "--rank", "3", "-o", rs], cwd=e.src)
    f.check(p.returncode == 0, "resize exits 0")
    pe = printed_energy(p.stdout)
    f.check(len(pe) == 8 and all(0 < v < 100 for v in pe.values()),
            f"energy kept printed for 8 modules ({len(pe)})")
    cfg, scale, _ = read_adapter(rs)
    f.check(cfg["r"] == 3 and abs(scale - 2.0) < 1e-6, "rank 3, scale alpha/r kept at 2")
    resize_oracle(f, [adapters[0]], [1.0], rs, 3, pe)
    full = os.path.join(e.tmp, "full")
    p = run([e.ctl, "resize", adapters[0], "--rank", "8", "-o", full], cwd=e.src)
    f.check(p.returncode == 0 and all(abs(v - 100) < 1e-6 for v in printed_energy(p.stdout).values()),
            "resize to the same rank keeps 100% energy")
    resize_oracle(f, [adapters[0]], [1.0], full, 8, printed_energy(p.stdout))

    mg1, mg2 = os.path.join(e.tmp, "merged1"), os.path.join(e.tmp, "merged2")
    args = ["merge", adapters[0], adapters[1], "--weights", "0.7,-0.4", "--rank", "6"]
    p = run([e.ctl] + args + ["-o", mg1], cwd=e.src)
    f.check(p.returncode == 0 and "1 x 1 process grid" in p.stdout, "merge on one process")
    resize_oracle(f, adapters, [0.7, -0.4], mg1, 6, printed_energy(p.stdout))
    p = mpirun(2, [e.ctl] + args + ["-o", mg2], cwd=e.src)
    f.check(p.returncode == 0 and "1 x 2 process grid" in p.stdout, "merge under mpirun -n 2")
    resize_oracle(f, adapters, [0.7, -0.4], mg2, 6, printed_energy(p.stdout))

    for bad, what in ((["resize", adapters[0], "--rank", "0", "-o", os.path.join(e.tmp, "x")], "--rank"),
                      (["resize", adapters[0], "--rank", "9", "-o", os.path.join(e.tmp, "x")], "exceeds"),
                      (["resize", os.path.join(e.tmp, "nope"), "--rank", "2", "-o", os.path.join(e.tmp, "x")], "nope"),
                      (["resize", adapters[0], "--rank", "2", "-o", rs], "already exists"),
                      (["merge", adapters[0], adapters[1], "--weights", "1", "--rank", "2", "-o",
                        os.path.join(e.tmp, "x")], "--weights"),
                      (["merge", adapters[0], "--rank", "2", "-o", os.path.join(e.tmp, "x")], "two or more")):
        p = run([e.ctl] + bad, cwd=e.src)
        f.check(p.returncode == 2 and what in p.stderr, f"{' '.join(bad[:4])}: exit 2 naming {what}")
    f.check(not os.path.exists(os.path.join(e.tmp, "x")) and
            not any(n.startswith("x.tmp") for n in os.listdir(e.tmp)), "nothing half-written")
    for verb in ("resize", "merge"):
        p = run([e.ctl, verb, "--help"], cwd=e.src)
        f.check(p.returncode == 0 and "usage: codexctl " + verb in p.stdout, f"{verb} --help")


def main():
    if len(sys.argv) != 4:
        print(__doc__)
        return 2
    build, src, case = sys.argv[1:]
    f = Checks()
    with tempfile.TemporaryDirectory(prefix="cu-adapter-") as tmp:
        e = Env(build, src, tmp)
        globals()["case_" + case](e, f)
    return f.summary()


if __name__ == "__main__":
    sys.exit(main())
