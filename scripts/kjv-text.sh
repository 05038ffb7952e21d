#!/usr/bin/env bash
# Writes the King James Bible as plain text (verse labels stripped, one verse per line) to the given file, from
# Debian's public-domain bible-kjv package (installed with apt-get when missing). Usage: scripts/kjv-text.sh OUT.txt
set -euo pipefail
OUT=${1:?usage: scripts/kjv-text.sh OUT.txt}
if ! command -v bible >/dev/null; then
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq bible-kjv
fi
# `bible -f` prints "Ge1:1 In the beginning ..." (book abbreviation, chapter:verse) per verse; drop the label.
bible -f "Gen1:1-Rev22:21" | sed -E 's/^[1-3]?[A-Za-z]+[0-9]+:[0-9]+ //' > "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
echo "$OUT: $(wc -l < "$OUT") verses, $(wc -c < "$OUT") bytes"
