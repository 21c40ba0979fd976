#!/usr/bin/env python3
"""The command line's rough edges a new user found (issue 19), each checked
with the real codexctl and codex-train. Nothing here waits on a clock: every
step is a process run to its end.

usage: cli_e2e.py BUILD_DIR SOURCE_DIR CASE

  local_dry_run    submit --local N --dry-run prints the mpirun command (no
                   sbatch script, nothing written); rank-count errors name
                   --local N
  sweep_grid       several --sweep make the cartesian grid: the dry run lists
                   each task's values, each task directory gets sweep.json
                   (with a stand-in sbatch); a key twice and a grid over 64
                   tasks are refused
  export           export creates missing parents, --base-name sets
                   base_model_name_or_path, a base that is no Hugging Face
                   folder is warned about, merged metadata holds no local path
  warmup_generate  train.warmup_steps > max_steps is clamped with a warning
                   (codex-train and submit); generate warns when the prompt is
                   cut to the context, and only then
  completion_bash  bash completion of verbs, options, config keys and enum
                   values after codex-train CONFIG and codexctl submit CONFIG
  completion_zsh   the zsh script parses and completes the same words
  docs             the docs a new user found stale: formats.md, prepare.md,
                   README's completion and export lines
"""
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile

from checks import Checks
from e2e import env

TINY = ["data.source=random", "data.seq_len=16", "model.n_layer=2", "model.n_head=2",
        "model.n_embd=32", "model.max_seq_len=16", "train.global_batch_size=8",
        "train.micro_batch_size=2", "lora.enabled=true", "model.init=random",
        "tokenizer.kind=byte"]


class Ctx:
    def __init__(self, build, src):
        self.build, self.src = os.path.abspath(build), os.path.abspath(src)
        self.ctl = os.path.join(self.build, "jobs", "codexctl")
        self.train = os.path.join(self.build, "jobs", "codex-train")
        self.demo = os.path.join(self.src, "configs", "demo.yaml")
        self.dir = tempfile.mkdtemp(prefix="cu-cli-")

    def run(self, cmd, extra_env=None, **kw):
        e = env()
        e.update(extra_env or {})
        kw.setdefault("timeout", 300)
        p = subprocess.run(cmd, cwd=self.dir, env=e, capture_output=True, text=True,
                           errors="replace", **kw)
        print("+", " ".join(cmd), "->", p.returncode, flush=True)
        sys.stdout.write(p.stdout[-1500:])
        sys.stdout.write(p.stderr[-1500:])
        return p

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def case_local_dry_run(ctx, f):
    p = ctx.run([ctx.ctl, "submit", ctx.demo, "--local", "2", "--dry-run",
                 "train.micro_batch_size=4"])
    f.check(p.returncode == 0, "dry run exits 0")
    f.check(re.search(r"mpirun -n 2 --oversubscribe '[^']*codex-train' '[^']*/runs/demo/"
                      r"submit\.yaml'", p.stdout), "prints the mpirun command: %r" % p.stdout)
    f.check("#SBATCH" not in p.stdout and "sbatch" not in p.stdout, "no batch script")
    f.check("OPENBLAS_NUM_THREADS=" in p.stdout and "local.out" in p.stdout,
            "with the ranks' environment and where the output goes")
    f.check("nothing was written or started" in p.stderr, "says nothing happened")
    f.check(not os.path.exists(os.path.join(ctx.dir, "runs")), "nothing written")
    p = ctx.run([ctx.ctl, "submit", ctx.demo, "--local", "3", "--dry-run"])
    f.check(p.returncode == 2 and "for --local 3 (3 ranks)" in p.stderr and
            "slurm.nodes" not in p.stderr,
            "a batch that does not split over --local 3 names --local 3: %r" % p.stderr)
    p = ctx.run([ctx.ctl, "submit", ctx.demo, "--dry-run", "slurm.ntasks_per_node=3"])
    f.check(p.returncode == 2 and "slurm.nodes x slurm.ntasks_per_node" in p.stderr,
            "without --local the slurm keys are named: %r" % p.stderr)
    p = ctx.run([ctx.ctl, "submit", ctx.demo, "--dry-run", "train.micro_batch_size=4"])
    f.check(p.returncode == 0 and p.stdout.startswith("#!") and "#SBATCH" in p.stdout,
            "without --local the dry run is still the batch script")


def fake_sbatch(ctx):
    d = os.path.join(ctx.dir, "bin")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "sbatch"), "w") as fh:
        fh.write("#!/bin/sh\necho \"$@\" >> %s/sbatch.log\necho 4242\n" % ctx.dir)
    os.chmod(os.path.join(d, "sbatch"), 0o755)
    return {"PATH": d + ":" + os.environ["PATH"]}


def case_sweep_grid(ctx, f):
    sweeps = ["--sweep", "train.lr=1e-3,2e-3", "--sweep", "lora.r=2,4,8"]
    want = [(lr, r) for lr in ("1e-3", "2e-3") for r in ("2", "4", "8")]
    p = ctx.run([ctx.ctl, "submit", ctx.demo, "--dry-run"] + sweeps + TINY + ["job.name=g"])
    f.check(p.returncode == 0 and "#SBATCH --array=0-5" in p.stdout,
            "two sweeps of 2 and 3 values: one array of 6 tasks")
    for i, (lr, r) in enumerate(want):
        f.check("#   task %d (g-%d): train.lr=%s lora.r=%s\n" % (i, i, lr, r) in p.stdout,
                "the dry run shows task %d's values" % i)
    f.check(not os.path.exists(os.path.join(ctx.dir, "runs")), "the dry run wrote nothing")
    p = ctx.run([ctx.ctl, "submit", ctx.demo, "--sweep", "train.lr=1e-3,2e-3", "--sweep",
                 "train.lr=3e-3", "--dry-run"] + TINY)
    f.check(p.returncode == 2 and "train.lr is given twice" in p.stderr, "a key swept twice")
    p = ctx.run([ctx.ctl, "submit", ctx.demo, "--dry-run", "--sweep",
                 "train.lr=" + ",".join("%de-4" % i for i in range(1, 10)), "--sweep",
                 "lora.r=" + ",".join(str(i) for i in range(1, 9))] + TINY)
    f.check(p.returncode == 2 and "more than 64 tasks" in p.stderr, "a grid of 72 is refused")
    # submitted (a stand-in sbatch): a run directory per task with its values
    p = ctx.run([ctx.ctl, "submit", ctx.demo] + sweeps + TINY + ["job.name=g"],
                extra_env=fake_sbatch(ctx))
    f.check(p.returncode == 0 and p.stdout.count("submitted g-") == 6,
            "six tasks submitted: %r" % p.stdout[-300:])
    for i, (lr, r) in enumerate(want):
        d = os.path.join(ctx.dir, "runs", "g-%d" % i)
        try:
            with open(os.path.join(d, "sweep.json")) as fh:
                sj = json.load(fh)
        except (OSError, ValueError) as e:
            sj = repr(e)
        f.check(sj == {"task": i, "values": {"train.lr": lr, "lora.r": r}},
                "runs/g-%d/sweep.json: %s" % (i, sj))
        with open(os.path.join(d, "submit.yaml")) as fh:
            y = fh.read()
        f.check(re.search(r"^  r: %s$" % r, y, re.M) and
                re.search(r"^  lr: %g$" % float(lr), y, re.M),
                "runs/g-%d/submit.yaml runs those values" % i)
        with open(os.path.join(d, "state.json")) as fh:
            f.check(json.load(fh).get("slurm_job_id") == "4242_%d" % i, "array task id")


def safetensors_meta(path):
    with open(path, "rb") as fh:
        n = struct.unpack("<Q", fh.read(8))[0]
        return json.loads(fh.read(n)).get("__metadata__", {})


def case_export(ctx, f):
    p = ctx.run([ctx.train, ctx.demo, "job.name=ex", "train.max_steps=2",
                 "train.warmup_steps=0"] + TINY)
    if not f.check(p.returncode == 0, "a tiny run trains"):
        return
    run = os.path.join(ctx.dir, "runs", "ex")
    out = os.path.join(ctx.dir, "out", "nested", "peft")
    p = ctx.run([ctx.ctl, "export", run, "--format", "peft", "-o", out])
    f.check(p.returncode == 0 and os.path.isfile(os.path.join(out, "adapter_config.json")),
            "missing parent folders are created: %r" % p.stderr)
    f.check("warning: the run's base (model.init: 'random') is not a Hugging Face folder" in
            p.stderr and "--base-name" in p.stderr, "a base that is no HF folder is warned about")
    out2 = os.path.join(ctx.dir, "out", "named")
    p = ctx.run([ctx.ctl, "export", run, "--format", "peft", "-o", out2, "--base-name",
                 "openai-community/gpt2"])
    with open(os.path.join(out2, "adapter_config.json")) as fh:
        cfg = json.load(fh)
    f.check(p.returncode == 0 and cfg.get("base_model_name_or_path") == "openai-community/gpt2",
            "--base-name sets base_model_name_or_path: %s" % cfg.get("base_model_name_or_path"))
    f.check("warning" not in p.stderr, "no warning once the base is named")
    # an HF folder as the base: no warning
    hf = os.path.join(ctx.dir, "hfbase")
    os.makedirs(hf)
    with open(os.path.join(hf, "config.json"), "w") as fh:
        fh.write("{}\n")
    out3 = os.path.join(ctx.dir, "out", "merged", "deep")
    p = ctx.run([ctx.ctl, "export", run, "--format", "merged", "-o", out3, "--base-name", "tiny"])
    f.check(p.returncode == 0, "merged export into missing parents")
    meta = safetensors_meta(os.path.join(out3, "model.safetensors")) if p.returncode == 0 else {}
    f.check(meta.get("codex_source") == "ex/final.h5" and meta.get("codex_base") == "tiny",
            "merged metadata names the run's file and the base: %s" % meta)
    f.check(not any(ctx.dir in v or v.startswith("/") for v in meta.values()),
            "no absolute local path in the merged metadata: %s" % meta)
    p = ctx.run([ctx.ctl, "export", run, "--format", "merged", "-o",
                 os.path.join(ctx.dir, "out", "m2")])
    meta = safetensors_meta(os.path.join(ctx.dir, "out", "m2", "model.safetensors")) \
        if p.returncode == 0 else {}
    f.check(meta.get("codex_base") == "random" and not any(v.startswith("/") for v in
                                                           meta.values()),
            "without --base-name the base's own name: %s" % meta)
    blocker = os.path.join(ctx.dir, "afile")
    open(blocker, "w").close()
    p = ctx.run([ctx.ctl, "export", run, "--format", "peft", "-o", blocker])
    f.check(p.returncode == 2 and "not a directory" in p.stderr, "a file as -o is refused")


def case_warmup_generate(ctx, f):
    p = ctx.run([ctx.train, ctx.demo, "--print-config", "train.max_steps=20",
                 "train.warmup_steps=500"] + TINY)
    f.check(p.returncode == 0, "warmup_steps over max_steps is no longer refused: %r"
            % p.stderr[-300:])
    f.check("warning: train.warmup_steps (500) exceeds train.max_steps (20); using 20" in
            p.stderr, "with a warning naming both keys")
    f.check(re.search(r"^  warmup_steps: 20$", p.stdout, re.M), "the resolved config has 20")
    p = ctx.run([ctx.train, ctx.demo, "--print-config", "train.max_steps=20",
                 "train.warmup_steps=20"] + TINY)
    f.check(p.returncode == 0 and "warning" not in p.stderr, "no warning at max_steps")
    p = ctx.run([ctx.ctl, "submit", ctx.demo, "--dry-run", "--local", "1",
                 "train.warmup_steps=100000"])
    f.check(p.returncode == 0 and "codexctl submit: warning: train.warmup_steps (100000)" in
            p.stderr, "submit warns the same way: %r" % p.stderr[-300:])
    # generate: model.max_seq_len 16, 4 new tokens leave 12 for the prompt
    p = ctx.run([ctx.train, ctx.demo, "job.name=gen", "train.max_steps=2",
                 "train.warmup_steps=0"] + TINY)
    if not f.check(p.returncode == 0, "a tiny run trains"):
        return
    run = os.path.join(ctx.dir, "runs", "gen")
    p = ctx.run([ctx.ctl, "generate", run, "--prompt", "x" * 40, "--max-new-tokens", "4"])
    f.check(p.returncode == 0 and "warning: the prompt is 40 tokens but the model's context is "
            "16 (model.max_seq_len) with 4 for new tokens: only its last 12 tokens are used" in
            p.stderr, "a prompt cut to the context is warned about: %r" % p.stderr[-400:])
    p = ctx.run([ctx.ctl, "generate", run, "--prompt", "x" * 12, "--max-new-tokens", "4"])
    f.check(p.returncode == 0 and "warning" not in p.stderr, "a prompt that fits: no warning")


BASH_DRIVER = r'''
source "$1"
shift
complete_line() {  # the words of a command line, the last one being completed
    COMP_WORDS=("$@")
    COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
    COMPREPLY=()
    local fn
    case ${COMP_WORDS[0]} in
    *codex-train) fn=_codex_train ;;
    *) fn=_codexctl ;;
    esac
    $fn
    printf '%s\n' "${COMPREPLY[@]}"
    echo ---
}
'''


def completion_lines(ctx, script, cases, shell):
    """Runs each case (a list of words) through the completion function;
    returns a list of candidate lists."""
    driver = os.path.join(ctx.dir, "driver." + shell)
    with open(driver, "w") as fh:
        if shell == "bash":
            fh.write(BASH_DRIVER)
            for words in cases:
                fh.write("complete_line %s\n" % " ".join("'%s'" % w for w in words))
        else:
            fh.write(ZSH_DRIVER)
            for words in cases:
                fh.write("complete_line %s\n" % " ".join("'%s'" % w for w in words))
    p = ctx.run([shell, driver, script], timeout=120)
    groups = p.stdout.split("---\n")
    return p, [[l for l in g.splitlines() if l] for g in groups[:len(cases)]]


def completion_checks(ctx, f, shell):
    script = os.path.join(ctx.dir, "codexctl." + shell)
    p = ctx.run([ctx.ctl, "completion", shell])
    f.check(p.returncode == 0 and "codex-train" in p.stdout, "codexctl completion %s" % shell)
    with open(script, "w") as fh:
        fh.write(p.stdout)
    with open(os.path.join(ctx.dir, "job.yaml"), "w") as fh:
        fh.write("job:\n  name: x\n")
    ctl, train = ctx.ctl, ctx.train
    cases = [
        [ctl, "su"],
        [ctl, "comp"],
        [ctl, "submit", "--sw"],
        [ctl, "export", "--base-"],
        [ctl, "submit", "job.yaml", "train.l"],
        [ctl, "submit", "job.yaml", "--sweep", "lora.al"],
        [train, "job.yaml", "lora.in"],
        [train, "job.yaml", "lora.init=pi"],
        [train, "job.yaml", "train.warmup_"],
        [train, "--ch"],
        [train, "job.ya"],
    ]
    p, got = completion_lines(ctx, script, cases, shell)
    f.check(p.returncode == 0 and len(got) == len(cases), "%s ran every case: %r"
            % (shell, p.stderr[-300:]))
    got += [[]] * (len(cases) - len(got))
    f.check(got[0] == ["submit"], "%s: codexctl su -> submit: %s" % (shell, got[0]))
    f.check(got[1] == ["completion"], "%s: the completion verb itself: %s" % (shell, got[1]))
    f.check(got[2] == ["--sweep"], "%s: submit --sw -> --sweep: %s" % (shell, got[2]))
    f.check(got[3] == ["--base-name"], "%s: export --base- -> --base-name: %s" % (shell, got[3]))
    f.check("train.lr=" in got[4] and "train.lr_schedule=" not in got[4] and
            all(w.startswith("train.l") for w in got[4]),
            "%s: submit CONFIG train.l -> keys: %s" % (shell, got[4]))
    f.check(got[5] == ["lora.alpha="], "%s: --sweep KEY: %s" % (shell, got[5]))
    f.check(sorted(got[6]) == ["lora.init=", "lora.init_from="],
            "%s: codex-train CONFIG lora.in: %s" % (shell, got[6]))
    f.check(got[7] == ["lora.init=pissa"], "%s: an enum's values: %s" % (shell, got[7]))
    f.check(got[8] == ["train.warmup_steps="], "%s: %s" % (shell, got[8]))
    f.check(got[9] == ["--check"], "%s: codex-train --ch -> --check: %s" % (shell, got[9]))
    f.check(got[10] == ["job.yaml"], "%s: the config file itself: %s" % (shell, got[10]))


def case_completion_bash(ctx, f):
    completion_checks(ctx, f, "bash")
    p = ctx.run([ctx.ctl, "completion", "keys"])
    keys = p.stdout.split()
    f.check("train.lr" in keys and "lora.targets" in keys and len(keys) == len(set(keys)) > 50,
            "completion keys lists the schema (%d keys)" % len(keys))
    p = ctx.run([ctx.ctl, "completion", "values", "train.lr"])
    f.check(p.returncode == 1 and not p.stdout, "no values for a number key")
    p = ctx.run([ctx.ctl, "completion", "values", "lora.rslora"])
    f.check(p.stdout.split() == ["true", "false"], "a boolean's values")


ZSH_DRIVER = r'''
# compadd and _files stand-ins record what the completion offers
typeset -ga OFFERED
compadd() {
    local suffix=
    while [[ $1 == -* ]]; do
        case $1 in
        --) shift; break ;;
        -S) suffix=$2; shift 2 ;;
        *) shift ;;
        esac
    done
    local w
    for w in "$@"; do
        [[ $w$suffix == ${PREFIX}* ]] && OFFERED+=("$w$suffix")
    done
}
_files() { local w; for w in ${PREFIX}*(N); do OFFERED+=("$w"); done }
source "$1"
complete_line() {
    words=("$@")
    CURRENT=${#words}
    PREFIX=$words[CURRENT]
    OFFERED=()
    case $words[1] in
    *codex-train) service=codex-train ;;
    *) service=codexctl ;;
    esac
    _codexctl
    print -l -- $OFFERED
    print -- ---
}
'''


def case_completion_zsh(ctx, f):
    if not f.check(shutil.which("zsh"), "zsh is installed (scripts/install-deps.sh)"):
        return
    completion_checks(ctx, f, "zsh")


def case_docs(ctx, f):
    def read(rel):
        with open(os.path.join(ctx.src, rel)) as fh:
            return fh.read()
    formats = read("docs/formats.md")
    f.check(not re.search(r"safety_report[^\n]*placeholder|placeholder[^\n]*safety_report",
                          formats), "formats.md no longer calls safety_report a placeholder")
    prep = read("docs/prepare.md")
    f.check("--policy" in prep and "--no-safety" in prep, "prepare.md documents --policy and "
            "--no-safety")
    f.check(re.search(r"redact\w* (is )?on by default|by default[^.]*redact", prep, re.I),
            "prepare.md says redaction is on by default")
    p = ctx.run([ctx.ctl, "prepare", "--help"])
    for opt in sorted(set(re.findall(r"--[a-z][a-z-]+", p.stdout)) - {"--help", "--output"}):
        f.check(opt in prep, "prepare.md documents %s (from --help)" % opt)
    readme = read("README.md")
    f.check("codexctl completion bash" in readme, "README shows how to load completion")
    export = read("docs/export.md")
    f.check("--base-name" in export, "export.md documents --base-name")
    slurm = read("docs/slurm.md")
    f.check("sweep.json" in slurm and "--local" in slurm, "slurm.md: grids and --local dry runs")


CASES = {name[5:]: fn for name, fn in globals().items() if name.startswith("case_")}


def main():
    if len(sys.argv) != 4 or sys.argv[3] not in CASES:
        print(__doc__)
        return 2
    ctx = Ctx(sys.argv[1], sys.argv[2])
    f = Checks()
    try:
        CASES[sys.argv[3]](ctx, f)
    except Exception as e:  # a crash is a failure with its cause
        import traceback
        traceback.print_exc()
        f.check(False, "case raised %r" % e)
    finally:
        ctx.close()
    return f.summary()


if __name__ == "__main__":
    sys.exit(main())
