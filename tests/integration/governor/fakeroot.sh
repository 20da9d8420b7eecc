#!/bin/sh
# fakeroot.sh DIR BOARD [TEMP_MC]: a fake sysfs tree of BOARD (rpi5 or
# jetson-orin-nano) under DIR, as the governor reads it: device-tree
# compatible, one thermal zone, cpufreq policy0 (4 CPUs), for the Jetson an
# INA3221 hwmon, and a /dev/gpiochip0 that is a plain file (no GPIO chip).
set -eu
dir=$1 board=$2 temp=${3:-50000}
mkdir -p "$dir/proc/device-tree" "$dir/sys/class/thermal/thermal_zone0" \
	"$dir/sys/devices/system/cpu/cpufreq/policy0" "$dir/dev"
case $board in
rpi5) printf 'raspberrypi,5-model-b\0brcm,bcm2712\0' > "$dir/proc/device-tree/compatible"
      echo cpu-thermal > "$dir/sys/class/thermal/thermal_zone0/type"
      max=2400000 min=1500000 ;;
jetson-orin-nano)
      printf 'nvidia,p3768-0000+p3767-0005\0nvidia,p3767-0005\0nvidia,tegra234\0' \
	      > "$dir/proc/device-tree/compatible"
      echo cpu-thermal > "$dir/sys/class/thermal/thermal_zone0/type"
      h=$dir/sys/class/hwmon/hwmon0
      mkdir -p "$h"
      echo ina3221 > "$h/name"
      echo VDD_IN > "$h/in1_label"; echo 5000 > "$h/in1_input"; echo 1000 > "$h/curr1_input"
      max=1510400 min=115200 ;;
*) echo "fakeroot.sh: unknown board $board" >&2; exit 2 ;;
esac
echo "$temp" > "$dir/sys/class/thermal/thermal_zone0/temp"
p=$dir/sys/devices/system/cpu/cpufreq/policy0
echo $max > "$p/cpuinfo_max_freq"; echo $min > "$p/cpuinfo_min_freq"
echo $max > "$p/scaling_max_freq"; echo $max > "$p/scaling_cur_freq"
: > "$dir/dev/gpiochip0"
