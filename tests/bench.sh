#!/bin/sh
# `make bench`: benchmarks of the default x86_64 build, measured now, here.
set -eu
cd "$(dirname "$0")/.."
make -s O=build/bench x86_64_defconfig > /dev/null
make -s -j"$(nproc)" O=build/bench
NB=build/bench/nibble
mkdir -p build/bench/models
$NB convert models/stories260K/stories260K.bin -o build/bench/models/stories260K.nib 2>/dev/null
echo "== bundled model (stories260K, f32), $(nproc) cpus: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
$NB bench -m build/bench/models/stories260K.nib --reps 9
