#!/bin/sh
# The aarch64 board binaries under qemu-aarch64-static, on CPUs with and
# without dotprod / i8mm: runtime dispatch must pick what the CPU has and
# never execute an instruction it lacks (SIGILL).
set -u
. tests/lib.sh
Q=qemu-aarch64-static

for b in rpi4 rpi5 jetson-orin-nano; do
	check_output "$b: static aarch64 binary" "ARM aarch64.*statically linked" file "build/t-$b/nibble"
	check_output "$b: --version under qemu names the board" "board: +$b" $Q "build/t-$b/nibble" --version
done

# Raspberry Pi 4 (Cortex-A72): NEON only.
check_output "rpi4 on cortex-a72: selftest passes, neon selected" \
	"ok +kernels/neon +.*selected" $Q -cpu cortex-a72 build/t-rpi4/nibble selftest
check_output "rpi4 build carries no dotprod kernels" "^features: " sh -c \
	"$Q build/t-rpi4/nibble --version | grep -v KERNEL_NEON_DOTPROD"

# One rpi5 binary on three CPUs: the dispatcher falls back cleanly.
check_output "rpi5 binary on cortex-a72: no SIGILL, falls back to neon" \
	"ok +kernels/neon +.*selected" $Q -cpu cortex-a72 build/t-rpi5/nibble selftest
check_output "rpi5 binary on neoverse-n1: dotprod selected and equal to scalar" \
	"ok +kernels/neon-dotprod +.*selected" $Q -cpu neoverse-n1 build/t-rpi5/nibble selftest
check_output "rpi5 binary on cortex-a76: dotprod selected" \
	"ok +kernels/neon-dotprod +.*selected" $Q -cpu cortex-a76 build/t-rpi5/nibble selftest
check_output "rpi5 binary on max: i8mm selected, every backend equal to scalar" \
	"selftest: 6 passed, 0 failed" $Q -cpu max build/t-rpi5/nibble selftest
check_output "jetson binary on max: selftest passes" \
	"ok +kernels/neon-i8mm +.*selected" $Q -cpu max build/t-jetson-orin-nano/nibble selftest
check_output "jetson binary on cortex-a72: selftest passes" \
	"selftest: [0-9]+ passed, 0 failed" $Q -cpu cortex-a72 build/t-jetson-orin-nano/nibble selftest

# Whole models: images made and quantized on x86 (their golden vectors
# computed by the AVX2 kernels) run on each aarch64 CPU; every backend the
# CPU has must give the scalar reference's logits bit for bit, on one and
# two threads, and reproduce the x86 golden vector. Board builds refuse
# unsigned images: the images are signed with a key made here.
NBX=build/t-x86_64/nibble
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -m 0755 "$tmp/keys"
"$NBX" keygen -o "$tmp/keys/test.pem" > /dev/null
export NIBBLE_KEYS_DIR="$tmp/keys" NIBBLE_VERIFY_RECORDS=
"$NBX" convert models/stories260K/stories260K.bin -o "$tmp/f32.nib" 2>/dev/null
for t in q4_g32 q4z_g128 q8_g32; do
	"$NBX" quantize "$tmp/f32.nib" -o "$tmp/$t.nib" --type "$t" 2>/dev/null
	"$NBX" sign -k "$tmp/keys/test.pem" "$tmp/$t.nib" > /dev/null
	for cpu in cortex-a72 neoverse-n1 max; do
		check_output "rpi5 on $cpu, $t model: logits equal scalar on every backend, x86 golden vector reproduced" \
			"model/golden .*reproduced exactly.*selftest: [0-9]+ passed, 0 failed" \
			sh -c "$Q -cpu $cpu build/t-rpi5/nibble selftest -m $tmp/$t.nib | tr '\n' ' '"
	done
done
# Group 64 on the CPU with every NEON backend: each equals scalar.
"$NBX" quantize "$tmp/f32.nib" -o "$tmp/q4_g64.nib" --type q4_g64 2>/dev/null
"$NBX" sign -k "$tmp/keys/test.pem" "$tmp/q4_g64.nib" > /dev/null
check_output "rpi5 on max, q4_g64 model: logits equal scalar on every backend, x86 golden vector reproduced" \
	"model/golden .*reproduced exactly.*selftest: [0-9]+ passed, 0 failed" \
	sh -c "$Q -cpu max build/t-rpi5/nibble selftest -m $tmp/q4_g64.nib | tr '\n' ' '"
check_output "rpi4 on cortex-a72, q4_g32 model: neon logits equal scalar" \
	"model/neon +equal to scalar.*selftest: [0-9]+ passed, 0 failed" \
	sh -c "$Q -cpu cortex-a72 build/t-rpi4/nibble selftest -m $tmp/q4_g32.nib | tr '\n' ' '"

# Board builds (CONFIG_IMAGE_REQUIRE_SIGNATURE=y) refuse unsigned images.
check_fails "rpi5 build refuses an unsigned image" 1 "refusing an unsigned image" \
	$Q -cpu cortex-a76 build/t-rpi5/nibble run -m "$tmp/f32.nib" -p Once -n 2
"$NBX" sign -k "$tmp/keys/test.pem" "$tmp/f32.nib" > /dev/null
check_output "rpi5 build runs the same image signed" "^Once upon a time" \
	$Q -cpu cortex-a76 build/t-rpi5/nibble run -m "$tmp/f32.nib" -p "Once upon a time" -n 2
check_fails "rpi5 build refuses it signed by a key it does not trust" 1 "not trusted here" \
	env NIBBLE_KEYS_DIR= $Q -cpu cortex-a76 build/t-rpi5/nibble run -m "$tmp/f32.nib" -p x -n 2
