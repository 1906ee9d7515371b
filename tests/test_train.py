"""The trainer: loss falls, schedule, exact resume after preemption or kill, non-finite stops, progress."""
import io
import os
import re
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

from slotcov.errors import UserError
from slotcov.train import NonFiniteLoss, Preempted, batch_indices, lr_at, train
from tiny_run import assert_same_weights, tiny_cell, tiny_dataset, weights

HERE = Path(__file__).parent


def test_schedule():
    """The authors' schedule, their step i counted from 1: update `step` (0-based) is their i = step + 1."""
    t = {"lr": 4e-4, "warmup_steps": 10_000, "decay_rate": 0.5, "decay_steps": 100_000}
    assert lr_at(0, t) == pytest.approx(4e-4 / 10_000 * 0.5 ** 1e-5)  # the first update already moves
    assert lr_at(4_999, t) == pytest.approx(2e-4 * 0.5 ** 0.05)
    assert lr_at(9_999, t) == pytest.approx(4e-4 * 0.5 ** 0.1)
    assert lr_at(99_999, t) == pytest.approx(2e-4)
    assert lr_at(0, {**t, "warmup_steps": 0}) == pytest.approx(4e-4 * 0.5 ** 1e-5)


def test_batches_cover_each_epoch_once():
    idx = np.concatenate([batch_indices(s, 8, 20, seed=3) for s in range(5)])  # 40 = two epochs
    assert sorted(idx[:20]) == list(range(20)) and sorted(idx[20:]) == list(range(20))
    assert not np.array_equal(idx[:20], idx[20:])
    assert np.array_equal(batch_indices(2, 8, 20, 3), batch_indices(2, 8, 20, 3))


def test_short_run_reconstruction_falls(tmp_path):
    train(tiny_cell("cmdsprites/sa", steps=40, lr=1e-3), tiny_dataset(), tmp_path, progress=False)
    log = pd.read_csv(tmp_path / "log.csv")
    assert list(log.step) == list(range(1, 41))
    assert log.recon.iloc[-5:].mean() < 0.7 * log.recon.iloc[:5].mean()
    assert (tmp_path / "model.pt").exists()


def test_resume_after_stop_gives_identical_weights(tmp_path):
    cfg = tiny_cell()
    train(cfg, tiny_dataset(), tmp_path / "a", progress=False)
    assert train(cfg, tiny_dataset(), tmp_path / "b", progress=False, stop_after=5).name == "ckpt.pt"
    assert not (tmp_path / "b" / "model.pt").exists()
    train(cfg, tiny_dataset(), tmp_path / "b", progress=False)
    assert_same_weights(weights(tmp_path / "a"), weights(tmp_path / "b"))
    log_a, log_b = pd.read_csv(tmp_path / "a" / "log.csv"), pd.read_csv(tmp_path / "b" / "log.csv")
    pd.testing.assert_frame_equal(log_a.drop(columns="sec"), log_b.drop(columns="sec"))


def test_sigterm_checkpoints_and_resumes_exactly(tmp_path):
    cfg = tiny_cell(steps=30, checkpoint_every=100)
    train(cfg, tiny_dataset(), tmp_path / "a", progress=False)
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    with pytest.raises(Preempted, match="SIGTERM at step"):
        train(cfg, tiny_dataset(), tmp_path / "b", progress=False)
    timer.join()
    ck = torch.load(tmp_path / "b" / "ckpt.pt", weights_only=True)
    assert 0 < ck["step"] < 30
    train(cfg, tiny_dataset(), tmp_path / "b", progress=False)
    assert_same_weights(weights(tmp_path / "a"), weights(tmp_path / "b"))


def test_sigkill_at_random_points_resumes_exactly(tmp_path):
    """SIGKILL (no chance to checkpoint) at random moments, including mid-checkpoint-write."""
    steps = 25
    ref = tmp_path / "ref"
    subprocess.run([sys.executable, str(HERE / "tiny_run.py"), str(ref), str(steps)], check=True, cwd=HERE)
    rng = np.random.default_rng(0)
    run = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": str(HERE) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    kills = 0
    for trial in range(3):
        proc = subprocess.Popen([sys.executable, str(HERE / "tiny_run.py"), str(run), str(steps)], cwd=HERE, env=env)
        # wait until the run has made progress beyond the previous checkpoint, then kill at a random moment
        deadline = time.time() + 60
        while proc.poll() is None and not (run / "ckpt.pt").exists() and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(float(rng.uniform(0.0, 0.6)))
        if proc.poll() is None:
            proc.kill()
            kills += 1
        proc.wait()
    subprocess.run([sys.executable, str(HERE / "tiny_run.py"), str(run), str(steps)], check=True, cwd=HERE, env=env)
    assert kills >= 1
    assert_same_weights(weights(ref), weights(run))
    assert not list(run.glob(".*.tmp*")), "a temporary file survived"


def test_nonfinite_loss_stops_with_step_and_terms_and_keeps_checkpoint(tmp_path):
    cfg = tiny_cell(steps=12, checkpoint_every=2)
    ds = tiny_dataset()
    train(cfg, ds, tmp_path, progress=False, stop_after=4)
    good = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    ds.tensors["image"][:] = float("nan")
    with pytest.raises(NonFiniteLoss, match=r"step 4: non-finite .*loss=nan.*recon=nan.*cov="):
        train(cfg, ds, tmp_path, progress=False)
    after = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    assert after["step"] == 4
    assert_same_weights(good["model"], after["model"])
    assert not (tmp_path / "model.pt").exists()


def test_skip_nonfinite_option(tmp_path):
    ds = tiny_dataset()
    ds.tensors["image"][0] = float("nan")
    train(tiny_cell(steps=6, skip_nonfinite=True), ds, tmp_path, progress=False)
    assert all(torch.isfinite(v).all() for v in weights(tmp_path).values())


def test_resume_refuses_a_checkpoint_of_another_config(tmp_path):
    train(tiny_cell(steps=12), tiny_dataset(), tmp_path, progress=False, stop_after=4)
    with pytest.raises(UserError, match="different config"):
        train(tiny_cell(steps=12, lr=1e-3), tiny_dataset(), tmp_path, progress=False)


# ---------------------------------------------------------------- progress in a job's log, TensorBoard

PROGRESS = re.compile(r"train (\S+): step (\d+)/(\d+) \((\d+\.\d)%\) loss (\S+) (\S+) it/s ETA (\S+)")


@pytest.fixture(scope="module")
def cli_split(tmp_path_factory):
    """A tiny ColoredMDSprites split and a copy of the test preset for `slotcov train` (4 steps)."""
    from slotcov.data.mdsprites import convert_split, make_mdsprites

    p = tmp_path_factory.mktemp("cli")
    make_mdsprites(8, 0, p / "r.tfrecords", workers=1)
    split = convert_split(p / "r.tfrecords", 0, 8, p / "split", resolution=16)
    return p, split


def train_cli(p: Path, split: Path, out: Path, monitor: dict) -> subprocess.CompletedProcess:
    """`slotcov train` in a child whose stderr is a pipe (no terminal), as under Snakemake or SLURM."""
    preset = yaml.safe_load((HERE.parent / "config/test.yaml").read_text())
    preset["datasets"]["cmdsprites"]["train"].update(steps=4, log_every=1, checkpoint_every=2)
    preset["monitor"] = monitor
    (p / "preset.yaml").write_text(yaml.safe_dump(preset))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run([str(Path(sys.executable).with_name("slotcov")), "train", "--config", str(p / "preset.yaml"),
                           "--cell", "cmdsprites/sa", "--data", str(split), "--out", str(out), "--device", "cpu"],
                          capture_output=True, text=True, timeout=300, env=env)


def test_a_job_without_terminal_logs_progress_lines(cli_split, tmp_path):
    proc = train_cli(*cli_split, tmp_path / "run", {"progress_every_s": 0})
    assert proc.returncode == 0, proc.stderr
    found = [PROGRESS.fullmatch(line) for line in proc.stderr.splitlines()]
    assert all(found), proc.stderr  # nothing else: no tqdm bar, no carriage returns
    assert [int(m[2]) for m in found] == [1, 2, 3, 4] and {m[3] for m in found} == {"4"}
    assert found[-1][4] == "100.0" and found[-1][7] == "0s" and found[0][1] == str(tmp_path / "run")
    logged = pd.read_csv(tmp_path / "run" / "log.csv")
    assert [float(m[5]) for m in found] == pytest.approx(logged["loss"].tolist(), rel=1e-4)
    assert all(float(m[6]) > 0 for m in found)
    assert not list((tmp_path / "run").glob("events.out.tfevents.*"))  # TensorBoard is opt-in


def test_progress_lines_keep_their_cadence():
    from slotcov.progress import ProgressLine, format_eta

    out = io.StringIO()
    lines = ProgressLine("train x", 500_000, 0, every_s=3600, stream=out)
    assert lines.update(100, loss="0.1") and not lines.update(200, loss="0.1")  # the first, then one an hour
    assert lines.update(500_000, force=True, loss="0.05")
    assert out.getvalue().count("\n") == 2 and "step 500000/500000 (100.0%) loss 0.05 " in out.getvalue()
    assert [format_eta(s) for s in (42, 245, 39780, 183600)] == ["42s", "4m05s", "11h03m", "2d03h"]


def test_tensorboard_event_files_hold_the_logged_loss(cli_split, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    proc = train_cli(*cli_split, run, {"tensorboard": True})
    assert proc.returncode == 0, proc.stderr
    assert list(run.glob("events.out.tfevents.*"))
    events = EventAccumulator(str(run))
    events.Reload()
    assert {"loss", "recon", "lr", "grad_norm"} <= set(events.Tags()["scalars"])
    loss = events.Scalars("loss")
    logged = pd.read_csv(run / "log.csv")
    assert [e.step for e in loss] == logged["step"].tolist()
    assert [e.value for e in loss] == pytest.approx(logged["loss"].tolist(), rel=1e-4)


def test_tensorboard_after_a_resume_holds_each_step_once(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg, board = tiny_cell(steps=8, checkpoint_every=10), {"tensorboard": True}
    train(cfg, tiny_dataset(), tmp_path, progress=False, stop_after=3, monitor=board)  # checkpoint at step 3
    at3 = (tmp_path / "ckpt.pt").read_bytes()
    train(cfg, tiny_dataset(), tmp_path, progress=False, stop_after=2, monitor=board)  # logs steps 4, 5
    (tmp_path / "ckpt.pt").write_bytes(at3)  # as if killed after step 5 with the last checkpoint at 3
    train(cfg, tiny_dataset(), tmp_path, progress=False, monitor=board)  # resumes at 3: steps 4, 5 again
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    logged = pd.read_csv(tmp_path / "log.csv")
    assert [e.step for e in events.Scalars("loss")] == logged["step"].tolist() == list(range(1, 9))
    assert [e.value for e in events.Scalars("loss")] == pytest.approx(logged["loss"].tolist(), rel=1e-4)
