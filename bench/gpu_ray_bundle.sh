#!/usr/bin/env bash
# Ray for the GPU machine (issue 21): it has no Ray and reaches no package registry, and Ray's wheel (79 MB for
# Python 3.12) is larger than the 64 MiB that may travel to it. This builds, here, a trimmed Ray of the version
# installed in this checkout's environment (the one the tests pass with), without ray/jars (Java), ray/rllib,
# ray/serve and ray/llm, xz-compressed, plus wheels of the small packages Ray and Tune need that the GPU machine
# lacks (../.library/device/KINDS.md lists what it has), and an install.sh that unpacks both there.
#
#   bash bench/gpu_ray_bundle.sh [PYTHON_VERSION] [OUT_DIR]
#
# PYTHON_VERSION: the target's Python, default 3.12 (the GPU machine's); "local" for this machine's python3, which
# tests/test_gpu_ray_bundle.py installs into a fresh environment and runs a search from. OUT_DIR: default
# .gpu_ray/cpNNN (ignored by git: name it in the device's `carry`). Downloads are cached in
# ${NAS_BUNDLE_CACHE:-~/.cache/nas-gpu-ray} (not carried), so a rebuild needs no network.
# XZ_LEVEL (default 6) trades the bundle's size for build time. On the target:
#   . OUT_DIR/install.sh [SITE_DIR]   (default /tmp/ray-site; prepends it to PYTHONPATH)
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
[ -x .venv/bin/python ] && py=${PYTHON:-.venv/bin/python}
target=${1:-3.12}
[ "$target" = local ] && target=$($py -c 'import sys; print("%d.%d" % sys.version_info[:2])')
tag=cp${target/./}
out=${2:-.gpu_ray/$tag}
ray_version=${RAY_VERSION:-$($py -c 'import ray; print(ray.__version__)')}
cache=${NAS_BUNDLE_CACHE:-$HOME/.cache/nas-gpu-ray}/$tag
mkdir -p "$cache/deps"
# What the GPU machine lacks of Ray's and Tune's requirements (Requires-Dist of ray and its "tune" extra)
missing="jsonschema jsonschema_specifications referencing rpds_py tensorboardx pydantic pydantic_core
annotated_types typing_inspection"
platform=(--only-binary=:all: --python-version "$target" --implementation cp --platform manylinux_2_28_x86_64
          --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)

quiet() { { "$@"; } 2>&1 | { grep -v "is ignored: it is neither" || true; }; }  # this machine's pip config

wheel=$(ls "$cache"/ray-"$ray_version"-"$tag"-*.whl 2>/dev/null | head -1 || true)
if [ -z "$wheel" ]; then
  quiet $py -m pip download -q --no-deps "${platform[@]}" -d "$cache" "ray==$ray_version"
  wheel=$(ls "$cache"/ray-"$ray_version"-"$tag"-*.whl | head -1)
fi
if [ ! -f "$cache/deps/.complete" ]; then  # resolved together, so that pydantic and pydantic-core match
  quiet $py -m pip download -q "${platform[@]}" -d "$cache/deps" jsonschema "tensorboardX>=1.9" "pydantic>=2.5,<3"
  touch "$cache/deps/.complete"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# unpacked keeping each file's mode (python -m zipfile drops it, and Ray's gcs_server and raylet must stay executable)
$py - "$wheel" "$work" <<'PY'
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for info in z.infolist():
        path = z.extract(info, sys.argv[2])
        mode = info.external_attr >> 16 & 0o777
        if mode and not info.is_dir():
            os.chmod(path, mode)
PY
rm -rf "$work"/ray/jars "$work"/ray/rllib "$work"/ray/serve "$work"/ray/llm
rm -rf "$out" && mkdir -p "$out/wheels"
tar -C "$work" -cf - ray "ray-$ray_version.dist-info" | xz "-${XZ_LEVEL:-6}" -T0 > "$out/ray-$ray_version-$tag-trimmed.tar.xz"
for w in "$cache"/deps/*.whl; do
  name=$(basename "$w" | cut -d- -f1 | tr '[:upper:]' '[:lower:]')
  case " $(echo $missing) " in *" $name "*) cp "$w" "$out/wheels/" ;; esac
done
cat > "$out/install.sh" <<'EOF'
# . install.sh [SITE_DIR]: unpack the trimmed Ray and the wheels next to this file into SITE_DIR (default
# /tmp/ray-site) and put it first on PYTHONPATH. Needs only python3 with pip (no network, no index).
_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
_site=${1:-/tmp/ray-site}
mkdir -p "$_site" &&
  tar -xJf "$_here"/ray-*-trimmed.tar.xz -C "$_site" &&
  ${PYTHON:-python3} -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$_site" \
    "$_here"/wheels/*.whl &&
  export PYTHONPATH="$_site${PYTHONPATH:+:$PYTHONPATH}"
EOF
du -sk "$out" | awk -v o="$out" -v v="$ray_version" -v t="$tag" \
  '{printf "gpu_ray_bundle: ray=%s python=%s out=%s size_mib=%.1f\n", v, t, o, $1 / 1024}'
