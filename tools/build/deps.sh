#!/bin/sh
# Installs the Debian packages a target needs, once: `deps.sh host` what
# `make` and `make run` of an x86_64 configuration need, `cross` adds the
# aarch64 compilers and qemu of the board builds, `test` adds what `make
# test` and `make bench` need. Idempotent and silent when everything is
# present; as non-root it only lists what is missing, because a build must
# never prompt for a password.
set -eu

set_name=${1:-host}
# "a|b": either package will do (the first is installed when neither is).
# kconfig-frontends-nox: the same kconfig-conf/mconf/nconf without the Qt
# and GTK front ends that kconfig-frontends depends on.
HOST="musl-tools musl-dev libmbedtls-dev libgpiod-dev libcjson-dev
kconfig-frontends-nox|kconfig-frontends dpkg-dev xz-utils ca-certificates"
CROSS="gcc-aarch64-linux-gnu libc6-dev-arm64-cross musl-dev:arm64 qemu-user-static"
# nginx-light: tests/integration/server_proto.sh runs nginx (as a non-daemon on a
# loopback port) in front of the server's socket, update_https.sh serves images
# over TLS with it, uplink.sh terminates the cloud's TLS with it (openssl makes
# the test CAs and certificates; procps: pgrep -P finds its worker).
# The OpenCL variant (board/x86_64_opencl) builds against the ICD loader and
# its tests run on pocl's CPU device; clinfo shows what a machine offers.
TEST="libcmocka-dev clang llvm libclang-rt-14-dev curl file tmux python3 util-linux
nginx-light openssl procps ocl-icd-opencl-dev ocl-icd-libopencl1 opencl-c-headers
pocl-opencl-icd clinfo"
case $set_name in
host) PKGS=$HOST ;;
cross) PKGS="$HOST $CROSS" ;;
test)
	PKGS="$HOST $CROSS $TEST"
	# The server test drives the official OpenAI client library on Node.js.
	command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || PKGS="$PKGS nodejs npm"
	;;
*)
	echo "usage: deps.sh host|cross|test" >&2
	exit 2
	;;
esac

has_deb_src() {
	grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ || grep -qs '^deb-src' /etc/apt/sources.list
}

installed() {
	dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed"
}

missing=""
for spec in $PKGS; do
	found=""
	for p in $(echo "$spec" | tr '|' ' '); do
		installed "$p" && found=1 && break
	done
	[ -n "$found" ] || missing="$missing ${spec%%|*}"
done
[ -z "$missing" ] && has_deb_src && exit 0

if [ "$(id -u)" != 0 ]; then
	[ -n "$missing" ] && echo "nibble: missing Debian packages:$missing" >&2
	has_deb_src || echo "nibble: apt has no deb-src entries (needed to build mbedTLS, libgpiod, cJSON with musl)" >&2
	echo "nibble: run as root, or: sudo apt-get install --no-install-recommends$missing" >&2
	exit 1
fi

[ -n "$missing" ] && echo "nibble: installing ($set_name):$missing" >&2
export DEBIAN_FRONTEND=noninteractive
case "$missing" in *:arm64*)
	dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64 ;;
esac
# deb-src is needed to build mbedTLS/libgpiod with musl (see tools/build/thirdparty.mk).
if ! has_deb_src; then
	if [ -f /etc/apt/sources.list.d/debian.sources ]; then
		sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources \
			> /etc/apt/sources.list.d/nibble-src.sources
	elif [ -f /etc/apt/sources.list ]; then
		sed -n 's/^deb /deb-src /p' /etc/apt/sources.list > /etc/apt/sources.list.d/nibble-src.list
	fi
fi
apt-get update -qq >&2
[ -z "$missing" ] || apt-get install -y -qq --no-install-recommends $missing >&2
