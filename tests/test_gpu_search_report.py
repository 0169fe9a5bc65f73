"""bench/gpu_search_report.py: the figures of a GPU search from its records, nvidia-smi's samples and the packing
bench's summary line (the GPU run itself is bench/gpu_check.sh's; here its inputs are written by hand)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

import gpu_search_report  # noqa: E402

from nas.runs.records import ChildRecord, append_child  # noqa: E402
from workers.outcome import ChildOutcome  # noqa: E402


def write_run(run_dir, children):
    run_dir.mkdir(parents=True)
    for i, (start, end, train, kernels, graphs, status) in enumerate(children):
        outcome = ChildOutcome(status, val_ppl=5.0 if status == "completed" else float("nan"), train_seconds=train,
                               kernels=kernels, cuda_graphs=graphs)
        append_child(run_dir, ChildRecord(f"t{i}", i, outcome, started_at=start, finished_at=end, gpus=[0]))


def test_the_summary_line_counts_children_paths_and_compares_with_plain_processes(tmp_path):
    run = tmp_path / "runs" / "gpu-default"
    write_run(run, [(100.0, 110.0, 8.0, "triton", "captured", "completed"),
                    (100.0, 112.0, 9.0, "triton", "captured", "completed"),
                    (110.0, 120.0, 8.0, "triton", "eager: capture failed", "completed"),
                    (112.0, 136.0, 20.0, "torch", "off", "failed")])
    smi = tmp_path / "smi.csv"
    smi.write_text("utilization.gpu [%], memory.used [MiB]\n40, 1000\n60, 3000\n[N/A], [N/A]\n")
    packing = tmp_path / "packing_default.log"
    packing.write_text("| table |\npacking_default: best=16 x3.17 children/hour 1=3474 2=5541 16=400\n")
    lines = gpu_search_report.report(run, smi, packing, per_gpu=16, slots=2)
    # 4 children in 36 s of child wall time: 400 per hour, 1.00x the plain processes' 400
    assert lines[-1] == ("gpu_search: children=4 children_per_hour=400 vs_plain_processes=1.00x gpu_util_mean=50% "
                         "graphs_captured=2/4 triton=3/4 failed=1")
    # spans 10, 12, 10, 24 (mean 14); outside training 2, 3, 2, 4 (mean 2.75); slot time 36 x 2 / 4 - 14 = 4
    assert "span 14.0 s, of which outside training 2.8 s" in lines[1] and "outside a child 4.0 s (2 slots)" in lines[1]
    assert "memory max 3,000 MiB" in lines[3]


def test_without_the_packing_figure_or_samples_it_says_so(tmp_path):
    run = tmp_path / "run"
    write_run(run, [(0.0, 36.0, 30.0, "triton", "captured", "completed")])
    lines = gpu_search_report.report(run, tmp_path / "none.csv", tmp_path / "none.log", per_gpu=8, slots=1)
    assert "no packing figure" in lines[0]
    assert "vs_plain_processes=n/a" in lines[-1] and "gpu_util_mean=nan%" in lines[-1]
    assert gpu_search_report.report(tmp_path / "empty", tmp_path, tmp_path, 8, 1)[-1] == "gpu_search: children=0"
