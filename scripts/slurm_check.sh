#!/usr/bin/env bash
# `pbb sweep --executor slurm` against a real Slurm (run by hand, as root; not part of CI).
# Installs Debian's slurm-wlm and munge where they are missing, starts munged, slurmctld and slurmd
# on this machine as a one-node cluster (partition `debug`, no accounting, no cgroups), runs a
# two-point tiny-random sweep through submitit -> sbatch, then checks: every point ran as its
# own Slurm job (cluster "slurm" and numeric job ids in jobs.json, each id completed in
# slurmctld's log), and the results equal the same sweep run in this process (--executor local).
# The daemons are stopped on exit; the config it writes is /etc/slurm/slurm.conf (a machine that
# already runs Slurm should not run this script: submit a sweep to it instead, docs/sweeps.md).
# Usage: sudo bash scripts/slurm_check.sh [OUTDIR]     (after bash scripts/setup.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/pbb-slurm-check}
PY=${PYTHON:-$PWD/.venv/bin/python}
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge
fi
host=$(hostname -s)
cpus=$(nproc)
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge
cat > /etc/slurm/slurm.conf <<EOF
ClusterName=pbbcheck
SlurmctldHost=$host
AuthType=auth/munge
SlurmUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmdSpoolDir=/var/spool/slurmd
StateSaveLocation=/var/spool/slurmctld
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
[ -s /etc/munge/munge.key ] || { mkdir -p /etc/munge; dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; }
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
chmod 400 /etc/munge/munge.key
stop() {
  scancel --user "$(id -un)" 2>/dev/null || true
  pkill -x slurmd 2>/dev/null || true; pkill -x slurmctld 2>/dev/null || true
  pkill -x munged 2>/dev/null || true
}
trap stop EXIT
stop; sleep 1
runuser -u munge -- munged
: > /var/log/slurm/slurmctld.log
slurmctld -c   # -c: a clean start, no state from an earlier check
slurmd
for _ in $(seq 60); do
  sinfo -h -o "%t" 2>/dev/null | grep -q idle && break
  sleep 1
done
sinfo
sinfo -h -o "%t" | grep -q idle || { echo "slurm_check: the node never became idle"; \
  tail -20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log; exit 1; }

rm -rf "$out"; mkdir -p "$out"
# two points of the sample-efficiency sweep at smoke size (tiny-random, seconds each)
"$PY" - "$out/sweep.yaml" <<'PY'
import sys, yaml
raw = yaml.safe_load(open("configs/sample_efficiency_quick.yaml"))
raw["sweep"]["grid"] = {"seed": [0]}
raw["sweep"]["points"] = raw["sweep"]["points"][:2]
yaml.safe_dump(raw, open(sys.argv[1], "w"))
PY
sets=(--set model=tiny-random --set data.behaviours=8 --set data.test_inputs=2 --set data.demos=3
      --set curriculum.declarative_repeats=1 --set curriculum.eval_declarative_repeats=1
      --set train.max_steps=1 --set train.batch_size=4 --set 'eval.max_new_tokens={"recall":8,"cot":8,"direct":8,"in_context":8}'
      --set sweep.slurm.partition=debug --set sweep.slurm.gpus_per_job=0
      --set sweep.slurm.cpus_per_job=1 --set sweep.slurm.time_min=20)
"$PY" -m pbb sweep "$out/sweep.yaml" --out "$out/slurm" --executor slurm --no-progress "${sets[@]}"
"$PY" -m pbb sweep "$out/sweep.yaml" --out "$out/local" --no-progress "${sets[@]}"
"$PY" - "$out" <<'PY'
import json, re, sys
from pathlib import Path

out = Path(sys.argv[1])
jobs = json.loads((out / "slurm" / "jobs.json").read_text())
log = Path("/var/log/slurm/slurmctld.log").read_text()
assert len(jobs) == 2, jobs
for name, j in jobs.items():
    assert j["cluster"] == "slurm" and str(j["job_id"]).isdigit(), j
    assert re.search(rf"JobId={j['job_id']}\b.*done", log), f"job {j['job_id']} not completed in slurmctld.log"
    a = json.loads((out / "slurm" / "runs" / name / "summary.json").read_text())["results"]
    b = json.loads((out / "local" / "runs" / name / "summary.json").read_text())["results"]
    assert a == b, f"{name}: slurm and local results differ"
print(f"slurm_check: {len(jobs)} points ran as Slurm jobs "
      f"{sorted(j['job_id'] for j in jobs.values())}, results equal to the local sweep")
PY
