#!/usr/bin/env python3
"""Reference GPT-2 byte-level BPE encoder: the oracle the C tokenizer is
checked against (tests/reference/gpt2_parity.py).

Written from the published algorithm of GPT-2's encoder, kept deliberately
plain so it can be read and trusted:
  1. the text is the input bytes decoded as UTF-8 with 'surrogateescape', so
     each byte of an invalid sequence becomes one lone surrogate U+DC80..U+DCFF
     (a character that is neither letter, number nor whitespace);
  2. the `regex` module splits it with GPT-2's pattern (PRETOKEN_PATTERN);
  3. each piece is turned back into its original bytes, each byte is mapped
     to a printable character (bytes_to_unicode), and the piece's characters
     are merged pairwise, always the pair of lowest merge rank first, every
     occurrence of that pair from left to right, until no ranked pair is left;
  4. each resulting symbol is looked up in the vocabulary.

Usable as a module (load(), Encoder.encode()) or from the command line:
    gpt2_bpe_ref.py BPE_DIR FILE [--pretok]
prints the ids of FILE one a line, or with --pretok the end offset (in bytes)
of each pre-token.
"""
import json
import os
import sys

import regex

PRETOKEN_PATTERN = regex.compile(
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")


def bytes_to_unicode():
    """Byte -> printable character. Bytes that print as themselves keep their
    own code point; the others (controls, space, DEL, NBSP, soft hyphen...) are
    moved, in byte order, to U+0100 onwards, so no token contains whitespace."""
    keep = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) +
            list(range(ord("®"), ord("ÿ") + 1)))
    table = {}
    moved = 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + moved)
            moved += 1
    return table


def split_pretokens(data: bytes):
    """The pre-tokens of `data`, each as its original bytes."""
    text = data.decode("utf-8", "surrogateescape")
    return [piece.encode("utf-8", "surrogateescape")
            for piece in PRETOKEN_PATTERN.findall(text)]


class Encoder:
    def __init__(self, vocab, merges):
        self.vocab = vocab                      # token string -> id
        self.ranks = {}                         # (left, right) -> rank
        for rank, pair in enumerate(merges):
            self.ranks[pair] = rank             # a repeated pair keeps its last rank
        self.byte_char = bytes_to_unicode()
        self.cache = {}

    def merge(self, symbols):
        """Lowest-rank-first pair merging of a list of symbols."""
        while len(symbols) > 1:
            best = None
            for pair in zip(symbols, symbols[1:]):
                rank = self.ranks.get(pair)
                if rank is not None and (best is None or rank < best[0]):
                    best = (rank, pair)
            if best is None:
                break
            left, right = best[1]
            merged = []
            i = 0
            while i < len(symbols):
                if i + 1 < len(symbols) and symbols[i] == left and symbols[i + 1] == right:
                    merged.append(left + right)
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            symbols = merged
        return symbols

    def encode_piece(self, piece: bytes):
        ids = self.cache.get(piece)
        if ids is None:
            symbols = self.merge([self.byte_char[b] for b in piece])
            ids = [self.vocab[s] for s in symbols]
            self.cache[piece] = ids
        return ids

    def encode(self, data: bytes):
        ids = []
        for piece in split_pretokens(data):
            ids.extend(self.encode_piece(piece))
        return ids


def read_merges(text):
    """The merge pairs of a vocab.bpe / merges.txt text, in rank order."""
    merges = []
    for number, line in enumerate(text.split("\n"), 1):
        if number == 1 and line.startswith("#version"):
            continue
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2:
            raise ValueError("merges line %d: expected two tokens, got %r" % (number, line))
        merges.append((fields[0], fields[1]))
    return merges


def load(bpe_dir):
    """An Encoder from a directory holding encoder.json + vocab.bpe (or
    vocab.json + merges.txt)."""
    for vocab_name, merges_name in (("encoder.json", "vocab.bpe"), ("vocab.json", "merges.txt")):
        vocab_path = os.path.join(bpe_dir, vocab_name)
        merges_path = os.path.join(bpe_dir, merges_name)
        if os.path.exists(vocab_path) and os.path.exists(merges_path):
            with open(vocab_path, encoding="utf-8") as f:
                vocab = json.load(f)
            with open(merges_path, encoding="utf-8") as f:
                merges = read_merges(f.read())
            return Encoder(vocab, merges)
    raise FileNotFoundError("%s holds neither encoder.json + vocab.bpe nor vocab.json + merges.txt"
                            % bpe_dir)


def main(argv):
    if len(argv) < 3:
        sys.stderr.write(__doc__)
        return 2
    with open(argv[2], "rb") as f:
        data = f.read()
    if "--pretok" in argv[3:]:
        end = 0
        for piece in split_pretokens(data):
            end += len(piece)
            print(end)
    else:
        for i in load(argv[1]).encode(data):
            print(i)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
