#!/bin/sh
# The cloud uplink against real components on loopback: a "cloud" nibble
# serve behind a real nginx terminating TLS with certificates made here
# (openssl), and a "board" nibble serve with --uplink. Spill under
# saturation with the cloud's (correct) answers, local-only requests that
# never leave, wrong CA / host name / expired certificate / pin / missing
# client certificate each refused with a clear error (and the request
# served locally), the cloud killed mid-stream (an error event, then local
# answers), the circuit breaker opening and closing, and 64 requests at
# once against a saturated board: all answered once, routes reported.
# Needs build/t-x86_64/nibble, nginx and openssl.
set -u
. tests/lib.sh
NB=${NIBBLE:-build/t-x86_64/nibble}
NB=$(cd "$(dirname "$NB")" && pwd)/$(basename "$NB")
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
U="python3 tests/integration/server/uplink.py"
tmp=$(mktemp -d)
chmod 0755 "$tmp"
ngx= cloud= board=
cleanup() {
	for p in $board $cloud $ngx; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
"$NB" convert models/stories260K/stories260K.bin -o "$tmp/m.nib" 2>/dev/null
REF14=", there was a little girl named Lily. She loved"
REF12=", there was a little girl named Lily. She"

# ---- certificates ---------------------------------------------------------
ossl() { openssl "$@" > /dev/null 2>&1; }
ec="-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
ossl req -x509 $ec -days 2 -subj "/CN=nibble test CA" -keyout "$tmp/ca.key" -out "$tmp/ca.pem"
ossl req -x509 $ec -days 2 -subj "/CN=another CA" -keyout "$tmp/other-ca.key" -out "$tmp/other-ca.pem"
cert() { # NAME DNSNAME [CA-ARGS...]: a certificate signed by the test CA
	n=$1 dns=$2
	shift 2
	ossl req $ec -subj "/CN=$dns" -keyout "$tmp/$n.key" -out "$tmp/$n.csr"
	printf 'subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$dns" > "$tmp/$n.ext"
	ossl x509 -req -in "$tmp/$n.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" -CAcreateserial \
		-days 2 -extfile "$tmp/$n.ext" -out "$tmp/$n.pem"
}
cert server localhost
cert wronghost otherhost.example
cert client nibble-board
# An expired one: openssl ca can set the dates.
mkdir "$tmp/ca.d" && : > "$tmp/ca.d/index.txt" && echo 01 > "$tmp/ca.d/serial"
cat > "$tmp/ca.cnf" <<EOF
[ca]
default_ca = d
[d]
database = $tmp/ca.d/index.txt
new_certs_dir = $tmp/ca.d
serial = $tmp/ca.d/serial
default_md = sha256
policy = p
[p]
commonName = supplied
EOF
ossl req $ec -subj "/CN=localhost" -keyout "$tmp/expired.key" -out "$tmp/expired.csr"
ossl ca -batch -config "$tmp/ca.cnf" -cert "$tmp/ca.pem" -keyfile "$tmp/ca.key" -in "$tmp/expired.csr" \
	-out "$tmp/expired.pem" -startdate 20200101000000Z -enddate 20200102000000Z -extfile "$tmp/server.ext" -notext
check "test CA, server, wrong-host, client and expired certificates made" \
	test -s "$tmp/server.pem" -a -s "$tmp/wronghost.pem" -a -s "$tmp/client.pem" -a -s "$tmp/expired.pem"
pin=$(openssl x509 -in "$tmp/server.pem" -pubkey -noout | openssl pkey -pubin -outform der | sha256sum | cut -c1-64)
badpin=$(openssl x509 -in "$tmp/wronghost.pem" -pubkey -noout | openssl pkey -pubin -outform der | sha256sum | cut -c1-64)

# ---- the cloud: nibble serve behind nginx (TLS) -----------------------------
CLOUD_SOCK=$tmp/cloud.sock
start_cloud() {
	"$NB" serve -m "$tmp/m.nib" -s "$CLOUD_SOCK" --slots 4 -t 1 --queue 64 2>> "$tmp/cloud.log" &
	cloud=$!
	for i in $(seq 100); do
		curl -s --unix-socket "$CLOUD_SOCK" http://x/health 2>/dev/null | grep -q '"ready"' && return 0
		sleep 0.05
	done
	return 1
}
start_cloud
freeport() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
P_GOOD=$(freeport) P_HOST=$(freeport) P_EXP=$(freeport) P_MTLS=$(freeport) P_CLOSED=$(freeport)
mkdir "$tmp/ngx"
site() { # PORT CERT [extra]
	printf '\tserver {\n\t\tlisten 127.0.0.1:%s ssl;\n\t\tssl_certificate %s.pem;\n\t\tssl_certificate_key %s.key;\n%s\n' \
		"$1" "$tmp/$2" "$tmp/$2" "${3:-}"
	printf '\t\tlocation / { proxy_pass http://unix:%s:; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off; }\n\t}\n' "$CLOUD_SOCK"
}
{
	printf 'daemon off;\nmaster_process off;\npid %s/ngx/nginx.pid;\nerror_log %s/ngx/error.log;\n' "$tmp" "$tmp"
	printf 'events { worker_connections 256; }\nhttp {\n'
	printf '\tlog_format up "$request_method $uri $status up=$upstream_addr auth=$http_authorization";\n'
	printf '\taccess_log %s/ngx/access.log up;\n' "$tmp"
	for d in body proxy fastcgi uwsgi scgi; do printf '\t%s_temp_path %s/ngx/%s;\n' "$( [ $d = body ] && echo client_body || echo $d)" "$tmp" "$d"; done
	printf '\tkeepalive_timeout 30;\n'
	site "$P_GOOD" server
	site "$P_HOST" wronghost
	site "$P_EXP" expired
	site "$P_MTLS" server "		ssl_client_certificate $tmp/ca.pem;
		ssl_verify_client on;"
	printf '}\n'
} > "$tmp/ngx/nginx.conf"
"$NGINX" -p "$tmp/ngx" -c "$tmp/ngx/nginx.conf" -e "$tmp/ngx/error.log" &
ngx=$!
for i in $(seq 100); do
	curl -s --cacert "$tmp/ca.pem" -o /dev/null "https://localhost:$P_GOOD/health" && break
	sleep 0.05
done
check_output "nginx serves the cloud over TLS (curl agrees with the CA)" '"ready"' \
	curl -s --cacert "$tmp/ca.pem" "https://localhost:$P_GOOD/health"

# ---- the board ---------------------------------------------------------------
SOCK=$tmp/board.sock
printf 'sk-test-0123456789abcdef\n' > "$tmp/key" && chmod 600 "$tmp/key"
board_log=$tmp/board.log
# start_board PORT [options...]
start_board() {
	port=$1
	shift
	: > "$board_log"
	"$NB" serve -m "$tmp/m.nib" -s "$SOCK" --slots 1 -t 1 --queue 64 --uplink "https://localhost:$port/v1" \
		--uplink-ca "$tmp/ca.pem" --uplink-key-file "$tmp/key" --uplink-connect-timeout 2 "$@" 2> "$board_log" &
	board=$!
	for i in $(seq 100); do
		curl -s --unix-socket "$SOCK" http://x/health 2>/dev/null | grep -q '"ready"' && return 0
		sleep 0.05
	done
	return 1
}
stop_board() { kill "$board" 2>/dev/null; wait "$board" 2>/dev/null; board=; }
C="curl -s --max-time 30 --unix-socket $SOCK"
gen() { # BODY: headers and body of a completion
	$C -i http://x/v1/completions -d "$1" | tr -d '\r'
}
# Requests nginx passed on to the cloud's nibble.
cloud_requests() { grep -c 'up=unix' "$tmp/ngx/access.log" 2>/dev/null || echo 0; }
ask_cloud='"prompt":"Once upon a time","max_tokens":14,"temperature":0,"route":"cloud"'

start_board "$P_GOOD" --uplink-model big-model=stories260K
check_output "asked for the cloud: served there, the same text as served here" \
	"^X-Nibble-Route: cloud\$" gen "{$ask_cloud}"
check_output "... the cloud's answer is the model's (greedy: as served here)" "\"text\":\"$REF14\"" gen "{$ask_cloud}"
check_output "... which is what this board answers itself" "\"text\":\"$REF14\"" \
	gen "{$ask_cloud,\"local_only\":true}"
check_output "... streamed through too, with the route header" '^X-Nibble-Route: cloud$' \
	sh -c "$C -i http://x/v1/completions -d '{$ask_cloud,\"stream\":true}' | tr -d '\r'"
check_output "... the stream's text, one finish and one [DONE]" "^text=\"$REF14\" finish=length done=1\$" \
	sh -c "$C http://x/v1/completions -d '{$ask_cloud,\"stream\":true}' | python3 tests/integration/server/sse_join.py"
check_output "a chat completion through the cloud, usage accounted" \
	'X-Nibble-Route: cloud.*"usage":\{"prompt_tokens":[1-9][0-9]*,"completion_tokens":5' \
	sh -c "$C -i http://x/v1/chat/completions -d '{\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"max_tokens\":5,\"route\":\"cloud\"}' | tr -d '\r' | tr '\n' ' '"
check_output "a model only the cloud has (mapped) goes there" "^X-Nibble-Route: cloud\$" \
	gen '{"model":"big-model","prompt":"Once","max_tokens":3}'
check_output "the key reached the cloud's side as a bearer token" 'auth=Bearer sk-test-0123456789abcdef' \
	cat "$tmp/ngx/access.log"
before=$(cloud_requests)
check_output "local_only: true with route cloud stays here" "^X-Nibble-Route: local\$" \
	gen "{$ask_cloud,\"local_only\":true}"
check_fails "local_only: true for a cloud-only model: 400, not sent" 0 '"code":"model_not_found"' \
	gen '{"model":"big-model","prompt":"Once","max_tokens":3,"local_only":true}'
check "... and no request reached the cloud ($before -> $(cloud_requests))" test "$(cloud_requests)" = "$before"
check_output "the uplink's connections are kept alive (reused > 0)" '^nibble_uplink_reused_total [1-9]' \
	$C http://x/metrics
check_output "/health shows the breaker" '"uplink":\{"breaker":"closed"' $C http://x/health

# Saturation: one local slot, a zero wait target: while it is busy the rest spill.
stop_board
start_board "$P_GOOD" --uplink-wait-target 0 --uplink-max 4
check_output "64 requests at once on a saturated board: all answered once, right text, both routes" \
	'^answered=64 unique_ids=64 wrong=0 errors=0 local=[1-9][0-9]* cloud=[1-9][0-9]*$' \
	$U load "$SOCK" 64 12 "$REF12"
check_output "... /metrics counts the routes" 'nibble_route_total\{route="cloud"\} [1-9]' $C http://x/metrics
check_output "... and the cloud's tokens" '^nibble_uplink_completion_tokens_total [1-9]' $C http://x/metrics
stop_board

# The governor cuts local capacity (a board far over its temperature target,
# work queued): its spill signal sends new work to the cloud.
sh tests/integration/governor/fakeroot.sh "$tmp/hot" rpi5 95000
start_board "$P_GOOD" --uplink-wait-target 1000 --sysfs-root "$tmp/hot" --governor balanced \
	--governor-interval 0.05 --gpio none
hot=
for i in $(seq 12); do
	$C http://x/v1/completions -d '{"prompt":"Once","max_tokens":400,"local_only":true}' > /dev/null &
	hot="$hot $!"
done
for i in $(seq 100); do
	$C http://x/health | grep -q '"spill":true' && break
	sleep 0.05
done
check_output "the governor spills (95 C on a Raspberry Pi 5, work queued): /health says so" \
	'"spill":true' $C http://x/health
check_output "... and a new request goes to the cloud (a wait target of 1000 s: not saturation)" \
	"^X-Nibble-Route: cloud\$" \
	gen '{"prompt":"Once upon a time","max_tokens":4}'
stop_board
wait $hot

# A board with a small context: what does not fit goes to the cloud.
start_board "$P_GOOD" --ctx 64
long=$(python3 -c 'print("Once upon a time there was a dog. " * 8)')
check_output "a prompt longer than the board's context: answered by the cloud" "^X-Nibble-Route: cloud\$" \
	gen "{\"prompt\":\"$long\",\"max_tokens\":4}"
# 238 bytes: under the 4-bytes-a-token estimate, over 64 tokens once tokenized.
mid=$(python3 -c 'print("Once upon a time there was a dog. " * 7)')
check_output "a prompt the tokenizer finds too long here: re-routed to the cloud" "^X-Nibble-Route: cloud\$" \
	gen "{\"prompt\":\"$mid\",\"max_tokens\":4}"
check_output "... counted once, as a cloud route" 'local"\} 0 nibble_route_total\{route="cloud"\} 2 $' \
	sh -c "$C http://x/metrics | grep '^nibble_route_total' | tr '\n' ' '"
check_output "max_tokens beyond the board's context: the cloud" "^X-Nibble-Route: cloud\$" \
	gen '{"prompt":"Once","max_tokens":100}'
check_output "... local-only, the prompt too long here: 400 context_length_exceeded" \
	'"code":"context_length_exceeded"' gen "{\"prompt\":\"$long\",\"max_tokens\":4,\"local_only\":true}"
check_output "... local-only, max_tokens too large here: 400" '"param":"max_tokens"' \
	gen '{"prompt":"Once","max_tokens":100,"local_only":true}'
stop_board

# local-only as the device default: nothing leaves, even when asked.
start_board "$P_GOOD" --local-only
before=$(cloud_requests)
check_output "--local-only: route cloud is served here" "^X-Nibble-Route: local\$" gen "{$ask_cloud}"
check "... and nothing reached the cloud" test "$(cloud_requests)" = "$before"
check_output "... unless the request says local_only: false" "^X-Nibble-Route: cloud\$" \
	gen "{$ask_cloud,\"local_only\":false}"
stop_board

# ---- TLS refusals: each logged clearly, the request served here instead ----
refused() { # DESCRIPTION PATTERN PORT [options]
	d=$1 pat=$2
	shift 2
	start_board "$@"
	before=$(cloud_requests)
	check_output "$d: the request falls back here" "^X-Nibble-Route: local\$" gen "{$ask_cloud}"
	check_output "$d: refused with a clear error" "$pat" cat "$board_log"
	check "$d: no request got through ($before -> $(cloud_requests))" test "$(cloud_requests)" = "$before"
	stop_board
}
refused "wrong CA" "certificate is not trusted: .*not correctly signed by the trusted CA" \
	"$P_GOOD" --uplink-ca "$tmp/other-ca.pem"
refused "wrong host name" "certificate is not trusted: .*(CN|Common Name)" "$P_HOST"
refused "expired certificate" "certificate is not trusted: .*expired" "$P_EXP"
refused "pin mismatch" "public key does not match the pinned SHA-256" "$P_GOOD" --uplink-pin "$badpin"
refused "no client certificate" "the cloud answered 400: .*(No required SSL certificate|certificate)" "$P_MTLS"
refused "nothing listening" "cannot connect to localhost:$P_CLOSED" "$P_CLOSED"
# A cloud that accepts the connection and then says nothing: the connect
# timeout (connect + handshake) ends the attempt, the request is served here.
P_MUTE=$(freeport)
python3 -c 'import socket,sys,time
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(16); held=[]
open(sys.argv[2], "w").close()
while True: held.append(s.accept()[0])' "$P_MUTE" "$tmp/mute.ready" &
mute=$!
for i in $(seq 100); do [ -e "$tmp/mute.ready" ] && break; sleep 0.05; done
t0=$(date +%s)
refused "a silent cloud (connect timeout 2 s)" "localhost: TLS handshake timed out" "$P_MUTE"
check "... answered within the timeout and a margin ($(( $(date +%s) - t0 )) s <= 8)" \
	test $(( $(date +%s) - t0 )) -le 8
kill "$mute"; wait "$mute" 2>/dev/null
start_board "$P_GOOD" --uplink-pin "$pin"
check_output "the right pin is accepted" "^X-Nibble-Route: cloud\$" gen "{$ask_cloud}"
stop_board
start_board "$P_MTLS" --uplink-cert "$tmp/client.pem" --uplink-cert-key "$tmp/client.key"
check_output "mutual TLS with the client certificate" "^X-Nibble-Route: cloud\$" gen "{$ask_cloud}"
stop_board
chmod 644 "$tmp/key"
check_fails "a key file others can read: refused at start" 1 "can be read by others.*chmod 600" \
	"$NB" serve -m "$tmp/m.nib" -s "$tmp/x.sock" --uplink "https://localhost:$P_GOOD/v1" \
	--uplink-ca "$tmp/ca.pem" --uplink-key-file "$tmp/key"
chmod 600 "$tmp/key"
check_fails "--uplink without --uplink-ca: usage error" 2 "needs --uplink-ca" \
	"$NB" serve -m "$tmp/m.nib" --uplink "https://localhost:$P_GOOD/v1"
check_fails "http:// is refused (TLS only)" 1 "not an https://" \
	"$NB" serve -m "$tmp/m.nib" -s "$tmp/x.sock" --uplink "http://localhost:$P_GOOD/v1" --uplink-ca "$tmp/ca.pem"

# ---- the cloud killed mid-stream, the breaker ----------------------------------
start_board "$P_GOOD" --uplink-breaker 2 --uplink-backoff 1 --uplink-model big-model=stories260K
check_output "cloud killed mid-stream: the client gets text, then one clean error event, no finish" \
	'^status=200 route=cloud killed=True texts=[1-9][0-9]* errors=1 finishes=0 done=1 last=\{"error":\{"message":"the cloud' \
	$U cut "$SOCK" "$cloud"
wait "$cloud" 2>/dev/null
check_output "the next request falls back here" "^X-Nibble-Route: local\$" gen "{$ask_cloud}"
check_output "... and so does the one after (the breaker opens after 2 failures)" \
	"^X-Nibble-Route: local\$" gen "{$ask_cloud}"
check_output "/health: the breaker is open" '"breaker":"open"' $C http://x/health
check_output "/metrics: breaker open, opened once, failures counted" \
	'nibble_uplink_breaker_open 1 .*nibble_uplink_breaker_opens_total 1' \
	sh -c "$C http://x/metrics | tr '\n' ' '"
check_fails "a cloud-only model while the breaker is open: a clear 503" 0 \
	'HTTP/1.1 503.*served by the cloud, which cannot be reached now' \
	sh -c "$C -i http://x/v1/completions -d '{\"model\":\"big-model\",\"prompt\":\"Once\",\"max_tokens\":3}' | tr -d '\r' | tr '\n' ' '"
start_cloud
sleep 1.2
check_output "the cloud is back: after the backoff one trial goes there" "^X-Nibble-Route: cloud\$" \
	gen "{$ask_cloud}"
check_output "/health: the breaker closed again" '"breaker":"closed"' $C http://x/health
stop_board
