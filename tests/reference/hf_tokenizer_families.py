#!/usr/bin/env python3
"""The tokenizer.json pieces of the code-model families against an
independent Python implementation (CTest label `reference`; no
`tokenizers` package: the oracle is written here from Hugging Face's
documented behaviour, with the `regex` module and `unicodedata`).

  qwen2       normalizer NFC; pre_tokenizer Sequence [Split(Qwen2's pattern,
              Isolated), ByteLevel(use_regex false)]; BPE without
              ignore_merges; FIM tokens (<|fim_prefix|>, <|fim_middle|>,
              <|fim_suffix|>, <|fim_pad|>, <|repo_name|>, <|file_sep|>)
              non-special added tokens, matched in text and kept as tokens;
              <|endoftext|>, <|im_start|>, <|im_end|> special (never from
              text).
  starcoder2  no normalizer; pre_tokenizer Sequence [Digits(individual_digits
              true), ByteLevel(use_regex true)]: every \\p{N} character alone,
              GPT-2's pattern inside the rest; merges trained so that digit
              pairs would merge if they were not split.

Both over tests/fixtures/tokenizer_corpus, hand cases (decomposed accents
for NFC, numbers, FIM layouts, invalid UTF-8) and fuzz cases: the ids of
tok_encode must equal the oracle's for every input.

Exit: 0 all equal, 1 a difference, 2 bad usage.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import unicodedata

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import regex  # noqa: E402

import gpt2_bpe_ref as ref  # noqa: E402
import gpt2_testlib as lib  # noqa: E402
import hf_tokenizer_json as tj  # noqa: E402

QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+"
                 r"[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
GPT2 = regex.compile(tj.GPT2_PATTERN)
QWEN2 = regex.compile(QWEN2_PATTERN)
NUMERIC = regex.compile(r"\p{N}")
FIM = ["<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>",
       "<|file_sep|>"]
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def isolated(pattern, text):
    """Split "Isolated" over a str: every match and every stretch between."""
    out, at = [], 0
    for m in pattern.finditer(text):
        if m.start() == m.end():
            continue
        if m.start() > at:
            out.append(text[at:m.start()])
        out.append(m.group())
        at = m.end()
    if at < len(text):
        out.append(text[at:])
    return out


def nfc(text):
    """NFC of every stretch of real characters; the surrogates that stand
    for invalid bytes (surrogateescape) stay as they are."""
    parts = regex.split(r"([\udc80-\udcff]+)", text)
    return "".join(p if p and "\udc80" <= p[0] <= "\udcff" else unicodedata.normalize("NFC", p)
                   for p in parts)


def qwen2_pieces(data):
    text = nfc(data.decode("utf-8", "surrogateescape"))
    return [p.encode("utf-8", "surrogateescape") for p in isolated(QWEN2, text)]


def digit_split(text):
    """Digits(individual_digits): each numeric character alone."""
    out, at = [], 0
    for m in NUMERIC.finditer(text):
        if m.start() > at:
            out.append(text[at:m.start()])
        out.append(m.group())
        at = m.end()
    if at < len(text):
        out.append(text[at:])
    return out


def starcoder2_pieces(data):
    text = data.decode("utf-8", "surrogateescape")
    out = []
    for piece in digit_split(text):
        out.extend(isolated(GPT2, piece))
    return [p.encode("utf-8", "surrogateescape") for p in out]


def train(corpus, pieces, n_merges):
    """Plain BPE training over the pre-tokens `pieces` makes (the most
    frequent pair first, ties: the smallest)."""
    byte_char = ref.bytes_to_unicode()
    import collections
    words = collections.Counter()
    for t in corpus:
        for p in pieces(t):
            words[tuple(byte_char[b] for b in p)] += 1
    merges = []
    for _ in range(n_merges):
        pairs = collections.Counter()
        for w, c in words.items():
            for pr in zip(w, w[1:]):
                pairs[pr] += c
        if not pairs:
            break
        best = min(pairs, key=lambda pr: (-pairs[pr], pr))
        merges.append(best)
        merged = collections.Counter()
        for w, c in words.items():
            o, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    o.append(w[i] + w[i + 1])
                    i += 2
                else:
                    o.append(w[i])
                    i += 1
            merged[tuple(o)] += c
        words = merged
    vocab = {}
    for b in range(256):
        vocab[byte_char[b]] = len(vocab)
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    return vocab, merges


class Oracle(ref.Encoder):
    def __init__(self, vocab, merges, pieces):
        super().__init__(vocab, merges)
        self.pieces = pieces

    def __call__(self, data):
        ids = []
        for p in self.pieces(data):
            ids.extend(self.encode_piece(p))
        return ids


def tokenizer_doc(family, vocab, merges):
    added = []
    for k, s in enumerate(SPECIAL + (FIM if family == "qwen2" else [])):
        added.append({"id": len(vocab) + k, "content": s, "single_word": False, "lstrip": False,
                      "rstrip": False, "normalized": False, "special": s in SPECIAL})
    if family == "qwen2":
        normalizer = {"type": "NFC"}
        pre = {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN2_PATTERN}, "behavior": "Isolated",
             "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
             "use_regex": False}]}
    else:
        normalizer = None
        pre = {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": True},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
             "use_regex": True}]}
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
            "normalizer": normalizer, "pre_tokenizer": pre, "post_processor": None,
            "decoder": {"type": "ByteLevel"},
            "model": {"type": "BPE", "dropout": None, "unk_token": None,
                      "continuing_subword_prefix": "", "end_of_word_suffix": "",
                      "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                      "vocab": vocab, "merges": [a + " " + b for a, b in merges]}}


HAND = [
    ("nfc", "cafe\u0301 re\u0301sume\u0301 A\u030a \u1100\u1161\u11a8 e\u0301\u0301 "
            "\u0041\u0308\u0304 \u212b \u00c5 o\u0308\u0332 \ufb01 \u2126".encode()),
    ("numbers", b"x = 1234567 + 12 - 3.14159e10; 0xFF 2024-11-24 \xd9\xa3\xd9\xa4 \xe2\x85\xab"
                b" \xc2\xbd"),
    ("fim", b"<|fim_prefix|>def add(a, b):\n    <|fim_suffix|>\n    return c<|fim_middle|>"
            b"c = a + b<|fim_pad|><|repo_name|>x/y<|file_sep|>a.py\n<|endoftext|>"),
    ("chat", b"<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"),
    ("invalid_utf8", b"ok \xff\xfe e\xcc\x81 \xc3( \xe2\x82 12\xf0\x9f\x98 \x80x \xcc\x81"),
    ("crlf", b"line one\r\nline two\r\n\r\n  indented\r\n\tTab\r\r\n"),
]


def run_case(family, args, ck, tmp):
    corpus = []
    for p in lib.corpus_files():
        with open(p, "rb") as f:
            corpus.append(f.read())
    corpus.append(b"0123456789 " * 50 + b"12 12 12 2024 1000")
    pieces = qwen2_pieces if family == "qwen2" else starcoder2_pieces
    # trained over GPT-2's pieces for StarCoder2, so digit pairs get merges
    # that only a tokenizer without Digits would use
    vocab, merges = train(corpus, qwen2_pieces if family == "qwen2" else
                          (lambda t: [p.encode("utf-8", "surrogateescape") for p in isolated(
                              GPT2, t.decode("utf-8", "surrogateescape"))]), 300)
    doc = tokenizer_doc(family, vocab, merges)
    d = os.path.join(tmp, family)
    os.makedirs(d)
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False)
    inner = Oracle(vocab, merges, pieces)
    oracle = tj.AddedOracle(inner, doc["added_tokens"])
    cases = HAND + lib.long_cases() + lib.fuzz_cases(29, 80)
    if family == "qwen2":
        cases += tj.insert_added(31, cases[:8], FIM + SPECIAL)
    paths = lib.write_cases(tmp, [(family + "-" + n, b) for n, b in cases]) + lib.corpus_files()
    got = tj.encode_all(args.tok_encode, d, paths)
    special = {a["id"] for a in doc["added_tokens"] if a["special"]}
    fim_ids = {a["id"] for a in doc["added_tokens"] if not a["special"]}
    digit_merges = sum(1 for a, b in merges if (a + b).isdigit() and len(a + b) > 1)
    n_tokens = n_fim = 0
    for p in paths:
        with open(p, "rb") as f:
            data = f.read()
        want = [str(i) for i in oracle.encode(data)]
        n_tokens += len(want)
        n_fim += sum(1 for i in want if int(i) in fim_ids)
        g = got.get(p) or []
        if g != want:
            k = next((i for i, (a, b) in enumerate(zip(g, want)) if a != b), min(len(g), len(want)))
            ck.check(False, "%s: %s" % (family, os.path.basename(p)),
                     "first difference at token %d: got %s, want %s" % (k, g[k:k + 6],
                                                                       want[k:k + 6]))
        else:
            ck.check(True, "%s: %s" % (family, os.path.basename(p)))
        ck.check(not any(int(i) in special for i in g),
                 "%s: %s: no special token from text" % (family, os.path.basename(p)))
    if family == "qwen2":
        ck.check(n_fim > 0, "qwen2: FIM tokens were matched in text (%d)" % n_fim)
        nf = [b for n, b in HAND if n == "nfc"][0]
        ck.check(oracle.encode(nf) != Oracle(vocab, merges, lambda t: [
            p.encode("utf-8", "surrogateescape") for p in isolated(
                QWEN2, t.decode("utf-8", "surrogateescape"))])(nf),
            "qwen2: NFC changes the ids of the decomposed hand case")
    else:
        ck.check(digit_merges > 0, "starcoder2: %d digit merges exist, and are never used"
                 % digit_merges)
    print("measured: %s: %d inputs, %d tokens equal to the oracle's, vocabulary %d"
          % (family, len(paths), n_tokens, len(vocab) + len(doc["added_tokens"])))
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tok-encode", required=True)
    ap.add_argument("family", choices=["qwen2", "starcoder2"])
    args = ap.parse_args()
    ck = lib.Tally()
    tmp = tempfile.mkdtemp(prefix="cu_famtok_")
    try:
        rc = run_case(args.family, args, ck, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rc or ck.finish()


if __name__ == "__main__":
    sys.exit(main())
