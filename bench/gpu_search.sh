#!/usr/bin/env bash
# One real `nas search` through Ray on the GPU machine (issue 21), sampled by nvidia-smi once a second, then its
# figures (bench/gpu_search_report.py). Called by bench/gpu_check.sh once the Ray bundle is installed.
#
#   bash bench/gpu_search.sh NAME OUT_DIR SLOTS PER_GPU PACKING_LOG [nas search flags...]
#
# The run folder is OUT_DIR/runs/NAME; SLOTS children train at once, PER_GPU share the GPU, and PACKING_LOG is
# bench_gpu_packing.py's log for the same children, whose children/hour at PER_GPU the search is compared with.
set -uo pipefail
name=$1 out=$2 slots=$3 per_gpu=$4 packing=$5
shift 5
py=${PYTHON:-python3}
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits -l 1 > "$out/smi_$name.csv" &
smi=$!
trap 'kill $smi 2>/dev/null' EXIT
$py -m nas.cli search --name "$name" --results-dir "$out/runs" --concurrency "$slots" "$@"
rc=$?
kill $smi 2>/dev/null
$py bench/gpu_search_report.py "$out/runs/$name" --smi "$out/smi_$name.csv" --packing "$packing" \
  --per-gpu "$per_gpu" --slots "$slots"
exit $rc
