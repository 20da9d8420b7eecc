#!/bin/sh
# The build does what changed and nothing else: a second `make`, `make strip`
# or `make run` with nothing changed builds, converts and touches nothing; a
# new git revision recompiles runtime/base/version.c alone; switching an
# applet recompiles the applet table (and the feature list) alone.
#
# Uses the link test's tree (NIBBLE_BUILD_TREE, default build/t-applets,
# see applets.sh), whose objects are built already when make test runs.
set -u
. tests/lib.sh
tree=${NIBBLE_BUILD_TREE:-build/t-applets}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
M="make --no-print-directory -j2 O=$tree"

mark() { rm -f "$tmp/marker"; touch "$tmp/marker"; sleep 1.1; }
# untouched: no file of the tree is newer than the marker (else lists them).
untouched() { ! find "$tree" -newer "$tmp/marker" ! -type d | grep .; }
# silent FILE: FILE is empty (else shows it).
silent() { ! grep . "$1"; }

make -s O="$tree" x86_64_defconfig > /dev/null 2>&1
check "make builds the defconfig" $M
mark
$M > "$tmp/out" 2>&1
check "a second make prints nothing" silent "$tmp/out"
check "a second make touches nothing" untouched

$M strip > /dev/null 2>&1
mark
$M strip > "$tmp/out" 2>&1
check "a second make strip prints nothing" silent "$tmp/out"
check "a second make strip touches nothing" untouched

run="run PROMPT=Once RUN_ARGS=-n4"
check_output "make run generates" "^Once" $M $run
mark
$M $run > "$tmp/out" 2>&1
check_output "a second make run generates" "^Once" cat "$tmp/out"
check "a second make run compiles, links and converts nothing" untouched

# A new revision: generated/version.h as an older commit left it.
v=$tree/include/generated/version.h
rev=$(git describe --always --dirty 2>/dev/null || echo unknown)
sed -i 's/NB_GIT_REV ".*"/NB_GIT_REV "0000000"/' "$v"
$M > "$tmp/out" 2>&1
check_output "a new revision recompiles runtime/base/version.c" "CC +runtime/base/version.c" cat "$tmp/out"
check "and nothing else" test "$(grep -c '^ *CC ' "$tmp/out")" = 1
check_output "the binary reports the revision" "\\(git $rev\\)" "$tree/nibble" --version

# An applet switched off.
kconfig-tweak --file "$tree/.config" --disable APPLET_SHA256
$M > "$tmp/out" 2>&1
check "switching an applet off recompiles only the applet table and the feature list" \
	test "$(sed -n 's/^ *CC *//p' "$tmp/out" | sort | tr '\n' ' ')" = "runtime/applets/applet.c runtime/applets/version.c "
check_fails "and the applet is gone" 2 "unknown applet 'sha256'" "$tree/nibble" sha256 /dev/null
make -s O="$tree" x86_64_defconfig > /dev/null 2>&1
