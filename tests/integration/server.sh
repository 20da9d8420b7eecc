#!/bin/sh
# nibble serve over real sockets: curl, the official OpenAI Node client,
# raw malformed requests, slow and vanishing clients, and a clean SIGTERM.
# Needs build/t-x86_64/nibble (tests/run.sh builds it).
set -u
. tests/lib.sh
NB=${NIBBLE:-build/t-x86_64/nibble}
tmp=$(mktemp -d)
SOCK=$tmp/nibble.sock
RAW="python3 tests/integration/server/rawclient.py"
PORT=$((20000 + $$ % 20000))
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT

"$NB" convert models/stories260K/stories260K.bin -o "$tmp/m.nib" 2>/dev/null
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$tmp/key"
"$NB" serve -m "$tmp/m.nib" -s "$SOCK" --slots 4 --queue 32 --read-timeout 2 \
	--listen "127.0.0.1:$PORT" --api-key-file "$tmp/key" --grace 2 2> "$tmp/serve.log" &
pid=$!
C="curl -s --max-time 30 --unix-socket $SOCK"
# The socket is up before the model: wait for /health to say ready.
wait_ready() {
	for i in $(seq 200); do
		$C http://x/health 2>/dev/null | grep -q '"ready"' && return 0
		sleep 0.1
	done
	return 1
}
wait_ready

check_output "the socket exists with mode 0660" "^srw-rw----" ls -l "$SOCK"
check_output "GET /health: ready" '"status":"ready"' $C http://x/health
check_output "GET /v1/models names the model" '"id":"stories260K"' $C http://x/v1/models
check_output "POST /v1/completions continues the reference story, usage counted" \
	'"text":", there was a little girl named Lily.*"finish_reason":"length".*"completion_tokens":16' \
	$C http://x/v1/completions -d '{"prompt":"Once upon a time","max_tokens":16,"temperature":0}'
check_output "chat completion: assistant message and usage" \
	'"object":"chat.completion".*"role":"assistant".*"total_tokens"' \
	$C http://x/v1/chat/completions -d '{"messages":[{"role":"user","content":"Hi"}],"max_tokens":8}'
check_output "streaming: SSE chunks ending with data: [DONE]" \
	'chat.completion.chunk.*"finish_reason":"length".*data: \[DONE\]' \
	sh -c "$C -N http://x/v1/chat/completions -d '{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"max_tokens\":8,\"stream\":true}' | tr '\n' ' '"
check_output "stop strings end the answer before them" '"text":", there was a little girl named ","' \
	$C http://x/v1/completions -d '{"prompt":"Once upon a time","max_tokens":40,"temperature":0,"stop":["Lily"]}'
check_output "nibble chat streams an answer over the socket" "." "$NB" chat -s "$SOCK" -n 8 "Hello"

# Batching never changes results: 16 concurrent greedy requests, each must
# get exactly what it got alone.
set -- "Once upon a time" "The little dog" "Lily and Tom went" "One day, a bird" \
	"The sun was" "Tim had a red ball" "There was a big tree" "Sue wanted to" \
	"The cat sat" "Ben liked to play" "Mom said" "A little girl named" \
	"The frog jumped" "In the park" "Max was sad because" "They all"
i=0
for p in "$@"; do
	i=$((i + 1))
	$C http://x/v1/completions -d "{\"prompt\":\"$p\",\"max_tokens\":24,\"temperature\":0}" \
		| sed 's/"id":"[^"]*"//; s/"created":[0-9]*//' > "$tmp/alone.$i"
done
i=0
pids=
for p in "$@"; do
	i=$((i + 1))
	sh -c "$C http://x/v1/completions -d '{\"prompt\":\"$p\",\"max_tokens\":24,\"temperature\":0}' \
		| sed 's/\"id\":\"[^\"]*\"//; s/\"created\":[0-9]*//' > $tmp/together.$i" &
	pids="$pids $!"
done
wait $pids
same=0
for i in $(seq 16); do cmp -s "$tmp/alone.$i" "$tmp/together.$i" && same=$((same + 1)); done
check "16 concurrent greedy requests: each equals its run alone ($same/16)" test "$same" = 16
check_output "the concurrent answers are real completions" '"completion_tokens":24' cat "$tmp/together.1"

# Bad requests: an OpenAI error and the right status, the server keeps serving.
code() { curl -s -o "$tmp/body" -w '%{http_code}' --max-time 10 --unix-socket "$SOCK" "$@"; }
check "invalid JSON: 400" test "$(code http://x/v1/completions -d '{nope')" = 400
check_output "... with OpenAI's error JSON" '"error":.*"type":"invalid_request_error"' cat "$tmp/body"
check "wrong type: 400 naming the parameter" test "$(code http://x/v1/completions -d '{"prompt":"x","max_tokens":"many"}')" = 400
check_output "... param max_tokens" '"param":"max_tokens"' cat "$tmp/body"
check "unknown endpoint: 404" test "$(code http://x/v1/nothing)" = 404
check "GET on a POST endpoint: 405" test "$(code http://x/v1/completions)" = 405
head -c 2000000 /dev/zero | tr '\0' 'a' > "$tmp/big"
check "a 2 MB body: 413" test "$(code http://x/v1/completions --data-binary @"$tmp/big")" = 413
check_output "malformed request line: 400" "^400$" sh -c "printf 'GARBAGE\r\n\r\n' | $RAW raw $SOCK"
check_output "oversized headers: 431" "^431$" sh -c "python3 -c \"import sys; sys.stdout.write('GET /health HTTP/1.1\r\nX: ' + 'a'*20000 + '\r\n\r\n')\" | $RAW raw $SOCK"
check_output "HTTP/2.0: 505" "^505$" sh -c "printf 'GET /health HTTP/2.0\r\n\r\n' | $RAW raw $SOCK"
check_output "pipelined requests on one connection are all answered" "200.*200" \
	sh -c "printf 'GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' | python3 -c \"
import socket,sys
s=socket.socket(socket.AF_UNIX); s.connect('$SOCK'); s.sendall(sys.stdin.buffer.read())
d=b''
while True:
    b=s.recv(65536)
    if not b: break
    d+=b
import re; print(' '.join(c.decode() for c in re.findall(rb'HTTP/1.1 (\\d+)', d)))\""

fds_before=$(ls /proc/$pid/fd | wc -l)
# A slow client (one byte a second) gets 408 after --read-timeout while
# others are served meanwhile.
$RAW slow "$SOCK" > "$tmp/slow" &
slow=$!
sleep 0.5
check_output "others are served while a slow client dribbles" '"status":"ready"' $C http://x/health
wait $slow
check_output "the slow client gets 408" "^408$" cat "$tmp/slow"
check_output "200 connections opened and dropped" dropped $RAW drop "$SOCK" 200
check_output "a client vanishing mid-stream" abandoned $RAW abandon "$SOCK"
sleep 1
check_output "its slot was freed (busy_slots 0)" "^nibble_busy_slots 0$" sh -c "$C http://x/metrics | grep '^nibble_busy_slots'"
check_output "and its request counted as cancelled" 'outcome="cancelled"} [1-9]' $C http://x/metrics
fds_after=$(ls /proc/$pid/fd | wc -l)
check "no file descriptor leaked ($fds_before before, $fds_after after)" test "$fds_after" -le "$fds_before"
check_output "the server still answers" '"status":"ready"' $C http://x/health
check_output "/metrics: Prometheus text with latency histograms" \
	'nibble_time_to_first_token_seconds_bucket\{le="\+Inf"\} [1-9].*nibble_tokens_per_second' \
	sh -c "$C http://x/metrics | tr '\n' ' '"

# TCP needs the API key.
check "TCP without the key: 401" test "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$PORT/health)" = 401
check "TCP with the key: 200" test "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $(cat $tmp/key)" http://127.0.0.1:$PORT/health)" = 200

# The official OpenAI client library (npm "openai") against the TCP listener;
# skipped (and counted so) when the npm registry cannot be reached.
if ! (cd "$tmp" && timeout 60 npm ping --fetch-retries=0 > npm.log 2>&1); then
	skip "openai (Node): completions, chat, streaming, models" "$(command -v npm > /dev/null &&
		echo "npm registry $(npm config get registry) unreachable" || echo "no npm (tools/build/deps.sh test)")"
elif (cd "$tmp" && npm install --silent --no-audit --no-fund openai@4 > npm.log 2>&1); then
	cp tests/integration/server/openai_client.mjs "$tmp/"
	check_output "openai (Node): completions, chat, streaming, models, unknown model" \
		'completion:", there was a little girl named Lily.*finish:length usage:16.*chat:string role:assistant.*stream-chunks:[0-9]+.*models:stories260K unknown-model:404 model_not_found' \
		sh -c "cd $tmp && node openai_client.mjs http://127.0.0.1:$PORT/v1 $(cat $tmp/key) | tr '\n' ' '"
else
	echo "not ok - npm install openai failed"; sed 's/^/#   /' "$tmp/npm.log" | tail -5
fi

kill -TERM "$pid"; wait "$pid"; pid=

# SIGTERM on a model slow enough to be caught mid-answer (random SmolLM-135M
# weights): a short request finishes within --grace, a long stream is
# cancelled with an error event, the server exits 0 and removes its socket.
"$NB" bench --synthetic smollm-135m --write-only --out "$tmp/slow.nib" > /dev/null
"$NB" serve -m "$tmp/slow.nib" -s "$SOCK" --slots 2 --grace 1.5 2>> "$tmp/serve.log" &
pid=$!
wait_ready
# Both requests must really be in flight when SIGTERM comes (a request
# still queued, or a stream without its first token, gets a 503): the
# stream once its first event is out, the short request once it holds the
# second slot (or is answered already). Polled, never guessed with a sleep.
until_true() {
	for i in $(seq 600); do
		"$@" && return 0
		sleep 0.05
	done
	return 1
}
$C -N http://x/v1/completions -d '{"prompt":"Once","max_tokens":2000,"stream":true}' > "$tmp/cut" &
cut=$!
until_true grep -q '^data: ' "$tmp/cut"
$C http://x/v1/completions -d '{"prompt":"Once","max_tokens":3}' > "$tmp/short" &
short=$!
until_true sh -c "test -s $tmp/short || $C http://x/health | grep -q '\"busy_slots\":2'"
kill -TERM "$pid"
check_output "SIGTERM: no new connections (socket gone) or 503" "^(503|000)$" \
	sh -c "curl -s -o /dev/null -w '%{http_code}' --max-time 5 --unix-socket $SOCK http://x/health; true"
wait "$pid"
status=$?
pid=
wait $cut $short
check "SIGTERM: the server exits 0" test "$status" = 0
check "SIGTERM: the socket file is removed" test ! -e "$SOCK"
check_output "SIGTERM: a short request in flight still completes" '"completion_tokens":3' cat "$tmp/short"
check_output "SIGTERM: a long stream ends with an error event and [DONE]" '"error".*\[DONE\]' \
	sh -c "tr '\n' ' ' < $tmp/cut"
