"""The checkpoint policy of a training run: what a checkpoint holds, when one is written, resuming.

ckpt.pt is written every `checkpoint_every` steps, at the last step, when a run stops early
(`stop_after`) and when SIGTERM/SIGUSR1 (a scheduler) or SIGINT (Ctrl-C) arrives, at most once per
step; model.pt when all steps are done. Every write is atomic (a temporary file, then a rename), and reading one never runs code.
"""
from __future__ import annotations

import contextlib
import pickle
import signal
import threading
import warnings
from pathlib import Path

import torch

from slotcov.errors import UserError
from slotcov.io import atomic_path

EXIT_PREEMPTED = 75  # EX_TEMPFAIL: the job was asked to stop and checkpointed; resubmit to resume
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C: checkpointed, run again to resume
CKPT_KEYS = {"ckpt.pt": ("model", "head", "optimizer", "step", "rng", "config", "config_hash"),
             "model.pt": ("model", "head", "config", "config_hash")}
STALE_FLAG = "--drop-stale-checkpoint"


class Preempted(RuntimeError):
    """SIGTERM/SIGUSR1/SIGINT arrived; a checkpoint was written. `signal`: the signal's name."""

    def __init__(self, message: str, signal_name: str = "SIGTERM"):
        super().__init__(message)
        self.signal = signal_name


def save_checkpoint(path: Path, **state) -> None:
    """torch.save to a temporary file, then rename: a crash or full disk leaves the old checkpoint intact."""
    try:
        with atomic_path(path) as tmp:
            torch.save(state, tmp)
    except OSError as err:  # full disk, quota, lost mount: nothing was replaced
        raise UserError(f"cannot write {path} ({err}); the previous {path.name} is intact: free space "
                        f"and run the same command again to resume") from err


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


def rng_state(device: torch.device) -> dict:
    """The random number generator states a resumed run needs to continue exactly."""
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


class Checkpointer:
    """The run folder's checkpoints: resume from ckpt.pt, write it when due (once per step), finish with model.pt."""

    def __init__(self, out: Path, cfg: dict, digest: str):
        self.path, self.final = out / "ckpt.pt", out / "model.pt"
        self.cfg, self.digest = cfg, digest
        self.every, self.steps = cfg["train"]["checkpoint_every"], cfg["train"]["steps"]
        self.written: int | None = None  # the step of the last checkpoint this process wrote

    def finished(self) -> bool:
        """model.pt exists and was trained with these settings."""
        fix = "delete it and run the same command again to retrain"
        return self.final.exists() and load_checkpoint(self.final, fix)["config_hash"] == self.digest

    def drop_stale(self) -> bool:
        """Delete ckpt.pt when it was written under other settings (an unreadable one stays, for resume() to refuse)."""
        if not self.path.exists() or load_checkpoint(self.path)["config_hash"] == self.digest:
            return False
        self.path.unlink()
        return True

    def resume(self, model, head, opt, device: torch.device) -> int:
        """Load ckpt.pt (weights, optimizer, RNG states) into the run; return its step (0 without one)."""
        if not self.path.exists():
            return 0
        ck = load_checkpoint(self.path)
        if ck["config_hash"] != self.digest:
            raise UserError(f"{self.path} belongs to a different config (hash {ck['config_hash']} != {self.digest}); "
                            f"delete {self.path.parent}, choose another output folder, or pass {STALE_FLAG}")
        model.load_state_dict(ck["model"])
        head.load_state_dict(ck["head"])
        opt.load_state_dict(ck["optimizer"])
        set_rng_state(ck["rng"], device)
        return ck["step"]

    def due(self, step: int) -> bool:
        """A checkpoint is due after `step` updates: every `checkpoint_every` steps and at the last one."""
        return step % self.every == 0 or step == self.steps

    def save(self, step: int, model, head, opt, device: torch.device) -> None:
        """Write ckpt.pt after `step` updates, unless this process already did."""
        if step == self.written:
            return
        save_checkpoint(self.path, model=model.state_dict(), head=head.state_dict(), optimizer=opt.state_dict(),
                        step=step, rng=rng_state(device), config=self.cfg, config_hash=self.digest)
        self.written = step

    def finish(self, step: int, model, head) -> Path:
        save_checkpoint(self.final, model=model.state_dict(), head=head.state_dict(), config=self.cfg,
                        config_hash=self.digest, steps=step)
        return self.final


class Signals:
    """Records SIGTERM/SIGUSR1 (a scheduler's request to stop) and SIGINT (Ctrl-C) while active;
    `name` is the last one, or None. A second SIGINT raises KeyboardInterrupt at once (no checkpoint)."""

    def __init__(self):
        self.name: str | None = None

    def _on(self, signum, _frame):
        if signum == signal.SIGINT and self.name == "SIGINT":
            raise KeyboardInterrupt
        self.name = signal.Signals(signum).name

    @contextlib.contextmanager
    def caught(self):
        """Install the handlers (main thread only: elsewhere Python allows none) and restore the old ones after.

        An ignored SIGINT stays ignored (a background job of a shell), as Python itself leaves it.
        """
        main = threading.current_thread() is threading.main_thread()
        wanted = [signal.SIGTERM, signal.SIGUSR1]
        if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
            wanted.append(signal.SIGINT)
        old = {s: signal.signal(s, self._on) for s in wanted} if main else {}
        try:
            yield self
        finally:
            for s, h in old.items():
                signal.signal(s, h)
