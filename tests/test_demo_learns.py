"""The demo preset's ColoredMDSprites model finds the sprites within a few hundred CPU steps.

This guards the README's claim about `make demo`: the config.yaml cell, trained on a fresh
replica for a fraction of its schedule, scores well above masks that ignore objects.
"""
from pathlib import Path

import pandas as pd
import pytest
import torch

from slotcov import config as C
from slotcov.data.mdsprites import MDSpritesArrays, convert_split, make_mdsprites
from slotcov.evaluate.evaluation import evaluate_blockmasks, evaluate_model
from slotcov.train.loop import train

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.trained_numbers
def test_demo_sa_finds_objects_in_600_steps(tmp_path):
    demo = C.load(ROOT / "config.yaml")
    cfg = C.resolve_cell(demo, "cmdsprites/sa", {"train": {"steps": 600, "checkpoint_every": 600}})
    r = demo["data"]["cmdsprites"]["resolution"]
    assert cfg["model"]["resolution"] == r
    rec = make_mdsprites(2320, seed=0, out_path=tmp_path / "rep.tfrecords", workers=1)
    tr = MDSpritesArrays(convert_split(rec, 0, 2000, tmp_path / "train", resolution=r))
    ev = MDSpritesArrays(convert_split(rec, 2000, 320, tmp_path / "eval", resolution=r))
    torch.set_num_threads(1)
    model_pt = train(cfg, tr, tmp_path / "run", device="cpu", progress=False)
    from slotcov.train.loop import load_trained
    model, _, _ = load_trained(model_pt.parent)
    metrics, _ = evaluate_model(model, ev, progress=False)
    blocks = evaluate_blockmasks(ev, cfg["model"]["num_slots"])
    log = pd.read_csv(tmp_path / "run" / "log.csv")
    print(f"demo SA after 600 steps: FG-ARI {metrics['fg_ari']:.1f} mBO {metrics['mbo']:.1f} "
          f"(block masks {blocks['fg_ari']:.1f} / {blocks['mbo']:.1f}), MSE {metrics['mse']:.5f}")
    # Block masks ignore the image; beating them on mBO means masks that follow the sprites.
    # Thresholds, not a reference: training's floating-point results differ between CPUs. With the native
    # AVX-512 kernels and with ATEN_CPU_CAPABILITY=default this run scored FG-ARI 68.1 and 68.9, mBO 57.7
    # both times, MSE 0.00485 and 0.00484: each threshold is several times that difference away.
    assert metrics["fg_ari"] > 60 and metrics["fg_ari"] > blocks["fg_ari"] + 5
    assert metrics["mbo"] > blocks["mbo"] + 15
    assert metrics["mse"] < 0.008  # the background-only plateau of the paper's decoder masks is about 0.015
    assert log.recon.iloc[-4:].mean() < 0.5 * log.recon.iloc[:4].mean()
