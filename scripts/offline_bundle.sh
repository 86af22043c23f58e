#!/usr/bin/env bash
# An offline bundle for a GPU machine that reaches no package registry and no model hub (an
# air-gapped cluster node, a locked-down image): wheels of the packages it lacks, each at the
# version this checkout's .venv runs (the one the test suite passed with), and the bundled model's
# GGUF file, cut into parts where a transfer limits the size of a file or of one go. On that
# machine, scripts/offline_install.sh puts both in place.
# Usage: bash scripts/offline_bundle.sh OUT [PKG ...]   (PKG "none": no wheels, the model only)
#   PKG: distributions to bring, without their dependencies (name every one the machine lacks;
#   `unzip -p OUT/wheels/NAME-*.whl '*/METADATA' | grep ^Requires-Dist` lists a wheel's). The
#   default is what pbb imports that one CUDA PyTorch image lacked (torch, accelerate, peft,
#   tokenizers, pandas, pyarrow, typer there): transformers 5 and the huggingface_hub it needs
#   (httpx2, httpcore2, truststore, sniffio, kernels), trl, datasets (dill, multiprocess),
#   pydantic (pydantic_core, annotated_types, typing_inspection), gguf, lark.
#   PBB_BUNDLE_PYTHON: the machine's Python (default 3.12); wheels are for x86-64 manylinux.
#   PBB_PYTHON: the Python whose installed versions the wheels take (default .venv/bin/python).
#   PBB_BUNDLE_PART: the size of a model part, in split's -b syntax (e.g. 40M; default: one part).
# Why: the bundled model ships inside a PyPI package that the machine may not be able to install,
# and a transformers older than the one tested loads it, or fails, differently.
set -euo pipefail
out=$(realpath -m "${1:?usage: offline_bundle.sh OUT [PKG ...]}"); shift  # before the cd
if [ -n "${PBB_SMOLLM2_GGUF:-}" ]; then  # a relative path is the caller's, not the checkout's
  PBB_SMOLLM2_GGUF=$(realpath -m "$PBB_SMOLLM2_GGUF"); export PBB_SMOLLM2_GGUF
fi
cd "$(dirname "$0")/.."
py=${PBB_PYTHON:-.venv/bin/python}  # the Python whose package versions the wheels take
command -v "$py" >/dev/null || {
  echo "offline_bundle: $py: no such Python (run scripts/setup.sh, or set PBB_PYTHON)" >&2
  exit 1; }
pkgs=("$@")
[ ${#pkgs[@]} -gt 0 ] || pkgs=(transformers huggingface_hub httpx2 httpcore2 truststore sniffio
                               kernels trl datasets dill multiprocess pydantic pydantic_core
                               annotated_types typing_inspection gguf lark)
mkdir -p "$out/wheels" "$out/model"
if [ "${pkgs[*]}" != none ]; then
  rm -f "$out/wheels"/*.whl  # two versions of one package would stop the install there
  for name in "${pkgs[@]}"; do
    version=$("$py" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" \
      "$name" 2>/dev/null) \
      || { echo "offline_bundle: $name is not installed in $py: no version to bring" >&2; exit 1; }
    if ! log=$("$py" -m pip download -q --disable-pip-version-check --no-deps \
        --only-binary=:all: --python-version "${PBB_BUNDLE_PYTHON:-3.12}" --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d "$out/wheels" "$name==$version" 2>&1); then
      printf '%s\n' "$log" | grep -v "^WARNING: Location" >&2
      echo "offline_bundle: no wheel of $name $version for that machine (above)" >&2
      exit 1
    fi
    echo "wheel: $name $version"
  done
fi
gguf=$("$py" -c "from pbb.models import _smollm2_gguf; print(_smollm2_gguf())")
base=$(basename "$gguf")
rm -f "$out/model/$base".part-* "$out/model/MANIFEST"
if [ -n "${PBB_BUNDLE_PART:-}" ]; then
  split -b "$PBB_BUNDLE_PART" -a 2 "$gguf" "$out/model/$base.part-"
else
  cp "$gguf" "$out/model/$base.part-aa"
fi
# the manifest: the joined file's name and md5, then each part in order with its own md5 (so that
# a part damaged in transit is named, and only it sent again)
{ echo "$base $(md5sum < "$gguf" | cut -d' ' -f1)"
  for part in "$out/model/$base".part-*; do
    echo "$(basename "$part") $(md5sum < "$part" | cut -d' ' -f1)"
  done; } > "$out/model/MANIFEST.tmp"
mv "$out/model/MANIFEST.tmp" "$out/model/MANIFEST"
parts=$(($(wc -l < "$out/model/MANIFEST") - 1))
echo "model: $base in $parts part(s); $(du -sh "$out" | cut -f1) in all"
