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
sh tests/bench_sig.sh "$NB" build/bench
echo
echo "== server: TinyLlama-1.1B shape q4_g32, 16 slots, 2 threads, streaming completions of 64 tokens (7-token prompts)"
$NB bench --synthetic tinyllama --write-only --out build/bench/models/tinyllama-q4.nib > /dev/null
rm -f build/bench/nibble.sock
$NB serve -m build/bench/models/tinyllama-q4.nib -s build/bench/nibble.sock --slots 16 \
	--ctx 256 --threads 2 2> build/bench/serve.log &
srv=$!
for i in $(seq 200); do
	curl -s --unix-socket build/bench/nibble.sock http://x/health 2>/dev/null | grep -q '"ready"' && break
	sleep 0.1
done
python3 tests/bench_server.py build/bench/nibble.sock 64
kill -TERM $srv
wait $srv
echo
echo "== contention: TinyLlama-1.1B shape q4_g32, default threads against -t 1, with no other load and"
echo "   with a busy loop pinned to each core in turn; 200-token generations, nibble run and one nibble serve stream"
python3 tests/bench_contention.py $NB build/bench/models/tinyllama-q4.nib build/bench 3 200
rm -f build/bench/models/tinyllama-q4.nib
echo
echo "== governor: simulated Raspberry Pi 5 (first-order thermal model, docs/governor.md), 10 simulated"
echo "   minutes of 4 concurrent streams (stories260K), the simulated firmware throttling from 80 C:"
echo "   naive run against the governor"
sh tests/bench_governor.sh $NB build/bench/models/stories260K.nib build/bench
echo
echo "== uplink: time to first token through a board's --uplink against the same cloud directly"
echo "   (stories260K nibble serve behind nginx TLS on loopback, 8-token streamed completions)"
sh tests/bench_uplink.sh $NB build/bench
