#!/usr/bin/env bash
# suite.sh: the integration suite's world: a throwaway PostgreSQL cluster, keys, a dev
# certificate, the marketplace emulator, every service and two gateways, under <build>/suite/.
# CTest runs `start` as suite_start (FIXTURES_SETUP suite) and `stop` as suite_stop
# (FIXTURES_CLEANUP suite); integration tests read <build>/suite/suite.env and may take single
# processes down and up again with the per-process verbs.
set -euo pipefail
. "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../../deploy/local/lib.sh"

usage() {
    cat <<EOF
usage: tests/harness/suite.sh <verb> <build dir> [process]

  start <build>            stop leftovers of a previous run, create <build>/suite/ afresh, start
                           every process and write <build>/suite/suite.env
  stop <build>             stop every process and PostgreSQL; fails when a process died on its
                           own during the run or a log holds a sanitizer report
  status <build>           one line per process
  kill <build> <proc>      SIGKILL one process (a crash; it is not restarted)
  stop-svc <build> <proc>  stop one process gracefully (SIGTERM)
  start-svc <build> <proc> start one process and wait until it is ready (serving, and every
                           gateway connected to it again as when the suite started)
  restart <build> <proc>   stop-svc then start-svc
  pg-restart <build>       restart PostgreSQL under the running processes (they keep their
                           connections, now dead, and must find their way back)
  pg-kill <build>          SIGKILL PostgreSQL's postmaster (a crash) and wait until its
                           backends, which notice its death, are gone
  pg-start <build>         start PostgreSQL again (after pg-kill)
processes: ${KV_PROCS_SUITE[*]}
EOF
}

(($# >= 2)) || {
    usage >&2
    exit 2
}
verb=$1
build=$(readlink -f "$2")
proc=${3:-}
kv_state_init "$build/suite" "$build" suite

need_proc() {
    [[ -n $proc && " ${KV_PROCS[*]} " == *" $proc "* ]] || {
        usage >&2
        exit 2
    }
}

load_ports() {
    [[ -f $KV_STATE/ports.env ]] || kv_die "no suite in $KV_STATE (run: suite.sh start $build)"
    # shellcheck disable=SC1091
    . "$KV_STATE/ports.env"
}

# A stopped-on-purpose marker tells `stop` that a process missing at the end is no crash.
mark_stopped() { : >"$KV_RUN/$1.stopped"; }
unmark_stopped() { rm -f "$KV_RUN/$1.stopped"; }

# Kill what an earlier run left behind: processes in the pid files, any process still running
# one of this build's binaries with this suite's files in its environment, and the old cluster.
kill_leftovers() {
    local p pid exe bins=" "
    if [[ -f $KV_STATE/ports.env ]]; then
        # shellcheck disable=SC1091
        . "$KV_STATE/ports.env"
        kv_procs_stop
    fi
    for p in "${KV_PROCS[@]}"; do
        bins+="$(kv_bin "$p") "
    done
    for pid in /proc/[0-9]*; do
        pid=${pid#/proc/}
        exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || continue
        exe=${exe% (deleted)}
        if [[ $bins == *" $exe "* ]] && grep -qaF "=$KV_STATE/" "/proc/$pid/environ" 2>/dev/null; then
            kv_log "killing leftover $exe (pid $pid)"
            kill -KILL "$pid" 2>/dev/null || true
        elif [[ ${exe##*/} == postgres ]] &&
            tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "-D $KV_PG_DATA "; then
            # a postmaster whose folder was deleted under it: pg_ctl cannot reach it any more
            kv_log "stopping leftover PostgreSQL (pid $pid)"
            kill -INT "$pid" 2>/dev/null || true
        fi
    done
    kv_pg_stop
    # The cluster and its socket may live outside the suite folder (lib.sh, kv_pg_paths).
    rm -rf "$KV_PG" "$KV_PG_SOCK" "$KV_STATE"
    kv_pg_paths "$KV_STATE/pg"
}

cmd_start() {
    kv_check_binaries
    kill_leftovers
    kv_state_dirs
    kv_ports_init
    kv_secrets_init
    kv_pg_init
    kv_pg_start
    kv_pg_bootstrap
    if ! kv_procs_start; then
        kv_procs_stop
        kv_pg_stop
        kv_die "suite start-up failed (logs in $KV_LOGS)"
    fi
    kv_write_client_env "$KV_STATE/suite.env"
    kv_procs_status
    kv_log "suite is up: $KV_STATE/suite.env"
}

# Exit status 1 when a process died by itself or left a sanitizer report in its log.
check_run() {
    local p bad=0
    for p in "${KV_PROCS[@]}"; do
        if ! kv_proc_pid "$p" >/dev/null && [[ ! -e $KV_RUN/$p.stopped ]]; then
            kv_log "$p was not running at the end of the suite (it died during the run)"
            kv_proc_log_tail "$p"
            bad=1
        fi
    done
    return $bad
}

check_sanitizers() {
    local f bad=0
    for f in "$KV_LOGS"/*.log; do
        [[ -e $f ]] || continue
        if grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$f"; then
            kv_log "sanitizer report in $f:"
            grep -E -A 25 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' "$f" | head -n 80 >&2
            bad=1
        fi
    done
    return $bad
}

cmd_stop() {
    local bad=0
    if [[ ! -f $KV_STATE/ports.env ]]; then
        kv_log "no suite in $KV_STATE; nothing to stop"
        return 0
    fi
    load_ports
    # Crashes count only in a suite that came up (suite.env is written last by start).
    if [[ -f $KV_STATE/suite.env ]]; then
        check_run || bad=1
    fi
    kv_procs_stop
    kv_pg_stop
    rm -f "$KV_STATE/suite.env" # the suite is down: a second stop finds nothing crashed
    check_sanitizers || bad=1
    ((bad == 0)) || kv_die "suite problems above (logs kept in $KV_LOGS)"
    kv_log "suite stopped"
}

# SIGKILL the postmaster, then wait (up to 15 s) for the processes it had started: a new
# postmaster refuses to start while one of them still holds the old shared memory.
cmd_pg_kill() {
    local pm kids=() pid i left
    [[ -f $KV_PG_DATA/postmaster.pid ]] || kv_die "PostgreSQL is not running"
    pm=$(head -n 1 "$KV_PG_DATA/postmaster.pid")
    [[ $pm =~ ^[0-9]+$ ]] && kv_pid_alive "$pm" || kv_die "PostgreSQL is not running"
    for pid in /proc/[0-9]*; do
        pid=${pid#/proc/}
        [[ $(awk '{ print $4 }' "/proc/$pid/stat" 2>/dev/null) == "$pm" ]] && kids+=("$pid")
    done
    kv_log "killing PostgreSQL (postmaster $pm, ${#kids[@]} children)"
    kill -KILL "$pm"
    for ((i = 0; i < 150; i++)); do
        left=0
        for pid in "$pm" "${kids[@]}"; do
            kv_pid_alive "$pid" && left=1
        done
        if ((!left)); then
            # The postmaster and its backends are dead (or zombies nobody has reaped yet: a
            # zombie still "exists" for the pid checks of pg_ctl and PostgreSQL, which would then
            # refuse to start a new server). Its lock files are stale: remove them.
            rm -f "$KV_PG_DATA/postmaster.pid" "$KV_PG_SOCK"/.s.PGSQL.*.lock
            return 0
        fi
        sleep 0.1
    done
    kv_die "PostgreSQL's processes did not end within 15 s of the postmaster's death"
}

case $verb in
start) cmd_start ;;
stop) cmd_stop ;;
status)
    load_ports
    kv_procs_status
    ;;
kill)
    need_proc
    load_ports
    mark_stopped "$proc"
    kv_proc_stop "$proc" KILL
    ;;
stop-svc)
    need_proc
    load_ports
    mark_stopped "$proc"
    kv_proc_stop "$proc"
    ;;
start-svc)
    need_proc
    load_ports
    kv_proc_start "$proc"
    kv_proc_ready "$proc" || exit 1
    unmark_stopped "$proc"
    ;;
restart)
    need_proc
    load_ports
    mark_stopped "$proc"
    kv_proc_stop "$proc"
    kv_proc_start "$proc"
    kv_proc_ready "$proc" || exit 1
    unmark_stopped "$proc"
    ;;
pg-restart)
    load_ports
    kv_pg_stop
    kv_pg_start
    ;;
pg-kill)
    load_ports
    cmd_pg_kill
    ;;
pg-start)
    load_ports
    kv_pg_start
    ;;
-h | --help | help) usage ;;
*)
    usage >&2
    exit 2
    ;;
esac
