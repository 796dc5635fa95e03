#!/usr/bin/env bash
# A throw-away one-node SLURM cluster (Debian's slurmctld, slurmd, slurm-client and munge) for
# the integration tests, as root, without systemd or cgroups, addressed through 127.0.0.1 only.
#
#   source .ci/slurm-local.sh      # defines the functions below, exports SLURM_CONF; runs nothing
#   slurm_install; slurm_configure; slurm_start; ...; slurm_stop
#   bash .ci/slurm-local.sh up     # install, configure, start; prints the SLURM_CONF to export
#   bash .ci/slurm-local.sh down   # stop the daemons of a cluster started with "up"
#
# Everything the cluster writes is under $SLURM_LOCAL_DIR (default /tmp/meanfield-slurm); nothing
# goes to /etc/slurm. SLURM_LOCAL_CPUS (default 4) is the number of CPUs the node advertises:
# more than the machine has, so that several one-CPU array tasks run at once on a 2-core box.
# KillWait=10: a task SLURM stops (scancel, requeue, time limit) gets SIGTERM and 10 s to write
# its checkpoint before SIGKILL.

SLURM_LOCAL_DIR=${SLURM_LOCAL_DIR:-/tmp/meanfield-slurm}
export SLURM_CONF=$SLURM_LOCAL_DIR/etc/slurm.conf
_SL_MUNGE_SOCKET=$SLURM_LOCAL_DIR/munge/run/munge.socket.2
_SL_NODE=$(hostname -s 2>/dev/null || uname -n)
_SL_NODE=${_SL_NODE%%.*}

_sl_log() { echo "[slurm-local $(date +%T)] $*" >&2; }

# alive PID: running and not a zombie (some sandboxes' PID 1 reaps orphans late)
_sl_alive() {
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

slurm_install() {
  if command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
     && command -v sbatch >/dev/null && command -v munged >/dev/null; then
    return 0
  fi
  export DEBIAN_FRONTEND=noninteractive
  # the packages' postinst scripts try to start their services: deny that for the install
  local made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
    made_policy=1
  fi
  apt-get update -qq || return 1
  # --no-install-recommends: slurm-wlm-plugins would bring some 35 packages we do not use
  local rc=0
  apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge \
    >/dev/null || rc=$?
  if [ "$made_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
  return $rc
}

slurm_configure() {
  local d=$SLURM_LOCAL_DIR
  mkdir -p "$d"/{etc,state,spool,log,run}
  chmod 755 "$d"   # munged runs as munge and must reach its socket folder below
  install -d -o munge -g munge -m 755 "$d/munge" "$d/munge/run"
  install -d -o munge -g munge -m 700 "$d/munge/etc" "$d/munge/lib" "$d/munge/log"
  local key=$d/munge/etc/munge.key
  [ -s "$key" ] || head -c 1024 /dev/urandom > "$key"
  chown munge:munge "$key" && chmod 400 "$key"

  # the node line must match what slurmd detects, or the node is drained; only the CPU count
  # is overridden (config_overrides lets it exceed the hardware)
  local memory
  memory=$(env -u SLURM_CONF slurmd -C | grep -oE 'RealMemory=[0-9]+' | head -1)
  cat > "$SLURM_CONF" <<EOF
ClusterName=meanfield
SlurmctldHost=${_SL_NODE}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=${_SL_MUNGE_SOCKET}
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$d/state
SlurmdSpoolDir=$d/spool
SlurmctldPidFile=$d/run/slurmctld.pid
SlurmdPidFile=$d/run/slurmd.pid
SlurmctldLogFile=$d/log/slurmctld.log
SlurmdLogFile=$d/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=3600
KillWait=10
Waittime=0
JobRequeue=1
SlurmdParameters=config_overrides
NodeName=${_SL_NODE} NodeAddr=127.0.0.1 CPUs=${SLURM_LOCAL_CPUS:-4} ${memory} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

slurm_start() {
  local d=$SLURM_LOCAL_DIR
  runuser -u munge -- /usr/sbin/munged -S "$_SL_MUNGE_SOCKET" --key-file="$d/munge/etc/munge.key" \
    --log-file="$d/munge/log/munged.log" --pid-file="$d/munge/run/munged.pid" \
    --seed-file="$d/munge/lib/munged.seed" </dev/null || return 1
  munge -S "$_SL_MUNGE_SOCKET" -n | unmunge -S "$_SL_MUNGE_SOCKET" >/dev/null || return 1
  # in the foreground (-D) behind &, so that $! is the daemon itself; no inherited pipes;
  # -c: no jobs from an earlier cluster in this folder
  slurmctld -D -c -i </dev/null >"$d/log/slurmctld.stdout" 2>&1 &
  echo $! > "$d/run/slurmctld.bgpid"
  slurmd -D -N "$_SL_NODE" </dev/null >"$d/log/slurmd.stdout" 2>&1 &
  echo $! > "$d/run/slurmd.bgpid"
  local state="" i
  for i in $(seq 60); do
    state=$(sinfo -h -n "$_SL_NODE" -o '%T' 2>/dev/null || true)
    [ "$state" = idle ] && return 0
    sleep 1
  done
  _sl_log "node not idle after 60 s (state '$state')"
  tail -n 20 "$d/log/slurmctld.log" "$d/log/slurmd.log" >&2
  return 1
}

slurm_stop() {
  local d=$SLURM_LOCAL_DIR jobs pids=() f pid i left
  jobs=$(squeue -h -o '%A' 2>/dev/null | sort -u || true)
  if [ -n "$jobs" ]; then scancel $jobs 2>/dev/null || true; sleep 2; fi
  for f in "$d/run/slurmd.bgpid" "$d/run/slurmctld.bgpid" "$d/munge/run/munged.pid"; do
    [ -s "$f" ] || continue
    pid=$(cat "$f"); rm -f "$f"
    if _sl_alive "$pid"; then kill -TERM "$pid" 2>/dev/null || true; pids+=("$pid"); fi
  done
  for i in $(seq 20); do
    left=0
    for pid in "${pids[@]}"; do if _sl_alive "$pid"; then left=1; fi; done
    if [ "$left" = 0 ]; then break; fi
    sleep 0.5
  done
  for pid in "${pids[@]}"; do if _sl_alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  return 0
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  case "${1:-}" in
    up) slurm_install; slurm_configure; slurm_start; echo "export SLURM_CONF=$SLURM_CONF" ;;
    down) slurm_stop ;;
    *) echo "usage: bash .ci/slurm-local.sh up|down" >&2; exit 2 ;;
  esac
fi
