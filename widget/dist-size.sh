#!/bin/sh
# Prints the size of what ships in dist/ (raw, gzip -9, brotli -q 11) and the totals.
#   cargo xtask widget && sh widget/dist-size.sh [dist-dir]
# brotli comes from the `brotli` command, or python3's `brotli` module; else it is left out.
set -eu
DIST="${1:-$(dirname "$0")/../dist}"
br() {
  if command -v brotli >/dev/null 2>&1; then brotli -c -q 11 "$1" | wc -c
  elif python3 -c 'import brotli' 2>/dev/null; then
    python3 -c 'import sys, brotli; print(len(brotli.compress(open(sys.argv[1], "rb").read(), quality=11)))' "$1"
  else echo "-"; fi
}
printf '%-58s %9s %9s %9s\n' file raw gzip brotli
total_raw=0; total_gz=0; total_br=0
for f in $(cd "$DIST" && find . -type f \( -name '*.wasm' -o -name '*.js' -o -name '*.css' -o -name '*.html' \) | sort); do
  p="$DIST/$f"
  raw=$(wc -c < "$p"); gz=$(gzip -9 -c "$p" | wc -c); b=$(br "$p")
  printf '%-58s %9s %9s %9s\n' "${f#./}" "$raw" "$gz" "$b"
  total_raw=$((total_raw + raw)); total_gz=$((total_gz + gz))
  [ "$b" = "-" ] || total_br=$((total_br + b))
done
printf '%-58s %9s %9s %9s\n' TOTAL "$total_raw" "$total_gz" "$total_br"
