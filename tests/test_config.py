"""Config: one defaults table resolved once, strict reads, one-line errors for a misspelled key
(resources included), the block-masks slot count, the one-way import graph, shared io helpers."""
import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from slotcov import config as C
from slotcov.cells import EVAL_ONLY, PAPER_CELLS, non_paper_settings
from slotcov.errors import UserError
from slotcov.io import replace_dir, sha256_file
from workflow_repo import exponent_preset

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ["config.yaml", "config/test.yaml", "config/paper.yaml"]


def _preset(name="config/test.yaml") -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def _keys(d: dict, prefix=()) -> set:
    """Key paths of the leaves of a nested mapping (empty mappings have none)."""
    out = set()
    for k, v in d.items():
        out |= _keys(v, prefix + (k,)) if isinstance(v, dict) else {prefix + (k,)}
    return out


@pytest.mark.parametrize("preset", PRESETS)
def test_a_resolved_config_has_every_default_key_and_still_validates(preset):
    config = C.load(ROOT / preset)
    assert _keys(C.DEFAULTS) <= _keys(config)
    C.validate(copy.deepcopy(config), preset)  # resolving adds nothing the schema rejects
    assert C.resolve(config) == config  # resolving twice changes nothing
    for cell in config["cells"]:
        if cell not in EVAL_ONLY:  # every key of the paper cell: models/losses/trainer index them strictly
            assert _keys(C.resolve_cell(config, cell)) >= _keys(PAPER_CELLS[cell]), cell


def test_paper_cells_are_the_paper_on_every_knob():
    for cell, cfg in PAPER_CELLS.items():
        assert non_paper_settings(cfg, cell) == [], cell
    cfg = C.deep_merge(PAPER_CELLS["cmdsprites/sa"], {"model": {"encoder_kernel": 1}, "train": {"amp": "bf16"}})
    assert sorted(non_paper_settings(cfg, "cmdsprites/sa")) == ["model.encoder_kernel=1", "train.amp=bf16"]


def test_every_setting_that_differs_from_the_paper_cell_is_listed_bookkeeping_is_not():
    """Any key counts (loss weights, schedules, widths), compared with the paper cell of the same name."""
    from slotcov.cells import BOOKKEEPING

    cfg = C.deep_merge(PAPER_CELLS["cmdsprites/covloss"], {
        "reg": {"cov_weight": 0.5, "projection": [32, 32]}, "model": {"slot_dim": 16},
        "train": {"lr": 1e-5, "decay_steps": 50, "grad_clip": 1.0, "seed": 3, "threads": 1, "compile": False,
                  "checkpoint_every": 7, "log_every": 2}})
    assert non_paper_settings(cfg, "cmdsprites/covloss") == [
        "model.slot_dim=16", "reg.projection=[32, 32]", "reg.cov_weight=0.5", "train.lr=1e-05",
        "train.decay_steps=50", "train.grad_clip=1.0"]
    # the same settings are the paper's for another cell: compared with the cell named, not any cell
    assert non_paper_settings(PAPER_CELLS["coco/sa"], "coco/covloss") == [
        "reg.method=none", "reg.projection=null", "reg.cov_weight=0.0", "reg.gamma=1.0"]
    assert {key for _, key in BOOKKEEPING} == {"seed", "threads", "compile", "checkpoint_every", "log_every"}
    every_preset = {cell: non_paper_settings(C.resolve_cell(C.load(ROOT / "config.yaml"), cell), cell)
                    for cell in PAPER_CELLS}
    assert "model.decoder_hidden=[256, 256, 256]" in every_preset["coco/dinosaur"]
    assert "train.steps=1500" in every_preset["cmdsprites/sa"] and "model.mask_prior=attention" in \
        every_preset["cmdsprites/sa"]
    paper = C.load(ROOT / "config/paper.yaml")
    assert all(non_paper_settings(C.resolve_cell(paper, cell), cell) == [] for cell in PAPER_CELLS)


@pytest.mark.parametrize("resources,needle", [
    ({"trian": {"threads": 1}}, "'trian' is not allowed"),
    ({"train": {"thread": 1}}, "unknown key resources.train.thread"),
    ({"train": {"runtime": "2 hours"}}, "resources.train.runtime"),
    ({"probe": {"gpu": -1}}, "resources.probe.gpu"),
    ({"evaluate": {"mem_mb": "lots"}}, "resources.evaluate.mem_mb"),
])
def test_a_misspelled_resources_entry_is_one_line_error(resources, needle):
    config = _preset()
    config["resources"] = resources
    with pytest.raises(UserError, match="^bad.yaml: ") as err:
        C.validate(config, "bad.yaml")
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_resources_of_every_preset_are_valid_and_known_rules_accepted():
    config = _preset()
    config["resources"] = {"train": {"threads": 2, "mem_mb": 1000, "runtime": "1.5h", "gpu": 1},
                           "report": {"runtime": 30}}
    C.validate(config, "ok.yaml")


def test_replica_too_small_for_the_splits_is_one_line_error():
    config = _preset()
    config["data"]["cmdsprites"]["replica"] = {"n": 10}
    with pytest.raises(UserError, match=r"^x.yaml: data.cmdsprites.replica.n must be at least \d+"):
        C.validate(config, "x.yaml")
    del config["data"]["cmdsprites"]["replica"]["n"]  # left out: exactly the splits' end
    splits = config["data"]["cmdsprites"]["splits"]
    assert C.resolve(C.validate(config))["data"]["cmdsprites"]["replica"]["n"] == max(a + n for a, n in splits.values())


def test_coco_train_pipelines_default_to_the_primary_and_must_include_it():
    config = _preset()
    for primary in ("authors", "dinosaur"):
        config["data"]["coco"]["primary"] = primary
        assert C.resolve(C.validate(copy.deepcopy(config)))["data"]["coco"]["train_pipelines"] == [primary]
    config["data"]["coco"]["train_pipelines"] = ["dinosaur", "authors"]
    assert C.resolve(C.validate(copy.deepcopy(config)))["data"]["coco"]["train_pipelines"] == ["dinosaur", "authors"]
    config["data"]["coco"]["train_pipelines"] = ["authors"]  # primary: dinosaur
    with pytest.raises(UserError, match=r"^x.yaml: data.coco.train_pipelines \['authors'\] leaves out the primary "
                                        r"pipeline 'dinosaur'; add it"):
        C.validate(config, "x.yaml")
    config["data"]["coco"]["train_pipelines"] = ["dinosaur", "imagenet"]
    with pytest.raises(UserError, match="x.yaml: data.coco.train_pipelines"):
        C.validate(config, "x.yaml")


def test_settings_missing_a_key_are_one_line_error_not_a_keyerror():
    from slotcov.train.models import build_cell

    old = copy.deepcopy(PAPER_CELLS["cmdsprites/sa"])
    del old["model"]["slot_init"], old["reg"]["eps"]  # as a run saved before every cell had every key
    with pytest.raises(UserError, match=r"^cell settings lack model.slot_init, reg.eps \(") as err:
        build_cell(old)
    assert "\n" not in str(err.value)


def test_block_mask_slots_follow_the_coco_cells():
    config = _preset()
    assert C.block_mask_slots(config) == PAPER_CELLS["coco/sa"]["model"]["num_slots"]
    config.setdefault("datasets", {}).setdefault("coco", {}).setdefault("model", {})["num_slots"] = 9
    assert C.block_mask_slots(config) == 9
    config.setdefault("methods", {}).setdefault("coco", {})["sa"] = {"model": {"num_slots": 4}}
    with pytest.raises(UserError, match="^c.yaml: coco/blockmasks: the COCO cells have different num_slots"):
        C.validate(config, "c.yaml")


def test_the_config_code_imports_no_model_code():
    """Reading and resolving configs (the Snakefile does it before any job) stays light: no torch, no models."""
    code = ("import sys, slotcov.config, slotcov.cells; "
            "assert not {'torch', 'slotcov.train.models'} & set(sys.modules), 'model code imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_replace_dir_swaps_in_the_new_directory_whole(tmp_path):
    out = tmp_path / "split"
    for version in ("old", "new"):
        tmp = tmp_path / f".split.{version}.tmp"
        tmp.mkdir()
        (tmp / "a.npy").write_text(version)
        if version == "old":
            (tmp / "stale.npy").write_text("x")
        replace_dir(tmp, out)
        assert not tmp.exists()
    assert sorted(p.name for p in out.iterdir()) == ["a.npy"] and (out / "a.npy").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["split"]  # no .old folder left behind
    assert sha256_file(out / "a.npy") == "11507a0e2f5e69d5dfa40a62a1bd7b6ee57e6bcd85c67c9b8431b36fff21c437"


# ---------------------------------------------------------------------------- numbers survive every hand-over

def test_yaml_reads_exponent_forms_as_numbers_as_yaml_1_2_does():
    text = "a: 1e-5\nb: 1.0e-5\nc: 1e+30\nd: 1.0e5\ne: -2E3\nf: .5e1\ng: 10\nh: 0.001\ni: 1e5x\nj: e5\nk: '1e-5'\n"
    assert C.load_yaml(text) == {"a": 1e-5, "b": 1e-5, "c": 1e30, "d": 1e5, "e": -2e3, "f": 5.0, "g": 10,
                                 "h": 0.001, "i": "1e5x", "j": "e5", "k": "1e-5"}
    assert [type(v) for v in C.load_yaml(text).values()][:7] == [float] * 6 + [int]
    assert C.parse_set(["train.lr=1e-5", "reg.eps=1e-8"]) == {"train": {"lr": 1e-5}, "reg": {"eps": 1e-8}}


def test_every_number_key_in_exponent_form_reads_as_a_number(tmp_path):
    config = C.load(exponent_preset(ROOT, tmp_path))
    cov = C.resolve_cell(config, "cmdsprites/covloss")
    assert cov["train"]["lr"] == 1e-5 and cov["reg"]["eps"] == 1e-4 and cov["train"]["decay_rate"] == 0.5
    assert C.resolve_cell(config, "cmdsprites/cosineloss")["reg"]["cosine_weight"] == 0.01
    assert C.resolve_cell(config, "coco/sa")["train"]["lr"] == 1e-5
    assert config["sweep"]["betas"] == [0.1, 10.0] and config["probe"]["min_delta"] == 0.01
    assert config["monitor"]["progress_every_s"] == 60.0


def test_the_json_the_workflow_writes_is_read_back_with_json(tmp_path):
    """The resolved config goes to the CLIs as JSON (1e-05, 1e+30): read as numbers, not YAML 1.1 strings."""
    from slotcov.io import write_json

    config = C.load(exponent_preset(ROOT, tmp_path))
    config["datasets"]["cmdsprites"]["train"]["lr"] = 1e30
    write_json(tmp_path / "config-exponents.json", config)
    assert "1e+30" in (tmp_path / "config-exponents.json").read_text()
    back = C.load(tmp_path / "config-exponents.json")
    assert back == config and C.resolve_cell(back, "cmdsprites/sa")["train"]["lr"] == 1e30
    (tmp_path / "bad.json").write_text('{"preset": ')
    with pytest.raises(UserError, match=r"bad.json: not valid JSON"):
        C.load(tmp_path / "bad.json")


def test_a_count_written_as_a_float_is_one_line_error():
    config = _preset()
    config["datasets"]["cmdsprites"]["train"]["steps"] = 1e3
    with pytest.raises(UserError, match=r"^p.yaml: datasets.cmdsprites.train.steps: 1000.0 is not of type 'integer'; "
                                        r"write a whole number"):
        C.validate(config, "p.yaml")
    with pytest.raises(UserError, match=r"^--set: train.batch_size: 8.0 is not of type 'integer'"):
        C.check_override(C.parse_set(["train.batch_size=8e0"]), "--set")


# ---------------------------------------------------------------------------- --config of the workflow

def test_config_args_are_yaml_and_their_errors_name_config(tmp_path):
    files = [ROOT / "config/test.yaml"]
    config = C.workflow_config(files, ["methods={cmdsprites: {covloss: {reg: {cov_weight: 0.5}}}}", "seeds=[0,1]",
                                       "datasets={cmdsprites: {train: {lr: 1e-5}}}"])
    cov = C.resolve_cell(config, "cmdsprites/covloss")
    assert cov["reg"] == {**cov["reg"], "cov_weight": 0.5, "projection": [32, 32]}  # merged into the preset's
    assert config["seeds"] == [0, 1] and cov["train"]["lr"] == 1e-5 and cov["train"]["steps"] == 10
    assert C.workflow_config(files, None) == C.load(files[0])
    with pytest.raises(UserError, match=r"^--config: methods.cmdsprites.covloss.reg.cov_weight: -0.5 is less"):
        C.workflow_config(files, ["methods={cmdsprites: {covloss: {reg: {cov_weight: -0.5}}}}"])
    with pytest.raises(UserError, match=r"^--config seeds: not valid YAML"):
        C.workflow_config(files, ["seeds=[0,1"])
    bad = tmp_path / "bad.yaml"  # an error of the file itself names the file, not --config
    bad.write_text((ROOT / "config/test.yaml").read_text().replace("seeds: [0]", "seeds: [-1]"))
    with pytest.raises(UserError, match=rf"^{bad}: seeds.0: -1 is less"):
        C.workflow_config([bad], ["eval={batch_size: 4}"])


def test_without_a_preset_file_config_yaml_is_the_preset(tmp_path):
    config = C.workflow_config([], ["seeds=[3]"], default=ROOT / "config.yaml")
    assert config["preset"] == "demo" and config["seeds"] == [3]


# ---------------------------------------------------------------------------- cell keys DVC and Hydra parse

def test_methods_are_nested_by_dataset_and_the_old_form_is_one_clear_error():
    config = _preset()
    config["methods"]["coco"]["sa"] = {"train": {"lr": 2e-4}}
    assert C.resolve_cell(C.validate(config), "coco/sa")["train"]["lr"] == 2e-4
    assert C.resolve_cell(config, "coco/covloss")["train"]["lr"] == PAPER_CELLS["coco/covloss"]["train"]["lr"]
    config["methods"]["cmdsprites/covloss"] = {"reg": {"cov_weight": 0.5}}
    with pytest.raises(UserError) as err:
        C.validate(config, "old.yaml")
    assert str(err.value) == ("old.yaml: methods.cmdsprites/covloss: a cell's overrides are nested by dataset, then "
                              "method; write `methods: {cmdsprites: {covloss: {...}}}` "
                              "(key path methods.cmdsprites.covloss.<section>.<key>)")
    del config["methods"]["cmdsprites/covloss"]
    config["methods"]["coco"]["blockmasks"] = {}
    with pytest.raises(UserError, match=r"'blockmasks' is not allowed"):
        C.validate(config, "x.yaml")


def test_dvc_set_param_reaches_a_cell_setting(tmp_path):
    """`dvc exp run -S` edits the preset with DVC's own override parser (Hydra's grammar) before it runs."""
    from dvc.exceptions import InvalidArgumentError
    from dvc.utils.hydra import apply_overrides

    preset = tmp_path / "config.yaml"
    preset.write_text((ROOT / "config.yaml").read_text())
    apply_overrides(preset, ["++methods.cmdsprites.covloss.reg.cov_weight=0.5", "++datasets.cmdsprites.train.lr=1e-5"])
    assert "lr: 1e-05" in preset.read_text()  # DVC writes YAML 1.2: a number for slotcov, a string for YAML 1.1
    config = C.load(preset)
    cov = C.resolve_cell(config, "cmdsprites/covloss")
    assert cov["reg"]["cov_weight"] == 0.5 and cov["train"]["lr"] == 1e-5
    with pytest.raises(InvalidArgumentError):  # the former "dataset/method" key: DVC cannot parse it
        apply_overrides(preset, ["methods.cmdsprites/covloss.reg.cov_weight=0.5"])


def _effective(config: dict) -> dict:
    """What a preset makes: its resolved config with every trained cell's settings in place of the overrides."""
    out = C.resolve(C.validate(copy.deepcopy(config)))
    cells = {cell: C.resolve_cell(out, cell) for cell in out["cells"] if cell not in EVAL_ONLY}
    return {**{k: v for k, v in out.items() if k not in ("datasets", "methods")}, "cell settings": cells}


def _without(config: dict, path: tuple) -> dict:
    out = copy.deepcopy(config)
    node = out
    for key in path[:-1]:
        node = node[key]
    del node[path[-1]]
    return out


def _redundant(preset: dict) -> list[str]:
    """Keys of a preset file that state what holds without them (a default, a derived value, the paper
    cell's setting): leaving one out makes the same config. Keys the schema requires are stated on purpose."""
    made = _effective(preset)
    return [".".join(map(str, path)) for path in sorted(_keys(preset))
            if path not in REQUIRED and _makes(_without(preset, path)) == made]


def _makes(config: dict) -> dict | None:
    try:
        return _effective(config)
    except UserError:  # a key the config cannot do without
        return None


REQUIRED = {("preset",), ("seeds",), ("data", "cmdsprites", "source"), ("data", "coco", "source")}


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_list_only_what_differs_from_the_defaults(preset):
    """A preset is its departures: defaults (slotcov.config.DEFAULTS, the cells' paper values) are never copied in."""
    assert _redundant(_preset(preset)) == []


def test_the_redundancy_check_finds_a_copied_default():
    config = _preset()
    config["cells"] = list(C.DEFAULTS["cells"])
    config["data"]["coco"]["primary"] = "authors"
    config["data"]["cmdsprites"]["replica"] = {"n": 260}  # the splits' end
    config["datasets"]["cmdsprites"]["model"]["num_slots"] = 5
    config["methods"]["cmdsprites"]["covloss"]["model"] = {"slot_dim": 16}  # datasets.cmdsprites says 16
    config["sweep"]["seeds"] = config["seeds"]
    assert _redundant(config) == ["cells", "data.cmdsprites.replica.n", "data.coco.primary",
                                  "datasets.cmdsprites.model.num_slots", "methods.cmdsprites.covloss.model.slot_dim",
                                  "sweep.seeds"]


def test_the_schema_names_every_cell_dataset_and_method_of_cells_py():
    """The schema's cell, dataset and method names come from slotcov.cells (no second list to keep in step)."""
    from slotcov.cells import CELLS, DATASETS, methods_of

    props = C._schema()["properties"]
    assert props["cells"]["items"]["enum"] == CELLS and C.DEFAULTS["cells"] == CELLS
    assert list(props["datasets"]["properties"]) == list(DATASETS) == list(props["methods"]["properties"])
    for dataset in DATASETS:
        assert props["methods"]["properties"][dataset]["propertyNames"]["enum"] == methods_of(dataset)
    assert set(CELLS) == set(PAPER_CELLS) | EVAL_ONLY and methods_of("coco")[-1] == "dinosaur1024_covloss"
    with pytest.raises(UserError, match="cells.0 = 'cmdsprites/nope' is not allowed; choose one of: cmdsprites/sa"):
        C.validate({**_preset(), "cells": ["cmdsprites/nope"]}, "p.yaml")


def test_cmdsprites_resolution_is_one_value_checked_in_one_line():
    """data.cmdsprites.resolution (the converted splits) follows the cells' model.resolution; both given and
    different is one error naming both keys, not a shape error in the first training step."""
    config = _preset()
    assert C.resolve(C.validate(copy.deepcopy(config)))["data"]["cmdsprites"]["resolution"] == 16
    config["data"]["cmdsprites"]["resolution"] = 32
    with pytest.raises(UserError) as err:
        C.validate(config, "p.yaml")
    assert "data.cmdsprites.resolution 32" in str(err.value) and "datasets.cmdsprites.model.resolution" in str(err.value)
    assert "\n" not in str(err.value) and str(err.value).startswith("p.yaml: ")
    config["data"]["cmdsprites"]["resolution"] = 16
    C.validate(config)  # the same value twice is allowed
