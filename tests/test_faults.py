"""Fault injection: kills, signals, failing writers, bad configs, non-finite gradients, OOM and full disks.

Every test checks the same promise: a fault never loses finished work and never leaves a
half-written file under a final name; a restarted run ends exactly where an uninterrupted one does.
Kill trials and most CLI calls run in children forked from one helper process (this file run
as a script), so each costs a fork, not a fresh `import torch`; a few calls use the real
`slotcov` executable.

Run as a script (`python tests/test_faults.py serve`) it is the fork server the tests talk to.
"""
import errno
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from tiny_run import assert_same_weights, weights

HERE = Path(__file__).parent
ROOT = HERE.parent
SLOTCOV = Path(sys.executable).with_name("slotcov")
pytestmark = [pytest.mark.fault, pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")]
STEPS = 12  # of the kill trials, with a checkpoint after every step

# ---------------------------------------------------------------------------- kill trials (child side)


def _kill_self():
    os.kill(os.getpid(), signal.SIGKILL)


def _kill_cell() -> dict:
    from slotcov.config import deep_merge
    from tiny_run import tiny_cell

    return deep_merge(tiny_cell("cmdsprites/sa", steps=STEPS, checkpoint_every=1),
                      {"model": {"channels": 16, "slot_dim": 16, "mlp_hidden": 32}})


def _arm(kind: str, target: str, at: float):
    """Make this process SIGKILL itself at its `at`-th event of `kind` on file `target` (or step / timer)."""
    import slotcov.io
    import slotcov.train.loop

    count = {"n": 0}

    def hit() -> bool:
        count["n"] += 1
        return count["n"] == at

    if kind == "write":  # halfway through torch.save's temporary file
        real_save = torch.save

        def save(obj, f, *args, **kwargs):
            if Path(f).name.startswith(f".{target}.") and hit():
                buf = io.BytesIO()
                real_save(obj, buf)
                with open(f, "wb") as fh:
                    fh.write(buf.getvalue()[: len(buf.getvalue()) // 2])
                    fh.flush()
                    os.fsync(fh.fileno())
                _kill_self()
            return real_save(obj, f, *args, **kwargs)

        torch.save = save
    elif kind == "rename":  # temporary file complete and fsynced, rename not yet done
        real_replace = os.replace

        def replace(src, dst):
            if Path(dst).name == target and hit():
                _kill_self()
            return real_replace(src, dst)

        slotcov.io.os.replace = replace
    elif kind in ("step", "timer"):  # at the start of this process's at-th step / at a random moment
        real_lr = slotcov.train.loop.lr_at

        def lr_at(step, t):
            if hit():
                _kill_self()
            return real_lr(step, t)

        slotcov.train.loop.lr_at = lr_at
        if kind == "timer":  # at a random moment, at the latest at the start of the 3rd step
            at = 3
            threading.Timer(float(target), _kill_self).start()


def kill_trials(root: Path, plan: list) -> list:
    """Run each (folder, kind, target, at) of `plan` in a forked child; return how each child ended.

    This process never runs a torch operation itself, so forking it is safe.
    """
    from slotcov.train.loop import train
    from tiny_run import tiny_dataset

    results = []
    for folder, kind, target, at in plan:
        out = root / folder
        temps_before = len(list(out.glob(".*.tmp*"))) if out.exists() else 0
        t0 = time.time()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                _arm(kind, target, at)
                train(_kill_cell(), tiny_dataset(), out, progress=False)
            except BaseException as err:  # noqa: BLE001 - reported to the parent by exit code
                print(f"trial child: {type(err).__name__}: {err}", file=sys.stderr)
                code = 3
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        ck = out / "ckpt.pt"
        results.append({"folder": folder, "kind": kind, "target": target, "at": at, "killed": killed,
                        "exit": None if killed else os.WEXITSTATUS(status),
                        "ckpt_step": torch.load(ck, weights_only=True)["step"] if ck.exists() else None,
                        "model": (out / "model.pt").exists(), "temps_before": temps_before,
                        "temps_after": len(list(out.glob(".*.tmp*"))), "sec": round(time.time() - t0, 2)})
    return results


def _run_cli(argv: list, cwd: str, stdout: str, stderr: str) -> int:
    """`slotcov ARGV` in a forked child: the entry point's code, its handling of an uncaught exception."""
    import traceback

    import slotcov.cli

    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.dup2(os.open(stdout, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 1)
            os.dup2(os.open(stderr, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2)
            os.chdir(cwd)
            sys.argv = ["slotcov"] + argv
            code = slotcov.cli.main()
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except BaseException:  # noqa: BLE001 - printed exactly as the interpreter would
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    return pid


def serve():
    """Answer JSON requests on stdin, one per line: {"cli": [argv, cwd, stdout, stderr]} -> {"pid"}, then
    {"code"}; {"trials": [root, plan]} -> {"results"}. Imports once; every request runs in a forked child."""
    import torch._dynamo  # noqa: F401 - the first torch.optim.Adam imports it: seconds, paid once here

    import slotcov.data.features  # noqa: F401
    import slotcov.evaluate.evaluation  # noqa: F401
    import slotcov.train.loop  # noqa: F401

    def reply(obj):
        print(json.dumps(obj), flush=True)

    for line in sys.stdin:
        req = json.loads(line)
        if "cli" in req:
            pid = _run_cli(*req["cli"])
            reply({"pid": pid})
            reply({"code": os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])})
        else:
            reply({"results": kill_trials(Path(req["trials"][0]), req["trials"][1])})


class Server:
    """A `serve()` process: slotcov CLI calls and kill trials without a fresh `import torch` each."""

    def __init__(self):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
        self.proc = subprocess.Popen([sys.executable, __file__, "serve"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env)

    def _send(self, obj):
        self.proc.stdin.write(json.dumps(obj) + "\n")
        self.proc.stdin.flush()

    def _read(self):
        line = self.proc.stdout.readline()
        assert line, "the fault server died"
        return json.loads(line)

    def start(self, argv, cwd) -> int:
        """Start `slotcov ARGV` in `cwd` (stdout/stderr into cwd/cli.out, cwd/cli.err); return its pid."""
        self._send({"cli": [[str(a) for a in argv], str(cwd), str(Path(cwd) / "cli.out"), str(Path(cwd) / "cli.err")]})
        return self._read()["pid"]

    def wait(self, cwd) -> tuple[int, str]:
        return self._read()["code"], (Path(cwd) / "cli.err").read_text()

    def cli(self, argv, cwd) -> tuple[int, str]:
        self.start(argv, cwd)
        return self.wait(cwd)

    def trials(self, root, plan) -> list:
        self._send({"trials": [str(root), plan]})
        return self._read()["results"]

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


@pytest.fixture(scope="module")
def server():
    srv = Server()
    yield srv
    srv.close()


# ---------------------------------------------------------------------------- shared helpers


def _blob_dataset():
    """tiny_run's images with per-pixel object ids (each distinct colour; the most common one is background)."""
    from slotcov.data import InMemory
    from tiny_run import blobs

    images = blobs()
    ids = torch.zeros(images.shape[0], *images.shape[-2:], dtype=torch.long)
    for i, img in enumerate(images):
        _, inverse, counts = torch.unique(img.flatten(1).T, dim=0, return_inverse=True, return_counts=True)
        ids[i] = torch.argsort(torch.argsort(counts, descending=True))[inverse].view(img.shape[-2:])
    return InMemory(image=images, true_ids=ids)


def _metrics(run: Path) -> dict:
    from slotcov.evaluate.evaluation import evaluate_model
    from slotcov.train.loop import load_trained

    model, _, _ = load_trained(run)
    return evaluate_model(model, _blob_dataset(), batch_size=16, n_samples=0, progress=False)[0]


def _no_temps(folder: Path) -> list:
    return [p.name for p in Path(folder).rglob(".*") if ".tmp" in p.name or ".old" in p.name]


def _half_then(exc: BaseException):
    """A writer stand-in: write half of what `real(obj, path)` would, then raise `exc`."""
    def writer_of(real):
        def partial(*args, **kwargs):
            buf = io.BytesIO()
            real(*((args[0], buf) + args[2:]), **kwargs)
            with open(args[1], "wb") as fh:
                fh.write(buf.getvalue()[: len(buf.getvalue()) // 2])
            raise exc
        return partial
    return writer_of


def _one_line_error(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    return lines[0]


# ---------------------------------------------------------------------------- 1. kill anywhere, resume exactly

# (kind, target, range of the event number): each trial draws the numbers at random and shuffles the
# middle kills; every kill lands within a few steps of the child's start, so all are reached
KILLS = [("step", None, (1, 3)),          # at the start of a random step
         ("write", "ckpt.pt", (1, 2)),    # mid-write of a checkpoint's temporary file
         ("rename", "ckpt.pt", (1, 2)),   # checkpoint complete in its temporary file, not yet renamed
         ("rename", "log.csv", (1, 1)),   # log truncation on resume, before its rename
         ("timer", None, (0.05, 0.5)),    # at a random moment (seconds after the fork)
         ("write", "model.pt", (1, 1))]   # mid-write of the final weights


def test_sigkill_anywhere_resumes_with_same_weights_log_and_metrics(server, tmp_path):
    rng = np.random.default_rng(7)
    plan = [("ref", "none", None, 0)]
    for trial in range(3):
        order = [KILLS[0]] + [KILLS[1 + i] for i in rng.permutation(len(KILLS) - 2)] + [KILLS[-1]]
        for kind, target, (lo, hi) in order:
            if kind == "timer":
                target = float(rng.uniform(lo, hi))
            plan.append((f"run{trial}", kind, target, 0 if kind == "timer" else int(rng.integers(lo, hi + 1))))
        plan.append((f"run{trial}", "none", None, 0))  # the final, undisturbed restart
    results = server.trials(tmp_path, plan)
    (tmp_path / "kill_trials.json").write_text(json.dumps(results, indent=1))
    killed = [r for r in results if r["killed"]]
    assert all(r["killed"] == (r["kind"] != "none") for r in results), results  # every kill point was reached
    assert all(r["exit"] == 0 for r in results if not r["killed"]), results
    assert len(killed) == 3 * len(KILLS)
    assert all(r["temps_after"] == 1 for r in killed if r["kind"] in ("write", "rename"))  # died inside a write
    ref_log = pd.read_csv(tmp_path / "ref" / "log.csv").drop(columns="sec")
    ref_metrics = _metrics(tmp_path / "ref")
    for trial in range(3):
        run = tmp_path / f"run{trial}"
        assert_same_weights(weights(tmp_path / "ref"), weights(run))
        pd.testing.assert_frame_equal(ref_log, pd.read_csv(run / "log.csv").drop(columns="sec"))
        assert _metrics(run) == ref_metrics
        assert _no_temps(run) == [], "a killed writer's temporary file survived the restart"
    print(f"kill trials: {len(results)} runs, {len(killed)} SIGKILLs "
          f"({sum(r['kind'] in ('write', 'rename') for r in killed)} inside a write), data lost: none")


@pytest.fixture(scope="module")
def replica(tmp_path_factory):
    """A converted 16x16 replica split, a tiny preset file and the in-process config for it."""
    from slotcov.data.mdsprites import convert_split, make_mdsprites

    root = tmp_path_factory.mktemp("replica")
    make_mdsprites(40, 0, root / "r.tfrecords", workers=1)
    convert_split(root / "r.tfrecords", 0, 32, root / "train", resolution=16)
    preset = {"preset": "fault", "seeds": [0], "cells": ["cmdsprites/sa"],
              "data": {"cmdsprites": {"source": "replica"}},
              "datasets": {"cmdsprites": {
                  "model": {"resolution": 16, "slot_dim": 16, "mlp_hidden": 32, "channels": 16},
                  "train": {"steps": 30, "batch_size": 8, "warmup_steps": 2, "decay_steps": 100,
                            "checkpoint_every": 100_000, "log_every": 1, "threads": 1}}}}
    (root / "preset.yaml").write_text(yaml.safe_dump(preset))
    return root


def _cfg(replica, **train):
    from slotcov import config as C

    return C.resolve_cell(C.load(replica / "preset.yaml"), "cmdsprites/sa", {"train": {"seed": 0, **train}})


def test_sigterm_and_sigusr1_through_the_cli_exit_75_and_resume(replica, server, tmp_path):
    """What SLURM --signal/--requeue relies on: exit 75 with a checkpoint, and the same command resumes.

    SIGTERM goes to the real `slotcov` executable, SIGUSR1 to a `slotcov train` forked from the server.
    """
    from slotcov.data.mdsprites import MDSpritesArrays
    from slotcov.train.loop import EXIT_PREEMPTED, train

    out = tmp_path / "run"
    args = ["train", "--config", str(replica / "preset.yaml"), "--cell", "cmdsprites/sa",
            "--data", str(replica / "train"), "--out", str(out), "--device", "cpu", "--no-progress"]

    def stepped(rows: int) -> bool:  # this process has logged a step of its own
        return (out / "log.csv").exists() and len((out / "log.csv").read_text().splitlines()) > rows + 1

    proc = subprocess.Popen([str(SLOTCOV)] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while proc.poll() is None and not stepped(0) and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_PREEMPTED, err
    first = torch.load(out / "ckpt.pt", weights_only=True)["step"]
    assert f"SIGTERM at step {first}: checkpoint written to {out / 'ckpt.pt'}" in err

    pid = server.start(args, tmp_path)
    deadline = time.time() + 120
    while not stepped(first) and time.time() < deadline:
        time.sleep(0.02)
    os.kill(pid, signal.SIGUSR1)
    code, err = server.wait(tmp_path)
    assert code == EXIT_PREEMPTED, err
    second = torch.load(out / "ckpt.pt", weights_only=True)["step"]
    assert f"SIGUSR1 at step {second}: checkpoint written" in err and 0 < first < second < 30

    code, err = server.cli(args, tmp_path)
    assert code == 0, err
    assert list(pd.read_csv(out / "log.csv").step) == list(range(1, 31))  # each step logged once, in order
    train(_cfg(replica), MDSpritesArrays(replica / "train"), tmp_path / "ref", device="cpu", progress=False)
    assert_same_weights(weights(tmp_path / "ref"), weights(out))
    print(f"preempted at steps {first} (SIGTERM) and {second} (SIGUSR1), resumed to 30")


def test_ctrl_c_checkpoints_exits_130_in_one_line_and_resumes_exactly(replica, server, tmp_path):
    """SIGINT (Ctrl-C) to the real `slotcov` executable: checkpoint at the end of the step, one line, exit 130."""
    from slotcov.data.mdsprites import MDSpritesArrays
    from slotcov.train.loop import EXIT_INTERRUPTED, train

    out = tmp_path / "run"
    args = ["train", "--config", str(replica / "preset.yaml"), "--cell", "cmdsprites/sa",
            "--data", str(replica / "train"), "--out", str(out), "--device", "cpu", "--no-progress"]
    # a terminal's foreground job: SIGINT not ignored, whatever the test runner inherited
    proc = subprocess.Popen([str(SLOTCOV)] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while proc.poll() is None and not (out / "log.csv").exists() or len((out / "log.csv").read_text().splitlines()) < 3:
        assert time.time() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_INTERRUPTED, err
    step = torch.load(out / "ckpt.pt", weights_only=True)["step"]
    assert _one_line_error(err) == (f"slotcov train: SIGINT at step {step}: checkpoint written to {out / 'ckpt.pt'}; "
                                    "run the same command again to resume")
    assert 0 < step < 30 and not (out / "model.pt").exists()

    code, err = server.cli(args, tmp_path)
    assert code == 0, err
    assert list(pd.read_csv(out / "log.csv").step) == list(range(1, 31))
    train(_cfg(replica), MDSpritesArrays(replica / "train"), tmp_path / "ref", device="cpu", progress=False)
    assert_same_weights(weights(tmp_path / "ref"), weights(out))
    print(f"Ctrl-C at step {step}, resumed to 30")


def test_a_second_ctrl_c_stops_at_once_an_ignored_one_stays_ignored_other_commands_exit_130(monkeypatch, capsys):
    import slotcov.config
    from slotcov.train.checkpoint import Signals
    from slotcov.cli import main

    signals = Signals()
    with signals.caught():
        assert signal.getsignal(signal.SIGINT) == signals._on  # else the kill below would stop pytest itself
        os.kill(os.getpid(), signal.SIGINT)
        assert signals.name == "SIGINT"  # the first: recorded, the step finishes and checkpoints
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with Signals().caught():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)

    def interrupted(argv):
        raise KeyboardInterrupt

    monkeypatch.setattr(slotcov.config, "cli_check_config", interrupted)
    assert main(["check-config"]) == 130
    assert _one_line_error(capsys.readouterr().err).startswith("slotcov check-config: interrupted (SIGINT)")


def test_a_cell_missing_an_argument_stops_before_anything_is_created(replica, server, tmp_path):
    """Each CLI checks the arguments a cell needs first: one line naming the fix, no run folder or output."""
    split = Path(_fake_split(tmp_path))
    cases = [
        (["train", "--config", str(ROOT / "config/test.yaml"), "--cell", "coco/sa", "--data", str(split),
          "--out", str(tmp_path / "run")], "coco/sa trains on ViT features: pass --features DIR"),
        (["train", "--config", str(replica / "preset.yaml"), "--cell", "cmdsprites/sa", "--data",
          str(replica / "train"), "--features", str(split), "--out", str(tmp_path / "run")],
         "cmdsprites/sa reads images only: remove --features"),
        (["evaluate", "--config", str(ROOT / "config/test.yaml"), "--cell", "coco/sa", "--run", str(tmp_path / "r"),
          "--data", str(split), "--out", str(tmp_path / "run" / "m.json"), "--details", str(tmp_path / "run" / "d"),
          "--provenance", str(tmp_path / "run" / "p")],
         "coco/sa: pass --pipeline NAME DATA FEATURES"),
        (["evaluate", "--config", str(ROOT / "config/test.yaml"), "--cell", "coco/sa_vit", "--data", str(split),
          "--out", str(tmp_path / "run" / "m.json"), "--details", str(tmp_path / "run" / "d"),
          "--provenance", str(tmp_path / "run" / "p")],
         "unknown cell 'coco/sa_vit'"),
        (["probe", "--config", str(ROOT / "config/test.yaml"), "--cell", "coco/sa", "--run", str(tmp_path / "r"),
          "--data", str(split), "--out", str(tmp_path / "run" / "p.json"), "--details", str(tmp_path / "run" / "d"),
          "--provenance", str(tmp_path / "run" / "q")],
         "--cell coco/sa: the probe reads ColoredMDSprites scenes"),
        (["extract-features", "--images", str(split), "--model", "vit_tiny_patch16_224", "--weights", "random",
          "--batch-size", "0", "--out", str(tmp_path / "run")], "--batch-size 0 and --chunk 1024 must be at least 1"),
    ]
    for argv, expected in cases:
        code, err = server.cli(argv, tmp_path)
        assert code == 2 and expected in _one_line_error(err), (argv, err)
        assert not (tmp_path / "run").exists(), argv
    (split / "image_ids.npy").unlink()
    code, err = server.cli(["extract-features", "--images", str(split), "--out", str(tmp_path / "run")], tmp_path)
    assert code == 2 and f"{split / 'image_ids.npy'} not found" in _one_line_error(err), err
    assert not (tmp_path / "run").exists()
    from slotcov.data.coco import CocoArrays
    from slotcov.errors import UserError

    (split / "meta.json").write_text("{}")
    with pytest.raises(UserError, match="image128.npy not found; run `slotcov prepare-coco` first"):
        CocoArrays(split)  # a prepared split missing a file: the dataset every COCO train/evaluate opens


# ---------------------------------------------------------------------------- 2. nothing half-written


def _train_cli(replica, out, *extra):
    from slotcov.cli import main

    return main(["train", "--config", str(replica / "preset.yaml"), "--cell", "cmdsprites/sa", "--data",
                 str(replica / "train"), "--out", str(out), "--device", "cpu", "--no-progress",
                 "--set", "train.steps=8", "--set", "train.checkpoint_every=4", *extra])


@pytest.mark.parametrize("victim", ["ckpt.pt", "model.pt"])
def test_full_disk_while_saving_keeps_the_previous_file(replica, tmp_path, monkeypatch, capsys, victim):
    """ENOSPC halfway through torch.save: one clear line, previous checkpoint intact, resume finishes exactly."""
    out = tmp_path / "run"
    real_save = torch.save
    calls = {"n": 0}
    fail_at = 2 if victim == "ckpt.pt" else 3  # saves: ckpt@4, ckpt@8, model.pt

    def save(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == fail_at:
            _half_then(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))(real_save)(obj, f, *args, **kwargs)
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    assert _train_cli(replica, out) == 2
    line = _one_line_error(capsys.readouterr().err)
    assert "No space left on device" in line and str(out / victim) in line and "intact" in line
    ck = torch.load(out / "ckpt.pt", weights_only=True)  # loadable
    assert ck["step"] == (4 if victim == "ckpt.pt" else 8)
    assert not (out / "model.pt").exists() and _no_temps(out) == []
    monkeypatch.setattr(torch, "save", real_save)
    assert _train_cli(replica, out) == 0
    from slotcov.train.loop import train
    from slotcov.data.mdsprites import MDSpritesArrays

    train(_cfg(replica, steps=8, checkpoint_every=4), MDSpritesArrays(replica / "train"), tmp_path / "ref",
          device="cpu", progress=False)
    assert_same_weights(weights(tmp_path / "ref"), weights(out))


def test_log_truncation_failure_keeps_the_log_and_partial_rows_are_dropped(tmp_path, monkeypatch):
    import csv

    from slotcov.train.loop import train
    from tiny_run import tiny_dataset

    cfg = _kill_cell()  # 12 steps, a checkpoint after each
    train(cfg, tiny_dataset(), tmp_path / "ref", progress=False)
    run = tmp_path / "run"
    train(cfg, tiny_dataset(), run, progress=False, stop_after=6)
    with open(run / "log.csv", "a") as fh:  # as if killed after logging step 7, before its checkpoint
        fh.write(",".join(["7"] + ["0.5"] * 8) + "\n")
    before = (run / "log.csv").read_bytes()
    real_writer = csv.writer

    class HalfWriter:
        def __init__(self, fh, *a, **k):
            self.w, self.fh = real_writer(fh, *a, **k), fh

        def writerows(self, rows):
            self.w.writerows(rows[: len(rows) // 2])
            self.fh.flush()
            raise OSError(errno.EIO, "injected write failure")

    monkeypatch.setattr(csv, "writer", HalfWriter)
    with pytest.raises(OSError, match="injected"):
        train(cfg, tiny_dataset(), run, progress=False)
    monkeypatch.setattr(csv, "writer", real_writer)
    assert (run / "log.csv").read_bytes() == before and _no_temps(run) == []
    with open(run / "log.csv", "a") as fh:  # a row cut short by a kill: no trailing fields, no newline
        fh.write("1")
    train(cfg, tiny_dataset(), run, progress=False)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "ref" / "log.csv").drop(columns="sec"),
                                  pd.read_csv(run / "log.csv").drop(columns="sec"))
    # a log that never got its header onto the disk (killed in the first steps) starts afresh
    for name in ("ckpt.pt", "model.pt", "run.json"):  # the finished run's files: a new run of the same cell
        (run / name).unlink(missing_ok=True)
    (run / "log.csv").write_text("")
    train(cfg, tiny_dataset(), run, progress=False)
    assert list(pd.read_csv(run / "log.csv").step) == list(range(1, 13))


def test_evaluate_outputs_are_never_half_written(replica, tmp_path, monkeypatch):
    from slotcov.cli import main
    from slotcov.train.loop import train
    from slotcov.data.mdsprites import MDSpritesArrays

    run = tmp_path / "run"
    train(_cfg(replica, steps=2), MDSpritesArrays(replica / "train"), run, device="cpu", progress=False)
    m, s = tmp_path / "metrics" / "seed0.json", tmp_path / "samples" / "seed0.npz"
    argv = ["evaluate", "--config", str(replica / "preset.yaml"), "--cell", "cmdsprites/sa", "--run", str(run),
            "--data", str(replica / "train"), "--out", str(m), "--samples", str(s), "--device", "cpu",
            "--details", str(tmp_path / "details" / "seed0.json"),
            "--provenance", str(tmp_path / "provenance" / "seed0.json"), "--set", "train.steps=2"]
    assert main(argv) == 0
    prov = tmp_path / "provenance" / "seed0.json"
    good = {p: p.read_bytes() for p in (m, s, prov)}
    # the samples NPZ fails halfway; then the metrics JSON fails halfway
    real_savez = np.savez_compressed

    def savez(file, **arrays):
        buf = io.BytesIO()
        real_savez(buf, **arrays)
        Path(file).write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
        raise OSError(errno.ENOSPC, "disk full")

    monkeypatch.setattr(np, "savez_compressed", savez)
    with pytest.raises(OSError, match="disk full"):
        main(argv)
    monkeypatch.undo()
    real_write_text, calls = Path.write_text, {"n": 0}

    def write_text(self, data, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:  # provenance, details, then metrics
            real_write_text(self, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "disk full")
        return real_write_text(self, data, *a, **k)

    monkeypatch.setattr(Path, "write_text", write_text)
    with pytest.raises(OSError, match="disk full"):
        main(argv)
    monkeypatch.undo()
    assert m.read_bytes() == good[m] and s.read_bytes() == good[s]
    json.loads(prov.read_text())  # rewritten, but complete
    assert _no_temps(tmp_path / "metrics") == [] and _no_temps(tmp_path / "samples") == []


def test_convert_split_failure_leaves_previous_split(replica, tmp_path, monkeypatch):
    from slotcov.data import mdsprites
    from slotcov.errors import DataError

    out = tmp_path / "split"
    mdsprites.convert_split(replica / "r.tfrecords", 0, 8, out, resolution=16)
    good = {p.name: p.read_bytes() for p in out.iterdir()}
    # a corrupt record mid-conversion (a real fault) and an exception while writing meta.json
    bad = tmp_path / "bad.tfrecords"
    from slotcov.data.tfrecord import read_records, write_records

    payloads = [p for _, p in read_records(replica / "r.tfrecords", 0, 12)]
    payloads[9] = payloads[9][:100]  # decodes as a broken tf.train.Example
    write_records(bad, payloads)
    with pytest.raises(DataError, match=r"bad.tfrecords: record 9"):
        mdsprites.convert_split(bad, 0, 12, out, resolution=16)
    monkeypatch.setattr(mdsprites, "write_json", lambda *a: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
    with pytest.raises(OSError):
        mdsprites.convert_split(replica / "r.tfrecords", 0, 12, out, resolution=16)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == good
    assert _no_temps(tmp_path) == []
    with pytest.raises(DataError):
        mdsprites.convert_split(bad, 0, 12, tmp_path / "fresh", resolution=16)
    assert not (tmp_path / "fresh").exists()


def test_prepare_coco_and_feature_store_failures_leave_nothing_half_written(tmp_path, monkeypatch):
    from timm.models.vision_transformer import VisionTransformer

    from slotcov.data import coco, features
    from slotcov.errors import UserError

    coco.make_coco(tmp_path / "coco", "val2017", n=6, seed=0)
    out = tmp_path / "prep"
    coco.prepare_split(tmp_path / "coco", "val2017", "center", out, limit=4)
    good = {p.name: p.read_bytes() for p in out.iterdir()}
    real_one, calls = coco._prepare_one, {"n": 0}

    def one(job):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(errno.EIO, "injected read error")
        return real_one(job)

    monkeypatch.setattr(coco, "_prepare_one", one)
    with pytest.raises(OSError, match="injected"):
        coco.prepare_split(tmp_path / "coco", "val2017", "center", out)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in out.iterdir()} == good and _no_temps(tmp_path) == []

    images = np.random.default_rng(0).integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)

    def vit(seed):
        torch.manual_seed(seed)
        return VisionTransformer(img_size=32, patch_size=16, embed_dim=16, depth=1, num_heads=2,
                                 num_classes=0).eval()

    store = tmp_path / "feat"
    features.extract_features(vit(0), images, store, batch_size=4, device="cpu", chunk=4)
    old = features.FeatureStore(store, verify=True)[:]
    real_tokens, calls = features._tokens, {"n": 0}

    def tokens(model, x):
        calls["n"] += 1
        if calls["n"] == 3:  # the probe call, chunk 0, then chunk 1 fails
            raise RuntimeError("injected failure mid-extraction")
        return real_tokens(model, x)

    monkeypatch.setattr(features, "_tokens", tokens)
    with pytest.raises(RuntimeError, match="injected"):
        features.extract_features(vit(1), images, store, batch_size=4, device="cpu", chunk=4)
    with pytest.raises(RuntimeError, match="injected"):
        calls["n"] = 0
        features.extract_features(vit(1), images, tmp_path / "new", batch_size=4, device="cpu", chunk=4)
    monkeypatch.undo()
    assert np.array_equal(features.FeatureStore(store, verify=True)[:], old)  # the old store, untouched
    with pytest.raises(UserError, match="unfinished extraction"):
        features.FeatureStore(tmp_path / "new")
    features.extract_features(vit(1), images, tmp_path / "new", batch_size=4, device="cpu", chunk=4)
    assert not np.array_equal(features.FeatureStore(tmp_path / "new", verify=True)[:], old)


def test_report_writers_are_never_half_written(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    from slotcov.report import figures

    from slotcov.report import latex as report
    from slotcov.report import tables as tables_mod
    from slotcov.errors import UserError

    results = tmp_path / "results" / "metrics" / "cmdsprites" / "sa"
    results.mkdir(parents=True)
    (results / "seed0.json").write_text(json.dumps({"fg_ari": 90.0, "fg_ari_n": 32, "mbo": 50.0}))
    tables = tmp_path / "reports" / "tables"
    tables_mod.tables(tmp_path / "results", tables)
    good = {p.name: p.read_bytes() for p in tables.iterdir()}
    (results / "seed0.json").write_text(json.dumps({"fg_ari": 10.0, "fg_ari_n": 32, "mbo": 5.0}))
    real_to_csv, calls = pd.DataFrame.to_csv, {"n": 0}

    def to_csv(self, path, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            Path(path).write_text(self.to_string()[:50])
            raise OSError(errno.ENOSPC, "disk full")
        return real_to_csv(self, path, *a, **k)

    monkeypatch.setattr(pd.DataFrame, "to_csv", to_csv)
    with pytest.raises(OSError):
        tables_mod.tables(tmp_path / "results", tables)
    monkeypatch.undo()
    changed = {n for n, b in good.items() if (tables / n).read_bytes() != b}
    assert changed <= {"table1.tex", "table1.csv", "table2.tex"}  # written in full before the fault
    assert (tables / "table2.csv").read_bytes() == good["table2.csv"] and _no_temps(tmp_path) == []

    figs = tmp_path / "reports" / "figures"
    fig = plt.figure()
    figures._save(fig, figs, "curves")
    good = {p.name: p.read_bytes() for p in figs.iterdir()}
    monkeypatch.setattr(Figure, "savefig", lambda self, f, **k: (Path(f).write_bytes(b"\x89PNG half"),
                                                                 (_ for _ in ()).throw(OSError("disk full"))))
    with pytest.raises(OSError):
        figures._save(plt.figure(), figs, "curves")
    with pytest.raises(OSError):
        figures._save(plt.figure(), figs, "new_figure")
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in figs.iterdir()} == good and _no_temps(tmp_path) == []

    # pdflatex that dies after writing part of the PDF
    fake = tmp_path / "bin" / "pdflatex"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nprintf '%%PDF-1.5 half' > report.pdf\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    pdf = tmp_path / "reports" / "report.pdf"
    pdf.write_bytes(b"%PDF previous complete report")
    with pytest.raises(UserError, match="pdflatex failed"):
        report.report(tables, figs, tmp_path / "results", pdf)
    assert pdf.read_bytes() == b"%PDF previous complete report" and _no_temps(tmp_path) == []


# ---------------------------------------------------------------------------- 4. bad configs through the CLI


def _preset(tmp_path, change) -> str:
    cfg = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())
    cfg["cells"] = ["cmdsprites/sa", "cmdsprites/covloss"]
    change(cfg)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


BAD = {  # name: (argv builder(tmp_path), what the one line must name)
    "unknown key": (lambda p: ["check-config", _preset(p, lambda c: c.update(sedes=[0]))], "unknown key sedes"),
    "unknown nested key": (lambda p: ["check-config", _preset(
        p, lambda c: c["datasets"]["cmdsprites"]["train"].update(stpes=10))], "unknown key datasets.cmdsprites"
                                                                             ".train.stpes"),
    "wrong type": (lambda p: ["check-config", _preset(
        p, lambda c: c["datasets"]["cmdsprites"]["train"].update(lr="fast"))], "train.lr: 'fast' is not of type"),
    "negative steps": (lambda p: ["check-config", _preset(
        p, lambda c: c["datasets"]["cmdsprites"]["train"].update(steps=-5))], "steps: -5 is less than the minimum"),
    "unknown method": (lambda p: ["check-config", _preset(
        p, lambda c: c["methods"]["cmdsprites"].update({"covlos": {}}))], "'covlos' is not allowed"),
    "unknown regulariser": (lambda p: ["check-config", _preset(
        p, lambda c: c["methods"]["cmdsprites"]["covloss"]["reg"].update(method="vicreq"))], "'vicreq' is not allowed"),
    "too few slots": (lambda p: ["check-config", _preset(
        p, lambda c: c["datasets"]["cmdsprites"]["model"].update(num_slots=4))], "num_slots=4 cannot hold"),
    "not YAML": (lambda p: ["check-config", str((p / "x.yaml").write_text("seeds: [0\n") and p / "x.yaml")],
                 "not valid YAML"),
    "missing config": (lambda p: ["check-config", str(p / "nope.yaml")], "nope.yaml not found"),
    "unknown cell": (lambda p: ["train", "--config", str(ROOT / "config/test.yaml"), "--cell", "cmdsprites/vae",
                                "--data", str(p), "--out", str(p / "o")], "unknown cell 'cmdsprites/vae'"),
    "bad --set type": (lambda p: ["train", "--config", str(ROOT / "config/test.yaml"), "--cell", "cmdsprites/sa",
                                  "--data", str(p), "--out", str(p / "o"), "--set", "train.batch_size=many"],
                       "train.batch_size: 'many' is not of type"),
    "unknown --set key": (lambda p: ["train", "--config", str(ROOT / "config/test.yaml"), "--cell", "cmdsprites/sa",
                                     "--data", str(p), "--out", str(p / "o"), "--set", "train.step=5"],
                          "unknown key train.step"),
    "--set slots": (lambda p: ["train", "--config", str(ROOT / "config/test.yaml"), "--cell", "cmdsprites/sa",
                               "--data", str(p), "--out", str(p / "o"), "--set", "model.num_slots=3"],
                    "num_slots=3 cannot hold"),
    "paper preset, no data": (lambda p: ["train", "--config", str(ROOT / "config/paper.yaml"), "--cell",
                                         "cmdsprites/sa", "--data", str(p / "data/cmdsprites/train"), "--out",
                                         str(p / "o")], "train/meta.json: missing; convert the split"),
    "no TFRecord": (lambda p: ["convert-mdsprites", "--tfrecord", str(p / "missing.tfrecords"), "--count", "10",
                               "--out", str(p / "split")], "missing.tfrecords: no such TFRecord file"),
    "missing weights": (lambda p: ["extract-features", "--images", _fake_split(p), "--model", "vit_tiny_patch16_224",
                                   "--weights", str(p / "dino.pth"), "--out", str(p / "f")],
                        "dino.pth not found"),
    "unfinished run": (lambda p: ["evaluate", "--config", str(ROOT / "config/test.yaml"), "--cell", "cmdsprites/sa",
                                  "--run", str(p / "run"), "--data", _fake_mdsprites(p), "--out", str(p / "m.json"),
                                  "--details", str(p / "d.json"), "--provenance", str(p / "prov.json")],
                       "run.json not found: the run has not finished"),
}


def _fake_split(p: Path) -> str:
    (p / "split").mkdir()
    np.save(p / "split" / "image224.npy", np.zeros((2, 224, 224, 3), np.uint8))
    np.save(p / "split" / "image_ids.npy", np.arange(2))
    return str(p / "split")


def _fake_mdsprites(p: Path) -> str:
    from slotcov.data.mdsprites import convert_split, make_mdsprites

    make_mdsprites(4, 0, p / "r.tfrecords", workers=1)
    return str(convert_split(p / "r.tfrecords", 0, 4, p / "split", resolution=16))


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_stops_with_one_line_and_no_traceback(case, server, tmp_path):
    make_argv, expected = BAD[case]
    argv = make_argv(tmp_path)
    code, err = server.cli(argv, tmp_path)
    assert code == 2, err
    line = _one_line_error(err)
    assert line.startswith(f"slotcov {argv[0]}: error: ") and expected in line, line


def test_bad_config_through_the_real_entry_point(tmp_path):
    """The same, once through the installed `slotcov` script (no fork in between)."""
    path = _preset(tmp_path, lambda c: c["datasets"]["cmdsprites"]["train"].update(steps=-5))
    proc = subprocess.run([str(SLOTCOV), "check-config", path], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "steps: -5 is less than the minimum" in _one_line_error(proc.stderr)


# ---------------------------------------------------------------------------- 5. numerical faults


@pytest.mark.parametrize("grad_clip", [None, 1.0])
def test_nonfinite_gradient_with_finite_loss_stops(tmp_path, monkeypatch, grad_clip):
    import slotcov.train.loop as T
    from tiny_run import tiny_cell, tiny_dataset

    cfg = tiny_cell(steps=12, grad_clip=grad_clip)
    T.train(cfg, tiny_dataset(), tmp_path, progress=False, stop_after=4)
    good = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    real_build = T.build_cell

    def build(c):
        model, head = real_build(c)
        next(model.parameters()).register_hook(lambda g: torch.full_like(g, float("inf")))
        return model, head

    monkeypatch.setattr(T, "build_cell", build)
    with pytest.raises(T.NonFiniteLoss) as info:
        T.train(cfg, tiny_dataset(), tmp_path, progress=False)
    msg = str(info.value)
    loss = float(msg.split("loss=")[1].split(",")[0])
    assert msg.startswith("step 4: non-finite") and np.isfinite(loss) and "grad_norm=inf" in msg.replace("nan", "inf")
    after = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    assert after["step"] == 4
    assert_same_weights(good["model"], after["model"])


def test_skip_nonfinite_is_off_in_every_paper_cell_and_preset():
    from slotcov import config as C
    from slotcov.cells import EVAL_ONLY, PAPER_CELLS

    assert all(c["train"]["skip_nonfinite"] is False for c in PAPER_CELLS.values())
    for preset in ("paper.yaml", "test.yaml"):
        config = C.load(ROOT / "config" / preset)
        for cell in config["cells"]:
            if cell not in EVAL_ONLY:
                assert C.resolve_cell(config, cell)["train"]["skip_nonfinite"] is False, (preset, cell)


# ---------------------------------------------------------------------------- 6. resources


def test_gpu_out_of_memory_names_the_batch_size_and_the_fix(replica, tmp_path, monkeypatch, capsys):
    import slotcov.train.loop as T

    real_build = T.build_cell

    def build(c):
        model, head = real_build(c)

        def oom(batch):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

        model.forward = oom
        return model, head

    monkeypatch.setattr(T, "build_cell", build)
    code = T.cli_train(["--config", str(replica / "preset.yaml"), "--cell", "cmdsprites/sa", "--data",
                        str(replica / "train"), "--out", str(tmp_path / "run"), "--device", "cpu", "--no-progress"])
    assert code == 1
    line = _one_line_error(capsys.readouterr().err)
    assert "out of GPU memory at batch size 8 for cmdsprites/sa" in line and "--set train.batch_size=N" in line
    assert not (tmp_path / "run" / "model.pt").exists()


if __name__ == "__main__" and sys.argv[1:] == ["serve"]:
    serve()
