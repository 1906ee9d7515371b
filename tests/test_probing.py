"""Probing: informative slots are decoded after Hungarian matching; random slots are not."""
import numpy as np
import torch

from slotcov.probing import _match, probe_all


class Scenes:
    """Scenes of 1-4 objects with known properties; `image` holds the scene's slots.

    Informative slots carry each object's properties (plus noise) in one slot, slots
    shuffled per scene; uninformative ones are noise.
    """

    def __init__(self, n, seed, informative=True):
        rng = np.random.default_rng(seed)
        self.n = n
        vis = np.zeros((n, 5), np.float32)
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
        return {k: v[idx] for k, v in self.obj.items()}


def identity_model(batch):
    return {"slots": batch["image"]}


SETTINGS = {"hidden": 32, "steps": 250, "lr": 1e-2, "batch_size": 32, "n_train_objects": 400, "n_test_objects": 150}


def test_informative_slots_are_decoded_and_noise_is_not():
    good = probe_all(identity_model, Scenes(300, 0), Scenes(100, 1), SETTINGS, progress=False)
    assert good["shape_acc"] > 0.95
    assert min(good["color_r2"], good["scale_r2"], good["x_r2"], good["y_r2"]) > 0.8
    assert good["n_train_objects"] >= 400 and good["n_test_objects"] >= 150
    # loss matching keeps the best of 5 predictions, so noise scores above zero but far below
    bad = probe_all(identity_model, Scenes(300, 0, False), Scenes(100, 1, False), SETTINGS, progress=False)
    for key in ("shape_acc", "color_r2", "scale_r2", "x_r2", "y_r2"):
        assert bad[key] < good[key] - 0.15, key


def test_matching_uses_only_visible_objects():
    cost = np.array([[[5.0, 1.0, 9.0], [1.0, 9.0, 9.0], [0.0, 0.0, 0.0]]])
    assert _match(cost, np.array([[True, True, False]])) == [(0, 0, 1), (0, 1, 0)]
