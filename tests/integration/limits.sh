#!/bin/sh
# What an image may claim and what `run` maps for it: hyper-parameters
# bounded to what real models have, the default context bounded (like
# serve's) and fitted to the memory, an impossible --ctx refused by name.
# Needs build/t-x86_64/nibble (tests/run.sh builds it).
set -u
. tests/lib.sh
NB=${NIBBLE:-build/t-x86_64/nibble}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$NB" convert models/stories260K/stories260K.bin -o "$tmp/l.nib" 2> /dev/null
# Signed by a key trusted here, so that a development build does not warn
# of an unsigned image on top of the one line a usage error is.
mkdir -m 0755 "$tmp/keys"
"$NB" keygen -o "$tmp/keys/test.pem" > /dev/null
export NIBBLE_KEYS_DIR="$tmp/keys" NIBBLE_VERIFY_RECORDS=
cp "$tmp/l.nib" "$tmp/signed.nib"
"$NB" sign -k "$tmp/keys/test.pem" "$tmp/signed.nib" > /dev/null

# poke FILE OFFSET PRINTF-FORMAT: overwrite bytes of FILE in place.
poke() {
	printf "$3" | dd of="$1" bs=1 seek="$2" conv=notrunc 2> /dev/null
}
# The hparams section (the first in the table, as the writer lays it out);
# seq_len is its u32 at 32.
hp=$(od -A n -t u8 -j 72 -N 8 "$tmp/l.nib" | tr -d ' ')
kind=$(od -A n -t u4 -j 64 -N 4 "$tmp/l.nib" | tr -d ' ')
check "the first section is hparams" test "$kind" = 1

cp "$tmp/l.nib" "$tmp/flip.nib"
poke "$tmp/flip.nib" $((hp + 34)) '\377' # 512 -> 16712192
check_fails "a flipped byte of seq_len fails inspect --check" 1 "seq_len = 16712192" \
	"$NB" inspect --check "$tmp/flip.nib"
check_fails "and run, before mapping anything" 1 "seq_len = 16712192" \
	"$NB" run -m "$tmp/flip.nib" -p Once -n 2

cp "$tmp/l.nib" "$tmp/long.nib"
poke "$tmp/long.nib" $((hp + 32)) '\000\000\002\000' # a Llama 3.2 context, 131072
check_output "a long-context image still passes inspect --check" "golden vector reproduced" \
	"$NB" inspect --check "$tmp/long.nib"
check_output "run's default context is 2048, said on stderr, and so is its KV cache" \
	"context 2048 positions a sequence \(the default at most; the model takes --ctx up to 131072\).*KV cache 2560 KiB" \
	sh -c "\"$NB\" run -m \"$tmp/long.nib\" -p Once -n 4 -v 2>&1 | tr '\n' ' '"
check_output "--ctx sets it" "KV cache 5120 KiB" \
	"$NB" run -m "$tmp/long.nib" -p Once -n 4 -v --ctx 4096
check_usage "a --ctx above the model's context is a usage error naming --ctx" \
	"run: --ctx 600: this model's context is at most 512 positions \(see nibble run --help\)" \
	"$NB" run -m "$tmp/signed.nib" -p Once -n 4 --ctx 600
# 131072 positions take 168 MB of KV cache: more than a 100 MB address space.
check_fails "a --ctx whose KV cache does not fit the memory is an error naming --ctx" 1 \
	"--ctx 131072: 1 KV cache of 167\.8 MB does not fit the [0-9.]+ MB of memory available" \
	sh -c "ulimit -v 100000 && exec \"$NB\" run -m \"$tmp/long.nib\" -p Once -n 4 --ctx 131072"
check_output "while the default context runs in it" "^Once" \
	sh -c "ulimit -v 100000 && exec \"$NB\" run -m \"$tmp/long.nib\" -p Once -n 4 --temp 0"
