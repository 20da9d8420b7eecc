#!/bin/sh
# `make bench`: benchmarks of the default x86_64 build, measured now, here.
# Every figure is measured in this run: speeds are reported next to the
# memory bandwidth measured in the same process, and the scalar reference.
set -eu
cd "$(dirname "$0")/.."
make -s O=build/bench x86_64_defconfig > /dev/null
make -s -j"$(nproc)" O=build/bench
NB=build/bench/nibble
mkdir -p build/bench/models
echo "== machine: $(nproc) cpus, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo
echo "== bundled model (stories260K, f32): load, first token, speed, memory"
$NB convert models/stories260K/stories260K.bin -o build/bench/models/stories260K.nib 2>/dev/null
$NB bench -m build/bench/models/stories260K.nib --reps 9
echo
for t in q4_g32 q4_g128; do
	echo "== TinyLlama-1.1B shape, $t, random weights: 128-token prompt, 32 generated tokens"
	$NB bench --synthetic tinyllama --type "$t"
	echo
done
