#!/bin/sh
# The configuration workflow: defconfigs round-trip through savedefconfig,
# a changed option changes the binary, menuconfig opens.
set -u
. tests/lib.sh
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"; tmux kill-session -t nb-menuconfig 2>/dev/null' EXIT

for d in board/*/defconfig; do
	b=$(basename "$(dirname "$d")")
	make -s O="$tmp/$b" "${b}_defconfig" > /dev/null 2>&1
	make -s O="$tmp/$b" savedefconfig > /dev/null 2>&1
	check "$b: savedefconfig reproduces board/$b/defconfig" diff -u "board/$b/defconfig" "$tmp/$b/defconfig"
done

# Turn an applet off: the rebuilt binary must lose it.
t=$tmp/tweak
make -s O="$t" x86_64_defconfig > /dev/null 2>&1
make -s -j2 O="$t" > /dev/null 2>&1
check_output "default build has the sha256 applet" "^sha256$" "$t/nibble" --list
kconfig-tweak --file "$t/.config" --disable APPLET_SHA256
# (Same rebuild:) debug messages compiled out, so -v must say it cannot show them.
kconfig-tweak --file "$t/.config" --disable LOG_LEVEL_DEBUG --enable LOG_LEVEL_INFO
check "rebuild after changing .config" make -s -j2 O="$t"
check_output "-v above the compiled-in level says so" \
	"^nibble: warn: debug messages are not compiled into this build \(CONFIG_LOG_LEVEL is info\)" \
	"$t/nibble" -v version
check_fails "the rebuilt binary no longer has sha256" 2 "unknown applet 'sha256'" "$t/nibble" sha256 /dev/null
check_output "--version no longer lists APPLET_SHA256" "^features: " sh -c "\"$t/nibble\" --version | grep -v APPLET_SHA256"
make -s O="$t" savedefconfig > /dev/null 2>&1
check_output "savedefconfig records the change" "APPLET_SHA256 is not set" cat "$t/defconfig"

# menuconfig in a real terminal (tmux): it must draw its menu; Esc Esc quits
# without touching the configuration.
m=$tmp/menu
make -s O="$m" rpi5_defconfig > /dev/null 2>&1
cp "$m/.config" "$tmp/before"
tmux new-session -d -s nb-menuconfig -x 120 -y 40 "make -s O=$m menuconfig; sleep 30"
seen=0
for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
	if tmux capture-pane -p -t nb-menuconfig 2>/dev/null | grep -q "nibble configuration"; then
		seen=1
		break
	fi
	sleep 0.5
done
check "menuconfig opens and shows the nibble menu" test "$seen" = 1
tmux send-keys -t nb-menuconfig Escape Escape 2>/dev/null
sleep 1
check "leaving menuconfig keeps .config as it was" cmp -s "$tmp/before" "$m/.config"
