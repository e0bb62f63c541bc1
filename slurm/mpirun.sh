#!/usr/bin/env bash
# mpirun.sh — mpirun for trident runs outside Slurm: a TERM, an INT (Ctrl-C) or a HUP
# makes trident finish its step, write a checkpoint and exit 75, instead of being killed.
#
#   slurm/mpirun.sh [mpirun options] bin/trident train CONFIG [--key=value ...]
#   slurm/mpirun.sh -np 8 bin/trident train inputs/gpt2-124m.conf --dp=8
#
# Why: Open MPI's mpirun treats TERM, INT and HUP as "kill the job": it sends the ranks
# SIGCONT, then SIGTERM one second later and SIGKILL one second after that
# (odls_base_sigkill_timeout = 1 s), and exits 1. A checkpoint that takes longer than
# that is lost, and the exit code says nothing about it. USR1, on the other hand, mpirun
# forwards to every rank at once and keeps running (TERM cannot be added to the forwarded
# signals: Open MPI refuses it). So this script runs mpirun in a session of its own, where
# Ctrl-C, `kill -- -PGID` and `timeout` do not reach it, traps TERM, INT, HUP, USR1 and
# USR2 itself, and passes each on to mpirun as USR1. trident then stops at the end of the
# step, every rank writes its part of the checkpoint, and all exit 75; mpirun, and so
# this script, exits 75. Start the same command again to resume (resume = auto).
#
# A second INT (Ctrl-C twice) aborts at once: it sends TERM to mpirun (Open MPI's kill,
# no checkpoint). Send signals to this script, not to mpirun's own PID: a TERM to mpirun
# itself still kills the job (use USR1 there). The exit code is mpirun's.
set -uo pipefail

if [ $# -eq 0 ] || [ "$1" = -h ] || [ "$1" = --help ]; then
    sed -n '2,5s/^# \{0,1\}//p' "$0"
    exit 2
fi
command -v mpirun >/dev/null 2>&1 || { echo "mpirun.sh: error: no mpirun in PATH" >&2; exit 2; }
command -v setsid >/dev/null 2>&1 || { echo "mpirun.sh: error: no setsid (util-linux)" >&2; exit 2; }

say() { echo "mpirun.sh: $*" >&2; }
# tells trident (on this node's ranks) that a TERM reaches it as USR1: no warning needed
export TRIDENT_SIGNAL_LAUNCHER=mpirun.sh

pid=""
pending=""
n_int=0
on_signal() { # SIG
    local sig=$1
    [ "$sig" = INT ] && n_int=$((n_int + 1))
    if [ -z "$pid" ]; then
        pending=$sig # before mpirun started: passed on right after the start
        return 0
    fi
    if [ "$n_int" -ge 2 ]; then
        say "second SIGINT: aborting now (TERM to mpirun, no checkpoint)"
        kill -TERM "$pid" 2>/dev/null || true
        return 0
    fi
    say "received SIG$sig: asking the ranks to finish the step, checkpoint and exit 75" \
        "(SIGUSR1 to mpirun $pid)"
    kill -USR1 "$pid" 2>/dev/null || true
}
for s in TERM INT HUP USR1 USR2; do
    # shellcheck disable=SC2064
    trap "on_signal $s" "$s"
done

# setsid: a session (and process group) of its own, so that signals meant for this
# script's group (Ctrl-C, timeout, kill -- -PGID) reach mpirun only as USR1, from here.
# A terminal on stdin would no longer be mpirun's: trident reads no input, give it none.
if [ -t 0 ]; then
    setsid mpirun "$@" </dev/null &
else
    setsid mpirun "$@" &
fi
pid=$!
[ -z "$pending" ] || on_signal "$pending"
rc=0
while :; do
    wait "$pid" && rc=0 || rc=$?
    # `wait` also returns when a trapped signal arrives; mpirun is then still running
    kill -0 "$pid" 2>/dev/null || break
done
exit "$rc"
