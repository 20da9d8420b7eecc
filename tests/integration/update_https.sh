#!/bin/sh
# nibble update from an https:// URL served by a real nginx on loopback,
# with a test CA made here: a good image installs; a wrong CA, a host name
# the certificate does not carry, a download cut mid-way, a stalled one, a
# 404 and servers sending other images are refused, nothing installed and
# the running slot untouched. Needs build/t-x86_64/nibble and nginx.
set -u
. tests/lib.sh
NB=${NIBBLE:-build/t-x86_64/nibble}
NB=$(cd "$(dirname "$NB")" && pwd)/$(basename "$NB")
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
tmp=$(mktemp -d)
ngx=
trap '[ -n "$ngx" ] && kill "$ngx" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"' EXIT
chmod 0755 "$tmp" # nginx's workers read the files as another user
mkdir -m 0755 "$tmp/keys" "$tmp/www" "$tmp/www/slow" "$tmp/www/stall" "$tmp/slots"
export NIBBLE_KEYS_DIR="$tmp/keys" NIBBLE_VERIFY_RECORDS="$tmp/records"
"$NB" keygen -o "$tmp/k.pem" > /dev/null && cp "$tmp/k.pub.pem" "$tmp/keys/"
"$NB" keygen -o "$tmp/other.pem" > /dev/null
"$NB" convert models/stories260K/stories260K.bin -o "$tmp/base.nib" 2>/dev/null
image() { # NAME VERSION [KEY]
	cp "$tmp/base.nib" "$tmp/www/$1.nib"
	"$NB" sign -k "${3:-$tmp/k.pem}" --model-version "$2" --compatible "x86_64/1" "$tmp/www/$1.nib" > /dev/null
	chmod 0644 "$tmp/www/$1.nib"
}
image v1 1
image v2 2
image v3 3
image older 1
image foreign 3 "$tmp/other.pem"
cp "$tmp/www/v3.nib" "$tmp/www/slow/v3.nib"
cp "$tmp/www/v3.nib" "$tmp/www/stall/v3.nib"
echo "<html>not an image</html>" > "$tmp/www/page.nib"
chmod -R a+rX "$tmp/www"

# A test CA, a server certificate for "localhost" signed by it, and another CA.
ossl() { openssl "$@" > /dev/null 2>&1; }
ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=nibble test CA" \
	-keyout "$tmp/ca.key" -out "$tmp/ca.pem"
ossl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=another CA" \
	-keyout "$tmp/other-ca.key" -out "$tmp/other-ca.pem"
ossl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
	-keyout "$tmp/server.key" -out "$tmp/server.csr"
printf 'subjectAltName=DNS:localhost\n' > "$tmp/san.ext"
ossl x509 -req -in "$tmp/server.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" -CAcreateserial \
	-days 2 -extfile "$tmp/san.ext" -out "$tmp/server.pem"
check "test CA and server certificate made" test -s "$tmp/server.pem"

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir "$tmp/ngx"
cat > "$tmp/nginx.conf" <<CONF
daemon off;
pid $tmp/ngx/nginx.pid;
error_log $tmp/ngx/error.log;
worker_processes 1;
events { worker_connections 64; }
http {
	access_log $tmp/ngx/access.log;
	client_body_temp_path $tmp/ngx/body;
	proxy_temp_path $tmp/ngx/proxy;
	fastcgi_temp_path $tmp/ngx/fastcgi;
	uwsgi_temp_path $tmp/ngx/uwsgi;
	scgi_temp_path $tmp/ngx/scgi;
	server {
		listen 127.0.0.1:$port ssl;
		server_name localhost;
		ssl_certificate $tmp/server.pem;
		ssl_certificate_key $tmp/server.key;
		root $tmp/www;
		location /slow/ { limit_rate_after 300k; limit_rate 16k; }
		location /stall/ { limit_rate_after 300k; limit_rate 1; }
	}
}
CONF
"$NGINX" -c "$tmp/nginx.conf" -p "$tmp/ngx" > "$tmp/ngx/stdout" 2>&1 &
ngx=$!
for i in $(seq 100); do
	curl -s --cacert "$tmp/ca.pem" -o /dev/null "https://localhost:$port/v1.nib" && break
	sleep 0.05
done
check_output "nginx serves the image over TLS (curl agrees with the CA)" "^200\$" \
	curl -s --cacert "$tmp/ca.pem" -o /dev/null -w '%{http_code}' "https://localhost:$port/v1.nib"

U="https://localhost:$port"
upd() { "$NB" update -d "$tmp/slots" --ca "$tmp/ca.pem" --switch-cmd "" "$@"; }
boot() {
	rm -f "$tmp/sock"
	"$NB" serve --slots-dir "$tmp/slots" -s "$tmp/sock" > "$tmp/boot.log" 2>&1 &
	_s=$!
	for i in $(seq 100); do
		curl -s --unix-socket "$tmp/sock" http://x/health 2>/dev/null | grep -q ready && break
		sleep 0.05
	done
	kill -TERM $_s
	wait $_s
}
snapshot() { (cd "$tmp/slots" && find . -type f ! -name '*lock' | sort | xargs sha256sum); }

check_output "a good image installs from https://" "version 1 .*installed on trial" upd "$U/v1.nib"
boot
check_output "and is committed at the next start" "a +committed +version 1 " "$NB" update -d "$tmp/slots" --status
check_output "the next version too" "version 2 .*installed on trial" upd "$U/v2.nib"
boot
check_output "slot b commits version 2" "b +committed +version 2 " "$NB" update -d "$tmp/slots" --status
snapshot > "$tmp/before"

untouched() { # DESCRIPTION
	snapshot > "$tmp/after"
	check "$1: nothing installed, the running slot untouched" cmp -s "$tmp/before" "$tmp/after"
}
check_fails "wrong CA: refused" 1 "certificate is not trusted: .*not correctly signed by the trusted CA" \
	"$NB" update -d "$tmp/slots" --ca "$tmp/other-ca.pem" --switch-cmd "" "$U/v3.nib"
untouched "wrong CA"
check_fails "a host name the certificate does not carry: refused" 1 "certificate is not trusted: .*(CN|Common Name)" \
	upd "https://127.0.0.1:$port/v3.nib"
untouched "wrong host name"
check_fails "a missing CA file: refused" 1 "CA file $tmp/none.pem" \
	"$NB" update -d "$tmp/slots" --ca "$tmp/none.pem" --switch-cmd "" "$U/v3.nib"
check_fails "404: refused" 1 "the server answered \"404 Not Found\"" upd "$U/none.nib"
untouched "404"

# Cut mid-way: nginx's worker is killed once 300 KiB have arrived.
upd "$U/slow/v3.nib" > "$tmp/cut.log" 2>&1 &
u=$!
for i in $(seq 200); do
	[ "$(stat -c %s "$tmp/slots/a/model.nib.tmp" 2>/dev/null || echo 0)" -ge 300000 ] && break
	sleep 0.05
done
for w in $(pgrep -P "$ngx"); do kill -KILL "$w"; done
wait $u
check_output "a download cut mid-way fails" "^1\$" echo $?
check_output "it says where it was cut" "connection closed after [0-9]+ of [0-9]+ bytes" cat "$tmp/cut.log"
untouched "cut download"
check "no partial file is left" test ! -e "$tmp/slots/a/model.nib.tmp"
for i in $(seq 100); do [ -n "$(pgrep -P "$ngx")" ] && break; sleep 0.05; done
check_fails "a download that stalls (--timeout 1): refused" 1 "timed out after [0-9]+ of [0-9]+ bytes" \
	upd --timeout 1 "$U/stall/v3.nib"
untouched "stalled download"

check_fails "the server sends an image signed by another key: refused" 1 "not trusted here" upd "$U/foreign.nib"
check_fails "the server sends an older image: refused" 1 "version 1 is not newer than the committed version 2" \
	upd "$U/older.nib"
check_fails "the server sends something that is not an image: refused" 1 "too short for a signed image" \
	upd "$U/page.nib"
untouched "other images"
check_output "after all that, the good next version installs" "version 3 .*installed on trial" upd "$U/v3.nib"
