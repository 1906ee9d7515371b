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
        assert non_paper_settings(cfg) == [], cell
    cfg = C.deep_merge(PAPER_CELLS["cmdsprites/sa"], {"model": {"encoder_kernel": 1}, "train": {"amp": "bf16"}})
    assert sorted(non_paper_settings(cfg)) == ["model.encoder_kernel=1", "train.amp=bf16"]


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
    config["data"]["cmdsprites"]["replica"]["n"] = 10
    with pytest.raises(UserError, match=r"^x.yaml: data.cmdsprites.replica.n must be at least \d+"):
        C.validate(config, "x.yaml")
    del config["data"]["cmdsprites"]["replica"]["n"]  # left out: exactly the splits' end
    splits = config["data"]["cmdsprites"]["splits"]
    assert C.resolve(C.validate(config))["data"]["cmdsprites"]["replica"]["n"] == max(a + n for a, n in splits.values())


def test_settings_missing_a_key_are_one_line_error_not_a_keyerror():
    from slotcov.cells import build_cell

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
    config.setdefault("methods", {})["coco/sa"] = {"model": {"num_slots": 4}}
    with pytest.raises(UserError, match="^c.yaml: coco/blockmasks: the COCO cells have different num_slots"):
        C.validate(config, "c.yaml")


def test_models_does_not_import_cells():
    """The import graph runs one way: cells -> models, never back (model-summary lives in cells)."""
    code = "import sys, slotcov.models, slotcov.losses; assert 'slotcov.cells' not in sys.modules, 'cells imported'"
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
