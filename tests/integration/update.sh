#!/bin/sh
# Fleet updates with A/B slots: nibble update installs a signed image into
# the inactive slot on trial; nibble serve --slots-dir health-checks it and
# commits or rolls back. Bad images are refused with nothing installed; a
# failing golden vector, an image that does not load, a crash loop, a hung
# check and a slow model are rolled back; the update killed at each of its
# fault points leaves a board that starts and an update that completes when
# run again. Needs build/t-x86_64/nibble (tests/run.sh builds it).
set -u
. tests/lib.sh
NB=${NIBBLE:-build/t-x86_64/nibble}
NB=$(cd "$(dirname "$NB")" && pwd)/$(basename "$NB")
tmp=$(mktemp -d)
srv=
trap '[ -n "$srv" ] && kill "$srv" 2>/dev/null; rm -rf "$tmp"' EXIT
mkdir -m 0755 "$tmp/keys"
export NIBBLE_KEYS_DIR="$tmp/keys" NIBBLE_VERIFY_RECORDS="$tmp/records"
"$NB" keygen -o "$tmp/k.pem" > /dev/null
"$NB" keygen -o "$tmp/other.pem" > /dev/null
cp "$tmp/k.pub.pem" "$tmp/keys/"
"$NB" convert models/stories260K/stories260K.bin -o "$tmp/base.nib" 2>/dev/null

# image NAME VERSION [COMPAT [KEY]]: a signed copy of the base image.
image() {
	cp "$tmp/base.nib" "$tmp/$1.nib"
	"$NB" sign -k "${4:-$tmp/k.pem}" --model-version "$2" --compatible "${3:-x86_64/1 rpi5/1}" \
		"$tmp/$1.nib" > /dev/null
}
# py: little helpers on image bytes.
py() { python3 -c "import struct, sys
f = open(sys.argv[2], 'r+b')
def u32(o): f.seek(o); return struct.unpack('<I', f.read(4))[0]
def put(o, v): f.seek(o); f.write(struct.pack('<I', v))
def flip(o): f.seek(o); b = f.read(1); f.seek(o); f.write(bytes([b[0] ^ 1]))
def section(k):
    for i in range(u32(32)):
        if u32(64 + 24 * i) == k: f.seek(64 + 24 * i + 8); return struct.unpack('<Q', f.read(8))[0]
$1" "$@"; }
# snapshot: everything in the slots directory but the locks, for "nothing changed".
SL=$tmp/slots
snapshot() { (cd "$SL" && find . -type f ! -name '*lock' | sort | xargs sha256sum); }
upd() { "$NB" update -d "$SL" --switch-cmd "" "$@"; }
# boot [OPTIONS]: starts the service on the slots until it is ready (or
# exits), then stops it; its log in $tmp/boot.log.
boot() {
	rm -f "$tmp/sock"
	"$NB" serve --slots-dir "$SL" -s "$tmp/sock" "$@" > "$tmp/boot.log" 2>&1 &
	srv=$!
	for i in $(seq 100); do
		curl -s --unix-socket "$tmp/sock" http://x/health 2>/dev/null | grep -q ready && break
		kill -0 "$srv" 2>/dev/null || break
		sleep 0.05
	done
	kill -TERM "$srv" 2>/dev/null
	wait "$srv"
	_rc=$?
	srv=
	return $_rc
}
status() { "$NB" update -d "$SL" --status; }

image v1 1
image v2 2
image v3 3
mkdir -m 0755 "$tmp/slots"
check_output "first install: slot a on trial" "version 1 .*installed on trial" upd "$tmp/v1.nib"
check_output "status shows the trial" "a +trial \(0 of 3 starts\) +version 1 " status
check "the service starts on the trial slot" boot
check_output "its health check passed and committed it" "slot a \(version 1\) committed: golden vector reproduced" \
	cat "$tmp/boot.log"
check_output "status: a committed, anti-rollback at 1" "a +committed +version 1 .*only versions above 1 install" \
	sh -c "\"$NB\" update -d \"$tmp/slots\" --status | tr '\n' ' '"
check_output "second install goes to slot b" "version 2 .*installed on trial" upd "$tmp/v2.nib"
check "the service starts on b" boot
check_output "b committed, a kept as it was" "a +inactive +version 1 .*b +committed +version 2 " \
	sh -c "\"$NB\" update -d \"$tmp/slots\" --status | tr '\n' ' '"
check_output "the same image again: already installed, nothing to do" "already installed" upd "$tmp/v2.nib"
cp "$SL/b/model.nib" "$tmp/b.keep"
cp "$tmp/v1.nib" "$SL/b/model.nib"
check_fails "the committed file swapped for an older signed image: the server refuses it" 1 \
	"is not the image committed to slot b \(version 2\): refusing it" \
	timeout 20 "$NB" serve --slots-dir "$SL" -s "$tmp/sock"
cp "$tmp/b.keep" "$SL/b/model.nib"

# Refused, nothing installed: the slots directory is byte for byte as before.
snapshot > "$tmp/before"
hp=$(py 'print(section(1))' "$tmp/v3.nib")
meta=$(py 'print(section(2))' "$tmp/v3.nib")
table=$(py 'print(section(4))' "$tmp/v3.nib")
data=$(py 'print(section(6))' "$tmp/v3.nib")
size=$(stat -c %s "$tmp/v3.nib")
for spec in "header:24:altered after signing" "hparams:$((hp + 4)):altered after signing" \
	"manifest:$((meta + 20)):altered after signing" "tensor table:$((table + 70)):altered after signing" \
	"tensor data:$((data + 999)):tensor data was altered" "signature:$((size - 4096 + 150)):bad signature"; do
	name=${spec%%:*} rest=${spec#*:}
	cp "$tmp/v3.nib" "$tmp/bad.nib"
	py "flip(${rest%%:*})" "$tmp/bad.nib"
	check_fails "update: a byte flipped in the $name is refused" 1 "${rest#*:}" upd "$tmp/bad.nib"
	snapshot > "$tmp/after"
	check "update: $name: nothing installed" cmp -s "$tmp/before" "$tmp/after"
done
head -c $((size - 5000)) "$tmp/v3.nib" > "$tmp/bad.nib"
check_fails "update: a truncated image is refused" 1 "truncated or padded" upd "$tmp/bad.nib"
image wrongkey 3 "x86_64/1" "$tmp/other.pem"
check_fails "update: an image signed with an untrusted key is refused" 1 "not trusted here" upd "$tmp/wrongkey.nib"
image older 1
check_fails "update: a good signature but an older version is refused" 1 \
	"version 1 is not newer than the committed version 2 \(no downgrades\)" upd "$tmp/older.nib"
cp "$tmp/base.nib" "$tmp/same.nib"
"$NB" sign -k "$tmp/k.pem" --model-version 2 --compatible "*/1" "$tmp/same.nib" > /dev/null
check_fails "update: another image of the committed version is refused" 1 "not newer than the committed version 2" \
	upd "$tmp/same.nib"
image incompatible 3 "rpi5/1 jetson-orin-nano/1"
check_fails "update: an image for other boards is refused" 1 "made for \"rpi5/1 jetson-orin-nano/1\", not for this device \(x86_64/1\)" \
	upd "$tmp/incompatible.nib"
image newabi 3 "x86_64/2"
check_fails "update: an image for another runtime ABI is refused" 1 "not for this device" upd "$tmp/newabi.nib"
cp "$tmp/base.nib" "$tmp/nocompat.nib"
"$NB" sign -k "$tmp/k.pem" --model-version 3 "$tmp/nocompat.nib" > /dev/null
check_fails "update: an image without a compatibility string is refused" 1 "no compatibility string" \
	upd "$tmp/nocompat.nib"
check_fails "update: an unsigned image is refused" 1 "the image is not signed" upd "$tmp/base.nib"
snapshot > "$tmp/after"
check "after all refusals: nothing installed, nothing left behind" cmp -s "$tmp/before" "$tmp/after"
check_fails "update: plain http is refused" 2 "plain http:// is refused" upd "http://example.com/m.nib"

# Rollbacks. The committed slot is b (version 2); each bad version 3 goes
# into a, fails, and the same start goes on serving b.
rolled_back() { # DESCRIPTION REASON
	check_output "$1: rolled back, reported in the log" "failed its health check: $2: rolling back" \
		cat "$tmp/boot.log"
	check_output "$1: the server went on with the committed slot" "running slot b \(version 2\).*ready" \
		sh -c "tr '\n' ' ' < \"$tmp/boot.log\""
	check_output "$1: status reports it" "b +committed +version 2 .*last: .*rolled back slot a \(version 3\): $2" \
		sh -c "\"$NB\" update -d \"$tmp/slots\" --status | tr '\n' ' '"
}
cp "$tmp/base.nib" "$tmp/golden.nib"
py 'g = section(5); n = u32(g); put(g + 8 + 4 * n, (u32(g + 8 + 4 * n) + 1) % 512)' "$tmp/golden.nib"
"$NB" sign -k "$tmp/k.pem" --model-version 3 --compatible "x86_64/1" "$tmp/golden.nib" > /dev/null
check_output "an image whose golden vector fails installs (it is signed)" "installed on trial" upd "$tmp/golden.nib"
check "the service starts" boot
rolled_back "golden vector fails" "golden vector mismatch: token 0 of 16 differs"

cp "$tmp/base.nib" "$tmp/noload.nib"
py 'put(section(1) + 12, u32(section(1) + 12) + 1)' "$tmp/noload.nib" # one layer more than its tensors
"$NB" sign -k "$tmp/k.pem" --model-version 3 --compatible "x86_64/1" "$tmp/noload.nib" > /dev/null
upd "$tmp/noload.nib" > /dev/null 2>&1
check "an image that does not load: the service still starts" boot
rolled_back "image does not load" "the image does not load \\(.*\\)"

upd "$tmp/v3.nib" > /dev/null 2>&1
check "slow model: the service starts" boot --health-max-ms 0.001
rolled_back "slower than --health-max-ms" "too slow: [0-9.]+ ms per token, the limit is 0"

# A crash while loading the trial (standing for a segfault or the OOM
# killer): the service manager restarts it; the third start was the last.
upd "$tmp/v3.nib" > /dev/null 2>&1
for i in 1 2 3; do
	NIBBLE_FAULT=trial:load "$NB" serve --slots-dir "$tmp/slots" -s "$tmp/sock" > "$tmp/crash.log" 2>&1
	check_output "crash at load, start $i: killed" "^137\$" echo $?
done
check_output "after 3 crashed starts the trial counter says so" "a +trial \(3 of 3 starts\)" status
check "the 4th start" boot
check_output "crash loop: rolled back at the 4th start" "rolling back slot a \(version 3\): crash loop: 3 starts without a passing health check" \
	cat "$tmp/boot.log"
check_output "crash loop: the 4th start serves the committed slot" "running slot b \(version 2\).*ready" \
	sh -c "tr '\n' ' ' < \"$tmp/boot.log\""
check_output "crash loop: status reports it" "last: .*rolled back slot a \(version 3\): crash loop" status

# A health check that hangs: the watchdog rolls back and exits; the next
# start serves the committed slot.
upd "$tmp/v3.nib" > /dev/null 2>&1
NIBBLE_FAULT=hang:trial:load "$NB" serve --slots-dir "$tmp/slots" -s "$tmp/sock" --health-timeout 0.5 \
	> "$tmp/hang.log" 2>&1
check_output "hung health check: the watchdog exits with status 1" "^1\$" echo $?
check_output "hung health check: rolled back on timeout" "health check timed out after 0.5 s: rolling back" cat "$tmp/hang.log"
check "after the timeout the service starts" boot
check_output "after the timeout it serves the committed slot" "running slot b \(version 2\)" cat "$tmp/boot.log"

# The service as systemd runs it (restarted whenever it exits): update
# asks it to switch, the trial is committed without anyone's help.
( while [ ! -f "$tmp/stop" ]; do
	"$NB" serve --slots-dir "$tmp/slots" -s "$tmp/sock2" >> "$tmp/svc.log" 2>&1 &
	echo $! > "$tmp/svc.pid"
	wait $!
done ) &
svc=$!
for i in $(seq 100); do
	curl -s --unix-socket "$tmp/sock2" http://x/health 2>/dev/null | grep -q ready && break
	sleep 0.05
done
check_output "update with a switch command" "installed on trial" \
	"$NB" update -d "$tmp/slots" --switch-cmd "kill -TERM \$(cat $tmp/svc.pid)" "$tmp/v3.nib"
for i in $(seq 100); do
	status | grep -q "a  committed" && break
	sleep 0.05
done
check_output "the restarted service committed version 3" "a +committed +version 3 " status
touch "$tmp/stop"
kill -TERM "$(cat "$tmp/svc.pid")" 2>/dev/null
wait "$svc"

# Crash safety: the update killed (SIGKILL) at each of its fault points in
# turn (between every write, fsync and rename). After each kill the board
# starts from a good slot, and the update run again completes.
SL=$tmp/cs-base
mkdir -m 0755 "$SL"
upd "$tmp/v1.nib" > /dev/null 2>&1 && boot
cp -a "$SL" "$tmp/cs"
SL=$tmp/cs
NIBBLE_FAULT=list upd "$tmp/v2.nib" > /dev/null 2> "$tmp/points"
n=$(grep -c "fault point" "$tmp/points")
echo "# $n fault points: $(sed -n 's/.*fault point [0-9]*: //p' "$tmp/points" | tr '\n' ' ')"
check "the update passes at least 10 fault points" test "$n" -ge 10
for k in $(seq "$n"); do
	rm -rf "$SL" && cp -a "$tmp/cs-base" "$SL"
	NIBBLE_FAULT=$k upd "$tmp/v2.nib" > "$tmp/kill.log" 2>&1
	rc=$?
	point=$(sed -n 's/.*fault injected at point [0-9]* (\(.*\)).*/\1/p' "$tmp/kill.log")
	check_output "killed at point $k ($point)" "^137\$" echo $rc
	boot
	check_output "killed at $point: the board starts from a good slot" \
		"running slot [ab] \(version [12]\).*ready" sh -c "tr '\n' ' ' < \"$tmp/boot.log\""
	check_output "killed at $point: the update run again completes" "installed on trial|already installed" \
		upd "$tmp/v2.nib"
	boot
	check_output "killed at $point: then version 2 is committed" "b +committed +version 2 " status
	check "killed at $point: no temporary file is left" test -z "$(find "$SL" -name '*.tmp')"
done
rm -rf "$SL" && cp -a "$tmp/cs-base" "$SL"
NIBBLE_FAULT=$((n + 1)) upd "$tmp/v2.nib" > /dev/null 2>&1
check_output "past the last point the update runs to its end" "^0\$" echo $?
