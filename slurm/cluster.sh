#!/usr/bin/env bash
# cluster.sh — a real Slurm cluster on this one machine, for tests and demos.
#
#   slurm/cluster.sh up [--nodes N] [--cpus C]   munge, slurmctld, N slurmd (2 × 4 CPUs)
#        [--netns [--link RATE]]                 each node in its own network namespace,
#                                                joined by a bridge; RATE shapes each link
#   slurm/cluster.sh status                      daemons, nodes, jobs (and links)
#   slurm/cluster.sh down                        stop the daemons, remove the namespaces
#   slurm/cluster.sh link nK down|up|RATE        --netns: cut, restore or reshape one link
#   slurm/cluster.sh node nK crash|start         --netns: kill every process of node nK
#                                                (slurmd, its steps, the ranks) / restart
#   slurm/cluster.sh node nK kill-slurmd         --netns: kill only nK's slurmd (its steps
#                                                and ranks run on); `start` restarts it
#
# --netns: node nK's slurmd (and every rank it starts) runs in the network namespace
# trident-PORT-nK with the address 10.A.B.K/24 on its interface tnet0, a veth pair whose
# other end trPORTnK is a port of the bridge trbrPORT (10.A.B.254, where slurmctld is
# reached); A.B is the cluster's port, so two clusters never share names or addresses.
# Ranks inside a node talk through shared memory, ranks on different nodes through TCP
# over the two veths. --link RATE (tc units: 200mbit, 1gbit) puts a token bucket (tbf) on
# both directions of every node's veth. RATE/LATENCY would add delay, which needs the
# netem qdisc: refused where the kernel has none. What `up` creates is listed in
# $TRIDENT_SLURM_DIR/net and removed by `down`, and nothing else. TRIDENT_SLURM_NETNS=1
# (TRIDENT_SLURM_LINK=RATE) makes --netns (--link RATE) the default of `up`.
#
# The N nodes (n1..nN) are emulated on this machine: one slurmd per node (Debian's slurmd
# is built with MULTIPLE_SLURMD), each on its own port with its own spool, TmpFS and log.
# Everything (slurm.conf, state, spool, logs, PIDs) lives under one scratch directory,
# $TRIDENT_SLURM_DIR (default /tmp/trident-slurm); `down` kills exactly the PIDs that `up`
# recorded there and removes it. After `up`, point the Slurm commands at the cluster:
#
#   export SLURM_CONF=/tmp/trident-slurm/slurm.conf
#
# Settings chosen for tests on a small machine (see shared/SLURM-ON-ONE-MACHINE.md):
# declared CPUs may exceed the real ones (config_overrides); a requeued job reruns within
# seconds (cred_expire=5, short scheduler intervals); RequeueExit=75 is trident's
# "checkpointed on a signal, start me again" code. Needs root (slurmd runs as root).
set -euo pipefail

DIR=${TRIDENT_SLURM_DIR:-/tmp/trident-slurm}
CONF=$DIR/slurm.conf
PIDS=$DIR/pids                   # "name pid" per daemon this script started
CTLD_PORT=${TRIDENT_SLURM_PORT:-16817}
NODE_PORT0=$((CTLD_PORT + 100))  # n1 listens on NODE_PORT0+1, n2 on +2, ...
UP_TIMEOUT=${TRIDENT_SLURM_UP_TIMEOUT:-60}
# --netns: names and addresses carry the port, so two clusters never collide
NET=$DIR/net                     # "kind name" per namespace/link this script created
NS_PREFIX=trident-$CTLD_PORT-n   # namespace of node nK: trident-PORT-nK
BRIDGE=trbr$CTLD_PORT            # the bridge joining the nodes (<= 15 characters)
VETH_PREFIX=tr${CTLD_PORT}n      # root end of node nK's veth: trPORTnK
NODE_IF=tnet0                    # the node's end, inside its namespace
SUBNET=10.$((CTLD_PORT >> 8 & 255)).$((CTLD_PORT & 255)) # /24; node K is .K, bridge .254
BRIDGE_ADDR=$SUBNET.254

die() { echo "cluster.sh: error: $*" >&2; exit 1; }
say() { echo "cluster.sh: $*"; }

usage() {
    sed -n '2,14s/^# \{0,1\}//p' "$0"
    exit "${1:-0}"
}

# ---------------------------------------------------------------------------------------
# packages

install_packages() {
    local missing=()
    command -v slurmctld >/dev/null 2>&1 || missing+=(slurm-wlm)
    command -v munged >/dev/null 2>&1 || missing+=(munge)
    command -v setpriv >/dev/null 2>&1 || missing+=(util-linux)
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null 2>&1 ||
        die "missing ${missing[*]} and no apt-get to install them (this script knows Debian)"
    say "installing ${missing[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
        die "apt-get install ${missing[*]} failed"
}

# ---------------------------------------------------------------------------------------
# PIDs this script started

pid_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

# Whether PID runs the daemon NAME (munged, slurmctld, slurmd-nK): a PID recorded before a
# reboot may belong to something else by now.
is_daemon() { # NAME PID
    pid_alive "$2" || return 1
    local comm
    comm=$(cat "/proc/$2/comm" 2>/dev/null) || return 1
    [ "$comm" = "${1%%-*}" ]
}

# Like is_daemon, but also true for a daemon still being started: between fork and exec
# the child carries the name of the program that launched it (bash, setsid, setpriv).
is_daemon_or_starting() { # NAME PID
    pid_alive "$2" || return 1
    local comm
    comm=$(cat "/proc/$2/comm" 2>/dev/null) || return 1
    case $comm in "${1%%-*}" | bash | setsid | setpriv | nsenter) return 0 ;; esac
    return 1
}

# Names and PIDs of recorded daemons that are still running, one "name pid" a line.
live_daemons() {
    [ -f "$PIDS" ] || return 0
    local name pid
    while read -r name pid; do
        if is_daemon "$name" "$pid"; then echo "$name $pid"; fi
    done <"$PIDS"
}

record_pid() { echo "$1 $2" >>"$PIDS"; }


# ---------------------------------------------------------------------------------------
# --netns: namespaces, veths, a bridge and their qdiscs, each recorded in $NET as created

netns_on() { [ -f "$DIR/netns" ]; }
node_ns() { echo "$NS_PREFIX$1"; }       # K -> namespace name
node_veth() { echo "$VETH_PREFIX$1"; }   # K -> root end of the veth
record_net() { echo "$1 $2" >>"$NET"; }

# Whether `ip netns add` is permitted here (a container may forbid it): 0 or 1 with why.
netns_allowed() {
    command -v ip >/dev/null 2>&1 || { echo "no 'ip' command (iproute2)"; return 1; }
    command -v tc >/dev/null 2>&1 || { echo "no 'tc' command (iproute2)"; return 1; }
    local probe=trident-$CTLD_PORT-probe err
    if ! err=$(ip netns add "$probe" 2>&1); then
        echo "ip netns add is not permitted here: $err"
        return 1
    fi
    ip netns del "$probe" 2>/dev/null || true
    return 0
}

# RATE in bits/s (tc's units: bit, kbit, mbit, gbit, tbit; k = 1000), or fail.
rate_bits() {
    local r=${1,,}
    [[ $r =~ ^([0-9]+)(bit|kbit|mbit|gbit|tbit)$ ]] || return 1
    local n=${BASH_REMATCH[1]}
    case ${BASH_REMATCH[2]} in
        bit) echo "$n" ;; kbit) echo $((n * 1000)) ;; mbit) echo $((n * 1000000)) ;;
        gbit) echo $((n * 1000000000)) ;; tbit) echo $((n * 1000000000000)) ;;
    esac
}

# tbf on one interface (in namespace NS, or the root one when NS is empty): RATE, a
# bucket of 2 ms of traffic (at least 16 kB, a few full packets) and a queue of 100 ms;
# with a DELAY, netem below it adds that delay.
shape() { # NS IF RATE [DELAY]
    local ns=$1 dev=$2 rate=$3 delay=${4:-} bits burst
    local tc=(tc)
    [ -z "$ns" ] || tc=(ip netns exec "$ns" tc)
    bits=$(rate_bits "$rate") || die "bad rate '$rate'"
    burst=$((bits / 8 / 500))
    [ "$burst" -ge 16000 ] || burst=16000
    "${tc[@]}" qdisc replace dev "$dev" root handle 1: tbf rate "$rate" burst "$burst" \
        latency 100ms || return 1
    if [ -n "$delay" ]; then
        "${tc[@]}" qdisc replace dev "$dev" parent 1:1 handle 10: netem delay "$delay" ||
            return 1
    fi
}
unshape() { # NS IF
    local tc=(tc)
    [ -z "$1" ] || tc=(ip netns exec "$1" tc)
    "${tc[@]}" qdisc del dev "$2" root 2>/dev/null || true
}

# Creates the bridge and, per node, a namespace and a veth into it; shapes each veth on
# both ends when RATE is given. Everything created is recorded in $NET first.
make_net() { # NODES RATE DELAY
    local nodes=$1 rate=$2 delay=$3 i ns veth
    : >"$NET"
    if ip -4 route show | grep -v '^default' | grep -q "^$SUBNET\\."; then
        die "$SUBNET.0/24 (from the port $CTLD_PORT) is already routed here: set TRIDENT_SLURM_PORT"
    fi
    ip link show "$BRIDGE" >/dev/null 2>&1 &&
        die "a bridge $BRIDGE exists already (another cluster on port $CTLD_PORT, or a stale one: 'ip link del $BRIDGE' if it is)"
    record_net bridge "$BRIDGE"
    ip link add "$BRIDGE" type bridge || die "cannot create the bridge $BRIDGE"
    ip addr add "$BRIDGE_ADDR/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
    if [ -n "$delay" ]; then
        # latency needs netem; try it on our own bridge before anything depends on it
        local err
        if ! err=$(tc qdisc add dev "$BRIDGE" root netem delay 1ms 2>&1); then
            die "--link .../LATENCY: this kernel has no netem qdisc ($err), so no delay can be
added between the nodes and latency is not emulated. Give only a rate (--link 200mbit)."
        fi
        tc qdisc del dev "$BRIDGE" root 2>/dev/null || true
    fi
    for i in $(seq 1 "$nodes"); do
        ns=$(node_ns "$i")
        veth=$(node_veth "$i")
        ip netns list | grep -qw "^$ns" && die "a namespace $ns exists already (stale? 'ip netns del $ns')"
        record_net netns "$ns"
        ip netns add "$ns" || die "cannot create the namespace $ns"
        record_net veth "$veth"
        ip link add "$veth" type veth peer name "$NODE_IF" netns "$ns" ||
            die "cannot create the veth $veth"
        ip link set "$veth" master "$BRIDGE"
        ip link set "$veth" up
        ip netns exec "$ns" ip link set lo up
        ip netns exec "$ns" ip addr add "$SUBNET.$i/24" dev "$NODE_IF"
        ip netns exec "$ns" ip link set "$NODE_IF" up
        if [ -n "$rate" ]; then
            shape "" "$veth" "$rate" "$delay" && shape "$ns" "$NODE_IF" "$rate" "$delay" ||
                die "tc refused to shape $veth to $rate"
        fi
    done
    # (no ping here: that every slurmd registers with slurmctld through the bridge is the
    # test that the nodes reach it; wait_idle waits for it)
}

# Removes what $NET lists, newest first: a veth (with its peer and both qdiscs), a
# namespace (after ending the processes left in it: only our daemons' jobs can be
# there), the bridge. Only names this script recorded, and only if they still exist.
remove_net() {
    [ -f "$NET" ] || return 0
    local kind name pids
    while read -r kind name; do
        case $kind in
            veth | bridge)
                if ip link show "$name" >/dev/null 2>&1; then
                    ip link del "$name" || say "could not remove $kind $name"
                fi ;;
            netns)
                ip netns list | grep -qw "^$name" || continue
                pids=$(ip netns pids "$name" 2>/dev/null | tr '\n' ' ')
                if [ -n "${pids// /}" ]; then
                    say "ending processes left in $name: $pids"
                    # shellcheck disable=SC2086
                    kill -KILL $pids 2>/dev/null || true
                fi
                ip netns del "$name" || say "could not remove namespace $name" ;;
        esac
    done < <(tac "$NET")
    rm -f "$NET"
}

# Byte counters of node nK's link as the node sees it: "rx_bytes tx_bytes".
link_bytes() {
    local v
    v=$(node_veth "$1")
    # the root end's rx is what the node sent
    echo "$(cat "/sys/class/net/$v/statistics/tx_bytes") $(cat "/sys/class/net/$v/statistics/rx_bytes")"
}

# ---------------------------------------------------------------------------------------
# configuration

write_config() {
    local nodes=$1 cpus=$2 netns=$3 host
    # the interface that carries MPI's TCP between nodes: lo, or the node's own veth
    local ifc=lo ctld_addr=127.0.0.1
    if [ "$netns" = 1 ]; then ifc=$NODE_IF; ctld_addr=$BRIDGE_ADDR; fi
    host=$(hostname -s)
    mkdir -p "$DIR"/{state,log,run,etc}
    local i
    for i in $(seq 1 "$nodes"); do mkdir -p "$DIR/spool/n$i" "$DIR/tmp/n$i"; done

    # TaskProlog: runs as the job's user before each task; lines it prints as
    # `export K=V` enter the task's environment. Open MPI names its shared-memory
    # segments by the real hostname, so two emulated nodes on one host would collide:
    # give each node of each job its own backing directory. Only lo (with --netns: the
    # node's veth) carries the network between the emulated nodes. The batch shell (no step id) needs none.
    # (The port tells apart two such clusters on one machine, e.g. a test's and yours.)
    local shm="/dev/shm/slurm-vader.$CTLD_PORT"
    cat >"$DIR/etc/task_prolog.sh" <<EOF
#!/bin/sh
[ -n "\${SLURM_STEP_ID:-}" ] || exit 0
d=$shm.\${SLURMD_NODENAME}.\${SLURM_JOB_ID}
mkdir -p "\$d" 2>/dev/null
echo "export OMPI_MCA_btl_vader_backing_directory=\$d"
echo "export OMPI_MCA_btl_tcp_if_include=$ifc"
echo "export OMPI_MCA_oob_tcp_if_include=$ifc"
# the declared CPUs may exceed the real ones: ranks must yield while they wait, as under
# mpirun --oversubscribe, or a busy-polling rank starves the one it waits for
echo "export OMPI_MCA_mpi_yield_when_idle=1"
exit 0
EOF
    # Epilog: runs as root on each node when a job ends (also before a requeue).
    cat >"$DIR/etc/epilog.sh" <<EOF
#!/bin/sh
[ -n "\${SLURM_JOB_ID:-}" ] || exit 0
rm -rf "$shm.\${SLURMD_NODENAME:-none}.\${SLURM_JOB_ID}"
exit 0
EOF
    chmod 755 "$DIR/etc/task_prolog.sh" "$DIR/etc/epilog.sh"

    local nodelist=n1
    [ "$nodes" -gt 1 ] && nodelist="n[1-$nodes]"
    local ports=$((NODE_PORT0 + 1))
    [ "$nodes" -gt 1 ] && ports="[$((NODE_PORT0 + 1))-$((NODE_PORT0 + nodes))]"

    cat >"$CONF" <<EOF
# Written by slurm/cluster.sh: $nodes emulated node(s) on $host. Do not edit; rerun up.
ClusterName=trident
SlurmctldHost=$host($ctld_addr)
SlurmctldPort=$CTLD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=cred_expire=5
MpiDefault=pmix
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MailProg=/bin/true
SlurmdParameters=config_overrides
ReturnToService=2
# a requeued job reruns in seconds, not minutes
SchedulerParameters=sched_interval=2,bf_interval=2
SchedulerType=sched/backfill
RequeueExit=75
JobRequeue=1
KillWait=10
MinJobAge=600
InactiveLimit=0
MessageTimeout=20
SlurmctldTimeout=60
SlurmdTimeout=120
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.%n.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.%n.log
SlurmctldDebug=info
SlurmdDebug=info
# per-node scratch, or the PMIx directories of two emulated nodes clash
TmpFS=$DIR/tmp/%n
TaskProlog=$DIR/etc/task_prolog.sh
Epilog=$DIR/etc/epilog.sh
EOF
    if [ "$netns" = 1 ]; then
        # one line per node: each has its own address, in its own namespace
        for i in $(seq 1 "$nodes"); do
            echo "NodeName=n$i NodeHostname=$host NodeAddr=$SUBNET.$i Port=$((NODE_PORT0 + i)) CPUs=$cpus State=UNKNOWN"
        done >>"$CONF"
    else
        echo "NodeName=$nodelist NodeHostname=$host NodeAddr=127.0.0.1 Port=$ports CPUs=$cpus State=UNKNOWN" >>"$CONF"
    fi
    echo "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP" >>"$CONF"
    echo "$nodes $cpus $netns" >"$DIR/shape"
}

# ---------------------------------------------------------------------------------------
# daemons

start_munge() {
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
        say "munge already running (not started by this script; left alone)"
        return 0
    fi
    [ -f /etc/munge/munge.key ] || {
        say "creating /etc/munge/munge.key"
        if command -v mungekey >/dev/null 2>&1; then mungekey --create >/dev/null 2>&1 || true
        else dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 2>/dev/null; fi
        chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    }
    mkdir -p /run/munge && chown munge:munge /run/munge
    setsid setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged -F \
        </dev/null >"$DIR/log/munged.log" 2>&1 &
    record_pid munged $!
    local i
    for i in $(seq 1 50); do
        if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    cat "$DIR/log/munged.log" >&2 || true
    die "munged did not come up (log above)"
}

show_logs() {
    local f
    for f in "$DIR"/log/*; do
        [ -f "$f" ] || continue
        echo "---- $f (last 20 lines)" >&2
        tail -n 20 "$f" >&2
    done
}

# Whether the slurmctld answering on our port is ours (not another cluster's).
our_ctld() {
    local state
    state=$(SLURM_CONF=$CONF timeout 10 scontrol show config 2>/dev/null |
        sed -n 's/^StateSaveLocation *= *//p') || return 1
    [ "$state" = "$DIR/state" ]
}

# Kills the recorded daemons that still run: TERM, then KILL after 10 s.
stop_daemons() {
    local live name pid
    live=$(live_daemons)
    [ -n "$live" ] || return 0
    # slurmd before slurmctld, munged last (the list is in start order: reverse it)
    while read -r name pid; do
        kill -TERM "$pid" 2>/dev/null || true
    done < <(tac <<<"$live")
    for _ in $(seq 1 100); do
        [ -z "$(live_daemons)" ] && break
        sleep 0.1
    done
    while read -r name pid; do
        say "$name (pid $pid) ignored SIGTERM: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    done < <(live_daemons)
}

# A failed start: show why, stop what was started, keep the directory for a look.
die_up() {
    show_logs
    stop_daemons
    die "$* (logs above and in $DIR/log)"
}

# Polls until all $1 nodes are idle; on timeout prints the daemon logs and fails.
wait_idle() {
    local nodes=$1 t0=$SECONDS n=0 name pid
    while [ $((SECONDS - t0)) -lt "$UP_TIMEOUT" ]; do
        # a daemon that died will not come back: fail now rather than at the timeout
        while read -r name pid; do
            is_daemon_or_starting "$name" "$pid" || die_up "$name (pid $pid) exited during start"
        done <"$PIDS"
        n=$(SLURM_CONF=$CONF sinfo -h -N -t idle -o '%N' 2>/dev/null | sort -u | wc -l) || n=0
        if [ "$n" -ge "$nodes" ]; then
            our_ctld && return 0
            die_up "port $CTLD_PORT answers for another cluster: set TRIDENT_SLURM_PORT"
        fi
        sleep 0.3
    done
    SLURM_CONF=$CONF sinfo -N >&2 || true
    die_up "only $n of $nodes node(s) idle after ${UP_TIMEOUT}s"
}

cmd_up() {
    # TRIDENT_SLURM_NETNS=1 (and TRIDENT_SLURM_LINK=RATE) make --netns the default: a test
    # suite that brings up its own cluster then runs on the netns one unchanged
    local nodes=2 cpus=4 netns=${TRIDENT_SLURM_NETNS:-0} link=${TRIDENT_SLURM_LINK:-} rate="" delay=""
    [[ $netns =~ ^[01]$ ]] || die "TRIDENT_SLURM_NETNS must be 0 or 1, not '$netns'"
    while [ $# -gt 0 ]; do
        case $1 in
            --nodes) nodes=${2:?--nodes needs a number}; shift 2 ;;
            --nodes=*) nodes=${1#*=}; shift ;;
            --cpus) cpus=${2:?--cpus needs a number}; shift 2 ;;
            --cpus=*) cpus=${1#*=}; shift ;;
            --netns) netns=1; shift ;;
            --link) link=${2:?--link needs RATE[/LATENCY]}; shift 2 ;;
            --link=*) link=${1#*=}; shift ;;
            -h | --help) usage ;;
            *) die "unknown option '$1' (see: $0 --help)" ;;
        esac
    done
    [[ $nodes =~ ^[1-9][0-9]*$ ]] || die "--nodes must be a positive integer, not '$nodes'"
    [[ $cpus =~ ^[1-9][0-9]*$ ]] || die "--cpus must be a positive integer, not '$cpus'"
    [ "$nodes" -le 64 ] || die "--nodes $nodes: at most 64 emulated nodes"
    [ "$(id -u)" -eq 0 ] || die "must run as root (slurmd and munge need it)"
    if [ -n "$link" ]; then
        [ "$netns" = 1 ] || die "--link shapes the links between namespaces: it needs --netns"
        rate=${link%%/*}
        [ "$link" = "$rate" ] || delay=${link#*/}
        rate_bits "$rate" >/dev/null ||
            die "--link: bad rate '$rate' (a number with bit, kbit, mbit, gbit or tbit: 200mbit)"
        if [ -n "$delay" ]; then
            [[ $delay =~ ^[0-9]+(us|ms)$ ]] ||
                die "--link: bad latency '$delay' (a whole number of us or ms: 2ms)"
        fi
    fi
    if [ "$netns" = 1 ]; then
        local why
        why=$(netns_allowed) || die "--netns: $why"
    fi

    if [ -n "$(live_daemons)" ]; then
        if [ "$(cat "$DIR/shape" 2>/dev/null)" = "$nodes $cpus $netns" ] && our_ctld &&
            [ "$(cat "$DIR/link" 2>/dev/null)" = "$link" ] &&
            [ "$(live_daemons | wc -l)" -eq "$(wc -l <"$PIDS")" ]; then
            say "already up ($nodes node(s) × $cpus CPUs, $DIR)"
            echo "export SLURM_CONF=$CONF"
            return 0
        fi
        say "up with another shape, or a daemon is missing: restarting"
        cmd_down
    elif [ -f "$NET" ]; then
        remove_net # a cluster whose daemons are gone left its namespaces
    fi

    install_packages
    rm -rf "$DIR"
    mkdir -p "$DIR/log"
    : >"$PIDS"
    # a failed start removes what it made (the directory stays, with the logs)
    UP_DONE=0
    trap '[ "$UP_DONE" = 1 ] || { stop_daemons; remove_net; }' EXIT
    if [ "$netns" = 1 ]; then
        touch "$DIR/netns"
        echo "$link" >"$DIR/link"
        if [ -n "$delay" ]; then
            # one-way delay between two nodes = the sender's egress + the receiver's
            local us=${delay%us}
            [ "$us" != "$delay" ] || us=$((${delay%ms} * 1000))
            delay=$((us / 2))us
        fi
        make_net "$nodes" "$rate" "$delay"
    fi
    write_config "$nodes" "$cpus" "$netns"
    start_munge

    # setsid: the daemons outlive this shell and its terminal; each keeps the PID recorded
    setsid slurmctld -D -i -f "$CONF" </dev/null >>"$DIR/log/slurmctld.out" 2>&1 &
    record_pid slurmctld $!
    local i
    for i in $(seq 1 "$nodes"); do start_slurmd "$i"; done
    wait_idle "$nodes"
    UP_DONE=1
    if [ "$netns" = 1 ]; then
        say "up: $nodes node(s) × $cpus CPUs in namespaces ${NS_PREFIX}1..$nodes on" \
            "$SUBNET.0/24 (bridge $BRIDGE, $BRIDGE_ADDR), links ${link:-not shaped}"
    else
        say "up: $nodes node(s) × $cpus CPUs; state, logs and PIDs in $DIR"
    fi
    echo "export SLURM_CONF=$CONF"
}

# Starts node nK's slurmd, in its namespace with --netns.
start_slurmd() { # K
    local i=$1 pre=()
    # nsenter enters only the network namespace (`ip netns exec` would also remount /sys,
    # hiding the cgroup file system slurmd needs)
    if netns_on; then pre=(nsenter "--net=/run/netns/$(node_ns "$i")"); fi
    setsid "${pre[@]}" slurmd -D -N "n$i" -f "$CONF" </dev/null >>"$DIR/log/slurmd.n$i.out" 2>&1 &
    record_pid "slurmd-n$i" $!
}

cmd_down() {
    if [ ! -f "$PIDS" ]; then
        say "not up (no $PIDS)"
        remove_net
        rm -rf "$DIR"
        return 0
    fi
    # end running jobs through Slurm first, so their processes don't outlive the daemons
    local jobs
    if [ -n "$(live_daemons)" ] && our_ctld; then
        jobs=$(SLURM_CONF=$CONF timeout 10 squeue -h -o %i 2>/dev/null) || jobs=""
        if [ -n "$jobs" ]; then
            say "cancelling job(s) $(echo "$jobs" | tr '\n' ' ')"
            # shellcheck disable=SC2086
            SLURM_CONF=$CONF timeout 10 scancel $jobs 2>/dev/null || true
            for _ in $(seq 1 30); do
                [ -z "$(SLURM_CONF=$CONF timeout 5 squeue -h -t running,completing -o %i \
                    2>/dev/null)" ] && break
                sleep 0.5
            done
        fi
    fi
    stop_daemons
    remove_net
    rm -rf "$DIR"
    say "down"
}

# The node number K of "nK", checked against the cluster's shape.
node_number() {
    local k=${1#n} nodes
    nodes=$(cut -d' ' -f1 "$DIR/shape" 2>/dev/null) || die "not up (no $DIR/shape)"
    [[ $k =~ ^[1-9][0-9]*$ ]] && [ "$k" -le "$nodes" ] || die "no node '$1' (n1..n$nodes)"
    echo "$k"
}

cmd_link() { # nK down|up|RATE
    [ $# -eq 2 ] || die "usage: $0 link nK down|up|RATE"
    netns_on || die "link: the cluster is not up with --netns"
    local k veth ns rate
    k=$(node_number "$1")
    veth=$(node_veth "$k")
    ns=$(node_ns "$k")
    ip link show "$veth" >/dev/null 2>&1 || die "no link $veth (not made by this cluster?)"
    case $2 in
        down) ip link set "$veth" down; say "n$k's link $veth cut" ;;
        up) ip link set "$veth" up; say "n$k's link $veth restored" ;;
        *)
            rate_bits "$2" >/dev/null || die "link: '$2' is not down, up or a rate (200mbit)"
            shape "" "$veth" "$2" && shape "$ns" "$NODE_IF" "$2" || die "tc refused $2"
            say "n$k's link $veth shaped to $2 both ways" ;;
    esac
}

cmd_node() { # nK crash|start|kill-slurmd
    [ $# -eq 2 ] || die "usage: $0 node nK crash|start|kill-slurmd"
    netns_on || die "node: the cluster is not up with --netns"
    local k ns pids
    k=$(node_number "$1")
    ns=$(node_ns "$k")
    case $2 in
        crash)
            # everything in the namespace: slurmd, its slurmstepds, the ranks
            pids=$(ip netns pids "$ns" | tr '\n' ' ')
            # shellcheck disable=SC2086
            [ -z "${pids// /}" ] || kill -KILL $pids 2>/dev/null || true
            # until they are gone (a killed process lingers until its parent reaps it)
            for _ in $(seq 1 100); do
                [ -z "$(ip netns pids "$ns")" ] && ! live_daemons | grep -q "^slurmd-n$k " && break
                sleep 0.1
            done
            rm -f "$DIR/slurmd-killed.n$k"
            say "n$k crashed: killed ${pids:-nothing}" ;;
        kill-slurmd)
            # only the daemon: its slurmstepds and the ranks they started run on, as when
            # slurmd alone dies on a real node (OOM killer, a bug)
            local pid
            pid=$(live_daemons | sed -n "s/^slurmd-n$k //p")
            [ -n "$pid" ] || die "n$k's slurmd is not running"
            kill -KILL "$pid"
            for _ in $(seq 1 100); do pid_alive "$pid" || break; sleep 0.1; done
            touch "$DIR/slurmd-killed.n$k"
            say "n$k's slurmd (pid $pid) killed; $(ip netns pids "$ns" | wc -l) other process(es) of the node run on" ;;
        start)
            if live_daemons | grep -q "^slurmd-n$k "; then die "n$k's slurmd runs already"; fi
            if [ -f "$DIR/slurmd-killed.n$k" ]; then
                # a daemon restart, not a reboot: its running steps are found again through
                # the sockets in its spool, which stay
                rm -f "$DIR/slurmd-killed.n$k"
                start_slurmd "$k"
                say "n$k's slurmd started again (its steps, if any still run, kept)"
                return 0
            fi
            [ -z "$(ip netns pids "$ns")" ] || die "n$k still runs processes: crash it first"
            # a crashed node boots clean: the sockets and PMIx directories of the steps it
            # ran, its scratch (TmpFS) and shared-memory directories are gone. Left, they
            # make the next step of a requeued job (same job and step ids) fail to start.
            rm -rf "$DIR/spool/n$k/n${k}_"* "$DIR/spool/n$k/stepd."* "$DIR/spool/n$k/pmix."* \
                "$DIR/tmp/n$k"/* "/dev/shm/slurm-vader.$CTLD_PORT.n$k".*
            start_slurmd "$k"
            say "n$k's slurmd started again (its step files and scratch cleared, as by a reboot)" ;;
        *) die "node: '$2' is not crash, start or kill-slurmd" ;;
    esac
}

cmd_status() {
    if [ -z "$(live_daemons)" ]; then
        say "down"
        return 3
    fi
    echo "daemons (started by this script):"
    live_daemons | sed 's/^/  /'
    echo "export SLURM_CONF=$CONF"
    SLURM_CONF=$CONF sinfo -N -o '%N %T %c %O' || true
    SLURM_CONF=$CONF squeue || true
    if netns_on; then
        echo "links (bytes the node received / sent; qdisc on the root end):"
        local k nodes
        nodes=$(cut -d' ' -f1 "$DIR/shape")
        local got sent
        for k in $(seq 1 "$nodes"); do
            read -r got sent < <(link_bytes "$k")
            printf '  n%s %s %s in %s: %s / %s bytes; %s\n' "$k" "$(node_veth "$k")" \
                "$(cat "/sys/class/net/$(node_veth "$k")/operstate" 2>/dev/null)" "$(node_ns "$k")" \
                "$got" "$sent" "$(tc qdisc show dev "$(node_veth "$k")" | head -n 1)"
        done
    fi
}

case ${1:-} in
    up) shift; cmd_up "$@" ;;
    down) shift; cmd_down ;;
    status) shift; cmd_status ;;
    link) shift; cmd_link "$@" ;;
    node) shift; cmd_node "$@" ;;
    -h | --help | help) usage ;;
    *) usage 2 ;;
esac
