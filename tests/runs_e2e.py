#!/usr/bin/env python3
"""Runs you can trust (issue 13): the run directory contract under faults,
with the real codex-train, codexctl and codex-ita.

usage: runs_e2e.py BUILD_DIR SOURCE_DIR CASE

Each case reproduces what went wrong before rundir/ and checks the fix:
  lock        the same job.name twice at once: the second is refused with
              exit 2 naming the holder, the first is unharmed and there is one
              series of metrics (before: both trained into one directory);
              train.log holds the run's own log, codexctl logs shows it
  identity    a rerun with another lora.r is refused with exit 2 naming
              lora.r, the old run byte-identical (before: its checkpoints were
              called invalid, training restarted and overwrote final.h5); a
              rerun with another lr resumes and its resumed event lists it; a
              completed run asked again does nothing
  sigint      Ctrl-C without mpirun: checkpoint, exit 75, PREEMPTED, the
              resume command printed, and the resumed run is exact
  rank_error  an out-of-vocabulary token and a flipped data byte read by
              one rank of 2: FAILED within 30 s naming the rank and the
              message, no process left (before: the others waited in the
              allreduce for ever, RUNNING with a fresh heartbeat)
  sigstop     SIGSTOP of rank 1, then of rank 0: the job is ended and FAILED
              names the stopped rank within the heartbeat limit (15 s) plus
              slack; kill -9 of rank 0 is recorded by rank 1; rank 0 stopped
              just after a step's reductions and continued by the launcher
              keeps rank 1's record of its stop (one failed event)
  stall       the main thread of rank 0, then of rank 1, of 2 blocks for
              ever at step 20 (CU_TEST_STALL_AT_STEP, a read nothing
              answers, as on a hung file system) while its watchdog lives:
              with a 4 s progress deadline (CU_PROGRESS_TIMEOUT_S) the job
              ends FAILED naming that rank, its host and "no progress since
              step 20", no process left (before: it hung for ever, RUNNING
              with a fresh heartbeat); with the deadline off, codexctl
              cancel ends the stalled job
  best        early stopping with keep_last 2: the best checkpoint survives
              rotation, best.h5 holds its weights, the exit line names both
              files and why training stopped; --which best|final
  disk_full   a full disk while writing metrics: FAILED with the errno text,
              no partial line (a small tmpfs)
  preflight   --check and submit: every input problem at once (tokenizer,
              model.init, data.path, batch), advice that passes when followed
              on 3 ranks, a shape mismatch named as one
  follow      codexctl logs -f prints train.log as it grows and ends when
              the job has ended
  check       codex-train --check: a good job passes, an empty validation
              split with eval on and a missing data.path exit 2, config
              problems come together; nothing is written
  agree       codexctl list, status --json and GET /v1/jobs/{id} agree on
              status and reason for every status value (fixture directories)
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from checks import Checks
from e2e import env, metric_losses, mpirun, run

TINY = ["data.source=random", "data.seq_len=16", "model.n_layer=2", "model.n_head=2",
        "model.n_embd=32", "model.max_seq_len=16", "train.global_batch_size=8",
        "train.micro_batch_size=2", "train.warmup_steps=0", "lora.enabled=true"]


def read_json(path):
    with open(path) as fh:
        return json.load(fh)


def wait_for(pred, timeout):
    end = time.time() + timeout
    while time.time() < end:
        try:
            if pred():
                return True
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    return False


def state_step(run_dir):
    return read_json(os.path.join(run_dir, "state.json")).get("step", 0)


def tree_bytes(d):
    out = {}
    for root, _, files in os.walk(d):
        for n in files:
            p = os.path.join(root, n)
            rel = os.path.relpath(p, d)
            if rel == "lock":  # the lock names its last taker; it is not run data
                continue
            with open(p, "rb") as fh:
                out[rel] = fh.read()
    return out


def no_trainers_left(tag):
    p = subprocess.run(["pgrep", "-f", tag], capture_output=True, text=True)
    return p.stdout.strip() == ""


def case_lock(b, src, tmp, f):
    train = os.path.join(b, "jobs", "codex-train")
    demo = os.path.join(src, "configs/demo-base.yaml")
    runs = os.path.join(tmp, "runs")
    args = [train, demo, f"job.runs_dir={runs}", "job.name=twice", "train.max_steps=4000",
            "train.log_every=1", "checkpoint.every_steps=0"] + TINY
    first = subprocess.Popen(args, cwd=src, env=env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    run_dir = os.path.join(runs, "twice")
    f.check(wait_for(lambda: state_step(run_dir) >= 5, 60), "the first run started")
    second = run(args + ["train.lr=1e-3"], cwd=src, timeout=120)
    f.check(second.returncode == 2, f"the second is refused with exit 2 (got {second.returncode})")
    f.check(re.search(r"in use by another codex-train \(pid %d on " % first.pid, second.stderr)
            is not None, "the refusal names the holder's pid and host")
    out, err = first.communicate(timeout=300)
    f.check(first.returncode == 0, f"the first run completes (exit {first.returncode}) {err[-300:]}")
    st = read_json(os.path.join(run_dir, "state.json"))
    f.check(st["status"] == "COMPLETED" and st["step"] == 4000, f"COMPLETED at 4000 ({st['status']})")
    steps = []
    with open(os.path.join(run_dir, "metrics.jsonl")) as fh:
        steps = [json.loads(l)["step"] for l in fh if '"loss"' in l]
    f.check(steps == list(range(1, 4001)), "one series of metrics, every step once")
    with open(os.path.join(run_dir, "events.jsonl")) as fh:
        starts = sum(1 for l in fh if '"type": "started"' in l)
    f.check(starts == 1, f"one started event ({starts})")
    with open(os.path.join(run_dir, "train.log")) as fh:
        log = fh.read()
    f.check(log.count(" started: ") == 1 and "COMPLETED at step 4000" in log and
            "step   4000/4000" in log, "train.log: one start, the steps and the ending")
    p = run([os.path.join(b, "jobs", "codexctl"), "logs", "twice", "--runs", runs, "--tail", "2"],
            cwd=src)
    f.check(p.returncode == 0 and "COMPLETED at step 4000" in p.stdout,
            "codexctl logs shows train.log")


def case_identity(b, src, tmp, f):
    train = os.path.join(b, "jobs", "codex-train")
    demo = os.path.join(src, "configs/demo-base.yaml")
    runs = os.path.join(tmp, "runs")
    base = [train, demo, f"job.runs_dir={runs}", "job.name=ident", "train.max_steps=30",
            "train.log_every=1", "checkpoint.every_steps=10", "lora.r=8"] + TINY
    p = run(base + ["--stop-after", "15"], cwd=src, timeout=120)
    f.check(p.returncode == 75, f"first run stops at 15 with 75 ({p.returncode})")
    run_dir = os.path.join(runs, "ident")
    before = tree_bytes(run_dir)
    p = run(base + ["lora.r=4"], cwd=src, timeout=120)
    f.check(p.returncode == 2, f"rerun with lora.r=4 refused with exit 2 ({p.returncode})")
    f.check("lora.r: 8 -> 4" in p.stderr and "job.name" in p.stderr and "--overwrite" in p.stderr,
            "the message names lora.r with both values and the ways out")
    after = tree_bytes(run_dir)
    f.check(before == after, "the old run is byte-identical (checkpoints, final, state, logs): " +
            ", ".join(k for k in set(before) | set(after) if before.get(k) != after.get(k)))
    p = run(base + ["train.lr=5e-4"], cwd=src, timeout=120)
    f.check(p.returncode == 0 and "resumed from step 15" in p.stdout, "rerun with another lr resumes")
    with open(os.path.join(run_dir, "events.jsonl")) as fh:
        resumed = [json.loads(l) for l in fh if '"type": "resumed"' in l]
    f.check(resumed and "train.lr" in resumed[-1].get("changed", ""),
            f"the resumed event lists train.lr: {resumed[-1] if resumed else None}")
    done = tree_bytes(run_dir)
    p = run(base + ["train.lr=5e-4"], cwd=src, timeout=120)
    f.check(p.returncode == 0 and "already completed" in p.stdout,
            "a completed run asked again says so and exits 0")
    f.check(tree_bytes(run_dir) == done, "and changes nothing")
    p = run(base + ["lora.r=4", "--overwrite"], cwd=src, timeout=120)
    f.check(p.returncode == 0 and "resumed" not in p.stdout, "--overwrite replaces the run")


def case_sigint(b, src, tmp, f):
    train = os.path.join(b, "jobs", "codex-train")
    demo = os.path.join(src, "configs/demo-base.yaml")
    runs = os.path.join(tmp, "runs")
    common = [f"job.runs_dir={runs}", "train.max_steps=3000", "train.log_every=1",
              "checkpoint.every_steps=0", "lora.dropout=0.1"] + TINY
    whole = run([train, demo, "job.name=whole"] + common, cwd=src, timeout=300)
    f.check(whole.returncode == 0, "the uninterrupted run completes")
    p = subprocess.Popen([train, demo, "job.name=cc"] + common, cwd=src, env=env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run_dir = os.path.join(runs, "cc")
    f.check(wait_for(lambda: state_step(run_dir) >= 100, 120), "the run is under way")
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    f.check(p.returncode == 75, f"Ctrl-C exits 75 (got {p.returncode}): {err[-300:]}")
    st = read_json(os.path.join(run_dir, "state.json"))
    f.check(st["status"] == "PREEMPTED", f"state PREEMPTED ({st['status']})")
    stopped = st["step"]
    f.check(os.path.isfile(os.path.join(run_dir, "checkpoints", f"step_{stopped:08d}.h5")),
            f"checkpoint at the stop ({stopped})")
    m = re.search(r"resume with: (.*)", err)
    f.check(m is not None, "the resume command is printed")
    if m:
        cmd = m.group(1).split()  # the test's arguments need no quoting
        q = run(cmd, cwd=src, timeout=300)
        f.check(q.returncode == 0 and f"resumed from step {stopped}" in q.stdout,
                "the printed command resumes the run")
        a, c = metric_losses(os.path.join(runs, "whole")), metric_losses(run_dir)
        f.check(sorted(c) == list(range(1, 3001)) and all(a[k] == c[k] for k in a),
                "the resumed run's losses are the uninterrupted run's at every step")


def prepared_dataset(b, tmp):
    """A byte-tokenised dataset with a marker "QZXJ" at the end of each of
    six files, to corrupt one token in place."""
    corpus = os.path.join(tmp, "corpus")
    os.makedirs(corpus)
    words = ["def", "return", "for", "in", "if", "else", "x", "y", "print", "(", ")", ":"]
    for k in range(6):
        with open(os.path.join(corpus, f"f{k}.py"), "w") as fh:
            fh.write(" ".join(words[(i * 7 + k * 3 + i // 5) % len(words)] for i in range(4000)))
            fh.write("\nQZXJ\n")
    out = os.path.join(tmp, "data.h5")
    p = run([os.path.join(b, "jobs", "codexctl"), "prepare", "-o", out, "--val-fraction", "0",
             corpus], cwd=tmp)
    assert p.returncode == 0, p.stderr
    return out


def corrupt(path, out, how):
    data = bytearray(open(path, "rb").read())
    marker = b"".join(bytes([c, 0]) for c in b"QZXJ")
    i = -1
    for _ in range(3):
        i = data.index(marker, i + 1)
    if how == "oov":
        data[i + 2:i + 4] = b"\xff\xff"  # 'Z' becomes id 65535
    else:
        data[i + 3] ^= 0x80  # one flipped bit of 'Z''s high byte: id 32858
    with open(out, "wb") as fh:
        fh.write(data)


def run_failing(src, argv, run_dir, f, what, limit=30):
    t0 = time.time()
    p = subprocess.Popen(["mpirun", "-n", "2", "--oversubscribe"] + argv, cwd=src, env=env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = p.communicate(timeout=limit + 60)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
    took = time.time() - t0
    print(f"measured ({what}): the job ended {took:.1f} s after its start")
    sys.stdout.write(err[-1500:])
    f.check(p.returncode != 0, f"{what}: mpirun reports failure ({p.returncode})")
    st = read_json(os.path.join(run_dir, "state.json"))
    e = st.get("error") or {}
    f.check(st["status"] == "FAILED", f"{what}: FAILED ({st['status']})")
    return st, e, took, err


def case_rank_error(b, src, tmp, f):
    train = os.path.join(b, "jobs", "codex-train")
    demo = os.path.join(src, "configs/demo-base.yaml")
    runs = os.path.join(tmp, "runs")
    good = prepared_dataset(b, tmp)
    for how in ("oov", "flip"):
        bad = os.path.join(tmp, f"{how}.h5")
        corrupt(good, bad, how)
        argv = [train, demo, f"job.runs_dir={runs}", f"job.name={how}", "data.source=hdf5",
                f"data.path={bad}", "tokenizer.kind=byte", "model.n_layer=2", "model.n_head=2",
                "model.n_embd=32", "data.seq_len=32", "model.max_seq_len=32",
                "train.global_batch_size=8", "train.micro_batch_size=2",
                "train.max_steps=100000", "train.log_every=1000", "checkpoint.every_steps=0"]
        st, e, took, err = run_failing(src, argv, os.path.join(runs, how), f, how)
        f.check(took < 30, f"{how}: ended within 30 s ({took:.1f})")
        rank = e.get("rank")
        msg = e.get("message", "")
        # the ranks that read the bad token, by their own words on stderr
        # (a rank that fails prints "codex-train: rank N: error: ..."); the
        # bad token lies in one window, read by one rank, and that rank's
        # message is the one recorded (when several fail at once, the first)
        failed = {int(m) for m in re.findall(
            r"codex-train: rank (\d+): error: .*outside the model's vocabulary", err)}
        f.check(failed and rank in failed and f"rank {rank} on " in msg and
                "outside the model's vocabulary" in msg,
                f"{how}: state.json names the rank that failed ({sorted(failed)}), its host and "
                f"the message: {e}")
        f.check(wait_for(lambda: no_trainers_left(bad), 10), f"{how}: no process left")


def start_job(src, argv, run_dir, e=None, min_step=5):
    p = subprocess.Popen(["mpirun", "-n", "2", "--oversubscribe"] + argv, cwd=src, env=e or env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ok = wait_for(lambda: state_step(run_dir) >= min_step and
                  os.path.exists(os.path.join(run_dir, "ranks", "1.json")), 120)
    return p, ok


def case_sigstop(b, src, tmp, f):
    train = os.path.join(b, "jobs", "codex-train")
    demo = os.path.join(src, "configs/demo-base.yaml")
    runs = os.path.join(tmp, "runs")
    # "race": rank 0 stops itself (CU_TEST_STOP_AT_STEP) right after a
    # step's reductions, before it records the step; rank 1 records the stop
    # and leaves, the launcher continues rank 0 to end it, and rank 0 used to
    # write RUNNING over the record and then blame rank 1 ("died")
    for victim, how in ((1, "stop"), (0, "stop"), (0, "kill"), (0, "race")):
        name = f"{how}{victim}"
        run_dir = os.path.join(runs, name)
        argv = [train, demo, f"job.runs_dir={runs}", f"job.name={name}", "train.max_steps=10000000",
                "train.log_every=100000", "checkpoint.every_steps=0"] + TINY
        e = env()
        if how == "race":
            e.update(CU_TEST_STOP_AT_STEP="30", CU_TEST_STALL_RANK="0", CU_PEER_TIMEOUT_S="3")
        # the race case stops itself: state.json may never show a step
        p, ok = start_job(src, argv, run_dir, e, 0 if how == "race" else 5)
        f.check(ok, f"{name}: the job started")
        pid = read_json(os.path.join(run_dir, "ranks", f"{victim}.json"))["pid"]
        t0 = time.time()
        if how != "race":
            os.kill(pid, signal.SIGSTOP if how == "stop" else signal.SIGKILL)
        try:
            p.communicate(timeout=60)
            took = time.time() - t0
        except subprocess.TimeoutExpired:
            took = None
            kill_trainer(pid, name)
            p.kill()
            p.communicate()
        print(f"measured ({name}): the job ended {took} s after the signal")
        f.check(took is not None and took < 45, f"{name}: the job ended by itself within 45 s")
        st = read_json(os.path.join(run_dir, "state.json"))
        er = st.get("error") or {}
        cause = "died" if how == "kill" else "stopped responding"
        f.check(st["status"] == "FAILED" and er.get("rank") == victim and
                f"rank {victim} (pid {pid} on " in er.get("message", "") and
                cause in er.get("message", ""),
                f"{name}: FAILED naming rank {victim}, its pid and host, {cause}: "
                f"{st['status']} {er}")
        with open(os.path.join(run_dir, "events.jsonl")) as fh:
            failed = [ev for ev in map(json.loads, fh) if ev["type"] == "failed"]
        f.check(len(failed) == 1 and failed[0].get("rank") == victim,
                f"{name}: one failed event, naming rank {victim}: {failed}")
        f.check(wait_for(lambda: no_trainers_left(f"job.name={name} "), 10),
                f"{name}: no process left")


def kill_trainer(pid, name):
    """SIGKILL to pid if it is still a codex-train of job `name`: a pid read
    from a file may be another process's by now (pid numbers are reused, and
    on a machine with pid_max 32768 a parallel test run wraps them in
    minutes; this once killed another test's codexctl)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = fh.read().split(b"\0")
    except OSError:
        return
    if any(a.endswith(b"codex-train") for a in argv) and f"job.name={name}".encode() in argv:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def kill_ranks(run_dir):
    """SIGKILL to the ranks a run's liveness files name that are still that
    run's trainers (a hang guard's clean-up: nothing else of the machine is
    touched)."""
    d = os.path.join(run_dir, "ranks")
    for n in os.listdir(d) if os.path.isdir(d) else []:
        if n.endswith(".json"):
            try:
                kill_trainer(int(read_json(os.path.join(d, n))["pid"]), os.path.basename(run_dir))
            except (OSError, ValueError, KeyError, TypeError):
                pass


def case_stall(b, src, tmp, f):
    train = os.path.join(b, "jobs", "codex-train")
    ctl = os.path.join(b, "jobs", "codexctl")
    demo = os.path.join(src, "configs/demo-base.yaml")
    runs = os.path.join(tmp, "runs")
    for victim in (0, 1):
        name = f"stall{victim}"
        run_dir = os.path.join(runs, name)
        argv = [train, demo, f"job.runs_dir={runs}", f"job.name={name}", "train.max_steps=10000000",
                "train.log_every=100000", "checkpoint.every_steps=0"] + TINY
        e = env()
        e.update(CU_TEST_STALL_AT_STEP="20", CU_TEST_STALL_RANK=str(victim),
                 CU_PROGRESS_TIMEOUT_S="4")
        t0 = time.time()
        p = subprocess.Popen(["mpirun", "-n", "2", "--oversubscribe"] + argv, cwd=src, env=e,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            _, err = p.communicate(timeout=120)  # a hang guard: it ends in about 10 s
            took = time.time() - t0
        except subprocess.TimeoutExpired:
            took = None
            kill_ranks(run_dir)
            p.kill()
            _, err = p.communicate()
        print(f"measured ({name}): the job ended {took} s after its start")
        sys.stdout.write(err[-1200:])
        f.check(took is not None and took < 60,
                f"{name}: the job ended by itself within 60 s of its start, deadline 4 s "
                f"(before: it hung)")
        f.check(p.returncode != 0, f"{name}: mpirun reports failure ({p.returncode})")
        st = read_json(os.path.join(run_dir, "state.json"))
        er = st.get("error") or {}
        msg = er.get("message", "")
        f.check(st["status"] == "FAILED" and er.get("rank") == victim and
                f"rank {victim} on " in msg and "no progress since step 20 for " in msg and
                "training step" in msg,
                f"{name}: FAILED naming rank {victim}, its host, the step and the phase: "
                f"{st['status']} {er}")
        with open(os.path.join(run_dir, "events.jsonl")) as fh:
            evs = [json.loads(line) for line in fh]
        failed = [ev for ev in evs if ev["type"] == "failed"]
        f.check(len(failed) == 1 and failed[0].get("rank") == victim and
                "no progress since step 20" in failed[0]["message"],
                f"{name}: one failed event naming rank {victim}: {failed}")
        f.check(wait_for(lambda: no_trainers_left(f"job.name={name} "), 10),
                f"{name}: no process left")
    # the deadline off (0): the stalled job runs until cancelled, and cancel ends it
    name = "stallcancel"
    run_dir = os.path.join(runs, name)
    e = env()
    e.update(CU_TEST_STALL_AT_STEP="20", CU_TEST_STALL_RANK="1", CU_PROGRESS_TIMEOUT_S="0")
    p = subprocess.run([ctl, "submit", "--local", "2", demo, f"job.runs_dir={runs}",
                        f"job.name={name}", "train.max_steps=10000000", "train.log_every=100000",
                        "checkpoint.every_steps=0"] + TINY, cwd=src, env=e, capture_output=True,
                       text=True, timeout=120)
    f.check(p.returncode == 0, f"{name}: submit --local 2 starts the job: {p.stderr[-500:]}")
    f.check(wait_for(lambda: read_json(os.path.join(run_dir, "ranks", "1.json"))["step"] == 20,
                     120), f"{name}: rank 1 reached step 20 and stalled")
    time.sleep(6)  # past what the 4 s deadline above took: nothing ends it now
    f.check(read_json(os.path.join(run_dir, "state.json"))["status"] == "RUNNING",
            f"{name}: with the deadline off the stalled job is still RUNNING")
    t0 = time.time()
    p = subprocess.run([ctl, "cancel", name, "--runs", runs, "--wait", "30"], cwd=src, env=env(),
                       capture_output=True, text=True, timeout=120)
    print(f"measured ({name}): cancel took {time.time() - t0:.1f} s")
    f.check(p.returncode == 0, f"{name}: cancel succeeds: {p.stdout} {p.stderr}")
    f.check(read_json(os.path.join(run_dir, "state.json"))["status"] == "CANCELLED",
            f"{name}: CANCELLED")
    f.check(wait_for(lambda: no_trainers_left(f"job.name={name} "), 15),
            f"{name}: no process left")
    kill_ranks(run_dir)


def case_disk_full(b, src, tmp, f):
    train = os.path.join(b, "jobs", "codex-train")
    demo = os.path.join(src, "configs/demo-base.yaml")
    mnt = os.path.join(tmp, "small")
    os.makedirs(mnt)
    m = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", mnt],
                       capture_output=True, text=True)
    if m.returncode != 0:
        print("SKIP: cannot mount a tmpfs here:", m.stderr)
        sys.exit(77)
    try:
        run_dir = os.path.join(mnt, "full")
        p = subprocess.Popen([train, demo, f"job.runs_dir={mnt}", "job.name=full",
                              "train.max_steps=100000000", "train.log_every=1",
                              "checkpoint.every_steps=0"] + TINY, cwd=src, env=env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        f.check(wait_for(lambda: state_step(run_dir) >= 5, 60), "the job started")
        fd = os.open(os.path.join(mnt, "filler"), os.O_WRONLY | os.O_CREAT)
        try:
            while os.write(fd, b"\0" * 4096) > 0:
                pass
        except OSError:
            pass
        os.close(fd)
        out, err = p.communicate(timeout=120)
        f.check(p.returncode not in (0, 75), f"the job fails ({p.returncode})")
        st = read_json(os.path.join(run_dir, "state.json"))
        msg = (st.get("error") or {}).get("message", "")
        f.check(st["status"] == "FAILED" and "No space left on device" in msg,
                f"FAILED with the errno text: {st['status']} {msg}")
        with open(os.path.join(run_dir, "metrics.jsonl"), "rb") as fh:
            data = fh.read()
        f.check(data.endswith(b"\n") and all(json.loads(l) for l in data.splitlines()),
                "metrics.jsonl ends with a whole line")
    finally:
        subprocess.run(["umount", "-l", mnt])


def case_best(b, src, tmp, f):
    train = os.path.join(b, "jobs", "codex-train")
    ctl = os.path.join(b, "jobs", "codexctl")
    demo = os.path.join(src, "configs/demo-base.yaml")
    runs = os.path.join(tmp, "runs")
    run_dir = os.path.join(runs, "early")
    p = run([train, demo, f"job.runs_dir={runs}", "job.name=early", "train.max_steps=400",
             "train.log_every=50", "eval.every_steps=2", "eval.patience=3",
             "checkpoint.every_steps=2", "checkpoint.keep_last=2", "train.lr=3e-2"] + TINY,
            cwd=src, timeout=300)
    f.check(p.returncode == 0, f"the run ends normally ({p.returncode})")
    f.check("stopped: early stop" in p.stdout, "the exit line says it stopped early")
    st = read_json(os.path.join(run_dir, "state.json"))
    best = (st.get("best_eval") or {}).get("step", -1)
    f.check(best > 0 and f"best weights (val loss " in p.stdout and
            f"at step {best}) in {run_dir}/best.h5" in p.stdout,
            f"the exit line names best.h5 and its step {best}")
    ck = sorted(n for n in os.listdir(os.path.join(run_dir, "checkpoints")) if n.endswith(".h5"))
    print("checkpoints:", ck)
    f.check(f"step_{best:08d}.h5" in ck and len(ck) == 3,
            f"keep_last 2 kept the newest two and the best one ({ck})")
    h5diff = shutil.which("h5diff")
    if h5diff:
        d = subprocess.run([h5diff, os.path.join(run_dir, "best.h5"),
                            os.path.join(run_dir, "checkpoints", f"step_{best:08d}.h5"),
                            "/tensors", "/tensors"], capture_output=True, text=True)
        f.check(d.returncode == 0, f"best.h5 holds the best step's weights {d.stdout[:200]}")
    q = run([ctl, "status", "early", "--runs", runs, "--json"], cwd=src)
    j = json.loads(q.stdout) if q.returncode == 0 else {}
    f.check(j.get("status") == "COMPLETED" and (j.get("best_eval") or {}).get("step") == best and
            (j.get("last_checkpoint") or {}).get("file", "").startswith("checkpoints/step_") and
            (j.get("elapsed_s") or 0) > 0 and j.get("tokens_per_s"),
            f"status --json: best eval, last checkpoint, elapsed, tokens/s: {j}")
    q = run([ctl, "status", "early", "--runs", runs, "--watch"], cwd=src, timeout=30)
    f.check(q.returncode == 0 and f"at step {best}" in q.stdout and "ckpt:" in q.stdout,
            "status --watch of an ended job shows it once and returns")
    q = run([ctl, "generate", run_dir, "--which", "best", "--prompt", "x"], cwd=src, timeout=120)
    f.check(q.returncode == 0, f"codexctl generate --which best works ({q.returncode})")
    p = run([train, demo, f"job.runs_dir={runs}", "job.name=noeval", "train.max_steps=4",
             "eval.every_steps=0"] + TINY, cwd=src, timeout=120)
    q = run([ctl, "generate", os.path.join(runs, "noeval"), "--which", "best", "--prompt", "x"],
            cwd=src, timeout=60)
    f.check(q.returncode == 2 and "--which final" in q.stderr,
            "--which best without evaluation: exit 2 saying what to use")


def case_check(b, src, tmp, f):
    train = os.path.join(b, "jobs", "codex-train")
    demo = os.path.join(src, "configs/demo-base.yaml")
    runs = os.path.join(tmp, "runs")
    p = run([train, demo, "--check", f"job.runs_dir={runs}"], cwd=src, timeout=120)
    f.check(p.returncode == 0 and "ready to run" in p.stdout and not os.path.exists(runs),
            "--check of a good job: exit 0, nothing written")
    data = prepared_dataset(b, tmp)  # no val split
    p = run([train, demo, "--check", f"job.runs_dir={runs}", "data.source=hdf5",
             f"data.path={data}", "tokenizer.kind=byte", "eval.every_steps=10"], cwd=src)
    f.check(p.returncode == 2 and "no validation split" in p.stderr and
            "eval.every_steps: 0" in p.stderr, "an empty validation split with eval on: exit 2")
    p = run([train, demo, "--check", f"job.runs_dir={runs}", "data.source=hdf5",
             "data.path=/nonexistent/d.h5", "tokenizer.kind=byte"], cwd=src)
    f.check(p.returncode == 2 and "/nonexistent/d.h5" in p.stderr, "a missing data.path: exit 2")
    p = run([train, demo, "--check", "train.min_lr=1", "train.global_batch_size=7"], cwd=src)
    f.check(p.returncode == 2 and "train.min_lr" in p.stderr and "global_batch_size" in p.stderr,
            "config problems reported together: exit 2")
    f.check(not os.path.exists(runs), "nothing written by any check")


def case_preflight(b, src, tmp, f):
    """--check and submit report every input problem at once, with advice
    that works when followed."""
    train = os.path.join(b, "jobs", "codex-train")
    ctl = os.path.join(b, "jobs", "codexctl")
    demo = os.path.join(src, "configs/demo-base.yaml")
    runs = os.path.join(tmp, "runs")
    p = run([train, demo, "--check", f"job.runs_dir={runs}", "train.global_batch_size=7",
             "tokenizer.kind=gpt2", "tokenizer.path=/nonexistent/tok",
             "model.init=/nonexistent/base.h5", "data.path=/nonexistent/corpus.txt",
             "lora.enabled=false"], cwd=src, timeout=120)
    named = [w for w in ("global_batch_size", "/nonexistent/tok", "/nonexistent/base.h5",
                         "/nonexistent/corpus.txt") if w in p.stderr]
    f.check(p.returncode == 2 and len(named) == 4,
            f"every problem at once, exit 2 ({p.returncode}, named {named}): {p.stderr[-600:]}")
    # advice for 3 ranks names a value that then passes
    base = [train, demo, "--check", f"job.runs_dir={runs}", "train.micro_batch_size=4"]
    p = mpirun(3, base, cwd=src, timeout=180)
    m = re.search(r"global_batch_size \(8\) cannot be split evenly over 3 ranks: set it to (\d+)",
                  p.stderr)
    f.check(p.returncode != 0 and m, f"3 ranks: the batch is refused with advice: {p.stderr[-400:]}")
    if m:
        p = mpirun(3, base + [f"train.global_batch_size={m.group(1)}"], cwd=src, timeout=180)
        f.check(p.returncode == 0 and "ready to run" in p.stdout,
                f"following the advice (global_batch_size={m.group(1)}) passes: {p.stderr[-400:]}")
    # a base of other sizes: its shape is named, not "checksum mismatch"
    p = run([train, demo, f"job.runs_dir={tmp}/base", "job.name=small", "lora.enabled=false",
             "train.max_steps=1", "train.warmup_steps=0", "eval.every_steps=0",
             "model.n_embd=32", "model.n_head=2", "model.n_layer=1"], cwd=src, timeout=180)
    small = os.path.join(tmp, "base", "small", "final.h5")
    f.check(p.returncode == 0 and os.path.exists(small), f"a small full fine-tune ({p.returncode})")
    p = run([train, demo, "--check", f"job.runs_dir={runs}", f"model.init={small}",
             "lora.enabled=false"], cwd=src, timeout=120)
    f.check(p.returncode == 2 and "has shape" in p.stderr and "checksum" not in p.stderr,
            f"a shape mismatch is called one: {p.stderr[-400:]}")
    # submit runs the same checks before it writes anything
    p = run([ctl, "submit", "--local", "1", demo, f"job.runs_dir={runs}",
             "data.path=/nonexistent/corpus.txt", "tokenizer.kind=gpt2",
             "tokenizer.path=/nonexistent/tok"], cwd=src, timeout=120)
    f.check(p.returncode == 2 and "/nonexistent/corpus.txt" in p.stderr and
            "/nonexistent/tok" in p.stderr and "nothing was written" in p.stderr,
            f"submit refuses bad inputs with exit 2, naming both: {p.stderr[-400:]}")
    f.check(not os.path.exists(runs), "nothing written by any check or refused submit")


def case_follow(b, src, tmp, f):
    """codexctl logs -f follows train.log while the job runs and ends with it."""
    train = os.path.join(b, "jobs", "codex-train")
    ctl = os.path.join(b, "jobs", "codexctl")
    demo = os.path.join(src, "configs/demo-base.yaml")
    runs = os.path.join(tmp, "runs")
    args = [train, demo, f"job.runs_dir={runs}", "job.name=followed", "train.max_steps=3000",
            "train.log_every=500", "checkpoint.every_steps=0", "eval.every_steps=0"] + TINY
    job = subprocess.Popen(args, cwd=src, env=env(), stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
    run_dir = os.path.join(runs, "followed")
    f.check(wait_for(lambda: state_step(run_dir) >= 1, 60), "the run started")
    p = run([ctl, "logs", "followed", "--runs", runs, "-f"], cwd=src, timeout=300)
    job.communicate(timeout=300)
    f.check(job.returncode == 0, f"the run completes ({job.returncode})")
    with open(os.path.join(run_dir, "train.log")) as fh:
        log = fh.read()
    f.check(p.returncode == 0 and p.stdout == log,
            f"logs -f printed all of train.log and ended with the job ({p.returncode}, "
            f"{len(p.stdout)} of {len(log)} bytes)")
    f.check("COMPLETED at step 3000" in p.stdout, "the followed output ends with the ending line")
    p = run([ctl, "logs", "followed", "--runs", runs, "-f", "--tail", "1"], cwd=src, timeout=60)
    f.check(p.returncode == 0 and "COMPLETED at step 3000" in p.stdout and
            "started: " not in p.stdout, "an ended job: -f --tail 1 prints the last line and ends")
    p = run([ctl, "logs", "--help"], cwd=src)
    f.check(p.returncode == 0 and "--follow" in p.stdout, "logs --help documents -f")


# ---- agreement of codexctl and codex-ita over every status ----

def iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(t))


def dead_pid():
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def fixture(runs, name, status, age, error=None, launcher=None, pid=None):
    d = os.path.join(runs, name)
    os.makedirs(d)
    now = time.time()
    st = {"version": 1, "job": name, "status": status, "step": 7, "max_steps": 20, "epoch": 0,
          "loss": 2.5, "lr": None, "grad_norm": None, "tokens_per_s": None, "eta_s": None,
          "world_size": 1, "threads": 1, "hosts": [os.uname().nodename], "pid": pid,
          "slurm_job_id": None, "restarts": 0, "started_at": iso(now - 3600),
          "updated_at": iso(now - age), "finished_at": None, "last_checkpoint": None,
          "best_eval": None, "safety": {"redactions": 0, "output_findings": 0,
                                        "blocked_outputs": 0},
          "error": error}
    with open(os.path.join(d, "state.json"), "w") as fh:
        json.dump(st, fh)
    if launcher is not None:
        with open(os.path.join(d, "launcher.pid"), "w") as fh:
            fh.write(f"{launcher}\n")


def case_agree(b, src, tmp, f):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import ita_server
    ctl = os.path.join(b, "jobs", "codexctl")
    ita = os.path.join(b, "ita", "codex-ita")
    runs = os.path.join(tmp, "runs")
    os.makedirs(runs)
    fresh, stale = 5, 3600
    me = os.getpid()
    table = [  # name, status written, heartbeat age, extra -> status shown, reason shown
        ("submitted", "SUBMITTED", fresh, {}, "SUBMITTED", None),
        ("pending", "PENDING", fresh, {}, "PENDING", None),
        ("running", "RUNNING", fresh, {}, "RUNNING", None),
        ("preempted", "PREEMPTED", stale, {}, "PREEMPTED", None),
        ("completed", "COMPLETED", stale, {}, "COMPLETED", None),
        ("failed", "FAILED", stale, {"error": {"message": "token 3 is out of range\nmore",
                                               "rank": 1}},
         "FAILED", "token 3 is out of range"),
        ("cancelled", "CANCELLED", stale, {}, "CANCELLED", None),
        ("timeout", "TIMEOUT", stale, {}, "TIMEOUT", None),
        ("lost-stale", "RUNNING", stale, {}, "LOST",
         "the heartbeat stopped and no scheduler or launcher knows the job"),
        ("lost-launcher", "RUNNING", fresh, {"launcher": dead_pid()}, "LOST",
         "the local launcher exited without recording an end"),
        ("lost-writer", "RUNNING", fresh, {"pid": dead_pid()}, "LOST",
         "codex-train's rank 0 is gone without recording an end"),
        ("alive-launcher", "RUNNING", stale, {"launcher": me}, "RUNNING",
         "the heartbeat stopped but the launcher runs"),
        ("preempted-launcher-gone", "PREEMPTED", stale, {"launcher": dead_pid()}, "PREEMPTED",
         None),
    ]
    for name, status, age, extra, _, _ in table:
        fixture(runs, name, status, age, **extra)
    p = run([ctl, "list", "--runs", runs, "--json"], cwd=tmp)
    listed = {j["job"]: j for j in json.loads(p.stdout)}
    ctx = ita_server.Ctx(ita, ctl, src)
    with ita_server.Server(ctx, live_runs=runs) as srv:
        for name, _, _, _, want, reason in table:
            q = run([ctl, "status", name, "--runs", runs, "--json"], cwd=tmp, tail=0)
            one = json.loads(q.stdout)
            code, _, api = srv.json(f"/v1/jobs/{name}")
            got = (listed[name]["status"], one["status"], api["status"] if api else None)
            f.check(got == (want, want, want), f"{name}: list, status, API show {want}: {got}")
            reasons = (listed[name].get("reason"), one.get("reason"),
                       api.get("reason") if api else "?")
            f.check(reasons == (reason, reason, reason),
                    f"{name}: the same reason everywhere ({reason!r}): {reasons}")
    p = run([ctl, "list", "--runs", runs, "--status", "LOST"], cwd=tmp)
    shown = [l.split()[0] for l in p.stdout.splitlines()[1:] if l.strip()]
    f.check(sorted(shown) == ["lost-launcher", "lost-stale", "lost-writer"],
            f"list --status LOST shows the LOST jobs only: {shown}")


def main():
    if len(sys.argv) != 4:
        print(__doc__)
        return 2
    build, src, case = sys.argv[1:]
    fn = globals().get(f"case_{case}")
    if fn is None:
        print(f"unknown case {case}")
        return 2
    f = Checks()
    with tempfile.TemporaryDirectory(prefix="cu_runs_") as tmp:
        fn(os.path.abspath(build), src, tmp, f)
    return f.summary()


if __name__ == "__main__":
    sys.exit(main())
