"""The Snakemake workflow: full DAGs plan, one cell plans only its chain, a parameter change
re-plans only its method, a finished run re-plans nothing, a bad config stops in one line."""
import pytest
import yaml

from slotcov.cells import EVAL_ONLY

pytest.register_assert_rewrite("workflow_repo")
from workflow_repo import BIN, PRESET, TARGETS, job_counts, plan, run, snakemake

pytest_plugins = ["workflow_repo"]


def expected_all(config: dict) -> dict[str, int]:
    """Jobs per rule that `all` needs from scratch under a preset (counted from the config)."""
    trained = [c for c in config["cells"] if c not in EVAL_ONLY]
    seeds, sweep = len(config["seeds"]), config.get("sweep", {})
    n_sweep = len(sweep.get("betas", [])) * len(sweep.get("seeds", config["seeds"]))
    return {"train": len(trained) * seeds, "evaluate": len(trained) * seeds,
            "probe": sum(c.startswith("cmdsprites/") for c in trained) * seeds,
            "evaluate_blockmasks": ("coco/blockmasks" in config["cells"]) * seeds,
            "train_sweep": n_sweep, "evaluate_sweep": n_sweep, "convert_mdsprites": 3, "prepare_coco": 3,
            "extract_features": 3, "tables": 1, "figures": 1, "report": 1, "claims": 1, "all": 1}


def test_all_plans_every_cell_of_each_preset(fresh_repo):
    for preset in ["config.yaml", "config/test.yaml", "config/paper.yaml"]:
        config = yaml.safe_load((fresh_repo / preset).read_text())
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
    counts, _ = plan(fresh_repo, "results/metrics/coco/dinosaur/seed0.json")
    assert counts == {"make_coco": 2, "prepare_coco": 3, "extract_features": 3, "train": 1, "evaluate": 1}
    counts, _ = plan(fresh_repo, "results/metrics/coco/dinosaur/seed1.json", configfile="config/paper.yaml")
    assert counts == {"download_coco": 3, "unzip_coco_images": 2, "unzip_coco_annotations": 1, "download_dino": 1,
                      "prepare_coco": 3, "extract_features": 3, "train": 1, "evaluate": 1}


def test_finished_run_replans_nothing_and_a_method_change_only_that_method(finished_repo):
    counts, out = plan(finished_repo, *TARGETS)
    assert counts == {}, out
    path = finished_repo / PRESET
    original = path.read_text()
    config = yaml.safe_load(original)
    reg = config.setdefault("methods", {}).setdefault("cmdsprites/covloss", {}).setdefault("reg", {})
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
    ("methods", {"cmdsprites/sa": {"train": {"stepz": 3}}}, "methods.cmdsprites/sa.train.stepz"),
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
