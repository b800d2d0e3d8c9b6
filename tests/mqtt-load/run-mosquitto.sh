#!/usr/bin/env bash
# Reference broker for the MQTT benchmarks: mosquitto with a TLS listener on loopback,
# password logins and an ACL, set up from scratch in a work dir.
#
#   run-mosquitto.sh [start] WORKDIR PORT   # prints mosquitto's pid on stdout
#   run-mosquitto.sh stop WORKDIR
#
# start: WORKDIR is wiped and recreated (only if absent, empty, or made by this script), then
# holds ca.crt (for --ca), creds (for --creds: `username password` lines load0..load99 and
# loadsub), mosquitto.conf, passwd, acl, server cert/key, mosquitto.log and mosquitto.pid.
# mosquitto listens on 127.0.0.1:PORT with a certificate for `localhost` (EC P-256), so use
# `--host localhost --connect-addr 127.0.0.1`. Everything but the pid goes to stderr.
# Env: MOSQ_MAX_QUEUED: max_queued_messages per client, default 0 = unlimited. mosquitto's own
#        default, 1000, silently drops QoS 1 messages it has already PUBACKed once a subscriber
#        is 1000 behind ("Outgoing messages are being dropped" in its log): with 100 publishers
#        x 100 in flight it delivers only a few % of them, which makes throughput meaningless.
#      MOSQ_MAX_INFLIGHT: max_inflight_messages, default 20 (mosquitto's own default).
# Needs: mosquitto, mosquitto_passwd, openssl (Debian: mosquitto, mosquitto-clients, openssl).
set -euo pipefail

MARKER=.moat-mosquitto
USERS=100

log() { echo "run-mosquitto: $*" >&2; }
die() { log "$*"; exit 1; }
usage() { die "usage: $0 [start] WORKDIR PORT | $0 stop WORKDIR"; }

# Something listens on PORT (ss, so that the broker does not log a failed handshake).
port_open() {
    if command -v ss >/dev/null; then
        [[ -n "$(ss -Hltn "sport = :$1")" ]]
    else
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
    fi
}

# The pid in WORKDIR/mosquitto.pid if that process is still a mosquitto.
running_pid() {
    local pidfile=$1/mosquitto.pid pid
    [[ -f $pidfile ]] || return 1
    pid=$(<"$pidfile")
    [[ $pid =~ ^[0-9]+$ && "$(cat "/proc/$pid/comm" 2>/dev/null)" == mosquitto ]] || return 1
    echo "$pid"
}

stop() {
    local dir=$1 pid
    if ! pid=$(running_pid "$dir"); then
        log "no mosquitto running from $dir"
        return 0
    fi
    kill -TERM "$pid"
    for _ in $(seq 50); do
        [[ -d /proc/$pid ]] || { log "stopped mosquitto $pid"; rm -f "$dir/mosquitto.pid"; return 0; }
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$dir/mosquitto.pid"
    log "killed mosquitto $pid (did not stop on SIGTERM within 5 s)"
}

fresh_dir() {
    local dir=$1
    if [[ -e $dir ]]; then
        [[ -d $dir ]] || die "$dir exists and is not a directory"
        if [[ -n "$(ls -A "$dir")" && ! -e $dir/$MARKER ]]; then
            die "$dir is not empty and was not made by this script; refusing to wipe it"
        fi
        stop "$dir"
        rm -rf "$dir"
    fi
    mkdir -p "$dir"
    touch "$dir/$MARKER"
}

make_certs() {
    local dir=$1 ec=(-algorithm EC -pkeyopt ec_paramgen_curve:P-256)
    openssl genpkey "${ec[@]}" -out "$dir/ca.key" 2>/dev/null
    openssl req -x509 -new -key "$dir/ca.key" -sha256 -days 30 -subj "/CN=moat load test CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -out "$dir/ca.crt"
    openssl genpkey "${ec[@]}" -out "$dir/server.key" 2>/dev/null
    openssl req -new -key "$dir/server.key" -subj "/CN=localhost" -out "$dir/server.csr"
    printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
        "extendedKeyUsage=serverAuth" "subjectAltName=DNS:localhost" >"$dir/server.ext"
    openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
        -days 30 -sha256 -extfile "$dir/server.ext" -out "$dir/server.crt" 2>/dev/null
}

# creds (`user password` lines), mosquitto's password file and an ACL for every user.
make_users() {
    local dir=$1 user pass
    : >"$dir/creds"
    : >"$dir/passwd"
    : >"$dir/acl"
    for user in $(seq -f 'load%g' 0 $((USERS - 1))) loadsub; do
        pass=$(openssl rand -hex 16)
        echo "$user $pass" >>"$dir/creds"
        mosquitto_passwd -b "$dir/passwd" "$user" "$pass"
        printf 'user %s\ntopic readwrite load/#\n\n' "$user" >>"$dir/acl"
    done
}

write_conf() {
    local dir=$1 port=$2
    cat >"$dir/mosquitto.conf" <<EOF
# Written by run-mosquitto.sh: the reference broker of the MQTT benchmarks.
per_listener_settings false
persistence false
log_dest stderr
log_type error
log_type warning
log_type notice
log_timestamp_format %Y-%m-%dT%H:%M:%S
max_connections -1
max_queued_messages ${MOSQ_MAX_QUEUED:-0}
max_inflight_messages ${MOSQ_MAX_INFLIGHT:-20}
allow_anonymous false
password_file $dir/passwd
acl_file $dir/acl

listener $port 127.0.0.1
cafile $dir/ca.crt
certfile $dir/server.crt
keyfile $dir/server.key
require_certificate false
EOF
}

# mosquitto drops root for its own user: let that user read what it needs.
own_files() {
    local dir=$1
    chmod 600 "$dir"/*.key "$dir/passwd"
    if [[ $EUID -eq 0 ]] && id mosquitto >/dev/null 2>&1; then
        chown mosquitto: "$dir/server.key" "$dir/server.crt" "$dir/ca.crt" "$dir/passwd" "$dir/acl"
        chmod 755 "$dir"
    fi
}

raise_fd_limit() {
    ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    log "open files limit for mosquitto: $(ulimit -n)"
}

wait_listening() {
    local dir=$1 port=$2 pid=$3
    for _ in $(seq 100); do
        port_open "$port" && return 0
        [[ -d /proc/$pid ]] || { tail -n 20 "$dir/mosquitto.log" >&2; die "mosquitto exited during start-up"; }
        sleep 0.1
    done
    kill "$pid" 2>/dev/null || true
    tail -n 20 "$dir/mosquitto.log" >&2
    die "mosquitto did not listen on 127.0.0.1:$port within 10 s"
}

start() {
    local dir=$1 port=$2 pid
    [[ $port =~ ^[0-9]+$ ]] && ((port > 0 && port < 65536)) || die "bad port: $port"
    for tool in mosquitto mosquitto_passwd openssl; do
        command -v "$tool" >/dev/null || die "$tool not found (Debian: apt-get install mosquitto mosquitto-clients openssl)"
    done
    fresh_dir "$dir"
    dir=$(cd "$dir" && pwd)
    port_open "$port" && die "127.0.0.1:$port is already in use"
    make_certs "$dir"
    make_users "$dir"
    write_conf "$dir" "$port"
    own_files "$dir"
    raise_fd_limit
    mosquitto -c "$dir/mosquitto.conf" </dev/null >>"$dir/mosquitto.log" 2>&1 &
    pid=$!
    echo "$pid" >"$dir/mosquitto.pid"
    wait_listening "$dir" "$port" "$pid"
    log "mosquitto $pid listening on 127.0.0.1:$port (TLS, host name localhost); creds $dir/creds, CA $dir/ca.crt"
    echo "$pid"
}

case "${1:-}" in
stop) [[ $# -eq 2 ]] || usage; stop "$2" ;;
start) [[ $# -eq 3 ]] || usage; start "$2" "$3" ;;
"" | -h | --help) usage ;;
*) [[ $# -eq 2 ]] || usage; start "$1" "$2" ;;
esac
