#!/usr/bin/env python3
"""Parity of the C GPT-2 tokenizer with the reference encoder.

For every input -- the files of tests/fixtures/tokenizer_corpus, a few long
runs, and seeded random inputs mixing every character class, contractions,
emoji and invalid UTF-8 -- it checks, with tok_encode:
  pretok  the pre-token boundaries equal the oracle's regex split;
  ids     the ids (cache and the automatic choice of merge loop) equal the
          oracle's (gpt2_bpe_ref.py);
  heap    the ids with every word merged by the heap loop equal them;
  plain   the ids with every word merged by the plain loop equal them;
  round   decode(encode(x)) == x byte for byte.
A failure prints the first difference with its context. Ends with a
"N passed, N failed" line; exits 1 on any failure, or if the GPT-2 BPE files
are missing (scripts/fetch-gpt2-bpe.sh fetches them).

Usage: gpt2_parity.py --tok-encode PATH [--bpe-dir DIR] [--seed N] [--fuzz N]
"""
import argparse
import os
import sys
import tempfile

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpt2_bpe_ref as ref  # noqa: E402
import gpt2_testlib as lib  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tok-encode", required=True)
    ap.add_argument("--bpe-dir")
    ap.add_argument("--seed", type=int, default=20240)
    ap.add_argument("--fuzz", type=int, default=300, help="random inputs (default 300)")
    args = ap.parse_args()
    tally = lib.Tally()

    bpe_dir = lib.find_bpe_dir(args.bpe_dir)
    missing = lib.missing_bpe_files(bpe_dir)
    if missing:
        tally.check(False, "gpt2-bpe-files", missing)
        return tally.finish()
    encoder = ref.load(bpe_dir)
    id_bytes = lib.token_bytes(encoder)

    with tempfile.TemporaryDirectory(prefix="gpt2-parity-") as tmp:
        paths = lib.corpus_files()
        generated = lib.long_cases() + lib.fuzz_cases(args.seed, args.fuzz)
        paths += lib.write_cases(tmp, generated)
        base = [args.tok_encode, "--dir", bpe_dir]
        try:
            runs = {
                "pretok": lib.run_lines(base + ["--pretok"] + paths),
                "ids": lib.run_lines(base + paths),
                "heap": lib.run_lines(base + ["--algo", "heap"] + paths),
                "plain": lib.run_lines(base + ["--algo", "plain"] + paths),
                "round": lib.run_lines(base + ["--roundtrip"] + paths),
            }
        except RuntimeError as e:
            tally.check(False, "tok_encode", str(e))
            return tally.finish()

        for path in paths:
            with open(path, "rb") as f:
                data = f.read()
            name = os.path.basename(path)
            pieces = ref.split_pretokens(data)
            ends, at = [], 0
            for p in pieces:
                at += len(p)
                ends.append(at)
            got_ends = [int(x) for x in runs["pretok"].get(path, [])]
            tally.check(got_ends == ends, "pretok %s" % name,
                        "" if got_ends == ends else lib.describe_offset_mismatch(data, ends, got_ends))
            expected = encoder.encode(data)
            for mode in ("ids", "heap", "plain"):
                got = [int(x) for x in runs[mode].get(path, [])]
                tally.check(got == expected, "%s %s" % (mode, name),
                            "" if got == expected else
                            lib.describe_id_mismatch(data, expected, got, id_bytes))
            verdict = runs["round"].get(path, ["(no output)"])
            tally.check(verdict == ["ok"], "round %s" % name, " ".join(verdict))
    return tally.finish()


if __name__ == "__main__":
    sys.exit(main())
