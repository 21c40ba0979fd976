"""Running the real binaries from the end-to-end test scripts: the
environment mpirun needs in the test container, a subprocess wrapper that
echoes the tail of the output into the CTest log, and the readers of what a
training run prints and writes that several scripts share."""
import json
import os
import re
import subprocess
import sys

# A training step's screen line: "step 12/40 | loss 3.1415 ..."
STEP_RE = re.compile(r"^step\s+(\d+)/(\d+) \| loss ([0-9.]+)")


def env():
    e = dict(os.environ)
    e.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
             OPENBLAS_NUM_THREADS="1", OMPI_MCA_rmaps_base_oversubscribe="1")
    return e


def screen_lines(stdout):
    """The lines as a terminal shows them: a progress bar redrawn with
    carriage returns and erase-line codes leaves only its last text."""
    for line in stdout.split("\n"):
        yield line.split("\r")[-1].replace("\x1b[K", "")


def run(cmd, cwd, timeout=600, screen=False, tail=4000):
    """Runs cmd and echoes the last `tail` characters of its stdout and
    stderr; with screen=True the returned stdout is already screen_lines."""
    print("+", " ".join(cmd), flush=True)
    p = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True,
                       errors="replace", timeout=timeout)
    if screen:
        p.stdout = "\n".join(screen_lines(p.stdout))
    sys.stdout.write(p.stdout[-tail:])
    sys.stdout.write(p.stderr[-tail:])
    return p


def mpirun(n, argv, cwd, timeout=600, **kw):
    return run(["mpirun", "-n", str(n), "--oversubscribe"] + argv, cwd, timeout, **kw)


def metric_losses(run_dir):
    """step -> loss from a run's metrics.jsonl."""
    out = {}
    with open(os.path.join(run_dir, "metrics.jsonl")) as fh:
        for line in fh:
            o = json.loads(line)
            if "loss" in o:
                out[o["step"]] = o["loss"]
    return out
