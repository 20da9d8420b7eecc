#!/bin/sh
# Every applet can be switched on or off alone: the x86_64 configuration
# with each applet alone, with all but one and with none builds and links,
# and the binary lists exactly the applets that are on.
#
# All configurations share one object tree (NIBBLE_APPLETS_TREE, default
# build/t-applets, kept between runs like the other build/t-* trees).
# Applet symbols select objects and the applet table only; no other object
# sees them (the build poisons them), so going from one configuration to
# the next recompiles the table and links, plus any object not built yet.
set -u
. tests/lib.sh
tree=${NIBBLE_APPLETS_TREE:-build/t-applets}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

kconfigs=$(ls Kconfig runtime/applets/Kconfig 2>/dev/null)
syms=$(sed -n 's/^config APPLET_\([A-Z0-9_]*\)$/\1/p' $kconfigs | LC_ALL=C sort)
def=runtime/applets/applets.def
# names SYMBOL...: the applets' names, from applets.def (before it existed,
# the symbol in lower case).
names() {
	for _s in "$@"; do
		if [ -f "$def" ]; then
			sed -n "s/^NB_APPLET(\([a-z0-9_]*\), *$_s)\$/\1/p" "$def"
		else
			echo "$_s" | tr 'A-Z' 'a-z'
		fi
	done
}

if [ -f "$def" ]; then
	check "applets.def and Kconfig have the same applets" test \
		"$(sed -n 's/^NB_APPLET([a-z0-9_]*, *\([A-Z0-9_]*\))$/\1/p' "$def" | LC_ALL=C sort | tr '\n' ' ')" = \
		"$(echo $syms | tr ' ' '\n' | tr '\n' ' ')"
fi

make -s O="$tree" x86_64_defconfig > /dev/null 2>&1
cp "$tree/.config" "$tmp/base"

# build SYMBOL...: the configuration with exactly these applets on (the
# hidden symbols they select have no prompt: olddefconfig sets them).
build() {
	{
		grep -v -E '^(# )?CONFIG_APPLET_' "$tmp/base"
		for _s in $syms; do
			case " $* " in
			*" $_s "*) echo "CONFIG_APPLET_$_s=y" ;;
			*) echo "# CONFIG_APPLET_$_s is not set" ;;
			esac
		done
	} > "$tree/.config"
	make -s -j2 O="$tree" > "$tmp/log" 2>&1
}

# try NAME SYMBOL...: it links and lists exactly those applets.
try() {
	_name=$1
	shift
	if build "$@"; then
		names "$@" | LC_ALL=C sort > "$tmp/want"
		"$tree/nibble" --list > "$tmp/got" 2>&1
		"$tree/nibble" --help > "$tmp/help" 2>&1 &&
			[ "$(sed -n 's/^  \([a-z0-9_][a-z0-9_]*\) .*/\1/p' "$tmp/help")" = "$(cat "$tmp/want")" ] &&
			_help=ok || _help="--help lists other applets"
		if cmp -s "$tmp/want" "$tmp/got" && [ "$_help" = ok ]; then
			echo "ok - $_name: links, lists exactly its applets"
		else
			echo "not ok - $_name: links but lists the wrong applets ($_help)"
			diff "$tmp/want" "$tmp/got" | sed 's/^/#   /'
		fi
	else
		echo "not ok - $_name: does not build"
		grep -E 'error|undefined|multiple' "$tmp/log" | head -8 | sed 's/^/#   /'
	fi
}

start=$(date +%s)
try "the defconfig" $syms
# What makes sharing the objects sound: only the applet table may see the
# applet symbols; any other object that tests one does not compile.
printf '#include "runtime/base/kconfig.h"\nint f(void);\nint f(void) { return IS_ENABLED(CONFIG_APPLET_RUN); }\n' > "$tmp/uses.c"
check_fails "an object other than the table cannot test an applet symbol" 1 "poisoned" \
	gcc -std=c11 -I. -include "$tree/include/generated/autoconf-core.h" -c -o "$tmp/uses.o" "$tmp/uses.c"
for s in $syms; do
	try "$(names "$s") alone" "$s"
done
for s in $syms; do
	# shellcheck disable=SC2046
	try "all but $(names "$s")" $(printf '%s\n' $syms | grep -vx "$s")
done
try "no applet"
echo "# $(echo $syms | wc -w) applets, $(( $(echo $syms | wc -w) * 2 + 1 )) configurations in $(( $(date +%s) - start )) s"
