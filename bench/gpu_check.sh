#!/usr/bin/env bash
# The whole GPU check in one go (at most 11 minutes on an H100/H200): the CUDA tests, the throughput bench against
# cuDNN LSTM and the packing bench (issue 12), then a real `nas search` through Ray (issue 21). Runs without
# installing the package: the GPU machine's own python3 (CUDA torch, Triton, pytest) and PYTHONPATH=. are enough,
# plus, for the searches, the Ray bundle of bench/gpu_ray_bundle.sh (carry .gpu_ray).
#
#   bash bench/gpu_check.sh [OUT_DIR] [PTB_DIR]       (device: carry .gpu_ray and .gpu_data)
#
# OUT_DIR (default gpu-check/) receives every log, CSV and JSON; PTB_DIR (default .gpu_data/ptb) holds
# ptb.{train,valid,test}.txt for the PTB-sized packing rows, which are skipped without it (copy them from
# ../shared/data/ptb or `nas data download ptb`, into a folder .git/info/exclude ignores, and carry it to the GPU
# machine). Each part has its
# own time limit, so one slow part cannot eat the others' time; the last lines are each part's summary.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-gpu-check}
ptb=${2:-.gpu_data/ptb}
mkdir -p "$out"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
py=${PYTHON:-python3}

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv | tee "$out/gpu.txt"
$py -c "import torch, triton, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'triton', triton.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())" | tee -a "$out/gpu.txt"

part() {  # part NAME SECONDS COMMAND...: run with a limit, log to $out/NAME.log, keep going on failure
  local name=$1 limit=$2; shift 2
  local start=$SECONDS
  timeout "$limit" "$@" > "$out/$name.log" 2>&1
  local rc=$?
  echo "== $name: exit $rc in $((SECONDS - start)) s" | tee -a "$out/summary.txt"
  tail -n 3 "$out/$name.log" | tee -a "$out/summary.txt"
}

part tests 100 env NAS_TEST_DEVICE=cuda $py -m pytest -q -p no:cacheprovider --durations=5 \
  tests/test_triton_cell.py tests/test_devices.py
part bench_gpu 140 $py bench/bench_gpu.py --steps 15 --out "$out"
part packing_default 60 $py bench/bench_gpu_packing.py --children default --per-worker 2 --counts 1,2,4,8,16
if [ -f "$ptb/ptb.train.txt" ]; then
  part packing_ptb 55 $py bench/bench_gpu_packing.py --children ptb --data-dir "$ptb" --per-worker 1 --counts 1,2,4,8
fi
# Issue 21: the whole search through Ray on the GPU, from the trimmed Ray bundle (bench/gpu_ray_bundle.sh, carried
# as .gpu_ray/cp312): the default search's children 16 per GPU, then (with PTB) the PTB-sized ones 8 per GPU.
bundle=${GPU_RAY:-.gpu_ray/cp312}
if [ -f "$bundle/install.sh" ] && . "$bundle/install.sh" /tmp/ray-site; then
  part gpu_search_default 170 bash bench/gpu_search.sh gpu-default "$out" 16 16 "$out/packing_default.log" \
    --trials 64 --gpus-per-trial auto
  if [ -f "$ptb/ptb.train.txt" ]; then
    part gpu_search_ptb 150 bash bench/gpu_search.sh gpu-ptb "$out" 8 8 "$out/packing_ptb.log" \
      --config bench/gpu_search_ptb.toml --data-dir "$ptb"
  fi
else
  echo "== gpu_search: skipped, no Ray bundle at $bundle (build it here: bash bench/gpu_ray_bundle.sh)" \
    | tee -a "$out/summary.txt"
fi
echo; cat "$out/summary.txt"
