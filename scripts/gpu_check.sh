#!/usr/bin/env bash
# GPU check (not part of CI): the CUDA paths of pbb, end to end, on a machine whose Python already
# has torch with CUDA. bf16 training (the SFT loop and GRPO) on the GPU, batched generation on the GPU,
# then the same honesty checks the tests make. Usage: bash scripts/gpu_check.sh OUTDIR [--set ...]
# PBB_CONFIG picks the config (default configs/quickstart.yaml; configs/retroactive_quick.yaml
# exercises GRPO stages).
# Optional: wheels in .whl/ (installed with --no-deps into /tmp/site) for packages the machine lacks.
set -euo pipefail
out=${1:?usage: gpu_check.sh OUTDIR [--set key=value ...]}; shift
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
if [ -d /tmp/site ]; then export PYTHONPATH=/tmp/site; fi  # kept from an earlier call
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python3 -c "import torch, transformers, trl, peft, datasets; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '-', 'bf16', torch.cuda.is_bf16_supported(), '| transformers', transformers.__version__, 'trl', trl.__version__, 'peft', peft.__version__, 'datasets', datasets.__version__)"
start=$(date +%s)
python3 -m pbb.cli run "${PBB_CONFIG:-configs/quickstart.yaml}" --out "$out/run" --no-progress "$@"
echo "wall time: $(( $(date +%s) - start )) s"
python3 - "$out/run" <<'PY'
import json, sys
from pathlib import Path
run = Path(sys.argv[1])
summary = json.loads((run / "summary.json").read_text())
for name, stages in summary["stages"].items():
    for s in stages:
        what = (f"reward {s['reward_first']} -> {s['reward_last']}, frac zero std "
                f"{s['frac_reward_zero_std']}" if s.get("algorithm") == "grpo"
                else f"loss {s['train_loss']}, {s['tokens']} tokens")
        print(f"{name}/{s['stage']}: {s['steps']} steps, bf16={s['bf16']}, {what} in {s['seconds']} s")
print("timing", summary["timing"])
PY
