#!/usr/bin/env python3
"""End-to-end tests of `codexctl prepare`: the real binary on generated trees,
checked through h5dump.

usage: prepare_e2e.py CODEXCTL SOURCE_DIR CASE

Cases:
  usage        --help, bad options, missing inputs: exit 0 / 2, messages
  select       directories (sorted, hidden and .git skipped), globs,
               --include/--exclude; the stored tokens are the files' bytes in
               path order, each followed by end-of-text
  jsonl        one document per line from the text field (or --jsonl-field);
               a bad line names file:line and nothing is written (exit 1)
  policies     binary, invalid UTF-8, empty, unreadable and too large files are
               reported and skipped (manifest status), or rejected (exit 1, no
               output) under an error policy; --on-invalid-utf8 keep keeps them
  determinism  the same input and seed give byte-identical token datasets;
               another seed gives another split
  split        documents go wholly to train or val by a seeded hash, about the
               asked fraction; --val sends exactly its files to val; doc
               offsets agree with the manifest
  gpt2         the GPT-2 tokenizer's attributes (skipped without its files)
  streaming    a corpus larger than the address-space limit (RLIMIT_AS) the
               process runs under (its measured baseline + 96 MB) is
               prepared: nothing holds it all
"""
import json
import os
import re
import resource
import subprocess
import sys
import tempfile


from checks import Checks


def prepare(exe, args, cwd, limit_bytes=None):
    def lim():
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))
    print("+ codexctl prepare", " ".join(args), flush=True)
    p = subprocess.run([exe, "prepare"] + args, cwd=cwd, capture_output=True, text=True,
                       preexec_fn=lim if limit_bytes else None, timeout=600)
    sys.stdout.write(p.stdout[-3000:])
    sys.stdout.write(p.stderr[-3000:])
    return p


def h5dump(*args):
    return subprocess.run(["h5dump"] + list(args), capture_output=True, text=True,
                          check=True).stdout


def ints(path, dset):
    out = h5dump("-y", "-w", "0", "-d", dset, path)
    m = re.search(r"DATA \{(.*?)\}", out, re.S)
    return [int(x) for x in re.findall(r"\d+", m.group(1))] if m else []


def size_of(path, dset):
    m = re.search(r"DATASPACE\s+SIMPLE \{ \( (\d+) \)", h5dump("-H", "-d", dset, path))
    return int(m.group(1))


def attr(path, name):
    out = h5dump("-a", "/" + name, path)
    m = re.search(r"\(0\): (.*)", out)
    return m.group(1).strip().strip('"') if m else None


ROW = re.compile(r'\{\s*"([^"]*)",\s*(\d+),\s*"([^"]*)",\s*"([^"]*)",\s*(\d+),\s*(\d+),\s*'
                 r'"([^"]*)",\s*"([^"]*)"\s*\}')


def manifest(path):
    rows = {}
    for m in ROW.finditer(h5dump("-y", "-d", "/manifest", path)):
        rows[m.group(1)] = dict(bytes=int(m.group(2)), sha256=m.group(3), split=m.group(4),
                                documents=int(m.group(5)), tokens=int(m.group(6)),
                                status=m.group(7), reason=m.group(8))
    return rows


def write(root, rel, data):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())
    return path


def case_usage(exe, tmp, f):
    p = prepare(exe, ["--help"], tmp)
    f.check(p.returncode == 0 and "--val-fraction" in p.stdout, "--help exits 0 with the options")
    write(tmp, "c/a.txt", "x")
    for args, what in ((["c"], "missing -o"), (["-o", "o.h5"], "no inputs"),
                       (["-o", "o.h5", "--bogus", "c"], "unknown option"),
                       (["-o", "o.h5", "--tokenizer", "nope", "c"], "bad tokenizer"),
                       (["-o", "o.h5", "--val-fraction", "2", "c"], "bad fraction"),
                       (["-o", "o.h5", "nosuch"], "missing input"),
                       (["-o", "o.h5", "--val-fraction", "0.1", "--val", "c", "c"], "both splits"),
                       (["-o", "o.h5", "c/*.zzz"], "glob matching nothing")):
        p = prepare(exe, args, tmp)
        f.check(p.returncode == 2 and "codexctl prepare:" in p.stderr, f"{what}: exit 2 with a message")
    f.check(not os.path.exists(os.path.join(tmp, "o.h5")), "bad usage writes nothing")
    p = prepare(exe, ["-o", "o.h5", "--tokenizer", "gpt2", "--tokenizer-path", "nodir", "c"], tmp)
    f.check(p.returncode == 2 and "nodir" in p.stderr, "a missing tokenizer directory is named")


def case_select(exe, tmp, f):
    files = {"src/b.c": "int b;\n", "src/a.c": "int a;\n", "src/z/deep.py": "x = 1\n",
             "src/.hidden/h.c": "hidden", "src/.git/config": "[core]", "src/notes.md": "# n\n",
             "src/gen/big.c": "generated\n", "other/o.c": "other\n", "other/o.h": "hdr\n"}
    for rel, text in files.items():
        write(tmp, rel, text)
    p = prepare(exe, ["-o", "o.h5", "--val-fraction", "0", "--exclude", "*/gen/*",
                      "--include", "*.c", "--include", "*.py", "src", "other/*.c"], tmp)
    f.check(p.returncode == 0, "prepare of a tree exits 0")
    rows = manifest(os.path.join(tmp, "o.h5"))
    want = ["other/o.c", "src/a.c", "src/b.c", "src/z/deep.py"]
    f.check(sorted(rows) == want, f"files selected: {sorted(rows)} != {want}")
    toks = ints(os.path.join(tmp, "o.h5"), "/train/tokens")
    expect = []
    for rel in want:
        expect += list(files[rel].encode()) + [256]
    f.check(toks == expect, "tokens are the files' bytes in path order, each closed by end-of-text")
    offs = ints(os.path.join(tmp, "o.h5"), "/train/doc_offsets")
    starts = [0]
    for rel in want[:-1]:
        starts.append(starts[-1] + len(files[rel]) + 1)
    f.check(offs == starts, f"doc offsets {offs} != {starts}")
    f.check(attr(os.path.join(tmp, "o.h5"), "format") == "codex-universal-dataset-1", "format attribute")
    f.check(attr(os.path.join(tmp, "o.h5"), "tokenizer_vocab_size") == "257", "vocab attribute")
    f.check(attr(os.path.join(tmp, "o.h5"), "eot_id") == "256", "eot attribute")
    f.check("redactions" in (attr(os.path.join(tmp, "o.h5"), "safety_report") or ""),
            "safety_report attribute")
    f.check(size_of(os.path.join(tmp, "o.h5"), "/val/tokens") == 0, "val-fraction 0: empty val")
    # the output inside the input tree is not read back as input
    p = prepare(exe, ["-o", "src/o.h5", "--val-fraction", "0", "src"], tmp)
    p = prepare(exe, ["-o", "src/o.h5", "--val-fraction", "0", "src"], tmp)
    f.check(p.returncode == 0 and "src/o.h5" not in manifest(os.path.join(tmp, "src/o.h5")),
            "the output file is not an input of its own rerun")


def case_jsonl(exe, tmp, f):
    write(tmp, "j/a.jsonl", '{"text": "hello"}\n\n{"text": "w\\u00f6rld", "id": 2}\n')
    write(tmp, "j/b.txt", "plain")
    p = prepare(exe, ["-o", "o.h5", "--val-fraction", "0", "j"], tmp)
    f.check(p.returncode == 0, "jsonl prepare exits 0")
    rows = manifest(os.path.join(tmp, "o.h5"))
    f.check(rows.get("j/a.jsonl", {}).get("documents") == 2, "one document per non-blank line")
    toks = ints(os.path.join(tmp, "o.h5"), "/train/tokens")
    want = list(b"hello") + [256] + list("wörld".encode()) + [256] + list(b"plain") + [256]
    f.check(toks == want, "jsonl text fields are decoded JSON strings")
    write(tmp, "k/c.jsonl", '{"body": "x"}\n{"body": "y"}\n')
    p = prepare(exe, ["-o", "k.h5", "--jsonl-field", "body", "k"], tmp)
    f.check(p.returncode == 0 and manifest(os.path.join(tmp, "k.h5"))["k/c.jsonl"]["documents"] == 2,
            "--jsonl-field picks the field")
    write(tmp, "bad/d.jsonl", '{"text": "ok"}\n{"text": 5}\nnot json\n')
    p = prepare(exe, ["-o", "bad.h5", "bad"], tmp)
    f.check(p.returncode == 1 and "bad/d.jsonl:2:" in p.stderr, "a bad line is named file:line, exit 1")
    f.check(not os.path.exists(os.path.join(tmp, "bad.h5")), "a rejected jsonl writes nothing")


def policy_tree(tmp):
    write(tmp, "p/good.c", "int good;\n")
    write(tmp, "p/bin.o", b"\x7fELF\x00\x01\x02")
    write(tmp, "p/latin1.txt", b"caf\xe9\n")
    write(tmp, "p/empty.c", b"")
    write(tmp, "p/big.c", "x" * 5000)
    os.symlink("nowhere", os.path.join(tmp, "p/broken.c"))


def case_policies(exe, tmp, f):
    policy_tree(tmp)
    p = prepare(exe, ["-o", "o.h5", "--val-fraction", "0", "--max-file-bytes", "4096", "p"], tmp)
    f.check(p.returncode == 0, "skip policies exit 0")
    rows = manifest(os.path.join(tmp, "o.h5"))
    for path, reason in (("p/bin.o", "binary"), ("p/latin1.txt", "invalid_utf8"),
                         ("p/empty.c", "empty"), ("p/broken.c", "unreadable"),
                         ("p/big.c", "too_large")):
        r = rows.get(path, {})
        f.check(r.get("status") == "skipped" and r.get("reason") == reason and r.get("tokens") == 0,
                f"{path}: manifest says skipped/{reason}: {r}")
        f.check(path in p.stderr, f"{path} is reported on stderr")
    f.check(rows.get("p/good.c", {}).get("status") == "ok", "the good file is ok")
    f.check(re.search(r"skipped: binary 1, invalid_utf8 1, empty 1, unreadable 1, too_large 1",
                      p.stdout) is not None, "summary counts per reason")
    f.check(ints(os.path.join(tmp, "o.h5"), "/train/tokens") == list(b"int good;\n") + [256],
            "only the good file's tokens are stored")
    for opt in (["--on-binary", "error"], ["--on-invalid-utf8", "error"]):
        p = prepare(exe, ["-o", "e.h5"] + opt + ["p"], tmp)
        f.check(p.returncode == 1 and "rejected" in p.stderr, f"{opt}: exit 1, reported")
        f.check(not os.path.exists(os.path.join(tmp, "e.h5")), f"{opt}: nothing written")
    p = prepare(exe, ["-o", "k.h5", "--val-fraction", "0", "--on-invalid-utf8", "keep", "p"], tmp)
    r = manifest(os.path.join(tmp, "k.h5")).get("p/latin1.txt", {})
    f.check(p.returncode == 0 and r.get("status") == "ok" and r.get("tokens") == 6,
            f"keep tokenises the raw bytes: {r}")


def corpus(tmp, n=120):
    for i in range(n):
        write(tmp, f"d/{i % 7}/f{i:04d}.py", f"def f{i}():\n    return {i * i}\n" * (1 + i % 5))


def case_determinism(exe, tmp, f):
    corpus(tmp)
    dumps = []
    for out in ("a.h5", "b.h5", "c.h5"):
        seed = "3" if out != "c.h5" else "4"
        p = prepare(exe, ["-o", out, "--seed", seed, "--val-fraction", "0.2", "d"], tmp)
        f.check(p.returncode == 0, f"{out} written")
        dumps.append([h5dump("-d", d, os.path.join(tmp, out)).split("\n", 1)[1]
                      for d in ("/train/tokens", "/val/tokens", "/train/doc_offsets", "/manifest")])
    f.check(dumps[0] == dumps[1], "same input and seed: identical datasets (h5dump -d)")
    f.check(dumps[0][1] != dumps[2][1], "another seed: another split")


def case_split(exe, tmp, f):
    corpus(tmp, 300)
    p = prepare(exe, ["-o", "s.h5", "--val-fraction", "0.3", "d"], tmp)
    path = os.path.join(tmp, "s.h5")
    rows = manifest(path)
    nval = sum(1 for r in rows.values() if r["split"] == "val")
    f.check(60 <= nval <= 120, f"about 30% of 300 documents in val: {nval}")
    f.check(all(r["split"] in ("train", "val") and r["documents"] == 1 for r in rows.values()),
            "every file is one document, wholly in one split")
    for split in ("train", "val"):
        toks = [r["tokens"] for k, r in sorted(rows.items()) if r["split"] == split]
        offs = ints(path, f"/{split}/doc_offsets")
        starts = [sum(toks[:i]) for i in range(len(toks))]
        f.check(offs == starts, f"{split} doc offsets follow the manifest")
        f.check(size_of(path, f"/{split}/tokens") == sum(toks), f"{split} token count")
    write(tmp, "v/held.py", "held = 1\n")
    p = prepare(exe, ["-o", "x.h5", "--val", "v", "d"], tmp)
    rows = manifest(os.path.join(tmp, "x.h5"))
    f.check(p.returncode == 0 and [k for k, r in rows.items() if r["split"] == "val"] == ["v/held.py"],
            "--val: exactly its files are val")
    f.check(ints(os.path.join(tmp, "x.h5"), "/val/tokens") == list(b"held = 1\n") + [256], "val tokens")
    f.check(attr(os.path.join(tmp, "x.h5"), "val_split") == "explicit", "val_split attribute")


def case_gpt2(exe, tmp, f, src):
    gpt2 = os.path.join(src, "third_party_data/gpt2")
    if not os.path.exists(os.path.join(gpt2, "vocab.bpe")):
        print("skipped: no GPT-2 vocabulary in third_party_data/gpt2")
        f.check(True, "skipped")
        return
    write(tmp, "g/a.py", "def hello():\n    return 'world'\n")
    p = prepare(exe, ["-o", "g.h5", "--tokenizer", "gpt2", "--tokenizer-path", gpt2, "g"], tmp)
    path = os.path.join(tmp, "g.h5")
    f.check(p.returncode == 0, "gpt2 prepare exits 0")
    if p.returncode != 0:
        return
    f.check(attr(path, "tokenizer_kind") == "gpt2" and attr(path, "tokenizer_vocab_size") == "50257"
            and attr(path, "eot_id") == "50256", "gpt2 tokenizer attributes")
    f.check("H5T_STD_U16LE" in h5dump("-H", "-d", "/train/tokens", path), "50257 ids fit uint16")
    toks = ints(path, "/train/tokens") + ints(path, "/val/tokens")
    f.check(toks[-1] == 50256 and len(toks) < 20, f"BPE tokens end with end-of-text: {toks}")


def baseline_address_space(exe, tmp):
    """The smallest RLIMIT_AS (to 4 MB) under which codexctl prepares a tiny
    corpus: what the program and its shared libraries (MPI, OpenBLAS, HDF5)
    take before any data, which changes with the libraries linked in."""
    write(tmp, "tiny/a.py", "x = 1\n")
    lo, hi = 8 << 20, 1 << 30
    while hi - lo > (4 << 20):
        mid = (lo + hi) // 2
        p = prepare(exe, ["-o", "tiny.h5", "--val-fraction", "0", "tiny"], tmp, limit_bytes=mid)
        if p.returncode == 0:
            hi = mid
        else:
            lo = mid
    return hi


def byte_vocab():
    """GPT-2's byte -> character table as a token -> id vocabulary."""
    keep = (list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100)))
    out, moved = {}, 0
    for b in range(256):
        if b in keep:
            out[chr(b)] = b
        else:
            out[chr(256 + moved)] = b
            moved += 1
    return out


def case_specials(exe, tmp, f):
    """A Llama-3-style tokenizer.json with tokenizer_config.json's
    bos_token / eos_token / add_bos_token: every document starts with BOS
    and ends with EOS, special-token text inside the data stays text, and
    the framing is part of the tokenizer hash."""
    vocab = byte_vocab()
    added = [{"id": 256, "content": "<|begin_of_text|>", "special": True},
             {"id": 257, "content": "<|end_of_text|>", "special": True}]
    doc = {"normalizer": None, "added_tokens": added,
           "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
               {"type": "Split", "pattern": {"Regex": r"\p{N}{1,3}|[^\p{N}]+"},
                "behavior": "Isolated", "invert": False},
               {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}]},
           "model": {"type": "BPE", "vocab": vocab, "merges": [], "ignore_merges": True}}
    for d, cfg in (("tok", {"bos_token": "<|begin_of_text|>", "add_bos_token": True,
                            "eos_token": {"content": "<|end_of_text|>"}}), ("plain", None)):
        write(tmp, f"{d}/tokenizer.json", json.dumps(doc))
        if cfg:
            write(tmp, f"{d}/tokenizer_config.json", json.dumps(cfg))
    write(tmp, "s/a.txt", "text with <|end_of_text|> and <|begin_of_text|> inside\n")
    write(tmp, "s/b.txt", "second 123\n")
    write(tmp, "s/c.txt", "third\n")
    outs = {}
    for d in ("tok", "plain"):
        p = prepare(exe, ["-o", f"{d}.h5", "--tokenizer", "gpt2", "--tokenizer-path", d,
                          "--val-fraction", "0", "s"], tmp)
        f.check(p.returncode == 0, f"prepare with the {d} tokenizer.json exits 0")
        outs[d] = os.path.join(tmp, f"{d}.h5")
    if not all(os.path.exists(p) for p in outs.values()):
        return
    path = outs["tok"]
    toks = ints(path, "/train/tokens")
    offs = ints(path, "/train/doc_offsets")
    f.check(attr(path, "eot_id") == "257", f"eot_id is the eos_token's id ({attr(path, 'eot_id')})")
    f.check(len(offs) == 3 and all(toks[o] == 256 for o in offs),
            f"each of the 3 documents starts with BOS: offsets {offs}")
    f.check(toks.count(256) == 3 and toks.count(257) == 3,
            f"BOS/EOS only as framing: {toks.count(256)} BOS, {toks.count(257)} EOS")
    f.check(all(toks[o - 1] == 257 for o in offs[1:]) and toks[-1] == 257,
            "each document ends with EOS")
    text = "".join(chr(t) for t in toks if t < 128)
    f.check("<|end_of_text|>" in text and "<|begin_of_text|>" in text,
            "special-token text in the data was encoded as ordinary bytes")
    plain = ints(outs["plain"], "/train/tokens")
    f.check(256 not in plain and attr(outs["plain"], "eot_id") == "257",
            "without tokenizer_config.json: no BOS, <|end_of_text|> still ends documents")
    f.check(attr(path, "tokenizer_sha256") != attr(outs["plain"], "tokenizer_sha256"),
            "the framing is part of the tokenizer hash")
    # --tokenizer-path alone means that folder's BPE (it once fell back to
    # the byte tokenizer silently); with --tokenizer byte it is refused
    p = prepare(exe, ["-o", "implied.h5", "--tokenizer-path", "tok", "--val-fraction", "0", "s"],
                tmp)
    implied = os.path.join(tmp, "implied.h5")
    f.check(p.returncode == 0 and attr(implied, "tokenizer_kind") == "gpt2" and
            attr(implied, "tokenizer_sha256") == attr(path, "tokenizer_sha256") and
            ints(implied, "/train/tokens") == toks,
            "--tokenizer-path without --tokenizer uses the folder's tokenizer.json")
    p = prepare(exe, ["-o", "byte.h5", "--tokenizer", "byte", "--tokenizer-path", "tok", "s"], tmp)
    f.check(p.returncode == 2 and "--tokenizer-path tok" in p.stderr and
            not os.path.exists(os.path.join(tmp, "byte.h5")),
            "--tokenizer byte with --tokenizer-path is a usage error naming the folder")


def case_streaming(exe, tmp, f):
    # the corpus is twice the budget that prepare gets above its own baseline
    budget = 96 << 20
    base = baseline_address_space(exe, tmp)
    limit = base + budget
    print(f"baseline address space {base >> 20} MB; limit {limit >> 20} MB", flush=True)
    line = ("def f(x):\n    return x * 2  # " + "y" * 60 + "\n")
    block = line * ((1 << 20) // len(line) + 1)  # 1 MB files
    n_files, total = 0, 0
    while total < max(2 * budget, limit + (16 << 20)):
        write(tmp, f"big/{n_files // 50}/f{n_files:05d}.py", block)
        total += len(block)
        n_files += 1
    write(tmp, "big/lines.jsonl", "".join('{"text": "%s"}\n' % ("z" * 1000) for _ in range(20000)))
    p = prepare(exe, ["-o", "big.h5", "--progress", "always", "big"], tmp, limit_bytes=limit)
    f.check(p.returncode == 0, f"{total >> 20} MB prepared under RLIMIT_AS of {limit >> 20} MB "
            f"(baseline {base >> 20} MB + {budget >> 20} MB)")
    path = os.path.join(tmp, "big.h5")
    if p.returncode == 0:
        n = size_of(path, "/train/tokens") + size_of(path, "/val/tokens")
        f.check(n == total + n_files + 20000 * 1001, f"every byte became a token ({n})")
        f.check("MB/s" in p.stderr, "--progress always draws a bar with MB/s")
    # the limit is real: the same corpus read whole would not fit
    p = subprocess.run([sys.executable, "-c", "open('big/lines.jsonl').read() * 100"], cwd=tmp,
                       preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)),
                       capture_output=True)
    f.check(p.returncode != 0, "the address-space limit stops a whole-corpus read")


def main():
    exe, src, case = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2]), sys.argv[3]
    f = Checks()
    with tempfile.TemporaryDirectory() as tmp:
        if case == "gpt2":
            case_gpt2(exe, tmp, f, src)
        else:
            globals()["case_" + case](exe, tmp, f)
    return f.summary()


if __name__ == "__main__":
    sys.exit(main())
