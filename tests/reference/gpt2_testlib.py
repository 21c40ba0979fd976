"""Shared pieces of the GPT-2 tokenizer reference tests (gpt2_parity.py,
gpt2_js_crosscheck.py): where the BPE files are, which inputs to try, running
tok_encode, and describing the first difference between two id lists so a
failure can be read without rerunning anything.
"""
import os
import random
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CORPUS = os.path.join(REPO, "tests", "fixtures", "tokenizer_corpus")
FETCH_HINT = "run scripts/fetch-gpt2-bpe.sh to fetch them (CI does)"


class Tally:
    """Counts checks and prints the closing "N passed, N failed" line."""

    def __init__(self):
        self.passed = self.failed = self.skipped = 0

    def check(self, ok, name, detail=""):
        if ok:
            self.passed += 1
            print("ok   %s" % name)
        else:
            self.failed += 1
            print("FAIL %s" % name)
            if detail:
                print("     " + detail.replace("\n", "\n     "))
        sys.stdout.flush()
        return ok

    def skip(self, name, why):
        self.skipped += 1
        print("skip %s: %s" % (name, why))

    def finish(self):
        line = "%d passed, %d failed" % (self.passed, self.failed)
        if self.skipped:
            line += ", %d skipped" % self.skipped
        print(line)
        return 1 if self.failed or not self.passed else 0


def find_bpe_dir(explicit=None):
    """The GPT-2 BPE directory: --bpe-dir, else $CU_GPT2_BPE_DIR, else
    $CU_SOURCE_DIR/third_party_data/gpt2 (the repository's, by default)."""
    if explicit:
        return explicit
    if os.environ.get("CU_GPT2_BPE_DIR"):
        return os.environ["CU_GPT2_BPE_DIR"]
    return os.path.join(os.environ.get("CU_SOURCE_DIR") or REPO, "third_party_data", "gpt2")


def missing_bpe_files(bpe_dir):
    """A message if bpe_dir lacks the GPT-2 files, else None."""
    for a, b in (("encoder.json", "vocab.bpe"), ("vocab.json", "merges.txt")):
        if os.path.isfile(os.path.join(bpe_dir, a)) and os.path.isfile(os.path.join(bpe_dir, b)):
            return None
    return ("GPT-2 BPE files not found: %s holds neither encoder.json + vocab.bpe nor "
            "vocab.json + merges.txt; %s, or point CU_GPT2_BPE_DIR at them" % (bpe_dir, FETCH_HINT))


def corpus_files():
    return sorted(os.path.join(CORPUS, f) for f in os.listdir(CORPUS)
                  if os.path.isfile(os.path.join(CORPUS, f)) and not f.startswith("."))


# Pieces random inputs are built from: every class of character, the
# contractions, whitespace of every kind, emoji parts, words, and (unless
# valid UTF-8 is asked for) bytes that are not UTF-8.
ATOMS = (list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") +
         list("!\"#$%&()*+,-./:;<=>?@[\\]^_`{|}~") + ["'"] * 6 +
         [" "] * 12 + ["  ", "\t", "\n", "\r\n", "\r", "\x0b", "\x0c", "\n\n", "    "] +
         ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'LL", "'x", "'r", "'v"] +
         ["<|endoftext|>", "the", " the", "int", "return", "0x", "self", "é", "ß", "Ω", "ж",
          "中", "文", "ア", "한", "ع", "א", "क", "ि", "्", "ก", "ั", "\u0301", "\u20dd",
          "٣", "１", "²", "½", "Ⅻ", "\u00a0", "\u2003", "\u3000", "\u2028", "\u0085",
          "\ufeff", "\x1c", "\x1f", "\x00", "\x7f", "\u200b", "\u200d", "😀", "👍", "🏽",
          "❤", "\ufe0f", "🇫", "🇷", "🧑‍💻", "\U0010ffff", "\ue000", "\ufffd", "’"])
INVALID = [b"\x80", b"\xbf", b"\xff", b"\xfe", b"\xc3", b"\xe2\x82", b"\xf0\x9f\x98",
           b"\xc0\x80", b"\xe0\x80\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xf8"]
# Characters on which JavaScript's \s and Python's disagree.
JS_DIVERGENT = ("\u0085", "\ufeff")


def fuzz_cases(seed, count, valid_only=False):
    """`count` random inputs (name, bytes), the same for the same seed."""
    rng = random.Random(seed)
    atoms = [a for a in ATOMS if not (valid_only and any(c in a for c in JS_DIVERGENT))]
    cases = []
    for k in range(count):
        out = bytearray()
        invalid_rate = 0.0 if valid_only or k % 3 == 0 else rng.choice([0.02, 0.1, 0.3])
        for _ in range(rng.randint(0, 400)):
            if rng.random() < invalid_rate:
                piece = rng.choice(INVALID)
            else:
                piece = rng.choice(atoms).encode("utf-8")
            out += piece * (rng.randint(2, 60) if rng.random() < 0.05 else 1)
        cases.append(("fuzz-%d-%03d" % (seed, k), bytes(out)))
    return cases


def long_cases():
    """Long runs: whitespace before words and at the end, words without
    spaces. Sized so the plain Python oracle stays quick."""
    rng = random.Random(7)
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return [
        ("long-spaces-then-word", b" " * 20000 + b"word"),
        ("long-spaces-at-end", b"end" + b" " * 20000),
        ("long-tabs-newlines", b"\t" * 5000 + b"\n" * 5000 + b"x" + b" \n" * 3000),
        ("long-mixed-space-kinds", (" \t\u3000\u00a0" * 2000).encode() + b"y"),
        ("long-one-letter", b"a" * 30000),
        ("long-random-word", "".join(rng.choice(letters) for _ in range(4000)).encode()),
        ("long-digits", "".join(rng.choice("0123456789") for _ in range(4000)).encode()),
        ("long-punctuation", "".join(rng.choice("!@#$%^&*()_+-=[]{};:,./<>?'\"") for _ in range(4000)).encode()),
        ("long-cjk", "".join(chr(rng.randint(0x4E00, 0x9FFF)) for _ in range(3000)).encode()),
        ("long-zwj-emoji", "👩‍👩‍👧‍👦".encode() * 800),
        ("long-invalid-bytes", bytes(rng.choice([0x80, 0xFF, 0xC3, 0xE2, 0x21, 0x27]) for _ in range(20000))),
        ("empty", b""),
        ("one-space", b" "),
        ("one-invalid-byte", b"\xff"),
        ("apostrophe-at-end", b"it'"),
    ]


def write_cases(tmp, cases):
    """Writes each (name, bytes) case to a file in tmp; returns the paths."""
    paths = []
    for name, data in cases:
        path = os.path.join(tmp, name)
        with open(path, "wb") as f:
            f.write(data)
        paths.append(path)
    return paths


def run_lines(cmd):
    """Runs cmd; returns its stdout lines grouped by "# FILE" headers."""
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        raise RuntimeError("%s exited %d: %s" % (" ".join(cmd[:4]), proc.returncode,
                                                proc.stderr.decode(errors="replace").strip()))
    groups, current = {}, None
    for line in proc.stdout.decode("utf-8", "replace").split("\n"):
        if line.startswith("# "):
            current = line[2:]
            groups[current] = []
        elif line and current is not None:
            groups[current].append(line)
    return groups


def token_bytes(encoder):
    """id -> bytes, from an oracle Encoder's vocabulary."""
    byte_of = {c: b for b, c in encoder.byte_char.items()}
    out = {}
    for tok, i in encoder.vocab.items():
        out[i] = b"".join(bytes([byte_of[c]]) if c in byte_of else c.encode() for c in tok)
    return out


def describe_id_mismatch(data, expected, got, id_bytes, width=6):
    """The first difference between two id lists, with the tokens around it
    (id and bytes) and the input bytes at that offset."""
    k = 0
    while k < len(expected) and k < len(got) and expected[k] == got[k]:
        k += 1
    offset = sum(len(id_bytes.get(i, b"")) for i in expected[:k])

    def show(ids):
        return " ".join("%s%s" % (i, repr(id_bytes.get(i, b"?"))[1:]) for i in ids)

    lo = max(0, k - width)
    return ("%d ids expected, %d produced; first difference at id #%d (input byte %d)\n"
            "input there:  %r\n"
            "expected:     ... %s\n"
            "produced:     ... %s" % (
                len(expected), len(got), k, offset, data[max(0, offset - 30):offset + 30],
                show(expected[lo:k + width]), show(got[lo:k + width])))


def describe_offset_mismatch(data, expected, got):
    """The first pre-token whose end differs, with its neighbours."""
    k = 0
    while k < len(expected) and k < len(got) and expected[k] == got[k]:
        k += 1
    start = expected[k - 1] if k else 0

    def pieces(ends):
        out, prev = [], max(0, start)
        for e in ends[k:k + 4]:
            out.append(data[prev:e])
            prev = e
        return out

    return ("%d pre-tokens expected, %d produced; first difference at pre-token #%d (byte %d)\n"
            "expected pieces: %r\nproduced pieces: %r" % (
                len(expected), len(got), k, start, pieces(expected), pieces(got)))
