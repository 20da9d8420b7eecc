#!/bin/sh
# `nibble perplexity` end to end: the per-document method reproduces the
# reference perplexity of the first 20000 tokens of the evaluation text
# (tests/data/stories260K/reference.json), the llama-perplexity windowing
# gives its counts, a model against itself or against the same weights from
# another format has KL 0, and bad input fails with a clear message.
# Needs build/t-x86_64/nibble (tests/run.sh builds it).
set -u
. tests/lib.sh
NB=${NIBBLE:-build/t-x86_64/nibble}
T=tests/data/text/tinystories-valid-dev.txt
R=tests/data/stories260K/reference.json
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# field NAME FILE: the value after "NAME:" in a summary.
field() { sed -n "s/^$1: *\([^ ]*\).*/\1/p" "$2"; }
# ref_entry ENTRY KEY: a number of reference.json's perplexity section.
ref_entry() { sed -n "/\"$1\"/,/}/s/.*\"$2\": *\([0-9.]*\).*/\1/p" "$R"; }
# within A B REL: |A / B - 1| <= REL.
within() { awk -v a="$1" -v b="$2" -v r="$3" 'BEGIN { d = a / b - 1; exit !(d <= r && -d <= r) }'; }
# between A LO HI: LO < A < HI.
between() { awk -v a="$1" -v lo="$2" -v hi="$3" 'BEGIN { exit !(a + 0 > lo && a + 0 < hi) }'; }

check "convert the bundled llama2.c model" "$NB" convert models/stories260K/stories260K.bin -o "$tmp/s.nib"
check "convert the GGUF F32 and Q4_0 files" sh -c "\"$NB\" convert tests/data/stories260K/gguf/stories260K-f32.gguf -o $tmp/f32.nib && \"$NB\" convert tests/data/stories260K/gguf/stories260K-q4_0.gguf -o $tmp/q4.nib"

# Per document, the stream cut to 20000 tokens: the reference's
# "first20000_tokens_base_llama2c_ref_f32" run (our text is the first part
# of the reference's slice, so the first 20000 tokens are the same).
e=first20000_tokens_base_llama2c_ref_f32
"$NB" perplexity -m "$tmp/s.nib" -f "$T" --max-tokens 20000 > "$tmp/docs" 2>&1
check "per document: $(ref_entry $e windows) windows, $(ref_entry $e predicted_positions) positions" \
	test "$(field tokens "$tmp/docs") $(field windows "$tmp/docs") $(field scored "$tmp/docs")" = \
	"$(ref_entry $e stream_tokens) $(ref_entry $e windows) $(ref_entry $e predicted_positions)"
check "per document: PPL $(field PPL "$tmp/docs") = reference $(ref_entry $e ppl) within 1e-4" \
	within "$(field PPL "$tmp/docs")" "$(ref_entry $e ppl)" 1e-4
check "per document: mean NLL $(field 'mean NLL' "$tmp/docs") = reference within 1e-5" \
	within "$(field 'mean NLL' "$tmp/docs")" "$(ref_entry $e mean_nll)" 1e-5

# llama-perplexity: 20 chunks of 256 with BOS first, 127 scored in each.
"$NB" perplexity -m "$tmp/s.nib" -f "$T" --llama-compat --max-tokens 5120 > "$tmp/llama" 2>&1
check "llama-compat: 20 chunks, 2540 scored positions" \
	test "$(field windows "$tmp/llama") $(field scored "$tmp/llama")" = "20 2540"
check "llama-compat: PPL $(field PPL "$tmp/llama") between 2 and 10" \
	between "$(field PPL "$tmp/llama")" 2 10

# KL divergence from a base model on the same windows.
"$NB" perplexity -m "$tmp/s.nib" -f "$T" --kl-base "$tmp/s.nib" --max-tokens 1024 -v \
	> "$tmp/self" 2> "$tmp/self.err"
check "an image against itself: KL 0, top-1 agreement 1" \
	test "$(field 'KL(base||model)' "$tmp/self") $(field 'top-1 agreement' "$tmp/self")" = \
	"0.00000000 1.000000"
check "an image against itself: the same PPL twice" \
	test "$(field PPL "$tmp/self")" = "$(field 'base PPL' "$tmp/self")"
check_output "-v prints a progress line per window" "window 4/4: 1020 positions" cat "$tmp/self.err"
"$NB" perplexity -m "$tmp/f32.nib" -f "$T" --llama-compat --kl-base "$tmp/s.nib" --max-tokens 1024 \
	> "$tmp/gguf" 2>&1
check "GGUF F32 against llama2.c: the same weights, KL 0" \
	test "$(field 'KL(base||model)' "$tmp/gguf") $(field 'top-1 agreement' "$tmp/gguf")" = \
	"0.00000000 1.000000"
"$NB" perplexity -m "$tmp/q4.nib" -f "$T" --kl-base "$tmp/s.nib" --max-tokens 1024 > "$tmp/q4" 2>&1
check "Q4_0 against F32: KL $(field 'KL(base||model)' "$tmp/q4") > 0" \
	between "$(field 'KL(base||model)' "$tmp/q4")" 0 100
check "Q4_0 against F32: top-1 agreement $(field 'top-1 agreement' "$tmp/q4") < 1" \
	between "$(field 'top-1 agreement' "$tmp/q4")" 0 1

check_output "--help documents both windowing methods" "Per-document method.*--llama-compat \(llama.cpp" \
	sh -c "\"$NB\" perplexity --help | tr '\n' ' '"

# Bad input: a clear message and a failure status, never a crash.
: > "$tmp/empty.txt"
printf 'Once upon\na \377 time\n' > "$tmp/bad.txt"
printf 'Once upon a time.\n' > "$tmp/short.txt"
check_fails "a missing text file is named" 1 "$tmp/none.txt: No such file" \
	"$NB" perplexity -m "$tmp/s.nib" -f "$tmp/none.txt"
check_fails "a missing model file is named" 1 "$tmp/none.nib: No such file" \
	"$NB" perplexity -m "$tmp/none.nib" -f "$T"
check_fails "an empty text" 1 "no text" "$NB" perplexity -m "$tmp/s.nib" -f "$tmp/empty.txt"
check_fails "invalid UTF-8 is located" 1 "not valid UTF-8 at byte offset 12 \(line 2\)" \
	"$NB" perplexity -m "$tmp/s.nib" -f "$tmp/bad.txt"
check_fails "a window longer than the model's context" 1 "longer than the model's context of 512" \
	"$NB" perplexity -m "$tmp/s.nib" -f "$T" --ctx 1024
check_fails "a text shorter than one window" 1 "fewer than one window of 256" \
	"$NB" perplexity -m "$tmp/s.nib" -f "$tmp/short.txt"
check_usage "a bad count is a usage error" "perplexity: --ctx: 'many' is not a whole number in 2\.\.[0-9]+" \
	"$NB" perplexity -m "$tmp/s.nib" -f "$T" --ctx many
