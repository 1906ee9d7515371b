"""Evaluation: metrics of a trained run equal the metrics of its masks; block masks; token masks."""
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from slotcov.data import InMemory
from slotcov.evaluate.evaluation import evaluate_blockmasks, evaluate_model, masks_to_ids
from slotcov.evaluate.metrics import block_masks, fg_ari, stripe_score
from slotcov.train.loop import load_trained, train
from tiny_run import blobs, tiny_cell


def _dataset(n=20):
    img = blobs(n)
    ids = (img - img[:, :, :1, :1]).abs().sum(1).gt(1e-6).long()  # 1 where not background colour
    return InMemory(image=img, true_ids=ids)


def test_evaluate_trained_run(tmp_path):
    ds = _dataset()
    train(tiny_cell("cmdsprites/sa", steps=4), ds, tmp_path, progress=False)
    model, _, cfg = load_trained(tmp_path)
    metrics, samples = evaluate_model(model, ds, batch_size=8, n_samples=3, progress=False)
    assert set(metrics) == {"fg_ari", "fg_ari_n", "fg_ari_skipped", "mbo", "stripe", "mse", "slot_cov"}
    assert metrics["stripe"] >= 1.0
    assert metrics["fg_ari_n"] + metrics["fg_ari_skipped"] == 20
    assert samples["image"].shape == (3, 16, 16, 3) and samples["recon"].shape == (3, 16, 16, 3)
    assert samples["masks"].shape == (3, cfg["model"]["num_slots"], 16, 16)
    # the same noise seed gives the same masks: recompute FG-ARI from a direct forward pass
    torch.manual_seed(0)
    with torch.no_grad():
        out = model(ds.batch(np.arange(8)))
    direct = fg_ari(ds.tensors["true_ids"][:8], out["masks"].argmax(1))
    again, _ = evaluate_model(model, InMemory(**{k: v[:8] for k, v in ds.tensors.items()}), 8, 0, progress=False)
    assert math.isclose(again["fg_ari"], float(direct[~direct.isnan()].mean() * 100), rel_tol=1e-12)


def test_blockmasks_baseline():
    ids = torch.zeros(4, 16, 16, dtype=torch.long)
    ids[:, :, :8], ids[:, :, 8:] = 1, 2  # two objects, left and right halves
    m = evaluate_blockmasks(InMemory(true_ids=ids, image=torch.zeros(4, 3, 16, 16)), num_blocks=2)
    assert m["fg_ari"] == 100.0 and m["fg_ari_n"] == 4
    m7 = evaluate_blockmasks(InMemory(true_ids=ids, image=torch.zeros(4, 3, 16, 16)), num_blocks=7)
    assert m7["fg_ari"] < 100 and m7["fg_ari_n"] == 4
    assert m["stripe"] == pytest.approx(2.0, abs=1e-12)  # two 8 x 16 halves
    assert m7["stripe"] == pytest.approx(stripe_score(block_masks(16, 16, 7)[None]).item(), abs=1e-12)


def test_token_masks_are_upsampled_to_the_target():
    masks = torch.zeros(1, 2, 4)  # 2x2 tokens: slot 1 wins on the right column
    masks[0, 0, [0, 2]] = 1
    masks[0, 1, [1, 3]] = 1
    ids = masks_to_ids(masks, (8, 8))
    assert ids.shape == (1, 8, 8)
    assert (ids[0, :, :4] == 0).all() and (ids[0, :, 4:] == 1).all()


# ----------------------------------------------------------------------------- soft masks at another resolution

def _np_bilinear(x: np.ndarray, out: int) -> np.ndarray:
    """Bilinear resize of [..., h, w] to [..., out, out], half-pixel centres (align_corners=False), edges clamped."""
    def axis_weights(n_in):
        src = np.maximum((np.arange(out) + 0.5) * n_in / out - 0.5, 0.0)
        i0 = np.floor(src).astype(int)
        i1 = np.minimum(i0 + 1, n_in - 1)
        w = src - i0
        m = np.zeros((out, n_in))
        np.add.at(m, (np.arange(out), i0), 1 - w)
        np.add.at(m, (np.arange(out), i1), w)
        return m
    rows, cols = axis_weights(x.shape[-2]), axis_weights(x.shape[-1])
    return np.einsum("oh,...hw,pw->...op", rows, x, cols)


class _FakeModel(torch.nn.Module):
    """Returns the soft masks, reconstructions and slots stored with each image."""

    def forward(self, batch):
        return {"masks": batch["fake_masks"], "recon": batch["fake_recon"], "target": batch["image"],
                "slots": batch["fake_slots"]}


def test_evaluation_of_soft_low_resolution_masks_against_numpy_references():
    """8x8 soft masks scored at 16x16: bilinear upsample + arg-max, FG-ARI (sklearn), mBO, MSE, slot covariance, and
    the stripe score of the same arg-max masks."""
    from sklearn.metrics import adjusted_rand_score

    g = np.random.default_rng(3)
    n, k, d = 7, 4, 6
    logits = g.normal(size=(n, k, 8, 8)) * 2.0
    logits[n - 2, 0] += 20.0  # one slot takes a whole image of several objects: ARI 0, not 1
    masks = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)  # soft: softmax over slots
    true_ids = np.zeros((n, 16, 16), dtype=np.int64)
    for i in range(n - 1):  # 1-4 rectangular objects with ids 1..M, later ones on top; background 0
        for obj in range(1, 2 + i % 4):
            y, x = g.integers(0, 10, size=2)
            true_ids[i, y:y + g.integers(3, 7), x:x + g.integers(3, 7)] = obj
    # the last image has no foreground at all: no FG-ARI, skipped
    images = g.uniform(size=(n, 3, 16, 16)).astype(np.float32)
    recon = g.uniform(size=(n, 3, 16, 16)).astype(np.float32)
    slots = g.normal(size=(n, k, d)).astype(np.float32)
    ds = InMemory(image=torch.from_numpy(images), true_ids=torch.from_numpy(true_ids),
                  fake_masks=torch.from_numpy(masks).float(), fake_recon=torch.from_numpy(recon),
                  fake_slots=torch.from_numpy(slots))
    metrics, _ = evaluate_model(_FakeModel(), ds, batch_size=3, n_samples=0, progress=False)

    pred = _np_bilinear(masks, 16).argmax(axis=1)  # [n, 16, 16]
    assert len(np.unique(pred)) == k  # every slot wins somewhere: the upsampling matters
    assert (pred[n - 2] == 0).all() and len(np.unique(true_ids[n - 2])) > 2
    aris, bos = [], []
    for i in range(n):
        fg = true_ids[i] > 0
        if not fg.any():
            continue
        aris.append(adjusted_rand_score(true_ids[i][fg], pred[i][fg]))
        ious = []
        for obj in np.unique(true_ids[i][fg]):
            t = true_ids[i] == obj
            ious.append(max(np.sum(t & (pred[i] == s)) / np.sum(t | (pred[i] == s)) for s in range(k)))
        bos.append(np.mean(ious))
    assert metrics["fg_ari_n"] == n - 1 and metrics["fg_ari_skipped"] == 1
    assert metrics["fg_ari"] == pytest.approx(100 * np.mean(aris), abs=1e-9)
    assert metrics["mbo"] == pytest.approx(100 * np.mean(bos), abs=1e-9)
    assert metrics["mse"] == pytest.approx(float(np.mean((recon.astype(np.float64) - images) ** 2)), rel=1e-6)
    assert metrics["stripe"] == pytest.approx(stripe_score(torch.from_numpy(pred)).mean().item(), rel=1e-12)
    cov = np.cov(slots.reshape(n * k, d).astype(np.float64), rowvar=False)
    assert metrics["slot_cov"] == pytest.approx(float((cov ** 2).sum() - (np.diag(cov) ** 2).sum()) / d ** 2,
                                                rel=1e-6)
    # nearest-neighbour upsampling would give other arg-maxes: the reference above is not vacuous
    nearest = masks.repeat(2, axis=2).repeat(2, axis=3).argmax(axis=1)
    assert (nearest != pred).any()
    # COCO's `valid` (pixels of one instance at most): invalid pixels leave both masks in mBO
    valid = g.uniform(size=(n, 16, 16)) > 0.2
    with_valid = InMemory(**ds.tensors, valid=torch.from_numpy(valid))
    metrics_v, _ = evaluate_model(_FakeModel(), with_valid, batch_size=4, n_samples=0, progress=False)
    bos = []
    for i in range(n):
        objs = np.unique(true_ids[i][valid[i] & (true_ids[i] > 0)])
        if len(objs):
            v = valid[i]
            bos.append(np.mean([max(np.sum((true_ids[i] == o) & (pred[i] == s) & v)
                                    / np.sum(((true_ids[i] == o) | (pred[i] == s)) & v) for s in range(k))
                                for o in objs]))
    assert metrics_v["mbo"] == pytest.approx(100 * np.mean(bos), abs=1e-9)
    assert metrics_v["mbo"] != pytest.approx(metrics["mbo"], abs=1e-3)


def test_non_paper_settings_are_recorded_in_provenance_and_marked_in_the_tables(tmp_path):
    import pandas as pd

    from slotcov.cells import PAPER_CELLS
    from slotcov.config import deep_merge
    from slotcov.evaluate.evaluation import provenance
    from slotcov.report.tables import MARKS, _marks, _notes

    config = {"preset": "paper", "data": {"cmdsprites": {"source": "real"}}}
    paper_cfg = PAPER_CELLS["cmdsprites/sa"]
    assert provenance(config, "cmdsprites/sa", paper_cfg, None, tmp_path, None, "cpu")["non_paper"] == ""
    cfg = deep_merge(paper_cfg, {"train": {"amp": "bf16"}, "model": {"slot_init": "glorot"}})
    prov = provenance(config, "cmdsprites/sa", cfg, None, tmp_path, None, "cpu")
    assert prov["non_paper"] == "model.slot_init=glorot; train.amp=bf16"
    group = pd.DataFrame({"has_prov": [True, True], "prov_preset": ["paper", "paper"],
                          "prov_pipeline": ["cmdsprites", "cmdsprites"], "prov_non_paper": ["", prov["non_paper"]]})
    marks = _marks(group, "cmdsprites", "sa")
    assert marks == {"knobs": "model.slot_init=glorot; train.amp=bf16"}
    assert _marks(group.iloc[:1], "cmdsprites", "sa") == {}
    note = _notes(pd.DataFrame({"_detail": [marks]}))
    assert MARKS["knobs"][0] in note and "amp=bf16" in note


def test_float16_tokens_are_recorded_in_provenance_and_marked(tmp_path):
    """A number from float16 tokens (data.features.dtype) is marked with the knobs mark; float32 is the paper's."""
    import json

    import pandas as pd

    from slotcov.cells import PAPER_CELLS
    from slotcov.evaluate.evaluation import provenance
    from slotcov.report.tables import _marks

    config = {"preset": "paper", "data": {"coco": {"source": "real", "primary": "authors"}}}
    store = tmp_path / "features"
    store.mkdir()
    cfg = PAPER_CELLS["coco/dinosaur"]
    for dtype, expected in (("float32", ""), ("float16", "data.features.dtype=float16")):
        (store / "manifest.json").write_text(json.dumps({"weights": "pretrained", "dtype": dtype}))
        prov = provenance(config, "coco/dinosaur", cfg, None, tmp_path, store, "cpu")
        assert prov["non_paper"] == expected
    group = pd.DataFrame({"has_prov": [True], "prov_preset": ["paper"], "prov_non_paper": [prov["non_paper"]]})
    assert _marks(group, "coco", "dinosaur") == {"knobs": "data.features.dtype=float16"}


def test_coco_provenance_names_the_pipeline_scored_on_and_the_one_trained_on(tmp_path):
    """`pipeline`: the prepared split's (the top-level numbers'); `train_pipeline`: data.coco.primary's features."""
    import json

    import pandas as pd

    from slotcov.cells import PAPER_CELLS
    from slotcov.evaluate.evaluation import provenance
    from slotcov.report.tables import _marks

    (tmp_path / "meta.json").write_text(json.dumps({"pipeline": "authors"}))
    config = {"preset": "paper", "data": {"coco": {"source": "real", "primary": "authors"}}}
    prov = provenance(config, "coco/sa", PAPER_CELLS["coco/sa"], None, tmp_path, None, "cpu")
    assert (prov["pipeline"], prov["train_pipeline"]) == ("authors", "authors") and "protocol" not in prov
    assert provenance(config, "coco/blockmasks", None, None, tmp_path, None, "cpu")["train_pipeline"] == ""
    config["data"]["coco"]["primary"] = "dinosaur"
    prov = provenance(config, "coco/sa", PAPER_CELLS["coco/sa"], None, tmp_path, None, "cpu")
    assert (prov["pipeline"], prov["train_pipeline"]) == ("authors", "dinosaur")
    group = pd.DataFrame({"has_prov": [True], "prov_preset": ["paper"], "prov_pipeline": [prov["pipeline"]],
                          "prov_train_pipeline": [prov["train_pipeline"]]})
    assert _marks(group, "coco", "sa") == {"pipeline": "trained on dinosaur instead of authors"}


def test_a_long_non_paper_list_is_counted_in_the_footnote_and_whole_in_provenance(tmp_path):
    """A reduced preset departs in many settings: the footnote names a few and counts them all."""
    import pandas as pd

    from slotcov import config as C
    from slotcov.evaluate.evaluation import provenance
    from slotcov.report.tables import MARKS, NOTE_ITEMS, _marks, _notes

    config = C.load(Path(__file__).parents[1] / "config/test.yaml")
    provs = {cell: provenance(config, cell, C.resolve_cell(config, cell), None, tmp_path, None, "cpu")
             for cell in ("cmdsprites/sa", "cmdsprites/covloss")}
    every = {item for p in provs.values() for item in p["non_paper"].split("; ")}
    assert {"train.steps=10", "model.slot_dim=16", "reg.projection=[32, 32]"} <= every
    assert len(every) > NOTE_ITEMS
    details = [_marks(pd.DataFrame({"has_prov": [True], "prov_preset": ["test"], "prov_pipeline": ["cmdsprites"],
                                    "prov_non_paper": [p["non_paper"]]}), "cmdsprites", cell.split("/")[1])
               for cell, p in provs.items()]
    note = next(line for line in _notes(pd.DataFrame({"_detail": details})).split("\\par\n")
                if MARKS["knobs"][0] in line)
    assert f"{len(every)} settings, e.g. " in note and "provenance field non\\_paper" in note, note
    assert note.count("=") == NOTE_ITEMS, note


def test_provenance_records_uncommitted_changes(tmp_path, monkeypatch):
    import subprocess

    from slotcov.evaluate.evaluation import DIRTY_PATHS_SHOWN, provenance

    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    config = {"preset": "paper", "data": {"cmdsprites": {"source": "real"}}}
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", "a.py")
    git("-c", "user.name=t", "-c", "user.email=t@t.invalid", "commit", "-qm", "a")
    prov = provenance(config, "cmdsprites/sa", None, None, tmp_path, None, "cpu")
    assert prov["dirty"] is False and prov["dirty_paths"] == "" and len(prov["git_commit"]) == 40
    (tmp_path / "a.py").write_text("x = 2\n")
    (tmp_path / "new.py").write_text("")
    prov = provenance(config, "cmdsprites/sa", None, None, tmp_path, None, "cpu")
    assert prov["dirty"] is True and prov["dirty_paths"] == "a.py, new.py"
    for i in range(DIRTY_PATHS_SHOWN + 5):
        (tmp_path / f"f{i:02d}.py").write_text("")
    prov = provenance(config, "cmdsprites/sa", None, None, tmp_path, None, "cpu")
    assert prov["dirty_paths"].endswith("(+7 more)") and prov["dirty_paths"].count(", ") == DIRTY_PATHS_SHOWN - 1


class _HalvesModel(torch.nn.Module):
    """Predicts slot 0 on the left half and slot 1 on the right half of every image."""

    def forward(self, batch):
        b, _, h, w = batch["image"].shape
        masks = torch.zeros(b, 2, h, w)
        masks[:, 0, :, : w // 2], masks[:, 1, :, w // 2:] = 1, 1
        return {"masks": masks, "slots": torch.zeros(b, 2, 4), "recon": batch["image"], "target": batch["image"]}


def test_authors_metric_uses_batches_of_64_in_file_order():
    """fg_ari_authors comes from consecutive 64-image batches in file order, whatever the eval batch size."""
    ids = torch.zeros(70, 16, 16, dtype=torch.long)
    ids[:, 4:12, 4:12] = 1          # one object across both halves: split over two slots, sklearn ~0
    ids[10] = 0
    ids[10, 4:12, 2:6] = 1          # image 10: inside the left half, one slot: a zero denominator
    ds = InMemory(image=torch.zeros(70, 3, 16, 16), true_ids=ids)
    a, _ = evaluate_model(_HalvesModel(), ds, batch_size=8, n_samples=0, progress=False, authors_metric=True)
    b, _ = evaluate_model(_HalvesModel(), ds, batch_size=32, n_samples=0, progress=False, authors_metric=True)
    assert a == b and a["fg_ari"] == pytest.approx(100 / 70, abs=1e-9)  # only image 10 scores (1.0)
    # batch 0-63 holds the zero-denominator image: plain formula there; batch 64-69: 1.0 by the uniform rule
    assert a["fg_ari_authors"] == pytest.approx((1 + 6) * 100 / 70, abs=1e-9)
    assert a["fg_ari_metric_frac_differ"] == pytest.approx(6 / 70) and a["fg_ari_metric_mean_diff"] > 0
    assert a["fg_ari_authors_n"] == 70 and a["fg_ari_n"] == 70


def test_metrics_count_the_batches_whose_rule_the_float32_zero_test_changed():
    """A batch whose only zero-denominator image (154 pixels, one slot) escapes the authors' float32 test."""
    ids = torch.zeros(70, 32, 32, dtype=torch.long)
    ids[:, 8:24, 8:24] = 1          # one object across both halves: split over two slots, sklearn 0
    ids[3] = 0
    ids[3, 2:16, 2:13] = 1          # image 3: 154 pixels inside the left half, one slot
    ds = InMemory(image=torch.zeros(70, 3, 32, 32), true_ids=ids)
    m, _ = evaluate_model(_HalvesModel(), ds, batch_size=16, n_samples=0, progress=False, authors_metric=True)
    assert m["fg_ari_authors_batches"] == 2 and m["fg_ari_authors_float32_batches"] == 1
    assert m["fg_ari"] == pytest.approx(100 / 70, abs=1e-9)
    assert m["fg_ari_authors"] == pytest.approx(100.0)  # every image 1.0: the uniform rule in both batches
    ids[3, 2:16, 2:13] = 1
    ids[3, 15, 12] = 0              # 153 pixels: float32 finds the zero, as exact arithmetic does
    m, _ = evaluate_model(_HalvesModel(), ds, batch_size=16, n_samples=0, progress=False, authors_metric=True)
    assert m["fg_ari_authors_float32_batches"] == 0
    assert m["fg_ari_authors"] == pytest.approx((1 + 6) * 100 / 70, abs=1e-6)


def test_nearest_upsampling_of_token_masks():
    masks = torch.zeros(1, 2, 4)
    masks[0, 0] = torch.tensor([1.0, 0.6, 0.0, 0.0])  # slot 0 strong top-left, weak top-right
    masks[0, 1] = torch.tensor([0.0, 0.4, 1.0, 1.0])
    near, bil = masks_to_ids(masks, (8, 8), "nearest"), masks_to_ids(masks, (8, 8), "bilinear")
    assert (near[0, :4, :4] == 0).all() and (near[0, :4, 4:] == 0).all() and (near[0, 4:] == 1).all()
    assert not torch.equal(near, bil)


def test_cli_wants_pipelines_for_coco_and_data_for_cmdsprites(tmp_path):
    from pathlib import Path

    from slotcov.errors import UserError
    from slotcov.evaluate.evaluation import cli_evaluate

    cfg = str(Path(__file__).parents[1] / "config" / "test.yaml")
    out = ["--out", str(tmp_path / "m.json"), "--details", str(tmp_path / "d.json"), "--provenance", str(tmp_path / "p.json")]
    with pytest.raises(UserError, match="--pipeline NAME DATA FEATURES"):
        cli_evaluate(["--config", cfg, "--cell", "coco/sa", "--data", "x"] + out)
    with pytest.raises(UserError, match="--data"):
        cli_evaluate(["--config", cfg, "--cell", "cmdsprites/sa", "--pipeline", "authors", "a", "b"] + out)
    with pytest.raises(UserError, match="--primary dinosaur is not one of"):
        cli_evaluate(["--config", cfg, "--cell", "coco/blockmasks", "--pipeline", "authors", "a", "b",
                      "--primary", "dinosaur"] + out)
    (tmp_path / "split").mkdir()
    (tmp_path / "split" / "meta.json").write_text('{"pipeline": "authors"}')
    with pytest.raises(UserError, match="prepared for the pipeline 'authors'"):  # scored on one, named another
        cli_evaluate(["--config", cfg, "--cell", "coco/blockmasks", "--pipeline", "dinosaur", str(tmp_path / "split"),
                      "b"] + out)
    assert not (tmp_path / "m.json").exists() and not (tmp_path / "p.json").exists()


def test_cli_scores_each_coco_pipeline_with_the_model_trained_under_it(tmp_path):
    """A trained COCO cell: one model per --pipeline (--run for the primary, --pipeline-run for another), and a
    run whose record names another training pipeline is refused; nothing is written."""
    from pathlib import Path

    from slotcov.errors import UserError
    from slotcov.evaluate.evaluation import _check_trained_on, cli_evaluate

    cfg = str(Path(__file__).parents[1] / "config" / "test.yaml")
    out = ["--out", str(tmp_path / "m.json"), "--details", str(tmp_path / "d.json"),
           "--provenance", str(tmp_path / "p.json")]
    both = ["--config", cfg, "--cell", "coco/sa", "--run", str(tmp_path / "run"), "--pipeline", "authors", "a", "b",
            "--pipeline", "dinosaur", "c", "d", "--primary", "authors"] + out
    with pytest.raises(UserError, match="no model trained under the pipeline 'dinosaur'; pass --pipeline-run dinosaur"):
        cli_evaluate(both)
    with pytest.raises(UserError, match="--pipeline-run authors: name a --pipeline other than the primary"):
        cli_evaluate(both + ["--pipeline-run", "authors", "x"])
    with pytest.raises(UserError, match="--run is required"):
        cli_evaluate([a for a in both if a not in ("--run", str(tmp_path / "run"))] + ["--pipeline-run", "dinosaur", "x"])
    record = {"run_id": "r", "inputs": [{"kind": "split", "pipeline": "dinosaur", "digest": "s"},
                                        {"kind": "features", "pipeline": "dinosaur", "digest": "f"}]}
    _check_trained_on("dinosaur", "run", record)
    with pytest.raises(UserError, match="run was trained under the pipeline 'dinosaur', not 'authors'"):
        _check_trained_on("authors", "run", record)
    assert not list(tmp_path.glob("*.json"))
