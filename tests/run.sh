#!/bin/sh
# `make test`: builds every configuration from scratch where needed and runs
# every test. Each test prints TAP lines ("ok ..." / "not ok ..." / "ok ...
# # SKIP reason"); this script prints one line per build and per test as
# it goes, and ends with one line "N passed, N failed" (", N skipped" when
# some were).
set -u
cd "$(dirname "$0")/.."
J=-j$(nproc 2>/dev/null || echo 2)
LOG=build/test-logs
mkdir -p "$LOG"
: > "$LOG/all.tap"
t0=$(date +%s)

# since T: seconds from T to now.
since() { echo $(( $(date +%s) - $1 )); }

# run NAME COMMAND...: runs a test program, keeps its TAP output. A program
# that dies without reporting a failure (crash, sanitizer) counts as one.
run() {
	_name=$1
	shift
	printf '  %-34s ' "$_name"
	_t=$(date +%s)
	"$@" > "$LOG/$_name.log" 2>&1
	_rc=$?
	_skip=$(grep -c '^ok .*# SKIP' "$LOG/$_name.log")
	_ok=$(( $(grep -c '^ok ' "$LOG/$_name.log") - _skip ))
	_nok=$(grep -c '^not ok ' "$LOG/$_name.log")
	if [ "$_rc" != 0 ] && [ "$_nok" = 0 ]; then
		echo "not ok - $_name exited with status $_rc" >> "$LOG/$_name.log"
		_nok=1
	fi
	grep -E '^(not )?ok ' "$LOG/$_name.log" >> "$LOG/all.tap"
	echo "$_ok passed, $_nok failed$([ "$_skip" = 0 ] || echo ", $_skip skipped") ($(since "$_t") s)"
	grep '^ok .*# SKIP' "$LOG/$_name.log" | sed 's/^ok - /      skipped: /'
	if [ "$_nok" != 0 ]; then
		grep -E -A12 '^not ok |ERROR|runtime error|Sanitizer' "$LOG/$_name.log" | head -40 | sed 's/^/      /'
	fi
}

# build NAME MAKE-ARGS...: a build failure is a test failure, not a stop.
# Its line is printed when it starts: a build from scratch takes minutes.
build() {
	_name=$1
	shift
	printf '  %-34s ' "build $_name"
	_t=$(date +%s)
	if make -s $J "$@" > "$LOG/build-$_name.log" 2>&1; then
		echo "ok - build $_name" >> "$LOG/all.tap"
		echo "ok ($(since "$_t") s)"
		return 0
	fi
	echo "not ok - build $_name" >> "$LOG/all.tap"
	echo "FAILED ($(since "$_t") s):"
	tail -25 "$LOG/build-$_name.log" | sed 's/^/      /'
	return 1
}

config() { # config TREE BOARD
	make -s O="build/$1" "$2_defconfig" > /dev/null
}

echo "unit tests (glibc, ASan + UBSan):"
config test x86_64
if build unit-tests O=build/test SANITIZE=1 unit-tests; then
	for t in build/test/tests/test_*; do
		CMOCKA_MESSAGE_OUTPUT=TAP run "$(basename "$t")" "$t"
	done
fi

echo "static binaries:"
for b in x86_64 rpi4 rpi5 jetson-orin-nano; do
	config "t-$b" "$b" && build "$b" O="build/t-$b" &&
		printf '  %-34s %s\n' "" "$(file -b "build/t-$b/nibble" | cut -d, -f1-2,5)"
done

echo "OpenCL variant (glibc, pocl's CPU device):"
config t-x86_64_opencl x86_64_opencl && build x86_64_opencl O=build/t-x86_64_opencl &&
	build test_opencl O=build/t-x86_64_opencl "$PWD/build/t-x86_64_opencl/tests/test_opencl" &&
	CMOCKA_MESSAGE_OUTPUT=TAP run test_opencl build/t-x86_64_opencl/tests/test_opencl

echo "integration tests:"
for t in tests/integration/*.sh; do
	run "$(basename "$t" .sh)" sh "$t"
done

if [ -d tests/fuzz ] && ls tests/fuzz/fuzz_*.c > /dev/null 2>&1; then
	echo "fuzz targets (clang libFuzzer, short runs on the seed corpora):"
	config fuzz x86_64
	if build fuzz-targets O=build/fuzz FUZZ=1 fuzz-targets; then
		for f in build/fuzz/fuzz/fuzz_*; do
			run "$(basename "$f")" sh tests/fuzz/run-one.sh "$f"
		done
	fi
fi

skipped=$(grep -c '^ok .*# SKIP' "$LOG/all.tap")
passed=$(( $(grep -c '^ok ' "$LOG/all.tap") - skipped ))
failed=$(grep -c '^not ok ' "$LOG/all.tap")
if [ "$failed" != 0 ]; then
	echo "failures:"
	grep '^not ok ' "$LOG/all.tap" | sed 's/^/  /'
	echo "(logs in $LOG/)"
fi
echo "(make test took $(since "$t0") s)"
echo "$passed passed, $failed failed$([ "$skipped" = 0 ] || echo ", $skipped skipped")"
[ "$failed" = 0 ]
