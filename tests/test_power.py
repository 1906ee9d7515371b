"""`slotcov power`: seeds per cell for 80% power of each claim's primary test, from prior or measured spreads,
and their GPU-hours from the plan."""
import re
from pathlib import Path

import pytest
import yaml

from claims_tree import paper_like
from slotcov import paper
from slotcov.report import power
from slotcov.cli import main
from slotcov.config import load
from slotcov.errors import UserError

REPO = Path(__file__).resolve().parents[1]
CLAIM = {c["id"]: c for c in paper.CLAIMS}
LARGE = ["C8", "C9", "C10", "C20", "C22", "C23", "C24"]  # the claims config/paper.yaml's seeds are set for


def test_cli_prints_seeds_and_gpu_hours_for_the_paper_preset(capsys, monkeypatch):
    monkeypatch.setattr(power, "SIMS", 400)  # a quicker, coarser table
    assert main(["power", "--config", str(REPO / "config" / "paper.yaml")]) == 0
    out = capsys.readouterr().out
    for cid in CLAIM:
        assert re.search(rf"^{cid} +\S+ .* (>?\d+) +\d\.\d\d ", out, re.M), cid
    assert "cmdsprites/sa" in out and "(prior)" in out and "binomial" in out
    assert re.search(r"^coco/dinosaur +\d+ +\d+ +\d+-\d+ est ", out, re.M)  # hours from the plan's estimate
    for ablation in ("covloss_var", "cosineloss_proj"):  # in the preset and its plan: hours, measured
        assert re.search(rf"^cmdsprites/{ablation} +\d+ +\d+ +(C15|C16)$", out, re.M), ablation
    assert re.search(r"^total: \d+ GPU-hours \(range \d+-\d+\)", out, re.M)
    assert "the preset's 10 seeds leave" in out


def test_the_paper_presets_seeds_are_the_fewest_that_power_its_large_effect_claims():
    """config/paper.yaml says why it runs its seeds: the claims with large printed effects reach 80% there, not below."""
    n = len(load(REPO / "config" / "paper.yaml")["seeds"])
    assert all(power.claim_power(CLAIM[c], n)["power"] >= power.TARGET for c in LARGE)
    assert not all(power.claim_power(CLAIM[c], n - 1)["power"] >= power.TARGET for c in LARGE)
    assert power.claim_power(CLAIM["C1"], n)["power"] < power.TARGET  # the ledger marks it underpowered


def test_measured_spreads_replace_the_priors(tmp_path):
    paper_like(tmp_path, n=3, sd=0.1)  # ColoredMDSprites seeds ten times tighter than the prior
    spreads = power.measured_spreads(tmp_path)
    assert spreads["C1"] == pytest.approx({"cmdsprites/sa": 0.1, "cmdsprites/cosineloss": 0.1})
    sig = power.sigmas(CLAIM["C1"], spreads["C1"])
    assert sig["cmdsprites/sa"] == (pytest.approx(0.1), "measured")
    assert power.seeds_needed(CLAIM["C1"], spreads["C1"], sims=500) < power.seeds_needed(CLAIM["C1"], sims=500)
    assert power.sigmas(CLAIM["C1"])["cmdsprites/sa"][1].startswith("Locatello et al. 2020")  # the prior's source


def test_power_is_zero_below_three_seeds_and_grows_with_seeds():
    c8 = CLAIM["C8"]
    assert power.claim_power(c8, 2)["power"] == 0.0
    p = [power.claim_power(c8, n, sims=1000)["power"] for n in (3, 6, 12)]
    assert p[0] < p[1] < p[2]


def test_gpu_hours_are_seeds_times_the_plans_hours(tmp_path):
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump({"cells": {
        "cmdsprites/sa": {"hours_per_job": 2.0},
        "coco/dinosaur": {"hours_per_job": 10.0, "hours_low": 5.0, "hours_high": 12.0, "estimate": True}}}))
    hours = power.plan_hours({"plan": None}, str(plan))
    rows = [{"id": "X", "cells": ["cmdsprites/sa", "coco/dinosaur"], "seeds": 7},
            {"id": "Y", "cells": ["cmdsprites/sa", "coco/other"], "seeds": None}]  # beyond the cap
    budget = power.cell_budget(rows, hours)
    assert budget["cmdsprites/sa"]["seeds"] == power.MAX_SEEDS and budget["cmdsprites/sa"]["hours"] == 2.0 * power.MAX_SEEDS
    assert (budget["coco/dinosaur"]["hours"], budget["coco/dinosaur"]["low"], budget["coco/dinosaur"]["high"]) == (70, 35, 84)
    assert budget["coco/other"]["hours"] is None and budget["coco/dinosaur"]["claims"] == ["X"]


def test_bad_input_is_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="--results .*missing: no such folder"):
        power.cli_power(["--config", str(REPO / "config" / "paper.yaml"), "--results", str(tmp_path / "missing")])
    with pytest.raises(UserError, match="no prior seed spread for lpips of cmdsprites/sa"):
        power.prior("cmdsprites/sa", {"source": "metrics", "value": "lpips"})
