#!/usr/bin/env python3
"""End-to-end tests of codex-train: the real binary, under mpirun.

usage: train_e2e.py CODEX_TRAIN SOURCE_DIR CASE

Cases:
  demo_loss_falls   both demo stages learn (the loss falls by more than three
                    standard errors of its noise), the LoRA stage starts from
                    the base, and final.h5 holds the LoRA tensors only
  bad_config        typos, bad values and missing files exit 2 with a message
                    naming the key or file, and leave no run directory
  ranks_agree       1, 2 and 4 ranks with the same global batch give the same
                    loss at every step (within 1e-5 relative) and end with
                    bit-identical weights on every rank
  full_finetune     lora.enabled=false trains every weight and the loss falls
  help              --help, --version and --print-config work without MPI jobs
  lora_init_from    PEFT export -> lora.init_from continues the run exactly;
                    mismatches refused
  corrupt_checkpoint a checkpoint or final.h5 changed after writing is refused
                    by export, eval, generate and model.init
  llama             a Llama trains with LoRA (loss falls), 1 and 2 ranks agree,
                    resume, merged/PEFT export, merged folder as model.init,
                    lora.init_from its PEFT adapter, eval, generate
  slurm_env         under Slurm's environment: an array task's slurm_job_id is
                    <array>_<task>, restarts is SLURM_RESTART_COUNT, and a
                    restart with checkpoint.resume never warns
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

from checks import Checks
from e2e import STEP_RE, env, metric_losses, mpirun, run, screen_lines


def losses(stdout):
    return [(int(m.group(1)), float(m.group(3)))
            for m in (STEP_RE.match(line) for line in screen_lines(stdout)) if m]


def clear_fall(ls, what, f):
    """Asserts the mean loss of the last quarter of the logged steps is below
    that of the first quarter by more than three standard errors of the
    step-to-step noise: a fall measured in this run, not a fixed target. The
    noise comes from successive differences, which the trend does not
    inflate (var = mean((x[i+1] - x[i])^2) / 2)."""
    k = max(len(ls) // 4, 2)
    first, last = ls[:k], ls[-k:]
    m1, m2 = sum(first) / k, sum(last) / k
    diffs = [(b - a) ** 2 for a, b in zip(ls, ls[1:])]
    var = sum(diffs) / (2 * len(diffs))
    se = (2 * var / k) ** 0.5
    print(f"measured ({what}): first-quarter mean {m1:.4f}, last-quarter mean {m2:.4f}, "
          f"fall {m1 - m2:.4f} = {(m1 - m2) / max(se, 1e-12):.1f} standard errors")
    f.check(m1 - m2 > 3 * se and m2 < m1, f"{what}: loss fell clearly ({m1:.4f} -> {m2:.4f})")


def train_and_check_fall(exe, src, config, args, what, min_points, f):
    """Runs one job, checks it exits 0, logs at least min_points steps and
    that its loss fell clearly; returns the logged losses."""
    p = mpirun(1, [exe, os.path.join(src, config)] + args, cwd=src)
    f.check(p.returncode == 0, f"{what}: exits 0 (got {p.returncode})")
    ls = [l for _, l in losses(p.stdout)]
    f.check(len(ls) >= min_points, f"{what}: logged at least {min_points} steps (got {len(ls)})")
    if len(ls) >= min_points:
        clear_fall(ls, what, f)
    return ls


def h5_names(path):
    if not shutil.which("h5ls") or not os.path.isfile(path):
        return None
    return subprocess.run(["h5ls", "-r", path], capture_output=True, text=True).stdout


def case_demo_loss_falls(exe, src, tmp, f):
    """Both stages of scripts/demo.sh: the base learns from scratch, then
    LoRA adapts it to Python."""
    runs = os.path.join(tmp, "runs")
    base = train_and_check_fall(exe, src, "configs/demo-base.yaml",
                                [f"job.runs_dir={runs}", "train.log_every=10"],
                                "base, full training", 20, f)
    base_final = os.path.join(runs, "demo-base", "final.h5")
    ls = train_and_check_fall(exe, src, "configs/demo.yaml",
                              [f"job.runs_dir={runs}", f"model.init={base_final}",
                               "train.log_every=5"], "demo, LoRA on the base", 40, f)
    if ls and base:
        f.check(ls[0] < base[0] * 0.7, "the demo starts from the trained base, not from scratch")
    run_dir = os.path.join(runs, "demo")
    f.check(os.path.isfile(os.path.join(run_dir, "job.yaml")), "job.yaml written")
    names = h5_names(os.path.join(run_dir, "final.h5"))
    f.check(names is not None, "final.h5 written")
    if names is not None:
        f.check("h.0.attn.c_attn.lora_A" in names and "h.1.mlp.c_proj.lora_B" in names,
                "final.h5 holds the LoRA tensors")
        f.check("wte" not in names, "final.h5 holds no frozen base weight")


def case_bad_config(exe, src, tmp, f):
    demo = os.path.join(src, "configs/demo-base.yaml")
    cases = [
        (["train.lrr=0.1"], "train.lr"),                # typo: suggests the key
        (["train.lr=fast"], "train.lr"),                # wrong type
        (["lora.targets=[qkv,bogus]"], "bogus"),        # bad enum entry
        (["data.path=/nonexistent/corpus.txt"], "/nonexistent/corpus.txt"),
        (["model.n_head=3"], "n_head"),                 # 128 % 3 != 0
    ]
    for overrides, needle in cases:
        runs = os.path.join(tmp, "runs_bad")
        p = mpirun(1, [exe, demo, f"job.runs_dir={runs}"] + overrides, cwd=src, timeout=120)
        f.check(p.returncode == 2, f"{overrides} exits 2 (got {p.returncode})")
        f.check(needle in p.stderr, f"{overrides}: message names {needle!r}")
        f.check(not os.path.exists(os.path.join(runs, "demo-base", "final.h5")),
                f"{overrides}: nothing written")
    bad_yaml = os.path.join(tmp, "bad.yaml")
    with open(bad_yaml, "w") as fh:
        fh.write("job:\n  name: x\ntrain:\n  lrr: 0.1\n")
    p = run([exe, bad_yaml], cwd=src, timeout=60)
    f.check(p.returncode == 2, f"typo in a file exits 2 (got {p.returncode})")
    f.check("bad.yaml:4:" in p.stderr, "message gives file:line:column of the typo")
    f.check("did you mean" in p.stderr and "train.lr" in p.stderr, "message suggests train.lr")
    p = run([exe, os.path.join(tmp, "missing.yaml")], cwd=src, timeout=60)
    f.check(p.returncode == 2 and "missing.yaml" in p.stderr, "missing config file exits 2, named")


def tiny_random(runs, name, extra=()):
    return [f"job.runs_dir={runs}", f"job.name={name}", "data.source=random", "data.seq_len=16",
            "model.n_layer=2", "model.n_head=2", "model.n_embd=32", "model.max_seq_len=16",
            "train.global_batch_size=8", "train.micro_batch_size=2", "train.max_steps=12",
            "train.log_every=1", "train.lr=1e-2", "train.warmup_steps=0", "lora.enabled=true",
            "lora.dropout=0.1"] + list(extra)


def case_ranks_agree(exe, src, tmp, f):
    demo = os.path.join(src, "configs/demo-base.yaml")
    runs = os.path.join(tmp, "runs")
    one = mpirun(1, [exe, demo] + tiny_random(runs, "r1"), cwd=src)
    f.check(one.returncode == 0, "1 rank exits 0")
    l1 = losses(one.stdout)
    f.check(len(l1) == 12, f"12 steps logged on 1 rank ({len(l1)})")
    for n in (2, 4):
        p = mpirun(n, [exe, demo] + tiny_random(runs, f"r{n}"), cwd=src)
        f.check(p.returncode == 0, f"{n} ranks exit 0")
        ln = losses(p.stdout)
        f.check(len(ln) == 12, f"12 steps logged on {n} ranks ({len(ln)})")
        worst = max((abs(a - b) / max(abs(a), 1e-12) for (_, a), (_, b) in zip(l1, ln)),
                    default=1.0)
        print(f"measured: worst relative loss difference 1 vs {n} ranks {worst:.2e}")
        f.check(worst <= 1e-5, f"{n} ranks: losses agree within 1e-5 relative ({worst:.2e})")
        f.check(f"trainable weights bit-identical on all {n} ranks" in p.stdout,
                f"the {n} ranks end with bit-identical weights")


def case_full_finetune(exe, src, tmp, f):
    runs = os.path.join(tmp, "runs")
    train_and_check_fall(exe, src, "configs/demo-base.yaml",
                         [f"job.runs_dir={runs}", "job.name=full", "model.n_embd=64",
                          "model.n_head=2", "train.max_steps=80", "train.warmup_steps=5",
                          "train.log_every=2"], "full fine-tuning", 40, f)
    names = h5_names(os.path.join(runs, "full", "final.h5"))
    f.check(names is not None and "wte" in names and "lora" not in names,
            "final.h5 holds the base weights")


def resume_args(runs, name, extra=()):
    return [f"job.runs_dir={runs}", f"job.name={name}", "model.n_embd=64", "model.n_head=2",
            "train.max_steps=30", "train.warmup_steps=5", "train.log_every=1",
            "train.micro_batch_size=4", "lora.enabled=true", "lora.dropout=0.1",
            "eval.every_steps=10", "checkpoint.every_steps=10"] + list(extra)


def read_json(path):
    import json
    with open(path) as fh:
        return json.load(fh)


def case_resume_exact(exe, src, tmp, f):
    """Stopped at step 17 and resumed: the same losses at every step and, on
    the same world size, bit-identical trainable weights; on another world
    size, losses within 1e-5 relative."""
    base = os.path.join(src, "configs/demo-base.yaml")
    runs = os.path.join(tmp, "runs")
    p = mpirun(1, [exe, base] + resume_args(runs, "whole"), cwd=src)
    f.check(p.returncode == 0, "uninterrupted run exits 0")
    p = mpirun(1, [exe, base] + resume_args(runs, "split") + ["--stop-after", "17"], cwd=src)
    f.check(p.returncode == 75, f"--stop-after exits 75 (got {p.returncode})")
    st = read_json(os.path.join(runs, "split", "state.json"))
    f.check(st["status"] == "PREEMPTED" and st["step"] == 17, f"state PREEMPTED at 17 ({st['status']}, {st['step']})")
    f.check(os.path.isfile(os.path.join(runs, "split", "checkpoints", "step_00000017.h5")),
            "checkpoint at step 17 saved on stop")
    p = mpirun(1, [exe, base] + resume_args(runs, "split"), cwd=src)
    f.check(p.returncode == 0 and "resumed from step 17" in p.stdout, "resumed run completes")
    whole, split = metric_losses(os.path.join(runs, "whole")), metric_losses(os.path.join(runs, "split"))
    f.check(sorted(split) == list(range(1, 31)), "metrics.jsonl has every step once after resume")
    f.check(all(whole[k] == split[k] for k in whole), "same loss at every step (same world size)")
    h5diff = shutil.which("h5diff")
    if h5diff:
        d = subprocess.run([h5diff, os.path.join(runs, "whole", "final.h5"),
                            os.path.join(runs, "split", "final.h5"), "/tensors"],
                           capture_output=True, text=True)
        f.check(d.returncode == 0, f"final.h5 tensors bit-identical: {d.stdout[:300]}")
    # stop on 1 rank, resume on 2
    p = mpirun(1, [exe, base] + resume_args(runs, "grow") + ["--stop-after", "13"], cwd=src)
    f.check(p.returncode == 75, "stop on 1 rank exits 75")
    p = mpirun(2, [exe, base] + resume_args(runs, "grow"), cwd=src)
    f.check(p.returncode == 0 and "resumed from step 13" in p.stdout, "resumed on 2 ranks")
    grow = metric_losses(os.path.join(runs, "grow"))
    worst = max(abs(grow[k] - whole[k]) / abs(whole[k]) for k in whole)
    print(f"measured: worst relative loss difference after resuming on 2 ranks {worst:.2e}")
    f.check(worst <= 1e-5, f"losses within 1e-5 relative after resuming on 2 ranks ({worst:.2e})")


def case_signal_and_fallback(exe, src, tmp, f):
    """SIGUSR1 checkpoints and exits 75; a truncated newest checkpoint is
    reported and the one before it used."""
    import signal
    import time
    base = os.path.join(src, "configs/demo-base.yaml")
    runs = os.path.join(tmp, "runs")
    args = [exe, base] + resume_args(runs, "sig", ["train.max_steps=100000"])
    proc = subprocess.Popen(args, cwd=src, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    state = os.path.join(runs, "sig", "state.json")
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if read_json(state).get("step", 0) >= 25:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    proc.send_signal(signal.SIGUSR1)
    out, err = proc.communicate(timeout=60)
    f.check(proc.returncode == 75, f"SIGUSR1 exits 75 (got {proc.returncode}): {err[-300:]}")
    st = read_json(state)
    f.check(st["status"] == "PREEMPTED", f"state PREEMPTED ({st['status']})")
    stopped = st["step"]
    ckpts = os.path.join(runs, "sig", "checkpoints")
    f.check(os.path.isfile(os.path.join(ckpts, f"step_{stopped:08d}.h5")), "checkpoint at the stop")
    # truncate the newest: resume must fall back to the one before
    newest = os.path.join(ckpts, f"step_{stopped:08d}.h5")
    size = os.path.getsize(newest)
    with open(newest, "r+b") as fh:
        fh.truncate(size // 3)
    older = sorted(n for n in os.listdir(ckpts) if n.startswith("step_") and n != os.path.basename(newest))
    want = int(older[-1][5:13]) if older else 0
    p = mpirun(1, [exe, base] + resume_args(runs, "sig", ["train.max_steps=100000"]) +
               ["--stop-after", "2"], cwd=src)
    f.check(p.returncode == 75, f"resumed run stops again with 75 (got {p.returncode})")
    f.check(f"resumed from step {want}" in p.stdout, f"resumed from the previous checkpoint {want}")
    with open(os.path.join(runs, "sig", "events.jsonl")) as fh:
        events = fh.read()
    f.check('"type": "checkpoint_invalid"' in events, "the truncated checkpoint is reported as an event")


def case_kill9(exe, src, tmp, f):
    """kill -9 of one rank ends the whole job within 30 s, with FAILED and
    that rank named in state.json."""
    import signal
    import time
    runs = os.path.join(tmp, "runs")
    args = ["mpirun", "-n", "2", "--oversubscribe", exe, os.path.join(src, "configs/demo-base.yaml"),
            f"job.runs_dir={runs}", "train.max_steps=1000000", "train.micro_batch_size=4",
            "train.log_every=100000"]
    proc = subprocess.Popen(args, cwd=src, env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    state = os.path.join(runs, "demo-base", "state.json")
    rank1 = os.path.join(runs, "demo-base", "ranks", "1.json")
    deadline = time.time() + 60
    pid = None
    while time.time() < deadline and pid is None:
        try:
            if read_json(state).get("step", 0) >= 5:
                pid = read_json(rank1)["pid"]
        except (OSError, ValueError, KeyError):
            time.sleep(0.05)
    f.check(pid is not None, "the job started and rank 1 wrote its liveness file")
    if pid is None:
        proc.kill()
        proc.communicate()
        return
    t0 = time.time()
    os.kill(pid, signal.SIGKILL)
    try:
        proc.communicate(timeout=30)
        ended = time.time() - t0
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        ended = None
    print(f"measured: the job ended {ended if ended is None else round(ended, 2)} s after kill -9")
    f.check(ended is not None and ended < 30, "the whole job ended within 30 s")
    f.check(proc.returncode != 0, f"mpirun reports failure (exit {proc.returncode})")
    st = read_json(state)
    f.check(st["status"] == "FAILED", f"state FAILED ({st['status']})")
    err = st.get("error") or {}
    f.check(err.get("rank") == 1 and "rank 1" in err.get("message", ""),
            f"the error names rank 1: {err}")


def case_safety(exe, src, tmp, f):
    """A fake AWS key planted in a text corpus. Under the default policy it
    is redacted before tokenising, so the model never sees it and its samples
    never contain it (the canary). Under a policy that allows it in data but
    blocks it in outputs (fail_job: true), a model that memorised it produces
    it, the output check blocks the sample, the job fails, and the key
    appears in no log."""
    key = "AKIA" + "Q3EGRT7P" + "LXW5M2ND"   # pattern-valid, fake, built at run time
    corpus = os.path.join(tmp, "corpus.txt")
    with open(corpus, "w") as fh:
        for i in range(600):
            fh.write(f"config.aws_key = {key}\nconfig.region = eu-{i % 7}\n")
    common = ["data.source=text", f"data.path={corpus}", "model.n_embd=64", "model.n_head=2",
              "train.max_steps=150", "train.warmup_steps=5", "train.lr=3e-3", "eval.every_steps=150",
              "eval.prompts=[\"config.aws_key = \"]", "eval.temperature=0", "eval.max_new_tokens=40",
              "data.val_fraction=0.05"]
    runs = os.path.join(tmp, "runs")
    base = os.path.join(src, "configs/demo-base.yaml")

    def logs(name):
        out = ""
        for fn in ("events.jsonl", "state.json", "metrics.jsonl"):
            p = os.path.join(runs, name, fn)
            if os.path.exists(p):
                out += open(p).read()
        return out

    p = mpirun(1, [exe, base, f"job.runs_dir={runs}", "job.name=canary"] + common, cwd=src)
    f.check(p.returncode == 0, f"default policy: training completes (exit {p.returncode})")
    text = logs("canary")
    f.check('"stage": "data"' in text and "replaced by placeholders" in text,
            "the data-stage redactions are reported")
    f.check(key not in text, "the key appears nowhere in the job's logs or samples")
    f.check("<REDACTED:aws_access_key>" in text, "the model learned the placeholder instead")

    policy = os.path.join(tmp, "policy.yaml")
    with open(os.path.join(src, "configs/safety/policy.yaml")) as fh:
        pol = fh.read()
    pol = pol.replace("aws_access_key: {data: redact, prompt: block, output: block}",
                      "aws_access_key: {data: allow, prompt: block, output: block}")
    pol = pol.replace("fail_job: false", "fail_job: true")
    with open(policy, "w") as fh:
        fh.write(pol)
    p = mpirun(1, [exe, base, f"job.runs_dir={runs}", "job.name=leak", f"safety.policy={policy}"]
               + common, cwd=src)
    f.check(p.returncode not in (0, 2), f"a blocked sample fails the job (exit {p.returncode})")
    st = read_json(os.path.join(runs, "leak", "state.json"))
    f.check(st["status"] == "FAILED" and "safety policy" in (st.get("error") or {}).get("message", ""),
            f"state FAILED with the safety reason: {st.get('error')}")
    f.check(st["safety"]["output_findings"] >= 1 and st["safety"]["blocked_outputs"] >= 1,
            f"state counts the finding: {st['safety']}")
    text = logs("leak")
    f.check('"type": "safety"' in text and '"verdict":"block"' in text.replace(" ", ""),
            "a safety event records the blocked sample")
    f.check(key not in text, "the memorised key appears nowhere in the logs")
    prov = read_json(os.path.join(runs, "leak", "provenance.json"))
    f.check(isinstance(prov.get("safety"), dict) and prov["safety"].get("sha256"),
            "provenance records the safety policy and its hash")
    # the same without failing the job: it completes, and export refuses it
    with open(policy, "w") as fh:
        fh.write(pol.replace("fail_job: true", "fail_job: false"))
    p = mpirun(1, [exe, base, f"job.runs_dir={runs}", "job.name=leak2", f"safety.policy={policy}"]
               + common, cwd=src)
    f.check(p.returncode == 0, f"with fail_job false the job completes (exit {p.returncode})")
    ctl = os.path.join(os.path.dirname(exe), "codexctl")
    q = run([ctl, "export", os.path.join(runs, "leak2"), "--format", "merged", "-o",
             os.path.join(tmp, "out-leak2")], cwd=src)
    f.check(q.returncode == 1 and "refused" in q.stderr, f"export refuses it (exit {q.returncode})")
    q = run([ctl, "export", os.path.join(runs, "canary"), "--format", "merged", "-o",
             os.path.join(tmp, "out-canary")], cwd=src)
    f.check(q.returncode == 0, f"a run without blocked samples exports (exit {q.returncode})")


def case_exec(exe, src, tmp, f):
    """eval.exec: each task's completion runs with its test in the sandbox and
    pass@1 is reported. The tasks wrap whatever the model writes in a shell
    here-document, so their outcome is their test's: one passes, one exits 3,
    one sleeps past the timeout, and one tries to reach a TCP listener that
    this test runs on the loopback, which the sandbox must not allow."""
    import socket
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4)
    port = lsock.getsockname()[1]
    head = ": <<'CU_SAMPLE_END'\n"
    tasks = [("passes", "CU_SAMPLE_END\nexit 0\n"),
             ("fails", "CU_SAMPLE_END\nexit 3\n"),
             ("sleeps", "CU_SAMPLE_END\nsleep 30\n"),
             ("network", "CU_SAMPLE_END\nexec 3<>/dev/tcp/127.0.0.1/%d && exit 0 || exit 4\n" % port)]
    path = os.path.join(tmp, "tasks.jsonl")
    import json
    with open(path, "w") as fh:
        for name, test in tasks:
            fh.write(json.dumps({"name": name, "prompt": head, "test": test}) + "\n")
    runs = os.path.join(tmp, "runs")
    p = mpirun(1, [exe, os.path.join(src, "configs/demo-base.yaml"), f"job.runs_dir={runs}",
                   "model.n_embd=64", "model.n_head=2", "train.max_steps=4", "train.warmup_steps=1",
                   "eval.every_steps=4", f"eval.exec_tasks={path}", "eval.exec_command=[bash,task.sh]",
                   "eval.exec_file=task.sh", "eval.exec_timeout_s=1", "eval.max_new_tokens=16"],
               cwd=src)
    lsock.close()
    f.check(p.returncode == 0, f"the job completes (exit {p.returncode})")
    f.check("pass@1 0.250 (1 of 4 tasks)" in p.stdout, "pass@1 is 1 of 4")
    events = [json.loads(l) for l in open(os.path.join(runs, "demo-base", "events.jsonl"))]
    ex = [e for e in events if e["type"] == "exec"]
    f.check(len(ex) == 1, "one exec event")
    if ex:
        r = {x["name"]: x for x in ex[0]["results"]}
        f.check(r["passes"]["passed"], "the passing task passed")
        f.check(not r["fails"]["passed"] and r["fails"]["exit_code"] == 3, "the failing task exited 3")
        f.check(r["sleeps"]["timed_out"] and r["sleeps"]["seconds"] < 5, "the sleeper was stopped at 1 s")
        f.check(not r["network"]["passed"], "the task could not connect to the loopback listener")
        f.check("seccomp" in ex[0]["sandbox"], f"the sandbox layers are recorded: {ex[0]['sandbox']}")
    m = [json.loads(l) for l in open(os.path.join(runs, "demo-base", "metrics.jsonl"))]
    f.check(any(x.get("exec_pass1") == 0.25 for x in m), "metrics.jsonl has exec_pass1")
    bad = os.path.join(tmp, "bad.jsonl")
    with open(bad, "w") as fh:
        fh.write('{"name": "x", "prompt": "a"}\n')
    p = mpirun(1, [exe, os.path.join(src, "configs/demo-base.yaml"), f"job.runs_dir={runs}",
                   "job.name=bad", f"eval.exec_tasks={bad}", "train.max_steps=2",
                   "train.warmup_steps=1"], cwd=src)
    f.check(p.returncode == 2 and "bad.jsonl:1" in p.stderr, "a malformed task file exits 2 naming its line")


def case_dataset(exe, src, tmp, f):
    """codexctl prepare, then training from the HDF5 dataset on 2 ranks. A
    fake key planted in one source file is redacted before tokenising: the
    dataset's tokens hold the placeholder and never the key, the safety
    report counts it, and the trained model's samples never contain it (the
    canary)."""
    import json
    ctl = os.path.join(os.path.dirname(exe), "codexctl")
    key = "AKIA" + "Q3EGRT7P" + "LXW5M2ND"   # fake, pattern-valid, built at run time
    secrets = os.path.join(tmp, "deploy.sh")
    with open(secrets, "w") as fh:
        fh.write("#!/bin/sh\n" + "".join(f"export AWS_ACCESS_KEY_ID={key}  # step {i}\n"
                                         for i in range(200)))
    ds = os.path.join(tmp, "ds.h5")
    p = run([ctl, "prepare", "-o", ds, "--val", os.path.join(src, "configs/corpus/python.txt"),
             os.path.join(src, "configs/corpus/base.txt"), secrets], cwd=src)
    f.check(p.returncode == 0 and os.path.isfile(ds), f"prepare writes the dataset ({p.returncode})")
    f.check("redacted" in p.stdout, "prepare reports its redactions")
    attrs = subprocess.run(["h5dump", "-A", "-a", "/safety_report", ds], capture_output=True,
                           text=True).stdout
    f.check("aws_access_key" in attrs, "the dataset's safety report counts aws_access_key")
    raw = os.path.join(tmp, "train.bin")
    subprocess.run(["h5dump", "-d", "/train/tokens", "-b", "LE", "-o", raw, ds], capture_output=True)
    data = open(raw, "rb").read() if os.path.exists(raw) else b""
    text = bytes(data[i] for i in range(0, len(data), 2) if data[i + 1] == 0)
    f.check(len(text) > 90000 and b"<REDACTED:aws_access_key>" in text and key.encode() not in text,
            "the tokens hold the placeholder, never the key")
    runs = os.path.join(tmp, "runs")
    p = mpirun(2, [exe, os.path.join(src, "configs/demo-base.yaml"), f"job.runs_dir={runs}",
                   "data.source=hdf5", f"data.path={ds}", "train.micro_batch_size=4",
                   "train.max_steps=200", "train.log_every=5", "eval.every_steps=100",
                   "eval.prompts=[\"export AWS_ACCESS_KEY_ID=\"]", "eval.temperature=0",
                   "eval.max_new_tokens=40"], cwd=src)
    f.check(p.returncode == 0, f"2 ranks train from the dataset (exit {p.returncode})")
    ls = [l for _, l in losses(p.stdout)]
    if len(ls) >= 20:
        clear_fall(ls, "training from HDF5", f)
    f.check("eval    200 | val loss" in "\n".join(screen_lines(p.stdout)),
            "evaluation uses the dataset's val split")
    logs = ""
    for fn in ("events.jsonl", "metrics.jsonl", "state.json"):
        logs += open(os.path.join(runs, "demo-base", fn)).read()
    f.check(key not in logs, "the key never appears in samples or logs (canary)")
    prov = json.load(open(os.path.join(runs, "demo-base", "provenance.json")))
    f.check(prov["data"]["source"] == "hdf5" and len(prov["data"]["sha256"] or "") == 64,
            "provenance records the dataset's sha256")
    # the trained run as a model: generate and eval
    run_dir = os.path.join(runs, "demo-base")
    q = run([ctl, "generate", run_dir, "--prompt", "def ", "--max-new-tokens", "20",
             "--temperature", "0"], cwd=src)
    q2 = run([ctl, "generate", run_dir, "--prompt", "def ", "--max-new-tokens", "20",
              "--temperature", "0"], cwd=src)
    f.check(q.returncode == 0 and q.stdout.startswith("def ") and len(q.stdout) > 10 and
            q.stdout == q2.stdout, "generate continues the prompt, greedily and repeatably")
    q = run([ctl, "eval", run_dir, "--data", ds, "--json"], cwd=src)
    try:
        ev = json.loads(q.stdout)
    except ValueError:
        ev = {}
    job_val = val_losses(p.stdout)
    f.check(q.returncode == 0 and ev.get("split") == "val" and ev.get("tokens", 0) > 1000,
            f"eval measures the val split: {ev}")
    if ev.get("loss") and job_val:
        rel = abs(ev["loss"] - job_val[-1]) / job_val[-1]
        print(f"measured: codexctl eval loss {ev['loss']:.4f}, the job's last val loss "
              f"{job_val[-1]:.4f} (other windows), rel {rel:.3f}")
        f.check(rel < 0.05, "eval agrees with the job's own validation loss within 5%")
    # the job's own windows: eval.batches (4) x global_batch_size (8) of the
    # val split in the job's order give exactly its last validation loss
    q = run([ctl, "eval", run_dir, "--data", ds, "--json", "--max-windows", "32"], cwd=src)
    try:
        same = json.loads(q.stdout)["loss"]
    except (ValueError, KeyError):
        same = None
    vals = [o["val_loss"] for o in map(json.loads, open(os.path.join(run_dir, "metrics.jsonl")))
            if "val_loss" in o]
    if f.check(same is not None and vals, "eval of the job's 32 validation windows"):
        rel = abs(same - vals[-1]) / vals[-1]
        print(f"measured: eval of the job's windows {same}, its last val loss {vals[-1]}, "
              f"rel {rel:.1e}")
        f.check(rel < 5e-6, "eval of the job's windows equals its last validation loss")
    q = run([ctl, "eval", run_dir, "--data", os.path.join(tmp, "missing.h5")], cwd=src)
    f.check(q.returncode == 2 and "missing.h5" in q.stderr, "a missing dataset exits 2, named")
    p = mpirun(1, [exe, os.path.join(src, "configs/demo-base.yaml"), f"job.runs_dir={runs}",
                   "job.name=wrongtok", "data.source=hdf5", f"data.path={ds}", "tokenizer.kind=gpt2",
                   "tokenizer.path=" + os.path.join(src, "third_party_data/gpt2")], cwd=src)
    f.check(p.returncode == 2 and "another tokenizer" in p.stderr,
            "a dataset made with another tokenizer is refused (exit 2)")


def val_losses(stdout):
    return [float(m.group(1)) for m in
            (re.search(r"^eval\s+\d+ \| val loss ([0-9.]+)", l) for l in screen_lines(stdout)) if m]


def case_hf_roundtrip(exe, src, tmp, f):
    """LoRA training, `codexctl export --format merged` to a Hugging Face
    GPT-2 folder, and a new job with model.init on that folder: the imported
    model has the validation loss the adapted one had."""
    ctl = os.path.join(os.path.dirname(exe), "codexctl")
    runs = os.path.join(tmp, "runs")
    base = os.path.join(src, "configs/demo-base.yaml")
    common = [f"job.runs_dir={runs}", "lora.enabled=true", "train.warmup_steps=0"]
    p = mpirun(1, [exe, base, "job.name=a", "train.max_steps=30", "eval.every_steps=30"] + common,
               cwd=src)
    va = val_losses(p.stdout)
    merged = os.path.join(tmp, "merged")
    q = run([ctl, "export", os.path.join(runs, "a"), "--format", "merged", "-o", merged], cwd=src)
    f.check(q.returncode == 0 and os.path.isfile(os.path.join(merged, "model.safetensors")) and
            os.path.isfile(os.path.join(merged, "config.json")), "merged export written")
    peft = os.path.join(tmp, "peft")
    q = run([ctl, "export", os.path.join(runs, "a"), "--format", "peft", "-o", peft], cwd=src)
    f.check(q.returncode == 0 and os.path.isfile(os.path.join(peft, "adapter_config.json")),
            "PEFT export written")
    p = mpirun(1, [exe, base, "job.name=b", f"model.init={merged}", "train.max_steps=1",
                   "train.lr=1e-30", "eval.every_steps=1"] + common, cwd=src)
    vb = val_losses(p.stdout)
    f.check(p.returncode == 0 and len(va) == 1 and len(vb) == 1, "both jobs evaluated")
    if va and vb:
        rel = abs(va[0] - vb[0]) / va[0]
        print(f"measured: validation loss adapted {va[0]:.6f}, imported merged {vb[0]:.6f}, rel {rel:.1e}")
        f.check(rel < 1e-5, "the imported merged model equals the adapted one")


LLAMA = ["model.arch=llama", "model.n_head=4", "model.n_kv_head=2", "model.ffn_hidden=96",
         "model.rope_theta=10000"]


def case_llama(exe, src, tmp, f):
    """A Llama (GQA, untied head) through codex-train: a base trained from
    random weights, then LoRA on it: the loss falls in both; 1 and 2 ranks give the same losses and bit-identical weights; a
    stopped run resumes to the same losses; the merged export (config.json
    generated: model_type llama) loads back as model.init with the adapted
    model's validation loss; generate runs on the KV cache."""
    ctl = os.path.join(os.path.dirname(exe), "codexctl")
    runs = os.path.join(tmp, "runs")
    base = os.path.join(src, "configs/demo-base.yaml")
    common = [f"job.runs_dir={runs}", "lora.enabled=true", "train.warmup_steps=0"] + LLAMA
    # stage 1: a Llama base from random weights (full fine-tuning), as the demo does
    train_and_check_fall(exe, src, "configs/demo-base.yaml",
                         [f"job.runs_dir={runs}", "job.name=lbase", "model.n_embd=64",
                          "train.max_steps=60", "train.log_every=2", "train.warmup_steps=5"] +
                         LLAMA, "llama full fine-tuning", 25, f)
    lbase = os.path.join(runs, "lbase", "final.h5")
    # stage 2: LoRA on every linear of that base, on a repetitive text it has
    # not seen (a clear signal: the loss falls smoothly within 60 steps)
    text = os.path.join(tmp, "rep.txt")
    with open(text, "w") as fh:
        fh.write("".join("static int add_%d(int a, int b) { return a + b * %d; }\n" % (i % 7, i % 5)
                         for i in range(600)))
    data = [f"data.path={text}", "model.n_embd=64"]
    p = mpirun(1, [exe, base] + common + data + ["job.name=llama", f"model.init={lbase}",
                                                  "lora.r=16", "lora.alpha=32",
                                                  "train.max_steps=60", "train.lr=1e-2",
                                                  "train.log_every=2", "eval.every_steps=60"],
               cwd=src)
    f.check(p.returncode == 0, f"llama LoRA: exits 0 (got {p.returncode})")
    ls = [l for _, l in losses(p.stdout)]
    f.check(len(ls) >= 25, f"llama LoRA: logged at least 25 steps (got {len(ls)})")
    if len(ls) >= 25:
        clear_fall(ls, "llama LoRA", f)
    va = val_losses(p.stdout)
    run_dir = os.path.join(runs, "llama")
    job = open(os.path.join(run_dir, "job.yaml")).read() if os.path.isfile(
        os.path.join(run_dir, "job.yaml")) else ""
    f.check("arch: llama" in job and "n_kv_head: 2" in job, "job.yaml records the llama sizes")
    names = h5_names(os.path.join(run_dir, "final.h5"))
    f.check(names is None or "layers.1.mlp.down_proj.lora_B" in names,
            "final.h5 holds Llama LoRA tensors")
    # ranks agree
    one = mpirun(1, [exe, base] + tiny_random(runs, "l1", LLAMA), cwd=src)
    l1 = losses(one.stdout)
    f.check(one.returncode == 0 and len(l1) == 12, f"llama 1 rank: 12 steps ({len(l1)})")
    two = mpirun(2, [exe, base] + tiny_random(runs, "l2", LLAMA), cwd=src)
    l2 = losses(two.stdout)
    f.check(two.returncode == 0 and len(l2) == 12, f"llama 2 ranks: 12 steps ({len(l2)})")
    worst = max((abs(a - b) / max(abs(a), 1e-12) for (_, a), (_, b) in zip(l1, l2)), default=1.0)
    print(f"measured: llama worst relative loss difference 1 vs 2 ranks {worst:.2e}")
    f.check(len(l1) == len(l2) and worst <= 1e-5, f"llama 2 ranks: losses within 1e-5 ({worst:.2e})")
    f.check("trainable weights bit-identical on all 2 ranks" in two.stdout,
            "llama: the 2 ranks end with bit-identical weights")
    # stop and resume
    stop = tiny_random(runs, "lr", LLAMA + ["checkpoint.every_steps=4"])
    p = mpirun(1, [exe, base] + stop + ["--stop-after", "6"], cwd=src)
    f.check(p.returncode == 75, f"llama --stop-after exits 75 (got {p.returncode})")
    p = mpirun(1, [exe, base] + stop, cwd=src)
    f.check(p.returncode == 0 and "resumed from step 6" in p.stdout, "llama resumed run completes")
    whole, split = metric_losses(os.path.join(runs, "l1")), metric_losses(os.path.join(runs, "lr"))
    f.check(sorted(split) == sorted(whole) and all(whole[k] == split[k] for k in whole),
            "llama: the resumed run has the same loss at every step")
    # merged export with a generated config.json, loaded back
    merged = os.path.join(tmp, "merged")
    q = run([ctl, "export", run_dir, "--format", "merged", "-o", merged], cwd=src)
    cfg = read_json(os.path.join(merged, "config.json")) if q.returncode == 0 else {}
    f.check(cfg.get("model_type") == "llama" and cfg.get("num_key_value_heads") == 2 and
            cfg.get("tie_word_embeddings") is False, "merged export: a Llama config.json")
    peft = os.path.join(tmp, "peft")
    q = run([ctl, "export", run_dir, "--format", "peft", "-o", peft], cwd=src)
    ac = read_json(os.path.join(peft, "adapter_config.json")) if q.returncode == 0 else {}
    f.check(sorted(ac.get("target_modules", [])) == sorted(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]),
        "PEFT export: Llama target_modules")
    p = mpirun(1, [exe, base, f"job.runs_dir={runs}", "job.name=lmerged", f"model.init={merged}",
                   "lora.enabled=true", "train.max_steps=1", "train.lr=1e-30",
                   "eval.every_steps=1", "train.warmup_steps=0"] + data, cwd=src)
    vb = val_losses(p.stdout)
    f.check(p.returncode == 0 and len(va) == 1 and len(vb) == 1,
            "a job on the merged Llama folder runs; both evaluated")
    job_b = open(os.path.join(runs, "lmerged", "job.yaml")).read() if p.returncode == 0 else ""
    f.check("arch: llama" in job_b, "model.init of a Llama folder makes the job llama")
    if va and vb:
        rel = abs(vb[0] - va[0]) / va[0]
        print(f"measured: llama val loss adapted {va[0]:.6f}, merged {vb[0]:.6f}")
        f.check(rel < 1e-5, f"the merged Llama equals the adapted one ({rel:.1e})")
    # the PEFT adapter continued with lora.init_from on the same base
    p = mpirun(1, [exe, base] + common + data + ["job.name=lcont", f"model.init={lbase}",
                                                  f"lora.init_from={peft}", "lora.r=16",
                                                  "lora.alpha=32", "train.max_steps=1",
                                                  "train.lr=1e-30", "eval.every_steps=1"], cwd=src)
    vc = val_losses(p.stdout)
    f.check(p.returncode == 0 and len(vc) == 1, "lora.init_from a Llama PEFT adapter runs")
    if va and vc:
        rel = abs(vc[0] - va[0]) / va[0]
        print(f"measured: llama val loss adapted {va[0]:.6f}, continued from PEFT {vc[0]:.6f}")
        f.check(rel < 1e-5, f"the continued adapter equals the exported one ({rel:.1e})")
    # codexctl eval of the adapted Llama and of its merged folder agree
    ds = os.path.join(tmp, "lds.h5")
    # --val-fraction 0: the one document goes to train whatever the temporary
    # path it is hashed by (with the default 5% it went to val in about one
    # run in twenty, leaving --split train empty)
    q = run([ctl, "prepare", "-o", ds, "--val-fraction", "0", text], cwd=src)
    f.check(q.returncode == 0, f"prepare the Llama eval data ({q.stderr[-300:]})")
    evs = []
    # (a HF folder alone needs GPT-2 BPE files for its tokenizer; the job on
    # the merged folder carries the byte tokenizer in its config)
    for what in (run_dir, os.path.join(runs, "lmerged")):
        q = run([ctl, "eval", what, "--data", ds, "--json", "--seq-len", "64", "--split", "train",
                 "--max-windows", "32"], cwd=src)
        try:
            evs.append(json.loads(q.stdout)["loss"])
        except (ValueError, KeyError):
            pass
    f.check(len(evs) == 2, "codexctl eval of a Llama run and of its merged folder")
    if len(evs) == 2:
        rel = abs(evs[0] - evs[1]) / evs[0]
        print(f"measured: llama eval loss run {evs[0]:.6f}, merged folder {evs[1]:.6f}")
        f.check(rel < 1e-5, f"eval: the run and its merged folder agree ({rel:.1e})")
    g = run([ctl, "generate", run_dir, "--prompt", "int main(", "--max-new-tokens", "16",
             "--temperature", "0"], cwd=src)
    f.check(g.returncode == 0 and len(g.stdout) > 0, "codexctl generate on a Llama run")


def flip_tensor_byte(path, tensor):
    """Changes one byte inside a tensor's data (its file offset from
    h5dump -p), so the file stays valid HDF5 and only a checksum can tell."""
    out = subprocess.run(["h5dump", "-p", "-H", "-d", f"/tensors/{tensor}", path],
                         capture_output=True, text=True).stdout
    m = re.search(r"CONTIGUOUS\s+SIZE\s+\d+\s+OFFSET\s+(\d+)", out)
    if not m:
        return False
    with open(path, "r+b") as fh:
        fh.seek(int(m.group(1)) + 5)
        b = fh.read(1)
        fh.seek(int(m.group(1)) + 5)
        fh.write(bytes([b[0] ^ 0x40]))
    return True


def case_corrupt_checkpoint(exe, src, tmp, f):
    """A checkpoint or final.h5 whose tensor bytes changed after writing is
    refused by every reader: codexctl export, eval and generate, and
    codex-train's model.init, with a message naming the file."""
    if not shutil.which("h5dump"):
        print("h5dump not found")
        sys.exit(77)
    ctl = os.path.join(os.path.dirname(exe), "codexctl")
    runs = os.path.join(tmp, "runs")
    base = os.path.join(src, "configs/demo-base.yaml")
    p = mpirun(1, [exe, base, "job.name=a", f"job.runs_dir={runs}", "lora.enabled=true",
                   "train.max_steps=6", "checkpoint.every_steps=3", "eval.every_steps=0",
                   "train.warmup_steps=0"],
               cwd=src)
    p2 = mpirun(1, [exe, base, "job.name=full", f"job.runs_dir={runs}", "train.max_steps=2",
                    "eval.every_steps=0", "train.warmup_steps=0"], cwd=src)
    f.check(p.returncode == 0 and p2.returncode == 0, "the LoRA and full runs finished")
    ckdir = os.path.join(runs, "a", "checkpoints")
    ck = os.path.join(ckdir, "step_00000006.h5")
    final = os.path.join(runs, "a", "final.h5")
    data = os.path.join(tmp, "d.h5")
    # --val names the validation file: a hashed split of two documents may
    # leave either side empty
    q = run([ctl, "prepare", "-o", data, "--val", os.path.join(src, "configs/corpus/python.txt"),
             os.path.join(src, "configs/corpus/base.txt")], cwd=src)
    f.check(q.returncode == 0, "a dataset for eval")
    readers = {
        "export": lambda m: [ctl, "export", m, "--format", "peft", "-o", os.path.join(tmp, "o")],
        "generate": lambda m: [ctl, "generate", m, "--prompt", "int ", "--max-new-tokens", "4"],
        "eval": lambda m: [ctl, "eval", m, "--data", data, "--max-windows", "2"],
    }
    for name, argv in readers.items():
        for what in (ck, final):
            q = run(argv(what), cwd=src)
            f.check(q.returncode == 0, f"{name} reads the intact {os.path.basename(what)}")
    for what, tensor in ((ck, "h.0.attn.c_attn.lora_A"), (final, "h.1.mlp.c_fc.lora_A"),
                         (os.path.join(runs, "full", "final.h5"), "wte")):
        f.check(flip_tensor_byte(what, tensor), f"corrupted {what}")
    for name, argv in readers.items():
        for what in (ck, final):
            q = run(argv(what), cwd=src)
            f.check(q.returncode != 0 and "checksum mismatch" in q.stderr and what in q.stderr,
                    f"{name} refuses the corrupted {os.path.basename(what)} (exit {q.returncode})")
    q = run([ctl, "export", os.path.join(runs, "a"), "--format", "peft", "-o",
             os.path.join(tmp, "o2")], cwd=src)
    f.check(q.returncode != 0 and "checksum mismatch" in q.stderr,
            "export of the run directory (its final.h5) refuses it")
    p = mpirun(1, [exe, base, "job.name=b", f"job.runs_dir={runs}", "lora.enabled=true",
                   f"model.init={os.path.join(runs, 'full', 'final.h5')}", "train.max_steps=1",
                   "train.warmup_steps=0"],
               cwd=src)
    f.check(p.returncode != 0 and "checksum mismatch" in (p.stdout + p.stderr),
            f"codex-train refuses a corrupted model.init (exit {p.returncode})")


def st_load(path):
    """A safetensors file as (metadata, {name: [dtype, shape, bytes]})."""
    import json
    import struct
    with open(path, "rb") as fh:
        n = struct.unpack("<Q", fh.read(8))[0]
        head = json.loads(fh.read(n))
        data = fh.read()
    meta = head.pop("__metadata__", {})
    return meta, {k: [v["dtype"], v["shape"], data[v["data_offsets"][0]:v["data_offsets"][1]]]
                  for k, v in head.items()}


def st_save(path, meta, tensors):
    import json
    import struct
    head, blobs, off = {"__metadata__": meta} if meta else {}, [], 0
    for k, (dt, shape, b) in tensors.items():
        head[k] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(head).encode()
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def to_f16(b):
    import numpy as np
    return np.frombuffer(b, dtype="<f4").astype("<f2").tobytes()


def case_lora_init_from(exe, src, tmp, f):
    """train -> export PEFT -> a new job with lora.init_from: its first
    validation loss is the exported run's last; continuing it on 2 ranks,
    stopped and resumed, gives the losses of an uninterrupted run; the
    adapter's sha256 is in provenance; mismatched settings, missing, extra
    or misshapen tensors and another base are refused naming the key or
    tensor."""
    import hashlib
    ctl = os.path.join(os.path.dirname(exe), "codexctl")
    runs = os.path.join(tmp, "runs")
    cfg = os.path.join(src, "configs/demo-base.yaml")
    common = [f"job.runs_dir={runs}", "train.warmup_steps=0", "train.micro_batch_size=4"]
    lora = common + ["lora.enabled=true", "lora.r=4", "lora.alpha=8"]
    p = mpirun(1, [exe, cfg, "job.name=base", "train.max_steps=20", "eval.every_steps=0"] + common,
               cwd=src)
    p2 = mpirun(1, [exe, cfg, "job.name=base2", "job.seed=7", "train.max_steps=2",
                    "eval.every_steps=0"] + common, cwd=src)
    f.check(p.returncode == 0 and p2.returncode == 0, "two full-training bases")
    base = os.path.join(runs, "base", "final.h5")
    lora += [f"model.init={base}"]
    p = mpirun(1, [exe, cfg, "job.name=a", "train.max_steps=30", "eval.every_steps=30"] + lora,
               cwd=src)
    va = val_losses(p.stdout)
    peft = os.path.join(tmp, "peft")
    q = run([ctl, "export", os.path.join(runs, "a"), "--format", "peft", "-o", peft], cwd=src)
    f.check(q.returncode == 0, "PEFT export written")
    wfile = os.path.join(peft, "adapter_model.safetensors")
    meta, tensors = st_load(wfile)
    f.check(len(meta.get("codex_base_sha256", "")) == 64, "the export records the base's sha256")

    def first_val(name, init_from, n=1, extra=()):
        p = mpirun(n, [exe, cfg, f"job.name={name}", f"lora.init_from={init_from}",
                       "train.max_steps=1", "train.lr=1e-30", "eval.every_steps=1"] + lora +
                   list(extra), cwd=src)
        v = val_losses(p.stdout)
        return v[0] if p.returncode == 0 and v else None

    vb = first_val("b", peft)
    f.check(len(va) == 1 and vb is not None, "both jobs evaluated")
    if va and vb is not None:
        rel = abs(va[0] - vb) / va[0]
        print(f"measured: final val loss of the run {va[0]:.7f}, first of lora.init_from {vb:.7f}, "
              f"rel {rel:.1e}")
        f.check(rel <= 1e-6, "lora.init_from continues at the exported run's validation loss")
    h5diff = shutil.which("h5diff")
    if h5diff:  # lr 1e-30 moves nothing: the adapter came back bit for bit
        d = subprocess.run([h5diff, os.path.join(runs, "a", "final.h5"),
                            os.path.join(runs, "b", "final.h5"), "/tensors"],
                           capture_output=True, text=True)
        f.check(d.returncode == 0, f"imported adapter bit-identical to the run's: {d.stdout[:300]}")
    vfresh = first_val("fresh", "", 1)
    if vb is not None and vfresh is not None:
        f.check(vb < vfresh - 1e-3, f"and not at a fresh adapter's ({vfresh:.4f})")
    prov = read_json(os.path.join(runs, "b", "provenance.json"))
    with open(wfile, "rb") as fh:
        want = hashlib.sha256(fh.read()).hexdigest()
    f.check(prov.get("lora_init_from", {}).get("sha256") == want,
            "provenance.json records the adapter's sha256")
    # F16 tensors and PEFT's in-memory ".default" names read too
    p16 = os.path.join(tmp, "p16")
    shutil.copytree(peft, p16)
    st_save(os.path.join(p16, "adapter_model.safetensors"), meta,
            {k.replace(".weight", ".default.weight"): ["F16", sh, to_f16(b)]
             for k, (dt, sh, b) in tensors.items()})
    v16 = first_val("b16", p16)
    f.check(vb is not None and v16 is not None and abs(v16 - vb) / vb < 1e-3,
            f"an F16 adapter gives nearly the same loss ({v16} vs {vb})")
    # continued on 2 ranks: stopped at 6 and resumed = uninterrupted
    cont = lora + [f"lora.init_from={peft}", "train.max_steps=12", "eval.every_steps=0",
                   "checkpoint.every_steps=6", "train.log_every=1"]
    p = mpirun(2, [exe, cfg, "job.name=whole"] + cont, cwd=src)
    f.check(p.returncode == 0, "continued on 2 ranks")
    p = mpirun(2, [exe, cfg, "job.name=split", "--stop-after", "6"] + cont, cwd=src)
    f.check(p.returncode == 75, f"stopped at step 6 (exit {p.returncode})")
    p = mpirun(2, [exe, cfg, "job.name=split"] + cont, cwd=src)
    f.check(p.returncode == 0 and "resumed from step 6" in p.stdout, "resumed on 2 ranks")
    whole = metric_losses(os.path.join(runs, "whole"))
    split = metric_losses(os.path.join(runs, "split"))
    f.check(sorted(split) == list(range(1, 13)) and all(whole[k] == split[k] for k in whole),
            "the resumed run has the uninterrupted run's loss at every step")
    if va and whole:
        print(f"measured: first training loss continuing {whole[1]:.4f}")

    def refused(name, args, needle):
        p = mpirun(1, [exe, cfg, f"job.name={name}", "train.max_steps=1"] + lora + args, cwd=src)
        out = p.stdout + p.stderr
        f.check(p.returncode == 2 and needle in out, f"{name}: exit 2 naming '{needle}' "
                f"(exit {p.returncode})")
        f.check(not os.path.exists(os.path.join(runs, name, "final.h5")), f"{name}: no final.h5")

    refused("bad_r", [f"lora.init_from={peft}", "lora.r=8"], "its r is 4 but lora.r is 8")
    refused("bad_alpha", [f"lora.init_from={peft}", "lora.alpha=16"],
            "its lora_alpha is 8 but lora.alpha is 16")
    refused("bad_rs", [f"lora.init_from={peft}", "lora.rslora=true"],
            "its use_rslora is false but lora.rslora is true")
    refused("bad_targets", [f"lora.init_from={peft}", "lora.targets=[qkv]"],
            "lora.targets is [qkv]")
    refused("bad_base", [f"lora.init_from={peft}",
                         f"model.init={os.path.join(runs, 'base2', 'final.h5')}"],
            "it was trained on a base with sha256")
    refused("bad_dir", [f"lora.init_from={tmp}/nowhere"], "nowhere/adapter_config.json")
    name0 = sorted(tensors)[0]
    for what, edit, needle in (
            ("missing", lambda t: t.pop(name0), f"tensor {name0} is missing"),
            ("extra", lambda t: t.__setitem__(
                "base_model.model.transformer.h.7.attn.c_attn.lora_A.weight", t[name0]),
             "h.7.attn.c_attn.lora_A.weight is not part of this job's adapter"),
            ("shape", lambda t: t.__setitem__(name0, ["F32", t[name0][1][::-1], t[name0][2]]),
             f"tensor {name0} has shape")):
        d = os.path.join(tmp, what)
        shutil.copytree(peft, d)
        t = dict(tensors)
        edit(t)
        st_save(os.path.join(d, "adapter_model.safetensors"), meta, t)
        refused(what, [f"lora.init_from={d}"], needle)


def case_help(exe, src, tmp, f):
    p = run([exe, "--help"], cwd=src, timeout=60)
    f.check(p.returncode == 0 and "usage: codex-train" in p.stdout, "--help prints usage")
    p = run([exe, "--version"], cwd=src, timeout=60)
    f.check(p.returncode == 0 and "codex-train" in p.stdout, "--version")
    p = run([exe, "--bogus"], cwd=src, timeout=60)
    f.check(p.returncode == 2 and "--help" in p.stderr, "unknown option exits 2, points at --help")
    p = run([exe, os.path.join(src, "configs/demo.yaml"), "train.lr=0.5", "--print-config"],
            cwd=src, timeout=60)
    f.check(p.returncode == 0 and re.search(r"^\s*lr: 0\.5\s*$", p.stdout, re.M) is not None,
            "--print-config shows the override")


def case_slurm_env(exe, src, tmp, f):
    """Under Slurm's environment: an array task records <array>_<task> as its
    slurm_job_id and SLURM_RESTART_COUNT as restarts; a restarted job whose
    checkpoint.resume is 'never' warns (log and events.jsonl)."""
    runs = os.path.join(tmp, "runs")
    for name, extra_env, resume, want_id, want_restarts in (
            ("arr", {"SLURM_JOB_ID": "901", "SLURM_ARRAY_JOB_ID": "900",
                     "SLURM_ARRAY_TASK_ID": "1", "SLURM_RESTART_COUNT": "2"}, "never", "900_1", 2),
            ("plain", {"SLURM_JOB_ID": "55"}, "auto", "55", 0)):
        e = env()
        e = {k: v for k, v in e.items() if not k.startswith("SLURM_")}
        e.update(extra_env)
        cmd = [exe, os.path.join(src, "configs/demo-base.yaml")] + tiny_random(
            runs, name, [f"checkpoint.resume={resume}"])
        print("+", " ".join(cmd), extra_env, flush=True)
        p = subprocess.run(cmd, cwd=src, env=e, capture_output=True, text=True, timeout=300)
        sys.stdout.write(p.stderr[-2000:])
        f.check(p.returncode == 0, f"{name}: exits 0 (got {p.returncode})")
        with open(os.path.join(runs, name, "state.json")) as fh:
            st = json.load(fh)
        f.check(st.get("slurm_job_id") == want_id, f"{name}: slurm_job_id {st.get('slurm_job_id')}")
        f.check(st.get("restarts") == want_restarts, f"{name}: restarts {st.get('restarts')}")
        with open(os.path.join(runs, name, "events.jsonl")) as fh:
            warn = [json.loads(l) for l in fh if '"warning"' in l and "restart" in l]
        warned = "checkpoint.resume is 'never'" in p.stderr
        if resume == "never":
            f.check(warn and "never" in warn[0]["message"] and warned,
                    "a restart with resume 'never' warns in events.jsonl and the log")
        else:
            f.check(not warn and not warned, "no warning without a restart")


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
    with tempfile.TemporaryDirectory(prefix="cu_e2e_") as tmp:
        fn(os.path.abspath(exe), src, tmp, f)
    return f.summary()


if __name__ == "__main__":
    sys.exit(main())
