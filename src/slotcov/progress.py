"""Progress that reads well in a log file: a flushed line every few seconds, for jobs without a terminal.

A Snakemake or SLURM job writes stderr to its log, where a tqdm bar is one ever-growing line
of carriage returns; `tail -f logs/train/...` shows these lines instead:
  train results/runs/coco/sa/seed0: step 12000/500000 (2.4%) loss 0.01234 12.3 it/s ETA 11h02m
"""
from __future__ import annotations

import sys
import time


def format_eta(seconds: float) -> str:
    """12h03m, 4m05s, 42s."""
    s = int(round(seconds))
    if s >= 86400:
        return f"{s // 86400}d{s % 86400 // 3600:02d}h"
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class ProgressLine:
    """`update(done)` prints `NAME: UNIT done/total (pct%) [fields] rate/s ETA` at most every `every_s` seconds.

    The first call always prints (the job has started), and so does `force=True` (the last step).
    """

    def __init__(self, name: str, total: int, start: int = 0, every_s: float = 60.0, unit: str = "step",
                 rate_unit: str = "it/s", stream=None):
        self.name, self.total, self.start, self.every_s = name, total, start, every_s
        self.unit, self.rate_unit = unit, rate_unit
        self.stream = stream if stream is not None else sys.stderr
        self.t0 = time.monotonic()
        self.last: float | None = None

    def update(self, done: int, force: bool = False, **fields) -> bool:
        now = time.monotonic()
        if not force and self.last is not None and now - self.last < self.every_s:
            return False
        self.last = now
        rate = (done - self.start) / max(now - self.t0, 1e-9)
        eta = format_eta((self.total - done) / rate) if rate > 0 else "?"
        extra = "".join(f" {k} {v}" for k, v in fields.items())
        print(f"{self.name}: {self.unit} {done}/{self.total} ({100 * done / max(self.total, 1):.1f}%){extra} "
              f"{rate:.3g} {self.rate_unit} ETA {eta}", file=self.stream, flush=True)
        return True
