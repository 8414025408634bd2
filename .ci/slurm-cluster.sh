#!/usr/bin/env bash
# A one-node Slurm cluster on loopback, for the Slurm executor's tests (issue 14). As root.
#   .ci/slurm-cluster.sh start   munged, slurmctld and slurmd from a generated slurm.conf; waits
#                                until `srun hostname` works; prints `export SLURM_CONF=...`
#   .ci/slurm-cluster.sh stop    stops the three daemons and removes the cluster's folder
#   .ci/slurm-cluster.sh env     prints `export SLURM_CONF=...` for a running cluster
#   .ci/slurm-cluster.sh slurmd-stop | slurmd-start   (the fault tests kill and restart slurmd)
# Everything lives in $PROCTOR_SLURM_DIR (default /tmp/proctor-slurm): the munge key and socket,
# slurm.conf, state, spool and logs. Nothing listens beyond 127.0.0.1 (CommunicationParameters=
# NoInAddrAny with every address on loopback). No cgroup plugins: proctrack/linuxproc and
# task/none, so it runs on a cgroup v1 container host; the launcher inside the job enforces budgets.
set -euo pipefail

DIR="${PROCTOR_SLURM_DIR:-/tmp/proctor-slurm}"
CTLD_PORT="${PROCTOR_SLURM_CTLD_PORT:-16817}"
SLURMD_PORT="${PROCTOR_SLURM_SLURMD_PORT:-16818}"
log() { printf 'slurm-cluster: %s\n' "$*" >&2; }

write_conf() {
    # The machine's CPUs and memory as slurmd itself sees them, less a little memory for the host.
    local cpus mem
    cpus="$(slurmd -C | sed -n 's/.*CPUs=\([0-9]*\).*/\1/p')"
    mem="$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')"
    mem=$((mem > 1024 ? mem - 512 : mem))
    cat >"$DIR/slurm.conf" <<CONF
ClusterName=proctor-ci
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
CommunicationParameters=NoInAddrAny,NoCtldInAddrAny
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
ReturnToService=2
SlurmdTimeout=10
SlurmctldTimeout=10
MessageTimeout=5
InactiveLimit=0
KillWait=5
MinJobAge=600
DefMemPerCPU=1024
JobRequeue=0
# A batch job is scheduled when it is submitted, not up to 3 s later (batch_sched_delay's
# default, for clusters flooded with submissions): the tests wait on some 60 jobs, one at a time.
SchedulerParameters=sched_interval=2,batch_sched_delay=0
PreemptType=preempt/partition_prio
PreemptMode=CANCEL
NodeName=localhost NodeAddr=127.0.0.1 NodeHostname=localhost CPUs=$cpus RealMemory=$mem State=UNKNOWN
# Jobs in "urgent" preempt (cancel) those in "debug": the preemption test's stand-in for a busy cluster.
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP PriorityTier=1
PartitionName=urgent Nodes=localhost MaxTime=INFINITE State=UP PriorityTier=2 PreemptMode=OFF
CONF
}

start_munged() {
    mkdir -p "$DIR/munge"
    chmod 0755 "$DIR/munge"  # every user reaches the socket, as on a real cluster; the key stays 0400
    [[ -f "$DIR/munge/munge.key" ]] || dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
    chmod 0400 "$DIR/munge/munge.key"
    munged --force --socket="$DIR/munge/munge.socket" --key-file="$DIR/munge/munge.key" \
        --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/log/munged.log" \
        --seed-file="$DIR/munge/munged.seed"
}

start_slurmd() { slurmd -f "$DIR/slurm.conf" -N localhost; }

stop_pidfile() {  # stop_pidfile FILE: TERM the daemon it names, KILL after 5 s
    local file="$1" pid
    [[ -f "$file" ]] || return 0
    pid="$(cat "$file" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
}

wait_ready() {  # until a job runs on the node (the node registers, the partition takes jobs)
    export SLURM_CONF="$DIR/slurm.conf"
    for _ in $(seq 60); do
        if timeout 10 srun --immediate=5 -N1 -n1 hostname >/dev/null 2>&1; then return 0; fi
        sleep 1
    done
    log "the cluster did not run a job in 60 s; logs in $DIR/log"
    tail -n 20 "$DIR/log/"*.log >&2 || true
    return 1
}

case "${1:-}" in
    start)
        [[ $(id -u) -eq 0 ]] || { log "run as root"; exit 1; }
        command -v slurmctld >/dev/null && command -v munged >/dev/null ||
            { log "slurm-wlm and munge are not installed (.ci/setup installs them)"; exit 1; }
        "$0" stop 2>/dev/null || true
        mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"
        chmod 0755 "$DIR"
        write_conf
        start_munged
        slurmctld -f "$DIR/slurm.conf" -i
        start_slurmd
        wait_ready
        log "up: $(SLURM_CONF="$DIR/slurm.conf" sinfo -h -o '%P %D %t %c CPUs %m MB' | head -1)"
        echo "export SLURM_CONF=$DIR/slurm.conf"
        ;;
    stop)
        # Jobs first, so that no slurmstepd outlives the cluster.
        if [[ -f "$DIR/slurm.conf" ]]; then SLURM_CONF="$DIR/slurm.conf" timeout 10 scancel --full -u root 2>/dev/null || true; fi
        stop_pidfile "$DIR/slurmd.pid"
        stop_pidfile "$DIR/slurmctld.pid"
        stop_pidfile "$DIR/munge/munged.pid"
        rm -rf -- "$DIR"
        ;;
    env) echo "export SLURM_CONF=$DIR/slurm.conf" ;;
    slurmd-stop) stop_pidfile "$DIR/slurmd.pid" ;;
    slurmd-kill) [[ -f "$DIR/slurmd.pid" ]] && kill -KILL "$(cat "$DIR/slurmd.pid")" ;;
    slurmd-start) start_slurmd ;;
    *) echo "usage: $0 start|stop|env|slurmd-stop|slurmd-kill|slurmd-start" >&2; exit 2 ;;
esac
