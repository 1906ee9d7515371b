"""Checkpoints are data, not code: a file crafted to run a command when unpickled is refused
with one line naming it, by every command that reads a checkpoint, model or weights file."""
import json
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SLOTCOV = Path(sys.executable).with_name("slotcov")
CONFIG = str(ROOT / "config/test.yaml")


class RunsCommand:
    """Unpickling this object runs `touch MARKER` (what an attacker's checkpoint would do)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def poison(path: Path, marker: Path, how: str) -> Path:
    """A checkpoint-shaped file whose unpickling touches `marker`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    obj = {"model": RunsCommand(marker), "head": {}, "config": {}, "config_hash": "x", "optimizer": {},
           "step": 1, "rng": {}}
    if how == "torch.save":
        torch.save(obj, path)
    else:
        with open(path, "wb") as fh:
            pickle.dump(obj, fh)
    return path


def test_the_poison_works_when_unpickled(tmp_path):
    """The test file really runs its command under a plain unpickler (else the tests below prove nothing)."""
    marker = tmp_path / "MARKER"
    torch.load(poison(tmp_path / "ckpt.pt", marker, "torch.save"), weights_only=False)
    assert marker.exists()


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> str:
    from slotcov.data.mdsprites import convert_split, make_mdsprites

    p = tmp_path_factory.mktemp("data")
    make_mdsprites(4, 0, p / "r.tfrecords", workers=1)
    return str(convert_split(p / "r.tfrecords", 0, 4, p / "split", resolution=64))


def slotcov(*argv, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.run([str(SLOTCOV), *argv], cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


COMMANDS = {  # (poisoned file in the run folder, argv after `slotcov`)
    "train resumes from ckpt.pt": ("ckpt.pt", lambda run, data, p: [
        "train", "--config", CONFIG, "--cell", "cmdsprites/sa", "--data", data, "--out", str(run)]),
    "train finds model.pt": ("model.pt", lambda run, data, p: [
        "train", "--config", CONFIG, "--cell", "cmdsprites/sa", "--data", data, "--out", str(run)]),
    "evaluate": ("model.pt", lambda run, data, p: [
        "evaluate", "--config", CONFIG, "--cell", "cmdsprites/sa", "--run", str(run), "--data", data,
        "--out", str(p / "m.json"), "--details", str(p / "d.json"), "--provenance", str(p / "prov.json"),
        "--device", "cpu"]),
    "probe": ("model.pt", lambda run, data, p: [
        "probe", "--config", CONFIG, "--cell", "cmdsprites/sa", "--run", str(run), "--data", data,
        "--out", str(p / "p.json"), "--details", str(p / "d.json"), "--provenance", str(p / "prov.json"),
        "--device", "cpu"]),
}


def finished_record(run: Path) -> None:
    """run.json of a finished cmdsprites/sa seed-0 run under the test preset (its model.pt is the poison)."""
    from slotcov import config as C

    cfg = C.resolve_cell(C.load(CONFIG), "cmdsprites/sa", {"train": {"seed": 0}})
    (run / "run.json").write_text(json.dumps({"status": "finished", "run_id": "x", "config_hash": C.config_hash(cfg),
                                              "inputs": [], "steps": 1}))


@pytest.mark.parametrize("how", ["torch.save", "pickle.dump"])
@pytest.mark.parametrize("case", list(COMMANDS))
def test_poisoned_checkpoint_is_refused_in_one_line(case, how, split, tmp_path):
    name, make_argv = COMMANDS[case]
    marker, run = tmp_path / "MARKER", tmp_path / "results/runs/cmdsprites/sa/seed0"
    bad = poison(run / name, marker, how)
    if case in ("evaluate", "probe"):  # they reach model.pt through the run record
        finished_record(run)
    argv = make_argv(run, split, tmp_path)
    proc = slotcov(*argv, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"slotcov {argv[0]}: error: {bad}: not a slotcov checkpoint (refused to unpickle "
                               "anything but tensors and plain values: it could run code); "), lines[0]
    assert re.search(r"; delete it and (re-run|run) ", lines[0]), lines[0]
    assert not marker.exists(), "unpickling ran the file's command"
    assert bad.exists()  # evidence stays for the user to inspect; nothing was overwritten
    assert not (tmp_path / "m.json").exists() and not (tmp_path / "p.json").exists()


def test_drop_stale_checkpoint_never_unpickles_code(split, tmp_path):
    """`slotcov train --drop-stale-checkpoint` (the train rule's) reads ckpt.pt as data only; one it cannot
    read stays in place, for the user to inspect, and the run stops with the one-line refusal and its fix."""
    marker, run = tmp_path / "MARKER", tmp_path / "run"
    bad = poison(run / "ckpt.pt", marker, "torch.save")
    proc = slotcov("train", "--config", CONFIG, "--cell", "cmdsprites/sa", "--data", split, "--out", str(run),
                   "--drop-stale-checkpoint", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and f"{bad}: not a slotcov checkpoint (refused to unpickle" in lines[0], proc.stderr
    assert bad.exists() and not marker.exists()


def test_poisoned_vit_weights_are_refused(tmp_path):
    from slotcov.data.features import build_vit
    from slotcov.errors import UserError

    marker = tmp_path / "MARKER"
    bad = tmp_path / "dino.pth"
    torch.save({"model": RunsCommand(marker)}, bad)
    with pytest.raises(UserError, match=r"dino\.pth: cannot read weights \(.*weights.only") as info:
        build_vit("vit_tiny_patch16_224", str(bad))
    assert "\n" not in str(info.value)
    assert not marker.exists()


def test_a_valid_checkpoint_loads_as_data_only(tmp_path):
    """What train writes (weights, optimizer, RNG state, config) loads with weights_only=True and resumes."""
    sys.path.insert(0, str(Path(__file__).parent))
    from tiny_run import tiny_cell, tiny_dataset

    from slotcov.train.loop import load_checkpoint, train

    train(tiny_cell(steps=8), tiny_dataset(), tmp_path, progress=False, stop_after=4)
    ck = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    assert ck["step"] == 4 and isinstance(ck["rng"]["torch"], torch.Tensor) and ck["optimizer"]["state"]
    assert load_checkpoint(tmp_path / "ckpt.pt")["config"]["train"]["steps"] == 8
    train(tiny_cell(steps=8), tiny_dataset(), tmp_path, progress=False)
    assert torch.load(tmp_path / "model.pt", weights_only=True)["config_hash"] == ck["config_hash"]


def test_no_code_loading_in_the_sources():
    """Every loader of src/, bench/ and workflow/ reads data only."""
    bad = re.compile(r"weights_only\s*=\s*False|allow_pickle\s*=\s*True|pickle\.loads?\("
                     r"|torch\.load\((?![^)]*weights_only=True)")
    hits = []
    for folder in ("src", "bench", "workflow"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix in (".py", ".smk") or path.name == "Snakefile":
                for i, line in enumerate(path.read_text().splitlines(), 1):
                    if bad.search(line):
                        hits.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert hits == []


@pytest.mark.parametrize("content, reason", [
    (lambda good: good[: len(good) // 2], "checkpoint cannot be read (RuntimeError"),  # cut short by a full disk
    (lambda good: b"not a checkpoint\n", "not a slotcov checkpoint (refused to unpickle anything but"),
    (lambda good: None, "not a slotcov checkpoint (no model, head"),  # a torch file of something else
])
def test_a_broken_checkpoint_is_one_line_naming_it(content, reason, tmp_path):
    from slotcov.errors import UserError
    from slotcov.train.loop import load_checkpoint

    path = tmp_path / "ckpt.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "step": 3}, path)
    data = content(path.read_bytes())
    if data is None:
        torch.save([torch.zeros(2)], path)
    else:
        path.write_bytes(data)
    with pytest.raises(UserError) as info:
        load_checkpoint(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: {reason}") and "\n" not in msg and msg.endswith("to restart the run"), msg
