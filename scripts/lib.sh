# shellcheck shell=bash
# Shared helpers for scripts/*: sourced, not run.

log() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; }

need_root() {
    if [ "$(id -u)" -ne 0 ]; then
        log "needs root (network namespaces, eBPF, nftables); run: sudo $0 $*"
        exit 1
    fi
}

# Deletes lab namespaces whose creating process is gone (a killed run).
reap_lab_namespaces() {
    local ns pid
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep '^moat-' || true); do
        pid=${ns#moat-}; pid=${pid%%-*}
        if [ ! -d "/proc/$pid" ]; then
            ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
            ip netns del "$ns" 2>/dev/null || true
        fi
    done
}
