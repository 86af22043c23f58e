#!/usr/bin/env bash
# Launch check (run by hand, not CI): pbb's SFT loop under accelerate's distributed setups.
# The same tiny-random run (quickstart --smoke, proactive: two SFT stages with recall checks) is
# trained in one process and under every accelerate config given, and compared step by step
# (loss, gradient norm, rows, tokens, each step logged once), the saved weights against one
# process's (within 5% of how far training moved them), every query answered once with >= 90%
# of the completions identical, the summary's numbers recomputed from samples.jsonl. Then, under the first config, a launch killed mid-stage is
# started again and must resume from its checkpoint (every step logged exactly once).
#
# Usage: bash scripts/launch_check.sh OUTDIR CONFIG [CONFIG ...]
#   CONFIG: an accelerate config file (configs/accelerate/fsdp_gpus.yaml, deepspeed_zero2.yaml,
#   deepspeed_zero3.yaml, ddp_gpus.yaml; num_processes is set to the GPU count), or cpu-ddp
#   (2 CPU processes over gloo, what the test suite launches).
# FSDP and DeepSpeed need GPUs (accelerate runs them on GPUs only); on a machine with one GPU
# each runs as one process, which still goes through the wrapping, the sharded checkpoints and
# the gathered weights. PBB_LAUNCH_TOL is the relative loss tolerance (default 0.02).
set -euo pipefail
out=${1:?usage: launch_check.sh OUTDIR CONFIG [CONFIG ...]}; shift
[ $# -gt 0 ] || { echo "name at least one accelerate config (or cpu-ddp)"; exit 2; }
export PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
gpus=$($py -c "import torch; print(torch.cuda.device_count())")
procs=$(( gpus > 0 ? gpus : 2 ))
port=29600
args=(configs/quickstart.yaml --smoke --no-progress --set 'curricula=["proactive"]'
      --set 'eval.modes=["recall","cot"]' --set train.max_steps=6)

launch_cmd() {  # launch_cmd CONFIG OUT: cmd=(accelerate launch ... pbb run "${pbb_args[@]}")
  local flags
  port=$((port + 1))
  if [ "$1" = cpu-ddp ]; then
    flags=(--multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no --dynamo_backend no)
  else
    flags=(--config_file "$1" --num_processes "$procs")
  fi
  cmd=("$py" -m accelerate.commands.launch "${flags[@]}" --main_process_port "$port"
       -m pbb run "${pbb_args[@]}" --out "$2")
}

compare() {  # compare ONE_PROCESS_DIR LAUNCHED_DIR NAME
  "$py" - "$@" <<'PY'
import json, os, sys
from pathlib import Path

one, two, name = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
tol = float(os.environ.get("PBB_LAUNCH_TOL", "0.02"))


def weights(model_dir):
    from safetensors.torch import load_file

    return {k: v for f in sorted(Path(model_dir).glob("*.safetensors")) for k, v in load_file(f).items()}


from pbb.models import TINY_RANDOM, resolve_model_path  # noqa: E402

base = weights(resolve_model_path(TINY_RANDOM))
rows = lambda p: [json.loads(x) for x in p.read_text().splitlines() if x.strip()]
stages = sorted(p.name for p in (one / "stages").iterdir())
assert stages == sorted(p.name for p in (two / "stages").iterdir()), "different stage keys"
worst = 0.0
for st in stages:
    a = [r for r in rows(one / "stages" / st / "metrics.jsonl") if "loss" in r]
    b = [r for r in rows(two / "stages" / st / "metrics.jsonl") if "loss" in r]
    assert [r["step"] for r in a] == [r["step"] for r in b], f"{st}: steps differ"
    for x, y in zip(a, b):
        assert (x["rows"], x["tokens"]) == (y["rows"], y["tokens"]), f"{st}: batches differ"
        d = abs(x["loss"] - y["loss"]) / abs(x["loss"])
        worst = max(worst, d)
        print(f"  {st} step {x['step']}: loss {x['loss']:.5f} vs {y['loss']:.5f} "
              f"grad_norm {x['grad_norm']:.4f} vs {y['grad_norm']:.4f}")
    done = json.loads((two / "stages" / st / "done.json").read_text())
    # the saved weights are the trained ones: as far from one process's as float order makes
    # them, against how far training moved them from the base model
    w1, w2 = weights(one / "stages" / st / "model"), weights(two / "stages" / st / "model")
    assert w1.keys() == w2.keys(), f"{st}: saved tensors differ"
    moved = sum(float((w1[k] - base[k]).float().norm() ** 2) for k in w1) ** 0.5
    apart = sum(float((w1[k] - w2[k]).float().norm() ** 2) for k in w1) ** 0.5
    print(f"  {st}: saved weights {apart:.2e} apart, training moved them {moved:.2e}")
    assert apart <= 0.05 * moved, f"{st}: the saved model is not the trained one"
    print(f"  {st}: recall checks {[r['recall'] for r in done['recall']]}")
summary = json.loads((two / "summary.json").read_text())
for d in sorted((two / "eval").glob("*/*")):  # the saved weights generate what one process's do
    a = rows(one / "eval" / d.parent.name / d.name / "samples.jsonl")
    b = rows(d / "samples.jsonl")
    assert [(x["behaviour_id"], x["input"]) for x in a] == \
        [(x["behaviour_id"], x["input"]) for x in b], f"{d}: not every query once"
    same = sum(x["completion"] == y["completion"] for x, y in zip(a, b)) / len(a)
    print(f"  eval {d.parent.name}/{d.name}: {len(b)} queries, {same:.0%} completions identical")
    assert same >= 0.9, f"{d}: the launched model generates differently"
for r in summary["results"]:
    by = {}
    for line in rows(two / "eval" / r["curriculum"] / r["mode"] / "samples.jsonl"):
        if line["split"] == r["split"]:
            by.setdefault(line["behaviour_id"], []).append(line["score"])
    got = sum(sum(v) / len(v) for v in by.values()) / len(by)
    assert abs(got - r["accuracy"]) < 1e-9, "summary does not recompute from samples.jsonl"
print(f"{name}: same steps and batches as one process, largest relative loss difference "
      f"{worst:.2e} (tolerance {tol}); summary recomputes from samples.jsonl")
assert worst <= tol, f"{name}: loss differs by {worst:.2e} > {tol}"
PY
}

echo "== one process"
"$py" -m pbb run "${args[@]}" --out "$out/single"
for cfg in "$@"; do
  name=$(basename "$cfg" .yaml)
  echo "== $name ($procs processes)"
  start=$(date +%s)
  pbb_args=("${args[@]}")
  launch_cmd "$cfg" "$out/$name"
  "${cmd[@]}"
  echo "$name: $(( $(date +%s) - start )) s"
  compare "$out/single" "$out/$name" "$name"
done

cfg=$1; name=$(basename "$cfg" .yaml)
echo "== $name: killed mid-stage, started again"
pbb_args=(configs/quickstart.yaml --smoke --no-progress --set 'curricula=["stage1_only"]'
          --set 'eval.modes=["recall"]' --set train.max_steps=-1 --set train.save_steps=4)
dir="$out/$name-resume"
launch_cmd "$cfg" "$dir"
setsid "${cmd[@]}" >"$out/$name-killed.log" 2>&1 &
pid=$!
for _ in $(seq 600); do
  compgen -G "$dir/stages/*/trainer/checkpoint-*/state.json" >/dev/null && break
  kill -0 $pid 2>/dev/null || { echo "the launch ended before a checkpoint"; exit 1; }
  sleep 0.5
done
kill -KILL -- -$pid 2>/dev/null || true
pkill -KILL -f "$dir" || true
sleep 2
launch_cmd "$cfg" "$dir"
"${cmd[@]}"
"$py" - "$dir" <<'PY'
import json, sys
from pathlib import Path

(stage,) = Path(sys.argv[1]).glob("stages/stage1-*")
done = json.loads((stage / "done.json").read_text())
steps = [json.loads(x)["step"] for x in (stage / "metrics.jsonl").read_text().splitlines()
         if x.strip() and "loss" in json.loads(x)]
assert done["resumed"] is True, "the second launch did not resume"
assert steps == list(range(1, done["steps"] + 1)), f"steps logged {steps}"
print(f"resume: resumed from a checkpoint, {done['steps']} steps each logged once")
PY
echo "launch check passed"
