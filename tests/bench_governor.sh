#!/bin/sh
# `make bench` section: 10 simulated minutes of sustained load on the
# simulated Raspberry Pi 5 (tests/integration/governor/thermal.py, 20x
# faster than wall time: 30 s each), nibble serve with the governor against
# a naive run that only the simulated firmware throttles. Prints total
# tokens and tokens/s of both. Usage: bench_governor.sh NIBBLE MODEL.nib DIR
set -eu
NB=$1 MODEL=$2 DIR=$3
SOCK=$DIR/governor.sock
SPEEDUP=20
SECONDS_WALL=30
run() {
	label=$1
	shift
	rm -rf "$DIR/govroot" "$SOCK"
	sh tests/integration/governor/fakeroot.sh "$DIR/govroot" rpi5 62600
	"$NB" serve -m "$MODEL" -s "$SOCK" -t 2 --slots 4 --ctx 256 --sysfs-root "$DIR/govroot" \
		--governor-interval 0.05 --gpio none "$@" 2> "$DIR/governor-serve.log" &
	pid=$!
	for i in $(seq 100); do
		curl -s --unix-socket "$SOCK" http://x/health 2>/dev/null | grep -q '"ready"' && break
		sleep 0.1
	done
	python3 tests/integration/governor/thermal.py --root "$DIR/govroot" --pid "$pid" \
		--sock "$SOCK" --seconds $SECONDS_WALL --speedup $SPEEDUP --t0 62.6 --firmware \
		--target 78 --cores "${CORES:-1}" --clients "${CLIENTS:-4}" > "$DIR/governor-$label.json"
	kill "$pid"
	wait "$pid" || true
	python3 - "$label" "$DIR/governor-$label.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[2]))
print("%-24s %9.0f tokens  %7.0f tokens/s  max %.1f C  mean %.1f C  firmware-throttled %3.0f s of 600"
      % (sys.argv[1], r["tokens"], r["tokens_per_s"], r["max_t"], r["mean_t"], r["firmware_throttled_s"]))
PY
}
run "naive (firmware only)" --governor off
run "governor (performance)" --governor performance
run "governor (balanced)" --governor balanced
