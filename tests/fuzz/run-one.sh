#!/bin/sh
# Runs one libFuzzer target briefly on its seed corpus (tests/fuzz/corpus/<name>/,
# copied so the repo's corpus is never written) and reports TAP.
set -u
bin=$1
name=$(basename "$bin")
secs=${NIBBLE_FUZZ_SECONDS:-10}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/corpus"
[ -d "tests/fuzz/corpus/$name" ] && cp -r "tests/fuzz/corpus/$name/." "$work/corpus/"
if "$bin" -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=1 \
	-artifact_prefix="$work/" "$work/corpus" > "$work/log" 2>&1; then
	echo "ok - $name: $(grep -o 'stat::number_of_executed_units: [0-9]*' "$work/log" | cut -d' ' -f2) runs, no crash"
else
	echo "not ok - $name found a crash"
	grep -E 'ERROR|SUMMARY|==' "$work/log" | head -20 | sed 's/^/#   /'
	for a in "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-*; do
		[ -f "$a" ] && mkdir -p build/fuzz/artifacts && cp "$a" build/fuzz/artifacts/ &&
			echo "#   reproducer kept in build/fuzz/artifacts/$(basename "$a")"
	done
fi
