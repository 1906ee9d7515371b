"""Print the top CUDA kernels of a few training steps of a cell (where the step's time goes).

python bench/profile_step.py CELL [--batch-size 64] [--compile]
"""
import argparse
import sys
import tempfile
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import InMemory, PAPER_CELLS, deep_merge, train  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("cell")
p.add_argument("--batch-size", type=int, default=64)
p.add_argument("--compile", action="store_true")
args = p.parse_args()
cfg = PAPER_CELLS[args.cell]
bs = args.batch_size
data = InMemory(image=torch.rand(4 * bs, 3, 64, 64)) if cfg["model"]["kind"] == "sa_cnn" else \
    InMemory(features=torch.randn(4 * bs, 196, 768).half())
with tempfile.TemporaryDirectory() as tmp:
    warm = deep_merge(cfg, {"train": {"steps": 10, "batch_size": bs, "checkpoint_every": 10 ** 9, "compile": args.compile}})
    train(warm, data, tmp + "/w", progress=False)
    run = deep_merge(warm, {"train": {"steps": 15}})
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        train(run, data, tmp + "/w2", progress=False, stop_after=15)
print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=25, max_name_column_width=70))
