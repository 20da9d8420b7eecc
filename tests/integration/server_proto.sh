#!/bin/sh
# nibble serve's protocol edges over real sockets: stream endings, HTTP/1.0
# (directly and behind a real nginx), pipelining past a full socket buffer,
# HEAD, half-closing clients, unknown models, prompts too long for the
# context, timestamps, token pacing and SIGTERM with queued streams.
# Needs build/t-x86_64/nibble (tests/run.sh builds it) and nginx.
set -u
. tests/lib.sh
NB=${NIBBLE:-build/t-x86_64/nibble}
tmp=$(mktemp -d)
SOCK=$tmp/nibble.sock
P="python3 tests/integration/server/proto.py"
pid= ngx=
cleanup() {
	[ -n "$ngx" ] && kill "$ngx" 2>/dev/null && wait "$ngx" 2>/dev/null
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT

"$NB" convert models/stories260K/stories260K.bin -o "$tmp/m.nib" 2>/dev/null
"$NB" serve -m "$tmp/m.nib" -s "$SOCK" --slots 2 -t 1 2> "$tmp/serve.log" &
pid=$!
C="curl -s --max-time 20 --unix-socket $SOCK"
wait_ready() {
	for i in $(seq 200); do
		$C http://x/health 2>/dev/null | grep -q '"ready"' && return 0
		sleep 0.1
	done
	return 1
}
wait_ready
start=$(date +%s)
REF=', there was a little girl named Lily. She loved to play'

# One finish chunk, then the usage chunk, then [DONE].
for ep in completions chat/completions; do
	case $ep in
	chat*) body='"messages":[{"role":"user","content":"Hi"}]' ;;
	*) body='"prompt":"Once upon a time"' ;;
	esac
	$C -N "http://x/v1/$ep" -d "{$body,\"max_tokens\":4,\"stream\":true,\"stream_options\":{\"include_usage\":true}}" > "$tmp/usage"
	check "include_usage, /v1/$ep: one finish chunk ($(grep -c '"finish_reason":"length"' "$tmp/usage"))" \
		test "$(grep -c '"finish_reason":"length"' "$tmp/usage")" = 1
	check_output "... then the usage chunk and [DONE]" \
		'"finish_reason":"length".*"choices":\[\],"usage":\{"prompt_tokens":[0-9]+,"completion_tokens":4.*data: \[DONE\]' \
		sh -c "tr '\n' ' ' < $tmp/usage"
done

check_output "a stream tells proxies not to buffer it" '^X-Accel-Buffering: no' \
	sh -c "$C -si http://x/v1/completions -d '{\"prompt\":\"Once\",\"max_tokens\":2,\"stream\":true}' | tr -d '\r'"

# Each token reaches a reading client on its own (two at most when the
# loop was late), never in a burst.
check_output "a stream sends every token as it comes (events vs tokens)" \
	'^events=(6[4-9]|[7-9][0-9]) tokens=96$' $P tokens "$SOCK" 96

# model: absent, or the name GET /v1/models lists; else 404.
name=$($C http://x/v1/models | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
check "GET /v1/models names the model ($name)" test "$name" = stories260K
code() { curl -s -o "$tmp/body" -w '%{http_code}' --max-time 20 --unix-socket "$SOCK" "$@"; }
check "model \"$name\": 200" test "$(code http://x/v1/completions -d "{\"model\":\"$name\",\"prompt\":\"Once\",\"max_tokens\":2}")" = 200
check "no model: 200" test "$(code http://x/v1/chat/completions -d '{"messages":[{"role":"user","content":"Hi"}],"max_tokens":2}')" = 200
check "model \"gpt-4o-mini\": 404" test "$(code http://x/v1/chat/completions -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hi"}]}')" = 404
check_output "... OpenAI's model_not_found" '"type":"invalid_request_error","param":"model","code":"model_not_found"' cat "$tmp/body"

# A prompt longer than the context (512 positions).
long=$(python3 -c 'print("Once upon a time there was a dog. " * 80)')
check "a prompt longer than the context: 400" \
	test "$(code http://x/v1/completions -d "{\"prompt\":\"$long\",\"max_tokens\":2}")" = 400
check_output "... code context_length_exceeded" '"param":"prompt","code":"context_length_exceeded"' cat "$tmp/body"

# HTTP/1.0: a stream without chunked coding, ended by the close.
check_output "HTTP/1.0 stream: close-delimited, complete" \
	"^200 stream te=- events=[0-9]+ finish=length done=1 text=\"$REF\" closed=True$" $P http10 "$SOCK"

# HEAD has no body: the next answer on the connection starts right after it.
check_output "HEAD then GET on one connection" \
	'^head=200 length=[0-9]+ then=200 \{"status":"ready".* rest=0 closed=True$' $P head "$SOCK"

# A client that half-closes after its request still gets the answer.
check_output "half-close after the request: the whole answer" \
	"^200 \{.*\"text\":\"$REF\".*\"completion_tokens\":16.* closed=True rest=0$" $P halfclose "$SOCK" whole
check_output "half-close after a streamed request: the whole stream" \
	"^200 stream te=chunked .*finish=length done=1 text=\"$REF\" closed=True rest=0$" $P halfclose "$SOCK" stream

# Pipelined requests behind an answer that filled the socket buffer.
check_output "pipelined requests behind a long answer are all answered" \
	'^answers=4 200:stream 200:stream 200:stream 200:\{"status":"ready".* closed=True$' $P pipeline "$SOCK" 3 480

# created is the time of the request, not of the server's start.
sleep $((start + 1 - $(date +%s) > 0 ? start + 1 - $(date +%s) : 0))
t0=$(date +%s)
created=$($C http://x/v1/completions -d '{"prompt":"Once","max_tokens":2}' | sed -n 's/.*"created":\([0-9]*\).*/\1/p')
check "created is the request's time ($created >= $t0 > start $start)" test "${created:-0}" -ge "$t0"

# nginx in front, speaking HTTP/1.0 to the socket (its default).
if command -v nginx > /dev/null; then
	port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
	mkdir -p "$tmp/ngx"
	cat > "$tmp/ngx/nginx.conf" <<-EOF
	daemon off;
	master_process off;
	pid $tmp/ngx/nginx.pid;
	error_log $tmp/ngx/error.log;
	events { worker_connections 64; }
	http {
		access_log off;
		client_body_temp_path $tmp/ngx/body;
		proxy_temp_path $tmp/ngx/proxy;
		fastcgi_temp_path $tmp/ngx/fastcgi;
		uwsgi_temp_path $tmp/ngx/uwsgi;
		scgi_temp_path $tmp/ngx/scgi;
		server {
			listen 127.0.0.1:$port;
			location / { proxy_pass http://unix:$SOCK:; }
		}
	}
	EOF
	nginx -p "$tmp/ngx" -c "$tmp/ngx/nginx.conf" -e "$tmp/ngx/error.log" &
	ngx=$!
	for i in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$port/health" && break; sleep 0.1; done
	N="curl -s --max-time 20 http://127.0.0.1:$port"
	# A late loop may send two tokens in one event: compare the joined text.
	check_output "through nginx: a streamed completion arrives complete" \
		"^text=\"$REF\" finish=length done=1$" \
		sh -c "$N/v1/completions -N -d '{\"prompt\":\"Once upon a time\",\"max_tokens\":16,\"temperature\":0,\"stream\":true}' | python3 tests/integration/server/sse_join.py"
	check_output "through nginx: a streamed chat completion arrives complete" \
		'chat.completion.chunk.*"finish_reason":"length".*data: \[DONE\]' \
		sh -c "$N/v1/chat/completions -N -d '{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"max_tokens\":8,\"stream\":true}' | tr '\n' ' '"
	check_output "through nginx: a whole completion" "\"text\":\"$REF\"" \
		$N/v1/completions -d '{"prompt":"Once upon a time","max_tokens":16,"temperature":0}'
	kill "$ngx"; wait "$ngx" 2>/dev/null; ngx=
else
	echo "not ok - nginx is not installed (tools/build/deps.sh installs it)"
fi

kill -TERM "$pid"; wait "$pid"; pid=

# SIGTERM with streams waiting for the one slot: the running one ends with
# an error event, the waiting ones get 503 (no stream was begun for them).
"$NB" serve -m "$tmp/m.nib" -s "$SOCK" --slots 1 --queue 8 --grace 0 -t 1 2>> "$tmp/serve.log" &
pid=$!
wait_ready
$P queued "$SOCK" 6 > "$tmp/queued" &
clients=$!
for i in $(seq 200); do
	$C http://x/health | grep -q '"queue_depth":[2-9]' && break
	sleep 0.02
done
kill -TERM "$pid"; wait "$pid"; pid=
wait $clients
check_output "SIGTERM: queued streams get 503, none begun ($(cat "$tmp/queued"))" \
	'503:server_error.*503:server_error' cat "$tmp/queued"
check_output "SIGTERM: every stream ends in one whole answer or one clear error" \
	'^((200:(length|error)\+done|503:server_error)( |$))+$' cat "$tmp/queued"
