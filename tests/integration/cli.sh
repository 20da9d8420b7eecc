#!/bin/sh
# The static x86_64 binary as a user meets it: multi-call dispatch, help,
# version, selftest, exit statuses. Needs build/t-x86_64/nibble (tests/run.sh).
set -u
. tests/lib.sh
NB=${NIBBLE:-build/t-x86_64/nibble}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

check_output "binary is statically linked" "statically linked" file "$NB"
check_output "--version names version, revision and board" \
	"^nibble [0-9]+\.[0-9]+\.[0-9]+ \(git [0-9a-f]+" "$NB" --version
check_output "--version lists Kconfig features" "features:.*KERNEL_AVX2" "$NB" --version
check_output "--version shows the board" "board: +x86_64" "$NB" --version
check_output "--help lists the applets" "selftest .*sha256 .*version " sh -c "\"$NB\" --help | tr '\n' ' '"
check_fails "no arguments: usage on stderr, status 2" 2 "usage: nibble" "$NB"
check_fails "unknown applet is named, status 2" 2 "unknown applet 'frobnicate'" "$NB" frobnicate
for a in $("$NB" --list); do
	check_output "$a --help describes it" "usage: nibble $a" "$NB" "$a" --help
done
check_output "selftest passes on this CPU" "selftest: [1-9][0-9]* passed, 0 failed" "$NB" selftest
check_output "selftest checks the AVX2 kernels here" "^ok +kernels/avx2 " "$NB" selftest

printf 'nibble\n' > "$tmp/f"
want=$(sha256sum "$tmp/f")
check_output "sha256 agrees with sha256sum" "^$want\$" "$NB" sha256 "$tmp/f"
check_fails "sha256 of a missing file fails and names it" 1 "$tmp/missing" "$NB" sha256 "$tmp/missing"

mkdir "$tmp/bin"
check "--install links every applet" "$NB" --install "$tmp/bin"
check_output "an applet link runs the applet (busybox style)" "^nibble .*git" "$tmp/bin/version"
check_fails "log level from NIBBLE_LOG=error hides nothing fatal" 2 "unknown applet" \
	env NIBBLE_LOG=error "$NB" nope

# Usage errors: one line in one format, exit status 2, before any work.
for a in bench chat convert inspect perplexity quantize run selftest serve sha256 version; do
	check_usage "$a: an unknown option is named as given" \
		"$a: unknown option '--bogus' \(see nibble $a --help\)" "$NB" "$a" --bogus
	check_usage "$a: an unknown short option" \
		"$a: unknown option '-Z' \(see nibble $a --help\)" "$NB" "$a" -Z
done
check_usage "version takes no argument" \
	"version: unexpected argument 'x' \(see nibble version --help\)" "$NB" version x
check_usage "an unknown short option inside a cluster is the one named" \
	"run: unknown option '-x' \(see nibble run --help\)" "$NB" run --no-echo -xv
check_usage "an ambiguous abbreviation lists the candidates" \
	"run: ambiguous option '--top' \(--top-k, --top-p\) \(see nibble run --help\)" \
	"$NB" run -m m.nib --top 1
check_usage "an argument to a flag" \
	"inspect: option '--check' takes no argument \(see nibble inspect --help\)" \
	"$NB" inspect --check=1 m.nib
for c in "bench --reps" "chat -n" "convert -o" "inspect" "perplexity -f" "quantize --type" \
	"run --temp" "run -m" "selftest --seed" "serve --socket" "sha256"; do
	set -- $c
	a=$1
	if [ $# = 1 ]; then
		what="no (image|FILE) \(MODEL.nib\)|no FILE"
	else
		what="option '$2' needs an argument"
	fi
	check_usage "$c: a missing argument" "$a: ($what) \(see nibble $a --help\)" "$NB" $c
done
check_usage "run: no model" "run: no model \(-m MODEL.nib\) \(see nibble run --help\)" "$NB" run -p hi
check_usage "run: an extra word" "run: unexpected argument 'x' \(see nibble run --help\)" \
	"$NB" run -m m.nib x
check_usage "quantize: no usage text after the error" \
	"quantize: no --type \(see nibble quantize --help\)" "$NB" quantize m.nib -o q.nib
check_usage "convert: no output" "convert: no output \(-o OUT.nib\) \(see nibble convert --help\)" \
	"$NB" convert m.bin
check_usage "serve: no model" \
	"serve: no model \(-m MODEL.nib or --slots-dir DIR\) \(see nibble serve --help\)" "$NB" serve
check_usage "serve: a model and slots" \
	"serve: -m and --slots-dir exclude each other \(see nibble serve --help\)" \
	"$NB" serve -m m.nib --slots-dir /nonexistent
check_usage "bench: no model" "bench: no model .* \(see nibble bench --help\)" "$NB" bench

# Bad values: "<applet>: <option>: '<value>' is not ...", exit 2. run's
# are checked before the model is opened (this one does not exist).
M="$tmp/none.nib"
while read -r opt val want; do
	check_usage "run $opt $val is refused before loading" \
		"run: $opt: '$val' is not a $want" "$NB" run -m "$M" -p hi "$opt" "$val"
done <<EOT
--n-predict 0 whole number in 1\.\.4294967295
--n-predict -1 whole number in 1\.\.4294967295
--n-predict abc whole number in 1\.\.4294967295
--temp -1 number in 0\.\.100
--temp abc number in 0\.\.100
--temp 1e9 number in 0\.\.100
--temp nan number in 0\.\.100
--top-p 2 number in \(0, 1\]
--top-p 0 number in \(0, 1\]
--min-p 1 number in \[0, 1\)
--repeat-penalty 0 number in \(0, 100\]
--repeat-last-n 5000 whole number in 0\.\.4096
--top-k -3 whole number in 0\.\.4294967295
--seed -1 whole number in 0\.\.18446744073709551615
--ctx 0 whole number in 1\.\.4294967295
--threads 0 whole number in 1\.\.[0-9]+
EOT
# chat talks to a server: a bad option must be refused before it connects
# (this socket does not exist).
S="$tmp/none.sock"
while read -r opt val want; do
	check_usage "chat $opt $val is refused before connecting" \
		"chat: $opt: '$val' is not a $want" "$NB" chat -s "$S" "$opt" "$val" hello
done <<EOT
--max-tokens 0 whole number in 1\.\.1048576
--max-tokens -1 whole number in 1\.\.1048576
--max-tokens abc whole number in 1\.\.1048576
--temp abc number in 0\.\.2
--temp 3 number in 0\.\.2
EOT
check_usage "run -n abc (short option) names the option" \
	"run: --n-predict: 'abc' is not a whole number in 1\.\.4294967295" "$NB" run -m "$M" -n abc
check_usage "chat -n 0 (short option) is refused before connecting" \
	"chat: --max-tokens: '0' is not a whole number in 1\.\.1048576" "$NB" chat -s "$S" -n 0 hello
while read -r a opt val want; do
	check_usage "$a $opt $val" "$a: $opt: '$val' is not $want" "$NB" $a "$opt" "$val"
done <<EOT
bench --threads 0 a whole number in 1\.\.[0-9]+
bench --synthetic bogus one of tinyllama, smollm-135m, stories260k, llama-3\.2-1b
bench --type q3 one of q4_g32, q4_g64, q4_g128, q4z_g32, q4z_g128, q8_g32
convert --golden-steps 0 a whole number in 1\.\.4096
convert --model-version -1 a whole number in 1\.\.18446744073709551615
convert --format bogus one of llama2c, hf, gguf, nib
quantize --calib-tokens 0 a whole number in 1\.\.1048576
quantize --damp 0 a number in \(0, 1\]
quantize --golden-steps x a whole number in 1\.\.4096
quantize --model-version abc a whole number in 1\.\.18446744073709551615
quantize --method bogus one of rtn, awq, gptq
perplexity --ctx many a whole number in 2\.\.4294967295
perplexity --ctx 1 a whole number in 2\.\.4294967295
perplexity --max-tokens -5 a whole number in 0\.\.[0-9]+
selftest --seed x a whole number in 0\.\.18446744073709551615
EOT
check_usage "serve --listen that is not HOST:PORT is a usage error" \
	"serve: --listen: 'notaport' is not HOST:PORT \(e\.g\. 127\.0\.0\.1:8080\)" \
	"$NB" serve -m "$M" --listen notaport
check_usage "serve --listen with a host that is not numeric" \
	"serve: --listen: 'localhost:8080' is not a numeric address and port" \
	"$NB" serve -m "$M" --listen localhost:8080
check_usage "serve --listen without a key is a usage error" \
	"serve: --listen needs --api-key-file .* \(see nibble serve --help\)" \
	"$NB" serve -m "$M" --listen 127.0.0.1:8080

# serve --config FILE: options one a line; the command line's win.
"$NB" convert models/stories260K/stories260K.bin -o "$tmp/cfg.nib" 2>/dev/null
printf '# serve settings\nsocket = %s\nslots 3\nmodel "%s"\nlocal-only = no\n' "$tmp/cfg.sock" "$tmp/cfg.nib" > "$tmp/serve.conf"
"$NB" serve --config "$tmp/serve.conf" --slots 2 2> "$tmp/cfg.log" &
cfg=$!
for i in $(seq 100); do
	curl -s --unix-socket "$tmp/cfg.sock" http://x/health 2>/dev/null | grep -q ready && break
	sleep 0.05
done
check_output "serve --config: the file's socket and model, the command line's --slots" '"slots":2,' \
	curl -s --unix-socket "$tmp/cfg.sock" http://x/health
kill $cfg; wait $cfg
printf 'socket = x\nslots = many\n' > "$tmp/bad.conf"
check_usage "serve --config: a bad value names the option" \
	"serve: --slots: 'many' is not a whole number in 1\.\.256" "$NB" serve --config "$tmp/bad.conf"
printf 'socket = x\nsokcet = y\n' > "$tmp/bad.conf"
check_usage "serve --config: an unknown option names the file and line" \
	"serve: $tmp/bad.conf:2: unknown option 'sokcet'" "$NB" serve --config "$tmp/bad.conf"
check_usage "serve --config: a missing file" \
	"serve: --config $tmp/none.conf: No such file or directory" "$NB" serve --config "$tmp/none.conf"

for a in $("$NB" --list); do
	check "$a --help shows no Kconfig symbol names" sh -c "! \"$NB\" $a --help | grep CONFIG_"
done
check_output "run --help: the thread limit is a number" "at most [0-9]+\)" "$NB" run --help
check_output "run --help: the sampling order and neutral penalty are documented" \
	"repeat-penalty R .*= off \(1\).*in this order" sh -c "\"$NB\" run --help | tr '\n' ' '"
check_output "NIBBLE_LOG=bogus is reported" \
	"^nibble: warn: NIBBLE_LOG='bogus' is not a log level .*ignored" env NIBBLE_LOG=bogus "$NB" version
check "NIBBLE_LOG=debug: debug messages are compiled into the default build" \
	sh -c "! env NIBBLE_LOG=debug \"$NB\" version 2>&1 | grep 'not compiled'"
printf x > "$tmp/-f"
check "sha256 -- takes a file name that starts with a dash" sh -c \
	"cd \"$tmp\" && \"$(realpath "$NB")\" sha256 -- -f | grep -q '  -f\$'"

strip -o "$tmp/nibble.stripped" "$NB"
size=$(stat -c %s "$tmp/nibble.stripped")
echo "# stripped size: $size bytes"
check "stripped binary is under the 2 MB budget ($size bytes)" test "$size" -lt 2097152
