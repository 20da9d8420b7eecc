#!/bin/sh
# nibble serve: who gets in and what it costs. Options refused before
# anything starts, the socket's directory and group, TCP clients that
# cannot lock local ones out or make the server hold their bodies, idle
# connections without buffers, prompts tokenized off the event loop, no
# KV cache beside the slots'. Needs build/t-x86_64/nibble.
set -u
. tests/lib.sh
NB=${NIBBLE:-build/t-x86_64/nibble}
tmp=$(mktemp -d)
chmod 755 "$tmp" # other users reach the socket in the tests that switch user
SOCK=$tmp/nibble.sock
A="python3 tests/integration/server/admit.py"
PORT=$((20000 + ($$ + 7919) % 20000))
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT

"$NB" convert models/stories260K/stories260K.bin -o "$tmp/m.nib" 2>/dev/null
chmod 644 "$tmp/m.nib"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$tmp/key"
chmod 600 "$tmp/key"

wait_ready() {
	for i in $(seq 100); do
		curl -s --max-time 2 --unix-socket "$1" http://x/health 2>/dev/null | grep -q '"ready"' &&
			return 0
		sleep 0.1
	done
	return 1
}
vmrss() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }

# ---- refused before anything starts (a server that started anyway is
# stopped by timeout: exit 124) ----
S="timeout 5 $NB serve -m $tmp/m.nib -s $tmp/x.sock"
check_fails "--mode 999: usage error" 2 "--mode: '999' is not an octal permission mode" $S --mode 999
check_fails "--mode abc: usage error" 2 "--mode: 'abc'" $S --mode abc
check_fails "--mode 07777 (setuid, setgid, sticky): usage error" 2 "--mode: '07777'" $S --mode 07777
check_fails "--slots 2.5: usage error" 2 "--slots: '2.5' is not a whole number" $S --slots 2.5
check_fails "--allow-uid 4294967296 (root, truncated): usage error" 2 \
	"--allow-uid: '4294967296' is not a whole number in 0..4294967294" $S --allow-uid 4294967296
check_fails "--allow-gid with no such group: usage error" 2 "no group named 'no-such-group'" \
	$S --allow-gid no-such-group
check_fails "--ctx beyond the model: usage error naming --ctx and its limit" 2 \
	"serve: --ctx 100000: this model's context is at most 512 positions" $S --ctx 100000
check "-m DIRECTORY: the path and the cause, before any socket exists" sh -c "
	out=\$($S -m $tmp 2>&1); st=\$?
	echo \"\$out\"; [ \$st = 1 ] && echo \"\$out\" | grep -q '$tmp: not a regular file' &&
	! echo \"\$out\" | grep -q 'listening'"
printf 'has a space in it, 32 characters' > "$tmp/key.space"
chmod 600 "$tmp/key.space"
check_fails "an API key with a space is refused (it could never match)" 1 \
	"key.space has a character a Bearer token cannot carry \(byte 4, 0x20\)" \
	$S --listen 127.0.0.1:$PORT --api-key-file "$tmp/key.space"
head -c 3000 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$tmp/key.long"
chmod 600 "$tmp/key.long"
check_fails "an API key over 4096 bytes is refused, not cut" 1 "key.long is longer than 4096 bytes" \
	$S --listen 127.0.0.1:$PORT --api-key-file "$tmp/key.long"
check_fails "--group with no such group: says so" 1 \
	"--group no-such-group: there is no such group \(groupadd --system no-such-group" \
	$S --group no-such-group
check_fails "a missing socket directory is named" 1 \
	"the socket's directory $tmp/none/deeper does not exist|cannot create the socket's directory $tmp/none/deeper: No such file" \
	timeout 5 "$NB" serve -m "$tmp/m.nib" -s "$tmp/none/deeper/x.sock"
if [ "$(id -u)" = 0 ]; then
	# the README's /run/nibble example, as root: the directory is made
	group=$(getent group daemon > /dev/null && echo daemon || id -gn)
	mkdir "$tmp/run"
	"$NB" serve -m "$tmp/m.nib" -s "$tmp/run/nibble/nibble.sock" --group "$group" 2> "$tmp/run.log" &
	pid=$!
	wait_ready "$tmp/run/nibble/nibble.sock"
	check_output "as root, a missing socket directory is created (0750, the socket's group)" \
		"^drwxr-x--- .* $group " ls -ld "$tmp/run/nibble"
	check_output "... and the server answers there" '"status":"ready"' \
		curl -s --unix-socket "$tmp/run/nibble/nibble.sock" http://x/health
	kill "$pid"; wait "$pid"; pid=
	check_fails "not as root, a missing socket directory is an error naming it" 1 \
		"the socket's directory $tmp/run2 does not exist: create it first" \
		setpriv --reuid=65534 --regid=65534 --clear-groups \
		timeout 5 "$NB" serve -m "$tmp/m.nib" -s "$tmp/run2/nibble.sock"
fi

# ---- admission: TCP with a key beside the local socket ----
cp "$tmp/key" "$tmp/key.public"
chmod 644 "$tmp/key.public"
"$NB" serve -m "$tmp/m.nib" -s "$SOCK" --listen "127.0.0.1:$PORT" --api-key-file "$tmp/key.public" \
	--max-conns 40 2> "$tmp/serve.log" &
pid=$!
wait_ready "$SOCK"
check_output "a world-readable key file is warned about" "key.public can be read by every user" \
	cat "$tmp/serve.log"
check_output "TCP clients fill only their own connection limit: the local socket still gets in" \
	"^extra-tcp:refused local:200$" $A lockout "$PORT" "$SOCK" 40
check_output "a 401 closes the connection" "^401 closed$" $A close401 "$PORT"
check_output "HEAD without the key: a 401 without a body" "^HTTP/1.1 401 [A-Za-z ]+ body=0$" \
	python3 -c "
import socket
s = socket.create_connection(('127.0.0.1', $PORT))
s.sendall(b'HEAD /health HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n')
d = b''
while True:
    b = s.recv(65536)
    if not b:
        break
    d += b
head, _, body = d.partition(b'\\r\\n\\r\\n')
print(head.split(b'\\r\\n')[0].decode(), 'body=%d' % len(body))"
check_output "the key is checked after the head: 401 before any body is sent" \
	"^before-body:401$" $A early401 "$PORT"
sleep 0.3
out=$($A flood "$PORT" 40 1000000 "$pid")
check "40 unauthenticated 1 MB bodies leave the server under 8 MB bigger ($out)" \
	test "${out#grew-kib:}" -lt 8192
out=$($A idle "$SOCK" 30 1000000 "$pid")
check "30 idle local connections that sent 1 MB bodies hold no buffers ($out)" \
	sh -c "echo '$out' | grep -q '^codes:400 ' && test ${out#*grew-kib:} -lt 8192"
out=$($A stall "$SOCK" 6 250000)
check "long prompts are tokenized off the event loop: /health never waits for one ($out)" \
	sh -c "echo '$out' | grep -q '^codes:400 ' && test $(echo "$out" | sed 's/.*health:\([0-9]*\)%.*/\1/') -lt 40"
check_output "a prompt longer than the context: 400 context_length_exceeded with the numbers" \
	'"message":"This model.s maximum context length is 512 tokens; the prompt has [0-9]+ tokens and leaves no room for an answer".*"param":"prompt","code":"context_length_exceeded"' \
	curl -s --unix-socket "$SOCK" http://x/v1/completions \
	-d "{\"prompt\":\"$(head -c 3000 /dev/zero | tr '\0' 'a')\",\"max_tokens\":1}"
python3 -c "
import json; print(json.dumps({'prompt': ('Once upon a time there was a girl. ' * 8000)[:250000], 'max_tokens': 1}))" > "$tmp/long.json"
prlimit --pid "$pid" --as=$(( ($(awk '/^VmSize/ { print $2 }' "/proc/$pid/status") + 4096) * 1024 ))
check_output "no memory to tokenize a prompt: 503 saying so (not 400 'cannot be tokenized')" \
	'^503 .*"message":"the server is out of memory for this prompt now' \
	sh -c "curl -s -w '%{http_code} ' -o $tmp/oom --unix-socket $SOCK http://x/v1/completions -d @$tmp/long.json; cat $tmp/oom"
check_output "... and short prompts are still served" '"completion_tokens":4' \
	curl -s --unix-socket "$SOCK" http://x/v1/completions -d '{"prompt":"Once","max_tokens":4}'
kill "$pid"; wait "$pid"; pid=

if [ "$(id -u)" = 0 ]; then
	"$NB" serve -m "$tmp/m.nib" -s "$SOCK" --mode 0666 --allow-gid 4242 --allow-uid 0 \
		2> "$tmp/gid.log" &
	pid=$!
	wait_ready "$SOCK"
	check_output "--allow-gid admits members by supplementary group, refuses others" \
		"^member:200 other:(0|ConnectionResetError|BrokenPipeError)$" $A groups "$SOCK" 4242
	kill "$pid"; wait "$pid"; pid=
fi

# ---- the scheduler's forward pass has no KV cache of its own ----
"$NB" bench --synthetic smollm-135m --write-only --out "$tmp/s.nib" > /dev/null
"$NB" serve -m "$tmp/s.nib" -s "$SOCK" --slots 1 2> "$tmp/kv.log" &
pid=$!
wait_ready "$SOCK"
check_output "the default context is the model's, said in an info line" \
	"serve: context 2048 positions a sequence \(the model's\), 94.4 MB of KV cache each" cat "$tmp/kv.log"
rss=$(vmrss "$pid")
check "one slot at 2048 positions: one 94 MB KV cache resident, not two (VmRSS $rss KiB)" \
	test "$rss" -lt 150000
kill "$pid"; wait "$pid"; pid=
