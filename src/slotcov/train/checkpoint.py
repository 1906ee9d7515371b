"""The checkpoint policy of a training run: what a checkpoint holds, when one is written, resuming.

ckpt.pt is written every `checkpoint_every` steps, at the last step, when a run stops early
(`stop_after`) and when SIGTERM/SIGUSR1 (a scheduler) or SIGINT (Ctrl-C) arrives, at most once per step; model.pt when all steps
are done, then the run record run.json (`{"status": "finished" | "diverged", "run_id", ...}`).
Each file records the run's identity (slotcov.train.identity); resuming is for interrupted runs of the
same identity only. Every write is atomic (a temporary file, then a rename), and reading one never
runs code.
"""
from __future__ import annotations

import contextlib
import json
import pickle
import signal
import sys
import threading
import warnings
from pathlib import Path

import torch

from slotcov.train import identity
from slotcov.errors import UserError
from slotcov.io import atomic_path, write_json
from slotcov.train.step import NonFiniteLoss

EXIT_PREEMPTED = 75  # EX_TEMPFAIL: the job was asked to stop and checkpointed; resubmit to resume
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C: checkpointed, run again to resume
CKPT_KEYS = {"ckpt.pt": ("model", "head", "optimizer", "step", "rng", "config", "config_hash"),
             "model.pt": ("model", "head", "config", "config_hash")}
STALE_FLAG = "--drop-stale-checkpoint"
RECORD = "run.json"  # the run's record: the train job's declared output


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


def read_record(run_dir: str | Path) -> dict:
    """The run record run.json of a run folder: {"status": "finished" | "diverged", "run_id", ...}."""
    path = Path(run_dir) / RECORD
    if not path.exists():
        raise UserError(f"{path} not found: the run has not finished; train it first (slotcov train)")
    try:
        record = json.loads(path.read_text())
        record["status"], record["run_id"]  # noqa: B018 - a record without them is no run record
    except (ValueError, TypeError, KeyError) as err:
        raise UserError(f"{path}: not a run record ({type(err).__name__}: {err}); delete it and train the run "
                        "again (slotcov train)") from None
    return record


class Checkpointer:
    """The run folder's files: resume ckpt.pt (interrupted runs only), write it when due, finish with model.pt.

    Every file records the run's identity (slotcov.train.identity); one of another identity is never resumed
    or reported: it is refused, or removed with STALE_FLAG. run.json, the run's record, is written last
    when a run finishes or diverges; without it (Snakemake deletes it before it runs the job again) the
    run trains from step 0, and a checkpoint of a finished or diverged run is never resumed.
    """

    def __init__(self, out: Path, cfg: dict, digest: str, inputs: list[dict] | None = None):
        self.out, self.path, self.final, self.record = out, out / "ckpt.pt", out / "model.pt", out / RECORD
        self.cfg, self.digest, self.inputs = cfg, digest, list(inputs or [])
        self.run_id = identity.run_id(digest, self.inputs)
        self.every, self.steps = cfg["train"]["checkpoint_every"], cfg["train"]["steps"]
        self.written: int | None = None  # the step of the last checkpoint this process wrote

    def _identity(self) -> dict:
        return {"run_id": self.run_id, "config_hash": self.digest, "inputs": self.inputs}

    def _recorded(self, path: Path) -> dict:
        """The identity a run file records (run.json, model.pt or ckpt.pt)."""
        if path == self.record:
            return read_record(self.out)
        return load_checkpoint(path, "delete it and run the same command again to retrain")

    def stale(self) -> dict[Path, str]:
        """The run files of another identity in the folder, each with what changed."""
        out = {}
        for path in (self.record, self.final, self.path):
            if path.exists() and (old := self._recorded(path)).get("run_id") != self.run_id:
                out[path] = identity.difference(old, self.digest, self.inputs)
        return out

    def clear_stale(self, drop: bool) -> str | None:
        """Refuse the files of another run (UserError), or with `drop` delete them and say so in one line."""
        stale = self.stale()
        if not stale:
            return None
        names, why = ", ".join(p.name for p in stale), next(iter(stale.values()))
        if not drop:
            raise UserError(f"{self.out}: {names} of another run ({why}); delete {'it' if len(stale) == 1 else 'them'}, "
                            f"choose another output folder, or pass {STALE_FLAG}")
        for path in stale:
            path.unlink()
        return f"{self.out}: removed {names} of another run ({why}); training from step 0"

    def result(self) -> dict | None:
        """This run's record when it already finished (with model.pt) or diverged: nothing to train."""
        if not self.record.exists():
            return None
        record = read_record(self.out)
        done = record["status"] == "diverged" or (record["status"] == "finished" and self.final.exists())
        return record if record["run_id"] == self.run_id and done else None

    def restart(self) -> None:
        """Delete a model.pt or run.json an earlier job of this run left: the run is trained again."""
        for path in (self.record, self.final):
            path.unlink(missing_ok=True)

    def resume(self, model, head, opt, device: torch.device) -> int:
        """Load ckpt.pt of an interrupted run (weights, optimizer, RNG states); return its step (0 without one).

        The checkpoint of a finished or diverged run is deleted instead: a new job trains from step 0.
        """
        if not self.path.exists():
            return 0
        ck = load_checkpoint(self.path)
        if ck.get("run_id") != self.run_id:
            raise UserError(f"{self.path} of another run ({identity.difference(ck, self.digest, self.inputs)}); "
                            f"delete {self.path.parent}, choose another output folder, or pass {STALE_FLAG}")
        if ck["step"] >= self.steps or ck.get("diverged"):
            print(f"{self.path}: the checkpoint of a {'diverged' if ck.get('diverged') else 'finished'} run "
                  "is never resumed: training from step 0", file=sys.stderr)
            self.path.unlink()
            return 0
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
                        step=step, rng=rng_state(device), config=self.cfg, **self._identity())
        self.written = step

    def finish(self, step: int, model, head, resumed_from: int) -> Path:
        """model.pt, then the record {"status": "finished"}; the finished run's ckpt.pt goes."""
        save_checkpoint(self.final, model=model.state_dict(), head=head.state_dict(), config=self.cfg,
                        steps=step, **self._identity())
        self.path.unlink(missing_ok=True)
        write_json(self.record, {"status": "finished", **self._identity(), "steps": step,
                                 "resumed_from": resumed_from})
        return self.final

    def diverge(self, err: NonFiniteLoss, resumed_from: int) -> dict:
        """Record a run stopped by a non-finite loss or gradient; mark its last good ckpt.pt as never to resume."""
        kept = None
        if self.path.exists():
            ck = load_checkpoint(self.path)
            if ck.get("run_id") == self.run_id:
                save_checkpoint(self.path, **{**ck, "diverged": {"step": err.step, "terms": err.terms}})
                kept = self.path.name
        record = {"status": "diverged", **self._identity(), "steps": err.step, "step": err.step,
                  "terms": err.terms, "last_finite_loss": err.last_finite_loss, "resumed_from": resumed_from,
                  "last_good_checkpoint": kept}
        write_json(self.record, record)
        return record


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
