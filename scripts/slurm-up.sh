#!/usr/bin/env bash
# Start a one-machine SLURM cluster (munge + slurmctld + slurmd) for the tests.
# Run as root on Debian/Ubuntu. Idempotent: safe to re-run while the daemons are up;
# restarts them only when the rendered config changed.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
templates="$here/slurm"

die() { echo "slurm-up: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "must run as root (it installs packages and starts daemons)"

# 1. packages
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
    command -v apt-get >/dev/null || die "apt-get not found; install slurm-wlm and munge by hand"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q slurm-wlm munge >/dev/null
fi

# 2. munge: key + daemon running as the munge user
mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null \
        || dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
chmod 0700 /etc/munge && chmod 0400 /etc/munge/munge.key && chmod 0755 /run/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    rm -f /run/munge/munged.pid
    runuser -u munge -- munged
    for _ in $(seq 20); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.5; done
    munge -n | unmunge >/dev/null || die "munged did not start; see /var/log/munge/munged.log"
fi

# 3. render /etc/slurm/{slurm,gres}.conf for this machine
node="$(hostname -s)"
addr="$(getent hosts "$node" | awk '{print $1; exit}')"
addr="${addr:-127.0.0.1}"
# CPU topology as slurmd sees it (declaring less than the hardware drains the node)
hardware="$(slurmd -C | head -1 | tr ' ' '\n' | grep -E '^(CPUs|Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore)=' | tr '\n' ' ')"
avail_mb=$(( $(awk '/^MemAvailable:/ {print $2}' /proc/meminfo) / 1024 ))
mem_mb=$(( avail_mb * 9 / 10 ))
render() {
    sed -e "s|@NODE@|$node|g" -e "s|@ADDR@|$addr|g" -e "s|@HARDWARE@|$hardware|g" -e "s|@MEM@|$mem_mb|g" "$1"
}
mkdir -p /etc/slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /var/log/slurm
changed=0
for f in slurm.conf gres.conf; do
    new="$(render "$templates/$f")"
    # RealMemory follows free memory, which drifts: ignore it when deciding to restart.
    if [ ! -f "/etc/slurm/$f" ] || \
       [ "$(sed 's/RealMemory=[0-9]*//' "/etc/slurm/$f")" != "$(sed 's/RealMemory=[0-9]*//' <<<"$new")" ]; then
        printf '%s\n' "$new" > "/etc/slurm/$f"
        changed=1
    fi
done

# 4. daemons
running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
stop() {  # stop the daemon whose pid file is $1
    if running "$1"; then
        local pid; pid="$(cat "$1")"
        kill "$pid"
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    fi
}
if [ "$changed" -eq 1 ]; then
    stop /run/slurmd.pid
    stop /run/slurmctld.pid
fi
running /run/slurmctld.pid || slurmctld
for _ in $(seq 60); do scontrol ping 2>/dev/null | grep -q UP && break; sleep 0.5; done
scontrol ping | grep -q UP || die "slurmctld is not answering; see /var/log/slurm/slurmctld.log"
running /run/slurmd.pid || slurmd

# 5. wait for the node to accept jobs
state=""
for _ in $(seq 60); do
    state="$(sinfo -h -n "$node" -o %T 2>/dev/null | head -1)"
    case "$state" in
        idle|mixed|allocated|completing) break ;;
        down*|drain*|fail*) scontrol update NodeName="$node" State=RESUME 2>/dev/null || true ;;
    esac
    sleep 1
done
case "$state" in
    idle|mixed|allocated|completing) ;;
    *) die "node $node is '$state', not idle; see /var/log/slurm/slurmd.log and 'scontrol show node $node'" ;;
esac
echo "slurm-up: cluster slotcov ready: node $node ($state), partition gpu, $(sinfo -h -n "$node" -o '%c CPUs, %m MB, gres %G')"
