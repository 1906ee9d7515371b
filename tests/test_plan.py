"""`slotcov plan`: hours and SLURM runtimes from recorded benchmarks, and the workflow using them."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from slotcov.train import plan as P
from slotcov.cells import PAPER_CELLS
from slotcov.cli import main
from slotcov.config import load

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

SA, DINO = PAPER_CELLS["cmdsprites/sa"]["model"], PAPER_CELLS["coco/dinosaur"]["model"]
RESULTS = {  # hand-made: one device with an fp32 measurement, a bf16 one, and the eager baseline
    "Card X": {
        "machine": {"name": "Card X", "device": "cuda"}, "measured_at": "2026-01-01 00:00",
        "train_cmdsprites_sa_fp32": {"batch_size": 64, "ours_steps_per_s": 50.0, "baseline_steps_per_s": 25.0,
                                     "compile": True, "measured_at": "2026-01-02 00:00", "model": SA},
        "train_cmdsprites_sa_bf16": {"batch_size": 64, "ours_steps_per_s": 100.0, "baseline_steps_per_s": 25.0,
                                     "compile": True, "model": SA},
        "train_coco_dinosaur": {"batch_size": 64, "ours_steps_per_s": 80.0, "baseline_steps_per_s": 20.0,
                                "model": DINO},
        "fg_ari": {"ratio_median": 50.0},
    },
    "Card Y (quick)": {},
}


def paper(amp="fp32"):
    config = load(REPO / "config" / "paper.yaml")
    config["methods"] = {}
    for cell in config["cells"]:
        dataset, method = cell.split("/")
        config["methods"].setdefault(dataset, {})[method] = {"train": {"amp": amp}}
    return config


def test_plan_from_recorded_results():
    plan = P.make_plan(paper(), "Card X", RESULTS, margin=1.5, cap="7d")
    sa = plan["cells"]["cmdsprites/sa"]
    assert sa["steps_per_s"] == 50.0 and "fp32 trainer" in sa["source"]
    assert sa["hours_per_job"] == pytest.approx(500_000 / 50 / 3600, abs=0.01)  # 2.78 h
    assert sa["runtime_min"] == 5 * 60  # 2.78 h x 1.5 = 4.17 h, rounded up to whole hours
    assert plan["cells"]["cmdsprites/covloss"]["steps_per_s"] == 50.0  # the same model, measured as cmdsprites/sa
    dino = plan["cells"]["coco/dinosaur"]  # no fp32 measurement: the eager fp32 baseline stands in, labelled
    assert dino["steps_per_s"] == 20.0 and "stand-in" in dino["source"]
    wide = plan["cells"]["coco/dinosaur1024"]  # another model: not measured, the preset's runtime
    assert wide["steps_per_s"] is None and wide["runtime_min"] == 72 * 60 and "not measured" in wide["source"]
    assert plan["cells"]["sweep cmdsprites/covloss"]["jobs"] == 4
    measured = [r for r in plan["cells"].values() if r["hours_per_job"] is not None]
    assert plan["gpu_hours_measured_jobs"] == pytest.approx(sum(r["hours_per_job"] * r["jobs"] for r in measured), abs=0.1)
    n = len(paper()["seeds"])
    assert plan["jobs_not_measured"] == 5 * n  # coco/sa, covloss, cosineloss, dinosaur1024 (x2): no FLOPs recorded
    bf16 = P.make_plan(paper("bf16"), "Card X", RESULTS)
    assert bf16["cells"]["cmdsprites/sa"]["steps_per_s"] == 100.0
    assert bf16["cells"]["coco/dinosaur"]["steps_per_s"] == 80.0


def flop_results(*entries):
    """A device whose measurements recorded their model and FLOPs per step: what an estimate needs."""
    return {"Card F": {"machine": {"name": "Card F", "device": "cuda"}, **dict(entries)}}


def test_unmeasured_cells_are_estimated_from_flops_with_a_range():
    """A model never timed on the device gets steps/s = FLOP/s achieved there / its FLOPs per step: the central
    value from a measured model of its kind (else the geometric mean), the range from the slowest to the fastest."""
    from slotcov.train.flops import step_flops

    config = paper()
    sa_cfg, dino_cfg = P.resolve_cell(config, "cmdsprites/sa"), P.resolve_cell(config, "coco/dinosaur")
    gflop = lambda cell: step_flops(P.resolve_cell(config, cell), 64) / 1e9  # noqa: E731
    results = flop_results(
        ("train_cmdsprites_sa_fp32", {"batch_size": 64, "ours_steps_per_s": 30.0, "model": sa_cfg["model"],
                                      "step_gflop": gflop("cmdsprites/sa")}),
        ("train_coco_dinosaur_fp32", {"batch_size": 64, "ours_steps_per_s": 3.0, "model": dino_cfg["model"],
                                      "step_gflop": gflop("coco/dinosaur")}))
    plan = P.make_plan(config, "Card F", results, margin=1.5)
    rates = [30.0 * gflop("cmdsprites/sa"), 3.0 * gflop("coco/dinosaur")]  # GFLOP/s achieved
    wide = plan["cells"]["coco/dinosaur1024"]  # a dinosaur model, wider: the dinosaur rate, range from both
    assert wide["estimate"] and wide["source"].startswith("ESTIMATE") and "same model kind" in wide["source"]
    assert wide["steps_per_s"] == pytest.approx(rates[1] / gflop("coco/dinosaur1024"), rel=1e-3)
    hours = lambda rate: 500_000 / (rate / gflop("coco/dinosaur1024")) / 3600  # noqa: E731
    assert (wide["hours_low"], wide["hours_high"]) == pytest.approx((hours(max(rates)), hours(min(rates))), abs=0.01)
    assert wide["runtime_min"] == P.slurm_runtime(wide["hours_high"], 1.5, plan["cap_min"])  # the high end x margin
    vit = plan["cells"]["coco/sa"]  # no ViT-feature Slot Attention measured: geometric mean of the two rates
    assert vit["steps_per_s"] == pytest.approx(np.sqrt(rates[0] * rates[1]) / gflop("coco/sa"), rel=1e-3)
    assert "geometric mean" in vit["source"]
    assert not plan["cells"]["cmdsprites/sa"]["estimate"] and plan["cells"]["coco/dinosaur"]["steps_per_s"] == 3.0
    est = [r for r in plan["cells"].values() if r["estimate"]]
    assert plan["jobs_not_measured"] == 0 and plan["jobs_estimated"] == sum(r["jobs"] for r in est)
    assert plan["gpu_hours_low"] < plan["gpu_hours_total"] <= plan["gpu_hours_high"]
    assert plan["gpu_hours_total"] == pytest.approx(plan["gpu_hours_measured_jobs"] + plan["gpu_hours_estimated_jobs"],
                                                    abs=0.11)
    assert plan["gpu_hours_high"] == pytest.approx(plan["gpu_hours_measured_jobs"] + sum(
        r["hours_high"] * r["jobs"] for r in est), abs=0.5)
    text = P.render(plan)
    assert f"total: {plan['gpu_hours_total']:.1f} GPU-hours (range {plan['gpu_hours_low']:.1f}-" in text
    assert "estimated from FLOPs per step" in text and "not in the total" not in text
    one = P.make_plan({**config, "cells": ["coco/dinosaur1024"]}, "Card F", flop_results(
        ("train_coco_dinosaur_fp32", results["Card F"]["train_coco_dinosaur_fp32"])))
    row = one["cells"]["coco/dinosaur1024"]  # one measurement: no spread to take a range from
    assert row["hours_high"] == pytest.approx(4 * row["hours_low"], rel=0.01) and "assumed" in row["source"]
    bf16 = P.make_plan({**paper("bf16"), "cells": ["coco/sa"]}, "Card F", results)  # no bf16 measurement: fallback
    assert bf16["cells"]["coco/sa"]["steps_per_s"] is None and "preset's runtime" in bf16["cells"]["coco/sa"]["source"]
    assert bf16["jobs_not_measured"] == sum(r["jobs"] for r in bf16["cells"].values()) and bf16["gpu_hours_total"] == 0


def test_a_measurement_of_another_model_never_times_a_cell():
    """Entries record the model they timed; older ones (no `model`) count only if their FLOPs per step, counted as
    then (batch 2, scaled), equal the cell's: the DINOSAUR decoder grew from 1 to 3 hidden layers since. Such an
    entry still gives the FLOP/s the device achieved: the cell is estimated from it, and says so."""
    from slotcov.train.flops import step_flops

    cfg = paper()
    dino = {**cfg, "cells": ["coco/dinosaur"]}
    gflop = step_flops(P.resolve_cell(cfg, "coco/dinosaur"), 2) * 32 / 1e9  # the model as it is today
    legacy = lambda g: {"Card X": {"train_coco_dinosaur": {"batch_size": 64, "ours_steps_per_s": 80.0,  # noqa: E731
                                                           "baseline_steps_per_s": 20.0, "step_gflop": g}}}
    assert P.make_plan(dino, "Card X", legacy(gflop))["cells"]["coco/dinosaur"]["steps_per_s"] == 80.0
    one_layer = P.make_plan(dino, "Card X", legacy(gflop / 7))["cells"]["coco/dinosaur"]
    assert one_layer["estimate"] and one_layer["source"].startswith("ESTIMATE")  # not timed: estimated from it
    assert one_layer["steps_per_s"] == pytest.approx(80.0 / 7, rel=1e-3)  # FLOP/s kept, 7x the FLOPs per step
    other = {"Card X": {"train_coco_dinosaur_fp32": {"batch_size": 64, "ours_steps_per_s": 80.0,
                                                     "model": {**DINO, "decoder_hidden": [3072]}}}}
    assert P.make_plan(dino, "Card X", other)["cells"]["coco/dinosaur"]["steps_per_s"] is None


def test_runtime_is_capped_and_rounded_up():
    assert P.slurm_runtime(0.1, 1.5, 10_080) == 60
    assert P.slurm_runtime(2.0, 1.5, 10_080) == 180
    assert P.slurm_runtime(500.0, 1.5, 10_080) == 10_080  # 7 days
    slow = {"Card X": {"train_cmdsprites_sa_fp32": {"batch_size": 64, "ours_steps_per_s": 0.5, "model": SA}}}
    plan = P.make_plan(paper(), "Card X", slow, cap="2d")
    assert plan["cells"]["cmdsprites/sa"]["runtime_min"] == 2 * 1440
    assert P.minutes("72h") == 4320 and P.minutes(90) == 90 and P.minutes("7d") == 10_080


def test_unknown_device_is_one_line_listing_the_known(tmp_path, capsys):
    results = tmp_path / "results.json"
    results.write_text(json.dumps(RESULTS))
    code = main(["plan", "--config", str(REPO / "config" / "paper.yaml"), "--device", "Card Z",
                 "--results", str(results)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert "'Card Z'" in err and "'Card X'" in err and "quick" not in err


def test_cli_prints_the_table_and_writes_the_plan(tmp_path, capsys):
    results = tmp_path / "results.json"
    results.write_text(json.dumps(RESULTS))
    out = tmp_path / "plan.yaml"
    assert main(["plan", "--config", str(REPO / "config" / "paper.yaml"), "--device", "Card X", "--results",
                 str(results), "--margin", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "cmdsprites/sa" in printed and "GPU-hours" in printed
    written = yaml.safe_load(out.read_text())
    assert written["device"] == "Card X" and written["margin"] == 2
    assert written["cells"]["cmdsprites/sa"]["runtime_min"] == 360  # 2.78 h x 2 -> 6 h


def test_measure_times_this_machine():
    config = load(REPO / "config" / "test.yaml")
    config["cells"], config["sweep"]["betas"] = ["cmdsprites/sa"], []
    plan = P.make_plan(config, "here", None, measure_steps=2)
    row = plan["cells"]["cmdsprites/sa"]
    assert row["steps_per_s"] > 0 and "measured now" in row["source"]


def test_train_runtime_reads_the_plan(tmp_path):
    config = load(REPO / "config" / "test.yaml")
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump({"cells": {"cmdsprites/sa": {"steps": 10, "runtime_min": 123}}}))
    assert P.train_runtime({**config, "plan": str(plan)}, "cmdsprites/sa", 60) == 123
    assert P.train_runtime({**config, "plan": str(plan)}, "coco/sa", 60) == 60  # not in the plan
    assert P.train_runtime({**config, "plan": str(tmp_path / "none.yaml")}, "cmdsprites/sa", 60) == 60
    changed = {**config, "plan": str(plan), "datasets": {"cmdsprites": {"train": {"steps": 99}}}}
    assert P.train_runtime(changed, "cmdsprites/sa", 60) == 60  # a plan for other step counts is not used


def test_snakemake_train_job_gets_the_planned_runtime(tmp_path):
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump({"cells": {"cmdsprites/sa": {"steps": 10, "runtime_min": 123}}}))
    proc = subprocess.run([str(BIN / "snakemake"), "-n", "--nolock", "results/runs/cmdsprites/sa/seed0/run.json",
                           "results/runs/cmdsprites/covloss/seed0/run.json", "--configfile", "config/test.yaml",
                           "--config", f"plan={plan}"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    jobs = [block for block in proc.stdout.split("rule ")[1:] if block.startswith("train:")]
    runtimes = {("sa" if "method=sa," in j else "covloss"): j.split("runtime=")[1].split(",")[0] for j in jobs}
    assert runtimes == {"sa": "123", "covloss": "10"}  # not in the plan: the test preset's resources.train.runtime
