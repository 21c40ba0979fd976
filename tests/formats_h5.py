#!/usr/bin/env python3
"""Checks docs/formats.md against real files: the `h5layout` blocks must list
exactly the root attributes and groups that `h5dump -H` shows in a checkpoint
and a final.h5 made by a short codex-train run (and by one with
lora.init: pissa), and in a dataset made by
`codexctl prepare` (codexctl beside codex-train), and every dataset must have
the documented type.

usage: formats_h5.py CODEX_TRAIN SOURCE_DIR
"""
import os
import re
import subprocess
import sys
import tempfile


def doc_layouts(path):
    text = open(path, encoding="utf-8").read()
    out = {}
    for name, body in re.findall(r"```h5layout (\w+)\n(.*?)```", text, re.S):
        attrs, groups, dtypes = set(), set(), set()
        for line in body.splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[1] == "attribute":
                attrs.add(parts[2])
            elif len(parts) >= 2 and parts[1] == "group":
                groups.add(parts[0].strip("/"))
            elif len(parts) >= 3 and parts[1] == "dataset":
                dtypes.add(parts[2])
        out[name] = (attrs, groups, dtypes)
    return out


def h5_layout(path):
    dump = subprocess.run(["h5dump", "-H", path], capture_output=True, text=True, check=True).stdout
    # depth 1 is the file, 2 the root group's members
    attrs, groups, dtypes, depth, in_dataset = set(), set(), set(), 0, False
    for line in dump.splitlines():
        m = re.match(r"\s*(GROUP|ATTRIBUTE|DATASET) \"([^\"]+)\"", line)
        if m:
            kind, name = m.groups()
            if kind == "ATTRIBUTE" and depth == 2:
                attrs.add(name)
            if kind == "GROUP" and depth == 2:
                groups.add(name)
            in_dataset = kind == "DATASET"
        m = re.match(r"\s*DATATYPE\s+(H5T_\w+)", line)
        if m and in_dataset:
            dtypes.add(m.group(1))
            in_dataset = False
        depth += line.count("{") - line.count("}")
    return attrs, groups, dtypes


def prepare_dataset(codex_train, tmp):
    """A tiny dataset with both splits non-empty, from codexctl prepare."""
    corpus = os.path.join(tmp, "corpus")
    os.makedirs(os.path.join(corpus, "val"))
    with open(os.path.join(corpus, "a.py"), "w") as f:
        f.write("def f():\n    return 1\n")
    with open(os.path.join(corpus, "val", "b.py"), "w") as f:
        f.write("x = 2\n")
    out = os.path.join(tmp, "dataset.h5")
    ctl = os.path.join(os.path.dirname(codex_train), "codexctl")
    subprocess.run([ctl, "prepare", "-o", out, "--val", os.path.join(corpus, "val"), corpus],
                   check=True, capture_output=True)
    return out


def main():
    exe, src = sys.argv[1], sys.argv[2]
    passed = failed = 0
    layouts = doc_layouts(os.path.join(src, "docs/formats.md"))
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OPENBLAS_NUM_THREADS="1", CU_PROGRESS="0")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["mpirun", "-n", "1", "--oversubscribe", exe,
                        os.path.join(src, "configs/demo-base.yaml"), f"job.runs_dir={tmp}",
                        "train.max_steps=4", "train.warmup_steps=1", "lora.enabled=true"],
                       cwd=src, env=env, check=True, capture_output=True)
        # lora.init: pissa adds the adapters training started from (/lora_init)
        subprocess.run(["mpirun", "-n", "1", "--oversubscribe", exe,
                        os.path.join(src, "configs/demo-base.yaml"), f"job.runs_dir={tmp}",
                        "job.name=pissa", "train.max_steps=4", "train.warmup_steps=1",
                        "lora.enabled=true", "lora.init=pissa"],
                       cwd=src, env=env, check=True, capture_output=True)
        files = {"checkpoint": os.path.join(tmp, "demo-base/checkpoints/step_00000004.h5"),
                 "final": os.path.join(tmp, "demo-base/final.h5"),
                 "checkpoint_pissa": os.path.join(tmp, "pissa/checkpoints/step_00000004.h5"),
                 "final_pissa": os.path.join(tmp, "pissa/final.h5"),
                 "dataset": prepare_dataset(exe, tmp)}
        for name, path in files.items():
            if name not in layouts:
                print(f"FAIL: docs/formats.md has no h5layout block for {name}")
                failed += 1
                continue
            want, got = layouts[name], h5_layout(path)
            for what, w, g in zip(("root attributes", "groups", "dataset types"), want, got):
                if w == g:
                    passed += 1
                else:
                    failed += 1
                    print(f"FAIL: {name} {what}: documented {sorted(w)}, file has {sorted(g)}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
