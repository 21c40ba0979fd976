#!/usr/bin/env bash
# A cluster of hosts on one Linux machine, for the multi-node tests.
#
# Each host is a set of namespaces held open by one process: its own network
# (interface cu0 with a fixed MAC and an address of the cluster's subnet),
# host name (UTS), IPC and mount namespace (its own /tmp, /dev/shm and /etc/hosts; every
# other path, the build tree and the test's run directories among them, is
# the machine's file system, shared by all hosts as NFS would be). The hosts
# are joined by veth pairs to a bridge in a network namespace of its own.
# Nothing is added to the root namespace or /etc: addresses, links and the
# bridge exist only inside the namespaces, and the state (pids, the hosts
# file, logs) is under one directory that `down` removes.
#
#   cluster.sh up [N]            head + N compute hosts (default 3); idempotent,
#                                a missing or crashed host is brought back
#   cluster.sh down              kills every host, removes the state directory
#   cluster.sh clean             exit 0 when nothing of the cluster is left
#   cluster.sh hosts | compute   names of all hosts | of the compute hosts
#   cluster.sh addr HOST         the host's address on the cluster network
#   cluster.sh exec HOST CMD...  runs CMD inside HOST's namespaces (cwd kept)
#   cluster.sh link HOST up|down its cable: the bridge port set up or down
#   cluster.sh alive HOST        exit 0 when HOST runs and its link is up
#   cluster.sh crash HOST        link down, then every process of HOST killed
#   cluster.sh bytes HOST        "rx tx" byte counters of HOST's cu0
#   cluster.sh limit HOST RATE   tbf egress limit on HOST's cu0 (e.g. 1gbit);
#                                RATE "none" removes it
#
# Configuration (environment), so that two instances never collide:
#   CU_CLUSTER_DIR     state directory, outside /tmp (hosts have their own
#                      /tmp); default /var/tmp/cu-cluster
#   CU_CLUSTER_PREFIX  host name prefix; default "cu-" (cu-head, cu-n1, ...)
#   CU_CLUSTER_NET     first three octets of the /24; default 10.199.0
#
# Needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN), unshare, nsenter and ip.
# Exit status 77 from `up` means namespaces cannot be created here.
set -euo pipefail

DIR=${CU_CLUSTER_DIR:-/var/tmp/cu-cluster}
PREFIX=${CU_CLUSTER_PREFIX:-cu-}
NET=${CU_CLUSTER_NET:-10.199.0}
IFACE=cu0
HEAD=${PREFIX}head

die() {
  echo "cluster: $*" >&2
  exit 1
}

# pid of a holder recorded in $DIR/run/NAME.pid if it still runs in
# namespaces other than ours (guards against a recycled pid)
holder_pid() {
  local f="$DIR/run/$1.pid" pid
  [ -r "$f" ] || return 1
  pid=$(cat "$f")
  [ -n "$pid" ] && [ -e "/proc/$pid/ns/net" ] || return 1
  [ "$(readlink "/proc/$pid/ns/net")" != "$(readlink /proc/self/ns/net)" ] || return 1
  echo "$pid"
}

host_index() {
  case "$1" in
  "$HEAD") echo 0 ;;
  "${PREFIX}n"[1-9]) echo "${1#"${PREFIX}n"}" ;;
  *) die "unknown host '$1' (hosts: $(list_hosts | tr '\n' ' '))" ;;
  esac
}

host_addr() { echo "$NET.$((10 + $(host_index "$1")))"; }
host_mac() { printf '02:c0:de:00:00:%02x' "$(host_index "$1")"; }
port_name() { echo "p$(host_index "$1")-${PREFIX%-}"; }

list_hosts() {
  [ -r "$DIR/hosts.list" ] && cat "$DIR/hosts.list"
  return 0
}

in_bridge() { nsenter -t "$(holder_pid bridge)" --net -- "$@"; }

in_host() {
  local pid
  pid=$(holder_pid "$1") || die "host $1 is not up (cluster.sh up)"
  shift
  nsenter -t "$pid" --net --uts --ipc --mount --wd="$PWD" -- "$@"
}

can_unshare() {
  unshare --net --uts --ipc --mount true 2>/dev/null
}

write_hosts_file() {
  local n=$1 i
  {
    echo "127.0.0.1 localhost"
    echo "$(host_addr "$HEAD") $HEAD"
    for i in $(seq 1 "$n"); do echo "$NET.$((10 + i)) ${PREFIX}n$i"; done
  } >"$DIR/etc-hosts.new"
  mv "$DIR/etc-hosts.new" "$DIR/etc-hosts"
  { echo "$HEAD"; for i in $(seq 1 "$n"); do echo "${PREFIX}n$i"; done; } >"$DIR/hosts.list"
}

# waits for the pid the holder writes once its namespaces are set up
wait_file() {
  local f=$1 i
  for i in $(seq 1 100); do
    [ -s "$f" ] && return 0
    sleep 0.1
  done
  die "timed out waiting for $f (see $DIR/log/)"
}

start_bridge() {
  holder_pid bridge >/dev/null && return 0
  rm -f "$DIR/run/bridge.pid"
  setsid unshare --net /bin/sh -c "echo \$\$ > '$DIR/run/bridge.pid.tmp' && exec sleep infinity" \
    </dev/null >"$DIR/log/bridge.holder" 2>&1 &
  wait_file "$DIR/run/bridge.pid.tmp"
  mv "$DIR/run/bridge.pid.tmp" "$DIR/run/bridge.pid"
  in_bridge ip link set lo up
  in_bridge ip link add br0 type bridge forward_delay 0 stp_state 0
  in_bridge ip link set br0 up
}

# the host's namespaces: the holder mounts its own /tmp, /dev/shm and
# /etc/hosts, names itself, records its pid and sleeps until killed. Hosts
# share the machine's PID namespace on purpose: from inside one host (mpirun
# on the head) the rsh agent must still reach the others, which setns cannot
# do into a sibling PID namespace; `crash` kills by network namespace instead.
start_host() {
  local h=$1 pid
  holder_pid "$h" >/dev/null && return 0
  rm -f "$DIR/run/$h.pid" "$DIR/run/$h.pid.tmp"
  setsid unshare --net --uts --ipc --mount --propagation private \
    /bin/sh -c "hostname '$h' && mount -t tmpfs -o mode=1777 tmpfs /tmp &&
      mount -t tmpfs -o mode=1777 tmpfs /dev/shm && mount --bind '$DIR/etc-hosts' /etc/hosts &&
      ip link set lo up && echo \$\$ > '$DIR/run/$h.pid.tmp' && exec sleep infinity" \
    </dev/null >"$DIR/log/$h.holder" 2>&1 &
  wait_file "$DIR/run/$h.pid.tmp"
  mv "$DIR/run/$h.pid.tmp" "$DIR/run/$h.pid"
  pid=$(holder_pid "$h") || die "host $h did not start (see $DIR/log/$h.holder)"
  local port
  port=$(port_name "$h")
  in_bridge ip link del "$port" 2>/dev/null || true
  in_bridge ip link add "$port" type veth peer name "$IFACE" address "$(host_mac "$h")" netns "$pid"
  in_bridge ip link set "$port" master br0 up
  nsenter -t "$pid" --net ip addr add "$(host_addr "$h")/24" dev "$IFACE"
  nsenter -t "$pid" --net ip link set "$IFACE" up
}

cmd_up() {
  local n=${1:-3} h
  [ "$n" -ge 1 ] && [ "$n" -le 9 ] || die "up: 1 to 9 compute hosts"
  [ "$(id -u)" = 0 ] || {
    echo "cluster: skipped: needs root to create namespaces" >&2
    exit 77
  }
  command -v nsenter >/dev/null && command -v ip >/dev/null || {
    echo "cluster: skipped: nsenter or ip missing" >&2
    exit 77
  }
  can_unshare || {
    echo "cluster: skipped: cannot create network/PID/mount namespaces here" >&2
    exit 77
  }
  case "$DIR" in /tmp | /tmp/* | /dev/shm/*) die "CU_CLUSTER_DIR must be outside /tmp and /dev/shm" ;; esac
  mkdir -p "$DIR/run" "$DIR/log"
  write_hosts_file "$n"
  start_bridge
  while read -r h; do start_host "$h"; done <"$DIR/hosts.list"
  # a wire that a test left down comes back up
  while read -r h; do in_bridge ip link set "$(port_name "$h")" up; done <"$DIR/hosts.list"
}

# pids of every process in the network namespace of holder pid $1
procs_in_netns() {
  local ns
  ns=$(stat -L -c %i "/proc/$1/ns/net" 2>/dev/null) || return 0
  stat -L -c '%i %n' /proc/[0-9]*/ns/net 2>/dev/null |
    awk -v ns="$ns" '$1 == ns { split($2, p, "/"); print p[3] }'
  return 0
}

# every process of the host, the holder last: stopped first so that none
# forks a new one between the listing and the kill, then killed
kill_holder() {
  local pid pids
  pid=$(holder_pid "$1") || {
    rm -f "$DIR/run/$1.pid"
    return 0
  }
  for _ in 1 2 3; do
    pids=$(procs_in_netns "$pid" | grep -v -x "$pid" || true)
    [ -n "$pids" ] || break
    # shellcheck disable=SC2086 # one argument per pid
    kill -STOP $pids 2>/dev/null || true
    # shellcheck disable=SC2086
    kill -KILL $pids 2>/dev/null || true
  done
  kill -KILL "$pid" 2>/dev/null || true
  # gone, or a zombie that whoever adopted it has yet to reap
  for _ in $(seq 1 50); do
    awk '$1 == "State:" && $2 != "Z" { found = 1 } END { exit !found }' "/proc/$pid/status" \
      2>/dev/null || break
    sleep 0.1
  done
  rm -f "$DIR/run/$1.pid"
}

cmd_down() {
  [ -d "$DIR" ] || return 0
  local f
  for f in "$DIR"/run/*.pid; do
    [ -e "$f" ] || continue
    f=${f##*/}
    kill_holder "${f%.pid}"
  done
  rm -rf "$DIR"
}

# nothing left: no state directory, and no process anywhere still in one
# of the recorded namespaces (read before down removed them)
cmd_clean() {
  [ ! -e "$DIR" ] || {
    echo "cluster: $DIR still exists" >&2
    return 1
  }
}

cmd_link() {
  local h=$1 state=$2
  case "$state" in up | down) ;; *) die "link: up or down" ;; esac
  in_bridge ip link set "$(port_name "$h")" "$state"
}

cmd_alive() {
  holder_pid "$1" >/dev/null && holder_pid bridge >/dev/null &&
    in_bridge ip -o link show "$(port_name "$1")" 2>/dev/null | grep -q '[<,]UP[,>]'
}

cmd_crash() {
  local h=$1
  in_bridge ip link set "$(port_name "$h")" down 2>/dev/null || true
  kill_holder "$h"
}

cmd_bytes() {
  local h=$1 pid
  pid=$(holder_pid "$h") || die "host $h is not up"
  nsenter -t "$pid" --net awk -v i="$IFACE:" '$1 == i { print $2, $10 }' /proc/net/dev
}

cmd_limit() {
  local h=$1 rate=$2 pid
  pid=$(holder_pid "$h") || die "host $h is not up"
  nsenter -t "$pid" --net tc qdisc del dev "$IFACE" root 2>/dev/null || true
  [ "$rate" = none ] && return 0
  nsenter -t "$pid" --net tc qdisc add dev "$IFACE" root tbf rate "$rate" burst 256kb latency 100ms
}

main() {
  local verb=${1:-}
  shift || true
  case "$verb" in
  up) cmd_up "$@" ;;
  down) cmd_down ;;
  clean) cmd_clean ;;
  hosts) list_hosts ;;
  compute) list_hosts | grep -v -x "$HEAD" || true ;;
  addr) host_addr "${1:?addr HOST}" ;;
  exec)
    local h=${1:?exec HOST CMD...}
    shift
    in_host "$h" "$@"
    ;;
  link) cmd_link "${1:?link HOST up|down}" "${2:?link HOST up|down}" ;;
  alive) cmd_alive "${1:?alive HOST}" ;;
  crash) cmd_crash "${1:?crash HOST}" ;;
  bytes) cmd_bytes "${1:?bytes HOST}" ;;
  limit) cmd_limit "${1:?limit HOST RATE}" "${2:?limit HOST RATE}" ;;
  -h | --help | help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' ;;
  *) die "usage: cluster.sh up|down|clean|hosts|compute|addr|exec|link|crash|bytes|limit (--help)" ;;
  esac
}

main "$@"
