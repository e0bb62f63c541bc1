#!/usr/bin/env bash
# cluster.sh — a real Slurm cluster on this one machine, for tests and demos.
#
#   slurm/cluster.sh up [--nodes N] [--cpus C]   munge, slurmctld, N slurmd (2 × 4 CPUs)
#   slurm/cluster.sh status                      daemons, nodes, jobs
#   slurm/cluster.sh down                        stop the daemons this script started
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

die() { echo "cluster.sh: error: $*" >&2; exit 1; }
say() { echo "cluster.sh: $*"; }

usage() {
    sed -n '2,6s/^# \{0,1\}//p' "$0"
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
    case $comm in "${1%%-*}" | bash | setsid | setpriv) return 0 ;; esac
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
# configuration

write_config() {
    local nodes=$1 cpus=$2 host
    host=$(hostname -s)
    mkdir -p "$DIR"/{state,log,run,etc}
    local i
    for i in $(seq 1 "$nodes"); do mkdir -p "$DIR/spool/n$i" "$DIR/tmp/n$i"; done

    # TaskProlog: runs as the job's user before each task; lines it prints as
    # `export K=V` enter the task's environment. Open MPI names its shared-memory
    # segments by the real hostname, so two emulated nodes on one host would collide:
    # give each node of each job its own backing directory. Only lo carries the
    # "network" between the emulated nodes. The batch shell (no step id) needs none.
    # (The port tells apart two such clusters on one machine, e.g. a test's and yours.)
    local shm="/dev/shm/slurm-vader.$CTLD_PORT"
    cat >"$DIR/etc/task_prolog.sh" <<EOF
#!/bin/sh
[ -n "\${SLURM_STEP_ID:-}" ] || exit 0
d=$shm.\${SLURMD_NODENAME}.\${SLURM_JOB_ID}
mkdir -p "\$d" 2>/dev/null
echo "export OMPI_MCA_btl_vader_backing_directory=\$d"
echo "export OMPI_MCA_btl_tcp_if_include=lo"
echo "export OMPI_MCA_oob_tcp_if_include=lo"
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
SlurmctldHost=$host(127.0.0.1)
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
NodeName=$nodelist NodeHostname=$host NodeAddr=127.0.0.1 Port=$ports CPUs=$cpus State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    echo "$nodes $cpus" >"$DIR/shape"
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
    local nodes=2 cpus=4
    while [ $# -gt 0 ]; do
        case $1 in
            --nodes) nodes=${2:?--nodes needs a number}; shift 2 ;;
            --nodes=*) nodes=${1#*=}; shift ;;
            --cpus) cpus=${2:?--cpus needs a number}; shift 2 ;;
            --cpus=*) cpus=${1#*=}; shift ;;
            -h | --help) usage ;;
            *) die "unknown option '$1' (see: $0 --help)" ;;
        esac
    done
    [[ $nodes =~ ^[1-9][0-9]*$ ]] || die "--nodes must be a positive integer, not '$nodes'"
    [[ $cpus =~ ^[1-9][0-9]*$ ]] || die "--cpus must be a positive integer, not '$cpus'"
    [ "$nodes" -le 64 ] || die "--nodes $nodes: at most 64 emulated nodes"
    [ "$(id -u)" -eq 0 ] || die "must run as root (slurmd and munge need it)"

    if [ -n "$(live_daemons)" ]; then
        if [ "$(cat "$DIR/shape" 2>/dev/null)" = "$nodes $cpus" ] && our_ctld &&
            [ "$(live_daemons | wc -l)" -eq "$(wc -l <"$PIDS")" ]; then
            say "already up ($nodes node(s) × $cpus CPUs, $DIR)"
            echo "export SLURM_CONF=$CONF"
            return 0
        fi
        say "up with another shape, or a daemon is missing: restarting"
        cmd_down
    fi

    install_packages
    rm -rf "$DIR"
    mkdir -p "$DIR/log"
    : >"$PIDS"
    write_config "$nodes" "$cpus"
    start_munge

    # setsid: the daemons outlive this shell and its terminal; each keeps the PID recorded
    setsid slurmctld -D -i -f "$CONF" </dev/null >>"$DIR/log/slurmctld.out" 2>&1 &
    record_pid slurmctld $!
    local i
    for i in $(seq 1 "$nodes"); do
        setsid slurmd -D -N "n$i" -f "$CONF" </dev/null >>"$DIR/log/slurmd.n$i.out" 2>&1 &
        record_pid "slurmd-n$i" $!
    done
    wait_idle "$nodes"
    say "up: $nodes node(s) × $cpus CPUs; state, logs and PIDs in $DIR"
    echo "export SLURM_CONF=$CONF"
}

cmd_down() {
    if [ ! -f "$PIDS" ]; then
        say "not up (no $PIDS)"
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
    rm -rf "$DIR"
    say "down"
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
}

case ${1:-} in
    up) shift; cmd_up "$@" ;;
    down) shift; cmd_down ;;
    status) shift; cmd_status ;;
    -h | --help | help) usage ;;
    *) usage 2 ;;
esac
