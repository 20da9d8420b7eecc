#!/bin/sh
# The static x86_64 binary as a user meets it: multi-call dispatch, help,
# version, selftest, exit statuses. Needs build/t-x86_64/nibble (tests/run.sh).
set -u
. tests/lib.sh
NB=${NIBBLE:-build/t-x86_64/nibble}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

check_output "binary is statically linked" "statically linked" file "$NB"
check_output "--version names version, revision and board" \
	"^nibble [0-9]+\.[0-9]+\.[0-9]+ \(git [0-9a-f]+" "$NB" --version
check_output "--version lists Kconfig features" "features:.*KERNEL_AVX2" "$NB" --version
check_output "--version shows the board" "board: +x86_64" "$NB" --version
check_output "--help lists the applets" "selftest .*sha256 .*version " sh -c "\"$NB\" --help | tr '\n' ' '"
check_fails "no arguments: usage on stderr, status 2" 2 "usage: nibble" "$NB"
check_fails "unknown applet is named, status 2" 2 "unknown applet 'frobnicate'" "$NB" frobnicate
for a in $("$NB" --list); do
	check_output "$a --help describes it" "usage: nibble $a" "$NB" "$a" --help
done
check_output "selftest passes on this CPU" "selftest: [1-9][0-9]* passed, 0 failed" "$NB" selftest
check_output "selftest checks the AVX2 kernels here" "^ok +kernels/avx2 " "$NB" selftest

printf 'nibble\n' > "$tmp/f"
want=$(sha256sum "$tmp/f")
check_output "sha256 agrees with sha256sum" "^$want\$" "$NB" sha256 "$tmp/f"
check_fails "sha256 of a missing file fails and names it" 1 "$tmp/missing" "$NB" sha256 "$tmp/missing"

mkdir "$tmp/bin"
check "--install links every applet" "$NB" --install "$tmp/bin"
check_output "an applet link runs the applet (busybox style)" "^nibble .*git" "$tmp/bin/version"
check_fails "log level from NIBBLE_LOG=error hides nothing fatal" 2 "unknown applet" \
	env NIBBLE_LOG=error "$NB" nope

strip -o "$tmp/nibble.stripped" "$NB"
size=$(stat -c %s "$tmp/nibble.stripped")
echo "# stripped size: $size bytes"
check "stripped binary is under the 2 MB budget ($size bytes)" test "$size" -lt 2097152
