"""Smoke test: every benchmark runs for one iteration and records its ratios."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_benchmark_runs_once(tmp_path):
    out = tmp_path / "results.json"
    subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--device", "cpu", "--out", str(out),
                    "--only", "fg_ari", "feature_store", "train_coco_dinosaur"], check=True, cwd=ROOT)
    (entry,) = json.loads(out.read_text()).values()
    assert entry["quick"] and entry["matmul_peak_tflops"] > 0
    for name in ("fg_ari", "feature_store", "train_coco_dinosaur"):
        assert entry[name]["ratio_min"] > 0
    assert entry["fg_ari"]["max_abs_diff"] < 1e-9
    assert entry["feature_store"]["bytes_ratio"] < 0.51
    # a later partial run replaces its own benchmark and keeps the machine's other results
    subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--device", "cpu", "--out", str(out),
                    "--only", "fg_ari"], check=True, cwd=ROOT)
    (again,) = json.loads(out.read_text()).values()
    assert again["feature_store"] == entry["feature_store"]
    assert again["train_coco_dinosaur"] == entry["train_coco_dinosaur"]
    assert again["fg_ari"]["measured_at"] >= entry["fg_ari"]["measured_at"]
