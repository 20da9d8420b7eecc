#!/bin/sh
# The layering check (tests/tools/layers.sh): it fails on an include that
# points up or sideways or at no file, naming the file and line, passes on a
# tree without one, and the real tree passes it.
set -u
. tests/lib.sh
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
L=$PWD/tests/tools/layers.sh

# A small tree of every layer, each file including only what it may.
t=$tmp/synthetic
mkdir -p "$t/runtime/base" "$t/kernels" "$t/firmware" "$t/board" "$t/runtime/text" \
	"$t/runtime/model" "$t/runtime/server" "$t/tools/import" "$t/tools/quant" "$t/runtime/applets"
printf '#include <stdio.h>\n' > "$t/runtime/base/err.h"
printf '#include "runtime/base/err.h"\n' > "$t/kernels/quant.c"
printf '#include "runtime/base/err.h"\n#include "generated/autoconf.h"\n' > "$t/runtime/text/tokenizer.c"
printf '#include "runtime/text/tokenizer.c"\n#include "kernels/quant.c"\n' > "$t/runtime/model/model.h"
printf '#include "runtime/model/model.h"\n' > "$t/runtime/server/server.h"
printf '#include "runtime/server/server.h"\n#include "runtime/model/model.h"\n' > "$t/runtime/applets/main.c"
check "a tree whose includes point down passes" sh "$L" "$t"

cp -r "$t" "$tmp/up"
printf '#include "runtime/base/err.h"\n#include "runtime/model/model.h"\n' > "$tmp/up/kernels/quant.c"
check_fails "an upward include (kernels -> runtime/model) fails, naming file and line" 1 \
	'^kernels/quant.c:2: includes runtime/model/model.h: upward' sh "$L" "$tmp/up"

cp -r "$t" "$tmp/side"
printf '#include "runtime/server/server.h"\n' >> "$tmp/side/runtime/text/tokenizer.c"
check_fails "a sideways include (runtime/text -> runtime/server) fails" 1 \
	'^runtime/text/tokenizer.c:3: includes runtime/server/server.h: (upward|sideways)' sh "$L" "$tmp/side"

cp -r "$t" "$tmp/kb"
printf '#include "board/gpio.h"\n' > "$tmp/kb/kernels/cpu.c"
printf '\n' > "$tmp/kb/board/gpio.h"
check_fails "a sideways include between siblings (kernels -> board) fails" 1 \
	'^kernels/cpu.c:1: includes board/gpio.h: sideways' sh "$L" "$tmp/kb"

cp -r "$t" "$tmp/missing"
printf '#include "runtime/base/errr.h"\n' >> "$tmp/missing/runtime/model/model.h"
check_fails "an include of a file that does not exist there fails" 1 \
	'^runtime/model/model.h:3: includes runtime/base/errr.h: no such file' sh "$L" "$tmp/missing"

cp -r "$t" "$tmp/rel"
printf '#include "err.h"\n' >> "$tmp/rel/runtime/base/err.h"
check_fails "an include relative to the file's folder fails (includes start at the source root)" 1 \
	'^runtime/base/err.h:2: includes err.h: no such file' sh "$L" "$tmp/rel"

cp -r "$t" "$tmp/new"
mkdir -p "$tmp/new/runtime/governor"
printf '\n' > "$tmp/new/runtime/governor/gov.c"
check_fails "a folder with no place in the layers fails" 1 \
	'^runtime/governor/gov.c: folder runtime/governor has no place' sh "$L" "$tmp/new"

# The real sources, with one upward include added to a copy of them.
mkdir "$tmp/real"
cp -r runtime kernels firmware board tools "$tmp/real/"
printf '#include "runtime/model/model.h"\n' >> "$tmp/real/kernels/quant.c"
n=$(wc -l < kernels/quant.c)
check_fails "a copy of the real tree with kernels/quant.c including runtime/model fails" 1 \
	"^kernels/quant.c:$((n + 1)): includes runtime/model/model.h: upward" sh "$L" "$tmp/real"

check "the real tree's includes follow the layers" sh "$L" .
