#!/usr/bin/env bash
# A real single-node SLURM cluster with accounting (slurmctld, slurmd, slurmdbd on MariaDB, munge) on this machine,
# for tests/test_slurm.py and by hand. Debian or Ubuntu, as root; no systemd needed: every daemon is started here,
# its PID recorded in the run folder, and stopped by that PID.
#
#   tests/slurm/cluster.sh up [--partition debug] [--gpu-partition gpu] [--gpus 2] [--gpu-type ci] [--account matprobe_ci]
#                             [--cpus N]
#   tests/slurm/cluster.sh status
#   tests/slurm/cluster.sh down
#
# up       installs the packages if missing, writes /etc/slurm/{slurm,slurmdbd,gres}.conf (the jobstep plugin clears
#          SLURM_CONF before its inner srun, so the default location is the only one that works), starts munge,
#          MariaDB, slurmdbd, slurmctld and slurmd, registers the cluster, the account and root as its user, and waits
#          until the node is idle. One node, named `hostname -s`, with this machine's CPUs (--cpus N: N CPU slots
#          over them, for more jobs side by side on a small machine) and memory; the partition
#          (--partition) is the default one. --gpu-partition adds a second partition over the same node, which then
#          advertises --gpus GPUs of type --gpu-type with no device behind them: GPU requests (sbatch --gpus) are
#          accepted and scheduled, and the jobs run on the CPU.
# down     cancels every job, stops the daemons by their recorded PIDs (waiting for each), removes the database and
#          state and the configs it wrote; the logs stay in the run folder.
# status   prints which daemons run and the node's state; exit status 0 only when the cluster is up and the node idle.
#
# Exit status 3 means "cannot here" (not root, no apt-get, someone else's SLURM or MariaDB in the way): a caller
# outside CI should skip. Every step prints its time. Run folder: $MATPROBE_SLURM_RUN (default /var/tmp/matprobe-slurm).
set -euo pipefail

RUN=${MATPROBE_SLURM_RUN:-/var/tmp/matprobe-slurm}
CLUSTER=matprobe
MARK="# written by matprobe tests/slurm/cluster.sh"
PACKAGES="munge slurmctld slurmd slurm-client slurmdbd mariadb-server"
DB_PORT=${MATPROBE_SLURM_DB_PORT:-3307}
DB_PASSWORD=matprobe-ci
DAEMONS_UP="munged mariadbd slurmdbd slurmctld slurmd"
DAEMONS_DOWN="slurmd slurmctld slurmdbd mariadbd munged"

PARTITION=debug
GPU_PARTITION=
GPUS=2
CPUS=
GPU_TYPE=ci
ACCOUNT=matprobe_ci

log() { echo "cluster: $*"; }
cannot() { echo "cluster: cannot: $*" >&2; exit 3; }
die() { echo "cluster: error: $*" >&2; for f in "$RUN"/log/*.log; do [ -s "$f" ] && { echo "--- $f" >&2; tail -n 15 "$f" >&2; }; done; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# step NAME COMMAND...: run a step and print how long it took
step() {
    local name=$1 started
    shift
    started=$(now)
    "$@"
    log "$name: $(since "$started") s"
}

# wait_for SECONDS DESCRIPTION COMMAND...: poll until COMMAND succeeds
wait_for() {
    local limit=$1 what=$2 deadline
    shift 2
    deadline=$(($(date +%s) + limit))
    until "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -lt "$deadline" ] || die "$what: not ready after $limit s"
        sleep 0.2
    done
}

pid_of() { [ -s "$RUN/pids/$1" ] && cat "$RUN/pids/$1" || true; }
# running PID: the process exists and is not a zombie (PID 1 here may reap late)
running() { local state; state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null) || return 1; [ "${state%% *}" != Z ]; }
alive() { local pid; pid=$(pid_of "$1"); [ -n "$pid" ] && running "$pid"; }

# start NAME COMMAND...: start a daemon in the foreground of its own session, record its PID
start() {
    local name=$1
    shift
    setsid "$@" </dev/null >>"$RUN/log/$name.out" 2>&1 &
    echo $! >"$RUN/pids/$name"
}

# stop NAME: SIGTERM by the recorded PID, wait, SIGKILL after 20 s
stop() {
    local name=$1 pid waited=0
    pid=$(pid_of "$name")
    [ -n "$pid" ] || return 0
    if running "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        while running "$pid" && [ $waited -lt 200 ]; do sleep 0.1; waited=$((waited + 1)); done
        if running "$pid"; then
            log "$name ($pid) ignored SIGTERM for 20 s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.5
        fi
    fi
    rm -f "$RUN/pids/$name"
}

ours() { [ -f "$1" ] && head -n 1 "$1" | grep -qxF "$MARK"; }

install_packages() {
    local missing=""
    for binary in munged mariadbd mariadb-install-db slurmdbd slurmctld slurmd sbatch sacctmgr; do
        command -v "$binary" >/dev/null 2>&1 || missing="$missing $binary"
    done
    if [ -z "$missing" ]; then
        log "packages: installed already"
        return 0
    fi
    command -v apt-get >/dev/null 2>&1 || cannot "missing$missing and no apt-get to install $PACKAGES"
    log "packages: missing$missing; apt-get install $PACKAGES"
    export DEBIAN_FRONTEND=noninteractive
    # package scripts do not start services here (no systemd, or policy-rc.d): every daemon is started below
    if ! apt-get install -y --no-install-recommends $PACKAGES >"$RUN/log/apt.log" 2>&1; then
        log "apt-get install failed; apt-get update and again"
        apt-get update >>"$RUN/log/apt.log" 2>&1 || die "apt-get update failed (see $RUN/log/apt.log)"
        apt-get install -y --no-install-recommends $PACKAGES >>"$RUN/log/apt.log" 2>&1 || die "apt-get install failed (see $RUN/log/apt.log)"
    fi
}

check_nothing_else() {
    for conf in /etc/slurm/slurm.conf /etc/slurm/slurmdbd.conf /etc/slurm/gres.conf; do
        if [ -e "$conf" ] && ! ours "$conf"; then
            cannot "$conf exists and was not written by this script: this machine has a SLURM of its own"
        fi
    done
    local name pid
    for name in slurmctld slurmd slurmdbd; do
        for pid in $(pgrep -x "$name" || true); do
            running "$pid" || continue  # a zombie of ours, not yet reaped
            [ "$pid" = "$(pid_of "$name")" ] || cannot "a $name (PID $pid) not started by this script is running"
        done
    done
    if (exec 3<>"/dev/tcp/127.0.0.1/$DB_PORT") 2>/dev/null; then
        alive mariadbd || cannot "port $DB_PORT is taken (set MATPROBE_SLURM_DB_PORT)"
    fi
}

write_configs() {
    local host node_line gres_line="" nodes_gres=""
    host=$(hostname -s)
    # CPUs, sockets, cores and memory as slurmd itself measures them
    node_line=$(slurmd -C | head -n 1)
    local overrides=""
    if [ -n "$CPUS" ]; then
        # N CPU slots on this machine's cores: slurmd takes the configured count instead of the one it finds
        node_line="NodeName=$host CPUs=$CPUS RealMemory=$(echo "$node_line" | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')"
        overrides="SlurmdParameters=config_overrides"
    fi
    mkdir -p /etc/slurm "$RUN/state" "$RUN/spool"
    if [ -n "$GPU_PARTITION" ]; then
        gres_line="GresTypes=gpu"
        nodes_gres=" Gres=gpu:$GPU_TYPE:$GPUS"
        # SLURM drops GPUs without a device file: each fake GPU's "device" is a link to /dev/null
        rm -rf "$RUN/fakegpu" && mkdir -p "$RUN/fakegpu"
        for i in $(seq 0 $((GPUS - 1))); do ln -s /dev/null "$RUN/fakegpu/gpu$i"; done
        {
            echo "$MARK"
            echo "# GPUs with no device behind them: requests are scheduled, the jobs run on the CPU"
            echo "NodeName=$host Name=gpu Type=$GPU_TYPE File=$RUN/fakegpu/gpu[0-$((GPUS - 1))]"
        } >/etc/slurm/gres.conf
    else
        rm -f /etc/slurm/gres.conf
    fi
    cat >/etc/slurm/slurm.conf <<EOF
$MARK
ClusterName=$CLUSTER
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
StateSaveLocation=$RUN/state
SlurmdSpoolDir=$RUN/spool
SlurmctldPidFile=$RUN/state/slurmctld.pid
SlurmdPidFile=$RUN/spool/slurmd.pid
SlurmctldLogFile=$RUN/log/slurmctld.log
SlurmdLogFile=$RUN/log/slurmd.log
# no cgroups (no systemd here): a job's processes are its process group (a child orphaned by its shell stays in it)
ProctrackType=proctrack/pgid
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=5
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageEnforce=associations,limits
AccountingStorageTRES=gres/gpu
# sacct shows each job's --comment (the plugin writes rule and wildcards there)
AccountingStoreFlags=job_comment
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
# a cancelled job gets SIGKILL 2 s after SIGTERM; finished jobs stay visible to squeue for 5 min (SLURM's default)
KillWait=2
MinJobAge=300
SlurmctldTimeout=30
SlurmdTimeout=30
$overrides
$gres_line
$node_line$nodes_gres State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    if [ -n "$GPU_PARTITION" ]; then
        echo "PartitionName=$GPU_PARTITION Nodes=$host MaxTime=INFINITE State=UP" >>/etc/slurm/slurm.conf
    fi
    cat >/etc/slurm/slurmdbd.conf <<EOF
$MARK
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
LogFile=$RUN/log/slurmdbd.log
PidFile=$RUN/state/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASSWORD
StorageLoc=slurm_acct_db
EOF
    chmod 600 /etc/slurm/slurmdbd.conf
}

start_munge() {
    mkdir -p /run/munge
    chown munge:munge /run/munge
    chmod 755 /run/munge
    if [ ! -s /etc/munge/munge.key ]; then
        mungekey --create --keyfile /etc/munge/munge.key
        chown munge:munge /etc/munge/munge.key
        chmod 600 /etc/munge/munge.key
    fi
    # setpriv execs munged itself, so $! is munged's PID
    start munged setpriv --reuid=munge --regid=munge --init-groups munged --foreground
    wait_for 10 munge sh -c 'munge -n | unmunge'
}

start_mariadb() {
    rm -rf "$RUN/db"
    mkdir -p "$RUN/db"
    chown mysql:mysql "$RUN/db"
    mariadb-install-db --datadir="$RUN/db/data" --user=mysql --auth-root-authentication-method=socket \
        --skip-test-db >"$RUN/log/mariadb-install.log" 2>&1 || die "mariadb-install-db failed (see $RUN/log/mariadb-install.log)"
    start mariadbd mariadbd --no-defaults --user=mysql --datadir="$RUN/db/data" --socket="$RUN/db/mysqld.sock" \
        --pid-file="$RUN/db/mariadbd.pid" --bind-address=127.0.0.1 --port="$DB_PORT" --log-error="$RUN/log/mariadbd.log" \
        --innodb-buffer-pool-size=64M --innodb-log-file-size=16M
    wait_for 30 MariaDB mariadb-admin --no-defaults --socket="$RUN/db/mysqld.sock" ping
    mariadb --no-defaults --socket="$RUN/db/mysqld.sock" -e "
        CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASSWORD';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
        CREATE DATABASE slurm_acct_db;"
}

start_slurmdbd() {
    start slurmdbd slurmdbd -D
    wait_for 30 slurmdbd sacctmgr -n list cluster
}

register_cluster() {
    sacctmgr -i add cluster "$CLUSTER" >/dev/null
}

start_slurmctld() {
    rm -rf "$RUN/state" && mkdir -p "$RUN/state"
    start slurmctld slurmctld -D -c -i
    wait_for 30 slurmctld scontrol ping
}

add_account() {
    sacctmgr -i add account "$ACCOUNT" Cluster="$CLUSTER" Description="matprobe tests" Organization=matprobe >/dev/null
    sacctmgr -i add user root Account="$ACCOUNT" Cluster="$CLUSTER" >/dev/null
}

start_slurmd() {
    rm -rf "$RUN/spool" && mkdir -p "$RUN/spool"
    start slurmd slurmd -D
}

node_idle() { [ "$(sinfo -h -N -n "$(hostname -s)" -o %t 2>/dev/null | head -n 1)" = "idle" ]; }

wait_idle() {
    local deadline=$(($(date +%s) + 60)) state
    until node_idle; do
        state=$(sinfo -h -N -o %t 2>/dev/null | head -n 1 || true)
        case "$state" in
        drain* | down* | fail*)
            # a node that came up before its first registration was complete: bring it back once
            scontrol update NodeName="$(hostname -s)" State=RESUME >/dev/null 2>&1 || true ;;
        esac
        [ "$(date +%s)" -lt "$deadline" ] || die "node not idle after 60 s (state: ${state:-none}; $(scontrol show node 2>&1 | grep -i reason || true))"
        alive slurmd || die "slurmd exited"
        sleep 0.2
    done
}

status() {
    local all=0 name
    for name in $DAEMONS_UP; do
        if alive "$name"; then
            log "$name: running (PID $(pid_of "$name"))"
        else
            log "$name: not running"
            all=1
        fi
    done
    if [ $all -eq 0 ]; then
        log "node: $(sinfo -h -N -o '%N %P %t' 2>&1 | tr '\n' ' ')"
        node_idle || { log "node not idle"; return 1; }
    fi
    return $all
}

up() {
    [ "$(id -u)" -eq 0 ] || cannot "needs root (it installs packages, writes /etc/slurm and starts daemons)"
    mkdir -p "$RUN/log" "$RUN/pids"
    local started
    started=$(now)
    check_nothing_else
    local wanted="$PARTITION $GPU_PARTITION $GPUS $GPU_TYPE $ACCOUNT $CPUS"
    if status >/dev/null 2>&1 && [ "$(cat "$RUN/settings" 2>/dev/null)" = "$wanted" ]; then
        log "up already"
        return 0
    fi
    # a half-started cluster from an earlier run: take it down first
    for name in $DAEMONS_UP; do alive "$name" && { down; mkdir -p "$RUN/log" "$RUN/pids"; break; }; done
    step "install" install_packages
    step "configs" write_configs
    step "munge" start_munge
    step "mariadb" start_mariadb
    step "slurmdbd" start_slurmdbd
    step "cluster registered" register_cluster
    step "slurmctld" start_slurmctld
    step "account $ACCOUNT" add_account
    step "slurmd" start_slurmd
    step "node idle" wait_idle
    echo "$wanted" >"$RUN/settings"
    log "up in $(since "$started") s: partition $PARTITION${GPU_PARTITION:+, GPU partition $GPU_PARTITION ($GPUS GPUs)}, account $ACCOUNT"
}

# PIDs of processes started by this cluster's jobs (SLURM_CLUSTER_NAME in their environment)
job_processes() {
    local environ
    for environ in /proc/[0-9]*/environ; do
        tr '\0' '\n' 2>/dev/null <"$environ" | grep -qxF "SLURM_CLUSTER_NAME=$CLUSTER" && basename "$(dirname "$environ")"
    done
    return 0
}

cancel_jobs() {
    alive slurmctld || return 0
    local jobs deadline
    jobs=$(squeue -h -o %i 2>/dev/null || true)
    [ -n "$jobs" ] || return 0
    log "cancelling jobs: $(echo $jobs)"
    scancel $jobs 2>/dev/null || true
    deadline=$(($(date +%s) + 30))
    while [ -n "$(squeue -h -t PD,R,CG,S,CF -o %i 2>/dev/null || true)" ] && [ "$(date +%s)" -lt "$deadline" ]; do sleep 0.2; done
}

down() {
    local started name pid
    started=$(now)
    mkdir -p "$RUN/pids"
    step "jobs cancelled" cancel_jobs
    for name in $DAEMONS_DOWN; do
        alive "$name" && step "$name stopped" stop "$name"
        rm -f "$RUN/pids/$name"
    done
    # job step daemons of our slurmd, and processes of this cluster's jobs, outlive it only if a job did not end:
    # they are ours (their environment names this cluster), stop them by PID
    for pid in $(pgrep -x slurmstepd || true) $(job_processes); do
        running "$pid" || continue
        log "left over from a job: $(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | cut -c1-100) ($pid): SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    done
    rm -rf "$RUN/db" "$RUN/state" "$RUN/spool" "$RUN/fakegpu" "$RUN/settings"
    for conf in /etc/slurm/slurm.conf /etc/slurm/slurmdbd.conf /etc/slurm/gres.conf; do
        ours "$conf" && rm -f "$conf"
    done
    log "down in $(since "$started") s"
}

command=${1:-}
shift || true
while [ $# -gt 0 ]; do
    case "$1" in
    --partition) PARTITION=$2; shift 2 ;;
    --gpu-partition) GPU_PARTITION=$2; shift 2 ;;
    --gpus) GPUS=$2; shift 2 ;;
    --gpu-type) GPU_TYPE=$2; shift 2 ;;
    --cpus) CPUS=$2; shift 2 ;;
    --account) ACCOUNT=$2; shift 2 ;;
    *) echo "cluster: unknown option $1" >&2; exit 2 ;;
    esac
done

case "$command" in
up) up ;;
down) down ;;
status) status ;;
configs) mkdir -p "$RUN/log" "$RUN/pids"; check_nothing_else; write_configs ;;  # for debugging: the configs, nothing started
*) echo "usage: $0 up [--partition NAME] [--gpu-partition NAME] [--gpus N] [--gpu-type NAME] [--account NAME] [--cpus N] | status | down" >&2; exit 2 ;;
esac
