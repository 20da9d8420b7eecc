#!/bin/sh
# Checks that #include "..." lines only point down the layers of
# docs/ARCHITECTURE.md. Usage: layers.sh [ROOT]; prints one line per
# forbidden include and exits 1 if there is any.
#
# Each folder may include itself and the folders listed after it. A folder
# not listed is an error too: a new folder must be given its place here.
set -u
root=${1:-.}

allowed() {
	case $1 in
	runtime/base) echo "runtime/base" ;;
	kernels) echo "runtime/base kernels" ;;
	firmware) echo "runtime/base kernels firmware" ;;
	board) echo "runtime/base board" ;;
	runtime/text) echo "runtime/base runtime/text" ;;
	runtime/model) echo "runtime/base kernels firmware runtime/text runtime/model" ;;
	runtime/server) echo "runtime/base kernels firmware board runtime/text runtime/model runtime/server" ;;
	tools/import) echo "runtime/base kernels firmware runtime/text runtime/model tools/import" ;;
	tools/quant) echo "runtime/base kernels firmware runtime/text runtime/model tools/import tools/quant" ;;
	runtime/applets) echo "runtime/base kernels firmware board runtime/text runtime/model runtime/server tools/import tools/quant runtime/applets" ;;
	*) echo "?" ;;
	esac
}

bad=0
for f in $(cd "$root" && find runtime kernels firmware board tools -name '*.[ch]' 2>/dev/null | sort); do
	dir=$(dirname "$f")
	ok=$(allowed "$dir")
	if [ "$ok" = "?" ]; then
		echo "$f: folder $dir has no place in the layers (tests/tools/layers.sh)"
		bad=1
		continue
	fi
	for inc in $(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$root/$f"); do
		case $inc in generated/*) continue ;; esac
		to=$(dirname "$inc")
		case " $ok " in
		*" $to "*) ;;
		*)
			echo "$f: includes $inc: $dir may include only $ok"
			bad=1
			;;
		esac
	done
done
exit $bad
