"""The Snakemake workflow: full DAGs plan, one cell plans only its chain, a parameter change
re-plans only its method, a finished run re-plans nothing, a bad config stops in one line,
numbers reach the jobs as numbers (exponent forms, `--config` values)."""
import json
import re
import shutil

import pytest
import torch
import yaml

from slotcov import config as C
from slotcov.cells import EVAL_ONLY, methods_of
from slotcov.paper import TABLE2
from slotcov.report.figures import FIGURES
from slotcov.report.tables import TABLES

pytest.register_assert_rewrite("workflow_repo")
from workflow_repo import BIN, PRESET, REPO, TARGETS, exponent_preset, job_counts, plan, run, snakemake

pytest_plugins = ["workflow_repo"]


def expected_all(config: dict) -> dict[str, int]:
    """Jobs per rule that `all` needs from scratch under a preset (counted from the config)."""
    trained = [c for c in config["cells"] if c not in EVAL_ONLY]
    seeds, sweep = len(config["seeds"]), config.get("sweep", {})
    n_sweep = len(sweep.get("betas", [])) * len(sweep.get("seeds", config["seeds"]))
    coco = config["data"]["coco"]
    others = len(coco["train_pipelines"]) - 1  # pipelines a COCO cell also trains under (train_under)
    return {"train": len(trained) * seeds, "evaluate": len(trained) * seeds,
            "probe": sum(c.startswith("cmdsprites/") and c.split("/")[1] in TABLE2 for c in trained) * seeds,
            "evaluate_blockmasks": ("coco/blockmasks" in config["cells"]) * seeds,
            "train_sweep": n_sweep, "evaluate_sweep": n_sweep, "convert_mdsprites": 3, "prepare_coco": 3 + others,
            "extract_features": 3 + others, "table": len(TABLES), "numbers": 1, "figure": len(FIGURES), "report": 1,
            "claims": 1, "plots": 1, "all": 1,
            "train_under": sum(c.startswith("coco/") for c in trained) * seeds * others}


def test_all_plans_every_cell_of_each_preset(fresh_repo):
    for preset in ["config.yaml", "config/test.yaml", "config/paper.yaml"]:
        config = C.load(fresh_repo / preset)
        counts, _ = plan(fresh_repo, "all", configfile=preset)
        assert {k: counts.get(k, 0) for k in expected_all(config)} == expected_all(config), preset
        if config["data"]["cmdsprites"]["source"] == "real":  # the paper: downloads, no generators
            assert counts["download_cmdsprites"] == 1 and counts["download_coco"] == 3
            assert counts["unzip_coco_images"] == 2 and counts["download_dino"] == 1
            assert "make_mdsprites" not in counts and "make_coco" not in counts
        else:
            assert counts["make_mdsprites"] == 1 and counts["make_coco"] == 2
            assert not any(rule.startswith(("download", "unzip")) for rule in counts)


def test_single_cell_plans_only_its_chain(fresh_repo):
    counts, out = plan(fresh_repo, "results/metrics/cmdsprites/covloss/seed0.json")
    assert counts == {"make_mdsprites": 1, "convert_mdsprites": 2, "train": 1, "evaluate": 1}
    assert "results/runs/cmdsprites/covloss/seed0/run.json" in out
    counts, _ = plan(fresh_repo, "results/metrics/coco/dinosaur/seed0.json")  # the primary pipeline's train, eval
    assert counts == {"make_coco": 2, "prepare_coco": 2, "extract_features": 2, "train": 1, "evaluate": 1}
    counts, _ = plan(fresh_repo, "results/metrics/coco/dinosaur/seed1.json", configfile="config/paper.yaml")
    assert counts == {"download_coco": 3, "unzip_coco_images": 2, "unzip_coco_annotations": 1, "download_dino": 1,
                      "prepare_coco": 2, "extract_features": 2, "train": 1, "evaluate": 1}


def test_coco_cells_train_under_each_listed_pipeline(fresh_repo):
    """data.coco.train_pipelines: a COCO model per pipeline listed, each scored on its own pipeline's split;
    without the key only the primary's (block masks are scored under every pipeline either way)."""
    both = ("--config", "data={coco: {train_pipelines: [authors, dinosaur]}}")
    target = "results/metrics/coco/dinosaur/seed0.json"
    counts, out = plan(fresh_repo, "-p", target, *both)
    assert counts == {"make_coco": 2, "prepare_coco": 4, "extract_features": 4, "train": 1, "train_under": 1,
                      "evaluate": 1}
    (evaluate,) = [line for line in out.splitlines() if "slotcov evaluate" in line]
    assert "--pipeline authors data/coco/eval-authors data/features/eval-authors" in evaluate
    assert "--pipeline dinosaur data/coco/eval-dinosaur data/features/eval-dinosaur" in evaluate
    assert "--pipeline-run dinosaur results/runs/coco/dinosaur/seed0-dinosaur --primary authors" in evaluate
    (under,) = [line for line in out.splitlines() if "slotcov train" in line and "seed0-dinosaur" in line]
    assert "--data data/coco/train-dinosaur --features data/features/train-dinosaur" in under
    counts, _ = plan(fresh_repo, "all", *both)
    assert counts["train_under"] == counts["train"] - len(methods_of("cmdsprites"))  # every trained COCO cell
    counts, out = plan(fresh_repo, "-p", "all")
    assert "train_under" not in counts and "--pipeline-run" not in out and "seed0-dinosaur" not in out
    (evaluate,) = [line for line in out.splitlines() if "slotcov evaluate" in line and "coco/dinosaur " in line]
    assert "--pipeline authors" in evaluate and "--pipeline dinosaur" not in evaluate
    (blocks,) = [line for line in out.splitlines() if "slotcov evaluate" in line and "coco/blockmasks" in line]
    assert "--pipeline authors" in blocks and "--pipeline dinosaur" in blocks


def test_finished_run_replans_nothing_and_a_method_change_only_that_method(finished_repo):
    counts, out = plan(finished_repo, *TARGETS)
    assert counts == {}, out
    path = finished_repo / PRESET
    original = path.read_text()
    config = yaml.safe_load(original)
    reg = config.setdefault("methods", {}).setdefault("cmdsprites", {}).setdefault("covloss", {}).setdefault("reg", {})
    reg["cov_weight"] = reg.get("cov_weight", 1.0) + 0.25
    path.write_text(yaml.safe_dump(config))
    try:
        counts, out = plan(finished_repo, *TARGETS)
    finally:
        path.write_text(original)
    assert counts == {"train": 1, "evaluate": 1}
    outputs = [line.split(":", 1)[1] for line in out.splitlines() if line.strip().startswith("output:")]
    assert outputs and all("/covloss/" in o for o in outputs), outputs
    assert "Params have changed" in out


@pytest.mark.parametrize("section,value,where", [
    ("methods", {"cmdsprites": {"sa": {"train": {"stepz": 3}}}}, "methods.cmdsprites.sa.train.stepz"),
    ("resources", {"train": {"stepz": 3}}, "resources.train.stepz"),  # resources are checked too
])
def test_bad_config_key_stops_with_one_line(fresh_repo, tmp_path, section, value, where):
    config = yaml.safe_load((fresh_repo / PRESET).read_text())
    config[section].update(value)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    proc = snakemake(fresh_repo, "-n", "all", configfile=str(bad), check=False)
    assert proc.returncode != 0
    # Snakemake heads the one-line message with "WorkflowError in file Snakefile" and ends with the line
    out = proc.stdout + proc.stderr
    lines = [line for line in out.splitlines() if "stepz" in line]
    assert len(lines) == 1, out
    assert lines[0].startswith("slotcov: ") and where in lines[0] and str(bad) in lines[0]
    assert "Traceback" not in out and "Job stats" not in out
    assert len(out.strip().splitlines()) <= 3, out


def test_preset_file_replaces_config_yaml_and_config_yaml_is_the_default(fresh_repo):
    """--configfile: nothing of config.yaml leaks in; without it config.yaml is the preset."""
    _, out = plan(fresh_repo, "results/metrics/cmdsprites/sa/seed0.json", configfile="config/test.yaml")
    written = yaml.safe_load((fresh_repo / ".snakemake/slotcov/config-test.json").read_text())
    demo = yaml.safe_load((fresh_repo / "config.yaml").read_text())
    test = yaml.safe_load((fresh_repo / PRESET).read_text())
    assert written["preset"] == "test" and written["data"]["cmdsprites"] == {**written["data"]["cmdsprites"],
                                                                               **test["data"]["cmdsprites"]}
    assert written["methods"] == test["methods"] and written["datasets"] == test["datasets"], "config.yaml leaked in"
    assert written["datasets"] != demo["datasets"]
    proc = run(fresh_repo, str(BIN / "snakemake"), "-n", "results/metrics/cmdsprites/sa/seed0.json")
    written = yaml.safe_load((fresh_repo / ".snakemake/slotcov/config-demo.json").read_text())
    assert written["preset"] == "demo" and written["methods"] == demo["methods"], proc.stdout


def test_job_counts_parser():
    out = "Job stats:\njob      count\n-----  -------\ntrain        2\nall          1\ntotal        3\n"
    assert job_counts(out) == {"train": 2, "all": 1}
    assert job_counts("Nothing to be done (all requested files are present and up to date).") == {}


def test_pipeline_and_feature_settings_reach_their_jobs(fresh_repo):
    """Each COCO pipeline's `resize` goes to its prepare job; data.features.dtype (float32 unless set) to extraction."""
    targets = ["data/features/eval-authors", "data/features/eval-dinosaur"]

    def commands(*config):
        proc = snakemake(fresh_repo, "-n", "-p", *targets, *config)
        return [line.split("slotcov ", 1)[1] for line in (proc.stdout + proc.stderr).splitlines()
                if "Shell command: slotcov " in line]

    default = commands()
    prepare = {c.split("--pipeline ")[1].split()[0]: c for c in default if c.startswith("prepare-coco")}
    assert "--resize pil" in prepare["authors"] and "--resize tensor" in prepare["dinosaur"]
    extract = [c for c in default if c.startswith("extract-features")]
    assert len(extract) == 2 and all("--dtype float32" in c for c in extract)
    half = [c for c in commands("--config", "data={features: {dtype: float16}}") if c.startswith("extract-features")]
    assert len(half) == 2 and all("--dtype float16" in c for c in half)


# ---------------------------------------------------------------------------- numbers reach the jobs as numbers

NESTED_FLOAT = "methods={cmdsprites: {covloss: {reg: {cov_weight: 0.5}}}}"
EXPONENT = "datasets={cmdsprites: {train: {lr: 1e-5}}}"


def _written(repo, preset="test") -> dict:
    """The resolved config the workflow hands to its jobs (read as the CLIs read it: JSON)."""
    return json.loads((repo / f".snakemake/slotcov/config-{preset}.json").read_text())


def test_config_values_are_yaml(fresh_repo):
    """`--config` values are numbers, lists and nested maps, merged into the preset; errors name --config."""
    target = "results/metrics/cmdsprites/covloss/seed1.json"
    counts, _ = plan(fresh_repo, target, "--config", NESTED_FLOAT, "seeds=[0,1]", EXPONENT)
    assert counts == {"make_mdsprites": 1, "convert_mdsprites": 2, "train": 1, "evaluate": 1}
    written = _written(fresh_repo)
    assert written["seeds"] == [0, 1]
    assert written["methods"]["cmdsprites"]["covloss"]["reg"] == {"projection": [32, 32], "cov_weight": 0.5}
    assert written["datasets"]["cmdsprites"]["train"]["lr"] == 1e-5
    assert written["datasets"]["cmdsprites"]["train"]["steps"] == 10  # the preset's, kept
    counts, _ = plan(fresh_repo, "all", "--config", "seeds=[0,1]")
    trained = sum(c not in EVAL_ONLY for c in written["cells"]) * 2
    assert counts["train"] == trained and counts["evaluate"] == trained

    for value, where in [("methods={cmdsprites: {covloss: {reg: {cov_weight: -0.5}}}}",
                          "--config: methods.cmdsprites.covloss.reg.cov_weight: -0.5 is less than the minimum"),
                         ("seeds=[0,-1]", "--config: seeds.1: -1 is less than the minimum"),
                         ("methods={cmdsprites/covloss: {reg: {cov_weight: 0.5}}}",
                          "write `methods: {cmdsprites: {covloss: {...}}}`")]:
        proc = snakemake(fresh_repo, "-n", "all", "--config", value, check=False)
        out = proc.stdout + proc.stderr
        lines = [line for line in out.splitlines() if line.startswith("slotcov: ")]
        assert proc.returncode != 0 and len(lines) == 1 and where in lines[0], out
        assert "config/test.yaml" not in lines[0] and "Traceback" not in out


def test_a_preset_in_the_former_methods_form_stops_with_the_new_form(fresh_repo, tmp_path):
    old = tmp_path / "old.yaml"
    old.write_text((fresh_repo / PRESET).read_text().replace(
        "methods:\n  cmdsprites:\n    covloss:\n", "methods:\n  cmdsprites/covloss: {reg: {cov_weight: 0.5}}\n"
        "  cmdsprites:\n    covloss:\n"))
    proc = snakemake(fresh_repo, "-n", "all", configfile=str(old), check=False)
    out = proc.stdout + proc.stderr
    lines = [line for line in out.splitlines() if "cmdsprites/covloss" in line]
    assert proc.returncode != 0 and len(lines) == 1, out
    assert lines[0] == (f"slotcov: {old}: methods.cmdsprites/covloss: a cell's overrides are nested by dataset, "
                        "then method; write `methods: {cmdsprites: {covloss: {...}}}` "
                        "(key path methods.cmdsprites.covloss.<section>.<key>)")


def test_exponent_numbers_reach_real_train_jobs(finished_repo, tmp_path):
    """Every number key in exponent form, plus a `--config` float, through a real train job; then lr 1.0e+30.

    Runs seeds outside the preset's (7, 8) and removes them after: the finished run stays as it was.
    """
    repo = finished_repo
    preset = exponent_preset(REPO, tmp_path)  # from the project's test preset: other tests edit the copy's
    runs = [repo / "results/runs/cmdsprites/covloss/seed7", repo / "results/runs/cmdsprites/sa/seed8"]
    try:
        proc = snakemake(repo, "--cores", "1", f"{runs[0].relative_to(repo)}/run.json",
                         "--config", "methods={cmdsprites: {covloss: {reg: {cov_weight: 5e-1}}}}",
                         configfile=str(preset))
        assert job_counts(proc.stdout + proc.stderr) == {"train": 1}  # the test preset's data, reused
        cfg = torch.load(runs[0] / "model.pt", weights_only=True)["config"]
        assert cfg["train"]["lr"] == 1e-5 and cfg["reg"]["cov_weight"] == 0.5 and cfg["reg"]["eps"] == 1e-4
        assert cfg["train"]["decay_rate"] == 0.5 and cfg["train"]["grad_clip"] == 1.0
        assert all(type(cfg[s][k]) is float for s, k in [("train", "lr"), ("reg", "cov_weight"), ("reg", "eps")])

        huge = tmp_path / "huge.yaml"
        huge.write_text(preset.read_text().replace("preset: exponents", "preset: huge").replace(
            "    cosineloss: {reg:", "    sa: {train: {lr: 1.0e+30}}\n    cosineloss: {reg:"))
        proc = snakemake(repo, "--cores", "1", f"{runs[1].relative_to(repo)}/run.json", configfile=str(huge),
                         check=False)
        lr = _written(repo, "huge")["methods"]["cmdsprites"]["sa"]["train"]["lr"]
        assert lr == 1e30 and type(lr) is float
        log = (repo / "logs/train/cmdsprites/sa/seed8.log").read_text()
        # the job ran the trainer (whether it diverges is not this test's business), no config error
        assert re.search(r"\bstep \d+", log) and "is not of type" not in log, log
    finally:
        for folder in runs:
            shutil.rmtree(folder, ignore_errors=True)
        for name in ["covloss/seed7", "sa/seed8"]:
            (repo / f"logs/train/cmdsprites/{name}.log").unlink(missing_ok=True)
            (repo / f"logs/bench/train/cmdsprites/{name}.tsv").unlink(missing_ok=True)
