#!/bin/sh
# Checks the #include "..." lines of runtime/, kernels/, firmware/, board/
# and tools/ against the layers of docs/ARCHITECTURE.md. Usage:
# layers.sh [ROOT]; prints one line per offending include (file:line, what
# it includes, why) and exits 1 if there is any.
#
# An include must name a file that exists at that path under ROOT (every
# include is written from the source root; generated/ headers live in the
# object tree) and point at the including folder or one below it. Each
# folder may include itself and the folders listed for it below. A folder
# not listed is an error too: a new folder must be given its place here.
set -u
root=${1:-.}
cd "$root" || exit 2

sources=$(find runtime kernels firmware board tools -name '*.[ch]' 2>/dev/null | LC_ALL=C sort)
[ -n "$sources" ] || { echo "layers.sh: no sources under $root" >&2; exit 2; }

# The first file named is the list of every file of the tree; the others are
# the sources to check.
find . -type f ! -path './build/*' ! -path './.git/*' | sed 's|^\./||' |
awk '
BEGIN {
	may["runtime/base"] = "runtime/base"
	may["kernels"] = "runtime/base kernels"
	may["firmware"] = "runtime/base kernels firmware"
	may["board"] = "runtime/base board"
	may["runtime/text"] = "runtime/base runtime/text"
	may["runtime/model"] = "runtime/base kernels firmware runtime/text runtime/model"
	may["runtime/server"] = "runtime/base kernels firmware board runtime/text runtime/model runtime/server"
	may["tools/import"] = "runtime/base kernels firmware runtime/text runtime/model tools/import"
	may["tools/quant"] = "runtime/base kernels firmware runtime/text runtime/model tools/import tools/quant"
	may["runtime/applets"] = "runtime/base kernels firmware board runtime/text runtime/model runtime/server tools/import tools/quant runtime/applets"
	bad = 0
}
function dir(path) { sub(/\/[^\/]*$/, "", path); return path }
function allows(from, to) { return index(" " may[from] " ", " " to " ") > 0 }
FILENAME == "-" { exists[$0] = 1; next }
FNR == 1 {
	here = dir(FILENAME)
	if (!(here in may)) {
		print FILENAME ": folder " here " has no place in the layers (tests/tools/layers.sh)"
		bad = 1
	}
}
/^[ \t]*#[ \t]*include[ \t]*"/ {
	if (!(here in may))
		next
	split($0, q, "\"")
	inc = q[2]
	if (inc ~ /^generated\//)
		next
	if (!(inc in exists)) {
		print FILENAME ":" FNR ": includes " inc ": no such file (includes are written from the source root)"
		bad = 1
		next
	}
	to = dir(inc)
	if (allows(here, to))
		next
	why = (to in may && allows(to, here)) ? "upward: " to " is above " here : "sideways: " to " is not below " here
	print FILENAME ":" FNR ": includes " inc ": " why "; " here " may include only " may[here]
	bad = 1
}
END { exit bad }
' - $sources
