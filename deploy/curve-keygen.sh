#!/usr/bin/env bash
# curve-keygen.sh SECRET_FILE PUBLIC_FILE: a CURVE key pair for the ZeroMQ plane (Z85, 40
# characters each, the form libzmq and KOOISV_CURVE_* take), with nothing but bash and openssl.
# SECRET_FILE is created (mode 0600) only when it does not exist yet, from a fresh X25519 key;
# PUBLIC_FILE is always (re)derived from it. The secret key never appears on a command line.
# Used by deploy/local (lib.sh) and deploy/docker/gen-secrets.sh.
set -euo pipefail

z85_chars='0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#'
# DER prefixes of an X25519 private key (PKCS#8) and of a public key (SubjectPublicKeyInfo).
pkcs8_prefix=302e020100300506032b656e04220420

die() {
    printf 'curve-keygen: %s\n' "$*" >&2
    exit 1
}

# 64 hex digits -> 40 Z85 characters (ZeroMQ RFC 32: big-endian 4-byte groups, base 85).
z85_encode() {
    local hex=$1 out="" i j v s
    for ((i = 0; i < 64; i += 8)); do
        v=$((16#${hex:i:8}))
        s=""
        for ((j = 0; j < 5; j++)); do
            s=${z85_chars:v%85:1}$s
            v=$((v / 85))
        done
        out+=$s
    done
    printf '%s' "$out"
}

# 40 Z85 characters -> 64 hex digits; fails on anything else.
z85_decode() {
    local z=$1 out="" i j v c head
    [[ ${#z} == 40 ]] || return 1
    for ((i = 0; i < 40; i += 5)); do
        v=0
        for ((j = 0; j < 5; j++)); do
            c=${z:i+j:1}
            head=${z85_chars%%"$c"*}
            [[ ${#head} -lt 85 ]] || return 1
            v=$((v * 85 + ${#head}))
        done
        ((v <= 0xffffffff)) || return 1
        out+=$(printf '%08x' "$v")
    done
    printf '%s' "$out"
}

# 2n hex digits -> n raw bytes on stdout.
hex_bytes() { printf "$(sed 's/../\\x&/g' <<<"$1")"; }

(($# == 2)) || die "usage: curve-keygen.sh SECRET_FILE PUBLIC_FILE"
secret_file=$1 public_file=$2
command -v openssl >/dev/null || die "openssl is required"
umask 077
if [[ ! -s $secret_file ]]; then
    raw=$(openssl genpkey -algorithm X25519 -outform DER | tail -c 32 | od -An -v -tx1 | tr -d ' \n')
    [[ ${#raw} == 64 ]] || die "openssl did not give a 32-byte X25519 key"
    # A fresh file renamed over the name: never written through a path that exists.
    tmp=$(mktemp "$secret_file.XXXXXX")
    printf '%s\n' "$(z85_encode "$raw")" >"$tmp"
    mv -f "$tmp" "$secret_file"
fi
secret=$(head -n 1 "$secret_file")
raw=$(z85_decode "$secret") || die "$secret_file: not a Z85 CURVE secret key (40 characters)"
pub=$(hex_bytes "$pkcs8_prefix$raw" | openssl pkey -inform DER -pubout -outform DER |
    tail -c 32 | od -An -v -tx1 | tr -d ' \n')
[[ ${#pub} == 64 ]] || die "openssl could not derive the public key"
tmp=$(mktemp "$public_file.XXXXXX")
printf '%s\n' "$(z85_encode "$pub")" >"$tmp"
chmod 0644 "$tmp"
mv -f "$tmp" "$public_file"
