#!/bin/sh
# `make bench`, signing section: sign and verify times and the load time
# with verification for the TinyLlama-1.1B shape image (q4_g32), from the
# page cache and from disk (the file's pages dropped with
# POSIX_FADV_DONTNEED first). Usage: bench_sig.sh NIBBLE WORKDIR
set -eu
NB=$1
W=$2/sig
rm -rf "$W" && mkdir -p "$W" && chmod 0755 "$W"
img=$W/tinyllama-q4.nib
drop() { python3 -c 'import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)' "$1"; }
load_ms() { "$@" -p x -n 1 -v 2>&1 | sed -n 's/^load: \(.*\) ms$/\1/p'; }

"$NB" bench --synthetic tinyllama --type q4_g32 --write-only --out "$img" > /dev/null
cp "$img" "$W/unsigned.nib"
mb=$(($(stat -c %s "$img") / 1000000))
echo "== signing: TinyLlama-1.1B shape, q4_g32, $mb MB, ECDSA P-256 over SHA-256 (mbedTLS, software)"
"$NB" keygen -o "$W/bench.pem" > /dev/null
mkdir -m 0755 "$W/keys" && cp "$W/bench.pub.pem" "$W/keys/"
export NIBBLE_KEYS_DIR="$W/keys" NIBBLE_VERIFY_RECORDS="$W/records" NIBBLE_REQUIRE_SIGNATURE=1
printf 'sign:                   '
"$NB" sign -k "$W/bench.pem" "$img" | sed 's/.*: signed by key [0-9a-f]*, //'
for t in $(nproc) 1; do
	printf 'verify, %d thread%s, cached: ' "$t" "$([ "$t" = 1 ] && echo ' ' || echo s)"
	"$NB" verify -t "$t" "$img" | sed -n 's/.*verified in //p'
done
drop "$img"
t0=$(date +%s.%N)
cat "$img" > /dev/null
t1=$(date +%s.%N)
echo "read from disk (cat):   $(python3 -c "import sys; d = float(sys.argv[2]) - float(sys.argv[1]); print('%.3f s (%.0f MB/s)' % (d, $mb / d))" "$t0" "$t1")"
drop "$img"
printf 'verify, %d threads, disk:   ' "$(nproc)"
"$NB" verify "$img" | sed -n 's/.*verified in //p'
drop "$img"
first_disk=$(load_ms "$NB" run -m "$img")
rm -rf "$W/records"
first=$(load_ms "$NB" run -m "$img")
again=$(load_ms "$NB" run -m "$img")
base=$(NIBBLE_REQUIRE_SIGNATURE= load_ms env NIBBLE_LOG=error "$NB" run -m "$W/unsigned.nib")
echo "load (open, verify, tokenizer, bind), nibble run -v:"
echo "  unsigned image, no verification:            $base ms"
echo "  signed, first load of a boot, from disk:    $first_disk ms (whole file hashed, record written)"
echo "  signed, first load of a boot, page cache:   $first ms"
echo "  signed, later loads (this boot's record):   $again ms"
rm -rf "$W"
