#!/bin/sh
# The power/thermal governor: the real `nibble serve` under sustained load
# while a first-order thermal model of a Raspberry Pi 5
# (tests/integration/governor/thermal.py; parameters and sources in
# docs/governor.md) turns the CPU time the server takes into the fake
# thermal zone under --sysfs-root. Simulated time runs 10x faster than wall
# time (the model's time constant of 70 s is 7 s here, and the governor
# ticks every 0.1 s instead of 1 s, so the loop sees the same plant). Then
# a power budget on a Jetson tree (INA3221 rail written by the model), a
# step of ambient temperature, the admin endpoint, and faults: sensor files
# missing, unreadable, garbage and jumping, GPIO lines failing (no GPIO chip
# here: the real libgpiod calls report it; the recorder fails on demand),
# cpufreq not writable -- the server keeps serving and reports degraded.
# Needs build/t-x86_64/nibble. About 80 s.
set -u
. tests/lib.sh
NB=${NIBBLE:-build/t-x86_64/nibble}
tmp=$(mktemp -d)
SOCK=$tmp/s.sock
MODEL="python3 tests/integration/governor/thermal.py"
pid=
stop_server() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	pid=
}
cleanup() {
	stop_server
	rm -rf "$tmp"
}
trap cleanup EXIT
C="curl -s --max-time 30 --unix-socket $SOCK"

# start_server ROOT ARGS...: nibble serve on the fake tree ROOT, 2 threads,
# 4 slots, a governor tick of 0.1 s; waits until it is ready.
start_server() {
	_root=$1
	shift
	"$NB" serve -m "$tmp/m.nib" -s "$SOCK" -t 2 --slots 4 --sysfs-root "$_root" \
		--governor-interval 0.1 "$@" 2>> "$tmp/serve.log" &
	pid=$!
	for _i in $(seq 100); do
		$C http://x/health 2>/dev/null | grep -q '"status":"\(ready\|degraded\)"' && return 0
		sleep 0.1
	done
	echo "# the server did not start"; tail -5 "$tmp/serve.log" | sed 's/^/#   /'
}
# field JSON KEY: a number (or None) of a flat JSON object.
field() {
	printf '%s' "$1" | python3 -c 'import json,sys; v=json.load(sys.stdin)[sys.argv[1]]; print(v)' "$2"
}
# expr: a Python expression that must be true.
holds() {
	python3 -c "import sys; sys.exit(0 if ($1) else 1)"
}
newroot() {
	rm -rf "$tmp/root"
	sh tests/integration/governor/fakeroot.sh "$tmp/root" "$@"
}

"$NB" convert models/stories260K/stories260K.bin -o "$tmp/m.nib" 2>/dev/null

# ---- board detection and `nibble board` -------------------------------------
newroot rpi5 65000
check_output "nibble board: a Pi 5 tree is detected by its device-tree compatible" \
	"board: rpi5 \(Raspberry Pi 5\), detected by device-tree" "$NB" board --sysfs-root "$tmp/root"
check_output "nibble board: the zone with its value, cpufreq, the budgets" \
	"cpu-thermal +65.0 C.*policy0 +cur 2400 MHz.*balanced +target 77.0 C \(default\)" \
	sh -c "'$NB' board -r '$tmp/root' | tr '\n' ' '"
check_output "nibble board: libgpiod reports a /dev/gpiochip0 that is no GPIO chip" \
	"gpiochip0: not a GPIO chip" "$NB" board -r "$tmp/root"
check_output "nibble board --board forces the board" "board: rpi4 .* detected by forced" \
	"$NB" board -r "$tmp/root" --board rpi4
check_usage "nibble board --board with an unknown board" \
	"board: --board: no board 'rpi9' .*" "$NB" board --board rpi9
check_usage "nibble serve --governor with an unknown mode" \
	"serve: --governor: 'fast' is not one of .*" "$NB" serve -m x --governor fast
newroot jetson-orin-nano
check_output "nibble board: the Jetson's INA3221 VDD_IN rail" \
	"VDD_IN +5.00 W" "$NB" board -r "$tmp/root"
check_output "nibble board: an empty root is the generic board, no zone" \
	"board: x86_64 .*fallback" "$NB" board -r "$tmp"

# ---- thermal: governor off overshoots, on holds the target ------------------
newroot rpi5 70000
start_server "$tmp/root" --governor off --gpio none
off=$($MODEL --root "$tmp/root" --pid "$pid" --sock "$SOCK" --seconds 8)
stop_server
echo "# governor off: $off"
check "governor off: the model overshoots the target + 1 C (the test can fail)" \
	holds "$(field "$off" max_t) > 78 and $(field "$off" errors) == 0"

newroot rpi5 70000
start_server "$tmp/root" --governor balanced --gpio "record:$tmp/gpio.log"
on=$($MODEL --root "$tmp/root" --pid "$pid" --sock "$SOCK" --seconds 18)
echo "# governor on: $on"
check "governor on: at most target + 1 C (78 C) after the first crossing" \
	holds "$(field "$on" crossed_at) != None and $(field "$on" max_after_cross) <= 78"
# The bound: tokens per unit of load at full load (the off run) times the
# load that holds the target in the model (u_star).
bound=$(python3 -c "print($(field "$off" tokens_per_s) / $(field "$off" mean_u) * $(field "$on" u_star))")
echo "# thermal bound $bound tokens/s; governed $(field "$on" tokens_per_s_after_cross) tokens/s"
check "governor on: throughput after the crossing >= 80% of the thermal bound" \
	holds "$(field "$on" tokens_per_s_after_cross) >= 0.8 * $bound and $(field "$on" errors) == 0"
check_output "/metrics: temperature by zone, level, threads, transitions" \
	'nibble_temperature_celsius\{zone="cpu-thermal"\} 7[0-9]\..*nibble_governor_active_threads [12].*nibble_governor_transitions_total [1-9]' \
	sh -c "$C http://x/metrics | tr '\n' ' '"
check_output "/health: the governor's state" \
	'"governor":\{"board":"rpi5","mode":"balanced".*"target_c":77.00' $C http://x/health
check_output "/health: the fan is on above target - 10 C" '"fan":true' $C http://x/health
check "the LED blinked (several changes of pinctrl-rp1:17)" \
	holds "$(grep -c 'pinctrl-rp1:17' "$tmp/gpio.log") >= 4"
# admin endpoint
check_output "POST /admin/governor: quiet mode lowers the target to 65 C" '"mode":"quiet".*"target_c":65.00' \
	$C http://x/admin/governor -d '{"mode":"quiet","budget_w":4.5}'
check_output "GET /admin/governor: the budget set" '"budget_w":4.50' $C http://x/admin/governor
check_output "POST /admin/governor: a bad mode is a 400" '^400$' \
	$C -o /dev/null -w '%{http_code}' http://x/admin/governor -d '{"mode":"turbo"}'
check_output "POST /admin/governor: not JSON is a 400" '^400$' \
	$C -o /dev/null -w '%{http_code}' http://x/admin/governor -d 'mode=quiet'
# GPIO failure through the recorder: the line is dropped, serving goes on
touch "$tmp/gpio.log.fail"
sleep 0.5
check_output "GPIO failing: /health says degraded, why" '"status":"degraded".*gpio led failed' \
	$C http://x/health
check_output "GPIO failing: completions still served" '"finish_reason"' \
	$C http://x/v1/completions -d '{"prompt":"Once","max_tokens":4}'
stop_server

# ---- power budget (Jetson Orin Nano tree: INA3221 VDD_IN) -------------------
newroot jetson-orin-nano
start_server "$tmp/root" --power-budget 5 --gpio none
pw=$($MODEL --root "$tmp/root" --pid "$pid" --sock "$SOCK" --seconds 12 --t0 40 --ambient 25 \
	--target 96 --settle 0.5)
stop_server
echo "# power budget 5 W: $pw"
check "power budget: mean power after settling within 5 W + 5% (full load: $(field "$off" mean_p) W)" \
	holds "$(field "$pw" mean_p) <= 5.25 and $(field "$pw" errors) == 0"
check "power budget: the budget is used, not undershot (>= 4.5 W)" \
	holds "$(field "$pw" mean_p) >= 4.5"

# ---- a step of ambient temperature ------------------------------------------
newroot rpi5 74000
start_server "$tmp/root" --gpio none
st=$($MODEL --root "$tmp/root" --pid "$pid" --sock "$SOCK" --seconds 16 --t0 74 --ambient 40 \
	--step 8:50)
stop_server
echo "# ambient 40 -> 50 C at 8 s: $st"
# A step of 10 C in the air reaches the die at once (10 C / tau in the
# model): it is seen only as it comes, so it may take 0.5 C more.
check "ambient step 40 -> 50 C: at most target + 1.5 C after the crossing, target + 1 C at the end" \
	holds "$(field "$st" max_after_cross) <= 78.5 and $(field "$st" final_t) <= 78"

# ---- nibble run ---------------------------------------------------------------
newroot rpi5 90000
rate() {
	"$NB" run -m "$tmp/m.nib" -p Once -n 400 --no-echo --seed 1 -v "$@" 2>&1 >/dev/null |
		sed -n 's/^generated: .* \([0-9.]*\) tok\/s after the first$/\1/p'
}
free_rate=$(rate)
hot_rate=$(rate --sysfs-root "$tmp/root" --governor-interval 0.02 --gpio none)
echo "# nibble run: $free_rate tokens/s without the governor, $hot_rate at 90 C with it"
check "nibble run: at 90 C the governor slows generation to under half" \
	holds "${hot_rate:-1e9} < 0.5 * ${free_rate:-0}"
check_usage "nibble run --gpio with a bad value" \
	"run: --gpio: 'spi' is not gpiod, none or record:FILE \(see nibble run --help\)" "$NB" run -m x --gpio spi

# ---- faults ------------------------------------------------------------------
newroot rpi5 80000
rm "$tmp/root/sys/devices/system/cpu/cpufreq/policy0/scaling_max_freq"
mkdir "$tmp/root/sys/devices/system/cpu/cpufreq/policy0/scaling_max_freq"
start_server "$tmp/root"
Z=$tmp/root/sys/class/thermal/thermal_zone0/temp
serves() {
	$C http://x/v1/completions -d '{"prompt":"Once","max_tokens":4}' | grep -q '"finish_reason"'
}
sleep 0.4
check_output "faults: no GPIO chip here: the real libgpiod path reports it" \
	"GPIO chip 'pinctrl-rp1' not found under .*no GPIO chip at all" cat "$tmp/serve.log"
check_output "faults: cpufreq not writable, GPIO lines missing: degraded, why" \
	'"status":"degraded".*cpufreq not writable.*gpio led failed' $C http://x/health
echo garbage > "$Z"; sleep 0.4
check_output "faults: a garbage zone file is reported" '"degraded".*cpu-thermal garbage' $C http://x/health
check "faults: served with a garbage zone file" serves
rm "$Z"; sleep 0.4
check_output "faults: a missing zone file is reported, the last value held" \
	'"temperature_c":80.00.*cpu-thermal missing' $C http://x/health
check "faults: served with a missing zone file" serves
mkdir "$Z"; sleep 0.4
check_output "faults: an unreadable zone file is reported" 'cpu-thermal unreadable' $C http://x/health
rmdir "$Z"; echo 80000 > "$Z"; sleep 0.4
echo 140000 > "$Z"; sleep 0.15
check_output "faults: a one-reading jump to 140 C is not believed" \
	'"temperature_c":80.00.*cpu-thermal jump' $C http://x/health
echo 80000 > "$Z"; sleep 0.4
check_output "faults: the zone reads again" '"temperature_c":80.00.*"why":"cpufreq' $C http://x/health
echo 95000 > "$Z"; sleep 0.6
check_output "faults: a jump that stays (95 C) is believed" '"temperature_c":95.00' $C http://x/health
check "faults: served after all of it" serves
check_output "faults: sensor faults counted in /metrics" 'nibble_governor_sensor_faults_total [1-9]' \
	$C http://x/metrics
stop_server
check "the server logged no crash" sh -c "! grep -Eqi 'sanitizer|segmentation|abort' '$tmp/serve.log'"
