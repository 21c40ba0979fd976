#!/usr/bin/env python3
"""Hugging Face tokenizer.json support against independent references.

gpt2    A tokenizer.json built from GPT-2's files (ByteLevel pre-tokenizer,
        added_tokens) encodes every input exactly as the GPT-2 files do, and
        has the same hash; so do Split variants: GPT-2's pattern as
        tokenizer.json spells it (the hand-written fast path), an equivalent
        but differently written pattern, which goes through PCRE2 (so the
        regex engine is checked against the hand-written pre-tokeniser on
        the whole corpus, invalid UTF-8 included), and a whole-text Split
        followed by ByteLevel's own GPT-2 split (use_regex: true).
llama3  A small Llama-3-style tokenizer.json made here (byte vocabulary,
        merges learned from the corpus by the plain BPE algorithm, whole-word
        tokens no merge reaches, ignore_merges, Llama-3's Split pattern,
        special added tokens) encodes the corpus, random inputs and
        hand-picked cases (numbers, CRLF, unicode, invalid UTF-8, special
        token text) as this script's own oracle does: Python's `regex`
        module splitting the surrogateescape-decoded text (Split
        "Isolated": matches and the text between them), then
        ignore_merges, then lowest-rank-first merging (gpt2_bpe_ref.py).
added   The gpt2 tokenizer.json plus non-special added tokens (FIM tokens, a
        shorter one that is a prefix of them, a single_word, an lstrip and an
        rstrip one) and a special one: hand cases, the corpus and fuzz cases
        with the contents inserted at random places encode as AddedOracle
        (Hugging Face's AddedVocabulary: leftmost-longest matches over the
        raw text, the flags, GPT-2 BPE between matches) does; the special
        token is never produced; the hash differs from GPT-2's.

Usage: hf_tokenizer_json.py --tok-encode PATH [--bpe-dir DIR] gpt2|llama3|added
"""
import argparse
import collections
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import regex  # noqa: E402

import gpt2_bpe_ref as ref  # noqa: E402
import gpt2_testlib as lib  # noqa: E402

LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                  r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
GPT2_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
# The same language, written differently: not GPT-2's string, so PCRE2 runs it.
GPT2_REWRITTEN = (r"(?:'s|'t|'re|'ve|'m|'ll|'d)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|"
                  r"\s+(?!\S)|\s+")


def tok_hash(tok_encode, d):
    p = subprocess.run([tok_encode, "--dir", d, "--hash"], capture_output=True, text=True)
    return p.stdout.strip() if p.returncode == 0 else "error: " + p.stderr.strip()


def encode_all(tok_encode, d, paths):
    return lib.run_lines([tok_encode, "--dir", d] + paths)


def gpt2_tokenizer_json(bpe_dir):
    """(tokenizer.json doc made from GPT-2's files, vocab, merges)."""
    with open(os.path.join(bpe_dir, "encoder.json"), encoding="utf-8") as f:
        vocab = json.load(f)
    with open(os.path.join(bpe_dir, "vocab.bpe"), encoding="utf-8") as f:
        merges = ref.read_merges(f.read())
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                  "use_regex": True}
    base = {"version": "1.0", "truncation": None, "padding": None,
            "added_tokens": [{"id": vocab["<|endoftext|>"], "content": "<|endoftext|>",
                              "single_word": False, "lstrip": False, "rstrip": False,
                              "normalized": True, "special": True}],
            "normalizer": None, "pre_tokenizer": byte_level, "post_processor": byte_level,
            "decoder": byte_level,
            "model": {"type": "BPE", "dropout": None, "unk_token": None,
                      "continuing_subword_prefix": "", "end_of_word_suffix": "",
                      "fuse_unk": False, "byte_fallback": False, "vocab": vocab,
                      "merges": [a + " " + b for a, b in merges]}}
    return base, vocab, merges


def gpt2_case(args, ck, tmp):
    bpe_dir = lib.find_bpe_dir(args.bpe_dir)
    missing = lib.missing_bpe_files(bpe_dir)
    if missing:
        print(missing)
        return 1
    base, vocab, merges = gpt2_tokenizer_json(bpe_dir)
    byte_level = base["pre_tokenizer"]
    paths = lib.write_cases(tmp, lib.long_cases() + lib.fuzz_cases(11, 60)) + lib.corpus_files()
    want = encode_all(args.tok_encode, bpe_dir, paths)
    want_hash = tok_hash(args.tok_encode, bpe_dir)
    variants = [("bytelevel", base, True)]
    for name, pattern, same_hash, then_gpt2 in (
            ("split-gpt2", GPT2_PATTERN, True, False),
            ("split-rewritten", GPT2_REWRITTEN, False, False),
            # one piece for the whole text, then ByteLevel's own GPT-2 split
            ("split-all-then-bytelevel-regex", r"(?s:.+)", False, True)):
        v = json.loads(json.dumps(base))
        v["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated",
             "invert": False},
            dict(byte_level, use_regex=then_gpt2)]}
        variants.append((name, v, same_hash))
    pairs = json.loads(json.dumps(base))
    pairs["model"]["merges"] = [[a, b] for a, b in merges]
    variants.append(("merge-pairs", pairs, True))
    for name, doc, same_hash in variants:
        d = os.path.join(tmp, name)
        os.makedirs(d)
        with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
            json.dump(doc, f, ensure_ascii=False)
        got = encode_all(args.tok_encode, d, paths)
        bad = [p for p in paths if got.get(p) != want.get(p)]
        ck.check(not bad, "%s: %d inputs encode as the GPT-2 files do" % (name, len(paths)),
                 "first difference in %s" % (bad[0] if bad else ""))
        h = tok_hash(args.tok_encode, d)
        if same_hash:
            ck.check(h == want_hash, "%s: same tokenizer hash" % name, "%s vs %s" % (h, want_hash))
        else:
            ck.check(h != want_hash and not h.startswith("error"),
                     "%s: a hash of its own (the pattern is part of it)" % name, h)
    total = sum(len(want[p]) for p in paths)
    print("measured: %d inputs, %d tokens compared per variant" % (len(paths), total))
    return 0


# ---------------------------------------------------------------- added tokens

WORD_CHAR = regex.compile(r"[\p{L}\p{N}_]")
SPACE_CHAR = regex.compile(r"\s")


class AddedOracle:
    """Hugging Face's AddedVocabulary for non-special tokens, without a
    normalizer, in front of `inner` (bytes -> ids): leftmost-longest matches
    of the contents over the surrogateescape-decoded text, each search
    resuming at the end of the last match (taken, or refused by
    single_word); lstrip / rstrip widen a taken match over whitespace; the
    text between matches goes to `inner` alone."""

    def __init__(self, inner, added):
        self.inner = inner
        self.tokens = [a for a in added if not a.get("special")]

    def find(self, text, at):
        best = None
        for a in self.tokens:
            i = text.find(a["content"], at)
            if i >= 0 and (best is None or i < best[0] or
                           (i == best[0] and len(a["content"]) > len(best[1]["content"]))):
                best = (i, a)
        return best

    def encode(self, data):
        text = data.decode("utf-8", "surrogateescape")
        ids, done, at = [], 0, 0

        def gap(a, b):
            ids.extend(self.inner(text[a:b].encode("utf-8", "surrogateescape")))

        while True:
            m = self.find(text, at)
            if m is None:
                break
            start, a = m
            stop = start + len(a["content"])
            at = stop
            if start < done:
                continue
            if a.get("single_word") and (
                    (start > 0 and WORD_CHAR.match(text[start - 1])) or
                    (stop < len(text) and WORD_CHAR.match(text[stop]))):
                continue
            if a.get("lstrip"):
                while start > done and SPACE_CHAR.match(text[start - 1]):
                    start -= 1
            if a.get("rstrip"):
                while stop < len(text) and SPACE_CHAR.match(text[stop]):
                    stop += 1
            if start > done:
                gap(done, start)
            ids.append(a["id"])
            done = stop
        if done < len(text):
            gap(done, len(text))
        return ids


def added_tokens_for(vocab):
    n = len(vocab)

    def tok(k, content, special=False, **flags):
        d = {"id": n + k, "content": content, "single_word": False, "lstrip": False,
             "rstrip": False, "normalized": False, "special": special}
        d.update(flags)
        return d
    return [tok(0, "<|fim_prefix|>"), tok(1, "<|fim_middle|>"), tok(2, "<|fim_suffix|>"),
            tok(3, "<|fim"),  # a prefix of the three above: longest must win
            tok(4, "fimword", single_word=True), tok(5, "<L>", lstrip=True),
            tok(6, "<R>", rstrip=True), tok(7, "<|im_start|>", special=True),
            # already a vocabulary token: added with its own id
            dict(tok(8, "return"), id=vocab["return"])]


def insert_added(seed, cases, contents):
    """Each case with added contents (and spaces / word characters around
    them) inserted at random places."""
    rng = random.Random(seed)
    out = []
    for name, data in cases:
        data = bytearray(data)
        for _ in range(rng.randint(1, 12)):
            at = rng.randint(0, len(data))
            piece = (rng.choice(["", " ", "  ", "\t", "\n", "x", "_", "é", "\u3000"]) +
                     rng.choice(contents) +
                     rng.choice(["", " ", "  \n", "x", "1", ".", "\u00a0"]))
            data[at:at] = piece.encode()
        out.append((name + "-added", bytes(data)))
    return out


def added_case(args, ck, tmp):
    bpe_dir = lib.find_bpe_dir(args.bpe_dir)
    missing = lib.missing_bpe_files(bpe_dir)
    if missing:
        print(missing)
        return 1
    doc, vocab, merges = gpt2_tokenizer_json(bpe_dir)
    added = added_tokens_for(vocab)
    doc["added_tokens"] += added
    d = os.path.join(tmp, "added")
    os.makedirs(d)
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False)
    oracle = AddedOracle(ref.Encoder(vocab, merges).encode, doc["added_tokens"])
    contents = [a["content"] for a in added]
    hand = [
        ("fim", b"<|fim_prefix|>def f(x):\n    <|fim_suffix|>\n    return y<|fim_middle|>"),
        ("longest", b"<|fim<|fim_prefix|><|fim_mid <|fim|>"),
        ("single_word", b"fimword sfimwordfish fimword_x _fimword fimword. (fimword) 1fimword fimword1 "
                        b"\xc3\xa9fimword fimword"),
        ("lstrip", b"a  \t<L>b <L> <L>\n\n<L>"),
        ("rstrip", b"<R>  \n x<R>\ty <R><R> end<R>"),
        ("strip_meet", b"x<R>   <L>y"),
        ("special_text", b"<|im_start|>user <|endoftext|><|im_start|>"),
        ("invalid_utf8", b"\xff<|fim_prefix|>\xe2\x82fimword\x80 <L>\xc3 returned"),
    ]
    cases = (hand + insert_added(5, lib.fuzz_cases(31, 40), contents) +
             insert_added(6, [("long-random", lib.long_cases()[5][1])], contents))
    for p in lib.corpus_files():
        with open(p, "rb") as f:
            cases += insert_added(7, [(os.path.basename(p), f.read())], contents)
    paths = lib.write_cases(tmp, cases)
    got = encode_all(args.tok_encode, d, paths)
    ids_of = {a["content"]: a["id"] for a in added}
    special_id = ids_of["<|im_start|>"]
    added_ids = set(ids_of.values())
    n_tokens, n_equal, n_added = 0, 0, collections.Counter()
    for p in paths:
        with open(p, "rb") as f:
            want = [str(i) for i in oracle.encode(f.read())]
        g = got.get(p) or []
        name = os.path.basename(p)
        n_tokens += len(want)
        for i in want:
            if int(i) in added_ids:
                n_added[int(i)] += 1
        n_equal += g == want
        if g != want:
            k = next((i for i, (a, b) in enumerate(zip(g, want)) if a != b), min(len(g), len(want)))
            ck.check(False, "added: %s" % name,
                     "first difference at token %d: got %s, want %s" % (k, g[k:k + 6], want[k:k + 6]))
        ck.check(str(special_id) not in g, "added: %s: the special token is never matched" % name)
    ck.check(n_equal == len(paths), "added: %d of %d inputs equal to AddedOracle"
             % (n_equal, len(paths)))
    hand_want = {
        "longest": [ids_of["<|fim"], ids_of["<|fim_prefix|>"], ids_of["<|fim"]],
        "single_word": [ids_of["fimword"]],
        "lstrip": [ids_of["<L>"]],
        "rstrip": [ids_of["<R>"]],
    }
    for name, must in hand_want.items():
        g = [int(i) for i in got.get(os.path.join(tmp, name)) or []]
        ck.check(all(i in g for i in must), "added: %s produces %s" % (name, must), str(g))
    sw = [int(i) for i in got.get(os.path.join(tmp, "single_word")) or []]
    ck.check(sw.count(ids_of["fimword"]) == 4, "added: single_word matches only the 4 lone 'fimword'",
             str(sw.count(ids_of["fimword"])))
    for a in added:
        if not a["special"]:
            ck.check(n_added[a["id"]] > 0, "added: %r occurs (%d times)"
                     % (a["content"], n_added[a["id"]]))
    h, gpt2_h = tok_hash(args.tok_encode, d), tok_hash(args.tok_encode, bpe_dir)
    ck.check(h != gpt2_h and not h.startswith("error"), "added: a hash of its own", h)
    print("measured: %d inputs, %d tokens equal to AddedOracle, added ids %s"
          % (len(paths), n_tokens, dict(sorted(n_added.items()))))
    return 0


# ---------------------------------------------------------------- Llama-3 style

def train_merges(texts, n_merges, byte_char):
    """Plain BPE training over the pre-tokens of texts: the most frequent
    adjacent pair (ties: the smallest pair) is merged, n_merges times."""
    words = collections.Counter()
    for t in texts:
        for piece in split_isolated(t):
            words[tuple(byte_char[b] for b in piece)] += 1
    merges = []
    for _ in range(n_merges):
        pairs = collections.Counter()
        for w, c in words.items():
            for p in zip(w, w[1:]):
                pairs[p] += c
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        merged = collections.Counter()
        for w, c in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    out.append(w[i] + w[i + 1])
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            merged[tuple(out)] += c
        words = merged
    return merges


SPLIT = regex.compile(LLAMA3_PATTERN)


def split_isolated(data: bytes):
    """Split "Isolated": every match and every stretch between matches."""
    text = data.decode("utf-8", "surrogateescape")
    out, at = [], 0
    for m in SPLIT.finditer(text):
        if m.start() == m.end():
            continue
        if m.start() > at:
            out.append(text[at:m.start()])
        out.append(m.group())
        at = m.end()
    if at < len(text):
        out.append(text[at:])
    return [p.encode("utf-8", "surrogateescape") for p in out]


class Llama3Oracle(ref.Encoder):
    def encode_piece(self, piece):
        word = "".join(self.byte_char[b] for b in piece)
        if word in self.model_vocab:           # ignore_merges
            return [self.model_vocab[word]]
        return super().encode_piece(piece)

    def encode(self, data):
        ids = []
        for piece in split_isolated(data):
            ids.extend(self.encode_piece(piece))
        return ids


LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"]


def llama3_tokenizer(corpus, n_merges=400):
    """A Llama-3-style tokenizer.json made from corpus (a list of bytes):
    the 256 byte tokens, n_merges merges learned from it, whole-word tokens
    no merge makes, and the special tokens LLAMA3_SPECIALS after them.
    Returns (doc, oracle); len(oracle.model_vocab) + len(LLAMA3_SPECIALS) is
    the vocabulary size, doc["added_tokens"] the special ids."""
    byte_char = ref.bytes_to_unicode()
    merges = train_merges(corpus, n_merges, byte_char)
    vocab = {}
    for b in range(256):
        vocab[byte_char[b]] = len(vocab)
    for a, b in merges:
        if a + b not in vocab:
            vocab[a + b] = len(vocab)
    # whole words no merge makes: only ignore_merges produces them
    for w in ("Ġhello", "Ġworld", "12", "ĊĊĠĠĠ"):
        vocab.setdefault(w, len(vocab))
    added = [{"id": len(vocab) + k, "content": s, "single_word": False, "lstrip": False,
              "rstrip": False, "normalized": False, "special": True}
             for k, s in enumerate(LLAMA3_SPECIALS)]
    doc = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
           "normalizer": None,
           "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
               {"type": "Split", "pattern": {"Regex": LLAMA3_PATTERN}, "behavior": "Isolated",
                "invert": False},
               {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                "use_regex": False}]},
           "post_processor": None, "decoder": {"type": "ByteLevel"},
           "model": {"type": "BPE", "dropout": None, "unk_token": None,
                     "continuing_subword_prefix": None, "end_of_word_suffix": None,
                     "fuse_unk": False, "byte_fallback": False, "ignore_merges": True,
                     "vocab": vocab, "merges": [[a, b] for a, b in merges]}}
    oracle = Llama3Oracle(vocab, merges)
    oracle.model_vocab = vocab
    return doc, oracle


def llama3_case(args, ck, tmp):
    corpus = []
    for p in lib.corpus_files():
        with open(p, "rb") as f:
            corpus.append(f.read())
    doc, oracle = llama3_tokenizer(corpus)
    vocab, added = oracle.model_vocab, doc["added_tokens"]
    merges = doc["model"]["merges"]
    d = os.path.join(tmp, "llama3")
    os.makedirs(d)
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False)
    hand = [
        ("numbers", b"x = 1234567 + 12 - 3.14159e10; 0xFF 2024-11-24 1,000,000 \xd9\xa3\xd9\xa4"),
        ("crlf", b"line one\r\nline two\r\n\r\n  indented\r\n\tTab\r\r\n"),
        ("unicode", "Ünïcödé façade naïve 中文字符 日本語 한국어 emoji 😀👍🏽 "
                    "\u00a0nbsp \u2003em \u3000ideo ½ ² Ⅻ".encode()),
        ("invalid_utf8", b"ok \xff\xfe bytes \xc3( \xe2\x82 end \xf0\x9f\x98 \x80x"),
        ("contractions", b"I'm you're he'll she'd it's WE'RE They'VE don't"),
        ("whole_words", b" hello world 12 hello\n\n   world"),
        ("special_text", b"<|begin_of_text|>text<|end_of_text|> <|eot_id|>"),
    ]
    paths = (lib.write_cases(tmp, hand + lib.long_cases() + lib.fuzz_cases(23, 80)) +
             lib.corpus_files())
    got = encode_all(args.tok_encode, d, paths)
    special_ids = {a["id"] for a in added}
    n_tokens, n_whole = 0, 0
    whole_ids = {vocab[w] for w in ("Ġhello", "Ġworld", "12")}
    for p in paths:
        with open(p, "rb") as f:
            data = f.read()
        want = [str(i) for i in oracle.encode(data)]
        n_tokens += len(want)
        n_whole += sum(1 for i in want if int(i) in whole_ids)
        if got.get(p) != want:
            g = got.get(p) or []
            k = next((i for i, (a, b) in enumerate(zip(g, want)) if a != b), min(len(g), len(want)))
            ck.check(False, "llama3: %s" % os.path.basename(p),
                     "first difference at token %d: got %s, want %s" % (k, g[k:k + 6], want[k:k + 6]))
        else:
            ck.check(True, "llama3: %s" % os.path.basename(p))
        ck.check(not any(int(i) in special_ids for i in (got.get(p) or [])),
                 "llama3: %s: no special token from text" % os.path.basename(p))
    ck.check(n_whole > 0, "ignore_merges was exercised (%d whole-word tokens)" % n_whole)
    print("measured: %d inputs, %d tokens equal to the oracle's, %d merges, vocabulary %d"
          % (len(paths), n_tokens, len(merges), len(vocab) + len(added)))
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tok-encode", required=True)
    ap.add_argument("--bpe-dir")
    ap.add_argument("case", choices=["gpt2", "llama3", "added"])
    args = ap.parse_args()
    ck = lib.Tally()
    tmp = tempfile.mkdtemp(prefix="cu_hftok_")
    try:
        rc = {"gpt2": gpt2_case, "llama3": llama3_case, "added": added_case}[args.case](
            args, ck, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rc or ck.finish()


if __name__ == "__main__":
    sys.exit(main())
