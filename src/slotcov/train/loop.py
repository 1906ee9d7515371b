"""Training one cell: a plain loop with warm-up + exponential decay, AMP, clipping, resumable checkpoints.

This module holds the loop, the schedule, the batches and the log; `slotcov.train.step` the update
(forward, loss, backward, clip, Adam) and the non-finite monitor; `slotcov.train.checkpoint` when and
how checkpoints are written and read, and the SIGTERM/SIGUSR1 (exit 75) and SIGINT (exit 130) handling.

Files in the run folder (each .pt and run.json records the run's identity, slotcov.train.identity):
  ckpt.pt    the latest checkpoint of an interrupted run (atomic; the previous one stays until the new
             is complete); deleted when the run finishes, marked never to resume when it diverges
  log.csv    every `log_every` steps: step,lr,loss,recon,<each term of losses.TERMS>,grad_norm,sec
  model.pt   the final weights, written only when all steps are done
  run.json   the run record, written last: {"status": "finished" | "diverged", "run_id", "steps", ...}
  events.out.tfevents.*  the log.csv numbers for TensorBoard (preset `monitor.tensorboard: true`)
Progress: a tqdm bar on a terminal; without one (a Snakemake/SLURM job's log), a plain line
every `monitor.progress_every_s` seconds at a logged step (slotcov.progress).
An interrupted run restarted on the same folder resumes from ckpt.pt and ends with the same
weights as an uninterrupted run (same seed, CPU): batches are a function of (seed, step) and the
RNG states travel in the checkpoint. Without run.json (a job Snakemake runs again) a finished
run trains from step 0.
"""
from __future__ import annotations

import contextlib
import csv
import json
import queue
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from slotcov.train.models import build_cell
from slotcov.train.checkpoint import (EXIT_INTERRUPTED, EXIT_PREEMPTED, RECORD, STALE_FLAG, Checkpointer,  # noqa: F401
                                Preempted, Signals, load_checkpoint, read_record, save_checkpoint)
from slotcov.config import DEFAULTS, config_hash
from slotcov.errors import UserError
from slotcov.train.identity import input_records
from slotcov.io import atomic_path, remove_temps, resolve_device  # noqa: F401  (resolve_device: callers import it from here)
from slotcov.progress import ProgressLine
from slotcov.train.losses import TERMS
from slotcov.train.step import NonFiniteLoss, NonFiniteMonitor, Update

LOG_COLUMNS = ["step", "lr", "loss", "recon", *TERMS, "grad_norm", "sec"]


def lr_at(step: int, t: dict) -> float:
    """The learning rate of update `step` (0-based), counted from 1 as the authors' trainer does:
    lr * min(1, i / warmup_steps) * decay_rate^(i / decay_steps) with i = step + 1."""
    i = step + 1
    warm = min(1.0, i / t["warmup_steps"]) if t["warmup_steps"] else 1.0
    return t["lr"] * warm * t["decay_rate"] ** (i / t["decay_steps"])


def batch_indices(step: int, batch_size: int, n: int, seed: int) -> np.ndarray:
    """The dataset indices of a step: consecutive slices of a per-epoch permutation seeded by (seed, epoch)."""
    pos = np.arange(step * batch_size, (step + 1) * batch_size, dtype=np.int64)
    epochs, offsets = pos // n, pos % n
    out = np.empty(batch_size, dtype=np.int64)
    for e in np.unique(epochs):
        perm = np.random.default_rng([seed, int(e)]).permutation(n)
        out[epochs == e] = perm[offsets[epochs == e]]
    return out


class Prefetcher:
    """Reads the batches of the coming steps in a background thread (pinned memory on CUDA)."""

    def __init__(self, dataset, start: int, stop: int, batch_size: int, seed: int, device: torch.device,
                 depth: int = 3):
        self.q: queue.Queue = queue.Queue(maxsize=depth)
        self.pin = device.type == "cuda"
        self.device = device
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(dataset, start, stop, batch_size, seed), daemon=True)
        self.thread.start()

    def _run(self, dataset, start, stop, batch_size, seed):
        try:
            for step in range(start, stop):
                if self._stop.is_set():
                    return
                batch = dataset.batch(batch_indices(step, batch_size, len(dataset), seed))
                if self.pin:
                    batch = {k: v.pin_memory() for k, v in batch.items()}
                self.q.put((step, batch))
        except BaseException as err:  # surfaced in the training thread
            self.q.put((None, err))

    def get(self) -> tuple[int, dict]:
        step, batch = self.q.get()
        if step is None:
            raise batch
        return step, {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def close(self):
        self._stop.set()
        with contextlib.suppress(queue.Empty):
            while True:
                self.q.get_nowait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _truncate_log(path: Path, last_step: int) -> None:
    """Drop log rows after the checkpoint's step, so a resumed run logs each step once."""
    if not path.exists():
        return
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    if not rows or rows[0] != LOG_COLUMNS:  # killed before the header reached the disk: start afresh
        path.unlink()
        return
    # a row cut short by a kill or a full disk has fewer fields: drop it with the rows after the checkpoint
    keep = [rows[0]] + [r for r in rows[1:] if len(r) == len(rows[0]) and r[0].isdigit() and int(r[0]) <= last_step]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        csv.writer(fh).writerows(keep)


def _tensorboard(out: Path, step: int):
    """A SummaryWriter on the run folder that drops the events of steps after `step` (a killed run logged them)."""
    try:
        from torch.utils.tensorboard import SummaryWriter  # imported only when asked for
    except ImportError as err:
        raise UserError(f"monitor.tensorboard: true needs the tensorboard package ({err}); "
                        "pip install -r envs/requirements.lock, or set monitor.tensorboard: false") from None
    return SummaryWriter(log_dir=str(out), purge_step=step + 1, flush_secs=30)


class RunLog:
    """Reports the checked steps: a log.csv row every `log_every` steps (and TensorBoard), a bar or progress lines."""

    def __init__(self, out: Path, t: dict, step: int, monitor: dict, progress: bool):
        self.t = t
        self.board = _tensorboard(out, step) if monitor["tensorboard"] else None  # may fail: before opening files
        path = out / "log.csv"
        new = not path.exists()
        self.fh = open(path, "a", newline="")
        self.csv = csv.writer(self.fh)
        if new:
            self.csv.writerow(LOG_COLUMNS)
        tty = sys.stderr.isatty()
        self.bar = tqdm(total=t["steps"], initial=step, desc=f"train {out}", disable=not (progress and tty),
                        dynamic_ncols=True)
        self.lines = ProgressLine(f"train {out}", t["steps"], step, monitor["progress_every_s"]) \
            if progress and not tty else None  # a job's log: plain lines instead of a bar
        self.t0 = time.time()

    def record(self, at: int, lr: float, named: dict[str, float]) -> None:
        """The numbers of update `at` (0-based), checked finite; logged as step at + 1 when due."""
        done = at + 1
        if done % self.t["log_every"] and done != self.t["steps"]:
            return
        self.csv.writerow([done, f"{lr:.6g}"] + [f"{named[k]:.6g}" if k in named else "" for k in LOG_COLUMNS[2:-1]]
                          + [f"{time.time() - self.t0:.3f}"])
        self.fh.flush()
        self.bar.set_postfix(loss=f"{named['loss']:.4g}", recon=f"{named['recon']:.4g}")
        if self.lines is not None:
            self.lines.update(done, force=done == self.t["steps"], loss=f"{named['loss']:.5g}")
        if self.board is not None:
            for k, v in {"lr": lr, **named}.items():
                self.board.add_scalar(k, v, done)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.bar.close()
        self.fh.close()
        if self.board is not None:
            self.board.close()


def train(cfg: dict, dataset, out_dir: str | Path, device: str = "auto", progress: bool = True,
          stop_after: int | None = None, monitor: dict | None = None, drop_stale: bool = False) -> Path:
    """Train the cell `cfg` on `dataset` into `out_dir`; return the path of model.pt.

    The run's identity is `cfg` plus the content of the dataset's files (slotcov.train.identity). An
    interrupted run of this identity resumes from out_dir/ckpt.pt; a finished one returns at once.
    Files of another identity are refused, or deleted with `drop_stale` (one line on stderr). A
    non-finite loss or gradient writes the diverged record run.json and raises NonFiniteLoss (also
    when that record is already there). `stop_after` ends the process's work after that many steps
    (as if preempted, without the signal): used by tests. `monitor`: the preset's progress/TensorBoard
    settings (a resolved config's `monitor`, defaults: slotcov.config.DEFAULTS); they move no number.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("ckpt.pt", "model.pt", "log.csv", RECORD):
        remove_temps(out / name)  # left by a killed writer; never read
    t = cfg["train"]
    ckpt = Checkpointer(out, cfg, config_hash(cfg), input_records(dataset))
    if dropped := ckpt.clear_stale(drop_stale):
        print(dropped, file=sys.stderr)
    if (done := ckpt.result()) is not None:  # nothing to train
        if done["status"] == "diverged":
            raise diverged_error(done, ckpt.record)
        print(f"{ckpt.record}: this run already finished; nothing to train", file=sys.stderr)
        return ckpt.final
    ckpt.restart()
    dev = resolve_device(device)
    if t["threads"]:
        torch.set_num_threads(t["threads"])

    torch.manual_seed(t["seed"])
    model, head = build_cell(cfg)
    model.to(dev)
    head.to(dev)
    if dev.type == "cuda" and cfg["model"]["kind"] != "dinosaur":
        model.to(memory_format=torch.channels_last)
    update = Update(model, head, cfg, dev)
    step = start = ckpt.resume(model, head, update.opt, dev)
    _truncate_log(out / "log.csv", step)  # also without a checkpoint: rows of a run killed before its first one
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest kernels once
        # PyTorch's defaults: TF32 in cuDNN convolutions, full fp32 matmuls unless the preset opts in
        torch.backends.cudnn.allow_tf32 = True
        torch.set_float32_matmul_precision("high" if t["tf32_matmul"] else "highest")
    stop = t["steps"] if stop_after is None else min(t["steps"], step + stop_after)
    with RunLog(out, t, step, {**DEFAULTS["monitor"], **(monitor or {})}, progress) as log, Signals().caught() as signals, \
            Prefetcher(dataset, step, stop, t["batch_size"], t["seed"], dev) as feeder:
        checks = NonFiniteMonitor(dev, log.record, ckpt.path)
        try:
            while step < stop:
                _, batch = feeder.get()
                numbers = update(batch, step, lr_at(step, t))
                if numbers is not None:  # None: a non-finite batch skipped (train.skip_nonfinite)
                    checks.push(numbers)
                step += 1
                log.bar.update(1)
                signalled = signals.name  # read once: a signal arriving later waits for the next step
                if ckpt.due(step) or step == stop or signalled:
                    checks.settle()  # no checkpoint may hold weights of an unchecked step
                if ckpt.due(step) or signalled:
                    ckpt.save(step, model, head, update.opt, dev)  # once per step, also when both hold
                if signalled:
                    raise Preempted(f"{signalled} at step {step}: checkpoint written to {ckpt.path}; "
                                    f"run the same command again to resume", signalled)
        except NonFiniteLoss as err:
            if err.last_finite_loss is None:  # diverged at the first step of this process: the log knows
                err.last_finite_loss = _last_logged_loss(out / "log.csv")
            ckpt.diverge(err, start)
            raise
        if step < t["steps"]:
            ckpt.save(step, model, head, update.opt, dev)
            return ckpt.path
        return ckpt.finish(step, model, head, start)


def _last_logged_loss(path: Path) -> float | None:
    """The loss of log.csv's last row, or None."""
    with contextlib.suppress(OSError, ValueError, IndexError, KeyError):
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
        return float(rows[-1]["loss"])
    return None


def diverged_error(record: dict, where: Path) -> NonFiniteLoss:
    """The NonFiniteLoss of a diverged run's record (a re-run of the same run reports it again)."""
    return NonFiniteLoss(f"step {record['step']}: non-finite {', '.join(record['terms'])} "
                         f"(last finite loss {record['last_finite_loss']}); recorded in {where} before: nothing trained",
                         record["step"], record["terms"], record["last_finite_loss"])


def load_trained(run_dir: str | Path, device: str = "cpu"):
    """The (model, head, cfg) of a finished run folder, in eval mode: model.pt of the run its run.json records."""
    record = read_record(run_dir)
    path = Path(run_dir) / "model.pt"
    if record["status"] != "finished":
        raise UserError(f"{Path(run_dir) / RECORD}: the run {record['status']} at step {record.get('step')} and "
                        "has no model.pt; nothing to load")
    if not path.exists():
        raise UserError(f"{path} not found, though {RECORD} says the run finished; train it again (slotcov train)")
    ck = load_checkpoint(path, "delete it and re-run the train job (slotcov train) that writes it")
    if ck.get("run_id") != record["run_id"]:
        raise UserError(f"{path} is not the model of {Path(run_dir) / RECORD} (run {ck.get('run_id')} != "
                        f"{record['run_id']}); train the run again (slotcov train {STALE_FLAG})")
    model, head = build_cell(ck["config"])
    model.load_state_dict(ck["model"])
    head.load_state_dict(ck["head"])
    dev = resolve_device(device)
    return model.to(dev).eval(), head.to(dev).eval(), ck["config"]


def check_data_flags(cell: str, features: str | None) -> None:
    """A COCO cell trains on ViT features (--features); a ColoredMDSprites cell on images only."""
    if cell.startswith("coco/") and not features:
        raise UserError(f"{cell} trains on ViT features: pass --features DIR (the feature store of --data, "
                        "made by `slotcov extract-features`)")
    if not cell.startswith("coco/") and features:
        raise UserError(f"{cell} reads images only: remove --features (it is for COCO cells)")


def cli_train(argv: list[str]) -> int:
    import argparse

    from slotcov import config as C
    from slotcov.data import open_dataset

    p = argparse.ArgumentParser(prog="slotcov train", description="Train one table cell; resumes from --out.")
    p.add_argument("--config", default="config.yaml", help="preset file (default: config.yaml)")
    p.add_argument("--cell", required=True, help="DATASET/METHOD, e.g. cmdsprites/covloss")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", required=True, help="prepared training split folder")
    p.add_argument("--features", help="feature store folder (COCO cells)")
    p.add_argument("--out", required=True, help="run folder (checkpoints, log.csv, model.pt)")
    p.add_argument("--device", default="auto")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a cell setting, e.g. --set reg.cov_weight=0.1 (repeatable)")
    p.add_argument(STALE_FLAG, action="store_true",
                   help="delete the run files (ckpt.pt, model.pt, run.json) of another run in --out, one whose "
                        "settings or inputs differ, and start afresh (default: refuse them); for a workflow "
                        "that re-runs a job because its settings or inputs changed")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (terminal) or progress lines (log: every monitor.progress_every_s seconds)")
    args = p.parse_args(argv)
    config = C.load(args.config)
    overrides = C.deep_merge(C.parse_set(args.set), {"train": {"seed": args.seed}})
    C.check_override(overrides, "--set/--seed")
    cfg = C.resolve_cell(config, args.cell, overrides)
    C.check_cell(cfg, args.cell, args.config)
    check_data_flags(args.cell, args.features)  # before the run folder exists
    dataset = open_dataset(args.cell.split("/")[0], args.data, args.features)
    try:
        train(cfg, dataset, args.out, args.device, progress=not args.no_progress,
              monitor=config["monitor"], drop_stale=args.drop_stale_checkpoint)
    except Preempted as err:
        print(f"slotcov train: {err}", file=sys.stderr)
        return EXIT_INTERRUPTED if err.signal == "SIGINT" else EXIT_PREEMPTED
    except NonFiniteLoss as err:  # a result: the run record says where and what
        print(f"slotcov train: {args.cell} seed {args.seed} diverged: {err}", file=sys.stderr)
    except torch.OutOfMemoryError:
        print(f"slotcov train: error: out of GPU memory at batch size {cfg['train']['batch_size']} for {args.cell}; "
              f"lower it with --set train.batch_size=N or in the preset's datasets/methods section", file=sys.stderr)
        return 1
    record = read_record(args.out)
    summary = {k: record.get(k) for k in ("status", "run_id", "steps", "resumed_from", "step", "terms") if k in record}
    print(json.dumps({"cell": args.cell, "seed": args.seed, **summary, "output": str(Path(args.out) / RECORD)}))
    return 0
