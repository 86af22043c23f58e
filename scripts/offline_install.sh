#!/usr/bin/env bash
# Put a bundle of scripts/offline_bundle.sh in place on the machine it was made for, and print
# the lines that point pbb at it: eval "$(bash scripts/offline_install.sh BUNDLE)".
# Usage: bash scripts/offline_install.sh BUNDLE [TARGET]   (TARGET default /tmp/pbb-offline)
#   Wheels (BUNDLE/wheels/*.whl) are installed into TARGET/site with pip, no index, no
#   dependencies (export PYTHONPATH). The model's parts (BUNDLE/model) are gathered into
#   TARGET/model: parts that come in several transfers are kept from one call to the next, and
#   once every part the MANIFEST names is there they are joined and checked against its md5
#   (export PBB_SMOLLM2_GGUF). Until then it says which parts are missing, on stderr.
#   PBB_PYTHON: the Python that installs the wheels (default python3).
# Why: a file joined from parts of two transfers, one of them cut short, would load as a
# damaged model or not at all, far from the cause; the md5 says it here.
set -euo pipefail
bundle=${1:?usage: offline_install.sh BUNDLE [TARGET]}
target=${2:-/tmp/pbb-offline}
mkdir -p "$target/model"
if compgen -G "$bundle/wheels/*.whl" >/dev/null; then
  "${PBB_PYTHON:-python3}" -m pip install -q --disable-pip-version-check --no-index --no-deps \
    --no-compile --no-cache-dir --upgrade --target "$target/site" "$bundle"/wheels/*.whl >&2
fi
[ -d "$target/site" ] && echo "export PYTHONPATH=$target/site\${PYTHONPATH:+:\$PYTHONPATH}"
if [ -f "$bundle/model/MANIFEST" ]; then
  cp "$bundle/model/MANIFEST" "$target/model/MANIFEST"
fi
for part in "$bundle"/model/*.part-*; do
  [ -f "$part" ] && cp "$part" "$target/model/"
done
[ -f "$target/model/MANIFEST" ] || exit 0  # no model in this bundle
read -r name md5 < "$target/model/MANIFEST"
joined="$target/model/$name"
missing=()
while read -r part; do
  [ -f "$target/model/$part" ] || missing+=("$part")
done < <(tail -n +2 "$target/model/MANIFEST")
if [ ${#missing[@]} -gt 0 ]; then
  echo "offline_install: model $name: ${#missing[@]} part(s) still missing: ${missing[*]}" >&2
  exit 0
fi
(cd "$target/model" && tail -n +2 MANIFEST | xargs cat) > "$joined.tmp"
got=$(md5sum < "$joined.tmp" | cut -d' ' -f1)
if [ "$got" != "$md5" ]; then
  rm -f "$joined.tmp"
  echo "offline_install: model $name: the joined parts have md5 $got, MANIFEST says $md5" >&2
  exit 1
fi
mv "$joined.tmp" "$joined"
echo "export PBB_SMOLLM2_GGUF=$joined"
