"""Where a training step's time goes: torch.profiler over a few steps of slotcov's trainer, the time
per kernel family (convolution, matmul, normalisation/softmax, elementwise, optimizer, copies,
other) and the slowest kernels with their achieved FLOP/s against a measured matmul peak.

python bench/profile_step.py CELL [--amp fp32|bf16] [--batch-size 64] [--steps 10] [--device auto]
(or: slotcov bench --profile CELL ...). On a GPU it tables CUDA kernel time; on the CPU, operator time.
"""
from __future__ import annotations

import argparse
import re
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import InMemory, PAPER_CELLS, deep_merge, matmul_peak, random_batch, train  # noqa: E402

FAMILIES = [  # first match wins; names of CUDA kernels (cuDNN, cuBLAS, Triton) and of aten operators
    ("convolution", r"conv|cudnn|implicit_gemm|wgrad|dgrad|fprop|xmma_fprop|sm\d+_xmma"),
    ("matmul", r"gemm|matmul|\bmm\b|aten::mm|aten::bmm|aten::addmm|aten::linear|cutlass|cublas|einsum"),
    ("norm/softmax", r"norm|softmax|welford|reduce|sum|mean"),
    ("optimizer", r"adam|foreach|multi_tensor|_fused"),
    ("copy/layout", r"copy|memcpy|memset|contiguous|to_copy|cat|clone|permute|transpose"),
    ("elementwise", r"elementwise|vectorized|relu|threshold|clamp|add|sub|mul|div|exp|sigmoid|tanh|gru|triton_poi"),
]


def family(name: str) -> str:
    low = name.lower()
    return next((f for f, pattern in FAMILIES if re.search(pattern, low)), "other")


def device_time(evt) -> float:
    """Self time (us) of a profiler event on the device that ran it."""
    for attr in ("self_device_time_total", "self_cuda_time_total"):
        if getattr(evt, attr, 0):
            return getattr(evt, attr)
    return 0.0


def kernel_table(prof, on_cuda: bool, peak: float, rows: int = 15) -> str:
    """Time per family, then the `rows` most expensive kernels/operators with achieved TFLOP/s."""
    events = [e for e in prof.key_averages() if (device_time(e) if on_cuda else e.self_cpu_time_total) > 0]
    if not on_cuda:  # operator level: skip the wrappers whose time is all in children
        events = [e for e in events if not e.key.startswith(("ProfilerStep", "Optimizer.step"))]
    us = {e.key: device_time(e) if on_cuda else e.self_cpu_time_total for e in events}
    total = sum(us.values()) or 1.0
    per_family, flops_family = defaultdict(float), defaultdict(float)
    for e in events:
        per_family[family(e.key)] += us[e.key]
    for e in prof.key_averages():  # FLOPs are counted on the operators (aten::convolution, aten::mm, ...)
        flops_family[family(e.key)] += getattr(e, "flops", 0) or 0
    lines = [f"{'family':<16} {'ms':>10} {'share':>7} {'TFLOP/s':>8} {'of peak':>8}"]
    for f, t in sorted(per_family.items(), key=lambda kv: -kv[1]):
        rate = flops_family[f] / (t * 1e-6) if flops_family[f] else None
        lines.append(f"{f:<16} {t / 1e3:>10.2f} {t / total:>7.1%} " + ("" if rate is None else
                     f"{rate / 1e12:>8.3g} {rate / peak:>8.1%}"))
    lines += ["", f"{'kernel / operator':<72} {'family':<13} {'ms':>9} {'calls':>6} {'TFLOP/s':>8} {'of peak':>8}"]
    for e in sorted(events, key=lambda e: -us[e.key])[:rows]:
        flops = getattr(e, "flops", 0) or 0  # counted for matmuls and convolutions (with_flops)
        rate = flops / (us[e.key] * 1e-6) / 1e12 if flops else None
        lines.append(f"{e.key[:72]:<72} {family(e.key):<13} {us[e.key] / 1e3:>9.2f} {e.count:>6} "
                     f"{'' if rate is None else f'{rate:8.3g}':>8} {'' if rate is None else f'{rate * 1e12 / peak:7.1%}':>8}")
    lines.append(f"total {total / 1e3:.1f} ms over the profiled steps; peak = measured matmul {peak / 1e12:.2f} TFLOP/s")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="slotcov bench --profile", description=__doc__.split("\n\n")[0])
    p.add_argument("cell", choices=list(PAPER_CELLS))
    p.add_argument("--amp", choices=["fp32", "bf16"], default="fp32", help="fp32 = the paper's path (default)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=10, help="profiled steps, after as many warm-up steps")
    p.add_argument("--compile", choices=["auto", "true", "false"], default="auto")
    p.add_argument("--device", default="auto")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="cell override, e.g. --set model.resolution=16 (tiny models for a smoke test)")
    args = p.parse_args(argv)
    from slotcov.config import parse_set

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    on_cuda = device.type == "cuda"
    cfg = deep_merge(PAPER_CELLS[args.cell], parse_set(args.set))
    bs = args.batch_size
    data = InMemory(**random_batch(cfg, 4 * bs))
    run = deep_merge(cfg, {"train": {"steps": 2 * args.steps, "batch_size": bs, "checkpoint_every": 10 ** 9,
                                     "log_every": 10 ** 6, "amp": args.amp, "tf32_matmul": False,
                                     "compile": {"auto": "auto", "true": True, "false": False}[args.compile]}})
    with tempfile.TemporaryDirectory() as tmp:
        train(run, data, tmp, device=str(device), progress=False, stop_after=args.steps)  # warm-up, compile
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_cuda else [])
        with profile(activities=activities, with_flops=True) as prof:
            train(run, data, tmp, device=str(device), progress=False)  # resumes: the last `steps` steps
    peak = matmul_peak(device, "bf16" if args.amp == "bf16" else ("tf32" if on_cuda else "fp32"), quick=False)
    print(f"{args.cell}, amp {args.amp}, batch {bs}, {args.steps} steps on "
          f"{torch.cuda.get_device_name(device) if on_cuda else 'CPU'}")
    print(kernel_table(prof, on_cuda, peak))
    return 0


if __name__ == "__main__":
    sys.exit(main())
