#!/bin/sh
# The OpenCL variant (board/x86_64_opencl) on pocl's CPU device: every
# OpenCL kernel equals the scalar reference bit for bit (selftest's random,
# extreme and odd-sized cases), whole models give the scalar backend's
# logits and the same greedy text, and without an ICD the binary logs why
# and serves on the CPU kernels. Needs build/t-x86_64_opencl/nibble
# (tests/run.sh; NIBBLE_OPENCL overrides).
set -u
. tests/lib.sh
NB=${NIBBLE_OPENCL:-build/t-x86_64_opencl/nibble}
M=models/stories260K
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/no-icd"
# An ICD loader that finds no vendor file: no platform at all.
NO_ICD="env OCL_ICD_VENDORS=$tmp/no-icd"

if [ ! -x "$NB" ]; then
	echo "ok - opencl # SKIP no $NB (make O=build/t-x86_64_opencl x86_64_opencl_defconfig all)"
	exit 0
fi
if ! clinfo -l 2>/dev/null | grep -q 'Device #'; then
	echo "ok - opencl # SKIP no OpenCL device (pocl-opencl-icd installed?)"
	exit 0
fi

check_output "a dynamically linked glibc binary" "dynamically linked" file "$NB"
check_output "--version: the opencl backend is built in and selected" \
	"kernels: +opencl" "$NB" --version
"$NB" selftest --seed 7 > "$tmp/k" 2>&1
check_output "selftest: the OpenCL kernels equal the scalar reference, selected" \
	"ok +kernels/opencl +[0-9]+ cases equal to scalar \(selected\)" cat "$tmp/k"
check_output "selftest: every backend passes beside it" \
	"selftest: [1-9][0-9]* passed, 0 failed" cat "$tmp/k"

# Fallback: no ICD. One line says why, the CPU kernels are selected and pass.
check_output "no ICD: the reason is logged" "opencl: no platform" $NO_ICD "$NB" --version
check_output "no ICD: the CPU kernels are selected" "kernels: +avx" $NO_ICD "$NB" --version
$NO_ICD "$NB" selftest > "$tmp/c" 2>&1
check_output "no ICD: selftest skips opencl" "skip +kernels/opencl .*not supported here" cat "$tmp/c"
check_output "no ICD: selftest passes on the CPU kernels" \
	"selftest: [1-9][0-9]* passed, 0 failed" cat "$tmp/c"

# Whole model: the image and its golden vector are made on the CPU kernels
# (no ICD); on OpenCL the logits of every position equal the scalar
# backend's and the golden vector is reproduced; greedy text is the same.
"$NB" convert "$M/stories260K.bin" -t "$M/tok512.bin" -o "$tmp/f.nib" > /dev/null 2>&1
$NO_ICD "$NB" quantize "$tmp/f.nib" --type q4_g32 -o "$tmp/q4.nib" > /dev/null 2>&1
check "a Q4 image made on the CPU kernels" test -s "$tmp/q4.nib"
"$NB" selftest --model "$tmp/q4.nib" > "$tmp/st" 2>&1
check_output "model: OpenCL logits equal the scalar backend's" "^ok +model/opencl " cat "$tmp/st"
check_output "model: the CPU golden vector is reproduced on OpenCL" "^ok +model/golden " \
	cat "$tmp/st"
check_output "model: no check fails" "selftest: [1-9][0-9]* passed, 0 failed" cat "$tmp/st"
run="run -m $tmp/q4.nib -p Once -n 48 --temp 0"
"$NB" $run > "$tmp/gpu.txt" 2> "$tmp/gpu.err"
$NO_ICD "$NB" $run > "$tmp/cpu.txt" 2> /dev/null
check_output "greedy run used the OpenCL kernels" "kernels built for" cat "$tmp/gpu.err"
check "greedy text on OpenCL equals the CPU's" cmp "$tmp/gpu.txt" "$tmp/cpu.txt"
check "greedy text is not empty" test -s "$tmp/gpu.txt"
