"""Probing (Table 2), the authors' protocol: one 10-output MLP, joint loss matching with
invisible entities last, training-scene standardisation, early stopping, the recorded counts."""
from pathlib import Path

import numpy as np
import pytest
import torch

from slotcov.evaluate import probing
from slotcov.config import DEFAULTS as CONFIG_DEFAULTS
from slotcov.evaluate.probing import make_probe, match, matched_loss, pair_losses, probe_all, standardiser


class Scenes:
    """Scenes of 1-4 objects with known properties; `image` holds the scene's slots.

    Informative slots carry each entity's properties (plus noise) in one slot, slots
    shuffled per scene; uninformative ones are noise.
    """

    def __init__(self, n, seed, informative=True):
        rng = np.random.default_rng(seed)
        self.n = n
        vis = np.zeros((n, 5), np.float32)
        vis[:, 0] = 1  # the background is visible in the data; the probe must drop it
        for i, c in enumerate(rng.integers(1, 5, n)):
            vis[i, 1:1 + c] = 1
        self.obj = {"visibility": vis, "shape": rng.integers(1, 4, (n, 5)).astype(np.float32),
                    "color": rng.random((n, 5, 3), dtype=np.float32), "scale": rng.random((n, 5), dtype=np.float32),
                    "x": rng.random((n, 5), dtype=np.float32), "y": rng.random((n, 5), dtype=np.float32)}
        self.obj["shape"][:, 0] = 0
        o = self.obj
        feats = np.concatenate([np.eye(4)[o["shape"].astype(int)], o["color"], o["scale"][..., None],
                                o["x"][..., None], o["y"][..., None]], -1)  # [n,5,10]
        feats = feats + 0.01 * rng.standard_normal(feats.shape) if informative else rng.standard_normal(feats.shape)
        self.slots = np.stack([f[rng.permutation(5)] for f in feats]).astype(np.float32)

    def __len__(self):
        return self.n

    def batch(self, idx):
        return {"image": torch.as_tensor(self.slots[idx])}

    def objects(self, idx):
        return {k: v[idx].copy() for k, v in self.obj.items()}


def identity_model(batch):
    return {"slots": batch["image"]}


def hand_scene():
    """3 slots; entities: background, A and B visible, C invisible. Slot 0 predicts B, slot 2
    predicts A (colour 0.1 off), slot 1 has A's exact colour but nothing else; the background
    and C equal slot 1's and slot 2's predictions exactly (zero raw loss)."""
    a = [0.2, 0.4, 0.6, 1.0, -1.0, 0.5]
    b = [-0.3, 0.1, 0.9, -0.5, 0.7, -1.2]
    s1 = a[:3] + [4.0, 4.0, 4.0]
    s2 = [v + 0.1 for v in a[:3]] + a[3:]
    pred = torch.tensor([[b + [0, 2, 0, 0], s1 + [0, 0, 0, 0], s2 + [0, 0, 3, 0]]], dtype=torch.float32)
    numeric = torch.tensor([[s1, a, b, s2]], dtype=torch.float32)
    shape = torch.tensor([[0, 2, 1, 2]])
    visible = np.array([[False, True, True, False]])
    return pred, numeric, shape, visible


def hand_pair_loss(p, t, cls):
    """The joint loss of one (entity, slot) pair, written out."""
    p, t = np.asarray(p, np.float64), np.asarray(t, np.float64)
    mse = np.mean((p[:3] - t[:3]) ** 2) + sum((p[i] - t[i]) ** 2 for i in (3, 4, 5))
    logits = p[6:]
    return mse + np.log(np.exp(logits).sum()) - logits[cls]


def test_joint_matching_on_a_hand_built_scene():
    pred, numeric, shape, visible = hand_scene()
    losses = pair_losses(pred, numeric, shape)
    assert losses.shape == (1, 4, 3, 5)
    for e in range(4):
        for k in range(3):
            assert losses[0, e, k].sum().item() == pytest.approx(
                hand_pair_loss(pred[0, k], numeric[0, e], shape[0, e]), rel=1e-5)
    rows, cols, keep = match(losses.sum(-1).numpy(), visible)
    pairs = {int(r): int(c) for r, c, v in zip(rows[0], cols[0], keep[0]) if v}
    assert pairs == {1: 2, 2: 0}  # A -> slot 2 (joint), B -> slot 0; colour alone would send A to slot 1
    assert keep[0].sum() == 2 and 3 not in pairs and 0 not in pairs
    expected = (0.1 ** 2 + (np.log(3 + np.e ** 3) - 3) + (np.log(3 + np.e ** 2) - 2)) / 2
    assert matched_loss(pred, numeric, shape, visible).item() == pytest.approx(expected, rel=1e-5)


def test_invisible_and_background_never_take_a_visible_objects_slot():
    # raw costs: the background and the invisible entity are cheapest everywhere
    cost = np.array([[[0.0, 0.0, 0.0], [2.0, 1.0, 9.0], [1.0, 9.0, 3.0], [0.0, 0.0, 0.0]]])
    rows, cols, keep = match(cost, np.array([[False, True, True, False]]))
    assert sorted(zip(rows[0][keep[0]], cols[0][keep[0]])) == [(1, 1), (2, 0)]


def test_one_mlp_with_ten_outputs():
    net = make_probe(7)
    assert [type(m).__name__ for m in net] == ["Linear", "LeakyReLU", "Linear"]
    assert (net[0].in_features, net[0].out_features, net[2].out_features) == (7, 256, 10)


def test_standardiser_uses_all_entities_and_one_colour_statistic():
    rng = np.random.default_rng(0)
    numeric = rng.random((6, 5, 6)).astype(np.float32)
    mean, std = standardiser(numeric)
    assert mean[:3] == pytest.approx([numeric[..., :3].mean()] * 3, rel=1e-5)
    assert std[4] == pytest.approx(np.std(numeric[..., 4], ddof=1) + 1e-6, rel=1e-5)
    split = probing.standardise({"numeric": numeric, "shape": np.zeros((6, 5), np.int64)}, mean, std)
    assert split["numeric"][..., 4].mean().item() == pytest.approx(0.0, abs=1e-5)
    assert split["numeric"][..., :3].std().item() == pytest.approx(1.0, rel=1e-2)


SMALL = {**CONFIG_DEFAULTS["probe"], "hidden": 32, "lr": 1e-2, "batch_size": 16, "check_every": 5, "patience": 3, "min_delta": 0.01,
         "train_scenes": 48, "val_scenes": 32, "test_scenes": 40, "resample_slots": False}


def test_targets_are_standardised_with_the_training_scenes(monkeypatch):
    data = Scenes(120, 3)
    seen = []
    original = probing.standardise
    monkeypatch.setattr(probing, "standardise", lambda split, m, s: seen.append((m, s)) or original(split, m, s))
    probe_all(identity_model, data, {**SMALL, "steps": 3}, progress=False)
    o = data.objects(np.arange(48))  # the training scenes come first
    train = np.concatenate([o["color"], o["scale"][..., None], o["x"][..., None], o["y"][..., None]], -1)
    assert len(seen) == 3
    for mean, std in seen:  # train, validation and test targets: the training scenes' statistics
        assert mean[3] == pytest.approx(train[..., 3].mean(), rel=1e-5)
        assert std[5] == pytest.approx(train[..., 5].std(ddof=1) + 1e-6, rel=1e-5)


def test_counts_and_early_stop_on_a_flat_validation_loss(monkeypatch):
    data = Scenes(120, 4)
    fits = []
    original = probing.fit_probe
    monkeypatch.setattr(probing, "fit_probe", lambda *a, **k: fits.append(a[3]) or original(*a, **k))
    # lr ~ 0: the validation loss is flat; checks at steps 5, 10, 15, 20 -> 3 flat checks at 20,
    # and the stop waits for the end of that epoch (3 steps per epoch): step 21
    flat = probe_all(identity_model, data, {**SMALL, "lr": 1e-9, "steps": 300}, progress=False)
    assert flat["stopped_at_step"] == 21 and fits == [None]  # one probe for every property
    assert (flat["n_train_scenes"], flat["n_val_scenes"], flat["n_test_scenes"]) == (48, 32, 40)
    visible = data.objects(np.arange(80, 120))["visibility"][:, 1:].sum()
    assert flat["n_test_objects"] == visible
    # never flat: runs to the step limit
    full = probe_all(identity_model, data, {**SMALL, "min_delta": -1e9, "steps": 30}, progress=False)
    assert full["stopped_at_step"] == 30


@pytest.mark.trained_numbers
def test_informative_slots_are_decoded_and_noise_is_not():
    settings = {**SMALL, "steps": 400, "lr": 1e-2, "min_delta": -1e9, "train_scenes": 300,
                "val_scenes": 20, "test_scenes": 100}
    good = probe_all(identity_model, Scenes(420, 0), settings, progress=False)
    assert good["shape_acc"] > 0.95
    assert min(good["color_r2"], good["scale_r2"], good["x_r2"], good["y_r2"]) > 0.8
    # loss matching keeps the best of 5 predictions, so noise scores above zero but far below
    bad = probe_all(identity_model, Scenes(420, 0, False), settings, progress=False)
    for key in ("shape_acc", "color_r2", "scale_r2", "x_r2", "y_r2"):
        assert bad[key] < good[key] - 0.15, key


def test_per_property_protocol_trains_five_probes(monkeypatch):
    fits = []
    original = probing.fit_probe
    monkeypatch.setattr(probing, "fit_probe", lambda *a, **k: fits.append(a[3]) or original(*a, **k))
    out = probe_all(identity_model, Scenes(120, 5), {**SMALL, "steps": 6, "protocol": "per_property"},
                    progress=False)
    assert fits == list(probing.TERMS) and set(probing.METRIC.values()) <= set(out)


def test_too_few_probe_scenes_is_one_clear_error():
    with pytest.raises(probing.UserError, match="probe.train_scenes"):
        probe_all(identity_model, Scenes(50, 0), SMALL, progress=False)


@pytest.mark.parametrize("span, other", [([59000, 13000], "train"), ([60100, 13000], "eval")])
def test_probe_span_overlapping_the_slot_models_records_is_one_clear_error(span, other):
    from slotcov import config as C

    config = C.load(Path(__file__).parents[1] / "config" / "paper.yaml")
    C.validate(config)
    config["data"]["cmdsprites"]["splits"]["probe"] = span
    with pytest.raises(probing.UserError, match=f"splits.probe .* overlaps splits.{other}.*60320") as err:
        C.validate(config, "paper.yaml")
    assert "\n" not in str(err.value)


def test_resample_slots_draws_new_slots_per_call_and_otherwise_keeps_one_draw():
    def noisy_model(batch):  # stands in for Slot Attention's random initial slots
        return {"slots": batch["image"] + torch.randn_like(batch["image"])}

    data, idx = Scenes(20, 0), np.arange(3, 9)
    fresh = probing.probe_split(noisy_model, data, 10, 10, resample=True, batch_size=4)
    kept = probing.probe_split(noisy_model, data, 10, 10, resample=False, batch_size=4)
    assert not torch.equal(fresh["slots"](idx), fresh["slots"](idx))
    assert torch.equal(kept["slots"](idx), kept["slots"](idx))
    exact = probing.probe_split(identity_model, data, 10, 10, resample=False, batch_size=4)
    assert torch.equal(exact["slots"](idx), torch.as_tensor(data.slots[10 + idx]))  # scenes 13..18
    assert fresh["visible"].shape == (10, 5) and not fresh["visible"][:, 0].any()


def test_probe_provenance_names_the_probe_protocol_and_slot_resampling(tmp_path, monkeypatch):
    """`slotcov probe` writes probe.protocol and probe.resample_slots into the provenance file (Table 2 marks them)."""
    import json

    import yaml

    import slotcov.data
    import slotcov.evaluate.evaluation
    import slotcov.train.loop
    from slotcov.cells import PAPER_CELLS

    preset = yaml.safe_load((Path(__file__).parents[1] / "config" / "test.yaml").read_text())
    monkeypatch.setattr(slotcov.train.loop, "load_trained", lambda run, device: (None, None, PAPER_CELLS["cmdsprites/sa"]))
    record = {"status": "finished", "run_id": "r", "inputs": []}  # a finished run of these settings
    monkeypatch.setattr(slotcov.evaluate.evaluation, "scored_run", lambda *args: (record, PAPER_CELLS["cmdsprites/sa"]))
    monkeypatch.setattr(slotcov.data, "open_dataset", lambda *args: None)
    monkeypatch.setattr(probing, "probe_all", lambda *args, **kw: {"shape_acc": 0.5})
    for settings, want in [({"protocol": "authors", "resample_slots": True}, ("authors", "true")),
                           ({"protocol": "per_property", "resample_slots": False}, ("per_property", "false"))]:
        preset["probe"].update(settings)
        (tmp_path / "preset.yaml").write_text(yaml.safe_dump(preset))
        assert probing.cli_probe(["--config", str(tmp_path / "preset.yaml"), "--cell", "cmdsprites/sa",
                                  "--run", str(tmp_path), "--data", str(tmp_path), "--device", "cpu",
                                  "--out", str(tmp_path / "probe.json"), "--details", str(tmp_path / "d.json"),
                                  "--provenance", str(tmp_path / "p.json")]) == 0
        prov = json.loads((tmp_path / "p.json").read_text())
        assert (prov["probe_protocol"], prov["probe_resample_slots"]) == want
        assert prov["pipeline"] == prov["train_pipeline"] == "cmdsprites" and "protocol" not in prov
