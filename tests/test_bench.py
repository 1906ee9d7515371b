"""The benchmark suite: every benchmark runs once, and its numbers cannot flatter."""
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import run as bench  # noqa: E402

from slotcov.config import deep_merge  # noqa: E402
from slotcov.data import InMemory  # noqa: E402

TINY_SA = {"model": {"resolution": 16, "num_slots": 3, "slot_dim": 16, "mlp_hidden": 32, "channels": 16}}
TINY_SET = ["--set", "model.slot_dim=16", "--set", "model.mlp_hidden=32", "--set", "model.decoder_hidden=[32]",
            "--set", "model.channels=16"]  # small models: the smoke test takes seconds, not minutes


def test_every_benchmark_runs_once(tmp_path):
    out = tmp_path / "results.json"
    subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--device", "cpu", "--out", str(out),
                    "--only", "fg_ari", "feature_store", "train_coco_dinosaur", "data_wait_cmdsprites_sa",
                    *TINY_SET], 
                   check=True, cwd=ROOT)
    (entry,) = json.loads(out.read_text()).values()
    assert entry["quick"]
    train = entry["train_coco_dinosaur_fp32"]  # the fp32 path (train.amp: fp32) against the eager fp32 baseline
    assert train["amp"] == "fp32" and "train_coco_dinosaur_bf16" not in entry  # bf16 is timed on CUDA only
    assert 0 < train["fraction_of_matmul_peak"] <= 1 and train["ratio_min"] <= train["ratio_median"] <= train["ratio_max"]
    for name in ("fg_ari", "feature_store"):
        assert entry[name]["ratio_min"] > 0
    assert entry["fg_ari"]["max_abs_diff"] < 1e-9
    assert entry["feature_store"]["bytes_ratio"] < 0.51
    wait = entry["data_wait_cmdsprites_sa"]
    assert wait["wait_fraction_min"] <= wait["wait_fraction_median"] <= wait["wait_fraction_max"] < 1
    assert wait["loader_batches_per_s"] > 0
    # a later partial run replaces its own benchmark and keeps the machine's other results
    subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--device", "cpu", "--out", str(out),
                    "--only", "fg_ari"], check=True, cwd=ROOT)
    (again,) = json.loads(out.read_text()).values()
    assert again["feature_store"] == entry["feature_store"]
    assert again["train_coco_dinosaur_fp32"] == entry["train_coco_dinosaur_fp32"]
    assert again["fg_ari"]["measured_at"] >= entry["fg_ari"]["measured_at"]


def test_a_fraction_above_the_peak_is_an_error(monkeypatch):
    monkeypatch.setattr(bench, "matmul_peak", lambda device, precision, quick: 1.0)  # 1 FLOP/s: wrong
    with pytest.raises(bench.ImpossibleResult, match="exceeds the measured"):
        bench.bench_cell("cmdsprites/sa", torch.device("cpu"), quick=True, over=TINY_SA)


def test_the_peak_is_the_best_of_measurements_between_the_steps(monkeypatch):
    calls = iter([3e14, 5e14, 4e14, 2e14])
    monkeypatch.setattr(bench, "matmul_peak", lambda device, precision, quick: next(calls))
    (entry,) = bench.bench_cell("cmdsprites/sa", torch.device("cpu"), quick=True, repeats=2, over=TINY_SA).values()
    assert entry["matmul_peak_tflops"] == 500


class SlowDisk(InMemory):
    """A dataset whose batches take 200 ms to read."""

    def batch(self, idx):
        time.sleep(0.2)
        return super().batch(idx)


def test_data_wait_sees_a_slow_loader():
    cfg = deep_merge(bench.PAPER_CELLS["cmdsprites/sa"], TINY_SA)
    run_cfg = deep_merge(cfg, {"train": {"steps": 6, "batch_size": 4, "log_every": 1, "checkpoint_every": 10 ** 9,
                                         "compile": False, "amp": "fp32", "threads": 1}})
    images = torch.rand(16, 3, 16, 16)
    result = bench.measure_wait(run_cfg, InMemory(image=images), SlowDisk(image=images), torch.device("cpu"),
                                warm=1, steps=5, repeats=1)
    # a tiny step takes a few ms (tens on a busy machine, where two threads can take hundreds: hence one);
    # a batch 200 ms: most of the step is waiting
    assert result["wait_fraction_median"] > 0.5
    assert result["loader_time_over_step_time"] > 1
    assert np.isclose(result["loader_batches_per_s"], 5, rtol=0.5)


def test_profile_harness_tables_kernel_families(capsys):
    import profile_step

    assert profile_step.main(["cmdsprites/sa", "--batch-size", "4", "--steps", "2", "--device", "cpu",
                              "--set", "model.resolution=16", "--set", "model.channels=16",
                              "--set", "model.slot_dim=16", "--set", "model.mlp_hidden=32"]) == 0
    out = capsys.readouterr().out
    table = out.split("family", 1)[1].split("\n\n")[0]
    assert "convolution" in table and "matmul" in table
    shares = [float(line.split()[2].rstrip("%")) for line in table.strip().splitlines()[1:]]
    assert abs(sum(shares) - 100) < 1  # every operator's time is in one family
    assert profile_step.family("void cudnn::ops::nchwToNhwcKernel") == "convolution"
    assert profile_step.family("ampere_sgemm_128x64_tn") == "matmul"
    assert profile_step.family("multi_tensor_apply_kernel<AdamFunctor>") == "optimizer"
