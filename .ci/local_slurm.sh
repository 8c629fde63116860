#!/usr/bin/env bash
# local_slurm.sh start|stop -- a real single-node Slurm (Debian 12, Slurm 22.05) for the Slurm
# tests, started by hand (no systemd). Run as root. Adapted from the project's shared recipe
# (shared/slurm/local_slurm.sh, "A real single-node Slurm for tests"); changes here: accounting
# (slurmdbd + MariaDB) on by default so that `sacct` and accounts work as on a real cluster, job
# comments and submit lines kept in accounting, a second non-default partition `gpu` and an account
# `ci_lab` for the tests to select through the profile's environment variables, a task prolog
# that prints each job's CUDA_VISIBLE_DEVICES into its Slurm log, and preemption: a job in the
# partition `urgent` preempts jobs of the others, which Slurm requeues only if they were submitted
# with --requeue (JobRequeue=0), as the profile does.
#
# Node `localhost`, partitions `debug` (default), `gpu` and `urgent`, four fake GPUs (clones of /dev/null:
# never enable cgroup ConstrainDevices; four, so that the rehearsal's Bonito training gets the 4 it asks for). `stop` ends only the daemons `start` started, by their
# pid files. WITH_SLURMDBD=0 skips accounting (then the plugin needs `slurm-status-command: squeue`).
set -euo pipefail
WITH_SLURMDBD="${WITH_SLURMDBD:-1}"
ACCOUNT="${LOCAL_SLURM_ACCOUNT:-ci_lab}"

start() {
  stop   # idempotent: a daemon left over from an earlier run would make the next start fail
  export DEBIAN_FRONTEND=noninteractive
  pkgs="slurm-wlm munge"
  [ "$WITH_SLURMDBD" = 1 ] && pkgs="$pkgs slurmdbd mariadb-server"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $pkgs >/dev/null

  # --- munge (postinst normally creates the key; create one if it did not)
  [ -s /etc/munge/munge.key ] || { mungekey --create --keyfile=/etc/munge/munge.key; chown munge:munge /etc/munge/munge.key; chmod 600 /etc/munge/munge.key; }
  install -d -o munge -g munge -m 755 /run/munge
  su -s /bin/sh munge -c /usr/sbin/munged
  for i in $(seq 50); do munge -n >/dev/null 2>&1 && break; sleep 0.2; done
  munge -n | unmunge >/dev/null

  # --- fake GPUs: Slurm drops "file-less" GPUs and wants char devices -> clones of /dev/null
  install -d /var/lib/slurm/fakegpu
  for n in 0 1 2 3; do [ -c /var/lib/slurm/fakegpu/gpu$n ] || mknod -m 666 /var/lib/slurm/fakegpu/gpu$n c 1 3; done

  # --- every job's Slurm log shows the devices its tasks see (the tests read it)
  cat > /etc/slurm/task_prolog.sh <<'EOF'
#!/bin/sh
echo "print task_prolog: CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-unset}"
EOF
  chmod 755 /etc/slurm/task_prolog.sh

  # --- node hardware from slurmd -C (node is called localhost; slurmd started with -N localhost)
  hw=$(slurmd -C | head -1 | sed 's/^NodeName=[^ ]* //')   # CPUs=2 Boards=1 ... RealMemory=24105
  mem=${hw##*RealMemory=}; hw="${hw%RealMemory=*}RealMemory=$(( ${mem%% *} - 512 ))"

  if [ "$WITH_SLURMDBD" = 1 ]; then
    acct="JobAcctGatherType=jobacct_gather/linux
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment"
  else
    acct="JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none"
  fi
  cat > /etc/slurm/slurm.conf <<EOF
ClusterName=localcluster
SlurmctldHost=localhost
SlurmUser=slurm
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
TaskProlog=/etc/slurm/task_prolog.sh
$acct
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
ReturnToService=2
MinJobAge=3600
MpiDefault=none
MailProg=/bin/true
GresTypes=gpu
NodeName=localhost $hw Gres=gpu:fake:4 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP PriorityTier=1
PartitionName=gpu Nodes=localhost Default=NO MaxTime=INFINITE State=UP PriorityTier=1
PartitionName=urgent Nodes=localhost Default=NO MaxTime=INFINITE State=UP PriorityTier=2
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
JobRequeue=0
EOF
  cat > /etc/slurm/gres.conf <<'EOF'
AutoDetect=off
NodeName=localhost Name=gpu Type=fake File=/var/lib/slurm/fakegpu/gpu[0-3]
EOF

  if [ "$WITH_SLURMDBD" = 1 ]; then
    install -d -o mysql -g mysql /run/mysqld
    /usr/sbin/mariadbd --user=mysql --pid-file=/run/mysqld/mysqld.pid \
      --socket=/run/mysqld/mysqld.sock >/var/log/mysql-local.log 2>&1 &
    for i in $(seq 60); do mariadb-admin ping >/dev/null 2>&1 && break; sleep 0.5; done
    mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
      CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmpw';
      GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
    cat > /etc/slurm/slurmdbd.conf <<'EOF'
AuthType=auth/munge
DbdHost=localhost
SlurmUser=slurm
LogFile=/var/log/slurm/slurmdbd.log
PidFile=/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurmpw
StorageLoc=slurm_acct_db
EOF
    chown slurm:slurm /etc/slurm/slurmdbd.conf; chmod 600 /etc/slurm/slurmdbd.conf
    /usr/sbin/slurmdbd
    for i in $(seq 60); do sacctmgr -n list cluster >/dev/null 2>&1 && break; sleep 0.5; done
    # user associations need the cluster in the database (slurmctld would add it only later)
    sacctmgr -nP list cluster format=cluster | grep -qw localcluster || sacctmgr -i add cluster localcluster >/dev/null
    sacctmgr -nP list account format=account | grep -qw "$ACCOUNT" || sacctmgr -i add account "$ACCOUNT" Description=tests Organization=tests >/dev/null
    for user in root ${SUDO_USER:-}; do
      sacctmgr -nP list assoc user="$user" account="$ACCOUNT" format=user | grep -qw "$user" || sacctmgr -i add user "$user" account="$ACCOUNT" >/dev/null
    done
  fi

  /usr/sbin/slurmctld
  /usr/sbin/slurmd -N localhost
  for i in $(seq 60); do
    st=$(sinfo -h -n localhost -o %t 2>/dev/null | head -1 || true)
    case "$st" in idle*|mix*|alloc*) break;;
      drain*|inval*|down*) scontrol update nodename=localhost state=resume || true;; esac
    sleep 1
  done
  sinfo -h -n localhost -o %t | grep -qE '^(idle|mix|alloc)' || { tail -20 /var/log/slurm/slurm*.log; exit 1; }
  srun -t 1 hostname >/dev/null
  srun -t 1 -p gpu --gpus=1 true >/dev/null
}

stop() {
  # stop only the daemons started above, by their pid files, and wait for them
  for f in /run/slurmd.pid /run/slurmctld.pid /run/slurmdbd.pid /run/mysqld/mysqld.pid /run/munge/munged.pid; do
    [ -s "$f" ] || continue
    pid=$(cat "$f")
    case "$(cat /proc/$pid/comm 2>/dev/null)" in slurmd|slurmctld|slurmdbd|mariadbd|munged) ;; *) continue;; esac
    kill "$pid" 2>/dev/null || continue
    for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    rm -f "$f"   # slurmctld leaves a stale pid file; its dpkg prerm then fails
  done
}

"${1:-start}"
