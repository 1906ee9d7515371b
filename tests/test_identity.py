"""A run's identity (cell settings + the content of its inputs) and the checkpoint policy built on it:
a finished or diverged run is never resumed, files of another identity are refused by hand and
dropped with the flag, a moved split keeps its runs."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

import slotcov.train.checkpoint
from slotcov.train import identity
from slotcov.errors import UserError
from slotcov.train.loop import NonFiniteLoss, train
from tiny_run import assert_same_weights, checkpoint_writes, tiny_cell, tiny_dataset, weights


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    """Two ColoredMDSprites splits of other scenes (a, b) and a copy of `a` at another path."""
    from slotcov.data.mdsprites import convert_split, make_mdsprites

    root = tmp_path_factory.mktemp("splits")
    make_mdsprites(24, 0, root / "r.tfrecords", workers=1)
    a = convert_split(root / "r.tfrecords", 0, 16, root / "a", resolution=16)
    b = convert_split(root / "r.tfrecords", 8, 16, root / "b", resolution=16)
    moved = root / "elsewhere" / "a"
    shutil.copytree(a, moved)
    return a, b, moved


def records(split) -> list[dict]:
    from slotcov.data.mdsprites import MDSpritesArrays

    return identity.input_records(MDSpritesArrays(split))


def test_identity_follows_the_content_of_a_split_not_its_path(splits):
    a, b, moved = splits
    assert json.loads((moved / "meta.json").read_text())["source"] == json.loads((a / "meta.json").read_text())["source"]
    assert records(a) == records(moved) and records(a) != records(b)
    assert [r["kind"] for r in records(a)] == ["split"]
    assert identity.run_id("h", records(a)) == identity.run_id("h", records(moved))
    assert identity.run_id("h", records(a)) != identity.run_id("h", records(b))
    assert identity.run_id("h", records(a)) != identity.run_id("g", records(a))  # the settings count too
    assert identity.difference({"run_id": "x", "config_hash": "h", "inputs": records(a)}, "h", records(b)) == \
        "changed: the content of the split input"
    assert "no run identity" in identity.difference({}, "h", [])


def test_a_coco_split_and_feature_store_are_identified_by_content(tmp_path):
    """prepare-coco records each array's sha256; the feature store's digest leaves its source path out."""
    from timm.models.vision_transformer import VisionTransformer

    from slotcov.data import coco, features
    from slotcov.io import sha256_file

    coco.make_coco(tmp_path / "raw", "val2017", n=3, seed=0)
    split = coco.prepare_split(tmp_path / "raw", "val2017", "stretch", tmp_path / "split", pipeline="authors")
    meta = json.loads((split / "meta.json").read_text())
    assert set(meta["arrays"]) == set(coco.ARRAYS)
    assert all(meta["arrays"][k]["sha256"] == sha256_file(split / f"{k}.npy") for k in coco.ARRAYS)
    images, ids = np.load(split / "image224.npy"), np.load(split / "image_ids.npy")

    def store(name, seed, source):
        torch.manual_seed(seed)
        vit = VisionTransformer(img_size=224, patch_size=16, embed_dim=8, depth=1, num_heads=2, num_classes=0)
        return features.extract_features(vit.eval(), images, tmp_path / name, batch_size=3, device="cpu",
                                         image_ids=ids, source=source, normalize="none")

    def recs(feats):
        return identity.input_records(coco.CocoArrays(split, features=feats))

    one, same, other = recs(store("f1", 0, "/a/path")), recs(store("f2", 0, "/another/path")), recs(store("f3", 1, "/a"))
    assert [(r["kind"], r["pipeline"]) for r in one] == [("split", "authors"), ("features", "authors")]
    assert one == same and one[0] == other[0] and one[1] != other[1]
    assert identity.difference({"run_id": "x", "config_hash": "h", "inputs": one}, "h", other) == \
        "changed: the content of the features (authors) input"
    del meta["arrays"]  # a split prepared before splits recorded their content
    (split / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="meta.json records no sha256 of its arrays.*prepare the split again"):
        recs(None)


def saves(monkeypatch) -> list:
    """The (file, step) of every checkpoint write from now on."""
    return checkpoint_writes(monkeypatch)


def record(run) -> dict:
    return json.loads((run / "run.json").read_text())


def test_a_finished_run_is_never_resumed(tmp_path, monkeypatch, capsys):
    cfg, run = tiny_cell(steps=6, checkpoint_every=2), tmp_path / "run"
    train(cfg, tiny_dataset(), run, progress=False)
    first = weights(run)
    done = record(run)
    assert done["status"] == "finished" and done["steps"] == 6 and done["resumed_from"] == 0
    assert not (run / "ckpt.pt").exists()  # a finished run keeps no checkpoint to resume
    assert torch.load(run / "model.pt", weights_only=True)["run_id"] == done["run_id"]

    written = saves(monkeypatch)
    train(cfg, tiny_dataset(), run, progress=False)  # the same command again: the record says finished
    assert written == [] and "already finished; nothing to train" in capsys.readouterr().err

    (run / "run.json").unlink()  # what Snakemake does before it runs the job again (--forcerun, a changed input)
    train(cfg, tiny_dataset(), run, progress=False)
    assert written == [("ckpt.pt", 2), ("ckpt.pt", 4), ("ckpt.pt", 6), ("model.pt", None)]  # all 6 updates
    assert record(run)["resumed_from"] == 0 and list(pd.read_csv(run / "log.csv").step) == list(range(1, 7))
    assert_same_weights(first, weights(run))  # the same machine, the same inputs: the same weights

    # killed while writing model.pt: the checkpoint of the last step stays, and is not resumed either
    real = slotcov.train.checkpoint.save_checkpoint
    monkeypatch.setattr(slotcov.train.checkpoint, "save_checkpoint", lambda path, **state: (
        (_ for _ in ()).throw(OSError("disk full")) if path.name == "model.pt" else real(path, **state)))
    (run / "run.json").unlink()
    with pytest.raises(OSError, match="disk full"):
        train(cfg, tiny_dataset(), run, progress=False)
    assert torch.load(run / "ckpt.pt", weights_only=True)["step"] == 6 and not (run / "model.pt").exists()
    monkeypatch.undo()
    written = saves(monkeypatch)
    capsys.readouterr()
    train(cfg, tiny_dataset(), run, progress=False)
    assert "the checkpoint of a finished run is never resumed: training from step 0" in capsys.readouterr().err
    assert written[0] == ("ckpt.pt", 2) and record(run)["resumed_from"] == 0
    assert_same_weights(first, weights(run))


def test_a_diverged_run_is_a_record_and_never_resumed(tmp_path, capsys):
    cfg, run, ds = tiny_cell(steps=12, checkpoint_every=2), tmp_path / "run", tiny_dataset()
    train(cfg, ds, run, progress=False, stop_after=4)
    good = ds.tensors["image"].clone()
    ds.tensors["image"][:] = float("nan")
    with pytest.raises(NonFiniteLoss, match="step 4: non-finite"):
        train(cfg, ds, run, progress=False)
    rec = record(run)
    assert rec["status"] == "diverged" and rec["step"] == 4 and rec["steps"] == 4 and rec["resumed_from"] == 4
    assert {"loss", "recon"} <= set(rec["terms"]) and "grad_norm" in rec["terms"]
    assert rec["last_finite_loss"] == pytest.approx(pd.read_csv(run / "log.csv").loss.iloc[-1], rel=1e-5)
    ck = torch.load(run / "ckpt.pt", weights_only=True)  # the last good checkpoint, kept for inspection
    assert ck["step"] == 4 and ck["diverged"]["step"] == 4 and not (run / "model.pt").exists()
    log = (run / "log.csv").read_bytes()

    with pytest.raises(NonFiniteLoss, match="step 4: non-finite .*recorded in .*run.json before: nothing trained"):
        train(cfg, ds, run, progress=False)  # the same run again: its result is the record
    assert (run / "log.csv").read_bytes() == log

    ds.tensors["image"][:] = good
    (run / "run.json").unlink()  # Snakemake runs the job again: the diverged checkpoint is not its start
    train(cfg, ds, run, progress=False)
    assert "the checkpoint of a diverged run is never resumed: training from step 0" in capsys.readouterr().err
    assert record(run)["status"] == "finished" and record(run)["resumed_from"] == 0
    train(cfg, tiny_dataset(), tmp_path / "fresh", progress=False)
    assert_same_weights(weights(tmp_path / "fresh"), weights(run))


def test_files_of_other_inputs_are_refused_by_hand_and_dropped_with_the_flag(splits, tmp_path, capsys):
    from slotcov.data.mdsprites import MDSpritesArrays

    a, b, moved = splits
    cfg, run = tiny_cell("cmdsprites/sa", steps=4, checkpoint_every=2), tmp_path / "run"
    train(cfg, MDSpritesArrays(a), run, progress=False)
    old, old_id = weights(run), record(run)["run_id"]
    train(cfg, MDSpritesArrays(moved), run, progress=False)  # the same content elsewhere: the same run
    assert record(run)["run_id"] == old_id and "already finished" in capsys.readouterr().err

    with pytest.raises(UserError) as info:
        train(cfg, MDSpritesArrays(b), run, progress=False)
    assert str(info.value) == (f"{run}: run.json, model.pt of another run (changed: the content of the split input); "
                               "delete them, choose another output folder, or pass --drop-stale-checkpoint")
    assert record(run)["run_id"] == old_id  # nothing touched
    train(cfg, MDSpritesArrays(b), run, progress=False, drop_stale=True)
    err = [line for line in capsys.readouterr().err.splitlines() if "another run" in line]
    assert err == [f"{run}: removed run.json, model.pt of another run (changed: the content of the split input); "
                   "training from step 0"]
    new = record(run)
    assert new["run_id"] != old_id and new["resumed_from"] == 0 and new["steps"] == 4
    assert any(not torch.equal(old[k], v) for k, v in weights(run).items())

    # an interrupted run whose data changed: its checkpoint is not the start of a run on the new data
    run2 = tmp_path / "run2"
    train(cfg, MDSpritesArrays(a), run2, progress=False, stop_after=2)
    train(cfg, MDSpritesArrays(b), run2, progress=False, drop_stale=True)
    assert "removed ckpt.pt of another run (changed: the content of the split input)" in capsys.readouterr().err
    assert record(run2)["resumed_from"] == 0
    assert_same_weights(weights(run), weights(run2))

    # a model.pt written before runs recorded their identity is another run too
    ck = torch.load(run / "model.pt", weights_only=True)
    torch.save({k: v for k, v in ck.items() if k not in ("run_id", "inputs")}, run / "model.pt")
    with pytest.raises(UserError, match="model.pt of another run .*written by an older slotcov"):
        train(cfg, MDSpritesArrays(b), run, progress=False)


def test_load_trained_reads_the_model_its_record_names(tmp_path):
    from slotcov.train.loop import load_trained

    train(tiny_cell(steps=2), tiny_dataset(), tmp_path / "a", progress=False)
    train(tiny_cell(steps=3), tiny_dataset(), tmp_path / "b", progress=False)
    load_trained(tmp_path / "a")
    shutil.copy(tmp_path / "b" / "model.pt", tmp_path / "a" / "model.pt")
    with pytest.raises(UserError, match="model.pt is not the model of .*run.json"):
        load_trained(tmp_path / "a")
    (tmp_path / "a" / "run.json").unlink()
    with pytest.raises(UserError, match="run.json not found: the run has not finished"):
        load_trained(tmp_path / "a")


def test_provenance_names_the_pipeline_the_run_was_trained_on():
    """train_pipeline comes from the run record's inputs (what the model read), not from the config."""
    from slotcov.train import identity

    record = {"run_id": "r", "inputs": [{"kind": "split", "pipeline": "dinosaur", "digest": "a"},
                                        {"kind": "features", "pipeline": "dinosaur", "digest": "b"}]}
    assert identity.provenance_fields(record)["train_pipeline"] == "dinosaur"
    assert "train_pipeline" not in identity.provenance_fields({"run_id": "r", "inputs": [{"kind": "split", "digest": "a"}]})
