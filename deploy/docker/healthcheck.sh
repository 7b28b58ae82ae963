#!/bin/bash
# kooisv-healthcheck: the containers' HEALTHCHECK probe, using only bash (no curl in the images).
#   kooisv-healthcheck http [path] [host:port]
#                             GET path (default /healthz; the gateway's readiness is /readyz, its
#                             liveness /livez) on the gateway's plain-HTTP metrics listener
#                             (KOOISV_METRICS_LISTEN, default 127.0.0.1:9100) or host:port;
#                             healthy on HTTP 200.
#   kooisv-healthcheck tcp [host:port]
#                             TCP connect to the service's ZeroMQ port (the port of KOOISV_BIND, or
#                             the address given); healthy when the ROUTER socket is bound (it binds
#                             only after start-up checks and migrations succeeded). The service
#                             images probe with `kooisv-<name> --check ready` instead (port and
#                             database); this stays for other ports (the emulator).
# Exit 0 healthy, 1 unhealthy (Docker's convention).
set -u

# host:port or [v6]:port or *:port -> the address to probe from inside the container.
split_addr() {
    local addr=$1 def_host=$2
    addr=${addr#tcp://}
    port=${addr##*:}
    host=${addr%:*}
    host=${host#[}
    host=${host%]}
    case "$host" in "" | "*" | 0.0.0.0) host=$def_host ;; "::") host=::1 ;; esac
}

case "${1:-}" in
http)
    path=${2:-/healthz}
    split_addr "${3:-${KOOISV_METRICS_LISTEN:-127.0.0.1:9100}}" 127.0.0.1
    exec 3<>"/dev/tcp/$host/$port" || exit 1
    printf 'GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n' "$path" "$host" >&3
    IFS= read -r -t 3 status <&3 || exit 1
    # Skip the headers; print the body (per-service up/down), which Docker keeps in the health log.
    while IFS= read -r -t 3 line <&3 && [ -n "${line%$'\r'}" ]; do :; done
    while IFS= read -r -t 3 line <&3; do echo "$line"; done
    case "$status" in
    "HTTP/1."?" 200"*) exit 0 ;;
    *) echo "$path: ${status%$'\r'}"; exit 1 ;;
    esac
    ;;
tcp)
    split_addr "${2:-${KOOISV_BIND:?KOOISV_BIND unset}}" 127.0.0.1
    exec 3<>"/dev/tcp/$host/$port" || exit 1
    exit 0
    ;;
*)
    echo "usage: kooisv-healthcheck http|tcp" >&2
    exit 2
    ;;
esac
