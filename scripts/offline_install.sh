#!/usr/bin/env bash
# Put a bundle of scripts/offline_bundle.sh in place on the machine it was made for, and print
# the lines that point pbb at it:
#   exports=$(bash scripts/offline_install.sh BUNDLE) && eval "$exports"
# (not eval "$(...)", whose status is eval's: a refusal would go unnoticed)
# Usage: bash scripts/offline_install.sh BUNDLE [TARGET]   (TARGET default /tmp/pbb-offline)
#   Wheels (BUNDLE/wheels/*.whl) are installed into TARGET/site with pip, no index, no
#   dependencies (export PYTHONPATH). The model's parts (BUNDLE/model) are gathered into
#   TARGET/model: parts that come in several transfers are kept from one call to the next, and
#   once every part the MANIFEST names is there they are checked against its md5s and joined
#   (export PBB_SMOLLM2_GGUF). Until then it says which parts are missing, on stderr, and exits
#   0; a damaged part is named, removed (send it again) and exits 1. A second call with the same
#   wheels and model does neither again. Parts of another model, or of an earlier bundle of it,
#   are cleared when a new MANIFEST comes.
#   PBB_PYTHON: the Python that installs the wheels (default python3).
# Why: a file joined from parts of two transfers, one of them cut short, would load as a
# damaged model or not at all, far from the cause; the md5 says it here.
set -euo pipefail
bundle=${1:?usage: offline_install.sh BUNDLE [TARGET]}
target=$(realpath -m "${2:-/tmp/pbb-offline}")  # absolute: the exports hold after a cd
mkdir -p "$target/model"
if compgen -G "$bundle/wheels/*.whl" >/dev/null; then
  wheels=$(cd "$bundle/wheels" && ls -l -- *.whl | awk '{print $5, $NF}')
  if [ "$wheels" != "$(cat "$target/site/.pbb-wheels" 2>/dev/null)" ]; then
    rm -rf "$target/site"
    "${PBB_PYTHON:-python3}" -m pip install -q --disable-pip-version-check --no-index --no-deps \
      --no-compile --no-cache-dir --target "$target/site" "$bundle"/wheels/*.whl >&2
    printf '%s\n' "$wheels" > "$target/site/.pbb-wheels"
  fi
fi
if [ -d "$target/site" ]; then
  printf 'export PYTHONPATH=%q${PYTHONPATH:+:$PYTHONPATH}\n' "$target/site"
fi
model=$target/model
if [ -f "$bundle/model/MANIFEST" ] && ! cmp -s "$bundle/model/MANIFEST" "$model/MANIFEST"; then
  rm -f "$model"/*  # another model, or another cut of it: its parts would not join
  cp "$bundle/model/MANIFEST" "$model/MANIFEST"
fi
[ -f "$model/MANIFEST" ] || exit 0  # no model in this bundle, nor before
for part in "$bundle"/model/*.part-*; do
  [ -f "$part" ] && cp "$part" "$model/"
done
read -r name md5 < "$model/MANIFEST"
joined=$model/$name
if [ ! -f "$joined" ]; then
  missing=() bad=()
  while read -r part part_md5; do
    if [ ! -f "$model/$part" ]; then
      missing+=("$part")
    elif [ "$(md5sum < "$model/$part" | cut -d' ' -f1)" != "$part_md5" ]; then
      bad+=("$part")
    fi
  done < <(tail -n +2 "$model/MANIFEST")
  if [ ${#bad[@]} -gt 0 ]; then
    (cd "$model" && rm -f -- "${bad[@]}")
    echo "offline_install: model $name: part(s) damaged in transit, removed (send again):" \
      "${bad[*]}" >&2
    exit 1
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    echo "offline_install: model $name: ${#missing[@]} part(s) still missing: ${missing[*]}" >&2
    exit 0
  fi
  (cd "$model" && tail -n +2 MANIFEST | cut -d' ' -f1 | xargs cat) > "$joined.tmp"
  got=$(md5sum < "$joined.tmp" | cut -d' ' -f1)
  if [ "$got" != "$md5" ]; then
    rm -f "$joined.tmp"
    echo "offline_install: model $name: the joined parts have md5 $got, MANIFEST says $md5" >&2
    exit 1
  fi
  mv "$joined.tmp" "$joined"
fi
printf 'export PBB_SMOLLM2_GGUF=%q\n' "$joined"
