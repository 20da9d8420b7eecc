#!/bin/sh
# `nibble quantize` on the bundled model: every type by round-to-nearest,
# the 4-bit types by AWQ and GPTQ (calibrated on the first 60 stories of
# the dev text), each image checked by `inspect --check` and for the tensor
# sizes its format implies; AWQ and GPTQ measured against RTN on the held-out
# stories; bad sources and options fail cleanly.
# Needs build/t-x86_64/nibble (tests/run.sh builds it).
set -u
. tests/lib.sh
NB=${NIBBLE:-build/t-x86_64/nibble}
M=models/stories260K
TEXT=tests/data/text/tinystories-valid-dev.txt
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# split_text N CALIB EVAL: the first N documents (each ended by a line
# <|endoftext|>) to CALIB, the rest to EVAL.
split_text() {
	awk -v n="$1" -v calib="$2" -v ev="$3" '
		{ if (d < n) print > calib; else print > ev }
		/^<\|endoftext\|>$/ { d++ }' "$TEXT"
}
split_text 60 "$tmp/calib.txt" "$tmp/eval.txt"
check "the dev text splits into 60 calibration and 41 held-out stories" sh -c \
	"[ \$(grep -c '^<|endoftext|>\$' $tmp/calib.txt) = 60 ] && [ \$(grep -c '^<|endoftext|>\$' $tmp/eval.txt) = 40 ]"

# expect_sizes IMAGE TYPE: every matrix is TYPE (except names given as
# NAME=TYPE after it), every vector f32, and each size is what the
# type implies: ceil(rows/4) * ceil(cols/G) blocks of the type's size.
expect_sizes() {
	_img=$1 _type=$2
	shift 2
	"$NB" inspect "$_img" | awk -v want="$_type" -v over="$*" '
		BEGIN {
			g["q4_g32"] = 32; b["q4_g32"] = 72;  g["q4_g128"] = 128; b["q4_g128"] = 264
			g["q4_g64"] = 64; b["q4_g64"] = 136
			g["q4z_g32"] = 32; b["q4z_g32"] = 76; g["q4z_g128"] = 128; b["q4z_g128"] = 268
			g["q8_g32"] = 32; b["q8_g32"] = 136
			n = split(over, kv, " ")
			for (i = 1; i <= n; i++) { split(kv[i], p, "="); o[p[1]] = p[2] }
		}
		/^  [a-z_.0-9]+ +[a-z0-9_]+ +[0-9]+/ {
			name = $1; type = $2; rows = $3
			cols = ($4 == "x") ? $5 : 0
			size = $NF
			if (cols == 0) { exp_t = "f32"; exp_s = rows * 4 }
			else {
				exp_t = (name in o) ? o[name] : want
				if (exp_t == "f32") exp_s = rows * cols * 4
				else exp_s = int((rows + 3) / 4) * int((cols + g[exp_t] - 1) / g[exp_t]) * b[exp_t]
			}
			if (type != exp_t || size != exp_s) {
				printf "%s: %s %s bytes, expected %s %s\n", name, type, size, exp_t, exp_s
				bad = 1
			}
			seen++
		}
		END { if (seen != 47) { print "saw " seen " tensors"; bad = 1 } exit bad }'
}

check "convert the bundled model to float32" "$NB" convert "$M/stories260K.bin" -o "$tmp/f32.nib"
for t in q4_g32 q4_g64 q4_g128 q4z_g32 q4z_g128 q8_g32; do
	check "quantize $t by rtn" "$NB" quantize "$M/stories260K.bin" -o "$tmp/$t-rtn.nib" --type $t
done
for t in q4_g32 q4_g128 q4z_g32 q4z_g128; do
	for m in awq gptq; do
		check "quantize $t by $m" "$NB" quantize "$tmp/f32.nib" -o "$tmp/$t-$m.nib" --type $t \
			--method $m --calib "$tmp/calib.txt" --calib-tokens 1024
	done
done
check "gptq with act-order and damping" "$NB" quantize "$tmp/f32.nib" -o "$tmp/act.nib" \
	--type q4_g128 --method gptq --act-order --damp 0.05 --calib "$tmp/calib.txt" --calib-tokens 512
check "--keep gives the embedding q8 and ffn_down f32" "$NB" quantize "$tmp/f32.nib" \
	-o "$tmp/keep.nib" --type q4z_g32 --keep q8:output --keep f32:ffn_down,blk.0.attn_q

for i in "$tmp"/q*.nib "$tmp/act.nib" "$tmp/keep.nib"; do
	check_output "$(basename "$i") reproduces its golden vector" "golden vector reproduced exactly" \
		"$NB" inspect --check "$i"
done
for t in q4_g32 q4_g64 q4_g128 q4z_g32 q4z_g128 q8_g32; do
	check "$t-rtn.nib: types and sizes as the format implies" expect_sizes "$tmp/$t-rtn.nib" $t
done
check "q4z_g128-gptq.nib: types and sizes as the format implies" expect_sizes "$tmp/q4z_g128-gptq.nib" q4z_g128
check "keep.nib: kept tensors have their types and sizes" expect_sizes "$tmp/keep.nib" q4z_g32 \
	token_embd.weight=q8_g32 blk.0.attn_q.weight=f32 blk.0.ffn_down.weight=f32 \
	blk.1.ffn_down.weight=f32 blk.2.ffn_down.weight=f32 blk.3.ffn_down.weight=f32 \
	blk.4.ffn_down.weight=f32
check_output "the manifest records the recipe" \
	"quantization q4_g128 gptq act-order damp 0.05 calib 512 tokens" "$NB" inspect "$tmp/act.nib"
check_output "the manifest records kept tensors" \
	"quantization q4z_g32 rtn; q8_g32: token_embd; f32: ffn_down, blk.0.attn_q" \
	"$NB" inspect "$tmp/keep.nib"
check "q4 images are under a fifth of float32" sh -c \
	"[ \$(wc -c < $tmp/q4_g32-rtn.nib) -lt \$((\$(wc -c < $tmp/f32.nib) / 5)) ]"
"$NB" quantize "$tmp/f32.nib" -o "$tmp/again.nib" --type q4_g32 --method gptq \
	--calib "$tmp/calib.txt" --calib-tokens 1024 2>/dev/null
check "quantizing is deterministic" cmp "$tmp/q4_g32-gptq.nib" "$tmp/again.nib"
check_output "q8_g32 generates the reference story" "^Once upon a time, there was a little girl named Lily" \
	"$NB" run -m "$tmp/q8_g32-rtn.nib" -p "Once upon a time" -n 12 --temp 0

# On the held-out stories: KL divergence from the float model (first 4096
# tokens, 256-token windows), AWQ and GPTQ below RTN of the same format.
kl() {
	"$NB" perplexity -m "$1" -f "$tmp/eval.txt" --ctx 256 --max-tokens 4096 \
		--kl-base "$tmp/f32.nib" 2>/dev/null | awk '/^KL/ { print $2 }'
}
for t in q4_g32 q4z_g128; do
	r=$(kl "$tmp/$t-rtn.nib")
	for m in awq gptq; do
		k=$(kl "$tmp/$t-$m.nib")
		check "$t: $m is closer to float32 than rtn on held-out text (KL $k < $r)" \
			awk -v a="$k" -v b="$r" 'BEGIN { exit !(a > 0 && a < b) }'
	done
done

# Group 64 (no group size is special; 172-column matrices pad their last
# group): between groups 32 and 128 in accuracy, and it tells the story.
k32=$(kl "$tmp/q4_g32-rtn.nib")
k64=$(kl "$tmp/q4_g64-rtn.nib")
k128=$(kl "$tmp/q4_g128-rtn.nib")
check "q4_g64: KL from float32 between q4_g32's and q4_g128's ($k32 <= $k64 <= $k128 * 1.05)" \
	awk -v a="$k32" -v b="$k64" -v c="$k128" 'BEGIN { exit !(a > 0 && a <= b && b <= c * 1.05) }'
check_output "q4_g64 generates the reference story" "^Once upon a time, there was a little girl named Lily" \
	"$NB" run -m "$tmp/q4_g64-rtn.nib" -p "Once upon a time" -n 12 --temp 0

# Bad input: a clear message and a failure status, never a crash.
check_fails "a missing source is named" 1 "$tmp/none.bin" \
	"$NB" quantize "$tmp/none.bin" -o "$tmp/out.nib" --type q4_g32
check_fails "a quantized image is not a source" 1 "float32 image" \
	"$NB" quantize "$tmp/q4_g32-rtn.nib" -o "$tmp/out.nib" --type q4_g32
head -c 100000 "$tmp/f32.nib" > "$tmp/trunc.nib"
check_fails "a truncated image fails" 1 "trunc.nib" \
	"$NB" quantize "$tmp/trunc.nib" -o "$tmp/out.nib" --type q4_g32
check_fails "an unknown --type is a usage error" 2 "unknown type 'q3_g32'" \
	"$NB" quantize "$tmp/f32.nib" -o "$tmp/out.nib" --type q3_g32
check_fails "a malformed --keep is a usage error" 2 "expected TYPE:NAME" \
	"$NB" quantize "$tmp/f32.nib" -o "$tmp/out.nib" --type q4_g32 --keep embed
check_fails "--keep of an unknown tensor" 1 "no tensor 'ffn_sideways'" \
	"$NB" quantize "$tmp/f32.nib" -o "$tmp/out.nib" --type q4_g32 --keep f32:ffn_sideways
check_fails "gptq without calibration text is a usage error" 2 "needs calibration text" \
	"$NB" quantize "$tmp/f32.nib" -o "$tmp/out.nib" --type q4_g32 --method gptq
check_fails "a missing calibration file is named" 1 "none.txt" \
	"$NB" quantize "$tmp/f32.nib" -o "$tmp/out.nib" --type q4_g32 --method awq --calib "$tmp/none.txt"
printf 'bad \377 byte\n' > "$tmp/bad.txt"
check_fails "calibration text that is not UTF-8" 1 "cannot tokenize" \
	"$NB" quantize "$tmp/f32.nib" -o "$tmp/out.nib" --type q4_g32 --method gptq --calib "$tmp/bad.txt"
check "a failed quantization leaves no output" test ! -e "$tmp/out.nib"
check "no temporary files are left behind" sh -c "! ls $tmp | grep -q tmp"
