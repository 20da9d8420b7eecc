#!/bin/sh
# Signed images from the command line: keygen, sign, verify; a byte flipped
# in each region is refused with an error naming what changed; truncated
# images, untrusted keys; the runtime's policy on load (development build:
# unsigned allowed, loudly; NIBBLE_REQUIRE_SIGNATURE=1 and board builds:
# refused); keys from a root-owned directory or built into the binary.
# Needs build/t-x86_64/nibble (tests/run.sh builds it).
set -u
. tests/lib.sh
NB=${NIBBLE:-build/t-x86_64/nibble}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export NIBBLE_VERIFY_RECORDS="$tmp/records"

# flip FILE OFFSET: xor one byte with 1, in place.
flip() {
	python3 -c "import sys
f = open(sys.argv[1], 'r+b'); o = int(sys.argv[2]); f.seek(o); b = f.read(1)
f.seek(o); f.write(bytes([b[0] ^ 1]))" "$1" "$2"
}
# section_offset FILE KIND: offset of a section, from inspect.
section_offset() {
	NIBBLE_LOG=error "$NB" inspect "$1" | awk -v k="$2" '$1 == "section" && $2 == k { print $4 }'
}

"$NB" convert models/stories260K/stories260K.bin -o "$tmp/m.nib" 2>/dev/null
cp "$tmp/m.nib" "$tmp/unsigned.nib"
check_output "keygen writes a key pair" "public key: +$tmp/k.pub.pem" "$NB" keygen -o "$tmp/k.pem"
check_output "the private key is mode 0600, the public 0644" "^600 644 \$" \
	sh -c "stat -c %a '$tmp/k.pem' '$tmp/k.pub.pem' | tr '\n' ' '"
"$NB" keygen -o "$tmp/other.pem" > /dev/null
check_fails "keygen never replaces a key by accident" 1 "exists \(not replaced" "$NB" keygen -o "$tmp/k.pem"
check_output "sign fills the trailer" "signed by key [0-9a-f]{16}" "$NB" sign -k "$tmp/k.pem" "$tmp/m.nib"
check_output "verify with the public key" "good signature by key [0-9a-f]{16} \(k.pub.pem\)" \
	"$NB" verify -p "$tmp/k.pub.pem" "$tmp/m.nib"
check "signing changed nothing but the trailer" cmp -n $(($(stat -c %s "$tmp/m.nib") - 4096)) \
	"$tmp/m.nib" "$tmp/unsigned.nib"
check_fails "an unsigned image does not verify" 1 "the image is not signed" \
	"$NB" verify -p "$tmp/k.pub.pem" "$tmp/unsigned.nib"
check_fails "another key's signature does not verify" 1 "signed by key [0-9a-f]+, which is not trusted" \
	"$NB" verify -p "$tmp/other.pub.pem" "$tmp/m.nib"
check_fails "usage: sign without a key" 2 "sign: -k KEY.pem is required" "$NB" sign "$tmp/m.nib"
check_fails "usage: unknown option" 2 "verify: unknown option '--bogus'" "$NB" verify --bogus x

# One byte flipped in each region: refused, the error says what changed.
size=$(stat -c %s "$tmp/m.nib")
tr=$((size - 4096))
for spec in "header:24:header, manifest" "hparams:$(($(section_offset "$tmp/unsigned.nib" hparams) + 8)):header, manifest" \
	"manifest:$(($(section_offset "$tmp/unsigned.nib" meta) + 12)):header, manifest" \
	"tokenizer:$(($(section_offset "$tmp/unsigned.nib" tokenizer) + 100)):header, manifest" \
	"tensor table:$(($(section_offset "$tmp/unsigned.nib" tensors) + 3)):header, manifest" \
	"golden vector:$(($(section_offset "$tmp/unsigned.nib" golden) + 8)):header, manifest" \
	"tensor data:$(($(section_offset "$tmp/unsigned.nib" data) + 5000)):tensor data was altered" \
	"signed statement:$((tr + 100)):bad signature" "signature:$((tr + 160)):bad signature" \
	"trailer padding:$((tr + 3000)):stray bytes after the signature" \
	"key id:$((tr + 50)):not trusted"; do
	name=${spec%%:*} rest=${spec#*:}
	off=${rest%%:*} msg=${rest#*:}
	cp "$tmp/m.nib" "$tmp/t.nib"
	flip "$tmp/t.nib" "$off"
	check_fails "a byte flipped in the $name is refused by verify" 1 "$msg" \
		"$NB" verify -p "$tmp/k.pub.pem" "$tmp/t.nib"
done
head -c $((size - 1000)) "$tmp/m.nib" > "$tmp/t.nib"
check_fails "a truncated image is refused" 1 "truncated or padded" \
	"$NB" verify -p "$tmp/k.pub.pem" "$tmp/t.nib"
{ cat "$tmp/m.nib"; printf 'x'; } > "$tmp/t.nib"
check_fails "a padded image is refused" 1 "truncated or padded" \
	"$NB" verify -p "$tmp/k.pub.pem" "$tmp/t.nib"

# The runtime on load. Keys from a directory that must belong to root.
mkdir -m 0755 "$tmp/keys"
cp "$tmp/k.pub.pem" "$tmp/keys/"
export NIBBLE_KEYS_DIR="$tmp/keys"
check_output "development build: an unsigned image runs, with a loud warning" \
	"UNSIGNED IMAGES ALLOWED \(development build\)" "$NB" run -m "$tmp/unsigned.nib" -p Once -n 2
check_fails "NIBBLE_REQUIRE_SIGNATURE=1: an unsigned image is refused" 1 "refusing an unsigned image" \
	env NIBBLE_REQUIRE_SIGNATURE=1 "$NB" run -m "$tmp/unsigned.nib" -p Once -n 2
check_output "bench --synthetic still runs its own unsigned image where signatures are required" "^resident:" \
	env NIBBLE_REQUIRE_SIGNATURE=1 "$NB" bench --synthetic stories260k --reps 1
check_output "a signed image runs (key from the key directory)" "^Once upon a time" \
	env NIBBLE_REQUIRE_SIGNATURE=1 "$NB" run -m "$tmp/m.nib" -p "Once upon a time" -n 4
check_output "verify without -p uses the device's keys" "good signature .*\(k.pub.pem\)" \
	"$NB" verify "$tmp/m.nib"
check "the first load left a record of this boot" test -n "$(ls "$tmp/records")"
cp "$tmp/m.nib" "$tmp/t.nib"
"$NB" run -m "$tmp/t.nib" -p x -n 1 > /dev/null 2>&1
flip "$tmp/t.nib" $(($(section_offset "$tmp/unsigned.nib" data) + 70000))
check_fails "data changed after a recorded load: refused on the next load" 1 "tensor data was altered" \
	"$NB" run -m "$tmp/t.nib" -p x -n 1
check_fails "even a development build refuses a damaged signed image" 1 "tensor data was altered" \
	"$NB" inspect "$tmp/t.nib"
"$NB" sign -k "$tmp/other.pem" "$tmp/t.nib" > /dev/null
check_fails "an image signed by an untrusted key is refused on load" 1 "not trusted here \(1 trusted key\)" \
	"$NB" run -m "$tmp/t.nib" -p x -n 1
chmod 0777 "$tmp/keys"
check_fails "a key directory others may write is ignored" 1 "trusted key directory must belong to root" \
	env NIBBLE_REQUIRE_SIGNATURE=1 "$NB" run -m "$tmp/m.nib" -p x -n 1
chmod 0755 "$tmp/keys"
unset NIBBLE_KEYS_DIR

# Keys built into the binary (CONFIG_TRUSTED_KEYS), no key directory, and
# unsigned images refused (as on a board). The key is made anew each run at
# a fixed path, so only trust.o is rebuilt.
K=build/t-x86_64-keys
if [ ! -f "$K/.config" ]; then
	make -s O="$K" x86_64_defconfig > /dev/null
	# Only what the checks below run: a smaller build.
	kconfig-tweak --file "$K/.config" --set-str TRUSTED_KEYS "$PWD/$K/builtin.pub.pem" \
		--set-str TRUSTED_KEYS_DIR "" --enable IMAGE_REQUIRE_SIGNATURE \
		--disable KERNEL_AVX2 --disable KERNEL_AVX512VNNI --disable APPLET_SERVE \
		--disable APPLET_CHAT --disable APPLET_QUANTIZE --disable APPLET_PERPLEXITY \
		--disable APPLET_BENCH --disable APPLET_CONVERT --disable APPLET_UPDATE
fi
"$NB" keygen --force -o "$K/builtin.pem" > /dev/null
check "build with a built-in key" make -s -j"$(nproc)" O="$K"
cp "$tmp/unsigned.nib" "$tmp/b.nib"
"$NB" sign -k "$K/builtin.pem" "$tmp/b.nib" > /dev/null
check_output "built-in key: an image it signed runs" "^Once upon a time" \
	"$K/nibble" run -m "$tmp/b.nib" -p "Once upon a time" -n 4
check_output "built-in key: verify names it" "good signature .*\(built-in\)" "$K/nibble" verify "$tmp/b.nib"
check_fails "built-in key: another key's image is refused" 1 "not trusted here \(1 trusted key\)" \
	"$K/nibble" run -m "$tmp/m.nib" -p x -n 1
check_fails "require-signature build: an unsigned image is refused" 1 "refusing an unsigned image" \
	"$K/nibble" run -m "$tmp/unsigned.nib" -p x -n 1
check_output "--version lists IMAGE_REQUIRE_SIGNATURE" "IMAGE_REQUIRE_SIGNATURE" "$K/nibble" --version

# The manifest: model version and compatibility string stamped at signing.
cp "$tmp/unsigned.nib" "$tmp/v.nib"
check_output "sign --model-version --compatible stamps the manifest" "model version 7, compatible \"rpi5/1 x86_64/1\"" \
	sh -c "\"$NB\" sign -k \"$tmp/k.pem\" --model-version 7 --compatible 'rpi5/1 x86_64/1' \"$tmp/v.nib\" && \"$NB\" verify -p \"$tmp/k.pub.pem\" \"$tmp/v.nib\""
check_fails "a malformed compatibility string is a usage error" 2 "--compatible: 'rpi5' is not a list" \
	"$NB" sign -k "$tmp/k.pem" --compatible rpi5 "$tmp/v.nib"
NIBBLE_KEYS_DIR="$tmp/keys" "$NB" sign -k "$tmp/k.pem" --compatible "rpi5/2" "$tmp/v.nib" > /dev/null
check_fails "an image for another runtime ABI is refused on load" 1 "none of them runtime ABI 1" \
	env NIBBLE_KEYS_DIR="$tmp/keys" "$NB" run -m "$tmp/v.nib" -p x -n 1
