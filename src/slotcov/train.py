"""Training one cell: a plain loop with warm-up + exponential decay, AMP, clipping, resumable checkpoints.

Files in the run folder:
  ckpt.pt    the latest checkpoint (atomic; the previous one stays until the new is complete)
  log.csv    every `log_every` steps: step,lr,loss,recon,cov,var,cos,grad_norm,sec
  model.pt   the final weights, written only when all steps are done
  events.out.tfevents.*  the log.csv numbers for TensorBoard (preset `monitor.tensorboard: true`)
Progress: a tqdm bar on a terminal; without one (a Snakemake/SLURM job's log), a plain line
every `monitor.progress_every_s` seconds at a logged step (slotcov.progress).
A run restarted on the same folder resumes from ckpt.pt and ends with the same weights
as an uninterrupted run (same seed, CPU): batches are a function of (seed, step) and the
RNG states travel in the checkpoint.
"""
from __future__ import annotations

import contextlib
import csv
import json
import os
import pickle
import queue
import signal
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from slotcov.cells import build_cell
from slotcov.config import config_hash
from slotcov.errors import UserError
from slotcov.io import atomic_path, remove_temps
from slotcov.losses import regulariser_terms, weighted_total
from slotcov.progress import MONITOR, ProgressLine, monitor_settings

LOG_COLUMNS = ["step", "lr", "loss", "recon", "cov", "var", "cos", "grad_norm", "sec"]
EXIT_PREEMPTED = 75  # EX_TEMPFAIL: the job was asked to stop and checkpointed; resubmit to resume


class NonFiniteLoss(RuntimeError):
    """The loss or the gradient norm stopped being finite."""


class Preempted(RuntimeError):
    """SIGTERM/SIGUSR1 arrived; a checkpoint was written."""


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


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


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


def _rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def save_checkpoint(path: Path, **state) -> None:
    """torch.save to a temporary file, then rename: a crash or full disk leaves the old checkpoint intact."""
    try:
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
    except OSError as err:  # full disk, quota, lost mount: nothing was replaced
        raise UserError(f"cannot write {path} ({err}); the previous {path.name} is intact: free space "
                        f"and run the same command again to resume") from err


CKPT_KEYS = {"ckpt.pt": ("model", "head", "optimizer", "step", "rng", "config", "config_hash"),
             "model.pt": ("model", "head", "config", "config_hash")}


def load_checkpoint(path: Path, fix: str = "delete it and run the same command again to restart the run") -> dict:
    """A checkpoint (ckpt.pt or model.pt) as data: tensors and plain types only, never code (weights_only).

    Anything else (a pickle that would import or call code, a truncated file, a dict of other
    keys) is a one-line UserError naming the file and the fix.
    """
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol of foreign files
            warnings.simplefilter("ignore")
            ck = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # code (a global, a reduce) or bytes that are no pickle of plain data
        raise UserError(f"{path}: not a slotcov checkpoint (refused to unpickle anything but tensors and plain "
                        f"values: it could run code); {fix}") from None
    except Exception as err:
        first = (str(err).strip().splitlines() or [""])[0][:120]
        raise UserError(f"{path}: checkpoint cannot be read ({type(err).__name__}: {first}); {fix}") from None
    missing = [k for k in CKPT_KEYS.get(Path(path).name, CKPT_KEYS["model.pt"])
               if not isinstance(ck, dict) or k not in ck]
    if missing:
        raise UserError(f"{path}: not a slotcov checkpoint (no {', '.join(missing)}); {fix}")
    return ck


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


def train(cfg: dict, dataset, out_dir: str | Path, device: str = "auto", progress: bool = True,
          stop_after: int | None = None, monitor: dict | None = None) -> Path:
    """Train the cell `cfg` on `dataset` into `out_dir`; return the path of model.pt.

    Resumes from out_dir/ckpt.pt when present. `stop_after` ends the process's work after
    that many steps (as if preempted, without the signal): used by tests. `monitor`: the
    preset's progress/TensorBoard settings (slotcov.progress.MONITOR); they move no number.
    """
    monitor = {**MONITOR, **(monitor or {})}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("ckpt.pt", "model.pt", "log.csv"):
        remove_temps(out / name)  # left by a killed writer; never read
    t = cfg["train"]
    dev = resolve_device(device)
    if t.get("threads"):
        torch.set_num_threads(t["threads"])
    final = out / "model.pt"
    digest = config_hash(cfg)
    if final.exists() and load_checkpoint(final, "delete it and run the same command again to retrain")[
            "config_hash"] == digest:
        return final

    torch.manual_seed(t["seed"])
    model, head = build_cell(cfg)
    model.to(dev)
    head.to(dev)
    if dev.type == "cuda" and cfg["model"]["kind"] != "dinosaur":
        model.to(memory_format=torch.channels_last)
    params = [p for p in list(model.parameters()) + list(head.parameters()) if p.requires_grad]
    opt = torch.optim.Adam(params, lr=t["lr"], fused=dev.type == "cuda")
    step = 0
    ckpt_path = out / "ckpt.pt"
    if ckpt_path.exists():
        ck = load_checkpoint(ckpt_path)
        if ck["config_hash"] != digest:
            raise UserError(f"{ckpt_path} belongs to a different config (hash {ck['config_hash']} != {digest}); "
                            f"delete {out} or choose another output folder")
        model.load_state_dict(ck["model"])
        head.load_state_dict(ck["head"])
        opt.load_state_dict(ck["optimizer"])
        step = ck["step"]
        _set_rng_state(ck["rng"], dev)
    _truncate_log(out / "log.csv", step)  # also without a checkpoint: rows of a run killed before its first one

    use_amp = dev.type == "cuda" and t["amp"] == "bf16"  # fp32 (the paper's) unless opted in
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest kernels once
        # PyTorch's defaults: TF32 in cuDNN convolutions, full fp32 matmuls unless the preset opts in
        torch.backends.cudnn.allow_tf32 = True
        torch.set_float32_matmul_precision("high" if t["tf32_matmul"] else "highest")
    compile_ = t.get("compile", "auto")
    forward = torch.compile(model) if compile_ is True or (compile_ == "auto" and dev.type == "cuda") else model
    board = _tensorboard(out, step) if monitor["tensorboard"] else None  # before anything the finally undoes
    state = {"signal": None}

    def on_signal(signum, _frame):
        state["signal"] = signal.Signals(signum).name

    handlers = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGUSR1)} \
        if threading.current_thread() is threading.main_thread() else {}

    def checkpoint(at: int):
        save_checkpoint(ckpt_path, model=model.state_dict(), head=head.state_dict(), optimizer=opt.state_dict(),
                        step=at, rng=_rng_state(dev), config=cfg, config_hash=digest)

    log_path = out / "log.csv"
    new_log = not log_path.exists()
    log_fh = open(log_path, "a", newline="")
    log = csv.writer(log_fh)
    if new_log:
        log.writerow(LOG_COLUMNS)
    stop = t["steps"] if stop_after is None else min(t["steps"], step + stop_after)
    feeder = Prefetcher(dataset, step, stop, t["batch_size"], t["seed"], dev)
    tty = sys.stderr.isatty()
    bar = tqdm(total=t["steps"], initial=step, desc=f"train {out}", disable=not (progress and tty), dynamic_ncols=True)
    lines = ProgressLine(f"train {out}", t["steps"], step, monitor["progress_every_s"]) \
        if progress and not tty else None  # a job's log: plain lines instead of a bar
    t0 = time.time()
    pending = None

    def settle(at: int, lr: float, host: torch.Tensor, event, names: list[str]):
        """Check (non-finite stops the run) and log the numbers of the finished step `at`."""
        if event is not None:
            event.synchronize()
        named = dict(zip(names, host.tolist()))
        if not np.all(np.isfinite(list(named.values()))):
            detail = ", ".join(f"{k}={v:.6g}" for k, v in named.items())
            raise NonFiniteLoss(f"step {at}: non-finite loss or gradient ({detail}); "
                                f"last good checkpoint kept at {ckpt_path if ckpt_path.exists() else 'none'}")
        if (at + 1) % t["log_every"] == 0 or at + 1 == t["steps"]:
            log.writerow([at + 1, f"{lr:.6g}"] + [f"{named[k]:.6g}" if k in named else "" for k in LOG_COLUMNS[2:-1]]
                         + [f"{time.time() - t0:.3f}"])
            log_fh.flush()
            bar.set_postfix(loss=f"{named['loss']:.4g}", recon=f"{named['recon']:.4g}")
            if lines is not None:
                lines.update(at + 1, force=at + 1 == t["steps"], loss=f"{named['loss']:.5g}")
            if board is not None:
                for k, v in {"lr": lr, **named}.items():
                    board.add_scalar(k, v, at + 1)

    try:
        while step < stop:
            _, batch = feeder.get()
            lr = lr_at(step, t)
            for group in opt.param_groups:
                group["lr"] = lr
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_amp):
                try:
                    outputs = forward(batch)
                except Exception as err:  # torch.compile failed (no compiler, unsupported op): run eager
                    if forward is model or isinstance(err, torch.OutOfMemoryError):
                        raise
                    print(f"warning: torch.compile failed ({type(err).__name__}: {str(err)[:200]}); "
                          "continuing without compilation", file=sys.stderr)
                    forward = model
                    outputs = forward(batch)
            recon = F.mse_loss(outputs["recon"].float(), outputs["target"].float())
            with torch.autocast(dev.type, enabled=False):
                terms = regulariser_terms(outputs["slots"].float(), head, cfg["reg"])
            loss = weighted_total(recon, terms, cfg["reg"], step)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, t["grad_clip"] or float("inf"))
            names = ["loss", "recon", "grad_norm"] + [k for k in ("cov", "var", "cos") if k in terms]
            stats = torch.stack([loss, recon, grad_norm] + [terms[k] for k in names[3:]]).detach()
            if t.get("skip_nonfinite") and not bool(torch.isfinite(stats).all()):
                detail = ", ".join(f"{k}={v:.6g}" for k, v in zip(names, stats.tolist()))
                print(f"warning: step {step}: non-finite ({detail}); batch skipped", file=sys.stderr)
                step += 1
                bar.update(1)
                continue
            # the numbers travel to the host asynchronously and are checked one step late on CUDA, so
            # the GPU never idles for the check; no checkpoint is written before they are checked
            host = stats.to("cpu", non_blocking=True)
            event = torch.cuda.Event() if dev.type == "cuda" else None
            if event is not None:
                event.record()
            opt.step()
            if pending is not None:
                settle(*pending)
            pending = (step, lr, host, event, names)
            step += 1
            bar.update(1)
            signalled = state["signal"]  # read once: a signal arriving later waits for the next step
            if event is None or step % t["checkpoint_every"] == 0 or step == stop or signalled:
                settle(*pending)  # before any checkpoint, so none holds weights of an unchecked step
                pending = None
            if step % t["checkpoint_every"] == 0 or step == t["steps"]:
                checkpoint(step)
            if signalled:
                checkpoint(step)
                raise Preempted(f"{signalled} at step {step}: checkpoint written to {ckpt_path}; "
                                f"run the same command again to resume")
        if step < t["steps"]:
            checkpoint(step)
            return out / "ckpt.pt"
        save_checkpoint(final, model=model.state_dict(), head=head.state_dict(), config=cfg, config_hash=digest,
                        steps=step)
        return final
    finally:
        feeder.close()
        bar.close()
        log_fh.close()
        if board is not None:
            board.close()
        for s, h in handlers.items():
            signal.signal(s, h)


def load_trained(run_dir: str | Path, device: str = "cpu"):
    """The (model, head, cfg) of a finished run folder, in eval mode."""
    path = Path(run_dir) / "model.pt"
    if not path.exists():
        raise UserError(f"{path} not found: the run has not finished; train it first (slotcov train)")
    ck = load_checkpoint(path, "delete it and re-run the train job (slotcov train) that writes it")
    model, head = build_cell(ck["config"])
    model.load_state_dict(ck["model"])
    head.load_state_dict(ck["head"])
    dev = resolve_device(device)
    return model.to(dev).eval(), head.to(dev).eval(), ck["config"]


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
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (terminal) or progress lines (log: every monitor.progress_every_s seconds)")
    args = p.parse_args(argv)
    config = C.load(args.config)
    overrides = C.deep_merge(C.parse_set(args.set), {"train": {"seed": args.seed}})
    C.check_override(overrides, "--set/--seed")
    cfg = C.resolve_cell(config, args.cell, overrides)
    C.check_cell(cfg, args.cell, args.config)
    dataset = open_dataset(args.cell.split("/")[0], args.data, args.features)
    try:
        path = train(cfg, dataset, args.out, args.device, progress=not args.no_progress,
                     monitor=monitor_settings(config))
    except Preempted as err:
        print(f"slotcov train: {err}", file=sys.stderr)
        return EXIT_PREEMPTED
    except NonFiniteLoss as err:
        print(f"slotcov train: error: {err}", file=sys.stderr)
        return 1
    except torch.OutOfMemoryError:
        print(f"slotcov train: error: out of GPU memory at batch size {cfg['train']['batch_size']} for {args.cell}; "
              f"lower it with --set train.batch_size=N or in the preset's datasets/methods section", file=sys.stderr)
        return 1
    print(json.dumps({"cell": args.cell, "seed": args.seed, "output": str(path)}))
    return 0
