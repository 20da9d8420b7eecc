#!/bin/sh
# Installs the Debian packages the build and the tests need, once.
# Idempotent and silent when everything is present; as non-root it only
# lists what is missing, because a build must never prompt for a password.
set -eu

PKGS="musl-tools musl-dev libmbedtls-dev libgpiod-dev libcmocka-dev libcjson-dev clang llvm libclang-rt-14-dev
kconfig-frontends gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static
dpkg-dev curl file ca-certificates xz-utils tmux python3 nginx-light openssl procps"
ARM64_PKGS="musl-dev:arm64"
# The server test drives the official OpenAI client library on Node.js.
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || PKGS="$PKGS nodejs npm"

has_deb_src() {
	grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ || grep -qs '^deb-src' /etc/apt/sources.list
}

missing=""
for p in $PKGS $ARM64_PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" ||
		missing="$missing $p"
done
[ -z "$missing" ] && has_deb_src && exit 0

if [ "$(id -u)" != 0 ]; then
	[ -n "$missing" ] && echo "nibble: missing Debian packages:$missing" >&2
	has_deb_src || echo "nibble: apt has no deb-src entries (needed to build mbedTLS, libgpiod, cJSON with musl)" >&2
	echo "nibble: run as root, or: sudo apt-get install$missing" >&2
	exit 1
fi

[ -n "$missing" ] && echo "nibble: installing:$missing" >&2
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
