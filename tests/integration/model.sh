#!/bin/sh
# Models from the command line: convert each source format, inspect and
# check the images, generate, and reject bad input with a clear message.
# Needs build/t-x86_64/nibble (tests/run.sh builds it).
set -u
. tests/lib.sh
NB=${NIBBLE:-build/t-x86_64/nibble}
M=models/stories260K
D=tests/data/stories260K
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

check "convert the bundled llama2.c model" "$NB" convert "$M/stories260K.bin" -o "$tmp/l.nib"
check "convert the HF directory" "$NB" convert "$D/hf" -o "$tmp/h.nib"
for q in f32 q8_0 q4_0; do
	check "convert GGUF $q" "$NB" convert "$D/gguf/stories260K-$q.gguf" -o "$tmp/g-$q.nib"
done
for i in l h g-f32 g-q8_0 g-q4_0; do
	check_output "$i.nib reproduces its golden vector" "golden vector reproduced exactly" \
		"$NB" inspect --check "$tmp/$i.nib"
done
check_output "inspect shows name, license and tensors" \
	"name +stories260K.*license +MIT License.*blk.4.ffn_down.weight +f32 +64 x 172" \
	sh -c "\"$NB\" inspect \"$tmp/l.nib\" | tr '\n' ' '"
# Same names, types, shapes and golden vector (the order of tensors may differ).
"$NB" inspect "$tmp/l.nib" | sed -n '/^tensors/,/^golden/p' | sed 's/ *offset.*//' | sort > "$tmp/t-l"
"$NB" inspect "$tmp/h.nib" | sed -n '/^tensors/,/^golden/p' | sed 's/ *offset.*//' | sort > "$tmp/t-h"
check "llama2.c and HF images have the same tensors and golden vector" cmp "$tmp/t-l" "$tmp/t-h"

story="Once upon a time, there was a little girl named Lily. She loved to play outside in the park."
check_output "greedy generation continues the reference story" "^$story" \
	"$NB" run -m "$tmp/l.nib" -p "Once upon a time" -n 40 --temp 0
check_output "the prompt can come from stdin" "^, there was a little girl\$" \
	sh -c "printf 'Once upon a time' | \"$NB\" run -m \"$tmp/h.nib\" -n 8 --temp 0 --no-echo"
a=$("$NB" run -m "$tmp/l.nib" -p "Once" -n 40 --seed 7 2>&1)
b=$("$NB" run -m "$tmp/l.nib" -p "Once" -n 40 --seed 7 2>&1)
c=$("$NB" run -m "$tmp/l.nib" -p "Once" -n 40 --seed 8 2>&1)
check "the same seed gives the same text" test "$a" = "$b"
check "another seed gives other text" test "$a" != "$c"
check_output "a stop string ends the text before it" "^Once upon a time, there was a little girl named \$" \
	"$NB" run -m "$tmp/l.nib" -p "Once upon a time" -n 40 --temp 0 --stop "Lily"
check_output "--verbose reports load, first token, speed and memory" \
	"load: .*first token: .*tok/s.*memory: resident [0-9]+ KiB" \
	sh -c "\"$NB\" run -m \"$tmp/l.nib\" -p Once -n 16 -v 2>&1 | tr '\n' ' '"
# A vocabulary without "▁" spells each space as 3 byte tokens: a prompt
# may need several times as many ids as it has bytes.
"$NB" bench --synthetic stories260k --write-only --out "$tmp/syn.nib" > /dev/null
check_output "byte fallback: a prompt of more tokens than bytes runs" "^a b c" \
	"$NB" run -m "$tmp/syn.nib" -p "a b c" -n 4 --temp 0

# Bad input: a clear message and a failure status, never a crash.
check_fails "invalid UTF-8 in the prompt" 1 "not valid UTF-8" \
	"$NB" run -m "$tmp/l.nib" -p "$(printf 'bad \377 byte')"
check_fails "a missing model file is named" 1 "$tmp/none.nib: No such file" \
	"$NB" run -m "$tmp/none.nib" -p x
head -c 100000 "$tmp/l.nib" > "$tmp/trunc.nib"
check_fails "a truncated image" 1 "not a valid model image" "$NB" run -m "$tmp/trunc.nib" -p x
head -c 8192 /dev/urandom > "$tmp/noise.nib"
check_fails "random bytes are not an image" 1 "bad magic" "$NB" inspect "$tmp/noise.nib"
check_fails "a prompt longer than the context" 1 "context holds 4" \
	"$NB" run -m "$tmp/l.nib" -p "Once upon a time there was" --ctx 4
check_usage "an unknown option is a usage error" \
	"run: unknown option '--frobnicate' \(see nibble run --help\)" "$NB" run -m "$tmp/l.nib" --frobnicate
check_fails "bench: a count that is not a number is a usage error" 2 \
	"--reps: 'x' is not a whole number in 1\.\.[0-9]+" "$NB" bench -m "$tmp/l.nib" --reps x
check_fails "bench: 0 threads is a usage error" 2 "--threads: '0' is not a whole number" \
	"$NB" bench -m "$tmp/l.nib" --threads 0
check_fails "a bad number is named" 2 "--temp: 'hot' is not a number" \
	"$NB" run -m "$tmp/l.nib" --temp hot
head -c 5000 "$D/gguf/stories260K-f32.gguf" > "$tmp/trunc.gguf"
check_fails "convert: a truncated GGUF fails" 1 "trunc.gguf" \
	"$NB" convert "$tmp/trunc.gguf" -o "$tmp/out.nib"
check "convert: a failed conversion leaves no output" test ! -e "$tmp/out.nib"
mkdir "$tmp/empty"
check_fails "convert: an HF directory without config.json" 1 "config.json" \
	"$NB" convert "$tmp/empty" -o "$tmp/out.nib"
check_fails "convert: a llama2.c file without a tokenizer" 1 "tokenizer" \
	sh -c "cp $M/stories260K.bin $tmp/empty/m.bin && \"$NB\" convert $tmp/empty/m.bin -o $tmp/out.nib"
check "convert: no temporary files are left behind" sh -c "! ls $tmp | grep -q tmp"
# The same checkpoint in llama2.c's version 1 layout ("ak42" header, other
# tensor order) is recognised as one and gives the same golden vector.
python3 - "$M/stories260K.bin" "$tmp/empty/v1.bin" <<'EOT'
import struct, sys
b = open(sys.argv[1], "rb").read()
dim, hid, nl, nh, nkv, voc, seq = struct.unpack("<7i", b[:28])
shared, voc, hd = voc > 0, abs(voc), dim // nh
sizes = [voc * dim, nl * dim, nl * dim * dim, nl * nkv * hd * dim, nl * nkv * hd * dim,
         nl * dim * dim, nl * dim, nl * hid * dim, nl * dim * hid, nl * hid * dim, dim,
         seq * hd // 2, seq * hd // 2] + ([] if shared else [voc * dim])
seg, off = [], 28
for n in sizes:
    seg.append(b[off:off + 4 * n])
    off += 4 * n
head = struct.pack("<Ii7iB", 0x616b3432, 1, dim, hid, nl, nh, nkv, voc, seq, int(shared))
body = [seg[i] for i in (1, 6, 10, 0, 2, 3, 4, 5, 7, 8, 9)] + seg[13:]
open(sys.argv[2], "wb").write(head.ljust(256, b"\0") + b"".join(body))
EOT
check "convert: a llama2.c version 1 checkpoint" \
	"$NB" convert "$tmp/empty/v1.bin" -t "$M/tok512.bin" -o "$tmp/v1.nib"
check "... has the legacy file's golden vector" test \
	"$("$NB" inspect "$tmp/v1.nib" | grep '^golden')" = "$("$NB" inspect "$tmp/l.nib" | grep '^golden')"
rm -f "$tmp/empty/v1.bin"
# Errors name the file at fault and the real cause, once.
out=$("$NB" convert README.md -o "$tmp/out.nib" 2>&1)
check "convert: a file that is no model is called so" test "$?" = 1 -a \
	"$(printf '%s\n' "$out" | head -n 1)" = "nibble: error: convert: README.md: not a model: no llama2.c checkpoint, GGUF file, nibble image or HF directory (--format forces one)"
check "convert: ... and not a llama2.c file without a tokenizer" \
	sh -c "! printf '%s' \"\$1\" | grep -Eq 'tokenizer|not found'" - "$out"
out=$("$NB" convert "$M/stories260K.bin" -o /nonexistent/dir/c.nib 2>&1)
check "convert: an output directory that does not exist is blamed, not the source" test "$?" = 1 -a \
	"$out" = "nibble: error: convert: /nonexistent/dir/c.nib: cannot write in /nonexistent/dir: No such file or directory"
check_fails "quantize: the output is checked before the work" 1 \
	"^nibble: error: quantize: /nonexistent/q.nib: cannot write in /nonexistent: No such file" \
	"$NB" quantize "$tmp/l.nib" -o /nonexistent/q.nib --type q4_g32
check_fails "convert: an output that is a directory" 1 "convert: $tmp/empty: is a directory" \
	"$NB" convert "$M/stories260K.bin" -o "$tmp/empty"

# --temp 0 is greedy: the reference's greedy continuation of every prompt
# (the default repetition penalty is off).
mkdir "$tmp/ref"
python3 - "$D/reference.json" "$tmp/ref" <<'EOT'
import json, sys
for p in json.load(open(sys.argv[1]))["prompts"]:
    for ext, text in (("prompt", p["prompt"]), ("want", p["base"]["greedy_text"])):
        with open("%s/%s.%s" % (sys.argv[2], p["name"], ext), "w") as f:
            f.write(text)
EOT
for f in "$tmp"/ref/*.prompt; do
	name=$(basename "$f" .prompt)
	got=$("$NB" run -m "$tmp/l.nib" -p "$(cat "$f")" -n 48 --temp 0 --no-echo 2>/dev/null)
	check "run --temp 0 is the reference greedy continuation ($name, 48 tokens)" \
		test "$got" = "$(cat "$tmp/ref/$name.want")"
done

# Sampling options are checked before the model loads: nothing is echoed.
for bad in "--temp -1" "--top-p 2" "--min-p 1" "--repeat-penalty 0" "--temp 1e9"; do
	check_usage "run $bad is refused before the prompt is echoed" "run: ${bad%% *}: .*" \
		"$NB" run -m "$tmp/l.nib" -p "Once upon a time" $bad
done
check_output "-v shows the settings run used (debug messages are compiled in)" \
	"^nibble: debug: run: sampling: repeat-penalty 1 over 64 tokens, temp 0\.8, top-k 40, top-p 0\.95, min-p 0\.05, seed 5\$" \
	"$NB" -v run -m "$tmp/l.nib" -p Once -n 1 --seed 5
check_output "NIBBLE_LOG=debug shows them too" "^nibble: debug: run: .*l\.nib: 5 layers" \
	env NIBBLE_LOG=debug "$NB" run -m "$tmp/l.nib" -p Once -n 1

# chat against a real server: options checked before connecting (cli.sh),
# the server's own message when it refuses, its defaults when none given.
"$NB" serve -m "$tmp/l.nib" -s "$tmp/s.sock" --ctx 128 2> "$tmp/serve.log" &
spid=$!
for i in $(seq 100); do
	curl -s --unix-socket "$tmp/s.sock" http://x/health 2>/dev/null | grep -q '"ready"' && break
	sleep 0.1
done
check_fails "chat: a max-tokens beyond the server's cap: its message, not raw JSON" 1 \
	"^nibble: error: chat: the server refused the request \(HTTP 400\): .*max_tokens" \
	"$NB" chat -s "$tmp/s.sock" -n 100000 "Once upon a time"
check "chat: ... and no JSON on the screen" sh -c \
	"! \"$NB\" chat -s \"$tmp/s.sock\" -n 100000 hi 2>&1 | grep -q '{'"
check "chat without -n leaves max_tokens to the server (context of 128)" \
	"$NB" chat -s "$tmp/s.sock" "Once upon a time"
got=$(curl -s --unix-socket "$tmp/s.sock" http://x/v1/completions \
	-d '{"prompt":"Tom and Lily went to the park.","max_tokens":48,"temperature":0}' |
	python3 -c 'import json,sys; print(json.load(sys.stdin)["choices"][0]["text"])')
check "the server at temperature 0 is the reference greedy continuation (park)" \
	test "$got" = "$(cat "$tmp/ref/park.want")"
kill "$spid" 2>/dev/null
wait "$spid" 2>/dev/null
