#!/bin/sh
# `make bench`, the uplink: time to first token through a board's --uplink
# against the same cloud reached directly. The cloud is a second nibble
# serve (stories260K) behind nginx terminating TLS with a CA made here.
# Usage: bench_uplink.sh NIBBLE WORKDIR
set -eu
NB=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
w=$(mktemp -d "${2:-/tmp}/uplink.XXXXXX")
chmod 0755 "$w"
pids=
trap 'for p in $pids; do kill $p 2>/dev/null; done; wait 2>/dev/null; rm -rf "$w"' EXIT
ossl() { openssl "$@" > /dev/null 2>&1; }
ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=bench CA" \
	-keyout "$w/ca.key" -out "$w/ca.pem"
ossl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" -keyout "$w/s.key" -out "$w/s.csr"
printf 'subjectAltName=DNS:localhost\n' > "$w/san"
ossl x509 -req -in "$w/s.csr" -CA "$w/ca.pem" -CAkey "$w/ca.key" -CAcreateserial -days 2 -extfile "$w/san" -out "$w/s.pem"
"$NB" convert models/stories260K/stories260K.bin -o "$w/m.nib" 2>/dev/null
ready() { for i in $(seq 200); do curl -s --unix-socket "$1" http://x/health 2>/dev/null | grep -q '"ready"' && return 0; sleep 0.05; done; return 1; }
"$NB" serve -m "$w/m.nib" -s "$w/cloud.sock" --slots 4 -t 1 2> "$w/cloud.log" &
pids="$pids $!"
ready "$w/cloud.sock"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir "$w/ngx"
cat > "$w/ngx/nginx.conf" <<CONF
daemon off;
master_process off;
pid $w/ngx/nginx.pid;
error_log $w/ngx/error.log;
events { worker_connections 64; }
http {
	access_log off;
	client_body_temp_path $w/ngx/body;
	proxy_temp_path $w/ngx/proxy;
	fastcgi_temp_path $w/ngx/fastcgi;
	uwsgi_temp_path $w/ngx/uwsgi;
	scgi_temp_path $w/ngx/scgi;
	server {
		listen 127.0.0.1:$port ssl;
		ssl_certificate $w/s.pem;
		ssl_certificate_key $w/s.key;
		location / { proxy_pass http://unix:$w/cloud.sock:; proxy_http_version 1.1;
			     proxy_set_header Connection ""; proxy_buffering off; }
	}
}
CONF
nginx -p "$w/ngx" -c "$w/ngx/nginx.conf" -e "$w/ngx/error.log" &
pids="$pids $!"
for i in $(seq 100); do curl -s --cacert "$w/ca.pem" -o /dev/null "https://localhost:$port/health" && break; sleep 0.05; done
"$NB" serve -m "$w/m.nib" -s "$w/board.sock" --slots 1 -t 1 --uplink "https://localhost:$port/v1" \
	--uplink-ca "$w/ca.pem" 2> "$w/board.log" &
pids="$pids $!"
ready "$w/board.sock"
python3 tests/bench_uplink.py "$w/board.sock" localhost "$port" "$w/ca.pem" "${NIBBLE_BENCH_N:-50}"
